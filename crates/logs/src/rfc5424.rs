//! Envelopes as RFC 5424 syslog messages, the way Cloud Foundry's syslog
//! agent writes them to drains (loggregator-agent-release's converter):
//!
//! ```text
//! <14>1 2017-10-05T15:00:55.406587+00:00 org.space.app <app guid> [APP/PROC/WEB/0] - [tags@47450 source_type="APP/PROC/WEB"] the line
//! ```
//!
//! PRI 14 (user.info) for standard output and metrics, 11 (user.err) for
//! standard error; the timestamp in UTC with a numeric offset and up to six
//! fraction digits, trailing zeros trimmed (Go's `.999999-07:00` layout);
//! HOSTNAME `org.space.app` from sanitised names; APP-NAME the source id;
//! PROCID `[SOURCE_TYPE/INSTANCE]`; MSGID `-`; the envelope's tags, sorted,
//! as `[tags@47450 …]`; the payload without NUL bytes, ending in a newline.
//! Counters, gauges and timers carry `[counter@47450 …]` /
//! `[gauge@47450 …]` (one message per gauge metric) /
//! `[timer@47450 name start stop]` and an empty message.
//!
//! One deliberate difference: parameter values are escaped as RFC 5424
//! §6.3.3 requires (`"`, `\` and `]` get a backslash); CF writes them raw,
//! which only matters for values containing those characters.

use std::collections::BTreeMap;

use crate::envelope::{Envelope, LogKind, Message};

/// The structured-data id suffix: the Cloud Foundry Foundation's IANA
/// private enterprise number.
const ENTERPRISE_ID: &str = "47450";

/// An app's names, from which a drain message's HOSTNAME
/// (`organization.space.app`) and its name tags are made.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AppMeta {
    /// The app's name.
    pub app_name: String,
    /// Its space's name.
    pub space_name: String,
    /// Its organization's name.
    pub organization_name: String,
    /// Its space's guid (tag `space_id`; omitted when empty).
    pub space_guid: String,
    /// Its organization's guid (tag `organization_id`; omitted when empty).
    pub organization_guid: String,
}

impl AppMeta {
    /// Names only, guids left empty.
    pub fn named(organization: &str, space: &str, app: &str) -> Self {
        Self {
            app_name: app.to_owned(),
            space_name: space.to_owned(),
            organization_name: organization.to_owned(),
            ..Self::default()
        }
    }

    /// The HOSTNAME field: `org.space.app`, each part sanitised as CF does
    /// (whitespace runs become `-`, anything but `[-a-zA-Z0-9]` is removed,
    /// trailing dashes are cut) and cut to 63 bytes; `-` when no name is known.
    pub fn hostname(&self) -> String {
        if self.organization_name.is_empty()
            && self.space_name.is_empty()
            && self.app_name.is_empty()
        {
            return "-".to_owned();
        }
        let part = |name: &str| {
            let mut s = sanitize(name);
            s.truncate(63);
            s
        };
        format!(
            "{}.{}.{}",
            part(&self.organization_name),
            part(&self.space_name),
            part(&self.app_name)
        )
    }

    /// The tags an app's envelopes carry on a real cell, as far as Ingot
    /// knows them: names and guids of the app, space and organization.
    fn tags(&self, envelope: &Envelope) -> BTreeMap<String, String> {
        let mut tags = BTreeMap::new();
        let mut put = |k: &str, v: &str| {
            if !v.is_empty() {
                tags.insert(k.to_owned(), v.to_owned());
            }
        };
        put("app_id", &envelope.source_id);
        put("app_name", &self.app_name);
        put("instance_id", &envelope.instance_id);
        put("organization_id", &self.organization_guid);
        put("organization_name", &self.organization_name);
        put("source_id", &envelope.source_id);
        put("space_id", &self.space_guid);
        put("space_name", &self.space_name);
        tags
    }
}

/// CF's hostname sanitising (see [`AppMeta::hostname`]).
fn sanitize(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut in_space = false;
    for c in name.chars() {
        if c.is_whitespace() {
            if !in_space {
                out.push('-');
            }
            in_space = true;
            continue;
        }
        in_space = false;
        if c.is_ascii_alphanumeric() || c == '-' {
            out.push(c);
        }
    }
    while out.ends_with('-') {
        out.pop();
    }
    out
}

/// The TIMESTAMP field: UTC, `+00:00`, microseconds with trailing zeros
/// trimmed (none at all on a whole second).
pub fn timestamp(nanos: i64) -> String {
    let secs = nanos.div_euclid(1_000_000_000);
    let sub = nanos.rem_euclid(1_000_000_000);
    let Some(at) = chrono::DateTime::from_timestamp(secs, 0) else {
        return "-".to_owned();
    };
    let mut out = at.format("%Y-%m-%dT%H:%M:%S").to_string();
    // Go's `.999999` layout truncates to microseconds and trims zeros.
    let micros = sub / 1_000;
    if micros > 0 {
        let digits = format!("{micros:06}");
        out.push('.');
        out.push_str(digits.trim_end_matches('0'));
    }
    out.push_str("+00:00");
    out
}

