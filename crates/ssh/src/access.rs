//! Running processes and opening connections inside an instance: the [`InstanceAccess`] trait
//! the proxy drives, and [`ContainerAccess`], its implementation over real containers.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use ingot_containers::{ContainerError, ContainerManager, ExecSpec, Pty, WindowSize};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

use crate::SshTarget;

/// A terminal the client asked for (`pty-req`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PtyRequest {
    /// `TERM`, e.g. `xterm-256color`.
    pub term: String,
    /// Columns.
    pub cols: u16,
    /// Rows.
    pub rows: u16,
}

/// A process to start in an instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecRequest {
    /// Program and arguments.
    pub argv: Vec<String>,
    /// The whole environment of the process.
    pub env: Vec<(String, String)>,
    /// Run on a terminal (stdout and stderr are then one stream).
    pub pty: Option<PtyRequest>,
}

/// Resizes or signals a running process.
pub trait ProcessControl: Send + Sync {
    /// Sets its terminal's size (no-op without a terminal).
    fn resize(&self, cols: u16, rows: u16) -> std::io::Result<()>;
    /// Sends signal number `signal` (e.g. `libc::SIGINT`).
    fn signal(&self, signal: i32) -> std::io::Result<()>;
}

/// A process started by [`InstanceAccess::exec`]. Dropping it hangs the process up.
pub struct RemoteProcess {
    /// Its standard input (the terminal with a pty).
    pub stdin: Pin<Box<dyn AsyncWrite + Send>>,
    /// Its standard output (the terminal with a pty).
    pub stdout: Pin<Box<dyn AsyncRead + Send>>,
    /// Its standard error (`None` with a pty).
    pub stderr: Option<Pin<Box<dyn AsyncRead + Send>>>,
    /// Resize and signal.
    pub control: Arc<dyn ProcessControl>,
    /// Resolves to its exit code (`128 + N` when killed by signal `N`).
    pub exit: Pin<Box<dyn Future<Output = std::io::Result<i32>> + Send>>,
}

impl std::fmt::Debug for RemoteProcess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteProcess")
            .field("stderr", &self.stderr.is_some())
            .finish_non_exhaustive()
    }
}

/// Why a process could not be started or a connection not opened.
#[derive(Debug, thiserror::Error)]
pub enum AccessError {
    /// The container layer failed (e.g. the container is gone).
    #[error("container {container_id}: {source}")]
    Container {
        /// The container.
        container_id: String,
        /// The underlying error.
        source: ContainerError,
    },
    /// The request cannot be served (e.g. an empty command).
    #[error("{0}")]
    Invalid(String),
}

/// Processes and connections inside an instance.
#[async_trait::async_trait]
pub trait InstanceAccess: Send + Sync {
    /// Starts `request` in `target`'s instance.
    async fn exec(
        &self,
        target: &SshTarget,
        request: ExecRequest,
    ) -> Result<RemoteProcess, AccessError>;

    /// Connects to `127.0.0.1:port` as seen from inside `target`'s instance.
    async fn connect(&self, target: &SshTarget, port: u16) -> Result<TcpStream, AccessError>;
}

/// [`InstanceAccess`] over the container manager: processes run with the app process's
/// confinement (`runc exec`), connections start in the container's network namespace.
#[derive(Debug, Clone)]
pub struct ContainerAccess {
    manager: Arc<ContainerManager>,
    cwd: String,
}

impl ContainerAccess {
    /// Sessions start in `/home/vcap/app`, like Cloud Foundry's.
    pub fn new(manager: Arc<ContainerManager>) -> ContainerAccess {
        ContainerAccess {
            manager,
            cwd: "/home/vcap/app".into(),
        }
    }

    /// Starts sessions in `cwd` instead (it must exist in every container).
    pub fn with_cwd(mut self, cwd: impl Into<String>) -> ContainerAccess {
        self.cwd = cwd.into();
        self
    }
}

/// Signals `runc exec` (which forwards them) while it runs; resizes the terminal.
struct ExecControl {
    pid: Option<u32>,
    exited: Arc<AtomicBool>,
    pty: Option<Pty>,
}

impl ProcessControl for ExecControl {
    fn resize(&self, cols: u16, rows: u16) -> std::io::Result<()> {
        match &self.pty {
            Some(pty) => pty.resize(WindowSize { cols, rows }),
            None => Ok(()),
        }
    }

    fn signal(&self, signal: i32) -> std::io::Result<()> {
        let (Some(pid), false) = (self.pid, self.exited.load(Ordering::SeqCst)) else {
            return Ok(());
        };
        let signal = nix::sys::signal::Signal::try_from(signal).map_err(std::io::Error::from)?;
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), signal)
            .map_err(std::io::Error::from)
    }
}

#[async_trait::async_trait]
impl InstanceAccess for ContainerAccess {
    async fn exec(
        &self,
        target: &SshTarget,
        request: ExecRequest,
    ) -> Result<RemoteProcess, AccessError> {
        if request.argv.is_empty() {
            return Err(AccessError::Invalid("no command to run".into()));
        }
        let spec = ExecSpec {
            args: request.argv,
            env: request.env,
            cwd: self.cwd.clone(),
            tty: request.pty.as_ref().map(|p| WindowSize {
                cols: p.cols,
                rows: p.rows,
            }),
        };
        let mut process = ingot_containers::exec(&self.manager, &target.container_id, spec)
            .await
            .map_err(|source| AccessError::Container {
                container_id: target.container_id.clone(),
                source,
            })?;
        let exited = Arc::new(AtomicBool::new(false));
        let control = Arc::new(ExecControl {
            pid: process.runc_pid(),
            exited: exited.clone(),
            pty: process.pty.clone(),
        });
        let (stdin, stdout, stderr): (
            Pin<Box<dyn AsyncWrite + Send>>,
            Pin<Box<dyn AsyncRead + Send>>,
            Option<Pin<Box<dyn AsyncRead + Send>>>,
        ) = match (
            process.pty.take(),
            process.stdin.take(),
            process.stdout.take(),
            process.stderr.take(),
        ) {
            (Some(pty), _, _, _) => (Box::pin(pty.clone()), Box::pin(pty), None),
            (None, Some(stdin), Some(stdout), stderr) => (
                Box::pin(stdin),
                Box::pin(stdout),
                stderr.map(|s| Box::pin(s) as Pin<Box<dyn AsyncRead + Send>>),
            ),
            _ => {
                return Err(AccessError::Invalid(
                    "runc exec started without stdio".into(),
                ))
            }
        };
        let exit = Box::pin(async move {
            let status = process.wait().await;
            exited.store(true, Ordering::SeqCst);
            status.map(|s| s.code).map_err(std::io::Error::other)
        });
        Ok(RemoteProcess {
            stdin,
            stdout,
            stderr,
            control,
            exit,
        })
    }

    async fn connect(&self, target: &SshTarget, port: u16) -> Result<TcpStream, AccessError> {
        ingot_containers::connect_in_netns(&self.manager, &target.container_id, port)
            .await
            .map_err(|source| AccessError::Container {
                container_id: target.container_id.clone(),
                source,
            })
    }
}
