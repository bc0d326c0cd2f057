//! In-process tests of the token server: the router driven with `oneshot`
//! over a SQLite file in a temporary directory, as `ingot up` mounts it.

mod common;

use std::os::unix::fs::PermissionsExt;

use axum::http::StatusCode;
use common::{bearer, form, Fixture, CF_BASIC, ISSUER};
use ingot_auth::{AuthError, TokenError, TokenVerifier, ADMIN_SCOPES, CF_CLIENT_SCOPES};
use serde_json::json;

const DEV_SCOPES: &[&str] = &[
    "cloud_controller.read",
    "cloud_controller.write",
    "openid",
    // Not among the cf client's scopes: must never be granted through it.
    "made.up",
];

fn password_form(username: &str, password: &str) -> String {
    form(&[
        ("grant_type", "password"),
        ("username", username),
        ("password", password),
    ])
}

#[tokio::test]
async fn password_grant_issues_a_verifiable_uaa_shaped_token() {
    let fx = Fixture::new().await;
    let user_id = fx
        .server
        .create_user("alice", "wonderland", DEV_SCOPES)
        .await
        .expect("create user");

    let response = fx.login("alice", "wonderland").await;
    assert_eq!(response["token_type"], "bearer");
    assert_eq!(response["expires_in"], 20 * 60);
    assert_eq!(
        response["scope"],
        "cloud_controller.read cloud_controller.write openid"
    );
    assert!(response["refresh_token"].is_string());

    let claims = fx
        .server
        .verifier()
        .verify(Some(&bearer(&response["access_token"])))
        .expect("access token verifies");
    assert_eq!(claims.user_id, user_id);
    assert_eq!(claims.sub, user_id);
    assert_eq!(claims.user_name, "alice");
    assert_eq!(claims.email, "alice");
    assert_eq!(claims.client_id, "cf");
    assert_eq!(claims.cid, "cf");
    assert_eq!(claims.azp, "cf");
    assert_eq!(claims.grant_type, "password");
    assert_eq!(claims.origin, "uaa");
    assert_eq!(claims.zid, "uaa");
    assert_eq!(claims.iss, ISSUER);
    assert_eq!(claims.jti, response["jti"]);
    assert_eq!(claims.exp - claims.iat, 20 * 60);
    assert_eq!(
        claims.scope,
        ["cloud_controller.read", "cloud_controller.write", "openid"]
    );
    assert_eq!(claims.aud, ["cf", "cloud_controller", "openid"]);
    assert!(claims.has_scope("cloud_controller.write"));
    assert!(!claims.has_scope("made.up"));
    assert!(!claims.is_admin());

    // The header names the key that /token_keys publishes.
    let (status, keys) = fx.get("/token_keys").await;
    assert_eq!(status, StatusCode::OK);
    let kid = keys["keys"][0]["kid"].as_str().expect("kid");
    assert_eq!(fx.server.verifier().key_id(), kid);
    let header = jsonwebtoken::decode_header(response["access_token"].as_str().expect("jwt"))
        .expect("header");
    assert_eq!(header.alg, jsonwebtoken::Algorithm::RS256);
    assert_eq!(header.kid.as_deref(), Some(kid));

    // Scheme is case-insensitive, as clients send "bearer" or "Bearer".
    let token = response["access_token"].as_str().expect("jwt");
    assert!(fx
        .server
        .verifier()
        .verify(Some(&format!("Bearer {token}")))
        .is_ok());
}

#[tokio::test]
async fn client_fields_in_the_form_work_like_basic_auth() {
    let fx = Fixture::new().await;
    fx.server
        .create_user("alice", "wonderland", DEV_SCOPES)
        .await
        .expect("create user");
    let body = form(&[
        ("grant_type", "password"),
        ("client_id", "cf"),
        ("client_secret", ""),
        ("username", "alice"),
        ("password", "wonderland"),
    ]);
    let (status, json) = fx.post_token(None, &body).await;
    assert_eq!(status, StatusCode::OK, "{json}");
    let claims = fx
        .server
        .verifier()
        .verify(Some(&bearer(&json["access_token"])))
        .expect("verifies");
    assert_eq!(claims.client_id, "cf");
}

