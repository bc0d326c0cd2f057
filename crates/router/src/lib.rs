//! Ingot's router (gorouter): a reverse proxy that routes by `Host` (and
//! longest path prefix) to app instances, round robin. Clients speak
//! HTTP/1.1 or HTTP/2 (h2c prior knowledge on the plain listener, ALPN `h2`
//! on the TLS one, [`Router::serve_tls`], certificates by SNI from a
//! [`CertStore`]); apps are always spoken to in HTTP/1.1.
//!
//! *Invariant*: the router learns endpoints only through [`RouteTable`] and
//! never depends on `containers`. A request is retried on another endpoint
//! only when the connection could not be made, so nothing of it ever reached
//! a backend twice.
//!
//! A request passes through, in order: route lookup (`table`), endpoint
//! choice and dial with retries, header rewriting and streaming
//! (`proxy`), and the `RTR` access line (`access_log`) when the response's
//! last byte has gone.
//! Sticky sessions (`JSESSIONID` + `__VCAP_ID__`) live in `sticky`.
//!
//! Limits and hostile input (`guard`, [`RouterConfig`]): request heads
//! larger than `max_header_bytes` get `431`; smuggling patterns (bare LF,
//! obs-fold, `Transfer-Encoding` with `Content-Length`, repeated
//! `Content-Length`, codings other than `chunked`, bad chunk sizes) get
//! `400` and a closed connection; heads trickled slower than
//! `header_read_timeout` and keep-alive connections idle for
//! `idle_timeout` are cut off; a backend instance takes at most
//! `max_conns_per_backend` requests at once (then `503 Connection Limit
//! Reached`, as gorouter).
//!
//! Raw TCP routes (a port per route) are served by [`TcpRouter`].
//!
//! HTTP/1.1 upgrades (WebSocket) are proxied: the `Upgrade` request goes to
//! the app, and once it answers `101` the two connections are joined and
//! bytes copied both ways until either side closes.

mod access_log;
mod body;
mod guard;
mod metrics;
mod pool;
mod proxy;
mod sticky;
mod table;
mod tcp;
mod tls;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use ingot_logs::LogSink;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio::sync::Notify;

pub use table::{Endpoint, RouteTable};
pub use tcp::{TcpRouter, TcpRouterConfig, TcpRouterError};
pub use tls::{CertStore, Certificate, TlsError};

/// Timeouts and retry limits; [`Default`] is gorouter's behaviour.
#[derive(Debug, Clone)]
pub struct RouterConfig {
    /// How long connecting to a backend may take before it counts as failed
    /// (and the request moves to another endpoint).
    pub dial_timeout: Duration,
    /// How long an endpoint whose connection failed is skipped.
    pub failed_endpoint_ttl: Duration,
    /// Endpoints tried per request, at most.
    pub max_attempts: usize,
    /// How long a backend may take to send its response head.
    pub response_timeout: Duration,
    /// After shutdown, how long in-flight requests may take to finish.
    pub drain_timeout: Duration,
    /// How long a client may take to send a request head, from its first
    /// byte (and the first request, from the connection's start); a client
    /// that trickles its head (slowloris) is cut off.
    pub header_read_timeout: Duration,
    /// How long a keep-alive connection may wait for its next request.
    pub idle_timeout: Duration,
    /// The largest request head accepted (request line and headers);
    /// larger ones get `431`. At least 8 KiB.
    pub max_header_bytes: usize,
    /// Requests in flight to one backend instance at most; more get `503`
    /// with `X-Cf-Routererror: Connection Limit Reached` (0: no limit).
    pub max_conns_per_backend: usize,
    /// Distinct route labels in the per-route request counter; requests to
    /// routes beyond the first this many are counted as `other`.
    pub max_route_labels: usize,
    /// Idle keep-alive connections kept per backend address for reuse
    /// (0: a new connection per request).
    pub max_idle_backend_conns: usize,
    /// How long an idle backend connection is kept for reuse.
    pub backend_idle_timeout: Duration,
}

