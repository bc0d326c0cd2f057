//! The Open Service Broker API client: one [`BrokerClient`] per platform,
//! talking to any registered broker ([`BrokerEndpoint`]). Every call has a
//! timeout, sends `X-Broker-API-Version`, basic auth and the originating
//! identity, refuses answers larger than a bound, and reports a broker's
//! misbehaviour as a [`BrokerError`] that says which broker and which call.
//! Orphan mitigation (the spec's clean-up `DELETE` after a provision or bind
//! whose outcome is unknown) is sent by the client itself, so callers only
//! see the error.
//!
//! One concern per file: `transport` makes one HTTP exchange (deadline over
//! the whole exchange, body read in chunks up to the size cap), `headers`
//! encodes the OSB headers, `outcomes` says what each status and body means
//! for each call — including when orphan mitigation is due, following the
//! spec's table — and `catalog` holds the catalog's rules. This file only
//! wires them together.

mod catalog;
mod headers;
mod outcomes;
mod transport;
mod types;

pub use catalog::validate as validate_catalog;
pub use headers::{ORIGINATING_IDENTITY_HEADER, REQUEST_IDENTITY_HEADER, VERSION_HEADER};
pub use types::*;

use std::time::Duration;

use reqwest::Method;
use serde::Serialize;

use transport::{exchange, Request};

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

/// Longest wait for an orphan-mitigation call: it is a best-effort clean-up
/// sent while the user waits for the original call's error, so it is bounded
/// more tightly than ordinary calls (and never longer than them).
pub const ORPHAN_MITIGATION_TIMEOUT: Duration = Duration::from_secs(10);

/// Talks OSB to brokers. Cheap to clone.
#[derive(Debug, Clone)]
pub struct BrokerClient {
    http: reqwest::Client,
    config: ClientConfig,
    orphan_mitigation_timeout: Duration,
}

impl BrokerClient {
    /// A client with the given limits.
    pub fn new(config: ClientConfig) -> Result<Self, BrokerError> {
        let http = reqwest::Client::builder()
            .timeout(config.timeout)
            // A broker answers where it was registered; following a redirect
            // would replay a PUT or DELETE to an address nobody vetted.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| BrokerError::Client(e.to_string()))?;
        let orphan_mitigation_timeout = config.timeout.min(ORPHAN_MITIGATION_TIMEOUT);
        Ok(BrokerClient {
            http,
            config,
            orphan_mitigation_timeout,
        })
    }

    /// The same client with another deadline for orphan-mitigation calls
    /// (default: the smaller of the call timeout and
    /// [`ORPHAN_MITIGATION_TIMEOUT`]).
    pub fn with_orphan_mitigation_timeout(mut self, timeout: Duration) -> Self {
        self.orphan_mitigation_timeout = timeout;
        self
    }

    /// The limits this client was made with.
    pub fn config(&self) -> &ClientConfig {
        &self.config
    }

    /// `GET /v2/catalog`, validated (ids present and unique, every
    /// offering has a plan).
    pub async fn catalog(&self, broker: &BrokerEndpoint) -> Result<Catalog, BrokerError> {
        let request = self.request("catalog", Method::GET, &["v2", "catalog"], &[]);
        let answer = exchange(&self.http, broker, request).await?;
        outcomes::catalog(&broker.url, answer)
    }

