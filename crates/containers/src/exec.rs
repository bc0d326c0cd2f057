//! Running more processes inside an existing container (`cf ssh`), and reaching its loopback.
//!
//! A process started here gets the same confinement as the container's own process: its user,
//! capability sets, `noNewPrivileges`, AppArmor profile and rlimits are copied from the
//! container's `config.json`, and runc applies the container's namespaces, cgroup and seccomp
//! filter to every process it execs. Only the program, environment, working directory and
//! terminal are the caller's.
//!
//! `runc exec` runs in the foreground so that its exit status is the process's. With a terminal,
//! runc refuses `--console-socket` unless it detaches (and a detached process's status would be
//! lost), so instead runc's own stdio is the slave of a host pty we own: runc copies between it and
//! the container's pty, and on `SIGWINCH` (which the kernel sends when we resize our master,
//! since the slave is runc's controlling terminal) copies our size to the container's terminal.

use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::Stdio;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::process::{Child, ChildStderr, ChildStdin, ChildStdout, Command};

use crate::network::netns_path;
use crate::rootfs::ContainerDirs;
use crate::{ContainerError, ContainerManager, ExitStatus};

/// The directories every Linux `PATH` has, used when the caller's environment has none.
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Fields of the container's `process` that an exec'd process inherits (its confinement).
const INHERITED: &[&str] = &[
    "user",
    "capabilities",
    "noNewPrivileges",
    "apparmorProfile",
    "rlimits",
    "oomScoreAdj",
    "selinuxLabel",
];

/// A terminal's size in characters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowSize {
    /// Columns.
    pub cols: u16,
    /// Rows.
    pub rows: u16,
}

/// What to run in a container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecSpec {
    /// Program and arguments; the program is looked up in the container's `PATH`.
    pub args: Vec<String>,
    /// The whole environment; `PATH` defaults to the system directories when not given.
    pub env: Vec<(String, String)>,
    /// Working directory inside the container (Cloud Foundry's is `/home/vcap/app`).
    pub cwd: String,
    /// Run on a terminal of this initial size (stdout and stderr are then one stream), or with
    /// three pipes.
    pub tty: Option<WindowSize>,
}

/// A process running in a container, started by [`exec`].
#[derive(Debug)]
pub struct ExecProcess {
    /// Its standard input (pipe mode; `None` with a terminal or once taken).
    pub stdin: Option<ChildStdin>,
    /// Its standard output (pipe mode).
    pub stdout: Option<ChildStdout>,
    /// Its standard error (pipe mode).
    pub stderr: Option<ChildStderr>,
    /// The terminal's master side (terminal mode): read the output, write the input.
    pub pty: Option<Pty>,
    /// `None` only once dropped.
    child: Option<Child>,
    files: ExecFiles,
}

/// The files `runc exec` reads (the process) and writes (the process's host pid).
#[derive(Debug, Clone)]
struct ExecFiles {
    process: PathBuf,
    pid: PathBuf,
}

impl ExecFiles {
    fn remove(&self) {
        let _ = std::fs::remove_file(&self.process);
        let _ = std::fs::remove_file(&self.pid);
    }

    /// The exec'd process's host pid, once runc has started it.
    fn process_pid(&self) -> Option<i32> {
        std::fs::read_to_string(&self.pid).ok()?.trim().parse().ok()
    }
}

/// How long a hung-up process may take to end before it is killed.
const HANGUP_GRACE: Duration = Duration::from_secs(5);

impl ExecProcess {
    /// Host pid of the `runc exec` that runs the process (signals sent to it are forwarded).
    pub fn runc_pid(&self) -> Option<u32> {
        self.child.as_ref().and_then(Child::id)
    }

    /// Sends `signal` to the process (runc forwards the signals it receives to it).
    pub fn signal(&self, signal: nix::sys::signal::Signal) {
        if let Some(pid) = self.runc_pid() {
            // The pid is our unreaped child, so it cannot have been reused.
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), signal);
        }
    }

    /// Waits for the process to end and returns its status (runc exits with the process's code,
    /// `128 + N` when signal `N` killed it).
    pub async fn wait(&mut self) -> Result<ExitStatus, ContainerError> {
        let waited = match self.child.as_mut() {
            Some(child) => child.wait().await,
            None => Err(std::io::Error::other("already dropped")),
        };
        let status = waited.map_err(ContainerError::io(
            "wait for runc exec of",
            &self.files.process,
        ))?;
        self.files.remove();
        use std::os::unix::process::ExitStatusExt;
        Ok(match (status.code(), status.signal()) {
            (Some(code), _) => ExitStatus {
                code,
                signal: None,
                oom_killed: false,
            },
            (None, Some(signal)) => ExitStatus {
                code: 128 + signal,
                signal: Some(signal),
                oom_killed: false,
            },
            (None, None) => ExitStatus::UNKNOWN,
        })
    }
}

