//! Application security groups (issue 4).

use axum::Router;

use crate::Api;

pub(crate) fn routes() -> Router<Api> {
    Router::new()
}
