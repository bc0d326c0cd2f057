//! The grants of the token endpoint — `password`, `refresh_token`,
//! `client_credentials` and `authorization_code` — and the minting of the
//! tokens they answer with.

use std::collections::HashMap;

use axum::http::StatusCode;
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::http::OAuthError;
use crate::store::{
    Client, User, CF_CLIENT, GRANT_AUTHORIZATION_CODE, GRANT_CLIENT_CREDENTIALS, GRANT_PASSWORD,
    GRANT_REFRESH,
};
use crate::token::{audience, refresh_use, Claims, RefreshClaims, TokenError};
use crate::{password, AuthError, Inner};

/// The token endpoint's success body.
#[derive(Debug, Serialize)]
pub(crate) struct TokenResponse {
    pub access_token: String,
    pub token_type: &'static str,
    /// Absent for `client_credentials`, and for clients without the
    /// `refresh_token` grant, as in UAA.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    pub expires_in: i64,
    pub scope: String,
    pub jti: String,
}

/// `grant_type=password`: checks the user's password and issues a new pair.
pub(crate) async fn password(
    inner: &Inner,
    client_id: &str,
    client: &Client,
    form: &HashMap<String, String>,
) -> Result<TokenResponse, OAuthError> {
    let (Some(username), Some(pass)) = (form.get("username"), form.get("password")) else {
        return Err(OAuthError::invalid_request(
            "Missing username or password parameter",
        ));
    };
    let user = inner.store.user_by_name(username).await?;
    let hash = user.as_ref().map(|u| u.password_hash.clone());
    let user = match user {
        Some(user) if password::verify(hash, pass).await => user,
        // Same answer for unknown user and wrong password: nothing to probe.
        Some(_) => return Err(OAuthError::bad_credentials()),
        None => {
            password::verify(None, pass).await;
            return Err(OAuthError::bad_credentials());
        }
    };
    let allowed = allowed_scopes(client, &user);
    let scopes = requested_scopes(form, &allowed)?;
    let now = chrono::Utc::now().timestamp();
    issue(
        inner,
        &user,
        client_id,
        scopes,
        GRANT_PASSWORD,
        now,
        Refresh::New,
    )
}

/// `grant_type=client_credentials`: a token for the client itself, carrying
/// its authorities (never `uaa.none`), without a refresh token.
pub(crate) async fn client_credentials(
    inner: &Inner,
    client_id: &str,
    client: &Client,
    form: &HashMap<String, String>,
) -> Result<TokenResponse, OAuthError> {
    let allowed: Vec<String> = client
        .authorities
        .iter()
        .filter(|a| a.as_str() != "uaa.none")
        .cloned()
        .collect();
    let scopes = requested_scopes(form, &allowed)?;
    let now = chrono::Utc::now().timestamp();
    let access_ttl = seconds(inner.config.access_token_ttl);
    let claims = Claims {
        jti: uuid::Uuid::new_v4().simple().to_string(),
        sub: client_id.to_owned(),
        aud: audience(client_id, &scopes),
        authorities: scopes.clone(),
        scope: scopes,
        client_id: client_id.to_owned(),
        cid: client_id.to_owned(),
        azp: client_id.to_owned(),
        grant_type: GRANT_CLIENT_CREDENTIALS.to_owned(),
        user_id: String::new(),
        origin: String::new(),
        user_name: String::new(),
        email: String::new(),
        auth_time: 0,
        rev_sig: String::new(),
        iat: now,
        exp: now.saturating_add(access_ttl),
        iss: inner.config.issuer.clone(),
        zid: "uaa".to_owned(),
    };
    let access_token = inner.signer.sign(&claims).map_err(|reason| {
        OAuthError::from(AuthError::Signing {
            user: client_id.to_owned(),
            reason,
        })
    })?;
    Ok(TokenResponse {
        access_token,
        token_type: "bearer",
        refresh_token: None,
        expires_in: access_ttl,
        scope: claims.scope.join(" "),
        jti: claims.jti,
    })
}

