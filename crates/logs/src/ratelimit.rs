//! The per-instance log rate limit: an app instance writing more than its
//! bytes per second has the excess dropped, and is told so, at most once a
//! second, with Diego's notice line.
//!
//! Like Diego's executor this is a token bucket refilled at the limit with a
//! burst of one second's worth, so a line longer than the limit never
//! passes. CF's `log_rate_limit_in_bytes_per_second` of -1 (any negative
//! value) means unlimited and 0 means the instance may not log at all:
//! every line is dropped without a notice, as Diego does
//! ([`instance_log_sink`] maps the setting to a sink).

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::registry::Registry;
use tokio::io::AsyncRead;
use tokio::task::JoinHandle;

use crate::envelope::{Envelope, LogKind, Message};
use crate::forward::forward_lines;
use crate::LogSink;

/// How often, at most, the notice is written for one instance.
const NOTICE_INTERVAL: Duration = Duration::from_secs(1);

/// CF's `log_rate_limit_in_bytes_per_second` for "no limit".
pub const UNLIMITED_LOG_RATE: i64 = -1;

/// The sink one app instance's output goes through, given its process's
/// `log_rate_limit_in_bytes_per_second`: `inner` itself when negative
/// (unlimited), otherwise a [`RateLimitedSink`] at that rate (0: nothing
/// passes). Share the result between the instance's stdout and stderr.
pub fn instance_log_sink(
    inner: Arc<dyn LogSink>,
    log_rate_limit_in_bytes_per_second: i64,
    metrics: &LogRateMetrics,
) -> Arc<dyn LogSink> {
    match u64::try_from(log_rate_limit_in_bytes_per_second) {
        Ok(limit) => Arc::new(RateLimitedSink::new(inner, limit, metrics.clone())),
        Err(_) => inner,
    }
}

/// Diego's notice for an instance over its limit of `bytes_per_second`.
pub fn log_rate_limit_notice(bytes_per_second: u64) -> String {
    format!("app instance exceeded log rate limit ({bytes_per_second} bytes/sec)")
}

/// Counters shared by every [`RateLimitedSink`] of a process; register them
/// once with [`LogRateMetrics::register`].
#[derive(Debug, Clone, Default)]
pub struct LogRateMetrics {
    exceeded: Counter,
    dropped_lines: Counter,
    dropped_bytes: Counter,
}

impl LogRateMetrics {
    /// Registers `log_rate_limit_exceeded` (notices written, Diego's
    /// `AppInstanceExceededLogRateLimitCount`), `log_rate_limit_dropped_lines`
    /// and `log_rate_limit_dropped_bytes`.
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "log_rate_limit_exceeded",
            "Times an app instance was told it exceeded its log rate limit",
            self.exceeded.clone(),
        );
        registry.register(
            "log_rate_limit_dropped_lines",
            "Log lines dropped for exceeding an instance's log rate limit",
            self.dropped_lines.clone(),
        );
        registry.register(
            "log_rate_limit_dropped_bytes",
            "Log bytes dropped for exceeding an instance's log rate limit",
            self.dropped_bytes.clone(),
        );
    }

    /// Notices written so far.
    pub fn exceeded(&self) -> u64 {
        self.exceeded.get()
    }

    /// Lines dropped so far.
    pub fn dropped_lines(&self) -> u64 {
        self.dropped_lines.get()
    }

    /// Bytes dropped so far.
    pub fn dropped_bytes(&self) -> u64 {
        self.dropped_bytes.get()
    }
}

struct Bucket {
    tokens: f64,
    refilled: Instant,
    last_notice: Option<Instant>,
}

/// A [`LogSink`] that passes one app instance's log lines on while they stay
/// within `bytes_per_second`, drops the excess and emits
/// [`log_rate_limit_notice`] (at most once a second) in its place; with a
/// limit of 0 every line is dropped without a notice. Gauges and counters
/// pass untouched.
///
/// Make one per instance and share it between its stdout and stderr
/// forwarders: the limit covers both.
pub struct RateLimitedSink {
    inner: Arc<dyn LogSink>,
    bytes_per_second: u64,
    bucket: Mutex<Bucket>,
    metrics: LogRateMetrics,
}

