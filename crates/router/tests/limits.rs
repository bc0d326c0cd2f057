//! The router's limits and its defences against hostile clients, as a
//! client on a raw socket sees them: oversized heads, request smuggling,
//! slow and idle clients, backend connection caps, backends that never
//! answer; and requests that outlive a route change or a shutdown.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use ingot_logs::{Envelope, LogSink};
use ingot_router::{Endpoint, RouteTable, Router, RouterConfig};
use prometheus_client::registry::Registry;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

/// A task aborted when the test lets go of it, pass or fail.
struct Task(JoinHandle<()>);

impl Drop for Task {
    fn drop(&mut self) {
        self.0.abort();
    }
}

struct NoLogs;

impl LogSink for NoLogs {
    fn emit(&self, _: Envelope) {}
}

/// An app that reports each request's path as it arrives and answers only
/// once `release` turns true (at once if it already is). It counts the
/// requests it saw.
struct Backend {
    addr: SocketAddr,
    hits: Arc<AtomicUsize>,
    arrived: mpsc::UnboundedReceiver<String>,
    release: watch::Sender<bool>,
    _task: Task,
}

async fn backend(released: bool) -> Backend {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind backend");
    let addr = listener.local_addr().expect("backend addr");
    let hits = Arc::new(AtomicUsize::new(0));
    let (arrived_tx, arrived) = mpsc::unbounded_channel();
    let (release, release_rx) = watch::channel(released);
    let counter = hits.clone();
    let task = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let counter = counter.clone();
            let arrived_tx = arrived_tx.clone();
            let release_rx = release_rx.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req: Request<Incoming>| {
                    counter.fetch_add(1, Ordering::SeqCst);
                    let _ = arrived_tx.send(req.uri().path().to_owned());
                    let mut release_rx = release_rx.clone();
                    async move {
                        let body = req.into_body().collect().await.map(|b| b.to_bytes());
                        let _ = release_rx.wait_for(|released| *released).await;
                        let text = match body {
                            Ok(body) => format!("ok {}", body.len()),
                            Err(_) => "body failed".to_owned(),
                        };
                        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(text))))
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
        arrived,
        release,
        _task: Task(task),
    }
}

impl Backend {
    async fn wait_arrival(&mut self) -> String {
        tokio::time::timeout(Duration::from_secs(10), self.arrived.recv())
            .await
            .expect("request reaches the backend in time")
            .expect("backend still running")
    }
}

fn endpoint(addr: SocketAddr, instance: &str) -> Endpoint {
    Endpoint {
        addr,
        app_guid: "app".into(),
        process_guid: "app-web".into(),
        instance_guid: instance.into(),
        index: 0,
    }
}

/// A running router; aborted when dropped.
struct Running {
    addr: SocketAddr,
    registry: Registry,
    stop: Option<oneshot::Sender<()>>,
    task: Task,
}

async fn start(table: &RouteTable, config: RouterConfig) -> Running {
    let router = Router::new(table.clone(), Arc::new(NoLogs)).with_config(config);
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
        stop: Some(stop),
        task: Task(task),
    }
}

impl Running {
    fn metric(&self, line_prefix: &str) -> Option<f64> {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry).expect("encodes");
        text.lines()
            .find(|l| l.starts_with(line_prefix))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
    }
}

/// Writes `request` on a fresh connection and reads until the router
/// closes it; fails if it stays open for 10 s.
async fn raw(router: SocketAddr, request: &[u8]) -> String {
    let mut stream = TcpStream::connect(router).await.expect("connect router");
    // The router may answer and close before it has read everything.
    let _ = stream.write_all(request).await;
    read_to_close(&mut stream).await
}

async fn read_to_close(stream: &mut TcpStream) -> String {
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    let closed = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => seen.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    let text = String::from_utf8_lossy(&seen).into_owned();
    assert!(
        closed.is_ok(),
        "the router kept the connection open: {text:?}"
    );
    text
}

