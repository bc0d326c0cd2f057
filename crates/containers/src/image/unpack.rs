//! Unpacking an untrusted layer tarball (gzip, zstd or plain) into an overlayfs lower
//! directory.
//!
//! - OCI whiteouts become overlayfs ones: `.wh.NAME` → a 0/0 character device `NAME`,
//!   `.wh..wh..opq` → `trusted.overlay.opaque=y` on its directory
//!   (<https://docs.kernel.org/filesystems/overlayfs.html#whiteouts-and-opaque-directories>).
//! - Hostile entries are refused: `..` components, a parent that is not a real
//!   directory (so a symlink in the layer is never followed, on creation or
//!   afterwards), hard links to a missing target; a leading `/` is stripped as Docker
//!   does. Device nodes other than whiteouts are skipped. The uncompressed stream,
//!   the files' total size and the entry count are bounded by [`PullLimits`].
//! - The uncompressed stream's sha256 is computed on the way (the config's `diff_id`).
//!
//! Nothing here is concurrent: the destination is a private temporary directory that
//! only this unpacking writes to, so checking a parent with `lstat` and then using it
//! cannot race with another writer.

use std::ffi::{CString, OsStr};
use std::fs::{self, File, OpenOptions, Permissions};
use std::io::{self, BufRead, BufReader, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};
use tar::EntryType;

use super::{ImageError, PullLimits};

/// What unpacking a layer produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnpackStats {
    /// Tar entries processed (including skipped ones).
    pub entries: u64,
    /// Bytes of regular file content written.
    pub bytes: u64,
    /// `sha256:` of the uncompressed tar stream.
    pub diff_id: String,
}

/// Extra room for headers in the uncompressed stream beyond the files' content.
const HEADER_ALLOWANCE: u64 = 64 * 1024 * 1024;

/// Unpacks the layer blob at `blob` (gzip, zstd or plain tar, by magic bytes) into the
/// existing, empty directory `dest`. `layer` names the layer in errors.
pub fn unpack_layer_file(
    blob: &Path,
    dest: &Path,
    layer: &str,
    limits: &PullLimits,
) -> Result<UnpackStats, ImageError> {
    let file = File::open(blob).map_err(ImageError::io("open layer", blob))?;
    unpack_layer(BufReader::new(file), dest, layer, limits)
}

/// Unpacks a layer from `reader` (gzip, zstd or plain tar, by magic bytes) into the
/// existing, empty directory `dest`.
pub fn unpack_layer<R: BufRead>(
    mut reader: R,
    dest: &Path,
    layer: &str,
    limits: &PullLimits,
) -> Result<UnpackStats, ImageError> {
    let head = reader
        .fill_buf()
        .map_err(ImageError::io("read layer", dest))?
        .to_vec();
    let decoded: Box<dyn Read> = if head.starts_with(&[0x1f, 0x8b]) {
        Box::new(flate2::bufread::MultiGzDecoder::new(reader))
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Box::new(
            zstd::stream::read::Decoder::with_buffer(reader)
                .map_err(ImageError::io("start zstd decoder for", dest))?,
        )
    } else {
        Box::new(reader)
    };
    let limit = limits.max_layer_bytes.saturating_add(HEADER_ALLOWANCE);
    let mut hashing = HashingReader {
        inner: decoded,
        hasher: Sha256::new(),
        read: 0,
        limit,
    };
    let (entries, bytes) = unpack_tar(&mut hashing, dest, layer, limits)?;
    // The diff_id covers the whole stream, including the end-of-archive blocks the tar
    // reader may not have consumed.
    io::copy(&mut hashing, &mut io::sink()).map_err(|e| stream_error(layer, limit, e))?;
    Ok(UnpackStats {
        entries,
        bytes,
        diff_id: format!("sha256:{}", hex::encode(hashing.hasher.finalize())),
    })
}

/// Hashes and counts what passes through; fails once more than `limit` bytes came.
struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
    read: u64,
    limit: u64,
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read += n as u64;
        if self.read > self.limit {
            return Err(io::Error::new(
                io::ErrorKind::FileTooLarge,
                "layer stream too large",
            ));
        }
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

