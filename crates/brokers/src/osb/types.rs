//! The OSB API's request and response shapes, and the client's errors.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// `GET /v2/catalog`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Catalog {
    /// The broker's offerings.
    pub services: Vec<Offering>,
}

/// One service offering of a catalog.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Offering {
    /// The broker's id for it.
    pub id: String,
    /// CLI-friendly name (the `label` in `VCAP_SERVICES`).
    pub name: String,
    /// Short description.
    pub description: String,
    /// Whether instances can be bound.
    pub bindable: bool,
    /// Whether instances may change plan.
    #[serde(default)]
    pub plan_updateable: bool,
    /// Tags copied into `VCAP_SERVICES`.
    #[serde(default)]
    pub tags: Vec<String>,
    /// e.g. `["syslog_drain"]`.
    #[serde(default)]
    pub requires: Vec<String>,
    /// Free-form metadata (`displayName`, `documentationUrl`, …).
    #[serde(default)]
    pub metadata: Option<Map<String, Value>>,
    /// Whether `GET /v2/service_instances/:id` is supported.
    #[serde(default)]
    pub instances_retrievable: bool,
    /// Whether `GET …/service_bindings/:bid` is supported.
    #[serde(default)]
    pub bindings_retrievable: bool,
    /// The offering's plans (at least one).
    pub plans: Vec<Plan>,
}

/// One plan of an offering.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    /// The broker's id for it.
    pub id: String,
    /// CLI-friendly name.
    pub name: String,
    /// Short description.
    pub description: String,
    /// Whether it costs nothing (default true).
    #[serde(default)]
    pub free: Option<bool>,
    /// Overrides the offering's `bindable`.
    #[serde(default)]
    pub bindable: Option<bool>,
    /// Overrides the offering's `plan_updateable`.
    #[serde(default)]
    pub plan_updateable: Option<bool>,
    /// Free-form metadata.
    #[serde(default)]
    pub metadata: Option<Map<String, Value>>,
    /// Parameter schemas, as given.
    #[serde(default)]
    pub schemas: Option<Value>,
    /// The version instances should be upgraded to.
    #[serde(default)]
    pub maintenance_info: Option<MaintenanceInfo>,
    /// Longest time, in seconds, an async operation may take.
    #[serde(default)]
    pub maximum_polling_duration: Option<u64>,
}

/// `maintenance_info` of a plan or an instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MaintenanceInfo {
    /// Semantic version.
    pub version: String,
    /// What this version changes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// The offering and plan an instance belongs to (query parameters of
/// deprovision, unbind and last_operation).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanRef {
    /// Offering id.
    pub service_id: String,
    /// Plan id.
    pub plan_id: String,
}

/// Who asked (`X-Broker-API-Originating-Identity: cloudfoundry <base64 {"user_id":…}>`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OriginatingIdentity {
    /// The user's guid.
    pub user_id: String,
}

/// The platform context CF sends with provision, update and bind.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Context {
    /// Always `cloudfoundry`.
    pub platform: String,
    /// The org's guid.
    pub organization_guid: String,
    /// The space's guid.
    pub space_guid: String,
    /// The org's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub organization_name: Option<String>,
    /// The space's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub space_name: Option<String>,
    /// The instance's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_name: Option<String>,
}

/// Body of a provision.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProvisionRequest {
    /// Offering id.
    pub service_id: String,
    /// Plan id.
    pub plan_id: String,
    /// Deprecated in OSB but still sent by CF.
    pub organization_guid: String,
    /// Deprecated in OSB but still sent by CF.
    pub space_guid: String,
    /// Platform context.
    pub context: Context,
    /// User parameters (`-c JSON`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parameters: Option<Map<String, Value>>,
    /// The plan's maintenance_info, when it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub maintenance_info: Option<MaintenanceInfo>,
}

/// The previous state sent with an update.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PreviousValues {
    /// Offering id.
    pub service_id: String,
    /// Plan before the update.
    pub plan_id: String,
    /// Deprecated, still sent.
    pub organization_id: String,
    /// Deprecated, still sent.
    pub space_id: String,
    /// maintenance_info before the update.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub maintenance_info: Option<MaintenanceInfo>,
}

/// Body of an update.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UpdateRequest {
    /// Offering id.
    pub service_id: String,
    /// New plan id (absent: unchanged).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan_id: Option<String>,
    /// Platform context.
    pub context: Context,
    /// New parameters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parameters: Option<Map<String, Value>>,
    /// Target maintenance_info (an upgrade).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub maintenance_info: Option<MaintenanceInfo>,
    /// The instance as it was.
    pub previous_values: PreviousValues,
}

/// Body of a bind.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BindRequest {
    /// Offering id.
    pub service_id: String,
    /// Plan id.
    pub plan_id: String,
    /// Deprecated, still sent for app bindings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_guid: Option<String>,
    /// `{"app_guid":…}` for an app binding, absent for a service key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bind_resource: Option<Value>,
    /// Platform context.
    pub context: Context,
    /// User parameters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parameters: Option<Map<String, Value>>,
}

