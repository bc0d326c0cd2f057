//! ingot-api: Ingot's Cloud Controller, the Cloud Foundry v3 REST API.
//!
//! The resource model (organizations, spaces, domains, stacks, apps,
//! processes, packages, builds, droplets, buildpacks, routes, jobs, audit
//! events) is kept in SQLite through `sqlx` in tables prefixed `cc_`, and
//! served in Cloud Foundry's exact JSON shapes. The one mapping from internal
//! errors to CF's error envelope lives in [`error`].
//!
//! *Invariant*: this crate never depends on `containers` or `scheduler`; it
//! drives them only through its own [`Runtime`] trait, and checks tokens only
//! through [`TokenValidator`]. Every write is committed before the response.

mod apps;
mod authz;
mod builds;
mod deployments;
mod empty;
mod env_groups;
pub mod error;
pub use ssh::SshGrant;
mod feature_flags;
mod http;
mod manifest;
mod manifest_diff;
mod model;
mod orgs;
mod packages;
mod processes;
mod quotas;
mod roles;
mod security_groups;
mod service_brokers;
mod service_offerings;
mod root;
mod routes;
mod services;
mod services_managed;
mod ssh;
mod store;
mod tasks;

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

pub use error::ApiError;
pub use service_brokers::BrokerPolling;

/// Where the API is reachable and what it announces in `/` and `/v2/info`.
#[derive(Debug, Clone)]
pub struct ApiConfig {
    /// The API's external URL, e.g. `http://127.0.0.1:9000`; every link is built from it.
    pub external_url: String,
    /// The token server's URL (`external_url + "/uaa"`).
    pub uaa_url: String,
    /// The log-cache URL (`external_url + "/log-cache"`).
    pub log_cache_url: String,
    /// The RLP gateway's URL (`external_url + "/log-stream"`), when served.
    pub log_stream_url: Option<String>,
    /// The traffic controller's websocket URL (`ws://…/doppler`), when served.
    pub logging_url: Option<String>,
    /// The shared app domain, e.g. `apps.localhost`.
    pub app_domain: String,
    /// The router's URL, announced as the routing endpoint.
    pub router_url: String,
    /// The SSH proxy address (`host:port`), when SSH is served.
    pub ssh_endpoint: Option<String>,
    /// The SSH proxy's host key fingerprint (SHA-256, base64), shown in `/`.
    pub ssh_host_key_fingerprint: Option<String>,
    /// Ingot's version, shown in `/v3/info`.
    pub version: String,
}

/// The API's view of the scheduler (implemented by the binary over the
/// scheduler crate); api never depends on containers or the scheduler.
#[async_trait]
pub trait Runtime: Send + Sync {
    /// Stages a package into a droplet (long-running; the runtime itself emits
    /// the STG log lines and stores the droplet blob at `request.droplet_key`).
    async fn stage(&self, request: StageRequest) -> Result<StageOutcome, StageFailure>;
    /// Makes this the desired state of a process (instances may be 0).
    /// Idempotent; a changed droplet/command/env replaces the instances.
    async fn desire(&self, process: DesiredProcess);
    /// Stops and forgets every instance of the process.
    async fn remove(&self, process_guid: &str);
    /// The instances as they are now (for `/v3/processes/:guid/stats`).
    fn instances(&self, process_guid: &str) -> Vec<InstanceReport>;
    /// Starts a one-off task in a container of its own. `Ok` means the
    /// runtime took it on; how it ends arrives later through
    /// [`Api::record_task_completion`].
    async fn run_task(&self, task: TaskRequest) -> Result<(), TaskRejected>;
    /// Stops a running task (SIGTERM, then SIGKILL after the grace period).
    /// Returns whether the runtime knew the task; its completion is still
    /// reported through [`Api::record_task_completion`].
    async fn cancel_task(&self, task_guid: &str) -> bool;
}

