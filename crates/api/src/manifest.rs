//! `apply_manifest` and `manifest_diff`: the YAML manifest the CLI sends on
//! every push; and `GET /v3/apps/:guid/manifest`, an app's manifest as CF
//! generates it (which is also what `manifest_diff` compares against).
//!
//! What CF validates up front (YAML, names, sizes, health checks,
//! buildpacks, stacks) is answered at once with a 4xx. The rest is applied in
//! one transaction before the `202`: an error there (a route on an unknown
//! domain or in another space) rolls everything back and leaves the job
//! `FAILED` with the error, so nothing of the manifest is applied and the job
//! the client polls is already final.

use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Router};
use bytes::Bytes;
use serde::Deserialize;
use serde_json::{json, Map, Value};
use sqlx::SqliteConnection;

use crate::apps::{audit_app, insert_app, redesire, validate_buildpacks};
use crate::error::{ApiError, ApiResult};
use crate::http::{accepted_job, created};
use crate::model::{now, App, Domain, Job, Metadata, Process, Route, Space};
use crate::orgs::resolve_stack;
use crate::processes::apply_health_check;
use crate::routes::{add_destination, find_or_create};
use crate::store::{self, Query};
use crate::{Api, Principal};

pub(crate) fn routes() -> Router<Api> {
    Router::new()
        .route("/v3/spaces/{guid}/actions/apply_manifest", post(apply))
        .route("/v3/spaces/{guid}/manifest_diff", post(diff))
        .route("/v3/apps/{guid}/manifest", get(show_manifest))
}

#[derive(Debug, Deserialize)]
struct Manifest {
    applications: Option<Vec<ManifestApp>>,
}

#[derive(Debug, Deserialize)]
struct ManifestApp {
    name: Option<String>,
    /// The web process's settings are given at the top level.
    #[serde(flatten)]
    web: ProcessSettings,
    buildpacks: Option<Vec<String>>,
    buildpack: Option<String>,
    env: Option<Map<String, Value>>,
    routes: Option<Vec<ManifestRoute>>,
    #[serde(rename = "no-route")]
    no_route: Option<bool>,
    #[serde(rename = "random-route")]
    random_route: Option<bool>,
    #[serde(rename = "default-route")]
    default_route: Option<bool>,
    stack: Option<String>,
    processes: Option<Vec<ManifestProcess>>,
    services: Option<Vec<Value>>,
    docker: Option<Value>,
    metadata: Option<Value>,
}

#[derive(Debug, Deserialize)]
struct ManifestRoute {
    route: Option<String>,
}

#[derive(Debug, Deserialize)]
struct ManifestProcess {
    #[serde(rename = "type")]
    kind: Option<String>,
    #[serde(flatten)]
    settings: ProcessSettings,
}

/// What a manifest may set on a process.
#[derive(Debug, Deserialize)]
struct ProcessSettings {
    instances: Option<i64>,
    memory: Option<Value>,
    #[serde(alias = "disk-quota")]
    disk_quota: Option<Value>,
    command: Option<String>,
    #[serde(rename = "health-check-type")]
    health_check_type: Option<String>,
    #[serde(rename = "health-check-http-endpoint")]
    health_check_http_endpoint: Option<String>,
    timeout: Option<u64>,
    #[serde(rename = "health-check-invocation-timeout")]
    health_check_invocation_timeout: Option<u64>,
}

/// Megabytes from a manifest size: `256M`, `256MB`, `1G`, `1024` (MB).
pub(crate) fn parse_megabytes(value: &Value) -> Option<u64> {
    let text = match value {
        Value::Number(n) => return n.as_u64(),
        Value::String(s) => s.trim().to_ascii_uppercase(),
        _ => return None,
    };
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let n: u64 = digits.parse().ok()?;
    let mb = match unit.trim() {
        "" | "M" | "MB" => n,
        "G" | "GB" => n.checked_mul(1024)?,
        "T" | "TB" => n.checked_mul(1024 * 1024)?,
        "K" | "KB" => n / 1024,
        "B" => n / (1024 * 1024),
        _ => return None,
    };
    (mb > 0).then_some(mb)
}

