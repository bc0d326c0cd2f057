//! Dropsonde v1 envelopes, the wire format of the traffic controller's
//! websocket and multipart endpoints, and the v2 → v1 mapping loggregator
//! applies before serving them.
//!
//! The messages are hand-written `prost` structs whose field numbers, types
//! and labels follow the `events` package of dropsonde-protocol (proto2), so
//! their encoding is what sonde-go and the PyPI `dropsonde` package decode.
//! Required proto2 fields are always written, even when empty, because
//! proto2 decoders refuse a message that lacks one.

use std::collections::HashMap;

use crate::envelope::{Envelope as V2Envelope, LogKind, Message};

/// The `origin` of a converted envelope whose v2 tags carry none.
pub const DEFAULT_ORIGIN: &str = "ingot";

/// `events.Envelope`: one v1 event with its metadata.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Envelope {
    /// Who emitted the event (a component name).
    #[prost(string, required, tag = "1")]
    pub origin: String,
    /// Which of the event fields is set ([`EventType`] as `i32`).
    #[prost(enumeration = "EventType", required, tag = "2")]
    pub event_type: i32,
    /// Nanoseconds since the Unix epoch.
    #[prost(int64, optional, tag = "6")]
    pub timestamp: Option<i64>,
    /// An HTTP request, when `event_type` is `HttpStartStop`.
    #[prost(message, optional, tag = "7")]
    pub http_start_stop: Option<HttpStartStop>,
    /// A log line, when `event_type` is `LogMessage`.
    #[prost(message, optional, tag = "8")]
    pub log_message: Option<LogMessage>,
    /// A measurement, when `event_type` is `ValueMetric`.
    #[prost(message, optional, tag = "9")]
    pub value_metric: Option<ValueMetric>,
    /// A counter increment, when `event_type` is `CounterEvent`.
    #[prost(message, optional, tag = "10")]
    pub counter_event: Option<CounterEvent>,
    /// An app instance's resource use, when `event_type` is `ContainerMetric`.
    #[prost(message, optional, tag = "12")]
    pub container_metric: Option<ContainerMetric>,
    /// The BOSH deployment of the emitter.
    #[prost(string, optional, tag = "13")]
    pub deployment: Option<String>,
    /// The BOSH job of the emitter.
    #[prost(string, optional, tag = "14")]
    pub job: Option<String>,
    /// The BOSH instance index (a guid) of the emitter.
    #[prost(string, optional, tag = "15")]
    pub index: Option<String>,
    /// The IP address of the emitter.
    #[prost(string, optional, tag = "16")]
    pub ip: Option<String>,
    /// Free-form tags.
    #[prost(map = "string, string", tag = "17")]
    pub tags: HashMap<String, String>,
}

/// `events.Envelope.EventType`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum EventType {
    /// An [`HttpStartStop`].
    HttpStartStop = 4,
    /// A [`LogMessage`].
    LogMessage = 5,
    /// A [`ValueMetric`].
    ValueMetric = 6,
    /// A [`CounterEvent`].
    CounterEvent = 7,
    /// An error event (Ingot sends none).
    Error = 8,
    /// A [`ContainerMetric`].
    ContainerMetric = 9,
}

/// `events.UUID`: a 128-bit UUID as two little-endian halves.
#[derive(Clone, Copy, PartialEq, Eq, prost::Message)]
pub struct Uuid {
    /// Bytes 0..8 of the UUID, read as a little-endian integer.
    #[prost(uint64, required, tag = "1")]
    pub low: u64,
    /// Bytes 8..16 of the UUID, read as a little-endian integer.
    #[prost(uint64, required, tag = "2")]
    pub high: u64,
}

impl Uuid {
    /// Parses the textual form (`f47ac10b-58cc-4372-a567-0e02b2c3d479`,
    /// hyphens optional); `None` unless it is 32 hex digits.
    pub fn parse(text: &str) -> Option<Self> {
        let mut bytes = [0u8; 16];
        let mut digits = text.bytes().filter(|&b| b != b'-');
        for byte in &mut bytes {
            let hi = (digits.next()? as char).to_digit(16)?;
            let lo = (digits.next()? as char).to_digit(16)?;
            // Two hex digits are below 256.
            *byte = (hi * 16 + lo) as u8;
        }
        if digits.next().is_some() {
            return None;
        }
        let mut low = [0u8; 8];
        let mut high = [0u8; 8];
        low.copy_from_slice(&bytes[..8]);
        high.copy_from_slice(&bytes[8..]);
        Some(Self {
            low: u64::from_le_bytes(low),
            high: u64::from_le_bytes(high),
        })
    }
}