/// A one-off task the runtime should run from an app's droplet.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskRequest {
    /// The task's guid (its container's identity).
    pub task_guid: String,
    /// The task's name; logs are tagged `APP/TASK/<name>`.
    pub name: String,
    /// The app's guid (the log source id).
    pub app_guid: String,
    /// The app's name.
    pub app_name: String,
    /// The app's space.
    pub space_guid: String,
    /// The space's name.
    pub space_name: String,
    /// The space's organization.
    pub org_guid: String,
    /// The organization's name.
    pub org_name: String,
    /// The droplet to run the command in.
    pub droplet_guid: String,
    /// Blob key of the droplet tgz.
    pub droplet_key: String,
    /// The command to run.
    pub command: String,
    /// Memory limit.
    pub memory_mb: u64,
    /// Disk limit.
    pub disk_mb: u64,
    /// The app's environment variables.
    pub environment: BTreeMap<String, String>,
}

/// Why the runtime would not start a task.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskRejected {
    /// The task that was refused.
    pub task_guid: String,
    /// Why, for the platform's log.
    pub message: String,
}

/// How a task ended, reported by the runtime.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskCompletion {
    /// The task.
    pub task_guid: String,
    /// The exit status of its command (-1 when it never ran).
    pub exit_status: i32,
    /// `None` when it succeeded; else CF's `result.failure_reason`, e.g.
    /// `Exited with status 1` or `task was cancelled`.
    pub failure_reason: Option<String>,
}

/// What a staging task needs to turn a package into a droplet.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StageRequest {
    /// The build being staged.
    pub build_guid: String,
    /// The app the package belongs to.
    pub app_guid: String,
    /// The app's name.
    pub app_name: String,
    /// The app's space.
    pub space_guid: String,
    /// The space's name.
    pub space_name: String,
    /// The space's organization.
    pub org_guid: String,
    /// The organization's name.
    pub org_name: String,
    /// Blob key of the package zip.
    pub package_key: String,
    /// The droplet the build will produce.
    pub droplet_guid: String,
    /// Where to store the droplet tgz.
    pub droplet_key: String,
    /// The buildpacks the app asks for, in order; empty = auto-detect over
    /// [`StageRequest::detect_candidates`].
    pub buildpacks: Vec<BuildpackRef>,
    /// When `buildpacks` is empty: every enabled admin buildpack in position
    /// order, to detect over (empty otherwise).
    pub detect_candidates: Vec<BuildpackRef>,
    /// The app's environment variables.
    pub environment: BTreeMap<String, String>,
    /// Staging memory limit.
    pub memory_mb: u64,
    /// Staging disk limit.
    pub disk_mb: u64,
    /// The stack to stage on (`ingot-default` unless another exists).
    pub stack: String,
}

/// One buildpack a staging task runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum BuildpackRef {
    /// A buildpack built into the lifecycle: `staticfile_buildpack`,
    /// `python_buildpack`, `binary_buildpack`.
    Builtin(String),
    /// An admin buildpack uploaded as a zip.
    Uploaded {
        /// The buildpack's name.
        name: String,
        /// Blob key of its zip (`buildpacks/<guid>.zip`).
        blob_key: String,
    },
    /// A buildpack fetched from a URL.
    Url(String),
}

/// The result of a successful staging.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StageOutcome {
    /// The detect output of the buildpack that won (e.g. `python 3.11`).
    pub detected_buildpack: String,
    /// The name of the buildpack that won.
    pub buildpack_name: String,
    /// Process types and their start commands from the release step.
    pub process_types: BTreeMap<String, String>,
    /// SHA-256 of the droplet tgz.
    pub checksum_sha256: String,
}

/// Why staging failed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StageFailure {
    /// CF's staging error name: `NoAppDetectedError`, `BuildpackCompileFailed`, `StagingError`.
    pub code: String,
    /// A message for the user.
    pub message: String,
}

/// A health check of a process.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HealthCheck {
    /// `port`, `process` or `http`.
    pub kind: String,
    /// The HTTP endpoint for `http` checks.
    pub endpoint: Option<String>,
    /// How long an instance may take to become healthy (seconds).
    pub timeout_secs: Option<u64>,
    /// How long one check may take (seconds).
    pub invocation_timeout_secs: Option<u64>,
}

