//! The HTTP surface, relative to its mount point (`/uaa`): the token
//! endpoint, the signing keys, the login/info document, and (from `scim.rs`
//! and `codes.rs`) users and one-time codes. Errors here are UAA's JSON
//! (`{"error","error_description"}`, plus `message` on SCIM endpoints),
//! never the CF v3 envelope.

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

use crate::store::{
    GRANT_AUTHORIZATION_CODE, GRANT_CLIENT_CREDENTIALS, GRANT_PASSWORD, GRANT_REFRESH,
};
use crate::token::{Claims, TokenError};
use crate::{codes, grants, password, scim, AuthError, Inner};

/// Version reported in `/login` and `/info`. Clients such as the `cf` CLI
/// gate features on UAA's version, so Ingot reports the UAA release whose
/// behaviour it follows rather than its own.
pub(crate) const UAA_COMPATIBLE_VERSION: &str = "77.0.0";

pub(crate) fn router(inner: Arc<Inner>) -> Router {
    Router::new()
        .route("/oauth/token", post(token))
        .route("/oauth/authorize", get(codes::authorize))
        .route("/Users", post(scim::create_user).get(scim::list_users))
        .route("/Users/{id}", get(scim::get_user).delete(scim::delete_user))
        .route(
            "/Users/{id}/password",
            axum::routing::put(scim::change_password),
        )
        .route("/ids/Users", get(scim::ids_users))
        .route("/userinfo", get(scim::userinfo))
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
    let known = [
        GRANT_PASSWORD,
        GRANT_REFRESH,
        GRANT_CLIENT_CREDENTIALS,
        GRANT_AUTHORIZATION_CODE,
    ];
    if !known.contains(&grant_type.as_str()) {
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
    match grant_type.as_str() {
        GRANT_PASSWORD => grants::password(inner, &client_id, &client, &form).await,
        GRANT_REFRESH => grants::refresh(inner, &client_id, &client, &form).await,
        GRANT_CLIENT_CREDENTIALS => {
            grants::client_credentials(inner, &client_id, &client, &form).await
        }
        _ => grants::authorization_code(inner, &client_id, &client, &form).await,
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

/// An error of the user, code and client endpoints, in UAA's JSON: OAuth's
/// `{"error","error_description"}`, and on SCIM endpoints also `message`
/// (UAA's `ExceptionReport`), plus any extra fields (`scope` of an
/// `insufficient_scope`, `origin` of a duplicate user).
#[derive(Debug)]
pub(crate) struct UaaError {
    pub(crate) status: StatusCode,
    pub(crate) error: &'static str,
    description: String,
    scim: bool,
    extra: Vec<(&'static str, String)>,
}

impl UaaError {
    /// An OAuth-style error (no `message`).
    pub(crate) fn oauth(
        status: StatusCode,
        error: &'static str,
        description: impl Into<String>,
    ) -> Self {
        UaaError {
            status,
            error,
            description: description.into(),
            scim: false,
            extra: Vec::new(),
        }
    }

    /// A SCIM endpoint's error (with `message`).
    pub(crate) fn scim(
        status: StatusCode,
        error: &'static str,
        message: impl Into<String>,
    ) -> Self {
        UaaError {
            scim: true,
            ..Self::oauth(status, error, message)
        }
    }

    pub(crate) fn with(mut self, key: &'static str, value: impl Into<String>) -> Self {
        self.extra.push((key, value.into()));
        self
    }

    pub(crate) fn invalid_token(description: impl Into<String>) -> Self {
        Self::oauth(StatusCode::UNAUTHORIZED, "invalid_token", description)
    }

    /// 403 for a token lacking every one of `any_of`.
    pub(crate) fn insufficient_scope(any_of: &[&str]) -> Self {
        Self::oauth(
            StatusCode::FORBIDDEN,
            "insufficient_scope",
            "Insufficient scope for this resource",
        )
        .with("scope", any_of.join(" "))
    }

    pub(crate) fn server_error() -> Self {
        Self::oauth(
            StatusCode::INTERNAL_SERVER_ERROR,
            "server_error",
            "Internal error of the token server; see its log",
        )
    }
}

impl From<AuthError> for UaaError {
    fn from(e: AuthError) -> Self {
        tracing::error!(error = %e, "auth endpoint failed");
        Self::server_error()
    }
}

impl IntoResponse for UaaError {
    fn into_response(self) -> Response {
        let mut body = serde_json::Map::new();
        body.insert("error".into(), self.error.into());
        body.insert("error_description".into(), self.description.clone().into());
        if self.scim {
            body.insert("message".into(), self.description.into());
        }
        for (key, value) in self.extra {
            body.insert(key.into(), value.into());
        }
        let mut response = (self.status, Json(serde_json::Value::Object(body))).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            let challenge = format!("Bearer realm=\"UAA\", error=\"{}\"", self.error);
            if let Ok(value) = HeaderValue::from_str(&challenge) {
                response
                    .headers_mut()
                    .insert(header::WWW_AUTHENTICATE, value);
            }
        }
        response
    }
}

/// The verified claims of the request's bearer token. A user token whose
/// user has been deleted is refused, as UAA refuses it.
pub(crate) async fn bearer_claims(inner: &Inner, headers: &HeaderMap) -> Result<Claims, UaaError> {
    let value = headers
        .get(header::AUTHORIZATION)
        .map(|v| v.to_str().unwrap_or("invalid"));
    let claims = inner.verifier.verify(value).map_err(|e| match e {
        TokenError::Missing => UaaError::oauth(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "Full authentication is required to access this resource",
        ),
        TokenError::Expired => UaaError::invalid_token("The token expired"),
        TokenError::Invalid(reason) => UaaError::invalid_token(format!("Invalid token: {reason}")),
    })?;
    if !claims.is_client() && inner.store.user_by_id(&claims.user_id).await?.is_none() {
        return Err(UaaError::invalid_token(
            "Invalid token: its user no longer exists",
        ));
    }
    Ok(claims)
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
