//! A guard between the client's socket and hyper's HTTP/1 parser that
//! rejects what a lenient parser would accept and a backend might read
//! differently (request smuggling), and cuts off clients that send a
//! request head too slowly (slowloris).
//!
//! hyper already rejects obs-fold, invalid chunk sizes, `Transfer-Encoding`
//! values other than `chunked` and conflicting `Content-Length`s. It
//! silently accepts, and so the guard rejects: bare LF line endings,
//! `Transfer-Encoding` together with `Content-Length` (hyper drops the
//! length), repeated `Content-Length` lines even when equal, and more than
//! one `Transfer-Encoding` line.
//!
//! The guard follows each request's framing (head, then a body by length
//! or by chunks) so it looks only at heads. When a head is unacceptable
//! the rest of it never reaches hyper: the guard answers
//! `400 Bad Request` with `Connection: close` itself, closes its side, and
//! hands hyper an error so it drops the connection without writing more.
//! (Obs-fold is refused here too, though hyper's parser refuses it as well:
//! hyper's own answer to a malformed head is not always flushed.) HTTP/2
//! and upgraded connections are passed through untouched once recognised.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::rt::{Read, ReadBufCursor, Write};
use tokio::time::Sleep;

/// Longest chunk-size or trailer line followed; longer ones are hyper's
/// to reject, and the guard stops following the connection.
const MAX_CHUNK_LINE: usize = 4096;

#[derive(Debug)]
enum State {
    /// Reading a request head: the bytes so far and where the current
    /// line starts.
    Head { head: Vec<u8>, line_start: usize },
    /// A body of known length; bytes left.
    Body(u64),
    /// A chunk-size line (or a trailer line when `trailers`).
    ChunkLine { line: Vec<u8>, trailers: bool },
    /// Chunk data; bytes left, then its CRLF.
    ChunkData(u64),
    /// The CRLF after chunk data; bytes of it left.
    ChunkEnd(u8),
    /// The head was refused: writing the `400` (bytes of it written so
    /// far), then failing the read.
    Refusing { written: usize },
    /// Not HTTP/1 heads any more (HTTP/2, an upgrade, or a request the
    /// guard has rejected or lost track of): bytes pass untouched.
    Passthrough,
}

impl State {
    fn new_head() -> Self {
        State::Head {
            head: Vec::new(),
            line_start: 0,
        }
    }
}

/// What a complete head says about what follows it.
enum HeadVerdict {
    Reject,
    Body(u64),
    Chunked,
    None,
    Passthrough,
}

/// Judges a complete request head (without its final empty line).
fn judge_head(head: &[u8]) -> HeadVerdict {
    let text = String::from_utf8_lossy(head);
    let mut lines = text.split("\r\n");
    let request_line = lines.next().unwrap_or_default();
    if request_line.starts_with("PRI * HTTP/2") {
        return HeadVerdict::Passthrough;
    }
    let mut content_lengths = Vec::new();
    let mut transfer_encodings = Vec::new();
    let mut upgrade = false;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            // hyper rejects a header line without a colon.
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            content_lengths.push(value.to_owned());
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            transfer_encodings.push(value.to_owned());
        } else if name.eq_ignore_ascii_case("upgrade") {
            upgrade = true;
        }
    }
    if request_line.starts_with("CONNECT ") {
        // The proxy answers CONNECT itself (no route); whatever follows is
        // for hyper to judge.
        return HeadVerdict::Passthrough;
    }
    match (content_lengths.as_slice(), transfer_encodings.as_slice()) {
        ([], []) if upgrade => HeadVerdict::Passthrough,
        ([], []) => HeadVerdict::None,
        ([length], []) => match length.parse::<u64>() {
            Ok(0) if upgrade => HeadVerdict::Passthrough,
            Ok(0) => HeadVerdict::None,
            // An upgrade with a body is odd but legal: follow the body,
            // then stop looking.
            Ok(_) if upgrade => HeadVerdict::Passthrough,
            Ok(n) => HeadVerdict::Body(n),
            Err(_) => HeadVerdict::Reject,
        },
        ([], [coding]) if coding.eq_ignore_ascii_case("chunked") => {
            if upgrade {
                HeadVerdict::Passthrough
            } else {
                HeadVerdict::Chunked
            }
        }
        _ => HeadVerdict::Reject,
    }
}

/// Parses a chunk-size line (`1a;ext=1`); `None` if it is not hex or would
/// overflow.
fn chunk_size(line: &[u8]) -> Option<u64> {
    let size = line.split(|b| *b == b';').next().unwrap_or_default();
    let size = std::str::from_utf8(size)
        .ok()?
        .trim_end_matches([' ', '\t']);
    if size.is_empty() || size.len() > 16 {
        return None;
    }
    u64::from_str_radix(size, 16).ok()
}