/// The desired state of one process of a started app.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DesiredProcess {
    /// The process's guid (the LRP's identity).
    pub process_guid: String,
    /// The process type, e.g. `web`.
    pub process_type: String,
    /// The app's guid (the log source id).
    pub app_guid: String,
    /// The app's name.
    pub app_name: String,
    /// The app's space.
    pub space_guid: String,
    /// The space's name.
    pub space_name: String,
    /// The space's organization.
    pub org_guid: String,
    /// The organization's name.
    pub org_name: String,
    /// The droplet to run.
    pub droplet_guid: String,
    /// Blob key of the droplet tgz.
    pub droplet_key: String,
    /// Resolved start command: the process's command, else the droplet's
    /// `process_types[type]`.
    pub command: String,
    /// How many instances to run (may be 0).
    pub instances: u32,
    /// Memory limit per instance.
    pub memory_mb: u64,
    /// Disk limit per instance.
    pub disk_mb: u64,
    /// The app's environment variables.
    pub environment: BTreeMap<String, String>,
    /// `host.domain` or `host.domain/path` for every route mapped to this process.
    pub uris: Vec<String>,
    /// The health check gating `RUNNING`.
    pub health_check: HealthCheck,
    /// `VCAP_SERVICES`: the app's bound service instances, as JSON (empty
    /// means none).
    #[serde(default)]
    pub vcap_services: String,
    /// Log bytes per second an instance may write; negative is unlimited.
    #[serde(default = "unlimited")]
    pub log_rate_limit: i64,
}

fn unlimited() -> i64 {
    -1
}

/// One instance of a process as the runtime sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InstanceReport {
    /// The instance index.
    pub index: u32,
    /// `STARTING`, `RUNNING`, `CRASHED` or `DOWN`.
    pub state: String,
    /// The instance guid (`CF_INSTANCE_GUID`).
    pub instance_guid: String,
    /// The address the instance answers on.
    pub host: String,
    /// The port the instance answers on.
    pub port: Option<u16>,
    /// Seconds since the instance started.
    pub uptime_secs: u64,
    /// Memory in use.
    pub mem_bytes: u64,
    /// Disk in use.
    pub disk_bytes: u64,
    /// CPU share (0.0–1.0 per core).
    pub cpu: f64,
    /// Why the instance is not running, if it is not.
    pub details: Option<String>,
}

/// Token checking, implemented by the binary over the auth crate.
pub trait TokenValidator: Send + Sync {
    /// Checks the `Authorization` header's value.
    fn validate(&self, authorization: Option<&str>) -> Result<Principal, TokenProblem>;
}

/// The token server's user records, for the Cloud Controller to map user
/// names to guids (`cf set-space-role NAME …`) and back. Implemented by the
/// binary over the auth crate; without one, only users the API already
/// knows can be named.
#[async_trait::async_trait]
pub trait UserDirectory: Send + Sync {
    /// The guid of the user with this name (and origin, `uaa` if `None`).
    async fn user_guid(&self, username: &str, origin: Option<&str>) -> Option<String>;
    /// The name of the user with this guid.
    async fn username(&self, user_guid: &str) -> Option<String>;
}

/// An app's syslog drains (from its bindings to user-provided service
/// instances with a `syslog_drain_url`), with the names drains label lines with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppDrains {
    /// The app's guid.
    pub app_guid: String,
    /// The app's name.
    pub app_name: String,
    /// Its space's guid.
    pub space_guid: String,
    /// Its space's name.
    pub space_name: String,
    /// Its organization's guid.
    pub org_guid: String,
    /// Its organization's name.
    pub org_name: String,
    /// The drain URLs.
    pub urls: Vec<String>,
}

/// The user a valid token speaks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The user's guid (`user_id` claim).
    pub user_guid: String,
    /// The user's name (`user_name` claim).
    pub user_name: String,
    /// The token's scopes.
    pub scopes: Vec<String>,
}

