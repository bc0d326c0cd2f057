//! One-time authorization codes: `GET /oauth/authorize` as the `cf` CLI calls
//! it for `cf ssh-code` (a bearer token instead of a browser session, answered
//! with a 302 whose `Location` carries `code=`), and their redemption, in
//! process ([`crate::AuthServer::redeem_code`]) or through the
//! `authorization_code` grant of the token endpoint.
//!
//! A code is stored only as its SHA-256, is removed by the statement that
//! reads it (so it works once, even under concurrent redemptions), and
//! expires after `AuthConfig::authorization_code_ttl` (UAA's default: 5
//! minutes).

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use rand::distributions::{Alphanumeric, DistString};
use sha2::{Digest, Sha256};

use crate::http::{bearer_claims, UaaError};
use crate::store::{StoredCode, GRANT_AUTHORIZATION_CODE};
use crate::{AuthError, Inner};

/// Length of a code, as UAA's (alphanumeric, about 190 bits).
const CODE_LENGTH: usize = 32;

/// What a redeemed code stands for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CodeGrant {
    /// The guid of the user who asked for the code.
    pub user_id: String,
    /// That user's login name.
    pub user_name: String,
    /// The client the code was issued to (e.g. "ssh-proxy").
    pub client_id: String,
    /// The scopes the code grants: the client's scopes ∩ the user's groups.
    pub scopes: Vec<String>,
}

impl CodeGrant {
    /// Whether the code grants `scope`.
    pub fn has_scope(&self, scope: &str) -> bool {
        self.scopes.iter().any(|s| s == scope)
    }
}

/// Why a code was not redeemed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// Never issued, or already used.
    Unknown,
    /// Its lifetime has passed.
    Expired,
    /// Issued to another client.
    WrongClient,
    /// Its user was deleted since.
    UserGone,
}

impl Refusal {
    pub(crate) fn label(self) -> &'static str {
        match self {
            Refusal::Unknown => "unknown",
            Refusal::Expired => "expired",
            Refusal::WrongClient => "wrong_client",
            Refusal::UserGone => "user_gone",
        }
    }
}

