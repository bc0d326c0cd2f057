//! Builds (staging a package through the [`crate::Runtime`]), droplets, and
//! admin buildpacks.
//!
//! A docker package stages without buildpacks, as CF's does: its build is
//! `STAGED` at once with a droplet whose `image` is the package's image
//! (lifecycle `docker`), and the runtime pulls the image when an instance
//! or task starts (see [`docker_image`]). Whether the image exists is
//! therefore known only then: a bad reference or refused credentials crash
//! the instance with the registry's reason.

use axum::extract::multipart::MultipartRejection;
use axum::extract::{DefaultBodyLimit, Multipart, Path, RawQuery, State};
use axum::response::Response;
use axum::routing::{get, post};
use axum::{Extension, Router};
use bytes::Bytes;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::apps::{app_context, audit_app, resolve_buildpacks, Lifecycle};
use crate::authz::Access;
use crate::error::{ApiError, ApiResult};
use crate::http::{
    accepted_job, below, created, index, list, ok, parse_json, require, show, Listed,
};
use crate::model::{
    new_guid, now, App, Build, Buildpack, CreatedBy, Droplet, DropletBuildpack, Job, Metadata,
    Package,
};
use crate::store::{self, Query};
use crate::{Api, Principal, StageRequest};

/// Staging memory when the build does not say (CF's default).
const STAGING_MEMORY_MB: u64 = 1024;
/// Staging disk when the build does not say (CF's default minimum).
const STAGING_DISK_MB: u64 = 4096;

pub(crate) fn routes() -> Router<Api> {
    Router::new()
        .route("/v3/builds", get(index::<Build>).post(create_build))
        .route("/v3/builds/{guid}", get(show::<Build>))
        .route("/v3/apps/{guid}/builds", get(below::<App, Build>))
        .route("/v3/droplets", get(index::<Droplet>))
        .route("/v3/droplets/{guid}", get(show::<Droplet>))
        .route("/v3/droplets/{guid}/download", get(download_droplet))
        .route("/v3/apps/{guid}/droplets", get(app_droplets))
        .route(
            "/v3/packages/{guid}/droplets",
            get(below::<Package, Droplet>),
        )
        .route(
            "/v3/buildpacks",
            get(index::<Buildpack>).post(create_buildpack),
        )
        .route(
            "/v3/buildpacks/{guid}",
            get(show::<Buildpack>)
                .patch(update_buildpack)
                .delete(delete_buildpack),
        )
        .route(
            "/v3/buildpacks/{guid}/upload",
            post(upload_buildpack).layer(DefaultBodyLimit::disable()),
        )
}

/// Builds and droplets filter alike.
const STAGED_FILTERS: &[(&str, &str)] = &[
    ("guids", "guid"),
    ("states", "state"),
    ("app_guids", "app_guid"),
    ("package_guids", "package_guid"),
];

impl Listed for Build {
    const NAME: &'static str = "builds";
    const FILTERS: &'static [(&'static str, &'static str)] = STAGED_FILTERS;
}

impl Listed for Droplet {
    const NAME: &'static str = "droplets";
    const FILTERS: &'static [(&'static str, &'static str)] = STAGED_FILTERS;
}

impl Listed for Buildpack {
    const NAME: &'static str = "buildpacks";
    const FILTERS: &'static [(&'static str, &'static str)] =
        &[("names", "name"), ("stacks", "stack"), ("guids", "guid")];
    const ORDERS: &'static [&'static str] = &["position"];

    fn base_query() -> Query {
        Query::new().order("position", false)
    }
}

#[derive(Deserialize)]
struct NewBuild {
    package: Option<crate::apps::GuidRef>,
    lifecycle: Option<Lifecycle>,
    staging_memory_in_mb: Option<u64>,
    staging_disk_in_mb: Option<u64>,
    metadata: Option<Value>,
}

