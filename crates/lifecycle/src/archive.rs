//! Archives crossing the container boundary: app packages and buildpack zips
//! unpacked safely ([`unpack_zip`]), droplets written in Cloud Foundry's
//! layout ([`write_droplet`]) and unpacked into an app container's home
//! ([`unpack_droplet`]).
//!
//! "Safely" means: no entry is written outside the destination. Entry names
//! with `..` or an absolute path are rejected, nothing is ever written through
//! a symlink (an existing path component or target that is a symlink is an
//! error, never followed), and a zip's symlinks must point inside the
//! destination (checked lexically). Droplet symlinks may point anywhere —
//! a virtualenv's `bin/python` points at the stack's `/usr/bin/python3` — since
//! they are only ever resolved inside the container's root.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use flate2::read::GzDecoder;
use flate2::write::GzEncoder;

use crate::LifecycleError;

/// Unix file type bits of a zip entry's external attributes.
const S_IFMT: u32 = 0o170_000;
const S_IFLNK: u32 = 0o120_000;

/// One checked zip entry, ready to be written.
enum ZipItem {
    Dir {
        rel: PathBuf,
        mode: u32,
    },
    File {
        index: usize,
        rel: PathBuf,
        mode: u32,
    },
    Symlink {
        rel: PathBuf,
        target: String,
    },
}

/// Safe unzip for buildpack zips and app packages: rejects `..`, absolute
/// paths and symlinks pointing outside `dest`, with an error naming the entry.
/// Every entry is checked before anything is written, so a rejected zip
/// leaves `dest` untouched. Unix permission bits are kept (executable scripts
/// stay executable); `dest` is created if missing.
pub fn unpack_zip(zip: &Path, dest: &Path) -> Result<(), LifecycleError> {
    unpack_zip_owned(zip, dest, None)
}

/// [`unpack_zip`], with every file and directory it creates (and `dest`)
/// owned by `owner` (uid, gid) when given — e.g. an app package unpacked for
/// the staging container's `vcap` user.
pub fn unpack_zip_owned(
    zip: &Path,
    dest: &Path,
    owner: Option<(u32, u32)>,
) -> Result<(), LifecycleError> {
    let file = File::open(zip).map_err(LifecycleError::io("cannot open", zip))?;
    let mut archive = zip::ZipArchive::new(file).map_err(|err| LifecycleError::BadArchive {
        path: zip.to_path_buf(),
        reason: err.to_string(),
    })?;
    let bad = |err: zip::result::ZipError| LifecycleError::BadArchive {
        path: zip.to_path_buf(),
        reason: err.to_string(),
    };
    let unsafe_entry = |entry: &str, reason| LifecycleError::UnsafeEntry {
        archive: zip.to_path_buf(),
        entry: entry.to_string(),
        reason,
    };

    let mut items = Vec::with_capacity(archive.len());
    for index in 0..archive.len() {
        let mut entry = archive.by_index(index).map_err(bad)?;
        let name = entry.name().to_string();
        let rel = safe_relative_path(&name).map_err(|reason| unsafe_entry(&name, reason))?;
        let mode = entry.unix_mode();
        let is_symlink = mode.is_some_and(|m| m & S_IFMT == S_IFLNK);
        if is_symlink {
            let mut target = String::new();
            entry
                .read_to_string(&mut target)
                .map_err(|err| unsafe_entry(&name, symlink_read_reason(&err)))?;
            check_symlink_target(&rel, &target).map_err(|reason| unsafe_entry(&name, reason))?;
            items.push(ZipItem::Symlink { rel, target });
        } else if entry.is_dir() {
            // The owner keeps rwx so the rest of the archive can be written into it.
            let mode = mode.map_or(0o755, |m| (m & 0o777) | 0o700);
            items.push(ZipItem::Dir { rel, mode });
        } else {
            let mode = mode.map_or(0o644, |m| (m & 0o777) | 0o600);
            items.push(ZipItem::File { index, rel, mode });
        }
    }

    fs::create_dir_all(dest).map_err(LifecycleError::io("cannot create", dest))?;
    chown(dest, owner)?;
    for item in items {
        let path = match item {
            ZipItem::Dir { rel, mode } => {
                let path = prepare_target(zip, dest, &rel, owner)?;
                create_dir_no_follow(&path)?;
                fs::set_permissions(&path, fs::Permissions::from_mode(mode))
                    .map_err(LifecycleError::io("cannot set permissions of", &path))?;
                path
            }
            ZipItem::File { index, rel, mode } => {
                let path = prepare_target(zip, dest, &rel, owner)?;
                remove_if_not_dir(&path)?;
                let mut entry = archive.by_index(index).map_err(bad)?;
                let mut out = OpenOptions::new()
                    .write(true)
                    .create(true)
                    .truncate(true)
                    .mode(mode)
                    .open(&path)
                    .map_err(LifecycleError::io("cannot create", &path))?;
                io::copy(&mut entry, &mut out).map_err(|err| LifecycleError::BadArchive {
                    path: zip.to_path_buf(),
                    reason: format!("entry {:?}: {err}", entry.name()),
                })?;
                // The umask may have narrowed the mode given at creation.
                fs::set_permissions(&path, fs::Permissions::from_mode(mode))
                    .map_err(LifecycleError::io("cannot set permissions of", &path))?;
                path
            }
            ZipItem::Symlink { rel, target } => {
                let path = prepare_target(zip, dest, &rel, owner)?;
                remove_if_not_dir(&path)?;
                std::os::unix::fs::symlink(&target, &path)
                    .map_err(LifecycleError::io("cannot create symlink", &path))?;
                path
            }
        };
        chown(&path, owner)?;
    }
    Ok(())
}