fn size(value: Option<&Value>, what: &str, kind: &str) -> ApiResult<Option<u64>> {
    match value {
        None => Ok(None),
        Some(v) => parse_megabytes(v).map(Some).ok_or_else(|| {
            ApiError::Unprocessable(format!(
                "Process \"{kind}\": {what} must use a supported unit: B, K, KB, M, MB, G, GB, T, or TB"
            ))
        }),
    }
}

fn instances(value: Option<i64>, kind: &str) -> ApiResult<Option<u32>> {
    match value {
        None => Ok(None),
        Some(i) => u32::try_from(i).map(Some).map_err(|_| {
            ApiError::Unprocessable(format!(
                "Process \"{kind}\": Instances must be greater than or equal to 0"
            ))
        }),
    }
}

/// A host label made from an app name, as CF makes default routes.
fn host_from_name(name: &str) -> String {
    let mut host: String = name
        .to_ascii_lowercase()
        .chars()
        .filter_map(|c| match c {
            'a'..='z' | '0'..='9' | '-' => Some(c),
            '_' | ' ' | '.' => Some('-'),
            _ => None,
        })
        .collect();
    host = host.trim_matches('-').to_string();
    host.truncate(63);
    host
}

/// Splits `host.domain/path` against the known domains (longest match).
async fn parse_route(c: &mut SqliteConnection, url: &str) -> ApiResult<(String, Domain, String)> {
    let unmatched = || {
        ApiError::Unprocessable(format!(
            "The route '{url}' did not match any existing domains."
        ))
    };
    let (hostpart, path) = match url.find('/') {
        Some(i) => (&url[..i], url[i..].to_string()),
        None => (url, String::new()),
    };
    if hostpart.contains(':') {
        return Err(ApiError::Unprocessable(format!(
            "The route '{url}' has a port; TCP routes are not supported by Ingot yet."
        )));
    }
    let hostpart = hostpart.to_ascii_lowercase();
    let domains: Vec<Domain> = store::find(c, &Query::new()).await?;
    let mut best: Option<(String, Domain)> = None;
    for d in domains {
        let host = if hostpart == d.name {
            Some(String::new())
        } else {
            hostpart
                .strip_suffix(&format!(".{}", d.name))
                .filter(|h| !h.contains('.'))
                .map(str::to_string)
        };
        if let Some(h) = host {
            if best
                .as_ref()
                .is_none_or(|(_, b)| d.name.len() > b.name.len())
            {
                best = Some((h, d));
            }
        }
    }
    let (host, domain) = best.ok_or_else(unmatched)?;
    if host.is_empty() {
        return Err(ApiError::Unprocessable(
            "Missing host. Routes in shared domains must have a host defined.".into(),
        ));
    }
    Ok((host, domain, path))
}

/// Applies the web-level or per-process settings to a process of type
/// `kind`; an invalid setting is CF's 422, naming the process type.
fn apply_process(p: &mut Process, s: &ProcessSettings, kind: &str) -> ApiResult<()> {
    if let Some(i) = instances(s.instances, kind)? {
        p.instances = i;
    }
    if let Some(m) = size(s.memory.as_ref(), "Memory", kind)? {
        p.memory_mb = m;
    }
    if let Some(d) = size(s.disk_quota.as_ref(), "Disk quota", kind)? {
        p.disk_mb = d;
    }
    if let Some(c) = &s.command {
        p.command = Some(c.clone()).filter(|c| !c.is_empty() && c != "null" && c != "default");
    }
    apply_health_check(
        p,
        s.health_check_type.as_deref(),
        s.health_check_http_endpoint.as_deref(),
        s.timeout,
        s.health_check_invocation_timeout,
    )?;
    p.updated_at = now();
    Ok(())
}

impl ManifestApp {
    /// The buildpacks asked for, if any: `buildpacks`, else `buildpack`
    /// (`default` and `null` mean auto-detection).
    fn buildpack_names(&self) -> Option<Vec<String>> {
        match (&self.buildpacks, &self.buildpack) {
            (Some(b), _) => Some(b.clone()),
            (None, Some(b)) if b == "default" || b == "null" => Some(Vec::new()),
            (None, Some(b)) => Some(vec![b.clone()]),
            (None, None) => None,
        }
    }
}

