//! What the proxy reports about itself: sessions opened and refused, connections active.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

#[derive(Clone, Default)]
pub(crate) struct Metrics {
    pub(crate) opened: Counter,
    pub(crate) refused: Counter,
    pub(crate) active: Gauge,
}

impl Metrics {
    pub(crate) fn register(&self, registry: &mut Registry) {
        registry.register(
            "ssh_sessions_opened",
            "SSH logins let in by the authorizer",
            self.opened.clone(),
        );
        registry.register(
            "ssh_sessions_refused",
            "SSH login attempts refused",
            self.refused.clone(),
        );
        registry.register(
            "ssh_sessions_active",
            "Authenticated SSH connections open now",
            self.active.clone(),
        );
    }
}