/// Changes the owner of `path` itself (never a symlink's target).
fn chown(path: &Path, owner: Option<(u32, u32)>) -> Result<(), LifecycleError> {
    match owner {
        Some((uid, gid)) => std::os::unix::fs::lchown(path, Some(uid), Some(gid))
            .map_err(LifecycleError::io("cannot change the owner of", path)),
        None => Ok(()),
    }
}

fn symlink_read_reason(err: &io::Error) -> &'static str {
    if err.kind() == io::ErrorKind::InvalidData {
        "is a symlink whose target is not UTF-8"
    } else {
        "is a symlink whose target cannot be read"
    }
}

/// Turns an archive entry name into a relative path, or says why it is unsafe.
/// `""`, `"."` and `"./"` map to the empty path (the destination itself).
fn safe_relative_path(name: &str) -> Result<PathBuf, &'static str> {
    if name.starts_with('/') {
        return Err("is an absolute path");
    }
    let mut rel = PathBuf::new();
    for part in name.split('/') {
        match part {
            "" | "." => {}
            ".." => return Err("contains a `..` path component"),
            _ if part.contains('\0') => return Err("contains a NUL byte"),
            _ => rel.push(part),
        }
    }
    Ok(rel)
}

/// Checks lexically that a symlink at `rel` pointing to `target` stays inside
/// the destination root.
fn check_symlink_target(rel: &Path, target: &str) -> Result<(), &'static str> {
    if target.starts_with('/') {
        return Err("is a symlink to an absolute path");
    }
    if target.is_empty() {
        return Err("is a symlink with an empty target");
    }
    // Depth of the directory holding the link, below the destination root.
    let mut depth = rel.components().count().saturating_sub(1);
    for part in target.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if depth == 0 {
                    return Err("is a symlink pointing outside the destination");
                }
                depth -= 1;
            }
            _ => depth += 1,
        }
    }
    Ok(())
}

