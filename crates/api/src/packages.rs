//! Packages: create, copy (`POST /v3/packages?source_guid=`, what
//! `copy-source` uses), upload (multipart `bits` zip + matched `resources`),
//! the asynchronous check and merge of an upload, resource matching against
//! the SHA1 resource cache, download.
//!
//! An upload answers at once with the package `PROCESSING`; a background
//! task then validates the zip (no `..`, no absolute paths, no links leaving
//! the app directory, not corrupt), merges the matched resources from the
//! cache, stores the package and caches its files. Any failure leaves the
//! package `FAILED` with the reason, and nothing else changed.

use std::io::{Read, Write};
use std::path::{Component, Path as FsPath, PathBuf};

use axum::body::Body;
use axum::extract::multipart::MultipartRejection;
use axum::extract::{DefaultBodyLimit, Multipart, Path, RawQuery, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Router};
use bytes::Bytes;
use serde::Deserialize;
use serde_json::{json, Value};
use sha1::Digest;
use tokio::io::AsyncWriteExt;

use crate::apps::{audit_app, ToOne};
use crate::authz::Access;
use crate::error::{ApiError, ApiResult};
use crate::http::{below, created, index, ok, parse_json, require, show, Listed, Parent};
use crate::model::{new_guid, now, App, Metadata, Package};
use crate::store;
use crate::{Api, Principal};

/// The largest package upload accepted.
pub(crate) const MAX_UPLOAD_BYTES: u64 = 1 << 30;
/// The most an upload may unpack to (a guard against zip bombs).
const MAX_UNPACKED_BYTES: u64 = 4 << 30;
/// The largest `resources` field accepted (5000 entries with long paths fit).
const MAX_RESOURCES_BYTES: usize = 16 << 20;

pub(crate) fn routes() -> Router<Api> {
    Router::new()
        .route("/v3/packages", get(index::<Package>).post(create_package))
        .route("/v3/packages/{guid}", get(show::<Package>))
        .route(
            "/v3/packages/{guid}/upload",
            post(upload).layer(DefaultBodyLimit::disable()),
        )
        .route("/v3/packages/{guid}/download", get(download))
        .route("/v3/apps/{guid}/packages", get(below::<App, Package>))
        .route("/v3/resource_matches", post(resource_matches))
}

impl Listed for Package {
    const NAME: &'static str = "packages";
    const FILTERS: &'static [(&'static str, &'static str)] = &[
        ("guids", "guid"),
        ("states", "state"),
        ("types", "type"),
        ("app_guids", "app_guid"),
    ];
}

impl Parent for Package {
    const NAME: &'static str = "packages";
    const KEY: &'static str = "package_guid";
}

#[derive(Deserialize)]
struct NewPackage {
    #[serde(rename = "type")]
    kind: Option<String>,
    relationships: Option<PackageRelationships>,
    metadata: Option<Value>,
    /// A docker package's `{image, username, password}`.
    data: Option<DockerData>,
}

/// The `data` of a docker package.
#[derive(Deserialize, Default)]
struct DockerData {
    image: Option<String>,
    username: Option<String>,
    password: Option<String>,
}

impl DockerData {
    /// The image and credentials, checked as CF checks them.
    fn validated(self) -> ApiResult<(String, Option<String>, Option<String>)> {
        let image = self.image.map(|i| i.trim().to_string()).unwrap_or_default();
        if image.is_empty() {
            return Err(ApiError::Unprocessable("Data Image required".into()));
        }
        if image.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(ApiError::Unprocessable(format!(
                "Data Image {image:?} is not a valid image reference"
            )));
        }
        let username = self.username.filter(|u| !u.is_empty());
        let password = self.password.filter(|p| !p.is_empty());
        match (&username, &password) {
            (Some(_), None) => Err(ApiError::Unprocessable(
                "Data Password is required when a username is given".into(),
            )),
            (None, Some(_)) => Err(ApiError::Unprocessable(
                "Data Username is required when a password is given".into(),
            )),
            _ => Ok((image, username, password)),
        }
    }
}

