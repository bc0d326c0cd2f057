//! The RLP gateway as a nozzle sees it: a real HTTP client over loopback
//! reading server-sent events from `/v2/read`.

use std::collections::BTreeSet;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use futures::{Stream, StreamExt};
use ingot_logs::{
    rlp_gateway_router_with, Envelope, Firehose, FirehoseConfig, LogKind, LogSink, LogStore,
    RlpConfig,
};
use serde_json::Value;

mod common;
use common::TestAuthorizer;

const WAIT: Duration = Duration::from_secs(10);

/// Serves the gateway on a loopback port; the server task ends with the
/// test's runtime.
async fn serve(firehose: Arc<Firehose>, heartbeat: Duration) -> String {
    let app = rlp_gateway_router_with(
        firehose,
        Arc::new(TestAuthorizer),
        RlpConfig {
            heartbeat_interval: heartbeat,
            ..RlpConfig::default()
        },
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("loopback binds");
    let addr = listener.local_addr().expect("bound address");
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}")
}

async fn open(base: &str, query: &str, token: Option<&str>) -> reqwest::Response {
    let mut req = reqwest::Client::new().get(format!("{base}/v2/read?{query}"));
    if let Some(token) = token {
        req = req.header("authorization", token);
    }
    req.send().await.expect("request reaches the gateway")
}

type ByteStream = Pin<Box<dyn Stream<Item = reqwest::Result<bytes::Bytes>> + Send>>;

/// Reads server-sent events off a response body.
struct SseReader {
    body: ByteStream,
    buf: String,
}

#[derive(Debug)]
struct SseEvent {
    event: String,
    data: String,
}

impl SseReader {
    fn new(resp: reqwest::Response) -> Self {
        Self {
            body: Box::pin(resp.bytes_stream()),
            buf: String::new(),
        }
    }

    /// The next event, or `None` when the stream ends (or stays silent for
    /// [`WAIT`]).
    async fn next(&mut self) -> Option<SseEvent> {
        loop {
            if let Some(end) = self.buf.find("\n\n") {
                let raw: String = self.buf.drain(..end + 2).collect();
                let mut event = SseEvent {
                    event: "message".into(),
                    data: String::new(),
                };
                for line in raw.lines() {
                    if let Some(v) = line.strip_prefix("event: ") {
                        event.event = v.to_owned();
                    } else if let Some(v) = line.strip_prefix("data: ") {
                        event.data.push_str(v);
                    }
                }
                return Some(event);
            }
            let chunk = tokio::time::timeout(WAIT, self.body.next()).await.ok()??;
            self.buf
                .push_str(&String::from_utf8_lossy(&chunk.expect("body chunk reads")));
        }
    }

    /// The next data event's batch, skipping heartbeats.
    async fn next_batch(&mut self) -> Option<Vec<Value>> {
        loop {
            let event = self.next().await?;
            if event.event == "message" {
                let value: Value = serde_json::from_str(&event.data).expect("data is JSON");
                return Some(value["batch"].as_array().cloned().unwrap_or_default());
            }
        }
    }
}

fn payload(envelope: &Value) -> String {
    let b64 = envelope["log"]["payload"].as_str().unwrap_or_default();
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .unwrap_or_default();
    String::from_utf8_lossy(&bytes).into_owned()
}

fn line(source: &str, text: &str) -> Envelope {
    Envelope::log(source, "0", "APP/PROC/WEB", text, LogKind::Out)
}

fn gauge(source: &str) -> Envelope {
    let mut e = line(source, "");
    e.message = ingot_logs::Message::Gauge {
        metrics: [(
            "cpu".to_owned(),
            ingot_logs::GaugeValue {
                unit: "percentage".into(),
                value: 1.0,
            },
        )]
        .into_iter()
        .collect(),
    };
    e
}

