//! SCIM users as the `cf` CLI and Cloud Controller use them: create, list
//! with filters, get, delete, password change, `/ids/Users`, and the Rust
//! API for username ↔ guid mapping.

mod common;

use axum::http::{header, StatusCode};
use common::{basic, bearer, form, q, Fixture};
use ingot_auth::{ClientRegistration, CF_CLIENT_SCOPES, DEFAULT_USER_GROUPS};
use serde_json::{json, Value};

fn new_user(username: &str, password: &str) -> Value {
    json!({
        "userName": username,
        "password": password,
        "emails": [{"value": format!("{username}@example.com")}],
        "origin": "uaa",
        "name": {"givenName": username, "familyName": "Tester"},
    })
}

/// Creates `username` through `POST /Users` as the admin; returns its id.
async fn create(fx: &Fixture, admin: &str, username: &str, password: &str) -> String {
    let response = fx
        .call(
            "POST",
            "/Users",
            Some(admin),
            Some(new_user(username, password)),
        )
        .await;
    assert_eq!(response.status, StatusCode::CREATED, "{}", response.body);
    response.body["id"].as_str().expect("id").to_owned()
}

/// A client_credentials token of a client with `authorities`.
async fn client_bearer(fx: &Fixture, client_id: &str, authorities: &[&str]) -> String {
    fx.server
        .register_client(&ClientRegistration {
            client_id: client_id.into(),
            secret: "s3cret".into(),
            scopes: vec![],
            authorities: authorities.iter().map(|s| s.to_string()).collect(),
            grant_types: vec!["client_credentials".into()],
            redirect_uri: String::new(),
        })
        .await
        .expect("register client");
    let (status, json) = fx
        .post_token(
            Some(&basic(client_id, "s3cret")),
            &form(&[("grant_type", "client_credentials")]),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{json}");
    assert!(json.get("refresh_token").is_none(), "{json}");
    bearer(&json["access_token"])
}

fn usernames(list: &Value) -> Vec<String> {
    list["resources"]
        .as_array()
        .expect("resources")
        .iter()
        .map(|u| u["userName"].as_str().expect("userName").to_owned())
        .collect()
}

#[tokio::test]
async fn created_user_logs_in_with_exactly_the_default_scopes() {
    let fx = Fixture::new().await;
    let admin = fx.admin_bearer().await;
    let response = fx
        .call(
            "POST",
            "/Users",
            Some(&admin),
            Some(new_user("carol", "pw-carol")),
        )
        .await;
    assert_eq!(response.status, StatusCode::CREATED, "{}", response.body);
    assert_eq!(
        response.headers.get(header::ETAG).map(|v| v.as_bytes()),
        Some(&b"\"0\""[..])
    );
    let user = &response.body;
    let id = user["id"].as_str().expect("id");
    assert_eq!(id.len(), 36, "a uuid: {id}");
    assert_eq!(user["userName"], "carol");
    assert_eq!(user["origin"], "uaa");
    assert_eq!(user["zoneId"], "uaa");
    assert_eq!(user["active"], true);
    assert_eq!(user["verified"], true);
    assert_eq!(user["schemas"], json!(["urn:scim:schemas:core:1.0"]));
    assert_eq!(user["emails"][0]["value"], "carol@example.com");
    assert_eq!(user["meta"]["version"], 0);
    let created = user["meta"]["created"].as_str().expect("created");
    assert!(
        created.len() == 24 && created.ends_with('Z') && created.as_bytes()[19] == b'.',
        "UAA's date format: {created}"
    );
    assert!(user.get("password").is_none(), "{user}");
    let mut groups: Vec<&str> = user["groups"]
        .as_array()
        .expect("groups")
        .iter()
        .map(|g| {
            assert_eq!(g["type"], "DIRECT");
            g["display"].as_str().expect("display")
        })
        .collect();
    groups.sort();
    let mut defaults = DEFAULT_USER_GROUPS.to_vec();
    defaults.sort();
    assert_eq!(groups, defaults);

    // The new user logs in through cf and gets its default groups that the
    // cf client allows: nothing more.
    let login = fx.login("carol", "pw-carol").await;
    let claims = fx
        .server
        .verifier()
        .verify(Some(&bearer(&login["access_token"])))
        .expect("verifies");
    assert_eq!(claims.user_id, id);
    assert_eq!(claims.email, "carol@example.com");
    let mut granted = claims.scope.clone();
    granted.sort();
    let mut expected: Vec<String> = DEFAULT_USER_GROUPS
        .iter()
        .filter(|g| CF_CLIENT_SCOPES.contains(g))
        .map(|g| g.to_string())
        .collect();
    expected.sort();
    assert_eq!(
        granted,
        [
            "cloud_controller.read",
            "cloud_controller.write",
            "openid",
            "password.write",
            "uaa.user"
        ]
    );
    assert_eq!(granted, expected);
    assert!(!claims.is_admin());
}

#[tokio::test]
async fn duplicate_username_is_409_and_changes_nothing() {
    let fx = Fixture::new().await;
    let admin = fx.admin_bearer().await;
    create(&fx, &admin, "carol", "first").await;
    let response = fx
        .call(
            "POST",
            "/Users",
            Some(&admin),
            Some(new_user("carol", "second")),
        )
        .await;
    assert_eq!(response.status, StatusCode::CONFLICT);
    assert_eq!(
        response.body,
        json!({
            "error": "scim_resource_already_exists",
            "error_description": "Username already in use: carol",
            "message": "Username already in use: carol",
            "origin": "uaa",
        })
    );
    fx.login("carol", "first").await;
    let (status, _) = fx
        .post_token(
            Some(common::CF_BASIC),
            &form(&[
                ("grant_type", "password"),
                ("username", "carol"),
                ("password", "second"),
            ]),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn invalid_new_users_are_400() {
    let fx = Fixture::new().await;
    let admin = fx.admin_bearer().await;
    let cases = [
        (json!({"password": "pw"}), "invalid_scim_resource"),
        (
            json!({"userName": "", "password": "pw"}),
            "invalid_scim_resource",
        ),
        (
            json!({"userName": " padded ", "password": "pw"}),
            "invalid_scim_resource",
        ),
        (json!({"userName": "dan"}), "invalid_password"),
        (
            json!({"userName": "dan", "password": "pw", "origin": "ldap"}),
            "invalid_scim_resource",
        ),
        (json!("not an object"), "message_not_readable"),
    ];
    for (body, error) in cases {
        let response = fx
            .call("POST", "/Users", Some(&admin), Some(body.clone()))
            .await;
        assert_eq!(
            response.status,
            StatusCode::BAD_REQUEST,
            "{body}: {}",
            response.body
        );
        assert_eq!(response.body["error"], error, "{body}");
        assert!(response.body["message"].is_string(), "{}", response.body);
    }
    // Nothing was created.
    let list = fx.call("GET", "/Users", Some(&admin), None).await;
    assert_eq!(usernames(&list.body), ["admin"]);
}

#[tokio::test]
async fn non_admins_cannot_manage_users() {
    let fx = Fixture::new().await;
    let admin = fx.admin_bearer().await;
    let carol_id = create(&fx, &admin, "carol", "pw").await;
    let dave_id = create(&fx, &admin, "dave", "pw").await;
    let carol = fx.user_bearer("carol", "pw").await;
    let dave_path = format!("/Users/{dave_id}");
    let filter = format!("/ids/Users?filter={}", q(r#"userName eq "dave""#));
    let cases = [
        (
            "POST",
            "/Users",
            Some(new_user("eve", "pw")),
            "scim.write scim.create uaa.admin",
        ),
        ("GET", "/Users", None, "scim.read uaa.admin"),
        ("GET", dave_path.as_str(), None, "scim.read uaa.admin"),
        ("DELETE", dave_path.as_str(), None, "scim.write uaa.admin"),
        ("GET", filter.as_str(), None, "scim.userids"),
    ];
    for (method, path, body, scopes) in cases {
        let response = fx.call(method, path, Some(&carol), body).await;
        assert_eq!(response.status, StatusCode::FORBIDDEN, "{method} {path}");
        assert_eq!(
            response.body,
            json!({
                "error": "insufficient_scope",
                "error_description": "Insufficient scope for this resource",
                "scope": scopes,
            }),
            "{method} {path}"
        );
    }
    // Nothing changed: eve does not exist, dave does.
    assert_eq!(
        fx.server
            .user_id_by_name("eve", "uaa")
            .await
            .expect("lookup"),
        None
    );
    assert_eq!(
        fx.server
            .user_id_by_name("dave", "uaa")
            .await
            .expect("lookup"),
        Some(dave_id)
    );
    // A user may read itself.
    let me = fx
        .call("GET", &format!("/Users/{carol_id}"), Some(&carol), None)
        .await;
    assert_eq!(me.status, StatusCode::OK, "{}", me.body);
    assert_eq!(me.body["userName"], "carol");
}

#[tokio::test]
async fn missing_bad_expired_and_orphaned_tokens_are_401() {
    let fx = Fixture::new().await;
    let admin = fx.admin_bearer().await;
    let carol_id = create(&fx, &admin, "carol", "pw").await;
    let carol = fx.user_bearer("carol", "pw").await;
    let expired = format!(
        "bearer {}",
        fx.server
            .mint_access_token("admin", -60)
            .await
            .expect("mint")
    );

    let response = fx.call("GET", "/Users", None, None).await;
    assert_eq!(response.status, StatusCode::UNAUTHORIZED);
    assert_eq!(response.body["error"], "unauthorized");
    assert!(response.headers.contains_key(header::WWW_AUTHENTICATE));

    for token in ["bearer garbage", "Basic Y2Y6", expired.as_str()] {
        let response = fx.call("GET", "/Users", Some(token), None).await;
        assert_eq!(response.status, StatusCode::UNAUTHORIZED, "{token}");
        assert_eq!(response.body["error"], "invalid_token", "{token}");
    }

    // Once carol is deleted, her still unexpired token is refused.
    let deleted = fx
        .call("DELETE", &format!("/Users/{carol_id}"), Some(&admin), None)
        .await;
    assert_eq!(deleted.status, StatusCode::OK);
    let response = fx
        .call("GET", &format!("/Users/{carol_id}"), Some(&carol), None)
        .await;
    assert_eq!(response.status, StatusCode::UNAUTHORIZED);
    assert_eq!(response.body["error"], "invalid_token");
}

#[tokio::test]
async fn list_users_filters_sorts_and_pages() {
    let fx = Fixture::new().await;
    let admin = fx.admin_bearer().await;
    let carol_id = create(&fx, &admin, "carol", "pw").await;
    create(&fx, &admin, "dave", "pw").await;
    create(&fx, &admin, "Eve", "pw").await;

    let list = |filter: &str, extra: &str| {
        let path = format!("/Users?filter={}{extra}", q(filter));
        let admin = admin.clone();
        let fx = &fx;
        async move { fx.call("GET", &path, Some(&admin), None).await }
    };

    let all = fx.call("GET", "/Users", Some(&admin), None).await;
    assert_eq!(all.status, StatusCode::OK, "{}", all.body);
    assert_eq!(all.body["totalResults"], 4);
    assert_eq!(all.body["startIndex"], 1);
    assert_eq!(all.body["itemsPerPage"], 100);
    assert_eq!(all.body["schemas"], json!(["urn:scim:schemas:core:1.0"]));
    assert_eq!(usernames(&all.body), ["admin", "carol", "dave", "Eve"]);
    assert_eq!(all.body["resources"][1]["id"], carol_id.as_str());
    assert!(all.body["resources"][1]["groups"].is_array());

    let cases: &[(&str, &[&str])] = &[
        (r#"userName eq "carol""#, &["carol"]),
        (r#"USERNAME EQ "CAROL""#, &["carol"]),
        (r#"username eq "eve""#, &["Eve"]),
        (r#"userName eq "nobody""#, &[]),
        (r#"userName eq "carol" and origin eq "uaa""#, &["carol"]),
        (r#"userName eq "carol" and origin eq "ldap""#, &[]),
        (
            r#"userName eq "carol" or userName eq "dave""#,
            &["carol", "dave"],
        ),
        (r#"origin eq "uaa""#, &["admin", "carol", "dave", "Eve"]),
        (
            r#"emails.value co "example.com""#,
            &["carol", "dave", "Eve"],
        ),
        (
            r#"userName sw "d" or (id eq "x" and userName pr)"#,
            &["dave"],
        ),
    ];
    for (filter, expected) in cases {
        let response = list(filter, "").await;
        assert_eq!(
            response.status,
            StatusCode::OK,
            "{filter}: {}",
            response.body
        );
        assert_eq!(usernames(&response.body), *expected, "{filter}");
        assert_eq!(response.body["totalResults"], expected.len(), "{filter}");
    }
    let by_id = list(&format!(r#"id eq "{carol_id}""#), "").await;
    assert_eq!(usernames(&by_id.body), ["carol"]);

    let page = list(
        r#"origin eq "uaa""#,
        "&sortBy=userName&sortOrder=descending&startIndex=2&count=2",
    )
    .await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert_eq!(usernames(&page.body), ["dave", "carol"]);
    assert_eq!(page.body["totalResults"], 4);
    assert_eq!(page.body["startIndex"], 2);
    assert_eq!(page.body["itemsPerPage"], 2);

    for (filter, extra) in [
        ("userName eq carol", ""),
        (r#"userName eq "carol"#, ""),
        (r#"password eq "pw""#, ""),
        (r#"userName eq "carol" and"#, ""),
        (r#"userName eq "carol""#, "&sortBy=password"),
        (r#"userName eq "carol""#, "&count=many"),
    ] {
        let response = list(filter, extra).await;
        assert_eq!(response.status, StatusCode::BAD_REQUEST, "{filter}{extra}");
        assert_eq!(response.body["error"], "scim", "{filter}{extra}");
        let message = response.body["message"].as_str().expect("message");
        assert!(!message.is_empty());
        if extra.is_empty() {
            assert!(
                message.starts_with("Invalid filter expression: ["),
                "{message}"
            );
        }
    }
}

#[tokio::test]
async fn ids_users_maps_usernames_and_ids_for_scim_userids_clients() {
    let fx = Fixture::new().await;
    let admin = fx.admin_bearer().await;
    let carol_id = create(&fx, &admin, "carol", "pw").await;
    let dave_id = create(&fx, &admin, "dave", "pw").await;
    let lookup = client_bearer(&fx, "cloud_controller_username_lookup", &["scim.userids"]).await;
    let claims = fx
        .server
        .verifier()
        .verify(Some(&lookup))
        .expect("verifies");
    assert!(claims.is_client());
    assert_eq!(claims.scope, ["scim.userids"]);
    assert_eq!(claims.sub, "cloud_controller_username_lookup");
    assert_eq!(claims.grant_type, "client_credentials");

    let path = format!(
        "/ids/Users?filter={}",
        q(&format!(r#"userName eq "dave" or id eq "{carol_id}""#))
    );
    let response = fx.call("GET", &path, Some(&lookup), None).await;
    assert_eq!(response.status, StatusCode::OK, "{}", response.body);
    assert_eq!(
        response.body,
        json!({
            "resources": [
                {"id": carol_id, "userName": "carol", "origin": "uaa"},
                {"id": dave_id, "userName": "dave", "origin": "uaa"},
            ],
            "startIndex": 1,
            "itemsPerPage": 100,
            "totalResults": 2,
            "schemas": ["urn:scim:schemas:core:1.0"],
        })
    );

    for path in [
        "/ids/Users".to_owned(),
        format!("/ids/Users?filter={}", q(r#"origin eq "uaa""#)),
        format!("/ids/Users?filter={}", q("userName eq")),
    ] {
        let response = fx.call("GET", &path, Some(&lookup), None).await;
        assert_eq!(response.status, StatusCode::BAD_REQUEST, "{path}");
        assert_eq!(response.body["error"], "scim", "{path}");
    }
    // The client token is no user token: the user endpoints need scim.read.
    let response = fx.call("GET", "/Users", Some(&lookup), None).await;
    assert_eq!(response.status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn deleting_a_user_removes_it_everywhere() {
    let fx = Fixture::new().await;
    let admin = fx.admin_bearer().await;
    let carol_id = create(&fx, &admin, "carol", "pw").await;
    let login = fx.login("carol", "pw").await;

    let path = format!("/Users/{carol_id}");
    let got = fx.call("GET", &path, Some(&admin), None).await;
    assert_eq!(got.status, StatusCode::OK);
    assert_eq!(got.body["userName"], "carol");

    let deleted = fx.call("DELETE", &path, Some(&admin), None).await;
    assert_eq!(deleted.status, StatusCode::OK, "{}", deleted.body);
    assert_eq!(deleted.body["id"], carol_id.as_str());
    assert_eq!(deleted.body["userName"], "carol");

    for method in ["GET", "DELETE"] {
        let response = fx.call(method, &path, Some(&admin), None).await;
        assert_eq!(response.status, StatusCode::NOT_FOUND, "{method}");
        assert_eq!(response.body["error"], "scim_resource_not_found");
        assert_eq!(
            response.body["message"],
            format!("User {carol_id} does not exist")
        );
    }
    let (status, json) = fx
        .refresh(login["refresh_token"].as_str().expect("refresh"))
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{json}");
    assert_eq!(
        fx.server
            .user_id_by_name("carol", "uaa")
            .await
            .expect("lookup"),
        None
    );
    assert_eq!(
        fx.server.username_by_id(&carol_id).await.expect("lookup"),
        None
    );
    // The name is free again.
    create(&fx, &admin, "carol", "again").await;
}

#[tokio::test]
async fn users_change_their_own_password_and_privileged_clients_any() {
    let fx = Fixture::new().await;
    let admin = fx.admin_bearer().await;
    let carol_id = create(&fx, &admin, "carol", "old-pw").await;
    let dave_id = create(&fx, &admin, "dave", "dave-pw").await;
    let carol = fx.user_bearer("carol", "old-pw").await;
    let path = format!("/Users/{carol_id}/password");

    let cases = [
        (
            json!({"oldPassword": "wrong", "password": "new-pw"}),
            401,
            "unauthorized",
        ),
        (json!({"password": "new-pw"}), 400, "invalid_password"),
        (
            json!({"oldPassword": "old-pw", "password": ""}),
            400,
            "invalid_password",
        ),
        (
            json!({"oldPassword": "old-pw", "password": "old-pw"}),
            422,
            "invalid_password",
        ),
    ];
    for (body, status, error) in cases {
        let response = fx
            .call("PUT", &path, Some(&carol), Some(body.clone()))
            .await;
        assert_eq!(
            response.status.as_u16(),
            status,
            "{body}: {}",
            response.body
        );
        assert_eq!(response.body["error"], error, "{body}");
    }
    // Someone else's password: refused, and dave's is unchanged.
    let response = fx
        .call(
            "PUT",
            &format!("/Users/{dave_id}/password"),
            Some(&carol),
            Some(json!({"oldPassword": "old-pw", "password": "mine-now"})),
        )
        .await;
    assert_eq!(response.status, StatusCode::BAD_REQUEST);
    assert_eq!(response.body["error"], "invalid_password");
    fx.login("dave", "dave-pw").await;

    let response = fx
        .call(
            "PUT",
            &path,
            Some(&carol),
            Some(json!({"oldPassword": "old-pw", "password": "new-pw"})),
        )
        .await;
    assert_eq!(response.status, StatusCode::OK, "{}", response.body);
    assert_eq!(
        response.body,
        json!({"status": "ok", "message": "password updated"})
    );
    fx.login("carol", "new-pw").await;

    // A client holding password.write resets anyone's without the old one.
    let resetter = client_bearer(&fx, "password-resetter", &["password.write"]).await;
    let response = fx
        .call(
            "PUT",
            &format!("/Users/{dave_id}/password"),
            Some(&resetter),
            Some(json!({"password": "reset-pw"})),
        )
        .await;
    assert_eq!(response.status, StatusCode::OK, "{}", response.body);
    fx.login("dave", "reset-pw").await;

    // Without password.write nothing is possible.
    let lookup = client_bearer(&fx, "lookup", &["scim.userids"]).await;
    let response = fx
        .call(
            "PUT",
            &format!("/Users/{dave_id}/password"),
            Some(&lookup),
            Some(json!({"password": "x"})),
        )
        .await;
    assert_eq!(response.status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn rust_api_maps_usernames_and_ids() {
    let fx = Fixture::new().await;
    let admin = fx.admin_bearer().await;
    let id = create(&fx, &admin, "carol", "pw").await;
    assert_eq!(
        fx.server
            .user_id_by_name("carol", "uaa")
            .await
            .expect("lookup"),
        Some(id.clone())
    );
    assert_eq!(
        fx.server
            .user_id_by_name("carol", "ldap")
            .await
            .expect("lookup"),
        None
    );
    assert_eq!(
        fx.server
            .user_id_by_name("nobody", "uaa")
            .await
            .expect("lookup"),
        None
    );
    assert_eq!(
        fx.server.username_by_id(&id).await.expect("lookup"),
        Some("carol".to_owned())
    );
    assert_eq!(
        fx.server.username_by_id("nope").await.expect("lookup"),
        None
    );
}

#[tokio::test]
async fn scim_requests_are_counted_by_operation_and_status() {
    let fx = Fixture::new().await;
    let admin = fx.admin_bearer().await;
    create(&fx, &admin, "carol", "pw").await;
    fx.call(
        "POST",
        "/Users",
        Some(&admin),
        Some(new_user("carol", "pw")),
    )
    .await;
    fx.call("GET", "/Users", Some(&admin), None).await;
    fx.call("GET", "/Users", None, None).await;
    let text = fx.metrics_text();
    for line in [
        r#"ingot_auth_scim_requests_total{operation="create_user",status="201"} 1"#,
        r#"ingot_auth_scim_requests_total{operation="create_user",status="409"} 1"#,
        r#"ingot_auth_scim_requests_total{operation="list_users",status="200"} 1"#,
        r#"ingot_auth_scim_requests_total{operation="list_users",status="401"} 1"#,
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "missing {line:?} in\n{text}"
        );
    }
}

#[tokio::test]
async fn userinfo_describes_the_tokens_user() {
    let fx = Fixture::new().await;
    let admin = fx.admin_bearer().await;
    let id = create(&fx, &admin, "carol", "pw").await;
    let carol = fx.user_bearer("carol", "pw").await;
    let response = fx.call("GET", "/userinfo", Some(&carol), None).await;
    assert_eq!(response.status, StatusCode::OK, "{}", response.body);
    assert_eq!(response.body["user_id"], id.as_str());
    assert_eq!(response.body["sub"], id.as_str());
    assert_eq!(response.body["user_name"], "carol");
    assert_eq!(response.body["email"], "carol@example.com");
    // A client token has no user, and no openid scope.
    let lookup = client_bearer(&fx, "lookup", &["scim.userids"]).await;
    let response = fx.call("GET", "/userinfo", Some(&lookup), None).await;
    assert_eq!(response.status, StatusCode::FORBIDDEN);
    let response = fx.call("GET", "/userinfo", None, None).await;
    assert_eq!(response.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn verify_live_refuses_tokens_of_deleted_users() {
    let fx = Fixture::new().await;
    let admin = fx.admin_bearer().await;
    let id = create(&fx, &admin, "carol", "pw").await;
    let carol = fx.user_bearer("carol", "pw").await;
    let lookup = client_bearer(&fx, "lookup", &["scim.userids"]).await;
    assert_eq!(
        fx.server.verify_live(Some(&carol)).expect("live").user_id,
        id
    );
    assert!(
        fx.server.verify_live(Some(&lookup)).is_ok(),
        "client tokens pass"
    );

    let deleted = fx
        .call("DELETE", &format!("/Users/{id}"), Some(&admin), None)
        .await;
    assert_eq!(deleted.status, StatusCode::OK);
    // Still a genuine, unexpired token, but its user is gone.
    assert!(fx.server.verifier().verify(Some(&carol)).is_ok());
    assert!(matches!(
        fx.server.verify_live(Some(&carol)),
        Err(ingot_auth::TokenError::Invalid(_))
    ));
    // Also after a restart, and for users deleted through the Rust API.
    let dave_id = fx
        .server
        .create_user("dave", "pw", &["openid"])
        .await
        .expect("dave");
    let dave = fx.user_bearer("dave", "pw").await;
    fx.server.delete_user("dave").await.expect("delete");
    let reopened = fx.reopen().await;
    assert!(reopened.verify_live(Some(&carol)).is_err());
    assert!(reopened.verify_live(Some(&dave)).is_err(), "{dave_id}");
    assert!(reopened.verify_live(Some(&admin)).is_ok());
    assert_eq!(
        reopened.verify_live(None).map(|c| c.user_id),
        Err(ingot_auth::TokenError::Missing)
    );
}
