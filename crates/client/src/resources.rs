//! The v3 resources the CLI reads, in the CF v3 JSON shapes. Fields the CLI
//! does not use are left out; every field defaults so that a server that
//! omits an optional field is still understood.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::ApiErrorItem;

/// `{"data":{"guid":…}}`, the shape of a to-one relationship.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ToOne {
    /// The related resource, if any.
    #[serde(default)]
    pub data: Option<GuidRef>,
}

impl ToOne {
    /// A relationship to `guid`.
    pub fn to(guid: &str) -> Self {
        ToOne {
            data: Some(GuidRef {
                guid: guid.to_string(),
            }),
        }
    }

    /// The related guid, if set.
    pub fn guid(&self) -> Option<&str> {
        self.data.as_ref().map(|d| d.guid.as_str())
    }
}

/// `{"guid":…}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GuidRef {
    /// The guid.
    pub guid: String,
}

/// A link in `links`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Link {
    /// Absolute URL.
    #[serde(default)]
    pub href: String,
}

/// A page of a list answer.
#[derive(Debug, Clone, Deserialize)]
pub struct Page<T> {
    /// Where the next page is.
    #[serde(default)]
    pub pagination: Pagination,
    /// This page's resources.
    #[serde(default = "Vec::new")]
    pub resources: Vec<T>,
}

/// The `pagination` object of a list answer.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Pagination {
    /// Total number of results over all pages.
    #[serde(default)]
    pub total_results: u64,
    /// The next page, absent on the last.
    #[serde(default)]
    pub next: Option<Link>,
}

/// An organization.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Organization {
    /// Its guid.
    pub guid: String,
    /// Its name.
    #[serde(default)]
    pub name: String,
}

/// A space.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Space {
    /// Its guid.
    pub guid: String,
    /// Its name.
    #[serde(default)]
    pub name: String,
    /// Its organization.
    #[serde(default)]
    pub relationships: SpaceRelationships,
}

/// Relationships of a space.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct SpaceRelationships {
    /// The owning organization.
    #[serde(default)]
    pub organization: ToOne,
}

/// An app.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct App {
    /// Its guid.
    pub guid: String,
    /// Its name.
    #[serde(default)]
    pub name: String,
    /// `STARTED` or `STOPPED`.
    #[serde(default)]
    pub state: String,
    /// Buildpack or docker lifecycle.
    #[serde(default)]
    pub lifecycle: Lifecycle,
    /// When it was created.
    #[serde(default)]
    pub created_at: String,
    /// When it last changed.
    #[serde(default)]
    pub updated_at: String,
}

/// An app's lifecycle.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Lifecycle {
    /// `buildpack` or `docker`.
    #[serde(default, rename = "type")]
    pub kind: String,
    /// Buildpacks and stack.
    #[serde(default)]
    pub data: LifecycleData,
}

/// Data of a buildpack lifecycle.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct LifecycleData {
    /// Buildpack names or URLs, in order.
    #[serde(default)]
    pub buildpacks: Vec<String>,
    /// The stack name.
    #[serde(default)]
    pub stack: Option<String>,
}

/// An asynchronous job.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Job {
    /// Its guid.
    pub guid: String,
    /// `PROCESSING`, `POLLING`, `COMPLETE` or `FAILED`.
    #[serde(default)]
    pub state: String,
    /// What it is doing, e.g. `app.apply_manifest`.
    #[serde(default)]
    pub operation: String,
    /// Why it failed.
    #[serde(default)]
    pub errors: Vec<ApiErrorItem>,
}

/// A file of a resource match request or answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MatchResource {
    /// SHA1 of the contents.
    pub checksum: Checksum,
    /// Size in bytes.
    pub size_in_bytes: u64,
    /// Path inside the app directory, `/`-separated.
    pub path: String,
    /// Unix mode as an octal string, e.g. `"644"`.
    pub mode: String,
}

/// `{"value": sha1hex}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checksum {
    /// The hex digest.
    pub value: String,
}

/// A package.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Package {
    /// Its guid.
    pub guid: String,
    /// `bits` or `docker`.
    #[serde(default, rename = "type")]
    pub kind: String,
    /// `AWAITING_UPLOAD`, `PROCESSING_UPLOAD`, `READY`, `FAILED`, …
    #[serde(default)]
    pub state: String,
    /// Type-specific data; for bits, `error` says why it FAILED.
    #[serde(default)]
    pub data: PackageData,
}

/// Data of a package.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct PackageData {
    /// Why the package FAILED.
    #[serde(default)]
    pub error: Option<String>,
}

/// A build (staging of a package).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Build {
    /// Its guid.
    pub guid: String,
    /// `STAGING`, `STAGED` or `FAILED`.
    #[serde(default)]
    pub state: String,
    /// Why it FAILED.
    #[serde(default)]
    pub error: Option<String>,
    /// The droplet it produced.
    #[serde(default)]
    pub droplet: Option<GuidRef>,
}

