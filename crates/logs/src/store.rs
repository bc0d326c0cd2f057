//! log-cache's store: one ring buffer per source id, ordered by timestamp,
//! holding at most `max_per_source` envelopes (the oldest go first), and at
//! most `max_sources` sources (the least recently written goes first).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use regex::Regex;

use crate::envelope::{now_nanos, Envelope, EnvelopeType, Message};
use crate::firehose::{Firehose, FirehoseConfig};
use crate::LogSink;

/// How many envelopes log-cache keeps per source id.
pub const LOG_CACHE_MAX_PER_SOURCE: usize = 100_000;

/// How many source ids a store keeps unless told otherwise.
pub const DEFAULT_MAX_SOURCES: usize = 10_000;

/// Which envelopes a [`LogStore::read`] returns; log-cache's read parameters.
#[derive(Debug, Clone)]
pub struct ReadQuery {
    /// Inclusive lower bound, ns since the epoch; `None` = the oldest kept.
    pub start_time: Option<i64>,
    /// Exclusive upper bound, ns since the epoch; `None` = now.
    pub end_time: Option<i64>,
    /// Only these types; empty = any type.
    pub envelope_types: Vec<EnvelopeType>,
    /// At most this many envelopes.
    pub limit: usize,
    /// Newest first: returns the newest `limit` envelopes of the window.
    /// Otherwise the oldest `limit`, oldest first.
    pub descending: bool,
    /// Only counters and gauges with a matching name (logs never match).
    pub name_filter: Option<Regex>,
}

impl Default for ReadQuery {
    fn default() -> Self {
        Self {
            start_time: None,
            end_time: None,
            envelope_types: Vec::new(),
            limit: 100,
            descending: false,
            name_filter: None,
        }
    }
}

impl ReadQuery {
    fn matches(&self, envelope: &Envelope) -> bool {
        if !self.envelope_types.is_empty()
            && !self
                .envelope_types
                .contains(&envelope.message.envelope_type())
        {
            return false;
        }
        match &self.name_filter {
            None => true,
            Some(filter) => match &envelope.message {
                Message::Log { .. } => false,
                Message::Counter { name, .. } | Message::Timer { name, .. } => {
                    filter.is_match(name)
                }
                Message::Gauge { metrics } => metrics.keys().any(|name| filter.is_match(name)),
            },
        }
    }
}

/// What `/api/v1/meta` reports about one source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SourceMeta {
    /// Envelopes held.
    pub count: u64,
    /// Envelopes evicted since the source appeared.
    pub expired: u64,
    /// Timestamp of the oldest envelope held (0 when none).
    pub oldest_timestamp: i64,
    /// Timestamp of the newest envelope held (0 when none).
    pub newest_timestamp: i64,
}

struct Source {
    /// Sorted by timestamp; ties keep arrival order. Shared with the
    /// firehose's subscriber queues, so an envelope is held once.
    envelopes: VecDeque<Arc<Envelope>>,
    expired: u64,
    /// Store-wide write sequence of the last emit, to pick the source to drop.
    last_write: u64,
}

struct Inner {
    sources: HashMap<String, Source>,
    writes: u64,
}

/// log-cache's in-memory store of envelopes, by source id.
pub struct LogStore {
    max_per_source: usize,
    max_sources: usize,
    inner: Mutex<Inner>,
    started: std::time::Instant,
    metrics: Metrics,
    firehose: Arc<Firehose>,
}

#[derive(Default, Clone)]
struct Metrics {
    ingress: Counter,
    expired: Counter,
    sources: Gauge,
    sources_evicted: Counter,
}

impl std::fmt::Debug for LogStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogStore")
            .field("max_per_source", &self.max_per_source)
            .field("max_sources", &self.max_sources)
            .finish_non_exhaustive()
    }
}

impl LogStore {
    /// A store keeping at most `max_per_source` envelopes per source id
    /// ([`LOG_CACHE_MAX_PER_SOURCE`] is log-cache's) and
    /// [`DEFAULT_MAX_SOURCES`] source ids.
    pub fn new(max_per_source: usize) -> Arc<Self> {
        Self::with_limits(max_per_source, DEFAULT_MAX_SOURCES)
    }

