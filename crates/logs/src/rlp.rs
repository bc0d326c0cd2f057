//! The RLP gateway: `GET /v2/read` streams the firehose as server-sent
//! events, routes relative to the mount point (the binary nests it under
//! `/log-stream`).
//!
//! Query: envelope-type selectors as bare flags (`log`, `counter`, `gauge`,
//! `timer`, `event`; at least one), any number of `source_id=`, and an
//! optional `shard_id=` (readers with the same shard id split the stream).
//! Each batch is `data: {"batch":[…]}` in the v2 JSON mapping of [`wire`];
//! an idle stream gets `event: heartbeat` with the Unix time in seconds; a
//! reader disconnected for being slow, or by [`Firehose::shutdown`], gets
//! `event: closing` before the stream ends.
//!
//! [`wire`]: crate::wire

use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};

use crate::api::ReadDenied;
use crate::envelope::{now_nanos, EnvelopeType};
use crate::firehose::{Disconnected, Firehose, Selector, Subscription};
use crate::wire::{EnvelopeBatch, WireEnvelope};

/// Who may stream: the binary implements this over the token verifier.
pub trait StreamAuthorizer: Send + Sync {
    /// Allows or refuses reading every source (the `doppler.firehose`
    /// scope), given the `Authorization` header value (`None` when absent).
    fn authorize_firehose(&self, authorization: Option<&str>) -> Result<(), ReadDenied>;

    /// Allows or refuses reading `source_id` (an app's logs need a role in
    /// its space; `doppler.firehose` reads anything).
    fn authorize_source(
        &self,
        authorization: Option<&str>,
        source_id: &str,
    ) -> Result<(), ReadDenied>;
}

/// Tunables of the gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RlpConfig {
    /// How long a stream may be idle before a heartbeat event is sent.
    pub heartbeat_interval: Duration,
    /// Most envelopes in one `data:` event.
    pub batch_size: usize,
}

impl Default for RlpConfig {
    fn default() -> Self {
        Self {
            heartbeat_interval: Duration::from_secs(10),
            batch_size: 100,
        }
    }
}

#[derive(Clone)]
struct GatewayState {
    firehose: Arc<Firehose>,
    authorizer: Arc<dyn StreamAuthorizer>,
    config: RlpConfig,
}

/// The RLP gateway with the default [`RlpConfig`].
pub fn rlp_gateway_router(
    firehose: Arc<Firehose>,
    authorizer: Arc<dyn StreamAuthorizer>,
) -> Router {
    rlp_gateway_router_with(firehose, authorizer, RlpConfig::default())
}

/// The RLP gateway, routes relative to its mount point.
pub fn rlp_gateway_router_with(
    firehose: Arc<Firehose>,
    authorizer: Arc<dyn StreamAuthorizer>,
    config: RlpConfig,
) -> Router {
    Router::new()
        .route("/v2/read", get(read))
        .with_state(GatewayState {
            firehose,
            authorizer,
            config,
        })
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    let message = message.into();
    (status, Json(serde_json::json!({ "error": message }))).into_response()
}

fn denied(denied: ReadDenied) -> Response {
    error(
        StatusCode::from_u16(denied.status).unwrap_or(StatusCode::FORBIDDEN),
        denied.message,
    )
}

/// A parsed `/v2/read` query.
#[derive(Debug, PartialEq)]
struct StreamQuery {
    shard_id: String,
    selector: Selector,
}

fn parse_query(raw: &str) -> Result<StreamQuery, String> {
    let pairs: Vec<(String, String)> =
        serde_urlencoded::from_str(raw).map_err(|err| format!("malformed query string: {err}"))?;
    let mut query = StreamQuery {
        shard_id: String::new(),
        selector: Selector::default(),
    };
    for (name, value) in pairs {
        let kind = match name.as_str() {
            "log" => Some(EnvelopeType::Log),
            "counter" => Some(EnvelopeType::Counter),
            "gauge" => Some(EnvelopeType::Gauge),
            "timer" => Some(EnvelopeType::Timer),
            "event" => Some(EnvelopeType::Event),
            "source_id" => {
                if value.is_empty() {
                    return Err("source_id must not be empty".to_owned());
                }
                if !query.selector.source_ids.contains(&value) {
                    query.selector.source_ids.push(value);
                }
                None
            }
            "shard_id" => {
                query.shard_id = value;
                None
            }
            _ => None,
        };
        if let Some(kind) = kind {
            if !query.selector.envelope_types.contains(&kind) {
                query.selector.envelope_types.push(kind);
            }
        }
    }
    if query.selector.envelope_types.is_empty() {
        return Err(
            "at least one envelope type selector is required: log, counter, gauge, timer or event"
                .to_owned(),
        );
    }
    Ok(query)
}

