//! Apps: create, list, get, update, delete, start/stop/restart, the current
//! droplet, environment variables; and the bridge to the [`Runtime`]: what a
//! started app's processes desire, and replaying it after a restart.

use axum::extract::{Path, RawQuery, State};
use axum::response::Response;
use axum::routing::{get, post};
use axum::{Extension, Router};
use bytes::Bytes;
use serde::Deserialize;
use serde_json::{json, Map, Value};
use sqlx::SqliteConnection;

use crate::authz::Access;
use crate::error::{ApiError, ApiResult};
use crate::http::{accepted_job, created, ok, page_response, parse_json, show, ListParams, Parent};
use crate::model::{
    new_guid, now, App, Build, Buildpack, Desired, Domain, Droplet, EventParty, Job, Metadata, Org,
    Package, Process, Route, Space,
};
use crate::orgs::{audit, resolve_stack, user_actor};
use crate::store::{self, Query};
use crate::{Api, DesiredProcess, HealthCheck, Principal};

/// `{"data":{"guid":…}}`, CF's to-one relationship.
#[derive(Debug, Deserialize)]
pub(crate) struct ToOne {
    pub data: GuidRef,
}

/// `{"guid":…}`.
#[derive(Debug, Deserialize)]
pub(crate) struct GuidRef {
    pub guid: String,
}

pub(crate) fn routes() -> Router<Api> {
    Router::new()
        .route("/v3/apps", get(list_apps).post(create_app))
        .route(
            "/v3/apps/{guid}",
            get(show::<App>).patch(update_app).delete(delete_app),
        )
        .route("/v3/apps/{guid}/actions/{action}", post(act))
        .route(
            "/v3/apps/{guid}/relationships/current_droplet",
            get(get_current_droplet_rel).patch(set_current_droplet),
        )
        .route("/v3/apps/{guid}/droplets/current", get(get_current_droplet))
        .route(
            "/v3/apps/{guid}/environment_variables",
            get(get_env_vars).patch(patch_env_vars),
        )
        .route("/v3/apps/{guid}/env", get(get_env))
}

impl Parent for App {
    const NAME: &'static str = "apps";
    const KEY: &'static str = "app_guid";
}

