//! The protobuf-JSON mapping of loggregator v2 envelopes and log-cache's
//! responses, as log-cache's HTTP gateway writes them: original proto field
//! names, 64-bit integers as strings, bytes as base64, enums by name, default
//! values emitted. Deserialisation is lenient the way protobuf-JSON parsers
//! are (numbers or strings, camelCase or original names), so clients such as
//! the CLI can read responses with the same types.

use std::collections::BTreeMap;

use base64::Engine as _;
use serde::{Deserialize, Serialize};

use crate::envelope::{Envelope, GaugeValue, LogKind, Message, Tags};
use crate::store::SourceMeta;

/// `GET /api/v1/read/{source_id}` → `{"envelopes":{"batch":[…]}}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReadResponse {
    /// The envelopes found.
    pub envelopes: EnvelopeBatch,
}

/// loggregator v2 `EnvelopeBatch`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EnvelopeBatch {
    /// The envelopes, in the order the read asked for.
    #[serde(default)]
    pub batch: Vec<WireEnvelope>,
}

/// loggregator v2 `Envelope` in protobuf JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WireEnvelope {
    /// ns since the epoch, as a decimal string.
    #[serde(with = "int_string")]
    pub timestamp: i64,
    /// The source id.
    #[serde(default, alias = "sourceId")]
    pub source_id: String,
    /// The instance id.
    #[serde(default, alias = "instanceId")]
    pub instance_id: String,
    /// Always empty: Ingot never emits v1-style tags.
    #[serde(default, alias = "deprecatedTags")]
    pub deprecated_tags: BTreeMap<String, serde_json::Value>,
    /// Tags such as `source_type`.
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    /// Set for log envelopes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log: Option<WireLog>,
    /// Set for counter envelopes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub counter: Option<WireCounter>,
    /// Set for gauge envelopes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gauge: Option<WireGauge>,
    /// Set for timer envelopes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timer: Option<WireTimer>,
}

/// loggregator v2 `Log`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WireLog {
    /// The line, base64 (standard alphabet, padded).
    #[serde(default)]
    pub payload: String,
    /// `OUT` or `ERR`.
    #[serde(rename = "type", default = "out")]
    pub kind: String,
}

fn out() -> String {
    "OUT".to_owned()
}

/// loggregator v2 `Counter`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WireCounter {
    /// Counter name.
    #[serde(default)]
    pub name: String,
    /// uint64 as a string.
    #[serde(default, with = "uint_string")]
    pub delta: u64,
    /// uint64 as a string.
    #[serde(default, with = "uint_string")]
    pub total: u64,
}

/// loggregator v2 `Gauge`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WireGauge {
    /// Metric name → value.
    #[serde(default)]
    pub metrics: BTreeMap<String, WireGaugeValue>,
}

/// loggregator v2 `Timer`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WireTimer {
    /// Timer name.
    #[serde(default)]
    pub name: String,
    /// Start, ns since the epoch; int64 as a string.
    #[serde(default, with = "int_string")]
    pub start: i64,
    /// Stop, ns since the epoch; int64 as a string.
    #[serde(default, with = "int_string")]
    pub stop: i64,
}

/// loggregator v2 `GaugeValue`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WireGaugeValue {
    /// Unit.
    #[serde(default)]
    pub unit: String,
    /// Value (a JSON number).
    #[serde(default)]
    pub value: f64,
}

/// `GET /api/v1/info`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InfoResponse {
    /// log-cache version.
    pub version: String,
    /// Seconds since the store started, as a string.
    pub vm_uptime: String,
}

/// `GET /api/v1/meta`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetaResponse {
    /// Source id → what the store holds for it.
    pub meta: BTreeMap<String, MetaInfo>,
}

/// log-cache `MetaInfo` (int64 fields as strings).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetaInfo {
    /// Envelopes held.
    #[serde(with = "int_string")]
    pub count: i64,
    /// Envelopes evicted.
    #[serde(with = "int_string")]
    pub expired: i64,
    /// Oldest timestamp held.
    #[serde(
        rename = "oldestTimestamp",
        alias = "oldest_timestamp",
        with = "int_string"
    )]
    pub oldest_timestamp: i64,
    /// Newest timestamp held.
    #[serde(
        rename = "newestTimestamp",
        alias = "newest_timestamp",
        with = "int_string"
    )]
    pub newest_timestamp: i64,
}

impl From<SourceMeta> for MetaInfo {
    fn from(m: SourceMeta) -> Self {
        Self {
            count: i64::try_from(m.count).unwrap_or(i64::MAX),
            expired: i64::try_from(m.expired).unwrap_or(i64::MAX),
            oldest_timestamp: m.oldest_timestamp,
            newest_timestamp: m.newest_timestamp,
        }
    }
}

