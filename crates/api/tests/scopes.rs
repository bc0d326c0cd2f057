//! Which tokens may read and which may write: reads need a read scope,
//! writes the write scope and then a role (see roles.rs); the entry points
//! stay open to everyone.

mod common;

use axum::http::StatusCode;
use common::*;
use serde_json::{json, Value};

fn assert_not_authorized(status: StatusCode, body: &Value, what: &str) {
    assert_eq!(status, StatusCode::FORBIDDEN, "{what}: {body}");
    assert_eq!(
        *body,
        json!({"errors": [{
            "code": 10003,
            "title": "CF-NotAuthorized",
            "detail": "You are not authorized to perform the requested action",
        }]}),
        "{what}"
    );
}

#[tokio::test]
async fn reads_need_a_read_scope() {
    let h = Harness::new().await;
    let space = h.space_guid().await;
    for path in [
        "/v3/organizations".to_string(),
        "/v3/apps".to_string(),
        format!("/v3/spaces/{space}"),
        "/v3/feature_flags".to_string(),
        "/v3/no-such-thing-either".to_string(),
    ] {
        let (status, body) = h.call_as(Some(NO_SCOPES), "GET", &path, None).await;
        if path.ends_with("either") {
            // Unknown paths are not found for everyone, as before.
            assert_eq!(status, StatusCode::NOT_FOUND, "{path}: {body}");
            continue;
        }
        assert_not_authorized(status, &body, &path);
        for token in [ADMIN, USER, WRITER, ADMIN_READ_ONLY, AUDITOR] {
            let (status, body) = h.call_as(Some(token), "GET", &path, None).await;
            // Users without a role in the space do not see it at all.
            let hidden = path.starts_with("/v3/spaces/") && (token == USER || token == WRITER);
            let want = if hidden {
                StatusCode::NOT_FOUND
            } else {
                StatusCode::OK
            };
            assert_eq!(status, want, "{token} GET {path}: {body}");
        }
    }
}

#[tokio::test]
async fn entry_points_stay_open_to_any_token_or_none() {
    let h = Harness::new().await;
    for path in ["/", "/v3", "/v3/info", "/v2/info"] {
        for token in [None, Some(NO_SCOPES), Some("bearer garbage")] {
            let (status, body) = h.call_as(token, "GET", path, None).await;
            assert_eq!(status, StatusCode::OK, "{token:?} GET {path}: {body}");
        }
    }
}

#[tokio::test]
async fn writes_need_a_role_and_refusals_change_nothing() {
    let h = Harness::new().await;
    let space = h.space_guid().await;
    for token in [USER, WRITER, ADMIN_READ_ONLY, AUDITOR, NO_SCOPES] {
        let (status, body) = h
            .call_as(
                Some(token),
                "POST",
                "/v3/apps",
                Some(json!({"name": "sneaky", "relationships": {"space": {"data": {"guid": space}}}})),
            )
            .await;
        if token == WRITER {
            // The write scope, but no role: the space is not even visible.
            assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
            assert_eq!(
                body["errors"][0]["detail"],
                "Invalid space. Ensure that the space exists and you have access to it."
            );
        } else {
            assert_not_authorized(status, &body, token);
        }
        let (status, body) = h
            .call_as(
                Some(token),
                "PATCH",
                "/v3/feature_flags/user_org_creation",
                Some(json!({"enabled": true})),
            )
            .await;
        assert_not_authorized(status, &body, token);
    }
    let apps = h.get("/v3/apps?names=sneaky").await;
    assert_eq!(apps["pagination"]["total_results"], 0);
    let flag = h.get("/v3/feature_flags/user_org_creation").await;
    assert_eq!(flag["enabled"], false);

    let (status, body) = h
        .call(
            "POST",
            "/v3/apps",
            Some(json!({"name": "allowed", "relationships": {"space": {"data": {"guid": space}}}})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
}

#[tokio::test]
async fn token_problems_still_come_before_scopes() {
    let h = Harness::new().await;
    let (status, body) = h.call_as(None, "GET", "/v3/apps", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert_eq!(body["errors"][0]["title"], "CF-NotAuthenticated");
    let (status, body) = h.call_as(Some(EXPIRED), "POST", "/v3/apps", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert_eq!(body["errors"][0]["title"], "CF-InvalidAuthToken");
}