/// Outcome of a provision.
#[derive(Debug, Clone, PartialEq)]
pub enum Provisioned {
    /// 200 or 201: the instance exists.
    Done {
        /// Dashboard URL, if the broker gave one.
        dashboard_url: Option<String>,
    },
    /// 202: poll `last_operation` with this operation (may be absent).
    InProgress {
        /// Opaque operation id.
        operation: Option<String>,
        /// Dashboard URL, if the broker gave one.
        dashboard_url: Option<String>,
    },
}

/// Outcome of an update.
#[derive(Debug, Clone, PartialEq)]
pub enum Updated {
    /// 200.
    Done {
        /// Dashboard URL, if the broker gave one.
        dashboard_url: Option<String>,
    },
    /// 202.
    InProgress {
        /// Opaque operation id.
        operation: Option<String>,
    },
}

/// Outcome of a deprovision.
#[derive(Debug, Clone, PartialEq)]
pub enum Deprovisioned {
    /// 200 or 410.
    Done,
    /// 202.
    InProgress {
        /// Opaque operation id.
        operation: Option<String>,
    },
}

/// Outcome of a bind.
#[derive(Debug, Clone, PartialEq)]
pub enum Bound {
    /// 200 or 201.
    Done(BindingDetails),
    /// 202.
    InProgress {
        /// Opaque operation id.
        operation: Option<String>,
    },
}

/// Outcome of an unbind.
#[derive(Debug, Clone, PartialEq)]
pub enum Unbound {
    /// 200 or 410.
    Done,
    /// 202.
    InProgress {
        /// Opaque operation id.
        operation: Option<String>,
    },
}

/// What a binding gives the app.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct BindingDetails {
    /// Credentials for `VCAP_SERVICES`.
    #[serde(default)]
    pub credentials: Map<String, Value>,
    /// Where to send the app's logs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub syslog_drain_url: Option<String>,
    /// Route service URL (route bindings).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route_service_url: Option<String>,
}

/// State of an asynchronous operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum OperationState {
    /// `in progress`.
    #[serde(rename = "in progress")]
    InProgress,
    /// `succeeded`.
    #[serde(rename = "succeeded")]
    Succeeded,
    /// `failed`.
    #[serde(rename = "failed")]
    Failed,
}

/// The kind of asynchronous operation a `last_operation` poll follows. It
/// decides what a `410 Gone` means: success for a delete, an invalid answer
/// (keep polling) for a create or an update.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OperationKind {
    /// Provision or bind.
    Create,
    /// Update of an instance.
    Update,
    /// Deprovision or unbind.
    Delete,
}

impl OperationKind {
    /// The operation in words, for messages.
    pub fn noun(self) -> &'static str {
        match self {
            OperationKind::Create => "creation",
            OperationKind::Update => "update",
            OperationKind::Delete => "deletion",
        }
    }
}

/// `GET …/last_operation`.
#[derive(Debug, Clone, PartialEq)]
pub struct LastOperation {
    /// Where the operation is.
    pub state: OperationState,
    /// The broker's words for the user.
    pub description: Option<String>,
    /// The broker's `Retry-After`, when it sent one.
    pub retry_after: Option<Duration>,
}

/// A broker call that did not give a usable answer. Each variant names the
/// broker URL and the call.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    /// The HTTP client could not be built.
    #[error("broker client: {0}")]
    Client(String),
    /// No answer within the timeout.
    #[error("the service broker at {url} did not answer {call} within {after:?}")]
    Timeout {
        /// Broker URL.
        url: String,
        /// e.g. `provision`.
        call: &'static str,
        /// The timeout.
        after: Duration,
    },
    /// Connection refused, reset, DNS, TLS…
    #[error("the service broker at {url} could not be reached for {call}: {reason}")]
    Unreachable {
        /// Broker URL.
        url: String,
        /// e.g. `provision`.
        call: &'static str,
        /// Why.
        reason: String,
    },
    /// An error status with the broker's `error`/`description` when it sent them.
    #[error("the service broker at {url} rejected {call} with status {status}: {description}")]
    Rejected {
        /// Broker URL.
        url: String,
        /// e.g. `provision`.
        call: &'static str,
        /// HTTP status.
        status: u16,
        /// OSB `error` code (e.g. `AsyncRequired`, `ConcurrencyError`).
        error: Option<String>,
        /// The broker's description, or a summary of the body.
        description: String,
    },
    /// A 2xx whose body was not what the spec says.
    #[error("the service broker at {url} answered {call} with an invalid response: {reason}")]
    Malformed {
        /// Broker URL.
        url: String,
        /// e.g. `catalog`.
        call: &'static str,
        /// What was wrong.
        reason: String,
    },
    /// The answer exceeded `max_response_bytes`.
    #[error("the service broker at {url} answered {call} with more than {limit} bytes")]
    TooLarge {
        /// Broker URL.
        url: String,
        /// e.g. `bind`.
        call: &'static str,
        /// The limit.
        limit: usize,
    },
}