#[derive(Deserialize)]
struct PackageRelationships {
    app: Option<ToOne>,
}

async fn create_package(
    State(api): State<Api>,
    Extension(access): Extension<Access>,
    Extension(p): Extension<Principal>,
    RawQuery(q): RawQuery,
    body: Bytes,
) -> ApiResult<Response> {
    let req: NewPackage = parse_json(&body)?;
    if let Some(source) = source_guid(q.as_deref())? {
        return copy_package(&api, &access, &p, &source, req).await;
    }
    let docker = match req.kind.as_deref() {
        Some("bits") => None,
        Some("docker") => Some(req.data.unwrap_or_default().validated()?),
        _ => {
            return Err(ApiError::Unprocessable(
                "Type must be one of 'bits', 'docker'".into(),
            ))
        }
    };
    let app_guid = req
        .relationships
        .and_then(|r| r.app)
        .map(|a| a.data.guid)
        .ok_or_else(|| ApiError::Unprocessable("Relationships App can't be blank".into()))?;
    let mut tx = store::begin(&api.inner.pool).await?;
    if store::get::<App>(&mut tx, &app_guid).await?.is_none() {
        return Err(ApiError::Unprocessable(
            "App is invalid. Ensure it exists and you have access to it.".into(),
        ));
    }
    if docker.is_some() {
        crate::feature_flags::require(&mut tx, "diego_docker").await?;
    }
    let at = now();
    let (kind, state, image, docker_username, docker_password) = match docker {
        // A docker package is ready at once: there are no bits to upload.
        Some((image, username, password)) => ("docker", "READY", Some(image), username, password),
        None => ("bits", "AWAITING_UPLOAD", None, None, None),
    };
    let package = Package {
        guid: new_guid(),
        app_guid,
        kind: kind.into(),
        state: state.into(),
        error: None,
        checksum: None,
        image,
        docker_username,
        docker_password,
        created_at: at.clone(),
        updated_at: at,
        metadata: Metadata::from_request(req.metadata.as_ref()),
    };
    store::insert(&mut tx, &package).await?;
    tx.commit().await?;
    Ok(created(package.json(&api.inner.config.external_url)))
}

/// The `source_guid` query parameter of a create, if given; any other
/// parameter is refused as CF refuses unknown ones.
fn source_guid(query: Option<&str>) -> ApiResult<Option<String>> {
    let Some(query) = query.filter(|q| !q.is_empty()) else {
        return Ok(None);
    };
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(query)
        .map_err(|e| ApiError::BadQueryParameter(format!("cannot parse the query: {e}")))?;
    let mut source = None;
    for (key, value) in pairs {
        match key.as_str() {
            "source_guid" => source = Some(value),
            other => {
                return Err(ApiError::BadQueryParameter(format!(
                    "Unknown query parameter(s): '{other}'. Valid parameters are: 'source_guid'"
                )))
            }
        }
    }
    Ok(source)
}

