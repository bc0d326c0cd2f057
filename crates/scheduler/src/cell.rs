//! The local cell: desired LRPs, their instances, and convergence.
//!
//! All instance bookkeeping lives in one [`State`] behind a mutex that is
//! held only for short, non-async sections. Each instance is driven by its
//! own task (create container → health check → run → exit) that reports back
//! into the state; [`Cell::converge`] is the single place that decides to
//! start or stop instances, so that a missed event is repaired on the next
//! tick instead of being lost.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use ingot_blobstore::Blobstore;
use ingot_containers::{
    BindMount, Container, ContainerManager, ContainerSpec, EgressRule, Limits, ProcessSpec, Stack,
};
use ingot_logs::{forward_lines, Envelope, LogKind, LogSink};
use tokio::sync::{broadcast, Notify};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::backoff::{self, Restart};
use crate::health::{check_once, format_duration};
use crate::placement::{self, Reserved};
use crate::{
    CrashEvent, DesiredLrp, HealthCheckKind, RouteEmitter, RouteTarget, SchedulerConfig,
    SchedulerError, SchedulerEvent,
};

/// The port every app listens on inside its container (`$PORT`).
pub(crate) const APP_PORT: u16 = 8080;
/// The uid and gid of `vcap` on the default stack.
pub(crate) const VCAP: u32 = 2000;
/// How often a running instance's liveness is checked.
const LIVENESS_INTERVAL: Duration = Duration::from_secs(30);
/// How often container metrics are emitted.
const CONTAINER_METRICS_INTERVAL: Duration = Duration::from_secs(5);
/// How often a starting instance is checked.
const READINESS_INTERVAL: Duration = Duration::from_millis(250);

/// One instance as the API's `/stats` reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct InstanceStatus {
    /// Instance index.
    pub index: u32,
    /// `STARTING`, `RUNNING`, `CRASHED` or `DOWN`.
    pub state: String,
    /// The instance guid, when an instance exists for the index.
    pub instance_guid: Option<String>,
    /// The instance's address, once its container exists.
    pub addr: Option<SocketAddr>,
    /// Seconds since the instance started.
    pub uptime_secs: u64,
    /// Memory in use.
    pub mem_bytes: u64,
    /// Bytes written to its root file system, as last measured (every few
    /// seconds).
    pub disk_bytes: u64,
    /// CPU time used so far, in nanoseconds.
    pub cpu_time_ns: u64,
    /// CPU use since the previous look, as a fraction of one core.
    pub cpu: f64,
    /// Why the index is not running, e.g. the last crash.
    pub details: Option<String>,
}

/// A running instance as a shell inside it needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunningInstance {
    /// The instance's container (its instance guid).
    pub container_id: String,
    /// The app's guid.
    pub app_guid: String,
    /// The environment the app runs with, addresses filled in.
    pub env: Vec<(String, String)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Starting,
    Running,
}

struct Instance {
    guid: String,
    generation: u64,
    phase: Phase,
    started: Instant,
    addr: Option<SocketAddr>,
    /// Bytes written to its root file system, as last measured.
    disk_bytes: u64,
    /// Log bytes its app has written so far (stdout and stderr).
    log_bytes: Arc<AtomicU64>,
    /// `log_bytes` at the previous container metrics, and when.
    log_bytes_seen: (u64, Instant),
    cancel: CancellationToken,
}

#[derive(Default)]
struct Slot {
    instance: Option<Instance>,
    crashes: u32,
    restart_at: Option<Instant>,
    gave_up: bool,
    last_crash: Option<String>,
    /// Why the index could not be placed (`insufficient resources: …`).
    unplaced: Option<String>,
}

struct Lrp {
    desired: DesiredLrp,
    generation: u64,
    slots: BTreeMap<u32, Slot>,
}

/// Counts the log bytes an instance writes on their way to its sink.
struct CountingSink {
    inner: Arc<dyn LogSink>,
    bytes: Arc<AtomicU64>,
}

impl LogSink for CountingSink {
    fn emit(&self, envelope: Envelope) {
        if let ingot_logs::Message::Log { payload, .. } = &envelope.message {
            self.bytes
                .fetch_add(payload.len() as u64, Ordering::Relaxed);
        }
        self.inner.emit(envelope);
    }
}

/// Adds what every existing instance holds to `reserved`.
fn held_by_instances(state: &State, reserved: &mut Reserved) {
    for lrp in state.lrps.values() {
        let held = lrp.slots.values().filter(|s| s.instance.is_some()).count();
        for _ in 0..held {
            reserved.add(lrp.desired.memory_mb, lrp.desired.disk_mb);
        }
    }
}

#[derive(Default)]
struct State {
    lrps: HashMap<String, Lrp>,
    next_generation: u64,
}

