//! Syslog drains against real receivers on loopback: a TCP server reading
//! RFC 6587 octet-counted frames, the same behind TLS with a self-signed
//! certificate, and an HTTPS server taking one POST per message.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use ingot_logs::{
    AppMeta, DrainConfig, DrainManager, DrainStatus, DrainTls, Envelope, LogKind, LogSink,
    LogStore, ReadQuery, TeeSink,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, BufReader};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::task::{JoinHandle, JoinSet};

const APP: &str = "6c6d4a4e-0f5c-4c7e-9a35-1b2d2f0c9d11";
const WAIT: Duration = Duration::from_secs(20);

/// A receiver's end: each message it got, and the task to kill it.
struct Receiver {
    addr: SocketAddr,
    messages: mpsc::UnboundedReceiver<String>,
    task: JoinHandle<()>,
}

impl Receiver {
    async fn next(&mut self) -> String {
        match tokio::time::timeout(WAIT, self.messages.recv()).await {
            Ok(Some(m)) => m,
            other => panic!("no message from the drain: {other:?}"),
        }
    }

    /// Kills the receiver: listener and connections close.
    async fn kill(self) -> SocketAddr {
        self.task.abort();
        let _ = self.task.await;
        self.addr
    }
}

/// Reads octet-counted frames (`LEN SP MSG`) until EOF.
async fn read_frames<R: AsyncRead + Unpin>(stream: R, out: mpsc::UnboundedSender<String>) {
    let mut reader = BufReader::new(stream);
    loop {
        let mut len = Vec::new();
        match reader.read_until(b' ', &mut len).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let Ok(n) = String::from_utf8_lossy(&len).trim().parse::<usize>() else {
            let _ = out.send(format!("BAD FRAME {len:?}"));
            return;
        };
        let mut msg = vec![0; n];
        if reader.read_exact(&mut msg).await.is_err() {
            return;
        }
        let _ = out.send(String::from_utf8_lossy(&msg).into_owned());
    }
}

fn certificate() -> (CertificateDer<'static>, PrivateKeyDer<'static>) {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()])
        .expect("self-signed certificate");
    (
        cert.cert.der().clone(),
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(cert.key_pair.serialize_der())),
    )
}

fn tls_acceptor(
    cert: &CertificateDer<'static>,
    key: &PrivateKeyDer<'static>,
) -> tokio_rustls::TlsAcceptor {
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("protocol versions")
    .with_no_client_auth()
    .with_single_cert(vec![cert.clone()], key.clone_key())
    .expect("server certificate");
    tokio_rustls::TlsAcceptor::from(Arc::new(config))
}

/// A syslog receiver on `addr` (port 0 for any), TLS when `tls` is given.
async fn syslog_receiver(addr: &str, tls: Option<tokio_rustls::TlsAcceptor>) -> Receiver {
    let listener = TcpListener::bind(addr).await.expect("bind receiver");
    let addr = listener.local_addr().expect("receiver address");
    let (tx, messages) = mpsc::unbounded_channel();
    let task = tokio::spawn(async move {
        // Dropping the set (when this task is aborted) closes every connection.
        let mut conns = JoinSet::new();
        while let Ok((stream, _)) = listener.accept().await {
            let tx = tx.clone();
            match &tls {
                None => {
                    conns.spawn(read_frames(stream, tx));
                }
                Some(acceptor) => {
                    let acceptor = acceptor.clone();
                    conns.spawn(async move {
                        if let Ok(stream) = acceptor.accept(stream).await {
                            read_frames(stream, tx).await;
                        }
                    });
                }
            }
        }
    });
    Receiver {
        addr,
        messages,
        task,
    }
}

