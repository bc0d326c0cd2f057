//! The unauthenticated entry points: `/` (where everything is), `/v3`,
//! `/v3/info` and the legacy `/v2/info` some clients still read.

use axum::extract::State;
use axum::routing::get;
use axum::Router;
use serde_json::{json, Value};

use crate::http::ok;
use crate::Api;

/// The Cloud Controller API version announced to clients; the cf CLI compares
/// it with the minimum each command needs, so it must be a real-looking one.
pub(crate) const CC_API_VERSION: &str = "3.180.0";
/// The v2 API version announced in `/v2/info`.
pub(crate) const CC_V2_VERSION: &str = "2.250.0";

pub(crate) fn routes() -> Router<Api> {
    Router::new()
        .route("/", get(root))
        .route("/v2/info", get(v2_info))
        .route("/v3", get(v3_root))
        .route("/v3/", get(v3_root))
        .route("/v3/info", get(v3_info))
}

fn href(url: &str) -> Value {
    json!({"href": url})
}

async fn root(State(api): State<Api>) -> axum::response::Response {
    let c = &api.inner.config;
    let app_ssh = match &c.ssh_endpoint {
        Some(endpoint) => {
            json!({"href": endpoint, "meta": {"host_key_fingerprint": c.ssh_host_key_fingerprint, "oauth_client": "ssh-proxy"}})
        }
        None => Value::Null,
    };
    ok(json!({"links": {
        "self": href(&c.external_url),
        "bits_service": null,
        "cloud_controller_v2": null,
        "cloud_controller_v3": {"href": api.url("/v3"), "meta": {"version": CC_API_VERSION}},
        "network_policy_v0": null,
        "network_policy_v1": null,
        "login": href(&c.uaa_url),
        "uaa": href(&c.uaa_url),
        "credhub": null,
        "routing": href(&api.url("/routing")),
        "logging": c.logging_url.as_deref().map(href),
        "log_cache": href(&c.log_cache_url),
        "log_stream": c.log_stream_url.as_deref().map(href),
        "app_ssh": app_ssh,
    }}))
}

async fn v3_root(State(api): State<Api>) -> axum::response::Response {
    let names = [
        "apps",
        "audit_events",
        "buildpacks",
        "builds",
        "domains",
        "droplets",
        "feature_flags",
        "info",
        "jobs",
        "organizations",
        "packages",
        "processes",
        "resource_matches",
        "routes",
        "spaces",
        "stacks",
    ];
    let mut links = serde_json::Map::new();
    links.insert("self".into(), href(&api.url("/v3")));
    for name in names {
        links.insert(name.into(), href(&api.url(&format!("/v3/{name}"))));
    }
    ok(json!({"links": links}))
}

async fn v3_info(State(api): State<Api>) -> axum::response::Response {
    ok(json!({
        "build": api.inner.config.version,
        "cli_version": {"minimum": "", "recommended": ""},
        "custom": {},
        "description": "Ingot, a Cloud Foundry-compatible platform",
        "name": "ingot",
        "version": 0,
        "osbapi_version": "2.15",
        "rate_limits": {"enabled": false, "general_limit": null, "reset_interval_in_minutes": null},
        "links": {"self": href(&api.url("/v3/info")), "support": href("")},
    }))
}

async fn v2_info(State(api): State<Api>) -> axum::response::Response {
    let c = &api.inner.config;
    ok(json!({
        "name": "ingot",
        "build": c.version,
        "support": "",
        "version": 0,
        "description": "Ingot, a Cloud Foundry-compatible platform",
        "authorization_endpoint": c.uaa_url,
        "token_endpoint": c.uaa_url,
        "min_cli_version": null,
        "min_recommended_cli_version": null,
        "app_ssh_endpoint": c.ssh_endpoint,
        "app_ssh_host_key_fingerprint": c.ssh_host_key_fingerprint,
        "app_ssh_oauth_client": "ssh-proxy",
        "doppler_logging_endpoint": null,
        "api_version": CC_V2_VERSION,
        "osbapi_version": "2.15",
        "routing_endpoint": api.url("/routing"),
    }))
}
