//! The per-container shim (`<ingot> internal shim …`): a single-threaded process, no async
//! runtime, one per container.
//!
//! It makes itself a child subreaper (PR_SET_CHILD_SUBREAPER, prctl(2)), so the container's
//! init — orphaned when `runc create` exits — becomes its child; its own stdout/stderr become
//! the container's. It reports the container's host pid on the ready fd, waits for the init
//! to exit (reaping anything else that lands on it), reads the cgroup's OOM-kill counter while
//! the cgroup still exists, writes the [`ExitStatus`] to the exit file, and deletes the
//! container from runc. `runc run` in the foreground would delete the cgroup before returning,
//! losing the OOM kill; and only a parent learns a process's exit status.

use std::fs::File;
use std::io::Write;
use std::os::fd::{FromRawFd, RawFd};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::Pid;

use crate::cgroup::{self, CgroupVersion};
use crate::runtime::{OciRuntime, Runc};
use crate::ExitStatus;

/// Arguments of `internal shim`.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct ShimArgs {
    pub runc: PathBuf,
    pub runc_root: PathBuf,
    pub bundle: PathBuf,
    pub id: String,
    pub pid_file: PathBuf,
    pub exit_file: PathBuf,
    pub cgroup: String,
    pub ready_fd: Option<RawFd>,
}

impl ShimArgs {
    /// The command line after `internal`.
    pub(crate) fn to_args(&self) -> Vec<String> {
        let mut args = vec![
            "shim".to_string(),
            "--runc".into(),
            self.runc.display().to_string(),
            "--runc-root".into(),
            self.runc_root.display().to_string(),
            "--bundle".into(),
            self.bundle.display().to_string(),
            "--id".into(),
            self.id.clone(),
            "--pid-file".into(),
            self.pid_file.display().to_string(),
            "--exit-file".into(),
            self.exit_file.display().to_string(),
            "--cgroup".into(),
            self.cgroup.clone(),
        ];
        if let Some(fd) = self.ready_fd {
            args.push("--ready-fd".into());
            args.push(fd.to_string());
        }
        args
    }

    /// Parses the arguments after `shim`.
    pub(crate) fn parse(args: &[String]) -> Result<ShimArgs, String> {
        let mut parsed = ShimArgs::default();
        let mut iter = args.iter();
        while let Some(flag) = iter.next() {
            let value = iter
                .next()
                .ok_or_else(|| format!("{flag} needs a value"))?
                .clone();
            match flag.as_str() {
                "--runc" => parsed.runc = value.into(),
                "--runc-root" => parsed.runc_root = value.into(),
                "--bundle" => parsed.bundle = value.into(),
                "--id" => parsed.id = value,
                "--pid-file" => parsed.pid_file = value.into(),
                "--exit-file" => parsed.exit_file = value.into(),
                "--cgroup" => parsed.cgroup = value,
                "--ready-fd" => {
                    parsed.ready_fd = Some(value.parse().map_err(|_| format!("bad fd {value}"))?)
                }
                other => return Err(format!("unknown flag {other}")),
            }
        }
        if parsed.id.is_empty() || parsed.bundle.as_os_str().is_empty() {
            return Err("--id and --bundle are required".into());
        }
        if parsed.runc.as_os_str().is_empty() {
            parsed.runc = PathBuf::from("runc");
        }
        Ok(parsed)
    }
}

/// Entry for `ingot internal …` (`args` is argv after "internal"); returns the process exit
/// code. Needs no async runtime.
pub fn run_internal(args: &[String]) -> i32 {
    match args.first().map(String::as_str) {
        Some("shim") => match ShimArgs::parse(&args[1..]) {
            Ok(shim_args) => shim(&shim_args),
            Err(e) => {
                eprintln!("ingot internal shim: {e}");
                2
            }
        },
        other => {
            eprintln!("ingot internal: unknown command {other:?} (expected `shim`)");
            2
        }
    }
}

/// Where the shim reports "ok <pid>" or "error <reason>" to the manager, once.
struct Ready(Option<File>);

