//! The OSB client against hostile brokers: small axum servers that hang,
//! fail, lie about their JSON or flood the client. Each test checks the
//! error the caller sees and, from the server's side, that orphan
//! mitigation was sent exactly where the spec asks for it.

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use ingot_brokers::osb::{
    BindRequest, BrokerClient, BrokerEndpoint, BrokerError, ClientConfig, Context, Deprovisioned,
    OperationState, OriginatingIdentity, PlanRef, PreviousValues, ProvisionRequest, Provisioned,
    Unbound, UpdateRequest,
};

/// How a hostile broker answers one request.
#[derive(Clone)]
enum Reply {
    /// Never answers.
    Hang,
    /// This status and body (with a Content-Length).
    Text(u16, &'static str),
    /// This status, extra headers and body.
    WithHeaders(u16, Vec<(&'static str, &'static str)>, &'static str),
    /// This status and a JSON binding of `mib` MiB, streamed in chunks
    /// without a Content-Length.
    Flood(u16, usize),
    /// This status and a JSON binding of `mib` MiB with its Content-Length.
    Big(u16, usize),
}

/// One request as the hostile broker saw it.
#[derive(Debug, Clone)]
struct Seen {
    method: Method,
    path_and_query: String,
    originating_identity: Option<String>,
}

type Script = Arc<dyn Fn(&Method, &str) -> Reply + Send + Sync>;

struct Shared {
    script: Script,
    seen: Mutex<Vec<Seen>>,
}

/// A hostile broker on a loopback port; stopped on drop.
struct Hostile {
    endpoint: BrokerEndpoint,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Hostile {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Hostile {
    async fn start(script: impl Fn(&Method, &str) -> Reply + Send + Sync + 'static) -> Hostile {
        let shared = Arc::new(Shared {
            script: Arc::new(script),
            seen: Mutex::new(Vec::new()),
        });
        let app = axum::Router::new()
            .fallback(answer)
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Hostile {
            endpoint: BrokerEndpoint {
                url: format!("http://127.0.0.1:{port}"),
                username: "u".into(),
                password: "p".into(),
            },
            shared,
            task,
        }
    }

    /// `METHOD path?query` of every request, in order.
    fn seen(&self) -> Vec<String> {
        self.seen_full()
            .into_iter()
            .map(|s| format!("{} {}", s.method, s.path_and_query))
            .collect()
    }

    fn seen_full(&self) -> Vec<Seen> {
        self.shared.seen.lock().expect("lock").clone()
    }
}

async fn answer(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let path_and_query = uri
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_default();
    shared.seen.lock().expect("lock").push(Seen {
        method: method.clone(),
        path_and_query,
        originating_identity: headers
            .get("x-broker-api-originating-identity")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string),
    });
    let status = |code: u16| StatusCode::from_u16(code).expect("status");
    match (shared.script)(&method, uri.path()) {
        Reply::Hang => std::future::pending::<Response>().await,
        Reply::Text(code, body) => (status(code), body).into_response(),
        Reply::WithHeaders(code, headers, body) => {
            let mut response = (status(code), body).into_response();
            for (name, value) in headers {
                response
                    .headers_mut()
                    .insert(name, value.parse().expect("header value"));
            }
            response
        }
        Reply::Flood(code, mib) => {
            let head = Bytes::from_static(br#"{"credentials":{"blob":""#);
            let tail = Bytes::from_static(br#""}}"#);
            let chunks = std::iter::once(head)
                .chain((0..mib * 16).map(|_| Bytes::from(vec![b'x'; 64 * 1024])))
                .chain(std::iter::once(tail))
                .map(Ok::<_, Infallible>);
            (
                status(code),
                Body::from_stream(futures::stream::iter(chunks)),
            )
                .into_response()
        }
        Reply::Big(code, mib) => {
            let body = format!(
                r#"{{"credentials":{{"blob":"{}"}}}}"#,
                "x".repeat(mib << 20)
            );
            (status(code), body).into_response()
        }
    }
}

/// Calls time out after this long in these tests.
const TIMEOUT: Duration = Duration::from_millis(300);

fn client() -> BrokerClient {
    BrokerClient::new(ClientConfig {
        timeout: TIMEOUT,
        max_response_bytes: 1024 * 1024,
    })
    .expect("client")
}

fn user() -> OriginatingIdentity {
    OriginatingIdentity {
        user_id: "user-1".into(),
    }
}

fn context() -> Context {
    Context {
        platform: "cloudfoundry".into(),
        organization_guid: "org".into(),
        space_guid: "space".into(),
        organization_name: None,
        space_name: None,
        instance_name: None,
    }
}

fn provision_request() -> ProvisionRequest {
    ProvisionRequest {
        service_id: "svc".into(),
        plan_id: "plan".into(),
        organization_guid: "org".into(),
        space_guid: "space".into(),
        context: context(),
        parameters: None,
        maintenance_info: None,
    }
}

fn bind_request() -> BindRequest {
    BindRequest {
        service_id: "svc".into(),
        plan_id: "plan".into(),
        app_guid: Some("app".into()),
        bind_resource: None,
        context: context(),
        parameters: None,
    }
}

fn ids() -> PlanRef {
    PlanRef {
        service_id: "svc".into(),
        plan_id: "plan".into(),
    }
}

const PUT_INSTANCE: &str = "PUT /v2/service_instances/i1?accepts_incomplete=true";
const DELETE_INSTANCE: &str =
    "DELETE /v2/service_instances/i1?service_id=svc&plan_id=plan&accepts_incomplete=true";
const PUT_BINDING: &str =
    "PUT /v2/service_instances/i1/service_bindings/b1?accepts_incomplete=true";
const DELETE_BINDING: &str =
    "DELETE /v2/service_instances/i1/service_bindings/b1?service_id=svc&plan_id=plan&accepts_incomplete=true";

/// A broker that answers provisions and binds with `reply` and deletes with 200.
async fn creations_answered(reply: Reply) -> Hostile {
    Hostile::start(move |method, _path| match *method {
        Method::PUT => reply.clone(),
        _ => Reply::Text(200, "{}"),
    })
    .await
}

#[tokio::test]
async fn provision_that_never_answers_times_out_and_is_deprovisioned() {
    let broker = Hostile::start(|_, _| Reply::Hang).await;
    let started = Instant::now();
    let result = client()
        .provision(&broker.endpoint, "i1", &provision_request(), &user())
        .await;
    let took = started.elapsed();
    match result {
        Err(BrokerError::Timeout { url, call, after }) => {
            assert_eq!(
                (url.as_str(), call, after),
                (broker.endpoint.url.as_str(), "provision", TIMEOUT)
            );
        }
        other => panic!("expected a timeout: {other:?}"),
    }
    // The provision and the (also hanging) mitigation, each bounded.
    assert!(took < Duration::from_secs(3), "took {took:?}");
    assert_eq!(broker.seen(), [PUT_INSTANCE, DELETE_INSTANCE]);
    let seen = broker.seen_full();
    assert!(seen[0].originating_identity.is_some());
    // No user asked for the clean-up: no originating identity on it.
    assert_eq!(seen[1].originating_identity, None);
}

#[tokio::test]
async fn bind_that_never_answers_times_out_and_is_unbound() {
    let broker = creations_answered(Reply::Hang).await;
    let result = client()
        .bind(&broker.endpoint, "i1", "b1", &bind_request(), &user())
        .await;
    assert!(
        matches!(result, Err(BrokerError::Timeout { call: "bind", .. })),
        "{result:?}"
    );
    assert_eq!(broker.seen(), [PUT_BINDING, DELETE_BINDING]);
}

#[tokio::test]
async fn provision_answered_with_500_is_rejected_and_deprovisioned() {
    let broker = creations_answered(Reply::Text(
        500,
        r#"{"error":"InternalError","description":"disk on fire"}"#,
    ))
    .await;
    let result = client()
        .provision(&broker.endpoint, "i1", &provision_request(), &user())
        .await;
    match result {
        Err(BrokerError::Rejected {
            url,
            call,
            status,
            error,
            description,
        }) => {
            assert_eq!(url, broker.endpoint.url);
            assert_eq!((call, status), ("provision", 500));
            assert_eq!(error.as_deref(), Some("InternalError"));
            assert_eq!(description, "disk on fire");
        }
        other => panic!("expected Rejected: {other:?}"),
    }
    assert_eq!(broker.seen(), [PUT_INSTANCE, DELETE_INSTANCE]);
}

#[tokio::test]
async fn bind_answered_with_503_is_rejected_and_unbound() {
    let broker = creations_answered(Reply::Text(503, "<html>down</html>")).await;
    let result = client()
        .bind(&broker.endpoint, "i1", "b1", &bind_request(), &user())
        .await;
    match result {
        Err(BrokerError::Rejected {
            status: 503,
            description,
            ..
        }) => {
            assert_eq!(description, "<html>down</html>")
        }
        other => panic!("expected Rejected: {other:?}"),
    }
    assert_eq!(broker.seen(), [PUT_BINDING, DELETE_BINDING]);
}

#[tokio::test]
async fn malformed_catalog_json_is_malformed() {
    let broker = Hostile::start(|_, _| Reply::Text(200, r#"{"services":[{"id":"x","#)).await;
    let result = client().catalog(&broker.endpoint).await;
    match result {
        Err(BrokerError::Malformed { url, call, reason }) => {
            assert_eq!(
                (url.as_str(), call),
                (broker.endpoint.url.as_str(), "catalog")
            );
            assert!(reason.contains("not JSON"), "{reason}");
        }
        other => panic!("expected Malformed: {other:?}"),
    }
    let message = client()
        .catalog(&broker.endpoint)
        .await
        .expect_err("malformed")
        .to_string();
    assert!(
        message.contains(&broker.endpoint.url) && message.contains("catalog"),
        "{message}"
    );
}

#[tokio::test]
async fn catalog_with_duplicate_plan_ids_is_malformed() {
    let catalog = r#"{"services":[
        {"id":"a","name":"a","description":"a","bindable":true,
         "plans":[{"id":"p","name":"one","description":"d"}]},
        {"id":"b","name":"b","description":"b","bindable":true,
         "plans":[{"id":"p","name":"two","description":"d"}]}]}"#;
    let broker = Hostile::start(move |_, _| Reply::Text(200, catalog)).await;
    let result = client().catalog(&broker.endpoint).await;
    match result {
        Err(BrokerError::Malformed {
            call: "catalog",
            reason,
            ..
        }) => {
            assert_eq!(reason, r#"plan id "p" appears more than once"#);
        }
        other => panic!("expected Malformed: {other:?}"),
    }
}

#[tokio::test]
async fn provision_201_with_malformed_json_is_malformed_and_deprovisioned() {
    let broker = creations_answered(Reply::Text(201, r#"{"dashboard_url": "#)).await;
    let result = client()
        .provision(&broker.endpoint, "i1", &provision_request(), &user())
        .await;
    assert!(
        matches!(
            &result,
            Err(BrokerError::Malformed {
                call: "provision",
                ..
            })
        ),
        "{result:?}"
    );
    assert_eq!(broker.seen(), [PUT_INSTANCE, DELETE_INSTANCE]);
}

#[tokio::test]
async fn provision_200_with_malformed_json_is_malformed_without_mitigation() {
    // The spec's table: a 200 means the instance already existed, so an
    // unreadable 200 is a failure but not a reason to delete it.
    let broker = creations_answered(Reply::Text(200, "not json")).await;
    let result = client()
        .provision(&broker.endpoint, "i1", &provision_request(), &user())
        .await;
    assert!(
        matches!(&result, Err(BrokerError::Malformed { .. })),
        "{result:?}"
    );
    assert_eq!(broker.seen(), [PUT_INSTANCE]);
}

#[tokio::test]
async fn provision_with_an_unexpected_2xx_is_a_failure_and_deprovisioned() {
    let broker = creations_answered(Reply::Text(204, "")).await;
    let result = client()
        .provision(&broker.endpoint, "i1", &provision_request(), &user())
        .await;
    match &result {
        Err(BrokerError::Malformed { reason, .. }) => {
            assert!(reason.contains("unexpected status 204"), "{reason}")
        }
        other => panic!("expected Malformed: {other:?}"),
    }
    assert_eq!(broker.seen(), [PUT_INSTANCE, DELETE_INSTANCE]);
}

#[tokio::test]
async fn bind_with_10_mib_of_streamed_credentials_is_too_large_and_unbound() {
    let broker = creations_answered(Reply::Flood(201, 10)).await;
    let started = Instant::now();
    let result = client()
        .bind(&broker.endpoint, "i1", "b1", &bind_request(), &user())
        .await;
    match result {
        Err(BrokerError::TooLarge { url, call, limit }) => {
            assert_eq!(
                (url.as_str(), call, limit),
                (broker.endpoint.url.as_str(), "bind", 1024 * 1024)
            );
        }
        other => panic!("expected TooLarge: {other:?}"),
    }
    assert!(started.elapsed() < Duration::from_secs(3));
    assert_eq!(broker.seen(), [PUT_BINDING, DELETE_BINDING]);
}

#[tokio::test]
async fn declared_length_over_the_limit_is_too_large_and_unbound() {
    let broker = creations_answered(Reply::Big(201, 10)).await;
    let result = client()
        .bind(&broker.endpoint, "i1", "b1", &bind_request(), &user())
        .await;
    assert!(
        matches!(result, Err(BrokerError::TooLarge { call: "bind", .. })),
        "{result:?}"
    );
    assert_eq!(broker.seen(), [PUT_BINDING, DELETE_BINDING]);
}

#[tokio::test]
async fn too_large_catalog_is_refused() {
    let broker = Hostile::start(|_, _| Reply::Flood(200, 2)).await;
    let result = client().catalog(&broker.endpoint).await;
    assert!(
        matches!(
            result,
            Err(BrokerError::TooLarge {
                call: "catalog",
                ..
            })
        ),
        "{result:?}"
    );
}

#[tokio::test]
async fn deprovision_and_unbind_answered_410_are_done() {
    let broker = Hostile::start(|_, _| Reply::Text(410, "{}")).await;
    let client = client();
    let deprovisioned = client
        .deprovision(&broker.endpoint, "i1", &ids(), &user())
        .await
        .expect("410 is done");
    assert_eq!(deprovisioned, Deprovisioned::Done);
    let unbound = client
        .unbind(&broker.endpoint, "i1", "b1", &ids(), &user())
        .await
        .expect("410 is done");
    assert_eq!(unbound, Unbound::Done);
    assert_eq!(broker.seen(), [DELETE_INSTANCE, DELETE_BINDING]);
}

#[tokio::test]
async fn async_required_is_surfaced_with_its_code_and_no_mitigation() {
    let broker = creations_answered(Reply::Text(
        422,
        r#"{"error":"AsyncRequired","description":"This service plan requires client support for asynchronous service operations."}"#,
    ))
    .await;
    let result = client()
        .provision(&broker.endpoint, "i1", &provision_request(), &user())
        .await;
    match result {
        Err(BrokerError::Rejected {
            call,
            status,
            error,
            description,
            ..
        }) => {
            assert_eq!((call, status), ("provision", 422));
            assert_eq!(error.as_deref(), Some("AsyncRequired"));
            assert!(description.contains("asynchronous"), "{description}");
        }
        other => panic!("expected Rejected: {other:?}"),
    }
    assert_eq!(broker.seen(), [PUT_INSTANCE]);
}

#[tokio::test]
async fn update_failures_surface_the_code_and_never_mitigate() {
    let update = UpdateRequest {
        service_id: "svc".into(),
        plan_id: Some("bigger".into()),
        context: context(),
        parameters: None,
        maintenance_info: None,
        previous_values: PreviousValues {
            service_id: "svc".into(),
            plan_id: "plan".into(),
            organization_id: "org".into(),
            space_id: "space".into(),
            maintenance_info: None,
        },
    };
    for (reply, want_status, want_error) in [
        (
            Reply::Text(
                422,
                r#"{"error":"MaintenanceInfoConflict","description":"catalog changed"}"#,
            ),
            422,
            Some("MaintenanceInfoConflict"),
        ),
        (
            Reply::Text(422, r#"{"error":"ConcurrencyError"}"#),
            422,
            Some("ConcurrencyError"),
        ),
        (Reply::Text(500, "boom"), 500, None),
    ] {
        let broker = Hostile::start(move |_, _| reply.clone()).await;
        let result = client()
            .update(&broker.endpoint, "i1", &update, &user())
            .await;
        match result {
            Err(BrokerError::Rejected {
                call: "update",
                status,
                error,
                ..
            }) => {
                assert_eq!(status, want_status);
                assert_eq!(error.as_deref(), want_error);
            }
            other => panic!("expected Rejected: {other:?}"),
        }
        assert_eq!(
            broker.seen(),
            ["PATCH /v2/service_instances/i1?accepts_incomplete=true"]
        );
    }
    // A hanging update times out, and is not "mitigated" either.
    let broker = Hostile::start(|_, _| Reply::Hang).await;
    let result = client()
        .update(&broker.endpoint, "i1", &update, &user())
        .await;
    assert!(
        matches!(result, Err(BrokerError::Timeout { call: "update", .. })),
        "{result:?}"
    );
    assert_eq!(broker.seen().len(), 1);
}

#[tokio::test]
async fn unreachable_broker_is_reported_without_mitigation() {
    // A port nobody listens on: bind one, then free it.
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("addr").port()
    };
    let endpoint = BrokerEndpoint {
        url: format!("http://127.0.0.1:{port}"),
        username: "u".into(),
        password: "p".into(),
    };
    let result = client()
        .provision(&endpoint, "i1", &provision_request(), &user())
        .await;
    match result {
        Err(BrokerError::Unreachable { url, call, reason }) => {
            assert_eq!((url, call), (endpoint.url.clone(), "provision"));
            assert!(reason.to_lowercase().contains("refused"), "{reason}");
        }
        other => panic!("expected Unreachable: {other:?}"),
    }
}

#[tokio::test]
async fn redirects_are_not_followed() {
    let broker = Hostile::start(|_, path| {
        if path == "/v2/catalog" {
            Reply::WithHeaders(302, vec![("location", "/elsewhere")], "")
        } else {
            Reply::Text(200, r#"{"services":[]}"#)
        }
    })
    .await;
    let result = client().catalog(&broker.endpoint).await;
    assert!(
        matches!(result, Err(BrokerError::Rejected { status: 302, .. })),
        "{result:?}"
    );
    assert_eq!(broker.seen(), ["GET /v2/catalog"]);
}

#[tokio::test]
async fn an_operation_that_never_ends_keeps_reporting_in_progress_with_retry_after() {
    let broker = Hostile::start(|_, _| {
        Reply::WithHeaders(
            200,
            vec![("retry-after", "5")],
            r#"{"state":"in progress"}"#,
        )
    })
    .await;
    let client = client();
    for _ in 0..3 {
        let polled = client
            .instance_last_operation(&broker.endpoint, "i1", &ids(), Some("op 1"))
            .await
            .expect("poll");
        assert_eq!(polled.state, OperationState::InProgress);
        assert_eq!(polled.retry_after, Some(Duration::from_secs(5)));
    }
    assert_eq!(
        broker.seen()[0],
        "GET /v2/service_instances/i1/last_operation?service_id=svc&plan_id=plan&operation=op+1"
    );
}

#[tokio::test]
async fn provision_202_is_accepted_without_mitigation() {
    let broker = creations_answered(Reply::Text(202, r#"{"operation":"op"}"#)).await;
    let result = client()
        .provision(&broker.endpoint, "i1", &provision_request(), &user())
        .await
        .expect("202");
    assert_eq!(
        result,
        Provisioned::InProgress {
            operation: Some("op".into()),
            dashboard_url: None
        }
    );
    assert_eq!(broker.seen(), [PUT_INSTANCE]);
}