#[derive(Debug, Deserialize)]
pub(crate) struct Lifecycle {
    #[serde(rename = "type")]
    pub kind: Option<String>,
    #[serde(default)]
    pub data: LifecycleData,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct LifecycleData {
    pub buildpacks: Option<Vec<String>>,
    pub stack: Option<String>,
}

impl Lifecycle {
    /// Overrides `buildpacks` and `stack` with what the lifecycle names,
    /// after checking that they exist.
    pub(crate) async fn apply(
        &self,
        c: &mut SqliteConnection,
        buildpacks: &mut Vec<String>,
        stack: &mut String,
    ) -> ApiResult<()> {
        if let Some(b) = &self.data.buildpacks {
            validate_buildpacks(c, b).await?;
            buildpacks.clone_from(b);
        }
        if let Some(s) = &self.data.stack {
            *stack = resolve_stack(c, Some(s), &mut Vec::new()).await?;
        }
        Ok(())
    }
}

#[derive(Debug, Deserialize)]
struct NewApp {
    name: Option<String>,
    relationships: Option<AppRelationships>,
    lifecycle: Option<Lifecycle>,
    environment_variables: Option<Map<String, Value>>,
    metadata: Option<Value>,
}

#[derive(Debug, Deserialize)]
struct AppRelationships {
    space: Option<ToOne>,
}

#[derive(Debug, Deserialize)]
struct AppPatch {
    name: Option<String>,
    lifecycle: Option<Lifecycle>,
    metadata: Option<Value>,
}

fn is_buildpack_url(name: &str) -> bool {
    name.starts_with("http://") || name.starts_with("https://") || name.starts_with("git://")
}

/// Checks that every buildpack is an admin buildpack or a URL, as CF does
/// when the buildpacks are set.
pub(crate) async fn validate_buildpacks(
    c: &mut SqliteConnection,
    names: &[String],
) -> ApiResult<()> {
    for name in names {
        if is_buildpack_url(name) {
            continue;
        }
        if store::find_one::<Buildpack>(c, &Query::new().eq("name", name))
            .await?
            .is_none()
        {
            return Err(ApiError::Unprocessable(format!(
                "Buildpack \"{name}\" must be an existing admin buildpack or a valid git URI"
            )));
        }
    }
    Ok(())
}

fn check_lifecycle(l: &Lifecycle) -> ApiResult<()> {
    match l.kind.as_deref() {
        None | Some("buildpack") | Some("docker") => Ok(()),
        Some(other) => Err(ApiError::Unprocessable(format!(
            "Lifecycle type must be one of 'buildpack', 'docker', not '{other}'"
        ))),
    }
}

/// The app and the space and org it lives in.
pub(crate) async fn app_context(
    c: &mut SqliteConnection,
    app_guid: &str,
) -> ApiResult<(App, Space, Org)> {
    let app: App = store::fetch(c, app_guid).await?;
    let space: Space = store::fetch(c, &app.space_guid).await?;
    let org: Org = store::fetch(c, &space.org_guid).await?;
    Ok((app, space, org))
}

/// The audit target for an app.
pub(crate) fn app_target(app: &App) -> EventParty {
    EventParty {
        guid: app.guid.clone(),
        kind: "app".into(),
        name: app.name.clone(),
    }
}

/// Records an app audit event in the caller's transaction.
pub(crate) async fn audit_app(
    c: &mut SqliteConnection,
    kind: &str,
    p: &Principal,
    app: &App,
    data: Value,
) -> ApiResult<()> {
    let space: Option<Space> = store::get(c, &app.space_guid).await?;
    let org_guid = space.as_ref().map(|s| s.org_guid.clone());
    audit(
        c,
        kind,
        user_actor(p),
        app_target(app),
        data,
        Some(&app.space_guid),
        org_guid.as_deref(),
    )
    .await
}

/// Creates an app and its web process in the caller's transaction.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn insert_app(
    c: &mut SqliteConnection,
    p: &Principal,
    name: &str,
    space_guid: &str,
    buildpacks: Vec<String>,
    stack: String,
    env: Map<String, Value>,
    metadata: Metadata,
) -> ApiResult<App> {
    let dup = Query::new().eq("space_guid", space_guid).eq("name", name);
    if store::find_one::<App>(c, &dup).await?.is_some() {
        return Err(ApiError::Uniqueness(format!(
            "App with the name '{name}' already exists."
        )));
    }
    let at = now();
    let app = App {
        guid: new_guid(),
        name: name.to_string(),
        space_guid: space_guid.to_string(),
        state: "STOPPED".into(),
        buildpacks,
        stack,
        env,
        droplet_guid: None,
        ssh_enabled: true,
        docker: false,
        created_at: at.clone(),
        updated_at: at,
        metadata,
    };
    store::insert(c, &app).await?;
    store::insert(c, &Process::new(&app.guid, "web", None)).await?;
    audit_app(
        c,
        "audit.app.create",
        p,
        &app,
        json!({"request": {"name": app.name, "lifecycle": app.lifecycle_json()}}),
    )
    .await?;
    Ok(app)
}

async fn create_app(
    State(api): State<Api>,
    Extension(p): Extension<Principal>,
    body: Bytes,
) -> ApiResult<Response> {
    let req: NewApp = parse_json(&body)?;
    let name = match req.name {
        Some(n) if !n.trim().is_empty() => n,
        _ => return Err(ApiError::Unprocessable("Name can't be blank".into())),
    };
    let space_guid = req
        .relationships
        .and_then(|r| r.space)
        .map(|s| s.data.guid)
        .ok_or_else(|| ApiError::Unprocessable("Relationships Space can't be blank".into()))?;
    if let Some(l) = &req.lifecycle {
        check_lifecycle(l)?;
    }
    let docker = req
        .lifecycle
        .as_ref()
        .is_some_and(|l| l.kind.as_deref() == Some("docker"));
    let mut tx = store::begin(&api.inner.pool).await?;
    if docker {
        crate::feature_flags::require(&mut tx, "diego_docker").await?;
    }
    if store::get::<Space>(&mut tx, &space_guid).await?.is_none() {
        return Err(ApiError::Unprocessable(
            "Invalid space. Ensure that the space exists and you have access to it.".into(),
        ));
    }
    let (buildpacks, stack_name) = match req.lifecycle {
        Some(l) => (l.data.buildpacks.unwrap_or_default(), l.data.stack),
        None => (Vec::new(), None),
    };
    validate_buildpacks(&mut tx, &buildpacks).await?;
    let stack = resolve_stack(&mut tx, stack_name.as_deref(), &mut Vec::new()).await?;
    let mut app = insert_app(
        &mut tx,
        &p,
        &name,
        &space_guid,
        buildpacks,
        stack,
        req.environment_variables.unwrap_or_default(),
        Metadata::from_request(req.metadata.as_ref()),
    )
    .await?;
    if docker {
        app.docker = true;
        store::put(&mut tx, &app).await?;
    }
    tx.commit().await?;
    Ok(created(app.json(&api.inner.config.external_url)))
}

