//! Idle keep-alive connections to backends, reused by later requests to
//! the same address so that a request does not pay for a TCP handshake
//! (and the router does not fill the port range with `TIME_WAIT`).
//!
//! A connection goes back to the pool only once its response's body has
//! been read to the end; one taken from the pool that turns out to be
//! closed is discarded, and a request it could not carry (nothing of it was
//! written) goes to a fresh connection instead, so reuse never sends a
//! request twice.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;

use crate::body::CountingBody;

/// Backend addresses in the pool above which a new address first sweeps
/// out stale entries.
const SWEEP_ABOVE: usize = 256;

/// The sending half of a backend connection.
pub(crate) type Sender = SendRequest<CountingBody<Incoming>>;

/// Idle connections by backend address.
pub(crate) struct Pool {
    idle: Mutex<HashMap<SocketAddr, Vec<(Sender, Instant)>>>,
    max_idle_per_backend: usize,
    idle_timeout: Duration,
}

impl Pool {
    pub(crate) fn new(max_idle_per_backend: usize, idle_timeout: Duration) -> Self {
        Self {
            idle: Mutex::default(),
            max_idle_per_backend,
            idle_timeout,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<SocketAddr, Vec<(Sender, Instant)>>> {
        // The map holds no invariant a panic could break.
        self.idle
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The most recently used idle connection to `addr` that is still
    /// open and has not been idle too long.
    pub(crate) fn take(&self, addr: SocketAddr) -> Option<Sender> {
        let mut idle = self.lock();
        let list = idle.get_mut(&addr)?;
        let now = Instant::now();
        while let Some((sender, since)) = list.pop() {
            // Not `is_ready`: a connection whose last response just ended
            // may not have turned idle yet; the sender waits for that.
            if now.duration_since(since) < self.idle_timeout && !sender.is_closed() {
                return Some(sender);
            }
        }
        idle.remove(&addr);
        None
    }

    /// Returns a connection whose last response was read to the end.
    pub(crate) fn put(&self, addr: SocketAddr, sender: Sender) {
        if self.max_idle_per_backend == 0 || sender.is_closed() {
            return;
        }
        let mut idle = self.lock();
        if idle.len() > SWEEP_ABOVE && !idle.contains_key(&addr) {
            // Instances come and go: forget connections to addresses that
            // have not been reused in time.
            let timeout = self.idle_timeout;
            idle.retain(|_, list| {
                list.retain(|(sender, since)| since.elapsed() < timeout && !sender.is_closed());
                !list.is_empty()
            });
        }
        let list = idle.entry(addr).or_default();
        if list.len() < self.max_idle_per_backend {
            list.push((sender, Instant::now()));
        }
    }
}
