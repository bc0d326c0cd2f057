//! Turns a byte stream (a container's stdout or stderr, a staging process's
//! output) into one log envelope per line.

use std::sync::Arc;

use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::task::JoinHandle;

use crate::envelope::{Envelope, LogKind};
use crate::LogSink;

/// Lines longer than this are split into several envelopes; it is the size
/// Diego's executor splits app output at (loggregator's message limit).
pub const MAX_LINE_BYTES: usize = 61_440;

struct Emitter {
    sink: Arc<dyn LogSink>,
    source_id: String,
    instance_id: String,
    source_type: String,
    kind: LogKind,
}

impl Emitter {
    fn emit(&self, payload: &[u8]) {
        self.sink.emit(Envelope::log(
            &self.source_id,
            &self.instance_id,
            &self.source_type,
            payload,
            self.kind,
        ));
    }
}

/// Reads lines from `reader` and emits one log envelope per line (trailing
/// newline stripped; very long lines split) until EOF.
///
/// A final line without a newline is emitted at EOF; a read error ends the
/// task like EOF does (the stream's owner reports why the process ended).
pub fn forward_lines<R: AsyncRead + Unpin + Send + 'static>(
    reader: R,
    sink: Arc<dyn LogSink>,
    source_id: String,
    instance_id: String,
    source_type: String,
    kind: LogKind,
) -> JoinHandle<()> {
    let emitter = Emitter {
        sink,
        source_id,
        instance_id,
        source_type,
        kind,
    };
    tokio::spawn(async move {
        let mut reader = BufReader::with_capacity(16 * 1024, reader);
        let mut line: Vec<u8> = Vec::new();
        // After a forced split, a newline arriving next ends the split line
        // rather than starting an empty one.
        let mut just_split = false;
        loop {
            let buf = match reader.fill_buf().await {
                Ok(buf) => buf,
                Err(err) => {
                    tracing::debug!(source_id = %emitter.source_id, %err, "log stream read failed");
                    break;
                }
            };
            if buf.is_empty() {
                if !line.is_empty() {
                    emitter.emit(&line);
                }
                break;
            }
            let room = MAX_LINE_BYTES - line.len();
            let window = &buf[..buf.len().min(room)];
            match window.iter().position(|&b| b == b'\n') {
                Some(0) if just_split && line.is_empty() => {
                    reader.consume(1);
                    just_split = false;
                }
                Some(i) => {
                    line.extend_from_slice(&window[..i]);
                    reader.consume(i + 1);
                    if line.last() == Some(&b'\r') {
                        line.pop();
                    }
                    emitter.emit(&line);
                    line.clear();
                    just_split = false;
                }
                None => {
                    let n = window.len();
                    line.extend_from_slice(window);
                    reader.consume(n);
                    just_split = false;
                    if line.len() >= MAX_LINE_BYTES {
                        emitter.emit(&line);
                        line.clear();
                        just_split = true;
                    }
                }
            }
        }
    })
}