/// `grant_type=authorization_code`: redeems a one-time code from
/// `/oauth/authorize` for the client it was issued to.
pub(crate) async fn authorization_code(
    inner: &Inner,
    client_id: &str,
    client: &Client,
    form: &HashMap<String, String>,
) -> Result<TokenResponse, OAuthError> {
    let Some(code) = form.get("code") else {
        return Err(OAuthError::invalid_request(
            "An authorization code must be supplied.",
        ));
    };
    if let Some(redirect) = form.get("redirect_uri") {
        if redirect != &client.redirect_uri {
            return Err(OAuthError::new(
                StatusCode::BAD_REQUEST,
                "invalid_grant",
                "Redirect URI mismatch.",
            ));
        }
    }
    let grant = match crate::codes::redeem(inner, code, client_id).await? {
        Ok(grant) => grant,
        Err(crate::codes::Refusal::Expired) => {
            return Err(OAuthError::new(
                StatusCode::BAD_REQUEST,
                "invalid_grant",
                "Authorization code expired",
            ))
        }
        Err(_) => {
            return Err(OAuthError::new(
                StatusCode::BAD_REQUEST,
                "invalid_grant",
                "Invalid authorization code",
            ))
        }
    };
    let Some(user) = inner.store.user_by_id(&grant.user_id).await? else {
        return Err(OAuthError::new(
            StatusCode::BAD_REQUEST,
            "invalid_grant",
            "Invalid authorization code",
        ));
    };
    let scopes = grant
        .scopes
        .into_iter()
        .filter(|s| client.scopes.contains(s))
        .collect();
    let refresh = if client.grant_types.iter().any(|g| g == GRANT_REFRESH) {
        Refresh::New
    } else {
        Refresh::None
    };
    let now = chrono::Utc::now().timestamp();
    issue(
        inner,
        &user,
        client_id,
        scopes,
        GRANT_AUTHORIZATION_CODE,
        now,
        refresh,
    )
}

/// `grant_type=refresh_token`: checks the refresh token, re-reads the user
/// (a deleted user, or one whose password changed, cannot refresh), issues a
/// new access token and hands back the same refresh token, as UAA does.
pub(crate) async fn refresh(
    inner: &Inner,
    client_id: &str,
    client: &Client,
    form: &HashMap<String, String>,
) -> Result<TokenResponse, OAuthError> {
    let Some(token) = form.get("refresh_token") else {
        return Err(OAuthError::invalid_request(
            "Missing refresh_token parameter",
        ));
    };
    let claims = inner.verifier.verify_refresh(token).map_err(|e| match e {
        TokenError::Expired => OAuthError::invalid_token("Invalid refresh token (expired)"),
        e => OAuthError::invalid_token(format!("Invalid refresh token: {e}")),
    })?;
    if claims.cid != client_id {
        return Err(OAuthError::invalid_token(
            "Invalid refresh token: issued to another client",
        ));
    }
    let Some(user) = inner.store.user_by_id(&claims.user_id).await? else {
        return Err(OAuthError::invalid_token(
            "Invalid refresh token: the user no longer exists",
        ));
    };
    if rev_sig(&user, client_id) != claims.rev_sig {
        return Err(OAuthError::invalid_token(
            "Invalid refresh token: revoked (the password changed)",
        ));
    }
    // Never more than was granted at login, nor than the user has now.
    let allowed: Vec<String> = allowed_scopes(client, &user)
        .into_iter()
        .filter(|s| claims.granted_scopes.contains(s))
        .collect();
    let scopes = requested_scopes(form, &allowed)?;
    issue(
        inner,
        &user,
        client_id,
        scopes,
        GRANT_REFRESH,
        claims.auth_time,
        Refresh::Reuse(token.clone()),
    )
}

/// An access token for `username` as the `cf` client would get it, without
/// a password and with any lifetime (negative: already expired).
pub(crate) async fn mint_access_token(
    inner: &Inner,
    username: &str,
    valid_for_secs: i64,
) -> Result<String, AuthError> {
    let user =
        inner
            .store
            .user_by_name(username)
            .await?
            .ok_or_else(|| AuthError::UserNotFound {
                username: username.to_owned(),
            })?;
    let client = inner
        .store
        .client(CF_CLIENT)
        .await?
        .ok_or_else(|| AuthError::Signing {
            user: username.to_owned(),
            reason: "the cf client is not registered".into(),
        })?;
    let now = chrono::Utc::now().timestamp();
    let claims = access_claims(
        inner,
        &user,
        CF_CLIENT,
        allowed_scopes(&client, &user),
        GRANT_PASSWORD,
        now,
        now,
        now.saturating_add(valid_for_secs),
    );
    inner
        .signer
        .sign(&claims)
        .map_err(|reason| AuthError::Signing {
            user: username.to_owned(),
            reason,
        })
}

