//! The errors a call to the platform can end in, parsed from the two error
//! formats the platform speaks: Cloud Foundry's v3 envelope
//! (`{"errors":[{"code","title","detail"}]}`) and OAuth2's
//! (`{"error","error_description"}`) from the token server.

use serde::Deserialize;

/// One entry of a v3 error envelope.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, serde::Serialize)]
pub struct ApiErrorItem {
    /// Numeric CF error code, e.g. `10010` for `CF-ResourceNotFound`.
    #[serde(default)]
    pub code: i64,
    /// CF error title, e.g. `CF-ResourceNotFound`.
    #[serde(default)]
    pub title: String,
    /// Human-readable detail.
    #[serde(default)]
    pub detail: String,
}

/// The CF error code of `CF-InvalidAuthToken` (expired or bad token).
pub const CODE_INVALID_AUTH_TOKEN: i64 = 1000;
/// The CF error code of `CF-NotAuthenticated` (no token).
pub const CODE_NOT_AUTHENTICATED: i64 = 10002;
/// The CF error code of `CF-ResourceNotFound`.
pub const CODE_RESOURCE_NOT_FOUND: i64 = 10010;

/// Everything a client call can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The API answered with a CF v3 error envelope.
    #[error("{method} {url} failed (HTTP {status}): {}", describe_items(.errors))]
    Api {
        /// HTTP method of the failed request.
        method: String,
        /// URL of the failed request.
        url: String,
        /// HTTP status code.
        status: u16,
        /// The envelope's errors; never empty.
        errors: Vec<ApiErrorItem>,
    },
    /// The token server refused, in OAuth2's error format.
    #[error("the token server at {url} refused (HTTP {status}): {error}{}", describe_oauth(.description))]
    OAuth {
        /// Token endpoint URL.
        url: String,
        /// HTTP status code.
        status: u16,
        /// OAuth2 `error`, e.g. `invalid_grant`.
        error: String,
        /// OAuth2 `error_description`, when given.
        description: Option<String>,
    },
    /// The request did not get an HTTP answer at all.
    #[error("cannot reach {url}: {}", root_cause(.source))]
    Transport {
        /// URL that could not be reached.
        url: String,
        /// The underlying failure.
        #[source]
        source: reqwest::Error,
    },
    /// The server answered something this client cannot interpret.
    #[error("unexpected answer from {method} {url} (HTTP {status}): {body}")]
    Unexpected {
        /// HTTP method of the request.
        method: String,
        /// URL of the request.
        url: String,
        /// HTTP status code.
        status: u16,
        /// What was wrong, or the start of the body.
        body: String,
    },
    /// A call needed a login and there is none.
    #[error("not logged in")]
    NotLoggedIn,
    /// An asynchronous job ended `FAILED`.
    #[error("job {guid} failed: {}", describe_items(.errors))]
    JobFailed {
        /// The job's guid.
        guid: String,
        /// The job's errors.
        errors: Vec<ApiErrorItem>,
    },
    /// Waiting for something took longer than allowed.
    #[error("timed out after {seconds} s waiting for {what}")]
    Timeout {
        /// What was being waited for.
        what: String,
        /// How long it waited.
        seconds: u64,
    },
    /// A local file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory involved.
        path: String,
        /// The underlying failure.
        #[source]
        source: std::io::Error,
    },
    /// Building the zip of application bits failed.
    #[error("cannot build the zip of {path}: {source}")]
    Zip {
        /// The file being added.
        path: String,
        /// The underlying failure.
        #[source]
        source: zip::result::ZipError,
    },
    /// Local input (a manifest, a memory size, a pattern) is malformed.
    #[error("{what}: {detail}")]
    Invalid {
        /// Which input was wrong.
        what: String,
        /// Why.
        detail: String,
    },
}

fn describe_items(items: &[ApiErrorItem]) -> String {
    items
        .iter()
        .map(|e| {
            if e.detail.is_empty() {
                format!("{} ({})", e.title, e.code)
            } else {
                format!("{} ({} {})", e.detail, e.title, e.code)
            }
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// The innermost cause: reqwest's own message repeats the URL and hides
/// the reason (e.g. "Connection refused") in its source chain.
fn root_cause(err: &reqwest::Error) -> String {
    let mut cause: &dyn std::error::Error = err;
    while let Some(next) = cause.source() {
        cause = next;
    }
    if err.is_timeout() {
        return format!("timed out ({cause})");
    }
    cause.to_string()
}

fn describe_oauth(description: &Option<String>) -> String {
    match description {
        Some(d) if !d.is_empty() => format!(": {d}"),
        _ => String::new(),
    }
}

impl ClientError {
    /// The first CF error of an API error, if this is one.
    pub fn api_error(&self) -> Option<&ApiErrorItem> {
        match self {
            ClientError::Api { errors, .. } => errors.first(),
            _ => None,
        }
    }

    /// The HTTP status of an API or OAuth error.
    pub fn status(&self) -> Option<u16> {
        match self {
            ClientError::Api { status, .. }
            | ClientError::OAuth { status, .. }
            | ClientError::Unexpected { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// Whether this is a CF error with the given code.
    pub fn has_code(&self, code: i64) -> bool {
        matches!(self, ClientError::Api { errors, .. } if errors.iter().any(|e| e.code == code))
    }

    /// Whether the user must log in again: no login, an invalid or expired
    /// token that refreshing did not fix, or a refused refresh token.
    pub fn needs_login(&self) -> bool {
        match self {
            ClientError::NotLoggedIn => true,
            ClientError::Api { status: 401, .. } => true,
            // A refused refresh token: UAA says invalid_token or
            // invalid_grant, with 400 or 401.
            ClientError::OAuth { status, .. } => *status == 400 || *status == 401,
            _ => false,
        }
    }
}

/// The v3 error envelope.
#[derive(Deserialize)]
pub(crate) struct ErrorEnvelope {
    pub errors: Vec<ApiErrorItem>,
}

/// OAuth2's error body.
#[derive(Deserialize)]
pub(crate) struct OAuthErrorBody {
    pub error: String,
    #[serde(default)]
    pub error_description: Option<String>,
}

/// Result alias for client calls.
pub type Result<T, E = ClientError> = std::result::Result<T, E>;
