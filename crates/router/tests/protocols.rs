//! The router's protocols as clients see them, over loopback with real
//! clients and servers: WebSocket through the proxy (tungstenite on both
//! ends), HTTP/2 with prior knowledge on the plain listener, and TLS with
//! SNI certificates, ALPN `h2` and `http/1.1` on the TLS listener.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use http::{Request, Response, StatusCode, Version};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use ingot_logs::{Envelope, LogSink, Message};
use ingot_router::{CertStore, Certificate, Endpoint, RouteTable, Router, RouterConfig};
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_rustls::client::TlsStream;
use tokio_tungstenite::tungstenite::Message as WsMessage;

/// A task aborted when the test lets go of it, pass or fail.
struct Task(JoinHandle<()>);

impl Drop for Task {
    fn drop(&mut self) {
        self.0.abort();
    }
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

/// An address nothing listens on.
async fn closed_port() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    listener.local_addr().expect("addr")
}

/// Collects the `RTR` lines' text.
#[derive(Default)]
struct Collect(Mutex<Vec<String>>);

impl LogSink for Collect {
    fn emit(&self, envelope: Envelope) {
        if let Message::Log { payload, .. } = &envelope.message {
            self.0
                .lock()
                .expect("not poisoned")
                .push(String::from_utf8_lossy(payload).into_owned());
        }
    }
}

impl Collect {
    async fn wait_for(&self, n: usize) -> Vec<String> {
        for _ in 0..500 {
            let lines = self.0.lock().expect("not poisoned").clone();
            if lines.len() >= n {
                return lines;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!(
            "expected {n} RTR lines, got {:?}",
            self.0.lock().expect("not poisoned")
        );
    }
}

/// An HTTP/1.1 app answering `<name>`, its request version, then one
/// `header: value` line per request header.
async fn http_backend(name: &'static str) -> (SocketAddr, Task) {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind backend");
    let addr = listener.local_addr().expect("backend addr");
    let task = tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let service = service_fn(move |req: Request<Incoming>| async move {
                    let mut text = format!("{name}\n{:?}\n", req.version());
                    for (k, v) in req.headers() {
                        text.push_str(&format!("{k}: {}\n", v.to_str().unwrap_or("?")));
                    }
                    Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(text))))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (addr, Task(task))
}

/// A WebSocket app that echoes every message, and records the request
/// headers of each handshake.
async fn ws_echo_backend() -> (SocketAddr, Arc<Mutex<Vec<http::HeaderMap>>>, Task) {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind backend");
    let addr = listener.local_addr().expect("backend addr");
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = seen.clone();
    let task = tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let record = record.clone();
            tokio::spawn(async move {
                // tungstenite fixes the callback's error type.
                #[allow(clippy::result_large_err)]
                let callback =
                    move |req: &tokio_tungstenite::tungstenite::handshake::server::Request,
                          resp| {
                        record
                            .lock()
                            .expect("not poisoned")
                            .push(req.headers().clone());
                        Ok(resp)
                    };
                let Ok(mut ws) = tokio_tungstenite::accept_hdr_async(stream, callback).await else {
                    return;
                };
                while let Some(Ok(message)) = ws.next().await {
                    if (message.is_text() || message.is_binary()) && ws.send(message).await.is_err()
                    {
                        return;
                    }
                }
            });
        }
    });
    (addr, seen, Task(task))
}

/// A running router; stops (and checks it stopped) when asked.
struct Running {
    addr: SocketAddr,
    logs: Arc<Collect>,
    stop: Option<oneshot::Sender<()>>,
    task: Task,
}

impl Running {
    async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        tokio::time::timeout(Duration::from_secs(10), &mut self.task.0)
            .await
            .expect("router stops after shutdown")
            .expect("router task did not panic");
    }
}

async fn start(table: &RouteTable, certs: Option<Arc<CertStore>>) -> Running {
    start_with(table, certs, RouterConfig::default()).await
}

async fn start_with(
    table: &RouteTable,
    certs: Option<Arc<CertStore>>,
    config: RouterConfig,
) -> Running {
    let logs = Arc::new(Collect::default());
    let router = Router::new(table.clone(), logs.clone()).with_config(config);
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind router");
    let addr = listener.local_addr().expect("router addr");
    let (stop, stopped) = oneshot::channel::<()>();
    let shutdown = async {
        let _ = stopped.await;
    };
    let task = tokio::spawn(async move {
        match certs {
            None => router.serve(listener, shutdown).await,
            Some(certs) => router.serve_tls(listener, certs, shutdown).await,
        }
        .expect("router serves");
    });
    Running {
        addr,
        logs,
        stop: Some(stop),
        task: Task(task),
    }
}

