//! The loggregator v2 envelope as Ingot's domain type: a timestamped message
//! from one instance of one source.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::time::{SystemTime, UNIX_EPOCH};

/// One loggregator v2 envelope.
#[derive(Debug, Clone, PartialEq)]
pub struct Envelope {
    /// Nanoseconds since the Unix epoch.
    pub timestamp: i64,
    /// Whose envelope this is: an app guid, or a component name.
    pub source_id: String,
    /// Which instance of the source: an app instance's index ("0", "1", …).
    pub instance_id: String,
    /// Key/value tags; `source_type` (`APP/PROC/WEB`, `STG`, `RTR`, …) for logs.
    pub tags: Tags,
    /// What the envelope carries.
    pub message: Message,
}

/// An envelope's tags: a small map kept as a sorted vector. Envelopes
/// carry one to a few tags, and log-cache keeps 100 000 envelopes per
/// source: a `BTreeMap` would allocate a node for eleven entries (over
/// 500 bytes) for the one `source_type` tag of every line.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tags(Vec<(String, String)>);

impl Tags {
    /// No tags.
    pub fn new() -> Self {
        Self(Vec::new())
    }

    /// No tags, with room for `n` without reallocating.
    pub fn with_capacity(n: usize) -> Self {
        Self(Vec::with_capacity(n))
    }

    fn position(&self, key: &str) -> Result<usize, usize> {
        self.0.binary_search_by(|(k, _)| k.as_str().cmp(key))
    }

    /// The value of `key`.
    pub fn get(&self, key: &str) -> Option<&String> {
        self.position(key).ok().map(|i| &self.0[i].1)
    }

    /// Whether `key` is set.
    pub fn contains_key(&self, key: &str) -> bool {
        self.position(key).is_ok()
    }

    /// Sets `key` to `value`; returns the value it replaced.
    pub fn insert(&mut self, key: String, value: String) -> Option<String> {
        match self.position(&key) {
            Ok(i) => Some(std::mem::replace(&mut self.0[i].1, value)),
            Err(i) => {
                self.0.insert(i, (key, value));
                None
            }
        }
    }

    /// Removes `key`; returns its value.
    pub fn remove(&mut self, key: &str) -> Option<String> {
        self.position(key).ok().map(|i| self.0.remove(i).1)
    }

    /// The tags, sorted by key.
    pub fn iter(&self) -> impl Iterator<Item = (&String, &String)> {
        self.0.iter().map(|(k, v)| (k, v))
    }

    /// How many tags.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Removes every tag.
    pub fn clear(&mut self) {
        self.0.clear();
    }
}

impl FromIterator<(String, String)> for Tags {
    fn from_iter<I: IntoIterator<Item = (String, String)>>(iter: I) -> Self {
        let mut tags = Self::new();
        for (k, v) in iter {
            tags.insert(k, v);
        }
        tags
    }
}

impl<'a> IntoIterator for &'a Tags {
    type Item = (&'a String, &'a String);
    type IntoIter = std::iter::Map<
        std::slice::Iter<'a, (String, String)>,
        fn(&'a (String, String)) -> (&'a String, &'a String),
    >;

    fn into_iter(self) -> Self::IntoIter {
        self.0.iter().map(|(k, v)| (k, v))
    }
}

impl From<BTreeMap<String, String>> for Tags {
    fn from(map: BTreeMap<String, String>) -> Self {
        // A BTreeMap iterates in key order: already sorted.
        Self(map.into_iter().collect())
    }
}

impl From<&Tags> for BTreeMap<String, String> {
    fn from(tags: &Tags) -> Self {
        tags.0.iter().cloned().collect()
    }
}

/// The payload of an [`Envelope`].
#[derive(Debug, Clone, PartialEq)]
pub enum Message {
    /// A line of output.
    Log {
        /// The line, without its trailing newline; any bytes.
        payload: Vec<u8>,
        /// Standard output or standard error.
        kind: LogKind,
    },
    /// Point-in-time measurements, by metric name.
    Gauge {
        /// Metric name → value and unit.
        metrics: BTreeMap<String, GaugeValue>,
    },
    /// A monotonically increasing count.
    Counter {
        /// Counter name.
        name: String,
        /// Increase since the previous envelope.
        delta: u64,
        /// Running total.
        total: u64,
    },
    /// The duration of an event, such as an HTTP request (loggregator v2
    /// `timer`; one named `http` is served as a v1 `HttpStartStop`).
    Timer {
        /// Timer name (`http` for the router's requests).
        name: String,
        /// When the event began, ns since the Unix epoch.
        start: i64,
        /// When the event ended, ns since the Unix epoch.
        stop: i64,
    },
}

/// Which stream a log line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LogKind {
    /// Standard output (`OUT`).
    Out,
    /// Standard error (`ERR`).
    Err,
}