/// The guids of the spaces of these organizations (`organization_guids=`).
pub(crate) async fn spaces_of(
    c: &mut SqliteConnection,
    orgs: Vec<String>,
) -> ApiResult<Vec<String>> {
    let spaces: Vec<Space> = store::find(c, &Query::new().any_of("org_guid", orgs)).await?;
    Ok(spaces.into_iter().map(|s| s.guid).collect())
}

async fn list_apps(
    State(api): State<Api>,
    Extension(access): Extension<Access>,
    RawQuery(q): RawQuery,
) -> ApiResult<Response> {
    const FILTERS: &[(&str, &str)] = &[
        ("names", "name"),
        ("guids", "guid"),
        ("space_guids", "space_guid"),
        ("stacks", "stack"),
    ];
    let mut names = ListParams::names(FILTERS);
    names.extend(["organization_guids", "lifecycle_type"]);
    let params = ListParams::parse(q.as_deref(), &names, &["name", "state"])?;
    let mut query = params.narrow(Query::new(), FILTERS);
    let mut c = api.inner.pool.acquire().await?;
    if let Some(orgs) = params.filter("organization_guids") {
        query = query.any_of("space_guid", spaces_of(&mut c, orgs).await?);
    }
    if let Some(types) = params.filter("lifecycle_type") {
        let buildpack = types.iter().any(|t| t == "buildpack");
        if types.iter().any(|t| t == "docker") && !buildpack {
            // `docker` is stored as JSON true, which SQLite reads as 1.
            query = query.above("docker", 0);
        } else if !buildpack {
            query = query.any_of("guid", Vec::new());
        }
    }
    page_response::<App>(
        &api,
        &access,
        &mut c,
        q.as_deref(),
        &params,
        "/v3/apps",
        query,
    )
    .await
}

async fn update_app(
    State(api): State<Api>,
    Extension(p): Extension<Principal>,
    Path(guid): Path<String>,
    body: Bytes,
) -> ApiResult<Response> {
    let req: AppPatch = parse_json(&body)?;
    let mut tx = store::begin(&api.inner.pool).await?;
    let mut app: App = store::fetch(&mut tx, &guid).await?;
    if let Some(name) = req.name.clone() {
        if name.trim().is_empty() {
            return Err(ApiError::Unprocessable("Name can't be blank".into()));
        }
        if name != app.name {
            let dup = Query::new()
                .eq("space_guid", &app.space_guid)
                .eq("name", &name);
            if store::find_one::<App>(&mut tx, &dup).await?.is_some() {
                return Err(ApiError::Uniqueness(format!(
                    "App with the name '{name}' already exists."
                )));
            }
            app.name = name;
        }
    }
    if let Some(l) = &req.lifecycle {
        check_lifecycle(l)?;
        if l.kind.is_some() && (l.kind.as_deref() == Some("docker")) != app.docker {
            return Err(ApiError::Unprocessable(
                "Lifecycle type cannot be changed".into(),
            ));
        }
        l.apply(&mut tx, &mut app.buildpacks, &mut app.stack)
            .await?;
    }
    if let Some(m) = &req.metadata {
        app.metadata.merge(m);
    }
    app.updated_at = now();
    store::put(&mut tx, &app).await?;
    let request: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    audit_app(
        &mut tx,
        "audit.app.update",
        &p,
        &app,
        json!({"request": request}),
    )
    .await?;
    tx.commit().await?;
    Ok(ok(app.json(&api.inner.config.external_url)))
}

async fn delete_app(
    State(api): State<Api>,
    Extension(p): Extension<Principal>,
    Path(guid): Path<String>,
) -> ApiResult<Response> {
    let _serial = api.lock_app(&guid).await;
    let mut tx = store::begin(&api.inner.pool).await?;
    let app: App = store::fetch(&mut tx, &guid).await?;
    let deleted = delete_app_in_tx(&mut tx, &p, &app).await?;
    let job = Job::completed("app.delete", None);
    store::insert(&mut tx, &job).await?;
    tx.commit().await?;
    deleted.finish(&api).await;
    Ok(accepted_job(&api, &job.guid))
}

