//! Desired and actual long-running processes, staging tasks, and the local
//! cell (Cloud Foundry's Diego: BBS, rep, route-emitter, health checks).
//!
//! The API says what it wants with [`Scheduler::desire`] and
//! [`Scheduler::remove`]; the scheduler keeps one container per desired
//! instance running and converges whenever something changes and on a
//! periodic tick: a missing instance is started (after the crash back-off,
//! see [`backoff`]), a surplus or outdated one is stopped. Every instance goes
//! `STARTING` → (health check passes) `RUNNING`, and only then are its routes
//! registered through the [`RouteEmitter`]. When an instance's process exits
//! on its own, the scheduler records a crash ([`SchedulerEvent::Crashed`]),
//! unregisters its routes, and a new instance (with a new instance guid)
//! takes its place. One-off tasks ([`Scheduler::run_task`]) run once in
//! containers of their own and report how they ended
//! ([`SchedulerEvent::TaskCompleted`]). An LRP or task with an
//! [`ImageSource`] runs a Docker image (pulled on the cell, layers shared
//! and garbage-collected) instead of a droplet.

pub mod backoff;
mod cell;
mod docker;
mod env;
mod health;
mod metrics;
mod placement;
mod staging;
mod task;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use ingot_blobstore::Blobstore;
pub use ingot_containers::EgressRule;
use ingot_containers::{ContainerManager, Stack};
use ingot_logs::LogSink;
use tokio::sync::broadcast;

pub use cell::{InstanceStatus, RunningInstance};
pub use docker::ImageSource;
pub use placement::{CellCapacity, DEFAULT_MAX_CONTAINERS};
pub use staging::{BuildpackSource, StagingFailure, StagingOutcome, StagingRequest};
pub use task::{TaskCompletedEvent, TaskDefinition, TASK_CANCELLED};

/// Where the scheduler keeps its files and what it mounts into containers.
#[derive(Debug, Clone)]
pub struct SchedulerConfig {
    /// Working directory: unpacked droplets, staging directories, buildpacks.
    pub work_dir: PathBuf,
    /// The `ingot` binary, bind-mounted into every container as the lifecycle.
    pub lifecycle_binary: PathBuf,
    /// The API URL apps see in `VCAP_APPLICATION.cf_api`.
    pub cf_api: String,
    /// How often convergence runs even when nothing reports a change.
    pub converge_interval: Duration,
    /// How long a stopped instance gets between SIGTERM and SIGKILL.
    pub stop_grace: Duration,
    /// How long a routed instance keeps serving after its routes are
    /// unregistered and before it gets SIGTERM: requests the router sent it
    /// just before finish, so a scale-down or a rolling deployment drops
    /// none.
    pub route_drain: Duration,
    /// What the cell offers instances and tasks.
    pub capacity: CellCapacity,
}

/// A process the API wants running.
#[derive(Debug, Clone, PartialEq)]
pub struct DesiredLrp {
    /// The process guid (CF's process, the LRP's identity).
    pub process_guid: String,
    /// `web`, `worker`, …
    pub process_type: String,
    /// The app this process belongs to; its logs use this as source id.
    pub app_guid: String,
    /// The app's name.
    pub app_name: String,
    /// Space guid.
    pub space_guid: String,
    /// Space name.
    pub space_name: String,
    /// Organization guid.
    pub org_guid: String,
    /// Organization name.
    pub org_name: String,
    /// The droplet to run.
    pub droplet_guid: String,
    /// Its blob key.
    pub droplet_key: String,
    /// The start command (already resolved from the process or droplet).
    pub command: String,
    /// How many instances.
    pub instances: u32,
    /// Memory limit per instance.
    pub memory_mb: u64,
    /// Disk limit per instance.
    pub disk_mb: u64,
    /// The user's environment variables.
    pub environment: BTreeMap<String, String>,
    /// Routes as `host.domain` or `host.domain/path`.
    pub uris: Vec<String>,
    /// How readiness and liveness are checked.
    pub health_check: HealthCheck,
    /// `VCAP_SERVICES` as JSON; empty means none bound.
    pub vcap_services: String,
    /// Log bytes per second an instance may write; negative is unlimited.
    pub log_rate_limit: i64,
    /// Where instances may open connections (the space's running security
    /// groups); empty allows nothing.
    pub egress: Vec<EgressRule>,
    /// A Docker image to run instead of the droplet (see [`ImageSource`]).
    pub image: Option<ImageSource>,
}

