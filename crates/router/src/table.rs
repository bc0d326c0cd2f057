//! The route table: which endpoints serve which URI, round robin among them,
//! and which endpoints recently failed to accept a connection.
//!
//! URIs are `host.domain` or `host.domain/path`; hosts compare
//! case-insensitively and a request matches the route with the longest path
//! prefix (whole segments only).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use prometheus_client::metrics::gauge::Gauge;

/// One app instance the router can send requests to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// Where the instance listens.
    pub addr: SocketAddr,
    /// The app's guid (`X-CF-ApplicationID`, the RTR log's source id).
    pub app_guid: String,
    /// The process's guid.
    pub process_guid: String,
    /// The instance's guid (`X-CF-InstanceID`); unique per running instance.
    pub instance_guid: String,
    /// The instance's index (`X-CF-InstanceIndex`).
    pub index: u32,
}

#[derive(Debug, Default)]
struct Pool {
    endpoints: Vec<Endpoint>,
    /// Round-robin position.
    next: usize,
    /// Added with [`RouteTable::add_route`]: kept (answering 503) when its
    /// last endpoint goes, instead of disappearing (answering 404).
    declared: bool,
}

#[derive(Debug, Default)]
struct Inner {
    /// host → (path, pool); paths are "" or start with '/', no trailing '/'.
    hosts: HashMap<String, Vec<(String, Pool)>>,
    /// instance guid → when connecting to it last failed.
    failed: HashMap<String, Instant>,
    /// instance guid → requests in flight to it (absent: none).
    in_flight: HashMap<String, usize>,
}

/// One request's claim on a backend instance's connection allowance,
/// given back when dropped.
pub(crate) struct ConnSlot {
    table: RouteTable,
    instance_guid: String,
}

impl Drop for ConnSlot {
    fn drop(&mut self) {
        let mut inner = self.table.lock();
        if let Some(count) = inner.in_flight.get_mut(&self.instance_guid) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                inner.in_flight.remove(&self.instance_guid);
            }
        }
    }
}

/// What choosing an endpoint for a request found.
pub(crate) enum Pick {
    /// This endpoint, with its connection claimed.
    Endpoint(Endpoint, ConnSlot),
    /// Untried endpoints exist, but every one is at its connection limit.
    Overloaded,
    /// No untried endpoint is left.
    Exhausted,
}

/// Whether an instance is below `max` requests in flight (0: no limit).
fn has_room(in_flight: &HashMap<String, usize>, guid: &str, max: usize) -> bool {
    max == 0 || in_flight.get(guid).copied().unwrap_or(0) < max
}

/// The routes the router serves; cheap to clone, all clones share one table.
#[derive(Clone, Default)]
pub struct RouteTable {
    inner: Arc<Mutex<Inner>>,
    routes_gauge: Gauge,
}

impl std::fmt::Debug for RouteTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RouteTable").finish_non_exhaustive()
    }
}

/// Splits a route URI into its lower-cased host and normalised path.
fn split_uri(uri: &str) -> (String, String) {
    let uri = uri.trim();
    let uri = uri
        .strip_prefix("http://")
        .or_else(|| uri.strip_prefix("https://"))
        .unwrap_or(uri);
    let (host, path) = match uri.find('/') {
        Some(i) => (&uri[..i], &uri[i..]),
        None => (uri, ""),
    };
    (normalise_host(host), path.trim_end_matches('/').to_owned())
}

/// Lower-cases a host and drops any port and trailing dot.
pub(crate) fn normalise_host(host: &str) -> String {
    let host = host.trim();
    let without_port = if let Some(rest) = host.strip_prefix('[') {
        // [v6]:port
        rest.split(']').next().unwrap_or(rest)
    } else {
        match host.rsplit_once(':') {
            Some((h, port)) if port.chars().all(|c| c.is_ascii_digit()) => h,
            _ => host,
        }
    };
    without_port.trim_end_matches('.').to_ascii_lowercase()
}

fn path_matches(route_path: &str, request_path: &str) -> bool {
    route_path.is_empty()
        || request_path == route_path
        || request_path
            .strip_prefix(route_path)
            .is_some_and(|rest| rest.starts_with('/') || rest.starts_with('?'))
}

fn route_key(host: &str, path: &str) -> String {
    format!("{host}{path}")
}

/// What a request's host and path find in the table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Lookup {
    /// No route for the host and path.
    Unknown,
    /// The route (its key) exists, with or without endpoints.
    Route { key: String, has_endpoints: bool },
}

impl RouteTable {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Every mutation leaves the maps consistent, so a poisoned lock is
        // still a usable table.
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn update_gauge(&self, inner: &Inner) {
        let count: usize = inner.hosts.values().map(Vec::len).sum();
        self.routes_gauge
            .set(i64::try_from(count).unwrap_or(i64::MAX));
    }

