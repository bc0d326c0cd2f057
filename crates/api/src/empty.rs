//! Lists of resources Ingot does not have yet (services, sidecars,
//! deployments, quotas…): they answer an empty page instead of a 404, so
//! clients that look them up on the way (the cf CLI's `push`, `app`,
//! `delete`) keep working.

use axum::extract::{OriginalUri, RawQuery, State};
use axum::response::Response;
use axum::routing::get;
use axum::Router;

use serde_json::json;

use crate::error::ApiResult;
use crate::http::{ok, ListParams};
use crate::Api;

pub(crate) fn routes() -> Router<Api> {
    let mut router = Router::new();
    for path in [
        "/v3/service_route_bindings",
        "/v3/apps/{guid}/sidecars",
        "/v3/isolation_segments",
    ] {
        router = router.route(path, get(empty));
    }
    router
        .route(
            "/v3/organizations/{guid}/relationships/default_isolation_segment",
            get(no_relation),
        )
        .route(
            "/v3/spaces/{guid}/relationships/isolation_segment",
            get(no_relation),
        )
}

/// A to-one relationship that is not set (isolation segments).
async fn no_relation(State(api): State<Api>, OriginalUri(uri): OriginalUri) -> Response {
    ok(json!({"data": null, "links": {"self": {"href": api.url(uri.path())}}}))
}

async fn empty(
    State(api): State<Api>,
    OriginalUri(uri): OriginalUri,
    RawQuery(q): RawQuery,
) -> ApiResult<Response> {
    let params = ListParams::parse_lenient(q.as_deref())?;
    Ok(ok(params.envelope(&api, uri.path(), 0, Vec::new())))
}