/// Returns `dest/rel` after making sure none of its existing ancestors below
/// `dest` is a symlink (which would make a write land elsewhere), creating
/// missing parent directories (owned by `owner`). The caller deals with what
/// may already be at `dest/rel` itself.
fn prepare_target(
    archive: &Path,
    dest: &Path,
    rel: &Path,
    owner: Option<(u32, u32)>,
) -> Result<PathBuf, LifecycleError> {
    let mut current = dest.to_path_buf();
    let parents: Vec<Component<'_>> = rel.components().collect();
    let count = parents.len().saturating_sub(1);
    for component in &parents[..count] {
        current.push(component);
        match fs::symlink_metadata(&current) {
            Ok(meta) if meta.file_type().is_symlink() => {
                return Err(LifecycleError::UnsafeEntry {
                    archive: archive.to_path_buf(),
                    entry: rel.display().to_string(),
                    reason: "would be written through a symlink",
                })
            }
            Ok(meta) if meta.is_dir() => {}
            Ok(_) => {
                return Err(LifecycleError::UnsafeEntry {
                    archive: archive.to_path_buf(),
                    entry: rel.display().to_string(),
                    reason: "has a parent that is not a directory",
                })
            }
            Err(err) if err.kind() == io::ErrorKind::NotFound => {
                fs::create_dir(&current).map_err(LifecycleError::io("cannot create", &current))?;
                chown(&current, owner)?;
            }
            Err(err) => return Err(LifecycleError::io("cannot inspect", &current)(err)),
        }
    }
    Ok(dest.join(rel))
}

/// Makes `path` a real directory: an existing one is kept, a symlink or file
/// in the way is replaced (never followed).
fn create_dir_no_follow(path: &Path) -> Result<(), LifecycleError> {
    match fs::symlink_metadata(path) {
        Ok(meta) if meta.is_dir() => return Ok(()),
        Ok(_) => fs::remove_file(path).map_err(LifecycleError::io("cannot replace", path))?,
        Err(_) => {}
    }
    fs::create_dir(path).map_err(LifecycleError::io("cannot create", path))
}

/// Clears the way for a file or symlink at `path`: an existing file or
/// symlink is removed (so nothing is written through a symlink), a directory
/// is an error.
fn remove_if_not_dir(path: &Path) -> Result<(), LifecycleError> {
    match fs::symlink_metadata(path) {
        Ok(meta) if meta.is_dir() => Err(LifecycleError::io("cannot replace directory", path)(
            io::Error::new(io::ErrorKind::AlreadyExists, "a directory is in the way"),
        )),
        Ok(_) => fs::remove_file(path).map_err(LifecycleError::io("cannot replace", path)),
        Err(_) => Ok(()),
    }
}

/// What goes into a droplet; the tarball's top level is CF's layout:
/// `./app`, `./deps`, `./profile.d`, `./staging_info.yml`, `./tmp`, `./logs`.
#[derive(Debug, Clone)]
pub struct DropletContents<'a> {
    /// The staged app (`BUILD_DIR`), stored as `./app`.
    pub app_dir: &'a Path,
    /// The buildpacks' dependencies (`DEPS_DIR`), stored as `./deps`.
    pub deps_dir: &'a Path,
    /// The final buildpack's `PROFILE_DIR`, stored as `./profile.d`.
    pub profile_dir: &'a Path,
    /// The bytes of `./staging_info.yml`.
    pub staging_info: &'a [u8],
}

/// Writes a droplet (gzip tarball) to `out`, atomically: the file appears only
/// once complete. Symlinks are stored as symlinks, modes are kept.
pub fn write_droplet(out: &Path, contents: &DropletContents<'_>) -> Result<(), LifecycleError> {
    let dir = out.parent().unwrap_or(Path::new("."));
    let tmp = tempfile::NamedTempFile::new_in(dir)
        .map_err(LifecycleError::io("cannot create a file in", dir))?;
    let write_err = LifecycleError::io("cannot write droplet", out);
    let gz = GzEncoder::new(tmp.as_file(), flate2::Compression::fast());
    let mut tar = tar::Builder::new(gz);
    tar.follow_symlinks(false);
    let result = (|| -> io::Result<()> {
        append_empty_dir(&mut tar, "./")?;
        tar.append_dir_all("app", contents.app_dir)?;
        tar.append_dir_all("deps", contents.deps_dir)?;
        if contents.profile_dir.is_dir() {
            tar.append_dir_all("profile.d", contents.profile_dir)?;
        } else {
            append_empty_dir(&mut tar, "profile.d")?;
        }
        let mut header = tar::Header::new_gnu();
        header.set_size(contents.staging_info.len() as u64);
        header.set_mode(0o644);
        header.set_mtime(now_secs());
        header.set_entry_type(tar::EntryType::Regular);
        tar.append_data(&mut header, "staging_info.yml", contents.staging_info)?;
        append_empty_dir(&mut tar, "tmp")?;
        append_empty_dir(&mut tar, "logs")?;
        let gz = tar.into_inner()?;
        let mut file = gz.finish()?;
        file.flush()?;
        file.sync_all()
    })();
    result.map_err(write_err)?;
    tmp.persist(out)
        .map_err(|err| LifecycleError::io("cannot write droplet", out)(err.error))?;
    Ok(())
}