/// `POST /v3/packages?source_guid=`: a new package of the destination app
/// with the source package's bits (or docker image), `READY` at once.
///
/// The source must be a package the user may download (its app's space
/// developer, or an admin): anything else answers 404 as if it did not
/// exist, so a copy cannot be used to probe other spaces. The destination
/// app must be writable (403 when visible but not writable, 422 when not
/// visible). The middleware checks the same; checking here too keeps the
/// rule next to the code that relies on it.
async fn copy_package(
    api: &Api,
    access: &Access,
    p: &Principal,
    source_guid: &str,
    req: NewPackage,
) -> ApiResult<Response> {
    let dest_guid = req
        .relationships
        .and_then(|r| r.app)
        .map(|a| a.data.guid)
        .ok_or_else(|| ApiError::Unprocessable("Relationships App can't be blank".into()))?;
    let invalid_app = || {
        ApiError::Unprocessable(
            "App is invalid. Ensure it exists and you have access to it.".into(),
        )
    };
    let source = {
        let mut c = api.inner.pool.acquire().await?;
        let source: Package = store::get(&mut c, source_guid)
            .await?
            .ok_or_else(|| ApiError::not_found("Package"))?;
        let source_app: Option<App> = store::get(&mut c, &source.app_guid).await?;
        let readable = source_app.is_some_and(|a| access.can_read_secrets(&a.space_guid));
        if !readable {
            return Err(ApiError::not_found("Package"));
        }
        let dest: App = store::get(&mut c, &dest_guid)
            .await?
            .ok_or_else(invalid_app)?;
        if !access.can_read_space(&dest.space_guid) {
            return Err(invalid_app());
        }
        if !access.can_write_space(&dest.space_guid) {
            return Err(ApiError::NotAuthorized);
        }
        source
    };
    if source.state != "READY" {
        return Err(ApiError::Unprocessable(format!(
            "Package {} cannot be copied: it is {}, not READY",
            source.guid, source.state
        )));
    }
    let at = now();
    let package = Package {
        guid: new_guid(),
        app_guid: dest_guid.clone(),
        kind: source.kind.clone(),
        state: "READY".into(),
        error: None,
        checksum: source.checksum.clone(),
        image: source.image.clone(),
        docker_username: source.docker_username.clone(),
        docker_password: source.docker_password.clone(),
        created_at: at.clone(),
        updated_at: at,
        metadata: Metadata::from_request(req.metadata.as_ref()),
    };
    // The bits are copied before the package exists, so a READY package
    // always has its blob; the database write lock is not held meanwhile.
    let copied_blob = source.kind == "bits";
    if copied_blob {
        copy_blob(api, &source.blob_key(), &package.blob_key()).await?;
    }
    let stored = async {
        let mut tx = store::begin(&api.inner.pool).await?;
        // The destination may have been deleted while the bits were copied.
        let dest: App = store::get(&mut tx, &dest_guid)
            .await?
            .ok_or_else(invalid_app)?;
        store::insert(&mut tx, &package).await?;
        audit_app(
            &mut tx,
            "audit.app.package.create",
            p,
            &dest,
            json!({"request": {"source_package_guid": source.guid}}),
        )
        .await?;
        tx.commit().await?;
        Ok::<(), ApiError>(())
    }
    .await;
    if let Err(e) = stored {
        if copied_blob {
            // Best effort: an orphaned blob only costs disk.
            let _ = api.inner.blobs.delete(&package.blob_key()).await;
        }
        return Err(e);
    }
    Ok(created(package.json(&api.inner.config.external_url)))
}

/// Copies one blob to another key through a temporary file.
async fn copy_blob(api: &Api, from: &str, to: &str) -> ApiResult<()> {
    let tmp = tempfile::NamedTempFile::new()
        .map_err(|e| ApiError::Internal(format!("cannot create a temporary file: {e}")))?;
    api.inner
        .blobs
        .get_to_file(from, tmp.path())
        .await
        .map_err(|e| ApiError::blob(from, e))?;
    api.inner
        .blobs
        .put_file(to, tmp.path())
        .await
        .map_err(|e| ApiError::blob(to, e))
}

/// One file the client says the server already has.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct ResourceEntry {
    #[serde(alias = "fn")]
    path: Option<String>,
    sha1: Option<String>,
    checksum: Option<Checksum>,
    mode: Option<Value>,
    #[serde(alias = "size")]
    size_in_bytes: Option<u64>,
}

#[derive(Debug, Clone, Deserialize)]
struct Checksum {
    value: String,
}

impl ResourceEntry {
    fn sha1(&self) -> Option<&str> {
        self.checksum
            .as_ref()
            .map(|c| c.value.as_str())
            .or(self.sha1.as_deref())
    }

