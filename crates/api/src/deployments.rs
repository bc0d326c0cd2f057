//! Zero-downtime deployments and revisions: `/v3/deployments` (rolling,
//! cancel), `/v3/apps/:guid/revisions`, `/v3/revisions/:guid`.
//!
//! A rolling deployment runs a second web process beside the app's current
//! one, with the new droplet. It adds one new instance at a time and takes
//! one old instance away only after the new one is running and healthy, so
//! an app with a single instance always has one serving: both are routed
//! during the overlap. When every new instance runs, the old process is
//! removed and the new one becomes the app's web process. The progress is
//! stored at each step, so a platform restart resumes the deployment where it
//! was.
//!
//! A revision records what a deployment ran: the droplet, the environment and
//! the commands. Deploying a revision again is `rollback`.

use std::collections::BTreeMap;
use std::time::Duration;

use axum::extract::{Path, RawQuery, State};
use axum::response::Response;
use axum::routing::{get, post};
use axum::{Extension, Router};
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use sqlx::SqliteConnection;

use crate::apps::{app_context, audit_app, desired_process};
use crate::authz::{Access, Scope};
use crate::error::{ApiError, ApiResult};
use crate::http::{
    created, list, ok, page_response, parse_json, require, show, ListParams, Listed,
};
use crate::model::{
    link, link_method, new_guid, now, rel, App, Desired, Droplet, Metadata, Process,
};
use crate::store::{self, Doc, Query};
use crate::{Api, Principal};

/// How often a deployment checks its new instances.
const STEP_POLL: Duration = Duration::from_millis(500);

pub(crate) fn routes() -> Router<Api> {
    Router::new()
        .route(
            "/v3/deployments",
            get(list_deployments).post(create_deployment),
        )
        .route("/v3/deployments/{guid}", get(show::<Deployment>))
        .route("/v3/deployments/{guid}/actions/cancel", post(cancel))
        .route("/v3/apps/{guid}/revisions", get(app_revisions))
        .route(
            "/v3/apps/{guid}/revisions/deployed",
            get(deployed_revisions),
        )
        .route("/v3/revisions/{guid}", get(show::<Revision>))
        .route(
            "/v3/revisions/{guid}/environment_variables",
            get(revision_env),
        )
}

/// A rolling deployment of an app.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Deployment {
    pub guid: String,
    pub app_guid: String,
    /// `DEPLOYING`, `DEPLOYED`, `CANCELING` or `CANCELED`.
    pub state: String,
    pub droplet_guid: String,
    pub previous_droplet_guid: Option<String>,
    pub revision_guid: Option<String>,
    /// The process being replaced.
    pub old_process_guid: String,
    /// The process replacing it; stored here, not among the app's
    /// processes, until it takes over.
    pub new_process: Process,
    /// How many instances the app had (and the new process will have).
    pub target_instances: u32,
    /// How many new instances are desired so far.
    pub new_instances: u32,
    /// The environment and commands to restore on cancel.
    pub previous_env: Map<String, Value>,
    pub last_status_change: String,
    pub created_at: String,
    pub updated_at: String,
    #[serde(default)]
    pub metadata: Metadata,
}

impl Doc for Deployment {
    const TABLE: &'static str = "cc_deployments";
    const KIND: &'static str = "Deployment";
    const SCOPE: Scope = Scope::App("app_guid");
    fn guid(&self) -> &str {
        &self.guid
    }
}

impl Deployment {
    fn is_active(&self) -> bool {
        self.state == "DEPLOYING" || self.state == "CANCELING"
    }

