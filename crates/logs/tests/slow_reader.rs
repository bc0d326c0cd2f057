//! A reader slower than the app: the app's emits never wait, and the
//! reader's stream accounts for every line, received or announced lost.

use std::sync::Arc;

use ingot_logs::{
    dropped_notice_text, Envelope, EnvelopeType, Firehose, FirehoseConfig, LogKind, LogSink,
    LogStore, Message, Selector, LOGGREGATOR_SOURCE_TYPE,
};

#[derive(Default)]
struct Tally {
    received: u64,
    announced: u64,
    notices: Vec<String>,
    next: u64,
}

impl Tally {
    fn take(&mut self, batch: Vec<Arc<Envelope>>) {
        for e in batch {
            let Message::Log { payload, .. } = &e.message else {
                panic!("a log-only reader got {e:?}");
            };
            let text = String::from_utf8_lossy(payload).into_owned();
            if e.source_type() == Some(LOGGREGATOR_SOURCE_TYPE) {
                let n: u64 = text
                    .strip_prefix("Log message output is too high. ")
                    .and_then(|rest| rest.split(' ').next())
                    .and_then(|n| n.parse().ok())
                    .unwrap_or_else(|| panic!("not a drop notice: {text}"));
                self.announced += n;
                assert_eq!(text, dropped_notice_text(n, self.announced));
                self.notices.push(text);
            } else {
                // Lines that arrive arrive in order, each once.
                let i: u64 = text
                    .strip_prefix("line ")
                    .and_then(|n| n.parse().ok())
                    .unwrap_or_else(|| panic!("not an app line: {text}"));
                assert!(self.next <= i, "line {i} after line {}", self.next);
                self.next = i + 1;
                self.received += 1;
            }
        }
    }
}

#[test]
fn a_slow_readers_notices_count_exactly_the_lines_it_missed() {
    let hose = Firehose::new(FirehoseConfig {
        buffer_size: 100,
        stall_timeout: std::time::Duration::from_secs(3600),
    });
    let store = LogStore::with_firehose(1000, 10, hose.clone());
    let sink: Arc<dyn LogSink> = store.clone();
    let sub = hose.subscribe(
        "",
        Selector {
            source_ids: vec!["app".into()],
            envelope_types: vec![EnvelopeType::Log],
        },
    );
    let sent = 50_000u64;
    let mut tally = Tally::default();
    for i in 0..sent {
        sink.emit(Envelope::log(
            "app",
            "0",
            "APP/PROC/WEB",
            format!("line {i}"),
            LogKind::Out,
        ));
        // The reader takes 10 envelopes for every 1000 the app writes.
        if i % 1000 == 999 {
            tally.take(sub.try_next_batch(10).expect("still subscribed"));
        }
    }
    loop {
        let batch = sub.try_next_batch(1000).expect("still subscribed");
        if batch.is_empty() {
            break;
        }
        tally.take(batch);
    }
    assert!(tally.notices.len() > 1, "{:?}", tally.notices);
    assert_eq!(tally.received + tally.announced, sent);
    assert_eq!(tally.announced, sub.dropped());
}