    fn mode(&self) -> u32 {
        let parsed = match &self.mode {
            Some(Value::String(s)) => u32::from_str_radix(s.trim_start_matches("0o"), 8).ok(),
            Some(Value::Number(n)) => n.as_u64().and_then(|n| u32::try_from(n).ok()),
            _ => None,
        };
        // The owner must be able to read what it runs.
        (parsed.unwrap_or(0o644) & 0o777) | 0o600
    }
}

/// Saves an uploaded file field, refusing more than the API's upload limit.
pub(crate) async fn save_upload(
    api: &Api,
    field: &mut axum::extract::multipart::Field<'_>,
    dest: &FsPath,
) -> ApiResult<()> {
    save_field(field, dest, api.upload_limit()).await
}

/// Copies one multipart field to `dest`, refusing more than `limit` bytes.
async fn save_field(
    field: &mut axum::extract::multipart::Field<'_>,
    dest: &FsPath,
    limit: u64,
) -> ApiResult<()> {
    let mut file = tokio::fs::File::create(dest)
        .await
        .map_err(|e| ApiError::Internal(format!("cannot create {}: {e}", dest.display())))?;
    let mut total: u64 = 0;
    while let Some(chunk) = field
        .chunk()
        .await
        .map_err(|e| ApiError::InvalidRequest(format!("upload interrupted: {e}")))?
    {
        total += chunk.len() as u64;
        if total > limit {
            return Err(ApiError::PayloadTooLarge(format!(
                "The upload is larger than the limit of {limit} bytes."
            )));
        }
        file.write_all(&chunk)
            .await
            .map_err(|e| ApiError::Internal(format!("cannot write {}: {e}", dest.display())))?;
    }
    file.flush()
        .await
        .map_err(|e| ApiError::Internal(format!("cannot write {}: {e}", dest.display())))?;
    Ok(())
}

async fn upload(
    State(api): State<Api>,
    Path(guid): Path<String>,
    multipart: Result<Multipart, MultipartRejection>,
) -> ApiResult<Response> {
    let p: Package = require(&api, &guid).await?;
    if p.state != "AWAITING_UPLOAD" {
        return Err(ApiError::Unprocessable(
            "Package can only be uploaded while it is AWAITING_UPLOAD".into(),
        ));
    }
    let mut multipart =
        multipart.map_err(|e| ApiError::InvalidRequest(format!("not a multipart upload: {e}")))?;
    let work = tempfile::tempdir()
        .map_err(|e| ApiError::Internal(format!("cannot create a temporary directory: {e}")))?;
    let mut bits: Option<PathBuf> = None;
    let mut resources: Vec<ResourceEntry> = Vec::new();
    let mut resources_given = false;
    while let Some(mut field) = multipart
        .next_field()
        .await
        .map_err(|e| ApiError::InvalidRequest(format!("bad multipart body: {e}")))?
    {
        match field.name() {
            Some("bits") => {
                let dest = work.path().join("upload.zip");
                save_upload(&api, &mut field, &dest).await?;
                bits = Some(dest);
            }
            Some("resources") => {
                let mut text = Vec::new();
                while let Some(chunk) = field
                    .chunk()
                    .await
                    .map_err(|e| ApiError::InvalidRequest(format!("bad multipart body: {e}")))?
                {
                    text.extend_from_slice(&chunk);
                    if text.len() > MAX_RESOURCES_BYTES {
                        return Err(ApiError::PayloadTooLarge(
                            "The resources field is too large.".into(),
                        ));
                    }
                }
                resources = serde_json::from_slice(&text).map_err(|_| {
                    ApiError::Unprocessable("Resources must be a list of resources".into())
                })?;
                resources_given = true;
            }
            _ => {}
        }
    }
    // An empty `bits` part means "nothing beyond the matched resources".
    if let Some(path) = &bits {
        if std::fs::metadata(path)
            .map(|m| m.len() == 0)
            .unwrap_or(false)
        {
            bits = None;
        }
    }
    if bits.is_none() && !resources_given {
        return Err(ApiError::InvalidRequest(
            "Upload must include either resources or bits".into(),
        ));
    }
    let mut tx = store::begin(&api.inner.pool).await?;
    let mut package: Package = store::fetch(&mut tx, &guid).await?;
    if package.state != "AWAITING_UPLOAD" {
        return Err(ApiError::Unprocessable(
            "Package can only be uploaded while it is AWAITING_UPLOAD".into(),
        ));
    }
    package.state = "PROCESSING".into();
    package.updated_at = now();
    store::put(&mut tx, &package).await?;
    tx.commit().await?;
    let task_api = api.clone();
    let task_guid = guid.clone();
    tokio::spawn(async move {
        let outcome = process_upload(&task_api, &task_guid, work.path(), bits, resources).await;
        if let Err(e) = finish(&task_api, &task_guid, outcome).await {
            tracing::error!(package = %task_guid, error = %e, "cannot record the package's state");
        }
        drop(work);
    });
    Ok(ok(package.json(&api.inner.config.external_url)))
}

