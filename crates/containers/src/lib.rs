//! Ingot's container layer (Cloud Foundry's Garden) over the `runc` OCI runtime.
//!
//! Every staging task and app instance runs in a container of its own:
//! an overlayfs rootfs over a [`Stack`] (see [`prepare_default_stack`]), its own
//! pid, mount, uts, ipc, network and cgroup namespaces, memory / pid / cpu limits,
//! an optional disk quota ([`Limits::disk_bytes`]: its writable layer on a loop-mounted
//! ext4 image of that size), and a veth into a bridge with NAT for egress, allowed only
//! where its [`EgressRule`]s say.
//!
//! The [`ContainerManager`] drives `runc` through a per-container *shim*
//! (`<self_exe> internal shim …`, see [`run_internal`]): a small single-threaded
//! process that is the container's subreaper, holds its stdio and records its exit
//! status and the cgroup's OOM-kill counter before the cgroup goes away.
//!
//! Invariant: nothing leaks. Every object a container creates (overlay mount and
//! directories, disk image and loop device, runc state, network namespace, veth, cgroup,
//! address) is named with the manager's prefix and removed on
//! [`ContainerManager::destroy`], and on the next [`ContainerManager::start`] after a crash.

mod cgroup;
mod command;
mod disk_quota;
mod error;
mod exec;
mod firewall;
pub mod image;
mod manager;
mod network;
mod oci;
mod rootfs;
mod runtime;
mod shim;
mod stack;

use std::net::Ipv4Addr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use tokio::process::{ChildStderr, ChildStdout};
use tokio::sync::oneshot;

pub use cgroup::CgroupVersion;
pub use error::ContainerError;
pub use exec::{
    bundle_dir, connect_in, connect_in_netns, exec, netns_of, ExecProcess, ExecSpec, Pty,
    WindowSize,
};
pub use firewall::{Destination, EgressRule, InvalidRule, PortRange, Protocol};
pub use manager::{ContainerManager, ManagerConfig};
pub use runtime::{OciRuntime, Runc};
pub use shim::run_internal;
pub use stack::prepare_default_stack;

/// A root filesystem directory plus the host directories bind-mounted into it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stack {
    /// The lowest (read-only) overlay layer of every container on this stack.
    pub rootfs: PathBuf,
    /// Host directories mounted into every container on this stack (e.g. host `/usr`, read-only).
    pub bind_mounts: Vec<BindMount>,
}

/// A host path mounted into the container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BindMount {
    /// Path on the host (file or directory).
    pub source: PathBuf,
    /// Absolute path inside the container.
    pub destination: PathBuf,
    /// Mount read-only (and `nosuid,nodev`).
    pub read_only: bool,
}

/// The process a container runs as its init (pid 1 of its pid namespace).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessSpec {
    /// Program and arguments; the program is looked up in the container's `PATH`.
    pub args: Vec<String>,
    /// Environment; `PATH` defaults to the usual system directories when not given.
    pub env: Vec<(String, String)>,
    /// Working directory inside the container.
    pub cwd: String,
    /// User id (2000 is `vcap` on the default stack).
    pub uid: u32,
    /// Group id.
    pub gid: u32,
}

/// Resource limits of a container's cgroup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Memory limit in bytes (swap is limited to the same, i.e. none); 0 means unlimited.
    pub memory_bytes: u64,
    /// Maximum number of processes/threads; 0 or negative means unlimited.
    pub pids: i64,
    /// Relative CPU weight (cgroup v1 `cpu.shares`, converted to `cpu.weight` on v2); 0 means default.
    pub cpu_shares: u64,
    /// Disk quota in bytes on everything the container writes to its root file system
    /// (its overlay's writable layer): writes beyond it fail with `ENOSPC` inside the
    /// container. The file system's own metadata takes 2-4% of it. At least
    /// 4 MiB. `None`: no quota, the writable layer lies on the state directory's file system.
    pub disk_bytes: Option<u64>,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            memory_bytes: 1024 * 1024 * 1024,
            pids: 1024,
            cpu_shares: 1024,
            disk_bytes: None,
        }
    }
}

/// Everything needed to create and start one container.
#[derive(Debug, Clone)]
pub struct ContainerSpec {
    /// Unique id: 1–64 characters out of `[A-Za-z0-9_.-]`, not starting with `.` or `-`.
    pub id: String,
    /// The container's hostname (its own uts namespace).
    pub hostname: String,
    /// The root filesystem the container starts from.
    pub stack: Stack,
    /// Extra read-only overlay layers above the stack, topmost first (e.g. an unpacked droplet).
    pub layers: Vec<PathBuf>,
    /// Host paths to mount into the container.
    pub bind_mounts: Vec<BindMount>,
    /// The process to run.
    pub process: ProcessSpec,
    /// cgroup limits.
    pub limits: Limits,
    /// Give the container an address on the bridge (with NAT egress); without it the
    /// container has only a loopback interface.
    pub network: bool,
    /// What the container may connect to (its security groups' rules); empty allows
    /// nothing: not the outside, not other containers, not the host. Connections into the
    /// container keep working. See [`ContainerManager::set_egress`] to change them later.
    pub egress: Vec<EgressRule>,
}

/// How a container's process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExitStatus {
    /// Exit code; `128 + N` when killed by signal `N`, like a shell. `-1` when the status
    /// could not be learnt (the shim died before recording it).
    pub code: i32,
    /// The signal that killed the process, if one did.
    pub signal: Option<i32>,
    /// The cgroup's OOM killer killed a process of this container.
    pub oom_killed: bool,
}

impl ExitStatus {
    /// The status reported when the shim ended without recording one.
    pub const UNKNOWN: ExitStatus = ExitStatus {
        code: -1,
        signal: None,
        oom_killed: false,
    };
}

/// A running container, as returned by [`ContainerManager::create`].
#[derive(Debug)]
pub struct Container {
    /// The id given in the spec.
    pub id: String,
    /// The container's address on the bridge, when it has a network.
    pub ip: Option<Ipv4Addr>,
    /// Host pid of the container's init process.
    pub host_pid: u32,
    /// The process's standard output; ends when the container is gone.
    pub stdout: ChildStdout,
    /// The process's standard error; ends when the container is gone.
    pub stderr: ChildStderr,
    /// Resolves once the process has exited and the container's runtime state is deleted.
    /// The sender is dropped without a value only if the manager's runtime goes away.
    pub exit: oneshot::Receiver<ExitStatus>,
}

/// Resource usage read from a container's cgroup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    /// Memory in use, without the inactive page cache (as `docker stats` reports it).
    pub memory_bytes: u64,
    /// CPU time consumed, in nanoseconds.
    pub cpu_time_ns: u64,
}
