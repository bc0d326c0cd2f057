//! The router as clients and apps see it: real sockets on loopback, small
//! hyper backends, and a log sink that collects the `RTR` lines.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use ingot_logs::{Envelope, LogSink, Message};
use ingot_router::{Endpoint, RouteTable, Router};
use prometheus_client::registry::Registry;
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// A task aborted when the test lets go of it, pass or fail.
struct Task(JoinHandle<()>);

impl Drop for Task {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// An app instance: answers `<name>` then one `header: value` line per
/// request header, and counts its requests.
struct Backend {
    addr: SocketAddr,
    hits: Arc<AtomicUsize>,
    _task: Task,
}

async fn backend(name: &'static str) -> Backend {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind backend");
    let addr = listener.local_addr().expect("backend addr");
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    let task = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let counter = counter.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req: Request<Incoming>| {
                    counter.fetch_add(1, Ordering::SeqCst);
                    let login = req.uri().path() == "/login";
                    async move {
                        let mut text = format!("{name}\n");
                        for (k, v) in req.headers() {
                            text.push_str(&format!("{k}: {}\n", v.to_str().unwrap_or("?")));
                        }
                        let body = req
                            .into_body()
                            .collect()
                            .await
                            .map(|b| b.to_bytes())
                            .unwrap_or_default();
                        text.push_str(&format!("body: {}\n", String::from_utf8_lossy(&body)));
                        let mut response = Response::builder();
                        if login {
                            response =
                                response.header("set-cookie", "JSESSIONID=s1; Path=/; Max-Age=600");
                        }
                        Ok::<_, Infallible>(
                            response
                                .header("x-backend", name)
                                .header("keep-alive", "timeout=5")
                                .body(Full::new(Bytes::from(text)))
                                .expect("response builds"),
                        )
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Backend {
        addr,
        hits,
        _task: Task(task),
    }
}

/// A backend that reads the whole request, then resets the connection.
async fn resetting_backend(hits: Arc<AtomicUsize>) -> Backend {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind backend");
    let addr = listener.local_addr().expect("backend addr");
    let counter = hits.clone();
    let task = tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                return;
            };
            counter.fetch_add(1, Ordering::SeqCst);
            let mut seen = Vec::new();
            let mut buf = [0u8; 4096];
            while !String::from_utf8_lossy(&seen).contains("the-body") {
                match stream.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => seen.extend_from_slice(&buf[..n]),
                }
            }
            let _ = stream.set_zero_linger();
            drop(stream);
        }
    });
    Backend {
        addr,
        hits,
        _task: Task(task),
    }
}

/// An address nothing listens on.
async fn closed_port() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    listener.local_addr().expect("addr")
}

fn endpoint(addr: SocketAddr, app: &str, instance: &str, index: u32) -> Endpoint {
    Endpoint {
        addr,
        app_guid: app.into(),
        process_guid: format!("{app}-web"),
        instance_guid: instance.into(),
        index,
    }
}

#[derive(Default)]
struct Collect(Mutex<Vec<Envelope>>);

impl LogSink for Collect {
    fn emit(&self, envelope: Envelope) {
        self.0.lock().expect("not poisoned").push(envelope);
    }
}

impl Collect {
    fn lines(&self) -> Vec<(String, String, String)> {
        self.0
            .lock()
            .expect("not poisoned")
            .iter()
            .filter_map(|e| {
                // Only the RTR lines; the `http` timers are checked on their own.
                let Message::Log { payload, .. } = &e.message else {
                    return None;
                };
                let text = String::from_utf8_lossy(payload).into_owned();
                Some((e.source_id.clone(), e.instance_id.clone(), text))
            })
            .collect()
    }

    async fn wait_for(&self, n: usize) -> Vec<(String, String, String)> {
        for _ in 0..500 {
            let lines = self.lines();
            if lines.len() >= n {
                return lines;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("expected {n} RTR lines, got {:?}", self.lines());
    }
}

/// A running router; stops (and checks it stopped) when dropped.
struct Running {
    addr: SocketAddr,
    registry: Registry,
    logs: Arc<Collect>,
    stop: Option<oneshot::Sender<()>>,
    task: Task,
}

async fn start(table: &RouteTable) -> Running {
    let logs = Arc::new(Collect::default());
    let router = Router::new(table.clone(), logs.clone());
    let mut registry = Registry::default();
    router.register_metrics(&mut registry);
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind router");
    let addr = listener.local_addr().expect("router addr");
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        router
            .serve(listener, async {
                let _ = stopped.await;
            })
            .await
            .expect("router serves");
    });
    Running {
        addr,
        registry,
        logs,
        stop: Some(stop),
        task: Task(task),
    }
}

