//! TCP routes (CF's tcp-router): a port on the router's address carries
//! raw bytes to one of the route's backends, chosen round robin.
//!
//! Routes are added and removed at runtime. A port's listener opens with
//! its first route and closes when its last route goes; connections already
//! spliced keep running (a route change never cuts a connection), until
//! either side closes or the router shuts down. When a backend refuses a
//! connection the next one is tried (at most `max_attempts` in all) and the
//! failed one is skipped for `failed_endpoint_ttl`.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::Endpoint;

/// Why a TCP route could not be served.
#[derive(Debug, thiserror::Error)]
pub enum TcpRouterError {
    /// The route's port could not be listened on.
    #[error("cannot listen on {addr} for a TCP route: {source}")]
    Bind {
        /// The address the listener was for.
        addr: SocketAddr,
        /// The operating system's reason.
        source: std::io::Error,
    },
}

/// Timeouts and retry limits of TCP routes.
#[derive(Debug, Clone)]
pub struct TcpRouterConfig {
    /// The address every routed port listens on.
    pub listen_ip: IpAddr,
    /// How long connecting to a backend may take before the next is tried.
    pub dial_timeout: Duration,
    /// How long a backend that refused a connection is skipped.
    pub failed_endpoint_ttl: Duration,
    /// Backends tried per client connection, at most.
    pub max_attempts: usize,
}

impl Default for TcpRouterConfig {
    fn default() -> Self {
        Self {
            listen_ip: IpAddr::from([0, 0, 0, 0]),
            dial_timeout: Duration::from_secs(5),
            failed_endpoint_ttl: Duration::from_secs(30),
            max_attempts: 3,
        }
    }
}

type Labels = Vec<(String, String)>;

#[derive(Clone, Default)]
struct TcpMetrics {
    connections: Family<Labels, Counter>,
    active: Gauge,
    backend_errors: Family<Labels, Counter>,
    listeners: Gauge,
}

/// One routed port: its backends and the task that accepts on it.
struct Port {
    endpoints: Vec<Endpoint>,
    next: usize,
    addr: SocketAddr,
    accept_task: JoinHandle<()>,
}

impl Drop for Port {
    fn drop(&mut self) {
        // Dropping the accept task drops the listener: the port closes.
        self.accept_task.abort();
    }
}

#[derive(Default)]
struct State {
    ports: HashMap<u16, Port>,
    /// instance guid → when connecting to it last failed.
    failed: HashMap<String, Instant>,
}

struct Inner {
    config: TcpRouterConfig,
    state: Mutex<State>,
    metrics: TcpMetrics,
    /// Changes when the router shuts down: open connections close.
    closed_tx: watch::Sender<()>,
}

