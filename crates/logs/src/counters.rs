//! Each component's Prometheus counters on the firehose: the OpenMetrics
//! text a `prometheus_client` registry encodes is read back into counters
//! ([`counters_from_openmetrics`]) and emitted as loggregator v2 counter
//! envelopes with their running total and the increase since the previous
//! emission ([`emit_counters`]).
//!
//! A counter family's samples keep their labels as envelope tags; the
//! counter's name is the family name (without OpenMetrics' `_total`).

use std::collections::HashMap;

use crate::envelope::{now_nanos, Envelope, Message, Tags};
use crate::LogSink;

/// One sample of a counter family, as read from OpenMetrics text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ComponentCounter {
    /// The family name, e.g. `ingot_router_requests` (no `_total`).
    pub name: String,
    /// The sample's labels, in the order the text gave them.
    pub labels: Vec<(String, String)>,
    /// The running total (a float total is truncated to whole units).
    pub total: u64,
}

impl ComponentCounter {
    /// The key that tells this sample from its family's others: the name
    /// and the labels as OpenMetrics writes them, e.g. `x{code="200"}`.
    pub fn key(&self) -> String {
        if self.labels.is_empty() {
            return self.name.clone();
        }
        let labels: Vec<String> = self
            .labels
            .iter()
            .map(|(k, v)| format!("{k}={v:?}"))
            .collect();
        format!("{}{{{}}}", self.name, labels.join(","))
    }
}

/// The counters in Prometheus/OpenMetrics text (as
/// `prometheus_client::encoding::text::encode` writes it): every sample
/// `NAME_total{LABELS} VALUE` of a family declared `# TYPE NAME counter`.
/// Other families (gauges, histograms, …), comments, exemplars and lines
/// that do not parse are skipped: a malformed line costs that line only.
pub fn counters_from_openmetrics(text: &str) -> Vec<ComponentCounter> {
    let mut counters = Vec::new();
    // The `_total` sample name of the counter family being read, if any.
    let mut counter_family: Option<(String, String)> = None;
    for line in text.lines() {
        let line = line.trim();
        if let Some(comment) = line.strip_prefix('#') {
            let mut words = comment.split_whitespace();
            if words.next() == Some("TYPE") {
                counter_family = match (words.next(), words.next()) {
                    (Some(family), Some("counter")) => {
                        Some((family.to_owned(), format!("{family}_total")))
                    }
                    _ => None,
                };
            }
            continue;
        }
        let Some((family, sample_name)) = &counter_family else {
            continue;
        };
        if let Some(counter) = parse_sample(line, family, sample_name) {
            counters.push(counter);
        }
    }
    counters
}

/// One `NAME{LABELS} VALUE [TIMESTAMP] [# EXEMPLAR]` line, if it is a
/// sample named `sample_name`.
fn parse_sample(line: &str, family: &str, sample_name: &str) -> Option<ComponentCounter> {
    let rest = line.strip_prefix(sample_name)?;
    let (labels, rest) = match rest.strip_prefix('{') {
        Some(inside) => parse_labels(inside)?,
        None => (Vec::new(), rest),
    };
    // Without labels, the name must end here (not `NAME_totalx`).
    if !rest.starts_with([' ', '\t']) {
        return None;
    }
    let value = rest.split_whitespace().next()?;
    let total = match value.parse::<u64>() {
        Ok(n) => n,
        Err(_) => {
            let f: f64 = value.parse().ok()?;
            if !f.is_finite() || f < 0.0 {
                return None;
            }
            // Counters are whole counts; a saturating cast of a finite
            // non-negative float is what is meant.
            f as u64
        }
    };
    Some(ComponentCounter {
        name: family.to_owned(),
        labels,
        total,
    })
}

/// `k="v",k2="v2"}` → the labels and what follows the `}`.
fn parse_labels(mut rest: &str) -> Option<(Vec<(String, String)>, &str)> {
    let mut labels = Vec::new();
    loop {
        rest = rest.trim_start_matches([' ', ',']);
        if let Some(after) = rest.strip_prefix('}') {
            return Some((labels, after));
        }
        let (key, after_key) = rest.split_once('=')?;
        let quoted = after_key.strip_prefix('"')?;
        let mut chars = quoted.char_indices();
        let mut value = String::new();
        let end = loop {
            match chars.next()? {
                // prometheus_client writes label values without escaping
                // them: a quote ends the value only where `,` or `}` follows.
                (i, '"') if quoted[i + 1..].starts_with([',', '}']) => break i,
                (_, '\\') => match chars.next()? {
                    (_, 'n') => value.push('\n'),
                    (_, c) => value.push(c),
                },
                (_, c) => value.push(c),
            }
        };
        labels.push((key.trim().to_owned(), value));
        // `end` is the index of the closing quote within `quoted`.
        rest = &quoted[end + 1..];
    }
}

