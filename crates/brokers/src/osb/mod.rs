//! The Open Service Broker API client: one [`BrokerClient`] per platform,
//! talking to any registered broker ([`BrokerEndpoint`]). Every call has a
//! timeout, sends `X-Broker-API-Version`, basic auth and the originating
//! identity, refuses answers larger than a bound, and reports a broker's
//! misbehaviour as a [`BrokerError`] that says which broker and which call.
//! Orphan mitigation (the spec's clean-up `DELETE` after a provision or bind
//! whose outcome is unknown) is sent by the client itself, so callers only
//! see the error.

mod types;

pub use types::*;

use std::time::Duration;

/// The OSB API version Ingot speaks (`X-Broker-API-Version`).
pub const API_VERSION: &str = "2.15";

/// Where a broker listens and how to authenticate to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerEndpoint {
    /// Base URL, e.g. `http://127.0.0.1:5000` (no trailing slash needed).
    pub url: String,
    /// Basic-auth user name.
    pub username: String,
    /// Basic-auth password.
    pub password: String,
}

/// Limits every broker call obeys.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// Whole-request timeout of one call (CF's default is 60 s).
    pub timeout: Duration,
    /// Largest response body accepted; a bigger one is an error.
    pub max_response_bytes: usize,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            timeout: Duration::from_secs(60),
            max_response_bytes: 1024 * 1024,
        }
    }
}

/// Talks OSB to brokers. Cheap to clone.
#[derive(Debug, Clone)]
pub struct BrokerClient {
    http: reqwest::Client,
    config: ClientConfig,
}

impl BrokerClient {
    /// A client with the given limits.
    pub fn new(config: ClientConfig) -> Result<Self, BrokerError> {
        let http = reqwest::Client::builder()
            .timeout(config.timeout)
            .build()
            .map_err(|e| BrokerError::Client(e.to_string()))?;
        Ok(BrokerClient { http, config })
    }

    /// `GET /v2/catalog`, validated (ids present and unique, every
    /// offering has a plan).
    pub async fn catalog(&self, broker: &BrokerEndpoint) -> Result<Catalog, BrokerError> {
        let _ = (&self.http, &self.config, broker);
        todo!("issue 7: brokers helper")
    }

    /// `PUT /v2/service_instances/:id?accepts_incomplete=true`. On a
    /// timeout, a 5xx or a malformed 2xx the client sends orphan
    /// mitigation (deprovision) before returning the error.
    pub async fn provision(
        &self,
        broker: &BrokerEndpoint,
        instance_id: &str,
        request: &ProvisionRequest,
        identity: &OriginatingIdentity,
    ) -> Result<Provisioned, BrokerError> {
        let _ = (broker, instance_id, request, identity);
        todo!("issue 7: brokers helper")
    }

    /// `PATCH /v2/service_instances/:id?accepts_incomplete=true`.
    pub async fn update(
        &self,
        broker: &BrokerEndpoint,
        instance_id: &str,
        request: &UpdateRequest,
        identity: &OriginatingIdentity,
    ) -> Result<Updated, BrokerError> {
        let _ = (broker, instance_id, request, identity);
        todo!("issue 7: brokers helper")
    }

    /// `DELETE /v2/service_instances/:id?service_id&plan_id&accepts_incomplete=true`.
    /// A 410 Gone counts as done.
    pub async fn deprovision(
        &self,
        broker: &BrokerEndpoint,
        instance_id: &str,
        ids: &PlanRef,
        identity: &OriginatingIdentity,
    ) -> Result<Deprovisioned, BrokerError> {
        let _ = (broker, instance_id, ids, identity);
        todo!("issue 7: brokers helper")
    }

    /// `GET /v2/service_instances/:id/last_operation`. For a deprovision,
    /// 410 Gone is reported as `Succeeded`.
    pub async fn instance_last_operation(
        &self,
        broker: &BrokerEndpoint,
        instance_id: &str,
        ids: &PlanRef,
        operation: Option<&str>,
    ) -> Result<LastOperation, BrokerError> {
        let _ = (broker, instance_id, ids, operation);
        todo!("issue 7: brokers helper")
    }

    /// `PUT /v2/service_instances/:id/service_bindings/:bid?accepts_incomplete=true`
    /// (orphan mitigation — unbind — as for provision).
    pub async fn bind(
        &self,
        broker: &BrokerEndpoint,
        instance_id: &str,
        binding_id: &str,
        request: &BindRequest,
        identity: &OriginatingIdentity,
    ) -> Result<Bound, BrokerError> {
        let _ = (broker, instance_id, binding_id, request, identity);
        todo!("issue 7: brokers helper")
    }

    /// `GET /v2/service_instances/:id/service_bindings/:bid/last_operation`.
    pub async fn binding_last_operation(
        &self,
        broker: &BrokerEndpoint,
        instance_id: &str,
        binding_id: &str,
        ids: &PlanRef,
        operation: Option<&str>,
    ) -> Result<LastOperation, BrokerError> {
        let _ = (broker, instance_id, binding_id, ids, operation);
        todo!("issue 7: brokers helper")
    }

    /// `GET /v2/service_instances/:id/service_bindings/:bid`: the
    /// credentials of a binding that finished asynchronously.
    pub async fn fetch_binding(
        &self,
        broker: &BrokerEndpoint,
        instance_id: &str,
        binding_id: &str,
    ) -> Result<BindingDetails, BrokerError> {
        let _ = (broker, instance_id, binding_id);
        todo!("issue 7: brokers helper")
    }

    /// `DELETE /v2/service_instances/:id/service_bindings/:bid`; 410 counts as done.
    pub async fn unbind(
        &self,
        broker: &BrokerEndpoint,
        instance_id: &str,
        binding_id: &str,
        ids: &PlanRef,
        identity: &OriginatingIdentity,
    ) -> Result<Unbound, BrokerError> {
        let _ = (broker, instance_id, binding_id, ids, identity);
        todo!("issue 7: brokers helper")
    }
}