async fn ws_connect(
    router: SocketAddr,
    url: &str,
) -> tokio_tungstenite::WebSocketStream<TcpStream> {
    let stream = TcpStream::connect(router).await.expect("connect router");
    let (ws, response) = tokio_tungstenite::client_async(url, stream)
        .await
        .expect("websocket handshake through the router");
    assert_eq!(response.status(), StatusCode::SWITCHING_PROTOCOLS);
    ws
}

async fn echo_round_trip(ws: &mut tokio_tungstenite::WebSocketStream<TcpStream>, text: &str) {
    ws.send(WsMessage::text(text)).await.expect("send");
    let echoed = tokio::time::timeout(Duration::from_secs(10), ws.next())
        .await
        .expect("echo arrives")
        .expect("stream open")
        .expect("message");
    assert_eq!(echoed, WsMessage::text(text));
}

#[tokio::test]
async fn websocket_messages_echo_through_the_router_both_ways() {
    let (addr, seen, _app) = ws_echo_backend().await;
    let table = RouteTable::new();
    table.register("ws.apps.test", endpoint(addr, "ws-app", "ws-0", 0));
    let router = start(&table, None).await;

    let mut ws = ws_connect(router.addr, "ws://ws.apps.test/echo").await;
    echo_round_trip(&mut ws, "hello").await;
    let big = vec![7u8; 256 * 1024];
    ws.send(WsMessage::binary(big.clone())).await.expect("send");
    let echoed = ws.next().await.expect("open").expect("message");
    assert_eq!(echoed.into_data().as_ref(), big.as_slice());
    echo_round_trip(&mut ws, "again").await;

    // The app saw an upgrade request with the router's headers.
    let headers = seen.lock().expect("not poisoned")[0].clone();
    let get = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    assert_eq!(get("upgrade"), Some("websocket"));
    assert_eq!(get("host"), Some("ws.apps.test"));
    assert_eq!(get("x-cf-instanceid"), Some("ws-0"));
    assert_eq!(get("x-forwarded-proto"), Some("http"));

    // The access line is written once the switch is made.
    let lines = router.logs.wait_for(1).await;
    assert!(
        lines[0].contains("\"GET /echo HTTP/1.1\" 101 "),
        "{}",
        lines[0]
    );

    ws.close(None).await.expect("close");
    router.stop().await;
}

#[tokio::test]
async fn open_websockets_close_when_the_router_stops() {
    let (addr, _seen, _app) = ws_echo_backend().await;
    let table = RouteTable::new();
    table.register("ws.apps.test", endpoint(addr, "ws-app", "ws-0", 0));
    let router = start(&table, None).await;
    let mut ws = ws_connect(router.addr, "ws://ws.apps.test/").await;
    echo_round_trip(&mut ws, "before").await;
    router.stop().await;
    let ended = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match ws.next().await {
                None | Some(Err(_)) => return,
                Some(Ok(message)) if message.is_close() => return,
                Some(Ok(_)) => {}
            }
        }
    })
    .await;
    assert!(ended.is_ok(), "the websocket outlived the router");
}

#[tokio::test]
async fn websocket_connect_failures_move_to_another_instance() {
    let (addr, _seen, _app) = ws_echo_backend().await;
    let dead = closed_port().await;
    let table = RouteTable::new();
    table.register("ws.apps.test", endpoint(dead, "ws-app", "dead", 0));
    table.register("ws.apps.test", endpoint(addr, "ws-app", "live", 1));
    let router = start(&table, None).await;
    for i in 0..4 {
        let mut ws = ws_connect(router.addr, "ws://ws.apps.test/").await;
        echo_round_trip(&mut ws, &format!("try {i}")).await;
    }
    router.stop().await;
}

#[tokio::test]
async fn upgrade_refused_by_the_app_is_an_ordinary_response() {
    let (addr, _app) = http_backend("plain").await;
    let table = RouteTable::new();
    table.register("plain.apps.test", endpoint(addr, "app", "p0", 0));
    let router = start(&table, None).await;
    let stream = TcpStream::connect(router.addr).await.expect("connect");
    let err = tokio_tungstenite::client_async("ws://plain.apps.test/", stream)
        .await
        .expect_err("the app does not speak websocket");
    match err {
        tokio_tungstenite::tungstenite::Error::Http(response) => {
            assert_eq!(response.status(), StatusCode::OK);
            let body = String::from_utf8_lossy(response.body().as_deref().unwrap_or_default())
                .into_owned();
            // The app was asked to switch and chose not to.
            assert!(body.contains("upgrade: websocket"), "{body}");
        }
        other => panic!("expected the app's answer, got {other}"),
    }
    router.stop().await;
}