/// The client's allowed scopes that the user is a member of, in the
/// client's order.
fn allowed_scopes(client: &Client, user: &User) -> Vec<String> {
    client
        .scopes
        .iter()
        .filter(|s| user.groups.contains(s))
        .cloned()
        .collect()
}

/// The `scope` parameter, if given, narrows the grant; asking for a scope
/// outside `allowed` is an error rather than silently dropped (as in UAA).
fn requested_scopes(
    form: &HashMap<String, String>,
    allowed: &[String],
) -> Result<Vec<String>, OAuthError> {
    let Some(requested) = form.get("scope").filter(|s| !s.trim().is_empty()) else {
        return Ok(allowed.to_vec());
    };
    let mut scopes: Vec<String> = Vec::new();
    for scope in requested.split_whitespace() {
        if !allowed.iter().any(|a| a == scope) {
            return Err(OAuthError::new(
                StatusCode::BAD_REQUEST,
                "invalid_scope",
                format!(
                    "Invalid scope: {scope}. Did you know that you can get default scopes \
                     by simply sending no value?"
                ),
            ));
        }
        if !scopes.iter().any(|s| s == scope) {
            scopes.push(scope.to_owned());
        }
    }
    Ok(scopes)
}

/// UAA's revocation signature: a short hash over what, when it changes,
/// must invalidate the user's refresh tokens.
fn rev_sig(user: &User, client_id: &str) -> String {
    let digest = Sha256::new()
        .chain_update(user.id.as_bytes())
        .chain_update([0])
        .chain_update(client_id.as_bytes())
        .chain_update([0])
        .chain_update(user.password_hash.as_bytes())
        .finalize();
    digest.iter().take(4).map(|b| format!("{b:02x}")).collect()
}

#[allow(clippy::too_many_arguments)]
fn access_claims(
    inner: &Inner,
    user: &User,
    client_id: &str,
    scopes: Vec<String>,
    grant_type: &str,
    auth_time: i64,
    iat: i64,
    exp: i64,
) -> Claims {
    Claims {
        jti: uuid::Uuid::new_v4().simple().to_string(),
        sub: user.id.clone(),
        aud: audience(client_id, &scopes),
        scope: scopes,
        client_id: client_id.to_owned(),
        cid: client_id.to_owned(),
        azp: client_id.to_owned(),
        grant_type: grant_type.to_owned(),
        user_id: user.id.clone(),
        origin: "uaa".to_owned(),
        user_name: user.username.clone(),
        email: user.email.clone(),
        auth_time,
        rev_sig: rev_sig(user, client_id),
        authorities: vec![],
        iat,
        exp,
        iss: inner.config.issuer.clone(),
        zid: "uaa".to_owned(),
    }
}

/// Which refresh token a response carries.
enum Refresh {
    /// A new one.
    New,
    /// The one the client sent (UAA hands the same refresh token back).
    Reuse(String),
    /// None: the client may not refresh.
    None,
}

fn seconds(d: std::time::Duration) -> i64 {
    i64::try_from(d.as_secs()).unwrap_or(i64::MAX)
}

