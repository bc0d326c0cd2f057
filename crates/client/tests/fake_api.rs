//! The client against a small in-process fake of the platform's HTTP
//! surface (axum on loopback, port 0): login, token refresh on
//! `CF-InvalidAuthToken`, error envelopes, pagination, jobs, the multipart
//! upload with progress, and log-cache reads.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Multipart, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Form, Json, Router};
use ingot_client::resources::{Checksum, MatchResource};
use ingot_client::{Client, ClientError, Progress, ReadQuery};
use serde_json::{json, Value};

#[derive(Default)]
struct Fake {
    base: String,
    /// The access token the API currently accepts.
    valid_token: Mutex<String>,
    refreshes: AtomicU64,
    uploaded: Mutex<Option<(Value, usize)>>,
    job_polls: AtomicU64,
}

type S = Arc<Fake>;

fn cf_error(status: StatusCode, code: i64, title: &str, detail: &str) -> Response {
    (
        status,
        Json(json!({"errors": [{"code": code, "title": title, "detail": detail}]})),
    )
        .into_response()
}

/// The 401 answer for a request without the currently valid token.
fn unauthorized(s: &Fake, headers: &HeaderMap) -> Option<Response> {
    let Some(auth) = headers.get("authorization").and_then(|v| v.to_str().ok()) else {
        return Some(cf_error(
            StatusCode::UNAUTHORIZED,
            10002,
            "CF-NotAuthenticated",
            "Authentication error",
        ));
    };
    let want = format!("bearer {}", s.valid_token.lock().expect("lock"));
    if auth != want {
        return Some(cf_error(
            StatusCode::UNAUTHORIZED,
            1000,
            "CF-InvalidAuthToken",
            "Invalid Auth Token",
        ));
    }
    None
}

async fn root(State(s): State<S>) -> Json<Value> {
    let b = &s.base;
    Json(json!({"links": {
        "self": {"href": b},
        "cloud_controller_v3": {"href": format!("{b}/v3"), "meta": {"version": "3.0.0"}},
        "login": {"href": format!("{b}/uaa")},
        "uaa": {"href": format!("{b}/uaa")},
        "log_cache": {"href": format!("{b}/log-cache")},
        "app_ssh": null
    }}))
}

async fn token(
    State(s): State<S>,
    headers: HeaderMap,
    Form(form): Form<std::collections::HashMap<String, String>>,
) -> Response {
    // HTTP Basic "cf:" (empty secret), as the cf CLI sends it.
    let basic = headers.get("authorization").and_then(|v| v.to_str().ok());
    if basic != Some("Basic Y2Y6") {
        return (
            StatusCode::UNAUTHORIZED,
            Json(json!({"error": "invalid_client"})),
        )
            .into_response();
    }
    let grant = form.get("grant_type").map(String::as_str);
    let ok = match grant {
        Some("password") => {
            form.get("username").map(String::as_str) == Some("admin")
                && form.get("password").map(String::as_str) == Some("secret")
        }
        Some("refresh_token") => form.get("refresh_token").map(String::as_str) == Some("refresh-1"),
        _ => false,
    };
    if !ok {
        return (
            StatusCode::UNAUTHORIZED,
            Json(json!({"error": "unauthorized", "error_description": "Bad credentials"})),
        )
            .into_response();
    }
    if grant == Some("refresh_token") {
        s.refreshes.fetch_add(1, Ordering::SeqCst);
    }
    // A JWT-shaped token whose claims name the user.
    let claims = base64_url(r#"{"user_name":"admin","scope":["cloud_controller.admin"]}"#);
    let access = format!("h.{claims}.{}", s.refreshes.load(Ordering::SeqCst));
    *s.valid_token.lock().expect("lock") = access.clone();
    Json(json!({"access_token": access, "refresh_token": "refresh-1", "token_type": "bearer", "expires_in": 1199}))
        .into_response()
}

fn base64_url(s: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s)
}

