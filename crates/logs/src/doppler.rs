//! The traffic controller's endpoints, serving dropsonde v1 envelopes
//! ([`crate::dropsonde`]); routes relative to the mount point (the binary
//! nests them under `/doppler` and announces that as `links.logging`).
//!
//! - `GET /apps/{guid}/stream`: websocket, every envelope of the app, live.
//! - `GET /apps/{guid}/recentlogs[?limit=N]`: the app's newest log lines
//!   (1000 unless `limit` says otherwise), oldest first, as
//!   `multipart/x-protobuf`, one encoded envelope per part.
//! - `GET /apps/{guid}/containermetrics`: the newest container metric of
//!   each instance, as `multipart/x-protobuf`.
//! - `GET /firehose/{subscription_id}`: websocket, every envelope; readers
//!   with the same subscription id split the stream. Needs the firehose
//!   scope.
//!
//! Each websocket binary message is one encoded `events.Envelope`. The token
//! comes from the `Authorization` header or, as browsers cannot set headers
//! on websockets, an `authorization` cookie. Refusals follow the traffic
//! controller: 401 without a valid token, 404 for an app the user may not
//! see. A reader disconnected for being slow, or by [`Firehose::shutdown`],
//! gets a close frame saying why; an idle stream gets pings.

use std::collections::BTreeMap;
use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::ws::{CloseFrame, Message as WsMessage, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use futures::{SinkExt, StreamExt};
use prost::Message as _;

use crate::api::ReadDenied;
use crate::dropsonde::{self, EventType};
use crate::envelope::EnvelopeType;
use crate::firehose::{Disconnected, Firehose, Selector, Subscription};
use crate::rlp::StreamAuthorizer;
use crate::store::{LogStore, ReadQuery};

/// How many log lines `recentlogs` returns without a `limit`.
pub const DEFAULT_RECENT_LOGS_LIMIT: usize = 1000;

/// Websocket close code for a reader disconnected for being too slow
/// (policy violation).
const CLOSE_SLOW_CONSUMER: u16 = 1008;
/// Websocket close code for a server going away.
const CLOSE_GOING_AWAY: u16 = 1001;

/// Tunables of the traffic controller endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DopplerConfig {
    /// How long a websocket may be idle before the server pings it.
    pub keepalive_interval: Duration,
    /// Most envelopes taken from a subscription at once.
    pub batch_size: usize,
}

impl Default for DopplerConfig {
    fn default() -> Self {
        Self {
            keepalive_interval: Duration::from_secs(25),
            batch_size: 100,
        }
    }
}

#[derive(Clone)]
struct DopplerState {
    firehose: Arc<Firehose>,
    store: Arc<LogStore>,
    authorizer: Arc<dyn StreamAuthorizer>,
    config: DopplerConfig,
}

/// The traffic controller endpoints with the default [`DopplerConfig`].
pub fn doppler_router(
    firehose: Arc<Firehose>,
    store: Arc<LogStore>,
    authorizer: Arc<dyn StreamAuthorizer>,
) -> Router {
    doppler_router_with(firehose, store, authorizer, DopplerConfig::default())
}

/// The traffic controller endpoints, routes relative to the mount point.
pub fn doppler_router_with(
    firehose: Arc<Firehose>,
    store: Arc<LogStore>,
    authorizer: Arc<dyn StreamAuthorizer>,
    config: DopplerConfig,
) -> Router {
    Router::new()
        .route("/apps/{guid}/stream", get(app_stream))
        .route("/apps/{guid}/recentlogs", get(recent_logs))
        .route("/apps/{guid}/containermetrics", get(container_metrics))
        .route("/firehose/{subscription_id}", get(firehose_stream))
        .with_state(DopplerState {
            firehose,
            store,
            authorizer,
            config,
        })
}

/// The token: the `Authorization` header, else the `authorization` cookie
/// (percent-decoded), as the traffic controller reads it.
fn auth_token(headers: &HeaderMap) -> Option<String> {
    if let Some(value) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        return Some(value.to_owned());
    }
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == "authorization")
        .and_then(|(_, value)| {
            serde_urlencoded::from_str::<Vec<(String, String)>>(&format!("v={value}"))
                .ok()
                .and_then(|mut pairs| pairs.pop())
                .map(|(_, v)| v)
        })
}

fn plain(status: StatusCode, body: String) -> Response {
    (status, [(header::CONTENT_TYPE, "text/plain")], body).into_response()
}