#[tokio::test]
async fn bad_password_or_unknown_user_is_401_bad_credentials() {
    let fx = Fixture::new().await;
    fx.server
        .create_user("alice", "wonderland", DEV_SCOPES)
        .await
        .expect("create user");
    let expected = json!({"error": "unauthorized", "error_description": "Bad credentials"});
    for (username, password) in [("alice", "wrong"), ("alice", ""), ("bob", "wonderland")] {
        let (status, json) = fx
            .post_token(Some(CF_BASIC), &password_form(username, password))
            .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{username}/{password}");
        assert_eq!(json, expected, "{username}/{password}");
    }
    // A failed attempt changes nothing: the right password still works.
    fx.login("alice", "wonderland").await;
}

#[tokio::test]
async fn bad_clients_are_401_unauthorized() {
    let fx = Fixture::new().await;
    fx.server
        .create_user("alice", "wonderland", DEV_SCOPES)
        .await
        .expect("create user");
    let body = password_form("alice", "wonderland");
    let cases = [
        // cf:secret — the cf client's secret is empty.
        (Some("Basic Y2Y6c2VjcmV0"), body.clone()),
        // nope: — no such client.
        (Some("Basic bm9wZTo="), body.clone()),
        // Not decodable.
        (Some("Basic %%%"), body.clone()),
        // No client at all.
        (None, body.clone()),
        // Form client that is not the Basic one.
        (Some(CF_BASIC), format!("{body}&client_id=other")),
    ];
    for (authorization, body) in cases {
        let (status, json) = fx.post_token(authorization, &body).await;
        assert_eq!(
            status,
            StatusCode::UNAUTHORIZED,
            "{authorization:?}: {json}"
        );
        assert_eq!(json["error"], "unauthorized", "{authorization:?}");
        assert!(json["error_description"].is_string());
    }
}