async fn create_build(
    State(api): State<Api>,
    Extension(p): Extension<Principal>,
    body: Bytes,
) -> ApiResult<Response> {
    let req: NewBuild = parse_json(&body)?;
    let unusable = || {
        ApiError::Unprocessable(
            "Unable to use package. Ensure that the package exists and you have access to it."
                .into(),
        )
    };
    let package_guid = req.package.map(|p| p.guid).ok_or_else(unusable)?;
    let mut tx = store::begin(&api.inner.pool).await?;
    let package = store::get::<Package>(&mut tx, &package_guid)
        .await?
        .ok_or_else(unusable)?;
    if package.state != "READY" {
        return Err(ApiError::Unprocessable(format!(
            "Package must be READY to be staged, it is {}",
            package.state
        )));
    }
    if package.kind == "docker" {
        return create_docker_build(&api, &p, tx, package, req.metadata.as_ref()).await;
    }
    let (app, space, org) = app_context(&mut tx, &package.app_guid).await?;
    let mut buildpacks = app.buildpacks.clone();
    let mut stack = app.stack.clone();
    if let Some(l) = &req.lifecycle {
        l.apply(&mut tx, &mut buildpacks, &mut stack).await?;
    }
    let (refs, candidates) = resolve_buildpacks(&mut tx, &buildpacks).await?;
    let staging_env = crate::env_groups::vars(&mut tx, "staging").await?;
    let at = now();
    let build = Build {
        guid: new_guid(),
        app_guid: app.guid.clone(),
        package_guid: package.guid.clone(),
        state: "STAGING".into(),
        error: None,
        droplet_guid: None,
        buildpacks: buildpacks.clone(),
        stack: stack.clone(),
        memory_mb: req.staging_memory_in_mb.unwrap_or(STAGING_MEMORY_MB),
        disk_mb: req.staging_disk_in_mb.unwrap_or(STAGING_DISK_MB),
        created_by: CreatedBy {
            guid: p.user_guid.clone(),
            name: p.user_name.clone(),
            email: String::new(),
        },
        docker: false,
        created_at: at.clone(),
        updated_at: at,
        metadata: Metadata::from_request(req.metadata.as_ref()),
    };
    crate::quotas::check_staging(&mut tx, &space.guid, build.memory_mb).await?;
    let egress = crate::security_groups::staging_rules(&mut tx, &space.guid).await?;
    store::insert(&mut tx, &build).await?;
    audit_app(
        &mut tx,
        "audit.app.build.create",
        &p,
        &app,
        json!({"build_guid": build.guid, "package_guid": package.guid}),
    )
    .await?;
    tx.commit().await?;
    api.api_log(
        &app.guid,
        &format!("Creating build for app with guid {}", app.guid),
    );
    let droplet_guid = new_guid();
    let request = StageRequest {
        build_guid: build.guid.clone(),
        app_guid: app.guid.clone(),
        app_name: app.name.clone(),
        space_guid: space.guid.clone(),
        space_name: space.name.clone(),
        org_guid: org.guid.clone(),
        org_name: org.name.clone(),
        package_key: package.blob_key(),
        droplet_key: format!("droplets/{droplet_guid}.tgz"),
        droplet_guid,
        buildpacks: refs,
        detect_candidates: candidates,
        environment: crate::env_groups::layered(staging_env, app.env_strings()),
        memory_mb: build.memory_mb,
        disk_mb: build.disk_mb,
        stack,
        egress,
    };
    let task_api = api.clone();
    let principal = p.clone();
    tokio::spawn(async move {
        let build_guid = request.build_guid.clone();
        if let Err(e) = stage(&task_api, &principal, request).await {
            tracing::error!(build = %build_guid, error = %e, "cannot record the build's outcome");
        }
    });
    Ok(created(build.json(&api.inner.config.external_url)))
}

/// Stages a docker package: no container runs; the build is `STAGED` with a
/// droplet naming the image, in the caller's transaction.
async fn create_docker_build(
    api: &Api,
    p: &Principal,
    mut tx: sqlx::Transaction<'static, sqlx::Sqlite>,
    package: Package,
    metadata: Option<&Value>,
) -> ApiResult<Response> {
    crate::feature_flags::require(&mut tx, "diego_docker").await?;
    let app: App = store::fetch(&mut tx, &package.app_guid).await?;
    let image = package.image.clone().unwrap_or_default();
    let at = now();
    let droplet_guid = new_guid();
    let droplet = Droplet {
        // No blob is ever stored under this key; deleting the app deletes
        // nothing there, which is fine.
        blob_key: format!("droplets/{droplet_guid}.tgz"),
        guid: droplet_guid,
        app_guid: app.guid.clone(),
        package_guid: Some(package.guid.clone()),
        state: "STAGED".into(),
        error: None,
        // The image's own entrypoint and cmd start it: no detected command.
        process_types: [("web".to_string(), String::new())].into_iter().collect(),
        buildpacks: Vec::new(),
        stack: String::new(),
        checksum: None,
        image: Some(image),
        created_at: at.clone(),
        updated_at: at.clone(),
        metadata: Metadata::default(),
    };
    let build = Build {
        guid: new_guid(),
        app_guid: app.guid.clone(),
        package_guid: package.guid.clone(),
        state: "STAGED".into(),
        error: None,
        droplet_guid: Some(droplet.guid.clone()),
        buildpacks: Vec::new(),
        stack: String::new(),
        memory_mb: STAGING_MEMORY_MB,
        disk_mb: STAGING_DISK_MB,
        created_by: CreatedBy {
            guid: p.user_guid.clone(),
            name: p.user_name.clone(),
            email: String::new(),
        },
        docker: true,
        created_at: at.clone(),
        updated_at: at,
        metadata: Metadata::from_request(metadata),
    };
    store::insert(&mut tx, &build).await?;
    store::insert(&mut tx, &droplet).await?;
    audit_app(
        &mut tx,
        "audit.app.build.create",
        p,
        &app,
        json!({"build_guid": build.guid, "package_guid": package.guid}),
    )
    .await?;
    audit_app(
        &mut tx,
        "audit.app.droplet.create",
        p,
        &app,
        json!({"droplet_guid": droplet.guid, "package_guid": package.guid}),
    )
    .await?;
    tx.commit().await?;
    api.api_log(
        &app.guid,
        &format!("Creating build for app with guid {}", app.guid),
    );
    Ok(created(build.json(&api.inner.config.external_url)))
}

