//! Tokens: the access-token claims as UAA writes them, the refresh token, and
//! [`TokenVerifier`], which checks a bearer token with the public key alone.

use std::sync::Arc;

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::keys::{PublicKey, SigningKey};

/// The scope that makes a user a platform administrator.
pub const ADMIN_SCOPE: &str = "cloud_controller.admin";

/// Value of the `token_use` claim that marks a refresh token. Access tokens
/// carry no `token_use` at all (as UAA's), so neither kind passes for the other.
const REFRESH_USE: &str = "refresh";

/// The claims of an access token, named and shaped as UAA's.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// Token id (32 hex digits).
    pub jti: String,
    /// Subject: the user's guid.
    pub sub: String,
    /// Granted scopes.
    pub scope: Vec<String>,
    /// The OAuth client the token was issued to.
    pub client_id: String,
    /// Same as `client_id` (UAA writes both).
    pub cid: String,
    /// Authorised party: the client again.
    pub azp: String,
    /// The grant that produced the token: "password" or "refresh_token".
    pub grant_type: String,
    /// The user's guid; empty in a `client_credentials` token, which stands
    /// for a client rather than a user.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub user_id: String,
    /// Identity provider: always "uaa" (empty for client tokens).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub origin: String,
    /// The user's login name (empty for client tokens).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub user_name: String,
    /// The user's email (the username when none was given; empty for
    /// client tokens).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub email: String,
    /// When the user last authenticated with a password (Unix seconds; 0
    /// for client tokens).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub auth_time: i64,
    /// Revocation signature: changes when the user's password changes.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub rev_sig: String,
    /// A client token's authorities (the same as its `scope`), as UAA
    /// writes them; empty for user tokens.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub authorities: Vec<String>,
    /// Issued at (Unix seconds).
    pub iat: i64,
    /// Expires at (Unix seconds).
    pub exp: i64,
    /// Issuer: the token endpoint's URL.
    pub iss: String,
    /// Identity zone: always "uaa".
    pub zid: String,
    /// Audience: the resource ids derived from the scopes, and the client.
    pub aud: Vec<String>,
}

impl Claims {
    /// Whether the token grants `scope`.
    pub fn has_scope(&self, scope: &str) -> bool {
        self.scope.iter().any(|s| s == scope)
    }

    /// Whether the token grants `cloud_controller.admin`.
    pub fn is_admin(&self) -> bool {
        self.has_scope(ADMIN_SCOPE)
    }

    /// Whether the token stands for a client itself (`client_credentials`)
    /// rather than for a user.
    pub fn is_client(&self) -> bool {
        self.user_id.is_empty()
    }
}

fn is_zero(n: &i64) -> bool {
    *n == 0
}

/// The claims of a refresh token (UAA's shape, plus `token_use`).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct RefreshClaims {
    /// Ends in "-r", as UAA's refresh token ids do.
    pub jti: String,
    pub sub: String,
    pub user_id: String,
    pub user_name: String,
    pub client_id: String,
    pub cid: String,
    pub granted_scopes: Vec<String>,
    pub grant_type: String,
    pub origin: String,
    pub auth_time: i64,
    pub rev_sig: String,
    pub iat: i64,
    pub exp: i64,
    pub iss: String,
    pub zid: String,
    pub aud: Vec<String>,
    pub token_use: String,
}

/// Why a bearer token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// No Authorization header, or an empty one.
    #[error("no bearer token in the Authorization header")]
    Missing,
    /// Not a token this server signed as an access token; says why.
    #[error("invalid token: {0}")]
    Invalid(String),
    /// A genuine token whose `exp` has passed.
    #[error("token expired")]
    Expired,
}

/// Checks access tokens. Holds only the public key, so any component (or
/// another process, see [`TokenVerifier::from_public_key_pem`]) can verify
/// without the database or the private key.
#[derive(Clone)]
pub struct TokenVerifier {
    key: Arc<PublicKey>,
}

impl std::fmt::Debug for TokenVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenVerifier")
            .field("kid", &self.key.kid)
            .finish()
    }
}

impl TokenVerifier {
    pub(crate) fn new(key: PublicKey) -> Self {
        TokenVerifier { key: Arc::new(key) }
    }

    /// A verifier for the key published as `value` at `/token_key`.
    pub fn from_public_key_pem(pem: &str) -> Result<Self, TokenError> {
        PublicKey::from_pem(pem)
            .map(Self::new)
            .map_err(|e| TokenError::Invalid(format!("unusable public key: {e}")))
    }

    /// The key id tokens from this key carry in their header.
    pub fn key_id(&self) -> &str {
        &self.key.kid
    }

    /// `authorization` is the raw Authorization header value
    /// ("bearer <jwt>", scheme case-insensitive).
    pub fn verify(&self, authorization: Option<&str>) -> Result<Claims, TokenError> {
        let value = authorization.map(str::trim).unwrap_or_default();
        if value.is_empty() {
            return Err(TokenError::Missing);
        }
        let (scheme, token) = value
            .split_once(char::is_whitespace)
            .ok_or_else(|| TokenError::Invalid("expected \"bearer <token>\"".into()))?;
        if !scheme.eq_ignore_ascii_case("bearer") {
            return Err(TokenError::Invalid(format!(
                "unsupported authorization scheme {scheme:?}, expected bearer"
            )));
        }
        self.verify_token(token.trim())
    }

    /// Verifies a bare JWT as an access token.
    pub fn verify_token(&self, token: &str) -> Result<Claims, TokenError> {
        let value: serde_json::Value = self.decode(token)?;
        if value.get("token_use").is_some() {
            return Err(TokenError::Invalid(
                "a refresh token cannot be used as an access token".into(),
            ));
        }
        serde_json::from_value(value)
            .map_err(|e| TokenError::Invalid(format!("not an access token: {e}")))
    }