    /// `PUT /v2/service_instances/:id?accepts_incomplete=true`. On a
    /// timeout, a 5xx, a 201 with an unusable body or a 2xx the spec does not
    /// allow, the client sends orphan mitigation (deprovision) before
    /// returning the error.
    pub async fn provision(
        &self,
        broker: &BrokerEndpoint,
        instance_id: &str,
        request: &ProvisionRequest,
        identity: &OriginatingIdentity,
    ) -> Result<Provisioned, BrokerError> {
        const CALL: &str = "provision";
        let body = json_body(&broker.url, CALL, request)?;
        let segments = ["v2", "service_instances", instance_id];
        let http_request = Request {
            body: Some(body),
            identity: Some(identity),
            ..self.request(CALL, Method::PUT, &segments, &[ACCEPTS_INCOMPLETE])
        };
        let answer = exchange(&self.http, broker, http_request).await?;
        let outcome = outcomes::provision(&broker.url, answer);
        if let (Err(cause), true) = (&outcome.result, outcome.orphan_mitigation) {
            let ids = PlanRef {
                service_id: request.service_id.clone(),
                plan_id: request.plan_id.clone(),
            };
            self.mitigate_instance(broker, instance_id, &ids, cause)
                .await;
        }
        outcome.result
    }

    /// `PATCH /v2/service_instances/:id?accepts_incomplete=true`.
    pub async fn update(
        &self,
        broker: &BrokerEndpoint,
        instance_id: &str,
        request: &UpdateRequest,
        identity: &OriginatingIdentity,
    ) -> Result<Updated, BrokerError> {
        const CALL: &str = "update";
        let body = json_body(&broker.url, CALL, request)?;
        let segments = ["v2", "service_instances", instance_id];
        let http_request = Request {
            body: Some(body),
            identity: Some(identity),
            ..self.request(CALL, Method::PATCH, &segments, &[ACCEPTS_INCOMPLETE])
        };
        let answer = exchange(&self.http, broker, http_request).await?;
        outcomes::update(&broker.url, answer)
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
        self.send_deprovision(
            broker,
            instance_id,
            ids,
            Some(identity),
            self.config.timeout,
        )
        .await
    }

    /// `GET /v2/service_instances/:id/last_operation`. This form cannot
    /// tell a delete from a create, so it reports 410 Gone as `Succeeded`,
    /// which is right for a deprovision; use
    /// [`instance_last_operation_of`](Self::instance_last_operation_of) when
    /// polling a provision or an update.
    pub async fn instance_last_operation(
        &self,
        broker: &BrokerEndpoint,
        instance_id: &str,
        ids: &PlanRef,
        operation: Option<&str>,
    ) -> Result<LastOperation, BrokerError> {
        self.instance_last_operation_of(broker, instance_id, ids, operation, OperationKind::Delete)
            .await
    }

    /// `GET /v2/service_instances/:id/last_operation` for an operation of a
    /// known kind: 410 Gone is `Succeeded` for [`OperationKind::Delete`] and
    /// a `Rejected` error (status 410) otherwise. `ids.plan_id` must be the
    /// plan before an update, as the spec requires.
    pub async fn instance_last_operation_of(
        &self,
        broker: &BrokerEndpoint,
        instance_id: &str,
        ids: &PlanRef,
        operation: Option<&str>,
        kind: OperationKind,
    ) -> Result<LastOperation, BrokerError> {
        const CALL: &str = "last_operation";
        let segments = ["v2", "service_instances", instance_id, "last_operation"];
        let query = poll_query(ids, operation);
        let request = self.request(CALL, Method::GET, &segments, &query);
        let answer = exchange(&self.http, broker, request).await?;
        outcomes::last_operation(&broker.url, CALL, kind, answer)
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
        const CALL: &str = "bind";
        let body = json_body(&broker.url, CALL, request)?;
        let segments = [
            "v2",
            "service_instances",
            instance_id,
            "service_bindings",
            binding_id,
        ];
        let http_request = Request {
            body: Some(body),
            identity: Some(identity),
            ..self.request(CALL, Method::PUT, &segments, &[ACCEPTS_INCOMPLETE])
        };
        let answer = exchange(&self.http, broker, http_request).await?;
        let outcome = outcomes::bind(&broker.url, answer);
        if let (Err(cause), true) = (&outcome.result, outcome.orphan_mitigation) {
            let ids = PlanRef {
                service_id: request.service_id.clone(),
                plan_id: request.plan_id.clone(),
            };
            self.mitigate_binding(broker, instance_id, binding_id, &ids, cause)
                .await;
        }
        outcome.result
    }

