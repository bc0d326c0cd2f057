//! `ingot firehose`: a small nozzle. It reads the whole stream of logs and
//! metrics from the RLP gateway (server-sent events of loggregator v2
//! envelopes; needs the `doppler.firehose` scope) and prints each envelope,
//! or forwards the stream as JSON lines for another program to consume.

use std::io::Write as _;

use anyhow::anyhow;
use clap::Args;
use futures::StreamExt as _;
use serde_json::Value;

use super::{OrExplain as _, Session};

/// Flags of `firehose`.
#[derive(Args)]
pub struct FirehoseArgs {
    /// Readers with the same shard id split the stream between them.
    #[arg(long, default_value = "ingot-firehose")]
    shard_id: String,
    /// Only these envelope types: log, counter, gauge, timer, event
    /// (comma-separated; all when omitted).
    #[arg(long, value_delimiter = ',')]
    types: Vec<String>,
    /// Print each envelope as one JSON line (for piping into other tools).
    #[arg(long)]
    json: bool,
    /// Stop after this many envelopes.
    #[arg(short = 'n', long)]
    count: Option<u64>,
}

const TYPES: &[&str] = &["log", "counter", "gauge", "timer", "event"];

/// One envelope as a line a person reads.
fn describe(envelope: &Value) -> String {
    let source = envelope["source_id"].as_str().unwrap_or("-");
    let instance = envelope["instance_id"].as_str().unwrap_or("");
    let tag = envelope["tags"]["source_type"].as_str().unwrap_or("");
    let what = if let Some(log) = envelope.get("log") {
        let payload = log["payload"].as_str().unwrap_or("");
        let text = base64_text(payload);
        format!(
            "{} {}",
            log["type"].as_str().unwrap_or("OUT"),
            text.trim_end()
        )
    } else if let Some(c) = envelope.get("counter") {
        format!(
            "counter {} total={} delta={}",
            c["name"].as_str().unwrap_or(""),
            c["total"],
            c["delta"]
        )
    } else if let Some(g) = envelope.get("gauge") {
        let metrics = g["metrics"]
            .as_object()
            .map(|m| {
                m.iter()
                    .map(|(k, v)| format!("{k}={}", v["value"]))
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .unwrap_or_default();
        format!("gauge {metrics}")
    } else if let Some(t) = envelope.get("timer") {
        format!(
            "timer {} {}..{}",
            t["name"].as_str().unwrap_or(""),
            t["start"],
            t["stop"]
        )
    } else if let Some(e) = envelope.get("event") {
        format!(
            "event {}: {}",
            e["title"].as_str().unwrap_or(""),
            e["body"].as_str().unwrap_or("")
        )
    } else {
        envelope.to_string()
    };
    format!("{source} [{tag}/{instance}] {what}")
}

fn base64_text(payload: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD
        .decode(payload)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_else(|_| payload.to_string())
}

/// `ingot firehose`.
pub(crate) async fn firehose(args: FirehoseArgs) -> anyhow::Result<()> {
    for t in &args.types {
        if !TYPES.contains(&t.as_str()) {
            return Err(anyhow!(
                "unknown envelope type {t}: use {}",
                TYPES.join(", ")
            ));
        }
    }
    let mut session = Session::open()?;
    let client = session.client();
    let root: Value = client
        .get_json("/")
        .await
        .or_explain("cannot read the platform's links")?;
    let base = root["links"]["log_stream"]["href"]
        .as_str()
        .ok_or_else(|| anyhow!("this platform links no log stream (links.log_stream)"))?
        .trim_end_matches('/')
        .to_string();
    let mut query: Vec<String> = if args.types.is_empty() {
        TYPES.iter().map(|t| t.to_string()).collect()
    } else {
        args.types.clone()
    };
    query.push(format!("shard_id={}", args.shard_id));
    let url = format!("{base}/v2/read?{}", query.join("&"));
    let response = client
        .send(reqwest::Method::GET, &url, |r| {
            r.header("Accept", "text/event-stream")
        })
        .await
        .map_err(|e| {
            if e.status() == Some(403) {
                anyhow!(
                    "reading the firehose needs the doppler.firehose scope (an admin login has it)"
                )
            } else {
                super::explain("cannot open the firehose", e)
            }
        })?;
    session.keep_tokens();
    if !args.json {
        eprintln!(
            "Reading the firehose as shard {} (Ctrl-C to stop)...",
            args.shard_id
        );
    }
    let mut stream = response.bytes_stream();
    let mut pending = String::new();
    let mut seen = 0u64;
    let stdout = std::io::stdout();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| anyhow!("the firehose stream broke: {e}"))?;
        pending.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = pending.find("\n\n") {
            let event: String = pending.drain(..end + 2).collect();
            for data in event.lines().filter_map(|l| l.strip_prefix("data: ")) {
                let Ok(batch) = serde_json::from_str::<Value>(data) else {
                    continue;
                };
                for envelope in batch["batch"].as_array().into_iter().flatten() {
                    let mut out = stdout.lock();
                    if args.json {
                        writeln!(out, "{envelope}")?;
                    } else {
                        writeln!(out, "{}", describe(envelope))?;
                    }
                    seen += 1;
                    if args.count.is_some_and(|n| seen >= n) {
                        return Ok(());
                    }
                }
            }
            if event.contains("event: closing") {
                return Err(anyhow!(
                    "the platform closed the firehose: {}",
                    event.trim()
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelopes_read_as_one_line() {
        let log = serde_json::json!({"source_id": "app", "instance_id": "0",
            "tags": {"source_type": "APP/PROC/WEB"}, "log": {"payload": "aGk=", "type": "OUT"}});
        assert_eq!(describe(&log), "app [APP/PROC/WEB/0] OUT hi");
        let gauge = serde_json::json!({"source_id": "app", "instance_id": "1", "tags": {},
            "gauge": {"metrics": {"cpu": {"unit": "percentage", "value": 1.5}}}});
        assert_eq!(describe(&gauge), "app [/1] gauge cpu=1.5");
    }
}
