//! cgroup v1 / v2 detection, and the few cgroup files Ingot reads or cleans itself.
//!
//! runc creates and limits the cgroups (we always give it `linux.cgroupsPath`
//! `/<prefix>/<id>`); this module reads the OOM counter and usage, and removes
//! what a crashed run left behind. See cgroups(7).

use std::fs;
use std::path::{Path, PathBuf};

use crate::Usage;

const CGROUP_ROOT: &str = "/sys/fs/cgroup";

/// Which cgroup hierarchy the machine uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CgroupVersion {
    /// Legacy or hybrid: one hierarchy per controller under `/sys/fs/cgroup/<controller>`.
    V1,
    /// Unified: one hierarchy at `/sys/fs/cgroup`.
    V2,
}

impl CgroupVersion {
    /// Detects the version the way runc does: `/sys/fs/cgroup` itself is a cgroup2 mount on v2.
    pub fn detect() -> CgroupVersion {
        match nix::sys::statfs::statfs(CGROUP_ROOT) {
            Ok(fs) if fs.filesystem_type() == nix::sys::statfs::CGROUP2_SUPER_MAGIC => {
                CgroupVersion::V2
            }
            _ => CgroupVersion::V1,
        }
    }
}

/// Joins a cgroup path like `/ingot/abc` below a hierarchy's mount point.
fn below(mount: &Path, cgroup: &str) -> PathBuf {
    mount.join(cgroup.trim_start_matches('/'))
}

/// The directory of `cgroup` in the hierarchy holding `controller` (v1), or the unified one (v2).
pub(crate) fn controller_dir(version: CgroupVersion, controller: &str, cgroup: &str) -> PathBuf {
    match version {
        CgroupVersion::V1 => below(&Path::new(CGROUP_ROOT).join(controller), cgroup),
        CgroupVersion::V2 => below(Path::new(CGROUP_ROOT), cgroup),
    }
}

/// Reads `key N` out of a flat-keyed cgroup file (`memory.oom_control`, `memory.events`, `cpu.stat`).
fn keyed_value(path: &Path, key: &str) -> Option<u64> {
    let text = fs::read_to_string(path).ok()?;
    text.lines().find_map(|line| {
        let (k, v) = line.split_once(' ')?;
        if k == key {
            v.trim().parse().ok()
        } else {
            None
        }
    })
}

fn single_value(path: &Path) -> Option<u64> {
    fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// How many processes the cgroup's OOM killer has killed (v1 `memory.oom_control`,
/// v2 `memory.events`), or `None` when the cgroup does not exist (any more).
pub(crate) fn oom_kills(version: CgroupVersion, cgroup: &str) -> Option<u64> {
    match version {
        CgroupVersion::V1 => keyed_value(
            &controller_dir(version, "memory", cgroup).join("memory.oom_control"),
            "oom_kill",
        ),
        CgroupVersion::V2 => keyed_value(
            &controller_dir(version, "memory", cgroup).join("memory.events"),
            "oom_kill",
        ),
    }
}

/// Memory and CPU usage of a cgroup, if it exists.
pub(crate) fn usage(version: CgroupVersion, cgroup: &str) -> Option<Usage> {
    match version {
        CgroupVersion::V1 => {
            let memory = controller_dir(version, "memory", cgroup);
            let used = single_value(&memory.join("memory.usage_in_bytes"))?;
            let inactive = keyed_value(&memory.join("memory.stat"), "total_inactive_file");
            let cpu =
                single_value(&controller_dir(version, "cpuacct", cgroup).join("cpuacct.usage"))
                    .unwrap_or(0);
            Some(Usage {
                memory_bytes: used.saturating_sub(inactive.unwrap_or(0)),
                cpu_time_ns: cpu,
            })
        }
        CgroupVersion::V2 => {
            let dir = controller_dir(version, "memory", cgroup);
            let used = single_value(&dir.join("memory.current"))?;
            let inactive = keyed_value(&dir.join("memory.stat"), "inactive_file");
            let cpu_usec = keyed_value(&dir.join("cpu.stat"), "usage_usec").unwrap_or(0);
            Some(Usage {
                memory_bytes: used.saturating_sub(inactive.unwrap_or(0)),
                cpu_time_ns: cpu_usec.saturating_mul(1000),
            })
        }
    }
}

/// Whether runc can be asked to limit swap: the kernel must account it
/// (v1 `memory.memsw.*`, v2 `memory.swap.max`), or runc fails writing the file.
pub(crate) fn swap_limit_supported(version: CgroupVersion) -> bool {
    match version {
        CgroupVersion::V1 => Path::new(CGROUP_ROOT)
            .join("memory/memory.memsw.limit_in_bytes")
            .exists(),
        // The root cgroup has no memory.swap.max; look at any child that has memory files.
        CgroupVersion::V2 => fs::read_dir(CGROUP_ROOT)
            .map(|entries| {
                entries
                    .flatten()
                    .any(|e| e.path().join("memory.swap.max").exists())
            })
            .unwrap_or(false),
    }
}

/// Mount points of every cgroup hierarchy (v1 controllers, named hierarchies, the
/// unified one of a hybrid setup), read from /proc/self/mountinfo.
pub(crate) fn hierarchy_mounts() -> Vec<PathBuf> {
    let Ok(info) = fs::read_to_string("/proc/self/mountinfo") else {
        return Vec::new();
    };
    info.lines()
        .filter_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            let fstype = right.split(' ').next()?;
            if fstype != "cgroup" && fstype != "cgroup2" {
                return None;
            }
            left.split(' ').nth(4).map(PathBuf::from)
        })
        .collect()
}