async fn orgs(
    State(s): State<S>,
    headers: HeaderMap,
    Query(q): Query<std::collections::HashMap<String, String>>,
) -> Response {
    if let Some(r) = unauthorized(&s, &headers) {
        return r;
    }
    let b = &s.base;
    match q.get("page").map(String::as_str) {
        None | Some("1") => Json(json!({
            "pagination": {"total_results": 2, "total_pages": 2,
                "next": {"href": format!("{b}/v3/organizations?page=2&order_by=name")}},
            "resources": [{"guid": "o1", "name": "alpha"}]
        }))
        .into_response(),
        _ => Json(json!({
            "pagination": {"total_results": 2, "total_pages": 2, "next": null},
            "resources": [{"guid": "o2", "name": "main"}]
        }))
        .into_response(),
    }
}

async fn spaces(
    State(s): State<S>,
    headers: HeaderMap,
    Query(q): Query<std::collections::HashMap<String, String>>,
) -> Response {
    if let Some(r) = unauthorized(&s, &headers) {
        return r;
    }
    let org = q.get("organization_guids").cloned().unwrap_or_default();
    Json(json!({
        "pagination": {"total_results": 2, "total_pages": 1, "next": null},
        "resources": [
            {"guid": format!("{org}-s1"), "name": "dev", "relationships": {"organization": {"data": {"guid": org}}}},
            {"guid": format!("{org}-s2"), "name": "prod", "relationships": {"organization": {"data": {"guid": org}}}}
        ]
    }))
    .into_response()
}

async fn app(State(s): State<S>, headers: HeaderMap, Path(guid): Path<String>) -> Response {
    if let Some(r) = unauthorized(&s, &headers) {
        return r;
    }
    if guid == "a1" {
        return Json(json!({"guid": "a1", "name": "web", "state": "STARTED",
            "lifecycle": {"type": "buildpack", "data": {"buildpacks": ["staticfile_buildpack"], "stack": "cflinuxfs4"}}}))
        .into_response();
    }
    cf_error(
        StatusCode::NOT_FOUND,
        10010,
        "CF-ResourceNotFound",
        "App not found",
    )
}

async fn apply_manifest(
    State(s): State<S>,
    headers: HeaderMap,
    Path(space): Path<String>,
    body: String,
) -> Response {
    if let Some(r) = unauthorized(&s, &headers) {
        return r;
    }
    let content_type = headers.get("content-type").and_then(|v| v.to_str().ok());
    if content_type != Some("application/x-yaml") || !body.contains("name: web") {
        return cf_error(
            StatusCode::UNPROCESSABLE_ENTITY,
            10008,
            "CF-UnprocessableEntity",
            "bad manifest",
        );
    }
    let job = if space == "bad" { "failing" } else { "j1" };
    (
        StatusCode::ACCEPTED,
        [("location", format!("{}/v3/jobs/{job}", s.base))],
    )
        .into_response()
}

async fn job(State(s): State<S>, headers: HeaderMap, Path(guid): Path<String>) -> Response {
    if let Some(r) = unauthorized(&s, &headers) {
        return r;
    }
    let polls = s.job_polls.fetch_add(1, Ordering::SeqCst);
    if guid == "failing" {
        return Json(json!({"guid": guid, "state": "FAILED", "operation": "app.apply_manifest",
            "errors": [{"code": 10008, "title": "CF-UnprocessableEntity", "detail": "Buildpack \"nope\" must be an existing admin buildpack"}]}))
        .into_response();
    }
    let state = if polls == 0 { "PROCESSING" } else { "COMPLETE" };
    Json(json!({"guid": guid, "state": state, "operation": "app.apply_manifest", "errors": []}))
        .into_response()
}

async fn upload(
    State(s): State<S>,
    headers: HeaderMap,
    Path(guid): Path<String>,
    mut multipart: Multipart,
) -> Response {
    if let Some(r) = unauthorized(&s, &headers) {
        return r;
    }
    let mut resources = Value::Null;
    let mut bits = 0usize;
    while let Ok(Some(field)) = multipart.next_field().await {
        match field.name() {
            Some("resources") => {
                let text = field.text().await.unwrap_or_default();
                resources = serde_json::from_str(&text).unwrap_or(Value::Null);
            }
            Some("bits") => {
                assert_eq!(field.file_name(), Some("application.zip"));
                bits = field.bytes().await.map(|b| b.len()).unwrap_or(0);
            }
            _ => {}
        }
    }
    *s.uploaded.lock().expect("lock") = Some((resources, bits));
    Json(json!({"guid": guid, "type": "bits", "state": "PROCESSING_UPLOAD", "data": {}}))
        .into_response()
}