/// The PROCID field: `[SOURCE_TYPE/INSTANCE]`, the type upper-cased with
/// spaces as dashes, `[SOURCE_TYPE]` without an instance.
pub fn process_id(source_type: &str, instance_id: &str) -> String {
    let kind = source_type.to_uppercase().replace(' ', "-");
    if instance_id.is_empty() {
        format!("[{kind}]")
    } else {
        format!("[{kind}/{instance_id}]")
    }
}

fn escape_param(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        if matches!(c, '"' | '\\' | ']') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

fn tags_element(tags: &BTreeMap<String, String>) -> String {
    if tags.is_empty() {
        return String::new();
    }
    let params: Vec<String> = tags
        .iter()
        .map(|(k, v)| format!("{k}=\"{}\"", escape_param(v)))
        .collect();
    format!("[tags@{ENTERPRISE_ID} {}]", params.join(" "))
}

fn nil_if_empty(s: &str) -> &str {
    if s.is_empty() {
        "-"
    } else {
        s
    }
}

/// `envelope` as the RFC 5424 messages a CF drain receives (one for a log
/// line or counter, one per metric for a gauge), each ending in a newline,
/// without transport framing. `meta` supplies the HOSTNAME and name tags.
pub fn format_envelope(envelope: &Envelope, meta: &AppMeta) -> Vec<Vec<u8>> {
    let hostname = meta.hostname();
    let app_name = nil_if_empty(&envelope.source_id).to_owned();
    let ts = timestamp(envelope.timestamp);
    let mut tags = meta.tags(envelope);
    // The envelope's own tags (source_type above all) win over derived ones.
    for (k, v) in &envelope.tags {
        tags.insert(k.clone(), v.clone());
    }
    let tags = tags_element(&tags);
    match &envelope.message {
        Message::Log { payload, kind } => {
            let pri = match kind {
                LogKind::Out => 14,
                LogKind::Err => 11,
            };
            let procid = process_id(
                envelope.source_type().unwrap_or_default(),
                &envelope.instance_id,
            );
            let mut msg =
                format!("<{pri}>1 {ts} {hostname} {app_name} {procid} - {tags} ").into_bytes();
            msg.extend(payload.iter().filter(|&&b| b != 0));
            if msg.last() != Some(&b'\n') {
                msg.push(b'\n');
            }
            vec![msg]
        }
        Message::Counter { name, delta, total } => {
            let sd = format!(
                "[counter@{ENTERPRISE_ID} name=\"{}\" total=\"{total}\" delta=\"{delta}\"]",
                escape_param(name)
            );
            vec![metric_message(
                &ts, &hostname, &app_name, envelope, &sd, &tags,
            )]
        }
        Message::Timer { name, start, stop } => {
            let sd = format!(
                "[timer@{ENTERPRISE_ID} name=\"{}\" start=\"{start}\" stop=\"{stop}\"]",
                escape_param(name)
            );
            vec![metric_message(
                &ts, &hostname, &app_name, envelope, &sd, &tags,
            )]
        }
        Message::Gauge { metrics } => metrics
            .iter()
            .map(|(name, g)| {
                let sd = format!(
                    "[gauge@{ENTERPRISE_ID} name=\"{}\" value=\"{}\" unit=\"{}\"]",
                    escape_param(name),
                    g.value,
                    escape_param(&g.unit)
                );
                metric_message(&ts, &hostname, &app_name, envelope, &sd, &tags)
            })
            .collect(),
    }
}

fn metric_message(
    ts: &str,
    hostname: &str,
    app_name: &str,
    envelope: &Envelope,
    sd: &str,
    tags: &str,
) -> Vec<u8> {
    format!(
        "<14>1 {ts} {hostname} {app_name} [{}] - {sd}{tags} \n",
        envelope.instance_id
    )
    .into_bytes()
}

/// `message` framed for a TCP or TLS drain by octet counting (RFC 6587
/// §3.4.1): its length in decimal, a space, the message.
pub fn octet_counted(message: &[u8]) -> Vec<u8> {
    let mut framed = format!("{} ", message.len()).into_bytes();
    framed.extend_from_slice(message);
    framed
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{GaugeValue, Tags};

    fn line(source_type: &str, instance: &str, text: &str, kind: LogKind) -> Envelope {
        let mut e = Envelope::log("test-app-id", instance, source_type, text, kind);
        e.timestamp = 12_345_000;
        e
    }

    fn one(envelope: &Envelope, meta: &AppMeta) -> String {
        let msgs = format_envelope(envelope, meta);
        assert_eq!(msgs.len(), 1, "{msgs:?}");
        String::from_utf8_lossy(&msgs[0]).into_owned()
    }

    #[test]
    fn a_log_line_is_written_as_cfs_syslog_agent_writes_it() {
        let e = line("MY TASK", "2", "just a test", LogKind::Out);
        assert_eq!(
            one(&e, &AppMeta::default()),
            "<14>1 1970-01-01T00:00:00.012345+00:00 - test-app-id [MY-TASK/2] - \
             [tags@47450 app_id=\"test-app-id\" instance_id=\"2\" source_id=\"test-app-id\" source_type=\"MY TASK\"] just a test\n"
        );
        let e = line("APP/PROC/WEB", "0", "oops", LogKind::Err);
        let meta = AppMeta::named("some_org", "some space", "some_app--");
        assert_eq!(
            one(&e, &meta),
            "<11>1 1970-01-01T00:00:00.012345+00:00 someorg.some-space.someapp test-app-id [APP/PROC/WEB/0] - \
             [tags@47450 app_id=\"test-app-id\" app_name=\"some_app--\" instance_id=\"0\" organization_name=\"some_org\" \
             source_id=\"test-app-id\" source_type=\"APP/PROC/WEB\" space_name=\"some space\"] oops\n"
        );
    }

    #[test]
    fn hostname_parts_are_cut_to_63_bytes() {
        let meta = AppMeta::named(&"a".repeat(100), &"b".repeat(100), &"c".repeat(100));
        assert_eq!(
            meta.hostname(),
            format!("{}.{}.{}", "a".repeat(63), "b".repeat(63), "c".repeat(63))
        );
    }

    #[test]
    fn timestamps_keep_microseconds_and_trim_zeros() {
        assert_eq!(timestamp(0), "1970-01-01T00:00:00+00:00");
        assert_eq!(timestamp(12_345_678), "1970-01-01T00:00:00.012345+00:00");
        assert_eq!(timestamp(500_000_000), "1970-01-01T00:00:00.5+00:00");
        assert_eq!(
            timestamp(1_507_215_655_406_587_000),
            "2017-10-05T15:00:55.406587+00:00"
        );
    }

    #[test]
    fn nul_bytes_are_removed_a_newline_ends_it_and_tag_values_are_escaped() {
        let mut e = line("APP/PROC/WEB", "", "a\0b\n", LogKind::Out);
        e.tags.insert("q".into(), "say \"hi\"]".into());
        let got = one(&e, &AppMeta::default());
        assert!(got.ends_with("q=\"say \\\"hi\\\"\\]\" source_id=\"test-app-id\" source_type=\"APP/PROC/WEB\"] ab\n"), "{got}");
        assert!(got.contains(" [APP/PROC/WEB] - "), "{got}");
    }

    #[test]
    fn timers_carry_name_start_and_stop() {
        let mut t = Envelope::timer("test-app-id", "1", "http", 10, 20, Tags::new());
        t.timestamp = 12_345_000;
        assert_eq!(
            one(&t, &AppMeta::default()),
            "<14>1 1970-01-01T00:00:00.012345+00:00 - test-app-id [1] - \
             [timer@47450 name=\"http\" start=\"10\" stop=\"20\"]\
             [tags@47450 app_id=\"test-app-id\" instance_id=\"1\" source_id=\"test-app-id\"] \n"
        );
    }

    #[test]
    fn counters_and_gauges_carry_their_structured_data() {
        let mut c = line("x", "1", "", LogKind::Out);
        c.tags.clear();
        c.message = Message::Counter {
            name: "some-counter".into(),
            delta: 1,
            total: 99,
        };
        assert_eq!(
            one(&c, &AppMeta::default()),
            "<14>1 1970-01-01T00:00:00.012345+00:00 - test-app-id [1] - \
             [counter@47450 name=\"some-counter\" total=\"99\" delta=\"1\"]\
             [tags@47450 app_id=\"test-app-id\" instance_id=\"1\" source_id=\"test-app-id\"] \n"
        );
        let mut g = Envelope::gauge(
            "test-app-id",
            "1",
            [
                ("cpu", GaugeValue::new("percentage", 0.23)),
                ("disk", GaugeValue::new("bytes", 1234.0)),
            ],
        );
        g.timestamp = 12_345_000;
        let msgs: Vec<String> = format_envelope(&g, &AppMeta::default())
            .iter()
            .map(|m| String::from_utf8_lossy(m).into_owned())
            .collect();
        assert_eq!(msgs.len(), 2);
        assert!(msgs[0].contains("[gauge@47450 name=\"cpu\" value=\"0.23\" unit=\"percentage\"]"));
        assert!(msgs[1].contains("[gauge@47450 name=\"disk\" value=\"1234\" unit=\"bytes\"]"));
    }

    #[test]
    fn octet_counting_prefixes_the_byte_length() {
        assert_eq!(octet_counted(b"hello\n"), b"6 hello\n");
    }
}