    pub(crate) fn routes_gauge(&self) -> Gauge {
        self.routes_gauge.clone()
    }

    /// Makes `uri` a known route even without endpoints, so that requests
    /// get 503 `no_endpoints` rather than 404 `unknown_route` while none run.
    pub fn add_route(&self, uri: &str) {
        let (host, path) = split_uri(uri);
        let mut inner = self.lock();
        let paths = inner.hosts.entry(host).or_default();
        match paths.iter_mut().find(|(p, _)| *p == path) {
            Some((_, pool)) => pool.declared = true,
            None => paths.push((
                path,
                Pool {
                    declared: true,
                    ..Pool::default()
                },
            )),
        }
        self.update_gauge(&inner);
    }

    /// Forgets `uri` and all its endpoints.
    pub fn remove_route(&self, uri: &str) {
        let (host, path) = split_uri(uri);
        let mut inner = self.lock();
        if let Some(paths) = inner.hosts.get_mut(&host) {
            paths.retain(|(p, _)| *p != path);
            if paths.is_empty() {
                inner.hosts.remove(&host);
            }
        }
        self.update_gauge(&inner);
    }

    /// Adds `endpoint` to `uri`'s route (creating the route); an endpoint
    /// with the same instance guid is replaced.
    pub fn register(&self, uri: &str, endpoint: Endpoint) {
        let (host, path) = split_uri(uri);
        let mut inner = self.lock();
        // A re-registered instance starts with a clean slate.
        inner.failed.remove(&endpoint.instance_guid);
        let paths = inner.hosts.entry(host).or_default();
        let pool = match paths.iter().position(|(p, _)| *p == path) {
            Some(i) => &mut paths[i].1,
            None => {
                paths.push((path, Pool::default()));
                let last = paths.len() - 1;
                &mut paths[last].1
            }
        };
        match pool
            .endpoints
            .iter_mut()
            .find(|e| e.instance_guid == endpoint.instance_guid)
        {
            Some(existing) => *existing = endpoint,
            None => pool.endpoints.push(endpoint),
        }
        self.update_gauge(&inner);
    }

    /// Removes the instance from `uri`'s route; a route left without
    /// endpoints disappears unless it was added with [`Self::add_route`].
    pub fn unregister(&self, uri: &str, instance_guid: &str) {
        let (host, path) = split_uri(uri);
        let mut inner = self.lock();
        if let Some(paths) = inner.hosts.get_mut(&host) {
            for (p, pool) in paths.iter_mut() {
                if *p == path {
                    pool.endpoints.retain(|e| e.instance_guid != instance_guid);
                }
            }
            paths.retain(|(_, pool)| pool.declared || !pool.endpoints.is_empty());
            if paths.is_empty() {
                inner.hosts.remove(&host);
            }
        }
        self.update_gauge(&inner);
    }

    /// Removes the instance from every route (it stopped or crashed).
    pub fn unregister_instance(&self, instance_guid: &str) {
        let mut inner = self.lock();
        inner.failed.remove(instance_guid);
        inner.hosts.retain(|_, paths| {
            for (_, pool) in paths.iter_mut() {
                pool.endpoints.retain(|e| e.instance_guid != instance_guid);
            }
            paths.retain(|(_, pool)| pool.declared || !pool.endpoints.is_empty());
            !paths.is_empty()
        });
        self.update_gauge(&inner);
    }

    /// Every route (`host` or `host/path`) with its endpoints, sorted by URI.
    pub fn routes(&self) -> Vec<(String, Vec<Endpoint>)> {
        let inner = self.lock();
        let mut routes: Vec<_> = inner
            .hosts
            .iter()
            .flat_map(|(host, paths)| {
                paths
                    .iter()
                    .map(move |(path, pool)| (route_key(host, path), pool.endpoints.clone()))
            })
            .collect();
        routes.sort_by(|a, b| a.0.cmp(&b.0));
        routes
    }

    /// The route serving `host` (any case, any port) and `path`.
    pub(crate) fn lookup(&self, host: &str, path: &str) -> Lookup {
        let host = normalise_host(host);
        let inner = self.lock();
        let Some(paths) = inner.hosts.get(&host) else {
            return Lookup::Unknown;
        };
        paths
            .iter()
            .filter(|(p, _)| path_matches(p, path))
            .max_by_key(|(p, _)| p.len())
            .map_or(Lookup::Unknown, |(p, pool)| Lookup::Route {
                key: route_key(&host, p),
                has_endpoints: !pool.endpoints.is_empty(),
            })
    }

