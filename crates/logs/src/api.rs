//! log-cache's HTTP read API, with routes relative to its mount point (the
//! binary nests it under `/log-cache`): `GET /api/v1/info`,
//! `GET /api/v1/read/{source_id}`, `GET /api/v1/meta`.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use regex::Regex;

use crate::envelope::EnvelopeType;
use crate::store::{LogStore, ReadQuery};
use crate::wire::{InfoResponse, MetaResponse, ReadResponse};

/// The log-cache version `/api/v1/info` reports (the CLI checks it is recent).
pub const LOG_CACHE_VERSION: &str = "3.0.0";
/// Envelopes returned when `limit` is not given.
const DEFAULT_LIMIT: usize = 100;
/// The largest `limit` log-cache accepts.
const MAX_LIMIT: usize = 1000;

/// Why a read was refused; its status is the HTTP status returned
/// (401 no or bad token, 403 not allowed, 404 no such source for this user).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{status}: {message}")]
pub struct ReadDenied {
    /// HTTP status: 401, 403 or 404.
    pub status: u16,
    /// Said to the client.
    pub message: String,
}

impl ReadDenied {
    /// 401: no token, or one that does not verify.
    pub fn unauthenticated(message: impl Into<String>) -> Self {
        Self {
            status: 401,
            message: message.into(),
        }
    }

    /// 403: a valid token without the right to read.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self {
            status: 403,
            message: message.into(),
        }
    }

    /// 404: the source does not exist or is not visible to this user.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self {
            status: 404,
            message: message.into(),
        }
    }
}

/// Who may read: the binary implements this over the token verifier (no
/// dependency on the auth crate here).
pub trait ReadAuthorizer: Send + Sync {
    /// Allows or refuses reading `source_id` with this `Authorization`
    /// header value (`None` when the request had none).
    fn authorize(&self, authorization: Option<&str>, source_id: &str) -> Result<(), ReadDenied>;
}

#[derive(Clone)]
struct AppState {
    store: Arc<LogStore>,
    authorizer: Arc<dyn ReadAuthorizer>,
}

/// log-cache's read API, routes relative to its mount point.
pub fn log_cache_router(store: Arc<LogStore>, authorizer: Arc<dyn ReadAuthorizer>) -> Router {
    Router::new()
        .route("/api/v1/info", get(info))
        .route("/api/v1/read/{*source_id}", get(read))
        .route("/api/v1/meta", get(meta))
        .with_state(AppState { store, authorizer })
}

/// An error answer in grpc-gateway's shape, which log-cache clients expect.
#[derive(Debug)]
struct ApiError {
    status: StatusCode,
    message: String,
}

impl ApiError {
    fn bad_request(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
        }
    }
}

