//! App usage events (`/v3/app_usage_events`): the record billing and
//! metering systems read, one event each time a process starts, stops, or
//! changes its instance count or memory while started. Consumers poll with
//! `after_guid=` for the events after the last one they saw, so events carry
//! a sequence number and are listed in that order. Only readers of the whole
//! platform (admin, admin read-only, global auditor) see them.

use axum::extract::{Path, RawQuery, State};
use axum::response::Response;
use axum::routing::{get, post};
use axum::{Extension, Router};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::authz::{Access, Scope};
use crate::error::{ApiError, ApiResult};
use crate::http::{ok, ListParams};
use crate::model::{new_guid, now, Desired, Droplet, Render};
use crate::store::{self, Conn, Doc, Query};
use crate::{Api, DesiredProcess};

/// One usage event.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct UsageEvent {
    guid: String,
    /// Position in the stream, for `after_guid`.
    seq: i64,
    created_at: String,
    state: String,
    previous_state: String,
    instance_count: u32,
    previous_instance_count: u32,
    memory_in_mb_per_instance: u64,
    previous_memory_in_mb_per_instance: u64,
    app_guid: String,
    app_name: String,
    process_guid: String,
    process_type: String,
    space_guid: String,
    space_name: String,
    org_guid: String,
    buildpack_name: Option<String>,
}

impl Doc for UsageEvent {
    const TABLE: &'static str = "cc_app_usage_events";
    const KIND: &'static str = "Usage event";
    const SCOPE: Scope = Scope::Everyone;
    fn guid(&self) -> &str {
        &self.guid
    }
}

impl Render for UsageEvent {
    fn render(&self, base: &str) -> Value {
        json!({
            "guid": self.guid,
            "created_at": self.created_at,
            "updated_at": self.created_at,
            "state": {"current": self.state, "previous": self.previous_state},
            "app": {"guid": self.app_guid, "name": self.app_name},
            "process": {"guid": self.process_guid, "type": self.process_type},
            "space": {"guid": self.space_guid, "name": self.space_name},
            "organization": {"guid": self.org_guid},
            "buildpack": {"guid": null, "name": self.buildpack_name},
            "task": {"guid": null, "name": null},
            "memory_in_mb_per_instance": {
                "current": self.memory_in_mb_per_instance,
                "previous": self.previous_memory_in_mb_per_instance,
            },
            "instance_count": {
                "current": self.instance_count,
                "previous": self.previous_instance_count,
            },
            "links": {"self": {"href": format!("{base}/v3/app_usage_events/{}", self.guid)}},
        })
    }
}

pub(crate) fn routes() -> Router<Api> {
    Router::new()
        .route("/v3/app_usage_events", get(list))
        .route("/v3/app_usage_events/{guid}", get(show))
        .route(
            "/v3/app_usage_events/actions/destructively_purge_all_and_reseed",
            post(purge_and_reseed),
        )
}

/// The sequence number the next event gets.
async fn next_seq(c: &mut Conn) -> ApiResult<i64> {
    let (last, _) = store::page::<UsageEvent>(c, &Query::new().order("seq", true), 1, 1).await?;
    Ok(last.first().map_or(1, |e| e.seq + 1))
}

/// The name of the buildpack that built the droplet, if any.
async fn buildpack_of(c: &mut Conn, droplet_guid: &str) -> ApiResult<Option<String>> {
    let droplet: Option<Droplet> = store::get(c, droplet_guid).await?;
    Ok(droplet.and_then(|d| {
        d.buildpacks
            .last()
            .map(|b| b.buildpack_name.clone().unwrap_or_else(|| b.name.clone()))
    }))
}

async fn append(
    c: &mut Conn,
    process: &DesiredProcess,
    state: &str,
    before: Option<&DesiredProcess>,
) -> ApiResult<()> {
    let event = UsageEvent {
        guid: new_guid(),
        seq: next_seq(c).await?,
        created_at: now(),
        state: state.to_string(),
        previous_state: if before.is_some() {
            "STARTED"
        } else {
            "STOPPED"
        }
        .to_string(),
        instance_count: process.instances,
        previous_instance_count: before.map_or(0, |b| b.instances),
        memory_in_mb_per_instance: process.memory_mb,
        previous_memory_in_mb_per_instance: before.map_or(0, |b| b.memory_mb),
        app_guid: process.app_guid.clone(),
        app_name: process.app_name.clone(),
        process_guid: process.process_guid.clone(),
        process_type: process.process_type.clone(),
        space_guid: process.space_guid.clone(),
        space_name: process.space_name.clone(),
        org_guid: process.org_guid.clone(),
        buildpack_name: buildpack_of(c, &process.droplet_guid).await?,
    };
    store::insert(c, &event).await
}

