//! The OCI runtime behind a small trait, so that another runtime (youki's libcontainer) can
//! stand in for `runc` later. The calls block: the shim has no async runtime, and the
//! manager calls them on tokio's blocking pool.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::command::run_blocking;
use crate::ContainerError;

/// The OCI runtime operations Ingot uses (runtime-spec "Operations").
pub trait OciRuntime: Send + Sync + std::fmt::Debug {
    /// Creates container `id` from `bundle` (its `config.json`), writing the init's host pid
    /// to `pid_file`. The container's stdio is the caller's stdout/stderr (stdin is null).
    fn create(&self, id: &str, bundle: &Path, pid_file: &Path) -> Result<(), ContainerError>;
    /// Runs the process of a created container.
    fn start(&self, id: &str) -> Result<(), ContainerError>;
    /// Sends `signal` (e.g. `TERM`, `KILL`) to the init, or with `all` to every process.
    fn kill(&self, id: &str, signal: &str, all: bool) -> Result<(), ContainerError>;
    /// Deletes the runtime's state of the container; `force` kills it first if it runs.
    fn delete(&self, id: &str, force: bool) -> Result<(), ContainerError>;
    /// Whether the runtime knows the container.
    fn exists(&self, id: &str) -> bool;
    /// Ids of every container the runtime knows.
    fn list(&self) -> Result<Vec<String>, ContainerError>;
}

/// `runc`, driven through its command line (a stable contract), with state under `root`.
#[derive(Debug, Clone)]
pub struct Runc {
    binary: PathBuf,
    root: PathBuf,
}

impl Runc {
    /// `binary` with its state directory (`runc --root`) at `root`.
    pub fn new(binary: impl Into<PathBuf>, root: impl Into<PathBuf>) -> Runc {
        Runc {
            binary: binary.into(),
            root: root.into(),
        }
    }

    fn run(&self, args: &[&str]) -> Result<String, ContainerError> {
        let root = self.root.display().to_string();
        let mut full = vec!["--root", root.as_str()];
        full.extend_from_slice(args);
        run_blocking(&self.binary, &full)
    }
}

/// The last error runc logged (its stderr is the container's, so we read its JSON log).
fn last_logged_error(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    text.lines()
        .rev()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .find(|v| v["level"] == "error" || v["level"] == "fatal")
        .and_then(|v| v["msg"].as_str().map(str::to_string))
        .unwrap_or_default()
}

impl OciRuntime for Runc {
    fn create(&self, id: &str, bundle: &Path, pid_file: &Path) -> Result<(), ContainerError> {
        let log = bundle.join("runc.log");
        let status = Command::new(&self.binary)
            .arg("--root")
            .arg(&self.root)
            .arg("--log")
            .arg(&log)
            .args(["--log-format", "json", "create", "--bundle"])
            .arg(bundle)
            .arg("--pid-file")
            .arg(pid_file)
            .arg(id)
            .stdin(Stdio::null())
            .status()
            .map_err(|e| ContainerError::Command {
                command: format!("{} create {id}", self.binary.display()),
                detail: e.to_string(),
            })?;
        if status.success() {
            return Ok(());
        }
        Err(ContainerError::Command {
            command: format!("{} create {id}", self.binary.display()),
            detail: format!("{status}: {}", last_logged_error(&log)),
        })
    }

    fn start(&self, id: &str) -> Result<(), ContainerError> {
        self.run(&["start", id]).map(drop)
    }

    fn kill(&self, id: &str, signal: &str, all: bool) -> Result<(), ContainerError> {
        if all {
            self.run(&["kill", "--all", id, signal]).map(drop)
        } else {
            self.run(&["kill", id, signal]).map(drop)
        }
    }

    fn delete(&self, id: &str, force: bool) -> Result<(), ContainerError> {
        if force {
            self.run(&["delete", "--force", id]).map(drop)
        } else {
            self.run(&["delete", id]).map(drop)
        }
    }

    fn exists(&self, id: &str) -> bool {
        self.run(&["state", id]).is_ok()
    }

    fn list(&self) -> Result<Vec<String>, ContainerError> {
        Ok(self
            .run(&["list", "-q"])?
            .lines()
            .map(str::trim)
            .filter(|id| !id.is_empty())
            .map(str::to_string)
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runc_errors_come_from_its_json_log() {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = dir.path().join("runc.log");
        std::fs::write(
            &log,
            "{\"level\":\"info\",\"msg\":\"x\"}\n{\"level\":\"error\",\"msg\":\"exec: no such file\"}\n",
        )
        .expect("write");
        assert_eq!(last_logged_error(&log), "exec: no such file");
        assert_eq!(last_logged_error(&dir.path().join("none")), "");
    }

    #[test]
    fn an_empty_root_lists_nothing() {
        let Some(runc) = ["/usr/sbin/runc", "/usr/bin/runc"]
            .into_iter()
            .find(|p| Path::new(p).exists())
        else {
            panic!("runc is not installed (apt-get install runc)");
        };
        let dir = tempfile::tempdir().expect("tempdir");
        let runtime = Runc::new(runc, dir.path());
        assert_eq!(runtime.list().expect("list"), Vec::<String>::new());
        assert!(!runtime.exists("nothing"));
        assert!(runtime.start("nothing").is_err());
    }
}