async fn package(State(s): State<S>, headers: HeaderMap, Path(guid): Path<String>) -> Response {
    if let Some(r) = unauthorized(&s, &headers) {
        return r;
    }
    if guid == "broken" {
        return Json(json!({"guid": guid, "type": "bits", "state": "FAILED",
            "data": {"error": "the zip is corrupt: invalid central directory"}}))
        .into_response();
    }
    Json(json!({"guid": guid, "type": "bits", "state": "READY", "data": {}})).into_response()
}

async fn read_logs(
    State(s): State<S>,
    headers: HeaderMap,
    Path(source): Path<String>,
    Query(q): Query<std::collections::HashMap<String, String>>,
) -> Response {
    if let Some(r) = unauthorized(&s, &headers) {
        return r;
    }
    assert_eq!(q.get("envelope_types").map(String::as_str), Some("LOG"));
    let descending = q.get("descending").map(String::as_str) == Some("true");
    let mut batch = vec![
        json!({"timestamp": "300", "source_id": source, "instance_id": "0",
            "tags": {"source_type": "APP/PROC/WEB"}, "log": {"payload": "dGhpcmQ=", "type": "OUT"}}),
        json!({"timestamp": "200", "source_id": source, "instance_id": "0",
            "tags": {"source_type": "STG"}, "log": {"payload": "c2Vjb25k", "type": "OUT"}}),
        json!({"timestamp": "100", "source_id": source, "instance_id": "0",
            "tags": {"source_type": "STG"}, "log": {"payload": "Zmlyc3Q=", "type": "ERR"}}),
    ];
    if !descending {
        batch.reverse();
    }
    let start: i64 = q
        .get("start_time")
        .and_then(|t| t.parse().ok())
        .unwrap_or(0);
    batch.retain(|e| {
        e["timestamp"]
            .as_str()
            .and_then(|t| t.parse::<i64>().ok())
            .unwrap_or(0)
            >= start
    });
    Json(json!({"envelopes": {"batch": batch}})).into_response()
}

