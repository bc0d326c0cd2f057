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
mod root;
mod routes;
mod security_groups;
mod service_brokers;
mod service_offerings;
mod services;
mod services_managed;
mod ssh;
mod store;
mod tasks;
mod usage_events;

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

pub use error::ApiError;
pub use service_brokers::BrokerPolling;

/// How a TCP route appears in [`DesiredProcess::uris`]: this prefix and the
/// router port, e.g. `tcp:1024`. Host names never contain `:`, so the two
/// kinds of URI cannot be confused.
pub const TCP_URI_PREFIX: &str = "tcp:";

/// The router port of a TCP route URI (`tcp:1024` → 1024); `None` for an
/// HTTP route URI.
pub fn tcp_route_port(uri: &str) -> Option<u16> {
    uri.strip_prefix(TCP_URI_PREFIX)?.parse().ok()
}

/// The router ports TCP routes may use when none is configured with
/// [`Api::set_tcp_ports`] (CF's `default-tcp` router group has 1024–1033).
pub const DEFAULT_TCP_PORTS: PortRange = PortRange {
    start: 1024,
    end: 1033,
};

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
    /// Replaces the egress rules of every instance of a desired process in
    /// place, without restarting them (security groups changed). The same
    /// rules are in the process's stored [`DesiredProcess::egress`].
    async fn update_egress(&self, process_guid: &str, egress: Vec<EgressRule>);
}

/// One egress allow rule of an application security group, parsed and
/// validated by the API (IPv4 only). A container may open a connection when
/// some rule matches its protocol, destination and port.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EgressRule {
    /// `tcp`, `udp`, `icmp` or `all`.
    pub protocol: String,
    /// The destinations, each an inclusive address range (a single address
    /// or a CIDR becomes its range).
    pub destinations: Vec<IpRange>,
    /// Inclusive port ranges for `tcp` and `udp`; empty for `icmp` and `all`.
    pub ports: Vec<PortRange>,
    /// ICMP type for `icmp` (-1: any).
    pub icmp_type: Option<i32>,
    /// ICMP code for `icmp` (-1: any).
    pub icmp_code: Option<i32>,
    /// Whether connections the rule allows are logged.
    pub log: bool,
}

/// An inclusive IPv4 address range.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct IpRange {
    /// The first address.
    pub start: std::net::Ipv4Addr,
    /// The last address (equal to `start` for one address).
    pub end: std::net::Ipv4Addr,
}

/// An inclusive port range.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct PortRange {
    /// The first port.
    pub start: u16,
    /// The last port (equal to `start` for one port).
    pub end: u16,
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
    /// The space's running security group rules.
    #[serde(default)]
    pub egress: Vec<EgressRule>,
    /// The Docker image to run the command in, for an app of a docker
    /// package (then `droplet_key` is unused).
    #[serde(default)]
    pub docker_image: Option<DockerImage>,
}

/// A Docker image to run instead of a droplet (an app pushed with
/// `--docker-image`), with the registry credentials to pull it.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DockerImage {
    /// The image reference as the user gave it, e.g. `busybox` or
    /// `registry.example.com:5000/team/web:1`.
    pub reference: String,
    /// The registry user name, for a private registry.
    pub username: Option<String>,
    /// The registry password. Never shown: not in API responses (CF's
    /// `"***"`), not in logs (`Debug` hides it).
    pub password: Option<String>,
}

impl std::fmt::Debug for DockerImage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DockerImage")
            .field("reference", &self.reference)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .finish()
    }
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
    /// The space's staging security group rules.
    #[serde(default)]
    pub egress: Vec<EgressRule>,
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
    /// Every route mapped to this process: `host.domain` or
    /// `host.domain/path` for an HTTP route, `tcp:<port>` (see
    /// [`TCP_URI_PREFIX`] and [`tcp_route_port`]) for a TCP route, whose
    /// port the TCP router listens on.
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
    /// The space's running security group rules (global running groups and
    /// those bound to the space); empty allows no egress.
    #[serde(default)]
    pub egress: Vec<EgressRule>,
    /// The Docker image to run instead of the droplet, for an app of a
    /// docker package (then `droplet_key` is unused and `command` is empty
    /// unless the process sets one).
    #[serde(default)]
    pub docker_image: Option<DockerImage>,
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
    /// The reservable ports of the TCP router group.
    pub(crate) tcp_ports: std::sync::RwLock<PortRange>,
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
                tcp_ports: std::sync::RwLock::new(DEFAULT_TCP_PORTS),
            }),
        })
    }

    /// First boot: when there is no organization yet, creates org `main`,
    /// space `dev`, the shared domain, the shared TCP domain `tcp.<app
    /// domain>` (router group `default-tcp`), the default stack
    /// `ingot-default`, the built-in buildpacks, and a user record for the
    /// admin. Idempotent.
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

    /// Sets the router ports TCP routes may reserve (the `default-tcp`
    /// router group's `reservable_ports`; default [`DEFAULT_TCP_PORTS`]).
    /// Routes already outside the range keep their port.
    pub fn set_tcp_ports(&self, ports: PortRange) {
        *self
            .inner
            .tcp_ports
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = ports;
    }

    pub(crate) fn tcp_ports(&self) -> PortRange {
        *self
            .inner
            .tcp_ports
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
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
