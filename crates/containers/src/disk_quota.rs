//! Disk quotas: a container's writable layer on a file system of its own size.
//!
//! When a container has a disk limit, its overlay's upper and work directories live on a
//! sparse ext4 image (`<state>/containers/<id>/disk.img`, made with `mkfs.ext4`) that is
//! loop-mounted at `<state>/containers/<id>/disk`. Writes beyond the image's size fail with
//! `ENOSPC` inside the container, while the host file system only ever holds the blocks
//! the container really wrote (the image is sparse and mounted with `discard`, so deleted
//! files give their blocks back). This works on any host file system, unlike project
//! quotas, and costs disk rather than memory, unlike a `tmpfs`.
//!
//! The loop device is attached by `mount -o loop`, which sets `LO_FLAGS_AUTOCLEAR`: the
//! device detaches itself once the file system is unmounted, even if the platform dies
//! before it could. [`detach_images_below`] detaches what is left anyway (a device whose
//! file system is still busy is flagged to detach once it is released).
//!
//! Volumes (`<state>/volumes/<name>/data`, see [`create_volume`]) are the same file
//! systems without a container, for writable bind mounts that must count against a quota.

use std::fs;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use crate::command::run_blocking;
use crate::ContainerError;

/// The smallest disk limit accepted: `mkfs.ext4` needs room for its own metadata.
pub(crate) const MIN_DISK_BYTES: u64 = 4 << 20;

/// `LOOP_CLR_FD` from `<linux/loop.h>`.
const LOOP_CLR_FD: libc::c_ulong = 0x4C01;

/// Looks up a system program the way root's `PATH` would find it.
fn program(name: &str) -> PathBuf {
    ["/usr/sbin", "/sbin", "/usr/bin", "/bin"]
        .iter()
        .map(|dir| Path::new(dir).join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| PathBuf::from(name))
}

/// Creates a sparse ext4 image of `bytes` at `image` and mounts it at `target` (created
/// if missing) over a self-detaching loop device. On failure nothing is left mounted and
/// the image is removed.
pub(crate) fn mount_image(image: &Path, target: &Path, bytes: u64) -> Result<(), ContainerError> {
    if bytes < MIN_DISK_BYTES {
        return Err(ContainerError::io("create disk image", image)(
            std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("disk limit of {bytes} bytes is below the minimum of {MIN_DISK_BYTES}"),
            ),
        ));
    }
    fs::create_dir_all(target).map_err(ContainerError::io("create directory", target))?;
    let result = make_and_mount(image, target, bytes);
    if result.is_err() {
        let _ = fs::remove_file(image);
    }
    result
}

fn make_and_mount(image: &Path, target: &Path, bytes: u64) -> Result<(), ContainerError> {
    let file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(image)
        .map_err(ContainerError::io("create disk image", image))?;
    file.set_len(bytes)
        .map_err(ContainerError::io("size disk image", image))?;
    drop(file);
    let image_arg = image.to_string_lossy();
    // No journal and lazy table initialisation keep mkfs at a few tens of milliseconds
    // and the image sparse; no reserved blocks, so container root gets no more than the
    // limit either. The `default` usage type (4 KiB blocks, an inode per 16 KiB) and no
    // room for online resizing leave 96-98% of the image for files, also for small ones.
    run_blocking(
        &program("mkfs.ext4"),
        &[
            "-q",
            "-F",
            "-T",
            "default",
            "-m",
            "0",
            "-O",
            "^has_journal,^resize_inode",
            "-E",
            "lazy_itable_init=1,lazy_journal_init=1,nodiscard",
            &image_arg,
        ],
    )?;
    let target_arg = target.to_string_lossy();
    // `discard` gives the blocks of deleted files back to the host; `noinit_itable` skips
    // the kernel's background zeroing of inode tables, which a fresh sparse image does not
    // need (unwritten parts read as zeros).
    run_blocking(
        &program("mount"),
        &[
            "-t",
            "ext4",
            "-o",
            "loop,discard,noatime,noinit_itable",
            &image_arg,
            &target_arg,
        ],
    )?;
    Ok(())
}

/// A volume's directory under `volumes`: `<name>/disk.img` mounted at `<name>/data`.
fn volume_dirs(volumes: &Path, name: &str) -> (PathBuf, PathBuf, PathBuf) {
    let root = volumes.join(name);
    (root.join("disk.img"), root.join("data"), root)
}

/// Creates the volume `name` under `volumes` with a file system of `bytes` and returns
/// the directory to use (root-owned, mode 0755). A volume of that name left by a failed
/// removal is replaced. On failure nothing of it is left.
pub(crate) fn create_volume(
    volumes: &Path,
    name: &str,
    bytes: u64,
) -> Result<PathBuf, ContainerError> {
    remove_volume(volumes, name)?;
    let (image, data, root) = volume_dirs(volumes, name);
    fs::create_dir_all(&root).map_err(ContainerError::io("create directory", &root))?;
    match mount_image(&image, &data, bytes) {
        Ok(()) => Ok(data),
        Err(e) => {
            let _ = remove_volume(volumes, name);
            Err(e)
        }
    }
}

/// Unmounts the volume `name`, detaches its loop device and removes its directory and
/// image. Missing: no-op.
pub(crate) fn remove_volume(volumes: &Path, name: &str) -> Result<(), ContainerError> {
    remove_tree(&volume_dirs(volumes, name).2)
}

/// Unmounts, detaches and removes everything at or below `dir`.
pub(crate) fn remove_tree(dir: &Path) -> Result<(), ContainerError> {
    crate::rootfs::unmount_all_below(dir)?;
    // Normally detached by the unmount already (autoclear); this covers a device that a
    // crash left attached without a mount.
    let detached = detach_images_below(dir);
    match fs::remove_dir_all(dir) {
        Ok(()) => detached,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => detached,
        Err(e) => Err(ContainerError::io("remove", dir)(e)),
    }
}

