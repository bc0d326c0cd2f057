//! Reading logs through the log-cache API (`GET {log_cache}/api/v1/read/<guid>`)
//! and printing them the way `cf logs` does.

use std::collections::BTreeMap;

use base64::Engine as _;
use reqwest::Method;
use serde::{Deserialize, Deserializer};

use crate::client::{decode, join, with_query, Client};
use crate::error::Result;

/// One loggregator v2 envelope in the protobuf JSON mapping.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct LogEnvelope {
    /// Nanoseconds since the Unix epoch (a string on the wire).
    #[serde(default, deserialize_with = "lenient_i64")]
    pub timestamp: i64,
    /// The app guid or component.
    #[serde(default)]
    pub source_id: String,
    /// The instance index.
    #[serde(default)]
    pub instance_id: String,
    /// Tags; `source_type` says `APP/PROC/WEB`, `STG`, `RTR`, …
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    /// The log line, for LOG envelopes.
    #[serde(default)]
    pub log: Option<LogMessage>,
}

/// The `log` of an envelope.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct LogMessage {
    /// The line, base64-encoded.
    #[serde(default)]
    pub payload: String,
    /// `OUT` or `ERR`.
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
}

impl LogEnvelope {
    /// The source type tag (`STG`, `APP/PROC/WEB`, …).
    pub fn source_type(&self) -> &str {
        self.tags
            .get("source_type")
            .map(String::as_str)
            .unwrap_or("")
    }

    /// The decoded log line (lossy UTF-8), without trailing newlines.
    pub fn text(&self) -> String {
        let Some(log) = &self.log else {
            return String::new();
        };
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(log.payload.as_bytes())
            .unwrap_or_else(|_| log.payload.clone().into_bytes());
        String::from_utf8_lossy(&bytes)
            .trim_end_matches(['\n', '\r'])
            .to_string()
    }

