//! The `RTR` access log line, in gorouter's format, one per request.

use std::fmt::Write as _;
use std::net::SocketAddr;

use chrono::{DateTime, SecondsFormat, Utc};

/// Everything an access line reports about one request.
#[derive(Debug, Clone)]
pub(crate) struct AccessRecord {
    /// The `Host` header as received.
    pub host: String,
    /// When the request arrived.
    pub started_at: DateTime<Utc>,
    pub method: String,
    /// Path and query as received.
    pub path: String,
    /// `HTTP/1.1`, `HTTP/1.0`.
    pub proto: String,
    pub status: u16,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub referer: Option<String>,
    pub user_agent: Option<String>,
    pub client_addr: SocketAddr,
    pub backend_addr: Option<SocketAddr>,
    /// As sent to the backend (client's address appended).
    pub x_forwarded_for: Option<String>,
    pub x_forwarded_proto: Option<String>,
    pub vcap_request_id: String,
    /// Seconds from the request's arrival to the response's last byte.
    pub response_time: f64,
    /// The part of `response_time` spent in the router, not the backend.
    pub gorouter_time: f64,
    pub app_id: Option<String>,
    pub app_index: Option<u32>,
    pub instance_id: Option<String>,
    pub router_error: Option<&'static str>,
}

/// A quoted field: `-` when empty; embedded quotes escaped so the line
/// stays parseable.
fn quoted(out: &mut String, value: Option<&str>) {
    let value = value.filter(|v| !v.is_empty()).unwrap_or("-");
    out.push('"');
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' | '\r' => out.push(' '),
            c => out.push(c),
        }
    }
    out.push('"');
}

impl AccessRecord {
    /// The line, e.g.
    /// `app.example - [2024-01-01T00:00:00.000000000Z] "GET / HTTP/1.1" 200 0 5 "-" "curl/8" "1.2.3.4:5" "10.0.0.2:8080" x_forwarded_for:"1.2.3.4" x_forwarded_proto:"http" vcap_request_id:"…" response_time:0.001000 gorouter_time:0.000100 app_id:"…" app_index:"0" instance_id:"…" x_cf_routererror:"-"`.
    pub(crate) fn line(&self) -> String {
        let mut out = String::with_capacity(512);
        out.push_str(if self.host.is_empty() {
            "-"
        } else {
            &self.host
        });
        let _ = write!(
            out,
            " - [{}] ",
            self.started_at.to_rfc3339_opts(SecondsFormat::Nanos, true)
        );
        quoted(
            &mut out,
            Some(&format!("{} {} {}", self.method, self.path, self.proto)),
        );
        let _ = write!(
            out,
            " {} {} {} ",
            self.status, self.bytes_in, self.bytes_out
        );
        quoted(&mut out, self.referer.as_deref());
        out.push(' ');
        quoted(&mut out, self.user_agent.as_deref());
        out.push(' ');
        quoted(&mut out, Some(&self.client_addr.to_string()));
        out.push(' ');
        quoted(
            &mut out,
            self.backend_addr.map(|a| a.to_string()).as_deref(),
        );
        out.push_str(" x_forwarded_for:");
        quoted(&mut out, self.x_forwarded_for.as_deref());
        out.push_str(" x_forwarded_proto:");
        quoted(&mut out, self.x_forwarded_proto.as_deref());
        out.push_str(" vcap_request_id:");
        quoted(&mut out, Some(&self.vcap_request_id));
        let _ = write!(
            out,
            " response_time:{:.6} gorouter_time:{:.6} app_id:",
            self.response_time, self.gorouter_time
        );
        quoted(&mut out, self.app_id.as_deref());
        out.push_str(" app_index:");
        quoted(&mut out, self.app_index.map(|i| i.to_string()).as_deref());
        out.push_str(" instance_id:");
        quoted(&mut out, self.instance_id.as_deref());
        out.push_str(" x_cf_routererror:");
        quoted(&mut out, self.router_error);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn line_matches_gorouters_format() {
        let record = AccessRecord {
            host: "php-info.cfapps.io".into(),
            started_at: Utc
                .timestamp_opt(1_595_533_619, 42_000_000)
                .single()
                .unwrap_or_default(),
            method: "GET".into(),
            path: "/?a=1".into(),
            proto: "HTTP/1.1".into(),
            status: 200,
            bytes_in: 0,
            bytes_out: 399,
            referer: None,
            user_agent: Some("curl/7.64.1".into()),
            client_addr: SocketAddr::from(([10, 10, 66, 179], 28634)),
            backend_addr: Some(SocketAddr::from(([10, 10, 148, 45], 61300))),
            x_forwarded_for: Some("50.4.153.215, 10.10.66.179".into()),
            x_forwarded_proto: Some("https".into()),
            vcap_request_id: "c5794050-ac30-4911-5118-c5a8a4e8d09f".into(),
            response_time: 0.101468,
            gorouter_time: 0.000104,
            app_id: Some("5f362051".into()),
            app_index: Some(0),
            instance_id: Some("inst-1".into()),
            router_error: None,
        };
        assert_eq!(
            record.line(),
            "php-info.cfapps.io - [2020-07-23T19:46:59.042000000Z] \"GET /?a=1 HTTP/1.1\" 200 0 399 \"-\" \"curl/7.64.1\" \"10.10.66.179:28634\" \"10.10.148.45:61300\" x_forwarded_for:\"50.4.153.215, 10.10.66.179\" x_forwarded_proto:\"https\" vcap_request_id:\"c5794050-ac30-4911-5118-c5a8a4e8d09f\" response_time:0.101468 gorouter_time:0.000104 app_id:\"5f362051\" app_index:\"0\" instance_id:\"inst-1\" x_cf_routererror:\"-\""
        );
    }

    #[test]
    fn quotes_in_fields_are_escaped() {
        let mut s = String::new();
        quoted(&mut s, Some("say \"hi\""));
        assert_eq!(s, "\"say \\\"hi\\\"\"");
    }
}