/// The TCP router; cheap to clone, all clones share one table. Must be
/// used inside a tokio runtime (listeners are tokio tasks).
#[derive(Clone)]
pub struct TcpRouter {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for TcpRouter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TcpRouter")
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

impl TcpRouter {
    /// A TCP router with no routes yet.
    pub fn new(config: TcpRouterConfig) -> Self {
        let (closed_tx, _) = watch::channel(());
        Self {
            inner: Arc::new(Inner {
                config,
                state: Mutex::default(),
                metrics: TcpMetrics::default(),
                closed_tx,
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Every mutation leaves the maps consistent.
        self.inner
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Registers `tcp_router_connections` by port,
    /// `tcp_router_active_connections`, `tcp_router_backend_errors` by kind
    /// (`dial`, `no_endpoints`) and `tcp_router_listeners`.
    pub fn register_metrics(&self, registry: &mut Registry) {
        let m = &self.inner.metrics;
        registry.register(
            "tcp_router_connections",
            "Client connections accepted, by routed port",
            m.connections.clone(),
        );
        registry.register(
            "tcp_router_active_connections",
            "Client connections being spliced to a backend",
            m.active.clone(),
        );
        registry.register(
            "tcp_router_backend_errors",
            "Client connections a backend could not take, by kind (dial, no_endpoints)",
            m.backend_errors.clone(),
        );
        registry.register(
            "tcp_router_listeners",
            "Ports with at least one TCP route",
            m.listeners.clone(),
        );
    }

    /// Adds `endpoint` to the route on `port` (an endpoint with the same
    /// instance guid is replaced), opening the port's listener if this is
    /// its first route; returns the listening address.
    pub fn register(&self, port: u16, endpoint: Endpoint) -> Result<SocketAddr, TcpRouterError> {
        let mut state = self.lock();
        state.failed.remove(&endpoint.instance_guid);
        if let Some(existing) = state.ports.get_mut(&port) {
            match existing
                .endpoints
                .iter_mut()
                .find(|e| e.instance_guid == endpoint.instance_guid)
            {
                Some(e) => *e = endpoint,
                None => existing.endpoints.push(endpoint),
            }
            return Ok(existing.addr);
        }
        let addr = SocketAddr::new(self.inner.config.listen_ip, port);
        let listener = std::net::TcpListener::bind(addr)
            .and_then(|l| l.set_nonblocking(true).map(|()| l))
            .and_then(TcpListener::from_std)
            .map_err(|source| TcpRouterError::Bind { addr, source })?;
        let addr = listener.local_addr().unwrap_or(addr);
        let accept_task = tokio::spawn(accept_loop(self.clone(), port, listener));
        state.ports.insert(
            port,
            Port {
                endpoints: vec![endpoint],
                next: 0,
                addr,
                accept_task,
            },
        );
        self.inner
            .metrics
            .listeners
            .set(i64::try_from(state.ports.len()).unwrap_or(i64::MAX));
        Ok(addr)
    }

    /// Removes the instance from the route on `port`; the port's listener
    /// closes when this was its last route. Open connections stay.
    pub fn unregister(&self, port: u16, instance_guid: &str) {
        let mut state = self.lock();
        let now_empty = match state.ports.get_mut(&port) {
            Some(entry) => {
                entry.endpoints.retain(|e| e.instance_guid != instance_guid);
                entry.endpoints.is_empty()
            }
            None => false,
        };
        if now_empty {
            state.ports.remove(&port);
        }
        self.inner
            .metrics
            .listeners
            .set(i64::try_from(state.ports.len()).unwrap_or(i64::MAX));
    }

    /// Every routed port with its endpoints, by port.
    pub fn routes(&self) -> Vec<(u16, Vec<Endpoint>)> {
        let state = self.lock();
        let mut routes: Vec<_> = state
            .ports
            .iter()
            .map(|(port, entry)| (*port, entry.endpoints.clone()))
            .collect();
        routes.sort_by_key(|(port, _)| *port);
        routes
    }

    /// Closes every listener and every open connection.
    pub fn shutdown(&self) {
        self.lock().ports.clear();
        self.inner.metrics.listeners.set(0);
        self.inner.closed_tx.send_replace(());
    }

    /// The next endpoint on `port`, round robin, not in `tried`, skipping
    /// recently failed ones unless nothing else is left.
    fn next_endpoint(&self, port: u16, tried: &[String]) -> Option<Endpoint> {
        let ttl = self.inner.config.failed_endpoint_ttl;
        let now = Instant::now();
        let mut state = self.lock();
        let State { ports, failed } = &mut *state;
        let entry = ports.get_mut(&port)?;
        let n = entry.endpoints.len();
        if n == 0 {
            return None;
        }
        let start = entry.next % n;
        let untried: Vec<usize> = (0..n)
            .map(|i| (start + i) % n)
            .filter(|&i| !tried.contains(&entry.endpoints[i].instance_guid))
            .collect();
        let healthy = |i: &&usize| {
            failed
                .get(&entry.endpoints[**i].instance_guid)
                .is_none_or(|at| now.duration_since(*at) >= ttl)
        };
        let chosen = *untried.iter().find(healthy).or_else(|| untried.first())?;
        entry.next = chosen + 1;
        Some(entry.endpoints[chosen].clone())
    }

    fn mark_failed(&self, instance_guid: &str) {
        self.lock()
            .failed
            .insert(instance_guid.to_owned(), Instant::now());
    }

    fn backend_error(&self, kind: &str) {
        self.inner
            .metrics
            .backend_errors
            .get_or_create(&vec![("kind".to_owned(), kind.to_owned())])
            .inc();
    }

    /// Connects to a backend of `port`, trying up to `max_attempts`.
    async fn connect(&self, port: u16) -> Option<(Endpoint, TcpStream)> {
        let config = &self.inner.config;
        let mut tried = Vec::new();
        while tried.len() < config.max_attempts.max(1) {
            let endpoint = self.next_endpoint(port, &tried)?;
            tried.push(endpoint.instance_guid.clone());
            match tokio::time::timeout(config.dial_timeout, TcpStream::connect(endpoint.addr)).await
            {
                Ok(Ok(stream)) => return Some((endpoint, stream)),
                Ok(Err(err)) => {
                    tracing::info!(port, addr = %endpoint.addr, %err, "TCP backend refused");
                }
                Err(_) => tracing::info!(port, addr = %endpoint.addr, "TCP backend dial timed out"),
            }
            self.backend_error("dial");
            self.mark_failed(&endpoint.instance_guid);
        }
        None
    }
}

async fn accept_loop(router: TcpRouter, port: u16, listener: TcpListener) {
    let port_label = vec![("port".to_owned(), port.to_string())];
    loop {
        let (client, client_addr) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(err) => {
                // Usually out of file descriptors: back off, keep serving.
                tracing::warn!(port, %err, "TCP route accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        router
            .inner
            .metrics
            .connections
            .get_or_create(&port_label)
            .inc();
        let router = router.clone();
        tokio::spawn(async move { splice(router, port, client, client_addr).await });
    }
}

/// Joins a client to a backend and copies bytes both ways until either
/// side closes or the router shuts down.
async fn splice(router: TcpRouter, port: u16, mut client: TcpStream, client_addr: SocketAddr) {
    let mut closed = router.inner.closed_tx.subscribe();
    let Some((endpoint, mut backend)) = router.connect(port).await else {
        router.backend_error("no_endpoints");
        tracing::info!(port, %client_addr, "no TCP backend took the connection");
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = backend.set_nodelay(true);
    let active = router.inner.metrics.active.clone();
    active.inc();
    let copied = tokio::select! {
        copied = tokio::io::copy_bidirectional(&mut client, &mut backend) => Some(copied),
        _ = closed.changed() => None,
    };
    active.dec();
    match copied {
        Some(Ok((up, down))) => {
            tracing::debug!(port, %client_addr, backend = %endpoint.addr, up, down, "TCP connection closed");
        }
        Some(Err(err)) => {
            tracing::debug!(port, %client_addr, backend = %endpoint.addr, %err, "TCP connection failed");
        }
        None => tracing::debug!(port, %client_addr, "TCP connection closed by shutdown"),
    }
}
