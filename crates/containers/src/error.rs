//! The error type of the container layer.

use std::path::PathBuf;

/// What went wrong, with the object (id, path, command) it went wrong for.
#[derive(Debug, thiserror::Error)]
pub enum ContainerError {
    /// A program the container layer shells out to is not installed.
    #[error("required program `{name}` not found at {path}; install it (Debian: runc → runc, ip → iproute2, nft → nftables)")]
    MissingProgram {
        /// `runc`, `ip` or `nft`.
        name: String,
        /// Where it was looked for.
        path: PathBuf,
    },
    /// An external command could not be run or exited unsuccessfully.
    #[error("`{command}` failed: {detail}")]
    Command {
        /// The command line.
        command: String,
        /// Exit status and standard error.
        detail: String,
    },
    /// A file system operation failed.
    #[error("{action} {path}: {source}")]
    Io {
        /// What was being done (e.g. "create directory").
        action: &'static str,
        /// The path it was done to.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A mount or unmount failed.
    #[error("{action} {target}: {source}")]
    Mount {
        /// "mount overlay at" or "unmount".
        action: &'static str,
        /// The mount point.
        target: PathBuf,
        /// The underlying error.
        source: nix::Error,
    },
    /// The container id cannot be used.
    #[error("invalid container id {id:?}: {reason}")]
    InvalidId {
        /// The id given.
        id: String,
        /// Why it was refused.
        reason: &'static str,
    },
    /// A container with this id exists already.
    #[error("container {id} already exists")]
    AlreadyExists {
        /// The id given.
        id: String,
    },
    /// Every address of the container subnet is in use.
    #[error("no free container address left in {subnet}")]
    PoolExhausted {
        /// The configured subnet.
        subnet: String,
    },
    /// The manager's configuration is unusable.
    #[error("invalid container manager configuration: {0}")]
    InvalidConfig(String),
    /// The state directory lies inside a host directory bind-mounted into every container,
    /// so the platform's state would be visible to them.
    #[error("state directory {state_dir} is inside {mounted}, which every container sees (the default stack bind-mounts it); choose a directory outside /usr and the system directories, e.g. /var/lib/ingot")]
    StateDirExposed {
        /// The configured state directory.
        state_dir: PathBuf,
        /// The bind-mounted host directory that contains it.
        mounted: PathBuf,
    },
    /// The container was set up but its process did not start.
    #[error("container {id} failed to start: {reason}")]
    StartFailed {
        /// The container id.
        id: String,
        /// What the shim or runc reported.
        reason: String,
    },
}

impl ContainerError {
    /// Wraps an [`std::io::Error`] with the action and path it happened on.
    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> ContainerError {
        let path = path.into();
        move |source| ContainerError::Io {
            action,
            path,
            source,
        }
    }
}