    /// Verifies a bare JWT as a refresh token.
    pub(crate) fn verify_refresh(&self, token: &str) -> Result<RefreshClaims, TokenError> {
        let value: serde_json::Value = self.decode(token)?;
        if value.get("token_use").and_then(|v| v.as_str()) != Some(REFRESH_USE) {
            return Err(TokenError::Invalid("not a refresh token".into()));
        }
        serde_json::from_value(value)
            .map_err(|e| TokenError::Invalid(format!("malformed refresh token: {e}")))
    }

    fn decode(&self, token: &str) -> Result<serde_json::Value, TokenError> {
        let header = jsonwebtoken::decode_header(token)
            .map_err(|e| TokenError::Invalid(format!("malformed token: {e}")))?;
        if let Some(kid) = &header.kid {
            if kid != &self.key.kid {
                return Err(TokenError::Invalid(format!("unknown signing key {kid:?}")));
            }
        }
        let mut validation = Validation::new(Algorithm::RS256);
        // One machine, one clock: an expired token is expired now.
        validation.leeway = 0;
        // Audiences are checked by scope, as Cloud Controller does.
        validation.validate_aud = false;
        validation.set_required_spec_claims(&["exp", "iat", "jti"]);
        match jsonwebtoken::decode::<serde_json::Value>(token, &self.key.decoding, &validation) {
            Ok(data) => Ok(data.claims),
            Err(e) if matches!(e.kind(), ErrorKind::ExpiredSignature) => Err(TokenError::Expired),
            Err(e) => Err(TokenError::Invalid(e.to_string())),
        }
    }
}

/// Signs tokens with the private key.
pub(crate) struct Signer {
    key: SigningKey,
    jku: String,
}

impl Signer {
    pub(crate) fn new(key: SigningKey, issuer: &str) -> Self {
        let base = issuer.trim_end_matches("/oauth/token");
        Signer {
            key,
            jku: format!("{base}/token_keys"),
        }
    }

    pub(crate) fn public(&self) -> &PublicKey {
        &self.key.public
    }

    pub(crate) fn sign<T: Serialize>(&self, claims: &T) -> Result<String, String> {
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some(self.key.public.kid.clone());
        header.jku = Some(self.jku.clone());
        jsonwebtoken::encode(&header, claims, &self.key.encoding).map_err(|e| e.to_string())
    }
}

pub(crate) fn refresh_use() -> String {
    REFRESH_USE.to_owned()
}

/// UAA's audience: each scope's resource (the part before its last dot, or
/// the whole scope when it has none) and the client, without duplicates.
pub(crate) fn audience(client_id: &str, scopes: &[String]) -> Vec<String> {
    let mut aud = vec![client_id.to_owned()];
    for scope in scopes {
        let resource = scope.rsplit_once('.').map_or(scope.as_str(), |(r, _)| r);
        if !aud.iter().any(|a| a == resource) {
            aud.push(resource.to_owned());
        }
    }
    aud
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn audience_is_client_then_scope_resources() {
        let scopes: Vec<String> = [
            "cloud_controller.read",
            "cloud_controller.admin",
            "openid",
            "routing.router_groups.read",
        ]
        .map(String::from)
        .into();
        assert_eq!(
            audience("cf", &scopes),
            ["cf", "cloud_controller", "openid", "routing.router_groups"]
        );
    }

    #[test]
    fn claims_scope_checks() {
        let claims = Claims {
            jti: "j".into(),
            sub: "u".into(),
            scope: vec!["cloud_controller.read".into(), ADMIN_SCOPE.into()],
            client_id: "cf".into(),
            cid: "cf".into(),
            azp: "cf".into(),
            grant_type: "password".into(),
            user_id: "u".into(),
            origin: "uaa".into(),
            user_name: "admin".into(),
            email: "admin".into(),
            auth_time: 0,
            rev_sig: "r".into(),
            authorities: vec![],
            iat: 0,
            exp: 0,
            iss: "i".into(),
            zid: "uaa".into(),
            aud: vec![],
        };
        assert!(claims.has_scope("cloud_controller.read"));
        assert!(!claims.has_scope("cloud_controller"));
        assert!(claims.is_admin());
        let reader = Claims {
            scope: vec!["cloud_controller.read".into()],
            ..claims
        };
        assert!(!reader.is_admin());
    }

    #[test]
    fn verify_refuses_missing_and_non_bearer_headers() {
        // Any key will do: these fail before the signature is looked at.
        use rsa::pkcs8::{EncodePublicKey, LineEnding};
        let key = rsa::RsaPrivateKey::new(&mut rand::rngs::OsRng, 1024).expect("key");
        let pem = key
            .to_public_key()
            .to_public_key_pem(LineEnding::LF)
            .expect("pem");
        let verifier = TokenVerifier::from_public_key_pem(&pem).expect("verifier");
        assert_eq!(verifier.verify(None), Err(TokenError::Missing));
        assert_eq!(verifier.verify(Some("  ")), Err(TokenError::Missing));
        assert!(matches!(
            verifier.verify(Some("Basic Y2Y6")),
            Err(TokenError::Invalid(_))
        ));
        assert!(matches!(
            verifier.verify(Some("bearer not.a.jwt")),
            Err(TokenError::Invalid(_))
        ));
        assert!(matches!(
            verifier.verify(Some("bearer")),
            Err(TokenError::Invalid(_))
        ));
    }
}
