//! Processes: get, list, update (command, health check), scale, stats, and
//! the crash audit events the runtime reports.

use std::collections::HashMap;

use axum::extract::{Path, RawQuery, State};
use axum::response::Response;
use axum::routing::{get, post};
use axum::{Extension, Router};
use bytes::Bytes;
use serde::Deserialize;
use serde_json::{json, Value};
use sqlx::SqliteConnection;

use crate::apps::{app_target, audit_app, redesire};
use crate::authz::Access;
use crate::error::{ApiError, ApiResult};
use crate::http::{ok, parse_json, require, ListParams};
use crate::model::{now, App, Droplet, EventParty, Process, Space};
use crate::orgs::audit;
use crate::store::{self, Query};
use crate::{Api, CrashReport, Principal};

pub(crate) fn routes() -> Router<Api> {
    // A process is named by its guid or by its app and type; both forms
    // share the handlers (see [`target`]).
    Router::new()
        .route("/v3/processes", get(list_processes))
        .route("/v3/processes/{guid}", get(get_process).patch(patch))
        .route("/v3/processes/{guid}/actions/scale", post(scale))
        .route("/v3/processes/{guid}/stats", get(stats))
        .route("/v3/processes/{guid}/sidecars", get(process_sidecars))
        .route("/v3/apps/{guid}/processes", get(list_app_processes))
        .route(
            "/v3/apps/{guid}/processes/{kind}",
            get(get_process).patch(patch),
        )
        .route(
            "/v3/apps/{guid}/processes/{kind}/actions/scale",
            post(scale),
        )
        .route("/v3/apps/{guid}/processes/{kind}/stats", get(stats))
}

/// The path parameters of a process route: `guid`, and `kind` when the
/// route names the process by its app (`guid`) and type.
type Target = Path<HashMap<String, String>>;

/// The process a route names (404 without it, or without its app).
async fn target(api: &Api, Path(params): Target) -> ApiResult<Process> {
    let guid = params.get("guid").map(String::as_str).unwrap_or_default();
    match params.get("kind") {
        Some(kind) => by_type(api, guid, kind).await,
        None => require(api, guid).await,
    }
}

async fn render(api: &Api, c: &mut SqliteConnection, p: &Process) -> ApiResult<Value> {
    let app: App = store::fetch(c, &p.app_guid).await?;
    let droplet = match &app.droplet_guid {
        Some(d) => store::get::<Droplet>(c, d).await?,
        None => None,
    };
    Ok(p.json(
        &api.inner.config.external_url,
        &app.space_guid,
        droplet.as_ref(),
    ))
}

/// The app's process of this type (404 without the app or the process).
async fn by_type(api: &Api, app_guid: &str, kind: &str) -> ApiResult<Process> {
    let mut c = api.inner.pool.acquire().await?;
    store::fetch::<App>(&mut c, app_guid).await?;
    store::find_one::<Process>(
        &mut c,
        &Query::new().eq("app_guid", app_guid).eq("type", kind),
    )
    .await?
    .ok_or_else(|| ApiError::not_found("Process"))
}

async fn list_with(
    api: &Api,
    access: &Access,
    raw: Option<&str>,
    path: &str,
    base: Query,
) -> ApiResult<Response> {
    const FILTERS: &[(&str, &str)] = &[
        ("types", "type"),
        ("guids", "guid"),
        ("app_guids", "app_guid"),
    ];
    let mut names = ListParams::names(FILTERS);
    names.push("space_guids");
    let params = ListParams::parse(raw, &names, &[])?;
    let mut q = params.narrow(base, FILTERS);
    let mut c = api.inner.pool.acquire().await?;
    if let Some(spaces) = params.filter("space_guids") {
        let apps: Vec<App> =
            store::find(&mut c, &Query::new().any_of("space_guid", spaces)).await?;
        q = q.any_of("app_guid", apps.into_iter().map(|a| a.guid).collect());
    }
    let q = access.narrow::<Process>(&mut c, q).await?;
    let (procs, total) = store::page::<Process>(&mut c, &q, params.page, params.per_page).await?;
    let mut resources = Vec::new();
    for p in &procs {
        resources.push(render(api, &mut c, p).await?);
    }
    Ok(ok(params.envelope(api, path, total, resources)))
}

async fn list_processes(
    State(api): State<Api>,
    Extension(access): Extension<Access>,
    RawQuery(q): RawQuery,
) -> ApiResult<Response> {
    list_with(&api, &access, q.as_deref(), "/v3/processes", Query::new()).await
}

async fn list_app_processes(
    State(api): State<Api>,
    Extension(access): Extension<Access>,
    Path(guid): Path<String>,
    RawQuery(q): RawQuery,
) -> ApiResult<Response> {
    require::<App>(&api, &guid).await?;
    let path = format!("/v3/apps/{guid}/processes");
    list_with(
        &api,
        &access,
        q.as_deref(),
        &path,
        Query::new().eq("app_guid", &guid),
    )
    .await
}

