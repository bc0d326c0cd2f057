//! The container manager: creates, stops and destroys containers, and owns the host-side
//! network (bridge, NAT, egress firewall) and the cleanup of everything a container leaves.

use std::collections::HashMap;
use std::io::Read;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::{oneshot, watch};

use crate::cgroup::{self, CgroupVersion};
use crate::disk_quota;
use crate::firewall;
use crate::network::{self, Naming, Pool, Subnet, Tools};
use crate::oci;
use crate::rootfs::{self, ContainerDirs};
use crate::runtime::{OciRuntime, Runc};
use crate::shim::ShimArgs;
use crate::stack;
use crate::{Container, ContainerError, ContainerSpec, EgressRule, ExitStatus, Usage};

/// The fd on which the shim reports readiness ("ok <pid>" or "error <reason>").
const READY_FD: i32 = 3;
/// How long the shim may take to create and start a container.
const START_TIMEOUT: Duration = Duration::from_secs(120);
/// How long a SIGKILLed container may take to be reaped before we give up waiting.
const KILL_TIMEOUT: Duration = Duration::from_secs(15);

/// Where the manager keeps its state and how it names what it creates.
#[derive(Debug, Clone)]
pub struct ManagerConfig {
    /// Bundles, overlay upper/work directories and runc's state (`state_dir/runc`). Must lie
    /// outside the host directories containers see (`/usr` and the system directories).
    pub state_dir: PathBuf,
    /// Prefixes network namespaces, veths, the nft table and the cgroup parent; lowercase
    /// letters and digits, short enough that `<prefix>v<n>` fits a 15-byte interface name.
    pub prefix: String,
    /// The bridge's interface name.
    pub bridge: String,
    /// Container subnet; the bridge gets the first address, containers the next free ones.
    pub subnet: String,
    /// The binary run as the shim: `<self_exe> internal shim …`.
    pub self_exe: PathBuf,
    /// The runc binary.
    pub runc: PathBuf,
}

impl ManagerConfig {
    /// The defaults: prefix `ingot`, bridge `ingot0`, subnet `10.254.0.0/22`, `/usr/sbin/runc`
    /// (or `runc` from `PATH`).
    pub fn new(state_dir: impl Into<PathBuf>, self_exe: impl Into<PathBuf>) -> ManagerConfig {
        ManagerConfig {
            state_dir: state_dir.into(),
            prefix: "ingot".into(),
            bridge: "ingot0".into(),
            subnet: "10.254.0.0/22".into(),
            self_exe: self_exe.into(),
            runc: find_program("runc").unwrap_or_else(|| PathBuf::from("/usr/sbin/runc")),
        }
    }
}

/// Looks `name` up in `PATH` and the system directories root's `PATH` usually has.
fn find_program(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(
            [
                "/usr/local/sbin",
                "/usr/local/bin",
                "/usr/sbin",
                "/usr/bin",
                "/sbin",
                "/bin",
            ]
            .map(PathBuf::from),
        )
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// What the manager remembers of a container.
struct Record {
    /// Offset of its address in the pool, if it has a network.
    offset: Option<u32>,
    /// Becomes `true` once the shim has exited; `None` until the shim is spawned.
    done: Option<watch::Receiver<bool>>,
    /// Host pid of the shim, to kill it should it hang.
    shim_pid: Option<u32>,
    /// Its egress rules, as last given (enforced once `firewall` is true).
    egress: Vec<EgressRule>,
    /// Its firewall chain and map entry are installed.
    firewall: bool,
}

struct State {
    pool: Pool,
    containers: HashMap<String, Record>,
}

/// Creates and destroys containers over runc (see the crate documentation).
pub struct ContainerManager {
    config: ManagerConfig,
    version: CgroupVersion,
    subnet: Subnet,
    naming: Naming,
    tools: Tools,
    limit_swap: bool,
    runtime: Arc<dyn OciRuntime>,
    state: Mutex<State>,
    /// Serialises changes to the firewall, so that rules given by `set_egress` while a
    /// container is being created are the ones it gets, and a destroy is not undone.
    firewall_lock: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for ContainerManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ContainerManager")
            .field("config", &self.config)
            .field("version", &self.version)
            .finish_non_exhaustive()
    }
}