impl DesiredLrp {
    /// Whether running instances of `self` can keep serving `other`: only the
    /// instance count, routes and egress rules may differ without replacing
    /// them (new rules are applied to running containers).
    fn same_instance_definition(&self, other: &DesiredLrp) -> bool {
        let normalise = |lrp: &DesiredLrp| DesiredLrp {
            instances: 0,
            uris: Vec::new(),
            egress: Vec::new(),
            ..lrp.clone()
        };
        normalise(self) == normalise(other)
    }
}

/// The health check of an LRP's instances.
#[derive(Debug, Clone, PartialEq)]
pub struct HealthCheck {
    /// `port`, `http` or `process`.
    pub kind: HealthCheckKind,
    /// The path for `http` checks.
    pub endpoint: String,
    /// How long an instance may take to become healthy.
    pub start_timeout: Duration,
    /// How long one check may take.
    pub invocation_timeout: Duration,
}

impl Default for HealthCheck {
    fn default() -> Self {
        Self {
            kind: HealthCheckKind::Port,
            endpoint: "/".to_string(),
            start_timeout: Duration::from_secs(60),
            invocation_timeout: Duration::from_secs(1),
        }
    }
}

/// The kinds of health check CF offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HealthCheckKind {
    /// A TCP connection to the app's port succeeds.
    Port,
    /// `GET endpoint` answers 200.
    Http,
    /// The process is alive.
    Process,
}

/// Where the router should send a route's traffic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteTarget {
    /// The instance's address.
    pub addr: SocketAddr,
    /// App guid.
    pub app_guid: String,
    /// Process guid.
    pub process_guid: String,
    /// Instance guid.
    pub instance_guid: String,
    /// Instance index.
    pub index: u32,
}

/// Receives route changes (gorouter's `router.register` / `router.unregister`).
pub trait RouteEmitter: Send + Sync {
    /// `uri` now also reaches `target`.
    fn register(&self, uri: &str, target: &RouteTarget);
    /// `uri` no longer reaches the instance.
    fn unregister(&self, uri: &str, instance_guid: &str);
    /// No route reaches the instance any more (it is gone).
    fn unregister_instance(&self, instance_guid: &str);
}

/// Something that happened to an instance or a task that the API records.
#[derive(Debug, Clone)]
pub enum SchedulerEvent {
    /// An instance's process exited on its own, or never became healthy.
    Crashed(CrashEvent),
    /// A task ended: its command exited, or it was cancelled.
    TaskCompleted(TaskCompletedEvent),
}

/// A crash, with the fields of CF's `audit.app.process.crash` event.
#[derive(Debug, Clone)]
pub struct CrashEvent {
    /// Process guid.
    pub process_guid: String,
    /// App guid.
    pub app_guid: String,
    /// Instance index.
    pub index: u32,
    /// The crashed instance's guid.
    pub instance_guid: String,
    /// The process's exit status (137 for SIGKILL).
    pub exit_status: i32,
    /// e.g. `APP/PROC/WEB: Exited with status 137 (out of memory)`.
    pub exit_description: String,
    /// Crashes of this index in a row, this one included.
    pub crash_count: u32,
    /// When it happened, ns since the epoch.
    pub timestamp_ns: i64,
}

