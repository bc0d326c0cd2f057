//! Syslog drains: an app bound to a user-provided service instance with a
//! `syslog_drain_url` gets its logs forwarded there as RFC 5424 messages.
//!
//! [`DrainManager`] is a [`LogSink`]: the binary puts it beside the log
//! store (a [`crate::TeeSink`]), so it sees every envelope as it is emitted.
//! It is a sink rather than a firehose subscriber because a drain must not
//! inherit the firehose's rules for readers: a dead drain is not a reader to
//! disconnect after a stall, it is a destination to retry for as long as it
//! stays bound, and per-drain loss is announced in the drain's own words.
//!
//! Each (app, drain URL) pair has its own writer task and its own bounded
//! buffer. [`LogSink::emit`] only looks the app up and pushes onto its
//! drains' buffers: it never waits for a drain. A full buffer drops its
//! oldest message (as CF's diode does); the writer then sends
//! `N messages lost in user provided syslog drain` to the drain before the
//! next message, emits the same line into the app's log stream (source
//! type `LGR`, through the notice sink), and counts the loss. A drain that
//! cannot be reached is retried with exponential back-off, keeping the
//! message in hand, so lines resume once it comes back.
//!
//! *Invariant*: a drain only ever slows its own writer task.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use crate::drain_transport::{DrainError, DrainTls, DrainType, DrainUrl, Transport};
use crate::envelope::{Envelope, LogKind, Message};
use crate::firehose::LOGGREGATOR_SOURCE_TYPE;
use crate::rfc5424::{format_envelope, AppMeta};
use crate::LogSink;

/// Messages buffered per drain unless configured otherwise.
pub const DEFAULT_DRAIN_BUFFER: usize = 10_000;

/// CF's line for `n` messages a drain's buffer lost.
pub fn drain_loss_notice(n: u64) -> String {
    format!("{n} messages lost in user provided syslog drain")
}

/// Tunables of a [`DrainManager`].
#[derive(Debug, Clone)]
pub struct DrainConfig {
    /// Messages each drain may have waiting (at least 1).
    pub buffer_size: usize,
    /// First wait after a failed send; doubled on each further failure.
    pub initial_backoff: Duration,
    /// The longest wait between attempts.
    pub max_backoff: Duration,
    /// Limit on connecting (and the TLS handshake).
    pub connect_timeout: Duration,
    /// Limit on one write or HTTP request.
    pub write_timeout: Duration,
    /// Which drain certificates are trusted.
    pub tls: DrainTls,
}

impl Default for DrainConfig {
    fn default() -> Self {
        Self {
            buffer_size: DEFAULT_DRAIN_BUFFER,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(5),
            write_timeout: Duration::from_secs(10),
            tls: DrainTls::default(),
        }
    }
}

/// One drain's state, from [`DrainManager::status`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DrainStatus {
    /// The app whose logs it receives.
    pub app_guid: String,
    /// The drain URL without credentials or query.
    pub url: String,
    /// Whether the last attempt to send succeeded (TCP/TLS: and the
    /// connection is still open).
    pub connected: bool,
    /// Messages delivered.
    pub sent: u64,
    /// Messages lost to a full buffer.
    pub dropped: u64,
    /// Failed attempts to send.
    pub failures: u64,
    /// Messages waiting.
    pub buffered: usize,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Each critical section is a push/pop or an assignment: a poisoned
    // lock still guards consistent data.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

#[derive(Clone, Default)]
struct Metrics {
    egress: Family<Vec<(String, String)>, Counter>,
    dropped: Family<Vec<(String, String)>, Counter>,
    failures: Family<Vec<(String, String)>, Counter>,
    drains: Gauge,
}

struct Queue {
    envelopes: VecDeque<Envelope>,
    pending_dropped: u64,
}

enum Item {
    Envelope(Envelope),
    Loss(u64),
}

/// One (app, URL) drain: its buffer and counters; the writer task holds
/// the transport.
struct Drain {
    app_guid: String,
    url: DrainUrl,
    meta: Arc<RwLock<AppMeta>>,
    queue: Mutex<Queue>,
    notify: Notify,
    connected: Arc<AtomicBool>,
    sent: AtomicU64,
    dropped: AtomicU64,
    failures: AtomicU64,
    labels: Vec<(String, String)>,
    capacity: usize,
}

