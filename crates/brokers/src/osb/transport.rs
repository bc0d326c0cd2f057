//! One HTTP exchange with a broker: builds the URL, sends the OSB headers
//! and basic auth, enforces the call's deadline over the whole exchange and
//! reads the body in chunks up to the size limit, so a broker can neither
//! hang a call nor make Ingot buffer an unbounded answer.

use std::time::Duration;

use reqwest::header::{ACCEPT, CONTENT_TYPE, RETRY_AFTER};
use reqwest::{Method, StatusCode, Url};
use tokio::time::Instant;

use super::headers::{
    parse_retry_after, ORIGINATING_IDENTITY_HEADER, REQUEST_IDENTITY_HEADER, VERSION_HEADER,
};
use super::{BrokerEndpoint, BrokerError, OriginatingIdentity, API_VERSION};

/// What to send.
pub(crate) struct Request<'a> {
    /// The call's name for errors and logs, e.g. `provision`.
    pub call: &'static str,
    pub method: Method,
    /// Path segments after the broker's base URL, unencoded.
    pub segments: &'a [&'a str],
    /// Query parameters, unencoded.
    pub query: &'a [(&'a str, &'a str)],
    /// A JSON body.
    pub body: Option<Vec<u8>>,
    /// Who asked; `None` for calls no user caused (catalog, polling, orphan
    /// mitigation), as the spec allows.
    pub identity: Option<&'a OriginatingIdentity>,
    /// Deadline of the whole exchange, body included.
    pub timeout: Duration,
    /// Largest body accepted.
    pub max_response_bytes: usize,
}

/// What came back.
#[derive(Debug)]
pub(crate) enum Exchange {
    /// No status line: the connection failed or the deadline passed first.
    NoAnswer {
        error: BrokerError,
        /// False only when the connection was never made, i.e. the broker
        /// cannot have acted on the request.
        may_have_arrived: bool,
    },
    /// A status line, and the body or why it could not be read.
    Answered(Answer),
}

/// A broker's answer.
#[derive(Debug)]
pub(crate) struct Answer {
    pub status: StatusCode,
    /// `Retry-After`, in seconds, when the broker sent one.
    pub retry_after: Option<Duration>,
    /// The whole body, or `TooLarge`/`Timeout`/`Unreachable` if reading it
    /// failed.
    pub body: Result<Vec<u8>, BrokerError>,
}

/// `base` + `/segments…` + `?query`, each part percent-encoded.
pub(crate) fn endpoint_url(
    base: &str,
    call: &'static str,
    segments: &[&str],
    query: &[(&str, &str)],
) -> Result<Url, BrokerError> {
    let invalid = |reason: String| BrokerError::Unreachable {
        url: base.to_string(),
        call,
        reason,
    };
    let mut url = Url::parse(base).map_err(|e| invalid(format!("invalid broker URL: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(invalid(format!(
            "invalid broker URL: scheme {:?} is not http or https",
            url.scheme()
        )));
    }
    url.path_segments_mut()
        .map_err(|()| invalid("invalid broker URL: it cannot have a path".to_string()))?
        .pop_if_empty()
        .extend(segments);
    url.set_query(None);
    if !query.is_empty() {
        url.query_pairs_mut().extend_pairs(query);
    }
    Ok(url)
}

