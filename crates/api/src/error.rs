//! The one mapping from internal errors to Cloud Foundry's error envelope
//! `{"errors":[{"code","title","detail"}]}` and its HTTP status.
//!
//! Clients match on `code` and `title`, so both are CF's own (from cloud
//! controller's `errors/v2.yml`); `detail` is the user-facing sentence.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

/// Everything an API call can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// No `Authorization` header.
    #[error("Authentication error")]
    NotAuthenticated,
    /// A token that is malformed, not ours, or expired.
    #[error("Invalid Auth Token")]
    InvalidAuthToken,
    /// A valid token without the right to do this.
    #[error("You are not authorized to perform the requested action")]
    NotAuthorized,
    /// A resource that does not exist; the value is CF's detail, e.g. `App not found`.
    #[error("{0}")]
    ResourceNotFound(String),
    /// A path no route matches.
    #[error("Unknown request")]
    UnknownRequest,
    /// A body that does not parse; the value says what was wrong.
    #[error("Request invalid due to parse error: {0}")]
    MessageParse(String),
    /// A query parameter that is unknown or out of range.
    #[error("The query parameter is invalid: {0}")]
    BadQueryParameter(String),
    /// A well-formed request that cannot be done.
    #[error("{0}")]
    Unprocessable(String),
    /// A name already taken.
    #[error("{0}")]
    Uniqueness(String),
    /// A request that is invalid as a whole (e.g. a missing upload field).
    #[error("The request is invalid: {0}")]
    InvalidRequest(String),
    /// A feature flag forbids this; the value is the flag's custom error
    /// message, else `Feature Disabled: <flag>`.
    #[error("{0}")]
    FeatureDisabled(String),
    /// An upload above the size limit.
    #[error("{0}")]
    PayloadTooLarge(String),
    /// The database failed.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// The blobstore failed for this key.
    #[error("blobstore error for {key}: {message}")]
    Blob {
        /// The blob key that failed.
        key: String,
        /// What went wrong.
        message: String,
    },
    /// A bug or an unexpected failure.
    #[error("{0}")]
    Internal(String),
}

impl ApiError {
    /// A 404 for the named kind of resource, e.g. `not_found("App")`.
    pub fn not_found(kind: &str) -> Self {
        ApiError::ResourceNotFound(format!("{kind} not found"))
    }

    /// A blobstore failure for `key`.
    pub fn blob(key: &str, err: impl std::fmt::Display) -> Self {
        ApiError::Blob {
            key: key.to_string(),
            message: err.to_string(),
        }
    }

    /// CF's numeric code, title and HTTP status for this error.
    pub fn code_title_status(&self) -> (u32, &'static str, StatusCode) {
        match self {
            ApiError::NotAuthenticated => (10002, "CF-NotAuthenticated", StatusCode::UNAUTHORIZED),
            ApiError::InvalidAuthToken => (1000, "CF-InvalidAuthToken", StatusCode::UNAUTHORIZED),
            ApiError::NotAuthorized => (10003, "CF-NotAuthorized", StatusCode::FORBIDDEN),
            ApiError::ResourceNotFound(_) => (10010, "CF-ResourceNotFound", StatusCode::NOT_FOUND),
            ApiError::UnknownRequest => (10000, "CF-NotFound", StatusCode::NOT_FOUND),
            ApiError::MessageParse(_) => (1001, "CF-MessageParseError", StatusCode::BAD_REQUEST),
            ApiError::BadQueryParameter(_) => {
                (10005, "CF-BadQueryParameter", StatusCode::BAD_REQUEST)
            }
            ApiError::Unprocessable(_) => (
                10008,
                "CF-UnprocessableEntity",
                StatusCode::UNPROCESSABLE_ENTITY,
            ),
            ApiError::Uniqueness(_) => (
                10016,
                "CF-UniquenessError",
                StatusCode::UNPROCESSABLE_ENTITY,
            ),
            ApiError::InvalidRequest(_) => (10004, "CF-InvalidRequest", StatusCode::BAD_REQUEST),
            ApiError::FeatureDisabled(_) => (330002, "CF-FeatureDisabled", StatusCode::FORBIDDEN),
            ApiError::PayloadTooLarge(_) => {
                (10004, "CF-InvalidRequest", StatusCode::PAYLOAD_TOO_LARGE)
            }
            ApiError::Database(_) | ApiError::Blob { .. } | ApiError::Internal(_) => {
                (10001, "CF-ServerError", StatusCode::INTERNAL_SERVER_ERROR)
            }
        }
    }

    /// The error object as it appears in an envelope or a job's `errors`.
    pub fn to_json(&self) -> Value {
        let (code, title, status) = self.code_title_status();
        // Internal details stay in the server log, not in the response.
        let detail = if status.is_server_error() {
            "An unknown error occurred.".to_string()
        } else {
            self.to_string()
        };
        json!({"code": code, "title": title, "detail": detail})
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (_, _, status) = self.code_title_status();
        if status.is_server_error() {
            tracing::error!(error = %self, "api request failed");
        }
        (status, axum::Json(json!({"errors": [self.to_json()]}))).into_response()
    }
}

/// Shorthand for API results.
pub type ApiResult<T> = Result<T, ApiError>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_match_cloud_foundry() {
        let cases = [
            (
                ApiError::NotAuthenticated,
                10002,
                "CF-NotAuthenticated",
                401,
            ),
            (ApiError::InvalidAuthToken, 1000, "CF-InvalidAuthToken", 401),
            (ApiError::NotAuthorized, 10003, "CF-NotAuthorized", 403),
            (
                ApiError::not_found("App"),
                10010,
                "CF-ResourceNotFound",
                404,
            ),
            (
                ApiError::MessageParse("x".into()),
                1001,
                "CF-MessageParseError",
                400,
            ),
            (
                ApiError::BadQueryParameter("x".into()),
                10005,
                "CF-BadQueryParameter",
                400,
            ),
            (
                ApiError::Unprocessable("x".into()),
                10008,
                "CF-UnprocessableEntity",
                422,
            ),
            (
                ApiError::Uniqueness("x".into()),
                10016,
                "CF-UniquenessError",
                422,
            ),
        ];
        for (err, code, title, status) in cases {
            let (c, t, s) = err.code_title_status();
            assert_eq!((c, t, s.as_u16()), (code, title, status), "{err:?}");
        }
        assert_eq!(
            ApiError::not_found("App").to_json(),
            json!({"code":10010,"title":"CF-ResourceNotFound","detail":"App not found"})
        );
    }
}
