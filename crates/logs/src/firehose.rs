//! The firehose: fan-out of every emitted envelope to live subscribers, each
//! with its own bounded buffer (Loggregator's doppler and RLP).
//!
//! *Invariants*: [`Firehose::publish`] never waits on a reader: a full buffer
//! drops the envelope for that subscriber only, and the subscriber is later
//! told how many were lost with CF's `Log message output is too high.` line.
//! A subscriber whose buffer is full and who has taken nothing for
//! [`FirehoseConfig::stall_timeout`] is disconnected.
//!
//! Subscribers with the same shard id form a group that splits the stream
//! (each matching envelope goes to one member, round robin); every group, and
//! every subscriber without a shard id, receives everything it selects.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tokio::sync::Notify;

use crate::envelope::{Envelope, EnvelopeType, LogKind, Message};
use crate::LogSink;

/// Envelopes buffered per subscriber unless configured otherwise.
pub const DEFAULT_SUBSCRIBER_BUFFER: usize = 10_000;

/// How long a subscriber with a full buffer may take nothing before it is
/// disconnected, unless configured otherwise.
pub const DEFAULT_STALL_TIMEOUT: Duration = Duration::from_secs(5);

/// The `source_type` of the notices Loggregator itself writes into a stream.
pub const LOGGREGATOR_SOURCE_TYPE: &str = "LGR";

/// The counter a dropped-messages notice carries for counter-only readers
/// (doppler's name for it).
pub const DROPPED_COUNTER_NAME: &str = "TruncatingBuffer.DroppedMessages";

/// Dropped-envelope reasons, as the `reason` label of `firehose_dropped`.
const REASON_BUFFER_FULL: &str = "subscriber_buffer_full";
const REASON_DISCONNECTED: &str = "slow_consumer_disconnected";

/// Tunables of a [`Firehose`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FirehoseConfig {
    /// Envelopes each subscriber may have waiting (at least 1).
    pub buffer_size: usize,
    /// How long a subscriber with a full buffer may take nothing before it is
    /// disconnected.
    pub stall_timeout: Duration,
}

impl Default for FirehoseConfig {
    fn default() -> Self {
        Self {
            buffer_size: DEFAULT_SUBSCRIBER_BUFFER,
            stall_timeout: DEFAULT_STALL_TIMEOUT,
        }
    }
}

/// Which envelopes a subscriber wants.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selector {
    /// Only these source ids; empty = every source (the whole firehose).
    pub source_ids: Vec<String>,
    /// Only these types; empty = every type.
    pub envelope_types: Vec<EnvelopeType>,
}

impl Selector {
    /// Whether `envelope` is one this selector wants.
    pub fn matches(&self, envelope: &Envelope) -> bool {
        (self.source_ids.is_empty() || self.source_ids.contains(&envelope.source_id))
            && self.wants(envelope.message.envelope_type())
    }

    fn wants(&self, kind: EnvelopeType) -> bool {
        self.envelope_types.is_empty() || self.envelope_types.contains(&kind)
    }
}

/// CF's notice for `dropped` envelopes lost just now, `total` since the
/// subscription began.
pub fn dropped_notice_text(dropped: u64, total: u64) -> String {
    format!("Log message output is too high. {dropped} messages dropped (Total {total} messages dropped).")
}

/// Why a subscription ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disconnected {
    /// Its buffer was full and it took nothing for the stall timeout.
    SlowConsumer,
    /// The firehose was shut down ([`Firehose::shutdown`]).
    Shutdown,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum GroupKey {
    Shard(String),
    Alone(u64),
}

struct Queue {
    /// Shared between the subscribers it went to: publishing copies an
    /// envelope once, not once per subscriber.
    envelopes: VecDeque<Arc<Envelope>>,
    /// Dropped since the last notice.
    pending_dropped: u64,
    /// Dropped since the subscription began.
    total_dropped: u64,
    /// When the subscriber last took from its queue ([`coarse_now`]).
    last_progress: Duration,
    closed: Option<Disconnected>,
}