/// One app of a posted manifest as it was posted (for the diff).
type PostedApp = Map<String, Value>;

/// The apps of a posted manifest, typed, and as posted.
fn parse_manifest(body: &[u8]) -> ApiResult<(Vec<ManifestApp>, Vec<PostedApp>)> {
    let yaml: serde_yaml::Value = serde_yaml::from_slice(body)
        .map_err(|_| ApiError::MessageParse("invalid request body".into()))?;
    let json = serde_json::to_value(yaml)
        .map_err(|_| ApiError::MessageParse("invalid request body".into()))?;
    if !json.is_object() {
        return Err(ApiError::MessageParse("invalid request body".into()));
    }
    let posted: Vec<PostedApp> = json
        .get("applications")
        .and_then(Value::as_array)
        .map(|apps| apps.iter().filter_map(|a| a.as_object().cloned()).collect())
        .unwrap_or_default();
    let manifest: Manifest = serde_json::from_value(json)
        .map_err(|e| ApiError::Unprocessable(format!("The manifest is invalid: {e}")))?;
    let apps = manifest.applications.unwrap_or_default();
    if apps.is_empty() {
        return Err(ApiError::Unprocessable(
            "Applications must have at least 1 application".into(),
        ));
    }
    for (i, a) in apps.iter().enumerate() {
        if a.name.as_deref().is_none_or(|n| n.trim().is_empty()) {
            return Err(ApiError::Unprocessable(format!(
                "For application at index {i}: Name must not be empty"
            )));
        }
        if a.docker.is_some() {
            return Err(ApiError::Unprocessable(
                "Docker images are not supported by Ingot yet".into(),
            ));
        }
    }
    if posted.len() != apps.len() {
        // Every entry deserialized into an app, so every entry is an object.
        return Err(ApiError::Internal(
            "manifest applications changed shape while parsing".into(),
        ));
    }
    Ok((apps, posted))
}