    /// `GET /v2/service_instances/:id/service_bindings/:bid/last_operation`.
    /// Like [`instance_last_operation`](Self::instance_last_operation), 410
    /// Gone is reported as `Succeeded` (right for an unbind); use
    /// [`binding_last_operation_of`](Self::binding_last_operation_of) when
    /// polling a bind.
    pub async fn binding_last_operation(
        &self,
        broker: &BrokerEndpoint,
        instance_id: &str,
        binding_id: &str,
        ids: &PlanRef,
        operation: Option<&str>,
    ) -> Result<LastOperation, BrokerError> {
        self.binding_last_operation_of(
            broker,
            instance_id,
            binding_id,
            ids,
            operation,
            OperationKind::Delete,
        )
        .await
    }

    /// `GET …/service_bindings/:bid/last_operation` for an operation of a
    /// known kind (410 Gone is success only for [`OperationKind::Delete`]).
    pub async fn binding_last_operation_of(
        &self,
        broker: &BrokerEndpoint,
        instance_id: &str,
        binding_id: &str,
        ids: &PlanRef,
        operation: Option<&str>,
        kind: OperationKind,
    ) -> Result<LastOperation, BrokerError> {
        const CALL: &str = "binding_last_operation";
        let segments = [
            "v2",
            "service_instances",
            instance_id,
            "service_bindings",
            binding_id,
            "last_operation",
        ];
        let query = poll_query(ids, operation);
        let request = self.request(CALL, Method::GET, &segments, &query);
        let answer = exchange(&self.http, broker, request).await?;
        outcomes::last_operation(&broker.url, CALL, kind, answer)
    }

    /// `GET /v2/service_instances/:id/service_bindings/:bid`: the
    /// credentials of a binding that finished asynchronously.
    pub async fn fetch_binding(
        &self,
        broker: &BrokerEndpoint,
        instance_id: &str,
        binding_id: &str,
    ) -> Result<BindingDetails, BrokerError> {
        let segments = [
            "v2",
            "service_instances",
            instance_id,
            "service_bindings",
            binding_id,
        ];
        let request = self.request("fetch_binding", Method::GET, &segments, &[]);
        let answer = exchange(&self.http, broker, request).await?;
        outcomes::fetch_binding(&broker.url, answer)
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
        self.send_unbind(
            broker,
            instance_id,
            binding_id,
            ids,
            Some(identity),
            self.config.timeout,
        )
        .await
    }