/// What deleting an app leaves to do after its transaction commits.
pub(crate) struct DeletedApp {
    processes: Vec<String>,
    running_tasks: Vec<String>,
    blobs: Vec<String>,
}

impl DeletedApp {
    /// Stops the app's processes and removes its blobs. Blobs go after the
    /// commit: a leftover blob is garbage, a missing one under a live record
    /// would be an error.
    pub(crate) async fn finish(self, api: &Api) {
        for process in &self.processes {
            api.inner.runtime.remove(process).await;
        }
        for task in &self.running_tasks {
            api.inner.runtime.cancel_task(task).await;
        }
        for key in &self.blobs {
            let _ = api.inner.blobs.delete(key).await;
        }
    }
}

/// Deletes an app with its processes, packages, droplets, builds and tasks,
/// and unmaps it from its routes, in the caller's transaction.
pub(crate) async fn delete_app_in_tx(
    tx: &mut SqliteConnection,
    p: &Principal,
    app: &App,
) -> ApiResult<DeletedApp> {
    let guid = &app.guid;
    let owned = Query::new().eq("app_guid", guid);
    let processes: Vec<Process> = store::find(tx, &owned).await?;
    let packages: Vec<Package> = store::find(tx, &owned).await?;
    let droplets: Vec<Droplet> = store::find(tx, &owned).await?;
    let builds: Vec<Build> = store::find(tx, &owned).await?;
    let tasks: Vec<crate::model::Task> = store::find(tx, &owned).await?;
    for pr in &processes {
        store::delete::<Process>(tx, &pr.guid).await?;
        crate::usage_events::stopped(tx, &pr.guid).await?;
        store::delete::<Desired>(tx, &pr.guid).await?;
    }
    for pk in &packages {
        store::delete::<Package>(tx, &pk.guid).await?;
    }
    for d in &droplets {
        store::delete::<Droplet>(tx, &d.guid).await?;
    }
    for b in &builds {
        store::delete::<Build>(tx, &b.guid).await?;
    }
    for t in &tasks {
        store::delete::<crate::model::Task>(tx, &t.guid).await?;
    }
    let bindings: Vec<crate::services::Binding> = store::find(tx, &owned).await?;
    for b in &bindings {
        store::delete::<crate::services::Binding>(tx, &b.guid).await?;
    }
    let routes: Vec<Route> =
        store::find(tx, &Query::new().eq("space_guid", &app.space_guid)).await?;
    for mut r in routes {
        let before = r.destinations.len();
        r.destinations.retain(|d| &d.app_guid != guid);
        if r.destinations.len() != before {
            r.updated_at = now();
            store::put(tx, &r).await?;
        }
    }
    store::delete::<App>(tx, guid).await?;
    audit_app(
        tx,
        "audit.app.delete-request",
        p,
        app,
        json!({"request": {"recursive": true}}),
    )
    .await?;
    let mut blobs: Vec<String> = packages.iter().map(Package::blob_key).collect();
    blobs.extend(droplets.into_iter().map(|d| d.blob_key));
    Ok(DeletedApp {
        processes: processes.into_iter().map(|p| p.guid).collect(),
        running_tasks: tasks
            .into_iter()
            .filter(|t| !t.is_final())
            .map(|t| t.guid)
            .collect(),
        blobs,
    })
}

/// The URIs of every route mapped to this process.
pub(crate) async fn process_uris(
    c: &mut SqliteConnection,
    app: &App,
    process_type: &str,
) -> ApiResult<Vec<String>> {
    let routes: Vec<Route> =
        store::find(c, &Query::new().eq("space_guid", &app.space_guid)).await?;
    let mut uris = Vec::new();
    for r in routes {
        if r.destinations
            .iter()
            .any(|d| d.app_guid == app.guid && d.process_type == process_type)
        {
            if let Some(domain) = store::get::<Domain>(c, &r.domain_guid).await? {
                uris.push(r.desired_uri(&domain.name));
            }
        }
    }
    uris.sort();
    uris.dedup();
    Ok(uris)
}