impl From<ReadDenied> for ApiError {
    fn from(denied: ReadDenied) -> Self {
        Self {
            status: StatusCode::from_u16(denied.status).unwrap_or(StatusCode::FORBIDDEN),
            message: denied.message,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        // gRPC codes as grpc-gateway reports them beside the HTTP status.
        let code = match self.status {
            StatusCode::BAD_REQUEST => 3,
            StatusCode::UNAUTHORIZED => 16,
            StatusCode::FORBIDDEN => 7,
            StatusCode::NOT_FOUND => 5,
            _ => 2,
        };
        let body = serde_json::json!({
            "error": self.message,
            "code": code,
            "message": self.message,
        });
        (self.status, Json(body)).into_response()
    }
}

async fn info(State(state): State<AppState>) -> Json<InfoResponse> {
    Json(InfoResponse {
        version: LOG_CACHE_VERSION.to_owned(),
        vm_uptime: state.store.uptime().as_secs().to_string(),
    })
}

fn authorization(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
}

async fn read(
    State(state): State<AppState>,
    Path(source_id): Path<String>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
) -> Result<Json<ReadResponse>, ApiError> {
    state
        .authorizer
        .authorize(authorization(&headers), &source_id)?;
    let query = parse_read_query(raw.as_deref().unwrap_or(""))?;
    let envelopes = state.store.read(&source_id, &query);
    Ok(Json(ReadResponse::from_envelopes(&envelopes)))
}

async fn meta(
    State(state): State<AppState>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
) -> Result<Json<MetaResponse>, ApiError> {
    // `local_only` asks one node of a cluster for its own sources; Ingot's
    // store is a single node, so every answer is local. Still validated.
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(raw.as_deref().unwrap_or(""))
        .map_err(|err| ApiError::bad_request(format!("malformed query string: {err}")))?;
    for (name, value) in &pairs {
        if name == "local_only" || name == "localOnly" {
            parse_bool(name, value)?;
        }
    }
    let auth = authorization(&headers);
    if auth.is_none() {
        return Err(ReadDenied::unauthenticated("missing Authorization header").into());
    }
    let mut meta = BTreeMap::new();
    for (source_id, info) in state.store.meta() {
        match state.authorizer.authorize(auth, &source_id) {
            Ok(()) => {
                meta.insert(source_id, info.into());
            }
            // A bad token is bad for every source: say so rather than
            // answering with an empty list.
            Err(denied) if denied.status == 401 => return Err(denied.into()),
            Err(_) => {}
        }
    }
    Ok(Json(MetaResponse { meta }))
}

fn parse_int(name: &str, value: &str) -> Result<i64, ApiError> {
    value
        .trim()
        .parse()
        .map_err(|_| ApiError::bad_request(format!("{name} must be an integer, got {value:?}")))
}

fn parse_bool(name: &str, value: &str) -> Result<bool, ApiError> {
    match value.trim().to_ascii_lowercase().as_str() {
        "true" | "t" | "1" => Ok(true),
        "false" | "f" | "0" | "" => Ok(false),
        _ => Err(ApiError::bad_request(format!(
            "{name} must be true or false, got {value:?}"
        ))),
    }
}

/// One `envelope_types` value: a name, or its number in log-cache's
/// `EnvelopeType` enum (grpc-gateway accepts either; 0 is `ANY`).
fn parse_envelope_type(
    value: &str,
) -> Result<Option<EnvelopeType>, crate::envelope::UnknownEnvelopeType> {
    match value.trim() {
        "0" => Ok(None),
        "1" => Ok(Some(EnvelopeType::Log)),
        "2" => Ok(Some(EnvelopeType::Counter)),
        "3" => Ok(Some(EnvelopeType::Gauge)),
        "4" => Ok(Some(EnvelopeType::Timer)),
        "5" => Ok(Some(EnvelopeType::Event)),
        other => EnvelopeType::parse(other),
    }
}

/// log-cache's read parameters; unknown parameters are ignored as
/// grpc-gateway ignores them.
fn parse_read_query(raw: &str) -> Result<ReadQuery, ApiError> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(raw)
        .map_err(|err| ApiError::bad_request(format!("malformed query string: {err}")))?;
    let mut query = ReadQuery {
        limit: DEFAULT_LIMIT,
        ..ReadQuery::default()
    };
    let mut any = false;
    for (name, value) in &pairs {
        match name.as_str() {
            "start_time" | "startTime" => query.start_time = Some(parse_int(name, value)?),
            "end_time" | "endTime" => query.end_time = Some(parse_int(name, value)?),
            "limit" => {
                let limit = parse_int(name, value)?;
                if limit < 0 {
                    return Err(ApiError::bad_request(format!(
                        "limit must not be negative, got {limit}"
                    )));
                }
                // Zero is protobuf's "unset".
                query.limit = match usize::try_from(limit) {
                    Ok(0) => DEFAULT_LIMIT,
                    Ok(n) if n <= MAX_LIMIT => n,
                    _ => {
                        return Err(ApiError::bad_request(format!(
                            "limit must be {MAX_LIMIT} or less, got {limit}"
                        )))
                    }
                };
            }
            "descending" => query.descending = parse_bool(name, value)?,
            "envelope_types" | "envelopeTypes" | "envelope_type" | "envelopeType" => {
                for part in value.split(',').filter(|p| !p.trim().is_empty()) {
                    match parse_envelope_type(part) {
                        Ok(Some(t)) => {
                            if !query.envelope_types.contains(&t) {
                                query.envelope_types.push(t);
                            }
                        }
                        Ok(None) => any = true,
                        Err(err) => return Err(ApiError::bad_request(err.to_string())),
                    }
                }
            }
            "name_filter" | "nameFilter" if !value.is_empty() => {
                let re = Regex::new(value).map_err(|err| {
                    ApiError::bad_request(format!("name_filter is not a valid regex: {err}"))
                })?;
                query.name_filter = Some(re);
            }
            _ => {}
        }
    }
    if any {
        query.envelope_types.clear();
    }
    if let (Some(start), Some(end)) = (query.start_time, query.end_time) {
        if end < start {
            return Err(ApiError::bad_request(format!(
                "end_time ({end}) must not be before start_time ({start})"
            )));
        }
    }
    Ok(query)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_parsing_accepts_repeated_and_comma_separated_types() {
        let q = parse_read_query("envelope_types=LOG&envelope_types=gauge,COUNTER&limit=5")
            .map_err(|e| e.message);
        let q = q.as_ref().map(|q| (q.envelope_types.clone(), q.limit));
        assert_eq!(
            q,
            Ok((
                vec![
                    EnvelopeType::Log,
                    EnvelopeType::Gauge,
                    EnvelopeType::Counter
                ],
                5
            ))
        );
    }

    #[test]
    fn any_type_means_no_filter_and_defaults_apply() {
        let q = parse_read_query("envelope_types=LOG,ANY").map_err(|e| e.message);
        assert_eq!(
            q.as_ref()
                .map(|q| (q.envelope_types.is_empty(), q.limit, q.descending)),
            Ok((true, 100, false))
        );
    }

    #[test]
    fn bad_parameters_are_rejected() {
        for bad in [
            "limit=1001",
            "limit=-1",
            "limit=ten",
            "start_time=x",
            "descending=maybe",
            "envelope_types=METRIC",
            "name_filter=(",
            "start_time=10&end_time=5",
        ] {
            let r = parse_read_query(bad);
            assert!(
                matches!(&r, Err(e) if e.status == StatusCode::BAD_REQUEST),
                "{bad} was accepted"
            );
        }
    }
}
