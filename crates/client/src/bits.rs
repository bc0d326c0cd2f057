//! The application bits of a push: walking the app directory (honouring
//! `.cfignore`), fingerprinting files for `resource_matches`, and zipping what
//! the platform does not already have — with file modes, and symlinks kept as
//! zip symlink entries.

use std::collections::HashSet;
use std::io::{Read as _, Write as _};
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use sha1::{Digest as _, Sha1};
use zip::write::SimpleFileOptions;
use zip::{CompressionMethod, ZipWriter};

use crate::cfignore::IgnoreMatcher;
use crate::error::{ClientError, Result};
use crate::resources::{Checksum, MatchResource};

/// What an entry of the app directory is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryKind {
    /// A regular file, with its size and SHA1 (hex).
    File {
        /// Size in bytes.
        size: u64,
        /// SHA1 of the contents, hex.
        sha1: String,
    },
    /// A directory.
    Dir,
    /// A symbolic link and where it points (kept as written, not followed).
    Symlink {
        /// The link's target.
        target: String,
    },
}

/// One entry of an app directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppEntry {
    /// Path relative to the app directory, `/`-separated, no trailing `/`.
    pub path: String,
    /// Where it is on disk.
    pub abs: PathBuf,
    /// Permission bits (`0o7777` at most).
    pub mode: u32,
    /// File, directory or symlink.
    pub kind: EntryKind,
}

/// Every entry of `dir` that its `.cfignore` (and the defaults) keep, sorted
/// by path.
pub fn collect_app(dir: &Path) -> Result<Vec<AppEntry>> {
    ensure_dir(dir)?;
    let cfignore = dir.join(".cfignore");
    let text = match std::fs::read_to_string(&cfignore) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(source) => return Err(io_err(&cfignore, source)),
    };
    collect(dir, &IgnoreMatcher::with_defaults(&text)?)
}

/// Every entry of `dir` that `ignore` keeps, sorted by path.
pub fn collect(dir: &Path, ignore: &IgnoreMatcher) -> Result<Vec<AppEntry>> {
    ensure_dir(dir)?;
    let mut out = Vec::new();
    walk(dir, "", ignore, &mut out)?;
    out.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(out)
}

fn walk(dir: &Path, prefix: &str, ignore: &IgnoreMatcher, out: &mut Vec<AppEntry>) -> Result<()> {
    let entries = std::fs::read_dir(dir).map_err(|e| io_err(dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| io_err(dir, e))?;
        let abs = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        let rel = if prefix.is_empty() {
            name
        } else {
            format!("{prefix}/{name}")
        };
        let meta = std::fs::symlink_metadata(&abs).map_err(|e| io_err(&abs, e))?;
        let mode = meta.permissions().mode() & 0o7777;
        let ft = meta.file_type();
        if ft.is_symlink() {
            if ignore.is_ignored(&rel, false) {
                continue;
            }
            let target = std::fs::read_link(&abs).map_err(|e| io_err(&abs, e))?;
            out.push(AppEntry {
                path: rel,
                abs,
                mode: 0o777,
                kind: EntryKind::Symlink {
                    target: target.to_string_lossy().into_owned(),
                },
            });
        } else if ft.is_dir() {
            if ignore.is_ignored(&rel, true) {
                continue;
            }
            walk(&abs, &rel, ignore, out)?;
            out.push(AppEntry {
                path: rel,
                abs,
                mode,
                kind: EntryKind::Dir,
            });
        } else if ft.is_file() {
            if ignore.is_ignored(&rel, false) {
                continue;
            }
            let (size, sha1) = fingerprint(&abs)?;
            out.push(AppEntry {
                path: rel,
                abs,
                mode,
                kind: EntryKind::File { size, sha1 },
            });
        }
        // Sockets, fifos and devices are not app content; cf skips them too.
    }
    Ok(())
}

fn ensure_dir(dir: &Path) -> Result<()> {
    let meta = std::fs::metadata(dir).map_err(|e| io_err(dir, e))?;
    if meta.is_dir() {
        Ok(())
    } else {
        Err(ClientError::Invalid {
            what: dir.display().to_string(),
            detail: "is not a directory".into(),
        })
    }
}