/// What a process of a started app desires now, from the stored state.
pub(crate) async fn desired_process(
    c: &mut SqliteConnection,
    app: &App,
    space: &Space,
    org: &Org,
    droplet: &Droplet,
    process: &Process,
) -> ApiResult<DesiredProcess> {
    Ok(DesiredProcess {
        process_guid: process.guid.clone(),
        process_type: process.kind.clone(),
        app_guid: app.guid.clone(),
        app_name: app.name.clone(),
        space_guid: space.guid.clone(),
        space_name: space.name.clone(),
        org_guid: org.guid.clone(),
        org_name: org.name.clone(),
        droplet_guid: droplet.guid.clone(),
        droplet_key: droplet.blob_key.clone(),
        command: process.effective_command(Some(droplet)).unwrap_or_default(),
        instances: process.instances,
        memory_mb: process.memory_mb,
        disk_mb: process.disk_mb,
        environment: crate::env_groups::layered(
            crate::env_groups::vars(c, "running").await?,
            app.env_strings(),
        ),
        uris: process_uris(c, app, &process.kind).await?,
        health_check: HealthCheck {
            kind: process.health_check_type.clone(),
            // An http check without an endpoint checks `/`, as CF does.
            endpoint: match (
                &process.health_check_endpoint,
                process.health_check_type.as_str(),
            ) {
                (Some(e), _) => Some(e.clone()),
                (None, "http") => Some("/".to_string()),
                (None, _) => None,
            },
            timeout_secs: process.health_check_timeout,
            invocation_timeout_secs: process.health_check_invocation_timeout,
        },
        vcap_services: crate::services::vcap_services(c, &app.guid)
            .await?
            .to_string(),
        log_rate_limit: process.log_rate_limit,
        egress: crate::security_groups::running_rules(c, &space.guid).await?,
        docker_image: crate::builds::docker_image(c, droplet).await?,
    })
}

/// Marks the app started and records, in the caller's transaction, what its
/// processes desire; the caller hands the result to the runtime after commit.
pub(crate) async fn start_in_tx(
    c: &mut SqliteConnection,
    app_guid: &str,
) -> ApiResult<Vec<DesiredProcess>> {
    let (mut app, space, org) = app_context(c, app_guid).await?;
    let droplet_guid = app.droplet_guid.clone().ok_or_else(|| {
        ApiError::Unprocessable("Assign a droplet before starting this app.".into())
    })?;
    let droplet: Droplet = store::fetch(c, &droplet_guid).await?;
    app.state = "STARTED".into();
    app.updated_at = now();
    store::put(c, &app).await?;
    // A start that would exceed a quota is refused before anything is
    // committed (CF validates every process as it turns STARTED).
    crate::quotas::check_app(c, app_guid, None).await?;
    let processes: Vec<Process> = store::find(c, &Query::new().eq("app_guid", app_guid)).await?;
    let mut desired = Vec::new();
    for process in processes {
        let dp = desired_process(c, &app, &space, &org, &droplet, &process).await?;
        desired.push(record_desired(c, dp).await?);
    }
    Ok(desired)
}

/// Stores what a process was last told to desire (for `resume`).
async fn record_desired(c: &mut SqliteConnection, dp: DesiredProcess) -> ApiResult<DesiredProcess> {
    crate::usage_events::desired(c, &dp).await?;
    let record = Desired {
        guid: dp.process_guid.clone(),
        app_guid: dp.app_guid.clone(),
        process: dp,
    };
    store::put(c, &record).await?;
    Ok(record.process)
}

/// Marks the app stopped and forgets its desired state, in the caller's
/// transaction; returns the process guids to remove from the runtime.
async fn stop_in_tx(c: &mut SqliteConnection, app_guid: &str) -> ApiResult<Vec<String>> {
    let mut app: App = store::fetch(c, app_guid).await?;
    app.state = "STOPPED".into();
    app.updated_at = now();
    store::put(c, &app).await?;
    let processes: Vec<Process> = store::find(c, &Query::new().eq("app_guid", app_guid)).await?;
    for p in &processes {
        crate::usage_events::stopped(c, &p.guid).await?;
        store::delete::<Desired>(c, &p.guid).await?;
    }
    Ok(processes.into_iter().map(|p| p.guid).collect())
}

/// What an app action does, in this order.
struct Action {
    /// Removes the running instances.
    stop: bool,
    /// Desires the processes again (new instances).
    start: bool,
    /// The audit event, e.g. `audit.app.start`.
    event: &'static str,
    /// The verb of the `API` log line, e.g. `Starting`.
    verb: &'static str,
}