#[tokio::test]
async fn malformed_requests_get_oauth_errors() {
    let fx = Fixture::new().await;
    fx.server
        .create_user("alice", "wonderland", DEV_SCOPES)
        .await
        .expect("create user");
    let cases = [
        // Known grant, but not one the cf client may use.
        ("grant_type=client_credentials", 401, "invalid_client"),
        (
            "grant_type=magic&username=alice",
            400,
            "unsupported_grant_type",
        ),
        ("username=alice&password=wonderland", 400, "invalid_request"),
        ("grant_type=password&username=alice", 400, "invalid_request"),
        (
            "grant_type=password&grant_type=refresh_token",
            400,
            "invalid_request",
        ),
        ("grant_type=refresh_token", 400, "invalid_request"),
        // JSON is not a form: no grant_type in it.
        (r#"{"grant_type":"password"}"#, 400, "invalid_request"),
        (
            "grant_type=password&username=alice&password=wonderland&scope=cloud_controller.admin",
            400,
            "invalid_scope",
        ),
    ];
    for (body, status, error) in cases {
        let (got, json) = fx.post_token(Some(CF_BASIC), body).await;
        assert_eq!(got.as_u16(), status, "{body}: {json}");
        assert_eq!(json["error"], error, "{body}: {json}");
        assert!(json.get("errors").is_none(), "not the CF v3 envelope");
    }
}

#[tokio::test]
async fn scope_parameter_narrows_the_grant() {
    let fx = Fixture::new().await;
    fx.server
        .create_user("alice", "wonderland", DEV_SCOPES)
        .await
        .expect("create user");
    let body = format!(
        "{}&scope=openid+cloud_controller.read",
        password_form("alice", "wonderland")
    );
    let (status, json) = fx.post_token(Some(CF_BASIC), &body).await;
    assert_eq!(status, StatusCode::OK, "{json}");
    assert_eq!(json["scope"], "openid cloud_controller.read");
}

#[tokio::test]
async fn refresh_grant_issues_a_new_access_token() {
    let fx = Fixture::new().await;
    fx.server
        .create_user("alice", "wonderland", DEV_SCOPES)
        .await
        .expect("create user");
    let login = fx.login("alice", "wonderland").await;
    let refresh_token = login["refresh_token"].as_str().expect("refresh token");

    let (status, json) = fx.refresh(refresh_token).await;
    assert_eq!(status, StatusCode::OK, "{json}");
    assert_ne!(json["access_token"], login["access_token"]);
    assert_ne!(json["jti"], login["jti"]);
    assert_eq!(json["scope"], login["scope"]);
    assert_eq!(json["refresh_token"], refresh_token);
    let claims = fx
        .server
        .verifier()
        .verify(Some(&bearer(&json["access_token"])))
        .expect("refreshed token verifies");
    assert_eq!(claims.grant_type, "refresh_token");
    assert_eq!(claims.user_name, "alice");

    // A refresh token is no access token, and an access token no refresh token.
    let verify = fx
        .server
        .verifier()
        .verify(Some(&format!("bearer {refresh_token}")));
    assert!(matches!(verify, Err(TokenError::Invalid(_))), "{verify:?}");
    let access = login["access_token"].as_str().expect("access token");
    let (status, json) = fx.refresh(access).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(json["error"], "invalid_token");

    let (status, json) = fx.refresh("garbage").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(json["error"], "invalid_token");
}

#[tokio::test]
async fn deleted_user_cannot_refresh() {
    let fx = Fixture::new().await;
    fx.server
        .create_user("alice", "wonderland", DEV_SCOPES)
        .await
        .expect("create user");
    let login = fx.login("alice", "wonderland").await;
    fx.server.delete_user("alice").await.expect("delete");
    let (status, json) = fx
        .refresh(login["refresh_token"].as_str().expect("refresh"))
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{json}");
    assert_eq!(json["error"], "invalid_token");
    assert!(matches!(
        fx.server.delete_user("alice").await,
        Err(AuthError::UserNotFound { .. })
    ));
}

#[tokio::test]
async fn changing_the_password_revokes_refresh_tokens() {
    let fx = Fixture::new().await;
    fx.server
        .create_user("alice", "wonderland", DEV_SCOPES)
        .await
        .expect("create user");
    let login = fx.login("alice", "wonderland").await;
    fx.server
        .set_password("alice", "looking-glass")
        .await
        .expect("set password");
    let (status, json) = fx
        .refresh(login["refresh_token"].as_str().expect("refresh"))
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{json}");
    assert_eq!(json["error"], "invalid_token");
    let (status, _) = fx
        .post_token(Some(CF_BASIC), &password_form("alice", "wonderland"))
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    fx.login("alice", "looking-glass").await;
}

#[tokio::test]
async fn expired_and_foreign_tokens_are_refused() {
    let fx = Fixture::new().await;
    fx.server
        .create_user("alice", "wonderland", DEV_SCOPES)
        .await
        .expect("create user");
    let verifier = fx.server.verifier();

    let expired = fx
        .server
        .mint_access_token("alice", -60)
        .await
        .expect("mint");
    assert_eq!(
        verifier.verify(Some(&format!("bearer {expired}"))),
        Err(TokenError::Expired)
    );
    let fresh = fx
        .server
        .mint_access_token("alice", 60)
        .await
        .expect("mint");
    let claims = verifier
        .verify(Some(&format!("bearer {fresh}")))
        .expect("fresh token verifies");
    assert_eq!(claims.user_name, "alice");

    // Signed by another server's key.
    let other = Fixture::new().await;
    other
        .server
        .create_user("alice", "wonderland", DEV_SCOPES)
        .await
        .expect("create user");
    let foreign = other.login("alice", "wonderland").await;
    let verify = verifier.verify(Some(&bearer(&foreign["access_token"])));
    assert!(matches!(verify, Err(TokenError::Invalid(_))), "{verify:?}");
    let (status, json) = fx
        .refresh(foreign["refresh_token"].as_str().expect("refresh"))
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{json}");
    assert_eq!(json["error"], "invalid_token");

    // Tampered: the payload of one token under the signature of another.
    let fresh_parts: Vec<&str> = fresh.split('.').collect();
    let expired_parts: Vec<&str> = expired.split('.').collect();
    let tampered = format!("{}.{}.{}", fresh_parts[0], fresh_parts[1], expired_parts[2]);
    let verify = verifier.verify(Some(&format!("bearer {tampered}")));
    assert!(matches!(verify, Err(TokenError::Invalid(_))), "{verify:?}");

    assert_eq!(verifier.verify(None), Err(TokenError::Missing));
}

#[tokio::test]
async fn signing_key_persists_across_open() {
    let fx = Fixture::new().await;
    let key_file = fx.key_dir().join(ingot_auth::SIGNING_KEY_FILE);
    let mode = std::fs::metadata(&key_file)
        .expect("key file")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);

    fx.server
        .create_user("alice", "wonderland", DEV_SCOPES)
        .await
        .expect("create user");
    let login = fx.login("alice", "wonderland").await;

    let reopened = fx.reopen().await;
    assert_eq!(reopened.public_key().kid, fx.server.public_key().kid);
    assert_eq!(reopened.public_key().n, fx.server.public_key().n);
    // Tokens from before the restart stay valid, users too.
    reopened
        .verifier()
        .verify(Some(&bearer(&login["access_token"])))
        .expect("old token verifies after restart");
    assert!(matches!(
        reopened.create_user("alice", "x", &[]).await,
        Err(AuthError::UserExists { .. })
    ));
}