/// A droplet (staged app).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Droplet {
    /// Its guid.
    pub guid: String,
    /// `STAGED`, …
    #[serde(default)]
    pub state: String,
    /// Buildpacks that staged it.
    #[serde(default)]
    pub buildpacks: Vec<DropletBuildpack>,
    /// Process type → start command.
    #[serde(default)]
    pub process_types: BTreeMap<String, String>,
    /// The stack it runs on.
    #[serde(default)]
    pub stack: Option<String>,
    /// The image of a docker droplet.
    #[serde(default)]
    pub image: Option<String>,
}

/// A buildpack entry of a droplet.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct DropletBuildpack {
    /// Name as given.
    #[serde(default)]
    pub name: String,
    /// Name the buildpack reports.
    #[serde(default)]
    pub buildpack_name: Option<String>,
    /// Version it reports.
    #[serde(default)]
    pub version: Option<String>,
    /// What it detected.
    #[serde(default)]
    pub detect_output: Option<String>,
}

/// A process of an app.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Process {
    /// Its guid.
    pub guid: String,
    /// Its type, e.g. `web`.
    #[serde(default, rename = "type")]
    pub kind: String,
    /// Its start command.
    #[serde(default)]
    pub command: Option<String>,
    /// Desired instance count.
    #[serde(default)]
    pub instances: u32,
    /// Memory limit per instance.
    #[serde(default)]
    pub memory_in_mb: u64,
    /// Disk limit per instance.
    #[serde(default)]
    pub disk_in_mb: u64,
    /// Health check.
    #[serde(default)]
    pub health_check: HealthCheck,
}

/// A process's health check.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct HealthCheck {
    /// `port`, `process` or `http`.
    #[serde(default, rename = "type")]
    pub kind: String,
}

/// Live stats of one instance of a process.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct InstanceStats {
    /// Instance index.
    #[serde(default)]
    pub index: u32,
    /// `RUNNING`, `STARTING`, `CRASHED`, `DOWN`, …
    #[serde(default)]
    pub state: String,
    /// Resource usage; absent while not running.
    #[serde(default)]
    pub usage: Option<Usage>,
    /// Memory quota in bytes.
    #[serde(default)]
    pub mem_quota: Option<u64>,
    /// Disk quota in bytes.
    #[serde(default)]
    pub disk_quota: Option<u64>,
    /// Seconds since the instance started.
    #[serde(default)]
    pub uptime: Option<u64>,
    /// Why the instance is in its state (e.g. the crash reason).
    #[serde(default)]
    pub details: Option<String>,
}

/// Resource usage of an instance.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Usage {
    /// Sample time.
    #[serde(default)]
    pub time: Option<String>,
    /// CPU use as a fraction of one core.
    #[serde(default)]
    pub cpu: f64,
    /// Memory in bytes.
    #[serde(default)]
    pub mem: u64,
    /// Disk in bytes.
    #[serde(default)]
    pub disk: u64,
}

/// A route.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Route {
    /// Its guid.
    pub guid: String,
    /// Host part (`NAME` of `NAME.apps.localhost`).
    #[serde(default)]
    pub host: String,
    /// Path part, may be empty.
    #[serde(default)]
    pub path: String,
    /// `host.domain/path`, without a scheme.
    #[serde(default)]
    pub url: String,
}

/// An app's environment (`GET /v3/apps/:guid/env`).
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct AppEnv {
    /// The user-provided variables.
    #[serde(default)]
    pub environment_variables: BTreeMap<String, serde_json::Value>,
    /// Variables the platform sets while staging.
    #[serde(default)]
    pub staging_env_json: BTreeMap<String, serde_json::Value>,
    /// Variables the platform sets while running.
    #[serde(default)]
    pub running_env_json: BTreeMap<String, serde_json::Value>,
    /// `VCAP_SERVICES`.
    #[serde(default)]
    pub system_env_json: BTreeMap<String, serde_json::Value>,
    /// `VCAP_APPLICATION`.
    #[serde(default)]
    pub application_env_json: BTreeMap<String, serde_json::Value>,
}

/// An admin buildpack.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Buildpack {
    /// Its guid.
    pub guid: String,
    /// Its name.
    #[serde(default)]
    pub name: String,
    /// `AWAITING_UPLOAD`, `READY`, …
    #[serde(default)]
    pub state: String,
    /// Its position in detection order.
    #[serde(default)]
    pub position: Option<u32>,
}

/// The root document (`GET /`).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Root {
    /// The links to the platform's parts.
    #[serde(default)]
    pub links: BTreeMap<String, Option<Link>>,
}