/// The traffic controller's answer to a refused app read: 401 for a bad
/// token, 404 otherwise (an app one may not see does not exist).
fn app_denied(refused: ReadDenied) -> Response {
    if refused.status == 401 {
        let mut r = plain(StatusCode::UNAUTHORIZED, refused.message);
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Basic"),
        );
        r
    } else {
        plain(StatusCode::NOT_FOUND, refused.message)
    }
}

fn authorize_app(state: &DopplerState, headers: &HeaderMap, guid: &str) -> Result<(), ReadDenied> {
    let token = auth_token(headers);
    state.authorizer.authorize_source(token.as_deref(), guid)
}

async fn app_stream(
    State(state): State<DopplerState>,
    Path(guid): Path<String>,
    headers: HeaderMap,
    upgrade: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Response {
    if let Err(refused) = authorize_app(&state, &headers, &guid) {
        return app_denied(refused);
    }
    let upgrade = match upgrade {
        Ok(upgrade) => upgrade,
        Err(rejection) => return rejection.into_response(),
    };
    let subscription = state.firehose.subscribe(
        "",
        Selector {
            source_ids: vec![guid],
            envelope_types: Vec::new(),
        },
    );
    let config = state.config;
    upgrade.on_upgrade(move |socket| pump(socket, subscription, config))
}

async fn firehose_stream(
    State(state): State<DopplerState>,
    Path(subscription_id): Path<String>,
    headers: HeaderMap,
    upgrade: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Response {
    let token = auth_token(&headers);
    if let Err(refused) = state.authorizer.authorize_firehose(token.as_deref()) {
        let mut r = plain(
            StatusCode::UNAUTHORIZED,
            format!("You are not authorized. {}", refused.message),
        );
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Basic"),
        );
        return r;
    }
    let upgrade = match upgrade {
        Ok(upgrade) => upgrade,
        Err(rejection) => return rejection.into_response(),
    };
    let subscription = state
        .firehose
        .subscribe(&subscription_id, Selector::default());
    let config = state.config;
    upgrade.on_upgrade(move |socket| pump(socket, subscription, config))
}

/// Copies the subscription into the socket until either side ends.
async fn pump(socket: WebSocket, subscription: Subscription, config: DopplerConfig) {
    let (mut tx, mut rx) = socket.split();
    loop {
        tokio::select! {
            incoming = rx.next() => match incoming {
                // Clients send nothing meaningful; pongs and the like are
                // read only to notice the close.
                Some(Ok(WsMessage::Close(_))) | Some(Err(_)) | None => break,
                Some(Ok(_)) => {}
            },
            batch = tokio::time::timeout(
                config.keepalive_interval,
                subscription.next_batch(config.batch_size),
            ) => {
                let sent = match batch {
                    Err(_idle) => tx.send(WsMessage::Ping(Bytes::new())).await,
                    Ok(Ok(envelopes)) => {
                        let frames: Vec<_> = envelopes
                            .iter()
                            .flat_map(|e| dropsonde::to_v1(e))
                            .map(|e| Ok(WsMessage::Binary(Bytes::from(e.encode_to_vec()))))
                            .collect();
                        let mut frames = futures::stream::iter(frames);
                        tx.send_all(&mut frames).await
                    }
                    Ok(Err(reason)) => {
                        let (code, text) = match reason {
                            Disconnected::SlowConsumer => {
                                (CLOSE_SLOW_CONSUMER, "disconnected: too slow to keep up with the stream")
                            }
                            Disconnected::Shutdown => (CLOSE_GOING_AWAY, "server shutting down"),
                        };
                        let _ = tx
                            .send(WsMessage::Close(Some(CloseFrame {
                                code,
                                reason: text.into(),
                            })))
                            .await;
                        break;
                    }
                };
                if sent.is_err() {
                    break;
                }
            }
        }
    }
}

/// `recentlogs` query parameters.
#[derive(Debug, serde::Deserialize)]
struct RecentQuery {
    limit: Option<String>,
}

async fn recent_logs(
    State(state): State<DopplerState>,
    Path(guid): Path<String>,
    Query(query): Query<RecentQuery>,
    headers: HeaderMap,
) -> Response {
    if let Err(refused) = authorize_app(&state, &headers, &guid) {
        return app_denied(refused);
    }
    let limit = match query.limit.as_deref() {
        None | Some("") => DEFAULT_RECENT_LOGS_LIMIT,
        Some(raw) => match raw.parse::<i64>() {
            // The traffic controller treats a negative limit as "default".
            Ok(n) if n < 0 => DEFAULT_RECENT_LOGS_LIMIT,
            Ok(n) => usize::try_from(n).unwrap_or(usize::MAX),
            Err(_) => {
                return plain(
                    StatusCode::BAD_REQUEST,
                    format!("limit must be a number, got {raw:?}"),
                )
            }
        },
    };
    let mut envelopes = state.store.read(
        &guid,
        &ReadQuery {
            envelope_types: vec![EnvelopeType::Log],
            limit,
            descending: true,
            ..ReadQuery::default()
        },
    );
    envelopes.reverse();
    let parts: Vec<Vec<u8>> = envelopes
        .iter()
        .flat_map(dropsonde::to_v1)
        .map(|e| e.encode_to_vec())
        .collect();
    multipart_response(&parts)
}

async fn container_metrics(
    State(state): State<DopplerState>,
    Path(guid): Path<String>,
    headers: HeaderMap,
) -> Response {
    if let Err(refused) = authorize_app(&state, &headers, &guid) {
        return app_denied(refused);
    }
    let gauges = state.store.read(
        &guid,
        &ReadQuery {
            envelope_types: vec![EnvelopeType::Gauge],
            limit: usize::MAX,
            descending: true,
            ..ReadQuery::default()
        },
    );
    // Newest first, so the first container metric seen per instance is its
    // latest.
    let mut latest: BTreeMap<i32, dropsonde::Envelope> = BTreeMap::new();
    for e in gauges.iter().flat_map(dropsonde::to_v1) {
        if e.event_type() != EventType::ContainerMetric {
            continue;
        }
        let index = e
            .container_metric
            .as_ref()
            .map(|m| m.instance_index)
            .unwrap_or_default();
        latest.entry(index).or_insert(e);
    }
    let parts: Vec<Vec<u8>> = latest.values().map(|e| e.encode_to_vec()).collect();
    multipart_response(&parts)
}

/// A boundary that occurs in none of `parts`: 64 hex digits from std's
/// randomly seeded hasher, drawn again in the (astronomically unlikely)
/// event of a clash.
fn boundary(parts: &[Vec<u8>]) -> String {
    loop {
        let state = std::collections::hash_map::RandomState::new();
        let mut b = String::with_capacity(64);
        for i in 0..4u8 {
            let mut h = state.build_hasher();
            h.write_u8(i);
            b.push_str(&format!("{:016x}", h.finish()));
        }
        let needle = b.as_bytes();
        if !parts
            .iter()
            .any(|p| p.windows(needle.len()).any(|w| w == needle))
        {
            return b;
        }
    }
}

/// `parts` as Go's `mime/multipart` writer lays them out (what noaa and the
/// CF clients parse): no part headers, CRLF delimiters.
fn multipart_body(boundary: &str, parts: &[Vec<u8>]) -> Vec<u8> {
    let mut body = Vec::with_capacity(parts.iter().map(|p| p.len() + boundary.len() + 8).sum());
    for (i, part) in parts.iter().enumerate() {
        if i > 0 {
            body.extend_from_slice(b"\r\n");
        }
        body.extend_from_slice(format!("--{boundary}\r\n\r\n").as_bytes());
        body.extend_from_slice(part);
    }
    if !parts.is_empty() {
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    body
}

fn multipart_response(parts: &[Vec<u8>]) -> Response {
    let boundary = boundary(parts);
    let body = multipart_body(&boundary, parts);
    (
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            format!("multipart/x-protobuf; boundary={boundary}"),
        )],
        Body::from(body),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multipart_body_matches_gos_layout() {
        let body = multipart_body("B", &[b"one".to_vec(), b"two".to_vec()]);
        assert_eq!(body, b"--B\r\n\r\none\r\n--B\r\n\r\ntwo\r\n--B--\r\n");
        assert_eq!(multipart_body("B", &[]), b"--B--\r\n");
    }

    #[test]
    fn boundaries_are_random_and_avoid_the_parts() {
        let a = boundary(&[]);
        assert_eq!(a.len(), 64);
        assert_ne!(a, boundary(&[]));
    }

    #[test]
    fn the_token_comes_from_the_header_or_the_cookie() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            "x=1; authorization=bearer%20abc"
                .parse()
                .unwrap_or_else(|_| unreachable!()),
        );
        assert_eq!(auth_token(&h).as_deref(), Some("bearer abc"));
        h.insert(
            header::AUTHORIZATION,
            "bearer def".parse().unwrap_or_else(|_| unreachable!()),
        );
        assert_eq!(auth_token(&h).as_deref(), Some("bearer def"));
        assert_eq!(auth_token(&HeaderMap::new()), None);
    }
}