/// The cell and the scheduler state it serves.
pub(crate) struct Cell {
    pub(crate) config: SchedulerConfig,
    pub(crate) containers: Arc<ContainerManager>,
    pub(crate) stack: Stack,
    pub(crate) blobs: Arc<dyn Blobstore>,
    pub(crate) logs: Arc<dyn LogSink>,
    routes: Arc<dyn RouteEmitter>,
    pub(crate) events: broadcast::Sender<SchedulerEvent>,
    state: Mutex<State>,
    wake: Notify,
    pub(crate) tasks: TaskTracker,
    stopping: AtomicBool,
    pub(crate) stopped: CancellationToken,
    /// The one-off tasks running now, by task guid (see [`crate::task`]).
    running_tasks: Mutex<HashMap<String, CancellationToken>>,
    /// Memory and disk (MB) each running task holds.
    pub(crate) task_reservations: Mutex<HashMap<String, (u64, u64)>>,
    droplets: tokio::sync::Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    cpu_samples: Mutex<HashMap<String, CpuSample>>,
    pub(crate) metrics: crate::metrics::Metrics,
    pub(crate) builtin_buildpacks: Vec<(String, PathBuf)>,
    /// Docker images pulled on this cell (see [`crate::docker`]).
    pub(crate) images: Arc<crate::docker::Images>,
}