impl std::fmt::Debug for RateLimitedSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimitedSink")
            .field("bytes_per_second", &self.bytes_per_second)
            .finish_non_exhaustive()
    }
}

impl RateLimitedSink {
    /// Limits what reaches `inner` to `bytes_per_second` of log payload,
    /// counting drops in `metrics`.
    pub fn new(inner: Arc<dyn LogSink>, bytes_per_second: u64, metrics: LogRateMetrics) -> Self {
        Self {
            inner,
            bytes_per_second,
            bucket: Mutex::new(Bucket {
                tokens: bytes_per_second as f64,
                refilled: Instant::now(),
                last_notice: None,
            }),
            metrics,
        }
    }

    /// The limit.
    pub fn bytes_per_second(&self) -> u64 {
        self.bytes_per_second
    }

    /// Whether `len` more bytes fit now, and, when not, whether the notice
    /// is due.
    fn admit(&self, len: usize, now: Instant) -> Result<(), bool> {
        // A panic elsewhere cannot leave the bucket's numbers inconsistent.
        let mut bucket = self.bucket.lock().unwrap_or_else(PoisonError::into_inner);
        let rate = self.bytes_per_second as f64;
        let elapsed = now.saturating_duration_since(bucket.refilled).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * rate).min(rate);
        bucket.refilled = now;
        let len = len as f64;
        if self.bytes_per_second > 0 && len <= bucket.tokens {
            bucket.tokens -= len;
            return Ok(());
        }
        let due = bucket
            .last_notice
            .is_none_or(|at| now.saturating_duration_since(at) >= NOTICE_INTERVAL);
        if due {
            bucket.last_notice = Some(now);
        }
        Err(due)
    }
}

impl LogSink for RateLimitedSink {
    fn emit(&self, envelope: Envelope) {
        let len = match &envelope.message {
            Message::Log { payload, .. } => payload.len(),
            _ => return self.inner.emit(envelope),
        };
        match self.admit(len, Instant::now()) {
            Ok(()) => self.inner.emit(envelope),
            Err(notice_due) => {
                self.metrics.dropped_lines.inc();
                self.metrics.dropped_bytes.inc_by(len as u64);
                // A limit of 0 forbids logging outright; Diego says nothing.
                if notice_due && self.bytes_per_second > 0 {
                    self.metrics.exceeded.inc();
                    self.inner.emit(Envelope::log(
                        &envelope.source_id,
                        &envelope.instance_id,
                        envelope.source_type().unwrap_or_default(),
                        log_rate_limit_notice(self.bytes_per_second),
                        LogKind::Out,
                    ));
                }
            }
        }
    }
}