/// Resolves symlinks in `dir` (or in its parent, when `dir` is gone), as the kernel
/// reports loop devices' backing files by their real path.
fn real_path(dir: &Path) -> PathBuf {
    if let Ok(real) = fs::canonicalize(dir) {
        return real;
    }
    match (dir.parent(), dir.file_name()) {
        (Some(parent), Some(name)) => fs::canonicalize(parent)
            .map(|p| p.join(name))
            .unwrap_or_else(|_| dir.to_path_buf()),
        _ => dir.to_path_buf(),
    }
}

/// Loop devices (`/dev/loopN`) whose backing file lies at or below `dir`.
pub(crate) fn loop_devices_below(dir: &Path) -> Vec<PathBuf> {
    let dir = real_path(dir);
    let Ok(entries) = fs::read_dir("/sys/block") else {
        return Vec::new();
    };
    let mut found = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.starts_with("loop") {
            continue;
        }
        let Ok(backing) = fs::read_to_string(entry.path().join("loop/backing_file")) else {
            continue;
        };
        let backing = backing.trim_end_matches('\n');
        // A removed image is reported with this suffix while the device still holds it.
        let backing = backing.strip_suffix(" (deleted)").unwrap_or(backing);
        if Path::new(backing).starts_with(&dir) {
            found.push(Path::new("/dev").join(name));
        }
    }
    found.sort();
    found
}

/// Detaches every loop device backed by a file at or below `dir`. A device still in use
/// (its file system mounted somewhere) is flagged by the kernel to detach once released.
/// Returns the first device that could not be detached.
pub(crate) fn detach_images_below(dir: &Path) -> Result<(), ContainerError> {
    let mut first_error = None;
    for device in loop_devices_below(dir) {
        if let Err(e) = detach(&device) {
            tracing::warn!(device = %device.display(), error = %e, "cannot detach loop device");
            first_error.get_or_insert(e);
        }
    }
    first_error.map_or(Ok(()), Err)
}

fn detach(device: &Path) -> Result<(), ContainerError> {
    let file = match fs::File::open(device) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(ContainerError::io("open loop device", device)(e)),
    };
    // SAFETY: LOOP_CLR_FD takes no argument and only acts on the device behind the fd,
    // which stays open for the duration of the call.
    let rc = unsafe { libc::ioctl(file.as_raw_fd(), LOOP_CLR_FD as _, 0) };
    if rc == 0 {
        return Ok(());
    }
    let error = std::io::Error::last_os_error();
    // ENXIO: detached meanwhile (e.g. by its autoclear flag).
    if error.raw_os_error() == Some(libc::ENXIO) {
        return Ok(());
    }
    Err(ContainerError::io("detach loop device", device)(error))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write as _;

    /// Unmounts and detaches even when an assertion fails, before the tempdir goes.
    struct Cleanup(PathBuf);
    impl Drop for Cleanup {
        fn drop(&mut self) {
            let _ = crate::rootfs::unmount_all_below(&self.0);
            let _ = detach_images_below(&self.0);
        }
    }

    #[test]
    fn image_fills_up_with_enospc_and_detaches_on_unmount() {
        let dir = tempfile::tempdir().expect("tempdir");
        let _cleanup = Cleanup(dir.path().to_path_buf());
        let image = dir.path().join("disk.img");
        let target = dir.path().join("disk");
        mount_image(&image, &target, 8 << 20).expect("mount image");
        assert_eq!(loop_devices_below(dir.path()).len(), 1);
        let mut file = fs::File::create(target.join("big")).expect("create");
        let chunk = vec![1u8; 1 << 20];
        let mut written = 0u64;
        let error = loop {
            match file.write_all(&chunk).and_then(|()| file.sync_all()) {
                Ok(()) => written += chunk.len() as u64,
                Err(e) => break e,
            }
            assert!(
                written <= 8 << 20,
                "wrote {written} bytes into an 8 MiB image"
            );
        };
        assert_eq!(error.raw_os_error(), Some(libc::ENOSPC), "{error}");
        assert!(written >= 4 << 20, "only {written} bytes fitted");
        drop(file);
        crate::rootfs::unmount_all_below(&target).expect("unmount");
        // The autoclear flag detaches the device with the last unmount; the
        // kernel does it asynchronously, so wait for it (bounded).
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !loop_devices_below(dir.path()).is_empty() {
            assert!(
                std::time::Instant::now() < deadline,
                "the loop device stayed attached after the unmount"
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }

    #[test]
    fn too_small_limit_is_refused_and_leaves_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let image = dir.path().join("disk.img");
        let error = mount_image(&image, &dir.path().join("disk"), 1 << 20).expect_err("refused");
        assert!(error.to_string().contains("minimum"), "{error}");
        assert!(!image.exists());
    }

    #[test]
    fn detach_of_a_mounted_image_defers_to_unmount() {
        let dir = tempfile::tempdir().expect("tempdir");
        let _cleanup = Cleanup(dir.path().to_path_buf());
        let target = dir.path().join("disk");
        mount_image(&dir.path().join("disk.img"), &target, 8 << 20).expect("mount image");
        detach_images_below(dir.path()).expect("detach");
        // Still usable while mounted …
        fs::write(target.join("f"), "x").expect("write");
        crate::rootfs::unmount_all_below(&target).expect("unmount");
        // … and gone once unmounted.
        assert!(loop_devices_below(dir.path()).is_empty());
    }
}