/// One gauge measurement.
#[derive(Debug, Clone, PartialEq)]
pub struct GaugeValue {
    /// Unit, such as `percentage` or `bytes`.
    pub unit: String,
    /// The measured value.
    pub value: f64,
}

impl GaugeValue {
    /// A value in `unit`.
    pub fn new(unit: &str, value: f64) -> Self {
        Self {
            unit: unit.to_owned(),
            value,
        }
    }
}

/// One app instance's resource use, for [`Envelope::container_metrics`].
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ContainerMetrics {
    /// CPU use as a percentage of one core over the last interval (may
    /// exceed 100 on several cores).
    pub cpu_percentage: f64,
    /// Memory in use.
    pub memory_bytes: u64,
    /// Disk in use.
    pub disk_bytes: u64,
    /// The instance's memory limit.
    pub memory_quota_bytes: u64,
    /// The instance's disk limit.
    pub disk_quota_bytes: u64,
    /// Log bytes the instance wrote per second over the last interval.
    pub log_rate_bytes_per_second: f64,
    /// Its log rate limit in bytes per second; -1 is unlimited.
    pub log_rate_limit_bytes_per_second: f64,
}

/// The envelope types log-cache filters on (`envelope_types=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EnvelopeType {
    /// Log lines.
    Log,
    /// Counters.
    Counter,
    /// Gauges.
    Gauge,
    /// Timers (the router's `http` timers).
    Timer,
    /// Events (Ingot emits none).
    Event,
}

/// An `envelope_types` value that is not one of log-cache's names.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown envelope type {input:?}: expected LOG, COUNTER, GAUGE, TIMER, EVENT or ANY")]
pub struct UnknownEnvelopeType {
    /// The value that was given.
    pub input: String,
}

impl EnvelopeType {
    /// Parses one of log-cache's names; `ANY` is `None` (no filter).
    pub fn parse(input: &str) -> Result<Option<Self>, UnknownEnvelopeType> {
        match input.trim().to_ascii_uppercase().as_str() {
            "ANY" => Ok(None),
            other => other.parse().map(Some),
        }
    }
}

impl FromStr for EnvelopeType {
    type Err = UnknownEnvelopeType;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        match input.trim().to_ascii_uppercase().as_str() {
            "LOG" => Ok(Self::Log),
            "COUNTER" => Ok(Self::Counter),
            "GAUGE" => Ok(Self::Gauge),
            "TIMER" => Ok(Self::Timer),
            "EVENT" => Ok(Self::Event),
            _ => Err(UnknownEnvelopeType {
                input: input.to_owned(),
            }),
        }
    }
}

impl fmt::Display for EnvelopeType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Log => "LOG",
            Self::Counter => "COUNTER",
            Self::Gauge => "GAUGE",
            Self::Timer => "TIMER",
            Self::Event => "EVENT",
        })
    }
}