/// One request on its own connection through hyper's client.
async fn get(router: SocketAddr, host: &str) -> (StatusCode, http::HeaderMap, String) {
    let stream = TcpStream::connect(router).await.expect("connect router");
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("handshake");
    tokio::spawn(connection);
    let request = Request::get("/")
        .header("host", host)
        .body(Full::<Bytes>::default())
        .expect("request");
    let response = sender.send_request(request).await.expect("router answers");
    let (parts, body) = response.into_parts();
    let body = body.collect().await.expect("body").to_bytes();
    (
        parts.status,
        parts.headers,
        String::from_utf8_lossy(&body).into_owned(),
    )
}

fn status_of(response: &str) -> &str {
    response.split(' ').nth(1).unwrap_or_default()
}

#[tokio::test]
async fn oversized_request_heads_get_431() {
    let b = backend(true).await;
    let table = RouteTable::new();
    table.register("big.apps.test", endpoint(b.addr, "b0"));
    let config = RouterConfig {
        max_header_bytes: 16 * 1024,
        ..RouterConfig::default()
    };
    let router = start(&table, config).await;
    let big = "x".repeat(20 * 1024);
    let request = format!("GET / HTTP/1.1\r\nHost: big.apps.test\r\nX-Big: {big}\r\n\r\n");
    let response = raw(router.addr, request.as_bytes()).await;
    assert_eq!(status_of(&response), "431", "{response}");
    assert_eq!(b.hits.load(Ordering::SeqCst), 0);
    // Just under the limit is fine.
    let fits = "x".repeat(12 * 1024);
    let request = format!(
        "GET / HTTP/1.1\r\nHost: big.apps.test\r\nX-Big: {fits}\r\nConnection: close\r\n\r\n"
    );
    let response = raw(router.addr, request.as_bytes()).await;
    assert_eq!(status_of(&response), "200", "{response}");
}