fn append_empty_dir<W: Write>(tar: &mut tar::Builder<W>, name: &str) -> io::Result<()> {
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(tar::EntryType::Directory);
    header.set_mode(0o755);
    header.set_size(0);
    header.set_mtime(now_secs());
    tar.append_data(&mut header, name, io::empty())
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Unpacks a droplet tarball (safely) into `dest` (e.g. `<layer>/home/vcap`),
/// files owned by the `uid`/`gid` given (`dest` itself too, through the
/// tarball's `./` entry). Entries with `..` or absolute names, hard links out
/// of `dest`, writes through symlinks and device files are rejected.
pub fn unpack_droplet(tgz: &Path, dest: &Path, uid: u32, gid: u32) -> Result<(), LifecycleError> {
    let file = File::open(tgz).map_err(LifecycleError::io("cannot open", tgz))?;
    let mut archive = tar::Archive::new(GzDecoder::new(file));
    archive.set_preserve_mtime(true);
    fs::create_dir_all(dest).map_err(LifecycleError::io("cannot create", dest))?;
    let bad = |err: io::Error| LifecycleError::BadArchive {
        path: tgz.to_path_buf(),
        reason: err.to_string(),
    };
    let unsafe_entry = |entry: &str, reason| LifecycleError::UnsafeEntry {
        archive: tgz.to_path_buf(),
        entry: entry.to_string(),
        reason,
    };
    for entry in archive.entries().map_err(bad)? {
        let mut entry = entry.map_err(bad)?;
        let name = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let rel = safe_relative_path(&name).map_err(|reason| unsafe_entry(&name, reason))?;
        let kind = entry.header().entry_type();
        let target = if rel.as_os_str().is_empty() {
            dest.to_path_buf()
        } else {
            prepare_target(tgz, dest, &rel, Some((uid, gid)))?
        };
        match kind {
            tar::EntryType::Directory => {
                create_dir_no_follow(&target)?;
                let mode = entry.header().mode().map_err(bad)? & 0o777;
                fs::set_permissions(&target, fs::Permissions::from_mode(mode | 0o700))
                    .map_err(LifecycleError::io("cannot set permissions of", &target))?;
            }
            tar::EntryType::Regular | tar::EntryType::Continuous | tar::EntryType::Symlink => {
                remove_if_not_dir(&target)?;
                entry.unpack(&target).map_err(bad)?;
            }
            tar::EntryType::Link => {
                let link = entry
                    .link_name_bytes()
                    .map(|b| String::from_utf8_lossy(&b).into_owned())
                    .unwrap_or_default();
                let source_rel = safe_relative_path(&link)
                    .map_err(|_| unsafe_entry(&name, "is a hard link out of the destination"))?;
                let source = prepare_target(tgz, dest, &source_rel, Some((uid, gid)))?;
                remove_if_not_dir(&target)?;
                fs::hard_link(&source, &target)
                    .map_err(LifecycleError::io("cannot create hard link", &target))?;
            }
            tar::EntryType::XGlobalHeader | tar::EntryType::XHeader => continue,
            _ => {
                return Err(unsafe_entry(
                    &name,
                    "is a device, fifo or other special file",
                ))
            }
        }
        chown(&target, Some((uid, gid)))?;
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests fail loudly on any unexpected error
mod tests {
    use super::*;
    use zip::write::SimpleFileOptions;

    fn write_zip(path: &Path, build: impl FnOnce(&mut zip::ZipWriter<File>)) {
        let file = File::create(path).unwrap();
        let mut zip = zip::ZipWriter::new(file);
        build(&mut zip);
        zip.finish().unwrap();
    }

    fn add_file(zip: &mut zip::ZipWriter<File>, name: &str, body: &[u8], mode: u32) {
        zip.start_file(name, SimpleFileOptions::default().unix_permissions(mode))
            .unwrap();
        zip.write_all(body).unwrap();
    }

    #[test]
    fn unzips_files_dirs_modes_and_inner_symlinks() {
        let tmp = tempfile::tempdir().unwrap();
        let zip_path = tmp.path().join("app.zip");
        write_zip(&zip_path, |zip| {
            zip.add_directory("bin/", SimpleFileOptions::default())
                .unwrap();
            add_file(zip, "bin/run", b"#!/bin/sh\necho hi\n", 0o755);
            add_file(zip, "public/index.html", b"<h1>hi</h1>", 0o644);
            zip.add_symlink("public/run", "../bin/run", SimpleFileOptions::default())
                .unwrap();
        });
        let dest = tmp.path().join("out");
        unpack_zip(&zip_path, &dest).unwrap();
        assert_eq!(
            fs::read(dest.join("public/index.html")).unwrap(),
            b"<h1>hi</h1>"
        );
        let mode = fs::metadata(dest.join("bin/run"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o755);
        assert_eq!(
            fs::read_link(dest.join("public/run")).unwrap(),
            Path::new("../bin/run")
        );
        assert_eq!(
            fs::read(dest.join("public/run")).unwrap(),
            b"#!/bin/sh\necho hi\n"
        );
    }

    fn rejected(
        build: impl FnOnce(&mut zip::ZipWriter<File>),
    ) -> (String, PathBuf, tempfile::TempDir) {
        let tmp = tempfile::tempdir().unwrap();
        let zip_path = tmp.path().join("bad.zip");
        write_zip(&zip_path, build);
        let dest = tmp.path().join("out");
        let err = unpack_zip(&zip_path, &dest).unwrap_err();
        assert!(matches!(err, LifecycleError::UnsafeEntry { .. }), "{err:?}");
        (err.to_string(), dest, tmp)
    }

    #[test]
    fn rejects_parent_dir_entries_and_writes_nothing() {
        let (msg, dest, tmp) = rejected(|zip| {
            add_file(zip, "ok.txt", b"fine", 0o644);
            add_file(zip, "../escaped.txt", b"evil", 0o644);
        });
        assert!(
            msg.contains("../escaped.txt") && msg.contains(".."),
            "{msg}"
        );
        assert!(
            !dest.join("ok.txt").exists(),
            "a rejected zip must change nothing"
        );
        assert!(!tmp.path().join("escaped.txt").exists());
    }

    #[test]
    fn rejects_absolute_entries() {
        let (msg, _, _tmp) = rejected(|zip| add_file(zip, "/etc/evil", b"evil", 0o644));
        assert!(
            msg.contains("/etc/evil") && msg.contains("absolute"),
            "{msg}"
        );
    }

    #[test]
    fn rejects_symlinks_out_of_the_destination() {
        let (msg, _, _tmp) = rejected(|zip| {
            zip.add_symlink("link", "../../etc", SimpleFileOptions::default())
                .unwrap();
        });
        assert!(msg.contains("\"link\"") && msg.contains("outside"), "{msg}");
        let (msg, _, _tmp) = rejected(|zip| {
            zip.add_symlink("a/shadow", "/etc/shadow", SimpleFileOptions::default())
                .unwrap();
        });
        assert!(
            msg.contains("a/shadow") && msg.contains("absolute"),
            "{msg}"
        );
    }

    #[test]
    fn never_writes_through_a_symlink_already_in_the_destination() {
        let tmp = tempfile::tempdir().unwrap();
        let outside = tmp.path().join("outside");
        fs::create_dir(&outside).unwrap();
        let dest = tmp.path().join("out");
        fs::create_dir(&dest).unwrap();
        std::os::unix::fs::symlink(&outside, dest.join("sub")).unwrap();
        let zip_path = tmp.path().join("z.zip");
        write_zip(&zip_path, |zip| add_file(zip, "sub/file", b"x", 0o644));
        let err = unpack_zip(&zip_path, &dest).unwrap_err();
        assert!(err.to_string().contains("through a symlink"), "{err}");
        assert!(!outside.join("file").exists());
    }

    #[test]
    fn corrupt_zip_is_a_bad_archive() {
        let tmp = tempfile::tempdir().unwrap();
        let zip_path = tmp.path().join("corrupt.zip");
        fs::write(&zip_path, b"this is not a zip").unwrap();
        let err = unpack_zip(&zip_path, &tmp.path().join("out")).unwrap_err();
        assert!(matches!(err, LifecycleError::BadArchive { .. }), "{err:?}");
    }

    #[test]
    fn droplet_round_trip_keeps_layout_modes_and_symlinks() {
        let tmp = tempfile::tempdir().unwrap();
        let home = tmp.path().join("home");
        let app = home.join("app");
        let deps = home.join("deps");
        fs::create_dir_all(app.join("bin")).unwrap();
        fs::create_dir_all(deps.join("0/venv/bin")).unwrap();
        fs::write(app.join("bin/start"), "#!/bin/sh\n").unwrap();
        fs::set_permissions(app.join("bin/start"), fs::Permissions::from_mode(0o755)).unwrap();
        std::os::unix::fs::symlink("/usr/bin/python3", deps.join("0/venv/bin/python")).unwrap();
        let out = tmp.path().join("droplet.tgz");
        write_droplet(
            &out,
            &DropletContents {
                app_dir: &app,
                deps_dir: &deps,
                profile_dir: &home.join("profile.d"),
                staging_info: b"{\"detected_buildpack\":\"x\",\"start_command\":\"y\"}",
            },
        )
        .unwrap();

        let dest = tmp.path().join("unpacked");
        let uid = nix_ids();
        unpack_droplet(&out, &dest, uid.0, uid.1).unwrap();
        for name in ["app", "deps", "profile.d", "tmp", "logs"] {
            assert!(dest.join(name).is_dir(), "{name} missing");
        }
        assert!(fs::read_to_string(dest.join("staging_info.yml"))
            .unwrap()
            .contains("detected_buildpack"));
        let mode = fs::metadata(dest.join("app/bin/start"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o755);
        assert_eq!(
            fs::read_link(dest.join("deps/0/venv/bin/python")).unwrap(),
            Path::new("/usr/bin/python3")
        );
    }

    /// The current user's uid and gid (the owner of a file it creates), so
    /// the test works as root and as anyone else.
    fn nix_ids() -> (u32, u32) {
        use std::os::unix::fs::MetadataExt;
        let me = tempfile::tempfile().unwrap().metadata().unwrap();
        (me.uid(), me.gid())
    }

    /// Unpacks for uid 2000 (CF's vcap) when the test runs as root, else for
    /// the current user; either way every entry must end up owned by it.
    #[test]
    fn unpacked_entries_belong_to_the_given_owner() {
        use std::os::unix::fs::MetadataExt;
        let me = nix_ids();
        let owner = if me.0 == 0 { (2000, 2000) } else { me };
        let tmp = tempfile::tempdir().unwrap();
        let zip_path = tmp.path().join("app.zip");
        write_zip(&zip_path, |zip| {
            add_file(zip, "deep/nested/file.txt", b"x", 0o644);
            zip.add_symlink("deep/link", "nested/file.txt", SimpleFileOptions::default())
                .unwrap();
        });
        let app = tmp.path().join("home/app");
        unpack_zip_owned(&zip_path, &app, Some(owner)).unwrap();
        let droplet = tmp.path().join("droplet.tgz");
        write_droplet(
            &droplet,
            &DropletContents {
                app_dir: &app,
                deps_dir: &tmp.path().join("home/deps-missing-is-created"),
                profile_dir: &tmp.path().join("home/profile.d"),
                staging_info: b"{}",
            },
        )
        .unwrap_err();
        assert!(
            !droplet.exists(),
            "a failed droplet must not appear half-written"
        );
        fs::create_dir_all(tmp.path().join("home/deps")).unwrap();
        write_droplet(
            &droplet,
            &DropletContents {
                app_dir: &app,
                deps_dir: &tmp.path().join("home/deps"),
                profile_dir: &tmp.path().join("home/profile.d"),
                staging_info: b"{}",
            },
        )
        .unwrap();
        let dest = tmp.path().join("instance");
        unpack_droplet(&droplet, &dest, owner.0, owner.1).unwrap();
        for tree in [app.as_path(), dest.as_path()] {
            let mut stack = vec![tree.to_path_buf()];
            let mut seen = 0;
            while let Some(path) = stack.pop() {
                let meta = fs::symlink_metadata(&path).unwrap();
                assert_eq!((meta.uid(), meta.gid()), owner, "{}", path.display());
                seen += 1;
                if meta.is_dir() {
                    stack.extend(fs::read_dir(&path).unwrap().map(|e| e.unwrap().path()));
                }
            }
            assert!(seen >= 5, "{} has only {seen} entries", tree.display());
        }
    }

    fn write_tgz(path: &Path, build: impl FnOnce(&mut tar::Builder<GzEncoder<File>>)) {
        let gz = GzEncoder::new(File::create(path).unwrap(), flate2::Compression::fast());
        let mut tar = tar::Builder::new(gz);
        build(&mut tar);
        tar.into_inner().unwrap().finish().unwrap();
    }

    /// Writes a raw tar header name, bypassing the tar crate's own `..` checks,
    /// so the test can hand `unpack_droplet` what a hostile droplet would hold.
    fn raw_entry(
        tar: &mut tar::Builder<GzEncoder<File>>,
        name: &str,
        kind: tar::EntryType,
        link: Option<&str>,
    ) {
        let mut header = tar::Header::new_old();
        header.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
        header.set_entry_type(kind);
        header.set_mode(0o644);
        header.set_size(if kind == tar::EntryType::Regular {
            4
        } else {
            0
        });
        if let Some(link) = link {
            header.as_old_mut().linkname[..link.len()].copy_from_slice(link.as_bytes());
        }
        header.set_cksum();
        let body: &[u8] = if kind == tar::EntryType::Regular {
            b"evil"
        } else {
            b""
        };
        tar.append(&header, body).unwrap();
    }

    #[test]
    fn droplet_unpack_rejects_escapes() {
        let ids = nix_ids();
        type Build = Box<dyn Fn(&mut tar::Builder<GzEncoder<File>>)>;
        let cases: Vec<(&str, Build, &str)> = vec![
            (
                "dotdot",
                Box::new(|t| raw_entry(t, "../evil", tar::EntryType::Regular, None)),
                "..",
            ),
            (
                "absolute",
                Box::new(|t| raw_entry(t, "/evil", tar::EntryType::Regular, None)),
                "absolute",
            ),
            (
                "through-symlink",
                Box::new(|t| {
                    raw_entry(t, "app", tar::EntryType::Symlink, Some("/"));
                    raw_entry(t, "app/evil", tar::EntryType::Regular, None);
                }),
                "through a symlink",
            ),
            (
                "hardlink-out",
                Box::new(|t| raw_entry(t, "x", tar::EntryType::Link, Some("../../etc/passwd"))),
                "hard link",
            ),
        ];
        for (label, build, expected) in cases {
            let tmp = tempfile::tempdir().unwrap();
            let tgz = tmp.path().join("d.tgz");
            write_tgz(&tgz, |t| build(t));
            let dest = tmp.path().join("home");
            let err = unpack_droplet(&tgz, &dest, ids.0, ids.1).unwrap_err();
            assert!(err.to_string().contains(expected), "{label}: {err}");
            assert!(!tmp.path().join("evil").exists(), "{label} escaped");
        }
    }
}
