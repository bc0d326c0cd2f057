//! log-cache's HTTP API as a client sees it, through the axum router
//! (`oneshot`), and `forward_lines` over a pipe.

use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use ingot_logs::{
    forward_lines, log_cache_router, ContainerMetrics, Envelope, LogKind, LogSink, LogStore,
    ReadAuthorizer, ReadDenied, MAX_LINE_BYTES,
};
use serde_json::{json, Value};
use tokio::io::AsyncWriteExt;
use tower::ServiceExt;

/// Allows `bearer good` to read everything except `secret`.
struct TestAuthorizer;

impl ReadAuthorizer for TestAuthorizer {
    fn authorize(&self, authorization: Option<&str>, source_id: &str) -> Result<(), ReadDenied> {
        match authorization {
            None => Err(ReadDenied::unauthenticated("no token")),
            Some("bearer good") if source_id == "secret" => {
                Err(ReadDenied::not_found("no such source"))
            }
            Some("bearer good") => Ok(()),
            Some(_) => Err(ReadDenied::unauthenticated("invalid token")),
        }
    }
}

fn line(source: &str, ts: i64, text: &str) -> Envelope {
    let mut e = Envelope::log(source, "0", "APP/PROC/WEB", text, LogKind::Out);
    e.timestamp = ts;
    e
}

async fn get(store: &Arc<LogStore>, uri: &str, token: Option<&str>) -> (StatusCode, Value) {
    let app = log_cache_router(store.clone(), Arc::new(TestAuthorizer));
    let mut req = Request::get(uri);
    if let Some(token) = token {
        req = req.header("authorization", token);
    }
    let resp = app
        .oneshot(req.body(Body::empty()).expect("request builds"))
        .await
        .expect("router is infallible");
    let status = resp.status();
    let bytes = resp
        .into_body()
        .collect()
        .await
        .expect("body reads")
        .to_bytes();
    let value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    (status, value)
}

