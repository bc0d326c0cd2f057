//! `manifest_diff` and `GET /v3/apps/:guid/manifest`: what `cf push` shows
//! before it applies a manifest, compared with the apps as they are, and
//! changing nothing.

mod common;

use axum::http::StatusCode;
use common::*;
use serde_json::{json, Value};

const SITE: &str = "
applications:
- name: site
  instances: 2
  memory: 128M
  disk_quota: 512M
  buildpacks: [staticfile_buildpack]
  env:
    GREETING: hello
  health-check-type: http
  health-check-http-endpoint: /health
";

async fn diff_as(h: &Harness, token: &str, space: &str, yaml: &str) -> (StatusCode, Value) {
    let (status, _, body) = h
        .raw(
            "POST",
            &format!("/v3/spaces/{space}/manifest_diff"),
            Some(token),
            "application/x-yaml",
            yaml.as_bytes().to_vec(),
        )
        .await;
    (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

async fn diff(h: &Harness, space: &str, yaml: &str) -> (StatusCode, Value) {
    diff_as(h, ADMIN, space, yaml).await
}

/// Everything a diff must leave as it was.
async fn state(h: &Harness) -> Value {
    json!({
        "apps": h.get("/v3/apps").await["resources"],
        "processes": h.get("/v3/processes").await["resources"],
        "routes": h.get("/v3/routes").await["resources"],
        "events": h.get("/v3/audit_events").await["pagination"]["total_results"],
    })
}

async fn site(h: &Harness) -> (String, String) {
    let space = h.space_guid().await;
    let (status, job) = h.apply_manifest(&space, SITE).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{job}");
    assert_eq!(job["state"], "COMPLETE", "{job}");
    let apps = h.get("/v3/apps?names=site").await;
    let app = apps["resources"][0]["guid"]
        .as_str()
        .expect("guid")
        .to_string();
    (space, app)
}

#[tokio::test]
async fn an_apps_manifest_is_generated_as_cf_does() {
    let h = Harness::new().await;
    let (_, app) = site(&h).await;
    let (status, headers, body) = h
        .raw(
            "GET",
            &format!("/v3/apps/{app}/manifest"),
            Some(ADMIN_READ_ONLY),
            "",
            Vec::new(),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["content-type"], "application/x-yaml");
    assert_eq!(
        String::from_utf8(body).expect("utf-8"),
        "applications:
- name: site
  env:
    GREETING: hello
  buildpacks:
  - staticfile_buildpack
  stack: ingot-default
  routes:
  - route: site.apps.localhost
  processes:
  - type: web
    instances: 2
    memory: 128M
    disk_quota: 512M
    health-check-type: http
    health-check-http-endpoint: /health
"
    );
    let (status, body) = h.call("GET", "/v3/apps/no-such-app/manifest", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["errors"][0]["detail"], "App not found");
}

#[tokio::test]
async fn the_same_manifest_again_has_an_empty_diff() {
    let h = Harness::new().await;
    let (space, _) = site(&h).await;
    let (status, body) = diff(&h, &space, SITE).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body, json!({"diff": []}));
}

#[tokio::test]
async fn changes_to_an_existing_app_are_listed_and_not_applied() {
    let h = Harness::new().await;
    let (space, _) = site(&h).await;
    let before = state(&h).await;
    let changed = "
applications:
- name: site
  path: ./public
  instances: 3
  memory: 1G
  buildpacks: [python_buildpack]
  env:
    GREETING: bonjour
    EXTRA: '1'
  routes:
  - route: site.apps.localhost
  - route: www.apps.localhost
  processes:
  - type: web
    memory: 256M
  - type: worker
    instances: 1
    command: ./work
";
    let (status, body) = diff(&h, &space, changed).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let p = "/applications/0";
    assert_eq!(
        body["diff"],
        json!([
            {"op": "replace", "path": format!("{p}/buildpacks/0"), "was": "staticfile_buildpack", "value": "python_buildpack"},
            {"op": "add", "path": format!("{p}/env/EXTRA"), "value": "1"},
            {"op": "replace", "path": format!("{p}/env/GREETING"), "was": "hello", "value": "bonjour"},
            {"op": "replace", "path": format!("{p}/instances"), "was": 2, "value": 3},
            {"op": "replace", "path": format!("{p}/processes/0/memory"), "was": "128M", "value": "256M"},
            {"op": "add", "path": format!("{p}/processes/1"), "value": {"type": "worker", "instances": 1, "command": "./work"}},
            {"op": "add", "path": format!("{p}/routes/1"), "value": {"route": "www.apps.localhost"}},
        ])
    );
    assert_eq!(state(&h).await, before, "a diff changes nothing");
}

#[tokio::test]
async fn a_new_app_is_compared_against_nothing() {
    let h = Harness::new().await;
    let (space, _) = site(&h).await;
    let before = state(&h).await;
    let yaml = "
applications:
- name: site
- name: fresh
  instances: 2
  memory: 64M
  routes:
  - route: fresh.apps.localhost
";
    let (status, body) = diff(&h, &space, yaml).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(
        body["diff"],
        json!([
            {"op": "add", "path": "/applications/1/instances", "value": 2},
            {"op": "add", "path": "/applications/1/name", "value": "fresh"},
            {"op": "add", "path": "/applications/1/routes", "value": [{"route": "fresh.apps.localhost"}]},
        ])
    );
    assert_eq!(state(&h).await, before, "a diff creates nothing");
}

#[tokio::test]
async fn bad_manifests_fail_as_apply_manifest_does() {
    let h = Harness::new().await;
    let space = h.space_guid().await;
    for yaml in [
        "applications: [name: : :\n  - ]]",
        "applications:\n- name: x\n  memory: lots\n",
        "applications: []\n",
        "applications:\n- instances: 1\n",
    ] {
        let (diff_status, diff_body) = diff(&h, &space, yaml).await;
        let (apply_status, apply_body) = h.apply_manifest(&space, yaml).await;
        assert!(diff_status.is_client_error(), "{yaml}: {diff_body}");
        assert_eq!(
            (diff_status, &diff_body),
            (apply_status, &apply_body),
            "{yaml}"
        );
    }
    let (status, body) = diff(&h, &space, "applications: [name: : :\n  - ]]").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["errors"][0]["title"], "CF-MessageParseError");

    let (status, body) = diff(&h, "no-such-space", SITE).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert_eq!(body["errors"][0]["detail"], "Space not found");

    // Like apply_manifest, a diff needs the right to write to the space.
    let (status, body) = diff_as(&h, USER, &space, SITE).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
}