/// Sends one request with an HTTP/2 client over `io` and returns the
/// response version, status and body.
async fn h2_get<I>(io: I, uri: &str) -> (Version, StatusCode, String)
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(io))
            .await
            .expect("h2 handshake");
    tokio::spawn(connection);
    let request = Request::get(uri)
        .body(Full::<Bytes>::default())
        .expect("request");
    let response = sender.send_request(request).await.expect("router answers");
    let (parts, body) = response.into_parts();
    let body = body.collect().await.expect("body").to_bytes();
    (
        parts.version,
        parts.status,
        String::from_utf8_lossy(&body).into_owned(),
    )
}

async fn h1_get<I>(io: I, host: &str) -> (StatusCode, String)
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .expect("handshake");
    tokio::spawn(connection);
    let request = Request::get("/")
        .header("host", host)
        .body(Full::<Bytes>::default())
        .expect("request");
    let response = sender.send_request(request).await.expect("router answers");
    let status = response.status();
    let body = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test]
async fn http2_prior_knowledge_and_http1_share_the_plain_listener() {
    let (addr, _app) = http_backend("h2app").await;
    let table = RouteTable::new();
    table.register("h2.apps.test", endpoint(addr, "app", "h0", 0));
    let router = start(&table, None).await;

    let stream = TcpStream::connect(router.addr).await.expect("connect");
    let (version, status, body) = h2_get(stream, "http://h2.apps.test/path?q=1").await;
    assert_eq!((version, status), (Version::HTTP_2, StatusCode::OK));
    let mut lines = body.lines();
    assert_eq!(lines.next(), Some("h2app"));
    assert_eq!(
        lines.next(),
        Some("HTTP/1.1"),
        "apps are spoken to in HTTP/1.1"
    );
    assert!(body.contains("host: h2.apps.test\n"), "{body}");

    let stream = TcpStream::connect(router.addr).await.expect("connect");
    let (status, body) = h1_get(stream, "h2.apps.test").await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.starts_with("h2app\n"), "{body}");

    let lines = router.logs.wait_for(2).await;
    assert!(
        lines
            .iter()
            .any(|l| l.contains("\"GET /path?q=1 HTTP/2.0\" 200 ")),
        "{lines:?}"
    );
    router.stop().await;
}

/// A TLS client trusting `roots`, offering `alpn`.
fn tls_connector(roots: &[&Certificate], alpn: &[&[u8]]) -> tokio_rustls::TlsConnector {
    let mut store = rustls::RootCertStore::empty();
    for cert in roots {
        for der in cert.chain_der() {
            store.add(der.clone()).expect("trust anchor");
        }
    }
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("protocol versions")
    .with_root_certificates(store)
    .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    tokio_rustls::TlsConnector::from(Arc::new(config))
}

async fn tls_connect(
    connector: &tokio_rustls::TlsConnector,
    router: SocketAddr,
    sni: &str,
) -> TlsStream<TcpStream> {
    let stream = TcpStream::connect(router).await.expect("connect router");
    let name = ServerName::try_from(sni.to_owned()).expect("server name");
    connector
        .connect(name, stream)
        .await
        .expect("TLS handshake with the router")
}

fn leaf(stream: &TlsStream<TcpStream>) -> CertificateDer<'static> {
    stream
        .get_ref()
        .1
        .peer_certificates()
        .expect("server certificate")[0]
        .clone()
}