fn payloads(body: &Value) -> Vec<String> {
    use base64::Engine as _;
    body["envelopes"]["batch"]
        .as_array()
        .map(|batch| {
            batch
                .iter()
                .map(|e| {
                    let b64 = e["log"]["payload"].as_str().unwrap_or_default();
                    let raw = base64::engine::general_purpose::STANDARD
                        .decode(b64)
                        .unwrap_or_default();
                    String::from_utf8_lossy(&raw).into_owned()
                })
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn read_returns_log_cache_json() {
    let store = LogStore::new(100);
    store.emit(line("app-1", 1_000, "hello"));
    let (status, body) = get(&store, "/api/v1/read/app-1", Some("bearer good")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        body,
        json!({"envelopes":{"batch":[{
            "timestamp":"1000","source_id":"app-1","instance_id":"0",
            "deprecated_tags":{},"tags":{"source_type":"APP/PROC/WEB"},
            "log":{"payload":"aGVsbG8=","type":"OUT"}
        }]}})
    );
}

#[tokio::test]
async fn recent_is_a_descending_read_of_the_newest_and_tail_polls_forward() {
    let store = LogStore::new(10_000);
    for i in 1..=1500 {
        store.emit(line("app", i, &format!("{i}")));
    }
    // cf logs --recent
    let (status, body) = get(
        &store,
        "/api/v1/read/app?envelope_types=LOG&descending=true&limit=1000",
        Some("bearer good"),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let recent = payloads(&body);
    assert_eq!(recent.len(), 1000);
    assert_eq!(recent.first().map(String::as_str), Some("1500"));
    assert_eq!(recent.last().map(String::as_str), Some("501"));

    // cf logs: poll from just after the newest seen.
    store.emit(line("app", 1501, "1501"));
    store.emit(line("app", 1502, "1502"));
    let (_, body) = get(
        &store,
        "/api/v1/read/app?start_time=1501&envelope_types=LOG",
        Some("bearer good"),
    )
    .await;
    assert_eq!(payloads(&body), ["1501", "1502"]);
}

#[tokio::test]
async fn time_window_and_type_filter_over_http() {
    let store = LogStore::new(100);
    for i in 1..=5 {
        store.emit(line("app", i * 10, &format!("{i}")));
    }
    let (_, body) = get(
        &store,
        "/api/v1/read/app?start_time=20&end_time=40&envelope_types=LOG,GAUGE",
        Some("bearer good"),
    )
    .await;
    assert_eq!(payloads(&body), ["2", "3"]);
    let (_, body) = get(
        &store,
        "/api/v1/read/app?envelope_types=COUNTER",
        Some("bearer good"),
    )
    .await;
    assert_eq!(body, json!({"envelopes":{"batch":[]}}));
}

#[tokio::test]
async fn bad_parameters_get_400_with_a_json_error() {
    let store = LogStore::new(100);
    for uri in [
        "/api/v1/read/app?limit=1001",
        "/api/v1/read/app?envelope_types=BOGUS",
        "/api/v1/read/app?start_time=soon",
    ] {
        let (status, body) = get(&store, uri, Some("bearer good")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{uri}");
        assert!(
            body["error"].as_str().is_some_and(|m| !m.is_empty()),
            "{uri}: {body}"
        );
    }
}

#[tokio::test]
async fn denied_reads_get_the_authorizers_status() {
    let store = LogStore::new(100);
    store.emit(line("secret", 1, "hidden"));
    let (status, body) = get(&store, "/api/v1/read/app", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["error"], "no token");
    let (status, _) = get(&store, "/api/v1/read/app", Some("bearer bad")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = get(&store, "/api/v1/read/secret", Some("bearer good")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn info_and_meta() {
    let store = LogStore::new(2);
    for i in 1..=3 {
        store.emit(line("app", i, "x"));
    }
    store.emit(line("secret", 7, "x"));
    let (status, body) = get(&store, "/api/v1/info", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["version"], "3.0.0");
    assert!(body["vm_uptime"]
        .as_str()
        .is_some_and(|s| s.parse::<u64>().is_ok()));

    let (status, body) = get(&store, "/api/v1/meta", Some("bearer good")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        body,
        json!({"meta":{"app":{"count":"2","expired":"1","oldestTimestamp":"2","newestTimestamp":"3"}}})
    );
    let (status, _) = get(&store, "/api/v1/meta", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn source_ids_may_contain_slashes() {
    let store = LogStore::new(100);
    store.emit(line("cf/doppler", 1, "component"));
    let (status, body) = get(&store, "/api/v1/read/cf/doppler", Some("bearer good")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(payloads(&body), ["component"]);
}

#[derive(Default)]
struct Collect(Mutex<Vec<Envelope>>);

impl LogSink for Collect {
    fn emit(&self, envelope: Envelope) {
        self.0.lock().expect("not poisoned").push(envelope);
    }
}

#[tokio::test]
async fn forward_lines_emits_one_envelope_per_line() {
    let sink = Arc::new(Collect::default());
    let (mut writer, reader) = tokio::io::duplex(64);
    let task = forward_lines(
        reader,
        sink.clone(),
        "app".into(),
        "2".into(),
        "APP/PROC/WEB".into(),
        LogKind::Err,
    );
    let long = "y".repeat(MAX_LINE_BYTES + 10);
    let input = format!("first\r\n\nsecond line\n{long}\nlast without newline");
    writer
        .write_all(input.as_bytes())
        .await
        .expect("pipe accepts");
    drop(writer);
    task.await.expect("task ends at EOF");

    let got = sink.0.lock().expect("not poisoned").clone();
    let lines: Vec<Vec<u8>> = got
        .iter()
        .map(|e| match &e.message {
            ingot_logs::Message::Log { payload, kind } => {
                assert_eq!(*kind, LogKind::Err);
                payload.clone()
            }
            other => panic!("not a log: {other:?}"),
        })
        .collect();
    let expected: Vec<Vec<u8>> = vec![
        b"first".to_vec(),
        b"".to_vec(),
        b"second line".to_vec(),
        vec![b'y'; MAX_LINE_BYTES],
        vec![b'y'; 10],
        b"last without newline".to_vec(),
    ];
    assert_eq!(lines, expected);
    assert!(got.iter().all(|e| e.source_id == "app"
        && e.instance_id == "2"
        && e.source_type() == Some("APP/PROC/WEB")));
}

#[tokio::test]
async fn forward_lines_split_exactly_at_the_limit_adds_no_empty_line() {
    let sink = Arc::new(Collect::default());
    let (mut writer, reader) = tokio::io::duplex(1024);
    let task = forward_lines(
        reader,
        sink.clone(),
        "app".into(),
        "0".into(),
        "STG".into(),
        LogKind::Out,
    );
    let exact = "z".repeat(MAX_LINE_BYTES);
    writer
        .write_all(format!("{exact}\nnext\n").as_bytes())
        .await
        .expect("pipe accepts");
    drop(writer);
    task.await.expect("task ends at EOF");
    let got = sink.0.lock().expect("not poisoned").clone();
    let sizes: Vec<usize> = got
        .iter()
        .map(|e| match &e.message {
            ingot_logs::Message::Log { payload, .. } => payload.len(),
            _ => usize::MAX,
        })
        .collect();
    assert_eq!(sizes, [MAX_LINE_BYTES, 4]);
}

#[tokio::test]
async fn container_metrics_are_read_back_as_gauges() {
    let store = LogStore::new(100);
    store.emit(line("app", 1, "a log line"));
    let mut gauge = Envelope::container_metrics(
        "app",
        1,
        &ContainerMetrics {
            cpu_percentage: 3.25,
            memory_bytes: 64 << 20,
            disk_bytes: 10 << 20,
            memory_quota_bytes: 256 << 20,
            disk_quota_bytes: 1 << 30,
            ..ContainerMetrics::default()
        },
    );
    gauge.timestamp = 2;
    store.emit(gauge);
    let (status, body) = get(
        &store,
        "/api/v1/read/app?envelope_types=GAUGE",
        Some("bearer good"),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        body,
        json!({"envelopes":{"batch":[{
            "timestamp":"2","source_id":"app","instance_id":"1",
            "deprecated_tags":{},"tags":{},
            "gauge":{"metrics":{
                "cpu":{"unit":"percentage","value":3.25},
                "memory":{"unit":"bytes","value":67108864.0},
                "disk":{"unit":"bytes","value":10485760.0},
                "memory_quota":{"unit":"bytes","value":268435456.0},
                "disk_quota":{"unit":"bytes","value":1073741824.0},
                "log_rate":{"unit":"B/s","value":0.0},
                "log_rate_limit":{"unit":"B/s","value":0.0}
            }}
        }]}})
    );
}

fn gauge(source: &str, ts: i64, name: &str) -> Envelope {
    let mut e = Envelope::gauge(
        source,
        "0",
        [(name, ingot_logs::GaugeValue::new("bytes", 1.0))],
    );
    e.timestamp = ts;
    e
}

fn kinds(body: &Value) -> Vec<String> {
    body["envelopes"]["batch"]
        .as_array()
        .map(|batch| {
            batch
                .iter()
                .map(|e| {
                    let ts = e["timestamp"].as_str().unwrap_or("?");
                    if e.get("log").is_some() {
                        format!("log@{ts}")
                    } else if let Some(g) = e["gauge"]["metrics"].as_object() {
                        let names: Vec<&str> = g.keys().map(String::as_str).collect();
                        format!("gauge:{}@{ts}", names.join(","))
                    } else {
                        format!("other@{ts}")
                    }
                })
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn every_documented_read_parameter_works_over_http() {
    let store = LogStore::new(100);
    for ts in 1..=6 {
        store.emit(line("app", ts * 10, "l"));
        store.emit(gauge(
            "app",
            ts * 10 + 1,
            if ts % 2 == 0 { "memory" } else { "cpu" },
        ));
    }
    let read = |q: &'static str| {
        let store = store.clone();
        async move {
            let (status, body) = get(
                &store,
                &format!("/api/v1/read/app?{q}"),
                Some("bearer good"),
            )
            .await;
            assert_eq!(status, StatusCode::OK, "{q}: {body}");
            kinds(&body)
        }
    };
    // Window [20, 41), newest first, at most 3.
    assert_eq!(
        read("start_time=20&end_time=41&descending=true&limit=3").await,
        ["log@40", "gauge:cpu@31", "log@30"]
    );
    // Repeated envelope_types, by name and by enum number (1 = LOG, 3 = GAUGE).
    let both = ["log@10", "gauge:cpu@11", "log@20"];
    assert_eq!(
        read("envelope_types=LOG&envelope_types=GAUGE&limit=3").await,
        both
    );
    assert_eq!(
        read("envelope_types=1&envelope_types=3&limit=3").await,
        both
    );
    assert_eq!(
        read("envelope_types=GAUGE&limit=2").await,
        ["gauge:cpu@11", "gauge:memory@21"]
    );
    // name_filter is a regex over metric names.
    assert_eq!(
        read("name_filter=^mem&descending=true").await,
        ["gauge:memory@61", "gauge:memory@41", "gauge:memory@21"]
    );
    // The largest limit is accepted; end_time defaults to now.
    assert_eq!(read("limit=1000").await.len(), 12);
}

#[tokio::test]
async fn meta_accepts_local_only() {
    let store = LogStore::new(10);
    store.emit(line("app", 1, "x"));
    let (status, body) = get(&store, "/api/v1/meta?local_only=true", Some("bearer good")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["meta"]["app"]["count"], "1");
    let (status, _) = get(
        &store,
        "/api/v1/meta?local_only=perhaps",
        Some("bearer good"),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}