struct Slot {
    id: u64,
    selector: Selector,
    queue: Mutex<Queue>,
    notify: Notify,
}

/// The monotonic clock at the kernel tick's resolution (a few ms), read on
/// every envelope a full buffer drops: unlike a precise clock read it costs
/// next to nothing, which keeps a slow subscriber from slowing the
/// publisher, and a few ms are nothing against a stall timeout of seconds.
fn coarse_now() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec for the duration of the call.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC_COARSE, &mut ts) };
    if rc != 0 {
        // Not expected on Linux, and then it fails on every call: the
        // precise clock stands in consistently.
        return START.elapsed();
    }
    Duration::new(
        u64::try_from(ts.tv_sec).unwrap_or(0),
        u32::try_from(ts.tv_nsec).unwrap_or(0),
    )
}

static START: std::sync::LazyLock<Instant> = std::sync::LazyLock::new(Instant::now);

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every mutation under these locks is a single push/pop/assignment, so a
    // poisoned lock still guards consistent data.
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Slot {
    fn queue(&self) -> MutexGuard<'_, Queue> {
        lock(&self.queue)
    }

    /// The envelopes telling this subscriber about `dropped` lost envelopes,
    /// in the types it selected (none when it selected neither logs nor
    /// counters; the metrics still count the loss).
    fn notices(&self, dropped: u64, total: u64) -> Vec<Envelope> {
        let source_id = match self.selector.source_ids.as_slice() {
            [only] => only.clone(),
            _ => "doppler".to_owned(),
        };
        let mut notices = Vec::new();
        if self.selector.wants(EnvelopeType::Log) {
            notices.push(Envelope::log(
                &source_id,
                "",
                LOGGREGATOR_SOURCE_TYPE,
                dropped_notice_text(dropped, total),
                LogKind::Err,
            ));
        }
        if self.selector.wants(EnvelopeType::Counter) {
            let mut counter =
                Envelope::log(&source_id, "", LOGGREGATOR_SOURCE_TYPE, "", LogKind::Err);
            counter.message = Message::Counter {
                name: DROPPED_COUNTER_NAME.to_owned(),
                delta: dropped,
                total,
            };
            notices.push(counter);
        }
        notices
    }
}

enum Delivery {
    Delivered,
    Dropped,
    /// Dropped, and the subscriber is now disconnected for being slow;
    /// carries how many buffered envelopes were discarded with it.
    Disconnected(u64),
}

struct Group {
    members: Vec<Arc<Slot>>,
    /// Where the round robin resumes.
    next: usize,
}

struct State {
    groups: HashMap<GroupKey, Group>,
    shut_down: bool,
    next_id: u64,
}

#[derive(Clone)]
struct Metrics {
    ingress: Counter,
    egress: Counter,
    dropped: Family<Vec<(String, String)>, Counter>,
    /// `dropped{reason="subscriber_buffer_full"}`, held directly: it is
    /// bumped once per lost envelope, and a family lookup allocates its key.
    dropped_buffer_full: Counter,
    disconnected: Counter,
    subscribers: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        let dropped = Family::<Vec<(String, String)>, Counter>::default();
        let dropped_buffer_full = dropped
            .get_or_create(&Self::reason(REASON_BUFFER_FULL))
            .clone();
        Self {
            ingress: Counter::default(),
            egress: Counter::default(),
            dropped,
            dropped_buffer_full,
            disconnected: Counter::default(),
            subscribers: Gauge::default(),
        }
    }
}

impl Metrics {
    fn reason(reason: &str) -> Vec<(String, String)> {
        vec![("reason".to_owned(), reason.to_owned())]
    }

    fn dropped(&self, reason: &str, n: u64) {
        if n > 0 {
            self.dropped.get_or_create(&Self::reason(reason)).inc_by(n);
        }
    }
}