#[tokio::test]
async fn an_app_reader_gets_its_source_and_types_only_as_sse() {
    let store = LogStore::new(100);
    let base = serve(store.firehose(), WAIT).await;
    let resp = open(&base, "log&source_id=app", Some("bearer app-reader")).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers()["content-type"].to_str().ok(),
        Some("text/event-stream")
    );
    let mut reader = SseReader::new(resp);
    store.emit(line("other", "not yours"));
    store.emit(gauge("app"));
    store.emit(line("app", "hello"));
    let batch = reader.next_batch().await.expect("a batch arrives");
    assert_eq!(batch.len(), 1, "{batch:?}");
    let envelope = &batch[0];
    assert_eq!(envelope["source_id"], "app");
    assert_eq!(envelope["instance_id"], "0");
    assert_eq!(envelope["tags"]["source_type"], "APP/PROC/WEB");
    assert_eq!(envelope["log"]["type"], "OUT");
    assert!(envelope["timestamp"].is_string(), "int64 as a string");
    assert_eq!(payload(envelope), "hello");
}

#[tokio::test]
async fn the_whole_firehose_needs_the_scope() {
    let hose = Firehose::new(FirehoseConfig::default());
    let base = serve(hose.clone(), WAIT).await;
    assert_eq!(open(&base, "log", None).await.status(), 401);
    assert_eq!(open(&base, "log", Some("bearer bogus")).await.status(), 401);
    assert_eq!(
        open(&base, "log", Some("bearer app-reader")).await.status(),
        403
    );
    assert_eq!(
        open(
            &base,
            "log&source_id=app&source_id=secret",
            Some("bearer app-reader")
        )
        .await
        .status(),
        403
    );
    assert_eq!(
        hose.subscriber_count(),
        0,
        "refused readers never subscribe"
    );
    let resp = open(&base, "log&gauge", Some("bearer firehose")).await;
    assert_eq!(resp.status(), 200);
    let mut reader = SseReader::new(resp);
    hose.publish(&line("anyone", "everything"));
    let batch = reader.next_batch().await.expect("a batch arrives");
    assert_eq!(
        batch.iter().map(payload).collect::<Vec<_>>(),
        ["everything"]
    );
}

#[tokio::test]
async fn a_request_without_type_selectors_is_a_bad_request() {
    let hose = Firehose::new(FirehoseConfig::default());
    let base = serve(hose, WAIT).await;
    let resp = open(&base, "source_id=app", Some("bearer firehose")).await;
    assert_eq!(resp.status(), 400);
    let body: Value = resp.json().await.expect("JSON error body");
    assert!(body["error"]
        .as_str()
        .is_some_and(|e| e.contains("selector")));
}

#[tokio::test]
async fn an_idle_stream_gets_heartbeats() {
    let hose = Firehose::new(FirehoseConfig::default());
    let base = serve(hose, Duration::from_millis(50)).await;
    let resp = open(&base, "log", Some("bearer firehose")).await;
    let mut reader = SseReader::new(resp);
    let event = reader.next().await.expect("an event arrives");
    assert_eq!(event.event, "heartbeat");
    assert!(event
        .data
        .parse::<i64>()
        .is_ok_and(|secs| secs > 1_600_000_000));
}

/// Collects `want` log payloads from a reader.
async fn collect(mut reader: SseReader, want: usize) -> Vec<String> {
    let mut got = Vec::new();
    while got.len() < want {
        let Some(batch) = reader.next_batch().await else {
            break;
        };
        got.extend(batch.iter().map(payload));
    }
    got
}

#[tokio::test]
async fn readers_sharing_a_shard_id_split_the_stream_and_another_id_gets_all() {
    let hose = Firehose::new(FirehoseConfig::default());
    let base = serve(hose.clone(), WAIT).await;
    let token = Some("bearer firehose");
    let one = SseReader::new(open(&base, "log&shard_id=nozzle", token).await);
    let two = SseReader::new(open(&base, "log&shard_id=nozzle", token).await);
    let other = SseReader::new(open(&base, "log&shard_id=another", token).await);
    assert_eq!(hose.subscriber_count(), 3);
    let all: BTreeSet<String> = (0..20).map(|i| format!("line {i:02}")).collect();
    for text in &all {
        hose.publish(&line("app", text));
    }
    let (one, two, other) = tokio::join!(collect(one, 10), collect(two, 10), collect(other, 20));
    let one: BTreeSet<String> = one.into_iter().collect();
    let two: BTreeSet<String> = two.into_iter().collect();
    assert_eq!(one.len(), 10);
    assert_eq!(two.len(), 10);
    assert!(one.is_disjoint(&two), "{one:?} and {two:?} overlap");
    assert_eq!(&one | &two, all);
    assert_eq!(other.into_iter().collect::<BTreeSet<_>>(), all);
}

