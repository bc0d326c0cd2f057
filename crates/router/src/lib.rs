//! Ingot's router (gorouter): an HTTP/1.1 reverse proxy that routes by
//! `Host` (and longest path prefix) to app instances, round robin.
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
//! WebSocket (`Upgrade`) is not proxied yet: `Upgrade` is removed like every
//! hop-by-hop header, so an upgrade request reaches the app as a plain one.

mod access_log;
mod body;
mod metrics;
mod proxy;
mod sticky;
mod table;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use ingot_logs::LogSink;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;

pub use table::{Endpoint, RouteTable};

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
    /// How long a client may take to send a request head.
    pub header_read_timeout: Duration,
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
        self.config = config;
        self
    }

    /// Registers the router's metrics: `router_requests` by status class,
    /// `router_retries`, `router_backend_errors`, `router_routes`,
    /// `router_request_duration_seconds`.
    pub fn register_metrics(&self, registry: &mut Registry) {
        self.metrics.register(registry, &self.table);
    }

    /// Serves HTTP/1.1 on the listener until `shutdown` resolves, then stops
    /// accepting and lets in-flight requests finish (up to the drain timeout).
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let drain_timeout = self.config.drain_timeout;
        let mut builder = http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(self.config.header_read_timeout)
            .keep_alive(true);
        let shared = Arc::new(proxy::Shared {
            table: self.table,
            logs: self.logs,
            config: self.config,
            metrics: self.metrics,
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
            let service =
                service_fn(move |request| proxy::handle(shared.clone(), client_addr, request));
            let connection =
                graceful.watch(builder.serve_connection(TokioIo::new(stream), service));
            tokio::spawn(async move {
                if let Err(err) = connection.await {
                    tracing::debug!(%client_addr, %err, "client connection ended with an error");
                }
            });
        }
        drop(listener);
        if tokio::time::timeout(drain_timeout, graceful.shutdown())
            .await
            .is_err()
        {
            tracing::warn!("router stopped with requests still in flight");
        }
        Ok(())
    }
}
