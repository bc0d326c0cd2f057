//! Staging tasks: a package becomes a droplet inside a container.
//!
//! The cell prepares a staging directory on the host (the unpacked package,
//! empty deps, cache and output directories, all owned by `vcap`), mounts it
//! with the buildpacks and the lifecycle binary into a container on the
//! stack, and runs `ingot lifecycle builder`. Its output is the app's `STG`
//! log. The droplet it writes is stored in the blobstore; the staging
//! directory and the container are removed whatever the outcome.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use ingot_containers::{BindMount, ContainerSpec, ProcessSpec};
use ingot_logs::{forward_lines, Envelope, LogKind};
use sha2::Digest;

use crate::cell::{limits_for, Cell, VCAP};

/// What the API asks to stage.
#[derive(Debug, Clone)]
pub struct StagingRequest {
    /// The build's guid (also names the staging container).
    pub build_guid: String,
    /// App guid; staging logs use it as source id.
    pub app_guid: String,
    /// App name.
    pub app_name: String,
    /// Space guid.
    pub space_guid: String,
    /// Space name.
    pub space_name: String,
    /// Organization guid.
    pub org_guid: String,
    /// Organization name.
    pub org_name: String,
    /// Blob key of the package zip.
    pub package_key: String,
    /// Blob key the droplet is stored under.
    pub droplet_key: String,
    /// Buildpacks in order; empty means detect among the built-in ones.
    pub buildpacks: Vec<BuildpackSource>,
    /// Run `buildpacks` in order without detection (the user named them);
    /// otherwise the first whose detect succeeds wins.
    pub skip_detect: bool,
    /// The app's environment variables (staging sees them, as in CF).
    pub environment: BTreeMap<String, String>,
    /// Memory limit of the staging container.
    pub memory_mb: u64,
    /// Disk limit of the staging container.
    pub disk_mb: u64,
    /// Where staging may open connections (the space's staging security
    /// groups); empty allows nothing.
    pub egress: Vec<ingot_containers::EgressRule>,
}

/// Where a buildpack comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BuildpackSource {
    /// One of the buildpacks built into Ingot, by CF name.
    Builtin(String),
    /// An uploaded zip in the blobstore (an admin buildpack).
    Zip {
        /// The buildpack's name.
        name: String,
        /// Its blob key.
        blob_key: String,
    },
    /// A zip downloaded over HTTP(S) when staging starts.
    Url(String),
}

/// How long staging may take, as Cloud Controller's default staging timeout.
const STAGING_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(15 * 60);

/// The largest buildpack zip a URL may deliver.
const MAX_BUILDPACK_DOWNLOAD: u64 = 512 * 1024 * 1024;

/// A staged droplet.
#[derive(Debug, Clone, PartialEq)]
pub struct StagingOutcome {
    /// What the buildpack's detect printed.
    pub detected_buildpack: String,
    /// The name of the buildpack that produced the start command.
    pub buildpack_name: String,
    /// Process types and their commands.
    pub process_types: BTreeMap<String, String>,
    /// The droplet's default start command.
    pub start_command: String,
    /// SHA-256 of the droplet tarball.
    pub checksum_sha256: String,
}

/// Why staging failed, in CF's words.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code} - {message}")]
pub struct StagingFailure {
    /// `NoAppDetectedError`, `BuildpackCompileFailed`, `BuildpackReleaseFailed`, `StagingError`.
    pub code: String,
    /// The detail shown to the user.
    pub message: String,
}

impl StagingFailure {
    fn staging(message: impl Into<String>) -> Self {
        Self {
            code: "StagingError".into(),
            message: message.into(),
        }
    }
}