fn validate_prefix(config: &ManagerConfig, subnet: &Subnet) -> Result<(), ContainerError> {
    let prefix = &config.prefix;
    if prefix.is_empty()
        || !prefix
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    {
        return Err(ContainerError::InvalidConfig(format!(
            "prefix {prefix:?} must be lowercase letters and digits"
        )));
    }
    let longest_veth = prefix.len() + 1 + subnet.max_offset().to_string().len();
    if longest_veth > 15 {
        return Err(ContainerError::InvalidConfig(format!(
            "prefix {prefix:?} is too long: veth names `{prefix}v<n>` for {subnet} would need {longest_veth} bytes, interfaces allow 15"
        )));
    }
    let bridge = &config.bridge;
    if bridge.is_empty() || bridge.len() > 15 || bridge.contains(['/', ' ', ':']) {
        return Err(ContainerError::InvalidConfig(format!(
            "bridge name {bridge:?} must be 1-15 bytes without '/', ':' or spaces"
        )));
    }
    Ok(())
}

/// Ids end up in paths, netns names and runc's state: keep them to a safe alphabet.
fn validate_id(id: &str) -> Result<(), ContainerError> {
    let reason = if id.is_empty() || id.len() > 64 {
        Some("must be 1-64 characters")
    } else if id.starts_with(['.', '-']) {
        Some("must not start with '.' or '-'")
    } else if !id
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.' || b == b'-')
    {
        Some("may contain only letters, digits, '_', '.' and '-'")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(ContainerError::InvalidId {
            id: id.to_string(),
            reason,
        }),
        None => Ok(()),
    }
}

async fn wait_done(done: &mut watch::Receiver<bool>) {
    // An error means the waiter task is gone, which it only is once the shim has exited.
    let _ = done.wait_for(|finished| *finished).await;
}

impl ContainerManager {
    /// Refuses a state directory inside a host directory that the default stack bind-mounts
    /// into every container (`/usr`, and `/bin`, `/lib*`, `/sbin` or what they link to):
    /// [`ContainerError::StateDirExposed`]. Checks that runc, ip and nft exist (naming the
    /// missing one), removes leftovers of an earlier run with the same prefix (runc
    /// containers under its root, mounts under the state directory and the loop devices of
    /// its disk images, network namespaces,
    /// veths, cgroups, the nft table with every container's firewall chain, the bridge),
    /// then creates the bridge, enables IPv4 forwarding and installs NAT and the egress
    /// firewall (default: containers reach nothing) for the subnet.
    pub async fn start(config: ManagerConfig) -> Result<Arc<Self>, ContainerError> {
        if let Some(mounted) = stack::exposing_mount(&config.state_dir, &stack::host_bind_sources())
        {
            return Err(ContainerError::StateDirExposed {
                state_dir: config.state_dir.clone(),
                mounted,
            });
        }
        let subnet = Subnet::parse(&config.subnet)?;
        validate_prefix(&config, &subnet)?;
        if !config.runc.is_file() {
            return Err(ContainerError::MissingProgram {
                name: "runc".into(),
                path: config.runc.clone(),
            });
        }
        let missing = |name: &str| ContainerError::MissingProgram {
            name: name.into(),
            path: PathBuf::from(format!("$PATH/{name}")),
        };
        let tools = Tools {
            ip: find_program("ip").ok_or_else(|| missing("ip"))?,
            nft: find_program("nft").ok_or_else(|| missing("nft"))?,
        };
        let version = CgroupVersion::detect();
        let manager = ContainerManager {
            naming: Naming {
                prefix: config.prefix.clone(),
                bridge: config.bridge.clone(),
            },
            limit_swap: cgroup::swap_limit_supported(version),
            runtime: Arc::new(Runc::new(&config.runc, config.state_dir.join("runc"))),
            version,
            subnet,
            tools,
            state: Mutex::new(State {
                pool: Pool::new(subnet),
                containers: HashMap::new(),
            }),
            firewall_lock: tokio::sync::Mutex::new(()),
            config,
        };
        let runc_root = manager.runc_root();
        blocking(move || {
            std::fs::create_dir_all(&runc_root)
                .map_err(ContainerError::io("create directory", &runc_root))
        })
        .await?;
        manager.remove_leftovers().await?;
        if let Err(e) = network::setup_host(&manager.tools, &manager.naming, &manager.subnet).await
        {
            // Leave nothing half made: the bridge may exist without its NAT table.
            let _ = network::teardown_host(&manager.tools, &manager.naming).await;
            return Err(e);
        }
        tracing::info!(prefix = %manager.config.prefix, bridge = %manager.config.bridge,
            subnet = %manager.subnet, cgroup = ?manager.version, "container manager started");
        Ok(Arc::new(manager))
    }