/// Wraps a client connection; see the module documentation.
pub(crate) struct Guarded<T> {
    inner: T,
    state: State,
    limits: GuardLimits,
    /// Runs while a head is being received: the slowloris cut-off.
    head_deadline: Option<Pin<Box<Sleep>>>,
}

/// The guard's limits.
#[derive(Debug, Clone, Copy)]
pub(crate) struct GuardLimits {
    /// From a head's first byte to its last.
    pub header_read_timeout: Duration,
    /// A head longer than this is hyper's to refuse (431); the guard stops
    /// keeping it.
    pub max_header_bytes: usize,
}

/// The guard's answer to a refused head, as gorouter's Go server words it.
const REFUSAL: &[u8] = b"HTTP/1.1 400 Bad Request\r\n\
Content-Type: text/plain; charset=utf-8\r\n\
Connection: close\r\n\
Content-Length: 16\r\n\
\r\n\
400 Bad Request\n";

impl<T> Guarded<T> {
    fn refuse(&mut self) {
        self.state = State::Refusing { written: 0 };
        self.head_deadline = None;
    }

    pub(crate) fn new(inner: T, limits: GuardLimits) -> Self {
        Self {
            inner,
            state: State::new_head(),
            limits,
            head_deadline: None,
        }
    }

    /// Follows the bytes just read; a head that must be refused turns the
    /// state to `Refusing`.
    fn inspect(&mut self, bytes: &[u8]) {
        let mut i = 0;
        while i < bytes.len() {
            match &mut self.state {
                State::Passthrough | State::Refusing { .. } => return,
                State::Head { head, line_start } => {
                    if head.is_empty() && self.head_deadline.is_none() {
                        self.head_deadline = Some(Box::pin(tokio::time::sleep(
                            self.limits.header_read_timeout,
                        )));
                    }
                    let byte = bytes[i];
                    head.push(byte);
                    if byte == b'\n' {
                        let end = head.len() - 1;
                        let line = &head[*line_start..end.saturating_sub(1)];
                        let bare_lf = end == 0 || head[end - 1] != b'\r';
                        let folded = *line_start > 0 && matches!(line.first(), Some(b' ' | b'\t'));
                        if bare_lf || folded {
                            self.refuse();
                            return;
                        }
                        if line.is_empty() {
                            if *line_start == 0 {
                                // Empty lines before a request line are
                                // allowed (RFC 9112 §2.2).
                                head.clear();
                                i += 1;
                                continue;
                            }
                            let verdict = judge_head(&head[..*line_start]);
                            self.head_deadline = None;
                            self.state = match verdict {
                                HeadVerdict::Reject => {
                                    self.refuse();
                                    return;
                                }
                                HeadVerdict::Passthrough => State::Passthrough,
                                HeadVerdict::None => State::new_head(),
                                HeadVerdict::Body(n) => State::Body(n),
                                HeadVerdict::Chunked => State::ChunkLine {
                                    line: Vec::new(),
                                    trailers: false,
                                },
                            };
                        } else {
                            *line_start = head.len();
                        }
                    } else if head.len() > self.limits.max_header_bytes {
                        // hyper answers 431 for this head.
                        self.state = State::Passthrough;
                        self.head_deadline = None;
                        return;
                    }
                    i += 1;
                }
                State::Body(left) => {
                    let take = (*left).min((bytes.len() - i) as u64);
                    *left -= take;
                    // `take` fits in usize: it is at most bytes.len().
                    i += take as usize;
                    if *left == 0 {
                        self.state = State::new_head();
                    }
                }
                State::ChunkData(left) => {
                    let take = (*left).min((bytes.len() - i) as u64);
                    *left -= take;
                    i += take as usize;
                    if *left == 0 {
                        self.state = State::ChunkEnd(2);
                    }
                }
                State::ChunkEnd(left) => {
                    let expected = if *left == 2 { b'\r' } else { b'\n' };
                    if bytes[i] != expected {
                        // hyper rejects the body; nothing more to follow.
                        self.state = State::Passthrough;
                        return;
                    }
                    *left -= 1;
                    i += 1;
                    if *left == 0 {
                        self.state = State::ChunkLine {
                            line: Vec::new(),
                            trailers: false,
                        };
                    }
                }
                State::ChunkLine { line, trailers } => {
                    let byte = bytes[i];
                    i += 1;
                    if byte != b'\n' {
                        line.push(byte);
                        if line.len() > MAX_CHUNK_LINE {
                            self.state = State::Passthrough;
                            return;
                        }
                        continue;
                    }
                    if line.pop() != Some(b'\r') {
                        self.state = State::Passthrough;
                        return;
                    }
                    if *trailers {
                        if line.is_empty() {
                            self.state = State::new_head();
                        } else {
                            line.clear();
                        }
                        continue;
                    }
                    self.state = match chunk_size(line) {
                        Some(0) => State::ChunkLine {
                            line: Vec::new(),
                            trailers: true,
                        },
                        Some(n) => State::ChunkData(n),
                        // hyper refuses the body; the request ends there.
                        None => State::Passthrough,
                    };
                }
            }
        }
    }
}