#[tokio::test]
async fn token_keys_publish_the_verifying_key() {
    let fx = Fixture::new().await;
    let (status, keys) = fx.get("/token_keys").await;
    assert_eq!(status, StatusCode::OK);
    let key = &keys["keys"][0];
    assert_eq!(keys["keys"].as_array().map(Vec::len), Some(1));
    assert_eq!(key["kty"], "RSA");
    assert_eq!(key["alg"], "RS256");
    assert_eq!(key["use"], "sig");
    assert_eq!(key["e"], "AQAB");
    assert!(key["n"].as_str().is_some_and(|n| n.len() > 300), "{key}");
    let pem = key["value"].as_str().expect("value");
    assert!(pem.starts_with("-----BEGIN PUBLIC KEY-----"), "{pem}");

    let (status, single) = fx.get("/token_key").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(&single, key);

    // Another component can verify with nothing but the published key.
    fx.server
        .create_user("alice", "wonderland", DEV_SCOPES)
        .await
        .expect("create user");
    let login = fx.login("alice", "wonderland").await;
    let remote = TokenVerifier::from_public_key_pem(pem).expect("verifier from pem");
    assert_eq!(remote.key_id(), key["kid"]);
    remote
        .verify(Some(&bearer(&login["access_token"])))
        .expect("verifies with the published key");
}

#[tokio::test]
async fn login_and_info_show_the_prompts() {
    let fx = Fixture::new().await;
    for path in ["/login", "/info"] {
        let (status, json) = fx.get(path).await;
        assert_eq!(status, StatusCode::OK, "{path}");
        assert_eq!(
            json["prompts"],
            json!({"username": ["text", "Email"], "password": ["password", "Password"]}),
            "{path}"
        );
        assert_eq!(json["zone_name"], "uaa");
        assert!(json["app"]["version"].is_string());
        assert_eq!(json["links"]["uaa"], "http://127.0.0.1:9000/uaa");
    }
}

#[tokio::test]
async fn ensure_admin_writes_private_credentials_once() {
    let fx = Fixture::new().await;
    let file = fx.dir.path().join("admin.json");
    let first = fx.server.ensure_admin(&file).await.expect("first boot");
    assert_eq!(first.username, "admin");
    assert!(first.password.len() >= 20);
    let mode = std::fs::metadata(&file).expect("file").permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let written: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&file).expect("read")).expect("json");
    assert_eq!(
        written,
        json!({"username": "admin", "password": first.password})
    );

    // Later boots (same server, or a restarted one) read the same password.
    assert_eq!(fx.server.ensure_admin(&file).await.expect("again"), first);
    let reopened = fx.reopen().await;
    assert_eq!(reopened.ensure_admin(&file).await.expect("reboot"), first);

    let login = fx.login("admin", &first.password).await;
    let claims = fx
        .server
        .verifier()
        .verify(Some(&bearer(&login["access_token"])))
        .expect("admin token verifies");
    assert!(claims.is_admin());
    let mut granted = claims.scope.clone();
    granted.sort();
    // Never more than the cf client's scopes ∩ the admin's groups.
    let mut expected: Vec<String> = ADMIN_SCOPES
        .iter()
        .filter(|s| CF_CLIENT_SCOPES.contains(s))
        .map(|s| s.to_string())
        .collect();
    expected.sort();
    for scope in [
        "cloud_controller.admin",
        "scim.read",
        "scim.write",
        "doppler.firehose",
        "network.admin",
        "routing.router_groups.read",
        "routing.router_groups.write",
        "uaa.user",
    ] {
        assert!(granted.iter().any(|g| g == scope), "{scope} in {granted:?}");
    }
    assert_eq!(granted, expected);
}

