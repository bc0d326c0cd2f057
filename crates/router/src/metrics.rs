//! What the router reports about itself: requests by status class and by
//! route, retries, backend errors, routes, latency. Each event is one method
//! that counts it.
//!
//! Route labels are bounded: the first `max_route_labels` routes that see
//! traffic get their own series, later ones share `other`, so a table of
//! 100 000 routes cannot blow up the scrape.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use crate::table::RouteTable;

type Labels = Vec<(String, String)>;

#[derive(Clone)]
pub(crate) struct Metrics {
    requests: Family<Labels, Counter>,
    retries: Counter,
    backend_errors: Family<Labels, Counter>,
    latency: Histogram,
    route_requests: Family<Labels, Counter>,
    /// Routes that have their own label, with their counter.
    labelled_routes: Arc<Mutex<HashMap<String, Counter>>>,
    /// `requests` by status class 1xx…5xx, looked up once.
    by_class: [Counter; 5],
    route_label_limit: usize,
}

/// The label of requests to routes beyond the label limit.
const OTHER_ROUTE: &str = "other";

impl Default for Metrics {
    fn default() -> Self {
        let requests: Family<Labels, Counter> = Family::default();
        Self {
            requests: requests.clone(),
            by_class: ["1xx", "2xx", "3xx", "4xx", "5xx"].map(|class| {
                requests
                    .get_or_create(&vec![("status_class".to_owned(), class.to_owned())])
                    .clone()
            }),
            retries: Counter::default(),
            backend_errors: Family::default(),
            // 100 µs … ~52 s.
            latency: Histogram::new(exponential_buckets(0.0001, 2.0, 20)),
            route_requests: Family::default(),
            labelled_routes: Arc::default(),
            route_label_limit: crate::RouterConfig::default().max_route_labels,
        }
    }
}

impl Metrics {
    pub(crate) fn set_route_label_limit(&mut self, limit: usize) {
        self.route_label_limit = limit;
    }

    /// A request to route `route` (`host/path`) was answered.
    pub(crate) fn route_request(&self, route: &str) {
        let mut labelled = self
            .labelled_routes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(counter) = labelled.get(route) {
            counter.inc();
            return;
        }
        let label = if labelled.len() < self.route_label_limit {
            route
        } else {
            OTHER_ROUTE
        };
        let counter = self
            .route_requests
            .get_or_create(&vec![("route".to_owned(), label.to_owned())])
            .clone();
        counter.inc();
        if label == route {
            labelled.insert(route.to_owned(), counter);
        }
    }

    /// A response finished (or the client went away) after `seconds`.
    pub(crate) fn request_served(&self, status: u16, seconds: f64) {
        match self.by_class.get(usize::from(status / 100).wrapping_sub(1)) {
            Some(counter) => {
                counter.inc();
            }
            None => {
                let class = format!("{}xx", status / 100);
                self.requests
                    .get_or_create(&vec![("status_class".to_owned(), class)])
                    .inc();
            }
        }
        self.latency.observe(seconds);
    }

    /// A request moves on to another endpoint after a failed connection.
    pub(crate) fn retried(&self) {
        self.retries.inc();
    }

    /// A backend could not be reached (`dial`), failed mid-request
    /// (`endpoint_failure`), did not answer in time (`timeout`), or was at
    /// its connection limit (`connection_limit`).
    pub(crate) fn backend_error(&self, kind: &str) {
        self.backend_errors
            .get_or_create(&vec![("kind".to_owned(), kind.to_owned())])
            .inc();
    }

    pub(crate) fn register(&self, registry: &mut Registry, table: &RouteTable) {
        registry.register(
            "router_requests",
            "Requests answered, by status class",
            self.requests.clone(),
        );
        registry.register(
            "router_retries",
            "Requests sent to another endpoint after a failed connection",
            self.retries.clone(),
        );
        registry.register(
            "router_backend_errors",
            "Backend failures, by kind (dial, endpoint_failure, timeout, connection_limit)",
            self.backend_errors.clone(),
        );
        registry.register(
            "router_route_requests",
            "Requests answered, by route (host/path); routes beyond the label limit are `other`",
            self.route_requests.clone(),
        );
        registry.register(
            "router_routes",
            "Routes in the route table",
            table.routes_gauge(),
        );
        registry.register(
            "router_request_duration_seconds",
            "Time from a request's arrival to its response's last byte",
            self.latency.clone(),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn route_labels_stop_at_the_limit_and_the_rest_are_other() {
        let mut metrics = Metrics::default();
        metrics.set_route_label_limit(2);
        for route in ["a", "b", "c", "a", "d"] {
            metrics.route_request(route);
        }
        let mut registry = Registry::default();
        metrics.register(&mut registry, &RouteTable::new());
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).expect("encodes");
        let count = |route: &str| {
            text.lines()
                .find(|l| {
                    l.starts_with(&format!("router_route_requests_total{{route=\"{route}\"}}"))
                })
                .and_then(|l| l.rsplit(' ').next())
                .map(str::to_owned)
        };
        assert_eq!(count("a").as_deref(), Some("2"));
        assert_eq!(count("b").as_deref(), Some("1"));
        assert_eq!(count("other").as_deref(), Some("2"));
        assert_eq!(count("c"), None);
    }
}
