//! Sticky sessions, as gorouter does them: when an app sets a `JSESSIONID`
//! cookie the router adds `__VCAP_ID__=<instance guid>`, and a request
//! carrying both cookies goes back to that instance while it is routable.

use http::header::{self, HeaderMap, HeaderValue};

/// The session cookie apps set (Java servlet containers' name).
const SESSION_COOKIE: &str = "JSESSIONID";
/// The router's cookie naming the instance that holds the session.
const VCAP_COOKIE: &str = "__VCAP_ID__";

/// The instance guid a request asks to stick to: its `__VCAP_ID__` cookie,
/// if it also carries a `JSESSIONID` cookie.
pub(crate) fn requested_instance(headers: &HeaderMap) -> Option<String> {
    let mut session = false;
    let mut vcap_id = None;
    for value in headers.get_all(header::COOKIE) {
        let Ok(value) = value.to_str() else { continue };
        for pair in value.split(';') {
            let Some((name, cookie_value)) = pair.trim().split_once('=') else {
                continue;
            };
            match name.trim() {
                SESSION_COOKIE => session = true,
                VCAP_COOKIE if !cookie_value.trim().is_empty() => {
                    vcap_id = Some(cookie_value.trim().trim_matches('"').to_owned());
                }
                _ => {}
            }
        }
    }
    vcap_id.filter(|_| session)
}

/// The `__VCAP_ID__` cookie to add to a response from `instance_guid`:
/// mirroring the lifetime and security attributes of a `JSESSIONID` the app
/// sets, or a plain one when the request stuck to an instance that is gone.
pub(crate) fn response_cookie(
    response_headers: &HeaderMap,
    requested: Option<&str>,
    instance_guid: &str,
) -> Option<HeaderValue> {
    let session_cookie = response_headers
        .get_all(header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| {
            v.split_once('=')
                .is_some_and(|(name, _)| name.trim() == SESSION_COOKIE)
        });
    let mut cookie = format!("{VCAP_COOKIE}={instance_guid}; Path=/; HttpOnly");
    match session_cookie {
        Some(session) => {
            for attribute in session.split(';').skip(1) {
                let attribute = attribute.trim();
                let name = attribute
                    .split_once('=')
                    .map_or(attribute, |(n, _)| n)
                    .trim()
                    .to_ascii_lowercase();
                if matches!(
                    name.as_str(),
                    "max-age" | "expires" | "secure" | "samesite" | "partitioned"
                ) {
                    cookie.push_str("; ");
                    cookie.push_str(attribute);
                }
            }
        }
        None if requested.is_some_and(|r| r != instance_guid) => {}
        None => return None,
    }
    HeaderValue::from_str(&cookie).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(name: header::HeaderName, values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(
                name.clone(),
                HeaderValue::from_str(v).expect("valid header"),
            );
        }
        h
    }

    #[test]
    fn sticks_only_with_both_cookies() {
        let both = headers(header::COOKIE, &["JSESSIONID=abc; __VCAP_ID__=inst-1"]);
        assert_eq!(requested_instance(&both).as_deref(), Some("inst-1"));
        let split = headers(header::COOKIE, &["__VCAP_ID__=inst-2", "JSESSIONID=abc"]);
        assert_eq!(requested_instance(&split).as_deref(), Some("inst-2"));
        let vcap_only = headers(header::COOKIE, &["__VCAP_ID__=inst-1"]);
        assert_eq!(requested_instance(&vcap_only), None);
    }

    #[test]
    fn vcap_cookie_mirrors_the_session_cookie() {
        let set = headers(
            header::SET_COOKIE,
            &[
                "other=1",
                "JSESSIONID=xyz; Path=/app; Max-Age=60; Secure; SameSite=Lax",
            ],
        );
        assert_eq!(
            response_cookie(&set, None, "g1")
                .as_ref()
                .and_then(|v| v.to_str().ok()),
            Some("__VCAP_ID__=g1; Path=/; HttpOnly; Max-Age=60; Secure; SameSite=Lax")
        );
        let none = HeaderMap::new();
        assert_eq!(response_cookie(&none, None, "g1"), None);
        assert_eq!(response_cookie(&none, Some("g1"), "g1"), None);
        assert_eq!(
            response_cookie(&none, Some("gone"), "g1")
                .as_ref()
                .and_then(|v| v.to_str().ok()),
            Some("__VCAP_ID__=g1; Path=/; HttpOnly")
        );
    }
}