impl Drain {
    fn wants(&self, envelope: &Envelope) -> bool {
        matches!(
            (self.url.drain_type, &envelope.message),
            (DrainType::All, _)
                | (DrainType::Logs, Message::Log { .. })
                | (
                    DrainType::Metrics,
                    Message::Counter { .. } | Message::Gauge { .. } | Message::Timer { .. }
                )
        )
    }

    fn push(&self, envelope: Envelope, metrics: &Metrics) {
        let mut q = lock(&self.queue);
        let dropped = q.envelopes.len() >= self.capacity;
        if dropped {
            // The oldest goes: when a drain comes back, recent lines matter more.
            q.envelopes.pop_front();
            q.pending_dropped += 1;
        }
        q.envelopes.push_back(envelope);
        drop(q);
        if dropped {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            metrics.dropped.get_or_create(&self.labels).inc();
        }
        self.notify.notify_one();
    }

    fn take(&self) -> Option<Item> {
        let mut q = lock(&self.queue);
        if q.pending_dropped > 0 {
            // The loss happened at the front: announce it before what follows.
            let n = std::mem::take(&mut q.pending_dropped);
            return Some(Item::Loss(n));
        }
        q.envelopes.pop_front().map(Item::Envelope)
    }

    async fn next(&self) -> Item {
        loop {
            let notified = self.notify.notified();
            if let Some(item) = self.take() {
                return item;
            }
            notified.await;
        }
    }