pub(crate) async fn stage(
    cell: &Arc<Cell>,
    request: StagingRequest,
) -> Result<StagingOutcome, StagingFailure> {
    // Everything staging writes — the app, its dependencies, the cache and
    // the droplet — lives in a volume as big as the staging disk limit, so
    // a buildpack cannot fill the host's disk.
    let volume = (request.disk_mb > 0).then(|| staging_id(&request.build_guid));
    let dir = match &volume {
        Some(name) => match cell
            .containers
            .create_volume(name, request.disk_mb << 20)
            .await
        {
            Ok(dir) => dir,
            Err(err) => {
                return Err(StagingFailure::staging(format!(
                    "creating the staging volume: {err}"
                )))
            }
        },
        None => cell
            .config
            .work_dir
            .join("staging")
            .join(&request.build_guid),
    };
    let log = |line: String| {
        cell.logs.emit(Envelope::log(
            &request.app_guid,
            "0",
            "STG",
            line,
            LogKind::Out,
        ));
    };
    log("Creating container".to_string());
    let result = stage_in(cell, &request, &dir, &log).await;
    cell.metrics.staged(result.is_ok());
    let _ = cell
        .containers
        .destroy(&staging_id(&request.build_guid))
        .await;
    match &volume {
        Some(name) => {
            if let Err(err) = cell.containers.remove_volume(name).await {
                tracing::warn!(volume = %name, error = %err, "cannot remove the staging volume");
            }
        }
        None => {
            if let Err(err) = tokio::fs::remove_dir_all(&dir).await {
                if err.kind() != std::io::ErrorKind::NotFound {
                    tracing::warn!(dir = %dir.display(), error = %err, "cannot remove the staging directory");
                }
            }
        }
    }
    match &result {
        Ok(_) => log("Uploading complete".to_string()),
        Err(failure) => cell.logs.emit(Envelope::log(
            &request.app_guid,
            "0",
            "STG",
            format!("Staging failed: {failure}"),
            LogKind::Err,
        )),
    }
    result
}

fn staging_id(build_guid: &str) -> String {
    format!("staging-{build_guid}")
}

async fn stage_in(
    cell: &Arc<Cell>,
    request: &StagingRequest,
    dir: &Path,
    log: &impl Fn(String),
) -> Result<StagingOutcome, StagingFailure> {
    let fail = |what: &str| {
        let what = what.to_string();
        move |err: std::io::Error| StagingFailure::staging(format!("{what}: {err}"))
    };
    let (app, deps, cache, output) = (
        dir.join("app"),
        dir.join("deps"),
        dir.join("cache"),
        dir.join("output"),
    );
    for sub in [&app, &deps, &cache, &output] {
        tokio::fs::create_dir_all(sub)
            .await
            .map_err(fail("creating the staging directory"))?;
    }
    let package = dir.join("package.zip");
    cell.blobs
        .get_to_file(&request.package_key, &package)
        .await
        .map_err(|err| StagingFailure::staging(format!("downloading the package: {err}")))?;
    let (package2, app2) = (package.clone(), app.clone());
    tokio::task::spawn_blocking(move || ingot_lifecycle::unpack_zip(&package2, &app2))
        .await
        .map_err(|err| StagingFailure::staging(err.to_string()))?
        .map_err(|err| StagingFailure::staging(format!("unpacking the package: {err}")))?;
    let _ = tokio::fs::remove_file(&package).await;
    for sub in [&app, &deps, &cache, &output] {
        chown_tree(sub).map_err(fail("handing the staging directory to vcap"))?;
    }

    let buildpacks = resolve_buildpacks(cell, request, dir).await?;
    let order: Vec<String> = buildpacks.iter().map(|(name, _)| name.clone()).collect();
    let mut mounts = vec![
        cell.lifecycle_mount(),
        bind(&app, "/home/vcap/app", false),
        bind(&deps, "/home/vcap/deps", false),
        bind(&cache, "/tmp/cache", false),
        bind(&output, "/tmp/output", false),
    ];
    for (name, path) in &buildpacks {
        mounts.push(bind(path, &format!("/tmp/buildpacks/{name}"), true));
    }
    let mut args = vec![
        ingot_lifecycle::LIFECYCLE_PATH.to_string(),
        "lifecycle".into(),
        "builder".into(),
        "--buildpack-order".into(),
        order.join(","),
        "--output-droplet".into(),
        "/tmp/output/droplet.tgz".into(),
        "--output-metadata".into(),
        "/tmp/output/result.json".into(),
    ];
    if request.skip_detect && !request.buildpacks.is_empty() {
        args.push("--skip-detect".into());
    }
    let spec = ContainerSpec {
        id: staging_id(&request.build_guid),
        hostname: staging_id(&request.build_guid),
        stack: cell.stack.clone(),
        layers: Vec::new(),
        bind_mounts: mounts,
        process: ProcessSpec {
            args,
            env: crate::env::staging_environment(&cell.config, request),
            cwd: "/home/vcap/app".into(),
            uid: VCAP,
            gid: VCAP,
        },
        limits: limits_for(request.memory_mb, request.disk_mb),
        network: true,
        egress: request.egress.clone(),
    };
    let container =
        cell.containers.create(spec).await.map_err(|err| {
            StagingFailure::staging(format!("creating the staging container: {err}"))
        })?;
    log("Successfully created container".to_string());
    log("Staging app and tracing dependencies".to_string());
    let out = forward_lines(
        container.stdout,
        Arc::clone(&cell.logs),
        request.app_guid.clone(),
        "0".into(),
        "STG".into(),
        LogKind::Out,
    );
    let err = forward_lines(
        container.stderr,
        Arc::clone(&cell.logs),
        request.app_guid.clone(),
        "0".into(),
        "STG".into(),
        LogKind::Err,
    );
    let status = match tokio::time::timeout(STAGING_TIMEOUT, container.exit).await {
        Ok(status) => status.unwrap_or(ingot_containers::ExitStatus::UNKNOWN),
        Err(_) => {
            return Err(StagingFailure::staging(format!(
                "staging did not finish within {} minutes",
                STAGING_TIMEOUT.as_secs() / 60
            )))
        }
    };
    let _ = out.await;
    let _ = err.await;
    if status.code != 0 {
        return Err(failure_for(status));
    }
    // Everything under /tmp/output was written by the buildpacks, as vcap:
    // read it without following links and only if it is a plain file, into
    // a copy the container never saw (the platform runs as root).
    let result_json = copy_out(
        &output.join("result.json"),
        &dir.join("result.json"),
        1024 * 1024,
    )
    .await
    .map_err(fail("reading the staging result"))?;
    let result: ingot_lifecycle::StagingResult = serde_json::from_slice(
        &tokio::fs::read(&result_json)
            .await
            .map_err(fail("reading the staging result"))?,
    )
    .map_err(|err| StagingFailure::staging(format!("reading the staging result: {err}")))?;
    let droplet = copy_out(
        &output.join("droplet.tgz"),
        &dir.join("droplet.tgz"),
        request.disk_mb * 1024 * 1024,
    )
    .await
    .map_err(fail("reading the droplet"))?;
    let checksum = sha256_file(&droplet)
        .await
        .map_err(fail("reading the droplet"))?;
    log("Uploading droplet...".to_string());
    cell.blobs
        .put_file(&request.droplet_key, &droplet)
        .await
        .map_err(|err| StagingFailure::staging(format!("storing the droplet: {err}")))?;
    Ok(StagingOutcome {
        detected_buildpack: result.detected_buildpack,
        buildpack_name: result.buildpack_name,
        process_types: result.process_types,
        start_command: result.start_command,
        checksum_sha256: checksum,
    })
}