/// Emits one counter envelope per counter from `source_id` (instance id
/// empty, the counter's labels as tags, all stamped alike) carrying its
/// total and its increase since the total `previous` remembers for it
/// (keyed by [`ComponentCounter::key`]), then remembers the new totals. A
/// counter seen for the first time, or whose total went down (its process
/// restarted), reports its whole total as the increase.
pub fn emit_counters(
    sink: &dyn LogSink,
    source_id: &str,
    counters: Vec<ComponentCounter>,
    previous: &mut HashMap<String, u64>,
) {
    let timestamp = now_nanos();
    for counter in counters {
        let key = counter.key();
        let delta = match previous.get(&key) {
            Some(&before) if before <= counter.total => counter.total - before,
            _ => counter.total,
        };
        previous.insert(key, counter.total);
        let mut tags = Tags::with_capacity(counter.labels.len());
        for (k, v) in counter.labels {
            tags.insert(k, v);
        }
        sink.emit(Envelope {
            timestamp,
            source_id: source_id.to_owned(),
            instance_id: String::new(),
            tags,
            message: Message::Counter {
                name: counter.name,
                delta,
                total: counter.total,
            },
        });
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use prometheus_client::encoding::text::encode;
    use prometheus_client::metrics::counter::Counter;
    use prometheus_client::metrics::family::Family;
    use prometheus_client::metrics::gauge::Gauge;
    use prometheus_client::registry::Registry;

    use super::*;

    #[derive(Default)]
    struct Collect(Mutex<Vec<Envelope>>);

    impl LogSink for Collect {
        fn emit(&self, envelope: Envelope) {
            self.0
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .push(envelope);
        }
    }

    impl Collect {
        /// (name, code tag, delta, total) of what was emitted, then forgets it.
        fn take(&self) -> Vec<(String, Option<String>, u64, u64)> {
            let mut got = self
                .0
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            got.drain(..)
                .map(|e| match e.message {
                    Message::Counter { name, delta, total } => {
                        assert_eq!(e.source_id, "ingot");
                        (name, e.tags.get("code").cloned(), delta, total)
                    }
                    other => panic!("not a counter: {other:?}"),
                })
                .collect()
        }
    }

    struct Platform {
        registry: Registry,
        plain: Counter,
        by_code: Family<Vec<(String, String)>, Counter>,
    }

    fn platform() -> Platform {
        let mut registry = Registry::with_prefix("ingot");
        let plain = Counter::default();
        registry.register("pushes", "Apps pushed", plain.clone());
        let by_code = Family::<Vec<(String, String)>, Counter>::default();
        registry.register("requests", "Requests by status", by_code.clone());
        let gauge: Gauge = Gauge::default();
        gauge.set(7);
        registry.register("instances", "Running instances", gauge);
        Platform {
            registry,
            plain,
            by_code,
        }
    }

    fn text(registry: &Registry) -> String {
        let mut text = String::new();
        assert!(encode(&mut text, registry).is_ok());
        text
    }

    fn code(c: &str) -> Vec<(String, String)> {
        vec![("code".to_owned(), c.to_owned())]
    }

    #[test]
    fn counters_are_read_from_a_real_registry_and_gauges_are_not() {
        let p = platform();
        p.plain.inc_by(3);
        p.by_code.get_or_create(&code("200")).inc_by(5);
        p.by_code.get_or_create(&code("50\"4")).inc();
        let mut got = counters_from_openmetrics(&text(&p.registry));
        got.sort_by_key(ComponentCounter::key);
        assert_eq!(
            got,
            [
                ComponentCounter {
                    name: "ingot_pushes".into(),
                    labels: vec![],
                    total: 3
                },
                ComponentCounter {
                    name: "ingot_requests".into(),
                    labels: code("200"),
                    total: 5
                },
                ComponentCounter {
                    name: "ingot_requests".into(),
                    labels: code("50\"4"),
                    total: 1
                },
            ]
        );
        assert_eq!(got[1].key(), "ingot_requests{code=\"200\"}");
    }

    #[test]
    fn emitting_reports_totals_and_deltas_since_the_previous_call() {
        let p = platform();
        let sink = Collect::default();
        let mut previous = HashMap::new();
        p.plain.inc_by(2);
        p.by_code.get_or_create(&code("200")).inc_by(4);
        let emit = |previous: &mut HashMap<String, u64>| {
            let mut counters = counters_from_openmetrics(&text(&p.registry));
            counters.sort_by_key(ComponentCounter::key);
            emit_counters(&sink, "ingot", counters, previous);
        };
        emit(&mut previous);
        assert_eq!(
            sink.take(),
            [
                ("ingot_pushes".into(), None, 2, 2),
                ("ingot_requests".into(), Some("200".into()), 4, 4),
            ]
        );
        p.plain.inc();
        p.by_code.get_or_create(&code("404")).inc();
        emit(&mut previous);
        assert_eq!(
            sink.take(),
            [
                ("ingot_pushes".into(), None, 1, 3),
                ("ingot_requests".into(), Some("200".into()), 0, 4),
                ("ingot_requests".into(), Some("404".into()), 1, 1),
            ]
        );
        // A restarted process starts from zero: its whole total is new.
        previous.insert("ingot_pushes".into(), 100);
        emit(&mut previous);
        assert_eq!(sink.take()[0], ("ingot_pushes".into(), None, 3, 3));
    }

    #[test]
    fn plain_prometheus_text_floats_and_junk_lines() {
        let text = "# TYPE a counter\n\
                    a_total 1.5e3\n\
                    a_totally 9\n\
                    a_total{x=\"1\" 4\n\
                    a_total{x=\"y\\\\z\"} 2 1700000000\n\
                    # TYPE b gauge\n\
                    b 5\n\
                    # TYPE c counter\n\
                    c_total NaN\n\
                    c_total{} 6 # {trace=\"t\"} 1.0\n";
        let got: Vec<(String, u64)> = counters_from_openmetrics(text)
            .into_iter()
            .map(|c| (c.key(), c.total))
            .collect();
        assert_eq!(
            got,
            [
                ("a".to_owned(), 1500),
                ("a{x=\"y\\\\z\"}".to_owned(), 2),
                ("c".to_owned(), 6),
            ]
        );
    }
}