/// [`forward_lines`] through `limiter`: one envelope per line, the excess
/// over the instance's log rate limit dropped and announced.
pub fn forward_lines_rate_limited<R: AsyncRead + Unpin + Send + 'static>(
    reader: R,
    limiter: Arc<RateLimitedSink>,
    source_id: String,
    instance_id: String,
    source_type: String,
    kind: LogKind,
) -> JoinHandle<()> {
    forward_lines(reader, limiter, source_id, instance_id, source_type, kind)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct Collect(Mutex<Vec<Envelope>>);

    impl LogSink for Collect {
        fn emit(&self, envelope: Envelope) {
            self.0
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(envelope);
        }
    }

    impl Collect {
        fn texts(&self) -> Vec<String> {
            self.0
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .iter()
                .map(|e| match &e.message {
                    Message::Log { payload, .. } => String::from_utf8_lossy(payload).into_owned(),
                    _ => "metric".to_owned(),
                })
                .collect()
        }
    }

    fn line(text: &str) -> Envelope {
        Envelope::log("app", "0", "APP/PROC/WEB", text, LogKind::Out)
    }

    #[test]
    fn the_excess_is_dropped_and_announced_once_per_second() {
        let out = Arc::new(Collect::default());
        let metrics = LogRateMetrics::default();
        let sink = RateLimitedSink::new(out.clone(), 10, metrics.clone());
        for _ in 0..5 {
            sink.emit(line("abcd"));
        }
        sink.emit(Envelope::gauge(
            "app",
            "0",
            [("cpu", crate::GaugeValue::new("percentage", 1.0))],
        ));
        assert_eq!(
            out.texts(),
            ["abcd", "abcd", &log_rate_limit_notice(10), "metric"]
        );
        assert_eq!(metrics.dropped_lines(), 3);
        assert_eq!(metrics.dropped_bytes(), 12);
        assert_eq!(metrics.exceeded(), 1);
        let all = out.0.lock().unwrap_or_else(PoisonError::into_inner);
        assert_eq!(all[2].source_type(), Some("APP/PROC/WEB"));
        assert_eq!(all[2].instance_id, "0");
    }

    #[test]
    fn the_bucket_refills_at_the_limit_and_the_notice_repeats_after_a_second() {
        let out = Arc::new(Collect::default());
        let sink = RateLimitedSink::new(out.clone(), 10, LogRateMetrics::default());
        let t0 = Instant::now();
        assert_eq!(sink.admit(10, t0), Ok(()));
        assert_eq!(sink.admit(1, t0), Err(true));
        assert_eq!(sink.admit(1, t0 + Duration::from_millis(50)), Err(false));
        // Half a second refills half the limit.
        assert_eq!(sink.admit(5, t0 + Duration::from_millis(550)), Ok(()));
        assert_eq!(sink.admit(5, t0 + Duration::from_millis(550)), Err(false));
        assert_eq!(sink.admit(20, t0 + Duration::from_secs(5)), Err(true));
    }

    #[test]
    fn a_zero_limit_drops_every_line_silently() {
        let out = Arc::new(Collect::default());
        let metrics = LogRateMetrics::default();
        let sink = instance_log_sink(out.clone(), 0, &metrics);
        sink.emit(line(""));
        sink.emit(line("x"));
        assert!(out.texts().is_empty(), "{:?}", out.texts());
        assert_eq!(metrics.dropped_lines(), 2);
        assert_eq!(metrics.exceeded(), 0);
    }

    #[test]
    fn a_negative_limit_is_unlimited() {
        let out = Arc::new(Collect::default());
        let metrics = LogRateMetrics::default();
        let sink = instance_log_sink(out.clone(), UNLIMITED_LOG_RATE, &metrics);
        let big = "x".repeat(1 << 20);
        for _ in 0..10 {
            sink.emit(line(&big));
        }
        assert_eq!(out.texts().len(), 10);
        assert_eq!(metrics.dropped_lines(), 0);
        let sink = instance_log_sink(out.clone(), 5, &metrics);
        sink.emit(line(&big));
        assert_eq!(metrics.dropped_lines(), 1);
    }

    #[test]
    fn the_notice_is_diegos_text() {
        assert_eq!(
            log_rate_limit_notice(1024),
            "app instance exceeded log rate limit (1024 bytes/sec)"
        );
    }

    #[test]
    fn counters_are_exposed_in_prometheus_text() {
        let metrics = LogRateMetrics::default();
        let mut registry = Registry::default();
        metrics.register(&mut registry);
        let sink = RateLimitedSink::new(Arc::new(crate::DiscardSink), 1, metrics);
        sink.emit(line("too long"));
        let mut text = String::new();
        assert!(prometheus_client::encoding::text::encode(&mut text, &registry).is_ok());
        assert!(text.contains("log_rate_limit_exceeded_total 1"));
        assert!(text.contains("log_rate_limit_dropped_bytes_total 8"));
        assert!(text.contains("log_rate_limit_dropped_lines_total 1"));
    }

    #[tokio::test]
    async fn forwarded_output_over_the_limit_is_cut_with_the_notice() {
        let out = Arc::new(Collect::default());
        let limiter = Arc::new(RateLimitedSink::new(
            out.clone(),
            8,
            LogRateMetrics::default(),
        ));
        let task = forward_lines_rate_limited(
            &b"1234\n5678\nlost\nlost\n"[..],
            limiter,
            "app".into(),
            "0".into(),
            "APP/PROC/WEB".into(),
            LogKind::Out,
        );
        assert!(task.await.is_ok());
        assert_eq!(out.texts(), ["1234", "5678", &log_rate_limit_notice(8)]);
    }
}