/// Records that `process` is now desired, in the caller's transaction and
/// before the new desired state is stored: `STARTED` when it was not
/// running, or when its instance count or memory changed.
pub(crate) async fn desired(c: &mut Conn, process: &DesiredProcess) -> ApiResult<()> {
    let before: Option<Desired> = store::get(c, &process.process_guid).await?;
    match before {
        None => append(c, process, "STARTED", None).await,
        Some(b)
            if b.process.instances != process.instances
                || b.process.memory_mb != process.memory_mb =>
        {
            append(c, process, "STARTED", Some(&b.process)).await
        }
        Some(_) => Ok(()),
    }
}

/// Records that the process is no longer desired (`STOPPED`), if it was,
/// in the caller's transaction and before its desired state is removed.
pub(crate) async fn stopped(c: &mut Conn, process_guid: &str) -> ApiResult<()> {
    let before: Option<Desired> = store::get(c, process_guid).await?;
    match before {
        Some(b) => append(c, &b.process, "STOPPED", Some(&b.process)).await,
        None => Ok(()),
    }
}

fn only_platform_readers(access: &Access) -> ApiResult<()> {
    if access.reads_everything() {
        Ok(())
    } else {
        Err(ApiError::NotAuthorized)
    }
}

async fn list(
    State(api): State<Api>,
    Extension(access): Extension<Access>,
    RawQuery(raw): RawQuery,
) -> ApiResult<Response> {
    only_platform_readers(&access)?;
    let params = ListParams::parse(raw.as_deref(), &["guids", "after_guid"], &["created_at"])?;
    let mut c = api.inner.pool.acquire().await?;
    let mut q = Query::new();
    if let Some(guids) = params.filters.get("guids") {
        q = q.any_of("guid", guids.clone());
    }
    if let Some(after) = params.filters.get("after_guid") {
        let [after] = after.as_slice() else {
            return Err(ApiError::BadQueryParameter(
                "after_guid takes exactly one guid".into(),
            ));
        };
        let anchor: UsageEvent = store::get(&mut c, after).await?.ok_or_else(|| {
            ApiError::BadQueryParameter(format!("After guid filter: unknown usage event {after}"))
        })?;
        q = q.above("seq", anchor.seq);
    }
    let desc = params.order.as_ref().is_some_and(|(_, d)| *d);
    let q = q.order("seq", desc);
    let (events, total) =
        store::page::<UsageEvent>(&mut c, &q, params.page, params.per_page).await?;
    let base = &api.inner.config.external_url;
    let resources = events.iter().map(|e| e.render(base)).collect();
    Ok(ok(params.envelope(
        &api,
        "/v3/app_usage_events",
        total,
        resources,
    )))
}

async fn show(
    State(api): State<Api>,
    Extension(access): Extension<Access>,
    Path(guid): Path<String>,
) -> ApiResult<Response> {
    only_platform_readers(&access)?;
    let mut c = api.inner.pool.acquire().await?;
    let event: UsageEvent = store::fetch(&mut c, &guid).await?;
    Ok(ok(event.render(&api.inner.config.external_url)))
}

/// Drops every event and records one `STARTED` event per process that is
/// started now, so a billing system can begin again from a clean slate.
async fn purge_and_reseed(
    State(api): State<Api>,
    Extension(access): Extension<Access>,
) -> ApiResult<Response> {
    if !access.is_admin() {
        return Err(ApiError::NotAuthorized);
    }
    let mut tx = store::begin(&api.inner.pool).await?;
    let all: Vec<UsageEvent> = store::find(&mut tx, &Query::new()).await?;
    for e in &all {
        store::delete::<UsageEvent>(&mut tx, &e.guid).await?;
    }
    let running: Vec<Desired> = store::find(&mut tx, &Query::new()).await?;
    for d in &running {
        append(&mut tx, &d.process, "STARTED", None).await?;
    }
    tx.commit().await?;
    Ok(ok(json!({})))
}