impl<T: Write + Unpin> Guarded<T> {
    /// Writes the refusal, closes the write side, then fails the read.
    fn poll_refuse(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        while let State::Refusing { written } = &mut self.state {
            if *written >= REFUSAL.len() {
                break;
            }
            match Pin::new(&mut self.inner).poll_write(cx, &REFUSAL[*written..]) {
                Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) => break,
                Poll::Ready(Ok(n)) => *written += n,
                Poll::Pending => return Poll::Pending,
            }
        }
        if Pin::new(&mut self.inner).poll_flush(cx).is_pending() {
            return Poll::Pending;
        }
        if Pin::new(&mut self.inner).poll_shutdown(cx).is_pending() {
            return Poll::Pending;
        }
        Poll::Ready(Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "malformed request head refused",
        )))
    }
}

impl<T: Read + Write + Unpin> Read for Guarded<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        mut buf: ReadBufCursor<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = &mut *self;
        if let State::Refusing { .. } = this.state {
            return this.poll_refuse(cx);
        }
        if matches!(this.state, State::Passthrough) {
            return Pin::new(&mut this.inner).poll_read(cx, buf);
        }
        // Read straight into hyper's buffer, then judge the new bytes before
        // telling hyper they are there.
        // SAFETY: the bytes are only written by the inner read, never
        // de-initialised, and only the `filled` part is read or counted.
        let unfilled = unsafe { buf.as_mut() };
        let mut tmp = hyper::rt::ReadBuf::uninit(unfilled);
        match Pin::new(&mut this.inner).poll_read(cx, tmp.unfilled()) {
            Poll::Ready(Ok(())) => {
                let n = tmp.filled().len();
                this.inspect(tmp.filled());
                if let State::Refusing { .. } = this.state {
                    return this.poll_refuse(cx);
                }
                // SAFETY: the inner read initialised these `n` bytes.
                unsafe { buf.advance(n) };
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(err)) => Poll::Ready(Err(err)),
            Poll::Pending => {
                if let Some(deadline) = this.head_deadline.as_mut() {
                    if deadline.as_mut().poll(cx).is_ready() {
                        return Poll::Ready(Err(std::io::Error::new(
                            std::io::ErrorKind::TimedOut,
                            "request head not received in time",
                        )));
                    }
                }
                Poll::Pending
            }
        }
    }
}

impl<T: Write + Unpin> Write for Guarded<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> GuardLimits {
        GuardLimits {
            header_read_timeout: Duration::from_secs(5),
            max_header_bytes: 65536,
        }
    }

    /// Feeds `input` through the guard in pieces of `step` bytes and says
    /// whether it refused the input.
    fn rejected(input: &[u8], step: usize) -> bool {
        let mut guard = Guarded::new((), limits());
        for piece in input.chunks(step) {
            guard.inspect(piece);
        }
        matches!(guard.state, State::Refusing { .. })
    }

    #[tokio::test]
    async fn smuggling_heads_are_refused_and_ordinary_ones_pass() {
        let refused: [&[u8]; 8] = [
            b"GET / HTTP/1.1\r\nHost: a\r\nX-A: 1\r\n 2\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\r\nX-A: 1\r\n\t2\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc",
            b"GET / HTTP/1.1\nHost: a\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\n\r\n",
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
            // A second, pipelined request after a chunked body.
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\nGET / HTTP/1.1\nHost: a\r\n\r\n",
        ];
        for input in refused {
            for step in [1, 7, input.len()] {
                assert!(
                    rejected(input, step),
                    "{:?} passed",
                    String::from_utf8_lossy(input)
                );
            }
        }
        let passed: [&[u8]; 4] = [
            b"GET / HTTP/1.1\r\nHost: a\r\n\r\nGET /2 HTTP/1.1\r\nHost: a\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\na\nb\nc",
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5;x=y\r\na\nb\nc\r\n0\r\nT: 1\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n",
            b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\n\n\n",
        ];
        for input in passed {
            for step in [1, 7, input.len()] {
                assert!(
                    !rejected(input, step),
                    "{:?} refused",
                    String::from_utf8_lossy(input)
                );
            }
        }
    }

    #[test]
    fn chunk_sizes_parse_as_hex_without_overflow() {
        assert_eq!(chunk_size(b"1a"), Some(26));
        assert_eq!(chunk_size(b"0;ext"), Some(0));
        assert_eq!(chunk_size(b"zz"), None);
        assert_eq!(chunk_size(b""), None);
        assert_eq!(chunk_size(b"fffffffffffffffff"), None);
    }
}