impl Message {
    /// The envelope type this message is filtered as.
    pub fn envelope_type(&self) -> EnvelopeType {
        match self {
            Self::Log { .. } => EnvelopeType::Log,
            Self::Gauge { .. } => EnvelopeType::Gauge,
            Self::Counter { .. } => EnvelopeType::Counter,
            Self::Timer { .. } => EnvelopeType::Timer,
        }
    }
}

impl Envelope {
    /// A log line from `source_id`/`instance_id`, tagged with `source_type`
    /// (`APP/PROC/WEB`, `STG`, `RTR`, …) and stamped now.
    pub fn log(
        source_id: &str,
        instance_id: &str,
        source_type: &str,
        payload: impl Into<Vec<u8>>,
        kind: LogKind,
    ) -> Self {
        let tags = Tags(vec![("source_type".to_owned(), source_type.to_owned())]);
        Self {
            timestamp: now_nanos(),
            source_id: source_id.to_owned(),
            instance_id: instance_id.to_owned(),
            tags,
            message: Message::Log {
                payload: payload.into(),
                kind,
            },
        }
    }

    /// A gauge from `source_id`/`instance_id` carrying `metrics` (name →
    /// value and unit), stamped now.
    pub fn gauge<K: Into<String>>(
        source_id: &str,
        instance_id: &str,
        metrics: impl IntoIterator<Item = (K, GaugeValue)>,
    ) -> Self {
        Self {
            timestamp: now_nanos(),
            source_id: source_id.to_owned(),
            instance_id: instance_id.to_owned(),
            tags: Tags::new(),
            message: Message::Gauge {
                metrics: metrics.into_iter().map(|(k, v)| (k.into(), v)).collect(),
            },
        }
    }

    /// One app instance's container metrics as Diego emits them: one gauge
    /// with `cpu` (percentage), `memory`, `disk`, `memory_quota` and
    /// `disk_quota` (bytes), `log_rate` and `log_rate_limit` (B/s), from the
    /// app guid and the instance index.
    pub fn container_metrics(app_guid: &str, instance_index: u32, m: &ContainerMetrics) -> Self {
        // Gauge values are doubles on the wire; byte counts stay exact up
        // to 2^53 (8 PiB).
        let bytes = |n: u64| GaugeValue::new("bytes", n as f64);
        Self::gauge(
            app_guid,
            &instance_index.to_string(),
            [
                ("cpu", GaugeValue::new("percentage", m.cpu_percentage)),
                ("memory", bytes(m.memory_bytes)),
                ("disk", bytes(m.disk_bytes)),
                ("memory_quota", bytes(m.memory_quota_bytes)),
                ("disk_quota", bytes(m.disk_quota_bytes)),
                (
                    "log_rate",
                    GaugeValue::new("B/s", m.log_rate_bytes_per_second),
                ),
                (
                    "log_rate_limit",
                    GaugeValue::new("B/s", m.log_rate_limit_bytes_per_second),
                ),
            ],
        )
    }

    /// A timer from `source_id`/`instance_id` named `name`, for an event
    /// from `start_ns` to `stop_ns` (ns since the Unix epoch), with `tags`,
    /// stamped now. The router's per-request timer is named `http` and
    /// carries gorouter's tags (`method`, `status_code`, …; see
    /// [`crate::dropsonde::to_v1`]).
    pub fn timer(
        source_id: &str,
        instance_id: &str,
        name: &str,
        start_ns: i64,
        stop_ns: i64,
        tags: Tags,
    ) -> Self {
        Self {
            timestamp: now_nanos(),
            source_id: source_id.to_owned(),
            instance_id: instance_id.to_owned(),
            tags,
            message: Message::Timer {
                name: name.to_owned(),
                start: start_ns,
                stop: stop_ns,
            },
        }
    }

    /// The `source_type` tag, if any.
    pub fn source_type(&self) -> Option<&str> {
        self.tags.get("source_type").map(String::as_str)
    }
}