/// Sends `request` to `broker` and reads the answer.
pub(crate) async fn exchange(
    http: &reqwest::Client,
    broker: &BrokerEndpoint,
    request: Request<'_>,
) -> Result<Exchange, BrokerError> {
    let call = request.call;
    let url = endpoint_url(&broker.url, call, request.segments, request.query)?;
    let request_id = uuid::Uuid::new_v4().to_string();
    let deadline = Instant::now() + request.timeout;

    let mut builder = http
        .request(request.method.clone(), url.clone())
        .timeout(request.timeout)
        .basic_auth(&broker.username, Some(&broker.password))
        .header(VERSION_HEADER, API_VERSION)
        .header(REQUEST_IDENTITY_HEADER, &request_id)
        .header(ACCEPT, "application/json");
    if let Some(identity) = request.identity {
        builder = builder.header(ORIGINATING_IDENTITY_HEADER, identity.header_value());
    }
    if let Some(body) = request.body {
        builder = builder.header(CONTENT_TYPE, "application/json").body(body);
    }
    tracing::debug!(broker = %broker.url, call, method = %request.method, %url, request_id, "broker call");

    let timeout_error = || BrokerError::Timeout {
        url: broker.url.clone(),
        call,
        after: request.timeout,
    };
    let sent = tokio::time::timeout_at(deadline, builder.send()).await;
    let mut response = match sent {
        Err(_elapsed) => {
            return Ok(Exchange::NoAnswer {
                error: timeout_error(),
                may_have_arrived: true,
            })
        }
        Ok(Err(e)) => {
            let may_have_arrived = !e.is_connect();
            return Ok(Exchange::NoAnswer {
                error: transport_error(e, &broker.url, call, request.timeout),
                may_have_arrived,
            });
        }
        Ok(Ok(response)) => response,
    };

    let status = response.status();
    let retry_after = response
        .headers()
        .get(RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(parse_retry_after);
    tracing::debug!(broker = %broker.url, call, request_id, status = status.as_u16(), "broker answered");

    let too_large = || BrokerError::TooLarge {
        url: broker.url.clone(),
        call,
        limit: request.max_response_bytes,
    };
    // A declared length over the limit is refused before reading anything.
    let declared_too_large = response
        .content_length()
        .is_some_and(|len| len > request.max_response_bytes as u64);
    let body = if declared_too_large {
        Err(too_large())
    } else {
        let mut body = Vec::new();
        loop {
            match tokio::time::timeout_at(deadline, response.chunk()).await {
                Err(_elapsed) => break Err(timeout_error()),
                Ok(Err(e)) => break Err(transport_error(e, &broker.url, call, request.timeout)),
                Ok(Ok(None)) => break Ok(body),
                Ok(Ok(Some(chunk))) => {
                    if body.len() + chunk.len() > request.max_response_bytes {
                        break Err(too_large());
                    }
                    body.extend_from_slice(&chunk);
                }
            }
        }
    };
    Ok(Exchange::Answered(Answer {
        status,
        retry_after,
        body,
    }))
}

/// A reqwest error as the variant the caller can act on, with the error's
/// whole chain of causes (reqwest's own message hides them).
fn transport_error(
    error: reqwest::Error,
    url: &str,
    call: &'static str,
    timeout: Duration,
) -> BrokerError {
    if error.is_timeout() {
        return BrokerError::Timeout {
            url: url.to_string(),
            call,
            after: timeout,
        };
    }
    let mut causes = Vec::new();
    let mut source = std::error::Error::source(&error);
    while let Some(cause) = source {
        causes.push(cause.to_string());
        source = cause.source();
    }
    let mut reason = error.without_url().to_string();
    for cause in causes {
        reason.push_str(": ");
        reason.push_str(&cause);
    }
    BrokerError::Unreachable {
        url: url.to_string(),
        call,
        reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_built_under_the_base_and_encoded() {
        type Case<'a> = (&'a str, &'a [&'a str], &'a [(&'a str, &'a str)], &'a str);
        let cases: [Case; 4] = [
            (
                "http://127.0.0.1:5000",
                &["v2", "catalog"],
                &[],
                "http://127.0.0.1:5000/v2/catalog",
            ),
            (
                "http://broker.example/prefix/",
                &["v2", "service_instances", "i 1/x"],
                &[("accepts_incomplete", "true")],
                "http://broker.example/prefix/v2/service_instances/i%201%2Fx?accepts_incomplete=true",
            ),
            (
                "https://b.example/base",
                &["v2", "service_instances", "abc", "last_operation"],
                &[("operation", "task=1&x y"), ("plan_id", "p")],
                "https://b.example/base/v2/service_instances/abc/last_operation?operation=task%3D1%26x+y&plan_id=p",
            ),
            (
                "http://b.example/?stale=1",
                &["v2", "catalog"],
                &[],
                "http://b.example/v2/catalog",
            ),
        ];
        for (base, segments, query, want) in cases {
            let url = endpoint_url(base, "test", segments, query).expect("valid");
            assert_eq!(url.as_str(), want, "{base}");
        }
    }

    #[test]
    fn bad_broker_urls_are_errors_naming_the_url() {
        for base in ["not a url", "ftp://b.example", "mailto:broker@example.com"] {
            match endpoint_url(base, "catalog", &["v2", "catalog"], &[]) {
                Err(BrokerError::Unreachable { url, call, reason }) => {
                    assert_eq!(url, base);
                    assert_eq!(call, "catalog");
                    assert!(reason.starts_with("invalid broker URL"), "{reason}");
                }
                other => panic!("{base}: {other:?}"),
            }
        }
    }
}
