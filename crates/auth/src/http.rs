//! The HTTP surface, relative to its mount point (`/uaa`): the token
//! endpoint, the signing keys, and the login/info document. Errors here are
//! OAuth2 JSON (`{"error","error_description"}`), never the CF v3 envelope.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde_json::json;

use crate::store::{GRANT_PASSWORD, GRANT_REFRESH};
use crate::{grants, password, AuthError, Inner};

/// Version reported in `/login` and `/info`. Clients such as the `cf` CLI
/// gate features on UAA's version, so Ingot reports the UAA release whose
/// behaviour it follows rather than its own.
pub(crate) const UAA_COMPATIBLE_VERSION: &str = "77.0.0";

pub(crate) fn router(inner: Arc<Inner>) -> Router {
    Router::new()
        .route("/oauth/token", post(token))
        .route("/token_keys", get(token_keys))
        .route("/token_key", get(token_key))
        .route("/login", get(login))
        .route("/info", get(login))
        .with_state(inner)
}

/// An OAuth2 error response.
#[derive(Debug)]
pub(crate) struct OAuthError {
    status: StatusCode,
    error: &'static str,
    description: String,
}

impl OAuthError {
    pub(crate) fn new(
        status: StatusCode,
        error: &'static str,
        description: impl Into<String>,
    ) -> Self {
        OAuthError {
            status,
            error,
            description: description.into(),
        }
    }

    pub(crate) fn bad_credentials() -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", "Bad credentials")
    }

    pub(crate) fn invalid_request(description: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", description)
    }

    pub(crate) fn invalid_token(description: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "invalid_token", description)
    }
}

impl From<AuthError> for OAuthError {
    fn from(e: AuthError) -> Self {
        tracing::error!(error = %e, "token endpoint failed");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "server_error",
            "Internal error of the token server; see its log",
        )
    }
}

impl IntoResponse for OAuthError {
    fn into_response(self) -> Response {
        let body = json!({"error": self.error, "error_description": self.description});
        (self.status, no_store(), Json(body)).into_response()
    }
}