impl Principal {
    /// Whether the token carries `cloud_controller.admin`.
    pub fn is_admin(&self) -> bool {
        self.scopes.iter().any(|s| s == "cloud_controller.admin")
    }
}

/// Why a token was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenProblem {
    /// No `Authorization` header.
    Missing,
    /// Not a token we signed, or malformed.
    Invalid,
    /// Past its expiry.
    Expired,
}

/// A crash of one instance, reported by the runtime.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CrashReport {
    /// The crashed instance's process.
    pub process_guid: String,
    /// The instance index.
    pub index: u32,
    /// The instance guid.
    pub instance_guid: String,
    /// The exit status of the app's process.
    pub exit_status: i32,
    /// `CRASHED`.
    pub reason: String,
    /// e.g. `APP/PROC/WEB: Exited with status 137 (out of memory)`.
    pub exit_description: String,
    /// How many times this instance index has crashed.
    pub crash_count: u32,
    /// When, in nanoseconds since the epoch.
    pub crash_timestamp_ns: i64,
}

pub(crate) struct Inner {
    pub(crate) pool: sqlx::SqlitePool,
    pub(crate) blobs: Arc<dyn ingot_blobstore::Blobstore>,
    pub(crate) logs: Arc<dyn ingot_logs::LogSink>,
    pub(crate) tokens: Arc<dyn TokenValidator>,
    pub(crate) runtime: Arc<dyn Runtime>,
    pub(crate) config: ApiConfig,
    pub(crate) metrics: http::Metrics,
    pub(crate) upload_limit: std::sync::atomic::AtomicU64,
    /// One lock per app, held from the database transaction through the
    /// runtime call, so that concurrent start/stop/scale/delete of an app
    /// reach the runtime in the order they were committed.
    pub(crate) users: std::sync::RwLock<Option<Arc<dyn UserDirectory>>>,
    /// The service broker client and its polling limits.
    pub(crate) brokers: service_brokers::BrokerSettings,
    pub(crate) app_locks:
        std::sync::Mutex<std::collections::HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

/// The Cloud Controller: cheap to clone, shared by every request.
#[derive(Clone)]
pub struct Api {
    pub(crate) inner: Arc<Inner>,
}

impl Api {
    /// Creates the `cc_` tables if needed and returns the API over them.
    pub async fn open(
        pool: sqlx::SqlitePool,
        blobs: Arc<dyn ingot_blobstore::Blobstore>,
        logs: Arc<dyn ingot_logs::LogSink>,
        tokens: Arc<dyn TokenValidator>,
        runtime: Arc<dyn Runtime>,
        mut config: ApiConfig,
    ) -> Result<Self, ApiError> {
        store::migrate(&pool).await?;
        config.external_url = config.external_url.trim_end_matches('/').to_string();
        Ok(Api {
            inner: Arc::new(Inner {
                pool,
                blobs,
                logs,
                tokens,
                runtime,
                config,
                metrics: http::Metrics::default(),
                users: std::sync::RwLock::new(None),
                brokers: service_brokers::BrokerSettings::default(),
                app_locks: std::sync::Mutex::new(std::collections::HashMap::new()),
                upload_limit: std::sync::atomic::AtomicU64::new(packages::MAX_UPLOAD_BYTES),
            }),
        })
    }

    /// First boot: when there is no organization yet, creates org `main`,
    /// space `dev`, the shared domain, the default stack `ingot-default`, the
    /// built-in buildpacks, and a user record for the admin. Idempotent.
    pub async fn bootstrap(
        &self,
        admin_user_guid: &str,
        admin_user_name: &str,
    ) -> Result<(), ApiError> {
        orgs::bootstrap(self, admin_user_guid, admin_user_name).await
    }

    /// After a platform restart: fails the uploads, stagings and tasks the
    /// previous process left in progress, and desires every started app's processes
    /// again from the stored desired state.
    pub async fn resume(&self) -> Result<(), ApiError> {
        apps::resume(self).await?;
        // Broker operations in flight: polling continues where it stopped.
        services_managed::resume(self).await
    }