fn stream_error(layer: &str, limit: u64, e: io::Error) -> ImageError {
    if e.kind() == io::ErrorKind::FileTooLarge {
        ImageError::TooLarge {
            what: format!("uncompressed layer {layer}"),
            limit,
        }
    } else {
        ImageError::Invalid {
            what: format!("layer {layer}"),
            reason: e.to_string(),
        }
    }
}

fn unsafe_entry(layer: &str, entry: &[u8], reason: impl Into<String>) -> ImageError {
    ImageError::UnsafeLayer {
        layer: layer.to_string(),
        entry: String::from_utf8_lossy(entry).into_owned(),
        reason: reason.into(),
    }
}

/// The entry's path as components below the layer root: `.` and empty components
/// dropped, a leading `/` neutralised, `..` refused.
fn sanitize<'a>(layer: &str, raw: &'a [u8]) -> Result<Vec<&'a OsStr>, ImageError> {
    let mut out = Vec::new();
    for component in raw.split(|b| *b == b'/') {
        match component {
            b"" | b"." => {}
            b".." => return Err(unsafe_entry(layer, raw, "path contains '..'")),
            c => out.push(OsStr::from_bytes(c)),
        }
    }
    Ok(out)
}

/// Walks (creating missing ones) the parent directories of an entry, refusing any that
/// is not a real directory: never resolves through a symlink.
fn ensure_parents(
    dest: &Path,
    parents: &[&OsStr],
    layer: &str,
    raw: &[u8],
    create: bool,
) -> Result<PathBuf, ImageError> {
    let mut path = dest.to_path_buf();
    for component in parents {
        path.push(component);
        match fs::symlink_metadata(&path) {
            Ok(meta) if meta.file_type().is_dir() => {}
            Ok(_) => {
                return Err(unsafe_entry(
                    layer,
                    raw,
                    format!("parent {} is not a directory", path.display()),
                ))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound && create => {
                fs::create_dir(&path).map_err(ImageError::io("create directory", &path))?;
            }
            Err(e) => return Err(ImageError::io("inspect", &path)(e)),
        }
    }
    Ok(path)
}

/// Removes whatever is at `path` (not following links), unless both it and the new
/// entry are directories.
fn clear(path: &Path, keep_dir: bool) -> Result<(), ImageError> {
    match fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_dir() => {
            if !keep_dir {
                fs::remove_dir_all(path).map_err(ImageError::io("remove", path))?;
            }
        }
        Ok(_) => fs::remove_file(path).map_err(ImageError::io("remove", path))?,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(ImageError::io("inspect", path)(e)),
    }
    Ok(())
}

