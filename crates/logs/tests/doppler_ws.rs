//! The traffic controller endpoints as CF clients see them: a real
//! websocket client over loopback decoding dropsonde v1 envelopes, and the
//! multipart `recentlogs` / `containermetrics` responses.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use ingot_logs::dropsonde::{self, EventType, MessageType};
use ingot_logs::{
    doppler_router_with, ContainerMetrics, DopplerConfig, Envelope, Firehose, FirehoseConfig,
    LogKind, LogSink, LogStore,
};
use prost::Message as _;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{Error as WsError, Message as WsMessage};

mod common;
use common::TestAuthorizer;

const WAIT: Duration = Duration::from_secs(10);

/// Serves the endpoints on a loopback port; the server task ends with the
/// test's runtime. Returns `host:port`.
async fn serve(store: Arc<LogStore>) -> String {
    serve_with(store.firehose(), store).await
}

async fn serve_with(firehose: Arc<Firehose>, store: Arc<LogStore>) -> String {
    let app = doppler_router_with(
        firehose,
        store,
        Arc::new(TestAuthorizer),
        DopplerConfig::default(),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("loopback binds");
    let addr = listener.local_addr().expect("bound address");
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr.to_string()
}

fn store() -> Arc<LogStore> {
    LogStore::with_firehose(1000, 100, Firehose::new(FirehoseConfig::default()))
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn connect(addr: &str, path: &str, header: Option<(&str, &str)>) -> Result<Socket, u16> {
    let mut req = format!("ws://{addr}{path}")
        .into_client_request()
        .expect("valid url");
    if let Some((name, value)) = header {
        req.headers_mut().insert(
            http::HeaderName::from_bytes(name.as_bytes()).expect("header name"),
            value.parse().expect("header value"),
        );
    }
    match tokio_tungstenite::connect_async(req).await {
        Ok((socket, _)) => Ok(socket),
        Err(WsError::Http(resp)) => Err(resp.status().as_u16()),
        Err(other) => panic!("websocket connect failed: {other}"),
    }
}

/// Waits until the firehose has `n` subscribers (the upgrade has run).
async fn subscribers(hose: &Firehose, n: usize) {
    tokio::time::timeout(WAIT, async {
        while hose.subscriber_count() < n {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("subscribers appear");
}

/// The next `n` envelopes off the socket, decoded.
async fn read_envelopes(socket: &mut Socket, n: usize) -> Vec<dropsonde::Envelope> {
    let mut out = Vec::new();
    while out.len() < n {
        let msg = tokio::time::timeout(WAIT, socket.next())
            .await
            .expect("an envelope within the wait")
            .expect("stream open")
            .expect("frame reads");
        if let WsMessage::Binary(bytes) = msg {
            out.push(dropsonde::Envelope::decode(&bytes[..]).expect("a dropsonde envelope"));
        }
    }
    out
}

fn text(e: &dropsonde::Envelope) -> String {
    let log = e.log_message.as_ref().expect("a log message");
    String::from_utf8_lossy(&log.message).into_owned()
}

#[tokio::test]
async fn an_app_stream_carries_that_apps_logs_and_metrics_as_dropsonde() {
    let store = store();
    let addr = serve(store.clone()).await;
    let mut socket = connect(
        &addr,
        "/apps/app/stream",
        Some(("authorization", "bearer app-reader")),
    )
    .await
    .expect("app reader may stream its app");
    subscribers(&store.firehose(), 1).await;

    store.emit(Envelope::log(
        "other",
        "0",
        "APP/PROC/WEB",
        "not mine",
        LogKind::Out,
    ));
    let line = Envelope::log("app", "1", "APP/PROC/WEB", "hello", LogKind::Err);
    store.emit(line.clone());
    store.emit(Envelope::container_metrics(
        "app",
        1,
        &ContainerMetrics {
            cpu_percentage: 2.5,
            memory_bytes: 100,
            disk_bytes: 200,
            memory_quota_bytes: 300,
            disk_quota_bytes: 400,
            ..ContainerMetrics::default()
        },
    ));

    let got = read_envelopes(&mut socket, 2).await;
    assert_eq!(got[0].event_type(), EventType::LogMessage);
    assert_eq!(got[0].timestamp, Some(line.timestamp));
    let log = got[0].log_message.clone().expect("log message");
    assert_eq!(log.message, b"hello");
    assert_eq!(log.message_type(), MessageType::Err);
    assert_eq!(log.app_id.as_deref(), Some("app"));
    assert_eq!(log.source_type.as_deref(), Some("APP/PROC/WEB"));
    assert_eq!(log.source_instance.as_deref(), Some("1"));
    assert_eq!(got[1].event_type(), EventType::ContainerMetric);
    let cm = got[1].container_metric.clone().expect("container metric");
    assert_eq!((cm.application_id.as_str(), cm.instance_index), ("app", 1));
    assert_eq!((cm.memory_bytes, cm.disk_bytes), (100, 200));
    assert_eq!(cm.memory_bytes_quota, Some(300));
}

#[tokio::test]
async fn app_streams_refuse_strangers_like_the_traffic_controller() {
    let store = store();
    let addr = serve(store.clone()).await;
    assert_eq!(
        connect(&addr, "/apps/app/stream", None).await.err(),
        Some(401)
    );
    assert_eq!(
        connect(
            &addr,
            "/apps/secret/stream",
            Some(("authorization", "bearer app-reader"))
        )
        .await
        .err(),
        Some(404)
    );
    // Browsers cannot set headers on a websocket: the cookie works too.
    let by_cookie = connect(
        &addr,
        "/apps/app/stream",
        Some(("cookie", "authorization=bearer%20app-reader")),
    )
    .await;
    assert!(by_cookie.is_ok());
}

#[tokio::test]
async fn the_firehose_needs_the_scope() {
    let store = store();
    let addr = serve(store.clone()).await;
    assert_eq!(connect(&addr, "/firehose/sub", None).await.err(), Some(401));
    assert_eq!(
        connect(
            &addr,
            "/firehose/sub",
            Some(("authorization", "bearer app-reader"))
        )
        .await
        .err(),
        Some(401)
    );
    assert_eq!(store.firehose().subscriber_count(), 0);
}

#[tokio::test]
async fn one_subscription_id_splits_the_firehose_another_gets_everything() {
    let store = store();
    let hose = store.firehose();
    let addr = serve(store.clone()).await;
    let auth = Some(("authorization", "bearer firehose"));
    let mut one = connect(&addr, "/firehose/nozzle", auth)
        .await
        .expect("connects");
    let mut two = connect(&addr, "/firehose/nozzle", auth)
        .await
        .expect("connects");
    let mut other = connect(&addr, "/firehose/other", auth)
        .await
        .expect("connects");
    subscribers(&hose, 3).await;

    for i in 0..20 {
        store.emit(Envelope::log(
            &format!("app-{i}"),
            "0",
            "APP/PROC/WEB",
            i.to_string(),
            LogKind::Out,
        ));
    }
    let a: Vec<String> = read_envelopes(&mut one, 10)
        .await
        .iter()
        .map(text)
        .collect();
    let b: Vec<String> = read_envelopes(&mut two, 10)
        .await
        .iter()
        .map(text)
        .collect();
    let everything: BTreeSet<String> = (0..20).map(|i| i.to_string()).collect();
    let a_set: BTreeSet<String> = a.into_iter().collect();
    let b_set: BTreeSet<String> = b.into_iter().collect();
    assert!(a_set.is_disjoint(&b_set), "{a_set:?} and {b_set:?} overlap");
    assert_eq!(
        a_set.union(&b_set).cloned().collect::<BTreeSet<_>>(),
        everything
    );
    let all: BTreeSet<String> = read_envelopes(&mut other, 20)
        .await
        .iter()
        .map(text)
        .collect();
    assert_eq!(all, everything);
}

#[tokio::test]
async fn shutdown_closes_streams_with_a_reason() {
    let store = store();
    let hose = store.firehose();
    let addr = serve(store.clone()).await;
    let mut socket = connect(
        &addr,
        "/firehose/x",
        Some(("authorization", "bearer firehose")),
    )
    .await
    .expect("connects");
    subscribers(&hose, 1).await;
    hose.shutdown();
    let close = tokio::time::timeout(WAIT, async {
        while let Some(Ok(msg)) = socket.next().await {
            if let WsMessage::Close(frame) = msg {
                return frame;
            }
        }
        None
    })
    .await
    .expect("closed within the wait")
    .expect("a close frame");
    assert_eq!(close.code, CloseCode::Away);
    assert_eq!(close.reason.as_str(), "server shutting down");
}

#[tokio::test]
async fn a_reader_that_stops_reading_is_closed_as_a_slow_consumer() {
    let hose = Firehose::new(FirehoseConfig {
        buffer_size: 2,
        stall_timeout: Duration::from_millis(50),
    });
    let addr = serve_with(hose.clone(), store()).await;
    let mut socket = connect(
        &addr,
        "/firehose/slow",
        Some(("authorization", "bearer firehose")),
    )
    .await
    .expect("connects");
    subscribers(&hose, 1).await;
    // Big lines fill the socket buffers quickly; the reader takes nothing
    // until the server has given up on it.
    let big = "x".repeat(60_000);
    tokio::time::timeout(Duration::from_secs(30), async {
        while hose.subscriber_count() > 0 {
            hose.publish(&Envelope::log(
                "app",
                "0",
                "APP/PROC/WEB",
                big.as_str(),
                LogKind::Out,
            ));
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    })
    .await
    .expect("the stalled reader is disconnected");
    let close = tokio::time::timeout(WAIT, async {
        while let Some(Ok(msg)) = socket.next().await {
            if let WsMessage::Close(frame) = msg {
                return frame;
            }
        }
        None
    })
    .await
    .expect("closed within the wait")
    .expect("a close frame");
    assert_eq!(close.code, CloseCode::Policy);
    assert!(
        close.reason.as_str().contains("too slow"),
        "{}",
        close.reason
    );
}

/// Splits a `multipart/x-protobuf` response into its decoded envelopes.
async fn multipart(resp: reqwest::Response) -> Vec<dropsonde::Envelope> {
    assert_eq!(resp.status(), 200);
    let ctype = resp.headers()["content-type"]
        .to_str()
        .expect("ascii")
        .to_owned();
    let boundary = ctype
        .strip_prefix("multipart/x-protobuf; boundary=")
        .expect("multipart/x-protobuf");
    let body = resp.bytes().await.expect("body");
    let delimiter = format!("--{boundary}");
    let text = body.to_vec();
    let mut parts = Vec::new();
    let mut rest: &[u8] = &text;
    // Each part: "--B\r\n\r\n<bytes>\r\n"; the end: "--B--\r\n".
    loop {
        assert!(rest.starts_with(delimiter.as_bytes()), "delimiter expected");
        rest = &rest[delimiter.len()..];
        if rest.starts_with(b"--") {
            break;
        }
        assert!(rest.starts_with(b"\r\n\r\n"), "no part headers");
        rest = &rest[4..];
        let end = rest
            .windows(delimiter.len() + 2)
            .position(|w| w == format!("\r\n{delimiter}").as_bytes())
            .expect("next delimiter");
        parts.push(dropsonde::Envelope::decode(&rest[..end]).expect("a dropsonde envelope"));
        rest = &rest[end + 2..];
    }
    parts
}

#[tokio::test]
async fn recent_logs_are_the_newest_lines_oldest_first_in_multipart() {
    let store = store();
    let addr = serve(store.clone()).await;
    for i in 0..5 {
        store.emit(Envelope::log(
            "app",
            "0",
            "APP/PROC/WEB",
            format!("line {i}"),
            LogKind::Out,
        ));
    }
    store.emit(Envelope::container_metrics(
        "app",
        0,
        &ContainerMetrics::default(),
    ));
    let client = reqwest::Client::new();
    let get = |query: &str| {
        client
            .get(format!("http://{addr}/apps/app/recentlogs{query}"))
            .header("authorization", "bearer app-reader")
            .send()
    };
    let all: Vec<String> = multipart(get("").await.expect("request"))
        .await
        .iter()
        .map(text)
        .collect();
    assert_eq!(all, (0..5).map(|i| format!("line {i}")).collect::<Vec<_>>());
    let newest: Vec<String> = multipart(get("?limit=2").await.expect("request"))
        .await
        .iter()
        .map(text)
        .collect();
    assert_eq!(newest, ["line 3", "line 4"]);

    let other = client
        .get(format!("http://{addr}/apps/secret/recentlogs"))
        .header("authorization", "bearer app-reader")
        .send()
        .await
        .expect("request");
    assert_eq!(other.status(), 404);
    let none = client
        .get(format!("http://{addr}/apps/app/recentlogs"))
        .send()
        .await
        .expect("request");
    assert_eq!(none.status(), 401);
}

#[tokio::test]
async fn container_metrics_are_the_latest_per_instance() {
    let store = store();
    let addr = serve(store.clone()).await;
    for (index, memory) in [(0, 1), (1, 2), (0, 3)] {
        store.emit(Envelope::container_metrics(
            "app",
            index,
            &ContainerMetrics {
                memory_bytes: memory,
                ..ContainerMetrics::default()
            },
        ));
    }
    let resp = reqwest::Client::new()
        .get(format!("http://{addr}/apps/app/containermetrics"))
        .header("authorization", "bearer app-reader")
        .send()
        .await
        .expect("request");
    let got: Vec<(i32, u64)> = multipart(resp)
        .await
        .iter()
        .map(|e| {
            let m = e.container_metric.as_ref().expect("container metric");
            (m.instance_index, m.memory_bytes)
        })
        .collect();
    assert_eq!(got, [(0, 3), (1, 2)]);
}