    pub(crate) fn json(&self, base: &str) -> Value {
        let g = &self.guid;
        let (value, reason) = match self.state.as_str() {
            "DEPLOYING" => ("ACTIVE", "DEPLOYING"),
            "CANCELING" => ("ACTIVE", "CANCELING"),
            "CANCELED" => ("FINALIZED", "CANCELED"),
            _ => ("FINALIZED", "DEPLOYED"),
        };
        json!({
            "guid": g, "created_at": self.created_at, "updated_at": self.updated_at,
            "state": self.state,
            "status": {
                "value": value, "reason": reason,
                "details": {"last_successful_healthcheck": self.updated_at, "last_status_change": self.last_status_change},
            },
            "strategy": "rolling",
            "options": {"max_in_flight": 1},
            "droplet": {"guid": self.droplet_guid},
            "previous_droplet": {"guid": self.previous_droplet_guid},
            "new_processes": [{"guid": self.new_process.guid, "type": self.new_process.kind}],
            "revision": self.revision_guid.as_ref().map(|r| json!({"guid": r})),
            "relationships": {"app": rel(Some(&self.app_guid))},
            "metadata": self.metadata.json(),
            "links": {
                "self": link(base, &format!("/v3/deployments/{g}")),
                "app": link(base, &format!("/v3/apps/{}", self.app_guid)),
                "cancel": link_method(base, &format!("/v3/deployments/{g}/actions/cancel"), "POST"),
            }
        })
    }
}

impl crate::model::Render for Deployment {
    fn render(&self, base: &str) -> Value {
        self.json(base)
    }
}

impl Listed for Deployment {
    const NAME: &'static str = "deployments";
    const FILTERS: &'static [(&'static str, &'static str)] = &[
        ("guids", "guid"),
        ("app_guids", "app_guid"),
        ("states", "state"),
    ];
}

/// `GET /v3/deployments`, with CF's `status_values` (`ACTIVE`,
/// `FINALIZED`) and `status_reasons` filters besides the plain ones (the cf
/// CLI asks for `app_guids=…&status_values=ACTIVE` on every push).
async fn list_deployments(
    State(api): State<Api>,
    Extension(access): Extension<Access>,
    RawQuery(raw): RawQuery,
) -> ApiResult<Response> {
    let mut names = ListParams::names(Deployment::FILTERS);
    names.extend(["status_values", "status_reasons"]);
    let params = ListParams::parse(raw.as_deref(), &names, Deployment::ORDERS)?;
    let mut q = params.narrow(Query::new(), Deployment::FILTERS);
    let states = |pairs: &[(&str, &[&str])], wanted: Vec<String>| -> Vec<String> {
        pairs
            .iter()
            .filter(|(name, _)| wanted.iter().any(|w| w == name))
            .flat_map(|(_, states)| states.iter().map(|s| s.to_string()))
            .collect()
    };
    if let Some(values) = params.filter("status_values") {
        let pairs: &[(&str, &[&str])] = &[
            ("ACTIVE", &["DEPLOYING", "CANCELING"]),
            ("FINALIZED", &["DEPLOYED", "CANCELED"]),
        ];
        q = q.any_of("state", states(pairs, values));
    }
    if let Some(reasons) = params.filter("status_reasons") {
        let pairs: &[(&str, &[&str])] = &[
            ("DEPLOYING", &["DEPLOYING"]),
            ("CANCELING", &["CANCELING"]),
            ("DEPLOYED", &["DEPLOYED"]),
            ("CANCELED", &["CANCELED"]),
        ];
        q = q.any_of("state", states(pairs, reasons));
    }
    let mut c = api.inner.pool.acquire().await?;
    page_response::<Deployment>(
        &api,
        &access,
        &mut c,
        raw.as_deref(),
        &params,
        "/v3/deployments",
        q,
    )
    .await
}

/// What one deployment of an app ran.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Revision {
    pub guid: String,
    pub app_guid: String,
    pub version: u64,
    pub droplet_guid: String,
    pub description: String,
    /// Process type → its own command (`None`: the droplet's).
    pub commands: BTreeMap<String, Option<String>>,
    pub env: Map<String, Value>,
    pub created_at: String,
    pub updated_at: String,
    #[serde(default)]
    pub metadata: Metadata,
}