    /// The cgroup hierarchy in use.
    pub fn cgroup_version(&self) -> CgroupVersion {
        self.version
    }

    /// The configuration the manager was started with.
    pub fn config(&self) -> &ManagerConfig {
        &self.config
    }

    /// The container's cgroup path (`linux.cgroupsPath`), e.g. `/ingot/<id>`.
    pub fn cgroup_path(&self, id: &str) -> String {
        format!("/{}/{}", self.config.prefix, id)
    }

    /// The name of the container's network namespace (it exists only when it has a network).
    pub fn netns_name(&self, id: &str) -> String {
        self.naming.netns(id)
    }

    /// Ids of the containers the manager currently knows.
    pub fn list(&self) -> Vec<String> {
        let mut ids: Vec<String> = self.lock().containers.keys().cloned().collect();
        ids.sort();
        ids
    }

    fn runc_root(&self) -> PathBuf {
        self.config.state_dir.join("runc")
    }

    fn containers_dir(&self) -> PathBuf {
        self.config.state_dir.join("containers")
    }

    fn volumes_dir(&self) -> PathBuf {
        self.config.state_dir.join("volumes")
    }

    /// Creates the volume `name` (an id, as for containers): a root-owned directory on a
    /// file system of its own of `bytes` (at least 4 MiB), for writable bind mounts that
    /// must count against a disk quota (e.g. staging's app and output directories). Returns
    /// its path. Replaces a volume of the same name. Removed by [`Self::remove_volume`], by
    /// [`Self::shutdown`] and by the next [`Self::start`] after a crash.
    pub async fn create_volume(&self, name: &str, bytes: u64) -> Result<PathBuf, ContainerError> {
        validate_id(name)?;
        let (volumes, name) = (self.volumes_dir(), name.to_string());
        blocking(move || disk_quota::create_volume(&volumes, &name, bytes)).await
    }

    /// Unmounts and removes the volume `name` and everything in it. Missing: no-op.
    pub async fn remove_volume(&self, name: &str) -> Result<(), ContainerError> {
        validate_id(name)?;
        let (volumes, name) = (self.volumes_dir(), name.to_string());
        blocking(move || disk_quota::remove_volume(&volumes, &name)).await
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves plain data behind, still consistent enough
        // for cleanup; don't turn one panic into many.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Runs a blocking OCI runtime call on tokio's blocking pool.
    async fn oci<T: Send + 'static>(
        &self,
        call: impl FnOnce(&dyn OciRuntime) -> Result<T, ContainerError> + Send + 'static,
    ) -> Result<T, ContainerError> {
        let runtime = Arc::clone(&self.runtime);
        tokio::task::spawn_blocking(move || call(runtime.as_ref()))
            .await
            .map_err(|e| ContainerError::Command {
                command: "OCI runtime call".into(),
                detail: e.to_string(),
            })?
    }

