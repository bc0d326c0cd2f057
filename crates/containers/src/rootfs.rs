//! The container's root filesystem: an overlayfs of its layers over the stack, with a
//! per-container upper and work directory. See
//! <https://docs.kernel.org/filesystems/overlayfs.html>.
//!
//! The upper and work directories live in `<id>/disk`: a plain directory, or with a disk
//! limit the mount point of the container's own file system (see [`crate::disk_quota`]).

use std::fs;
use std::path::{Path, PathBuf};

use nix::mount::{mount, umount2, MntFlags, MsFlags};

use crate::ContainerError;

/// The directories of one container under the manager's state directory.
#[derive(Debug, Clone)]
pub(crate) struct ContainerDirs {
    /// `<state>/containers/<id>`: everything of this container lives below.
    pub root: PathBuf,
}

impl ContainerDirs {
    pub(crate) fn new(state_dir: &Path, id: &str) -> ContainerDirs {
        ContainerDirs {
            root: state_dir.join("containers").join(id),
        }
    }
    pub(crate) fn bundle(&self) -> PathBuf {
        self.root.join("bundle")
    }
    pub(crate) fn rootfs(&self) -> PathBuf {
        self.root.join("bundle/rootfs")
    }
    /// Holds `upper` and `work`; the mount point of the disk image when there is a limit.
    pub(crate) fn disk(&self) -> PathBuf {
        self.root.join("disk")
    }
    /// The sparse ext4 image behind `disk` when the container has a disk limit.
    pub(crate) fn disk_image(&self) -> PathBuf {
        self.root.join("disk.img")
    }
    pub(crate) fn upper(&self) -> PathBuf {
        self.disk().join("upper")
    }
    pub(crate) fn work(&self) -> PathBuf {
        self.disk().join("work")
    }
    pub(crate) fn exit_file(&self) -> PathBuf {
        self.root.join("exit.json")
    }
    pub(crate) fn pid_file(&self) -> PathBuf {
        self.root.join("pid")
    }
}