/// Errors of the scheduler.
#[derive(Debug, thiserror::Error)]
pub enum SchedulerError {
    /// The container layer failed.
    #[error("container {id}: {message}")]
    Container {
        /// Container id.
        id: String,
        /// What failed.
        message: String,
    },
    /// A file operation on the cell failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A blob could not be read or written.
    #[error(transparent)]
    Blob(#[from] ingot_blobstore::BlobError),
    /// The scheduler is shutting down and starts nothing new.
    #[error("task {task_guid}: the scheduler is shutting down")]
    ShuttingDown {
        /// The task that was refused.
        task_guid: String,
    },
    /// The cell has no room for the task.
    #[error("insufficient resources: {resource}")]
    InsufficientResources {
        /// The task that was refused.
        task_guid: String,
        /// `memory`, `disk` or `containers`.
        resource: String,
    },
    /// A Docker image could not be pulled or used.
    #[error("cannot use image {reference}: {message}")]
    Image {
        /// The image reference.
        reference: String,
        /// What failed.
        message: String,
    },
    /// A task with this guid already runs.
    #[error("task {task_guid} is already running")]
    TaskExists {
        /// The task's guid.
        task_guid: String,
    },
}

/// The scheduler and its one local cell.
#[derive(Clone)]
pub struct Scheduler {
    cell: Arc<cell::Cell>,
}

impl Scheduler {
    /// Starts the scheduler: installs the built-in buildpacks and starts the
    /// convergence loop.
    pub fn start(
        config: SchedulerConfig,
        containers: Arc<ContainerManager>,
        stack: Stack,
        blobs: Arc<dyn Blobstore>,
        logs: Arc<dyn LogSink>,
        routes: Arc<dyn RouteEmitter>,
    ) -> Result<Self, SchedulerError> {
        let cell = cell::Cell::start(config, containers, stack, blobs, logs, routes)?;
        Ok(Self { cell })
    }

    /// Makes `lrp` the desired state of its process. Instances whose
    /// definition changed (droplet, command, environment, limits) are replaced.
    pub fn desire(&self, lrp: DesiredLrp) {
        self.cell.desire(lrp);
    }

    /// Replaces the egress rules of the process's instances, running ones
    /// included, without restarting them.
    pub fn update_egress(&self, process_guid: &str, egress: Vec<EgressRule>) {
        self.cell.update_egress(process_guid, egress);
    }

    /// Stops every instance of the process and forgets it.
    pub fn remove(&self, process_guid: &str) {
        self.cell.remove(process_guid);
    }

    /// The instances of a process as they are now, by index.
    pub fn instances(&self, process_guid: &str) -> Vec<InstanceStatus> {
        self.cell.instances(process_guid)
    }

    /// The running instance at `index` of the process, if there is one
    /// (for `ssh`).
    pub fn running_instance(&self, process_guid: &str, index: u32) -> Option<RunningInstance> {
        self.cell.running_instance(process_guid, index)
    }

    /// Stages a package into a droplet inside a container.
    pub async fn stage(&self, request: StagingRequest) -> Result<StagingOutcome, StagingFailure> {
        staging::stage(&self.cell, request).await
    }

    /// Runs a one-off task in its own container from its droplet; returns
    /// once it is under way. Its end is reported as
    /// [`SchedulerEvent::TaskCompleted`].
    pub fn run_task(&self, task: TaskDefinition) -> Result<(), SchedulerError> {
        self.cell.run_task(task)
    }

    /// Cancels a running task (SIGTERM, then SIGKILL after the stop grace
    /// period); it then completes as `task was cancelled`. Returns `false`
    /// when no such task runs.
    pub fn cancel_task(&self, task_guid: &str) -> bool {
        self.cell.cancel_task(task_guid)
    }

    /// Registers `ingot_scheduler_*`: instances started, crashes, stagings by
    /// outcome, desired and running instances.
    pub fn register_metrics(&self, registry: &mut prometheus_client::registry::Registry) {
        self.cell.metrics.register(registry);
    }

    /// Events (crashes, task completions) for the API to record.
    pub fn subscribe(&self) -> broadcast::Receiver<SchedulerEvent> {
        self.cell.subscribe()
    }

    /// Stops every instance and cancels every task gracefully (SIGTERM, then
    /// SIGKILL after the grace period) and destroys the containers. Desired state is not
    /// forgotten by the API: the next start desires it again.
    pub async fn shutdown(&self) {
        self.cell.shutdown().await;
    }
}