async fn finish(api: &Api, guid: &str, outcome: Result<String, String>) -> ApiResult<()> {
    let mut tx = store::begin(&api.inner.pool).await?;
    let Some(mut package) = store::get::<Package>(&mut tx, guid).await? else {
        return Ok(()); // deleted with its app meanwhile
    };
    match outcome {
        Ok(checksum) => {
            package.state = "READY".into();
            package.checksum = Some(checksum);
        }
        Err(reason) => {
            tracing::info!(package = %guid, %reason, "package upload failed");
            package.state = "FAILED".into();
            package.error = Some(reason);
        }
    }
    package.updated_at = now();
    store::put(&mut tx, &package).await?;
    tx.commit().await?;
    Ok(())
}

/// A file of the uploaded zip, for the resource cache.
struct Extracted {
    rel: String,
    sha1: String,
}

/// The result of unpacking an upload: regular files, and links to create last.
struct Unpacked {
    files: Vec<Extracted>,
    links: Vec<(String, String)>,
}

/// Validates the upload and merges the resources into a new package zip;
/// returns the package's SHA-256, or the reason it failed.
async fn process_upload(
    api: &Api,
    guid: &str,
    work: &FsPath,
    bits: Option<PathBuf>,
    resources: Vec<ResourceEntry>,
) -> Result<String, String> {
    let root = work.join("app");
    std::fs::create_dir_all(&root).map_err(|e| format!("cannot unpack: {e}"))?;
    let unpacked = match bits {
        Some(zip) => {
            let r = root.clone();
            tokio::task::spawn_blocking(move || unpack(&zip, &r))
                .await
                .map_err(|e| format!("unpacking failed: {e}"))??
        }
        None => Unpacked {
            files: Vec::new(),
            links: Vec::new(),
        },
    };
    // Matched resources go in before any link exists, so no path can pass
    // through a link.
    for entry in &resources {
        let rel = entry
            .path
            .clone()
            .ok_or_else(|| "a resource has no path".to_string())?;
        let rel_path =
            safe_relative(&rel).map_err(|why| format!("Invalid resource '{rel}': {why}"))?;
        let sha1 = entry
            .sha1()
            .ok_or_else(|| format!("resource '{rel}' has no checksum"))?;
        let key =
            ingot_blobstore::resource_key(sha1).map_err(|e| format!("resource '{rel}': {e}"))?;
        let dest = root.join(&rel_path);
        if let Some(parent) = dest.parent() {
            std::fs::create_dir_all(parent).map_err(|e| format!("resource '{rel}': {e}"))?;
        }
        api.inner
            .blobs
            .get_to_file(&key, &dest)
            .await
            .map_err(|e| format!("resource '{rel}' ({sha1}) is not in the resource cache: {e}"))?;
        set_mode(&dest, entry.mode()).map_err(|e| format!("resource '{rel}': {e}"))?;
    }
    let r = root.clone();
    let links = unpacked.links;
    let out = work.join("package.zip");
    let out2 = out.clone();
    let checksum = tokio::task::spawn_blocking(move || -> Result<String, String> {
        make_links(&r, &links)?;
        write_zip(&r, &out2)?;
        sha256_file(&out2)
    })
    .await
    .map_err(|e| format!("packing failed: {e}"))??;
    let key = format!("packages/{guid}.zip");
    api.inner
        .blobs
        .put_file(&key, &out)
        .await
        .map_err(|e| format!("cannot store the package: {e}"))?;
    for file in unpacked.files {
        let Ok(rkey) = ingot_blobstore::resource_key(&file.sha1) else {
            continue;
        };
        // Best effort: the cache only saves later uploads.
        if !api.inner.blobs.exists(&rkey).await.unwrap_or(false) {
            let _ = api.inner.blobs.put_file(&rkey, &root.join(&file.rel)).await;
        }
    }
    Ok(checksum)
}