/// Live fan-out of envelopes to subscribers (see the module docs).
pub struct Firehose {
    config: FirehoseConfig,
    state: Mutex<State>,
    metrics: Metrics,
}

impl std::fmt::Debug for Firehose {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Firehose")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Firehose {
    /// A firehose with no subscribers.
    pub fn new(config: FirehoseConfig) -> Arc<Self> {
        Arc::new(Self {
            config: FirehoseConfig {
                buffer_size: config.buffer_size.max(1),
                ..config
            },
            state: Mutex::new(State {
                groups: HashMap::new(),
                shut_down: false,
                next_id: 0,
            }),
            metrics: Metrics::default(),
        })
    }

    /// Its configuration.
    pub fn config(&self) -> FirehoseConfig {
        self.config
    }

    /// Starts receiving the envelopes `selector` wants. Subscribers with the
    /// same non-empty `shard_id` split them; an empty `shard_id` is a group
    /// of one. The subscription ends when dropped.
    pub fn subscribe(self: &Arc<Self>, shard_id: &str, selector: Selector) -> Subscription {
        let mut state = lock(&self.state);
        state.next_id += 1;
        let id = state.next_id;
        let key = if shard_id.is_empty() {
            GroupKey::Alone(id)
        } else {
            GroupKey::Shard(shard_id.to_owned())
        };
        let slot = Arc::new(Slot {
            id,
            selector,
            queue: Mutex::new(Queue {
                envelopes: VecDeque::new(),
                pending_dropped: 0,
                total_dropped: 0,
                last_progress: coarse_now(),
                // After shutdown a subscription ends as soon as it is read.
                closed: state.shut_down.then_some(Disconnected::Shutdown),
            }),
            notify: Notify::new(),
        });
        state
            .groups
            .entry(key.clone())
            .or_insert_with(|| Group {
                members: Vec::new(),
                next: 0,
            })
            .members
            .push(slot.clone());
        self.metrics.subscribers.inc();
        Subscription {
            slot,
            key,
            firehose: self.clone(),
        }
    }

    /// Ends every subscription, present and future, so long-lived streams
    /// finish and a graceful HTTP shutdown is not held open by them.
    /// Publishing afterwards is harmless and reaches nobody.
    pub fn shutdown(&self) {
        let mut state = lock(&self.state);
        state.shut_down = true;
        for group in state.groups.values() {
            for slot in &group.members {
                let mut queue = slot.queue();
                queue.closed.get_or_insert(Disconnected::Shutdown);
                queue.envelopes.clear();
                drop(queue);
                slot.notify.notify_one();
            }
        }
        let removed: usize = state.groups.values().map(|g| g.members.len()).sum();
        state.groups.clear();
        self.metrics.subscribers.dec_by(removed as i64);
    }

    /// Live subscribers.
    pub fn subscriber_count(&self) -> usize {
        lock(&self.state)
            .groups
            .values()
            .map(|g| g.members.len())
            .sum()
    }

    /// Hands `envelope` to every group that wants it, to one member per
    /// group. Never waits on a reader.
    pub fn publish(&self, envelope: &Envelope) {
        // Made on the first delivery: nothing is copied when nobody wants it.
        self.publish_inner(envelope, None);
    }

    /// [`Firehose::publish`] of an envelope already shared (the log
    /// store's copy): subscribers share it too, nothing is copied.
    pub(crate) fn publish_shared(&self, envelope: &Arc<Envelope>) {
        self.publish_inner(envelope, Some(envelope.clone()));
    }