/// Token responses must not be cached (RFC 6749 section 5.1).
fn no_store() -> [(header::HeaderName, HeaderValue); 2] {
    [
        (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
        (header::PRAGMA, HeaderValue::from_static("no-cache")),
    ]
}

async fn token(State(inner): State<Arc<Inner>>, headers: HeaderMap, body: Bytes) -> Response {
    let grant_type = parse_form(&body)
        .ok()
        .and_then(|f| f.get("grant_type").cloned())
        .unwrap_or_default();
    match token_inner(&inner, &headers, &body).await {
        Ok(response) => {
            inner.metrics.issued(&grant_type);
            (StatusCode::OK, no_store(), Json(response)).into_response()
        }
        Err(e) => {
            inner.metrics.rejected(&grant_type, e.error);
            e.into_response()
        }
    }
}

async fn token_inner(
    inner: &Inner,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<grants::TokenResponse, OAuthError> {
    let form = parse_form(body)?;
    let (client_id, client) = authenticate_client(inner, headers, &form).await?;
    let grant_type = form
        .get("grant_type")
        .ok_or_else(|| OAuthError::invalid_request("Missing grant_type parameter"))?;
    if grant_type != GRANT_PASSWORD && grant_type != GRANT_REFRESH {
        return Err(OAuthError::new(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            format!("Unsupported grant type: {grant_type}"),
        ));
    }
    if !client.grant_types.contains(grant_type) {
        return Err(OAuthError::new(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            format!("Unauthorized grant type: {grant_type}"),
        ));
    }
    if grant_type == GRANT_PASSWORD {
        grants::password(inner, &client_id, &client, &form).await
    } else {
        grants::refresh(inner, &client_id, &client, &form).await
    }
}

/// The form body as a map; a repeated parameter is ambiguous, so an error.
fn parse_form(body: &[u8]) -> Result<HashMap<String, String>, OAuthError> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_bytes(body)
        .map_err(|e| OAuthError::invalid_request(format!("Malformed form body: {e}")))?;
    let mut form = HashMap::with_capacity(pairs.len());
    for (key, value) in pairs {
        if form.contains_key(&key) {
            return Err(OAuthError::invalid_request(format!(
                "Parameter {key} given more than once"
            )));
        }
        form.insert(key, value);
    }
    Ok(form)
}

/// The client from HTTP Basic (`cf:`), or else from the `client_id` and
/// `client_secret` form fields; its secret is checked.
async fn authenticate_client(
    inner: &Inner,
    headers: &HeaderMap,
    form: &HashMap<String, String>,
) -> Result<(String, crate::store::Client), OAuthError> {
    let bad_client =
        || OAuthError::new(StatusCode::UNAUTHORIZED, "unauthorized", "Bad credentials");
    let basic = match headers.get(header::AUTHORIZATION) {
        Some(value) => Some(parse_basic(value).ok_or_else(bad_client)?),
        None => None,
    };
    let (client_id, secret) = match basic {
        Some((id, secret)) => {
            if form.get("client_id").is_some_and(|f| f != &id) {
                return Err(bad_client());
            }
            (id, secret)
        }
        None => match form.get("client_id") {
            Some(id) => (
                id.clone(),
                form.get("client_secret").cloned().unwrap_or_default(),
            ),
            None => {
                return Err(OAuthError::new(
                    StatusCode::UNAUTHORIZED,
                    "unauthorized",
                    "Full authentication is required to access this resource",
                ))
            }
        },
    };
    let client = inner
        .store
        .client(&client_id)
        .await?
        .ok_or_else(bad_client)?;
    let secret_ok = match &client.secret_hash {
        None => secret.is_empty(),
        Some(hash) => password::verify(Some(hash.clone()), &secret).await,
    };
    if !secret_ok {
        return Err(bad_client());
    }
    Ok((client_id, client))
}

fn parse_basic(value: &HeaderValue) -> Option<(String, String)> {
    let value = value.to_str().ok()?.trim();
    let (scheme, encoded) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = String::from_utf8(STANDARD.decode(encoded.trim()).ok()?).ok()?;
    let (id, secret) = decoded.split_once(':')?;
    Some((id.to_owned(), secret.to_owned()))
}

async fn token_keys(State(inner): State<Arc<Inner>>) -> Response {
    Json(json!({"keys": [inner.signer.public().jwk]})).into_response()
}

async fn token_key(State(inner): State<Arc<Inner>>) -> Response {
    Json(&inner.signer.public().jwk).into_response()
}

async fn login(State(inner): State<Arc<Inner>>) -> Response {
    let base = inner.config.issuer.trim_end_matches("/oauth/token");
    Json(json!({
        "app": {"version": UAA_COMPATIBLE_VERSION},
        "links": {
            "uaa": base,
            "login": base,
            "passwd": "/forgot_password",
            "register": "/create_account",
        },
        "zone_name": "uaa",
        "entityID": "ingot",
        "commit_id": env!("CARGO_PKG_VERSION"),
        "idpDefinitions": {},
        "prompts": {
            "username": ["text", "Email"],
            "password": ["password", "Password"],
        },
        "timestamp": chrono::Utc::now().format("%Y-%m-%dT%H:%M:%S%z").to_string(),
    }))
    .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_auth_parses_cf_with_empty_secret() {
        let header = HeaderValue::from_static("Basic Y2Y6");
        assert_eq!(parse_basic(&header), Some(("cf".into(), String::new())));
        let header = HeaderValue::from_static("basic Y2Y6c2VjcmV0");
        assert_eq!(parse_basic(&header), Some(("cf".into(), "secret".into())));
        assert_eq!(parse_basic(&HeaderValue::from_static("Bearer Y2Y6")), None);
        assert_eq!(parse_basic(&HeaderValue::from_static("Basic !!!")), None);
        // No colon: not "id:secret".
        assert_eq!(parse_basic(&HeaderValue::from_static("Basic Y2Y=")), None);
    }

    #[test]
    fn form_rejects_repeated_parameters() {
        assert!(parse_form(b"grant_type=password&username=a").is_ok());
        assert!(parse_form(b"username=a&username=b").is_err());
    }
}