    /// The line as `cf logs` prints it:
    /// `   2026-11-25T11:31:22.00+0000 [APP/PROC/WEB/0] OUT hello`.
    pub fn format_line(
        &self,
        tz: &impl chrono::TimeZone<Offset = impl chrono::Offset + std::fmt::Display>,
    ) -> String {
        let secs = self.timestamp.div_euclid(1_000_000_000);
        let nanos = self.timestamp.rem_euclid(1_000_000_000) as u32;
        let when = match tz.timestamp_opt(secs, nanos).single() {
            Some(t) => format!("{}", t.format("%Y-%m-%dT%H:%M:%S%.3f%z")),
            None => self.timestamp.to_string(),
        };
        // cf shows hundredths of a second: drop the last millisecond digit.
        let when = match when.find('.') {
            Some(dot) if when.len() > dot + 4 => {
                format!("{}{}", &when[..dot + 3], &when[dot + 4..])
            }
            _ => when,
        };
        let kind = self
            .log
            .as_ref()
            .and_then(|l| l.kind.clone())
            .unwrap_or_else(|| "OUT".into());
        let header = format!(
            "   {when} [{}/{}] {kind} ",
            self.source_type(),
            self.instance_id
        );
        let pad = " ".repeat(header.len());
        self.text()
            .split('\n')
            .enumerate()
            .map(|(i, line)| {
                if i == 0 {
                    format!("{header}{line}")
                } else {
                    format!("{pad}{line}")
                }
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

fn lenient_i64<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<i64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Either {
        Num(i64),
        Str(String),
    }
    match Either::deserialize(d)? {
        Either::Num(n) => Ok(n),
        Either::Str(s) => s.parse().map_err(serde::de::Error::custom),
    }
}

#[derive(Deserialize)]
struct ReadAnswer {
    #[serde(default)]
    envelopes: Batch,
}

#[derive(Deserialize, Default)]
struct Batch {
    #[serde(default)]
    batch: Vec<LogEnvelope>,
}

/// What to read from log-cache.
#[derive(Debug, Clone, Default)]
pub struct ReadQuery {
    /// Only envelopes at or after this time (ns).
    pub start_time: Option<i64>,
    /// Only envelopes before this time (ns).
    pub end_time: Option<i64>,
    /// At most this many (log-cache caps at 1000).
    pub limit: Option<u32>,
    /// Newest first.
    pub descending: bool,
}

impl Client {
    /// Reads LOG envelopes of `source_id` (an app guid) from log-cache.
    pub async fn read_logs(&self, source_id: &str, query: &ReadQuery) -> Result<Vec<LogEnvelope>> {
        let base = join(
            &self.endpoints().log_cache,
            &format!("/api/v1/read/{source_id}"),
        );
        let start = query.start_time.map(|t| t.to_string());
        let end = query.end_time.map(|t| t.to_string());
        let limit = query.limit.map(|l| l.to_string());
        let mut params: Vec<(&str, &str)> = vec![("envelope_types", "LOG")];
        if let Some(s) = &start {
            params.push(("start_time", s));
        }
        if let Some(e) = &end {
            params.push(("end_time", e));
        }
        if let Some(l) = &limit {
            params.push(("limit", l));
        }
        if query.descending {
            params.push(("descending", "true"));
        }
        let url = with_query(&base, &params);
        let resp = self.send(Method::GET, &url, |r| r).await?;
        let answer: ReadAnswer = decode(Method::GET, &url, resp).await?;
        Ok(answer.envelopes.batch)
    }

    /// The most recent log lines (at most 1000), oldest first, as
    /// `cf logs --recent` shows them.
    pub async fn recent_logs(&self, source_id: &str) -> Result<Vec<LogEnvelope>> {
        let mut limit = 1000;
        loop {
            let query = ReadQuery {
                limit: Some(limit),
                descending: true,
                ..ReadQuery::default()
            };
            match self.read_logs(source_id, &query).await {
                Ok(mut envs) => {
                    envs.sort_by_key(|e| e.timestamp);
                    return Ok(envs);
                }
                // Log-cache answers 429 when the read is too large: halve it.
                Err(e) if e.status() == Some(429) && limit > 1 => limit /= 2,
                Err(e) => return Err(e),
            }
        }
    }
}

/// Follows a log stream by polling with an advancing `start_time`.
#[derive(Debug)]
pub struct LogTail {
    source_id: String,
    next_start: i64,
    seen_at_edge: Vec<(i64, String, String)>,
}

impl LogTail {
    /// Starts following `source_id` from `start_time` (ns since the epoch).
    pub fn new(source_id: &str, start_time: i64) -> LogTail {
        LogTail {
            source_id: source_id.to_string(),
            next_start: start_time,
            seen_at_edge: Vec::new(),
        }
    }

    /// The envelopes that arrived since the last call, oldest first.
    pub async fn poll(&mut self, client: &Client) -> Result<Vec<LogEnvelope>> {
        let query = ReadQuery {
            start_time: Some(self.next_start),
            limit: Some(1000),
            ..ReadQuery::default()
        };
        let mut envs = client.read_logs(&self.source_id, &query).await?;
        envs.sort_by_key(|e| e.timestamp);
        // start_time is inclusive: envelopes at exactly the last timestamp
        // come back again and must not be printed twice.
        let fresh: Vec<LogEnvelope> = envs
            .into_iter()
            .filter(|e| {
                !(e.timestamp == self.next_start
                    && self.seen_at_edge.contains(&(
                        e.timestamp,
                        e.instance_id.clone(),
                        e.log
                            .as_ref()
                            .map(|l| l.payload.clone())
                            .unwrap_or_default(),
                    )))
            })
            .collect();
        if let Some(last) = fresh.last() {
            let last_ts = last.timestamp;
            if last_ts != self.next_start {
                self.seen_at_edge.clear();
            }
            self.next_start = last_ts;
            for e in fresh.iter().filter(|e| e.timestamp == last_ts) {
                self.seen_at_edge.push((
                    e.timestamp,
                    e.instance_id.clone(),
                    e.log
                        .as_ref()
                        .map(|l| l.payload.clone())
                        .unwrap_or_default(),
                ));
            }
        }
        Ok(fresh)
    }
}

/// Now, in nanoseconds since the Unix epoch.
pub fn now_nanos() -> i64 {
    chrono::Utc::now().timestamp_nanos_opt().unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn envelope(ts: i64, source_type: &str, text: &str) -> LogEnvelope {
        LogEnvelope {
            timestamp: ts,
            source_id: "app".into(),
            instance_id: "0".into(),
            tags: BTreeMap::from([("source_type".to_string(), source_type.to_string())]),
            log: Some(LogMessage {
                payload: base64::engine::general_purpose::STANDARD.encode(text),
                kind: Some("OUT".into()),
            }),
        }
    }

    #[test]
    fn formats_a_line_like_cf() {
        // 2026-11-25T11:31:22.456Z
        let ts = 1_795_606_282_456_000_000;
        let line = envelope(ts, "APP/PROC/WEB", "hello\n").format_line(&chrono::Utc);
        assert_eq!(
            line,
            "   2026-11-25T11:31:22.45+0000 [APP/PROC/WEB/0] OUT hello"
        );
    }

    #[test]
    fn multi_line_payloads_are_indented() {
        let line = envelope(0, "STG", "a\nb").format_line(&chrono::Utc);
        let lines: Vec<&str> = line.lines().collect();
        assert_eq!(lines.len(), 2);
        assert!(lines[0].ends_with("[STG/0] OUT a"));
        assert_eq!(lines[1].trim(), "b");
        assert_eq!(lines[1].len(), lines[0].len());
    }

    #[test]
    fn parses_the_wire_shape_with_string_timestamps() {
        let json = r#"{"envelopes":{"batch":[{"timestamp":"1700000000000000001","source_id":"g","instance_id":"1","tags":{"source_type":"RTR"},"log":{"payload":"aGk=","type":"ERR"}}]}}"#;
        let answer: ReadAnswer = serde_json::from_str(json).expect("parses");
        let env = &answer.envelopes.batch[0];
        assert_eq!(env.timestamp, 1_700_000_000_000_000_001);
        assert_eq!(env.text(), "hi");
        assert_eq!(env.source_type(), "RTR");
    }
}
