//! Shared fixture of the in-process tests: a token server over a SQLite file
//! in a temporary directory, driven through its router with `oneshot`.

#![allow(dead_code)] // each test file uses a different part of the fixture

use std::path::{Path, PathBuf};

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use http_body_util::BodyExt;
use ingot_auth::{AuthConfig, AuthServer};
use serde_json::Value;
use sqlx::sqlite::SqliteConnectOptions;
use tower::ServiceExt;

pub const ISSUER: &str = "http://127.0.0.1:9000/uaa/oauth/token";
/// "cf:" — the cf CLI's client with its empty secret.
pub const CF_BASIC: &str = "Basic Y2Y6";

pub struct Fixture {
    // Removed on drop, also when a test fails.
    pub dir: tempfile::TempDir,
    pub pool: sqlx::SqlitePool,
    pub server: AuthServer,
}

pub fn config() -> AuthConfig {
    AuthConfig {
        issuer: ISSUER.to_owned(),
        ..AuthConfig::default()
    }
}

pub async fn pool(dir: &Path) -> sqlx::SqlitePool {
    let options = SqliteConnectOptions::new()
        .filename(dir.join("ingot.db"))
        .create_if_missing(true);
    sqlx::SqlitePool::connect_with(options).await.expect("pool")
}

impl Fixture {
    pub async fn new() -> Fixture {
        Self::with_config(config()).await
    }

    pub async fn with_config(config: AuthConfig) -> Fixture {
        let dir = tempfile::tempdir().expect("tempdir");
        let pool = pool(dir.path()).await;
        let server = AuthServer::open(pool.clone(), &dir.path().join("keys"), config)
            .await
            .expect("open");
        Fixture { dir, pool, server }
    }

    pub fn key_dir(&self) -> PathBuf {
        self.dir.path().join("keys")
    }

    /// Opens a second server on the same database and key directory, as a
    /// restart of the platform would.
    pub async fn reopen(&self) -> AuthServer {
        AuthServer::open(self.pool.clone(), &self.key_dir(), config())
            .await
            .expect("reopen")
    }

    pub async fn post_token(&self, authorization: Option<&str>, body: &str) -> (StatusCode, Value) {
        let mut request = Request::post("/oauth/token")
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(header::ACCEPT, "application/json");
        if let Some(authorization) = authorization {
            request = request.header(header::AUTHORIZATION, authorization);
        }
        let request = request.body(Body::from(body.to_owned())).expect("request");
        send(&self.server, request).await
    }

    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
        let request = Request::get(path)
            .header(header::ACCEPT, "application/json")
            .body(Body::empty())
            .expect("request");
        send(&self.server, request).await
    }

    /// A password grant as `cf login` sends it; panics unless it succeeds.
    pub async fn login(&self, username: &str, password: &str) -> Value {
        let body = form(&[
            ("grant_type", "password"),
            ("username", username),
            ("password", password),
        ]);
        let (status, json) = self.post_token(Some(CF_BASIC), &body).await;
        assert_eq!(status, StatusCode::OK, "{json}");
        json
    }

    pub async fn refresh(&self, refresh_token: &str) -> (StatusCode, Value) {
        let body = form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token),
        ]);
        self.post_token(Some(CF_BASIC), &body).await
    }
}

pub async fn send(server: &AuthServer, request: Request<Body>) -> (StatusCode, Value) {
    let response = server.router().oneshot(request).await.expect("response");
    let status = response.status();
    let bytes = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    let json = serde_json::from_slice(&bytes).unwrap_or_else(|e| {
        panic!(
            "{status}: body is not JSON ({e}): {}",
            String::from_utf8_lossy(&bytes)
        )
    });
    (status, json)
}

pub fn form(pairs: &[(&str, &str)]) -> String {
    serde_urlencoded::to_string(pairs).expect("form")
}

pub fn bearer(token: &Value) -> String {
    format!("bearer {}", token.as_str().expect("token is a string"))
}