#[tokio::test]
async fn ensure_admin_refuses_a_corrupt_credentials_file() {
    let fx = Fixture::new().await;
    let file = fx.dir.path().join("admin.json");
    std::fs::write(&file, "not json").expect("write");
    let result = fx.server.ensure_admin(&file).await;
    assert!(
        matches!(result, Err(AuthError::BadFile { .. })),
        "{result:?}"
    );
    assert_eq!(std::fs::read(&file).expect("read"), b"not json");
}

#[tokio::test]
async fn create_user_refuses_bad_input_and_duplicates() {
    let fx = Fixture::new().await;
    for (username, password) in [("", "pw"), (" padded ", "pw"), ("bob", "")] {
        let result = fx.server.create_user(username, password, &[]).await;
        assert!(
            matches!(result, Err(AuthError::InvalidUser { .. })),
            "{username:?}: {result:?}"
        );
    }
    let result = fx.server.create_user("bob", "pw", &["two words"]).await;
    assert!(
        matches!(result, Err(AuthError::InvalidUser { .. })),
        "{result:?}"
    );
    fx.server
        .create_user("bob", "pw", &[])
        .await
        .expect("create");
    let result = fx.server.create_user("bob", "other", &[]).await;
    assert!(
        matches!(result, Err(AuthError::UserExists { .. })),
        "{result:?}"
    );
    // The failed duplicate did not change bob's password.
    fx.login("bob", "pw").await;
}

#[tokio::test]
async fn metrics_count_issued_and_rejected_tokens_by_grant() {
    let fx = Fixture::new().await;
    let mut registry = prometheus_client::registry::Registry::default();
    fx.server.register_metrics(&mut registry);
    fx.server
        .create_user("alice", "wonderland", DEV_SCOPES)
        .await
        .expect("create user");
    let login = fx.login("alice", "wonderland").await;
    fx.refresh(login["refresh_token"].as_str().expect("refresh"))
        .await;
    fx.post_token(Some(CF_BASIC), &password_form("alice", "bad"))
        .await;

    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).expect("encode");
    for line in [
        r#"ingot_auth_tokens_issued_total{grant_type="password"} 1"#,
        r#"ingot_auth_tokens_issued_total{grant_type="refresh_token"} 1"#,
        r#"ingot_auth_token_requests_rejected_total{grant_type="password",error="unauthorized"} 1"#,
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "missing {line:?} in\n{text}"
        );
    }
}

#[tokio::test]
async fn open_upgrades_a_clients_table_from_before_client_registrations() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pool = common::pool(dir.path()).await;
    // The table as the first release created it.
    sqlx::query(
        "CREATE TABLE auth_clients (
            client_id TEXT PRIMARY KEY NOT NULL,
            secret_hash TEXT,
            scopes TEXT NOT NULL,
            grant_types TEXT NOT NULL
        )",
    )
    .execute(&pool)
    .await
    .expect("old table");
    sqlx::query("INSERT INTO auth_clients VALUES ('cf', NULL, 'openid', 'password')")
        .execute(&pool)
        .await
        .expect("old cf client");
    let server = ingot_auth::AuthServer::open(pool.clone(), dir.path(), common::config())
        .await
        .expect("open upgrades");
    server
        .create_user("alice", "wonderland", DEV_SCOPES)
        .await
        .expect("create user");
    let fx_like = common::send(
        &server,
        axum::http::Request::post("/oauth/token")
            .header(
                axum::http::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .header(axum::http::header::AUTHORIZATION, CF_BASIC)
            .body(axum::body::Body::from(password_form("alice", "wonderland")))
            .expect("request"),
    )
    .await;
    assert_eq!(fx_like.0, StatusCode::OK, "{}", fx_like.1);
    // The cf client's scope list is the new one, not the stored one.
    assert_eq!(
        fx_like.1["scope"],
        "cloud_controller.read cloud_controller.write openid"
    );
    // Opening again (columns present now) works too.
    ingot_auth::AuthServer::open(pool, dir.path(), common::config())
        .await
        .expect("reopen");
}