    /// Records a crash as the audit event `audit.app.process.crash`.
    pub async fn record_crash(&self, report: CrashReport) -> Result<(), ApiError> {
        processes::record_crash(self, report).await
    }

    /// Records how a task ended: `SUCCEEDED`, or `FAILED` with its reason (a
    /// task that was being cancelled fails as `task was cancelled`). A task
    /// that has already ended is left as it is.
    pub async fn record_task_completion(&self, completion: TaskCompletion) -> Result<(), ApiError> {
        tasks::record_completion(self, completion).await
    }

    /// Whether the user may read the logs and metrics of `source_id`: an app's
    /// need a role that sees its space (CF's log access check); any other
    /// source (platform components) needs a global read scope.
    pub async fn may_read_logs(
        &self,
        principal: &Principal,
        source_id: &str,
    ) -> Result<bool, ApiError> {
        let mut c = self.inner.pool.acquire().await?;
        let access = authz::Access::load(&mut c, principal).await?;
        match store::get::<model::App>(&mut c, source_id).await? {
            Some(app) => Ok(access.can_read_space(&app.space_guid)),
            None => Ok(access.reads_everything()),
        }
    }

    /// Decides an SSH login to instance `index` of a process for the user a
    /// code or token stood for (`None`: neither was valid), and records the
    /// decision as an audit event and an `SSH` log line. `Ok(Err(reason))`
    /// is a refusal.
    pub async fn authorize_ssh(
        &self,
        principal: Option<&Principal>,
        process_guid: &str,
        index: u32,
        instance_running: bool,
        remote: &str,
    ) -> Result<Result<SshGrant, String>, ApiError> {
        ssh::authorize(
            self,
            principal,
            process_guid,
            index,
            instance_running,
            remote,
        )
        .await
    }

    /// Every app with a bound syslog drain, for the log forwarder.
    pub async fn syslog_drains(&self) -> Result<Vec<AppDrains>, ApiError> {
        services::syslog_drains(self).await
    }

    /// The HTTP surface: `/`, `/v2/info`, `/v3/…`.
    pub fn router(&self) -> axum::Router {
        http::router(self.clone())
    }

    /// Sets the token server's user directory (see [`UserDirectory`]).
    pub fn set_user_directory(&self, users: Arc<dyn UserDirectory>) {
        *self
            .inner
            .users
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(users);
    }

    pub(crate) fn user_directory(&self) -> Option<Arc<dyn UserDirectory>> {
        self.inner
            .users
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// Sets the largest package or buildpack upload accepted (default 1 GiB).
    pub fn set_upload_limit(&self, bytes: u64) {
        self.inner
            .upload_limit
            .store(bytes, std::sync::atomic::Ordering::Relaxed);
    }

    pub(crate) fn upload_limit(&self) -> u64 {
        self.inner
            .upload_limit
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Registers the API's request counters.
    pub fn register_metrics(&self, registry: &mut prometheus_client::registry::Registry) {
        self.inner.metrics.register(registry);
    }

    /// Emits an `API` log line to the app's log stream, as CF's Cloud
    /// Controller does for start, stop, scale and staging.
    pub(crate) fn api_log(&self, app_guid: &str, line: &str) {
        self.inner.logs.emit(ingot_logs::Envelope::log(
            app_guid,
            "0",
            "API",
            line.as_bytes().to_vec(),
            ingot_logs::LogKind::Out,
        ));
    }

    /// Serialises the state changes of one app (see `Inner::app_locks`).
    pub(crate) async fn lock_app(&self, app_guid: &str) -> tokio::sync::OwnedMutexGuard<()> {
        let lock = {
            let mut locks = self
                .inner
                .app_locks
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            Arc::clone(locks.entry(app_guid.to_string()).or_default())
        };
        lock.lock_owned().await
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}{}", self.inner.config.external_url, path)
    }
}