fn unpack_tar<R: Read>(
    reader: R,
    dest: &Path,
    layer: &str,
    limits: &PullLimits,
) -> Result<(u64, u64), ImageError> {
    let stream_limit = limits.max_layer_bytes.saturating_add(HEADER_ALLOWANCE);
    let mut archive = tar::Archive::new(reader);
    let mut entries = 0u64;
    let mut bytes = 0u64;
    let iter = archive
        .entries()
        .map_err(|e| stream_error(layer, stream_limit, e))?;
    for entry in iter {
        let mut entry = entry.map_err(|e| stream_error(layer, stream_limit, e))?;
        entries += 1;
        if entries > limits.max_layer_entries {
            return Err(ImageError::TooLarge {
                what: format!("entry count of layer {layer}"),
                limit: limits.max_layer_entries,
            });
        }
        let raw = entry.path_bytes().into_owned();
        let components = sanitize(layer, &raw)?;
        let Some((name, parents)) = components.split_last() else {
            continue; // the layer root itself: keep our own directory's metadata
        };
        let kind = entry.header().entry_type();
        if matches!(kind, EntryType::XGlobalHeader | EntryType::XHeader) {
            continue;
        }
        let parent = ensure_parents(dest, parents, layer, &raw, true)?;
        let name_bytes = name.as_bytes();

        // OCI whiteouts.
        if let Some(hidden) = name_bytes.strip_prefix(b".wh.") {
            if hidden == b".wh..opq" {
                set_opaque(&parent)?;
            } else if hidden.starts_with(b".wh.")
                || hidden.is_empty()
                || hidden == b"."
                || hidden == b".."
            {
                // Other `.wh..wh.` names are aufs bookkeeping (hard link dirs): meaningless here.
            } else {
                let target = parent.join(OsStr::from_bytes(hidden));
                clear(&target, false)?;
                make_whiteout(&target)?;
            }
            continue;
        }

        let path = parent.join(name);
        let header = entry.header();
        let mode = header
            .mode()
            .map_err(|e| stream_error(layer, stream_limit, e))?
            & 0o7777;
        let uid = u32::try_from(header.uid().unwrap_or(0)).unwrap_or(0);
        let gid = u32::try_from(header.gid().unwrap_or(0)).unwrap_or(0);
        let mtime = header.mtime().unwrap_or(0);
        match kind {
            EntryType::Regular | EntryType::Continuous => {
                clear(&path, false)?;
                let mut file = OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .custom_flags(libc::O_NOFOLLOW)
                    .open(&path)
                    .map_err(ImageError::io("create", &path))?;
                let remaining = limits.max_layer_bytes.saturating_sub(bytes);
                let copied = io::copy(
                    &mut (&mut entry).take(remaining.saturating_add(1)),
                    &mut file,
                )
                .map_err(|e| stream_error(layer, stream_limit, e))?;
                bytes += copied;
                if copied > remaining {
                    return Err(ImageError::TooLarge {
                        what: format!("unpacked layer {layer}"),
                        limit: limits.max_layer_bytes,
                    });
                }
                // Owner before mode: chown clears setuid/setgid bits.
                std::os::unix::fs::fchown(&file, Some(uid), Some(gid))
                    .map_err(ImageError::io("chown", &path))?;
                file.set_permissions(Permissions::from_mode(mode))
                    .map_err(ImageError::io("chmod", &path))?;
                drop(file);
                set_mtime(&path, mtime)?;
            }
            EntryType::Directory => {
                clear(&path, true)?;
                if fs::symlink_metadata(&path).is_err() {
                    fs::create_dir(&path).map_err(ImageError::io("create directory", &path))?;
                }
                std::os::unix::fs::lchown(&path, Some(uid), Some(gid))
                    .map_err(ImageError::io("chown", &path))?;
                // A real directory (checked above), so setting its mode follows no link.
                fs::set_permissions(&path, Permissions::from_mode(mode))
                    .map_err(ImageError::io("chmod", &path))?;
            }
            EntryType::Symlink => {
                let target = entry
                    .link_name_bytes()
                    .ok_or_else(|| unsafe_entry(layer, &raw, "symlink without a target"))?
                    .into_owned();
                clear(&path, false)?;
                // The target is stored as is: it is only ever resolved inside the
                // container's root, never by us.
                std::os::unix::fs::symlink(OsStr::from_bytes(&target), &path)
                    .map_err(ImageError::io("create symlink", &path))?;
                std::os::unix::fs::lchown(&path, Some(uid), Some(gid))
                    .map_err(ImageError::io("chown", &path))?;
            }
            EntryType::Link => {
                let target_raw = entry
                    .link_name_bytes()
                    .ok_or_else(|| unsafe_entry(layer, &raw, "hard link without a target"))?
                    .into_owned();
                let target_components = sanitize(layer, &target_raw)?;
                let Some((target_name, target_parents)) = target_components.split_last() else {
                    return Err(unsafe_entry(layer, &raw, "hard link to the layer root"));
                };
                let target_parent = ensure_parents(dest, target_parents, layer, &raw, false)
                    .map_err(|_| {
                        unsafe_entry(layer, &raw, "hard link target outside this layer")
                    })?;
                let target = target_parent.join(target_name);
                match fs::symlink_metadata(&target) {
                    Ok(meta) if meta.file_type().is_file() || meta.file_type().is_symlink() => {}
                    _ => {
                        return Err(unsafe_entry(
                            layer,
                            &raw,
                            "hard link target is not a file earlier in this layer",
                        ))
                    }
                }
                if target == path {
                    continue;
                }
                clear(&path, false)?;
                // linkat(2) without AT_SYMLINK_FOLLOW: links a symlink itself, never its target.
                fs::hard_link(&target, &path).map_err(ImageError::io("hard link", &path))?;
            }
            EntryType::Char
                if header.device_major().ok().flatten() == Some(0)
                    && header.device_minor().ok().flatten() == Some(0) =>
            {
                // An overlayfs-style whiteout already (e.g. from a tar of an upper dir).
                clear(&path, false)?;
                make_whiteout(&path)?;
            }
            EntryType::Fifo => {
                clear(&path, false)?;
                nix::unistd::mkfifo(
                    &path,
                    nix::sys::stat::Mode::from_bits_truncate(mode & 0o777),
                )
                .map_err(|e| ImageError::io("create fifo", &path)(e.into()))?;
                std::os::unix::fs::lchown(&path, Some(uid), Some(gid))
                    .map_err(ImageError::io("chown", &path))?;
            }
            EntryType::GNUSparse => {
                // Dropping the file silently would leave a broken image.
                return Err(unsafe_entry(layer, &raw, "sparse files are not supported"));
            }
            EntryType::Char | EntryType::Block => {
                tracing::debug!(layer, entry = %String::from_utf8_lossy(&raw), "skipping device node");
            }
            other => {
                tracing::debug!(layer, entry = %String::from_utf8_lossy(&raw), ?other, "skipping tar entry type");
            }
        }
    }
    Ok((entries, bytes))
}