#[tokio::test]
async fn tls_picks_certificates_by_sni_and_serves_h2_and_http1() {
    let (addr, _app) = http_backend("tlsapp").await;
    let table = RouteTable::new();
    table.register("app.apps.localhost", endpoint(addr, "app", "t0", 0));
    table.register("shop.example.test", endpoint(addr, "app", "t0", 0));
    let certs = Arc::new(CertStore::self_signed(&["apps.localhost"]).expect("self-signed store"));
    let default = certs.default_certificate();
    let shop = Certificate::self_signed(&["shop.example.test".to_owned()]).expect("shop cert");
    certs
        .insert("shop.example.test", shop.clone())
        .expect("insert");
    let router = start(&table, Some(certs.clone())).await;
    let both = tls_connector(&[&default, &shop], &[b"h2", b"http/1.1"]);

    // SNI picks the user certificate for its domain, the default otherwise.
    let stream = tls_connect(&both, router.addr, "shop.example.test").await;
    assert_eq!(leaf(&stream), shop.chain_der()[0]);
    let stream = tls_connect(&both, router.addr, "app.apps.localhost").await;
    assert_eq!(leaf(&stream), default.chain_der()[0]);

    // ALPN h2: HTTP/2 over TLS, and the app hears it came over https.
    assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (version, status, body) = h2_get(stream, "https://app.apps.localhost/").await;
    assert_eq!((version, status), (Version::HTTP_2, StatusCode::OK));
    assert!(body.contains("x-forwarded-proto: https\n"), "{body}");
    assert!(body.contains("host: app.apps.localhost\n"), "{body}");

    // A client offering only http/1.1 gets HTTP/1.1.
    let h1 = tls_connector(&[&default, &shop], &[b"http/1.1"]);
    let stream = tls_connect(&h1, router.addr, "shop.example.test").await;
    assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    let (status, body) = h1_get(stream, "shop.example.test").await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains("x-forwarded-proto: https\n"), "{body}");

    // A client that trusts only the default certificate cannot be fooled
    // into accepting it for the user's domain, and vice versa.
    let only_default = tls_connector(&[&default], &[b"http/1.1"]);
    let stream = TcpStream::connect(router.addr).await.expect("connect");
    let name = ServerName::try_from("shop.example.test".to_owned()).expect("name");
    assert!(only_default.connect(name, stream).await.is_err());

    router.stop().await;
}

#[tokio::test]
async fn tls_certificates_added_while_serving_apply_to_the_next_handshake() {
    let (addr, _app) = http_backend("tlsapp").await;
    let table = RouteTable::new();
    table.register("blog.apps.localhost", endpoint(addr, "app", "t0", 0));
    let certs = Arc::new(CertStore::self_signed(&["apps.localhost"]).expect("store"));
    let default = certs.default_certificate();
    let router = start(&table, Some(certs.clone())).await;
    let wild = Certificate::self_signed(&["*.apps.localhost".to_owned()]).expect("wildcard");
    let client = tls_connector(&[&default, &wild], &[b"http/1.1"]);

    let stream = tls_connect(&client, router.addr, "blog.apps.localhost").await;
    assert_eq!(leaf(&stream), default.chain_der()[0]);
    certs
        .insert("*.apps.localhost", wild.clone())
        .expect("insert");
    let stream = tls_connect(&client, router.addr, "blog.apps.localhost").await;
    assert_eq!(leaf(&stream), wild.chain_der()[0]);
    let (status, body) = h1_get(stream, "blog.apps.localhost").await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.starts_with("tlsapp\n"), "{body}");
    router.stop().await;
}

/// Reads until the router closes the connection; fails if it stays open
/// for 10 s.
async fn closed_by_router<S: tokio::io::AsyncRead + Unpin>(mut stream: S) {
    use tokio::io::AsyncReadExt;
    let mut buf = [0u8; 256];
    let closed = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "a silent client kept its connection");
}

fn quick_header_timeout() -> RouterConfig {
    RouterConfig {
        header_read_timeout: Duration::from_millis(300),
        ..RouterConfig::default()
    }
}

#[tokio::test]
async fn silent_clients_are_cut_off_on_both_listeners() {
    let table = RouteTable::new();
    let router = start_with(&table, None, quick_header_timeout()).await;
    let stream = TcpStream::connect(router.addr).await.expect("connect");
    closed_by_router(stream).await;
    // Half an HTTP/2 preface, then nothing.
    let mut stream = TcpStream::connect(router.addr).await.expect("connect");
    tokio::io::AsyncWriteExt::write_all(&mut stream, b"PRI * HTTP")
        .await
        .expect("write");
    closed_by_router(stream).await;
    router.stop().await;

    let certs = Arc::new(CertStore::self_signed(&["apps.localhost"]).expect("store"));
    let default = certs.default_certificate();
    let router = start_with(&table, Some(certs), quick_header_timeout()).await;
    // No handshake at all.
    let stream = TcpStream::connect(router.addr).await.expect("connect");
    closed_by_router(stream).await;
    // A handshake, then no request.
    for alpn in [&b"http/1.1"[..], &b"h2"[..]] {
        let client = tls_connector(&[&default], &[alpn]);
        let stream = tls_connect(&client, router.addr, "a.apps.localhost").await;
        closed_by_router(stream).await;
    }
    router.stop().await;
}