impl Doc for Revision {
    const TABLE: &'static str = "cc_revisions";
    const KIND: &'static str = "Revision";
    const SCOPE: Scope = Scope::App("app_guid");
    fn guid(&self) -> &str {
        &self.guid
    }
}

impl Revision {
    pub(crate) fn json(&self, base: &str) -> Value {
        let g = &self.guid;
        let processes: Map<String, Value> = self
            .commands
            .iter()
            .map(|(kind, command)| (kind.clone(), json!({"command": command})))
            .collect();
        json!({
            "guid": g, "created_at": self.created_at, "updated_at": self.updated_at,
            "version": self.version, "description": self.description, "deployable": true,
            "droplet": {"guid": self.droplet_guid},
            "processes": processes,
            "sidecars": [],
            "relationships": {"app": rel(Some(&self.app_guid))},
            "metadata": self.metadata.json(),
            "links": {
                "self": link(base, &format!("/v3/revisions/{g}")),
                "app": link(base, &format!("/v3/apps/{}", self.app_guid)),
                "environment_variables": link(base, &format!("/v3/revisions/{g}/environment_variables")),
            }
        })
    }
}

impl crate::model::Render for Revision {
    fn render(&self, base: &str) -> Value {
        self.json(base)
    }
}

impl Listed for Revision {
    const NAME: &'static str = "revisions";
    const FILTERS: &'static [(&'static str, &'static str)] = &[("versions", "version")];
    const ORDERS: &'static [&'static str] = &["version"];
}

/// Records a revision of the app as it is now (its droplet, environment and
/// process commands), unless the latest revision already says the same.
/// Returns the revision in force.
pub(crate) async fn record_revision(
    c: &mut SqliteConnection,
    app: &App,
    droplet_guid: &str,
    description: Option<String>,
) -> ApiResult<Revision> {
    let processes: Vec<Process> = store::find(c, &Query::new().eq("app_guid", &app.guid)).await?;
    let commands: BTreeMap<String, Option<String>> =
        processes.into_iter().map(|p| (p.kind, p.command)).collect();
    let latest = latest_revision(c, &app.guid).await?;
    if let Some(latest) = &latest {
        if description.is_none()
            && latest.droplet_guid == droplet_guid
            && latest.env == app.env
            && latest.commands == commands
        {
            return Ok(latest.clone());
        }
    }
    let version = latest.as_ref().map_or(1, |r| r.version + 1);
    let description = description.unwrap_or_else(|| match &latest {
        None => "Initial revision.".to_string(),
        Some(l) if l.droplet_guid != droplet_guid => "New droplet deployed.".to_string(),
        Some(l) if l.env != app.env => "New environment variables deployed.".to_string(),
        Some(_) => "Custom start command updated.".to_string(),
    });
    let at = now();
    let revision = Revision {
        guid: new_guid(),
        app_guid: app.guid.clone(),
        version,
        droplet_guid: droplet_guid.to_string(),
        description,
        commands,
        env: app.env.clone(),
        created_at: at.clone(),
        updated_at: at,
        metadata: Metadata::default(),
    };
    store::insert(c, &revision).await?;
    Ok(revision)
}

async fn latest_revision(c: &mut SqliteConnection, app_guid: &str) -> ApiResult<Option<Revision>> {
    let q = Query::new().eq("app_guid", app_guid).order("version", true);
    store::find_one(c, &q).await
}

#[derive(Debug, Deserialize)]
struct NewDeployment {
    relationships: Option<DeploymentRelationships>,
    droplet: Option<crate::apps::GuidRef>,
    revision: Option<crate::apps::GuidRef>,
    strategy: Option<String>,
    #[serde(default)]
    metadata: Option<Value>,
}

#[derive(Debug, Deserialize)]
struct DeploymentRelationships {
    app: Option<crate::apps::ToOne>,
}