    fn meta(&self) -> AppMeta {
        self.meta
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

struct Running {
    drain: Arc<Drain>,
    task: JoinHandle<()>,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.task.abort();
    }
}

struct AppDrains {
    meta: Arc<RwLock<AppMeta>>,
    drains: Vec<Running>,
}

/// Forwards apps' envelopes to their syslog drains (see the module docs).
pub struct DrainManager {
    config: DrainConfig,
    tls: Arc<rustls::ClientConfig>,
    runtime: tokio::runtime::Handle,
    apps: RwLock<HashMap<String, AppDrains>>,
    notices: Arc<dyn LogSink>,
    metrics: Metrics,
}

impl std::fmt::Debug for DrainManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DrainManager")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl DrainManager {
    /// A manager with no drains, whose writer tasks run on the current
    /// tokio runtime. `notices` receives the loss lines for the apps' log
    /// streams: give it the log store itself, not the tee that feeds this
    /// manager, or each drain would receive its loss line twice.
    pub fn new(config: DrainConfig, notices: Arc<dyn LogSink>) -> Result<Arc<Self>, DrainError> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| DrainError::NoRuntime)?;
        let tls = config.tls.client_config()?;
        Ok(Arc::new(Self {
            config: DrainConfig {
                buffer_size: config.buffer_size.max(1),
                ..config
            },
            tls,
            runtime,
            apps: RwLock::new(HashMap::new()),
            notices,
            metrics: Metrics::default(),
        }))
    }

    /// Sets `app_guid`'s names and drains, replacing what it had: drains
    /// no longer listed stop (their buffers are discarded), new ones start,
    /// unchanged ones keep running. URLs that cannot be used are skipped
    /// and returned; an empty list removes the app.
    pub fn set_app_drains(
        &self,
        app_guid: &str,
        meta: AppMeta,
        urls: &[String],
    ) -> Vec<DrainError> {
        let mut errors = Vec::new();
        let mut wanted: Vec<DrainUrl> = Vec::new();
        for raw in urls {
            match DrainUrl::parse(raw) {
                Ok(url) if !wanted.iter().any(|w| w.raw == url.raw) => wanted.push(url),
                Ok(_) => {}
                Err(err) => errors.push(err),
            }
        }
        let mut apps = self.apps.write().unwrap_or_else(PoisonError::into_inner);
        if wanted.is_empty() {
            if let Some(old) = apps.remove(app_guid) {
                self.metrics.drains.dec_by(old.drains.len() as i64);
            }
            return errors;
        }
        let entry = apps
            .entry(app_guid.to_owned())
            .or_insert_with(|| AppDrains {
                meta: Arc::new(RwLock::new(meta.clone())),
                drains: Vec::new(),
            });
        *entry.meta.write().unwrap_or_else(PoisonError::into_inner) = meta;
        let keep: HashSet<&str> = wanted.iter().map(|u| u.raw.as_str()).collect();
        let before = entry.drains.len();
        entry
            .drains
            .retain(|r| keep.contains(r.drain.url.raw.as_str()));
        let removed = before - entry.drains.len();
        let mut added = 0;
        for url in wanted {
            if entry.drains.iter().any(|r| r.drain.url.raw == url.raw) {
                continue;
            }
            entry
                .drains
                .push(self.start(app_guid, url, entry.meta.clone()));
            added += 1;
        }
        self.metrics.drains.inc_by(added);
        self.metrics.drains.dec_by(removed as i64);
        errors
    }

    /// Stops every drain of `app_guid` (the app was deleted or unbound).
    pub fn remove_app(&self, app_guid: &str) {
        self.set_app_drains(app_guid, AppMeta::default(), &[]);
    }

    /// Replaces the whole set: `app guid → (names, drain URLs)`. Apps not
    /// listed lose their drains. Returns the URLs that could not be used.
    pub fn sync(&self, all: HashMap<String, (AppMeta, Vec<String>)>) -> Vec<DrainError> {
        let gone: Vec<String> = self
            .apps
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .keys()
            .filter(|k| !all.contains_key(*k))
            .cloned()
            .collect();
        for app in gone {
            self.remove_app(&app);
        }
        let mut errors = Vec::new();
        for (app, (meta, urls)) in all {
            errors.extend(self.set_app_drains(&app, meta, &urls));
        }
        errors
    }

    /// Every drain's state, sorted by app and URL.
    pub fn status(&self) -> Vec<DrainStatus> {
        let apps = self.apps.read().unwrap_or_else(PoisonError::into_inner);
        let mut out: Vec<DrainStatus> = apps
            .values()
            .flat_map(|a| a.drains.iter())
            .map(|r| {
                let d = &r.drain;
                DrainStatus {
                    app_guid: d.app_guid.clone(),
                    url: d.url.anonymized.clone(),
                    connected: d.connected.load(Ordering::Acquire),
                    sent: d.sent.load(Ordering::Relaxed),
                    dropped: d.dropped.load(Ordering::Relaxed),
                    failures: d.failures.load(Ordering::Relaxed),
                    buffered: lock(&d.queue).envelopes.len(),
                }
            })
            .collect();
        out.sort_by(|a, b| (&a.app_guid, &a.url).cmp(&(&b.app_guid, &b.url)));
        out
    }

    /// Stops every drain.
    pub fn shutdown(&self) {
        let mut apps = self.apps.write().unwrap_or_else(PoisonError::into_inner);
        let n: usize = apps.values().map(|a| a.drains.len()).sum();
        apps.clear();
        self.metrics.drains.dec_by(n as i64);
    }

    /// Registers `syslog_drain_egress` and `syslog_drain_dropped` (messages,
    /// by `drain_url`), `syslog_drain_failures` (by `drain_url` and
    /// `reason`: `connect`, `write`, `http_status`) and `syslog_drains`.
    pub fn register_metrics(&self, registry: &mut Registry) {
        let m = self.metrics.clone();
        registry.register(
            "syslog_drain_egress",
            "Messages delivered to syslog drains",
            m.egress,
        );
        registry.register(
            "syslog_drain_dropped",
            "Messages a syslog drain's full buffer lost",
            m.dropped,
        );
        registry.register(
            "syslog_drain_failures",
            "Failed attempts to send to a syslog drain, by reason",
            m.failures,
        );
        registry.register("syslog_drains", "Syslog drains running", m.drains);
    }

    fn start(&self, app_guid: &str, url: DrainUrl, meta: Arc<RwLock<AppMeta>>) -> Running {
        let labels = vec![("drain_url".to_owned(), url.anonymized.clone())];
        let drain = Arc::new(Drain {
            app_guid: app_guid.to_owned(),
            url: url.clone(),
            meta,
            queue: Mutex::new(Queue {
                envelopes: VecDeque::new(),
                pending_dropped: 0,
            }),
            notify: Notify::new(),
            connected: Arc::new(AtomicBool::new(false)),
            sent: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            labels,
            capacity: self.config.buffer_size,
        });
        let writer = Writer {
            drain: drain.clone(),
            transport: Transport::new(
                url,
                self.tls.clone(),
                self.config.connect_timeout,
                self.config.write_timeout,
                drain.connected.clone(),
            ),
            initial_backoff: self.config.initial_backoff,
            max_backoff: self.config.max_backoff,
            notices: self.notices.clone(),
            metrics: self.metrics.clone(),
        };
        let task = self.runtime.spawn(writer.run());
        Running { drain, task }
    }
}