/// Nanoseconds since the Unix epoch, now.
pub fn now_nanos() -> i64 {
    // A clock before 1970 or after 2262 is not worth failing an emit for.
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_constructor_tags_source_type_and_stamps_now() {
        let before = now_nanos();
        let env = Envelope::log("app-guid", "0", "APP/PROC/WEB", "hello", LogKind::Out);
        assert!(env.timestamp >= before && env.timestamp <= now_nanos());
        assert_eq!(env.source_type(), Some("APP/PROC/WEB"));
        assert_eq!(
            env.message,
            Message::Log {
                payload: b"hello".to_vec(),
                kind: LogKind::Out
            }
        );
    }

    #[test]
    fn container_metrics_are_one_gauge_in_cfs_names_and_units() {
        let env = Envelope::container_metrics(
            "app-guid",
            2,
            &ContainerMetrics {
                cpu_percentage: 12.5,
                memory_bytes: 1024,
                disk_bytes: 2048,
                memory_quota_bytes: 4096,
                disk_quota_bytes: 8192,
                log_rate_bytes_per_second: 100.0,
                log_rate_limit_bytes_per_second: -1.0,
            },
        );
        assert_eq!(env.source_id, "app-guid");
        assert_eq!(env.instance_id, "2");
        let Message::Gauge { metrics } = &env.message else {
            panic!("not a gauge: {env:?}");
        };
        let got: Vec<(&str, &str, f64)> = metrics
            .iter()
            .map(|(k, v)| (k.as_str(), v.unit.as_str(), v.value))
            .collect();
        assert_eq!(
            got,
            [
                ("cpu", "percentage", 12.5),
                ("disk", "bytes", 2048.0),
                ("disk_quota", "bytes", 8192.0),
                ("log_rate", "B/s", 100.0),
                ("log_rate_limit", "B/s", -1.0),
                ("memory", "bytes", 1024.0),
                ("memory_quota", "bytes", 4096.0),
            ]
        );
    }

    #[test]
    fn tags_stay_sorted_and_replace_by_key() {
        let mut tags = Tags::new();
        assert_eq!(tags.insert("b".into(), "1".into()), None);
        assert_eq!(tags.insert("a".into(), "2".into()), None);
        assert_eq!(tags.insert("b".into(), "3".into()), Some("1".into()));
        let all: Vec<(&String, &String)> = tags.iter().collect();
        assert_eq!(
            all,
            [
                (&"a".to_owned(), &"2".to_owned()),
                (&"b".to_owned(), &"3".to_owned())
            ]
        );
        assert_eq!(tags.get("b").map(String::as_str), Some("3"));
        assert!(!tags.contains_key("c"));
        assert_eq!(tags.remove("a"), Some("2".into()));
        assert_eq!(tags.len(), 1);
    }

    #[test]
    fn envelope_type_names_parse_case_insensitively() {
        assert_eq!(EnvelopeType::parse("log"), Ok(Some(EnvelopeType::Log)));
        assert_eq!(EnvelopeType::parse("GAUGE"), Ok(Some(EnvelopeType::Gauge)));
        assert_eq!(EnvelopeType::parse("ANY"), Ok(None));
        assert!(EnvelopeType::parse("METRIC").is_err());
    }

    #[test]
    fn timer_constructor_keeps_name_span_and_tags() {
        let tags: Tags = [("method".to_owned(), "GET".to_owned())]
            .into_iter()
            .collect();
        let env = Envelope::timer("app", "1", "http", 10, 25, tags);
        assert_eq!(env.message.envelope_type(), EnvelopeType::Timer);
        assert_eq!(
            env.message,
            Message::Timer {
                name: "http".into(),
                start: 10,
                stop: 25
            }
        );
        assert_eq!(env.tags.get("method").map(String::as_str), Some("GET"));
        assert_eq!(
            (env.source_id.as_str(), env.instance_id.as_str()),
            ("app", "1")
        );
    }
}