/// `events.PeerType.Client`: the request was made by the emitter.
pub const PEER_TYPE_CLIENT: i32 = 1;
/// `events.PeerType.Server`: the request was received by the emitter.
pub const PEER_TYPE_SERVER: i32 = 2;

/// The names of `events.Method`, in order: a method's number is its
/// position plus one.
pub const METHOD_NAMES: [&str; 44] = [
    "GET",
    "POST",
    "PUT",
    "DELETE",
    "HEAD",
    "ACL",
    "BASELINE_CONTROL",
    "BIND",
    "CHECKIN",
    "CHECKOUT",
    "CONNECT",
    "COPY",
    "DEBUG",
    "LABEL",
    "LINK",
    "LOCK",
    "MERGE",
    "MKACTIVITY",
    "MKCALENDAR",
    "MKCOL",
    "MKREDIRECTREF",
    "MKWORKSPACE",
    "MOVE",
    "OPTIONS",
    "ORDERPATCH",
    "PATCH",
    "PRI",
    "PROPFIND",
    "PROPPATCH",
    "REBIND",
    "REPORT",
    "SEARCH",
    "SHOWMETHOD",
    "SPACEJUMP",
    "TEXTSEARCH",
    "TRACE",
    "TRACK",
    "UNBIND",
    "UNCHECKOUT",
    "UNLINK",
    "UNLOCK",
    "UPDATE",
    "UPDATEREDIRECTREF",
    "VERSION_CONTROL",
];

/// The `events.Method` number of an HTTP method name (`VERSION-CONTROL`
/// is `VERSION_CONTROL`); `GET` for a method the enum lacks, because a
/// proto2 decoder refuses a required enum field with an unknown value.
pub fn method_number(name: &str) -> i32 {
    let name = name.trim().to_ascii_uppercase().replace('-', "_");
    METHOD_NAMES
        .iter()
        .position(|m| *m == name)
        .map_or(1, |i| i as i32 + 1)
}

/// `events.HttpStartStop`: one HTTP request from start to end. `peerType`
/// and `method` are enums on the wire; they are kept as their numbers
/// ([`PEER_TYPE_SERVER`], [`method_number`]), which encode the same.
#[derive(Clone, PartialEq, prost::Message)]
pub struct HttpStartStop {
    /// When the request was received, ns since the epoch.
    #[prost(int64, required, tag = "1")]
    pub start_timestamp: i64,
    /// When the response was done, ns since the epoch.
    #[prost(int64, required, tag = "2")]
    pub stop_timestamp: i64,
    /// The request's `X-Vcap-Request-Id`.
    #[prost(message, required, tag = "3")]
    pub request_id: Uuid,
    /// `events.PeerType` number.
    #[prost(int32, required, tag = "4")]
    pub peer_type: i32,
    /// `events.Method` number.
    #[prost(int32, required, tag = "5")]
    pub method: i32,
    /// The request's URL.
    #[prost(string, required, tag = "6")]
    pub uri: String,
    /// The client's address.
    #[prost(string, required, tag = "7")]
    pub remote_address: String,
    /// The `User-Agent` header.
    #[prost(string, required, tag = "8")]
    pub user_agent: String,
    /// The response status.
    #[prost(int32, required, tag = "9")]
    pub status_code: i32,
    /// The response body's length in bytes.
    #[prost(int64, required, tag = "10")]
    pub content_length: i64,
    /// The app guid (tag 11 was the deprecated parent request id).
    #[prost(message, optional, tag = "12")]
    pub application_id: Option<Uuid>,
    /// The app instance's index.
    #[prost(int32, optional, tag = "13")]
    pub instance_index: Option<i32>,
    /// The app instance's guid.
    #[prost(string, optional, tag = "14")]
    pub instance_id: Option<String>,
    /// The `X-Forwarded-For` addresses.
    #[prost(string, repeated, tag = "15")]
    pub forwarded: Vec<String>,
}