impl LogSink for DrainManager {
    fn emit(&self, envelope: Envelope) {
        let apps = self.apps.read().unwrap_or_else(PoisonError::into_inner);
        let Some(app) = apps.get(&envelope.source_id) else {
            return;
        };
        let wanting: Vec<&Arc<Drain>> = app
            .drains
            .iter()
            .map(|r| &r.drain)
            .filter(|d| d.wants(&envelope))
            .collect();
        if let Some((last, rest)) = wanting.split_last() {
            for d in rest {
                d.push(envelope.clone(), &self.metrics);
            }
            last.push(envelope, &self.metrics);
        }
    }
}

struct Writer {
    drain: Arc<Drain>,
    transport: Transport,
    initial_backoff: Duration,
    max_backoff: Duration,
    notices: Arc<dyn LogSink>,
    metrics: Metrics,
}

impl Writer {
    async fn run(mut self) {
        loop {
            let item = self.drain.next().await;
            let meta = self.drain.meta();
            let messages = match item {
                Item::Envelope(envelope) => format_envelope(&envelope, &meta),
                Item::Loss(n) => {
                    let text = drain_loss_notice(n);
                    tracing::warn!(app = %self.drain.app_guid, drain = %self.drain.url.anonymized, lost = n, "syslog drain buffer overflowed");
                    let notice = Envelope::log(
                        &self.drain.app_guid,
                        "",
                        LOGGREGATOR_SOURCE_TYPE,
                        text,
                        LogKind::Out,
                    );
                    self.notices.emit(notice.clone());
                    format_envelope(&notice, &meta)
                }
            };
            self.deliver(&messages).await;
        }
    }

    /// Sends `messages` until they are through; only removing the drain
    /// (which aborts this task) ends the attempts.
    async fn deliver(&mut self, messages: &[Vec<u8>]) {
        let mut backoff = self.initial_backoff;
        loop {
            match self.transport.send(messages).await {
                Ok(()) => {
                    let n = messages.len() as u64;
                    self.drain.sent.fetch_add(n, Ordering::Relaxed);
                    self.metrics
                        .egress
                        .get_or_create(&self.drain.labels)
                        .inc_by(n);
                    self.drain.connected.store(true, Ordering::Release);
                    return;
                }
                Err(failure) => {
                    self.transport.disconnect();
                    self.drain.connected.store(false, Ordering::Release);
                    self.drain.failures.fetch_add(1, Ordering::Relaxed);
                    let mut labels = self.drain.labels.clone();
                    labels.push(("reason".to_owned(), failure.label().to_owned()));
                    self.metrics.failures.get_or_create(&labels).inc();
                    tracing::debug!(drain = %self.drain.url.anonymized, reason = failure.label(), ?backoff, "syslog drain send failed");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(self.max_backoff);
                }
            }
        }
    }
}