async fn apply_one(
    c: &mut SqliteConnection,
    api: &Api,
    p: &Principal,
    space: &Space,
    m: &ManifestApp,
    warnings: &mut Vec<String>,
) -> ApiResult<String> {
    let name = m.name.clone().unwrap_or_default();
    if let Some(services) = &m.services {
        if !services.is_empty() {
            return Err(ApiError::Unprocessable(format!(
                "For application '{name}': service instances are not supported by Ingot yet"
            )));
        }
    }
    let buildpacks = m.buildpack_names();
    if let Some(b) = &buildpacks {
        validate_buildpacks(c, b).await?;
    }
    let stack = match &m.stack {
        Some(s) => Some(resolve_stack(c, Some(s), warnings).await?),
        None => None,
    };
    let existing = store::find_one::<App>(
        c,
        &Query::new().eq("space_guid", &space.guid).eq("name", &name),
    )
    .await?;
    let mut app = match existing {
        Some(mut app) => {
            if let Some(b) = &buildpacks {
                app.buildpacks = b.clone();
            }
            if let Some(s) = &stack {
                app.stack = s.clone();
            }
            if let Some(env) = &m.env {
                for (k, v) in env {
                    app.env.insert(k.clone(), v.clone());
                }
            }
            app.updated_at = now();
            store::put(c, &app).await?;
            app
        }
        None => {
            insert_app(
                c,
                p,
                &name,
                &space.guid,
                buildpacks.clone().unwrap_or_default(),
                stack
                    .clone()
                    .unwrap_or_else(|| crate::orgs::DEFAULT_STACK.into()),
                m.env.clone().unwrap_or_default(),
                Metadata::from_request(m.metadata.as_ref()),
            )
            .await?
        }
    };
    if let (Some(md), true) = (&m.metadata, app.metadata.labels.is_empty()) {
        app.metadata.merge(md);
        store::put(c, &app).await?;
    }
    let mut web: Process =
        store::find_one(c, &Query::new().eq("app_guid", &app.guid).eq("type", "web"))
            .await?
            .ok_or_else(|| ApiError::Internal(format!("app {} has no web process", app.guid)))?;
    apply_process(&mut web, &m.web, "web")?;
    store::put(c, &web).await?;
    for mp in m.processes.iter().flatten() {
        let kind = mp
            .kind
            .clone()
            .filter(|k| !k.is_empty())
            .ok_or_else(|| ApiError::Unprocessable("Process type must not be empty".into()))?;
        let mut process = match store::find_one::<Process>(
            c,
            &Query::new().eq("app_guid", &app.guid).eq("type", &kind),
        )
        .await?
        {
            Some(p) => p,
            None => {
                let p = Process::new(&app.guid, &kind, None);
                store::insert(c, &p).await?;
                p
            }
        };
        apply_process(&mut process, &mp.settings, &kind)?;
        store::put(c, &process).await?;
    }
    // Routes.
    let all_routes: Vec<Route> =
        store::find(c, &Query::new().eq("space_guid", &space.guid)).await?;
    let has_routes = all_routes
        .iter()
        .any(|r| r.destinations.iter().any(|d| d.app_guid == app.guid));
    if m.no_route == Some(true) {
        for mut r in all_routes {
            let before = r.destinations.len();
            r.destinations.retain(|d| d.app_guid != app.guid);
            if r.destinations.len() != before {
                r.updated_at = now();
                store::put(c, &r).await?;
            }
        }
    } else if let Some(routes) = &m.routes {
        for entry in routes {
            let url = entry.route.clone().ok_or_else(|| {
                ApiError::Unprocessable(format!(
                    "For application '{name}': each route must have a 'route'"
                ))
            })?;
            let (host, domain, path) = parse_route(c, &url).await?;
            let mut route = find_or_create(c, &host, &domain, &path, &space.guid).await?;
            add_destination(&mut route, &app.guid, "web", None);
            store::put(c, &route).await?;
        }
    } else if !has_routes && m.default_route != Some(false) {
        let domain = crate::orgs::default_domain(api, c).await?;
        let mut host = host_from_name(&name);
        if m.random_route == Some(true) {
            host = format!("{host}-{}", &crate::model::new_guid()[..8]);
        }
        let mut route = find_or_create(c, &host, &domain, "", &space.guid).await?;
        add_destination(&mut route, &app.guid, "web", None);
        store::put(c, &route).await?;
    }
    // A started app's new instances and memory must fit its quotas.
    crate::quotas::check_app(c, &app.guid, None).await?;
    app = store::fetch(c, &app.guid).await?;
    audit_app(
        c,
        "audit.app.apply_manifest",
        p,
        &app,
        json!({"request": {"manifest": "[PRIVATE DATA HIDDEN]"}}),
    )
    .await?;
    Ok(app.guid)
}

/// The checks CF makes before it accepts a manifest (answered with a 422 at
/// once): sizes, instances, health check types, buildpacks and stacks.
async fn validate(c: &mut SqliteConnection, m: &ManifestApp) -> ApiResult<()> {
    validate_settings(m)?;
    validate_buildpacks(c, &m.buildpack_names().unwrap_or_default()).await?;
    if let Some(s) = &m.stack {
        resolve_stack(c, Some(s), &mut Vec::new()).await?;
    }
    Ok(())
}

/// The checks of the manifest's own values (sizes, instances, health
/// checks), which need nothing from the database.
fn validate_settings(m: &ManifestApp) -> ApiResult<()> {
    // Applied to a throwaway process: only the errors matter here.
    apply_process(&mut Process::new("", "web", None), &m.web, "web")?;
    for mp in m.processes.iter().flatten() {
        let kind = mp.kind.clone().unwrap_or_default();
        apply_process(&mut Process::new("", &kind, None), &mp.settings, &kind)?;
    }
    Ok(())
}