    /// A store with both caps given; each is at least 1.
    pub fn with_limits(max_per_source: usize, max_sources: usize) -> Arc<Self> {
        Self::with_firehose(
            max_per_source,
            max_sources,
            Firehose::new(FirehoseConfig::default()),
        )
    }

    /// A store with both caps given that also publishes every envelope it is
    /// given to `firehose`.
    pub fn with_firehose(
        max_per_source: usize,
        max_sources: usize,
        firehose: Arc<Firehose>,
    ) -> Arc<Self> {
        Arc::new(Self {
            max_per_source: max_per_source.max(1),
            max_sources: max_sources.max(1),
            inner: Mutex::new(Inner {
                sources: HashMap::new(),
                writes: 0,
            }),
            started: std::time::Instant::now(),
            metrics: Metrics::default(),
            firehose,
        })
    }

    /// The firehose every envelope emitted to this store is published to.
    pub fn firehose(&self) -> Arc<Firehose> {
        self.firehose.clone()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves the buffers consistent (every
        // mutation is a single push/pop), so a poisoned lock is still usable.
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Envelopes of `source_id` matching `query`: ascending by timestamp, or
    /// the newest first when `query.descending`.
    pub fn read(&self, source_id: &str, query: &ReadQuery) -> Vec<Envelope> {
        let start = query.start_time.unwrap_or(i64::MIN);
        let end = query.end_time.unwrap_or_else(now_nanos);
        let inner = self.lock();
        let Some(source) = inner.sources.get(source_id) else {
            return Vec::new();
        };
        if end <= start {
            return Vec::new();
        }
        let envelopes = &source.envelopes;
        let from = envelopes.partition_point(|e| e.timestamp < start);
        let to = envelopes.partition_point(|e| e.timestamp < end);
        let window = envelopes.range(from..to);
        let matching = |e: &&Arc<Envelope>| query.matches(e);
        let copy = |e: &Arc<Envelope>| Envelope::clone(e);
        if query.descending {
            window
                .rev()
                .filter(matching)
                .take(query.limit)
                .map(copy)
                .collect()
        } else {
            window
                .filter(matching)
                .take(query.limit)
                .map(copy)
                .collect()
        }
    }

    /// What the store holds, by source id.
    pub fn meta(&self) -> Vec<(String, SourceMeta)> {
        let inner = self.lock();
        let mut meta: Vec<_> = inner
            .sources
            .iter()
            .map(|(id, source)| {
                (
                    id.clone(),
                    SourceMeta {
                        count: source.envelopes.len() as u64,
                        expired: source.expired,
                        oldest_timestamp: source.envelopes.front().map_or(0, |e| e.timestamp),
                        newest_timestamp: source.envelopes.back().map_or(0, |e| e.timestamp),
                    },
                )
            })
            .collect();
        meta.sort_by(|a, b| a.0.cmp(&b.0));
        meta
    }

    /// How long this store has existed, for `/api/v1/info`'s `vm_uptime`.
    pub fn uptime(&self) -> std::time::Duration {
        self.started.elapsed()
    }

    /// Registers the store's counters (envelopes ingested and expired,
    /// sources held and evicted) and its firehose's.
    pub fn register_metrics(&self, registry: &mut Registry) {
        self.firehose.register_metrics(registry);
        let m = self.metrics.clone();
        registry.register(
            "log_cache_ingress",
            "Envelopes written to the log store",
            m.ingress,
        );
        registry.register(
            "log_cache_expired",
            "Envelopes evicted because their source's buffer was full",
            m.expired,
        );
        registry.register(
            "log_cache_sources",
            "Source ids held in the log store",
            m.sources,
        );
        registry.register(
            "log_cache_sources_evicted",
            "Source ids dropped because the store held too many",
            m.sources_evicted,
        );
    }
}

impl LogSink for LogStore {
    fn emit(&self, envelope: Envelope) {
        let envelope = Arc::new(envelope);
        // Live readers first: they are waiting, log-cache readers poll.
        self.firehose.publish_shared(&envelope);
        self.metrics.ingress.inc();
        let mut inner = self.lock();
        inner.writes += 1;
        let write = inner.writes;
        if !inner.sources.contains_key(&envelope.source_id)
            && inner.sources.len() >= self.max_sources
        {
            // The source written to least recently is the one nobody is
            // likely to read any more (a deleted app, a finished task).
            let oldest = inner
                .sources
                .iter()
                .min_by_key(|(_, s)| s.last_write)
                .map(|(id, _)| id.clone());
            if let Some(id) = oldest {
                inner.sources.remove(&id);
                self.metrics.sources_evicted.inc();
            }
        }
        let source = inner
            .sources
            .entry(envelope.source_id.clone())
            .or_insert_with(|| Source {
                envelopes: VecDeque::new(),
                expired: 0,
                last_write: 0,
            });
        source.last_write = write;
        if source.envelopes.len() >= self.max_per_source {
            // Oldest by timestamp: an envelope older than everything held is
            // itself the oldest and is not kept.
            if source
                .envelopes
                .front()
                .is_some_and(|front| envelope.timestamp < front.timestamp)
            {
                source.expired += 1;
                self.metrics.expired.inc();
                return;
            }
            source.envelopes.pop_front();
            source.expired += 1;
            self.metrics.expired.inc();
        }
        // Emitters stamp their own envelopes, so arrivals can be slightly out
        // of order; keep the buffer sorted so time windows are binary searches.
        if source
            .envelopes
            .back()
            .is_none_or(|back| back.timestamp <= envelope.timestamp)
        {
            source.envelopes.push_back(envelope);
        } else {
            let at = source
                .envelopes
                .partition_point(|e| e.timestamp <= envelope.timestamp);
            source.envelopes.insert(at, envelope);
        }
        let count = inner.sources.len() as i64;
        self.metrics.sources.set(count);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{GaugeValue, LogKind, Tags};
    use std::collections::BTreeMap;

    fn log_at(source: &str, ts: i64, text: &str) -> Envelope {
        let mut e = Envelope::log(source, "0", "APP/PROC/WEB", text, LogKind::Out);
        e.timestamp = ts;
        e
    }

    fn gauge_at(source: &str, ts: i64, name: &str) -> Envelope {
        let mut metrics = BTreeMap::new();
        metrics.insert(
            name.to_owned(),
            GaugeValue {
                unit: "percentage".into(),
                value: 1.5,
            },
        );
        Envelope {
            timestamp: ts,
            source_id: source.into(),
            instance_id: "0".into(),
            tags: crate::Tags::new(),
            message: Message::Gauge { metrics },
        }
    }

    fn counter_at(source: &str, ts: i64, name: &str) -> Envelope {
        Envelope {
            timestamp: ts,
            source_id: source.into(),
            instance_id: "0".into(),
            tags: crate::Tags::new(),
            message: Message::Counter {
                name: name.into(),
                delta: 1,
                total: 2,
            },
        }
    }

    fn texts(envelopes: &[Envelope]) -> Vec<String> {
        envelopes
            .iter()
            .map(|e| match &e.message {
                Message::Log { payload, .. } => String::from_utf8_lossy(payload).into_owned(),
                Message::Gauge { .. } => "gauge".into(),
                Message::Counter { .. } => "counter".into(),
                Message::Timer { .. } => "timer".into(),
            })
            .collect()
    }

    fn all() -> ReadQuery {
        ReadQuery {
            limit: 1000,
            ..ReadQuery::default()
        }
    }

    #[test]
    fn full_buffer_evicts_the_oldest_and_counts_it_expired() {
        let store = LogStore::new(3);
        for i in 1..=5 {
            store.emit(log_at("app", i, &format!("line {i}")));
        }
        assert_eq!(
            texts(&store.read("app", &all())),
            ["line 3", "line 4", "line 5"]
        );
        let meta = store.meta();
        assert_eq!(
            meta,
            vec![(
                "app".to_owned(),
                SourceMeta {
                    count: 3,
                    expired: 2,
                    oldest_timestamp: 3,
                    newest_timestamp: 5
                }
            )]
        );
    }

    #[test]
    fn late_envelope_is_placed_by_timestamp_and_dropped_if_oldest_of_a_full_buffer() {
        let store = LogStore::new(3);
        store.emit(log_at("app", 10, "a"));
        store.emit(log_at("app", 30, "c"));
        store.emit(log_at("app", 20, "b"));
        assert_eq!(texts(&store.read("app", &all())), ["a", "b", "c"]);
        store.emit(log_at("app", 5, "too old"));
        assert_eq!(texts(&store.read("app", &all())), ["a", "b", "c"]);
    }

    #[test]
    fn sources_are_kept_apart_and_capped() {
        let store = LogStore::with_limits(10, 2);
        store.emit(log_at("one", 1, "1"));
        store.emit(log_at("two", 2, "2"));
        store.emit(log_at("one", 3, "1b"));
        store.emit(log_at("three", 4, "3"));
        // "two" was written least recently.
        assert!(store.read("two", &all()).is_empty());
        assert_eq!(texts(&store.read("one", &all())), ["1", "1b"]);
        assert_eq!(texts(&store.read("three", &all())), ["3"]);
    }

    #[test]
    fn time_window_is_start_inclusive_end_exclusive() {
        let store = LogStore::new(100);
        for i in 1..=5 {
            store.emit(log_at("app", i * 10, &i.to_string()));
        }
        let q = ReadQuery {
            start_time: Some(20),
            end_time: Some(40),
            ..all()
        };
        assert_eq!(texts(&store.read("app", &q)), ["2", "3"]);
    }

    #[test]
    fn limit_takes_the_oldest_ascending_and_the_newest_descending() {
        let store = LogStore::new(100);
        for i in 1..=5 {
            store.emit(log_at("app", i, &i.to_string()));
        }
        let asc = ReadQuery { limit: 2, ..all() };
        assert_eq!(texts(&store.read("app", &asc)), ["1", "2"]);
        let desc = ReadQuery {
            limit: 2,
            descending: true,
            ..all()
        };
        assert_eq!(texts(&store.read("app", &desc)), ["5", "4"]);
    }

    #[test]
    fn tailing_with_an_advancing_start_time_sees_each_line_once() {
        let store = LogStore::new(100);
        store.emit(log_at("app", 1, "a"));
        store.emit(log_at("app", 2, "b"));
        let first = store.read("app", &all());
        let next_start = first.last().map(|e| e.timestamp + 1);
        store.emit(log_at("app", 3, "c"));
        let q = ReadQuery {
            start_time: next_start,
            ..all()
        };
        assert_eq!(texts(&store.read("app", &q)), ["c"]);
    }

    #[test]
    fn envelope_types_and_name_filter_select_messages() {
        let store = LogStore::new(100);
        store.emit(log_at("app", 1, "log"));
        store.emit(gauge_at("app", 2, "cpu"));
        store.emit(counter_at("app", 3, "requests"));
        let q = |types: Vec<EnvelopeType>| ReadQuery {
            envelope_types: types,
            ..all()
        };
        assert_eq!(
            texts(&store.read("app", &q(vec![EnvelopeType::Log]))),
            ["log"]
        );
        assert_eq!(
            texts(&store.read("app", &q(vec![EnvelopeType::Gauge, EnvelopeType::Counter]))),
            ["gauge", "counter"]
        );
        assert!(store.read("app", &q(vec![EnvelopeType::Timer])).is_empty());
        let named = ReadQuery {
            name_filter: Regex::new("^cp").ok(),
            ..all()
        };
        assert_eq!(texts(&store.read("app", &named)), ["gauge"]);

        let mut timer = Envelope::timer("app", "0", "http", 3, 4, Tags::new());
        timer.timestamp = 4;
        store.emit(timer);
        assert_eq!(
            texts(&store.read("app", &q(vec![EnvelopeType::Timer]))),
            ["timer"]
        );
        let http = ReadQuery {
            name_filter: Regex::new("^htt").ok(),
            ..all()
        };
        assert_eq!(texts(&store.read("app", &http)), ["timer"]);
    }

    #[test]
    fn emitting_to_the_store_feeds_its_firehose() {
        let store = LogStore::new(10);
        let sub = store.firehose().subscribe("", crate::Selector::default());
        store.emit(log_at("app", 1, "live"));
        let live: Vec<Envelope> = sub
            .try_next_batch(10)
            .unwrap_or_default()
            .into_iter()
            .map(Arc::unwrap_or_clone)
            .collect();
        assert_eq!(texts(&live), ["live"]);
        assert_eq!(texts(&store.read("app", &all())), ["live"]);
    }

    #[test]
    fn unknown_source_reads_empty() {
        let store = LogStore::new(10);
        assert!(store.read("nobody", &all()).is_empty());
    }
}
