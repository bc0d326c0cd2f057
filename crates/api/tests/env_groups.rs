//! The running and staging environment variable groups: read by everyone,
//! set by admins, layered under every app's own variables when it runs and
//! when it stages.

mod common;

use axum::http::StatusCode;
use common::*;
use serde_json::json;

#[tokio::test]
async fn groups_start_empty_and_only_admins_change_them() {
    let h = Harness::new().await;
    for name in ["running", "staging"] {
        let group = h
            .get(&format!("/v3/environment_variable_groups/{name}"))
            .await;
        assert_eq!(group["name"], name);
        assert_eq!(group["var"], json!({}));
        assert_eq!(group["updated_at"], json!(null));
    }
    let (status, body) = h
        .call("GET", "/v3/environment_variable_groups/other", None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert_eq!(body["errors"][0]["title"], "CF-ResourceNotFound");

    let (status, body) = h
        .call_as(
            Some(USER),
            "PATCH",
            "/v3/environment_variable_groups/running",
            Some(json!({"var": {"A": "1"}})),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");

    for bad in [
        json!({"var": {"PORT": "80"}}),
        json!({"var": {"VCAP_APPLICATION": "{}"}}),
        json!({"var": {"A": 1}}),
        json!({"vars": {}}),
    ] {
        let (status, body) = h
            .call(
                "PATCH",
                "/v3/environment_variable_groups/running",
                Some(bad.clone()),
            )
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{bad}: {body}");
    }
    let group = h.get("/v3/environment_variable_groups/running").await;
    assert_eq!(group["var"], json!({}), "a refused change changed nothing");

    // A PATCH merges; null removes.
    let (status, _) = h
        .call(
            "PATCH",
            "/v3/environment_variable_groups/running",
            Some(json!({"var": {"A": "1", "B": "2"}})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, group) = h
        .call(
            "PATCH",
            "/v3/environment_variable_groups/running",
            Some(json!({"var": {"B": null, "C": "3"}})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(group["var"], json!({"A": "1", "C": "3"}));
    assert!(group["updated_at"].is_string());
    // Anyone who can read sees it.
    let (status, group) = h
        .call_as(
            Some(USER),
            "GET",
            "/v3/environment_variable_groups/running",
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(group["var"], json!({"A": "1", "C": "3"}));
}

#[tokio::test]
async fn apps_get_the_groups_under_their_own_variables() {
    let h = Harness::new().await;
    for (name, var) in [
        (
            "running",
            json!({"SHARED": "from-running", "ONLY_RUNNING": "r"}),
        ),
        (
            "staging",
            json!({"SHARED": "from-staging", "ONLY_STAGING": "s"}),
        ),
    ] {
        let (status, body) = h
            .call(
                "PATCH",
                &format!("/v3/environment_variable_groups/{name}"),
                Some(json!({"var": var})),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    let space = h.space_guid().await;
    let (status, job) = h
        .apply_manifest(
            &space,
            "applications:\n- name: layered\n  buildpacks: [staticfile_buildpack]\n  env:\n    SHARED: from-app\n",
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{job}");
    let apps = h
        .get(&format!("/v3/apps?names=layered&space_guids={space}"))
        .await;
    let app = apps["resources"][0]["guid"]
        .as_str()
        .expect("guid")
        .to_string();

    let env = h.get(&format!("/v3/apps/{app}/env")).await;
    assert_eq!(env["running_env_json"]["ONLY_RUNNING"], "r");
    assert_eq!(env["staging_env_json"]["ONLY_STAGING"], "s");

    let droplet = h.stage_droplet(&app, zip_of(&[("index.html", b"x")])).await;
    let staged = h.first_stage();
    assert_eq!(staged.environment["SHARED"], "from-app");
    assert_eq!(staged.environment["ONLY_STAGING"], "s");
    assert!(!staged.environment.contains_key("ONLY_RUNNING"));

    let (status, body) = h
        .call(
            "PATCH",
            &format!("/v3/apps/{app}/relationships/current_droplet"),
            Some(json!({"data": {"guid": droplet}})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = h
        .call("POST", &format!("/v3/apps/{app}/actions/start"), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let desired = h.desires().pop().expect("desired");
    assert_eq!(desired.environment["SHARED"], "from-app");
    assert_eq!(desired.environment["ONLY_RUNNING"], "r");
    assert!(!desired.environment.contains_key("ONLY_STAGING"));
}
