//! What the router reports about itself: requests by status class, retries,
//! backend errors, routes, latency. Each event is one method that counts it.

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
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            requests: Family::default(),
            retries: Counter::default(),
            backend_errors: Family::default(),
            // 1 ms … ~33 s.
            latency: Histogram::new(exponential_buckets(0.001, 2.0, 16)),
        }
    }
}

impl Metrics {
    /// A response finished (or the client went away) after `seconds`.
    pub(crate) fn request_served(&self, status: u16, seconds: f64) {
        let class = format!("{}xx", status / 100);
        self.requests
            .get_or_create(&vec![("status_class".to_owned(), class)])
            .inc();
        self.latency.observe(seconds);
    }

    /// A request moves on to another endpoint after a failed connection.
    pub(crate) fn retried(&self) {
        self.retries.inc();
    }

    /// A backend could not be reached (`dial`) or failed mid-request
    /// (`endpoint_failure`).
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
            "Backend failures, by kind (dial, endpoint_failure)",
            self.backend_errors.clone(),
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