/// An HTTPS receiver: each POST's content type and body.
async fn https_receiver(acceptor: tokio_rustls::TlsAcceptor) -> Receiver {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind receiver");
    let addr = listener.local_addr().expect("receiver address");
    let (tx, messages) = mpsc::unbounded_channel();
    let task = tokio::spawn(async move {
        let mut conns = JoinSet::new();
        while let Ok((stream, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            let tx = tx.clone();
            conns.spawn(async move {
                let Ok(stream) = acceptor.accept(stream).await else {
                    return;
                };
                let service = hyper::service::service_fn(
                    move |req: hyper::Request<hyper::body::Incoming>| {
                        let tx = tx.clone();
                        async move {
                            let kind = req
                                .headers()
                                .get(hyper::header::CONTENT_TYPE)
                                .and_then(|v| v.to_str().ok())
                                .unwrap_or("")
                                .to_owned();
                            let method = req.method().to_string();
                            let path = req.uri().path().to_owned();
                            let body = req
                                .into_body()
                                .collect()
                                .await
                                .map(|b| b.to_bytes())
                                .unwrap_or_default();
                            let _ = tx.send(format!(
                                "{method} {path} {kind}|{}",
                                String::from_utf8_lossy(&body)
                            ));
                            Ok::<_, Infallible>(hyper::Response::new(Full::new(Bytes::new())))
                        }
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Receiver {
        addr,
        messages,
        task,
    }
}

fn fast_retries(tls: DrainTls) -> DrainConfig {
    DrainConfig {
        initial_backoff: Duration::from_millis(20),
        max_backoff: Duration::from_millis(200),
        tls,
        ..DrainConfig::default()
    }
}

fn no_roots() -> DrainTls {
    DrainTls {
        use_webpki_roots: false,
        ..DrainTls::default()
    }
}

/// The platform's wiring: the store and the drains side by side.
fn platform(config: DrainConfig) -> (Arc<LogStore>, Arc<DrainManager>, TeeSink) {
    let store = LogStore::new(1000);
    let drains = DrainManager::new(config, store.clone()).expect("drain manager");
    let tee = TeeSink::new(vec![store.clone(), drains.clone()]);
    (store, drains, tee)
}

fn bind(drains: &DrainManager, url: String) {
    let errors =
        drains.set_app_drains(APP, AppMeta::named("my-org", "dev space", "my_app"), &[url]);
    assert!(errors.is_empty(), "{errors:?}");
}

fn app_line(text: &str, kind: LogKind) -> Envelope {
    Envelope::log(APP, "0", "APP/PROC/WEB", text, kind)
}

/// Splits `<PRI>1 TS HOST APP PROCID MSGID [SD] MSG` at its spaces.
fn fields(msg: &str) -> Vec<&str> {
    msg.splitn(7, ' ').collect()
}

async fn wait_for(drains: &DrainManager, what: &str, cond: impl Fn(&DrainStatus) -> bool) {
    let deadline = Instant::now() + WAIT;
    loop {
        let status = drains.status();
        if status.iter().any(&cond) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}: {status:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn a_tcp_drain_receives_the_apps_lines_in_rfc5424() {
    let mut rx = syslog_receiver("127.0.0.1:0", None).await;
    let (_store, drains, sink) = platform(fast_retries(no_roots()));
    bind(&drains, format!("syslog://{}", rx.addr));
    sink.emit(app_line("hello drain", LogKind::Out));
    sink.emit(app_line("oh no", LogKind::Err));
    sink.emit(Envelope::log(
        "other-app",
        "0",
        "APP/PROC/WEB",
        "not mine",
        LogKind::Out,
    ));

    let out = rx.next().await;
    let f = fields(&out);
    assert_eq!(f[0], "<14>1", "{out}");
    let ts = chrono::DateTime::parse_from_rfc3339(f[1]);
    assert!(ts.is_ok(), "timestamp {:?} in {out}", f[1]);
    assert!(f[1].ends_with("+00:00"), "{out}");
    assert_eq!(f[2], "my-org.dev-space.myapp");
    assert_eq!(f[3], APP);
    assert_eq!(f[4], "[APP/PROC/WEB/0]");
    assert_eq!(f[5], "-");
    assert!(
        f[6].starts_with("[tags@47450 app_id=\"") && f[6].contains(" source_type=\"APP/PROC/WEB\""),
        "{out}"
    );
    assert!(out.ends_with("] hello drain\n"), "{out}");
    let err = rx.next().await;
    assert!(
        err.starts_with("<11>1 ") && err.ends_with("] oh no\n"),
        "{err}"
    );
    assert_eq!(drains.status()[0].sent, 2);
}

#[tokio::test]
async fn a_killed_receiver_never_slows_the_app_and_lines_resume_when_it_returns() {
    let mut rx = syslog_receiver("127.0.0.1:0", None).await;
    let config = DrainConfig {
        buffer_size: 100,
        ..fast_retries(no_roots())
    };
    let (store, drains, sink) = platform(config);
    bind(&drains, format!("syslog://{}", rx.addr));
    sink.emit(app_line("before", LogKind::Out));
    assert!(rx.next().await.ends_with(" before\n"));

    let addr = rx.kill().await;
    wait_for(&drains, "the drain to notice it was closed", |s| {
        !s.connected
    })
    .await;

    // Far more than the drain's buffer, with nobody listening.
    let n = 20_000;
    let started = Instant::now();
    for i in 0..n {
        sink.emit(app_line(&format!("while down {i}"), LogKind::Out));
    }
    let emitting = started.elapsed();
    assert!(
        emitting < Duration::from_secs(3),
        "emitting {n} lines to a dead drain took {emitting:?}"
    );

    let mut rx = syslog_receiver(&addr.to_string(), None).await;
    sink.emit(app_line("after", LogKind::Out));
    let mut received = 0u64;
    let mut announced = 0u64;
    loop {
        let msg = rx.next().await;
        if msg.ends_with(" after\n") {
            break;
        }
        if msg.contains(" while down ") {
            received += 1;
        } else if let Some(text) =
            msg.strip_suffix(" messages lost in user provided syslog drain\n")
        {
            assert!(msg.contains(" [LGR] - "), "{msg}");
            announced += text
                .rsplit(' ')
                .next()
                .and_then(|n| n.parse::<u64>().ok())
                .unwrap_or_else(|| panic!("count in {msg}"));
        } else {
            panic!("unexpected message {msg}");
        }
    }
    assert!(announced > 0, "the loss was never announced");
    assert_eq!(
        received + announced,
        n,
        "every line either arrived or was announced lost"
    );
    assert_eq!(drains.status()[0].dropped, announced);

    // The app's own log stream says so too.
    let notices: Vec<Envelope> = store
        .read(
            APP,
            &ReadQuery {
                limit: 100_000,
                ..ReadQuery::default()
            },
        )
        .into_iter()
        .filter(|e| e.source_type() == Some("LGR"))
        .collect();
    assert!(!notices.is_empty());
}

#[tokio::test]
async fn a_dead_drain_does_not_hold_up_another_drain_of_the_app() {
    // Accepts connections into its backlog and never reads them.
    let blackhole = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let blackhole_addr = blackhole.local_addr().expect("address");
    let mut rx = syslog_receiver("127.0.0.1:0", None).await;
    let (_store, drains, sink) = platform(DrainConfig {
        buffer_size: 100_000,
        ..fast_retries(no_roots())
    });
    let errors = drains.set_app_drains(
        APP,
        AppMeta::named("o", "s", "a"),
        &[
            format!("syslog://{blackhole_addr}"),
            format!("syslog://{}", rx.addr),
        ],
    );
    assert!(errors.is_empty(), "{errors:?}");
    let big = "x".repeat(1000);
    let n = 5_000;
    for i in 0..n {
        sink.emit(app_line(&format!("{i} {big}"), LogKind::Out));
    }
    for i in 0..n {
        let msg = rx.next().await;
        assert!(
            msg.contains(&format!("] {i} x")),
            "line {i}: {}",
            &msg[..120.min(msg.len())]
        );
    }
    drop(blackhole);
}

#[tokio::test]
async fn a_tls_drain_with_a_trusted_self_signed_certificate_receives_lines() {
    let (cert, key) = certificate();
    let mut rx = syslog_receiver("127.0.0.1:0", Some(tls_acceptor(&cert, &key))).await;
    let tls = DrainTls {
        extra_roots: vec![cert],
        ..no_roots()
    };
    let (_store, drains, sink) = platform(fast_retries(tls));
    bind(&drains, format!("syslog-tls://{}", rx.addr));
    sink.emit(app_line("secret line", LogKind::Out));
    let out = rx.next().await;
    assert!(
        out.starts_with("<14>1 ") && out.ends_with("] secret line\n"),
        "{out}"
    );
}

#[tokio::test]
async fn an_untrusted_drain_certificate_is_refused_unless_verification_is_skipped() {
    let (cert, key) = certificate();
    let mut rx = syslog_receiver("127.0.0.1:0", Some(tls_acceptor(&cert, &key))).await;
    let (_store, drains, sink) = platform(fast_retries(no_roots()));
    bind(&drains, format!("syslog-tls://{}", rx.addr));
    sink.emit(app_line("must not arrive", LogKind::Out));
    wait_for(&drains, "failed handshakes", |s| s.failures >= 2).await;
    assert!(rx.messages.try_recv().is_err());
    assert_eq!(drains.status()[0].sent, 0);
    let mut registry = prometheus_client::registry::Registry::default();
    drains.register_metrics(&mut registry);
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).expect("encode");
    assert!(
        text.contains(&format!(
            "syslog_drain_failures_total{{drain_url=\"syslog-tls://{}\",reason=\"connect\"}}",
            rx.addr
        )),
        "{text}"
    );
    drains.shutdown();

    let skip = DrainTls {
        skip_cert_verify: true,
        ..no_roots()
    };
    let (_store, drains, sink) = platform(fast_retries(skip));
    bind(&drains, format!("syslog-tls://{}", rx.addr));
    sink.emit(app_line("skip verify", LogKind::Out));
    assert!(rx.next().await.ends_with("] skip verify\n"));
}

#[tokio::test]
async fn an_https_drain_gets_one_post_per_message() {
    let (cert, key) = certificate();
    let mut rx = https_receiver(tls_acceptor(&cert, &key)).await;
    let tls = DrainTls {
        extra_roots: vec![cert],
        ..no_roots()
    };
    let (_store, drains, sink) = platform(fast_retries(tls));
    bind(
        &drains,
        format!(
            "https://user:pw@127.0.0.1:{}/drain?token=abc",
            rx.addr.port()
        ),
    );
    sink.emit(app_line("one", LogKind::Out));
    sink.emit(app_line("two", LogKind::Err));
    let first = rx.next().await;
    assert!(
        first.starts_with("POST /drain text/plain|<14>1 "),
        "{first}"
    );
    assert!(first.ends_with("] one\n"), "{first}");
    let second = rx.next().await;
    assert!(
        second.starts_with("POST /drain text/plain|<11>1 ") && second.ends_with("] two\n"),
        "{second}"
    );
    let status = drains.status();
    assert_eq!(
        status[0].url,
        format!("https://127.0.0.1:{}/drain", rx.addr.port())
    );
    wait_for(&drains, "both posts counted", |s| s.sent == 2).await;
}

#[tokio::test]
async fn unbinding_stops_the_drain() {
    let mut rx = syslog_receiver("127.0.0.1:0", None).await;
    let (_store, drains, sink) = platform(fast_retries(no_roots()));
    bind(&drains, format!("syslog://{}", rx.addr));
    sink.emit(app_line("bound", LogKind::Out));
    assert!(rx.next().await.ends_with(" bound\n"));
    drains.set_app_drains(APP, AppMeta::default(), &[]);
    assert!(drains.status().is_empty());
    sink.emit(app_line("unbound", LogKind::Out));
    // The connection closes when the writer stops: the receiver sees EOF
    // and nothing more arrives.
    let rest = tokio::time::timeout(WAIT, async {
        let mut got = Vec::new();
        while let Ok(Some(m)) =
            tokio::time::timeout(Duration::from_millis(300), rx.messages.recv()).await
        {
            got.push(m);
        }
        got
    })
    .await
    .unwrap_or_default();
    assert!(rest.is_empty(), "{rest:?}");
}