fn failure_for(status: ingot_containers::ExitStatus) -> StagingFailure {
    let (code, message) = match status.code {
        ingot_lifecycle::EXIT_NO_APP_DETECTED => (
            "NoAppDetectedError",
            ingot_lifecycle::DETECT_FAIL_MSG.to_string(),
        ),
        ingot_lifecycle::EXIT_RELEASE_FAILED => (
            "BuildpackReleaseFailed",
            ingot_lifecycle::RELEASE_FAIL_MSG.to_string(),
        ),
        ingot_lifecycle::EXIT_BUILDPACK_FAILED
        | ingot_lifecycle::EXIT_SUPPLY_FAILED
        | ingot_lifecycle::EXIT_FINALIZE_FAILED => (
            "BuildpackCompileFailed",
            ingot_lifecycle::COMPILE_FAIL_MSG.to_string(),
        ),
        _ if status.oom_killed => ("StagingError", "staging ran out of memory".to_string()),
        code => (
            "StagingError",
            format!("staging failed with exit status {code}"),
        ),
    };
    StagingFailure {
        code: code.into(),
        message,
    }
}

/// Turns each requested buildpack into a directory on the host.
async fn resolve_buildpacks(
    cell: &Arc<Cell>,
    request: &StagingRequest,
    dir: &Path,
) -> Result<Vec<(String, PathBuf)>, StagingFailure> {
    if request.buildpacks.is_empty() {
        return Ok(cell.builtin_buildpacks.clone());
    }
    let mut resolved = Vec::new();
    for (position, source) in request.buildpacks.iter().enumerate() {
        match source {
            BuildpackSource::Builtin(name) => {
                let found = cell
                    .builtin_buildpacks
                    .iter()
                    .find(|(builtin, _)| builtin == name);
                let (_, path) = found.ok_or_else(|| StagingFailure {
                    code: "StagingError".into(),
                    message: format!("buildpack {name:?} is not available on this cell"),
                })?;
                resolved.push((name.clone(), path.clone()));
            }
            BuildpackSource::Zip { name, blob_key } => {
                let zip = dir.join(format!("buildpack-{position}.zip"));
                cell.blobs
                    .get_to_file(blob_key, &zip)
                    .await
                    .map_err(|err| {
                        StagingFailure::staging(format!("downloading buildpack {name}: {err}"))
                    })?;
                let root = unpack_buildpack(&zip, &dir.join(format!("buildpack-{position}")), name)
                    .await?;
                resolved.push((safe_name(name, position), root));
            }
            BuildpackSource::Url(url) => {
                cell.logs.emit(Envelope::log(
                    &request.app_guid,
                    "0",
                    "STG",
                    format!("Downloading buildpack {url}..."),
                    LogKind::Out,
                ));
                let zip = dir.join(format!("buildpack-{position}.zip"));
                download(url, &zip).await?;
                let root =
                    unpack_buildpack(&zip, &dir.join(format!("buildpack-{position}")), url).await?;
                resolved.push((safe_name(&url_name(url), position), root));
            }
        }
    }
    Ok(resolved)
}

