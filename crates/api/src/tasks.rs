//! Tasks: one-off commands run from an app's current droplet in containers
//! of their own (`POST /v3/apps/:guid/tasks`), their lists, cancelling, and
//! the completions the runtime reports.
//!
//! A task is stored `RUNNING` (and audited) before the runtime is asked to
//! run it, so a completion the runtime reports always finds it; a cancel is
//! stored as `CANCELING` before the runtime is asked to stop it, and the
//! completion that follows turns it `FAILED` with `task was cancelled`.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Router};
use bytes::Bytes;
use serde::Deserialize;
use serde_json::{json, Value};
use sqlx::SqliteConnection;

use crate::apps::{app_context, audit_app};
use crate::error::{ApiError, ApiResult};
use crate::http::{below, index, parse_json, show, Listed};
use crate::model::{
    new_guid, now, App, Droplet, Metadata, Process, Task, DEFAULT_DISK_MB, DEFAULT_MEMORY_MB,
};
use crate::store::{self, Query};
use crate::{Api, Principal, TaskCompletion, TaskRequest};

/// CF's words when the app has no current droplet.
const NO_DROPLET: &str =
    "Task must have a droplet. Specify droplet or assign current droplet to app.";
/// CF's `failure_reason` of a cancelled task.
pub(crate) const CANCELLED: &str = "task was cancelled";
/// CF's `failure_reason` when the runtime would not take the task.
const UNABLE_TO_RUN: &str = "Unable to request task to be run";
/// Why a task the previous platform process was running failed.
const INTERRUPTED: &str = "task was interrupted by a platform restart";

impl Listed for Task {
    const NAME: &'static str = "tasks";
    const FILTERS: &'static [(&'static str, &'static str)] = &[
        ("names", "name"),
        ("states", "state"),
        ("guids", "guid"),
        ("app_guids", "app_guid"),
    ];
}

pub(crate) fn routes() -> Router<Api> {
    Router::new()
        .route("/v3/tasks", get(index::<Task>))
        .route("/v3/tasks/{guid}", get(show::<Task>))
        .route("/v3/tasks/{guid}/actions/cancel", post(cancel))
        .route(
            "/v3/apps/{guid}/tasks",
            get(below::<App, Task>).post(create),
        )
}

/// 202 with the task, as CF answers a create and a cancel.
fn accepted(api: &Api, task: &Task) -> Response {
    (
        StatusCode::ACCEPTED,
        axum::Json(task.json(&api.inner.config.external_url)),
    )
        .into_response()
}

#[derive(Deserialize)]
struct TaskCreate {
    command: Option<String>,
    name: Option<String>,
    memory_in_mb: Option<i64>,
    disk_in_mb: Option<i64>,
    droplet_guid: Option<String>,
    template: Option<Template>,
    metadata: Option<Value>,
}

#[derive(Deserialize)]
struct Template {
    process: TemplateProcess,
}

#[derive(Deserialize)]
struct TemplateProcess {
    guid: String,
}

/// A positive size in MB, or CF's 422 naming the field.
fn positive_mb(value: Option<i64>, field: &str) -> ApiResult<Option<u64>> {
    value
        .map(|v| {
            u64::try_from(v)
                .ok()
                .filter(|v| *v > 0)
                .ok_or_else(|| ApiError::Unprocessable(format!("{field} must be greater than 0")))
        })
        .transpose()
}

/// The next sequence id of the app's tasks (1 for its first).
async fn next_sequence_id(c: &mut SqliteConnection, app_guid: &str) -> ApiResult<u64> {
    let tasks: Vec<Task> = store::find(c, &Query::new().eq("app_guid", app_guid)).await?;
    Ok(tasks.iter().map(|t| t.sequence_id).max().unwrap_or(0) + 1)
}

