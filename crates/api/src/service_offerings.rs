//! Service offerings, plans and plan visibility (issue 7).

use axum::Router;

use crate::Api;

pub(crate) fn routes() -> Router<Api> {
    Router::new()
}
