//! Organization and space quotas (`/v3/organization_quotas`,
//! `/v3/space_quotas`) and their enforcement with Cloud Controller's
//! messages: app start, scale and process updates (total memory, memory per
//! process, total instances, log rate), tasks (memory, running tasks),
//! routes, staging memory and managed service instances. Every check runs in
//! the caller's transaction before (or right after, uncommitted) the write
//! it guards, so a refused change leaves nothing behind.
//!
//! Which organizations (spaces) a quota applies to is kept on the quota, as
//! CF's `relationships`; an organization no quota names has the `default`
//! quota. `null` limits are unlimited.

use axum::extract::{Path, RawQuery, State};
use axum::response::Response;
use axum::routing::{delete, get, post};
use axum::{Extension, Router};
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use sqlx::SqliteConnection;

use crate::authz::{Access, Scope};
use crate::error::{ApiError, ApiResult};
use crate::http::{accepted_job, created, no_content, ok, parse_json, ListParams};
use crate::model::EventParty;
use crate::model::{link, new_guid, now, App, Job, Org, Process, Route, Space, Task};
use crate::store::{self, Doc, Query};
use crate::{Api, Principal};

/// The quota every organization gets unless another is applied.
pub(crate) const DEFAULT_QUOTA: &str = "default";

pub(crate) fn routes() -> Router<Api> {
    Router::new()
        .route("/v3/organization_quotas", get(list_org).post(create_org))
        .route(
            "/v3/organization_quotas/{guid}",
            get(show_org).patch(update_org).delete(delete_org),
        )
        .route(
            "/v3/organization_quotas/{guid}/relationships/organizations",
            post(apply_org),
        )
        .route("/v3/space_quotas", get(list_space).post(create_space))
        .route(
            "/v3/space_quotas/{guid}",
            get(show_space).patch(update_space).delete(delete_space),
        )
        .route(
            "/v3/space_quotas/{guid}/relationships/spaces",
            post(apply_space),
        )
        .route(
            "/v3/space_quotas/{guid}/relationships/spaces/{space_guid}",
            delete(remove_space),
        )
}

/// The limits of a quota; `None` is unlimited.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Limits {
    pub total_memory_in_mb: Option<i64>,
    pub per_process_memory_in_mb: Option<i64>,
    pub total_instances: Option<i64>,
    pub per_app_tasks: Option<i64>,
    pub log_rate_limit_in_bytes_per_second: Option<i64>,
    pub paid_services_allowed: bool,
    pub total_service_instances: Option<i64>,
    pub total_service_keys: Option<i64>,
    pub total_routes: Option<i64>,
    pub total_reserved_ports: Option<i64>,
    pub total_domains: Option<i64>,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            total_memory_in_mb: None,
            per_process_memory_in_mb: None,
            total_instances: None,
            per_app_tasks: None,
            log_rate_limit_in_bytes_per_second: None,
            paid_services_allowed: true,
            total_service_instances: None,
            total_service_keys: None,
            total_routes: None,
            total_reserved_ports: None,
            total_domains: None,
        }
    }
}

impl Limits {
    fn apps_json(&self) -> Value {
        json!({
            "total_memory_in_mb": self.total_memory_in_mb,
            "per_process_memory_in_mb": self.per_process_memory_in_mb,
            "total_instances": self.total_instances,
            "per_app_tasks": self.per_app_tasks,
            "log_rate_limit_in_bytes_per_second": self.log_rate_limit_in_bytes_per_second,
        })
    }

    fn services_json(&self) -> Value {
        json!({
            "paid_services_allowed": self.paid_services_allowed,
            "total_service_instances": self.total_service_instances,
            "total_service_keys": self.total_service_keys,
        })
    }

    fn routes_json(&self) -> Value {
        json!({
            "total_routes": self.total_routes,
            "total_reserved_ports": self.total_reserved_ports,
        })
    }

    /// The integer limit a request field names, to set.
    fn slot(&mut self, section: &str, field: &str) -> Option<&mut Option<i64>> {
        Some(match (section, field) {
            ("apps", "total_memory_in_mb") => &mut self.total_memory_in_mb,
            ("apps", "per_process_memory_in_mb") => &mut self.per_process_memory_in_mb,
            ("apps", "total_instances") => &mut self.total_instances,
            ("apps", "per_app_tasks") => &mut self.per_app_tasks,
            ("apps", "log_rate_limit_in_bytes_per_second") => {
                &mut self.log_rate_limit_in_bytes_per_second
            }
            ("services", "total_service_instances") => &mut self.total_service_instances,
            ("services", "total_service_keys") => &mut self.total_service_keys,
            ("routes", "total_routes") => &mut self.total_routes,
            ("routes", "total_reserved_ports") => &mut self.total_reserved_ports,
            ("domains", "total_domains") => &mut self.total_domains,
            _ => return None,
        })
    }
}

/// An organization quota as stored.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct OrgQuota {
    pub guid: String,
    pub name: String,
    pub limits: Limits,
    /// The organizations it is applied to.
    pub organizations: Vec<String>,
    pub created_at: String,
    pub updated_at: String,
}

impl Doc for OrgQuota {
    const TABLE: &'static str = "cc_organization_quotas";
    const KIND: &'static str = "Organization quota";
    // Every user sees every organization quota (only the organizations in
    // its relationship are narrowed).
    const SCOPE: Scope = Scope::Everyone;
    fn guid(&self) -> &str {
        &self.guid
    }
}

/// A space quota as stored.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct SpaceQuota {
    pub guid: String,
    pub name: String,
    pub org_guid: String,
    pub limits: Limits,
    /// The spaces it is applied to.
    pub spaces: Vec<String>,
    pub created_at: String,
    pub updated_at: String,
}

impl Doc for SpaceQuota {
    const TABLE: &'static str = "cc_space_quotas";
    const KIND: &'static str = "Space quota";
    // Narrowed by the handlers (see `SpaceQuota::visible_to`).
    const SCOPE: Scope = Scope::Everyone;
    fn guid(&self) -> &str {
        &self.guid
    }
}

impl OrgQuota {
    fn json(&self, base: &str, access: &Access) -> Value {
        let orgs: Vec<Value> = self
            .organizations
            .iter()
            .filter(|o| access.can_read_org(o))
            .map(|o| json!({"guid": o}))
            .collect();
        json!({
            "guid": self.guid, "created_at": self.created_at, "updated_at": self.updated_at,
            "name": self.name,
            "apps": self.limits.apps_json(),
            "services": self.limits.services_json(),
            "routes": self.limits.routes_json(),
            "domains": {"total_domains": self.limits.total_domains},
            "relationships": {"organizations": {"data": orgs}},
            "links": {"self": link(base, &format!("/v3/organization_quotas/{}", self.guid))},
        })
    }
}

impl SpaceQuota {
    /// Admins and global readers, the organization's managers, and users
    /// who see a space the quota is applied to.
    fn visible_to(&self, access: &Access) -> bool {
        access.reads_everything()
            || access.can_manage_org(&self.org_guid)
            || self.spaces.iter().any(|s| access.can_read_space(s))
    }

