//! Organization and space roles, and what each lets a user see and do, as in
//! Cloud Foundry's permission matrix.

mod common;

use axum::http::StatusCode;
use common::*;
use serde_json::{json, Value};

/// `bearer as:<name>`: a user with CF's default scopes and only its roles.
fn user(name: &str) -> String {
    format!("bearer as:{name}")
}

struct World {
    h: Harness,
    org: String,
    space: String,
    app: String,
}

async fn grant(h: &Harness, who: &str, kind: &str, target: (&str, &str)) -> (StatusCode, Value) {
    grant_as(h, ADMIN, who, kind, target).await
}

async fn grant_as(
    h: &Harness,
    token: &str,
    who: &str,
    kind: &str,
    (relation, guid): (&str, &str),
) -> (StatusCode, Value) {
    h.call_as(
        Some(token),
        "POST",
        "/v3/roles",
        Some(json!({
            "type": kind,
            "relationships": {
                "user": {"data": {"username": who, "origin": "uaa"}},
                relation: {"data": {"guid": guid}},
            }
        })),
    )
    .await
}

/// Org `main` with space `dev` and an app `site`; `dev` is a space
/// developer, `aud` a space auditor, `boss` the org's manager, `outsider`
/// has no role at all.
async fn world() -> World {
    let h = Harness::new().await;
    let space = h.space_guid().await;
    let org = h.get("/v3/organizations?names=main").await["resources"][0]["guid"]
        .as_str()
        .expect("org")
        .to_string();
    let (status, body) = h
        .call(
            "POST",
            "/v3/apps",
            Some(
                json!({"name": "site", "relationships": {"space": {"data": {"guid": space}}},
                        "environment_variables": {"SECRET": "s3cret"}}),
            ),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let app = body["guid"].as_str().expect("guid").to_string();
    for (who, kind) in [
        ("dev", "space_developer"),
        ("aud", "space_auditor"),
        ("boss", "organization_manager"),
    ] {
        let (status, body) = grant(&h, who, "organization_user", ("organization", &org)).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        let target = if kind.starts_with("space") {
            ("space", space.as_str())
        } else {
            ("organization", org.as_str())
        };
        let (status, body) = grant(&h, who, kind, target).await;
        assert_eq!(status, StatusCode::CREATED, "{kind}: {body}");
        assert_eq!(body["type"], kind);
    }
    World { h, org, space, app }
}

fn total(body: &Value) -> u64 {
    body["pagination"]["total_results"].as_u64().unwrap_or(99)
}

#[tokio::test]
async fn each_role_sees_what_cf_shows_it() {
    let w = world().await;
    let h = &w.h;
    for (who, sees) in [
        ("dev", true),
        ("aud", true),
        ("boss", true),
        ("outsider", false),
    ] {
        let token = user(who);
        for path in [
            "/v3/apps",
            "/v3/spaces",
            "/v3/organizations",
            "/v3/processes",
        ] {
            let (status, body) = h.call_as(Some(&token), "GET", path, None).await;
            assert_eq!(status, StatusCode::OK, "{who} {path}: {body}");
            assert_eq!(total(&body), u64::from(sees), "{who} {path}: {body}");
        }
        let (status, body) = h
            .call_as(Some(&token), "GET", &format!("/v3/apps/{}", w.app), None)
            .await;
        let want = if sees {
            StatusCode::OK
        } else {
            StatusCode::NOT_FOUND
        };
        assert_eq!(status, want, "{who}: {body}");
        if !sees {
            assert_eq!(body["errors"][0]["title"], "CF-ResourceNotFound");
            assert_eq!(body["errors"][0]["detail"], "App not found");
        }
    }
    // Only developers (and admins) read an app's environment.
    for (who, want) in [
        ("dev", StatusCode::OK),
        ("aud", StatusCode::FORBIDDEN),
        ("boss", StatusCode::FORBIDDEN),
        ("outsider", StatusCode::NOT_FOUND),
    ] {
        let (status, body) = h
            .call_as(
                Some(&user(who)),
                "GET",
                &format!("/v3/apps/{}/env", w.app),
                None,
            )
            .await;
        assert_eq!(status, want, "{who}: {body}");
        if status == StatusCode::OK {
            assert_eq!(body["environment_variables"]["SECRET"], "s3cret", "{body}");
        }
    }
}

#[tokio::test]
async fn only_developers_change_apps_and_refusals_change_nothing() {
    let w = world().await;
    let h = &w.h;
    let new_app =
        |name: &str| json!({"name": name, "relationships": {"space": {"data": {"guid": w.space}}}});
    for (who, want) in [
        ("aud", StatusCode::FORBIDDEN),
        ("boss", StatusCode::FORBIDDEN),
        ("outsider", StatusCode::UNPROCESSABLE_ENTITY),
    ] {
        let (status, body) = h
            .call_as(Some(&user(who)), "POST", "/v3/apps", Some(new_app(who)))
            .await;
        assert_eq!(status, want, "{who}: {body}");
        let (status, body) = h
            .call_as(
                Some(&user(who)),
                "PATCH",
                &format!("/v3/apps/{}", w.app),
                Some(json!({"name": "renamed"})),
            )
            .await;
        let want = if who == "outsider" {
            StatusCode::NOT_FOUND
        } else {
            StatusCode::FORBIDDEN
        };
        assert_eq!(status, want, "{who}: {body}");
        let (status, _) = h
            .call_as(
                Some(&user(who)),
                "POST",
                &format!("/v3/apps/{}/actions/start", w.app),
                None,
            )
            .await;
        assert_eq!(status, want, "{who} start");
    }
    let apps = h.get("/v3/apps").await;
    assert_eq!(total(&apps), 1, "{apps}");
    assert_eq!(apps["resources"][0]["name"], "site");
    assert!(
        h.desires().is_empty(),
        "a refused start reached the runtime"
    );

    let (status, body) = h
        .call_as(
            Some(&user("dev")),
            "POST",
            "/v3/apps",
            Some(new_app("mine")),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, body) = h
        .call_as(
            Some(&user("dev")),
            "PATCH",
            &format!("/v3/apps/{}", w.app),
            Some(json!({"name": "renamed"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // The developer's create is an audit event that the auditor can read.
    let (_, events) = h
        .call_as(
            Some(&user("aud")),
            "GET",
            "/v3/audit_events?types=audit.app.create",
            None,
        )
        .await;
    assert_eq!(total(&events), 2, "{events}");
    let (_, events) = h
        .call_as(Some(&user("outsider")), "GET", "/v3/audit_events", None)
        .await;
    assert_eq!(total(&events), 0, "{events}");
}

#[tokio::test]
async fn managers_grant_roles_within_their_reach() {
    let w = world().await;
    let h = &w.h;
    // A developer may not grant anything.
    let (status, body) = grant_as(
        h,
        &user("dev"),
        "newbie",
        "organization_user",
        ("organization", &w.org),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    // A space role needs an org role first, with CF's message.
    let (status, body) = grant_as(
        h,
        &user("boss"),
        "newbie",
        "space_developer",
        ("space", &w.space),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(
        body["errors"][0]["detail"]
            .as_str()
            .unwrap_or("")
            .contains("do not have a role in that space's organization"),
        "{body}"
    );
    // The org manager grants both.
    for (kind, target) in [
        ("organization_user", ("organization", w.org.as_str())),
        ("space_developer", ("space", w.space.as_str())),
    ] {
        let (status, body) = grant_as(h, &user("boss"), "newbie", kind, target).await;
        assert_eq!(status, StatusCode::CREATED, "{kind}: {body}");
    }
    let (status, _) = h
        .call_as(
            Some(&user("newbie")),
            "GET",
            &format!("/v3/apps/{}/env", w.app),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    // Twice is refused; an unknown user is refused.
    let (status, body) = grant(h, "newbie", "space_developer", ("space", &w.space)).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(
        body["errors"][0]["detail"],
        "User 'newbie' already has 'space_developer' role in space 'dev'."
    );
    let (status, body) = grant(h, "ghost", "organization_user", ("organization", &w.org)).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let (status, body) = grant(h, "newbie", "space_wizard", ("space", &w.space)).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");

    // The space's users, and the roles listed with filters.
    let users = h.get(&format!("/v3/spaces/{}/users", w.space)).await;
    let mut names: Vec<&str> = users["resources"]
        .as_array()
        .expect("users")
        .iter()
        .filter_map(|u| u["username"].as_str())
        .collect();
    names.sort_unstable();
    assert_eq!(names, ["aud", "dev", "newbie"]);
    let roles = h
        .get(&format!(
            "/v3/roles?types=space_developer&space_guids={}",
            w.space
        ))
        .await;
    assert_eq!(total(&roles), 2, "{roles}");
    let (_, roles) = h
        .call_as(Some(&user("outsider")), "GET", "/v3/roles", None)
        .await;
    assert_eq!(total(&roles), 0, "{roles}");

    // Removing the org role first is refused while a space role remains.
    let org_role = h
        .get(&format!(
            "/v3/roles?types=organization_user&user_guids=newbie-guid&organization_guids={}",
            w.org
        ))
        .await["resources"][0]["guid"]
        .as_str()
        .expect("role")
        .to_string();
    let (status, body) = h
        .call("DELETE", &format!("/v3/roles/{org_role}"), None)
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let space_role = h
        .get("/v3/roles?types=space_developer&user_guids=newbie-guid")
        .await["resources"][0]["guid"]
        .as_str()
        .expect("role")
        .to_string();
    let (status, body) = h
        .call_as(
            Some(&user("aud")),
            "DELETE",
            &format!("/v3/roles/{space_role}"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let (status, _) = h
        .call_as(
            Some(&user("boss")),
            "DELETE",
            &format!("/v3/roles/{space_role}"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let (status, _) = h
        .call_as(
            Some(&user("newbie")),
            "GET",
            &format!("/v3/apps/{}", w.app),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let events = h
        .get("/v3/audit_events?types=audit.user.space_developer_remove")
        .await;
    assert_eq!(total(&events), 1, "{events}");
}

#[tokio::test]
async fn users_create_organizations_only_when_the_flag_allows() {
    let w = world().await;
    let h = &w.h;
    let (status, body) = h
        .call_as(
            Some(&user("outsider")),
            "POST",
            "/v3/organizations",
            Some(json!({"name": "mine"})),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let (status, _) = h
        .call(
            "PATCH",
            "/v3/feature_flags/user_org_creation",
            Some(json!({"enabled": true})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = h
        .call_as(
            Some(&user("outsider")),
            "POST",
            "/v3/organizations",
            Some(json!({"name": "mine"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let org = body["guid"].as_str().expect("guid").to_string();
    // The creator manages it: sees only it, and may make spaces in it.
    let (_, orgs) = h
        .call_as(Some(&user("outsider")), "GET", "/v3/organizations", None)
        .await;
    assert_eq!(total(&orgs), 1, "{orgs}");
    assert_eq!(orgs["resources"][0]["name"], "mine");
    let (status, body) = h
        .call_as(
            Some(&user("outsider")),
            "POST",
            "/v3/spaces",
            Some(json!({"name": "s", "relationships": {"organization": {"data": {"guid": org}}}})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    // …but not in someone else's organization.
    let (status, body) = h
        .call_as(
            Some(&user("outsider")),
            "POST",
            "/v3/spaces",
            Some(
                json!({"name": "s", "relationships": {"organization": {"data": {"guid": w.org}}}}),
            ),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    // Only admins register users with the API.
    let (status, _) = h
        .call_as(
            Some(&user("boss")),
            "POST",
            "/v3/users",
            Some(json!({"guid": "carol-guid"})),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, body) = h
        .call("POST", "/v3/users", Some(json!({"guid": "carol-guid"})))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["username"], "carol");
}

#[tokio::test]
async fn org_managers_delete_spaces_with_everything_in_them() {
    let w = world().await;
    let h = &w.h;
    for who in ["dev", "aud"] {
        let (status, body) = h
            .call_as(
                Some(&user(who)),
                "DELETE",
                &format!("/v3/spaces/{}", w.space),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{who}: {body}");
    }
    let (status, body) = h
        .call_as(
            Some(&user("boss")),
            "DELETE",
            &format!("/v3/organizations/{}", w.org),
            None,
        )
        .await;
    assert_eq!(
        status,
        StatusCode::FORBIDDEN,
        "only admins delete orgs: {body}"
    );
    let (status, body) = h
        .call_as(
            Some(&user("boss")),
            "DELETE",
            &format!("/v3/spaces/{}", w.space),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let (status, _) = h.call("GET", &format!("/v3/apps/{}", w.app), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(
        h.calls().iter().any(|c| matches!(c, Call::Remove(_))),
        "the space's app was not removed from the runtime: {:?}",
        h.calls()
    );
    let roles = h.get(&format!("/v3/roles?space_guids={}", w.space)).await;
    assert_eq!(total(&roles), 0, "{roles}");
    let (status, _) = h
        .call("DELETE", &format!("/v3/organizations/{}", w.org), None)
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let orgs = h.get("/v3/organizations").await;
    assert_eq!(total(&orgs), 0, "{orgs}");
}