impl Default for RouterConfig {
    fn default() -> Self {
        Self {
            dial_timeout: Duration::from_secs(5),
            failed_endpoint_ttl: Duration::from_secs(30),
            max_attempts: 3,
            response_timeout: Duration::from_secs(900),
            drain_timeout: Duration::from_secs(10),
            header_read_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(90),
            max_header_bytes: 64 * 1024,
            // gorouter's `backends.max_conns` default.
            max_conns_per_backend: 500,
            max_route_labels: 100,
            max_idle_backend_conns: 100,
            // A connection the app closes sooner is noticed and replaced
            // without resending anything.
            backend_idle_timeout: Duration::from_secs(30),
        }
    }
}

/// The proxy: a route table, where access lines go, and its metrics.
pub struct Router {
    table: RouteTable,
    logs: Arc<dyn LogSink>,
    config: RouterConfig,
    metrics: metrics::Metrics,
}

impl std::fmt::Debug for Router {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Router")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Router {
    /// A router serving `table`'s routes and writing `RTR` lines to `logs`.
    pub fn new(table: RouteTable, logs: Arc<dyn LogSink>) -> Self {
        Self {
            table,
            logs,
            config: RouterConfig::default(),
            metrics: metrics::Metrics::default(),
        }
    }

    /// Replaces the timeouts and retry limits.
    pub fn with_config(mut self, config: RouterConfig) -> Self {
        self.metrics.set_route_label_limit(config.max_route_labels);
        self.config = config;
        self
    }

    /// Registers the router's metrics: `router_requests` by status class,
    /// `router_route_requests` by route (bounded, then `other`),
    /// `router_retries`, `router_backend_errors` by kind, `router_routes`,
    /// `router_request_duration_seconds`.
    pub fn register_metrics(&self, registry: &mut Registry) {
        self.metrics.register(registry, &self.table);
    }