/// A wire envelope that does not map onto an [`Envelope`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// No `log`, `counter`, `gauge` or `timer` (an event, which Ingot does not model).
    #[error("envelope from {source_id:?} at {timestamp} carries no log, counter, gauge or timer")]
    UnsupportedMessage {
        /// The envelope's source id.
        source_id: String,
        /// The envelope's timestamp.
        timestamp: i64,
    },
    /// The log payload is not valid base64.
    #[error(
        "envelope from {source_id:?} at {timestamp} has a payload that is not base64: {reason}"
    )]
    BadPayload {
        /// The envelope's source id.
        source_id: String,
        /// The envelope's timestamp.
        timestamp: i64,
        /// The decoder's complaint.
        reason: String,
    },
}

impl From<&Envelope> for WireEnvelope {
    fn from(e: &Envelope) -> Self {
        let (mut log, mut counter, mut gauge, mut timer) = (None, None, None, None);
        match &e.message {
            Message::Log { payload, kind } => {
                log = Some(WireLog {
                    payload: base64::engine::general_purpose::STANDARD.encode(payload),
                    kind: match kind {
                        LogKind::Out => "OUT",
                        LogKind::Err => "ERR",
                    }
                    .to_owned(),
                });
            }
            Message::Counter { name, delta, total } => {
                counter = Some(WireCounter {
                    name: name.clone(),
                    delta: *delta,
                    total: *total,
                });
            }
            Message::Timer { name, start, stop } => {
                timer = Some(WireTimer {
                    name: name.clone(),
                    start: *start,
                    stop: *stop,
                });
            }
            Message::Gauge { metrics } => {
                gauge = Some(WireGauge {
                    metrics: metrics
                        .iter()
                        .map(|(name, v)| {
                            (
                                name.clone(),
                                WireGaugeValue {
                                    unit: v.unit.clone(),
                                    value: v.value,
                                },
                            )
                        })
                        .collect(),
                });
            }
        }
        Self {
            timestamp: e.timestamp,
            source_id: e.source_id.clone(),
            instance_id: e.instance_id.clone(),
            deprecated_tags: BTreeMap::new(),
            tags: BTreeMap::from(&e.tags),
            log,
            counter,
            gauge,
            timer,
        }
    }
}

impl WireEnvelope {
    /// Back to the domain type.
    pub fn into_envelope(self) -> Result<Envelope, WireError> {
        let message = if let Some(log) = self.log {
            let payload = base64::engine::general_purpose::STANDARD
                .decode(log.payload.as_bytes())
                .map_err(|err| WireError::BadPayload {
                    source_id: self.source_id.clone(),
                    timestamp: self.timestamp,
                    reason: err.to_string(),
                })?;
            let kind = if log.kind.eq_ignore_ascii_case("ERR") {
                LogKind::Err
            } else {
                LogKind::Out
            };
            Message::Log { payload, kind }
        } else if let Some(c) = self.counter {
            Message::Counter {
                name: c.name,
                delta: c.delta,
                total: c.total,
            }
        } else if let Some(g) = self.gauge {
            Message::Gauge {
                metrics: g
                    .metrics
                    .into_iter()
                    .map(|(name, v)| {
                        (
                            name,
                            GaugeValue {
                                unit: v.unit,
                                value: v.value,
                            },
                        )
                    })
                    .collect(),
            }
        } else if let Some(t) = self.timer {
            Message::Timer {
                name: t.name,
                start: t.start,
                stop: t.stop,
            }
        } else {
            return Err(WireError::UnsupportedMessage {
                source_id: self.source_id,
                timestamp: self.timestamp,
            });
        };
        Ok(Envelope {
            timestamp: self.timestamp,
            source_id: self.source_id,
            instance_id: self.instance_id,
            tags: Tags::from(self.tags),
            message,
        })
    }
}

impl ReadResponse {
    /// The response for these envelopes, in the given order.
    pub fn from_envelopes(envelopes: &[Envelope]) -> Self {
        Self {
            envelopes: EnvelopeBatch {
                batch: envelopes.iter().map(WireEnvelope::from).collect(),
            },
        }
    }
}

/// A JSON string or number that holds an integer.
#[derive(Deserialize)]
#[serde(untagged)]
enum IntOrString {
    Int(i64),
    UInt(u64),
    Str(String),
}

mod int_string {
    use super::IntOrString;
    use serde::{de::Error, Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &i64, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(v)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
        match IntOrString::deserialize(d)? {
            IntOrString::Int(i) => Ok(i),
            IntOrString::UInt(u) => i64::try_from(u).map_err(D::Error::custom),
            IntOrString::Str(s) => s.trim().parse().map_err(D::Error::custom),
        }
    }
}

