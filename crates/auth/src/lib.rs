//! Ingot's token server: the subset of Cloud Foundry's UAA that the `cf` CLI
//! and Ingot's own CLI need (see ARCHITECTURE.md, "crates/auth").
//!
//! [`AuthServer`] owns the users, their groups, the OAuth clients and the
//! one-time codes (in the `auth_` tables of the shared SQLite database) and
//! the RSA signing key, and serves through [`AuthServer::router`]:
//! - the OAuth2 token endpoint (`password`, `refresh_token`,
//!   `client_credentials`, `authorization_code` grants);
//! - `/oauth/authorize` for one-time codes (`cf ssh-code`), redeemed once by
//!   the SSH proxy ([`AuthServer::redeem_code`] in process);
//! - SCIM users (`/Users`, `/ids/Users`) and `/userinfo`, in UAA's JSON.
//!
//! [`TokenVerifier`] checks bearer tokens with the public key alone: that is
//! this crate's invariant, so any component, in this process or another, can
//! authenticate requests.

mod codes;
mod error;
mod grants;
mod http;
mod keys;
mod metrics;
mod password;
mod scim;
mod store;
mod token;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

pub use codes::CodeGrant;
pub use error::AuthError;
pub use keys::{Jwk, SIGNING_KEY_FILE};
pub use store::{
    ADMIN_SCOPES, CF_CLIENT, CF_CLIENT_SCOPES, DEFAULT_USER_GROUPS, SSH_PROXY_CLIENT,
    SSH_PROXY_SCOPES,
};
pub use token::{Claims, TokenError, TokenVerifier, ADMIN_SCOPE};

use serde::{Deserialize, Serialize};

/// Name of the first-boot administrator.
pub const ADMIN_USERNAME: &str = "admin";

/// File in the key directory holding the `ssh-proxy` client's secret
/// (generated on first boot, mode 0600).
pub const SSH_PROXY_SECRET_FILE: &str = "ssh-proxy-client-secret";

/// The only identity provider Ingot has: users with a password kept here.
pub const ORIGIN_UAA: &str = "uaa";

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
    /// Lifetime of a one-time code from `/oauth/authorize` (UAA's default:
    /// 5 minutes).
    pub authorization_code_ttl: Duration,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            issuer: "http://127.0.0.1:9000/uaa/oauth/token".to_owned(),
            access_token_ttl: Duration::from_secs(20 * 60),
            refresh_token_ttl: Duration::from_secs(30 * 24 * 3600),
            authorization_code_ttl: Duration::from_secs(5 * 60),
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
    pub(crate) ssh_proxy_secret: String,
}