struct Server {
    base: String,
    state: S,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn start() -> Server {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let state = Arc::new(Fake {
        base: base.clone(),
        ..Fake::default()
    });
    let router = Router::new()
        .route("/", get(root))
        .route("/uaa/oauth/token", post(token))
        .route("/v3/organizations", get(orgs))
        .route("/v3/spaces", get(spaces))
        .route("/v3/apps/{guid}", get(app))
        .route(
            "/v3/spaces/{guid}/actions/apply_manifest",
            post(apply_manifest),
        )
        .route("/v3/jobs/{guid}", get(job))
        .route("/v3/packages/{guid}/upload", post(upload))
        .route("/v3/packages/{guid}", get(package))
        .route("/log-cache/api/v1/read/{guid}", get(read_logs))
        .with_state(state.clone());
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    Server { base, state, task }
}

async fn logged_in(server: &Server) -> Client {
    let client = Client::connect(&server.base).await.expect("connect");
    client.login("admin", "secret").await.expect("login");
    client
}

#[tokio::test]
async fn connect_reads_the_links_and_login_gets_tokens() {
    let server = start().await;
    let client = Client::connect(&format!("{}/", server.base))
        .await
        .expect("connect");
    let ep = client.endpoints();
    assert_eq!(ep.api, server.base);
    assert_eq!(ep.uaa, format!("{}/uaa", server.base));
    assert_eq!(ep.log_cache, format!("{}/log-cache", server.base));
    assert!(client.tokens().is_none());

    client.login("admin", "secret").await.expect("login");
    let tokens = client.tokens().expect("tokens");
    assert_eq!(tokens.refresh_token.as_deref(), Some("refresh-1"));
    assert_eq!(tokens.user_name().as_deref(), Some("admin"));
}

#[tokio::test]
async fn a_bad_password_is_an_oauth_error() {
    let server = start().await;
    let client = Client::connect(&server.base).await.expect("connect");
    let err = client.login("admin", "wrong").await.expect_err("refused");
    match &err {
        ClientError::OAuth {
            status,
            error,
            description,
            ..
        } => {
            assert_eq!(*status, 401);
            assert_eq!(error, "unauthorized");
            assert_eq!(description.as_deref(), Some("Bad credentials"));
        }
        other => panic!("expected an OAuth error, got {other:?}"),
    }
    assert!(err.to_string().contains("Bad credentials"), "{err}");
}

#[tokio::test]
async fn an_expired_token_is_refreshed_once_and_the_call_retried() {
    let server = start().await;
    let client = logged_in(&server).await;
    // The server stops accepting the current token, as when it expires.
    *server.state.valid_token.lock().expect("lock") = "something-else".into();
    let before = client.tokens().expect("tokens").access_token;
    // The refresh makes the server accept the new token again.
    let orgs = client
        .organizations(None)
        .await
        .expect("orgs after refresh");
    assert_eq!(server.state.refreshes.load(Ordering::SeqCst), 1);
    assert_ne!(client.tokens().expect("tokens").access_token, before);
    // Pagination was followed to the second page.
    let names: Vec<&str> = orgs.iter().map(|o| o.name.as_str()).collect();
    assert_eq!(names, vec!["alpha", "main"]);
}

#[tokio::test]
async fn no_login_and_a_refused_refresh_both_say_log_in_again() {
    let server = start().await;
    let client = Client::connect(&server.base).await.expect("connect");
    let err = client.organizations(None).await.expect_err("no token");
    assert!(err.needs_login(), "{err}");

    let client = logged_in(&server).await;
    let endpoints = client.endpoints().clone();
    let stale = Client::new(
        endpoints,
        Some(ingot_client::Tokens {
            access_token: "stale".into(),
            refresh_token: Some("revoked".into()),
        }),
    );
    let err = stale
        .organizations(None)
        .await
        .expect_err("refresh refused");
    assert!(err.needs_login(), "{err}");
}

#[tokio::test]
async fn cf_error_envelopes_carry_code_title_detail_and_status() {
    let server = start().await;
    let client = logged_in(&server).await;
    let app = client.app("a1").await.expect("app");
    assert_eq!(app.name, "web");
    assert_eq!(app.lifecycle.data.buildpacks, vec!["staticfile_buildpack"]);

    let err = client.app("missing").await.expect_err("404");
    assert_eq!(err.status(), Some(404));
    let item = err.api_error().expect("cf error");
    assert_eq!(item.code, 10010);
    assert_eq!(item.title, "CF-ResourceNotFound");
    assert_eq!(item.detail, "App not found");
    assert!(err.to_string().contains("App not found"), "{err}");
}

#[tokio::test]
async fn apply_manifest_returns_a_job_that_is_polled_to_completion() {
    let server = start().await;
    let client = logged_in(&server).await;
    let job = client
        .apply_manifest("s1", "applications:\n- name: web\n")
        .await
        .expect("accepted");
    assert_eq!(job, format!("{}/v3/jobs/j1", server.base));
    let done = client
        .wait_job(&job, Duration::from_secs(10))
        .await
        .expect("complete");
    assert_eq!(done.state, "COMPLETE");
    assert!(
        server.state.job_polls.load(Ordering::SeqCst) >= 2,
        "polled past PROCESSING"
    );

    let job = client
        .apply_manifest("bad", "applications:\n- name: web\n")
        .await
        .expect("accepted");
    let err = client
        .wait_job(&job, Duration::from_secs(10))
        .await
        .expect_err("failed");
    assert!(
        err.to_string()
            .contains("must be an existing admin buildpack"),
        "{err}"
    );
}

#[tokio::test]
async fn upload_sends_resources_and_bits_and_reports_progress() {
    let server = start().await;
    let client = logged_in(&server).await;
    let matched = vec![MatchResource {
        checksum: Checksum {
            value: "b907173290db6a155949ab4dc9b2d019dea0c901".into(),
        },
        size_in_bytes: 123,
        path: "lib/big.bin".into(),
        mode: "644".into(),
    }];
    let zip = vec![7u8; 200_000];
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = seen.clone();
    let progress: Progress =
        Arc::new(move |sent, total| record.lock().expect("lock").push((sent, total)));
    client
        .upload_package("p1", &matched, Some(zip.into()), Some(progress))
        .await
        .expect("upload");
    let (resources, bits) = server
        .state
        .uploaded
        .lock()
        .expect("lock")
        .clone()
        .expect("uploaded");
    assert_eq!(bits, 200_000);
    assert_eq!(resources[0]["path"], "lib/big.bin");
    assert_eq!(
        resources[0]["checksum"]["value"],
        "b907173290db6a155949ab4dc9b2d019dea0c901"
    );
    assert_eq!(resources[0]["size_in_bytes"], 123);
    {
        let seen = seen.lock().expect("lock");
        assert!(seen.len() > 1, "progress reported in steps: {seen:?}");
        assert_eq!(seen.last(), Some(&(200_000, 200_000)));
    }

    let ready = client
        .wait_package_ready("p1", Duration::from_secs(5))
        .await
        .expect("ready");
    assert_eq!(ready.state, "READY");
    let err = client
        .wait_package_ready("broken", Duration::from_secs(5))
        .await
        .expect_err("failed package");
    assert!(
        err.to_string().contains("invalid central directory"),
        "{err}"
    );
}

#[tokio::test]
async fn log_cache_reads_recent_lines_oldest_first_and_tails_without_repeats() {
    let server = start().await;
    let client = logged_in(&server).await;
    let recent = client.recent_logs("a1").await.expect("recent");
    let texts: Vec<String> = recent.iter().map(|e| e.text()).collect();
    assert_eq!(texts, vec!["first", "second", "third"]);
    assert_eq!(
        recent[0].log.as_ref().and_then(|l| l.kind.as_deref()),
        Some("ERR")
    );

    let some = client
        .read_logs(
            "a1",
            &ReadQuery {
                start_time: Some(150),
                ..ReadQuery::default()
            },
        )
        .await
        .expect("read");
    assert_eq!(some.len(), 2);

    let mut tail = ingot_client::LogTail::new("a1", 200);
    let first: Vec<String> = tail
        .poll(&client)
        .await
        .expect("poll")
        .iter()
        .map(|e| e.text())
        .collect();
    assert_eq!(first, vec!["second", "third"]);
    let again = tail.poll(&client).await.expect("poll");
    assert!(again.is_empty(), "nothing new, nothing repeated: {again:?}");
}

#[tokio::test]
async fn raw_requests_return_error_bodies_like_cf_curl() {
    let server = start().await;
    let client = logged_in(&server).await;
    let (status, body) = client
        .request(ingot_client::Method::GET, "/v3/apps/missing", None, &[])
        .await
        .expect("request");
    assert_eq!(status, 404);
    let v: Value = serde_json::from_str(&body).expect("json");
    assert_eq!(v["errors"][0]["title"], "CF-ResourceNotFound");
    let (status, body) = client
        .request(ingot_client::Method::GET, "v3/apps/a1", None, &[])
        .await
        .expect("request");
    assert_eq!(status, 200);
    assert!(body.contains("\"web\""));
}

#[tokio::test]
async fn login_first_target_picks_the_first_org_and_space() {
    let server = start().await;
    let config = ingot_client::config::Config::login_first_target(&server.base, "admin", "secret")
        .await
        .expect("login");
    let org = config.org.expect("org targeted");
    assert_eq!((org.guid.as_str(), org.name.as_str()), ("o1", "alpha"));
    let space = config.space.expect("space targeted");
    assert_eq!((space.guid.as_str(), space.name.as_str()), ("o1-s1", "dev"));
    assert_eq!(config.user.as_deref(), Some("admin"));
    assert!(config.tokens.is_some());
    assert_eq!(config.endpoints.expect("endpoints").api, server.base);

    let err = ingot_client::config::Config::login_first_target(&server.base, "admin", "nope")
        .await
        .expect_err("bad password");
    assert!(err.to_string().contains("Bad credentials"), "{err}");
}

#[tokio::test]
async fn an_unreachable_platform_names_the_url_and_the_reason() {
    // A port that was free a moment ago: nothing listens there now.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    drop(listener);
    let err = Client::connect(&format!("http://{addr}"))
        .await
        .expect_err("nothing listens");
    let text = err.to_string();
    assert!(text.contains(&addr.to_string()), "{text}");
    assert!(text.to_lowercase().contains("refused"), "{text}");
    assert!(matches!(err, ClientError::Transport { .. }));
}
