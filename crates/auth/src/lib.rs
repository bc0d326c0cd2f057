//! Ingot's token server: the subset of Cloud Foundry's UAA that the `cf` CLI
//! and Ingot's own CLI need (see ARCHITECTURE.md, "crates/auth").
//!
//! [`AuthServer`] owns the users (in the `auth_` tables of the shared SQLite
//! database) and the RSA signing key, and serves the OAuth2 token endpoint
//! through [`AuthServer::router`]. [`TokenVerifier`] checks bearer tokens with
//! the public key alone: that is this crate's invariant, so any component,
//! in this process or another, can authenticate requests.

mod error;
mod grants;
mod http;
mod keys;
mod metrics;
mod password;
mod store;
mod token;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

pub use error::AuthError;
pub use keys::{Jwk, SIGNING_KEY_FILE};
pub use store::{ADMIN_SCOPES, CF_CLIENT};
pub use token::{Claims, TokenError, TokenVerifier, ADMIN_SCOPE};

use serde::{Deserialize, Serialize};

/// Name of the first-boot administrator.
pub const ADMIN_USERNAME: &str = "admin";

/// Settings of the token server.
#[derive(Clone, Debug)]
pub struct AuthConfig {
    /// The token endpoint's public URL, written as `iss` into every token,
    /// e.g. "http://127.0.0.1:9000/uaa/oauth/token".
    pub issuer: String,
    /// Lifetime of access tokens (UAA's default for `cf`: 20 minutes).
    pub access_token_ttl: Duration,
    /// Lifetime of refresh tokens (UAA's default for `cf`: 30 days).
    pub refresh_token_ttl: Duration,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            issuer: "http://127.0.0.1:9000/uaa/oauth/token".to_owned(),
            access_token_ttl: Duration::from_secs(20 * 60),
            refresh_token_ttl: Duration::from_secs(30 * 24 * 3600),
        }
    }
}

/// The administrator's login, as kept in the credentials file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdminCredentials {
    /// Always "admin".
    pub username: String,
    /// Generated on first boot.
    pub password: String,
}

/// The token server. Cheap to clone: clones share the key, the pool and the
/// metrics.
#[derive(Clone)]
pub struct AuthServer {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for AuthServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthServer")
            .field("config", &self.inner.config)
            .field("kid", &self.inner.verifier.key_id())
            .finish()
    }
}

pub(crate) struct Inner {
    pub(crate) config: AuthConfig,
    pub(crate) store: store::Store,
    pub(crate) signer: token::Signer,
    pub(crate) verifier: TokenVerifier,
    pub(crate) metrics: metrics::Metrics,
}

impl AuthServer {
    /// Creates its tables in the given pool (all prefixed `auth_`), loads the
    /// RSA-2048 signing key from `key_dir/token-signing.pem`, or generates it
    /// there (mode 0600) on first boot.
    ///
    /// An in-memory pool must have a single connection
    /// (`max_connections(1)`): every SQLite connection to `:memory:` is a
    /// separate database.
    pub async fn open(
        pool: sqlx::SqlitePool,
        key_dir: &Path,
        config: AuthConfig,
    ) -> Result<Self, AuthError> {
        let store = store::Store::open(pool).await?;
        let key = keys::SigningKey::load_or_generate(key_dir).await?;
        let verifier = TokenVerifier::new(key.public.clone());
        let signer = token::Signer::new(key, &config.issuer);
        Ok(AuthServer {
            inner: Arc::new(Inner {
                config,
                store,
                signer,
                verifier,
                metrics: metrics::Metrics::default(),
            }),
        })
    }