/// `POST /v3/apps/:guid/tasks`.
async fn create(
    State(api): State<Api>,
    Extension(p): Extension<Principal>,
    Path(app_guid): Path<String>,
    body: Bytes,
) -> ApiResult<Response> {
    let req: TaskCreate = parse_json(&body)?;
    let memory = positive_mb(req.memory_in_mb, "Memory in mb")?;
    let disk = positive_mb(req.disk_in_mb, "Disk in mb")?;
    let mut tx = store::begin(&api.inner.pool).await?;
    let (app, space, org) = app_context(&mut tx, &app_guid).await?;
    let template = match &req.template {
        Some(t) => Some(
            store::get::<Process>(&mut tx, &t.process.guid)
                .await?
                .filter(|p| p.app_guid == app.guid)
                .ok_or_else(|| ApiError::not_found("Process"))?,
        ),
        None => None,
    };
    if req.command.is_none() && template.is_none() {
        return Err(ApiError::Unprocessable(
            "Command No command or template provided".into(),
        ));
    }
    let droplet_guid = req
        .droplet_guid
        .clone()
        .or_else(|| app.droplet_guid.clone())
        .ok_or_else(|| ApiError::Unprocessable(NO_DROPLET.into()))?;
    let droplet = store::get::<Droplet>(&mut tx, &droplet_guid)
        .await?
        .filter(|d| d.app_guid == app.guid && d.state == "STAGED")
        .ok_or_else(|| ApiError::Unprocessable(NO_DROPLET.into()))?;
    let command = match (&req.command, &template) {
        (Some(command), _) => command.clone(),
        (None, Some(process)) => process
            .effective_command(Some(&droplet))
            .unwrap_or_default(),
        (None, None) => String::new(),
    };
    if command.trim().is_empty() {
        return Err(ApiError::Unprocessable("Command can't be blank".into()));
    }
    let name = match req.name.as_deref().filter(|n| !n.is_empty()) {
        Some(name) => name.to_string(),
        // CF names an unnamed task with 4 random bytes in hex.
        None => uuid::Uuid::new_v4().simple().to_string()[..8].to_string(),
    };
    let at = now();
    let task = Task {
        guid: new_guid(),
        app_guid: app.guid.clone(),
        name,
        command,
        state: "RUNNING".into(),
        sequence_id: next_sequence_id(&mut tx, &app.guid).await?,
        memory_mb: memory
            .or(template.as_ref().map(|p| p.memory_mb))
            .unwrap_or(DEFAULT_MEMORY_MB),
        disk_mb: disk
            .or(template.as_ref().map(|p| p.disk_mb))
            .unwrap_or(DEFAULT_DISK_MB),
        droplet_guid: droplet.guid.clone(),
        failure_reason: None,
        created_at: at.clone(),
        updated_at: at,
        metadata: Metadata::from_request(req.metadata.as_ref()),
    };
    crate::quotas::check_task(&mut tx, &space.guid, task.memory_mb).await?;
    let egress = crate::security_groups::running_rules(&mut tx, &space.guid).await?;
    let docker_image = crate::builds::docker_image(&mut tx, &droplet).await?;
    store::insert(&mut tx, &task).await?;
    audit_app(
        &mut tx,
        "audit.app.task.create",
        &p,
        &app,
        json!({"task_guid": task.guid, "request": {
            "name": task.name, "command": "[PRIVATE DATA HIDDEN]",
            "memory_in_mb": task.memory_mb, "disk_in_mb": task.disk_mb,
        }}),
    )
    .await?;
    tx.commit().await?;
    let request = TaskRequest {
        task_guid: task.guid.clone(),
        name: task.name.clone(),
        app_guid: app.guid.clone(),
        app_name: app.name.clone(),
        space_guid: space.guid.clone(),
        space_name: space.name.clone(),
        org_guid: org.guid.clone(),
        org_name: org.name.clone(),
        droplet_guid: droplet.guid.clone(),
        droplet_key: droplet.blob_key.clone(),
        command: task.command.clone(),
        memory_mb: task.memory_mb,
        disk_mb: task.disk_mb,
        environment: app.env_strings(),
        egress,
        docker_image,
    };
    if let Err(rejected) = api.inner.runtime.run_task(request).await {
        tracing::warn!(task = %task.guid, reason = %rejected.message, "the runtime refused a task");
        // No room on the cell is Diego's own reason, as CF shows it;
        // anything else is CC's generic one.
        let reason = if rejected.message.starts_with("insufficient resources") {
            rejected.message.clone()
        } else {
            UNABLE_TO_RUN.to_string()
        };
        let failed = finish(&api, &task.guid, Some(reason)).await?;
        return Ok(accepted(&api, &failed.unwrap_or(task)));
    }
    Ok(accepted(&api, &task))
}