/// A path inside the app directory, or why not.
pub(crate) fn safe_relative(name: &str) -> Result<PathBuf, &'static str> {
    if name.starts_with('/') || name.starts_with('\\') {
        return Err("absolute path");
    }
    let bytes = name.as_bytes();
    if bytes.len() >= 2 && bytes[1] == b':' {
        return Err("absolute path");
    }
    let mut out = PathBuf::new();
    for part in name.split(['/', '\\']) {
        match part {
            "" | "." => {}
            ".." => return Err("path leaves the app directory"),
            p => out.push(p),
        }
    }
    if out.as_os_str().is_empty() {
        return Err("empty path");
    }
    Ok(out)
}

fn set_mode(path: &FsPath, mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
}

fn unpack(zip_path: &FsPath, root: &FsPath) -> Result<Unpacked, String> {
    let file = std::fs::File::open(zip_path).map_err(|e| format!("cannot read the upload: {e}"))?;
    let mut archive = zip::ZipArchive::new(file).map_err(|e| format!("Invalid zip: {e}"))?;
    let mut files = Vec::new();
    let mut links = Vec::new();
    let mut unpacked: u64 = 0;
    for i in 0..archive.len() {
        let mut entry = archive
            .by_index(i)
            .map_err(|e| format!("Invalid zip: {e}"))?;
        let name = entry.name().to_string();
        let rel =
            safe_relative(&name).map_err(|why| format!("Invalid zip entry '{name}': {why}"))?;
        let dest = root.join(&rel);
        let mode = entry.unix_mode();
        let is_link = mode.is_some_and(|m| m & 0o170000 == 0o120000);
        if is_link {
            let mut target = String::new();
            entry
                .read_to_string(&mut target)
                .map_err(|e| format!("Invalid zip entry '{name}': {e}"))?;
            link_stays_inside(&rel, &target)
                .map_err(|why| format!("Invalid zip entry '{name}': symlink {why}"))?;
            links.push((rel.to_string_lossy().into_owned(), target));
        } else if entry.is_dir() {
            std::fs::create_dir_all(&dest).map_err(|e| format!("cannot unpack '{name}': {e}"))?;
        } else {
            if let Some(parent) = dest.parent() {
                std::fs::create_dir_all(parent)
                    .map_err(|e| format!("cannot unpack '{name}': {e}"))?;
            }
            let mut out =
                std::fs::File::create(&dest).map_err(|e| format!("cannot unpack '{name}': {e}"))?;
            let mut hasher = sha1::Sha1::new();
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                let n = entry
                    .read(&mut buf)
                    .map_err(|e| format!("Invalid zip: entry '{name}' is corrupt: {e}"))?;
                if n == 0 {
                    break;
                }
                unpacked += n as u64;
                if unpacked > MAX_UNPACKED_BYTES {
                    return Err(format!(
                        "Invalid zip: it unpacks to more than {} GiB",
                        MAX_UNPACKED_BYTES >> 30
                    ));
                }
                hasher.update(&buf[..n]);
                out.write_all(&buf[..n])
                    .map_err(|e| format!("cannot unpack '{name}': {e}"))?;
            }
            let perm = (mode.unwrap_or(0o644) & 0o777) | 0o600;
            set_mode(&dest, perm).map_err(|e| format!("cannot unpack '{name}': {e}"))?;
            files.push(Extracted {
                rel: rel.to_string_lossy().into_owned(),
                sha1: hex::encode(hasher.finalize()),
            });
        }
    }
    Ok(Unpacked { files, links })
}