fn issue(
    inner: &Inner,
    user: &User,
    client_id: &str,
    scopes: Vec<String>,
    grant_type: &str,
    auth_time: i64,
    refresh: Refresh,
) -> Result<TokenResponse, OAuthError> {
    let now = chrono::Utc::now().timestamp();
    let ttl = seconds;
    let access_ttl = ttl(inner.config.access_token_ttl);
    let claims = access_claims(
        inner,
        user,
        client_id,
        scopes,
        grant_type,
        auth_time,
        now,
        now.saturating_add(access_ttl),
    );
    let signing_failed = |reason: String| {
        OAuthError::from(AuthError::Signing {
            user: user.username.clone(),
            reason,
        })
    };
    let access_token = inner.signer.sign(&claims).map_err(signing_failed)?;
    let refresh_token = match refresh {
        Refresh::Reuse(token) => Some(token),
        Refresh::None => None,
        Refresh::New => {
            let refresh = RefreshClaims {
                jti: format!("{}-r", uuid::Uuid::new_v4().simple()),
                sub: user.id.clone(),
                user_id: user.id.clone(),
                user_name: user.username.clone(),
                client_id: client_id.to_owned(),
                cid: client_id.to_owned(),
                granted_scopes: claims.scope.clone(),
                grant_type: grant_type.to_owned(),
                origin: "uaa".to_owned(),
                auth_time,
                rev_sig: claims.rev_sig.clone(),
                iat: now,
                exp: now.saturating_add(ttl(inner.config.refresh_token_ttl)),
                iss: inner.config.issuer.clone(),
                zid: "uaa".to_owned(),
                aud: claims.aud.clone(),
                token_use: refresh_use(),
            };
            Some(inner.signer.sign(&refresh).map_err(signing_failed)?)
        }
    };
    Ok(TokenResponse {
        access_token,
        token_type: "bearer",
        refresh_token,
        expires_in: access_ttl,
        scope: claims.scope.join(" "),
        jti: claims.jti,
    })
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::{header, Request, StatusCode};
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    use super::*;
    use crate::{AuthConfig, AuthServer};

    /// A refresh token whose `exp` has passed is refused as `invalid_token`,
    /// built by signing past-dated claims rather than by waiting.
    #[tokio::test]
    async fn expired_refresh_token_is_invalid_token() {
        let dir = tempfile::tempdir().expect("tempdir");
        let options = sqlx::sqlite::SqliteConnectOptions::new()
            .filename(dir.path().join("ingot.db"))
            .create_if_missing(true);
        let pool = sqlx::SqlitePool::connect_with(options).await.expect("pool");
        let server = AuthServer::open(pool, dir.path(), AuthConfig::default())
            .await
            .expect("open");
        server
            .create_user("alice", "wonderland", &["openid"])
            .await
            .expect("user");
        let user = server
            .inner
            .store
            .user_by_name("alice")
            .await
            .expect("read")
            .expect("alice exists");
        let now = chrono::Utc::now().timestamp();
        let claims = RefreshClaims {
            jti: "old-r".into(),
            sub: user.id.clone(),
            user_id: user.id.clone(),
            user_name: user.username.clone(),
            client_id: CF_CLIENT.into(),
            cid: CF_CLIENT.into(),
            granted_scopes: vec!["openid".into()],
            grant_type: GRANT_PASSWORD.into(),
            origin: "uaa".into(),
            auth_time: now - 7200,
            rev_sig: rev_sig(&user, CF_CLIENT),
            iat: now - 7200,
            exp: now - 60,
            iss: server.inner.config.issuer.clone(),
            zid: "uaa".into(),
            aud: vec![CF_CLIENT.into()],
            token_use: refresh_use(),
        };
        let expired = server.inner.signer.sign(&claims).expect("sign");
        let body = serde_urlencoded::to_string([
            ("grant_type", "refresh_token"),
            ("refresh_token", expired.as_str()),
        ])
        .expect("form");
        let request = Request::post("/oauth/token")
            .header(header::AUTHORIZATION, "Basic Y2Y6")
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Body::from(body))
            .expect("request");
        let response = server.router().oneshot(request).await.expect("response");
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        let bytes = response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes();
        let json: serde_json::Value = serde_json::from_slice(&bytes).expect("json");
        assert_eq!(json["error"], "invalid_token");
        assert!(
            json["error_description"]
                .as_str()
                .is_some_and(|d| d.contains("expired")),
            "{json}"
        );
    }

    #[test]
    fn rev_sig_changes_with_the_password_hash() {
        let user = User {
            id: "u".into(),
            username: "alice".into(),
            email: "alice".into(),
            password_hash: "one".into(),
            groups: vec![],
            created_at: String::new(),
            updated_at: String::new(),
        };
        let changed = User {
            password_hash: "two".into(),
            ..user.clone()
        };
        assert_eq!(rev_sig(&user, "cf").len(), 8);
        assert_eq!(rev_sig(&user, "cf"), rev_sig(&user, "cf"));
        assert_ne!(rev_sig(&user, "cf"), rev_sig(&changed, "cf"));
        assert_ne!(rev_sig(&user, "cf"), rev_sig(&user, "other"));
    }
}