/// The actions `/v3/apps/:guid/actions/<name>` knows.
fn action(name: &str) -> Option<Action> {
    let (stop, start, event, verb) = match name {
        "start" => (false, true, "audit.app.start", "Starting"),
        "stop" => (true, false, "audit.app.stop", "Stopping"),
        "restart" => (true, true, "audit.app.restart", "Restarting"),
        _ => return None,
    };
    Some(Action {
        stop,
        start,
        event,
        verb,
    })
}

/// Starts, stops or restarts an app.
async fn act(
    State(api): State<Api>,
    Extension(p): Extension<Principal>,
    Path((guid, name)): Path<(String, String)>,
) -> ApiResult<Response> {
    let action = action(&name).ok_or(ApiError::UnknownRequest)?;
    let _serial = api.lock_app(&guid).await;
    let mut tx = store::begin(&api.inner.pool).await?;
    let removed = if action.stop {
        stop_in_tx(&mut tx, &guid).await?
    } else {
        Vec::new()
    };
    let desired = if action.start {
        start_in_tx(&mut tx, &guid).await?
    } else {
        Vec::new()
    };
    let app: App = store::fetch(&mut tx, &guid).await?;
    if let (true, Some(droplet)) = (action.start, &app.droplet_guid) {
        crate::deployments::record_revision(&mut tx, &app, droplet, None).await?;
    }
    audit_app(&mut tx, action.event, &p, &app, json!({})).await?;
    tx.commit().await?;
    api.api_log(&guid, &format!("{} app with guid {guid}", action.verb));
    // Remove first so a restart's instances are new (new instance guids),
    // as a CF restart gives.
    for g in removed {
        api.inner.runtime.remove(&g).await;
    }
    for dp in desired {
        api.inner.runtime.desire(dp).await;
    }
    Ok(ok(app.json(&api.inner.config.external_url)))
}

/// Patches the stored desired state of a started app's processes and hands
/// it to the runtime again (scale, route changes). Processes without a stored
/// desired state get one computed from the current state.
pub(crate) async fn redesire(
    api: &Api,
    app_guid: &str,
    patch: impl Fn(&mut DesiredProcess, &Process),
) -> ApiResult<()> {
    let _serial = api.lock_app(app_guid).await;
    let mut tx = store::begin(&api.inner.pool).await?;
    let Some(app) = store::get::<App>(&mut tx, app_guid).await? else {
        return Ok(());
    };
    if app.state != "STARTED" {
        return Ok(());
    }
    let (app, space, org) = app_context(&mut tx, app_guid).await?;
    let Some(droplet_guid) = app.droplet_guid.clone() else {
        return Ok(());
    };
    let droplet: Droplet = store::fetch(&mut tx, &droplet_guid).await?;
    let processes: Vec<Process> =
        store::find(&mut tx, &Query::new().eq("app_guid", app_guid)).await?;
    let mut desired = Vec::new();
    for process in processes {
        let mut dp = match store::get::<Desired>(&mut tx, &process.guid).await? {
            Some(d) => d.process,
            None => desired_process(&mut tx, &app, &space, &org, &droplet, &process).await?,
        };
        dp.uris = process_uris(&mut tx, &app, &process.kind).await?;
        // Security groups may have changed since it was stored (or it
        // predates them): the current running rules always apply.
        dp.egress = crate::security_groups::running_rules(&mut tx, &space.guid).await?;
        patch(&mut dp, &process);
        desired.push(record_desired(&mut tx, dp).await?);
    }
    tx.commit().await?;
    for dp in desired {
        api.inner.runtime.desire(dp).await;
    }
    Ok(())
}

pub(crate) async fn resume(api: &Api) -> ApiResult<()> {
    fail_interrupted(api).await?;
    let started: Vec<App> = {
        let mut c = api.inner.pool.acquire().await?;
        store::find(&mut c, &Query::new().eq("state", "STARTED")).await?
    };
    // The stored desired state is replayed as it was last handed over (an
    // env change made since then still waits for a restart); routes are
    // read afresh.
    for app in started {
        redesire(api, &app.guid, |_, _| {}).await?;
    }
    crate::deployments::resume(api).await
}