async fn apply(
    State(api): State<Api>,
    Extension(p): Extension<Principal>,
    Path(guid): Path<String>,
    body: Bytes,
) -> ApiResult<Response> {
    let (apps, _) = parse_manifest(&body)?;
    {
        let mut c = api.inner.pool.acquire().await?;
        store::fetch::<Space>(&mut c, &guid).await?;
        for m in &apps {
            validate(&mut c, m).await?;
        }
    }
    let mut job = Job::new(
        "app.apply_manifest",
        Some(("space".into(), format!("/v3/spaces/{guid}"))),
    );
    let mut tx = store::begin(&api.inner.pool).await?;
    let space: Space = store::fetch(&mut tx, &guid).await?;
    let mut warnings = Vec::new();
    let mut touched = Vec::new();
    let mut failure = None;
    for m in &apps {
        match apply_one(&mut tx, &api, &p, &space, m, &mut warnings).await {
            Ok(app) => touched.push(app),
            Err(e) => {
                failure = Some(e);
                break;
            }
        }
    }
    job.warnings = warnings;
    match failure {
        None => {
            job.state = "COMPLETE".into();
            store::insert(&mut tx, &job).await?;
            tx.commit().await?;
        }
        Some(e) => {
            // Nothing of the manifest is applied; the job says why.
            tx.rollback().await?;
            if matches!(e.code_title_status().2.as_u16(), 500..=599) {
                return Err(e);
            }
            job.state = "FAILED".into();
            job.errors = vec![e.to_json()];
            let mut c = store::begin(&api.inner.pool).await?;
            store::insert(&mut c, &job).await?;
            c.commit().await?;
            return Ok(accepted_job(&api, &job.guid));
        }
    }
    // Running apps pick up the new scale and routes at once; commands, env
    // and health checks wait for a restart, as in CF.
    for app in touched {
        redesire(&api, &app, |dp, pr| {
            dp.instances = pr.instances;
            dp.memory_mb = pr.memory_mb;
            dp.disk_mb = pr.disk_mb;
        })
        .await?;
    }
    Ok(accepted_job(&api, &job.guid))
}

/// `POST /v3/spaces/:guid/manifest_diff`: how the posted manifest differs
/// from the space's apps as they are (see [`crate::manifest_diff`]). Changes
/// nothing.
async fn diff(
    State(api): State<Api>,
    Path(guid): Path<String>,
    body: Bytes,
) -> ApiResult<Response> {
    let mut c = api.inner.pool.acquire().await?;
    let space: Space = store::fetch(&mut c, &guid).await?;
    let (apps, posted) = parse_manifest(&body)?;
    for m in &apps {
        validate_settings(m)?;
    }
    let mut diff = Vec::new();
    for (index, (m, raw)) in apps.iter().zip(&posted).enumerate() {
        let name = m.name.clone().unwrap_or_default();
        let existing = store::find_one::<App>(
            &mut c,
            &Query::new().eq("space_guid", &space.guid).eq("name", &name),
        )
        .await?;
        let current = match existing {
            Some(app) => Some(yaml_to_json(&app_manifest(&mut c, &app).await?)?),
            None => None,
        };
        diff.extend(crate::manifest_diff::diff_app(index, current.as_ref(), raw));
    }
    Ok(created(json!({ "diff": diff })))
}

fn yaml_to_json(entry: &serde_yaml::Mapping) -> ApiResult<Map<String, Value>> {
    match serde_json::to_value(entry) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(ApiError::Internal("a manifest entry is not a map".into())),
        Err(e) => Err(ApiError::Internal(format!(
            "cannot convert a manifest entry: {e}"
        ))),
    }
}

fn yaml(value: &Value) -> ApiResult<serde_yaml::Value> {
    serde_yaml::to_value(value).map_err(|e| ApiError::Internal(format!("cannot encode YAML: {e}")))
}