    fn publish_inner(&self, envelope: &Envelope, mut shared: Option<Arc<Envelope>>) {
        self.metrics.ingress.inc();
        let mut state = lock(&self.state);
        let mut slow: Vec<(GroupKey, u64)> = Vec::new();
        for (key, group) in &mut state.groups {
            let n = group.members.len();
            for i in 0..n {
                let at = (group.next + i) % n;
                let member = &group.members[at];
                if !member.selector.matches(envelope) {
                    continue;
                }
                group.next = (at + 1) % n;
                match self.deliver(member, envelope, &mut shared) {
                    Delivery::Delivered => {
                        self.metrics.egress.inc();
                    }
                    Delivery::Dropped => {}
                    Delivery::Disconnected(discarded) => {
                        self.metrics.dropped(REASON_DISCONNECTED, discarded);
                        self.metrics.disconnected.inc();
                        slow.push((key.clone(), member.id));
                    }
                }
                break;
            }
        }
        for (key, id) in slow {
            Self::remove(&mut state, &key, id);
            self.metrics.subscribers.dec();
        }
    }

    fn deliver(
        &self,
        slot: &Slot,
        envelope: &Envelope,
        shared: &mut Option<Arc<Envelope>>,
    ) -> Delivery {
        let mut queue = slot.queue();
        if queue.closed.is_some() {
            return Delivery::Dropped;
        }
        if queue.envelopes.len() < self.config.buffer_size {
            // A reader only waits after finding its queue empty, so only the
            // envelope that ends the emptiness needs to wake it: fewer
            // wake-ups while the reader is busy.
            let was_empty = queue.envelopes.is_empty();
            if queue.pending_dropped > 0 {
                // The notice goes where the loss happened: after what was
                // buffered before it, before what comes after.
                let notices = slot.notices(queue.pending_dropped, queue.total_dropped);
                queue.envelopes.extend(notices.into_iter().map(Arc::new));
                queue.pending_dropped = 0;
            }
            let shared = shared.get_or_insert_with(|| Arc::new(envelope.clone()));
            queue.envelopes.push_back(shared.clone());
            drop(queue);
            if was_empty {
                slot.notify.notify_one();
            }
            return Delivery::Delivered;
        }
        queue.pending_dropped += 1;
        queue.total_dropped += 1;
        self.metrics.dropped_buffer_full.inc();
        if coarse_now().saturating_sub(queue.last_progress) >= self.config.stall_timeout {
            queue.closed = Some(Disconnected::SlowConsumer);
            let discarded = queue.envelopes.len() as u64;
            queue.envelopes.clear();
            drop(queue);
            slot.notify.notify_one();
            return Delivery::Disconnected(discarded);
        }
        Delivery::Dropped
    }

    fn remove(state: &mut State, key: &GroupKey, id: u64) -> bool {
        let Some(group) = state.groups.get_mut(key) else {
            return false;
        };
        let before = group.members.len();
        group.members.retain(|m| m.id != id);
        let removed = group.members.len() < before;
        if group.members.is_empty() {
            state.groups.remove(key);
        } else {
            group.next %= group.members.len();
        }
        removed
    }

    /// Registers the firehose's counters: envelopes in and out, dropped by
    /// reason (`subscriber_buffer_full`, `slow_consumer_disconnected`),
    /// slow subscribers disconnected, live subscribers.
    pub fn register_metrics(&self, registry: &mut Registry) {
        let m = self.metrics.clone();
        registry.register(
            "firehose_ingress",
            "Envelopes published to the firehose",
            m.ingress,
        );
        registry.register(
            "firehose_egress",
            "Envelopes buffered for a firehose subscriber",
            m.egress,
        );
        registry.register(
            "firehose_dropped",
            "Envelopes a firehose subscriber lost, by reason",
            m.dropped,
        );
        registry.register(
            "firehose_slow_consumers_disconnected",
            "Firehose subscribers disconnected for taking nothing from a full buffer",
            m.disconnected,
        );
        registry.register(
            "firehose_subscribers",
            "Live firehose subscribers",
            m.subscribers,
        );
    }
}

impl LogSink for Firehose {
    fn emit(&self, envelope: Envelope) {
        self.publish(&envelope);
    }
}

/// One subscriber's end of the firehose; unsubscribes when dropped.
pub struct Subscription {
    slot: Arc<Slot>,
    key: GroupKey,
    firehose: Arc<Firehose>,
}

