//! Errors of the token server's library API (opening, users, keys).
//!
//! Errors of the HTTP surface are OAuth2 JSON and live in `http.rs`; errors
//! of token verification are [`crate::TokenError`].

use std::path::PathBuf;

/// What went wrong while opening the token server or managing its users.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// A statement against the `auth_` tables failed.
    #[error("auth database: {action}: {source}")]
    Database {
        /// What was being done, e.g. "create user admin".
        action: String,
        /// The driver's error.
        #[source]
        source: sqlx::Error,
    },
    /// Reading or writing a file (signing key, admin credentials) failed.
    #[error("{path}: {action}: {source}")]
    File {
        /// The file involved.
        path: PathBuf,
        /// What was being done, e.g. "write signing key".
        action: &'static str,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A file exists but its content cannot be used; fix or remove it.
    #[error("{path}: {reason}")]
    BadFile {
        /// The file involved.
        path: PathBuf,
        /// Why it cannot be used.
        reason: String,
    },
    /// Generating the RSA signing key failed.
    #[error("generating the token signing key: {0}")]
    KeyGeneration(String),
    /// Signing a token failed.
    #[error("signing a token for {user}: {reason}")]
    Signing {
        /// The user the token was for.
        user: String,
        /// The signer's error.
        reason: String,
    },
    /// A user with this name already exists.
    #[error("user {username:?} already exists")]
    UserExists {
        /// The name asked for.
        username: String,
    },
    /// No user has this name.
    #[error("user {username:?} does not exist")]
    UserNotFound {
        /// The name asked for.
        username: String,
    },
    /// The username, password or a scope is not acceptable.
    #[error("invalid user {username:?}: {reason}")]
    InvalidUser {
        /// The name given.
        username: String,
        /// What is wrong with the input.
        reason: String,
    },
    /// A client registration is not acceptable.
    #[error("invalid client {client_id:?}: {reason}")]
    InvalidClient {
        /// The client id given.
        client_id: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Hashing a password failed (or the hashing task died).
    #[error("hashing the password of {username:?}: {reason}")]
    PasswordHash {
        /// Whose password.
        username: String,
        /// The hasher's error.
        reason: String,
    },
}

impl AuthError {
    pub(crate) fn db(action: impl Into<String>) -> impl FnOnce(sqlx::Error) -> AuthError {
        let action = action.into();
        move |source| AuthError::Database { action, source }
    }
}
