//! Loggregator and log-cache for Ingot: the envelope every part emits, the
//! [`LogSink`] it emits through, the per-source ring buffers of [`LogStore`],
//! log-cache's HTTP read API ([`log_cache_router`]), the live fan-out of
//! [`Firehose`] and the RLP gateway that streams it ([`rlp_gateway_router`]),
//! the traffic controller's dropsonde v1 endpoints ([`doppler_router`],
//! messages in [`dropsonde`]) and the per-instance log rate limit
//! ([`RateLimitedSink`]).
//!
//! *Invariant*: emitting never blocks on a reader and never fails; a full
//! store buffer evicts its oldest envelope instead, and a full subscriber
//! buffer drops for that subscriber and tells it so.
//!
//! The domain types ([`Envelope`], [`Message`]) know nothing of JSON; the
//! protobuf-JSON mapping of loggregator v2 lives at the edge in [`wire`].

mod api;
mod doppler;
pub mod dropsonde;
mod envelope;
mod firehose;
mod forward;
mod ratelimit;
mod rlp;
mod store;
pub mod wire;

pub use api::{log_cache_router, ReadAuthorizer, ReadDenied};
pub use doppler::{doppler_router, doppler_router_with, DopplerConfig, DEFAULT_RECENT_LOGS_LIMIT};
pub use envelope::{ContainerMetrics, Envelope, EnvelopeType, GaugeValue, LogKind, Message};
pub use firehose::{
    dropped_notice_text, Disconnected, Firehose, FirehoseConfig, Selector, Subscription,
    DEFAULT_STALL_TIMEOUT, DEFAULT_SUBSCRIBER_BUFFER, DROPPED_COUNTER_NAME,
    LOGGREGATOR_SOURCE_TYPE,
};
pub use forward::{forward_lines, MAX_LINE_BYTES};
pub use ratelimit::{
    forward_lines_rate_limited, log_rate_limit_notice, LogRateMetrics, RateLimitedSink,
};
pub use rlp::{rlp_gateway_router, rlp_gateway_router_with, RlpConfig, StreamAuthorizer};
pub use store::{LogStore, ReadQuery, SourceMeta, DEFAULT_MAX_SOURCES, LOG_CACHE_MAX_PER_SOURCE};

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