impl std::fmt::Debug for Subscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscription")
            .field("id", &self.slot.id)
            .field("selector", &self.slot.selector)
            .finish_non_exhaustive()
    }
}

impl Subscription {
    /// What this subscription selects.
    pub fn selector(&self) -> &Selector {
        &self.slot.selector
    }

    /// Up to `max` (at least 1) waiting envelopes, oldest first, without
    /// waiting: `Ok(vec![])` when none wait, `Err` once disconnected.
    /// Envelopes are shared with the store and other subscribers, not
    /// copied for each reader.
    pub fn try_next_batch(&self, max: usize) -> Result<Vec<Arc<Envelope>>, Disconnected> {
        let mut queue = self.slot.queue();
        if let Some(reason) = queue.closed {
            return Err(reason);
        }
        queue.last_progress = coarse_now();
        let take = max.max(1).min(queue.envelopes.len());
        let mut batch: Vec<Arc<Envelope>> = queue.envelopes.drain(..take).collect();
        if queue.envelopes.is_empty() && queue.pending_dropped > 0 {
            // Nothing is left to come before the notice: say it now rather
            // than waiting for the next envelope to arrive.
            batch.extend(
                self.slot
                    .notices(queue.pending_dropped, queue.total_dropped)
                    .into_iter()
                    .map(Arc::new),
            );
            queue.pending_dropped = 0;
        }
        Ok(batch)
    }

    /// Up to `max` envelopes, waiting until at least one is there; `Err`
    /// once disconnected. Cancel-safe: dropping the future loses nothing.
    pub async fn next_batch(&self, max: usize) -> Result<Vec<Arc<Envelope>>, Disconnected> {
        loop {
            let notified = self.slot.notify.notified();
            let batch = self.try_next_batch(max)?;
            if !batch.is_empty() {
                return Ok(batch);
            }
            notified.await;
        }
    }

    /// Envelopes lost by this subscriber so far.
    pub fn dropped(&self) -> u64 {
        self.slot.queue().total_dropped
    }