fn fingerprint(path: &Path) -> Result<(u64, String)> {
    let mut file = std::fs::File::open(path).map_err(|e| io_err(path, e))?;
    let mut hasher = Sha1::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut size = 0u64;
    loop {
        let n = file.read(&mut buf).map_err(|e| io_err(path, e))?;
        if n == 0 {
            break;
        }
        size += n as u64;
        hasher.update(&buf[..n]);
    }
    Ok((size, hex::encode(hasher.finalize())))
}

/// The regular, non-empty files of `entries` as `resource_matches` asks for them.
pub fn match_resources(entries: &[AppEntry]) -> Vec<MatchResource> {
    entries
        .iter()
        .filter_map(|e| match &e.kind {
            EntryKind::File { size, sha1 } if *size > 0 => Some(MatchResource {
                checksum: Checksum {
                    value: sha1.clone(),
                },
                size_in_bytes: *size,
                path: e.path.clone(),
                mode: format!("{:o}", e.mode),
            }),
            _ => None,
        })
        .collect()
}

/// Zips `entries`, except the files whose paths are in `skip` (those the
/// platform already has). Directories become `dir/` entries, symlinks zip
/// symlink entries; every entry keeps its Unix mode.
pub fn build_zip(entries: &[AppEntry], skip: &HashSet<String>) -> Result<Vec<u8>> {
    let mut zip = ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let zerr = |path: &str, source| ClientError::Zip {
        path: path.to_string(),
        source,
    };
    for e in entries {
        let opts = SimpleFileOptions::default()
            .compression_method(CompressionMethod::Deflated)
            .unix_permissions(e.mode);
        match &e.kind {
            EntryKind::Dir => {
                zip.add_directory(format!("{}/", e.path), opts)
                    .map_err(|s| zerr(&e.path, s))?;
            }
            EntryKind::Symlink { target } => {
                zip.add_symlink(e.path.clone(), target.clone(), opts)
                    .map_err(|s| zerr(&e.path, s))?;
            }
            EntryKind::File { size, .. } => {
                if skip.contains(&e.path) {
                    continue;
                }
                let opts = opts.large_file(*size >= u64::from(u32::MAX));
                zip.start_file(e.path.clone(), opts)
                    .map_err(|s| zerr(&e.path, s))?;
                let mut f = std::fs::File::open(&e.abs).map_err(|s| io_err(&e.abs, s))?;
                std::io::copy(&mut f, &mut zip).map_err(|s| io_err(&e.abs, s))?;
            }
        }
    }
    let cursor = zip.finish().map_err(|s| zerr("(end of archive)", s))?;
    let mut bytes = cursor.into_inner();
    bytes.flush().map_err(|s| io_err(Path::new("(zip)"), s))?;
    Ok(bytes)
}

/// Zips a whole directory (a custom buildpack), ignoring nothing.
pub fn zip_dir(dir: &Path) -> Result<Vec<u8>> {
    let entries = collect(dir, &IgnoreMatcher::none())?;
    build_zip(&entries, &HashSet::new())
}

