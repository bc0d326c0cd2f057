//! One-time codes as `cf ssh-code` gets them and the SSH proxy redeems them:
//! `GET /oauth/authorize` with a bearer token → 302 with `code=`, then
//! [`AuthServer::redeem_code`] in process or the `authorization_code` grant.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use axum::http::{header, StatusCode};
use common::{basic, form, Fixture, CF_BASIC};
use ingot_auth::{AuthConfig, SSH_PROXY_CLIENT, SSH_PROXY_SECRET_FILE};

const AUTHORIZE: &str = "/oauth/authorize?response_type=code&client_id=ssh-proxy";
const SSH_SCOPES: [&str; 3] = ["openid", "cloud_controller.read", "cloud_controller.write"];
const DEV_GROUPS: &[&str] = &[
    "openid",
    "uaa.user",
    "cloud_controller.read",
    "cloud_controller.write",
];

/// Creates `username` with `groups` and returns its id and a cf bearer token.
async fn user(fx: &Fixture, username: &str, groups: &[&str]) -> (String, String) {
    let id = fx
        .server
        .create_user(username, "pw", groups)
        .await
        .expect("create user");
    (id, fx.user_bearer(username, "pw").await)
}

/// `cf ssh-code`: the code from the 302's Location.
async fn ssh_code(fx: &Fixture, bearer: &str) -> String {
    let response = fx.call("GET", AUTHORIZE, Some(bearer), None).await;
    assert_eq!(response.status, StatusCode::FOUND, "{}", response.body);
    let location = response
        .headers
        .get(header::LOCATION)
        .expect("Location")
        .to_str()
        .expect("ascii");
    let (base, query) = location.split_once('?').expect("a query");
    assert_eq!(base, "http://127.0.0.1:9000/uaa/login");
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(query).expect("query");
    assert_eq!(pairs.len(), 1, "{location}");
    assert_eq!(pairs[0].0, "code");
    pairs[0].1.clone()
}

async fn redeem_over_http(fx: &Fixture, code: &str) -> (StatusCode, serde_json::Value) {
    fx.post_token(
        Some(&basic(SSH_PROXY_CLIENT, fx.server.ssh_proxy_secret())),
        &form(&[("grant_type", "authorization_code"), ("code", code)]),
    )
    .await
}

#[tokio::test]
async fn a_code_is_redeemed_once_to_the_user_who_asked() {
    let fx = Fixture::new().await;
    let (carol_id, carol) = user(&fx, "carol", DEV_GROUPS).await;
    let code = ssh_code(&fx, &carol).await;
    assert_eq!(code.len(), 32);
    assert!(code.chars().all(|c| c.is_ascii_alphanumeric()), "{code}");

    let grant = fx
        .server
        .redeem_code(&code, SSH_PROXY_CLIENT)
        .await
        .expect("redeem")
        .expect("a valid code");
    assert_eq!(grant.user_id, carol_id);
    assert_eq!(grant.user_name, "carol");
    assert_eq!(grant.client_id, "ssh-proxy");
    assert_eq!(grant.scopes, SSH_SCOPES);
    assert!(grant.has_scope("cloud_controller.write"));

    // Used: neither in process nor over HTTP does it work again.
    assert_eq!(
        fx.server
            .redeem_code(&code, SSH_PROXY_CLIENT)
            .await
            .expect("redeem"),
        None
    );
    let (status, json) = redeem_over_http(&fx, &code).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{json}");
    assert_eq!(json["error"], "invalid_grant");
}

#[tokio::test]
async fn codes_of_different_users_stay_apart() {
    let fx = Fixture::new().await;
    let (carol_id, carol) = user(&fx, "carol", DEV_GROUPS).await;
    // Dave may only read: his code grants no more.
    let (dave_id, dave) = user(
        &fx,
        "dave",
        &["openid", "uaa.user", "cloud_controller.read"],
    )
    .await;
    let carol_code = ssh_code(&fx, &carol).await;
    let dave_code = ssh_code(&fx, &dave).await;
    assert_ne!(carol_code, dave_code);

    let dave_grant = fx
        .server
        .redeem_code(&dave_code, SSH_PROXY_CLIENT)
        .await
        .expect("redeem")
        .expect("valid");
    assert_eq!(dave_grant.user_id, dave_id);
    assert_eq!(dave_grant.user_name, "dave");
    assert_eq!(dave_grant.scopes, ["openid", "cloud_controller.read"]);
    let carol_grant = fx
        .server
        .redeem_code(&carol_code, SSH_PROXY_CLIENT)
        .await
        .expect("redeem")
        .expect("valid");
    assert_eq!(carol_grant.user_id, carol_id);
}