    /// Whether the firehose has disconnected this subscriber.
    pub fn disconnected(&self) -> Option<Disconnected> {
        self.slot.queue().closed
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let mut state = lock(&self.firehose.state);
        if Firehose::remove(&mut state, &self.key, self.slot.id) {
            self.firehose.metrics.subscribers.dec();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(source: &str, text: &str) -> Envelope {
        Envelope::log(source, "0", "APP/PROC/WEB", text, LogKind::Out)
    }

    fn text(e: &Envelope) -> String {
        match &e.message {
            Message::Log { payload, .. } => String::from_utf8_lossy(payload).into_owned(),
            Message::Counter { name, delta, total } => format!("{name} {delta} {total}"),
            Message::Gauge { .. } => "gauge".to_owned(),
            Message::Timer { name, .. } => format!("timer {name}"),
        }
    }

    fn drain(sub: &Subscription) -> Vec<String> {
        sub.try_next_batch(usize::MAX)
            .map(|b| b.iter().map(|e| text(e)).collect())
            .unwrap_or_default()
    }

    fn logs_only() -> Selector {
        Selector {
            envelope_types: vec![EnvelopeType::Log],
            ..Selector::default()
        }
    }

    #[test]
    fn every_unsharded_subscriber_gets_everything_it_selects() {
        let hose = Firehose::new(FirehoseConfig::default());
        let all = hose.subscribe("", Selector::default());
        let app = hose.subscribe(
            "",
            Selector {
                source_ids: vec!["app".into()],
                ..Selector::default()
            },
        );
        hose.publish(&line("app", "a"));
        hose.publish(&line("other", "b"));
        assert_eq!(drain(&all), ["a", "b"]);
        assert_eq!(drain(&app), ["a"]);
    }

    #[test]
    fn a_shard_group_splits_the_stream_and_another_group_gets_all() {
        let hose = Firehose::new(FirehoseConfig::default());
        let one = hose.subscribe("nozzle", Selector::default());
        let two = hose.subscribe("nozzle", Selector::default());
        let other = hose.subscribe("other", Selector::default());
        for i in 0..10 {
            hose.publish(&line("app", &i.to_string()));
        }
        let (a, b) = (drain(&one), drain(&two));
        assert_eq!(a.len(), 5);
        assert_eq!(b.len(), 5);
        let mut union: Vec<String> = a.into_iter().chain(b).collect();
        union.sort_by_key(|s| s.parse::<u32>().unwrap_or(u32::MAX));
        let all: Vec<String> = (0..10).map(|i| i.to_string()).collect();
        assert_eq!(union, all);
        assert_eq!(drain(&other), all);
    }

    #[test]
    fn leaving_a_shard_group_gives_the_rest_everything() {
        let hose = Firehose::new(FirehoseConfig::default());
        let one = hose.subscribe("n", Selector::default());
        let two = hose.subscribe("n", Selector::default());
        drop(two);
        hose.publish(&line("app", "a"));
        hose.publish(&line("app", "b"));
        assert_eq!(drain(&one), ["a", "b"]);
        assert_eq!(hose.subscriber_count(), 1);
    }

    #[test]
    fn envelope_types_filter() {
        let hose = Firehose::new(FirehoseConfig::default());
        let counters = hose.subscribe(
            "",
            Selector {
                envelope_types: vec![EnvelopeType::Counter],
                ..Selector::default()
            },
        );
        hose.publish(&line("app", "a"));
        let mut c = line("app", "");
        c.message = Message::Counter {
            name: "requests".into(),
            delta: 1,
            total: 1,
        };
        hose.publish(&c);
        assert_eq!(drain(&counters), ["requests 1 1"]);

        // The RLP gateway's `timer` selector.
        let timers = hose.subscribe(
            "",
            Selector {
                envelope_types: vec![EnvelopeType::Timer],
                ..Selector::default()
            },
        );
        hose.publish(&c);
        hose.publish(&Envelope::timer(
            "app",
            "0",
            "http",
            1,
            2,
            crate::Tags::new(),
        ));
        assert_eq!(drain(&timers), ["timer http"]);
    }

    #[test]
    fn overflow_drops_for_that_subscriber_only_and_tells_it_in_place() {
        let hose = Firehose::new(FirehoseConfig {
            buffer_size: 3,
            stall_timeout: Duration::from_secs(3600),
        });
        let slow = hose.subscribe("", logs_only());
        let fast = hose.subscribe("", logs_only());
        for i in 1..=5 {
            hose.publish(&line("app", &i.to_string()));
            assert_eq!(drain(&fast), [i.to_string()]);
        }
        assert_eq!(slow.dropped(), 2);
        assert_eq!(slow.try_next_batch(2).map(|b| b.len()), Ok(2));
        hose.publish(&line("app", "6"));
        assert_eq!(
            drain(&slow),
            ["3".to_owned(), dropped_notice_text(2, 2), "6".to_owned()]
        );
        // A second loss reports its own count and the running total.
        for i in 7..=11 {
            hose.publish(&line("app", &i.to_string()));
        }
        assert_eq!(
            drain(&slow),
            ["7", "8", "9"]
                .map(str::to_owned)
                .into_iter()
                .chain([dropped_notice_text(2, 4)])
                .collect::<Vec<_>>()
        );
    }

    #[test]
    fn the_notice_is_an_error_line_from_loggregator() {
        let hose = Firehose::new(FirehoseConfig {
            buffer_size: 1,
            stall_timeout: Duration::from_secs(3600),
        });
        let sub = hose.subscribe(
            "",
            Selector {
                source_ids: vec!["app".into()],
                ..Selector::default()
            },
        );
        hose.publish(&line("app", "kept"));
        hose.publish(&line("app", "lost"));
        let batch = sub.try_next_batch(10).unwrap_or_default();
        assert_eq!(batch.len(), 3, "line, notice, counter");
        let notice = &batch[1];
        assert_eq!(notice.source_id, "app");
        assert_eq!(notice.source_type(), Some(LOGGREGATOR_SOURCE_TYPE));
        assert!(matches!(
            &notice.message,
            Message::Log { kind: LogKind::Err, payload }
                if payload == dropped_notice_text(1, 1).as_bytes()
        ));
        assert_eq!(text(&batch[2]), format!("{DROPPED_COUNTER_NAME} 1 1"));
    }

    #[test]
    fn a_reader_stalled_on_a_full_buffer_is_disconnected_and_counted() {
        let hose = Firehose::new(FirehoseConfig {
            buffer_size: 2,
            stall_timeout: Duration::from_millis(50),
        });
        let mut registry = Registry::default();
        hose.register_metrics(&mut registry);
        let stalled = hose.subscribe("", Selector::default());
        let started = Instant::now();
        while stalled.disconnected().is_none() {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "never disconnected"
            );
            hose.publish(&line("app", "x"));
            std::thread::yield_now();
        }
        assert_eq!(stalled.disconnected(), Some(Disconnected::SlowConsumer));
        assert_eq!(stalled.try_next_batch(10), Err(Disconnected::SlowConsumer));
        assert_eq!(hose.subscriber_count(), 0);
        let mut text = String::new();
        assert!(prometheus_client::encoding::text::encode(&mut text, &registry).is_ok());
        assert!(text.contains("firehose_dropped_total{reason=\"subscriber_buffer_full\"}"));
        assert!(text.contains("firehose_dropped_total{reason=\"slow_consumer_disconnected\"} 2"));
        assert!(text.contains("firehose_slow_consumers_disconnected_total 1"));
        assert!(text.contains("firehose_subscribers 0"));
    }

    #[test]
    fn a_reader_that_keeps_taking_is_never_disconnected() {
        let hose = Firehose::new(FirehoseConfig {
            buffer_size: 2,
            stall_timeout: Duration::ZERO,
        });
        let sub = hose.subscribe("", Selector::default());
        for _ in 0..100 {
            hose.publish(&line("app", "x"));
            hose.publish(&line("app", "y"));
            assert_eq!(drain(&sub).len(), 2);
        }
        assert_eq!(sub.disconnected(), None);
    }

    #[tokio::test]
    async fn shutdown_ends_waiting_and_later_subscriptions() {
        let hose = Firehose::new(FirehoseConfig::default());
        let waiting = hose.subscribe("", Selector::default());
        let stopper = {
            let hose = hose.clone();
            tokio::spawn(async move { hose.shutdown() })
        };
        let ended = tokio::time::timeout(Duration::from_secs(10), waiting.next_batch(10)).await;
        assert!(stopper.await.is_ok());
        assert_eq!(ended.ok(), Some(Err(Disconnected::Shutdown)));
        assert_eq!(hose.subscriber_count(), 0);
        let late = hose.subscribe("", Selector::default());
        hose.publish(&line("app", "after"));
        assert_eq!(late.try_next_batch(10), Err(Disconnected::Shutdown));
    }

    #[tokio::test]
    async fn next_batch_waits_for_an_envelope() {
        let hose = Firehose::new(FirehoseConfig::default());
        let sub = hose.subscribe("", Selector::default());
        let publisher = {
            let hose = hose.clone();
            tokio::spawn(async move { hose.publish(&line("app", "late")) })
        };
        let batch = tokio::time::timeout(Duration::from_secs(10), sub.next_batch(10)).await;
        assert!(publisher.await.is_ok());
        let texts: Vec<String> = batch
            .ok()
            .and_then(Result::ok)
            .unwrap_or_default()
            .iter()
            .map(|e| text(e))
            .collect();
        assert_eq!(texts, ["late"]);
    }
}
