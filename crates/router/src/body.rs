//! Body wrappers that stream frames through unchanged while counting bytes:
//! one for the request (bytes in), one for the response that writes the
//! access log when the last byte has gone (or the client has gone).

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};

/// Errors of bodies the proxy streams.
pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// The body type of every response the proxy gives.
pub(crate) type ProxyBody = http_body_util::combinators::BoxBody<Bytes, BoxError>;

/// Counts the data bytes that pass through into a shared counter, and
/// remembers whether the body failed (for a request: the client sent a
/// malformed body, such as a bad chunk size).
pub(crate) struct CountingBody<B> {
    inner: B,
    count: Arc<AtomicU64>,
    failed: Arc<AtomicBool>,
}

impl<B> CountingBody<B> {
    pub(crate) fn new(inner: B, count: Arc<AtomicU64>) -> Self {
        Self {
            inner,
            count,
            failed: Arc::default(),
        }
    }

    /// Set once the inner body has yielded an error.
    pub(crate) fn failed_flag(&self) -> Arc<AtomicBool> {
        self.failed.clone()
    }
}

impl<B> Body for CountingBody<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    self.count.fetch_add(data.len() as u64, Ordering::Relaxed);
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(err))) => {
                self.failed.store(true, Ordering::Relaxed);
                Poll::Ready(Some(Err(err.into())))
            }
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Called once with the bytes sent when a response body ends or is
/// dropped; `complete` says whether it was read to its end.
pub(crate) trait OnDone: Send + Sync + 'static {
    fn done(self: Box<Self>, bytes_out: u64, complete: bool);
}

/// A response body that reports its size when it is finished.
pub(crate) struct LoggedBody {
    inner: ProxyBody,
    bytes: u64,
    on_done: Option<Box<dyn OnDone>>,
}

impl LoggedBody {
    pub(crate) fn new(inner: ProxyBody, on_done: Box<dyn OnDone>) -> Self {
        Self {
            inner,
            bytes: 0,
            on_done: Some(on_done),
        }
    }

    fn finish(&mut self, complete: bool) {
        if let Some(on_done) = self.on_done.take() {
            on_done.done(self.bytes, complete);
        }
    }
}

impl Body for LoggedBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    self.bytes += data.len() as u64;
                }
            }
            Poll::Ready(None) => self.finish(true),
            Poll::Ready(Some(Err(_))) => self.finish(false),
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for LoggedBody {
    fn drop(&mut self) {
        // Bodies hyper never polls (HEAD, empty) and clients that hang up
        // still get their access line.
        let complete = self.inner.is_end_stream();
        self.finish(complete);
    }
}