#[tokio::test]
async fn a_closed_client_unsubscribes() {
    let hose = Firehose::new(FirehoseConfig::default());
    let base = serve(hose.clone(), Duration::from_millis(20)).await;
    let resp = open(&base, "log", Some("bearer firehose")).await;
    assert_eq!(hose.subscriber_count(), 1);
    drop(resp);
    // The server notices the closed connection at its next write (a
    // heartbeat at the latest) and drops the subscription.
    let deadline = tokio::time::Instant::now() + WAIT;
    while hose.subscriber_count() > 0 {
        assert!(tokio::time::Instant::now() < deadline, "still subscribed");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn a_reader_that_falls_behind_is_told_how_many_were_dropped() {
    let hose = Firehose::new(FirehoseConfig {
        buffer_size: 5,
        stall_timeout: Duration::from_secs(3600),
    });
    let base = serve(hose.clone(), WAIT).await;
    let mut reader =
        SseReader::new(open(&base, "log&source_id=app", Some("bearer firehose")).await);
    // The test runtime has one thread: the gateway cannot take anything
    // until this loop yields, so all but the first five are dropped.
    for i in 0..100 {
        hose.publish(&line("app", &format!("line {i}")));
    }
    let mut got = Vec::new();
    while got.len() < 6 {
        let batch = reader.next_batch().await.expect("a batch arrives");
        got.extend(batch);
    }
    let texts: Vec<String> = got.iter().map(payload).collect();
    let mut want: Vec<String> = (0..5).map(|i| format!("line {i}")).collect();
    want.push(
        "Log message output is too high. 95 messages dropped (Total 95 messages dropped).".into(),
    );
    assert_eq!(texts, want);
    let notice = &got[5];
    assert_eq!(notice["source_id"], "app");
    assert_eq!(notice["log"]["type"], "ERR");
    assert_eq!(notice["tags"]["source_type"], "LGR");
}

#[tokio::test]
async fn shutdown_closes_open_streams() {
    let hose = Firehose::new(FirehoseConfig::default());
    let base = serve(hose.clone(), WAIT).await;
    let mut reader = SseReader::new(open(&base, "log", Some("bearer firehose")).await);
    hose.shutdown();
    let event = reader.next().await.expect("a closing event");
    assert_eq!(event.event, "closing");
    assert!(reader.next().await.is_none(), "the stream ends");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_is_disconnected_without_slowing_the_publisher() {
    let hose = Firehose::new(FirehoseConfig {
        buffer_size: 10,
        stall_timeout: Duration::from_millis(200),
    });
    let mut registry = prometheus_client::registry::Registry::default();
    hose.register_metrics(&mut registry);
    let base = serve(hose.clone(), WAIT).await;
    // Headers read, body never read: the socket buffers fill, the gateway
    // stops taking, the subscriber's buffer fills.
    let stuck = open(&base, "log", Some("bearer firehose")).await;
    let big = "x".repeat(64 * 1024);
    let deadline = tokio::time::Instant::now() + WAIT;
    let mut slowest = Duration::ZERO;
    while hose.subscriber_count() > 0 {
        assert!(tokio::time::Instant::now() < deadline, "never disconnected");
        let started = std::time::Instant::now();
        hose.publish(&line("app", big.as_str()));
        slowest = slowest.max(started.elapsed());
        tokio::task::yield_now().await;
    }
    assert!(
        slowest < Duration::from_millis(500),
        "a publish waited {slowest:?}"
    );
    let mut text = String::new();
    assert!(prometheus_client::encoding::text::encode(&mut text, &registry).is_ok());
    assert!(
        text.contains("firehose_slow_consumers_disconnected_total 1"),
        "{text}"
    );
    drop(stuck);
}