async fn get_process(State(api): State<Api>, path: Target) -> ApiResult<Response> {
    let p = target(&api, path).await?;
    let mut c = api.inner.pool.acquire().await?;
    Ok(ok(render(&api, &mut c, &p).await?))
}

#[derive(Deserialize)]
struct ProcessPatch {
    #[serde(default, deserialize_with = "double_option")]
    command: Option<Option<String>>,
    health_check: Option<HealthCheckPatch>,
    metadata: Option<Value>,
}

#[derive(Deserialize)]
struct HealthCheckPatch {
    #[serde(rename = "type")]
    kind: Option<String>,
    data: Option<HealthCheckData>,
}

#[derive(Deserialize)]
struct HealthCheckData {
    timeout: Option<u64>,
    invocation_timeout: Option<u64>,
    endpoint: Option<String>,
}

/// Tells an absent field (`None`) from an explicit `null` (`Some(None)`).
fn double_option<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

/// Validates and applies a health check change to a process.
pub(crate) fn apply_health_check(
    p: &mut Process,
    kind: Option<&str>,
    endpoint: Option<&str>,
    timeout: Option<u64>,
    invocation_timeout: Option<u64>,
) -> ApiResult<()> {
    if let Some(kind) = kind {
        let kind = if kind == "none" { "process" } else { kind };
        if !["port", "process", "http"].contains(&kind) {
            return Err(ApiError::Unprocessable(
                "Health check type must be \"port\", \"process\", or \"http\"".into(),
            ));
        }
        p.health_check_type = kind.to_string();
    }
    if let Some(e) = endpoint {
        if !e.starts_with('/') {
            return Err(ApiError::Unprocessable(
                "Health check endpoint must be a valid URI path".into(),
            ));
        }
        p.health_check_endpoint = Some(e.to_string());
    }
    if let Some(t) = timeout {
        if t == 0 {
            return Err(ApiError::Unprocessable(
                "Health check timeout must be greater than or equal to 1".into(),
            ));
        }
        p.health_check_timeout = Some(t);
    }
    if let Some(t) = invocation_timeout {
        p.health_check_invocation_timeout = Some(t);
    }
    Ok(())
}

async fn patch(
    State(api): State<Api>,
    Extension(p): Extension<Principal>,
    path: Target,
    body: Bytes,
) -> ApiResult<Response> {
    let req: ProcessPatch = parse_json(&body)?;
    let guid = target(&api, path).await?.guid;
    let mut tx = store::begin(&api.inner.pool).await?;
    let mut process: Process = store::fetch(&mut tx, &guid).await?;
    if let Some(command) = req.command {
        process.command = command.filter(|c| !c.is_empty());
    }
    if let Some(hc) = &req.health_check {
        let data = hc.data.as_ref();
        apply_health_check(
            &mut process,
            hc.kind.as_deref(),
            data.and_then(|d| d.endpoint.as_deref()),
            data.and_then(|d| d.timeout),
            data.and_then(|d| d.invocation_timeout),
        )?;
    }
    if let Some(m) = &req.metadata {
        process.metadata.merge(m);
    }
    process.updated_at = now();
    store::put(&mut tx, &process).await?;
    crate::quotas::check_app(&mut tx, &process.app_guid, Some(&[process.guid.clone()])).await?;
    let app: App = store::fetch(&mut tx, &process.app_guid).await?;
    audit_app(
        &mut tx,
        "audit.app.process.update",
        &p,
        &app,
        json!({"process_guid": process.guid}),
    )
    .await?;
    let body = render(&api, &mut tx, &process).await?;
    tx.commit().await?;
    Ok(ok(body))
}

#[derive(Deserialize)]
struct ScaleRequest {
    instances: Option<i64>,
    memory_in_mb: Option<i64>,
    disk_in_mb: Option<i64>,
    log_rate_limit_in_bytes_per_second: Option<i64>,
}