#[cfg(test)]
impl Drain {
    fn buffered(&self) -> usize {
        lock(&self.queue).envelopes.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::drain_transport::DrainScheme;

    fn drain(capacity: usize, drain_type: DrainType) -> Drain {
        Drain {
            app_guid: "app".into(),
            url: DrainUrl {
                raw: "syslog://h:1".into(),
                anonymized: "syslog://h:1".into(),
                scheme: DrainScheme::Syslog,
                host: "h".into(),
                port: 1,
                drain_type,
            },
            meta: Arc::new(RwLock::new(AppMeta::default())),
            queue: Mutex::new(Queue {
                envelopes: VecDeque::new(),
                pending_dropped: 0,
            }),
            notify: Notify::new(),
            connected: Arc::new(AtomicBool::new(false)),
            sent: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            labels: Vec::new(),
            capacity,
        }
    }

    fn line(text: &str) -> Envelope {
        Envelope::log("app", "0", "APP/PROC/WEB", text, LogKind::Out)
    }

    fn text(item: Option<Item>) -> String {
        match item {
            Some(Item::Envelope(e)) => match e.message {
                Message::Log { payload, .. } => String::from_utf8_lossy(&payload).into_owned(),
                _ => "metric".into(),
            },
            Some(Item::Loss(n)) => format!("lost {n}"),
            None => "none".into(),
        }
    }

    #[test]
    fn a_full_buffer_drops_the_oldest_and_announces_the_loss_first() {
        let d = drain(2, DrainType::Logs);
        let m = Metrics::default();
        for t in ["a", "b", "c", "d"] {
            d.push(line(t), &m);
        }
        assert_eq!(d.buffered(), 2);
        assert_eq!(d.dropped.load(Ordering::Relaxed), 2);
        let got: Vec<String> = (0..4).map(|_| text(d.take())).collect();
        assert_eq!(got, ["lost 2", "c", "d", "none"]);
    }

    #[test]
    fn drain_type_selects_logs_or_metrics() {
        let gauge = Envelope::gauge(
            "app",
            "0",
            [("cpu", crate::GaugeValue::new("percentage", 1.0))],
        );
        assert!(drain(1, DrainType::Logs).wants(&line("x")));
        assert!(!drain(1, DrainType::Logs).wants(&gauge));
        assert!(drain(1, DrainType::Metrics).wants(&gauge));
        assert!(!drain(1, DrainType::Metrics).wants(&line("x")));
        assert!(drain(1, DrainType::All).wants(&gauge));
        // Timers are metrics: loggregator skips them for logs drains.
        let timer = Envelope::timer("app", "0", "http", 1, 2, crate::Tags::new());
        assert!(!drain(1, DrainType::Logs).wants(&timer));
        assert!(drain(1, DrainType::Metrics).wants(&timer));
        assert!(drain(1, DrainType::All).wants(&timer));
    }

    #[test]
    fn the_loss_notice_is_cfs_line() {
        assert_eq!(
            drain_loss_notice(7),
            "7 messages lost in user provided syslog drain"
        );
    }

    #[test]
    fn a_manager_needs_a_runtime() {
        assert!(matches!(
            DrainManager::new(DrainConfig::default(), Arc::new(crate::DiscardSink)),
            Err(DrainError::NoRuntime)
        ));
    }

    #[tokio::test]
    async fn bindings_are_replaced_and_bad_urls_reported() {
        let m = DrainManager::new(DrainConfig::default(), Arc::new(crate::DiscardSink));
        let Ok(m) = m else {
            panic!("manager: {m:?}");
        };
        let errors = m.set_app_drains(
            "app",
            AppMeta::named("o", "s", "a"),
            &["syslog://127.0.0.1:9".into(), "ftp://x".into()],
        );
        assert_eq!(errors.len(), 1);
        assert_eq!(m.status().len(), 1);
        m.set_app_drains(
            "app",
            AppMeta::named("o", "s", "a"),
            &[
                "syslog://127.0.0.1:10".into(),
                "https://127.0.0.1:11/x".into(),
            ],
        );
        let urls: Vec<String> = m.status().into_iter().map(|s| s.url).collect();
        assert_eq!(urls, ["https://127.0.0.1:11/x", "syslog://127.0.0.1:10"]);
        m.remove_app("app");
        assert!(m.status().is_empty());
    }
}
