//! User-provided service instances and bindings: credentials in
//! `VCAP_SERVICES`, syslog drains, and the refusals that change nothing.

mod common;

use axum::http::StatusCode;
use common::*;
use serde_json::{json, Value};

async fn app_and_instance(h: &Harness) -> (String, String, String) {
    let space = h.space_guid().await;
    let (status, app) = h
        .call(
            "POST",
            "/v3/apps",
            Some(json!({"name": "web", "relationships": {"space": {"data": {"guid": space}}}})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{app}");
    let (status, instance) = h
        .call(
            "POST",
            "/v3/service_instances",
            Some(json!({
                "type": "user-provided", "name": "db",
                "credentials": {"uri": "postgres://u:p@db/x"},
                "syslog_drain_url": "syslog://127.0.0.1:5514",
                "tags": ["sql"],
                "relationships": {"space": {"data": {"guid": space}}},
            })),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{instance}");
    assert_eq!(instance["type"], "user-provided");
    assert_eq!(instance["last_operation"]["state"], "succeeded");
    (
        space,
        app["guid"].as_str().expect("app").to_string(),
        instance["guid"].as_str().expect("instance").to_string(),
    )
}

async fn bind(h: &Harness, app: &str, instance: &str) -> (StatusCode, Value) {
    h.call(
        "POST",
        "/v3/service_credential_bindings",
        Some(json!({"type": "app", "relationships": {
            "app": {"data": {"guid": app}},
            "service_instance": {"data": {"guid": instance}},
        }})),
    )
    .await
}

#[tokio::test]
async fn a_binding_puts_the_credentials_into_vcap_services_and_the_drain_into_the_drains() {
    let h = Harness::new().await;
    let (_, app, instance) = app_and_instance(&h).await;
    let (status, binding) = bind(&h, &app, &instance).await;
    assert_eq!(status, StatusCode::CREATED, "{binding}");
    let (status, again) = bind(&h, &app, &instance).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{again}");

    let env = h.get(&format!("/v3/apps/{app}/env")).await;
    let entry = &env["system_env_json"]["VCAP_SERVICES"]["user-provided"][0];
    assert_eq!(entry["name"], "db");
    assert_eq!(entry["label"], "user-provided");
    assert_eq!(entry["credentials"]["uri"], "postgres://u:p@db/x");
    assert_eq!(entry["tags"], json!(["sql"]));
    assert_eq!(entry["binding_guid"], binding["guid"]);

    let details = h
        .get(&format!(
            "/v3/service_credential_bindings/{}/details",
            binding["guid"].as_str().expect("guid")
        ))
        .await;
    assert_eq!(details["credentials"]["uri"], "postgres://u:p@db/x");
    let drains = h.api.syslog_drains().await.expect("drains");
    assert_eq!(drains.len(), 1);
    assert_eq!(drains[0].app_guid, app);
    assert_eq!(drains[0].app_name, "web");
    assert_eq!(drains[0].urls, vec!["syslog://127.0.0.1:5514".to_string()]);

    // Deleting a bound instance is refused and changes nothing.
    let (status, body) = h
        .call("DELETE", &format!("/v3/service_instances/{instance}"), None)
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    h.get(&format!("/v3/service_instances/{instance}")).await;

    let (status, _) = h
        .call(
            "DELETE",
            &format!(
                "/v3/service_credential_bindings/{}",
                binding["guid"].as_str().expect("guid")
            ),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert!(h.api.syslog_drains().await.expect("drains").is_empty());
    let env = h.get(&format!("/v3/apps/{app}/env")).await;
    assert_eq!(env["system_env_json"]["VCAP_SERVICES"], json!({}));
    let (status, _) = h
        .call("DELETE", &format!("/v3/service_instances/{instance}"), None)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
}

#[tokio::test]
async fn bad_instances_are_refused() {
    let h = Harness::new().await;
    let space = h.space_guid().await;
    for (body, why) in [
        (
            json!({"type": "managed", "name": "x", "relationships": {"space": {"data": {"guid": space}}}}),
            "managed",
        ),
        (
            json!({"type": "user-provided", "name": "", "relationships": {"space": {"data": {"guid": space}}}}),
            "blank name",
        ),
        (
            json!({"type": "user-provided", "name": "x", "syslog_drain_url": "ftp://x", "relationships": {"space": {"data": {"guid": space}}}}),
            "drain scheme",
        ),
        (
            json!({"type": "user-provided", "name": "x", "relationships": {"space": {"data": {"guid": "nope"}}}}),
            "unknown space",
        ),
    ] {
        let (status, out) = h.call("POST", "/v3/service_instances", Some(body)).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{why}: {out}");
    }
    let list = h.get("/v3/service_instances").await;
    assert_eq!(list["pagination"]["total_results"], 0);
}

#[tokio::test]
async fn only_developers_read_credentials() {
    let h = Harness::new().await;
    let (space, _, instance) = app_and_instance(&h).await;
    let org = h.get("/v3/organizations").await["resources"][0]["guid"]
        .as_str()
        .expect("org")
        .to_string();
    for (who, kind) in [("aud", "space_auditor"), ("dev", "space_developer")] {
        for (k, rel, guid) in [
            ("organization_user", "organization", org.as_str()),
            (kind, "space", space.as_str()),
        ] {
            let (status, body) = h
                .call(
                    "POST",
                    "/v3/roles",
                    Some(json!({"type": k, "relationships": {
                        "user": {"data": {"username": who}},
                        rel: {"data": {"guid": guid}},
                    }})),
                )
                .await;
            assert_eq!(status, StatusCode::CREATED, "{body}");
        }
    }
    let path = format!("/v3/service_instances/{instance}/credentials");
    let (status, _) = h.call_as(Some("bearer as:aud"), "GET", &path, None).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, creds) = h.call_as(Some("bearer as:dev"), "GET", &path, None).await;
    assert_eq!(status, StatusCode::OK, "{creds}");
    assert_eq!(creds["uri"], "postgres://u:p@db/x");
    let (status, list) = h
        .call_as(
            Some("bearer as:outsider"),
            "GET",
            "/v3/service_instances",
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(list["pagination"]["total_results"], 0);
}