/// Whether a link at `rel` pointing at `target` stays inside the app
/// directory, judged on the text (links are checked again once all exist).
fn link_stays_inside(rel: &FsPath, target: &str) -> Result<(), &'static str> {
    if target.starts_with('/') || target.starts_with('\\') {
        return Err("points to an absolute path");
    }
    let mut depth: i64 = rel.components().count() as i64 - 1;
    for part in target.split(['/', '\\']) {
        match part {
            "" | "." => {}
            ".." => {
                depth -= 1;
                if depth < 0 {
                    return Err("points outside the app directory");
                }
            }
            _ => depth += 1,
        }
    }
    Ok(())
}

/// Creates the links, then checks that each one that resolves resolves
/// inside the app directory (a chain of links could leave it otherwise).
fn make_links(root: &FsPath, links: &[(String, String)]) -> Result<(), String> {
    for (rel, target) in links {
        let dest = root.join(rel);
        if let Some(parent) = dest.parent() {
            std::fs::create_dir_all(parent).map_err(|e| format!("cannot unpack '{rel}': {e}"))?;
        }
        std::os::unix::fs::symlink(target, &dest)
            .map_err(|e| format!("Invalid zip entry '{rel}': {e}"))?;
    }
    let real_root = std::fs::canonicalize(root).map_err(|e| format!("cannot unpack: {e}"))?;
    for (rel, _) in links {
        if let Ok(real) = std::fs::canonicalize(root.join(rel)) {
            if !real.starts_with(&real_root) {
                return Err(format!(
                    "Invalid zip entry '{rel}': symlink points outside the app directory"
                ));
            }
        }
    }
    Ok(())
}

/// Zips the directory, keeping modes and links (links are not followed).
fn write_zip(root: &FsPath, out: &FsPath) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    let file = std::fs::File::create(out).map_err(|e| format!("cannot pack: {e}"))?;
    let mut zip = zip::ZipWriter::new(file);
    let mut stack = vec![root.to_path_buf()];
    let mut entries = Vec::new();
    while let Some(dir) = stack.pop() {
        let read = std::fs::read_dir(&dir).map_err(|e| format!("cannot pack: {e}"))?;
        for item in read {
            let item = item.map_err(|e| format!("cannot pack: {e}"))?;
            let path = item.path();
            let meta = std::fs::symlink_metadata(&path).map_err(|e| format!("cannot pack: {e}"))?;
            if meta.is_dir() {
                stack.push(path.clone());
            }
            entries.push((path, meta));
        }
    }
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    for (path, meta) in entries {
        let rel = path
            .strip_prefix(root)
            .map_err(|e| format!("cannot pack: {e}"))?
            .components()
            .filter_map(|c| match c {
                Component::Normal(s) => Some(s.to_string_lossy().into_owned()),
                _ => None,
            })
            .collect::<Vec<_>>()
            .join("/");
        let mode = meta.permissions().mode() & 0o777;
        let options = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated)
            .unix_permissions(mode);
        let ft = meta.file_type();
        if ft.is_symlink() {
            let target = std::fs::read_link(&path).map_err(|e| format!("cannot pack: {e}"))?;
            zip.add_symlink(rel, target.to_string_lossy(), options)
                .map_err(|e| format!("cannot pack: {e}"))?;
        } else if ft.is_dir() {
            zip.add_directory(format!("{rel}/"), options)
                .map_err(|e| format!("cannot pack: {e}"))?;
        } else if ft.is_file() {
            zip.start_file(rel, options)
                .map_err(|e| format!("cannot pack: {e}"))?;
            let mut src = std::fs::File::open(&path).map_err(|e| format!("cannot pack: {e}"))?;
            std::io::copy(&mut src, &mut zip).map_err(|e| format!("cannot pack: {e}"))?;
        }
    }
    zip.finish().map_err(|e| format!("cannot pack: {e}"))?;
    Ok(())
}