async fn create_deployment(
    State(api): State<Api>,
    Extension(p): Extension<Principal>,
    body: Bytes,
) -> ApiResult<Response> {
    let req: NewDeployment = parse_json(&body)?;
    if let Some(strategy) = &req.strategy {
        if strategy != "rolling" {
            return Err(ApiError::Unprocessable(format!(
                "Strategy '{strategy}' is not supported: the strategy must be 'rolling'"
            )));
        }
    }
    let app_guid = req
        .relationships
        .and_then(|r| r.app)
        .map(|a| a.data.guid)
        .ok_or_else(|| ApiError::Unprocessable("Relationships App can't be blank".into()))?;
    let _serial = api.lock_app(&app_guid).await;
    let mut tx = store::begin(&api.inner.pool).await?;
    let (mut app, _, _) = match app_context(&mut tx, &app_guid).await {
        Ok(found) => found,
        Err(ApiError::ResourceNotFound(_)) => {
            return Err(ApiError::Unprocessable(
                "Invalid app. Ensure that the app exists and you have access to it.".into(),
            ))
        }
        Err(e) => return Err(e),
    };
    let active = Query::new()
        .eq("app_guid", &app_guid)
        .any_of("state", vec!["DEPLOYING".into(), "CANCELING".into()]);
    if store::find_one::<Deployment>(&mut tx, &active)
        .await?
        .is_some()
    {
        return Err(ApiError::Unprocessable(
            "The app already has a deployment in progress: wait for it, or cancel it with `ingot cancel-deployment`".into(),
        ));
    }
    // The droplet to deploy: a revision's (a rollback), the one named, or
    // the app's current one (a restart without downtime).
    let rollback = match &req.revision {
        Some(r) => {
            let revision = match store::get::<Revision>(&mut tx, &r.guid).await? {
                Some(rev) if rev.app_guid == app_guid => rev,
                _ => return Err(ApiError::Unprocessable(
                    "Invalid revision. Ensure that the revision exists and you have access to it."
                        .into(),
                )),
            };
            Some(revision)
        }
        None => None,
    };
    let droplet_guid = match (&rollback, &req.droplet, &app.droplet_guid) {
        (Some(rev), _, _) => rev.droplet_guid.clone(),
        (None, Some(d), _) => d.guid.clone(),
        (None, None, Some(current)) => current.clone(),
        (None, None, None) => {
            return Err(ApiError::Unprocessable(
                "Invalid droplet. Please specify a droplet in the request or set a current droplet for the app.".into(),
            ))
        }
    };
    let droplet = match store::get::<Droplet>(&mut tx, &droplet_guid).await? {
        Some(d) if d.app_guid == app_guid && d.state == "STAGED" => d,
        _ => return Err(ApiError::Unprocessable(
            "Unable to assign current droplet. Ensure the droplet exists and belongs to this app."
                .into(),
        )),
    };
    let previous_env = app.env.clone();
    let previous_droplet_guid = app.droplet_guid.clone();
    let web: Process = store::find_one(
        &mut tx,
        &Query::new().eq("app_guid", &app_guid).eq("type", "web"),
    )
    .await?
    .ok_or_else(|| ApiError::Unprocessable("The app has no web process to deploy".into()))?;
    if let Some(rev) = &rollback {
        app.env = rev.env.clone();
        let processes: Vec<Process> =
            store::find(&mut tx, &Query::new().eq("app_guid", &app_guid)).await?;
        for mut process in processes {
            if let Some(command) = rev.commands.get(&process.kind) {
                process.command = command.clone();
                store::put(&mut tx, &process).await?;
            }
        }
    }
    app.droplet_guid = Some(droplet.guid.clone());
    app.updated_at = now();
    let description = rollback
        .as_ref()
        .map(|r| format!("Rolled back to revision {}.", r.version));
    let revision = record_revision(&mut tx, &app, &droplet.guid, description).await?;
    let at = now();
    let mut new_process = store::get::<Process>(&mut tx, &web.guid)
        .await?
        .unwrap_or_else(|| web.clone());
    new_process.guid = new_guid();
    new_process.version = new_guid();
    new_process.created_at = at.clone();
    new_process.updated_at = at.clone();
    let stopped = app.state != "STARTED";
    let deployment = Deployment {
        guid: new_guid(),
        app_guid: app_guid.clone(),
        state: if stopped { "DEPLOYED" } else { "DEPLOYING" }.into(),
        droplet_guid: droplet.guid.clone(),
        previous_droplet_guid,
        revision_guid: Some(revision.guid.clone()),
        old_process_guid: web.guid.clone(),
        new_process,
        target_instances: web.instances,
        new_instances: 0,
        previous_env,
        last_status_change: at.clone(),
        created_at: at.clone(),
        updated_at: at,
        metadata: Metadata::from_request(req.metadata.as_ref()),
    };
    store::put(&mut tx, &app).await?;
    store::insert(&mut tx, &deployment).await?;
    audit_app(
        &mut tx,
        "audit.app.deployment.create",
        &p,
        &app,
        json!({"droplet_guid": droplet.guid, "strategy": "rolling",
               "revision_guid": revision.guid}),
    )
    .await?;
    // A stopped app simply starts on the new droplet.
    let desired = if stopped {
        crate::apps::start_in_tx(&mut tx, &app_guid).await?
    } else {
        Vec::new()
    };
    tx.commit().await?;
    for dp in desired {
        api.inner.runtime.desire(dp).await;
    }
    if !stopped {
        api.api_log(
            &app_guid,
            &format!("Creating rolling deployment for app with guid {app_guid}"),
        );
        spawn_driver(&api, &deployment.guid);
    }
    Ok(created(deployment.json(&api.inner.config.external_url)))
}