/// Uploads and stagings run in tasks of the previous platform process; after
/// a restart nobody will finish them, so they fail with a reason the user can
/// act on (upload or stage again) instead of staying in progress forever.
async fn fail_interrupted(api: &Api) -> ApiResult<()> {
    let mut tx = store::begin(&api.inner.pool).await?;
    let at = now();
    let packages: Vec<Package> =
        store::find(&mut tx, &Query::new().eq("state", "PROCESSING")).await?;
    for mut p in packages {
        p.state = "FAILED".into();
        p.error = Some("The upload was interrupted by a platform restart; upload again.".into());
        p.updated_at = at.clone();
        store::put(&mut tx, &p).await?;
    }
    let builds: Vec<Build> = store::find(&mut tx, &Query::new().eq("state", "STAGING")).await?;
    for mut b in builds {
        b.state = "FAILED".into();
        b.error = Some(
            "StagingError - Staging was interrupted by a platform restart; stage again.".into(),
        );
        b.updated_at = at.clone();
        store::put(&mut tx, &b).await?;
    }
    crate::tasks::fail_interrupted(&mut tx, &at).await?;
    tx.commit().await?;
    Ok(())
}

fn droplet_rel(api: &Api, app_guid: &str, droplet_guid: &str) -> Value {
    json!({
        "data": {"guid": droplet_guid},
        "links": {
            "self": {"href": api.url(&format!("/v3/apps/{app_guid}/relationships/current_droplet"))},
            "related": {"href": api.url(&format!("/v3/apps/{app_guid}/droplets/current"))},
        }
    })
}

async fn get_current_droplet_rel(
    State(api): State<Api>,
    Path(guid): Path<String>,
) -> ApiResult<Response> {
    let mut c = api.inner.pool.acquire().await?;
    let app: App = store::fetch(&mut c, &guid).await?;
    let d = app
        .droplet_guid
        .ok_or_else(|| ApiError::not_found("Droplet"))?;
    Ok(ok(droplet_rel(&api, &guid, &d)))
}

async fn get_current_droplet(
    State(api): State<Api>,
    Path(guid): Path<String>,
) -> ApiResult<Response> {
    let mut c = api.inner.pool.acquire().await?;
    let app: App = store::fetch(&mut c, &guid).await?;
    let d = app
        .droplet_guid
        .ok_or_else(|| ApiError::not_found("Droplet"))?;
    let droplet: Droplet = store::fetch(&mut c, &d).await?;
    Ok(ok(droplet.json(&api.inner.config.external_url)))
}

async fn set_current_droplet(
    State(api): State<Api>,
    Extension(p): Extension<Principal>,
    Path(guid): Path<String>,
    body: Bytes,
) -> ApiResult<Response> {
    let req: ToOne = parse_json(&body)?;
    let mut tx = store::begin(&api.inner.pool).await?;
    let mut app: App = store::fetch(&mut tx, &guid).await?;
    let droplet = store::get::<Droplet>(&mut tx, &req.data.guid)
        .await?
        .filter(|d| d.app_guid == guid && d.state == "STAGED")
        .ok_or_else(|| {
            ApiError::Unprocessable(
                "Unable to assign current droplet. Ensure the droplet exists and belongs to this app."
                    .into(),
            )
        })?;
    app.droplet_guid = Some(droplet.guid.clone());
    app.updated_at = now();
    store::put(&mut tx, &app).await?;
    // A droplet brings its process types: create the ones the app lacks.
    let existing: Vec<Process> = store::find(&mut tx, &Query::new().eq("app_guid", &guid)).await?;
    for kind in droplet.process_types.keys() {
        if !existing.iter().any(|p| &p.kind == kind) {
            store::insert(&mut tx, &Process::new(&guid, kind, None)).await?;
        }
    }
    audit_app(
        &mut tx,
        "audit.app.droplet.mapped",
        &p,
        &app,
        json!({"request": {"droplet_guid": droplet.guid}}),
    )
    .await?;
    tx.commit().await?;
    Ok(ok(droplet_rel(&api, &guid, &droplet.guid)))
}

fn env_vars_json(api: &Api, app: &App) -> Value {
    json!({
        "var": app.env,
        "links": {
            "self": {"href": api.url(&format!("/v3/apps/{}/environment_variables", app.guid))},
            "app": {"href": api.url(&format!("/v3/apps/{}", app.guid))},
        }
    })
}

async fn get_env_vars(State(api): State<Api>, Path(guid): Path<String>) -> ApiResult<Response> {
    let mut c = api.inner.pool.acquire().await?;
    let app: App = store::fetch(&mut c, &guid).await?;
    Ok(ok(env_vars_json(&api, &app)))
}

#[derive(Deserialize)]
struct EnvPatch {
    var: Option<Map<String, Value>>,
}