/// `POST /v3/tasks/:guid/actions/cancel`.
async fn cancel(
    State(api): State<Api>,
    Extension(p): Extension<Principal>,
    Path(guid): Path<String>,
) -> ApiResult<Response> {
    let mut tx = store::begin(&api.inner.pool).await?;
    let mut task: Task = store::fetch(&mut tx, &guid).await?;
    if task.is_final() {
        return Err(ApiError::Unprocessable(format!(
            "Task state is {} and therefore cannot be canceled",
            task.state
        )));
    }
    task.state = "CANCELING".into();
    task.updated_at = now();
    store::put(&mut tx, &task).await?;
    let app: App = store::fetch(&mut tx, &task.app_guid).await?;
    audit_app(
        &mut tx,
        "audit.app.task.cancel",
        &p,
        &app,
        json!({"task_guid": task.guid, "request": {}}),
    )
    .await?;
    tx.commit().await?;
    if !api.inner.runtime.cancel_task(&task.guid).await {
        // Nothing runs it (any more), so no completion will come: the
        // cancel completes here.
        if let Some(done) = finish(&api, &task.guid, Some(CANCELLED.into())).await? {
            return Ok(accepted(&api, &done));
        }
    }
    Ok(accepted(&api, &task))
}

/// Ends a task unless it has already ended: `SUCCEEDED` without a reason,
/// else `FAILED`; a task being cancelled fails as cancelled whatever its exit.
/// Returns the task as stored, or `None` when it does not exist.
async fn finish(api: &Api, guid: &str, failure_reason: Option<String>) -> ApiResult<Option<Task>> {
    let mut tx = store::begin(&api.inner.pool).await?;
    let Some(mut task) = store::get::<Task>(&mut tx, guid).await? else {
        return Ok(None);
    };
    if task.is_final() {
        return Ok(Some(task));
    }
    let reason = if task.state == "CANCELING" {
        Some(CANCELLED.to_string())
    } else {
        failure_reason
    };
    task.state = if reason.is_some() {
        "FAILED"
    } else {
        "SUCCEEDED"
    }
    .into();
    task.failure_reason = reason;
    task.updated_at = now();
    store::put(&mut tx, &task).await?;
    tx.commit().await?;
    Ok(Some(task))
}

/// The runtime's report that a task ended.
pub(crate) async fn record_completion(api: &Api, completion: TaskCompletion) -> ApiResult<()> {
    finish(api, &completion.task_guid, completion.failure_reason).await?;
    Ok(())
}

/// After a platform restart nothing runs the tasks the previous process
/// started, so they fail (in the caller's transaction).
pub(crate) async fn fail_interrupted(c: &mut SqliteConnection, at: &str) -> ApiResult<()> {
    let running: Vec<Task> = store::find(
        c,
        &Query::new().any_of("state", vec!["RUNNING".into(), "CANCELING".into()]),
    )
    .await?;
    for mut task in running {
        let reason = if task.state == "CANCELING" {
            CANCELLED
        } else {
            INTERRUPTED
        };
        task.state = "FAILED".into();
        task.failure_reason = Some(reason.into());
        task.updated_at = at.to_string();
        store::put(c, &task).await?;
    }
    Ok(())
}