/// An OAuth client to register with [`AuthServer::register_client`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClientRegistration {
    /// The client id, e.g. "cloud_controller_username_lookup".
    pub client_id: String,
    /// The secret; empty for a public client such as `cf`.
    pub secret: String,
    /// Scopes a user token of this client may carry (∩ the user's groups).
    pub scopes: Vec<String>,
    /// Scopes a `client_credentials` token of this client carries.
    pub authorities: Vec<String>,
    /// Grants the client may use: "password", "refresh_token",
    /// "client_credentials", "authorization_code".
    pub grant_types: Vec<String>,
    /// Where `/oauth/authorize` redirects with the code; empty for none.
    pub redirect_uri: String,
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
        let ssh_proxy_secret =
            load_or_generate_secret(&key_dir.join(SSH_PROXY_SECRET_FILE)).await?;
        let verifier = TokenVerifier::new(key.public.clone());
        let signer = token::Signer::new(key, &config.issuer);
        let server = AuthServer {
            inner: Arc::new(Inner {
                config,
                store,
                signer,
                verifier,
                metrics: metrics::Metrics::default(),
                ssh_proxy_secret,
            }),
        };
        // Built-in clients are defined by the code: rewrite them on every
        // boot so that a new version's scope lists take effect.
        let owned = |list: &[&str]| list.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        server
            .register_client(&ClientRegistration {
                client_id: CF_CLIENT.to_owned(),
                secret: String::new(),
                scopes: owned(CF_CLIENT_SCOPES),
                authorities: vec!["uaa.none".to_owned()],
                grant_types: owned(&[store::GRANT_PASSWORD, store::GRANT_REFRESH]),
                redirect_uri: String::new(),
            })
            .await?;
        server
            .register_client(&ClientRegistration {
                client_id: SSH_PROXY_CLIENT.to_owned(),
                secret: server.inner.ssh_proxy_secret.clone(),
                scopes: owned(SSH_PROXY_SCOPES),
                authorities: vec!["uaa.none".to_owned()],
                grant_types: owned(&[store::GRANT_AUTHORIZATION_CODE]),
                redirect_uri: server.ssh_proxy_redirect_uri(),
            })
            .await?;
        Ok(server)
    }

    /// Creates or replaces an OAuth client. The secret is kept only as an
    /// argon2 hash.
    pub async fn register_client(&self, client: &ClientRegistration) -> Result<(), AuthError> {
        if client.client_id.is_empty()
            || client.client_id.chars().any(|c| c == ':' || c.is_control())
        {
            return Err(AuthError::InvalidClient {
                client_id: client.client_id.clone(),
                reason: "a client id must be non-empty, without ':' or control characters".into(),
            });
        }
        let secret_hash = if client.secret.is_empty() {
            None
        } else {
            Some(password::hash(&client.client_id, &client.secret).await?)
        };
        self.inner
            .store
            .upsert_client(
                &client.client_id,
                &store::Client {
                    secret_hash,
                    scopes: client.scopes.clone(),
                    grant_types: client.grant_types.clone(),
                    authorities: client.authorities.clone(),
                    redirect_uri: client.redirect_uri.clone(),
                },
            )
            .await
    }

    /// The `ssh-proxy` client's secret, for an SSH proxy in another process
    /// that redeems codes through `POST /oauth/token`
    /// (`grant_type=authorization_code`).
    pub fn ssh_proxy_secret(&self) -> &str {
        &self.inner.ssh_proxy_secret
    }

    /// Where `/oauth/authorize` sends `ssh-proxy` codes: the token server's
    /// own `/login`, as cf-deployment registers it.
    pub fn ssh_proxy_redirect_uri(&self) -> String {
        format!(
            "{}/login",
            self.inner.config.issuer.trim_end_matches("/oauth/token")
        )
    }

    /// The guid of the user `username` from identity provider `origin`
    /// (only "uaa" exists), for Cloud Controller's username ↔ guid mapping.
    pub async fn user_id_by_name(
        &self,
        username: &str,
        origin: &str,
    ) -> Result<Option<String>, AuthError> {
        if origin != ORIGIN_UAA {
            return Ok(None);
        }
        Ok(self.inner.store.user_by_name(username).await?.map(|u| u.id))
    }

    /// The name of the user with guid `id`; None when no such user exists
    /// (for example it was deleted: its tokens should then be refused).
    pub async fn username_by_id(&self, id: &str) -> Result<Option<String>, AuthError> {
        Ok(self.inner.store.user_by_id(id).await?.map(|u| u.username))
    }

    /// Redeems a one-time code from `/oauth/authorize` for `client_id`. The
    /// code is consumed whatever the outcome; None when it is unknown,
    /// already used, expired, issued to another client, or its user is gone.
    pub async fn redeem_code(
        &self,
        code: &str,
        client_id: &str,
    ) -> Result<Option<CodeGrant>, AuthError> {
        codes::redeem(&self.inner, code, client_id)
            .await
            .map(|r| r.ok())
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
        self.inner
            .store
            .insert_user(username, username, &hash, scopes)
            .await
    }

    /// Sets a user's password. Refresh tokens issued before stop working.
    pub async fn set_password(&self, username: &str, password: &str) -> Result<(), AuthError> {
        validate_user(username, password, &[])?;
        let hash = password::hash(username, password).await?;
        if self
            .inner
            .store
            .set_password_hash(store::UserKey::Username, username, &hash)
            .await?
        {
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
        if self
            .inner
            .store
            .delete_user(store::UserKey::Username, username)
            .await?
        {
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

    /// Verifies an `Authorization` header value like [`TokenVerifier::verify`]
    /// and also refuses a user token whose user has been deleted since
    /// (`TokenError::Invalid`). Synchronous and without I/O: the user ids
    /// are mirrored in memory. Client (`client_credentials`) tokens pass.
    pub fn verify_live(&self, authorization: Option<&str>) -> Result<Claims, TokenError> {
        let claims = self.inner.verifier.verify(authorization)?;
        if !claims.is_client() && !self.inner.store.is_live(&claims.user_id) {
            return Err(TokenError::Invalid(format!(
                "the user {} no longer exists",
                claims.user_id
            )));
        }
        Ok(claims)
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
    /// `GET /oauth/authorize`, `GET /token_keys`, `GET /token_key`,
    /// `GET /login`, `GET /info`, `POST|GET /Users`, `GET|DELETE /Users/:id`,
    /// `PUT /Users/:id/password`, `GET /ids/Users`, `GET /userinfo`.
    pub fn router(&self) -> axum::Router {
        http::router(self.inner.clone())
    }

    /// Registers `ingot_auth_tokens_issued` and
    /// `ingot_auth_token_requests_rejected` (by grant type),
    /// `ingot_auth_scim_requests` (by operation and status),
    /// `ingot_auth_codes_issued` and `ingot_auth_codes_redeemed` (by outcome).
    pub fn register_metrics(&self, registry: &mut prometheus_client::registry::Registry) {
        self.inner.metrics.register(registry);
    }
}

/// Reads a generated secret from `path`, or generates one there (mode 0600).
async fn load_or_generate_secret(path: &Path) -> Result<String, AuthError> {
    match tokio::fs::read_to_string(path).await {
        Ok(secret) if !secret.trim().is_empty() => Ok(secret.trim().to_owned()),
        Ok(_) => Err(AuthError::BadFile {
            path: path.to_owned(),
            reason: "empty; remove it to generate a new secret".into(),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let secret = password::generate();
            keys::write_private(path, secret.as_bytes())?;
            Ok(secret)
        }
        Err(source) => Err(AuthError::File {
            path: path.to_owned(),
            action: "read client secret",
            source,
        }),
    }
}

pub(crate) fn validate_user(
    username: &str,
    password: &str,
    scopes: &[&str],
) -> Result<(), AuthError> {
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