/// The image to run for `droplet`, with its package's registry
/// credentials; `None` for a buildpack droplet.
pub(crate) async fn docker_image(
    c: &mut sqlx::SqliteConnection,
    droplet: &Droplet,
) -> ApiResult<Option<crate::DockerImage>> {
    let Some(reference) = droplet.image.clone() else {
        return Ok(None);
    };
    let package = match &droplet.package_guid {
        Some(guid) => store::get::<Package>(c, guid).await?,
        None => None,
    };
    let (username, password) = package
        .map(|p| (p.docker_username, p.docker_password))
        .unwrap_or_default();
    Ok(Some(crate::DockerImage {
        reference,
        username,
        password,
    }))
}

/// Runs staging and records the droplet (or the failure).
async fn stage(api: &Api, p: &Principal, request: StageRequest) -> ApiResult<()> {
    let outcome = api.inner.runtime.stage(request.clone()).await;
    let mut tx = store::begin(&api.inner.pool).await?;
    let Some(mut build) = store::get::<Build>(&mut tx, &request.build_guid).await? else {
        return Ok(()); // the app was deleted meanwhile
    };
    let at = now();
    match outcome {
        Ok(out) => {
            let droplet = Droplet {
                guid: request.droplet_guid.clone(),
                app_guid: request.app_guid.clone(),
                package_guid: Some(build.package_guid.clone()),
                state: "STAGED".into(),
                error: None,
                process_types: out.process_types,
                buildpacks: vec![DropletBuildpack {
                    name: out.buildpack_name.clone(),
                    detect_output: Some(out.detected_buildpack),
                    buildpack_name: Some(out.buildpack_name),
                    version: None,
                }],
                stack: request.stack.clone(),
                checksum: Some(out.checksum_sha256),
                blob_key: request.droplet_key.clone(),
                image: None,
                created_at: at.clone(),
                updated_at: at.clone(),
                metadata: Metadata::default(),
            };
            store::insert(&mut tx, &droplet).await?;
            build.state = "STAGED".into();
            build.droplet_guid = Some(droplet.guid.clone());
            if let Some(app) = store::get::<App>(&mut tx, &request.app_guid).await? {
                audit_app(
                    &mut tx,
                    "audit.app.droplet.create",
                    p,
                    &app,
                    json!({"droplet_guid": droplet.guid, "package_guid": build.package_guid}),
                )
                .await?;
            }
        }
        Err(failure) => {
            build.state = "FAILED".into();
            build.error = Some(format!("{} - {}", failure.code, failure.message));
        }
    }
    build.updated_at = at;
    store::put(&mut tx, &build).await?;
    tx.commit().await?;
    Ok(())
}

/// The app's droplets; `current=true` answers the current droplet alone.
async fn app_droplets(
    State(api): State<Api>,
    Extension(access): Extension<Access>,
    Path(guid): Path<String>,
    RawQuery(q): RawQuery,
) -> ApiResult<Response> {
    let app: App = require(&api, &guid).await?;
    let wants_current = q
        .as_deref()
        .unwrap_or("")
        .split('&')
        .any(|kv| kv == "current=true");
    let mut base_q = Query::new().eq("app_guid", &guid);
    if wants_current {
        base_q = base_q.any_of("guid", app.droplet_guid.into_iter().collect());
    }
    // `current` is answered above, not a filter of the list.
    let stripped: Option<String> = q.as_deref().map(|s| {
        s.split('&')
            .filter(|kv| !kv.starts_with("current="))
            .collect::<Vec<_>>()
            .join("&")
    });
    let path = format!("/v3/apps/{guid}/droplets");
    list::<Droplet>(&api, &access, stripped.as_deref(), &path, base_q).await
}