    fn json(&self, base: &str, access: &Access) -> Value {
        let spaces: Vec<Value> = self
            .spaces
            .iter()
            .filter(|s| access.can_read_space(s))
            .map(|s| json!({"guid": s}))
            .collect();
        json!({
            "guid": self.guid, "created_at": self.created_at, "updated_at": self.updated_at,
            "name": self.name,
            "apps": self.limits.apps_json(),
            "services": self.limits.services_json(),
            "routes": self.limits.routes_json(),
            "relationships": {
                "organization": {"data": {"guid": self.org_guid}},
                "spaces": {"data": spaces},
            },
            "links": {
                "self": link(base, &format!("/v3/space_quotas/{}", self.guid)),
                "organization": link(base, &format!("/v3/organizations/{}", self.org_guid)),
            },
        })
    }
}

// ---------------------------------------------------------------------------
// Which quota applies.

/// The organization quota of `org`: the one applied to it, else `default`.
pub(crate) async fn org_quota(c: &mut SqliteConnection, org: &str) -> ApiResult<Option<OrgQuota>> {
    let all: Vec<OrgQuota> = store::find(c, &Query::new()).await?;
    let applied = all
        .iter()
        .find(|q| q.organizations.iter().any(|o| o == org))
        .cloned();
    Ok(applied.or_else(|| all.into_iter().find(|q| q.name == DEFAULT_QUOTA)))
}

/// The space quota applied to `space`, if any.
pub(crate) async fn space_quota(
    c: &mut SqliteConnection,
    space: &str,
) -> ApiResult<Option<SpaceQuota>> {
    let all: Vec<SpaceQuota> = store::find(c, &Query::new()).await?;
    Ok(all
        .into_iter()
        .find(|q| q.spaces.iter().any(|s| s == space)))
}

/// Fills `relationships.quota` (and the `quota` link) of the organizations
/// and spaces in a rendered body: one resource, a list, and its `included`.
pub(crate) async fn fill_quota_relationships(
    api: &Api,
    c: &mut SqliteConnection,
    body: &mut Value,
) -> ApiResult<()> {
    let mut targets: Vec<&mut Value> = Vec::new();
    let is_list = body.get("resources").is_some();
    if is_list {
        let Value::Object(map) = body else {
            return Ok(());
        };
        for (key, value) in map.iter_mut() {
            match key.as_str() {
                "resources" => targets.extend(value.as_array_mut().into_iter().flatten()),
                "included" => {
                    if let Value::Object(inc) = value {
                        for (k, v) in inc.iter_mut() {
                            if k == "organizations" || k == "spaces" {
                                targets.extend(v.as_array_mut().into_iter().flatten());
                            }
                        }
                    }
                }
                _ => {}
            }
        }
    } else {
        targets.push(body);
    }
    for resource in targets {
        let Some(guid) = resource["guid"].as_str().map(str::to_string) else {
            continue;
        };
        let is_space = resource["relationships"].get("organization").is_some();
        let quota = if is_space {
            space_quota(c, &guid)
                .await?
                .map(|q| (q.guid, "space_quotas"))
        } else {
            org_quota(c, &guid)
                .await?
                .map(|q| (q.guid, "organization_quotas"))
        };
        if let Some((q, kind)) = quota {
            resource["relationships"]["quota"] = json!({"data": {"guid": q}});
            if resource["links"].is_object() {
                resource["links"]["quota"] = json!({"href": api.url(&format!("/v3/{kind}/{q}"))});
            }
        }
    }
    Ok(())
}

/// Reads a JSON response of a handler back, fills its quota relationships
/// (see [`fill_quota_relationships`]) and answers it again.
pub(crate) async fn with_quota_relationships(
    api: &Api,
    response: ApiResult<Response>,
) -> ApiResult<Response> {
    let response = response?;
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .map_err(|e| ApiError::Internal(format!("cannot read a response body: {e}")))?;
    let Ok(mut body) = serde_json::from_slice::<Value>(&bytes) else {
        return Err(ApiError::Internal("a response body is not JSON".into()));
    };
    let mut c = api.inner.pool.acquire().await?;
    fill_quota_relationships(api, &mut c, &mut body).await?;
    Ok(axum::response::IntoResponse::into_response((
        status,
        axum::Json(body),
    )))
}

// ---------------------------------------------------------------------------
// Bootstrap and housekeeping.

/// Creates the `default` organization quota (CF's defaults: 100 GB of
/// memory, 100 service instances, 1000 routes, paid plans allowed; the rest
/// unlimited) and applies it to every organization, unless organization
/// quotas exist already. Returns whether it did (the platform's first boot
/// with quotas).
pub(crate) async fn bootstrap(c: &mut SqliteConnection) -> ApiResult<bool> {
    let existing: Vec<OrgQuota> = store::find(c, &Query::new()).await?;
    if !existing.is_empty() {
        return Ok(false);
    }
    let orgs: Vec<Org> = store::find(c, &Query::new()).await?;
    let at = now();
    let quota = OrgQuota {
        guid: new_guid(),
        name: DEFAULT_QUOTA.into(),
        limits: Limits {
            total_memory_in_mb: Some(102_400),
            total_service_instances: Some(100),
            total_routes: Some(1000),
            ..Limits::default()
        },
        organizations: orgs.into_iter().map(|o| o.guid).collect(),
        created_at: at.clone(),
        updated_at: at,
    };
    store::insert(c, &quota).await?;
    Ok(true)
}

/// Applies the `default` quota to a new organization.
pub(crate) async fn assign_default(c: &mut SqliteConnection, org: &str) -> ApiResult<()> {
    if let Some(mut q) =
        store::find_one::<OrgQuota>(c, &Query::new().eq("name", DEFAULT_QUOTA)).await?
    {
        if !q.organizations.iter().any(|o| o == org) {
            q.organizations.push(org.to_string());
            store::put(c, &q).await?;
        }
    }
    Ok(())
}

/// Forgets a deleted organization: its quota relationship and its space
/// quotas go.
pub(crate) async fn forget_org(c: &mut SqliteConnection, org: &str) -> ApiResult<()> {
    let all: Vec<OrgQuota> = store::find(c, &Query::new()).await?;
    for mut q in all {
        if q.organizations.iter().any(|o| o == org) {
            q.organizations.retain(|o| o != org);
            store::put(c, &q).await?;
        }
    }
    let owned: Vec<SpaceQuota> = store::find(c, &Query::new().eq("org_guid", org)).await?;
    for q in owned {
        store::delete::<SpaceQuota>(c, &q.guid).await?;
    }
    Ok(())
}