/// Unpacks a buildpack zip (refusing entries that leave `target`) and
/// returns the directory that holds its `bin/`.
async fn unpack_buildpack(
    zip: &Path,
    target: &Path,
    name: &str,
) -> Result<PathBuf, StagingFailure> {
    let (zip2, target2) = (zip.to_path_buf(), target.to_path_buf());
    tokio::task::spawn_blocking(move || ingot_lifecycle::unpack_zip(&zip2, &target2))
        .await
        .map_err(|err| StagingFailure::staging(err.to_string()))?
        .map_err(|err| StagingFailure::staging(format!("unpacking buildpack {name}: {err}")))?;
    let _ = tokio::fs::remove_file(zip).await;
    Ok(buildpack_root(target))
}

/// Downloads a buildpack zip, refusing anything but a successful answer of
/// bounded size.
async fn download(url: &str, dest: &Path) -> Result<(), StagingFailure> {
    use tokio::io::AsyncWriteExt;
    let fail = |what: String| StagingFailure {
        code: "BuildpackCompileFailed".into(),
        message: format!("cannot download buildpack {url}: {what}"),
    };
    let client = reqwest::Client::builder()
        .connect_timeout(std::time::Duration::from_secs(10))
        .timeout(std::time::Duration::from_secs(600))
        .build()
        .map_err(|err| fail(err.to_string()))?;
    let mut response = client
        .get(url)
        .send()
        .await
        .map_err(|err| fail(err.to_string()))?;
    if !response.status().is_success() {
        return Err(fail(format!("the server answered {}", response.status())));
    }
    let mut file = tokio::fs::File::create(dest)
        .await
        .map_err(|err| fail(err.to_string()))?;
    let mut written = 0u64;
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|err| fail(err.to_string()))?
    {
        written += chunk.len() as u64;
        if written > MAX_BUILDPACK_DOWNLOAD {
            return Err(fail(format!("larger than {MAX_BUILDPACK_DOWNLOAD} bytes")));
        }
        file.write_all(&chunk)
            .await
            .map_err(|err| fail(err.to_string()))?;
    }
    file.flush().await.map_err(|err| fail(err.to_string()))?;
    Ok(())
}

/// A buildpack's name from its URL: the last path segment without `.zip`.
fn url_name(url: &str) -> String {
    let path = url.split(['?', '#']).next().unwrap_or(url);
    let last = path
        .trim_end_matches('/')
        .rsplit('/')
        .next()
        .unwrap_or("buildpack");
    last.trim_end_matches(".zip").to_string()
}

/// A zip made of a directory often holds that directory as its only entry;
/// the buildpack is wherever `bin/` is.
fn buildpack_root(dir: &Path) -> PathBuf {
    if dir.join("bin").is_dir() {
        return dir.to_path_buf();
    }
    let entries: Vec<_> = std::fs::read_dir(dir)
        .map(|rd| rd.filter_map(Result::ok).map(|e| e.path()).collect())
        .unwrap_or_default();
    match entries.as_slice() {
        [only] if only.join("bin").is_dir() => only.clone(),
        _ => dir.to_path_buf(),
    }
}

fn safe_name(name: &str, position: usize) -> String {
    let cleaned: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if cleaned.is_empty() {
        format!("buildpack_{position}")
    } else {
        cleaned
    }
}