/// One app's entry in a manifest as CF generates it: `name`, `env`,
/// `buildpacks`, `stack`, `routes`, `metadata` and `processes` (by type),
/// leaving out what is unset or empty.
pub(crate) async fn app_manifest(
    c: &mut SqliteConnection,
    app: &App,
) -> ApiResult<serde_yaml::Mapping> {
    let mut entry = serde_yaml::Mapping::new();
    let mut put = |key: &str, value: serde_yaml::Value| {
        entry.insert(serde_yaml::Value::String(key.to_string()), value);
    };
    put("name", app.name.clone().into());
    if !app.env.is_empty() {
        put("env", yaml(&Value::Object(app.env.clone()))?);
    }
    if !app.buildpacks.is_empty() {
        put("buildpacks", yaml(&json!(app.buildpacks))?);
    }
    put("stack", app.stack.clone().into());
    let routes: Vec<Route> =
        store::find(c, &Query::new().eq("space_guid", &app.space_guid)).await?;
    let mut uris = Vec::new();
    for r in routes {
        if r.destinations.iter().any(|d| d.app_guid == app.guid) {
            if let Some(domain) = store::get::<Domain>(c, &r.domain_guid).await? {
                uris.push(r.url(&domain.name));
            }
        }
    }
    uris.sort_by_key(|u| u.to_lowercase());
    uris.dedup();
    if !uris.is_empty() {
        let routes: Vec<Value> = uris.iter().map(|u| json!({ "route": u })).collect();
        put("routes", yaml(&Value::Array(routes))?);
    }
    let mut metadata = Map::new();
    if !app.metadata.labels.is_empty() {
        metadata.insert("labels".into(), Value::Object(app.metadata.labels.clone()));
    }
    if !app.metadata.annotations.is_empty() {
        metadata.insert(
            "annotations".into(),
            Value::Object(app.metadata.annotations.clone()),
        );
    }
    if !metadata.is_empty() {
        put("metadata", yaml(&Value::Object(metadata))?);
    }
    let processes: Vec<Process> = store::find(
        c,
        &Query::new().eq("app_guid", &app.guid).order("type", false),
    )
    .await?;
    let mut listed = Vec::new();
    for p in &processes {
        let mut e = serde_yaml::Mapping::new();
        let mut set = |key: &str, value: serde_yaml::Value| {
            e.insert(serde_yaml::Value::String(key.to_string()), value);
        };
        set("type", p.kind.clone().into());
        set("instances", p.instances.into());
        set("memory", format!("{}M", p.memory_mb).into());
        set("disk_quota", format!("{}M", p.disk_mb).into());
        if let Some(command) = &p.command {
            set("command", command.clone().into());
        }
        set("health-check-type", p.health_check_type.clone().into());
        if let Some(endpoint) = &p.health_check_endpoint {
            set("health-check-http-endpoint", endpoint.clone().into());
        }
        if let Some(t) = p.health_check_timeout {
            set("timeout", t.into());
        }
        if let Some(t) = p.health_check_invocation_timeout {
            set("health-check-invocation-timeout", t.into());
        }
        listed.push(serde_yaml::Value::Mapping(e));
    }
    if !listed.is_empty() {
        put("processes", serde_yaml::Value::Sequence(listed));
    }
    Ok(entry)
}

/// `GET /v3/apps/:guid/manifest`: the app's manifest, as YAML.
async fn show_manifest(State(api): State<Api>, Path(guid): Path<String>) -> ApiResult<Response> {
    let mut c = api.inner.pool.acquire().await?;
    let app: App = store::fetch(&mut c, &guid).await?;
    let entry = app_manifest(&mut c, &app).await?;
    let mut doc = serde_yaml::Mapping::new();
    doc.insert(
        "applications".into(),
        serde_yaml::Value::Sequence(vec![serde_yaml::Value::Mapping(entry)]),
    );
    let text = serde_yaml::to_string(&doc)
        .map_err(|e| ApiError::Internal(format!("cannot encode the manifest of {guid}: {e}")))?;
    Ok((
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/x-yaml")],
        text,
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_like_cf() {
        for (text, mb) in [
            ("256M", 256),
            ("1G", 1024),
            ("512MB", 512),
            ("2gb", 2048),
            ("128", 128),
        ] {
            assert_eq!(parse_megabytes(&json!(text)), Some(mb), "{text}");
        }
        assert_eq!(parse_megabytes(&json!(64)), Some(64));
        assert_eq!(parse_megabytes(&json!("lots")), None);
        assert_eq!(parse_megabytes(&json!("0M")), None);
    }

    #[test]
    fn default_hosts_are_valid_labels() {
        assert_eq!(host_from_name("My_App"), "my-app");
        assert_eq!(host_from_name("site"), "site");
    }
}