/// Forgets a deleted space in its space quota.
pub(crate) async fn forget_space(c: &mut SqliteConnection, space: &str) -> ApiResult<()> {
    if let Some(mut q) = space_quota(c, space).await? {
        q.spaces.retain(|s| s != space);
        store::put(c, &q).await?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Usage and enforcement.

/// What the started apps and running tasks of some spaces use.
#[derive(Debug, Default)]
struct Usage {
    /// Memory of started processes (instances × memory) and running tasks.
    memory: i64,
    /// Instances of started processes.
    instances: i64,
    /// Log rate of started processes (instances × limit), unlimited ones
    /// left out as CF does.
    log_rate: i64,
    /// Running tasks.
    tasks: i64,
}

fn signed(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

async fn usage(c: &mut SqliteConnection, spaces: Vec<String>) -> ApiResult<Usage> {
    let apps: Vec<App> = store::find(c, &Query::new().any_of("space_guid", spaces)).await?;
    let started: Vec<String> = apps
        .iter()
        .filter(|a| a.state == "STARTED")
        .map(|a| a.guid.clone())
        .collect();
    let all: Vec<String> = apps.into_iter().map(|a| a.guid).collect();
    let processes: Vec<Process> = store::find(c, &Query::new().any_of("app_guid", started)).await?;
    let mut u = Usage::default();
    for p in &processes {
        let instances = i64::from(p.instances);
        u.memory = u
            .memory
            .saturating_add(signed(p.memory_mb).saturating_mul(instances));
        u.instances = u.instances.saturating_add(instances);
        if p.log_rate_limit >= 0 {
            u.log_rate = u
                .log_rate
                .saturating_add(p.log_rate_limit.saturating_mul(instances));
        }
    }
    let tasks: Vec<Task> = store::find(
        c,
        &Query::new().any_of("app_guid", all).eq("state", "RUNNING"),
    )
    .await?;
    for t in &tasks {
        u.memory = u.memory.saturating_add(signed(t.memory_mb));
        u.tasks += 1;
    }
    Ok(u)
}

/// The guids of the organization's spaces.
async fn org_spaces(c: &mut SqliteConnection, org: &str) -> ApiResult<Vec<String>> {
    let spaces: Vec<Space> = store::find(c, &Query::new().eq("org_guid", org)).await?;
    Ok(spaces.into_iter().map(|s| s.guid).collect())
}

/// The quotas that apply in a space, with the names CF's messages use.
struct Applicable {
    space: Space,
    org: Org,
    space_quota: Option<SpaceQuota>,
    org_quota: Option<OrgQuota>,
}

async fn applicable(c: &mut SqliteConnection, space_guid: &str) -> ApiResult<Applicable> {
    let space: Space = store::fetch(c, space_guid).await?;
    let org: Org = store::fetch(c, &space.org_guid).await?;
    let space_quota = space_quota(c, space_guid).await?;
    let org_quota = org_quota(c, &org.guid).await?;
    Ok(Applicable {
        space,
        org,
        space_quota,
        org_quota,
    })
}

fn over(limit: Option<i64>, used: i64) -> bool {
    limit.is_some_and(|l| used > l)
}

/// Checks a started app's processes against the space and organization
/// quotas, after their new values are written in the caller's transaction
/// (`processes`: the ones that changed; `None`: all of the app's). Totals
/// count every started process as it now is, which equals CF's check of
/// the additional usage against what remains. Errors are CF's, joined as
/// Cloud Controller joins its validation messages.
pub(crate) async fn check_app(
    c: &mut SqliteConnection,
    app_guid: &str,
    processes: Option<&[String]>,
) -> ApiResult<()> {
    let app: App = store::fetch(c, app_guid).await?;
    if app.state != "STARTED" {
        return Ok(());
    }
    let q = applicable(c, &app.space_guid).await?;
    if q.space_quota.is_none() && q.org_quota.is_none() {
        return Ok(());
    }
    let all: Vec<Process> = store::find(c, &Query::new().eq("app_guid", app_guid)).await?;
    let changed: Vec<&Process> = all
        .iter()
        .filter(|p| processes.is_none_or(|list| list.contains(&p.guid)))
        .collect();
    let space_use = usage(c, vec![q.space.guid.clone()]).await?;
    let spaces = org_spaces(c, &q.org.guid).await?;
    let org_use = usage(c, spaces).await?;
    let none = Limits::default();
    let s = q.space_quota.as_ref().map_or(&none, |x| &x.limits);
    let o = q.org_quota.as_ref().map_or(&none, |x| &x.limits);
    let mut errors: Vec<String> = Vec::new();
    if over(s.total_memory_in_mb, space_use.memory) {
        errors.push("memory space_quota_exceeded".into());
    }
    if over(o.total_memory_in_mb, org_use.memory) {
        errors.push("memory quota_exceeded".into());
    }
    let biggest = changed
        .iter()
        .map(|p| signed(p.memory_mb))
        .max()
        .unwrap_or(0);
    if over(o.per_process_memory_in_mb, biggest) {
        errors.push("memory instance_memory_limit_exceeded".into());
    }
    if over(s.per_process_memory_in_mb, biggest) {
        errors.push("memory space_instance_memory_limit_exceeded".into());
    }
    if over(o.total_instances, org_use.instances) {
        errors.push("app_instance_limit app_instance_limit_exceeded".into());
    }
    if over(s.total_instances, space_use.instances) {
        errors.push("app_instance_limit space_app_instance_limit_exceeded".into());
    }
    let unlimited = changed.iter().any(|p| p.log_rate_limit < 0);
    for (limit, used, kind, name) in [
        (
            s.log_rate_limit_in_bytes_per_second,
            space_use.log_rate,
            "space",
            &q.space.name,
        ),
        (
            o.log_rate_limit_in_bytes_per_second,
            org_use.log_rate,
            "organization",
            &q.org.name,
        ),
    ] {
        if limit.is_some() && unlimited {
            errors.push(format!(
                "log_rate_limit cannot be unlimited in {kind} '{name}'."
            ));
        }
        if over(limit, used) {
            errors.push(format!("log_rate_limit exceeds {kind} log rate quota"));
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(ApiError::Unprocessable(errors.join(", ")))
    }
}

/// Checks a new task of `memory_mb` in the space, before it is stored.
pub(crate) async fn check_task(
    c: &mut SqliteConnection,
    space_guid: &str,
    memory_mb: u64,
) -> ApiResult<()> {
    let q = applicable(c, space_guid).await?;
    if q.space_quota.is_none() && q.org_quota.is_none() {
        return Ok(());
    }
    let memory = signed(memory_mb);
    let space_use = usage(c, vec![q.space.guid.clone()]).await?;
    let spaces = org_spaces(c, &q.org.guid).await?;
    let org_use = usage(c, spaces).await?;
    let none = Limits::default();
    let s = q.space_quota.as_ref().map_or(&none, |x| &x.limits);
    let o = q.org_quota.as_ref().map_or(&none, |x| &x.limits);
    let mut memory_errors = Vec::new();
    let mut task_errors = Vec::new();
    for (limits, used, kind) in [(o, &org_use, "organization"), (s, &space_use, "space")] {
        if over(
            limits.total_memory_in_mb,
            used.memory.saturating_add(memory),
        ) {
            memory_errors.push(format!("memory_in_mb exceeds {kind} memory quota"));
        }
        if over(limits.per_process_memory_in_mb, memory) {
            memory_errors.push(format!("memory_in_mb exceeds {kind} instance memory quota"));
        }
        if limits.per_app_tasks.is_some_and(|l| l <= used.tasks) {
            task_errors.push("app_task_limit quota exceeded".to_string());
        }
    }
    memory_errors.extend(task_errors);
    if memory_errors.is_empty() {
        Ok(())
    } else {
        Err(ApiError::Unprocessable(memory_errors.join(", ")))
    }
}

/// Checks a new route in the space, before it is stored.
pub(crate) async fn check_route(c: &mut SqliteConnection, space_guid: &str) -> ApiResult<()> {
    let q = applicable(c, space_guid).await?;
    if let Some(limit) = q.space_quota.as_ref().and_then(|x| x.limits.total_routes) {
        let routes: Vec<Route> = store::find(c, &Query::new().eq("space_guid", space_guid)).await?;
        if signed(routes.len() as u64) + 1 > limit {
            return Err(ApiError::Unprocessable(format!(
                "Routes quota exceeded for space '{}'.",
                q.space.name
            )));
        }
    }
    if let Some(limit) = q.org_quota.as_ref().and_then(|x| x.limits.total_routes) {
        let spaces = org_spaces(c, &q.org.guid).await?;
        let routes: Vec<Route> = store::find(c, &Query::new().any_of("space_guid", spaces)).await?;
        if signed(routes.len() as u64) + 1 > limit {
            return Err(ApiError::Unprocessable(format!(
                "Routes quota exceeded for organization '{}'.",
                q.org.name
            )));
        }
    }
    Ok(())
}

/// Checks the memory a staging of `memory_mb` needs in the space.
pub(crate) async fn check_staging(
    c: &mut SqliteConnection,
    space_guid: &str,
    memory_mb: u64,
) -> ApiResult<()> {
    let q = applicable(c, space_guid).await?;
    let memory = signed(memory_mb);
    if let Some(limit) = q
        .space_quota
        .as_ref()
        .and_then(|x| x.limits.total_memory_in_mb)
    {
        let used = usage(c, vec![q.space.guid.clone()]).await?.memory;
        if used.saturating_add(memory) > limit {
            return Err(ApiError::Unprocessable(format!(
                "space's memory limit exceeded: staging requires {memory_mb}M memory"
            )));
        }
    }
    if let Some(limit) = q
        .org_quota
        .as_ref()
        .and_then(|x| x.limits.total_memory_in_mb)
    {
        let spaces = org_spaces(c, &q.org.guid).await?;
        let used = usage(c, spaces).await?.memory;
        if used.saturating_add(memory) > limit {
            return Err(ApiError::Unprocessable(format!(
                "organization's memory limit exceeded: staging requires {memory_mb}M memory"
            )));
        }
    }
    Ok(())
}

/// Checks a new managed service instance (of a paid plan or not) in the
/// space, before it is stored. CF counts managed instances only; a
/// user-provided instance is never refused by a quota.
pub(crate) async fn check_service_instance(
    c: &mut SqliteConnection,
    space_guid: &str,
    paid: bool,
) -> ApiResult<()> {
    use crate::services::ServiceInstance;
    let q = applicable(c, space_guid).await?;
    let managed = |spaces: Vec<String>| {
        Query::new()
            .any_of("space_guid", spaces)
            .eq("type", "managed")
    };
    if let Some(limit) = q
        .space_quota
        .as_ref()
        .and_then(|x| x.limits.total_service_instances)
    {
        let n = store::find::<ServiceInstance>(c, &managed(vec![q.space.guid.clone()]))
            .await?
            .len();
        if signed(n as u64) + 1 > limit {
            return Err(ApiError::Unprocessable(
                "You have exceeded your space's services limit.".into(),
            ));
        }
    }
    if let Some(limit) = q
        .org_quota
        .as_ref()
        .and_then(|x| x.limits.total_service_instances)
    {
        let spaces = org_spaces(c, &q.org.guid).await?;
        let n = store::find::<ServiceInstance>(c, &managed(spaces))
            .await?
            .len();
        if signed(n as u64) + 1 > limit {
            return Err(ApiError::Unprocessable(
                "You have exceeded your organization's services limit.".into(),
            ));
        }
    }
    if paid {
        if q.space_quota
            .as_ref()
            .is_some_and(|x| !x.limits.paid_services_allowed)
        {
            return Err(ApiError::Unprocessable(
                "The service instance cannot be created because paid service plans are not allowed for your space."
                    .into(),
            ));
        }
        if q.org_quota
            .as_ref()
            .is_some_and(|x| !x.limits.paid_services_allowed)
        {
            return Err(ApiError::Unprocessable(
                "The service instance cannot be created because paid service plans are not allowed."
                    .into(),
            ));
        }
    }
    Ok(())
}

/// Checks a new service key (a `key` credential binding) of an instance in
/// the space, before it is stored.
pub(crate) async fn check_service_key(c: &mut SqliteConnection, space_guid: &str) -> ApiResult<()> {
    use crate::services::Binding;
    let q = applicable(c, space_guid).await?;
    let keys = |spaces: Vec<String>| Query::new().any_of("space_guid", spaces).eq("type", "key");
    if let Some(limit) = q
        .space_quota
        .as_ref()
        .and_then(|x| x.limits.total_service_keys)
    {
        let n = store::find::<Binding>(c, &keys(vec![q.space.guid.clone()]))
            .await?
            .len();
        if signed(n as u64) + 1 > limit {
            return Err(ApiError::Unprocessable(
                "You have exceeded your space's limit for service binding of type key.".into(),
            ));
        }
    }
    if let Some(limit) = q
        .org_quota
        .as_ref()
        .and_then(|x| x.limits.total_service_keys)
    {
        let spaces = org_spaces(c, &q.org.guid).await?;
        let n = store::find::<Binding>(c, &keys(spaces)).await?.len();
        if signed(n as u64) + 1 > limit {
            return Err(ApiError::Unprocessable(
                "You have exceeded your organization's limit for service binding of type key."
                    .into(),
            ));
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Request bodies.

/// `total_memory_in_mb` → `Total memory in mb`, as Rails names fields.
fn humanize(field: &str) -> String {
    let text = field.replace('_', " ");
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => text,
    }
}

const APPS_FIELDS: &[&str] = &[
    "total_memory_in_mb",
    "per_process_memory_in_mb",
    "total_instances",
    "per_app_tasks",
    "log_rate_limit_in_bytes_per_second",
];
const SERVICES_FIELDS: &[&str] = &[
    "paid_services_allowed",
    "total_service_instances",
    "total_service_keys",
];
const ROUTES_FIELDS: &[&str] = &["total_routes", "total_reserved_ports"];
const DOMAINS_FIELDS: &[&str] = &["total_domains"];

/// `Unknown field(s): 'a', 'b'`.
fn unknown(map: &Map<String, Value>, allowed: &[&str]) -> Option<String> {
    let names: Vec<String> = map
        .keys()
        .filter(|k| !allowed.contains(&k.as_str()))
        .map(|k| format!("'{k}'"))
        .collect();
    (!names.is_empty()).then(|| format!("Unknown field(s): {}", names.join(", ")))
}

/// Applies the limit sections of a body (`apps`, `services`, `routes`, and
/// `domains` for organization quotas) to `limits`; fields left out keep
/// their value, `null` is unlimited.
fn apply_limits(
    limits: &mut Limits,
    body: &Map<String, Value>,
    with_domains: bool,
    errors: &mut Vec<String>,
) {
    let mut sections = vec![
        ("apps", APPS_FIELDS),
        ("services", SERVICES_FIELDS),
        ("routes", ROUTES_FIELDS),
    ];
    if with_domains {
        sections.push(("domains", DOMAINS_FIELDS));
    }
    for (section, fields) in sections {
        let title = humanize(section);
        let Some(value) = body.get(section) else {
            continue;
        };
        let Some(map) = value.as_object() else {
            errors.push(format!("{title} must be an object"));
            continue;
        };
        if let Some(e) = unknown(map, fields) {
            errors.push(format!("{title} {e}"));
        }
        for (field, v) in map {
            if field == "paid_services_allowed" {
                match v.as_bool() {
                    Some(b) => limits.paid_services_allowed = b,
                    None => errors.push(format!("{title} Paid services allowed must be a boolean")),
                }
                continue;
            }
            let Some(slot) = limits.slot(section, field) else {
                continue;
            };
            match v {
                Value::Null => *slot = None,
                Value::Number(n) => match n.as_i64() {
                    Some(i) if i >= 0 => *slot = Some(i),
                    Some(_) => errors.push(format!(
                        "{title} {} must be greater than or equal to 0",
                        humanize(field)
                    )),
                    None => errors.push(format!("{title} {} must be an integer", humanize(field))),
                },
                _ => errors.push(format!("{title} {} is not a number", humanize(field))),
            }
        }
    }
}

fn object(body: &[u8]) -> ApiResult<Map<String, Value>> {
    match parse_json::<Value>(body)? {
        Value::Object(m) => Ok(m),
        _ => Err(ApiError::MessageParse("invalid request body".into())),
    }
}

/// The guids of `{"data": [{"guid": …}]}`, or CF's 422.
fn to_many(value: Option<&Value>, what: &str) -> ApiResult<Vec<String>> {
    let Some(value) = value.filter(|v| !v.is_null()) else {
        return Ok(Vec::new());
    };
    value["data"]
        .as_array()
        .and_then(|items| {
            items
                .iter()
                .map(|i| i["guid"].as_str().map(str::to_string))
                .collect::<Option<Vec<String>>>()
        })
        .ok_or_else(|| ApiError::Unprocessable(format!("{what} must be a to-many relationship")))
}

/// `["a", "b"]`, as Ruby prints guids in CF's messages.
fn ruby_list(guids: &[String]) -> String {
    let quoted: Vec<String> = guids.iter().map(|g| format!("\"{g}\"")).collect();
    format!("[{}]", quoted.join(", "))
}

fn name_of(body: &Map<String, Value>, required: bool, errors: &mut Vec<String>) -> Option<String> {
    match body.get("name") {
        None | Some(Value::Null) => {
            if required {
                errors.push("Name can't be blank".into());
            }
            None
        }
        Some(Value::String(n)) if n.trim().is_empty() => {
            errors.push("Name can't be blank".into());
            None
        }
        Some(Value::String(n)) => Some(n.clone()),
        Some(_) => {
            errors.push("Name must be a string".into());
            None
        }
    }
}

fn fail(errors: Vec<String>) -> ApiResult<()> {
    if errors.is_empty() {
        Ok(())
    } else {
        Err(ApiError::Unprocessable(errors.join(", ")))
    }
}

/// Records a quota audit event (`audit.organization_quota.create`, …) in
/// the caller's transaction, as CF does.
async fn record(
    c: &mut SqliteConnection,
    kind: &str,
    p: &Principal,
    (guid, target_kind, name): (&str, &str, &str),
    data: Value,
    space: Option<&str>,
    org: Option<&str>,
) -> ApiResult<()> {
    let target = EventParty {
        guid: guid.to_string(),
        kind: target_kind.to_string(),
        name: name.to_string(),
    };
    crate::orgs::audit(
        c,
        kind,
        crate::orgs::user_actor(p),
        target,
        data,
        space,
        org,
    )
    .await
}

// ---------------------------------------------------------------------------
// Organization quota handlers.

async fn list_org(
    State(api): State<Api>,
    Extension(access): Extension<Access>,
    RawQuery(raw): RawQuery,
) -> ApiResult<Response> {
    let params = ListParams::parse(
        raw.as_deref(),
        &["guids", "names", "organization_guids"],
        &[],
    )?;
    let mut q = params.narrow(Query::new(), &[("guids", "guid"), ("names", "name")]);
    if params.order.is_none() {
        q = q.order("created_at", false);
    }
    let mut c = api.inner.pool.acquire().await?;
    let mut all: Vec<OrgQuota> = store::find(&mut c, &q).await?;
    if let Some(orgs) = params.filter("organization_guids") {
        all.retain(|x| x.organizations.iter().any(|o| orgs.contains(o)));
    }
    let base = &api.inner.config.external_url;
    let resources = params
        .slice(&all)
        .iter()
        .map(|x| x.json(base, &access))
        .collect();
    Ok(ok(params.envelope(
        &api,
        "/v3/organization_quotas",
        all.len() as u64,
        resources,
    )))
}

async fn show_org(
    State(api): State<Api>,
    Extension(access): Extension<Access>,
    Path(guid): Path<String>,
) -> ApiResult<Response> {
    let mut c = api.inner.pool.acquire().await?;
    let q: OrgQuota = store::fetch(&mut c, &guid).await?;
    Ok(ok(q.json(&api.inner.config.external_url, &access)))
}

const ORG_QUOTA_KEYS: &[&str] = &["name", "apps", "services", "routes", "domains"];

async fn create_org(
    State(api): State<Api>,
    Extension(access): Extension<Access>,
    Extension(p): Extension<Principal>,
    body: Bytes,
) -> ApiResult<Response> {
    if !access.is_admin() {
        return Err(ApiError::NotAuthorized);
    }
    let body = object(&body)?;
    let request = Value::Object(body.clone());
    let mut errors = Vec::new();
    let mut allowed = ORG_QUOTA_KEYS.to_vec();
    allowed.push("relationships");
    if let Some(e) = unknown(&body, &allowed) {
        errors.push(e);
    }
    let name = name_of(&body, true, &mut errors);
    let mut limits = Limits::default();
    apply_limits(&mut limits, &body, true, &mut errors);
    let orgs = to_many(
        body.get("relationships")
            .and_then(|r| r.get("organizations")),
        "Relationships Organizations",
    )?;
    fail(errors)?;
    let name = name.unwrap_or_default();
    let mut tx = store::begin(&api.inner.pool).await?;
    let all: Vec<OrgQuota> = store::find(&mut tx, &Query::new()).await?;
    // CF's organization quota names are unique without regard to case.
    if all.iter().any(|x| x.name.eq_ignore_ascii_case(&name)) {
        return Err(ApiError::Unprocessable(format!(
            "Organization Quota '{name}' already exists."
        )));
    }
    let mut missing = Vec::new();
    for o in &orgs {
        if store::get::<Org>(&mut tx, o).await?.is_none() {
            missing.push(o.clone());
        }
    }
    if !missing.is_empty() {
        return Err(ApiError::Unprocessable(format!(
            "Organizations with guids {} do not exist",
            ruby_list(&missing)
        )));
    }
    let at = now();
    let quota = OrgQuota {
        guid: new_guid(),
        name,
        limits,
        organizations: Vec::new(),
        created_at: at.clone(),
        updated_at: at,
    };
    store::insert(&mut tx, &quota).await?;
    let quota = apply_to::<OrgQuota>(&mut tx, &quota.guid, &orgs).await?;
    let target = (
        quota.guid.as_str(),
        "organization_quota",
        quota.name.as_str(),
    );
    record(
        &mut tx,
        "audit.organization_quota.create",
        &p,
        target,
        json!({"request": request}),
        None,
        None,
    )
    .await?;
    tx.commit().await?;
    Ok(created(quota.json(&api.inner.config.external_url, &access)))
}

/// A quota applied to a set of members (organizations or spaces); a member
/// is under at most one quota of the kind.
trait Applied: Doc {
    fn members(&mut self) -> &mut Vec<String>;
    fn touch(&mut self);
}

impl Applied for OrgQuota {
    fn members(&mut self) -> &mut Vec<String> {
        &mut self.organizations
    }
    fn touch(&mut self) {
        self.updated_at = now();
    }
}

impl Applied for SpaceQuota {
    fn members(&mut self) -> &mut Vec<String> {
        &mut self.spaces
    }
    fn touch(&mut self) {
        self.updated_at = now();
    }
}

/// Applies quota `guid` to `members`, taking them from whatever quota of
/// the kind they were under.
async fn apply_to<Q: Applied>(
    c: &mut SqliteConnection,
    guid: &str,
    members: &[String],
) -> ApiResult<Q> {
    let all: Vec<Q> = store::find(c, &Query::new()).await?;
    for mut other in all {
        if other.guid() == guid {
            continue;
        }
        let before = other.members().len();
        other.members().retain(|m| !members.contains(m));
        if other.members().len() != before {
            store::put(c, &other).await?;
        }
    }
    let mut quota: Q = store::fetch(c, guid).await?;
    for m in members {
        if !quota.members().contains(m) {
            quota.members().push(m.clone());
        }
    }
    quota.touch();
    store::put(c, &quota).await?;
    Ok(quota)
}

async fn update_org(
    State(api): State<Api>,
    Extension(access): Extension<Access>,
    Extension(p): Extension<Principal>,
    Path(guid): Path<String>,
    body: Bytes,
) -> ApiResult<Response> {
    if !access.is_admin() {
        return Err(ApiError::NotAuthorized);
    }
    let body = object(&body)?;
    let mut errors = Vec::new();
    if let Some(e) = unknown(&body, ORG_QUOTA_KEYS) {
        errors.push(e);
    }
    let name = name_of(&body, false, &mut errors);
    let mut tx = store::begin(&api.inner.pool).await?;
    let mut quota: OrgQuota = store::fetch(&mut tx, &guid).await?;
    apply_limits(&mut quota.limits, &body, true, &mut errors);
    fail(errors)?;
    if let Some(name) = name {
        let all: Vec<OrgQuota> = store::find(&mut tx, &Query::new()).await?;
        if all
            .iter()
            .any(|x| x.guid != guid && x.name.eq_ignore_ascii_case(&name))
        {
            return Err(ApiError::Unprocessable(format!(
                "Organization Quota '{name}' already exists."
            )));
        }
        quota.name = name;
    }
    quota.updated_at = now();
    store::put(&mut tx, &quota).await?;
    let target = (
        quota.guid.as_str(),
        "organization_quota",
        quota.name.as_str(),
    );
    let data = json!({"request": Value::Object(body)});
    record(
        &mut tx,
        "audit.organization_quota.update",
        &p,
        target,
        data,
        None,
        None,
    )
    .await?;
    tx.commit().await?;
    Ok(ok(quota.json(&api.inner.config.external_url, &access)))
}

async fn delete_org(
    State(api): State<Api>,
    Extension(access): Extension<Access>,
    Extension(p): Extension<Principal>,
    Path(guid): Path<String>,
) -> ApiResult<Response> {
    if !access.is_admin() {
        return Err(ApiError::NotAuthorized);
    }
    let mut tx = store::begin(&api.inner.pool).await?;
    let quota: OrgQuota = store::fetch(&mut tx, &guid).await?;
    if !quota.organizations.is_empty() {
        return Err(ApiError::Unprocessable(
            "This quota is applied to one or more organizations. Apply different quotas to those organizations before deleting."
                .into(),
        ));
    }
    store::delete::<OrgQuota>(&mut tx, &guid).await?;
    let target = (
        quota.guid.as_str(),
        "organization_quota",
        quota.name.as_str(),
    );
    record(
        &mut tx,
        "audit.organization_quota.delete",
        &p,
        target,
        json!({}),
        None,
        None,
    )
    .await?;
    let job = Job::completed("organization_quota.delete", None);
    store::insert(&mut tx, &job).await?;
    tx.commit().await?;
    Ok(accepted_job(&api, &job.guid))
}

/// Whether any started process in these spaces has an unlimited log rate
/// (CF refuses a quota with a log rate limit for them).
async fn unlimited_log_rates(c: &mut SqliteConnection, spaces: Vec<String>) -> ApiResult<bool> {
    let apps: Vec<App> = store::find(c, &Query::new().any_of("space_guid", spaces)).await?;
    let started: Vec<String> = apps
        .into_iter()
        .filter(|a| a.state == "STARTED")
        .map(|a| a.guid)
        .collect();
    let processes: Vec<Process> = store::find(c, &Query::new().any_of("app_guid", started)).await?;
    Ok(processes
        .iter()
        .any(|p| p.log_rate_limit < 0 && p.instances > 0))
}

async fn apply_org(
    State(api): State<Api>,
    Extension(access): Extension<Access>,
    Extension(p): Extension<Principal>,
    Path(guid): Path<String>,
    body: Bytes,
) -> ApiResult<Response> {
    if !access.is_admin() {
        return Err(ApiError::NotAuthorized);
    }
    let body: Value = parse_json(&body)?;
    if !body["data"].is_array() {
        return Err(ApiError::Unprocessable("Data must be an array".into()));
    }
    let orgs = to_many(Some(&body), "Data")?;
    let mut tx = store::begin(&api.inner.pool).await?;
    let quota: OrgQuota = store::fetch(&mut tx, &guid).await?;
    let mut missing = Vec::new();
    let mut spaces = Vec::new();
    for o in &orgs {
        if store::get::<Org>(&mut tx, o).await?.is_none() {
            missing.push(o.clone());
        } else {
            spaces.extend(org_spaces(&mut tx, o).await?);
        }
    }
    if !missing.is_empty() {
        return Err(ApiError::Unprocessable(format!(
            "Organizations with guids {} do not exist, or you do not have access to them.",
            ruby_list(&missing)
        )));
    }
    if quota.limits.log_rate_limit_in_bytes_per_second.is_some()
        && unlimited_log_rates(&mut tx, spaces).await?
    {
        return Err(ApiError::Unprocessable(
            "Current usage exceeds new quota values. The org(s) being assigned this quota contain apps running with an unlimited log rate limit."
                .into(),
        ));
    }
    let quota = apply_to::<OrgQuota>(&mut tx, &guid, &orgs).await?;
    for o in &orgs {
        let org: Org = store::fetch(&mut tx, o).await?;
        let target = (
            quota.guid.as_str(),
            "organization_quota",
            quota.name.as_str(),
        );
        let data = json!({"organization_guid": org.guid, "organization_name": org.name});
        record(
            &mut tx,
            "audit.organization_quota.apply",
            &p,
            target,
            data,
            None,
            Some(o),
        )
        .await?;
    }
    tx.commit().await?;
    let data: Vec<Value> = quota
        .organizations
        .iter()
        .map(|o| json!({"guid": o}))
        .collect();
    Ok(ok(json!({
        "data": data,
        "links": {"self": {"href": api.url(&format!("/v3/organization_quotas/{guid}/relationships/organizations"))}},
    })))
}

// ---------------------------------------------------------------------------
// Space quota handlers.

/// The space quota, if the user may see it (else CF's 404).
async fn visible_space_quota(
    c: &mut SqliteConnection,
    access: &Access,
    guid: &str,
) -> ApiResult<SpaceQuota> {
    store::get::<SpaceQuota>(c, guid)
        .await?
        .filter(|q| q.visible_to(access))
        .ok_or_else(|| ApiError::not_found("Space quota"))
}

async fn list_space(
    State(api): State<Api>,
    Extension(access): Extension<Access>,
    RawQuery(raw): RawQuery,
) -> ApiResult<Response> {
    let params = ListParams::parse(
        raw.as_deref(),
        &["guids", "names", "organization_guids", "space_guids"],
        &[],
    )?;
    let mut q = params.narrow(
        Query::new(),
        &[
            ("guids", "guid"),
            ("names", "name"),
            ("organization_guids", "org_guid"),
        ],
    );
    if params.order.is_none() {
        q = q.order("created_at", false);
    }
    let mut c = api.inner.pool.acquire().await?;
    let mut all: Vec<SpaceQuota> = store::find(&mut c, &q).await?;
    all.retain(|x| x.visible_to(&access));
    if let Some(spaces) = params.filter("space_guids") {
        all.retain(|x| x.spaces.iter().any(|s| spaces.contains(s)));
    }
    let base = &api.inner.config.external_url;
    let resources = params
        .slice(&all)
        .iter()
        .map(|x| x.json(base, &access))
        .collect();
    Ok(ok(params.envelope(
        &api,
        "/v3/space_quotas",
        all.len() as u64,
        resources,
    )))
}

async fn show_space(
    State(api): State<Api>,
    Extension(access): Extension<Access>,
    Path(guid): Path<String>,
) -> ApiResult<Response> {
    let mut c = api.inner.pool.acquire().await?;
    let q = visible_space_quota(&mut c, &access, &guid).await?;
    Ok(ok(q.json(&api.inner.config.external_url, &access)))
}

const SPACE_QUOTA_KEYS: &[&str] = &["name", "apps", "services", "routes"];

/// Checks that `spaces` exist, are visible and belong to `org`.
async fn check_spaces(
    c: &mut SqliteConnection,
    access: &Access,
    org: &str,
    spaces: &[String],
) -> ApiResult<()> {
    let mut invalid = Vec::new();
    let mut outside = false;
    for s in spaces {
        match store::get::<Space>(c, s).await? {
            Some(space) if access.can_read_space(&space.guid) => {
                if space.org_guid != org {
                    outside = true;
                }
            }
            _ => invalid.push(s.clone()),
        }
    }
    if !invalid.is_empty() {
        return Err(ApiError::Unprocessable(format!(
            "Spaces with guids {} do not exist, or you do not have access to them.",
            ruby_list(&invalid)
        )));
    }
    if outside {
        return Err(ApiError::Unprocessable(
            "Space quotas cannot be applied outside of their owning organization.".into(),
        ));
    }
    Ok(())
}

async fn create_space(
    State(api): State<Api>,
    Extension(access): Extension<Access>,
    Extension(p): Extension<Principal>,
    body: Bytes,
) -> ApiResult<Response> {
    let body = object(&body)?;
    let request = Value::Object(body.clone());
    let mut errors = Vec::new();
    let mut allowed = SPACE_QUOTA_KEYS.to_vec();
    allowed.push("relationships");
    if let Some(e) = unknown(&body, &allowed) {
        errors.push(e);
    }
    let name = name_of(&body, true, &mut errors);
    let mut limits = Limits::default();
    apply_limits(&mut limits, &body, false, &mut errors);
    let rel = body.get("relationships");
    let org_guid = rel
        .and_then(|r| r["organization"]["data"]["guid"].as_str())
        .map(str::to_string);
    if org_guid.is_none() {
        errors.push("Relationships Organization must be a to-one relationship".into());
    }
    let spaces = to_many(rel.and_then(|r| r.get("spaces")), "Relationships Spaces")?;
    fail(errors)?;
    let (name, org_guid) = (name.unwrap_or_default(), org_guid.unwrap_or_default());
    let mut tx = store::begin(&api.inner.pool).await?;
    if store::get::<Org>(&mut tx, &org_guid).await?.is_none() || !access.can_read_org(&org_guid) {
        return Err(ApiError::Unprocessable(format!(
            "Organization with guid '{org_guid}' does not exist, or you do not have access to it."
        )));
    }
    if !access.can_manage_org(&org_guid) {
        return Err(ApiError::NotAuthorized);
    }
    let dup = Query::new().eq("org_guid", &org_guid).eq("name", &name);
    if store::find_one::<SpaceQuota>(&mut tx, &dup)
        .await?
        .is_some()
    {
        return Err(ApiError::Unprocessable(format!(
            "Space Quota '{name}' already exists."
        )));
    }
    check_spaces(&mut tx, &access, &org_guid, &spaces).await?;
    let at = now();
    let quota = SpaceQuota {
        guid: new_guid(),
        name,
        org_guid,
        limits,
        spaces: Vec::new(),
        created_at: at.clone(),
        updated_at: at,
    };
    store::insert(&mut tx, &quota).await?;
    let quota = apply_to::<SpaceQuota>(&mut tx, &quota.guid, &spaces).await?;
    let target = (quota.guid.as_str(), "space_quota", quota.name.as_str());
    let data = json!({"request": request});
    let org = Some(quota.org_guid.as_str());
    record(
        &mut tx,
        "audit.space_quota.create",
        &p,
        target,
        data,
        None,
        org,
    )
    .await?;
    tx.commit().await?;
    Ok(created(quota.json(&api.inner.config.external_url, &access)))
}

async fn update_space(
    State(api): State<Api>,
    Extension(access): Extension<Access>,
    Extension(p): Extension<Principal>,
    Path(guid): Path<String>,
    body: Bytes,
) -> ApiResult<Response> {
    let body = object(&body)?;
    let mut tx = store::begin(&api.inner.pool).await?;
    let mut quota = visible_space_quota(&mut tx, &access, &guid).await?;
    if !access.can_manage_org(&quota.org_guid) {
        return Err(ApiError::NotAuthorized);
    }
    let mut errors = Vec::new();
    if let Some(e) = unknown(&body, SPACE_QUOTA_KEYS) {
        errors.push(e);
    }
    let name = name_of(&body, false, &mut errors);
    apply_limits(&mut quota.limits, &body, false, &mut errors);
    fail(errors)?;
    if let Some(name) = name {
        let dup = Query::new()
            .eq("org_guid", &quota.org_guid)
            .eq("name", &name);
        if store::find_one::<SpaceQuota>(&mut tx, &dup)
            .await?
            .is_some_and(|x| x.guid != guid)
        {
            return Err(ApiError::Unprocessable(format!(
                "Space Quota '{name}' already exists."
            )));
        }
        quota.name = name;
    }
    quota.updated_at = now();
    store::put(&mut tx, &quota).await?;
    let target = (quota.guid.as_str(), "space_quota", quota.name.as_str());
    let data = json!({"request": Value::Object(body)});
    let org = Some(quota.org_guid.as_str());
    record(
        &mut tx,
        "audit.space_quota.update",
        &p,
        target,
        data,
        None,
        org,
    )
    .await?;
    tx.commit().await?;
    Ok(ok(quota.json(&api.inner.config.external_url, &access)))
}

async fn delete_space(
    State(api): State<Api>,
    Extension(access): Extension<Access>,
    Extension(p): Extension<Principal>,
    Path(guid): Path<String>,
) -> ApiResult<Response> {
    let mut tx = store::begin(&api.inner.pool).await?;
    let quota = visible_space_quota(&mut tx, &access, &guid).await?;
    if !access.can_manage_org(&quota.org_guid) {
        return Err(ApiError::NotAuthorized);
    }
    if !quota.spaces.is_empty() {
        return Err(ApiError::Unprocessable(
            "This quota is applied to one or more spaces. Remove this quota from all spaces before deleting."
                .into(),
        ));
    }
    store::delete::<SpaceQuota>(&mut tx, &guid).await?;
    let target = (quota.guid.as_str(), "space_quota", quota.name.as_str());
    let org = Some(quota.org_guid.as_str());
    record(
        &mut tx,
        "audit.space_quota.delete",
        &p,
        target,
        json!({}),
        None,
        org,
    )
    .await?;
    let job = Job::completed("space_quota.delete", None);
    store::insert(&mut tx, &job).await?;
    tx.commit().await?;
    Ok(accepted_job(&api, &job.guid))
}

async fn apply_space(
    State(api): State<Api>,
    Extension(access): Extension<Access>,
    Extension(p): Extension<Principal>,
    Path(guid): Path<String>,
    body: Bytes,
) -> ApiResult<Response> {
    let body: Value = parse_json(&body)?;
    let mut tx = store::begin(&api.inner.pool).await?;
    let quota = visible_space_quota(&mut tx, &access, &guid).await?;
    if !access.can_manage_org(&quota.org_guid) {
        return Err(ApiError::NotAuthorized);
    }
    if !body["data"].is_array() {
        return Err(ApiError::Unprocessable("Data must be an array".into()));
    }
    let spaces = to_many(Some(&body), "Data")?;
    check_spaces(&mut tx, &access, &quota.org_guid, &spaces).await?;
    if quota.limits.log_rate_limit_in_bytes_per_second.is_some()
        && unlimited_log_rates(&mut tx, spaces.clone()).await?
    {
        return Err(ApiError::Unprocessable(
            "Current usage exceeds new quota values. The space(s) being assigned this quota contain apps running with an unlimited log rate limit."
                .into(),
        ));
    }
    let quota = apply_to::<SpaceQuota>(&mut tx, &guid, &spaces).await?;
    for s in &spaces {
        let space: Space = store::fetch(&mut tx, s).await?;
        let target = (quota.guid.as_str(), "space_quota", quota.name.as_str());
        let data = json!({"space_guid": space.guid, "space_name": space.name});
        let org = Some(quota.org_guid.as_str());
        record(
            &mut tx,
            "audit.space_quota.apply",
            &p,
            target,
            data,
            Some(s),
            org,
        )
        .await?;
    }
    tx.commit().await?;
    let data: Vec<Value> = quota.spaces.iter().map(|s| json!({"guid": s})).collect();
    Ok(ok(json!({
        "data": data,
        "links": {"self": {"href": api.url(&format!("/v3/space_quotas/{guid}/relationships/spaces"))}},
    })))
}

async fn remove_space(
    State(api): State<Api>,
    Extension(access): Extension<Access>,
    Extension(p): Extension<Principal>,
    Path((guid, space_guid)): Path<(String, String)>,
) -> ApiResult<Response> {
    let mut tx = store::begin(&api.inner.pool).await?;
    let mut quota = visible_space_quota(&mut tx, &access, &guid).await?;
    if !access.can_manage_org(&quota.org_guid) {
        return Err(ApiError::NotAuthorized);
    }
    let before = quota.spaces.len();
    quota.spaces.retain(|s| *s != space_guid);
    if quota.spaces.len() == before {
        return Err(ApiError::Unprocessable(format!(
            "Unable to remove quota from space with guid '{space_guid}'. Ensure the space quota is applied to this space."
        )));
    }
    quota.updated_at = now();
    store::put(&mut tx, &quota).await?;
    let target = (quota.guid.as_str(), "space_quota", quota.name.as_str());
    let data = json!({"space_guid": space_guid});
    let org = Some(quota.org_guid.as_str());
    record(
        &mut tx,
        "audit.space_quota.remove",
        &p,
        target,
        data,
        Some(&space_guid),
        org,
    )
    .await?;
    tx.commit().await?;
    Ok(no_content())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_parse_like_cf() {
        let mut limits = Limits::default();
        let mut errors = Vec::new();
        let body = json!({"apps": {"total_memory_in_mb": 1024, "total_instances": null},
                          "services": {"paid_services_allowed": false},
                          "routes": {"total_routes": 3}});
        apply_limits(
            &mut limits,
            body.as_object().expect("object"),
            true,
            &mut errors,
        );
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(limits.total_memory_in_mb, Some(1024));
        assert_eq!(limits.total_instances, None);
        assert!(!limits.paid_services_allowed);
        assert_eq!(limits.total_routes, Some(3));

        let bad = json!({"apps": {"total_memory_in_mb": -1, "bogus": 1}, "domains": {"total_domains": 1.5}});
        apply_limits(
            &mut limits,
            bad.as_object().expect("object"),
            true,
            &mut errors,
        );
        assert!(
            errors.contains(&"Apps Unknown field(s): 'bogus'".to_string()),
            "{errors:?}"
        );
        assert!(errors
            .contains(&"Apps Total memory in mb must be greater than or equal to 0".to_string()));
        assert!(errors.contains(&"Domains Total domains must be an integer".to_string()));
    }
}