    fn with_pool<T>(
        &self,
        key: &str,
        f: impl FnOnce(&mut Pool, &HashMap<String, Instant>, &mut HashMap<String, usize>) -> T,
    ) -> Option<T> {
        let (host, path) = key.split_at(key.find('/').unwrap_or(key.len()));
        let mut inner = self.lock();
        let Inner {
            hosts,
            failed,
            in_flight,
        } = &mut *inner;
        hosts
            .get_mut(host)?
            .iter_mut()
            .find(|(p, _)| p == path)
            .map(|(_, pool)| f(pool, failed, in_flight))
    }

    fn slot(&self, instance_guid: &str) -> ConnSlot {
        ConnSlot {
            table: self.clone(),
            instance_guid: instance_guid.to_owned(),
        }
    }

    /// Claims a connection to `instance_guid` unless it already has `max`
    /// requests in flight (0: no limit).
    pub(crate) fn claim(&self, instance_guid: &str, max: usize) -> Option<ConnSlot> {
        {
            let mut inner = self.lock();
            if !has_room(&inner.in_flight, instance_guid, max) {
                return None;
            }
            *inner.in_flight.entry(instance_guid.to_owned()).or_default() += 1;
        }
        Some(self.slot(instance_guid))
    }

    /// The next endpoint of route `key`, round robin, that this request has
    /// not tried yet and that is below `max_conns` requests in flight, with
    /// its connection claimed; endpoints that failed within `failed_ttl`
    /// are skipped unless nothing else is left.
    pub(crate) fn pick(
        &self,
        key: &str,
        tried: &[String],
        failed_ttl: Duration,
        max_conns: usize,
    ) -> Pick {
        let now = Instant::now();
        let chosen = self.with_pool(key, |pool, failed, in_flight| {
            let n = pool.endpoints.len();
            if n == 0 {
                return Err(false);
            }
            let start = pool.next % n;
            let untried: Vec<usize> = (0..n)
                .map(|i| (start + i) % n)
                .filter(|&i| !tried.contains(&pool.endpoints[i].instance_guid))
                .collect();
            if untried.is_empty() {
                return Err(false);
            }
            let with_room: Vec<usize> = untried
                .into_iter()
                .filter(|&i| has_room(in_flight, &pool.endpoints[i].instance_guid, max_conns))
                .collect();
            let healthy = |i: &&usize| {
                failed
                    .get(&pool.endpoints[**i].instance_guid)
                    .is_none_or(|at| now.duration_since(*at) >= failed_ttl)
            };
            let chosen = *with_room
                .iter()
                .find(healthy)
                .or_else(|| with_room.first())
                .ok_or(true)?;
            pool.next = chosen + 1;
            let endpoint = pool.endpoints[chosen].clone();
            *in_flight.entry(endpoint.instance_guid.clone()).or_default() += 1;
            Ok(endpoint)
        });
        match chosen {
            Some(Ok(endpoint)) => {
                let slot = self.slot(&endpoint.instance_guid);
                Pick::Endpoint(endpoint, slot)
            }
            Some(Err(true)) => Pick::Overloaded,
            Some(Err(false)) | None => Pick::Exhausted,
        }
    }

    /// Like [`Self::pick`] without a connection limit, giving the slot back
    /// at once.
    #[cfg(test)]
    fn next_endpoint(&self, key: &str, tried: &[String], failed_ttl: Duration) -> Option<Endpoint> {
        match self.pick(key, tried, failed_ttl, 0) {
            Pick::Endpoint(endpoint, _) => Some(endpoint),
            Pick::Overloaded | Pick::Exhausted => None,
        }
    }

    /// The instance of route `key` with this app guid and index.
    pub(crate) fn find_instance(&self, key: &str, app_guid: &str, index: u32) -> Option<Endpoint> {
        self.with_pool(key, |pool, _, _| {
            pool.endpoints
                .iter()
                .find(|e| e.app_guid == app_guid && e.index == index)
                .cloned()
        })
        .flatten()
    }

    /// The instance of route `key` with this guid, unless it recently
    /// failed (a sticky session then moves to another instance).
    pub(crate) fn sticky_endpoint(
        &self,
        key: &str,
        instance_guid: &str,
        failed_ttl: Duration,
    ) -> Option<Endpoint> {
        let now = Instant::now();
        self.with_pool(key, |pool, failed, _| {
            let recently_failed = failed
                .get(instance_guid)
                .is_some_and(|at| now.duration_since(*at) < failed_ttl);
            if recently_failed {
                return None;
            }
            pool.endpoints
                .iter()
                .find(|e| e.instance_guid == instance_guid)
                .cloned()
        })
        .flatten()
    }