    /// First boot: generates a random password, creates user "admin" with
    /// [`ADMIN_SCOPES`] and writes `{"username":"admin","password":"…"}` to
    /// `credentials_file` with mode 0600. Later boots read that file back
    /// (recreating the user from it if the database lost it). If the file is
    /// gone but the user exists, a new password is generated and set.
    pub async fn ensure_admin(
        &self,
        credentials_file: &Path,
    ) -> Result<AdminCredentials, AuthError> {
        let store = &self.inner.store;
        let credentials = match tokio::fs::read(credentials_file).await {
            Ok(bytes) => {
                let credentials: AdminCredentials =
                    serde_json::from_slice(&bytes).map_err(|e| AuthError::BadFile {
                        path: credentials_file.to_owned(),
                        reason: format!(
                            "not {{\"username\":…,\"password\":…}} ({e}); \
                             remove it to generate a new admin password"
                        ),
                    })?;
                match store.user_by_name(&credentials.username).await? {
                    Some(user) => store.grant_groups(&user.id, ADMIN_SCOPES).await?,
                    None => {
                        self.create_user(
                            &credentials.username,
                            &credentials.password,
                            ADMIN_SCOPES,
                        )
                        .await?;
                    }
                }
                credentials
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let credentials = AdminCredentials {
                    username: ADMIN_USERNAME.to_owned(),
                    password: password::generate(),
                };
                match store.user_by_name(ADMIN_USERNAME).await? {
                    Some(user) => {
                        self.set_password(ADMIN_USERNAME, &credentials.password)
                            .await?;
                        store.grant_groups(&user.id, ADMIN_SCOPES).await?;
                    }
                    None => {
                        self.create_user(ADMIN_USERNAME, &credentials.password, ADMIN_SCOPES)
                            .await?;
                    }
                }
                let json = serde_json::to_vec(&credentials).map_err(|e| AuthError::BadFile {
                    path: credentials_file.to_owned(),
                    reason: e.to_string(),
                })?;
                keys::write_private(credentials_file, &json)?;
                tracing::info!(path = %credentials_file.display(), "created the admin user");
                credentials
            }
            Err(source) => {
                return Err(AuthError::File {
                    path: credentials_file.to_owned(),
                    action: "read admin credentials",
                    source,
                })
            }
        };
        Ok(credentials)
    }

    /// Creates a user whose groups (the scopes its tokens may carry) are
    /// `scopes`; returns its guid.
    pub async fn create_user(
        &self,
        username: &str,
        password: &str,
        scopes: &[&str],
    ) -> Result<String, AuthError> {
        validate_user(username, password, scopes)?;
        let hash = password::hash(username, password).await?;
        self.inner.store.insert_user(username, &hash, scopes).await
    }

    /// Sets a user's password. Refresh tokens issued before stop working.
    pub async fn set_password(&self, username: &str, password: &str) -> Result<(), AuthError> {
        validate_user(username, password, &[])?;
        let hash = password::hash(username, password).await?;
        if self.inner.store.set_password_hash(username, &hash).await? {
            Ok(())
        } else {
            Err(AuthError::UserNotFound {
                username: username.to_owned(),
            })
        }
    }

    /// Deletes a user. Its refresh tokens stop working; access tokens already
    /// issued stay valid until they expire (they are verified offline).
    pub async fn delete_user(&self, username: &str) -> Result<(), AuthError> {
        if self.inner.store.delete_user(username).await? {
            Ok(())
        } else {
            Err(AuthError::UserNotFound {
                username: username.to_owned(),
            })
        }
    }

    /// Signs an access token for `username` (client `cf`, all the user's
    /// scopes) without a password, valid for `valid_for_secs` seconds from
    /// now; a negative value gives an already expired token. For tests and
    /// trusted in-process callers.
    pub async fn mint_access_token(
        &self,
        username: &str,
        valid_for_secs: i64,
    ) -> Result<String, AuthError> {
        grants::mint_access_token(&self.inner, username, valid_for_secs).await
    }

    /// A verifier holding only the public key.
    pub fn verifier(&self) -> TokenVerifier {
        self.inner.verifier.clone()
    }

    /// The signing key's public half as `/token_key` shows it.
    pub fn public_key(&self) -> Jwk {
        self.inner.signer.public().jwk.clone()
    }

    /// Routes relative to the mount point: `POST /oauth/token`,
    /// `GET /token_keys`, `GET /token_key`, `GET /login`, `GET /info`.
    pub fn router(&self) -> axum::Router {
        http::router(self.inner.clone())
    }

    /// Registers `ingot_auth_tokens_issued` and
    /// `ingot_auth_token_requests_rejected` (by grant type).
    pub fn register_metrics(&self, registry: &mut prometheus_client::registry::Registry) {
        self.inner.metrics.register(registry);
    }
}

fn validate_user(username: &str, password: &str, scopes: &[&str]) -> Result<(), AuthError> {
    let invalid = |reason: &str| {
        Err(AuthError::InvalidUser {
            username: username.to_owned(),
            reason: reason.to_owned(),
        })
    };
    if username.trim().is_empty() || username.trim() != username {
        return invalid("the username must be non-empty without surrounding spaces");
    }
    if username.len() > 255 || username.chars().any(char::is_control) {
        return invalid("the username must be at most 255 printable characters");
    }
    if password.is_empty() {
        return invalid("the password must not be empty");
    }
    if let Some(bad) = scopes
        .iter()
        .find(|s| s.is_empty() || s.chars().any(|c| c.is_whitespace() || c.is_control()))
    {
        return invalid(&format!("scope {bad:?} is empty or contains spaces"));
    }
    Ok(())
}
