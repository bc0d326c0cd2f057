//! What the scheduler counts about itself, in Prometheus form.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// Labels of the staging counter.
type Outcome = Vec<(&'static str, &'static str)>;

/// The scheduler's counters and gauges; cheap to clone (they share state).
#[derive(Clone, Default)]
pub(crate) struct Metrics {
    /// Instances started (every replacement counts).
    pub(crate) instances_started: Counter,
    /// Instances that crashed or never became healthy.
    pub(crate) crashes: Counter,
    /// Stagings by outcome (`staged` / `failed`).
    pub(crate) stagings: Family<Outcome, Counter>,
    /// Instances the API wants, over all processes.
    pub(crate) desired_instances: Gauge,
    /// Instances passing their health check right now.
    pub(crate) running_instances: Gauge,
    /// Lines dropped by instances' log rate limits.
    pub(crate) log_rate: ingot_logs::LogRateMetrics,
}

impl Metrics {
    pub(crate) fn register(&self, registry: &mut Registry) {
        let sub = registry.sub_registry_with_prefix("scheduler");
        sub.register(
            "instances_started",
            "App instances started",
            self.instances_started.clone(),
        );
        sub.register(
            "crashes",
            "App instances that crashed or never became healthy",
            self.crashes.clone(),
        );
        sub.register(
            "stagings",
            "Staging tasks by outcome",
            self.stagings.clone(),
        );
        sub.register(
            "desired_instances",
            "Instances desired over all processes",
            self.desired_instances.clone(),
        );
        sub.register(
            "running_instances",
            "Instances passing their health check",
            self.running_instances.clone(),
        );
        self.log_rate.register(sub);
    }

    pub(crate) fn staged(&self, ok: bool) {
        let outcome = if ok { "staged" } else { "failed" };
        self.stagings
            .get_or_create(&vec![("outcome", outcome)])
            .inc();
    }
}
