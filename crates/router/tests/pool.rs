//! Backend keep-alive: requests reuse idle connections to an app, and a
//! reused connection the app has closed meanwhile costs no error.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use ingot_logs::{Envelope, LogSink};
use ingot_router::{Endpoint, RouteTable, Router, RouterConfig};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
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

/// An app that counts connections and requests, reports each connection's
/// end, and (with `idle_close`) closes connections idle that long.
struct Backend {
    addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
    requests: Arc<AtomicUsize>,
    ended: mpsc::UnboundedReceiver<()>,
    _task: Task,
}

async fn backend(idle_close: Option<Duration>) -> Backend {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let accepted = Arc::new(AtomicUsize::new(0));
    let requests = Arc::new(AtomicUsize::new(0));
    let (ended_tx, ended) = mpsc::unbounded_channel();
    let (acc, req) = (accepted.clone(), requests.clone());
    let task = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            acc.fetch_add(1, Ordering::SeqCst);
            let req = req.clone();
            let ended_tx = ended_tx.clone();
            tokio::spawn(async move {
                let service = service_fn(move |_: Request<hyper::body::Incoming>| {
                    req.fetch_add(1, Ordering::SeqCst);
                    async { Ok::<_, Infallible>(Response::new(Full::new(Bytes::from("ok")))) }
                });
                let mut builder = hyper::server::conn::http1::Builder::new();
                if let Some(idle) = idle_close {
                    builder.timer(TokioTimer::new()).header_read_timeout(idle);
                }
                let _ = builder
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
                let _ = ended_tx.send(());
            });
        }
    });
    Backend {
        addr,
        accepted,
        requests,
        ended,
        _task: Task(task),
    }
}

async fn start(table: &RouteTable) -> (SocketAddr, Task) {
    let router = Router::new(table.clone(), Arc::new(NoLogs)).with_config(RouterConfig::default());
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind router");
    let addr = listener.local_addr().expect("router addr");
    let task = tokio::spawn(async move {
        let _ = router.serve(listener, std::future::pending()).await;
    });
    (addr, Task(task))
}

async fn get(router: SocketAddr, host: &str) -> StatusCode {
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
    let status = response.status();
    response.into_body().collect().await.expect("body");
    status
}

#[tokio::test]
async fn sequential_requests_reuse_one_backend_connection() {
    let b = backend(None).await;
    let table = RouteTable::new();
    table.register(
        "reuse.apps.test",
        Endpoint {
            addr: b.addr,
            app_guid: "app".into(),
            process_guid: "web".into(),
            instance_guid: "r0".into(),
            index: 0,
        },
    );
    let (router, _task) = start(&table).await;
    for _ in 0..5 {
        assert_eq!(get(router, "reuse.apps.test").await, StatusCode::OK);
    }
    assert_eq!(b.requests.load(Ordering::SeqCst), 5);
    assert_eq!(b.accepted.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_pooled_connection_the_app_closed_is_replaced_without_an_error() {
    let mut b = backend(Some(Duration::from_millis(100))).await;
    let table = RouteTable::new();
    table.register(
        "stale.apps.test",
        Endpoint {
            addr: b.addr,
            app_guid: "app".into(),
            process_guid: "web".into(),
            instance_guid: "s0".into(),
            index: 0,
        },
    );
    let (router, _task) = start(&table).await;
    assert_eq!(get(router, "stale.apps.test").await, StatusCode::OK);
    tokio::time::timeout(Duration::from_secs(10), b.ended.recv())
        .await
        .expect("the app closes the idle connection");
    assert_eq!(get(router, "stale.apps.test").await, StatusCode::OK);
    assert_eq!(
        b.requests.load(Ordering::SeqCst),
        2,
        "nothing was sent twice"
    );
    assert_eq!(b.accepted.load(Ordering::SeqCst), 2);
}