/// `events.LogMessage`: one line of output.
#[derive(Clone, PartialEq, prost::Message)]
pub struct LogMessage {
    /// The line, any bytes.
    #[prost(bytes = "vec", required, tag = "1")]
    pub message: Vec<u8>,
    /// Standard output or error ([`MessageType`] as `i32`).
    #[prost(enumeration = "MessageType", required, tag = "2")]
    pub message_type: i32,
    /// Nanoseconds since the Unix epoch.
    #[prost(int64, required, tag = "3")]
    pub timestamp: i64,
    /// The app guid (or source id).
    #[prost(string, optional, tag = "4")]
    pub app_id: Option<String>,
    /// `APP/PROC/WEB`, `STG`, `RTR`, …
    #[prost(string, optional, tag = "5")]
    pub source_type: Option<String>,
    /// The instance index.
    #[prost(string, optional, tag = "6")]
    pub source_instance: Option<String>,
}

/// `events.LogMessage.MessageType`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum MessageType {
    /// Standard output.
    Out = 1,
    /// Standard error.
    Err = 2,
}

/// `events.ValueMetric`: one named measurement.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ValueMetric {
    /// Metric name.
    #[prost(string, required, tag = "1")]
    pub name: String,
    /// The value.
    #[prost(double, required, tag = "2")]
    pub value: f64,
    /// Its unit.
    #[prost(string, required, tag = "3")]
    pub unit: String,
}

/// `events.CounterEvent`: an increment of a named counter.
#[derive(Clone, PartialEq, prost::Message)]
pub struct CounterEvent {
    /// Counter name.
    #[prost(string, required, tag = "1")]
    pub name: String,
    /// Increase since the previous event.
    #[prost(uint64, required, tag = "2")]
    pub delta: u64,
    /// Running total.
    #[prost(uint64, optional, tag = "3")]
    pub total: Option<u64>,
}

/// `events.ContainerMetric`: one app instance's resource use.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ContainerMetric {
    /// The app guid.
    #[prost(string, required, tag = "1")]
    pub application_id: String,
    /// The instance index.
    #[prost(int32, required, tag = "2")]
    pub instance_index: i32,
    /// CPU use in percent of one core.
    #[prost(double, required, tag = "3")]
    pub cpu_percentage: f64,
    /// Memory in use.
    #[prost(uint64, required, tag = "4")]
    pub memory_bytes: u64,
    /// Disk in use.
    #[prost(uint64, required, tag = "5")]
    pub disk_bytes: u64,
    /// Memory limit.
    #[prost(uint64, optional, tag = "6")]
    pub memory_bytes_quota: Option<u64>,
    /// Disk limit.
    #[prost(uint64, optional, tag = "7")]
    pub disk_bytes_quota: Option<u64>,
}

/// v2 tags that become v1 envelope fields rather than tags.
const PROMOTED_TAGS: [&str; 5] = ["origin", "deployment", "job", "index", "ip"];

/// The gauge names that make a v2 gauge a v1 container metric.
const CONTAINER_METRIC_NAMES: [&str; 5] = ["cpu", "memory", "disk", "memory_quota", "disk_quota"];

