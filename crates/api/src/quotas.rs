//! Organization and space quotas (issue 3).

use axum::Router;

use crate::Api;

pub(crate) fn routes() -> Router<Api> {
    Router::new()
}
