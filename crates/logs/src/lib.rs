//! Loggregator and log-cache for Ingot: the envelope every part emits, the
//! [`LogSink`] it emits through, the per-source ring buffers of [`LogStore`],
//! log-cache's HTTP read API ([`log_cache_router`]), the live fan-out of
//! [`Firehose`] and the RLP gateway that streams it ([`rlp_gateway_router`]),
//! the traffic controller's dropsonde v1 endpoints ([`doppler_router`],
//! messages in [`dropsonde`]), the per-instance log rate limit
//! ([`RateLimitedSink`]) and syslog drains ([`DrainManager`], messages in
//! [`rfc5424`]), and each component's Prometheus counters as counter
//! envelopes ([`emit_counters`]).
//!
//! *Invariant*: emitting never blocks on a reader and never fails; a full
//! store buffer evicts its oldest envelope instead, and a full subscriber
//! buffer drops for that subscriber and tells it so.
//!
//! The domain types ([`Envelope`], [`Message`]) know nothing of JSON; the
//! protobuf-JSON mapping of loggregator v2 lives at the edge in [`wire`].

mod api;
mod counters;
mod doppler;
mod drain_transport;
pub mod dropsonde;
mod envelope;
mod firehose;
mod forward;
mod ratelimit;
pub mod rfc5424;
mod rlp;
mod store;
mod syslog;
pub mod wire;

pub use api::{log_cache_router, ReadAuthorizer, ReadDenied};
pub use counters::{counters_from_openmetrics, emit_counters, ComponentCounter};
pub use doppler::{doppler_router, doppler_router_with, DopplerConfig, DEFAULT_RECENT_LOGS_LIMIT};
pub use drain_transport::{DrainError, DrainScheme, DrainTls, DrainType, DrainUrl};
pub use envelope::{
    now_nanos, ContainerMetrics, Envelope, EnvelopeType, GaugeValue, LogKind, Message, Tags,
};
pub use firehose::{
    dropped_notice_text, Disconnected, Firehose, FirehoseConfig, Selector, Subscription,
    DEFAULT_STALL_TIMEOUT, DEFAULT_SUBSCRIBER_BUFFER, DROPPED_COUNTER_NAME,
    LOGGREGATOR_SOURCE_TYPE,
};
pub use forward::{forward_lines, MAX_LINE_BYTES};
pub use ratelimit::{
    forward_lines_rate_limited, instance_log_sink, log_rate_limit_notice, LogRateMetrics,
    RateLimitedSink, UNLIMITED_LOG_RATE,
};
pub use rfc5424::AppMeta;
pub use rlp::{rlp_gateway_router, rlp_gateway_router_with, RlpConfig, StreamAuthorizer};
pub use store::{LogStore, ReadQuery, SourceMeta, DEFAULT_MAX_SOURCES, LOG_CACHE_MAX_PER_SOURCE};
pub use syslog::{drain_loss_notice, DrainConfig, DrainManager, DrainStatus, DEFAULT_DRAIN_BUFFER};

/// Where every part of Ingot sends its envelopes (app output, staging output,
/// router access lines, metrics).
///
/// Every part emits through this; emitting never blocks and never fails.
pub trait LogSink: Send + Sync {
    /// Hands one envelope over; the sink keeps or drops it without waiting.
    fn emit(&self, envelope: Envelope);
}

/// A sink that drops everything, for parts run without a log store.
#[derive(Debug, Default, Clone, Copy)]
pub struct DiscardSink;

impl LogSink for DiscardSink {
    fn emit(&self, _envelope: Envelope) {}
}

/// Hands every envelope to each of several sinks in turn, e.g. the log
/// store and the [`DrainManager`]; as non-blocking as its sinks.
#[derive(Clone, Default)]
pub struct TeeSink {
    sinks: Vec<std::sync::Arc<dyn LogSink>>,
}

impl std::fmt::Debug for TeeSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TeeSink")
            .field("sinks", &self.sinks.len())
            .finish()
    }
}

impl TeeSink {
    /// A tee over `sinks`, in that order.
    pub fn new(sinks: Vec<std::sync::Arc<dyn LogSink>>) -> Self {
        Self { sinks }
    }
}

impl LogSink for TeeSink {
    fn emit(&self, envelope: Envelope) {
        if let Some((last, rest)) = self.sinks.split_last() {
            for sink in rest {
                sink.emit(envelope.clone());
            }
            last.emit(envelope);
        }
    }
}
