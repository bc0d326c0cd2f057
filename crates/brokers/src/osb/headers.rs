//! The OSB request headers Ingot sends and the one response header it reads:
//! `X-Broker-API-Originating-Identity` (who asked), and `Retry-After` on
//! `last_operation` (how long to wait before polling again).

use std::time::Duration;

use base64::Engine as _;

use super::OriginatingIdentity;

/// `X-Broker-API-Version`.
pub const VERSION_HEADER: &str = "X-Broker-API-Version";
/// `X-Broker-API-Originating-Identity`.
pub const ORIGINATING_IDENTITY_HEADER: &str = "X-Broker-API-Originating-Identity";
/// `X-Broker-API-Request-Identity`.
pub const REQUEST_IDENTITY_HEADER: &str = "X-Broker-API-Request-Identity";

/// The platform name of the originating identity; the spec requires it to
/// equal `context.platform`, which is always `cloudfoundry` for Ingot.
const PLATFORM: &str = "cloudfoundry";

impl OriginatingIdentity {
    /// The header value: `cloudfoundry <standard base64 of {"user_id":"…"}>`,
    /// as the OSB spec and CF's profile define it.
    pub fn header_value(&self) -> String {
        // serde_json escapes the id, so a hostile user name cannot break
        // the JSON object the broker decodes.
        let json = serde_json::json!({ "user_id": self.user_id }).to_string();
        format!(
            "{PLATFORM} {}",
            base64::engine::general_purpose::STANDARD.encode(json)
        )
    }
}

/// A `Retry-After` value in seconds. The spec recommends a duration over a
/// date, and an HTTP date would need a clock the broker and Ingot agree on,
/// so only the seconds form is honoured; anything else is ignored rather
/// than failing the poll.
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    value.trim().parse::<u64>().ok().map(Duration::from_secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(header: &str) -> (String, serde_json::Value) {
        let (platform, value) = header.split_once(' ').expect("two parts");
        let raw = base64::engine::general_purpose::STANDARD
            .decode(value)
            .expect("standard base64");
        (
            platform.to_string(),
            serde_json::from_slice(&raw).expect("JSON object"),
        )
    }

    #[test]
    fn originating_identity_is_platform_and_base64_json() {
        let cases = [
            "683ea748-3092-4ff4-b656-39cacc4d5360",
            "",
            "quote\" and \\ backslash",
            "ünïcode ✓",
        ];
        for user_id in cases {
            let header = OriginatingIdentity {
                user_id: user_id.to_string(),
            }
            .header_value();
            assert!(!header.contains('\n'), "{header:?}");
            let (platform, json) = decode(&header);
            assert_eq!(platform, "cloudfoundry");
            assert_eq!(json, serde_json::json!({ "user_id": user_id }));
        }
    }

    #[test]
    fn originating_identity_matches_the_spec_example_shape() {
        let header = OriginatingIdentity {
            user_id: "683ea748-3092-4ff4-b656-39cacc4d5360".into(),
        }
        .header_value();
        assert_eq!(
            header,
            "cloudfoundry eyJ1c2VyX2lkIjoiNjgzZWE3NDgtMzA5Mi00ZmY0LWI2NTYtMzljYWNjNGQ1MzYwIn0="
        );
    }

    #[test]
    fn retry_after_accepts_seconds_only() {
        let cases: [(&str, Option<u64>); 6] = [
            ("5", Some(5)),
            (" 30 ", Some(30)),
            ("0", Some(0)),
            ("-1", None),
            ("1.5", None),
            ("Wed, 21 Oct 2015 07:28:00 GMT", None),
        ];
        for (value, want) in cases {
            assert_eq!(
                parse_retry_after(value),
                want.map(Duration::from_secs),
                "{value:?}"
            );
        }
    }
}