async fn read(
    State(state): State<GatewayState>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
) -> Response {
    let query = match parse_query(raw.as_deref().unwrap_or("")) {
        Ok(query) => query,
        Err(message) => return error(StatusCode::BAD_REQUEST, message),
    };
    let auth = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let allowed = if query.selector.source_ids.is_empty() {
        state.authorizer.authorize_firehose(auth)
    } else {
        query
            .selector
            .source_ids
            .iter()
            .try_for_each(|id| state.authorizer.authorize_source(auth, id))
    };
    if let Err(refused) = allowed {
        return denied(refused);
    }
    let subscription = state.firehose.subscribe(&query.shard_id, query.selector);
    let stream = futures::stream::unfold(
        Some(Stream::new(subscription, state.config)),
        |stream| async move {
            let mut stream = stream?;
            let (chunk, more) = stream.next_chunk().await;
            Some((
                Ok::<_, std::convert::Infallible>(chunk),
                more.then_some(stream),
            ))
        },
    );
    (
        [
            (header::CONTENT_TYPE, "text/event-stream"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        Body::from_stream(stream),
    )
        .into_response()
}

/// One client's stream: the subscription and its heartbeat clock.
struct Stream {
    subscription: Subscription,
    config: RlpConfig,
}

impl Stream {
    fn new(subscription: Subscription, config: RlpConfig) -> Self {
        Self {
            subscription,
            config,
        }
    }

    /// The next bytes to send, and whether more follow.
    async fn next_chunk(&mut self) -> (Bytes, bool) {
        let batch = tokio::time::timeout(
            self.config.heartbeat_interval,
            self.subscription.next_batch(self.config.batch_size),
        )
        .await;
        match batch {
            Err(_idle) => {
                let secs = now_nanos() / 1_000_000_000;
                (
                    Bytes::from(format!("event: heartbeat\ndata: {secs}\n\n")),
                    true,
                )
            }
            Ok(Ok(envelopes)) => {
                let batch = EnvelopeBatch {
                    batch: envelopes.iter().map(|e| WireEnvelope::from(&**e)).collect(),
                };
                // Serialising plain strings and maps cannot fail; should it,
                // the reader gets an empty batch rather than a broken stream.
                let json = serde_json::to_string(&batch)
                    .unwrap_or_else(|_| String::from("{\"batch\":[]}"));
                (Bytes::from(format!("data: {json}\n\n")), true)
            }
            Ok(Err(Disconnected::SlowConsumer)) => (
                Bytes::from_static(
                    b"event: closing\ndata: disconnected: too slow to keep up with the stream\n\n",
                ),
                false,
            ),
            Ok(Err(Disconnected::Shutdown)) => (
                Bytes::from_static(b"event: closing\ndata: server shutting down\n\n"),
                false,
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selectors_sources_and_shard_are_parsed() {
        let q = parse_query("log&gauge=&source_id=a&source_id=b&shard_id=nozzle&log");
        assert_eq!(
            q,
            Ok(StreamQuery {
                shard_id: "nozzle".into(),
                selector: Selector {
                    source_ids: vec!["a".into(), "b".into()],
                    envelope_types: vec![EnvelopeType::Log, EnvelopeType::Gauge],
                },
            })
        );
    }

    #[test]
    fn no_type_selector_or_an_empty_source_is_refused() {
        assert!(parse_query("source_id=a").is_err());
        assert!(parse_query("").is_err());
        assert!(parse_query("log&source_id=").is_err());
    }
}