async fn download_droplet(State(api): State<Api>, Path(guid): Path<String>) -> ApiResult<Response> {
    let d: Droplet = require(&api, &guid).await?;
    if d.image.is_some() {
        return Err(ApiError::Unprocessable(
            "Cannot download droplets with 'docker' lifecycle.".into(),
        ));
    }
    if d.state != "STAGED" {
        return Err(ApiError::Unprocessable(
            "Only staged droplets can be downloaded.".into(),
        ));
    }
    crate::packages::stream_blob(&api, &d.blob_key, &format!("droplet_{guid}.tgz")).await
}

#[derive(Deserialize)]
struct BuildpackBody {
    name: Option<String>,
    stack: Option<String>,
    position: Option<i64>,
    enabled: Option<bool>,
    locked: Option<bool>,
    metadata: Option<Value>,
}

fn valid_buildpack_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.')
}

/// Moves `guid` to `position` (1-based), shifting the others to keep the
/// positions dense, in the caller's transaction.
async fn place(
    c: &mut sqlx::SqliteConnection,
    guid: &str,
    position: Option<i64>,
) -> ApiResult<i64> {
    let mut all: Vec<Buildpack> = store::find(c, &Query::new().order("position", false)).await?;
    let idx = all.iter().position(|b| b.guid == guid);
    let Some(idx) = idx else {
        return Err(ApiError::not_found("Buildpack"));
    };
    let me = all.remove(idx);
    let at = match position {
        Some(p) => usize::try_from(p.max(1) - 1).unwrap_or(0).min(all.len()),
        None => all.len(),
    };
    all.insert(at, me);
    let mut mine = 1;
    for (i, mut b) in all.into_iter().enumerate() {
        let pos = i64::try_from(i).unwrap_or(0) + 1;
        if b.guid == guid {
            mine = pos;
        }
        if b.position != pos {
            b.position = pos;
            store::put(c, &b).await?;
        }
    }
    Ok(mine)
}

async fn create_buildpack(State(api): State<Api>, body: Bytes) -> ApiResult<Response> {
    let req: BuildpackBody = parse_json(&body)?;
    let name = req.name.unwrap_or_default();
    if !valid_buildpack_name(&name) {
        return Err(ApiError::Unprocessable(
            "Name can only contain alphanumeric characters, underscores, dashes and dots".into(),
        ));
    }
    if req.position.is_some_and(|p| p < 1) {
        return Err(ApiError::Unprocessable(
            "Position must be greater than or equal to 1".into(),
        ));
    }
    let mut tx = store::begin(&api.inner.pool).await?;
    if store::find_one::<Buildpack>(&mut tx, &Query::new().eq("name", &name))
        .await?
        .is_some()
    {
        return Err(ApiError::Uniqueness(format!(
            "Buildpack with name '{name}' and stack '{}' already exists",
            req.stack.as_deref().unwrap_or("")
        )));
    }
    let at = now();
    let mut b = Buildpack {
        guid: new_guid(),
        name,
        position: i64::MAX,
        enabled: req.enabled.unwrap_or(true),
        locked: req.locked.unwrap_or(false),
        stack: req.stack,
        state: "AWAITING_UPLOAD".into(),
        filename: None,
        builtin: false,
        blob_key: None,
        created_at: at.clone(),
        updated_at: at,
        metadata: Metadata::from_request(req.metadata.as_ref()),
    };
    store::insert(&mut tx, &b).await?;
    b.position = place(&mut tx, &b.guid, req.position).await?;
    store::put(&mut tx, &b).await?;
    tx.commit().await?;
    Ok(created(b.json(&api.inner.config.external_url)))
}