#[tokio::test]
async fn an_expired_code_is_refused() {
    // A zero lifetime: the code has expired by the time anyone redeems it.
    let fx = Fixture::with_config(AuthConfig {
        authorization_code_ttl: Duration::ZERO,
        ..common::config()
    })
    .await;
    let (_, carol) = user(&fx, "carol", DEV_GROUPS).await;
    let code = ssh_code(&fx, &carol).await;
    assert_eq!(
        fx.server
            .redeem_code(&code, SSH_PROXY_CLIENT)
            .await
            .expect("redeem"),
        None
    );
    let code = ssh_code(&fx, &carol).await;
    let (status, json) = redeem_over_http(&fx, &code).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{json}");
    assert_eq!(json["error"], "invalid_grant");
    assert_eq!(json["error_description"], "Authorization code expired");
    let text = fx.metrics_text();
    assert!(
        text.lines()
            .any(|l| l == r#"ingot_auth_codes_redeemed_total{outcome="expired"} 2"#),
        "{text}"
    );
}

#[tokio::test]
async fn the_default_code_lifetime_is_five_minutes() {
    assert_eq!(
        AuthConfig::default().authorization_code_ttl,
        Duration::from_secs(300)
    );
}

#[tokio::test]
async fn a_code_for_another_client_or_a_deleted_user_is_refused() {
    let fx = Fixture::new().await;
    let (_, carol) = user(&fx, "carol", DEV_GROUPS).await;
    let code = ssh_code(&fx, &carol).await;
    assert_eq!(
        fx.server.redeem_code(&code, "cf").await.expect("redeem"),
        None
    );
    // The wrong client consumed it.
    assert_eq!(
        fx.server
            .redeem_code(&code, SSH_PROXY_CLIENT)
            .await
            .expect("redeem"),
        None
    );

    let code = ssh_code(&fx, &carol).await;
    fx.server.delete_user("carol").await.expect("delete");
    assert_eq!(
        fx.server
            .redeem_code(&code, SSH_PROXY_CLIENT)
            .await
            .expect("redeem"),
        None
    );
}

#[tokio::test]
async fn authorization_code_grant_issues_a_token_for_the_user() {
    let fx = Fixture::new().await;
    let (carol_id, carol) = user(&fx, "carol", DEV_GROUPS).await;
    let code = ssh_code(&fx, &carol).await;

    // A wrong secret is refused and does not consume the code.
    let (status, json) = fx
        .post_token(
            Some(&basic(SSH_PROXY_CLIENT, "wrong")),
            &form(&[("grant_type", "authorization_code"), ("code", &code)]),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{json}");
    // The cf client may not use this grant.
    let (status, json) = fx
        .post_token(
            Some(CF_BASIC),
            &form(&[("grant_type", "authorization_code"), ("code", &code)]),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{json}");
    assert_eq!(json["error"], "invalid_client");

    let (status, json) = redeem_over_http(&fx, &code).await;
    assert_eq!(status, StatusCode::OK, "{json}");
    assert!(json.get("refresh_token").is_none(), "{json}");
    let claims = fx
        .server
        .verifier()
        .verify(Some(&common::bearer(&json["access_token"])))
        .expect("verifies");
    assert_eq!(claims.user_id, carol_id);
    assert_eq!(claims.user_name, "carol");
    assert_eq!(claims.client_id, "ssh-proxy");
    assert_eq!(claims.grant_type, "authorization_code");
    assert_eq!(claims.scope, SSH_SCOPES);

    let (status, json) = redeem_over_http(&fx, &code).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{json}");
    assert_eq!(json["error_description"], "Invalid authorization code");

    let (status, json) = fx
        .post_token(
            Some(&basic(SSH_PROXY_CLIENT, fx.server.ssh_proxy_secret())),
            &form(&[("grant_type", "authorization_code")]),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{json}");
    assert_eq!(json["error"], "invalid_request");
}

#[tokio::test]
async fn authorize_refuses_what_uaa_refuses() {
    let fx = Fixture::new().await;
    let (_, carol) = user(&fx, "carol", DEV_GROUPS).await;
    // No uaa.user: may not ask for codes.
    let (_, reader) = user(&fx, "reader", &["openid", "cloud_controller.read"]).await;

    let response = fx.call("GET", AUTHORIZE, None, None).await;
    assert_eq!(response.status, StatusCode::UNAUTHORIZED);
    let response = fx.call("GET", AUTHORIZE, Some("bearer junk"), None).await;
    assert_eq!(response.status, StatusCode::UNAUTHORIZED);
    assert_eq!(response.body["error"], "invalid_token");
    let response = fx.call("GET", AUTHORIZE, Some(&reader), None).await;
    assert_eq!(response.status, StatusCode::FORBIDDEN);
    assert_eq!(response.body["error"], "insufficient_scope");

    let cases = [
        ("/oauth/authorize?client_id=ssh-proxy", 400, "invalid_request"),
        (
            "/oauth/authorize?response_type=token&client_id=ssh-proxy",
            400,
            "unsupported_response_type",
        ),
        ("/oauth/authorize?response_type=code", 400, "invalid_request"),
        (
            "/oauth/authorize?response_type=code&client_id=cf",
            400,
            "unauthorized_client",
        ),
        (
            "/oauth/authorize?response_type=code&client_id=nope",
            401,
            "invalid_client",
        ),
        (
            "/oauth/authorize?response_type=code&client_id=ssh-proxy&redirect_uri=https%3A%2F%2Fevil.example%2F",
            400,
            "invalid_request",
        ),
        (
            "/oauth/authorize?response_type=code&client_id=ssh-proxy&scope=cloud_controller.admin",
            400,
            "invalid_scope",
        ),
    ];
    for (path, status, error) in cases {
        let response = fx.call("GET", path, Some(&carol), None).await;
        assert_eq!(
            response.status.as_u16(),
            status,
            "{path}: {}",
            response.body
        );
        assert_eq!(response.body["error"], error, "{path}");
        assert!(response.headers.get(header::LOCATION).is_none(), "{path}");
    }
    let text = fx.metrics_text();
    assert!(
        text.lines().any(|l| l == "ingot_auth_codes_issued_total 0"),
        "{text}"
    );
}

#[tokio::test]
async fn the_registered_redirect_uri_and_state_are_honoured() {
    let fx = Fixture::new().await;
    let (_, carol) = user(&fx, "carol", DEV_GROUPS).await;
    assert_eq!(
        fx.server.ssh_proxy_redirect_uri(),
        "http://127.0.0.1:9000/uaa/login"
    );
    let path = format!(
        "{AUTHORIZE}&redirect_uri={}&state=xyz&scope=openid",
        common::q(&fx.server.ssh_proxy_redirect_uri())
    );
    let response = fx.call("GET", &path, Some(&carol), None).await;
    assert_eq!(response.status, StatusCode::FOUND, "{}", response.body);
    let location = response.headers[header::LOCATION].to_str().expect("ascii");
    assert!(
        location.starts_with("http://127.0.0.1:9000/uaa/login?code="),
        "{location}"
    );
    assert!(location.ends_with("&state=xyz"), "{location}");
    let code = location
        .split_once("code=")
        .and_then(|(_, rest)| rest.split('&').next())
        .expect("code");
    let grant = fx
        .server
        .redeem_code(code, SSH_PROXY_CLIENT)
        .await
        .expect("redeem")
        .expect("valid");
    assert_eq!(grant.scopes, ["openid"]);
    let text = fx.metrics_text();
    for line in [
        "ingot_auth_codes_issued_total 1",
        r#"ingot_auth_codes_redeemed_total{outcome="ok"} 1"#,
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "missing {line:?} in\n{text}"
        );
    }
}

#[tokio::test]
async fn the_ssh_proxy_secret_is_private_and_survives_restarts() {
    let fx = Fixture::new().await;
    let file = fx.key_dir().join(SSH_PROXY_SECRET_FILE);
    let mode = std::fs::metadata(&file)
        .expect("secret file")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let secret = fx.server.ssh_proxy_secret().to_owned();
    assert!(secret.len() >= 20);
    let reopened = fx.reopen().await;
    assert_eq!(reopened.ssh_proxy_secret(), secret);
    // The database keeps only a hash of it.
    let stored: Option<String> =
        sqlx::query_scalar("SELECT secret_hash FROM auth_clients WHERE client_id = 'ssh-proxy'")
            .fetch_one(&fx.pool)
            .await
            .expect("row");
    let stored = stored.expect("a hash");
    assert!(stored.starts_with("$argon2id$"), "{stored}");
    assert!(!stored.contains(&secret));
}

#[tokio::test]
async fn concurrent_redemptions_of_one_code_succeed_once() {
    let fx = Fixture::new().await;
    let (_, carol) = user(&fx, "carol", DEV_GROUPS).await;
    let code = ssh_code(&fx, &carol).await;
    let attempts = (0..8).map(|_| {
        let server = fx.server.clone();
        let code = code.clone();
        tokio::spawn(async move { server.redeem_code(&code, SSH_PROXY_CLIENT).await })
    });
    let mut granted = 0;
    for attempt in attempts {
        if attempt.await.expect("task").expect("redeem").is_some() {
            granted += 1;
        }
    }
    assert_eq!(granted, 1);
}