impl Cell {
    pub(crate) fn start(
        config: SchedulerConfig,
        containers: Arc<ContainerManager>,
        stack: Stack,
        blobs: Arc<dyn Blobstore>,
        logs: Arc<dyn LogSink>,
        routes: Arc<dyn RouteEmitter>,
    ) -> Result<Arc<Self>, SchedulerError> {
        sweep_leftovers(&config.work_dir);
        let buildpacks_dir = config.work_dir.join("buildpacks").join("builtin");
        let io = |what: &str| {
            let what = what.to_string();
            move |source| SchedulerError::Io { what, source }
        };
        std::fs::create_dir_all(&buildpacks_dir)
            .map_err(io("creating the buildpacks directory"))?;
        let builtin = ingot_lifecycle::install_builtin_buildpacks(&buildpacks_dir)
            .map_err(io("installing the built-in buildpacks"))?
            .into_iter()
            .map(|bp| (bp.name, bp.path))
            .collect();
        let images = Arc::new(crate::docker::Images::open(
            &config.work_dir.join("images"),
        )?);
        let (events, _) = broadcast::channel(256);
        let cell = Arc::new(Self {
            config,
            containers,
            stack,
            blobs,
            logs,
            routes,
            events,
            state: Mutex::new(State::default()),
            wake: Notify::new(),
            tasks: TaskTracker::new(),
            stopping: AtomicBool::new(false),
            stopped: CancellationToken::new(),
            running_tasks: Mutex::new(HashMap::new()),
            task_reservations: Mutex::new(HashMap::new()),
            droplets: tokio::sync::Mutex::new(HashMap::new()),
            cpu_samples: Mutex::new(HashMap::new()),
            metrics: crate::metrics::Metrics::default(),
            builtin_buildpacks: builtin,
            images,
        });
        let looper = Arc::clone(&cell);
        cell.tasks
            .spawn(async move { looper.converge_loop().await });
        let reporter = Arc::clone(&cell);
        cell.tasks
            .spawn(async move { reporter.container_metrics_loop().await });
        Ok(cell)
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves plain data behind; keep going.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Whether [`Cell::shutdown`] has begun.
    pub(crate) fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::SeqCst)
    }

    pub(crate) fn running_tasks(&self) -> MutexGuard<'_, HashMap<String, CancellationToken>> {
        // Plain data: a panic while holding the lock leaves nothing half done.
        self.running_tasks
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub(crate) fn subscribe(&self) -> broadcast::Receiver<SchedulerEvent> {
        self.events.subscribe()
    }

    pub(crate) fn desire(&self, lrp: DesiredLrp) {
        let mut state = self.state();
        let generation = state.next_generation;
        match state.lrps.get_mut(&lrp.process_guid) {
            Some(existing) if existing.desired.same_instance_definition(&lrp) => {
                if existing.desired.uris != lrp.uris {
                    self.update_routes(existing, &lrp.uris);
                }
                if existing.desired.egress != lrp.egress {
                    self.apply_egress(existing, lrp.egress.clone());
                }
                existing.desired = lrp;
            }
            Some(existing) => {
                existing.desired = lrp;
                existing.generation = generation;
                // A new definition (a fixed memory limit, a new droplet)
                // starts fresh, not in the old one's crash back-off.
                for slot in existing.slots.values_mut() {
                    slot.crashes = 0;
                    slot.restart_at = None;
                    slot.gave_up = false;
                    slot.last_crash = None;
                }
                state.next_generation += 1;
            }
            None => {
                let guid = lrp.process_guid.clone();
                state.lrps.insert(
                    guid,
                    Lrp {
                        desired: lrp,
                        generation,
                        slots: BTreeMap::new(),
                    },
                );
                state.next_generation += 1;
            }
        }
        drop(state);
        self.wake.notify_one();
    }

    /// Replaces the egress rules of a process's instances (see
    /// [`Cell::apply_egress`]); an unknown process is ignored.
    pub(crate) fn update_egress(&self, process_guid: &str, egress: Vec<EgressRule>) {
        let mut state = self.state();
        if let Some(lrp) = state.lrps.get_mut(process_guid) {
            if lrp.desired.egress != egress {
                self.apply_egress(lrp, egress.clone());
                lrp.desired.egress = egress;
            }
        }
    }

    /// Gives every existing container of the LRP `egress`, in the
    /// background (nft runs outside the state lock). A container still being
    /// created checks the rules again once it exists (see `run_instance`).
    fn apply_egress(&self, lrp: &Lrp, egress: Vec<EgressRule>) {
        let ids: Vec<String> = lrp
            .slots
            .values()
            .filter_map(|slot| slot.instance.as_ref().map(|i| i.guid.clone()))
            .collect();
        if ids.is_empty() {
            return;
        }
        let containers = Arc::clone(&self.containers);
        tokio::spawn(async move {
            for id in ids {
                if let Err(err) = containers.set_egress(&id, &egress).await {
                    tracing::warn!(instance = %id, error = %err, "cannot update the egress rules");
                }
            }
        });
    }

    /// Registers new and unregisters dropped routes of running instances.
    fn update_routes(&self, lrp: &Lrp, new_uris: &[String]) {
        for (index, slot) in &lrp.slots {
            let Some(instance) = &slot.instance else {
                continue;
            };
            let (Phase::Running, Some(addr)) = (instance.phase, instance.addr) else {
                continue;
            };
            let target = self.target(&lrp.desired, instance, addr, *index);
            for uri in new_uris
                .iter()
                .filter(|uri| !lrp.desired.uris.contains(uri))
            {
                self.routes.register(uri, &target);
            }
            for uri in lrp
                .desired
                .uris
                .iter()
                .filter(|uri| !new_uris.contains(uri))
            {
                self.routes.unregister(uri, &instance.guid);
            }
        }
    }

    fn target(
        &self,
        desired: &DesiredLrp,
        instance: &Instance,
        addr: SocketAddr,
        index: u32,
    ) -> RouteTarget {
        RouteTarget {
            addr,
            app_guid: desired.app_guid.clone(),
            process_guid: desired.process_guid.clone(),
            instance_guid: instance.guid.clone(),
            index,
        }
    }

    pub(crate) fn remove(&self, process_guid: &str) {
        let removed = self.state().lrps.remove(process_guid);
        if let Some(lrp) = removed {
            for slot in lrp.slots.values() {
                if let Some(instance) = &slot.instance {
                    instance.cancel.cancel();
                }
            }
        }
    }

    pub(crate) fn instances(&self, process_guid: &str) -> Vec<InstanceStatus> {
        let mut statuses = self.instances_without_usage(process_guid);
        // cgroup files are read outside the scheduler's lock.
        for status in &mut statuses {
            let Some(guid) = &status.instance_guid else {
                continue;
            };
            if let Some(usage) = self.containers.usage(guid) {
                status.mem_bytes = usage.memory_bytes;
                status.cpu_time_ns = usage.cpu_time_ns;
                status.cpu = self.cpu_fraction(guid, usage.cpu_time_ns);
            }
        }
        statuses
    }

    /// What running tasks hold.
    pub(crate) fn reserved_by_tasks(&self) -> Reserved {
        let mut reserved = Reserved::default();
        for (memory, disk) in self
            .task_reservations
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .values()
        {
            reserved.add(*memory, *disk);
        }
        reserved
    }

    /// The image references of the desired LRPs that run one (their layers
    /// are kept between instances).
    pub(crate) fn desired_images(&self) -> Vec<String> {
        self.state()
            .lrps
            .values()
            .filter_map(|lrp| lrp.desired.image.as_ref().map(|i| i.reference.clone()))
            .collect()
    }

    /// What instances and tasks hold now.
    pub(crate) fn reserved(&self) -> Reserved {
        let mut reserved = self.reserved_by_tasks();
        held_by_instances(&self.state(), &mut reserved);
        reserved
    }

    /// The running instance at `index` of the process, for a shell inside
    /// it: its container and the environment the app sees there.
    pub(crate) fn running_instance(
        &self,
        process_guid: &str,
        index: u32,
    ) -> Option<RunningInstance> {
        let state = self.state();
        let lrp = state.lrps.get(process_guid)?;
        if index >= lrp.desired.instances {
            return None;
        }
        let instance = lrp.slots.get(&index)?.instance.as_ref()?;
        if instance.phase != Phase::Running {
            return None;
        }
        let ip = instance
            .addr
            .map(|a| a.ip().to_string())
            .unwrap_or_default();
        let mut env =
            crate::env::instance_environment(&self.config, &lrp.desired, index, &instance.guid);
        // The launcher fills the addresses in from inside the container;
        // a shell started beside it learns them here.
        for (key, value) in &mut env {
            match key.as_str() {
                "CF_INSTANCE_IP" | "CF_INSTANCE_INTERNAL_IP" => value.clone_from(&ip),
                "CF_INSTANCE_ADDR" => *value = format!("{ip}:{APP_PORT}"),
                _ => {}
            }
        }
        Some(RunningInstance {
            container_id: instance.guid.clone(),
            app_guid: lrp.desired.app_guid.clone(),
            env,
        })
    }

    fn instances_without_usage(&self, process_guid: &str) -> Vec<InstanceStatus> {
        let state = self.state();
        let Some(lrp) = state.lrps.get(process_guid) else {
            return Vec::new();
        };
        (0..lrp.desired.instances)
            .map(|index| {
                let slot = lrp.slots.get(&index);
                match slot.and_then(|slot| slot.instance.as_ref()) {
                    Some(instance) => InstanceStatus {
                        index,
                        state: match instance.phase {
                            Phase::Starting => "STARTING",
                            Phase::Running => "RUNNING",
                        }
                        .to_string(),
                        instance_guid: Some(instance.guid.clone()),
                        addr: instance.addr,
                        uptime_secs: instance.started.elapsed().as_secs(),
                        mem_bytes: 0,
                        disk_bytes: instance.disk_bytes,
                        cpu_time_ns: 0,
                        cpu: 0.0,
                        details: None,
                    },
                    None if slot.is_some_and(|slot| slot.unplaced.is_some()) => InstanceStatus {
                        index,
                        state: "DOWN".to_string(),
                        instance_guid: None,
                        addr: None,
                        uptime_secs: 0,
                        mem_bytes: 0,
                        disk_bytes: 0,
                        cpu_time_ns: 0,
                        cpu: 0.0,
                        details: slot.and_then(|slot| slot.unplaced.clone()),
                    },
                    None => {
                        let crashed = slot.is_some_and(|slot| slot.crashes > 0);
                        InstanceStatus {
                            index,
                            state: if crashed { "CRASHED" } else { "STARTING" }.to_string(),
                            instance_guid: None,
                            addr: None,
                            uptime_secs: 0,
                            mem_bytes: 0,
                            disk_bytes: 0,
                            cpu_time_ns: 0,
                            cpu: 0.0,
                            details: slot.and_then(|slot| slot.last_crash.clone()),
                        }
                    }
                }
            })
            .collect()
    }

    /// CPU use between two looks at an instance's cgroup counter: the share
    /// of one core it used since the previous look (at least a second ago,
    /// so that frequent polling does not make the figure jumpy).
    fn cpu_fraction(&self, instance_guid: &str, cpu_time_ns: u64) -> f64 {
        let now = Instant::now();
        let mut samples = self
            .cpu_samples
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let sample = samples
            .entry(instance_guid.to_string())
            .or_insert(CpuSample {
                at: now,
                cpu_time_ns,
                fraction: 0.0,
            });
        let elapsed = now.duration_since(sample.at);
        if elapsed >= Duration::from_secs(1) {
            let used = cpu_time_ns.saturating_sub(sample.cpu_time_ns) as f64;
            sample.fraction = used / elapsed.as_nanos() as f64;
            sample.at = now;
            sample.cpu_time_ns = cpu_time_ns;
        }
        sample.fraction
    }

    pub(crate) async fn shutdown(self: &Arc<Self>) {
        self.stopping.store(true, Ordering::SeqCst);
        self.stopped.cancel();
        {
            let state = self.state();
            for lrp in state.lrps.values() {
                for slot in lrp.slots.values() {
                    if let Some(instance) = &slot.instance {
                        instance.cancel.cancel();
                    }
                }
            }
        }
        self.wake.notify_one();
        self.tasks.close();
        self.tasks.wait().await;
    }

    /// Every few seconds, each instance's CPU and memory as a gauge on its
    /// app's log stream (what `cf app` and the firehose show), as Diego's
    /// cells report container metrics.
    async fn container_metrics_loop(self: Arc<Self>) {
        loop {
            tokio::select! {
                _ = self.stopped.cancelled() => return,
                _ = tokio::time::sleep(CONTAINER_METRICS_INTERVAL) => {}
            }
            let processes: Vec<(String, String, u64, u64, i64)> = {
                let state = self.state();
                state
                    .lrps
                    .values()
                    .map(|lrp| {
                        let d = &lrp.desired;
                        (
                            d.process_guid.clone(),
                            d.app_guid.clone(),
                            d.memory_mb,
                            d.disk_mb,
                            d.log_rate_limit,
                        )
                    })
                    .collect()
            };
            for (process_guid, app_guid, memory_mb, disk_mb, log_rate_limit) in processes {
                for status in self.instances(&process_guid) {
                    let Some(guid) = status.instance_guid.clone() else {
                        continue;
                    };
                    let containers = Arc::clone(&self.containers);
                    let id = guid.clone();
                    let disk_bytes = tokio::task::spawn_blocking(move || {
                        containers.disk_usage(&id).unwrap_or(0)
                    })
                    .await
                    .unwrap_or(0);
                    let mut log_rate = 0.0;
                    self.with_instance(&process_guid, status.index, &guid, |instance| {
                        instance.disk_bytes = disk_bytes;
                        let now = Instant::now();
                        let total = instance.log_bytes.load(Ordering::Relaxed);
                        let (seen, at) = instance.log_bytes_seen;
                        let secs = now.duration_since(at).as_secs_f64();
                        if secs > 0.0 {
                            log_rate = total.saturating_sub(seen) as f64 / secs;
                        }
                        instance.log_bytes_seen = (total, now);
                    });
                    let metrics = ingot_logs::ContainerMetrics {
                        cpu_percentage: status.cpu * 100.0,
                        memory_bytes: status.mem_bytes,
                        disk_bytes,
                        memory_quota_bytes: memory_mb * 1024 * 1024,
                        disk_quota_bytes: disk_mb * 1024 * 1024,
                        log_rate_bytes_per_second: log_rate,
                        log_rate_limit_bytes_per_second: log_rate_limit as f64,
                    };
                    self.logs.emit(Envelope::container_metrics(
                        &app_guid,
                        status.index,
                        &metrics,
                    ));
                }
            }
        }
    }

    async fn converge_loop(self: Arc<Self>) {
        while !self.stopping.load(Ordering::SeqCst) {
            let tick = Instant::now() + self.config.converge_interval;
            // A restart waiting out its back-off wakes the loop on time;
            // no timer task outlives a shutdown.
            let next = self.converge().map_or(tick, |at| at.min(tick));
            tokio::select! {
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep_until(next.into()) => {}
            }
        }
    }

    /// Compares desired and actual and repairs every difference; returns
    /// when the next delayed restart is due, if one is waiting.
    fn converge(self: &Arc<Self>) -> Option<Instant> {
        if self.stopping.load(Ordering::SeqCst) {
            return None;
        }
        let now = Instant::now();
        let mut to_start = Vec::new();
        let mut next_wake: Option<Instant> = None;
        {
            let mut state = self.state();
            let mut reserved = self.reserved_by_tasks();
            held_by_instances(&state, &mut reserved);
            for lrp in state.lrps.values_mut() {
                let wanted = lrp.desired.instances;
                for index in 0..wanted {
                    let slot = lrp.slots.entry(index).or_default();
                    match &slot.instance {
                        Some(instance) => {
                            if instance.generation != lrp.generation {
                                instance.cancel.cancel();
                            }
                        }
                        None if slot.gave_up => {}
                        None => match slot.restart_at {
                            Some(at) if at > now => {
                                next_wake = Some(next_wake.map_or(at, |w| w.min(at)));
                            }
                            _ => {
                                let (memory, disk) = (lrp.desired.memory_mb, lrp.desired.disk_mb);
                                if let Err(short) =
                                    placement::fits(&self.config.capacity, &reserved, memory, disk)
                                {
                                    slot.unplaced = Some(placement::insufficient(short));
                                    continue;
                                }
                                reserved.add(memory, disk);
                                slot.unplaced = None;
                                let instance = Instance {
                                    guid: uuid::Uuid::new_v4().to_string(),
                                    generation: lrp.generation,
                                    phase: Phase::Starting,
                                    started: now,
                                    addr: None,
                                    disk_bytes: 0,
                                    log_bytes: Arc::new(AtomicU64::new(0)),
                                    log_bytes_seen: (0, now),
                                    cancel: CancellationToken::new(),
                                };
                                to_start.push((
                                    lrp.desired.clone(),
                                    index,
                                    instance.guid.clone(),
                                    instance.cancel.clone(),
                                    Arc::clone(&instance.log_bytes),
                                ));
                                slot.restart_at = None;
                                slot.instance = Some(instance);
                            }
                        },
                    }
                }
                lrp.slots.retain(|index, slot| {
                    if *index < wanted {
                        return true;
                    }
                    if let Some(instance) = &slot.instance {
                        instance.cancel.cancel();
                        return true;
                    }
                    false
                });
            }
            let desired: u32 = state.lrps.values().map(|lrp| lrp.desired.instances).sum();
            let running = state
                .lrps
                .values()
                .flat_map(|lrp| lrp.slots.values())
                .filter(|slot| {
                    slot.instance
                        .as_ref()
                        .is_some_and(|i| i.phase == Phase::Running)
                })
                .count();
            self.metrics.desired_instances.set(i64::from(desired));
            self.metrics
                .running_instances
                .set(i64::try_from(running).unwrap_or(i64::MAX));
        }
        for (desired, index, guid, cancel, log_bytes) in to_start {
            self.metrics.instances_started.inc();
            let cell = Arc::clone(self);
            self.tasks.spawn(async move {
                cell.run_instance(desired, index, guid, cancel, log_bytes)
                    .await
            });
        }
        next_wake
    }

    fn cell_log(&self, lrp: &DesiredLrp, index: u32, line: String) {
        self.logs.emit(Envelope::log(
            &lrp.app_guid,
            &index.to_string(),
            "CELL",
            line,
            LogKind::Out,
        ));
    }

    /// Drives one instance from container creation to its end.
    async fn run_instance(
        self: Arc<Self>,
        lrp: DesiredLrp,
        index: u32,
        guid: String,
        cancel: CancellationToken,
        log_bytes: Arc<AtomicU64>,
    ) {
        self.cell_log(
            &lrp,
            index,
            format!("Cell creating container for instance {guid}"),
        );
        let container = tokio::select! {
            created = self.create_container(&lrp, index, &guid) => created,
            _ = cancel.cancelled() => {
                let _ = self.containers.destroy(&guid).await;
                self.instance_gone(&lrp, index, &guid, None);
                return;
            }
        };
        let (mut container, port) = match container {
            Ok(created) => created,
            Err(err) => {
                tracing::warn!(instance = %guid, error = %err, "cannot create the container");
                self.cell_log(
                    &lrp,
                    index,
                    format!("Cell failed to create container for instance {guid}: {err}"),
                );
                let _ = self.containers.destroy(&guid).await;
                let crash = CrashReason {
                    exit_status: -1,
                    description: format!("failed to create container: {err}"),
                };
                self.instance_gone(&lrp, index, &guid, Some(crash));
                return;
            }
        };
        // Rules changed while the container was being created reach it now.
        let current_egress = self
            .state()
            .lrps
            .get(&lrp.process_guid)
            .map(|l| l.desired.egress.clone());
        if let Some(egress) = current_egress.filter(|e| *e != lrp.egress) {
            if let Err(err) = self.containers.set_egress(&guid, &egress).await {
                tracing::warn!(instance = %guid, error = %err, "cannot update the egress rules");
            }
        }
        self.cell_log(
            &lrp,
            index,
            format!("Cell successfully created container for instance {guid}"),
        );
        let source_type = format!("APP/PROC/{}", lrp.process_type.to_uppercase());
        // One limit covers both streams of the instance; what the app
        // writes is counted before the limit (the log rate it asks for).
        let limited = ingot_logs::instance_log_sink(
            Arc::clone(&self.logs),
            lrp.log_rate_limit,
            &self.metrics.log_rate,
        );
        let sink: Arc<dyn LogSink> = Arc::new(CountingSink {
            inner: limited,
            bytes: log_bytes,
        });
        let stdout_done = forward_lines(
            container.stdout,
            Arc::clone(&sink),
            lrp.app_guid.clone(),
            index.to_string(),
            source_type.clone(),
            LogKind::Out,
        );
        let stderr_done = forward_lines(
            container.stderr,
            sink,
            lrp.app_guid.clone(),
            index.to_string(),
            source_type.clone(),
            LogKind::Err,
        );
        let addr = container.ip.map(|ip| SocketAddr::new(ip.into(), port));
        self.with_instance(&lrp.process_guid, index, &guid, |instance| {
            instance.addr = addr
        });

        let outcome = self
            .supervise(&lrp, index, &guid, addr, &mut container.exit, &cancel)
            .await;
        // Every route the instance ever had, also those mapped after it
        // started: its address will be reused by another container.
        self.routes.unregister_instance(&guid);
        let crash = match outcome {
            Outcome::Stopped => {
                self.cell_log(&lrp, index, format!("Cell stopping instance {guid}"));
                if !lrp.uris.is_empty() && !self.config.route_drain.is_zero() {
                    tokio::time::sleep(self.config.route_drain).await;
                }
                if let Err(err) = self.containers.stop(&guid, self.config.stop_grace).await {
                    tracing::warn!(instance = %guid, error = %err, "stopping the container failed");
                }
                None
            }
            Outcome::Exited(status) => {
                let mut description = format!("{source_type}: Exited with status {}", status.code);
                if status.oom_killed {
                    description.push_str(" (out of memory)");
                }
                Some(CrashReason {
                    exit_status: status.code,
                    description,
                })
            }
            Outcome::Unhealthy(reason) => {
                let _ = self.containers.stop(&guid, Duration::ZERO).await;
                Some(CrashReason {
                    exit_status: -1,
                    description: format!("{source_type}: {reason}"),
                })
            }
        };
        if let Err(err) = self.containers.destroy(&guid).await {
            tracing::warn!(instance = %guid, error = %err, "destroying the container failed");
        }
        let _ = stdout_done.await;
        let _ = stderr_done.await;
        if crash.is_none() {
            self.cell_log(
                &lrp,
                index,
                format!("Cell destroyed container for instance {guid}"),
            );
        }
        self.instance_gone(&lrp, index, &guid, crash);
    }

    /// Waits for readiness, then watches liveness and the process until it
    /// ends or the instance is cancelled.
    async fn supervise(
        &self,
        lrp: &DesiredLrp,
        index: u32,
        guid: &str,
        addr: Option<SocketAddr>,
        exit: &mut tokio::sync::oneshot::Receiver<ingot_containers::ExitStatus>,
        cancel: &CancellationToken,
    ) -> Outcome {
        let check = &lrp.health_check;
        let deadline = Instant::now() + check.start_timeout;
        let check_addr = match (check.kind, addr) {
            (HealthCheckKind::Process, _) => None,
            (_, Some(addr)) => Some(addr),
            (_, None) => {
                return Outcome::Unhealthy("instance has no network address to check".into())
            }
        };
        // Readiness: STARTING until the first check passes.
        if let Some(addr) = check_addr {
            loop {
                tokio::select! {
                    status = &mut *exit => return Outcome::Exited(status.unwrap_or(ingot_containers::ExitStatus::UNKNOWN)),
                    _ = cancel.cancelled() => return Outcome::Stopped,
                    result = check_once(check, addr) => match result {
                        Ok(()) => break,
                        Err(reason) if Instant::now() >= deadline => {
                            return Outcome::Unhealthy(format!(
                                "Instance never healthy after {}: {reason}",
                                format_duration(check.start_timeout)
                            ));
                        }
                        Err(_) => {}
                    },
                }
                tokio::select! {
                    status = &mut *exit => return Outcome::Exited(status.unwrap_or(ingot_containers::ExitStatus::UNKNOWN)),
                    _ = cancel.cancelled() => return Outcome::Stopped,
                    _ = tokio::time::sleep(READINESS_INTERVAL) => {}
                }
            }
        }
        self.mark_running(lrp, index, guid);
        self.cell_log(
            lrp,
            index,
            format!("Container became healthy: instance {guid}"),
        );
        loop {
            tokio::select! {
                status = &mut *exit => return Outcome::Exited(status.unwrap_or(ingot_containers::ExitStatus::UNKNOWN)),
                _ = cancel.cancelled() => return Outcome::Stopped,
                _ = tokio::time::sleep(LIVENESS_INTERVAL), if check_addr.is_some() => {
                    if let Some(addr) = check_addr {
                        if let Err(reason) = check_once(check, addr).await {
                            if cancel.is_cancelled() {
                                return Outcome::Stopped;
                            }
                            return Outcome::Unhealthy(format!("Instance became unhealthy: {reason}"));
                        }
                    }
                }
            }
        }
    }

    fn mark_running(&self, lrp: &DesiredLrp, index: u32, guid: &str) {
        let mut state = self.state();
        let Some(current) = state.lrps.get_mut(&lrp.process_guid) else {
            return;
        };
        let Some(slot) = current.slots.get_mut(&index) else {
            return;
        };
        let Some(instance) = slot.instance.as_mut().filter(|i| i.guid == guid) else {
            return;
        };
        instance.phase = Phase::Running;
        if let Some(addr) = instance.addr {
            let target = RouteTarget {
                addr,
                app_guid: current.desired.app_guid.clone(),
                process_guid: current.desired.process_guid.clone(),
                instance_guid: guid.to_string(),
                index,
            };
            for uri in &current.desired.uris {
                self.routes.register(uri, &target);
            }
        }
    }

    fn with_instance(
        &self,
        process_guid: &str,
        index: u32,
        guid: &str,
        change: impl FnOnce(&mut Instance),
    ) {
        let mut state = self.state();
        let instance = state
            .lrps
            .get_mut(process_guid)
            .and_then(|lrp| lrp.slots.get_mut(&index))
            .and_then(|slot| slot.instance.as_mut())
            .filter(|instance| instance.guid == guid);
        if let Some(instance) = instance {
            change(instance);
        }
    }

    /// Frees the slot of a finished instance and, for a crash, records it
    /// and schedules the replacement on the back-off schedule.
    fn instance_gone(&self, lrp: &DesiredLrp, index: u32, guid: &str, crash: Option<CrashReason>) {
        if lrp.image.is_some() {
            self.image_released(guid);
        }
        let mut event = None;
        {
            let mut state = self.state();
            let slot = state
                .lrps
                .get_mut(&lrp.process_guid)
                .and_then(|current| current.slots.get_mut(&index))
                .filter(|slot| slot.instance.as_ref().is_some_and(|i| i.guid == guid));
            self.cpu_samples
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .remove(guid);
            if let Some(slot) = slot {
                let ran_for = slot
                    .instance
                    .as_ref()
                    .map(|i| i.started.elapsed())
                    .unwrap_or_default();
                slot.instance = None;
                if let Some(crash) = &crash {
                    if ran_for >= backoff::STABLE_AFTER {
                        slot.crashes = 0;
                    }
                    slot.crashes += 1;
                    slot.last_crash = Some(crash.description.clone());
                    match backoff::restart_after(slot.crashes) {
                        Restart::Now => slot.restart_at = None,
                        Restart::After(wait) => slot.restart_at = Some(Instant::now() + wait),
                        Restart::Never => slot.gave_up = true,
                    }
                    event = Some(CrashEvent {
                        process_guid: lrp.process_guid.clone(),
                        app_guid: lrp.app_guid.clone(),
                        index,
                        instance_guid: guid.to_string(),
                        exit_status: crash.exit_status,
                        exit_description: crash.description.clone(),
                        crash_count: slot.crashes,
                        timestamp_ns: now_ns(),
                    });
                }
            }
        }
        if let Some(event) = event {
            self.metrics.crashes.inc();
            self.cell_log(
                lrp,
                index,
                format!(
                    "Cell reports crash of instance {guid}: {}",
                    event.exit_description
                ),
            );
            let _ = self.events.send(SchedulerEvent::Crashed(event));
        }
        self.wake.notify_one();
    }

    async fn create_container(
        &self,
        lrp: &DesiredLrp,
        index: u32,
        guid: &str,
    ) -> Result<(Container, u16), SchedulerError> {
        if let Some(image) = &lrp.image {
            return self.create_image_container(lrp, image, index, guid).await;
        }
        let layer = self
            .droplet_layer(&lrp.droplet_guid, &lrp.droplet_key)
            .await?;
        let env = crate::env::instance_environment(&self.config, lrp, index, guid);
        let limits = limits_for(lrp.memory_mb, lrp.disk_mb);
        self.run_droplet(guid, layer, &lrp.command, env, limits, &lrp.egress)
            .await
            .map(|container| (container, APP_PORT))
    }

    /// Starts a container from an unpacked droplet that runs `command`
    /// through the launcher as `vcap`: what app instances and tasks share.
    pub(crate) async fn run_droplet(
        &self,
        id: &str,
        layer: PathBuf,
        command: &str,
        env: Vec<(String, String)>,
        limits: Limits,
        egress: &[EgressRule],
    ) -> Result<Container, SchedulerError> {
        let spec = ContainerSpec {
            id: id.to_string(),
            hostname: id.to_string(),
            stack: self.stack.clone(),
            layers: vec![layer],
            bind_mounts: vec![self.lifecycle_mount()],
            process: ProcessSpec {
                args: vec![
                    ingot_lifecycle::LIFECYCLE_PATH.to_string(),
                    "lifecycle".to_string(),
                    "launcher".to_string(),
                    "--command".to_string(),
                    command.to_string(),
                ],
                env,
                cwd: "/home/vcap/app".to_string(),
                uid: VCAP,
                gid: VCAP,
            },
            limits,
            network: true,
            egress: egress.to_vec(),
        };
        self.containers
            .create(spec)
            .await
            .map_err(|err| SchedulerError::Container {
                id: id.to_string(),
                message: err.to_string(),
            })
    }

    pub(crate) fn lifecycle_mount(&self) -> BindMount {
        BindMount {
            source: self.config.lifecycle_binary.clone(),
            destination: PathBuf::from(ingot_lifecycle::LIFECYCLE_PATH),
            read_only: true,
        }
    }

    /// The droplet unpacked into an overlay layer (`<layer>/home/vcap/…`),
    /// once per droplet however many instances start at the same time.
    ///
    /// The layer is unpacked into a fresh directory and renamed into place,
    /// so a layer that exists is complete, and the work runs in its own task
    /// so that an instance cancelled meanwhile cannot abandon it half done.
    pub(crate) async fn droplet_layer(
        &self,
        droplet_guid: &str,
        droplet_key: &str,
    ) -> Result<PathBuf, SchedulerError> {
        let dir = self.config.work_dir.join("droplets").join(droplet_guid);
        let layer = dir.join("layer");
        if layer.is_dir() {
            return Ok(layer);
        }
        let lock = {
            let mut droplets = self.droplets.lock().await;
            Arc::clone(droplets.entry(droplet_guid.to_string()).or_default())
        };
        let _one_at_a_time = lock.lock().await;
        if layer.is_dir() {
            return Ok(layer);
        }
        let blobs = Arc::clone(&self.blobs);
        let (key, guid, target) = (
            droplet_key.to_string(),
            droplet_guid.to_string(),
            layer.clone(),
        );
        tokio::spawn(async move { unpack_layer(blobs, &key, &guid, &dir, &target).await })
            .await
            .map_err(|err| SchedulerError::Io {
                what: format!("unpacking droplet {droplet_guid}"),
                source: std::io::Error::other(err.to_string()),
            })??;
        Ok(layer)
    }
}

