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

/// A response whose body may be empty (a redirect) or JSON.
pub struct Raw {
    pub status: StatusCode,
    pub headers: axum::http::HeaderMap,
    pub body: Value,
}

pub async fn send_raw(server: &AuthServer, request: Request<Body>) -> Raw {
    let response = server.router().oneshot(request).await.expect("response");
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    let body = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes).unwrap_or_else(|e| {
            panic!(
                "{status}: body is not JSON ({e}): {}",
                String::from_utf8_lossy(&bytes)
            )
        })
    };
    Raw {
        status,
        headers,
        body,
    }
}

impl Fixture {
    /// A request with an optional `Authorization` header and JSON body.
    pub async fn call(
        &self,
        method: &str,
        path: &str,
        authorization: Option<&str>,
        body: Option<Value>,
    ) -> Raw {
        let mut request = Request::builder()
            .method(method)
            .uri(path)
            .header(header::ACCEPT, "application/json");
        if let Some(authorization) = authorization {
            request = request.header(header::AUTHORIZATION, authorization);
        }
        let body = match body {
            Some(json) => {
                request = request.header(header::CONTENT_TYPE, "application/json");
                Body::from(json.to_string())
            }
            None => Body::empty(),
        };
        send_raw(&self.server, request.body(body).expect("request")).await
    }

    /// Creates the admin and returns "bearer <its cf token>".
    pub async fn admin_bearer(&self) -> String {
        let credentials = self
            .server
            .ensure_admin(&self.dir.path().join("admin.json"))
            .await
            .expect("admin");
        let login = self.login("admin", &credentials.password).await;
        bearer(&login["access_token"])
    }

    /// Logs `username` in through the cf client; "bearer <token>".
    pub async fn user_bearer(&self, username: &str, password: &str) -> String {
        bearer(&self.login(username, password).await["access_token"])
    }

    /// The Prometheus text of the server's metrics.
    pub fn metrics_text(&self) -> String {
        let mut registry = prometheus_client::registry::Registry::default();
        self.server.register_metrics(&mut registry);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).expect("encode");
        text
    }
}

/// URL-encodes a query value (filters contain spaces and quotes).
pub fn q(value: &str) -> String {
    serde_urlencoded::to_string([("v", value)])
        .expect("encode")
        .trim_start_matches("v=")
        .to_owned()
}

pub fn basic(client_id: &str, secret: &str) -> String {
    use base64::Engine;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{client_id}:{secret}"))
    )
}