    /// Remembers that connecting to this instance just failed.
    pub(crate) fn mark_failed(&self, instance_guid: &str) {
        self.lock()
            .failed
            .insert(instance_guid.to_owned(), Instant::now());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ep(guid: &str, port: u16) -> Endpoint {
        Endpoint {
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            app_guid: "app".into(),
            process_guid: "proc".into(),
            instance_guid: guid.into(),
            index: 0,
        }
    }

    #[test]
    fn hosts_are_case_insensitive_and_ports_ignored() {
        let t = RouteTable::new();
        t.register("MyApp.Apps.Localhost", ep("a", 1));
        assert_eq!(
            t.lookup("myapp.apps.localhost:8080", "/"),
            Lookup::Route {
                key: "myapp.apps.localhost".into(),
                has_endpoints: true
            }
        );
        assert_eq!(t.lookup("other.apps.localhost", "/"), Lookup::Unknown);
    }

    #[test]
    fn longest_path_prefix_wins_on_segment_boundaries() {
        let t = RouteTable::new();
        t.register("h.example", ep("root", 1));
        t.register("h.example/api", ep("api", 2));
        t.register("h.example/api/v2/", ep("v2", 3));
        let key = |path: &str| match t.lookup("h.example", path) {
            Lookup::Route { key, .. } => key,
            Lookup::Unknown => "unknown".into(),
        };
        assert_eq!(key("/"), "h.example");
        assert_eq!(key("/api"), "h.example/api");
        assert_eq!(key("/api/users"), "h.example/api");
        assert_eq!(key("/api/v2/x"), "h.example/api/v2");
        assert_eq!(key("/apix"), "h.example");

        let only_path = RouteTable::new();
        only_path.register("p.example/docs", ep("d", 1));
        assert_eq!(only_path.lookup("p.example", "/"), Lookup::Unknown);
    }

    #[test]
    fn round_robin_skips_recently_failed_unless_alone() {
        let t = RouteTable::new();
        for (g, p) in [("a", 1), ("b", 2), ("c", 3)] {
            t.register("h", ep(g, p));
        }
        let ttl = Duration::from_secs(30);
        let picks: Vec<_> = (0..6)
            .filter_map(|_| t.next_endpoint("h", &[], ttl))
            .map(|e| e.instance_guid)
            .collect();
        assert_eq!(picks, ["a", "b", "c", "a", "b", "c"]);
        t.mark_failed("b");
        let picks: Vec<_> = (0..4)
            .filter_map(|_| t.next_endpoint("h", &[], ttl))
            .map(|e| e.instance_guid)
            .collect();
        assert_eq!(picks, ["a", "c", "a", "c"]);
        // Only the failed one is left untried: use it anyway.
        let last = t.next_endpoint("h", &["a".into(), "c".into()], ttl);
        assert_eq!(last.map(|e| e.instance_guid).as_deref(), Some("b"));
        assert_eq!(
            t.next_endpoint("h", &["a".into(), "b".into(), "c".into()], ttl),
            None
        );
    }

    #[test]
    fn instances_at_their_connection_limit_are_passed_over() {
        let t = RouteTable::new();
        t.register("h", ep("a", 1));
        t.register("h", ep("b", 2));
        let ttl = Duration::from_secs(30);
        let Pick::Endpoint(first, slot_a) = t.pick("h", &[], ttl, 1) else {
            panic!("a free endpoint exists");
        };
        let Pick::Endpoint(second, slot_b) = t.pick("h", &[], ttl, 1) else {
            panic!("a free endpoint exists");
        };
        assert_ne!(first.instance_guid, second.instance_guid);
        assert!(matches!(t.pick("h", &[], ttl, 1), Pick::Overloaded));
        assert!(t.claim("a", 1).is_none());
        drop(slot_a);
        assert!(matches!(t.pick("h", &[], ttl, 1), Pick::Endpoint(e, _) if e == first));
        drop(slot_b);
        assert!(t.claim("b", 1).is_some());
        assert!(matches!(
            t.pick("h", &["a".into(), "b".into()], ttl, 1),
            Pick::Exhausted
        ));
    }

    #[test]
    fn unregister_drops_empty_routes_unless_declared() {
        let t = RouteTable::new();
        t.register("gone.example", ep("a", 1));
        t.add_route("kept.example");
        t.register("kept.example", ep("b", 2));
        t.register("gone.example/x", ep("b", 2));
        t.unregister("gone.example", "a");
        assert_eq!(t.lookup("gone.example", "/"), Lookup::Unknown);
        t.unregister_instance("b");
        assert_eq!(
            t.lookup("kept.example", "/"),
            Lookup::Route {
                key: "kept.example".into(),
                has_endpoints: false
            }
        );
        assert_eq!(t.routes(), vec![("kept.example".to_owned(), Vec::new())]);
        t.remove_route("kept.example");
        assert!(t.routes().is_empty());
    }

    #[test]
    fn re_registering_an_instance_replaces_it() {
        let t = RouteTable::new();
        t.register("h", ep("a", 1));
        t.register("h", ep("a", 2));
        let routes = t.routes();
        assert_eq!(routes.len(), 1);
        assert_eq!(routes[0].1, vec![ep("a", 2)]);
    }
}
