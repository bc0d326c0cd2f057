//! Bearer-token auth: a small token realm and gate served here in front of a real
//! `docker-registry`, the way Docker Hub and most hosted registries work
//! (<https://distribution.github.io/distribution/spec/auth/token/>): the gate answers
//! 401 with `WWW-Authenticate: Bearer realm=…,service=…,scope=…` until the request
//! carries a token the realm issued, then forwards to the registry.

mod image_support;

use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::extract::{Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use image_support::{busybox, Compression, Entry, Layer, Layout, Registry, PASSWORD, USER};
use ingot_containers::image::{
    Credentials, ImageError, ImageStore, PullLimits, Reference, RegistryClient, RegistryConfig,
};
use serde_json::json;

/// (service, scope, user) of a token request.
type TokenRequest = (String, String, Option<String>);

#[derive(Clone)]
struct Gate {
    upstream: String,
    realm: String,
    /// Tokens issued, and the (service, scope, user) of each token request.
    issued: Arc<Mutex<Vec<String>>>,
    requests: Arc<Mutex<Vec<TokenRequest>>>,
}

async fn token(
    State(gate): State<Gate>,
    Query(params): Query<std::collections::HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let user = match headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        None => None,
        Some(value) => {
            use base64::Engine as _;
            let expected =
                base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{PASSWORD}"));
            if value != format!("Basic {expected}") {
                return (StatusCode::UNAUTHORIZED, r#"{"details":"bad credentials"}"#)
                    .into_response();
            }
            Some(USER.to_string())
        }
    };
    let service = params.get("service").cloned().unwrap_or_default();
    let scope = params.get("scope").cloned().unwrap_or_default();
    let token = format!("tok-{}", uuid::Uuid::new_v4());
    gate.issued.lock().expect("lock").push(token.clone());
    gate.requests
        .lock()
        .expect("lock")
        .push((service, scope, user));
    axum::Json(json!({"token": token, "expires_in": 300})).into_response()
}

async fn forward(State(gate): State<Gate>, request: Request) -> Response {
    let path = request.uri().path().to_string();
    let authorized = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|t| gate.issued.lock().expect("lock").iter().any(|i| i == t));
    if !authorized {
        let repository = path
            .strip_prefix("/v2/")
            .and_then(|p| {
                p.split_once("/manifests/")
                    .or_else(|| p.split_once("/blobs/"))
            })
            .map(|(repo, _)| repo.to_string());
        let mut challenge = format!(r#"Bearer realm="{}",service="ingot-test""#, gate.realm);
        if let Some(repo) = repository {
            challenge.push_str(&format!(r#",scope="repository:{repo}:pull""#));
        }
        let mut response = (StatusCode::UNAUTHORIZED, "{}").into_response();
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_str(&challenge).expect("header"),
        );
        return response;
    }
    let mut upstream = reqwest::Client::new().get(format!("{}{path}", gate.upstream));
    if let Some(accept) = request.headers().get(header::ACCEPT) {
        upstream = upstream.header(header::ACCEPT, accept.as_bytes());
    }
    let Ok(answer) = upstream.send().await else {
        return StatusCode::BAD_GATEWAY.into_response();
    };
    let status = StatusCode::from_u16(answer.status().as_u16()).expect("status");
    let content_type = answer.headers().get(header::CONTENT_TYPE).cloned();
    let body = answer.bytes().await.unwrap_or_default();
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    if let Some(ct) = content_type {
        response.headers_mut().insert(header::CONTENT_TYPE, ct);
    }
    response
}

/// Serves the gate on a loopback port; the task ends with the test's runtime.
async fn start_gate(upstream: String) -> (String, Gate) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let host = listener.local_addr().expect("addr").to_string();
    let gate = Gate {
        upstream,
        realm: format!("http://{host}/token"),
        issued: Arc::default(),
        requests: Arc::default(),
    };
    let app = Router::new()
        .route("/token", get(token))
        .fallback(forward)
        .with_state(gate.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (host, gate)
}

#[tokio::test]
async fn bearer_tokens_are_fetched_from_the_challenge_realm() {
    let registry = Registry::start(false);
    let dir = tempfile::tempdir().expect("tempdir");
    let mut layout = Layout::new(&dir.path().join("layout"));
    let layer = Layer::new(
        &[Entry::File("bin/busybox", &busybox(), 0o755)],
        Compression::Gzip,
    );
    let manifest = layout.image(&[&layer], json!({"Cmd": ["/bin/busybox", "true"]}), "amd64");
    layout.tag("app", &manifest);
    layout.push("app", &registry.host(), "team/app:1", false, false);

    let (gate_host, gate) = start_gate(format!("http://{}", registry.host())).await;
    let store_dir = tempfile::tempdir().expect("tempdir");
    let store = ImageStore::open(store_dir.path(), PullLimits::default()).expect("store");
    let client = RegistryClient::new(RegistryConfig::default()).expect("client");
    let r = Reference::parse(&format!("{gate_host}/team/app:1")).expect("reference");

    let wrong = Credentials {
        username: USER.into(),
        password: "wrong".into(),
    };
    let err = store
        .pull(&client, &r, Some(&wrong))
        .await
        .expect_err("wrong password");
    assert!(matches!(err, ImageError::Unauthorized { .. }), "{err}");

    let creds = Credentials {
        username: USER.into(),
        password: PASSWORD.into(),
    };
    let (record, _) = store
        .pull(&client, &r, Some(&creds))
        .await
        .expect("pull with a token");
    assert_eq!(record.id, manifest["digest"].as_str().expect("digest"));
    assert!(store
        .layer_dir(&layer.digest())
        .join("bin/busybox")
        .is_file());
    let requests = gate.requests.lock().expect("lock").clone();
    assert_eq!(
        requests,
        [(
            "ingot-test".to_string(),
            "repository:team/app:pull".to_string(),
            Some(USER.to_string())
        )],
        "one token, reused for the manifest, config and layer"
    );

    // Anonymous, on the same client: the token got with credentials is not reused,
    // the realm is asked again without them.
    store
        .pull(&client, &r, None)
        .await
        .expect("anonymous token");
    assert_eq!(gate.requests.lock().expect("lock").len(), 2);
    let last = gate
        .requests
        .lock()
        .expect("lock")
        .last()
        .cloned()
        .expect("request");
    assert_eq!(last.2, None);
}