impl Drop for ExecProcess {
    fn drop(&mut self) {
        let files = self.files.clone();
        let Some(mut child) = self.child.take() else {
            files.remove();
            return;
        };
        let Some(runc_pid) = child.id() else {
            // Already waited for.
            files.remove();
            return;
        };
        // A session that goes away hangs its process up: runc forwards SIGHUP to it. A SIGKILL
        // to runc would end runc alone and leave the process running in the container.
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(runc_pid as i32),
            nix::sys::signal::Signal::SIGHUP,
        );
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            files.remove();
            return;
        };
        runtime.spawn(async move {
            if tokio::time::timeout(HANGUP_GRACE, child.wait())
                .await
                .is_err()
            {
                // It ignores SIGHUP: kill it directly. Its pid cannot have been reused, since
                // runc, still running, has not reaped it.
                if let Some(pid) = files.process_pid() {
                    let _ = nix::sys::signal::kill(
                        nix::unistd::Pid::from_raw(pid),
                        nix::sys::signal::Signal::SIGKILL,
                    );
                }
                let _ = child.wait().await;
            }
            files.remove();
        });
    }
}

/// The container's bundle directory (holding its `config.json`).
pub fn bundle_dir(manager: &ContainerManager, id: &str) -> PathBuf {
    ContainerDirs::new(&manager.config().state_dir, id).bundle()
}

/// The container's network namespace: its named netns when it has a network, else the
/// namespace of its init process.
pub fn netns_of(manager: &ContainerManager, id: &str) -> Result<PathBuf, ContainerError> {
    let named = netns_path(&manager.netns_name(id));
    if named.exists() {
        return Ok(named);
    }
    let pid_file = ContainerDirs::new(&manager.config().state_dir, id).pid_file();
    let pid = std::fs::read_to_string(&pid_file)
        .map_err(ContainerError::io("read init pid of container", &pid_file))?;
    let pid: u32 = pid.trim().parse().map_err(|_| ContainerError::Io {
        action: "parse init pid of container",
        path: pid_file.clone(),
        source: std::io::Error::new(std::io::ErrorKind::InvalidData, pid.trim().to_string()),
    })?;
    Ok(PathBuf::from(format!("/proc/{pid}/ns/net")))
}

/// The `process` object for `runc exec --process`: the container's confinement with the
/// caller's program, environment, directory and terminal.
pub(crate) fn process_json(
    container_process: &serde_json::Value,
    spec: &ExecSpec,
) -> serde_json::Value {
    let mut process = serde_json::Map::new();
    for key in INHERITED {
        if let Some(value) = container_process.get(*key) {
            process.insert((*key).to_string(), value.clone());
        }
    }
    let mut env: Vec<String> = Vec::with_capacity(spec.env.len() + 1);
    if !spec.env.iter().any(|(k, _)| k == "PATH") {
        env.push(format!("PATH={DEFAULT_PATH}"));
    }
    if spec.tty.is_some() && !spec.env.iter().any(|(k, _)| k == "TERM") {
        env.push("TERM=xterm".to_string());
    }
    env.extend(spec.env.iter().map(|(k, v)| format!("{k}={v}")));
    process.insert("args".into(), serde_json::json!(spec.args));
    process.insert("env".into(), serde_json::json!(env));
    process.insert("cwd".into(), serde_json::json!(spec.cwd));
    process.insert("terminal".into(), serde_json::json!(spec.tty.is_some()));
    if let Some(size) = spec.tty {
        process.insert(
            "consoleSize".into(),
            serde_json::json!({ "height": size.rows, "width": size.cols }),
        );
    }
    serde_json::Value::Object(process)
}

