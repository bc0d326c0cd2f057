//! What the streaming tests share: an authorizer with two fixed tokens.

use ingot_logs::{ReadDenied, StreamAuthorizer};

/// `bearer firehose` has `doppler.firehose`; `bearer app-reader` may read
/// source `app` only.
pub struct TestAuthorizer;

impl StreamAuthorizer for TestAuthorizer {
    fn authorize_firehose(&self, authorization: Option<&str>) -> Result<(), ReadDenied> {
        match authorization {
            None => Err(ReadDenied::unauthenticated("no token")),
            Some("bearer firehose") => Ok(()),
            Some("bearer app-reader") => Err(ReadDenied::forbidden("doppler.firehose needed")),
            Some(_) => Err(ReadDenied::unauthenticated("invalid token")),
        }
    }

    fn authorize_source(
        &self,
        authorization: Option<&str>,
        source_id: &str,
    ) -> Result<(), ReadDenied> {
        match authorization {
            None => Err(ReadDenied::unauthenticated("no token")),
            Some("bearer firehose") => Ok(()),
            Some("bearer app-reader") if source_id == "app" => Ok(()),
            Some("bearer app-reader") => Err(ReadDenied::forbidden("no role in the space")),
            Some(_) => Err(ReadDenied::unauthenticated("invalid token")),
        }
    }
}