/// Escapes a path for overlayfs options, where `,` separates options and `:` layers.
fn escape(path: &Path) -> String {
    let mut out = String::new();
    for c in path.to_string_lossy().chars() {
        if c == ',' || c == ':' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// The overlay mount options for `layers` (topmost first) over `stack_rootfs`.
pub(crate) fn overlay_options(
    layers: &[PathBuf],
    stack_rootfs: &Path,
    upper: &Path,
    work: &Path,
) -> String {
    let lower: Vec<String> = layers
        .iter()
        .map(|p| escape(p))
        .chain(std::iter::once(escape(stack_rootfs)))
        .collect();
    format!(
        "lowerdir={},upperdir={},workdir={}",
        lower.join(":"),
        escape(upper),
        escape(work)
    )
}

/// Creates the container's directories and mounts its overlay rootfs at `bundle/rootfs`;
/// with `disk_bytes`, the writable layer gets a file system of that size first. What was
/// made before a failure is left for [`remove`].
pub(crate) fn mount_rootfs(
    dirs: &ContainerDirs,
    layers: &[PathBuf],
    stack_rootfs: &Path,
    disk_bytes: Option<u64>,
) -> Result<(), ContainerError> {
    if let Some(bytes) = disk_bytes {
        crate::disk_quota::mount_image(&dirs.disk_image(), &dirs.disk(), bytes)?;
    }
    for dir in [dirs.upper(), dirs.work(), dirs.rootfs()] {
        fs::create_dir_all(&dir).map_err(ContainerError::io("create directory", &dir))?;
    }
    for layer in layers.iter().map(PathBuf::as_path).chain([stack_rootfs]) {
        if !layer.is_dir() {
            return Err(ContainerError::io("use layer", layer)(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "not a directory",
            )));
        }
    }
    let options = overlay_options(layers, stack_rootfs, &dirs.upper(), &dirs.work());
    let target = dirs.rootfs();
    mount(
        Some("overlay"),
        &target,
        Some("overlay"),
        MsFlags::empty(),
        Some(options.as_str()),
    )
    .map_err(|source| ContainerError::Mount {
        action: "mount overlay at",
        target,
        source,
    })
}

/// Decodes the octal escapes (`\040` for a space) of /proc/self/mountinfo.
fn unescape_mountinfo(field: &str) -> PathBuf {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' && i + 3 < bytes.len() {
            let digits = std::str::from_utf8(&bytes[i + 1..i + 4]).unwrap_or("");
            if let Ok(v) = u8::from_str_radix(digits, 8) {
                out.push(v);
                i += 4;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    PathBuf::from(std::ffi::OsString::from(
        <std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(&out),
    ))
}

/// Every mount point at or below `dir`, deepest first.
pub(crate) fn mounts_below(dir: &Path) -> Vec<PathBuf> {
    let Ok(info) = fs::read_to_string("/proc/self/mountinfo") else {
        return Vec::new();
    };
    let mut found: Vec<PathBuf> = info
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(unescape_mountinfo)
        .filter(|p| p.starts_with(dir))
        .collect();
    found.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    found.dedup();
    found
}

/// Unmounts everything at or below `dir` (lazily, so a busy mount cannot block cleanup).
pub(crate) fn unmount_all_below(dir: &Path) -> Result<(), ContainerError> {
    // A mount point may be stacked several times; loop until none is left.
    for _ in 0..16 {
        let mounts = mounts_below(dir);
        if mounts.is_empty() {
            return Ok(());
        }
        for target in mounts {
            match umount2(&target, MntFlags::MNT_DETACH) {
                Ok(()) | Err(nix::errno::Errno::EINVAL) | Err(nix::errno::Errno::ENOENT) => {}
                Err(source) => {
                    return Err(ContainerError::Mount {
                        action: "unmount",
                        target,
                        source,
                    })
                }
            }
        }
    }
    Ok(())
}

/// Unmounts and removes everything of a container's directory, its disk image's loop
/// device included.
pub(crate) fn remove(dirs: &ContainerDirs) -> Result<(), ContainerError> {
    crate::disk_quota::remove_tree(&dirs.root)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_list_layers_topmost_first_above_the_stack() {
        let options = overlay_options(
            &[PathBuf::from("/droplet"), PathBuf::from("/x:y")],
            Path::new("/stack"),
            Path::new("/s/upper"),
            Path::new("/s/work"),
        );
        assert_eq!(
            options,
            "lowerdir=/droplet:/x\\:y:/stack,upperdir=/s/upper,workdir=/s/work"
        );
    }

    #[test]
    fn mountinfo_escapes_are_decoded() {
        assert_eq!(unescape_mountinfo("/a\\040b/c"), PathBuf::from("/a b/c"));
        assert_eq!(unescape_mountinfo("/plain"), PathBuf::from("/plain"));
    }

    #[test]
    fn overlay_mounts_and_is_removed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let lower = dir.path().join("lower");
        let layer = dir.path().join("layer");
        fs::create_dir_all(&lower).expect("lower");
        fs::create_dir_all(&layer).expect("layer");
        fs::write(lower.join("a"), "stack").expect("write");
        fs::write(layer.join("a"), "layer").expect("write");
        let dirs = ContainerDirs::new(dir.path(), "c1");
        // Unmounts even when an assertion fails, before the tempdir is removed.
        struct Unmount(PathBuf);
        impl Drop for Unmount {
            fn drop(&mut self) {
                let _ = unmount_all_below(&self.0);
            }
        }
        let _unmount = Unmount(dirs.root.clone());
        mount_rootfs(&dirs, &[layer], &lower, None).expect("mount");
        assert_eq!(
            fs::read_to_string(dirs.rootfs().join("a")).expect("read"),
            "layer"
        );
        fs::write(dirs.rootfs().join("b"), "new").expect("write");
        assert!(dirs.upper().join("b").exists());
        assert!(!lower.join("b").exists());
        remove(&dirs).expect("remove");
        assert!(mounts_below(&dirs.root).is_empty());
        assert!(!dirs.root.exists());
    }
}