async fn patch_env_vars(
    State(api): State<Api>,
    Extension(p): Extension<Principal>,
    Path(guid): Path<String>,
    body: Bytes,
) -> ApiResult<Response> {
    let req: EnvPatch = parse_json(&body)?;
    let mut tx = store::begin(&api.inner.pool).await?;
    let mut app: App = store::fetch(&mut tx, &guid).await?;
    for (k, v) in req.var.unwrap_or_default() {
        if k.starts_with("VCAP_") || k == "PORT" {
            return Err(ApiError::Unprocessable(format!(
                "Environment variable '{k}' cannot start with VCAP_ or be PORT"
            )));
        }
        if v.is_null() {
            app.env.remove(&k);
        } else {
            app.env.insert(k, v);
        }
    }
    app.updated_at = now();
    store::put(&mut tx, &app).await?;
    audit_app(
        &mut tx,
        "audit.app.update",
        &p,
        &app,
        json!({"request": {"environment_variables": "[PRIVATE DATA HIDDEN]"}}),
    )
    .await?;
    tx.commit().await?;
    Ok(ok(env_vars_json(&api, &app)))
}

/// `VCAP_APPLICATION` as CF shows it in `/v3/apps/:guid/env`.
pub(crate) fn vcap_application(
    api: &Api,
    app: &App,
    space: &Space,
    org: &Org,
    uris: &[String],
    memory_mb: u64,
    disk_mb: u64,
) -> Value {
    json!({
        "application_id": app.guid,
        "application_name": app.name,
        "application_uris": uris,
        "cf_api": api.inner.config.external_url,
        "limits": {"fds": 16384, "mem": memory_mb, "disk": disk_mb},
        "name": app.name,
        "organization_id": org.guid,
        "organization_name": org.name,
        "space_id": space.guid,
        "space_name": space.name,
        "uris": uris,
        "users": null,
    })
}

async fn get_env(State(api): State<Api>, Path(guid): Path<String>) -> ApiResult<Response> {
    let mut c = api.inner.pool.acquire().await?;
    let (app, space, org) = app_context(&mut c, &guid).await?;
    let web = store::find_one::<Process>(
        &mut c,
        &Query::new().eq("app_guid", &guid).eq("type", "web"),
    )
    .await?;
    let uris = process_uris(&mut c, &app, "web").await?;
    let (mem, disk) = web.map(|w| (w.memory_mb, w.disk_mb)).unwrap_or((0, 0));
    let services = crate::services::vcap_services(&mut c, &app.guid).await?;
    let staging = crate::env_groups::json_vars(&mut c, "staging").await?;
    let running = crate::env_groups::json_vars(&mut c, "running").await?;
    Ok(ok(json!({
        "staging_env_json": staging,
        "running_env_json": running,
        "environment_variables": app.env,
        "system_env_json": {"VCAP_SERVICES": services},
        "application_env_json": {"VCAP_APPLICATION": vcap_application(&api, &app, &space, &org, &uris, mem, disk)},
    })))
}

/// Buildpack references for staging, resolved from the app's buildpack names.
pub(crate) async fn resolve_buildpacks(
    c: &mut SqliteConnection,
    names: &[String],
) -> ApiResult<(Vec<crate::BuildpackRef>, Vec<crate::BuildpackRef>)> {
    fn to_ref(b: &Buildpack) -> crate::BuildpackRef {
        match (&b.blob_key, b.builtin) {
            (Some(key), false) => crate::BuildpackRef::Uploaded {
                name: b.name.clone(),
                blob_key: key.clone(),
            },
            _ => crate::BuildpackRef::Builtin(b.name.clone()),
        }
    }
    if names.is_empty() {
        let all: Vec<Buildpack> = store::find(c, &Query::new().order("position", false)).await?;
        let candidates = all
            .iter()
            .filter(|b| b.enabled && (b.builtin || b.blob_key.is_some()))
            .map(to_ref)
            .collect();
        return Ok((Vec::new(), candidates));
    }
    let mut refs = Vec::new();
    for name in names {
        if is_buildpack_url(name) {
            refs.push(crate::BuildpackRef::Url(name.clone()));
            continue;
        }
        let b = store::find_one::<Buildpack>(c, &Query::new().eq("name", name))
            .await?
            .ok_or_else(|| {
                ApiError::Unprocessable(format!(
                    "Buildpack \"{name}\" must be an existing admin buildpack or a valid git URI"
                ))
            })?;
        refs.push(to_ref(&b));
    }
    Ok((refs, Vec::new()))
}