fn base(v2: &V2Envelope, event_type: EventType) -> Envelope {
    let tag = |name: &str| v2.tags.get(name).cloned().unwrap_or_default();
    let mut tags: HashMap<String, String> = v2
        .tags
        .iter()
        .filter(|(k, _)| !PROMOTED_TAGS.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    if !v2.source_id.is_empty() {
        tags.insert("source_id".to_owned(), v2.source_id.clone());
    }
    if !v2.instance_id.is_empty() {
        tags.insert("instance_id".to_owned(), v2.instance_id.clone());
    }
    let origin = v2
        .tags
        .get("origin")
        .filter(|o| !o.is_empty())
        .cloned()
        .unwrap_or_else(|| DEFAULT_ORIGIN.to_owned());
    Envelope {
        origin,
        event_type: event_type as i32,
        timestamp: Some(v2.timestamp),
        deployment: Some(tag("deployment")),
        job: Some(tag("job")),
        index: Some(tag("index")),
        ip: Some(tag("ip")),
        tags,
        ..Envelope::default()
    }
}

/// The v1 envelopes loggregator serves for one v2 envelope: a log becomes a
/// `LogMessage`, a counter a `CounterEvent`, a gauge carrying `cpu`,
/// `memory`, `disk`, `memory_quota` and `disk_quota` a `ContainerMetric`,
/// any other gauge one `ValueMetric` per metric, and a timer named `http`
/// an `HttpStartStop` (other timers have no v1 form and yield nothing).
///
/// An `http` timer's `HttpStartStop` takes its request from the tags
/// `request_id`, `peer_type` (`Client`/`Server`), `method`, `uri`,
/// `remote_address`, `user_agent`, `status_code`, `content_length`,
/// `instance_index`, `instance_id` and `forwarded` (addresses separated by
/// newlines), and its `applicationId` from the source id when that is a
/// UUID. Missing or unparsable values become zero or empty.
///
/// The v2 `origin`, `deployment`, `job`, `index` and `ip` tags become the
/// envelope fields of those names (`origin` defaults to
/// [`DEFAULT_ORIGIN`]); the other tags stay tags, plus `source_id` and
/// `instance_id`.
pub fn to_v1(v2: &V2Envelope) -> Vec<Envelope> {
    match &v2.message {
        Message::Log { payload, kind } => {
            let mut e = base(v2, EventType::LogMessage);
            e.log_message = Some(LogMessage {
                message: payload.clone(),
                message_type: match kind {
                    LogKind::Out => MessageType::Out,
                    LogKind::Err => MessageType::Err,
                } as i32,
                timestamp: v2.timestamp,
                app_id: Some(v2.source_id.clone()),
                source_type: Some(v2.source_type().unwrap_or_default().to_owned()),
                source_instance: Some(v2.instance_id.clone()),
            });
            vec![e]
        }
        Message::Counter { name, delta, total } => {
            let mut e = base(v2, EventType::CounterEvent);
            e.counter_event = Some(CounterEvent {
                name: name.clone(),
                delta: *delta,
                total: Some(*total),
            });
            vec![e]
        }
        Message::Timer { name, start, stop } => {
            if name != "http" {
                return Vec::new();
            }
            let tag = |k: &str| v2.tags.get(k).map(String::as_str).unwrap_or_default();
            let mut e = base(v2, EventType::HttpStartStop);
            e.http_start_stop = Some(HttpStartStop {
                start_timestamp: *start,
                stop_timestamp: *stop,
                request_id: Uuid::parse(tag("request_id")).unwrap_or_default(),
                peer_type: if tag("peer_type").eq_ignore_ascii_case("client") {
                    PEER_TYPE_CLIENT
                } else {
                    PEER_TYPE_SERVER
                },
                method: method_number(tag("method")),
                uri: tag("uri").to_owned(),
                remote_address: tag("remote_address").to_owned(),
                user_agent: tag("user_agent").to_owned(),
                status_code: tag("status_code").trim().parse().unwrap_or(0),
                content_length: tag("content_length").trim().parse().unwrap_or(0),
                application_id: Uuid::parse(&v2.source_id),
                instance_index: Some(tag("instance_index").trim().parse().unwrap_or(0)),
                instance_id: Some(tag("instance_id").to_owned()),
                forwarded: tag("forwarded")
                    .split('\n')
                    .map(str::trim)
                    .filter(|f| !f.is_empty())
                    .map(str::to_owned)
                    .collect(),
            });
            vec![e]
        }
        Message::Gauge { metrics } => {
            if CONTAINER_METRIC_NAMES
                .iter()
                .all(|name| metrics.contains_key(*name))
            {
                let value = |name: &str| metrics.get(name).map(|g| g.value).unwrap_or_default();
                // Gauge values are doubles; byte counts are whole and
                // non-negative, so the saturating cast loses nothing real.
                let bytes = |name: &str| value(name).max(0.0) as u64;
                let mut e = base(v2, EventType::ContainerMetric);
                e.container_metric = Some(ContainerMetric {
                    application_id: v2.source_id.clone(),
                    instance_index: v2.instance_id.parse().unwrap_or(0),
                    cpu_percentage: value("cpu"),
                    memory_bytes: bytes("memory"),
                    disk_bytes: bytes("disk"),
                    memory_bytes_quota: Some(bytes("memory_quota")),
                    disk_bytes_quota: Some(bytes("disk_quota")),
                });
                return vec![e];
            }
            metrics
                .iter()
                .map(|(name, gauge)| {
                    let mut e = base(v2, EventType::ValueMetric);
                    e.value_metric = Some(ValueMetric {
                        name: name.clone(),
                        value: gauge.value,
                        unit: gauge.unit.clone(),
                    });
                    e
                })
                .collect()
        }
    }
}

#[cfg(test)]
mod tests {
    use prost::Message as _;

    use super::*;
    use crate::envelope::{ContainerMetrics, GaugeValue};

    #[test]
    fn a_log_line_maps_to_a_log_message_with_its_app_and_instance() {
        let mut v2 = V2Envelope::log("app-guid", "3", "APP/PROC/WEB", "hi", LogKind::Err);
        v2.tags.insert("origin".into(), "rep".into());
        let v1 = to_v1(&v2);
        assert_eq!(v1.len(), 1);
        let e = &v1[0];
        assert_eq!(e.origin, "rep");
        assert_eq!(e.event_type(), EventType::LogMessage);
        assert_eq!(e.timestamp, Some(v2.timestamp));
        assert_eq!(
            e.tags.get("source_id").map(String::as_str),
            Some("app-guid")
        );
        assert!(!e.tags.contains_key("origin"));
        let log = e.log_message.clone().unwrap_or_default();
        assert_eq!(log.message, b"hi");
        assert_eq!(log.message_type(), MessageType::Err);
        assert_eq!(log.app_id.as_deref(), Some("app-guid"));
        assert_eq!(log.source_type.as_deref(), Some("APP/PROC/WEB"));
        assert_eq!(log.source_instance.as_deref(), Some("3"));
    }

    #[test]
    fn container_metrics_map_to_one_container_metric_other_gauges_to_value_metrics() {
        let cm = V2Envelope::container_metrics(
            "app-guid",
            2,
            &ContainerMetrics {
                cpu_percentage: 1.5,
                memory_bytes: 10,
                disk_bytes: 20,
                memory_quota_bytes: 30,
                disk_quota_bytes: 40,
                ..ContainerMetrics::default()
            },
        );
        let v1 = to_v1(&cm);
        assert_eq!(v1.len(), 1);
        assert_eq!(
            v1[0].container_metric,
            Some(ContainerMetric {
                application_id: "app-guid".into(),
                instance_index: 2,
                cpu_percentage: 1.5,
                memory_bytes: 10,
                disk_bytes: 20,
                memory_bytes_quota: Some(30),
                disk_bytes_quota: Some(40),
            })
        );
        let g = V2Envelope::gauge(
            "router",
            "0",
            [
                ("a", GaugeValue::new("ms", 1.0)),
                ("b", GaugeValue::new("req", 2.0)),
            ],
        );
        let names: Vec<String> = to_v1(&g)
            .into_iter()
            .filter_map(|e| e.value_metric.map(|m| m.name))
            .collect();
        assert_eq!(names, ["a", "b"]);
    }

    #[test]
    fn uuids_are_two_little_endian_halves() {
        // The example of dropsonde-protocol's uuid.proto.
        assert_eq!(
            Uuid::parse("f47ac10b-58cc-4372-a567-0e02b2c3d479"),
            Some(Uuid {
                low: 0x7243_cc58_0bc1_7af4,
                high: 0x79d4_c3b2_020e_67a5
            })
        );
        assert_eq!(Uuid::parse("not-a-uuid"), None);
        assert_eq!(Uuid::parse("f47ac10b58cc4372a5670e02b2c3d479ff"), None);
    }

    #[test]
    fn an_http_timer_maps_to_an_http_start_stop_from_its_tags() {
        let tags: crate::Tags = [
            ("request_id", "f47ac10b-58cc-4372-a567-0e02b2c3d479"),
            ("peer_type", "Server"),
            ("method", "POST"),
            ("uri", "http://app.example.com/x?y=1"),
            ("remote_address", "10.0.0.1:5555"),
            ("user_agent", "curl/8"),
            ("status_code", "201"),
            ("content_length", "42"),
            ("instance_index", "3"),
            ("instance_id", "inst-guid"),
            ("forwarded", "1.2.3.4\n10.0.0.1"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        let app = "a1b2c3d4-0000-4000-8000-000000000001";
        let v2 = V2Envelope::timer(app, "3", "http", 100, 250, tags);
        let v1 = to_v1(&v2);
        assert_eq!(v1.len(), 1);
        assert_eq!(v1[0].event_type(), EventType::HttpStartStop);
        assert_eq!(
            v1[0].http_start_stop,
            Some(HttpStartStop {
                start_timestamp: 100,
                stop_timestamp: 250,
                request_id: Uuid {
                    low: 0x7243_cc58_0bc1_7af4,
                    high: 0x79d4_c3b2_020e_67a5
                },
                peer_type: PEER_TYPE_SERVER,
                method: 2,
                uri: "http://app.example.com/x?y=1".into(),
                remote_address: "10.0.0.1:5555".into(),
                user_agent: "curl/8".into(),
                status_code: 201,
                content_length: 42,
                application_id: Uuid::parse(app),
                instance_index: Some(3),
                instance_id: Some("inst-guid".into()),
                forwarded: vec!["1.2.3.4".into(), "10.0.0.1".into()],
            })
        );
        // Other timers have no v1 form.
        let other = V2Envelope::timer(app, "3", "db", 1, 2, crate::Tags::new());
        assert!(to_v1(&other).is_empty());
        assert_eq!(method_number("PATCH"), 26);
        assert_eq!(method_number("version-control"), 44);
        assert_eq!(method_number("BREW"), 1);
    }

    #[test]
    fn http_start_stop_encoding_uses_the_dropsonde_field_numbers() {
        let h = HttpStartStop {
            start_timestamp: 1,
            stop_timestamp: 2,
            request_id: Uuid { low: 3, high: 4 },
            peer_type: PEER_TYPE_SERVER,
            method: 1,
            uri: "u".into(),
            remote_address: "r".into(),
            user_agent: "a".into(),
            status_code: 200,
            content_length: 5,
            application_id: Some(Uuid { low: 6, high: 7 }),
            instance_index: Some(8),
            instance_id: Some("i".into()),
            forwarded: vec!["f".into()],
        };
        assert_eq!(
            h.encode_to_vec(),
            [
                0x08, 1, 0x10, 2, 0x1a, 4, 0x08, 3, 0x10, 4, 0x20, 2, 0x28, 1, 0x32, 1, b'u', 0x3a,
                1, b'r', 0x42, 1, b'a', 0x48, 0xc8, 0x01, 0x50, 5, 0x62, 4, 0x08, 6, 0x10, 7, 0x68,
                8, 0x72, 1, b'i', 0x7a, 1, b'f'
            ]
        );
        let e = Envelope {
            origin: "o".into(),
            event_type: EventType::HttpStartStop as i32,
            http_start_stop: Some(HttpStartStop::default()),
            ..Envelope::default()
        };
        // Required fields, the request id's message included, are written
        // even when zero.
        assert_eq!(
            HttpStartStop::default().encode_to_vec()[..10],
            [0x08, 0, 0x10, 0, 0x1a, 4, 0x08, 0, 0x10, 0]
        );
        // httpStartStop is field 7 of the envelope (0x3a = 7 << 3 | 2).
        let bytes = e.encode_to_vec();
        assert_eq!(&bytes[..6], [0x0a, 1, b'o', 0x10, 4, 0x3a]);
    }

    #[test]
    fn encoding_uses_the_dropsonde_field_numbers() {
        let e = Envelope {
            origin: "o".into(),
            event_type: EventType::CounterEvent as i32,
            timestamp: Some(1),
            counter_event: Some(CounterEvent {
                name: "n".into(),
                delta: 2,
                total: Some(3),
            }),
            ..Envelope::default()
        };
        // origin (1, len), eventType (2, varint 7), timestamp (6, varint 1),
        // counterEvent (10, len) {name (1), delta (2), total (3)}.
        assert_eq!(
            e.encode_to_vec(),
            [0x0a, 1, b'o', 0x10, 7, 0x30, 1, 0x52, 7, 0x0a, 1, b'n', 0x10, 2, 0x18, 3]
        );
        // Required fields are written even when empty; the enum defaults
        // to its first value (OUT), as proto2 says.
        let empty = LogMessage::default().encode_to_vec();
        assert_eq!(empty, [0x0a, 0, 0x10, 1, 0x18, 0]);
    }
}