fn make_whiteout(path: &Path) -> Result<(), ImageError> {
    use nix::sys::stat::{makedev, mknod, Mode, SFlag};
    mknod(path, SFlag::S_IFCHR, Mode::empty(), makedev(0, 0))
        .map_err(|e| ImageError::io("create whiteout", path)(e.into()))
}

fn set_opaque(dir: &Path) -> Result<(), ImageError> {
    let c_path = CString::new(dir.as_os_str().as_bytes()).map_err(|e| {
        ImageError::io("mark opaque", dir)(io::Error::new(io::ErrorKind::InvalidInput, e))
    })?;
    let name = c"trusted.overlay.opaque";
    let value = b"y";
    // SAFETY: both strings are NUL-terminated and live across the call; the value
    // pointer and length describe a valid buffer. lsetxattr does not follow a symlink.
    let rc = unsafe {
        libc::lsetxattr(
            c_path.as_ptr(),
            name.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    if rc != 0 {
        return Err(ImageError::io("mark opaque", dir)(
            io::Error::last_os_error(),
        ));
    }
    Ok(())
}

fn set_mtime(path: &Path, mtime: u64) -> Result<(), ImageError> {
    use nix::sys::stat::{utimensat, UtimensatFlags};
    use nix::sys::time::TimeSpec;
    let secs = i64::try_from(mtime).unwrap_or(i64::MAX);
    let ts = TimeSpec::new(secs, 0);
    utimensat(None, path, &ts, &ts, UtimensatFlags::NoFollowSymlink)
        .map_err(|e| ImageError::io("set mtime of", path)(e.into()))
}

/// Whether `path` is an overlayfs whiteout (a 0/0 character device).
pub fn is_whiteout(path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_char_device() && m.rdev() == 0)
}

/// Whether the directory `path` carries `trusted.overlay.opaque=y`.
pub fn is_opaque(path: &Path) -> bool {
    let Ok(c_path) = CString::new(path.as_os_str().as_bytes()) else {
        return false;
    };
    let mut buf = [0u8; 4];
    // SAFETY: NUL-terminated strings, and `buf` is a writable buffer of the given length.
    let n = unsafe {
        libc::lgetxattr(
            c_path.as_ptr(),
            c"trusted.overlay.opaque".as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    n == 1 && buf[0] == b'y'
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    /// A tar built entry by entry, with raw names (the `tar` builder refuses `..`).
    struct Tar(tar::Builder<Vec<u8>>);

    impl Tar {
        fn new() -> Tar {
            Tar(tar::Builder::new(Vec::new()))
        }
        fn entry(
            mut self,
            kind: EntryType,
            name: &str,
            link: Option<&str>,
            data: &[u8],
            mode: u32,
        ) -> Tar {
            let mut header = tar::Header::new_gnu();
            header.set_entry_type(kind);
            {
                let gnu = header.as_gnu_mut().expect("gnu header");
                gnu.name[..name.len()].copy_from_slice(name.as_bytes());
                if let Some(link) = link {
                    gnu.linkname[..link.len()].copy_from_slice(link.as_bytes());
                }
            }
            header.set_size(data.len() as u64);
            header.set_mode(mode);
            header.set_uid(1000);
            header.set_gid(1000);
            header.set_mtime(1_600_000_000);
            header.set_cksum();
            self.0.append(&header, data).expect("append");
            self
        }
        fn file(self, name: &str, data: &str) -> Tar {
            self.entry(EntryType::Regular, name, None, data.as_bytes(), 0o644)
        }
        fn dir(self, name: &str) -> Tar {
            self.entry(EntryType::Directory, name, None, b"", 0o755)
        }
        fn bytes(self) -> Vec<u8> {
            self.0.into_inner().expect("finish")
        }
    }

    fn unpack(bytes: &[u8]) -> (tempfile::TempDir, Result<UnpackStats, ImageError>) {
        let outer = tempfile::tempdir().expect("tempdir");
        let dest = outer.path().join("layer");
        fs::create_dir(&dest).expect("mkdir");
        let result = unpack_layer(
            io::Cursor::new(bytes.to_vec()),
            &dest,
            "test",
            &PullLimits::default(),
        );
        (outer, result)
    }

    fn assert_unsafe(result: Result<UnpackStats, ImageError>) {
        assert!(
            matches!(result, Err(ImageError::UnsafeLayer { .. })),
            "{result:?}"
        );
    }

    #[test]
    fn unpacks_files_dirs_links_with_owner_mode_and_diff_id() {
        let tar = Tar::new()
            .dir("./")
            .dir("./etc/")
            .file("./etc/hello", "hi")
            .entry(EntryType::Regular, "bin/su", None, b"x", 0o4755)
            .entry(
                EntryType::Symlink,
                "etc/link",
                Some("/etc/hello"),
                b"",
                0o777,
            )
            .entry(EntryType::Link, "etc/hard", Some("etc/hello"), b"", 0o644)
            .bytes();
        let (dir, result) = unpack(&tar);
        let stats = result.expect("unpack");
        let root = dir.path().join("layer");
        assert_eq!(
            fs::read_to_string(root.join("etc/hello")).expect("read"),
            "hi"
        );
        let su = fs::metadata(root.join("bin/su")).expect("su");
        assert_eq!(
            (su.mode() & 0o7777, su.uid(), su.gid()),
            (0o4755, 1000, 1000)
        );
        assert_eq!(
            fs::read_link(root.join("etc/link")).expect("link"),
            Path::new("/etc/hello")
        );
        assert_eq!(
            fs::metadata(root.join("etc/hard")).expect("hard").ino(),
            fs::metadata(root.join("etc/hello")).expect("hello").ino()
        );
        assert_eq!(su.mtime(), 1_600_000_000);
        assert_eq!(stats.bytes, 3);
        assert_eq!(stats.diff_id, crate::image::sha256_digest(&tar));
    }

    #[test]
    fn gzip_and_zstd_layers_unpack_alike() {
        let tar = Tar::new().file("a/b.txt", "content").bytes();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        io::Write::write_all(&mut gz, &tar).expect("gzip");
        let gz = gz.finish().expect("gzip");
        let zst = zstd::encode_all(io::Cursor::new(&tar), 3).expect("zstd");
        for compressed in [gz, zst] {
            let (dir, result) = unpack(&compressed);
            assert_eq!(
                result.expect("unpack").diff_id,
                crate::image::sha256_digest(&tar)
            );
            assert_eq!(
                fs::read_to_string(dir.path().join("layer/a/b.txt")).expect("read"),
                "content"
            );
        }
    }

    #[test]
    fn whiteouts_become_overlayfs_whiteouts() {
        let tar = Tar::new()
            .file("etc/.wh.removed", "")
            .file("opaque/.wh..wh..opq", "")
            .file("opaque/kept", "k")
            .file(".wh..wh.plnk", "")
            .bytes();
        let (dir, result) = unpack(&tar);
        result.expect("unpack");
        let root = dir.path().join("layer");
        assert!(is_whiteout(&root.join("etc/removed")));
        assert!(!root.join("etc/.wh.removed").exists());
        assert!(is_opaque(&root.join("opaque")));
        assert!(!is_opaque(&root.join("etc")));
        assert!(root.join("opaque/kept").is_file());
        assert!(!root.join(".wh..wh.plnk").exists());
    }

    #[test]
    fn dot_dot_paths_are_refused() {
        let (dir, result) = unpack(&Tar::new().file("../escaped", "x").bytes());
        assert_unsafe(result);
        assert!(!dir.path().join("escaped").exists());
        let (_dir, result) = unpack(&Tar::new().file("a/../../escaped", "x").bytes());
        assert_unsafe(result);
        let (_dir, result) = unpack(
            &Tar::new()
                .file("ok", "x")
                .entry(EntryType::Link, "l", Some("../../etc/passwd"), b"", 0o644)
                .bytes(),
        );
        assert_unsafe(result);
        // An absolute hard link target means the layer's own file, which must exist.
        let (_dir, result) = unpack(
            &Tar::new()
                .entry(EntryType::Link, "l", Some("/etc/passwd"), b"", 0o644)
                .bytes(),
        );
        assert_unsafe(result);
    }

    #[test]
    fn absolute_paths_stay_inside_the_layer() {
        let (dir, result) = unpack(&Tar::new().file("/abs/file", "x").bytes());
        result.expect("unpack");
        assert_eq!(
            fs::read_to_string(dir.path().join("layer/abs/file")).expect("read"),
            "x"
        );
    }

    #[test]
    fn symlinks_are_never_followed_when_writing() {
        let outside = tempfile::tempdir().expect("tempdir");
        let target = outside.path().to_string_lossy().into_owned();
        // A directory symlink to outside, then a file through it.
        let (_dir, result) = unpack(
            &Tar::new()
                .entry(EntryType::Symlink, "evil", Some(&target), b"", 0o777)
                .file("evil/pwned", "x")
                .bytes(),
        );
        assert_unsafe(result);
        assert!(!outside.path().join("pwned").exists());
        // A file symlink to outside, then the same name as a file: replaces the link.
        let victim = outside.path().join("victim");
        fs::write(&victim, "original").expect("write");
        let (dir, result) = unpack(
            &Tar::new()
                .entry(
                    EntryType::Symlink,
                    "f",
                    Some(&victim.to_string_lossy()),
                    b"",
                    0o777,
                )
                .file("f", "overwritten")
                .bytes(),
        );
        result.expect("unpack");
        assert_eq!(fs::read_to_string(&victim).expect("read"), "original");
        assert_eq!(
            fs::read_to_string(dir.path().join("layer/f")).expect("read"),
            "overwritten"
        );
        // A hard link through a symlinked parent to outside.
        let (_dir, result) = unpack(
            &Tar::new()
                .entry(EntryType::Symlink, "out", Some(&target), b"", 0o777)
                .entry(EntryType::Link, "stolen", Some("out/victim"), b"", 0o644)
                .bytes(),
        );
        assert_unsafe(result);
        // A whiteout through a symlinked parent.
        let (_dir, result) = unpack(
            &Tar::new()
                .entry(EntryType::Symlink, "out", Some(&target), b"", 0o777)
                .file("out/.wh.victim", "")
                .bytes(),
        );
        assert_unsafe(result);
        assert_eq!(fs::read_to_string(&victim).expect("read"), "original");
    }

    #[test]
    fn device_nodes_are_skipped() {
        let mut tar = Tar::new();
        let mut header = tar::Header::new_gnu();
        header.set_path("dev/sda").expect("path");
        header.set_entry_type(EntryType::Block);
        header.set_mode(0o600);
        header.set_device_major(8).expect("major");
        header.set_device_minor(0).expect("minor");
        header.set_size(0);
        header.set_cksum();
        tar.0.append(&header, io::empty()).expect("append");
        let (dir, result) = unpack(&tar.file("ok", "x").bytes());
        result.expect("unpack");
        assert!(!dir.path().join("layer/dev/sda").exists());
        assert!(dir.path().join("layer/ok").exists());
    }

    #[test]
    fn size_and_entry_caps_are_enforced() {
        let tar = Tar::new()
            .file("big", &"x".repeat(4096))
            .file("b", "y")
            .bytes();
        let outer = tempfile::tempdir().expect("tempdir");
        let limits = PullLimits {
            max_layer_bytes: 1024,
            ..PullLimits::default()
        };
        let result = unpack_layer(io::Cursor::new(tar.clone()), outer.path(), "t", &limits);
        assert!(
            matches!(result, Err(ImageError::TooLarge { .. })),
            "{result:?}"
        );
        let outer = tempfile::tempdir().expect("tempdir");
        let limits = PullLimits {
            max_layer_entries: 1,
            ..PullLimits::default()
        };
        let result = unpack_layer(io::Cursor::new(tar), outer.path(), "t", &limits);
        assert!(
            matches!(result, Err(ImageError::TooLarge { .. })),
            "{result:?}"
        );
    }
}