#[tokio::test]
async fn smuggling_patterns_get_400_and_a_closed_connection_and_others_are_served() {
    let mut b = backend(true).await;
    let table = RouteTable::new();
    table.register("s.apps.test", endpoint(b.addr, "s0"));
    let router = start(&table, RouterConfig::default()).await;
    let head = "POST / HTTP/1.1\r\nHost: s.apps.test\r\n";
    let corpus: Vec<(&str, String)> = vec![
        (
            "Transfer-Encoding with Content-Length",
            format!("{head}Transfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n0\r\n\r\n"),
        ),
        (
            "Content-Length with Transfer-Encoding",
            format!("{head}Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
        ),
        (
            "duplicate equal Content-Length",
            format!("{head}Content-Length: 3\r\nContent-Length: 3\r\n\r\nabc"),
        ),
        (
            "conflicting Content-Length",
            format!("{head}Content-Length: 3\r\nContent-Length: 4\r\n\r\nabcd"),
        ),
        (
            "obs-fold",
            format!("{head}X-Folded: a\r\n b\r\nContent-Length: 0\r\n\r\n"),
        ),
        (
            "obs-fold with a tab",
            format!("{head}X-Folded: a\r\n\tb\r\nContent-Length: 0\r\n\r\n"),
        ),
        (
            "bare LF after the request line",
            "GET / HTTP/1.1\nHost: s.apps.test\r\n\r\n".to_owned(),
        ),
        (
            "bare LF between headers",
            "GET / HTTP/1.1\r\nHost: s.apps.test\nX-A: 1\r\n\r\n".to_owned(),
        ),
        (
            "non-hex chunk size",
            format!("{head}Transfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n"),
        ),
        (
            "overflowing chunk size",
            format!("{head}Transfer-Encoding: chunked\r\n\r\nfffffffffffffffffff\r\nabc\r\n0\r\n\r\n"),
        ),
        (
            "Transfer-Encoding gzip",
            format!("{head}Transfer-Encoding: gzip\r\n\r\nabc"),
        ),
        (
            "Transfer-Encoding gzip, chunked",
            format!("{head}Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n"),
        ),
        (
            "two Transfer-Encoding lines",
            format!("{head}Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
        ),
        (
            "smuggled request after a chunked body",
            format!(
                "{head}Transfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\nHost: s.apps.test\r\n\r\n"
            ),
        ),
    ];
    for (name, request) in &corpus {
        let response = raw(router.addr, request.as_bytes()).await;
        assert_eq!(status_of(&response), "400", "{name}: {response:?}");
        // And the router still serves everyone else.
        let (status, _, body) = get(router.addr, "s.apps.test").await;
        assert_eq!(status, StatusCode::OK, "after {name}: {body}");
    }
    while let Ok(path) = b.arrived.try_recv() {
        assert_ne!(path, "/smuggled", "a smuggled request reached the app");
    }
}

#[tokio::test]
async fn requests_beyond_the_backend_connection_limit_get_503_connection_limit_reached() {
    let mut b = backend(false).await;
    let table = RouteTable::new();
    table.register("cap.apps.test", endpoint(b.addr, "c0"));
    let config = RouterConfig {
        max_conns_per_backend: 1,
        ..RouterConfig::default()
    };
    let router = start(&table, config).await;
    let addr = router.addr;
    let first = tokio::spawn(async move { get(addr, "cap.apps.test").await });
    b.wait_arrival().await;
    let (status, headers, body) = get(router.addr, "cap.apps.test").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(
        headers
            .get("x-cf-routererror")
            .and_then(|v| v.to_str().ok()),
        Some("Connection Limit Reached")
    );
    assert!(body.contains("reached the connection limit"), "{body}");
    b.release.send_replace(true);
    let (status, _, _) = first.await.expect("first request");
    assert_eq!(status, StatusCode::OK);
    // The slot is given back once the response is done.
    let (status, _, _) = get(router.addr, "cap.apps.test").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        router.metric("router_backend_errors_total{kind=\"connection_limit\"}"),
        Some(1.0)
    );
    assert_eq!(
        router.metric("router_route_requests_total{route=\"cap.apps.test\"}"),
        Some(3.0)
    );
}

#[tokio::test]
async fn a_backend_that_does_not_answer_in_time_gets_502_endpoint_failure() {
    let b = backend(false).await;
    let table = RouteTable::new();
    table.register("slow.apps.test", endpoint(b.addr, "s0"));
    let config = RouterConfig {
        response_timeout: Duration::from_millis(300),
        ..RouterConfig::default()
    };
    let router = start(&table, config).await;
    let (status, headers, _) = get(router.addr, "slow.apps.test").await;
    assert_eq!(status, StatusCode::BAD_GATEWAY);
    assert_eq!(
        headers
            .get("x-cf-routererror")
            .and_then(|v| v.to_str().ok()),
        Some("endpoint_failure")
    );
    assert_eq!(b.hits.load(Ordering::SeqCst), 1, "not retried");
    assert_eq!(
        router.metric("router_backend_errors_total{kind=\"timeout\"}"),
        Some(1.0)
    );
}

#[tokio::test]
async fn idle_keep_alive_connections_are_closed_after_the_idle_timeout() {
    let b = backend(true).await;
    let table = RouteTable::new();
    table.register("idle.apps.test", endpoint(b.addr, "i0"));
    let config = RouterConfig {
        idle_timeout: Duration::from_millis(500),
        ..RouterConfig::default()
    };
    let router = start(&table, config).await;
    let mut stream = TcpStream::connect(router.addr).await.expect("connect");
    let request = b"GET / HTTP/1.1\r\nHost: idle.apps.test\r\n\r\n";
    for _ in 0..2 {
        stream.write_all(request).await.expect("write");
        let mut buf = [0u8; 1024];
        let n = stream.read(&mut buf).await.expect("read");
        let text = String::from_utf8_lossy(&buf[..n]);
        assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    }
    // Now idle: the router hangs up.
    let rest = read_to_close(&mut stream).await;
    assert_eq!(rest, "");
}

#[tokio::test]
async fn clients_that_trickle_a_request_head_are_cut_off() {
    let b = backend(true).await;
    let table = RouteTable::new();
    table.register("trickle.apps.test", endpoint(b.addr, "t0"));
    let config = RouterConfig {
        header_read_timeout: Duration::from_millis(500),
        idle_timeout: Duration::from_secs(60),
        ..RouterConfig::default()
    };
    let router = start(&table, config).await;
    let mut stream = TcpStream::connect(router.addr).await.expect("connect");
    // A first request in good time...
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: trickle.apps.test\r\n\r\n")
        .await
        .expect("write");
    let mut buf = [0u8; 1024];
    let n = stream.read(&mut buf).await.expect("read");
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    // ...then a head one byte every 100 ms, which would take 5 s.
    let (mut reader, mut writer) = stream.into_split();
    let trickle = Task(tokio::spawn(async move {
        for byte in b"GET / HTTP/1.1\r\nHost: trickle.apps.test\r\nX-Slow: aaaaaaaa\r\n\r\n" {
            if writer.write_all(&[*byte]).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }));
    let closed = tokio::time::timeout(Duration::from_secs(4), async {
        let mut seen = Vec::new();
        loop {
            match reader.read(&mut buf).await {
                Ok(0) | Err(_) => return seen,
                Ok(n) => seen.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    drop(trickle);
    let seen = closed.expect("the trickling client was cut off before its head was complete");
    assert!(
        !String::from_utf8_lossy(&seen).contains("200"),
        "the trickled request was served"
    );
    assert_eq!(b.hits.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn unregistering_an_endpoint_lets_its_in_flight_request_finish() {
    let mut b = backend(false).await;
    let table = RouteTable::new();
    table.register("move.apps.test", endpoint(b.addr, "m0"));
    let router = start(&table, RouterConfig::default()).await;
    let addr = router.addr;
    let in_flight = tokio::spawn(async move { get(addr, "move.apps.test").await });
    b.wait_arrival().await;
    table.unregister("move.apps.test", "m0");
    let (status, _, _) = get(router.addr, "move.apps.test").await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "the route is gone for new requests"
    );
    b.release.send_replace(true);
    let (status, _, body) = in_flight.await.expect("in-flight request");
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, "ok 0");
}

#[tokio::test]
async fn shutdown_stops_accepting_and_lets_in_flight_requests_finish() {
    let mut b = backend(false).await;
    let table = RouteTable::new();
    table.register("drain.apps.test", endpoint(b.addr, "d0"));
    let mut router = start(&table, RouterConfig::default()).await;
    let addr = router.addr;
    let in_flight = tokio::spawn(async move { get(addr, "drain.apps.test").await });
    b.wait_arrival().await;
    if let Some(stop) = router.stop.take() {
        let _ = stop.send(());
    }
    // The listener closes: new connections are refused.
    let refused = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if TcpStream::connect(addr).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(refused.is_ok(), "the router kept accepting after shutdown");
    assert!(
        !router.task.0.is_finished(),
        "the router stopped before draining"
    );
    b.release.send_replace(true);
    let (status, _, body) = in_flight.await.expect("in-flight request");
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, "ok 0");
    tokio::time::timeout(Duration::from_secs(10), &mut router.task.0)
        .await
        .expect("router finishes once drained")
        .expect("router task did not panic");
}

#[tokio::test]
async fn the_drain_ends_at_its_deadline_even_with_requests_in_flight() {
    let mut b = backend(false).await;
    let table = RouteTable::new();
    table.register("stuck.apps.test", endpoint(b.addr, "x0"));
    let config = RouterConfig {
        drain_timeout: Duration::from_millis(300),
        ..RouterConfig::default()
    };
    let mut router = start(&table, config).await;
    let addr = router.addr;
    let _in_flight = Task(tokio::spawn(async move {
        let _ = get(addr, "stuck.apps.test").await;
    }));
    b.wait_arrival().await;
    if let Some(stop) = router.stop.take() {
        let _ = stop.send(());
    }
    tokio::time::timeout(Duration::from_secs(10), &mut router.task.0)
        .await
        .expect("router stops at the drain deadline")
        .expect("router task did not panic");
}