fn io_err(path: &Path, source: std::io::Error) -> ClientError {
    ClientError::Io {
        path: path.display().to_string(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, rel: &str, body: &str, mode: u32) {
        let p = dir.join(rel);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).expect("mkdir");
        }
        std::fs::write(&p, body).expect("write");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).expect("chmod");
    }

    fn app_dir() -> tempfile::TempDir {
        let tmp = tempfile::tempdir().expect("tempdir");
        let d = tmp.path();
        write(d, "index.html", "<h1>hi</h1>", 0o644);
        write(d, "bin/run.sh", "#!/bin/sh\necho run\n", 0o755);
        write(d, "debug.log", "noise", 0o644);
        write(d, "manifest.yml", "applications: []", 0o644);
        write(d, ".git/HEAD", "ref: refs/heads/main", 0o644);
        write(d, "node_modules/x/index.js", "x", 0o644);
        write(d, ".cfignore", "*.log\nnode_modules/\n", 0o644);
        write(d, "empty.txt", "", 0o600);
        std::os::unix::fs::symlink("index.html", d.join("home.html")).expect("symlink");
        tmp
    }

    #[test]
    fn collect_honours_cfignore_and_defaults() {
        let tmp = app_dir();
        let entries = collect_app(tmp.path()).expect("collect");
        let paths: Vec<&str> = entries.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(
            paths,
            vec!["bin", "bin/run.sh", "empty.txt", "home.html", "index.html"]
        );
        let run = entries
            .iter()
            .find(|e| e.path == "bin/run.sh")
            .expect("run.sh");
        assert_eq!(run.mode, 0o755);
        let link = entries
            .iter()
            .find(|e| e.path == "home.html")
            .expect("link");
        assert_eq!(
            link.kind,
            EntryKind::Symlink {
                target: "index.html".into()
            }
        );
    }

    #[test]
    fn match_resources_lists_non_empty_files_with_sha1_and_mode() {
        let tmp = app_dir();
        let entries = collect_app(tmp.path()).expect("collect");
        let res = match_resources(&entries);
        let paths: Vec<&str> = res.iter().map(|r| r.path.as_str()).collect();
        assert_eq!(paths, vec!["bin/run.sh", "index.html"]);
        let index = &res[1];
        // sha1("<h1>hi</h1>")
        assert_eq!(
            index.checksum.value,
            hex::encode(Sha1::digest(b"<h1>hi</h1>"))
        );
        assert_eq!(index.size_in_bytes, 11);
        assert_eq!(index.mode, "644");
        assert_eq!(res[0].mode, "755");
    }

    #[test]
    fn zip_keeps_modes_symlinks_and_skips_matched_files() {
        let tmp = app_dir();
        let entries = collect_app(tmp.path()).expect("collect");
        let skip = HashSet::from(["index.html".to_string()]);
        let bytes = build_zip(&entries, &skip).expect("zip");
        let mut archive = zip::ZipArchive::new(std::io::Cursor::new(bytes)).expect("valid zip");
        let mut names: Vec<String> = archive.file_names().map(str::to_string).collect();
        names.sort();
        assert_eq!(names, vec!["bin/", "bin/run.sh", "empty.txt", "home.html"]);

        let mut run = archive.by_name("bin/run.sh").expect("run.sh");
        assert_eq!(run.unix_mode().map(|m| m & 0o7777), Some(0o755));
        let mut body = String::new();
        run.read_to_string(&mut body).expect("read");
        assert_eq!(body, "#!/bin/sh\necho run\n");
        drop(run);

        let mut link = archive.by_name("home.html").expect("link");
        assert!(link.is_symlink(), "home.html must be a symlink entry");
        let mut target = String::new();
        link.read_to_string(&mut target).expect("read");
        assert_eq!(target, "index.html");
        drop(link);

        let empty = archive.by_name("empty.txt").expect("empty");
        assert_eq!(empty.unix_mode().map(|m| m & 0o7777), Some(0o600));
    }

    #[test]
    fn zip_dir_takes_everything() {
        let tmp = tempfile::tempdir().expect("tempdir");
        write(tmp.path(), "bin/detect", "#!/bin/sh\n", 0o755);
        write(tmp.path(), "manifest.yml", "x", 0o644);
        let bytes = zip_dir(tmp.path()).expect("zip");
        let archive = zip::ZipArchive::new(std::io::Cursor::new(bytes)).expect("zip");
        let mut names: Vec<&str> = archive.file_names().collect();
        names.sort();
        assert_eq!(names, vec!["bin/", "bin/detect", "manifest.yml"]);
    }

    #[test]
    fn collect_rejects_a_file() {
        let tmp = tempfile::tempdir().expect("tempdir");
        write(tmp.path(), "f", "x", 0o644);
        let err = collect_app(&tmp.path().join("f")).expect_err("not a dir");
        assert!(err.to_string().contains("is not a directory"), "{err}");
    }
}