async fn cancel(
    State(api): State<Api>,
    Extension(p): Extension<Principal>,
    Path(guid): Path<String>,
) -> ApiResult<Response> {
    let mut tx = store::begin(&api.inner.pool).await?;
    let mut deployment: Deployment = store::fetch(&mut tx, &guid).await?;
    if deployment.state != "DEPLOYING" {
        return Err(ApiError::Unprocessable(format!(
            "Cannot cancel a {} deployment",
            deployment.state
        )));
    }
    deployment.state = "CANCELING".into();
    deployment.last_status_change = now();
    deployment.updated_at = deployment.last_status_change.clone();
    store::put(&mut tx, &deployment).await?;
    let app: App = store::fetch(&mut tx, &deployment.app_guid).await?;
    audit_app(
        &mut tx,
        "audit.app.deployment.cancel",
        &p,
        &app,
        json!({"deployment_guid": guid}),
    )
    .await?;
    tx.commit().await?;
    Ok(ok(json!({})))
}

/// Runs (or resumes) a deployment in the background until it ends.
fn spawn_driver(api: &Api, guid: &str) {
    let api = api.clone();
    let guid = guid.to_string();
    tokio::spawn(async move {
        loop {
            match step(&api, &guid).await {
                Ok(true) => tokio::time::sleep(STEP_POLL).await,
                Ok(false) => return,
                Err(err) => {
                    tracing::warn!(deployment = %guid, error = %err, "deployment step failed");
                    tokio::time::sleep(Duration::from_secs(2)).await;
                }
            }
        }
    });
}