/// Scales a process and, when its app runs, re-desires it.
async fn scale(
    State(api): State<Api>,
    Extension(p): Extension<Principal>,
    path: Target,
    body: Bytes,
) -> ApiResult<Response> {
    let req: ScaleRequest = parse_json(&body)?;
    let guid = target(&api, path).await?.guid;
    let mut tx = store::begin(&api.inner.pool).await?;
    let mut process: Process = store::fetch(&mut tx, &guid).await?;
    if let Some(i) = req.instances {
        process.instances = u32::try_from(i).map_err(|_| {
            ApiError::Unprocessable("Instances must be greater than or equal to 0".into())
        })?;
    }
    if let Some(m) = req.memory_in_mb {
        process.memory_mb = u64::try_from(m)
            .ok()
            .filter(|m| *m > 0)
            .ok_or_else(|| ApiError::Unprocessable("Memory in mb must be greater than 0".into()))?;
    }
    if let Some(d) = req.disk_in_mb {
        process.disk_mb = u64::try_from(d)
            .ok()
            .filter(|d| *d > 0)
            .ok_or_else(|| ApiError::Unprocessable("Disk in mb must be greater than 0".into()))?;
    }
    if let Some(l) = req.log_rate_limit_in_bytes_per_second {
        if l < -1 {
            return Err(ApiError::Unprocessable(
                "Log rate limit in bytes per second must be greater than or equal to -1".into(),
            ));
        }
        process.log_rate_limit = l;
    }
    process.updated_at = now();
    store::put(&mut tx, &process).await?;
    // Checked on the written values, before the commit: a refused scale
    // changes nothing.
    crate::quotas::check_app(&mut tx, &process.app_guid, Some(&[process.guid.clone()])).await?;
    let app: App = store::fetch(&mut tx, &process.app_guid).await?;
    audit_app(
        &mut tx,
        "audit.app.process.scale",
        &p,
        &app,
        json!({"process_guid": process.guid, "process_type": process.kind, "request": {
            "instances": req.instances, "memory_in_mb": req.memory_in_mb, "disk_in_mb": req.disk_in_mb}}),
    )
    .await?;
    let body = render(&api, &mut tx, &process).await?;
    tx.commit().await?;
    api.api_log(
        &process.app_guid,
        &format!(
            "Scaling process {} of app with guid {}: {} instances, {} MB memory, {} MB disk",
            process.kind, process.app_guid, process.instances, process.memory_mb, process.disk_mb
        ),
    );
    let scaled = process.guid.clone();
    redesire(&api, &process.app_guid, |dp, pr| {
        if pr.guid == scaled {
            dp.instances = pr.instances;
            dp.memory_mb = pr.memory_mb;
            dp.disk_mb = pr.disk_mb;
            dp.log_rate_limit = pr.log_rate_limit;
        }
    })
    .await?;
    Ok(ok(body))
}

async fn stats(State(api): State<Api>, path: Target) -> ApiResult<Response> {
    let process = target(&api, path).await?;
    let app: App = require(&api, &process.app_guid).await?;
    let mem_quota = process.memory_mb * 1024 * 1024;
    let disk_quota = process.disk_mb * 1024 * 1024;
    let reports = if app.state == "STARTED" {
        api.inner.runtime.instances(&process.guid)
    } else {
        Vec::new()
    };
    let time = now();
    let mut resources = Vec::new();
    for index in 0..process.instances {
        let entry = match reports.iter().find(|r| r.index == index) {
            Some(r) => json!({
                "type": process.kind, "index": r.index, "state": r.state,
                "usage": {"time": time, "cpu": r.cpu, "cpu_entitlement": null, "mem": r.mem_bytes, "disk": r.disk_bytes, "log_rate": 0},
                "host": r.host,
                "instance_guid": r.instance_guid,
                "instance_ports": r.port.map(|p| vec![json!({"external": p, "internal": p, "external_tls_proxy_port": null, "internal_tls_proxy_port": null})]).unwrap_or_default(),
                "uptime": r.uptime_secs, "mem_quota": mem_quota, "disk_quota": disk_quota,
                "log_rate_limit": -1, "fds_quota": 16384, "isolation_segment": null,
                "details": r.details, "routable": r.state == "RUNNING",
            }),
            None => json!({
                "type": process.kind, "index": index, "state": "DOWN",
                "usage": {}, "host": "", "instance_ports": [], "uptime": 0,
                "mem_quota": mem_quota, "disk_quota": disk_quota, "log_rate_limit": -1,
                "fds_quota": 16384, "isolation_segment": null, "details": null, "routable": false,
            }),
        };
        resources.push(entry);
    }
    Ok(ok(json!({"resources": resources})))
}

async fn process_sidecars(
    State(api): State<Api>,
    Path(guid): Path<String>,
    RawQuery(q): RawQuery,
) -> ApiResult<Response> {
    require::<Process>(&api, &guid).await?;
    let params = ListParams::parse(q.as_deref(), &[], &[])?;
    Ok(ok(params.envelope(
        &api,
        &format!("/v3/processes/{guid}/sidecars"),
        0,
        Vec::new(),
    )))
}

pub(crate) async fn record_crash(api: &Api, report: CrashReport) -> ApiResult<()> {
    let mut tx = store::begin(&api.inner.pool).await?;
    let process: Process = store::fetch(&mut tx, &report.process_guid).await?;
    let app: App = store::fetch(&mut tx, &process.app_guid).await?;
    let space: Option<Space> = store::get(&mut tx, &app.space_guid).await?;
    let actor = EventParty {
        guid: process.guid.clone(),
        kind: "process".into(),
        name: app.name.clone(),
    };
    let data = json!({
        "index": report.index,
        "instance": report.instance_guid,
        "cell_id": "local",
        "exit_status": report.exit_status,
        "exit_description": report.exit_description,
        "reason": report.reason,
        "crash_count": report.crash_count,
        "crash_timestamp": report.crash_timestamp_ns,
        "process_type": process.kind,
        "version": process.version,
    });
    audit(
        &mut tx,
        "audit.app.process.crash",
        actor,
        app_target(&app),
        data,
        Some(&app.space_guid),
        space.as_ref().map(|s| s.org_guid.as_str()),
    )
    .await?;
    tx.commit().await?;
    Ok(())
}