/// Starts `spec` inside running container `id` with the container's own confinement.
pub async fn exec(
    manager: &ContainerManager,
    id: &str,
    spec: ExecSpec,
) -> Result<ExecProcess, ContainerError> {
    if spec.args.is_empty() {
        return Err(ContainerError::StartFailed {
            id: id.to_string(),
            reason: "exec needs a program to run".into(),
        });
    }
    // The id becomes a path below the state directory.
    if id.is_empty() || id.starts_with('.') || id.contains('/') {
        return Err(ContainerError::InvalidId {
            id: id.to_string(),
            reason: "not a container id",
        });
    }
    let runc_root = manager.config().state_dir.join("runc");
    if !runc_root.join(id).join("state.json").is_file() {
        return Err(ContainerError::StartFailed {
            id: id.to_string(),
            reason: "the container is not running".into(),
        });
    }
    let dirs = ContainerDirs::new(&manager.config().state_dir, id);
    let config_path = dirs.bundle().join("config.json");
    let config = std::fs::read(&config_path)
        .map_err(ContainerError::io("read container config", &config_path))?;
    let config: serde_json::Value =
        serde_json::from_slice(&config).map_err(|e| ContainerError::Io {
            action: "parse container config",
            path: config_path.clone(),
            source: std::io::Error::new(std::io::ErrorKind::InvalidData, e),
        })?;
    let process = process_json(&config["process"], &spec);
    // Beside the bundle, so that destroying the container removes a file left by a crash.
    let name = format!("exec-{}", uuid::Uuid::new_v4().simple());
    let files = ExecFiles {
        process: dirs.root.join(format!("{name}.json")),
        pid: dirs.root.join(format!("{name}.pid")),
    };
    let process_file = files.process.clone();
    std::fs::write(&process_file, process.to_string())
        .map_err(ContainerError::io("write exec process", &process_file))?;

    let mut command = Command::new(&manager.config().runc);
    command
        .arg("--root")
        .arg(&runc_root)
        .arg("exec")
        .arg("--process")
        .arg(&process_file)
        .arg("--pid-file")
        .arg(&files.pid)
        .arg(id)
        .kill_on_drop(false);
    let started = match spec.tty {
        None => start_piped(command, &files),
        Some(size) => start_on_pty(command, size, &files),
    };
    if started.is_err() {
        files.remove();
    }
    started
}

fn start_piped(mut command: Command, files: &ExecFiles) -> Result<ExecProcess, ContainerError> {
    let process_file = &files.process;
    command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command
        .spawn()
        .map_err(ContainerError::io("run runc exec with", process_file))?;
    Ok(ExecProcess {
        stdin: child.stdin.take(),
        stdout: child.stdout.take(),
        stderr: child.stderr.take(),
        pty: None,
        child: Some(child),
        files: files.clone(),
    })
}