/// One look at a deployment: adds a new instance, retires an old one, or
/// finishes. Returns whether the deployment goes on.
async fn step(api: &Api, guid: &str) -> ApiResult<bool> {
    let deployment: Deployment = require(api, guid).await?;
    let app_guid = deployment.app_guid.clone();
    let _serial = api.lock_app(&app_guid).await;
    let mut tx = store::begin(&api.inner.pool).await?;
    let mut d: Deployment = store::fetch(&mut tx, guid).await?;
    if !d.is_active() {
        return Ok(false);
    }
    let app: Option<App> = store::get(&mut tx, &app_guid).await?;
    let Some(app) = app.filter(|a| a.state == "STARTED") else {
        // The app was stopped or deleted under the deployment: it ends,
        // and the new process goes with it.
        finish(&mut tx, &mut d, "CANCELED").await?;
        tx.commit().await?;
        api.inner.runtime.remove(&d.new_process.guid).await;
        return Ok(false);
    };
    if d.state == "CANCELING" {
        return cancel_now(api, tx, d, app).await;
    }
    let running = api
        .inner
        .runtime
        .instances(&d.new_process.guid)
        .iter()
        .filter(|i| i.state == "RUNNING")
        .count();
    let running = u32::try_from(running).unwrap_or(u32::MAX);
    let target = d.target_instances;
    if running < d.new_instances {
        // Wait for the newest instance to become healthy.
        return Ok(true);
    }
    // The new instances so far all run: retire as many old ones.
    let old: Option<Process> = store::get(&mut tx, &d.old_process_guid).await?;
    if d.new_instances >= target {
        return promote(api, tx, d, app, old).await;
    }
    // As many old instances retire as new ones run, then one more new
    // instance starts.
    let old_left = target - d.new_instances;
    d.new_instances += 1;
    d.updated_at = now();
    store::put(&mut tx, &d).await?;
    let new_dp = desire_new(&mut tx, &app, &d).await?;
    let old_dp = match &old {
        Some(old) => {
            let mut dp = match store::get::<Desired>(&mut tx, &old.guid).await? {
                Some(desired) => desired.process,
                None => return Ok(true),
            };
            dp.instances = old_left;
            crate::usage_events::desired(&mut tx, &dp).await?;
            store::put(
                &mut tx,
                &Desired {
                    guid: old.guid.clone(),
                    app_guid: app.guid.clone(),
                    process: dp.clone(),
                },
            )
            .await?;
            Some(dp)
        }
        None => None,
    };
    tx.commit().await?;
    api.inner.runtime.desire(new_dp).await;
    if let Some(dp) = old_dp {
        api.inner.runtime.desire(dp).await;
    }
    Ok(true)
}

/// Stores and returns what the new process desires now.
async fn desire_new(
    c: &mut SqliteConnection,
    app: &App,
    d: &Deployment,
) -> ApiResult<crate::DesiredProcess> {
    let (_, space, org) = app_context(c, &app.guid).await?;
    let droplet: Droplet = store::fetch(c, &d.droplet_guid).await?;
    let mut process = d.new_process.clone();
    process.instances = d.new_instances;
    let dp = desired_process(c, app, &space, &org, &droplet, &process).await?;
    let record = Desired {
        guid: dp.process_guid.clone(),
        app_guid: app.guid.clone(),
        process: dp,
    };
    crate::usage_events::desired(c, &record.process).await?;
    store::put(c, &record).await?;
    Ok(record.process)
}

/// Every new instance runs: the new process replaces the old one.
async fn promote(
    api: &Api,
    mut tx: sqlx::Transaction<'static, sqlx::Sqlite>,
    mut d: Deployment,
    app: App,
    old: Option<Process>,
) -> ApiResult<bool> {
    if let Some(old) = &old {
        store::delete::<Process>(&mut tx, &old.guid).await?;
        crate::usage_events::stopped(&mut tx, &old.guid).await?;
        store::delete::<Desired>(&mut tx, &old.guid).await?;
    }
    let mut process = d.new_process.clone();
    process.instances = d.target_instances;
    process.updated_at = now();
    store::insert(&mut tx, &process).await?;
    d.new_instances = d.target_instances;
    let dp = desire_new(&mut tx, &app, &d).await?;
    finish(&mut tx, &mut d, "DEPLOYED").await?;
    tx.commit().await?;
    if let Some(old) = old {
        api.inner.runtime.remove(&old.guid).await;
    }
    api.inner.runtime.desire(dp).await;
    api.api_log(
        &app.guid,
        &format!(
            "Deployment {} of app with guid {} finished",
            d.guid, app.guid
        ),
    );
    Ok(false)
}