mod uint_string {
    use super::IntOrString;
    use serde::{de::Error, Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &u64, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(v)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
        match IntOrString::deserialize(d)? {
            IntOrString::Int(i) => u64::try_from(i).map_err(D::Error::custom),
            IntOrString::UInt(u) => Ok(u),
            IntOrString::Str(s) => s.trim().parse().map_err(D::Error::custom),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn at(mut e: Envelope) -> Envelope {
        e.timestamp = 1_700_000_000_123_456_789;
        e
    }

    #[test]
    fn log_envelope_has_log_caches_exact_json() {
        let e = at(Envelope::log(
            "app-guid",
            "0",
            "APP/PROC/WEB",
            "hello\tworld",
            LogKind::Out,
        ));
        let value = serde_json::to_value(ReadResponse::from_envelopes(&[e])).ok();
        assert_eq!(
            value,
            Some(json!({"envelopes":{"batch":[{
                "timestamp":"1700000000123456789",
                "source_id":"app-guid",
                "instance_id":"0",
                "deprecated_tags":{},
                "tags":{"source_type":"APP/PROC/WEB"},
                "log":{"payload":"aGVsbG8Jd29ybGQ=","type":"OUT"}
            }]}}))
        );
    }

    #[test]
    fn stderr_gauge_and_counter_have_exact_json() {
        let err = at(Envelope::log("s", "1", "STG", "oops", LogKind::Err));
        let mut metrics = BTreeMap::new();
        metrics.insert(
            "cpu".to_owned(),
            GaugeValue {
                unit: "percentage".into(),
                value: 1.5,
            },
        );
        let gauge = at(Envelope {
            timestamp: 0,
            source_id: "s".into(),
            instance_id: "0".into(),
            tags: Tags::new(),
            message: Message::Gauge { metrics },
        });
        let counter = at(Envelope {
            timestamp: 0,
            source_id: "s".into(),
            instance_id: "0".into(),
            tags: Tags::new(),
            message: Message::Counter {
                name: "requests".into(),
                delta: 2,
                total: u64::MAX,
            },
        });
        let value = serde_json::to_value(ReadResponse::from_envelopes(&[err, gauge, counter])).ok();
        assert_eq!(
            value,
            Some(json!({"envelopes":{"batch":[
                {"timestamp":"1700000000123456789","source_id":"s","instance_id":"1",
                 "deprecated_tags":{},"tags":{"source_type":"STG"},
                 "log":{"payload":"b29wcw==","type":"ERR"}},
                {"timestamp":"1700000000123456789","source_id":"s","instance_id":"0",
                 "deprecated_tags":{},"tags":{},
                 "gauge":{"metrics":{"cpu":{"unit":"percentage","value":1.5}}}},
                {"timestamp":"1700000000123456789","source_id":"s","instance_id":"0",
                 "deprecated_tags":{},"tags":{},
                 "counter":{"name":"requests","delta":"2","total":"18446744073709551615"}}
            ]}}))
        );
    }

    #[test]
    fn wire_round_trips_and_accepts_numbers_and_camel_case() {
        let e = at(Envelope::log(
            "a",
            "0",
            "RTR",
            vec![0xff, 0x00],
            LogKind::Err,
        ));
        let json =
            serde_json::to_string(&ReadResponse::from_envelopes(std::slice::from_ref(&e))).ok();
        let back: Option<ReadResponse> = json.and_then(|j| serde_json::from_str(&j).ok());
        let decoded: Vec<_> = back
            .map(|r| r.envelopes.batch)
            .unwrap_or_default()
            .into_iter()
            .map(WireEnvelope::into_envelope)
            .collect();
        assert_eq!(decoded, vec![Ok(e)]);

        let lenient: Result<WireEnvelope, _> = serde_json::from_value(json!({
            "timestamp": 5, "sourceId": "x", "instanceId": "2",
            "counter": {"name": "c", "delta": 1, "total": "3"}
        }));
        let env = lenient
            .map_err(|e| e.to_string())
            .and_then(|w| w.into_envelope().map_err(|e| e.to_string()));
        assert_eq!(env.as_ref().map(|e| e.source_id.as_str()), Ok("x"));
        assert_eq!(
            env.map(|e| e.message),
            Ok(Message::Counter {
                name: "c".into(),
                delta: 1,
                total: 3
            })
        );
    }

    #[test]
    fn timer_envelopes_have_exact_json_and_round_trip() {
        let tags: Tags = [("method".to_owned(), "GET".to_owned())]
            .into_iter()
            .collect();
        let e = at(Envelope::timer(
            "app",
            "0",
            "http",
            1_700_000_000_000_000_001,
            1_700_000_000_000_000_999,
            tags,
        ));
        let value = serde_json::to_value(WireEnvelope::from(&e)).ok();
        assert_eq!(
            value,
            Some(json!({
                "timestamp":"1700000000123456789","source_id":"app","instance_id":"0",
                "deprecated_tags":{},"tags":{"method":"GET"},
                "timer":{"name":"http","start":"1700000000000000001","stop":"1700000000000000999"}
            }))
        );
        let back = value
            .and_then(|v| serde_json::from_value::<WireEnvelope>(v).ok())
            .map(WireEnvelope::into_envelope);
        assert_eq!(back, Some(Ok(e)));
    }

    #[test]
    fn event_envelopes_are_reported_unsupported() {
        let w: Result<WireEnvelope, _> =
            serde_json::from_value(json!({"timestamp":"1","source_id":"x","event":{}}));
        assert!(matches!(
            w.map(WireEnvelope::into_envelope),
            Ok(Err(WireError::UnsupportedMessage { .. }))
        ));
    }
}