fn start_on_pty(
    mut command: Command,
    size: WindowSize,
    files: &ExecFiles,
) -> Result<ExecProcess, ContainerError> {
    let process_file = &files.process;
    let (master, slave) =
        open_pty(size).map_err(ContainerError::io("open a pty for", process_file))?;
    let io_err = ContainerError::io("prepare the pty for", process_file);
    let (stdin, stdout, stderr) = match (slave.try_clone(), slave.try_clone()) {
        (Ok(a), Ok(b)) => (a, b, slave),
        (Err(e), _) | (_, Err(e)) => return Err(io_err(e)),
    };
    command
        .stdin(Stdio::from(stdin))
        .stdout(Stdio::from(stdout))
        .stderr(Stdio::from(stderr));
    // SAFETY: only async-signal-safe calls (setsid, ioctl) between fork and exec.
    unsafe {
        command.pre_exec(|| {
            // A session of its own with the slave as controlling terminal: runc then gets
            // SIGWINCH when the master is resized.
            if libc::setsid() < 0 {
                return Err(std::io::Error::last_os_error());
            }
            if libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = command
        .spawn()
        .map_err(ContainerError::io("run runc exec with", process_file))?;
    // The command holds our copies of the slave; only runc may keep it open, or reading the
    // master would never end.
    drop(command);
    let master = Pty::new(master).map_err(ContainerError::io("watch the pty of", process_file))?;
    Ok(ExecProcess {
        stdin: None,
        stdout: None,
        stderr: None,
        pty: Some(master),
        child: Some(child),
        files: files.clone(),
    })
}

/// A new pty pair of `size`, both ends close-on-exec from the start: a process spawned by
/// another thread meanwhile must not inherit them, or the master would never see EOF.
fn open_pty(size: WindowSize) -> std::io::Result<(OwnedFd, std::fs::File)> {
    use nix::fcntl::OFlag;
    use std::os::fd::{FromRawFd, IntoRawFd};
    use std::os::unix::fs::OpenOptionsExt;
    let master = nix::pty::posix_openpt(OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC)?;
    nix::pty::grantpt(&master)?;
    nix::pty::unlockpt(&master)?;
    let name = nix::pty::ptsname_r(&master)?;
    // SAFETY: `into_raw_fd` hands over sole ownership of the open descriptor.
    let master = unsafe { OwnedFd::from_raw_fd(master.into_raw_fd()) };
    let slave = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NOCTTY | libc::O_CLOEXEC)
        .open(name)?;
    set_size(&master, size)?;
    Ok((master, slave))
}

/// TIOCSWINSZ on a terminal.
fn set_size(fd: &OwnedFd, size: WindowSize) -> std::io::Result<()> {
    let winsize = size.to_winsize();
    // SAFETY: TIOCSWINSZ reads one `winsize` from the pointer, which outlives the call.
    let rc = unsafe {
        libc::ioctl(
            fd.as_raw_fd(),
            libc::TIOCSWINSZ,
            &winsize as *const nix::pty::Winsize,
        )
    };
    if rc < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

impl WindowSize {
    fn to_winsize(self) -> nix::pty::Winsize {
        nix::pty::Winsize {
            ws_row: self.rows,
            ws_col: self.cols,
            ws_xpixel: 0,
            ws_ypixel: 0,
        }
    }
}

/// The master side of an exec'd process's terminal: read its output, write its input.
/// Reading ends (0 bytes) once the process and everything holding the terminal has exited.
/// Clones share the terminal, so that one task can read while another writes or resizes.
#[derive(Debug, Clone)]
pub struct Pty {
    fd: Arc<AsyncFd<OwnedFd>>,
}

impl Pty {
    fn new(fd: OwnedFd) -> std::io::Result<Pty> {
        let flags = nix::fcntl::fcntl(fd.as_raw_fd(), nix::fcntl::FcntlArg::F_GETFL)?;
        let flags = nix::fcntl::OFlag::from_bits_truncate(flags) | nix::fcntl::OFlag::O_NONBLOCK;
        nix::fcntl::fcntl(fd.as_raw_fd(), nix::fcntl::FcntlArg::F_SETFL(flags))?;
        // SAFETY: an `OwnedFd` keeps its descriptor open and unchanged until the `AsyncFd`
        // that owns it drops it.
        let fd = unsafe { AsyncFd::register(fd) }.map_err(std::io::Error::from)?;
        Ok(Pty { fd: Arc::new(fd) })
    }

    /// Sets the terminal's size; the process gets `SIGWINCH`.
    pub fn resize(&self, size: WindowSize) -> std::io::Result<()> {
        set_size(self.fd.get_ref(), size)
    }

    /// The terminal's current size.
    pub fn size(&self) -> std::io::Result<WindowSize> {
        let mut winsize = WindowSize { cols: 0, rows: 0 }.to_winsize();
        // SAFETY: TIOCGWINSZ writes one `winsize` to the pointer, which outlives the call.
        let rc = unsafe {
            libc::ioctl(
                self.fd.get_ref().as_raw_fd(),
                libc::TIOCGWINSZ,
                &mut winsize as *mut nix::pty::Winsize,
            )
        };
        if rc < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(WindowSize {
            cols: winsize.ws_col,
            rows: winsize.ws_row,
        })
    }
}

/// One `read(2)` into `buf` from `fd`.
fn raw_read(fd: &OwnedFd, buf: &mut [u8]) -> std::io::Result<usize> {
    // SAFETY: the pointer and length describe `buf`, writable for the whole call.
    let n = unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
    if n < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(n as usize)
}

/// One `write(2)` of `buf` to `fd`.
fn raw_write(fd: &OwnedFd, buf: &[u8]) -> std::io::Result<usize> {
    // SAFETY: the pointer and length describe `buf`, readable for the whole call.
    let n = unsafe { libc::write(fd.as_raw_fd(), buf.as_ptr().cast(), buf.len()) };
    if n < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(n as usize)
}

impl AsyncRead for Pty {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        loop {
            let mut guard = ready!(self.fd.poll_read_ready(cx))?;
            let unfilled = buf.initialize_unfilled();
            match guard.try_io(|fd| raw_read(fd.get_ref(), unfilled)) {
                Ok(Ok(n)) => {
                    buf.advance(n);
                    return Poll::Ready(Ok(()));
                }
                // The slave's last holder closed it: that is the end of the output.
                Ok(Err(e)) if e.raw_os_error() == Some(libc::EIO) => {
                    return Poll::Ready(Ok(()));
                }
                Ok(Err(e)) => return Poll::Ready(Err(e)),
                Err(_would_block) => continue,
            }
        }
    }
}

impl AsyncWrite for Pty {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        loop {
            let mut guard = ready!(self.fd.poll_write_ready(cx))?;
            match guard.try_io(|fd| raw_write(fd.get_ref(), data)) {
                Ok(result) => return Poll::Ready(result),
                Err(_would_block) => continue,
            }
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// Opens a TCP connection to `127.0.0.1:port` inside container `id`'s network namespace, so
/// that ports the app listens on only on its own loopback can be forwarded to.
pub async fn connect_in_netns(
    manager: &ContainerManager,
    id: &str,
    port: u16,
) -> Result<tokio::net::TcpStream, ContainerError> {
    let netns = netns_of(manager, id)?;
    connect_in(&netns, port).await
}

/// Opens a TCP connection to `127.0.0.1:port` inside the network namespace at `netns`.
pub async fn connect_in(netns: &Path, port: u16) -> Result<tokio::net::TcpStream, ContainerError> {
    let path = netns.to_path_buf();
    let (tx, rx) = tokio::sync::oneshot::channel();
    // A thread of its own: setns changes the calling thread's namespace for good, so it must
    // not be a runtime thread that later runs other tasks. It ends right after connecting.
    let spawned = std::thread::Builder::new()
        .name("netns-connect".into())
        .spawn(move || {
            let _ = tx.send(connect_blocking(&path, port));
        });
    if let Err(e) = spawned {
        return Err(ContainerError::io("start a thread to connect in", netns)(e));
    }
    let stream = rx
        .await
        .map_err(|_| {
            ContainerError::io("connect in", netns)(std::io::Error::other(
                "the connecting thread ended without an answer",
            ))
        })?
        .map_err(|e| ContainerError::Io {
            action: "connect to 127.0.0.1 in",
            path: netns.join(format!(":{port}")),
            source: e,
        })?;
    tokio::net::TcpStream::from_std(stream)
        .map_err(ContainerError::io("register socket from", netns))
}

fn connect_blocking(netns: &Path, port: u16) -> std::io::Result<std::net::TcpStream> {
    let file = std::fs::File::open(netns)?;
    nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET)?;
    let stream = std::net::TcpStream::connect_timeout(
        &std::net::SocketAddr::from(([127, 0, 0, 1], port)),
        std::time::Duration::from_secs(10),
    )?;
    stream.set_nonblocking(true)?;
    Ok(stream)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn process_keeps_the_confinement_and_takes_the_callers_program() {
        let container = json!({
            "terminal": false,
            "user": { "uid": 2000, "gid": 2000 },
            "args": ["launcher"],
            "env": ["SECRET=container"],
            "cwd": "/home/vcap",
            "capabilities": { "bounding": ["CAP_CHOWN"], "inheritable": [] },
            "rlimits": [{ "type": "RLIMIT_NOFILE", "hard": 16384, "soft": 16384 }],
            "noNewPrivileges": true,
        });
        let spec = ExecSpec {
            args: vec!["/bin/bash".into(), "-l".into()],
            env: vec![("CF_INSTANCE_INDEX".into(), "1".into())],
            cwd: "/home/vcap/app".into(),
            tty: Some(WindowSize { cols: 80, rows: 24 }),
        };
        let p = process_json(&container, &spec);
        assert_eq!(p["user"]["uid"], 2000);
        assert_eq!(p["noNewPrivileges"], true);
        assert_eq!(p["capabilities"]["bounding"][0], "CAP_CHOWN");
        assert_eq!(p["rlimits"][0]["type"], "RLIMIT_NOFILE");
        assert_eq!(p["args"], json!(["/bin/bash", "-l"]));
        assert_eq!(p["cwd"], "/home/vcap/app");
        assert_eq!(p["terminal"], true);
        let env = p["env"].to_string();
        assert!(env.contains("CF_INSTANCE_INDEX=1"), "{env}");
        assert!(env.contains("PATH="), "{env}");
        assert!(env.contains("TERM=xterm"), "{env}");
        assert!(!env.contains("SECRET"), "{env}");
    }
}