    async fn remove_leftovers(&self) -> Result<(), ContainerError> {
        let listed = self.oci(|rt| rt.list()).await.unwrap_or_default();
        for id in listed {
            tracing::info!(id, "removing container left by an earlier run");
            let target = id.clone();
            if let Err(e) = self.oci(move |rt| rt.delete(&target, true)).await {
                tracing::warn!(id, error = %e, "could not delete leftover container");
            }
        }
        let containers = self.containers_dir();
        let target = containers.clone();
        blocking(move || {
            rootfs::unmount_all_below(&target)?;
            // Disk images' loop devices detach with their unmount; this catches the rest.
            disk_quota::detach_images_below(&target)
        })
        .await?;
        // A shim of the crashed run may still be writing its exit file while we remove.
        for attempt in 0..5 {
            let target = containers.clone();
            match blocking(move || Ok(std::fs::remove_dir_all(&target))).await? {
                Ok(()) => break,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => break,
                Err(e) if attempt == 4 => return Err(ContainerError::io("remove", &containers)(e)),
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
        let volumes = self.volumes_dir();
        blocking(move || disk_quota::remove_tree(&volumes)).await?;
        network::remove_leftovers(&self.tools, &self.naming).await?;
        self.remove_cgroup_parent().await;
        Ok(())
    }

    async fn remove_cgroup_parent(&self) {
        let parent = format!("/{}", self.config.prefix);
        let _ = tokio::task::spawn_blocking(move || {
            for dir in cgroup::existing_dirs(&parent) {
                cgroup::remove_tree(&dir);
            }
        })
        .await;
    }

    /// Creates and starts the container; returns once its process runs.
    pub async fn create(&self, spec: ContainerSpec) -> Result<Container, ContainerError> {
        validate_id(&spec.id)?;
        {
            let mut state = self.lock();
            if state.containers.contains_key(&spec.id) {
                return Err(ContainerError::AlreadyExists {
                    id: spec.id.clone(),
                });
            }
            let offset = if spec.network {
                Some(state.pool.allocate()?)
            } else {
                None
            };
            state.containers.insert(
                spec.id.clone(),
                Record {
                    offset,
                    done: None,
                    shim_pid: None,
                    egress: spec.egress.clone(),
                    firewall: false,
                },
            );
        }
        match self.create_inner(&spec).await {
            Ok(container) => Ok(container),
            Err(e) => {
                if let Err(cleanup) = self.destroy(&spec.id).await {
                    tracing::warn!(id = %spec.id, error = %cleanup, "cleanup after failed create");
                }
                Err(e)
            }
        }
    }

    async fn create_inner(&self, spec: &ContainerSpec) -> Result<Container, ContainerError> {
        let id = spec.id.as_str();
        let offset = self.lock().containers.get(id).and_then(|r| r.offset);
        let ip = offset.map(|o| self.subnet.address(o));
        let dirs = ContainerDirs::new(&self.config.state_dir, id);
        {
            let dirs = dirs.clone();
            let layers = spec.layers.clone();
            let stack_rootfs = spec.stack.rootfs.clone();
            let hostname = spec.hostname.clone();
            let disk_bytes = spec.limits.disk_bytes;
            blocking(move || {
                // A directory of the same id may survive a failed destroy; never reuse its
                // upper dir.
                rootfs::remove(&dirs)?;
                rootfs::mount_rootfs(&dirs, &layers, &stack_rootfs, disk_bytes)?;
                write_hosts(&dirs.rootfs(), &hostname, ip)
            })
            .await?;
        }

        let netns = match offset {
            Some(offset) => {
                let netns =
                    network::setup_container(&self.tools, &self.naming, &self.subnet, id, offset)
                        .await?;
                // Before the process starts: it never runs without its rules.
                self.install_firewall(id, offset).await?;
                Some(netns)
            }
            None => None,
        };
        let cgroups_path = self.cgroup_path(id);
        let config = oci::config(
            spec,
            &oci::Runtime {
                cgroups_path: &cgroups_path,
                netns: netns.as_deref(),
                limit_swap: self.limit_swap,
            },
        );
        let config_path = dirs.bundle().join("config.json");
        let config_bytes = serde_json::to_vec_pretty(&config)
            .map_err(|e| ContainerError::io("serialise", &config_path)(std::io::Error::other(e)))?;
        blocking(move || {
            std::fs::write(&config_path, config_bytes)
                .map_err(ContainerError::io("write", &config_path))
        })
        .await?;

        let shim_args = ShimArgs {
            runc: self.config.runc.clone(),
            runc_root: self.runc_root(),
            bundle: dirs.bundle(),
            id: id.to_string(),
            pid_file: dirs.pid_file(),
            exit_file: dirs.exit_file(),
            cgroup: cgroups_path,
            ready_fd: Some(READY_FD),
        };
        let (ready_read, ready_write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
            .map_err(|e| ContainerError::io("create pipe for", &dirs.root)(e.into()))?;
        let mut child = self.spawn_shim(&shim_args, &ready_write)?;
        drop(ready_write);
        let shim_pid = child.id();
        let (stdout, stderr) = match (child.stdout.take(), child.stderr.take()) {
            (Some(out), Some(err)) => (out, err),
            _ => {
                return Err(ContainerError::StartFailed {
                    id: id.to_string(),
                    reason: "the shim's stdout/stderr pipes are missing".into(),
                })
            }
        };

        let (exit_tx, exit_rx) = oneshot::channel();
        let (done_tx, mut done_rx) = watch::channel(false);
        let exit_file = dirs.exit_file();
        let waiter_id = id.to_string();
        tokio::spawn(async move {
            let shim_status = child.wait().await;
            let status = tokio::fs::read(&exit_file)
                .await
                .ok()
                .and_then(|bytes| serde_json::from_slice::<ExitStatus>(&bytes).ok())
                .unwrap_or_else(|| {
                    tracing::warn!(id = %waiter_id, shim = ?shim_status, "shim ended without an exit status");
                    ExitStatus::UNKNOWN
                });
            let _ = exit_tx.send(status);
            let _ = done_tx.send(true);
        });
        if let Some(record) = self.lock().containers.get_mut(id) {
            record.done = Some(done_rx.clone());
            record.shim_pid = shim_pid;
        }

        let ready = tokio::time::timeout(START_TIMEOUT, read_ready(ready_read)).await;
        let line = match ready {
            Ok(line) => line,
            Err(_) => {
                if let Some(pid) = shim_pid {
                    kill_pid(pid);
                }
                wait_done(&mut done_rx).await;
                return Err(ContainerError::StartFailed {
                    id: id.to_string(),
                    reason: format!("not started within {START_TIMEOUT:?}"),
                });
            }
        };
        let host_pid = match line.trim().strip_prefix("ok ").map(str::parse::<u32>) {
            Some(Ok(pid)) => pid,
            _ => {
                wait_done(&mut done_rx).await;
                let reason = line.trim().strip_prefix("error ").unwrap_or(line.trim());
                return Err(ContainerError::StartFailed {
                    id: id.to_string(),
                    reason: if reason.is_empty() {
                        "the shim exited without reporting".into()
                    } else {
                        reason.to_string()
                    },
                });
            }
        };
        tracing::debug!(id, host_pid, ?ip, "container started");
        Ok(Container {
            id: id.to_string(),
            ip,
            host_pid,
            stdout,
            stderr,
            exit: exit_rx,
        })
    }

    fn spawn_shim(
        &self,
        args: &ShimArgs,
        ready_write: &OwnedFd,
    ) -> Result<tokio::process::Child, ContainerError> {
        let write_fd = ready_write.as_raw_fd();
        let mut command = tokio::process::Command::new(&self.config.self_exe);
        command
            .arg("internal")
            .args(args.to_args())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Its own process group: a Ctrl-C meant for `ingot up` must not kill containers;
            // the platform stops them itself.
            .process_group(0)
            .kill_on_drop(false);
        // SAFETY: runs in the forked child before exec; dup2 and fcntl are async-signal-safe
        // and touch only the child's fd table.
        unsafe {
            command.pre_exec(move || {
                if write_fd == READY_FD {
                    if libc::fcntl(READY_FD, libc::F_SETFD, 0) < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                } else if libc::dup2(write_fd, READY_FD) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        command.spawn().map_err(|e| ContainerError::StartFailed {
            id: args.id.clone(),
            reason: format!("cannot run shim {}: {e}", self.config.self_exe.display()),
        })
    }

    /// Sends SIGTERM to the container's process, then SIGKILL to all of its processes after
    /// `grace` if it still runs; returns once it has exited. Unknown or exited: no-op.
    pub async fn stop(&self, id: &str, grace: Duration) -> Result<(), ContainerError> {
        validate_id(id)?;
        let done = self.lock().containers.get(id).and_then(|r| r.done.clone());
        let Some(mut done) = done else {
            return Ok(());
        };
        if *done.borrow() {
            return Ok(());
        }
        // Errors mean the container is already stopped; the wait below settles it.
        let target = id.to_string();
        let _ = self.oci(move |rt| rt.kill(&target, "TERM", false)).await;
        if tokio::time::timeout(grace, wait_done(&mut done))
            .await
            .is_ok()
        {
            return Ok(());
        }
        self.kill_and_wait(id, done).await
    }

    async fn kill_and_wait(
        &self,
        id: &str,
        mut done: watch::Receiver<bool>,
    ) -> Result<(), ContainerError> {
        if *done.borrow() {
            return Ok(());
        }
        let target = id.to_string();
        let _ = self.oci(move |rt| rt.kill(&target, "KILL", true)).await;
        if tokio::time::timeout(KILL_TIMEOUT, wait_done(&mut done))
            .await
            .is_ok()
        {
            return Ok(());
        }
        // The shim is stuck; kill it and let destroy force-delete the container.
        let shim = self.lock().containers.get(id).and_then(|r| r.shim_pid);
        if let Some(pid) = shim {
            kill_pid(pid);
        }
        let _ = tokio::time::timeout(KILL_TIMEOUT, wait_done(&mut done)).await;
        Err(ContainerError::Command {
            command: format!("kill container {id}"),
            detail: format!("container still running after {KILL_TIMEOUT:?}"),
        })
    }

    /// Kills the container if needed and removes everything of it: runc state, mounts,
    /// overlay directories, disk image and its loop device, network namespace, veth, firewall chain and map entry, cgroups,
    /// its address. Idempotent;
    /// also cleans what an unknown id may have left.
    pub async fn destroy(&self, id: &str) -> Result<(), ContainerError> {
        validate_id(id)?;
        let record = self
            .lock()
            .containers
            .get(id)
            .map(|r| (r.offset, r.done.clone()));
        let (offset, done) = record.unwrap_or((None, None));
        if let Some(done) = done {
            if let Err(e) = self.kill_and_wait(id, done).await {
                tracing::warn!(id, error = %e, "destroying a container that would not die");
            }
        }
        // Every step runs even when an earlier one fails, so one stuck piece does not keep
        // the others (or the record and its address) alive; the first error is reported.
        let mut first_error = None;
        // Gone already in the normal case (the shim deletes it); this covers crashes.
        let target = id.to_string();
        let deleted = self
            .oci(move |rt| {
                if rt.exists(&target) {
                    rt.delete(&target, true)
                } else {
                    Ok(())
                }
            })
            .await;
        let dirs = ContainerDirs::new(&self.config.state_dir, id);
        let removed = blocking(move || rootfs::remove(&dirs)).await;
        let torn_down = network::teardown_container(&self.tools, &self.naming, id, offset).await;
        let unfirewalled = {
            let _firewall = self.firewall_lock.lock().await;
            if let Some(record) = self.lock().containers.get_mut(id) {
                record.firewall = false;
            }
            let address = offset.map(|o| self.subnet.address(o));
            firewall::remove(&self.tools, &self.naming, id, address).await
        };
        for (step, result) in [
            ("delete runc container", deleted),
            ("remove rootfs", removed),
            ("tear down network", torn_down),
            ("remove firewall rules", unfirewalled),
        ] {
            if let Err(e) = result {
                tracing::warn!(id, step, error = %e, "destroy step failed");
                first_error.get_or_insert(e);
            }
        }
        let cgroup_path = self.cgroup_path(id);
        let _ = tokio::task::spawn_blocking(move || {
            for dir in cgroup::existing_dirs(&cgroup_path) {
                cgroup::remove_tree(&dir);
            }
        })
        .await;
        self.forget(id);
        match first_error {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Installs the container's firewall chain with the rules its record holds.
    async fn install_firewall(&self, id: &str, offset: u32) -> Result<(), ContainerError> {
        let _firewall = self.firewall_lock.lock().await;
        let Some(rules) = self.lock().containers.get(id).map(|r| r.egress.clone()) else {
            return Err(ContainerError::StartFailed {
                id: id.to_string(),
                reason: "destroyed while being created".into(),
            });
        };
        let address = self.subnet.address(offset);
        firewall::install(&self.tools, &self.naming, id, address, &rules).await?;
        if let Some(record) = self.lock().containers.get_mut(id) {
            record.firewall = true;
        }
        Ok(())
    }

    /// Replaces what a container may connect to (see [`ContainerSpec::egress`]) while it
    /// runs, in one nft transaction that other containers do not notice. The new rules apply
    /// to every connection opened from then on; connections already established (under the
    /// old rules) are kept until they close. A container being created gets these rules
    /// when its process starts; one without a network keeps them with no effect.
    /// Unknown id: [`ContainerError::InvalidId`].
    pub async fn set_egress(&self, id: &str, rules: &[EgressRule]) -> Result<(), ContainerError> {
        validate_id(id)?;
        let _firewall = self.firewall_lock.lock().await;
        let installed = {
            let mut state = self.lock();
            let Some(record) = state.containers.get_mut(id) else {
                return Err(ContainerError::InvalidId {
                    id: id.to_string(),
                    reason: "no such container",
                });
            };
            record.egress = rules.to_vec();
            record.firewall
        };
        if installed {
            firewall::replace(&self.tools, &self.naming, id, rules).await?;
        }
        tracing::debug!(id, rules = rules.len(), installed, "egress rules set");
        Ok(())
    }

    /// Drops the container's record and returns its address to the pool.
    fn forget(&self, id: &str) {
        let mut state = self.lock();
        if let Some(record) = state.containers.remove(id) {
            if let Some(offset) = record.offset {
                state.pool.release(offset);
            }
        }
    }

    /// Destroys every container, then removes the bridge, the nft table, the cgroup parent
    /// and the state directory's contents (volumes included).
    pub async fn shutdown(&self) -> Result<(), ContainerError> {
        let mut first_error = None;
        for id in self.list() {
            if let Err(e) = self.destroy(&id).await {
                tracing::warn!(id, error = %e, "destroy during shutdown");
                first_error.get_or_insert(e);
            }
        }
        if let Err(e) = network::teardown_host(&self.tools, &self.naming).await {
            first_error.get_or_insert(e);
        }
        self.remove_cgroup_parent().await;
        let containers = self.containers_dir();
        let runc_root = self.runc_root();
        let volumes = self.volumes_dir();
        let removed = blocking(move || {
            let mut first_error = rootfs::unmount_all_below(&containers)
                .and_then(|()| disk_quota::detach_images_below(&containers))
                .err();
            if let Err(e) = disk_quota::remove_tree(&volumes) {
                first_error.get_or_insert(e);
            }
            for dir in [containers, runc_root] {
                match std::fs::remove_dir_all(&dir) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => {
                        first_error.get_or_insert(ContainerError::io("remove", &dir)(e));
                    }
                }
            }
            first_error.map_or(Ok(()), Err)
        })
        .await;
        if let Err(e) = removed {
            first_error.get_or_insert(e);
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Memory and CPU usage from the container's cgroup, if it exists.
    pub fn usage(&self, id: &str) -> Option<Usage> {
        validate_id(id).ok()?;
        cgroup::usage(self.version, &self.cgroup_path(id))
    }

    /// Bytes the container has written to its root file system (its
    /// overlay's upper directory, on its own file system when it has a
    /// [`crate::Limits::disk_bytes`] quota), counted as `du` counts them; blocking
    /// file system work, to be run off the async workers.
    pub fn disk_usage(&self, id: &str) -> Option<u64> {
        validate_id(id).ok()?;
        let upper = ContainerDirs::new(&self.config.state_dir, id).upper();
        Some(tree_bytes(&upper))
    }
}

/// The space a directory tree takes on disk, without following links.
fn tree_bytes(root: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt as _;
    let mut total = 0u64;
    let mut pending = vec![root.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let Ok(meta) = entry.metadata() else { continue };
            total = total.saturating_add(meta.blocks().saturating_mul(512));
            if meta.is_dir() {
                pending.push(entry.path());
            }
        }
    }
    total
}

/// Runs blocking file system work (removing trees, mounting, writing files) on tokio's
/// blocking pool, so it cannot stall the runtime's few worker threads.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, ContainerError> + Send + 'static,
) -> Result<T, ContainerError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| ContainerError::Command {
            command: "blocking file system work".into(),
            detail: e.to_string(),
        })?
}

fn kill_pid(pid: u32) {
    if let Ok(pid) = i32::try_from(pid) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
}

/// Reads the shim's one-line report; EOF without one means the shim died.
async fn read_ready(fd: OwnedFd) -> String {
    let mut file = std::fs::File::from(fd);
    tokio::task::spawn_blocking(move || {
        let mut line = String::new();
        let _ = file.read_to_string(&mut line);
        line
    })
    .await
    .unwrap_or_default()
}

/// Writes the container's /etc/hosts (in its overlay) so its hostname resolves.
fn write_hosts(
    rootfs: &Path,
    hostname: &str,
    ip: Option<std::net::Ipv4Addr>,
) -> Result<(), ContainerError> {
    // The rootfs may come from an image: `/etc` (or the files in it) could
    // be symlinks pointing at the host's files. Only a real directory is
    // written into, and the files are replaced, never followed.
    let etc = rootfs.join("etc");
    match std::fs::symlink_metadata(&etc) {
        Ok(meta) if meta.is_dir() => {}
        _ => return Ok(()),
    }
    let mut hosts =
        String::from("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n");
    match ip {
        Some(ip) => hosts.push_str(&format!("{ip}\t{hostname}\n")),
        None => hosts.push_str(&format!("127.0.1.1\t{hostname}\n")),
    }
    write_new_file(&etc.join("hosts"), hosts.as_bytes())?;
    write_new_file(&etc.join("hostname"), format!("{hostname}\n").as_bytes())
}

/// Replaces `path` with a new regular file: whatever was there (a symlink
/// included) is removed, and the file is created with `O_EXCL|O_NOFOLLOW`,
/// so the write can never land outside the directory.
fn write_new_file(path: &Path, contents: &[u8]) -> Result<(), ContainerError> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(ContainerError::io("remove", path)(e)),
    }
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .map_err(ContainerError::io("create", path))?;
    file.write_all(contents)
        .map_err(ContainerError::io("write", path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_validated() {
        for good in ["a", "app-1_2.3", "0f9c6b8e-1b2a-4c3d-9e8f-123456789abc"] {
            assert!(validate_id(good).is_ok(), "{good}");
        }
        for bad in ["", ".", "-x", "a/b", "../x", "a b", &"x".repeat(65)] {
            assert!(validate_id(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn prefixes_must_fit_interface_names() {
        let mut config = ManagerConfig::new("/tmp/x", "/bin/true");
        let subnet = Subnet::parse(&config.subnet).expect("subnet");
        assert!(validate_prefix(&config, &subnet).is_ok());
        config.prefix = "muchtoolongprefix".into();
        assert!(validate_prefix(&config, &subnet).is_err());
        config.prefix = "Bad-Prefix".into();
        assert!(validate_prefix(&config, &subnet).is_err());
        config.prefix = "ingot".into();
        config.bridge = "a-bridge-name-too-long".into();
        assert!(validate_prefix(&config, &subnet).is_err());
    }
}