fn bind(source: &Path, destination: &str, read_only: bool) -> BindMount {
    BindMount {
        source: source.to_path_buf(),
        destination: PathBuf::from(destination),
        read_only,
    }
}

/// Makes `vcap` own a directory tree without following symbolic links.
fn chown_tree(root: &Path) -> std::io::Result<()> {
    std::os::unix::fs::lchown(root, Some(VCAP), Some(VCAP))?;
    if root.is_dir() && !root.is_symlink() {
        for entry in std::fs::read_dir(root)? {
            chown_tree(&entry?.path())?;
        }
    }
    Ok(())
}

/// Copies a file the container wrote to a place only the platform can
/// write, refusing a symbolic link, anything but a regular file, and files
/// larger than `limit` bytes.
async fn copy_out(from: &Path, to: &Path, limit: u64) -> std::io::Result<PathBuf> {
    let (from, to) = (from.to_path_buf(), to.to_path_buf());
    tokio::task::spawn_blocking(move || {
        use std::io::Read;
        use std::os::unix::fs::OpenOptionsExt;
        let source = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
            .open(&from)?;
        let metadata = source.metadata()?;
        if !metadata.is_file() {
            return Err(std::io::Error::other(format!(
                "{} is not a regular file",
                from.display()
            )));
        }
        if metadata.len() > limit {
            return Err(std::io::Error::other(format!(
                "{} is larger than the staging disk limit ({limit} bytes)",
                from.display()
            )));
        }
        let mut target = std::fs::File::create(&to)?;
        let copied = std::io::copy(&mut source.take(limit + 1), &mut target)?;
        if copied > limit {
            return Err(std::io::Error::other(format!(
                "{} grew past the staging disk limit",
                from.display()
            )));
        }
        Ok(to)
    })
    .await
    .map_err(|err| std::io::Error::other(err.to_string()))?
}

async fn sha256_file(path: &Path) -> std::io::Result<String> {
    let path = path.to_path_buf();
    tokio::task::spawn_blocking(move || {
        let mut file = std::fs::File::open(&path)?;
        let mut hasher = sha2::Sha256::new();
        std::io::copy(&mut file, &mut hasher)?;
        Ok(hex::encode(hasher.finalize()))
    })
    .await
    .map_err(|err| std::io::Error::other(err.to_string()))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn copy_out_refuses_links_and_oversized_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let secret = dir.path().join("secret");
        std::fs::write(&secret, b"host secret").expect("secret");
        let planted = dir.path().join("droplet.tgz");
        std::os::unix::fs::symlink(&secret, &planted).expect("symlink");
        let err = copy_out(&planted, &dir.path().join("copy"), 1024)
            .await
            .expect_err("a link is refused");
        assert!(
            err.to_string().contains("symbolic") || err.raw_os_error() == Some(libc::ELOOP),
            "{err}"
        );
        assert!(!dir.path().join("copy").exists());

        let fifo = dir.path().join("fifo");
        nix_mkfifo(&fifo);
        let err = copy_out(&fifo, &dir.path().join("copy"), 1024)
            .await
            .expect_err("a fifo is refused");
        assert!(err.to_string().contains("not a regular file"), "{err}");

        let big = dir.path().join("big");
        std::fs::write(&big, vec![0u8; 2048]).expect("big");
        let err = copy_out(&big, &dir.path().join("copy"), 1024)
            .await
            .expect_err("too big");
        assert!(err.to_string().contains("larger than"), "{err}");

        let fine = dir.path().join("fine");
        std::fs::write(&fine, b"droplet").expect("fine");
        let copy = copy_out(&fine, &dir.path().join("copy"), 1024)
            .await
            .expect("copied");
        assert_eq!(std::fs::read(copy).expect("read"), b"droplet");
    }

    fn nix_mkfifo(path: &Path) {
        let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).expect("path");
        // SAFETY: `c` is a valid NUL-terminated path for the duration of the call.
        let rc = unsafe { libc::mkfifo(c.as_ptr(), 0o600) };
        assert_eq!(rc, 0, "mkfifo");
    }

    #[test]
    fn buildpack_names_come_from_the_url() {
        assert_eq!(
            url_name("http://127.0.0.1:8000/greeting-buildpack.zip"),
            "greeting-buildpack"
        );
        assert_eq!(url_name("https://example.com/bp.zip?token=x#frag"), "bp");
        assert_eq!(safe_name("a b/c", 0), "a_b_c");
        assert_eq!(safe_name("", 2), "buildpack_2");
    }
}