pub(crate) fn hash(code: &str) -> String {
    Sha256::digest(code.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Consumes `code` and says what it stands for, or why it is refused.
pub(crate) async fn redeem(
    inner: &Inner,
    code: &str,
    client_id: &str,
) -> Result<Result<CodeGrant, Refusal>, AuthError> {
    let outcome = redeem_inner(inner, code, client_id).await?;
    inner.metrics.code_redeemed(match &outcome {
        Ok(_) => "ok",
        Err(refusal) => refusal.label(),
    });
    Ok(outcome)
}

async fn redeem_inner(
    inner: &Inner,
    code: &str,
    client_id: &str,
) -> Result<Result<CodeGrant, Refusal>, AuthError> {
    let Some(stored) = inner.store.take_code(&hash(code)).await? else {
        return Ok(Err(Refusal::Unknown));
    };
    if chrono::Utc::now().timestamp_millis() >= stored.expires_at_ms {
        return Ok(Err(Refusal::Expired));
    }
    if stored.client_id != client_id {
        return Ok(Err(Refusal::WrongClient));
    }
    let Some(user) = inner.store.user_by_id(&stored.user_id).await? else {
        return Ok(Err(Refusal::UserGone));
    };
    // Groups removed since the code was issued are not granted.
    let scopes = stored
        .scopes
        .into_iter()
        .filter(|s| user.groups.contains(s))
        .collect();
    Ok(Ok(CodeGrant {
        user_id: user.id,
        user_name: user.username,
        client_id: stored.client_id,
        scopes,
    }))
}

/// `GET /oauth/authorize?response_type=code&client_id=…[&redirect_uri=…]
/// [&scope=…][&state=…]` with `Authorization: bearer <token>` (which must
/// carry `uaa.user`) → 302 to the client's redirect URI with `code=`.
pub(crate) async fn authorize(
    State(inner): State<Arc<Inner>>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    match authorize_inner(&inner, &headers, &query).await {
        Ok(location) => {
            inner.metrics.code_issued();
            match HeaderValue::from_str(&location) {
                Ok(value) => (StatusCode::FOUND, [(header::LOCATION, value)]).into_response(),
                Err(_) => UaaError::server_error().into_response(),
            }
        }
        Err(e) => e.into_response(),
    }
}

async fn authorize_inner(
    inner: &Inner,
    headers: &HeaderMap,
    query: &HashMap<String, String>,
) -> Result<String, UaaError> {
    let claims = bearer_claims(inner, headers).await?;
    if !claims.has_scope("uaa.user") || claims.is_client() {
        return Err(UaaError::insufficient_scope(&["uaa.user"]));
    }
    match query.get("response_type").map(String::as_str) {
        Some("code") => {}
        Some(other) => {
            return Err(UaaError::oauth(
                StatusCode::BAD_REQUEST,
                "unsupported_response_type",
                format!("Unsupported response types: [{other}]"),
            ))
        }
        None => {
            return Err(UaaError::oauth(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "Missing response_type parameter",
            ))
        }
    }
    let Some(client_id) = query.get("client_id") else {
        return Err(UaaError::oauth(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "A client_id must be supplied.",
        ));
    };
    let Some(client) = inner.store.client(client_id).await? else {
        return Err(UaaError::oauth(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            format!("No client with requested id: {client_id}"),
        ));
    };
    if !client
        .grant_types
        .iter()
        .any(|g| g == GRANT_AUTHORIZATION_CODE)
    {
        return Err(UaaError::oauth(
            StatusCode::BAD_REQUEST,
            "unauthorized_client",
            "Unauthorized grant type: authorization_code",
        ));
    }
    let redirect = match query.get("redirect_uri") {
        Some(given) if given == &client.redirect_uri => given.clone(),
        None if !client.redirect_uri.is_empty() => client.redirect_uri.clone(),
        _ => {
            return Err(UaaError::oauth(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "Invalid redirect_uri: it does not match the client's registered redirect URI",
            ))
        }
    };
    let Some(user) = inner.store.user_by_id(&claims.user_id).await? else {
        return Err(UaaError::invalid_token(
            "The user of this token no longer exists",
        ));
    };
    let allowed: Vec<String> = client
        .scopes
        .iter()
        .filter(|s| user.groups.contains(s))
        .cloned()
        .collect();
    let scopes = match query.get("scope").filter(|s| !s.trim().is_empty()) {
        None => allowed,
        Some(requested) => {
            let mut scopes = Vec::new();
            for scope in requested.split([' ', ',']).filter(|s| !s.is_empty()) {
                if !allowed.iter().any(|a| a == scope) {
                    return Err(UaaError::oauth(
                        StatusCode::BAD_REQUEST,
                        "invalid_scope",
                        format!("Invalid scope: {scope}"),
                    ));
                }
                scopes.push(scope.to_owned());
            }
            scopes
        }
    };
    let code = Alphanumeric.sample_string(&mut rand::thread_rng(), CODE_LENGTH);
    let ttl = i64::try_from(inner.config.authorization_code_ttl.as_millis()).unwrap_or(i64::MAX);
    inner
        .store
        .insert_code(
            &hash(&code),
            &StoredCode {
                client_id: client_id.clone(),
                user_id: user.id.clone(),
                scopes,
                expires_at_ms: chrono::Utc::now().timestamp_millis().saturating_add(ttl),
            },
        )
        .await?;
    let mut params = vec![("code", code.as_str())];
    if let Some(state) = query.get("state") {
        params.push(("state", state.as_str()));
    }
    let encoded = serde_urlencoded::to_string(&params).map_err(|_| UaaError::server_error())?;
    let separator = if redirect.contains('?') { '&' } else { '?' };
    Ok(format!("{redirect}{separator}{encoded}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_stored_by_a_stable_hash() {
        assert_eq!(hash("abc"), hash("abc"));
        assert_ne!(hash("abc"), hash("abd"));
        assert_eq!(hash("abc").len(), 64);
    }
}