/// Puts the app back as it was: the old process at full strength, the old
/// droplet and environment; the new process goes.
async fn cancel_now(
    api: &Api,
    mut tx: sqlx::Transaction<'static, sqlx::Sqlite>,
    mut d: Deployment,
    mut app: App,
) -> ApiResult<bool> {
    app.droplet_guid = d.previous_droplet_guid.clone();
    app.env = d.previous_env.clone();
    app.updated_at = now();
    store::put(&mut tx, &app).await?;
    crate::usage_events::stopped(&mut tx, &d.new_process.guid).await?;
    store::delete::<Desired>(&mut tx, &d.new_process.guid).await?;
    let old_dp = match store::get::<Desired>(&mut tx, &d.old_process_guid).await? {
        Some(mut desired) => {
            desired.process.instances = d.target_instances;
            crate::usage_events::desired(&mut tx, &desired.process).await?;
            store::put(&mut tx, &desired).await?;
            Some(desired.process)
        }
        None => None,
    };
    finish(&mut tx, &mut d, "CANCELED").await?;
    tx.commit().await?;
    if let Some(dp) = old_dp {
        api.inner.runtime.desire(dp).await;
    }
    api.inner.runtime.remove(&d.new_process.guid).await;
    Ok(false)
}

async fn finish(c: &mut SqliteConnection, d: &mut Deployment, state: &str) -> ApiResult<()> {
    d.state = state.into();
    d.last_status_change = now();
    d.updated_at = d.last_status_change.clone();
    store::put(c, d).await
}

/// After a platform restart: desires the new processes of deployments in
/// progress again and resumes driving them.
pub(crate) async fn resume(api: &Api) -> ApiResult<()> {
    let active: Vec<Deployment> = {
        let mut c = api.inner.pool.acquire().await?;
        store::find(
            &mut c,
            &Query::new().any_of("state", vec!["DEPLOYING".into(), "CANCELING".into()]),
        )
        .await?
    };
    for d in active {
        let desired: Option<Desired> = {
            let mut c = api.inner.pool.acquire().await?;
            store::get(&mut c, &d.new_process.guid).await?
        };
        if let Some(desired) = desired {
            api.inner.runtime.desire(desired.process).await;
        }
        spawn_driver(api, &d.guid);
    }
    Ok(())
}

async fn app_revisions(
    State(api): State<Api>,
    Extension(access): Extension<Access>,
    Path(guid): Path<String>,
    RawQuery(raw): RawQuery,
) -> ApiResult<Response> {
    require::<App>(&api, &guid).await?;
    let path = format!("/v3/apps/{guid}/revisions");
    list::<Revision>(
        &api,
        &access,
        raw.as_deref(),
        &path,
        Query::new().eq("app_guid", &guid).order("version", false),
    )
    .await
}

/// The revision the app's processes run now (the latest), if it runs.
async fn deployed_revisions(
    State(api): State<Api>,
    Extension(access): Extension<Access>,
    Path(guid): Path<String>,
    RawQuery(raw): RawQuery,
) -> ApiResult<Response> {
    let app: App = require(&api, &guid).await?;
    let latest = {
        let mut c = api.inner.pool.acquire().await?;
        latest_revision(&mut c, &guid).await?
    };
    let guids: Vec<String> = latest
        .filter(|_| app.state == "STARTED")
        .map(|r| r.guid)
        .into_iter()
        .collect();
    let path = format!("/v3/apps/{guid}/revisions/deployed");
    list::<Revision>(
        &api,
        &access,
        raw.as_deref(),
        &path,
        Query::new().any_of("guid", guids),
    )
    .await
}

async fn revision_env(State(api): State<Api>, Path(guid): Path<String>) -> ApiResult<Response> {
    let revision: Revision = require(&api, &guid).await?;
    Ok(ok(json!({
        "var": revision.env,
        "links": {
            "self": link(&api.inner.config.external_url, &format!("/v3/revisions/{guid}/environment_variables")),
            "revision": link(&api.inner.config.external_url, &format!("/v3/revisions/{guid}")),
        }
    })))
}