/// Every existing directory of `cgroup` across all hierarchies.
pub(crate) fn existing_dirs(cgroup: &str) -> Vec<PathBuf> {
    hierarchy_mounts()
        .iter()
        .map(|mount| below(mount, cgroup))
        .filter(|dir| dir.is_dir())
        .collect()
}

/// Kills every process left in `dir` and its descendants, then removes the directories,
/// deepest first. Errors are logged, not returned: this is best-effort cleanup that the
/// caller verifies by listing.
pub(crate) fn remove_tree(dir: &Path) {
    if let Ok(entries) = fs::read_dir(dir) {
        for entry in entries.flatten() {
            if entry.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                remove_tree(&entry.path());
            }
        }
    }
    // A cgroup with processes cannot be removed; a crashed run may have left some.
    for attempt in 0..50 {
        if let Ok(procs) = fs::read_to_string(dir.join("cgroup.procs")) {
            for pid in procs.lines().filter_map(|p| p.trim().parse::<i32>().ok()) {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
        match fs::remove_dir(dir) {
            Ok(()) => return,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return,
            Err(e) if attempt == 49 => {
                tracing::warn!(dir = %dir.display(), error = %e, "could not remove cgroup");
            }
            // Killed processes take a moment to leave the cgroup.
            Err(_) => std::thread::sleep(std::time::Duration::from_millis(20)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_this_machines_hierarchy() {
        let expected = if Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
            CgroupVersion::V2
        } else {
            CgroupVersion::V1
        };
        assert_eq!(CgroupVersion::detect(), expected);
    }

    #[test]
    fn controller_paths_follow_the_version() {
        assert_eq!(
            controller_dir(CgroupVersion::V1, "memory", "/ingot/a"),
            PathBuf::from("/sys/fs/cgroup/memory/ingot/a")
        );
        assert_eq!(
            controller_dir(CgroupVersion::V2, "memory", "/ingot/a"),
            PathBuf::from("/sys/fs/cgroup/ingot/a")
        );
    }

    #[test]
    fn reads_keyed_values() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("memory.oom_control");
        fs::write(&file, "oom_kill_disable 0\nunder_oom 0\noom_kill 3\n").expect("write");
        assert_eq!(keyed_value(&file, "oom_kill"), Some(3));
        assert_eq!(keyed_value(&file, "missing"), None);
    }

    #[test]
    fn finds_hierarchies() {
        assert!(!hierarchy_mounts().is_empty());
    }
}