fn sha256_file(path: &FsPath) -> Result<String, String> {
    let mut f = std::fs::File::open(path).map_err(|e| format!("cannot hash: {e}"))?;
    let mut hasher = sha2::Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = f.read(&mut buf).map_err(|e| format!("cannot hash: {e}"))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex::encode(hasher.finalize()))
}

#[derive(Deserialize)]
struct MatchRequest {
    #[serde(default)]
    resources: Vec<Value>,
}

async fn resource_matches(State(api): State<Api>, body: Bytes) -> ApiResult<Response> {
    let req: MatchRequest = parse_json(&body)?;
    if req.resources.len() > 5000 {
        return Err(ApiError::Unprocessable(
            "Resources array can have at most 5000 resources".into(),
        ));
    }
    let mut matched = Vec::new();
    for raw in req.resources {
        let Ok(entry) = serde_json::from_value::<ResourceEntry>(raw.clone()) else {
            continue;
        };
        let Some(sha1) = entry.sha1() else { continue };
        if entry.size_in_bytes == Some(0) {
            continue;
        }
        let Ok(key) = ingot_blobstore::resource_key(sha1) else {
            continue;
        };
        if api.inner.blobs.exists(&key).await.unwrap_or(false) {
            matched.push(raw);
        }
    }
    Ok(created(json!({"resources": matched})))
}

/// Streams a blob to the client as a download.
pub(crate) async fn stream_blob(api: &Api, key: &str, filename: &str) -> ApiResult<Response> {
    let tmp = tempfile::NamedTempFile::new()
        .map_err(|e| ApiError::Internal(format!("cannot create a temporary file: {e}")))?;
    api.inner
        .blobs
        .get_to_file(key, tmp.path())
        .await
        .map_err(|e| ApiError::blob(key, e))?;
    // The open handle keeps the data readable after the name is removed.
    let (file, path) = tmp.into_parts();
    drop(path);
    let stream = tokio_util::io::ReaderStream::new(tokio::fs::File::from_std(file));
    Ok((
        [
            (header::CONTENT_TYPE, "application/octet-stream".to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{filename}\""),
            ),
        ],
        Body::from_stream(stream),
    )
        .into_response())
}

async fn download(State(api): State<Api>, Path(guid): Path<String>) -> ApiResult<Response> {
    let p: Package = require(&api, &guid).await?;
    if p.state != "READY" {
        return Err(ApiError::Unprocessable(
            "Package has no bits to download yet".into(),
        ));
    }
    stream_blob(&api, &p.blob_key(), &format!("{guid}.zip")).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths_are_checked() {
        assert!(safe_relative("a/b.txt").is_ok());
        assert!(safe_relative("./a").is_ok());
        assert!(safe_relative("../a").is_err());
        assert!(safe_relative("a/../../b").is_err());
        assert!(safe_relative("/etc/passwd").is_err());
        assert!(safe_relative("C:\\x").is_err());
    }

    #[test]
    fn link_targets_are_checked() {
        assert!(link_stays_inside(FsPath::new("a/link"), "../b").is_ok());
        assert!(link_stays_inside(FsPath::new("a/link"), "../../b").is_err());
        assert!(link_stays_inside(FsPath::new("link"), "/etc").is_err());
        assert!(link_stays_inside(FsPath::new("link"), "x/../y").is_ok());
    }
}