impl Running {
    fn metrics(&self) -> String {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry).expect("encodes");
        text
    }

    fn metric(&self, line_prefix: &str) -> Option<f64> {
        self.metrics()
            .lines()
            .find(|l| l.starts_with(line_prefix))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
    }

    async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let handle = &mut self.task.0;
        tokio::time::timeout(Duration::from_secs(10), handle)
            .await
            .expect("router stops after shutdown")
            .expect("router task did not panic");
    }
}

struct Answer {
    status: StatusCode,
    headers: http::HeaderMap,
    body: String,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The request headers the backend saw.
    fn seen(&self) -> BTreeMap<String, String> {
        self.body
            .lines()
            .skip(1)
            .filter_map(|l| l.split_once(": "))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect()
    }

    fn backend(&self) -> &str {
        self.body.lines().next().unwrap_or_default()
    }
}

async fn send(router: SocketAddr, request: Request<Full<Bytes>>) -> Answer {
    let stream = TcpStream::connect(router).await.expect("connect router");
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("handshake");
    tokio::spawn(connection);
    let response = sender.send_request(request).await.expect("router answers");
    let (parts, body) = response.into_parts();
    let body = body.collect().await.expect("body").to_bytes();
    Answer {
        status: parts.status,
        headers: parts.headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

fn get(host: &str, path: &str) -> http::request::Builder {
    Request::get(path).header("host", host)
}

async fn get_ok(router: SocketAddr, host: &str, path: &str) -> Answer {
    send(
        router,
        get(host, path).body(Full::default()).expect("request"),
    )
    .await
}

#[tokio::test]
async fn routes_by_host_ignoring_case_and_port() {
    let (a, b) = (backend("A").await, backend("B").await);
    let table = RouteTable::new();
    table.register("a.apps.test", endpoint(a.addr, "app-a", "a0", 0));
    table.register("b.apps.test", endpoint(b.addr, "app-b", "b0", 0));
    let router = start(&table).await;
    let answer = get_ok(router.addr, "A.Apps.TEST:8080", "/").await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.backend(), "A");
    assert_eq!(
        get_ok(router.addr, "b.apps.test", "/x").await.backend(),
        "B"
    );
    router.stop().await;
}

#[tokio::test]
async fn path_routes_take_the_longest_prefix() {
    let (root, api) = (backend("root").await, backend("api").await);
    let table = RouteTable::new();
    table.register("site.apps.test", endpoint(root.addr, "root", "r0", 0));
    table.register("site.apps.test/api", endpoint(api.addr, "api", "p0", 0));
    let router = start(&table).await;
    assert_eq!(
        get_ok(router.addr, "site.apps.test", "/api/users?q=1")
            .await
            .backend(),
        "api"
    );
    assert_eq!(
        get_ok(router.addr, "site.apps.test", "/api")
            .await
            .backend(),
        "api"
    );
    assert_eq!(
        get_ok(router.addr, "site.apps.test", "/apiary")
            .await
            .backend(),
        "root"
    );
    assert_eq!(
        get_ok(router.addr, "site.apps.test", "/").await.backend(),
        "root"
    );
    router.stop().await;
}

#[tokio::test]
async fn round_robin_reaches_every_instance() {
    let backends = [backend("0").await, backend("1").await, backend("2").await];
    let table = RouteTable::new();
    for (i, b) in backends.iter().enumerate() {
        table.register(
            "rr.apps.test",
            endpoint(b.addr, "app", &format!("i{i}"), i as u32),
        );
    }
    let router = start(&table).await;
    for _ in 0..6 {
        assert_eq!(
            get_ok(router.addr, "rr.apps.test", "/").await.status,
            StatusCode::OK
        );
    }
    let hits: Vec<usize> = backends
        .iter()
        .map(|b| b.hits.load(Ordering::SeqCst))
        .collect();
    assert_eq!(hits, [2, 2, 2]);
    router.stop().await;
}

#[tokio::test]
async fn unknown_host_is_404_unknown_route() {
    let router = start(&RouteTable::new()).await;
    let answer = get_ok(router.addr, "nope.apps.test", "/").await;
    assert_eq!(answer.status, StatusCode::NOT_FOUND);
    assert_eq!(answer.header("x-cf-routererror"), Some("unknown_route"));
    assert!(
        answer.body.contains("nope.apps.test') does not exist"),
        "{}",
        answer.body
    );
    assert_eq!(
        router.metric("router_requests_total{status_class=\"4xx\"}"),
        Some(1.0)
    );
    router.stop().await;
}

#[tokio::test]
async fn known_route_without_endpoints_is_503_no_endpoints() {
    let table = RouteTable::new();
    table.add_route("idle.apps.test");
    let router = start(&table).await;
    let answer = get_ok(router.addr, "idle.apps.test", "/").await;
    assert_eq!(answer.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(answer.header("x-cf-routererror"), Some("no_endpoints"));
    router.stop().await;
}

#[tokio::test]
async fn dead_endpoint_is_retried_past_then_skipped() {
    let (live1, live2) = (backend("live1").await, backend("live2").await);
    let table = RouteTable::new();
    // Registered first, so round robin tries it first.
    table.register(
        "mixed.apps.test",
        endpoint(closed_port().await, "app", "dead", 0),
    );
    table.register("mixed.apps.test", endpoint(live1.addr, "app", "l1", 1));
    table.register("mixed.apps.test", endpoint(live2.addr, "app", "l2", 2));
    let router = start(&table).await;
    let first = get_ok(router.addr, "mixed.apps.test", "/").await;
    assert_eq!(first.status, StatusCode::OK);
    assert_eq!(router.metric("router_retries_total"), Some(1.0));
    for _ in 0..6 {
        let answer = get_ok(router.addr, "mixed.apps.test", "/").await;
        assert_eq!(answer.status, StatusCode::OK);
    }
    // The dead endpoint was not dialled again: no more failures or retries.
    assert_eq!(router.metric("router_retries_total"), Some(1.0));
    assert_eq!(
        router.metric("router_backend_errors_total{kind=\"dial\"}"),
        Some(1.0)
    );
    assert_eq!(
        live1.hits.load(Ordering::SeqCst) + live2.hits.load(Ordering::SeqCst),
        7
    );
    router.stop().await;
}

#[tokio::test]
async fn only_dead_endpoints_give_502_after_at_most_three_attempts() {
    let table = RouteTable::new();
    for i in 0..4 {
        table.register(
            "dead.apps.test",
            endpoint(closed_port().await, "app", &format!("d{i}"), i),
        );
    }
    let router = start(&table).await;
    let answer = get_ok(router.addr, "dead.apps.test", "/").await;
    assert_eq!(answer.status, StatusCode::BAD_GATEWAY);
    assert_eq!(answer.header("x-cf-routererror"), Some("endpoint_failure"));
    assert_eq!(
        router.metric("router_backend_errors_total{kind=\"dial\"}"),
        Some(3.0)
    );
    router.stop().await;
}

#[tokio::test]
async fn backend_failing_after_reading_the_body_is_502_and_not_retried() {
    let hits = Arc::new(AtomicUsize::new(0));
    let (r1, r2) = (
        resetting_backend(hits.clone()).await,
        resetting_backend(hits.clone()).await,
    );
    let table = RouteTable::new();
    table.register("reset.apps.test", endpoint(r1.addr, "app", "r1", 0));
    table.register("reset.apps.test", endpoint(r2.addr, "app", "r2", 1));
    let router = start(&table).await;
    let request = Request::post("/upload")
        .header("host", "reset.apps.test")
        .body(Full::new(Bytes::from_static(b"the-body")))
        .expect("request");
    let answer = send(router.addr, request).await;
    assert_eq!(answer.status, StatusCode::BAD_GATEWAY);
    assert_eq!(answer.header("x-cf-routererror"), Some("endpoint_failure"));
    assert_eq!(hits.load(Ordering::SeqCst), 1);
    assert_eq!(router.metric("router_retries_total"), Some(0.0));
    router.stop().await;
}

#[tokio::test]
async fn forwarding_headers_reach_the_app_and_hop_by_hop_do_not() {
    let b = backend("app").await;
    let table = RouteTable::new();
    table.register(
        "hdr.apps.test",
        endpoint(b.addr, "app-guid", "inst-guid", 4),
    );
    let router = start(&table).await;
    let before = chrono::Utc::now().timestamp_millis();
    let request = get("hdr.apps.test", "/")
        .header("x-forwarded-for", "1.2.3.4")
        .header("connection", "keep-alive, x-secret")
        .header("x-secret", "hop")
        .header("x-custom", "kept")
        .body(Full::default())
        .expect("request");
    let answer = send(router.addr, request).await;
    let seen = answer.seen();
    assert_eq!(
        seen.get("x-forwarded-for").map(String::as_str),
        Some("1.2.3.4, 127.0.0.1")
    );
    assert_eq!(
        seen.get("x-forwarded-proto").map(String::as_str),
        Some("http")
    );
    let start: i64 = seen
        .get("x-request-start")
        .and_then(|v| v.parse().ok())
        .expect("x-request-start in ms");
    assert!(start >= before && start <= chrono::Utc::now().timestamp_millis());
    let request_id = seen.get("x-vcap-request-id").cloned().unwrap_or_default();
    assert!(uuid::Uuid::parse_str(&request_id).is_ok(), "{request_id}");
    assert_eq!(
        answer.header("x-vcap-request-id"),
        Some(request_id.as_str())
    );
    assert_eq!(
        seen.get("x-cf-instanceid").map(String::as_str),
        Some("inst-guid")
    );
    assert_eq!(
        seen.get("x-cf-instanceindex").map(String::as_str),
        Some("4")
    );
    assert_eq!(
        seen.get("x-cf-applicationid").map(String::as_str),
        Some("app-guid")
    );
    assert_eq!(seen.get("host").map(String::as_str), Some("hdr.apps.test"));
    assert_eq!(seen.get("x-custom").map(String::as_str), Some("kept"));
    assert!(!seen.contains_key("x-secret"));
    // The app's hop-by-hop response headers stay with the router.
    assert_eq!(answer.header("x-backend"), Some("app"));
    assert_eq!(answer.header("keep-alive"), None);

    let with_id = get("hdr.apps.test", "/")
        .header("x-vcap-request-id", "given-id")
        .body(Full::default())
        .expect("request");
    let answer = send(router.addr, with_id).await;
    assert_eq!(
        answer.seen().get("x-vcap-request-id").map(String::as_str),
        Some("given-id")
    );
    router.stop().await;
}

#[tokio::test]
async fn x_cf_app_instance_picks_the_instance() {
    let (i0, i1) = (backend("zero").await, backend("one").await);
    let table = RouteTable::new();
    table.register("pick.apps.test", endpoint(i0.addr, "app", "g0", 0));
    table.register("pick.apps.test", endpoint(i1.addr, "app", "g1", 1));
    let router = start(&table).await;
    for _ in 0..3 {
        let request = get("pick.apps.test", "/")
            .header("x-cf-app-instance", "app:1")
            .body(Full::default())
            .expect("request");
        assert_eq!(send(router.addr, request).await.backend(), "one");
    }
    for bad in ["app", "app:x", "app:7", "other:0"] {
        let request = get("pick.apps.test", "/")
            .header("x-cf-app-instance", bad)
            .body(Full::default())
            .expect("request");
        let answer = send(router.addr, request).await;
        assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{bad}");
        assert_eq!(
            answer.header("x-cf-routererror"),
            Some("invalid_cf_app_instance_header"),
            "{bad}"
        );
    }
    router.stop().await;
}

#[tokio::test]
async fn each_request_writes_one_rtr_line_to_the_apps_log() {
    let b = backend("app").await;
    let table = RouteTable::new();
    table.register(
        "log.apps.test",
        endpoint(b.addr, "app-guid", "inst-guid", 2),
    );
    let router = start(&table).await;
    let request = Request::post("/hello?x=1")
        .header("host", "log.apps.test")
        .header("user-agent", "test-agent/1")
        .header("x-vcap-request-id", "req-1")
        .body(Full::new(Bytes::from_static(b"12345")))
        .expect("request");
    let answer = send(router.addr, request).await;
    assert_eq!(answer.status, StatusCode::OK);
    let lines = router.logs.wait_for(1).await;
    assert_eq!(lines.len(), 1);
    let (source, instance, line) = &lines[0];
    assert_eq!((source.as_str(), instance.as_str()), ("app-guid", "2"));
    let envelopes = router.logs.0.lock().expect("not poisoned").clone();
    assert_eq!(envelopes.iter().find_map(|e| e.source_type()), Some("RTR"));
    let expected_start = format!(
        "log.apps.test - [{}",
        chrono::Utc::now().format("%Y-%m-%dT")
    );
    assert!(line.starts_with(&expected_start), "{line}");
    let tail = format!(
        "] \"POST /hello?x=1 HTTP/1.1\" 200 5 {} \"-\" \"test-agent/1\" \"127.0.0.1:",
        answer.body.len()
    );
    assert!(line.contains(&tail), "{line}");
    for part in [
        format!("\"{}\" x_forwarded_for:\"127.0.0.1\"", b.addr),
        "x_forwarded_proto:\"http\" vcap_request_id:\"req-1\" response_time:".to_owned(),
        "app_id:\"app-guid\" app_index:\"2\" instance_id:\"inst-guid\" x_cf_routererror:\"-\""
            .to_owned(),
    ] {
        assert!(line.contains(&part), "{part} not in {line}");
    }
    router.stop().await;
}

#[tokio::test]
async fn each_request_to_an_app_yields_one_http_timer() {
    let b = backend("app").await;
    let table = RouteTable::new();
    table.register(
        "timer.apps.test",
        endpoint(b.addr, "app-guid", "inst-guid", 1),
    );
    let router = start(&table).await;
    let before = chrono::Utc::now().timestamp_nanos_opt().expect("in range");
    let request = Request::put("/things/7?secret=1")
        .header("host", "timer.apps.test")
        .header("user-agent", "timer-agent/2")
        .header("x-forwarded-for", "203.0.113.9")
        .header("x-vcap-request-id", "f47ac10b-58cc-4372-a567-0e02b2c3d479")
        .body(Full::new(Bytes::from_static(b"abc")))
        .expect("request");
    let answer = send(router.addr, request).await;
    assert_eq!(answer.status, StatusCode::OK);
    router.logs.wait_for(1).await;
    let timers = || -> Vec<Envelope> {
        router
            .logs
            .0
            .lock()
            .expect("not poisoned")
            .iter()
            .filter(|e| matches!(&e.message, Message::Timer { name, .. } if name == "http"))
            .cloned()
            .collect()
    };
    // The timer follows the line from the same place: poll briefly for it.
    for _ in 0..500 {
        if !timers().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let timers = timers();
    assert_eq!(timers.len(), 1, "{timers:?}");
    let timer = &timers[0];
    assert_eq!(
        (timer.source_id.as_str(), timer.instance_id.as_str()),
        ("app-guid", "1")
    );
    let Message::Timer { start, stop, .. } = timer.message else {
        panic!("not a timer: {timer:?}");
    };
    assert!(before <= start && start <= stop, "{before} {start} {stop}");
    let tag = |k: &str| timer.tags.get(k).map(String::as_str);
    assert_eq!(tag("status_code"), Some("200"));
    assert_eq!(tag("method"), Some("PUT"));
    assert_eq!(tag("peer_type"), Some("Server"));
    assert_eq!(tag("uri"), Some("http://timer.apps.test/things/7"));
    assert_eq!(tag("user_agent"), Some("timer-agent/2"));
    assert_eq!(
        tag("request_id"),
        Some("f47ac10b-58cc-4372-a567-0e02b2c3d479")
    );
    assert_eq!(tag("instance_id"), Some("inst-guid"));
    assert_eq!(tag("instance_index"), Some("1"));
    assert_eq!(tag("forwarded"), Some("203.0.113.9\n127.0.0.1"));
    assert_eq!(
        tag("content_length"),
        Some(answer.body.len().to_string().as_str())
    );
    assert!(
        tag("remote_address").is_some_and(|a| a.starts_with("127.0.0.1:")),
        "{:?}",
        tag("remote_address")
    );
    // What /doppler serves for it: one HttpStartStop.
    let v1 = ingot_logs::dropsonde::to_v1(timer);
    assert_eq!(v1.len(), 1);
    let hss = v1[0].http_start_stop.clone().expect("an HttpStartStop");
    assert_eq!((hss.status_code, hss.method), (200, 3));
    assert_eq!(v1[0].origin, "gorouter");
    router.stop().await;
}

#[tokio::test]
async fn large_bodies_stream_through_both_ways() {
    let b = backend("app").await;
    let table = RouteTable::new();
    table.register("big.apps.test", endpoint(b.addr, "app", "i", 0));
    let router = start(&table).await;
    let payload = "x".repeat(3 * 1024 * 1024);
    let request = Request::put("/")
        .header("host", "big.apps.test")
        .body(Full::new(Bytes::from(payload.clone())))
        .expect("request");
    let answer = send(router.addr, request).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert!(answer.body.ends_with(&format!("body: {payload}\n")));
    router.stop().await;
}

#[tokio::test]
async fn sticky_sessions_follow_the_vcap_id_cookie() {
    let backends = [
        backend("s0").await,
        backend("s1").await,
        backend("s2").await,
    ];
    let table = RouteTable::new();
    for (i, b) in backends.iter().enumerate() {
        table.register(
            "sticky.apps.test",
            endpoint(b.addr, "app", &format!("g{i}"), i as u32),
        );
    }
    let router = start(&table).await;
    let login = get_ok(router.addr, "sticky.apps.test", "/login").await;
    let chosen = login.backend().trim_start_matches('s').to_owned();
    let cookie = format!("__VCAP_ID__=g{chosen}; Path=/; HttpOnly; Max-Age=600");
    let set: Vec<_> = login
        .headers
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    assert!(set.contains(&cookie.as_str()), "{set:?}");

    for _ in 0..4 {
        let request = get("sticky.apps.test", "/")
            .header("cookie", format!("JSESSIONID=s1; __VCAP_ID__=g{chosen}"))
            .body(Full::default())
            .expect("request");
        let answer = send(router.addr, request).await;
        assert_eq!(answer.backend(), format!("s{chosen}"));
        assert_eq!(answer.header("set-cookie"), None);
    }

    // The instance went away: another one answers and takes the session.
    table.unregister_instance(&format!("g{chosen}"));
    let request = get("sticky.apps.test", "/")
        .header("cookie", format!("JSESSIONID=s1; __VCAP_ID__=g{chosen}"))
        .body(Full::default())
        .expect("request");
    let answer = send(router.addr, request).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_ne!(answer.backend(), format!("s{chosen}"));
    let new_guid = format!("g{}", answer.backend().trim_start_matches('s'));
    assert_eq!(
        answer.header("set-cookie"),
        Some(format!("__VCAP_ID__={new_guid}; Path=/; HttpOnly").as_str())
    );
    router.stop().await;
}

#[tokio::test]
async fn one_client_connection_carries_many_requests_and_shutdown_closes_it() {
    let b = backend("ka").await;
    let table = RouteTable::new();
    table.register("ka.apps.test", endpoint(b.addr, "app", "k0", 0));
    let router = start(&table).await;
    let stream = TcpStream::connect(router.addr)
        .await
        .expect("connect router");
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("handshake");
    let connection = tokio::spawn(connection);
    for _ in 0..3 {
        let response = sender
            .send_request(
                get("ka.apps.test", "/")
                    .body(Full::<Bytes>::default())
                    .expect("request"),
            )
            .await
            .expect("router answers on the same connection");
        assert_eq!(response.status(), StatusCode::OK);
        response.into_body().collect().await.expect("body");
    }
    assert_eq!(b.hits.load(Ordering::SeqCst), 3);
    // An idle keep-alive connection must not hold the router up.
    router.stop().await;
    let closed = tokio::time::timeout(Duration::from_secs(10), connection).await;
    assert!(closed.is_ok(), "router left the idle connection open");
}