    /// Serves HTTP/1.1 and HTTP/2 (h2c with prior knowledge) on the plain
    /// listener until `shutdown` resolves, then stops accepting and lets
    /// in-flight requests finish (up to the drain timeout). WebSocket
    /// upgrades are proxied; those still open when the drain ends are
    /// closed.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        self.run(listener, None, shutdown).await
    }

    /// Terminates TLS on the listener, choosing each connection's
    /// certificate from `certs` by SNI, and serves HTTP/2 (ALPN `h2`) and
    /// HTTP/1.1 over it like [`Router::serve`]. Apps see
    /// `X-Forwarded-Proto: https`. Fails at once only if rustls refuses the
    /// configuration; handshake failures close just that connection.
    pub async fn serve_tls(
        self,
        listener: TcpListener,
        certs: Arc<CertStore>,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let config = tls::server_config(certs).map_err(std::io::Error::other)?;
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        self.run(listener, Some(acceptor), shutdown).await
    }

    async fn run(
        self,
        listener: TcpListener,
        tls: Option<tokio_rustls::TlsAcceptor>,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let drain_timeout = self.config.drain_timeout;
        // The TLS handshake, and then the first request head, must each
        // arrive within the header timeout.
        let handshake_timeout = self.config.header_read_timeout;
        let request_timeout = self.config.header_read_timeout;
        let guard_limits = guard::GuardLimits {
            header_read_timeout: self.config.header_read_timeout,
            max_header_bytes: self.config.max_header_bytes,
        };
        let max_header_bytes = self.config.max_header_bytes.max(8192);
        let mut builder = auto::Builder::new(TokioExecutor::new());
        // hyper's header timer runs from the moment it waits for a head, so
        // it bounds the idle time between keep-alive requests; the guard
        // bounds the head itself from its first byte.
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(self.config.idle_timeout)
            .max_buf_size(max_header_bytes)
            .keep_alive(true);
        builder
            .http2()
            .timer(TokioTimer::new())
            .max_header_list_size(u32::try_from(max_header_bytes).unwrap_or(u32::MAX));
        let builder = Arc::new(builder);
        let (closed_tx, closed) = tokio::sync::watch::channel(());
        let pool = pool::Pool::new(
            self.config.max_idle_backend_conns,
            self.config.backend_idle_timeout,
        );
        let shared = Arc::new(proxy::Shared {
            table: self.table,
            logs: self.logs,
            config: self.config,
            metrics: self.metrics,
            pool,
            closed,
        });
        let graceful = GracefulShutdown::new();
        tokio::pin!(shutdown);
        loop {
            let (stream, client_addr) = tokio::select! {
                () = &mut shutdown => break,
                accepted = listener.accept() => match accepted {
                    Ok(accepted) => accepted,
                    Err(err) => {
                        // Usually out of file descriptors: back off instead
                        // of spinning, and keep serving what is open.
                        tracing::warn!(%err, "router accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
            };
            let _ = stream.set_nodelay(true);
            let shared = shared.clone();
            let builder = builder.clone();
            let watcher = graceful.watcher();
            let is_tls = tls.is_some();
            let first_request = Arc::new(Notify::new());
            let arrived = first_request.clone();
            let service = service_fn(move |request| {
                arrived.notify_one();
                proxy::handle(shared.clone(), client_addr, is_tls, request)
            });
            match &tls {
                None => {
                    tokio::spawn(async move {
                        let io = guard::Guarded::new(TokioIo::new(stream), guard_limits);
                        let connection = builder.serve_connection_with_upgrades(io, service);
                        let connection = watcher.watch(connection);
                        serve_connection(connection, &first_request, request_timeout, client_addr)
                            .await;
                    });
                }
                Some(acceptor) => {
                    let acceptor = acceptor.clone();
                    tokio::spawn(async move {
                        // A client that never finishes its handshake is cut
                        // off like one that never sends its request head.
                        let stream =
                            match tokio::time::timeout(handshake_timeout, acceptor.accept(stream))
                                .await
                            {
                                Ok(Ok(stream)) => stream,
                                Ok(Err(err)) => {
                                    tracing::debug!(%client_addr, %err, "TLS handshake failed");
                                    return;
                                }
                                Err(_) => {
                                    tracing::debug!(%client_addr, "TLS handshake timed out");
                                    return;
                                }
                            };
                        let io = guard::Guarded::new(TokioIo::new(stream), guard_limits);
                        let connection = builder.serve_connection_with_upgrades(io, service);
                        let connection = watcher.watch(connection);
                        serve_connection(connection, &first_request, request_timeout, client_addr)
                            .await;
                    });
                }
            }
        }
        drop(listener);
        if tokio::time::timeout(drain_timeout, graceful.shutdown())
            .await
            .is_err()
        {
            tracing::warn!("router stopped with requests still in flight");
        }
        // WebSockets and other upgraded connections have no end of their
        // own that a drain could wait for: they close with the router.
        let _ = closed_tx.send(());
        Ok(())
    }
}

/// Drives one client connection to its end, but drops it if no request
/// has arrived within `first_request_timeout`: a client that connects and
/// stays silent (or trickles a request head, or half an HTTP/2 preface)
/// must not hold a connection forever, whatever protocol it speaks.
async fn serve_connection<C, E>(
    connection: C,
    first_request: &Notify,
    first_request_timeout: Duration,
    client_addr: std::net::SocketAddr,
) where
    C: Future<Output = Result<(), E>>,
    E: std::fmt::Display,
{
    tokio::pin!(connection);
    let result = tokio::select! {
        result = &mut connection => result,
        arrived = tokio::time::timeout(first_request_timeout, first_request.notified()) => {
            if arrived.is_err() {
                tracing::debug!(%client_addr, "no request in time: connection dropped");
                return;
            }
            connection.await
        }
    };
    if let Err(err) = result {
        tracing::debug!(%client_addr, %err, "client connection ended with an error");
    }
}
