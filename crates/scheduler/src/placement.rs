//! Placement by capacity, as Diego's auctioneer decides it for one cell:
//! an instance or a task starts only if the memory, disk and container
//! slots it asks for fit in what the cell has left; otherwise it waits
//! (an instance shows `DOWN` with CF's `insufficient resources: …` reason)
//! and is placed as soon as room frees up. With several cells, each is a
//! candidate and the first that fits wins; the arithmetic stays here.

use std::path::Path;

/// Garden's default limit on containers per cell.
pub const DEFAULT_MAX_CONTAINERS: u32 = 250;

/// What one cell offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CellCapacity {
    /// Memory for app instances and tasks, in MB.
    pub memory_mb: u64,
    /// Disk for app instances and tasks, in MB.
    pub disk_mb: u64,
    /// Containers at most (instances, tasks and stagings).
    pub containers: u32,
}

impl CellCapacity {
    /// The host's memory and the size of the file system holding
    /// `work_dir`, with Garden's container limit.
    pub fn of_host(work_dir: &Path) -> CellCapacity {
        let memory_mb = std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|text| {
                text.lines()
                    .find(|l| l.starts_with("MemTotal:"))
                    .and_then(|l| l.split_whitespace().nth(1))
                    .and_then(|kb| kb.parse::<u64>().ok())
            })
            .map_or(u64::MAX, |kb| kb / 1024);
        let disk_mb = nearest_existing(work_dir)
            .and_then(|dir| nix::sys::statvfs::statvfs(dir.as_path()).ok())
            .map_or(u64::MAX, |fs| {
                fs.blocks().saturating_mul(fs.fragment_size()) / (1024 * 1024)
            });
        CellCapacity {
            memory_mb,
            disk_mb,
            containers: DEFAULT_MAX_CONTAINERS,
        }
    }

    /// No limit at all (tests).
    pub fn unlimited() -> CellCapacity {
        CellCapacity {
            memory_mb: u64::MAX,
            disk_mb: u64::MAX,
            containers: u32::MAX,
        }
    }
}

fn nearest_existing(path: &Path) -> Option<std::path::PathBuf> {
    path.ancestors().find(|p| p.exists()).map(Path::to_path_buf)
}

/// What the cell has promised so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Reserved {
    pub memory_mb: u64,
    pub disk_mb: u64,
    pub containers: u32,
}

impl Reserved {
    pub(crate) fn add(&mut self, memory_mb: u64, disk_mb: u64) {
        self.memory_mb = self.memory_mb.saturating_add(memory_mb);
        self.disk_mb = self.disk_mb.saturating_add(disk_mb);
        self.containers = self.containers.saturating_add(1);
    }
}

/// Whether a container asking for `memory_mb` and `disk_mb` fits beside
/// what is reserved; the resource that is short otherwise.
pub(crate) fn fits(
    capacity: &CellCapacity,
    reserved: &Reserved,
    memory_mb: u64,
    disk_mb: u64,
) -> Result<(), &'static str> {
    if reserved.memory_mb.saturating_add(memory_mb) > capacity.memory_mb {
        Err("memory")
    } else if reserved.disk_mb.saturating_add(disk_mb) > capacity.disk_mb {
        Err("disk")
    } else if reserved.containers >= capacity.containers {
        Err("containers")
    } else {
        Ok(())
    }
}

/// CF's placement error for a resource that is short.
pub(crate) fn insufficient(resource: &str) -> String {
    format!("insufficient resources: {resource}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placement_checks_memory_then_disk_then_containers() {
        let cap = CellCapacity {
            memory_mb: 1024,
            disk_mb: 4096,
            containers: 3,
        };
        let mut reserved = Reserved::default();
        assert_eq!(fits(&cap, &reserved, 1024, 4096), Ok(()));
        assert_eq!(fits(&cap, &reserved, 1025, 1), Err("memory"));
        assert_eq!(fits(&cap, &reserved, 1, 4097), Err("disk"));
        reserved.add(512, 1024);
        reserved.add(256, 1024);
        assert_eq!(fits(&cap, &reserved, 256, 1024), Ok(()));
        assert_eq!(fits(&cap, &reserved, 257, 1), Err("memory"));
        reserved.add(1, 1);
        assert_eq!(fits(&cap, &reserved, 1, 1), Err("containers"));
        assert_eq!(insufficient("memory"), "insufficient resources: memory");
    }

    #[test]
    fn the_host_has_some_memory_and_disk() {
        let cap = CellCapacity::of_host(Path::new("/nonexistent/dir"));
        assert!(cap.memory_mb > 0 && cap.memory_mb < u64::MAX);
        assert!(cap.disk_mb > 0 && cap.disk_mb < u64::MAX);
        assert_eq!(cap.containers, DEFAULT_MAX_CONTAINERS);
    }
}