async fn update_buildpack(
    State(api): State<Api>,
    Path(guid): Path<String>,
    body: Bytes,
) -> ApiResult<Response> {
    let req: BuildpackBody = parse_json(&body)?;
    let mut tx = store::begin(&api.inner.pool).await?;
    let mut b: Buildpack = store::fetch(&mut tx, &guid).await?;
    if let Some(name) = req.name {
        if !valid_buildpack_name(&name) {
            return Err(ApiError::Unprocessable(
                "Name can only contain alphanumeric characters, underscores, dashes and dots"
                    .into(),
            ));
        }
        if name != b.name
            && store::find_one::<Buildpack>(&mut tx, &Query::new().eq("name", &name))
                .await?
                .is_some()
        {
            return Err(ApiError::Uniqueness(format!(
                "Buildpack with name '{name}' already exists"
            )));
        }
        b.name = name;
    }
    if let Some(e) = req.enabled {
        b.enabled = e;
    }
    if let Some(l) = req.locked {
        b.locked = l;
    }
    if let Some(m) = &req.metadata {
        b.metadata.merge(m);
    }
    b.updated_at = now();
    store::put(&mut tx, &b).await?;
    if req.position.is_some() {
        b.position = place(&mut tx, &guid, req.position).await?;
    }
    tx.commit().await?;
    Ok(ok(b.json(&api.inner.config.external_url)))
}

async fn delete_buildpack(State(api): State<Api>, Path(guid): Path<String>) -> ApiResult<Response> {
    let mut tx = store::begin(&api.inner.pool).await?;
    let b: Buildpack = store::fetch(&mut tx, &guid).await?;
    store::delete::<Buildpack>(&mut tx, &guid).await?;
    let rest: Vec<Buildpack> = store::find(&mut tx, &Query::new()).await?;
    if let Some(first) = rest.first() {
        place(&mut tx, &first.guid, Some(first.position)).await?;
    }
    let job = Job::completed("buildpack.delete", None);
    store::insert(&mut tx, &job).await?;
    tx.commit().await?;
    if let Some(key) = &b.blob_key {
        let _ = api.inner.blobs.delete(key).await;
    }
    Ok(accepted_job(&api, &job.guid))
}

async fn upload_buildpack(
    State(api): State<Api>,
    Path(guid): Path<String>,
    multipart: Result<Multipart, MultipartRejection>,
) -> ApiResult<Response> {
    let b: Buildpack = require(&api, &guid).await?;
    if b.locked {
        return Err(ApiError::Unprocessable(
            "Buildpack is locked and cannot be updated".into(),
        ));
    }
    let mut multipart =
        multipart.map_err(|e| ApiError::InvalidRequest(format!("not a multipart upload: {e}")))?;
    let tmp = tempfile::tempdir()
        .map_err(|e| ApiError::Internal(format!("cannot create a temporary directory: {e}")))?;
    let dest = tmp.path().join("buildpack.zip");
    let mut filename = None;
    while let Some(mut field) = multipart
        .next_field()
        .await
        .map_err(|e| ApiError::InvalidRequest(format!("bad multipart body: {e}")))?
    {
        if field.name() == Some("bits") {
            filename = Some(field.file_name().unwrap_or("buildpack.zip").to_string());
            crate::packages::save_upload(&api, &mut field, &dest).await?;
        }
    }
    let filename = filename.ok_or_else(|| {
        ApiError::InvalidRequest("Buildpack upload requires a 'bits' file".into())
    })?;
    let check = dest.clone();
    let valid = tokio::task::spawn_blocking(move || {
        std::fs::File::open(&check)
            .ok()
            .and_then(|f| zip::ZipArchive::new(f).ok())
            .is_some()
    })
    .await
    .unwrap_or(false);
    if !valid {
        return Err(ApiError::Unprocessable(format!("{filename} is not a zip")));
    }
    let key = format!("buildpacks/{guid}.zip");
    api.inner
        .blobs
        .put_file(&key, &dest)
        .await
        .map_err(|e| ApiError::blob(&key, e))?;
    let mut tx = store::begin(&api.inner.pool).await?;
    let mut b: Buildpack = store::fetch(&mut tx, &guid).await?;
    b.blob_key = Some(key);
    b.builtin = false;
    b.filename = Some(filename);
    b.state = "READY".into();
    b.updated_at = now();
    store::put(&mut tx, &b).await?;
    let job = Job::completed(
        "buildpack.upload",
        Some(("buildpack".into(), format!("/v3/buildpacks/{guid}"))),
    );
    store::insert(&mut tx, &job).await?;
    tx.commit().await?;
    let mut response = accepted_job(&api, &job.guid);
    *response.body_mut() = axum::body::Body::from(
        serde_json::to_vec(&b.json(&api.inner.config.external_url)).unwrap_or_default(),
    );
    response.headers_mut().insert(
        axum::http::header::CONTENT_TYPE,
        axum::http::HeaderValue::from_static("application/json"),
    );
    Ok(response)
}