    /// A request with this client's limits and no body or identity.
    fn request<'a>(
        &self,
        call: &'static str,
        method: Method,
        segments: &'a [&'a str],
        query: &'a [(&'a str, &'a str)],
    ) -> Request<'a> {
        Request {
            call,
            method,
            segments,
            query,
            body: None,
            identity: None,
            timeout: self.config.timeout,
            max_response_bytes: self.config.max_response_bytes,
        }
    }

    async fn send_deprovision(
        &self,
        broker: &BrokerEndpoint,
        instance_id: &str,
        ids: &PlanRef,
        identity: Option<&OriginatingIdentity>,
        timeout: Duration,
    ) -> Result<Deprovisioned, BrokerError> {
        let segments = ["v2", "service_instances", instance_id];
        let query = delete_query(ids);
        let request = Request {
            identity,
            timeout,
            ..self.request("deprovision", Method::DELETE, &segments, &query)
        };
        let answer = exchange(&self.http, broker, request).await?;
        outcomes::deprovision(&broker.url, answer)
    }

    async fn send_unbind(
        &self,
        broker: &BrokerEndpoint,
        instance_id: &str,
        binding_id: &str,
        ids: &PlanRef,
        identity: Option<&OriginatingIdentity>,
        timeout: Duration,
    ) -> Result<Unbound, BrokerError> {
        let segments = [
            "v2",
            "service_instances",
            instance_id,
            "service_bindings",
            binding_id,
        ];
        let query = delete_query(ids);
        let request = Request {
            identity,
            timeout,
            ..self.request("unbind", Method::DELETE, &segments, &query)
        };
        let answer = exchange(&self.http, broker, request).await?;
        outcomes::unbind(&broker.url, answer)
    }

    /// Orphan mitigation for a provision whose outcome is unknown: one
    /// deprovision, without an originating identity (no user asked for it,
    /// as the spec notes), within the short deadline. Its own failure is
    /// only logged: the caller reports the provision's error, and a broker
    /// that keeps the instance is left to the operator.
    async fn mitigate_instance(
        &self,
        broker: &BrokerEndpoint,
        instance_id: &str,
        ids: &PlanRef,
        cause: &BrokerError,
    ) {
        tracing::warn!(
            broker = %broker.url, instance_id, error = %cause,
            "provision failed with an unknown outcome; sending orphan mitigation (deprovision)"
        );
        let result = self
            .send_deprovision(
                broker,
                instance_id,
                ids,
                None,
                self.orphan_mitigation_timeout,
            )
            .await;
        match result {
            Ok(outcome) => tracing::info!(
                broker = %broker.url, instance_id, ?outcome,
                "orphan mitigation: deprovision accepted"
            ),
            Err(error) => tracing::warn!(
                broker = %broker.url, instance_id, %error,
                "orphan mitigation: deprovision failed; the broker may keep an orphaned instance"
            ),
        }
    }

    /// Orphan mitigation for a bind whose outcome is unknown: one unbind, as
    /// for [`mitigate_instance`](Self::mitigate_instance).
    async fn mitigate_binding(
        &self,
        broker: &BrokerEndpoint,
        instance_id: &str,
        binding_id: &str,
        ids: &PlanRef,
        cause: &BrokerError,
    ) {
        tracing::warn!(
            broker = %broker.url, instance_id, binding_id, error = %cause,
            "bind failed with an unknown outcome; sending orphan mitigation (unbind)"
        );
        let result = self
            .send_unbind(
                broker,
                instance_id,
                binding_id,
                ids,
                None,
                self.orphan_mitigation_timeout,
            )
            .await;
        match result {
            Ok(outcome) => tracing::info!(
                broker = %broker.url, instance_id, binding_id, ?outcome,
                "orphan mitigation: unbind accepted"
            ),
            Err(error) => tracing::warn!(
                broker = %broker.url, instance_id, binding_id, %error,
                "orphan mitigation: unbind failed; the broker may keep an orphaned binding"
            ),
        }
    }
}

/// Every mutating call allows the broker to answer 202.
const ACCEPTS_INCOMPLETE: (&str, &str) = ("accepts_incomplete", "true");

/// Query of deprovision and unbind.
fn delete_query(ids: &PlanRef) -> [(&str, &str); 3] {
    [
        ("service_id", ids.service_id.as_str()),
        ("plan_id", ids.plan_id.as_str()),
        ACCEPTS_INCOMPLETE,
    ]
}

/// Query of a `last_operation` poll.
fn poll_query<'a>(ids: &'a PlanRef, operation: Option<&'a str>) -> Vec<(&'a str, &'a str)> {
    let mut query = vec![
        ("service_id", ids.service_id.as_str()),
        ("plan_id", ids.plan_id.as_str()),
    ];
    if let Some(operation) = operation {
        query.push(("operation", operation));
    }
    query
}

/// A request body as JSON.
fn json_body(url: &str, call: &'static str, body: &impl Serialize) -> Result<Vec<u8>, BrokerError> {
    // Serialising these plain structs cannot fail, but a map with non-string
    // keys in user parameters would; report it rather than panic.
    serde_json::to_vec(body).map_err(|e| BrokerError::Client(format!("{call} to {url}: {e}")))
}