impl Ready {
    fn new(fd: Option<RawFd>) -> Ready {
        Ready(fd.map(|fd| {
            // Neither runc nor the container may inherit it, or the manager would not see EOF.
            let _ = nix::fcntl::fcntl(
                fd,
                nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
            );
            // SAFETY: the manager passes this fd to us for our sole use; we own it from here.
            unsafe { File::from_raw_fd(fd) }
        }))
    }

    fn say(&mut self, line: &str) {
        if let Some(mut file) = self.0.take() {
            let _ = writeln!(file, "{}", line.replace('\n', " "));
        }
    }
}

fn shim(args: &ShimArgs) -> i32 {
    let mut ready = Ready::new(args.ready_fd);
    if let Err(e) = nix::sys::prctl::set_child_subreaper(true) {
        ready.say(&format!("error cannot become subreaper: {e}"));
        return 1;
    }
    let runtime = Runc::new(&args.runc, &args.runc_root);
    // The container inherits our stdout/stderr: runc's "pass-through" stdio.
    if let Err(e) = runtime.create(&args.id, &args.bundle, &args.pid_file) {
        ready.say(&format!("error {e}"));
        let _ = runtime.delete(&args.id, true);
        return 1;
    }
    let pid = match std::fs::read_to_string(&args.pid_file)
        .ok()
        .and_then(|p| p.trim().parse::<i32>().ok())
    {
        Some(pid) => pid,
        None => {
            ready.say("error runc create wrote no pid file");
            let _ = runtime.delete(&args.id, true);
            return 1;
        }
    };
    if let Err(e) = runtime.start(&args.id) {
        ready.say(&format!("error {e}"));
        let _ = runtime.delete(&args.id, true);
        reap_until(pid);
        return 1;
    }
    ready.say(&format!("ok {pid}"));

    let mut status = reap_until(pid);
    let version = CgroupVersion::detect();
    status.oom_killed = cgroup::oom_kills(version, &args.cgroup).is_some_and(|n| n > 0);
    write_exit_file(&args.exit_file, &status);
    // Without force: should an id be reused by a newer run, a running container stays.
    let _ = runtime.delete(&args.id, false);
    0
}

/// Waits for `pid`, reaping every other child that exits meanwhile, and returns its status.
fn reap_until(pid: i32) -> ExitStatus {
    loop {
        match waitpid(None, None) {
            Ok(WaitStatus::Exited(p, code)) if p.as_raw() == pid => {
                return ExitStatus {
                    code,
                    signal: None,
                    oom_killed: false,
                }
            }
            Ok(WaitStatus::Signaled(p, signal, _)) if p.as_raw() == pid => {
                return ExitStatus {
                    code: 128 + signal as i32,
                    signal: Some(signal as i32),
                    oom_killed: false,
                }
            }
            Ok(_) | Err(Errno::EINTR) => {}
            // The init is not our child (we could not become its subreaper): poll for it.
            Err(_) => {
                while nix::sys::signal::kill(Pid::from_raw(pid), None).is_ok() {
                    std::thread::sleep(std::time::Duration::from_millis(50));
                }
                return ExitStatus::UNKNOWN;
            }
        }
    }
}

/// Writes the status atomically: the manager reads the file once the shim has exited.
fn write_exit_file(path: &Path, status: &ExitStatus) {
    let tmp = path.with_extension("tmp");
    let json = serde_json::to_vec(status).unwrap_or_default();
    if std::fs::write(&tmp, json).is_ok() {
        let _ = std::fs::rename(&tmp, path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shim_args_round_trip() {
        let args = ShimArgs {
            runc: "/usr/sbin/runc".into(),
            runc_root: "/s/runc".into(),
            bundle: "/s/c/bundle".into(),
            id: "c1".into(),
            pid_file: "/s/c/pid".into(),
            exit_file: "/s/c/exit.json".into(),
            cgroup: "/ingot/c1".into(),
            ready_fd: Some(3),
        };
        let line = args.to_args();
        assert_eq!(line[0], "shim");
        assert_eq!(ShimArgs::parse(&line[1..]), Ok(args));
    }

    #[test]
    fn unknown_commands_fail() {
        assert_eq!(run_internal(&["nope".to_string()]), 2);
        assert_eq!(
            run_internal(&["shim".to_string(), "--bogus".to_string(), "x".to_string()]),
            2
        );
    }
}