/// Nothing stages at start-up, so staging directories and half-unpacked
/// droplet layers there are what a killed platform left behind.
fn sweep_leftovers(work_dir: &std::path::Path) {
    let staging = work_dir.join("staging");
    if staging.exists() {
        if let Err(err) = std::fs::remove_dir_all(&staging) {
            tracing::warn!(dir = %staging.display(), error = %err, "cannot remove old staging directories");
        }
    }
    let Ok(droplets) = std::fs::read_dir(work_dir.join("droplets")) else {
        return;
    };
    for droplet in droplets.flatten() {
        let Ok(entries) = std::fs::read_dir(droplet.path()) else {
            continue;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().to_string();
            if name.starts_with("layer.tmp-") {
                let _ = std::fs::remove_dir_all(entry.path());
            } else if name.starts_with("droplet-") && name.ends_with(".tgz") {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }
}

/// Downloads and unpacks a droplet into `<dir>/layer.tmp-…`, then renames
/// it to `layer`. Losing a race to another unpack of the same droplet is fine:
/// the rename fails because `layer` exists, and this copy is dropped.
async fn unpack_layer(
    blobs: Arc<dyn Blobstore>,
    droplet_key: &str,
    droplet_guid: &str,
    dir: &std::path::Path,
    layer: &std::path::Path,
) -> Result<(), SchedulerError> {
    let io = |what: String| move |source| SchedulerError::Io { what, source };
    tokio::fs::create_dir_all(dir)
        .await
        .map_err(io(format!("creating {}", dir.display())))?;
    let unique = uuid::Uuid::new_v4();
    let tgz = dir.join(format!("droplet-{unique}.tgz"));
    let tmp = dir.join(format!("layer.tmp-{unique}"));
    let result = async {
        blobs.get_to_file(droplet_key, &tgz).await?;
        let (tgz2, home) = (tgz.clone(), tmp.join("home").join("vcap"));
        tokio::task::spawn_blocking(move || {
            ingot_lifecycle::unpack_droplet(&tgz2, &home, VCAP, VCAP)
        })
        .await
        .map_err(|err| SchedulerError::Io {
            what: "unpacking the droplet".into(),
            source: std::io::Error::other(err.to_string()),
        })?
        .map_err(|err| SchedulerError::Io {
            what: format!("unpacking droplet {droplet_guid}"),
            source: std::io::Error::other(err.to_string()),
        })?;
        if let Err(err) = tokio::fs::rename(&tmp, layer).await {
            if !layer.is_dir() {
                return Err(io(format!(
                    "moving the droplet layer into {}",
                    layer.display()
                ))(err));
            }
        }
        Ok(())
    }
    .await;
    let _ = tokio::fs::remove_file(&tgz).await;
    if tmp.exists() {
        let _ = tokio::fs::remove_dir_all(&tmp).await;
    }
    result
}

/// CF gives an app CPU weight in proportion to its memory.
/// A container's limits: memory, CPU weight proportional to memory (as CF
/// does), pids, and a disk quota on everything it writes (0: none).
pub(crate) fn limits_for(memory_mb: u64, disk_mb: u64) -> Limits {
    Limits {
        memory_bytes: memory_mb * 1024 * 1024,
        pids: 1024,
        cpu_shares: (memory_mb.clamp(2, 8192) * 1024 / 1024).max(2),
        disk_bytes: (disk_mb > 0).then(|| disk_mb.max(4) << 20),
    }
}

pub(crate) fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}

struct CpuSample {
    at: Instant,
    cpu_time_ns: u64,
    fraction: f64,
}

struct CrashReason {
    exit_status: i32,
    description: String,
}

enum Outcome {
    Stopped,
    Exited(ingot_containers::ExitStatus),
    Unhealthy(String),
}
