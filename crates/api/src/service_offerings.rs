//! Service offerings, service plans and plan visibility, as brokers'
//! catalogs define them (`/v3/service_offerings`, `/v3/service_plans`,
//! `/v3/service_plans/:guid/visibility`).
//!
//! Who sees a plan is its `visibility_type`: `admin` (new plans of a global
//! broker, until `enable-service-access`), `public`, `organization` (the
//! organizations in its visibilities) or `space` (the plans of a
//! space-scoped broker). Global readers see every plan; an offering is
//! visible when one of its plans is. Lists are filtered here, in Rust,
//! because the rules span several tables.

use std::collections::{BTreeMap, BTreeSet};

use axum::extract::{Path, RawQuery, State};
use axum::response::Response;
use axum::routing::{delete, get};
use axum::{Extension, Router};
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use sqlx::SqliteConnection;

use crate::authz::{Access, Scope};
use crate::error::{ApiError, ApiResult};
use crate::http::{no_content, ok, parse_json, ListParams};
use crate::model::{link, new_guid, now, rel, Metadata, Org, Render, Space};
use crate::service_brokers::ServiceBroker;
use crate::services::ServiceInstance;
use crate::store::{self, Doc, Query};
use crate::Api;

pub(crate) fn routes() -> Router<Api> {
    Router::new()
        .route("/v3/service_offerings", get(list_offerings))
        .route("/v3/service_offerings/{guid}", get(show_offering))
        .route("/v3/service_plans", get(list_plans))
        .route("/v3/service_plans/{guid}", get(show_plan))
        .route(
            "/v3/service_plans/{guid}/visibility",
            get(show_visibility)
                .patch(replace_visibility)
                .post(append_visibility),
        )
        .route(
            "/v3/service_plans/{guid}/visibility/{org}",
            delete(remove_visibility),
        )
}

/// An offering of a broker's catalog.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct ServiceOffering {
    pub guid: String,
    pub broker_guid: String,
    /// The broker's id for it.
    pub broker_id: String,
    /// The space of a space-scoped broker.
    pub space_guid: Option<String>,
    pub name: String,
    pub description: String,
    pub available: bool,
    pub bindable: bool,
    pub plan_updateable: bool,
    pub instances_retrievable: bool,
    pub bindings_retrievable: bool,
    pub tags: Vec<String>,
    pub requires: Vec<String>,
    pub catalog_metadata: Option<Map<String, Value>>,
    pub created_at: String,
    pub updated_at: String,
    #[serde(default)]
    pub metadata: Metadata,
}

impl Doc for ServiceOffering {
    const TABLE: &'static str = "cc_service_offerings";
    const KIND: &'static str = "Service offering";
    // Narrowed by plan visibility in this file, not by authz.
    const SCOPE: Scope = Scope::Everyone;
    fn guid(&self) -> &str {
        &self.guid
    }
}

impl Render for ServiceOffering {
    fn render(&self, base: &str) -> Value {
        let g = &self.guid;
        let meta = self.catalog_metadata.clone().unwrap_or_default();
        json!({
            "guid": g, "name": self.name, "description": self.description,
            "available": self.available, "tags": self.tags, "requires": self.requires,
            "created_at": self.created_at, "updated_at": self.updated_at,
            "shareable": meta.get("shareable").and_then(Value::as_bool).unwrap_or(false),
            "documentation_url": meta.get("documentationUrl").cloned().unwrap_or(Value::Null),
            "broker_catalog": {
                "id": self.broker_id,
                "metadata": meta,
                "features": {
                    "plan_updateable": self.plan_updateable,
                    "bindable": self.bindable,
                    "instances_retrievable": self.instances_retrievable,
                    "bindings_retrievable": self.bindings_retrievable,
                    "allow_context_updates": false,
                },
            },
            "relationships": {"service_broker": rel(Some(&self.broker_guid))},
            "metadata": self.metadata.json(),
            "links": {
                "self": link(base, &format!("/v3/service_offerings/{g}")),
                "service_plans": link(base, &format!("/v3/service_plans?service_offering_guids={g}")),
                "service_broker": link(base, &format!("/v3/service_brokers/{}", self.broker_guid)),
            }
        })
    }
}

/// A plan of an offering.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct ServicePlan {
    pub guid: String,
    pub offering_guid: String,
    pub broker_guid: String,
    /// The broker's id for it.
    pub broker_id: String,
    /// The space of a space-scoped broker.
    pub space_guid: Option<String>,
    /// `admin`, `public`, `organization` or `space`.
    pub visibility_type: String,
    pub name: String,
    pub description: String,
    pub available: bool,
    pub free: bool,
    /// Effective: the plan's own flag, else its offering's.
    pub bindable: bool,
    /// Effective: the plan's own flag, else its offering's.
    pub plan_updateable: bool,
    pub maintenance_info: Option<Value>,
    pub maximum_polling_duration: Option<u64>,
    pub catalog_metadata: Option<Map<String, Value>>,
    pub schemas: Option<Value>,
    pub created_at: String,
    pub updated_at: String,
    #[serde(default)]
    pub metadata: Metadata,
}

impl Doc for ServicePlan {
    const TABLE: &'static str = "cc_service_plans";
    const KIND: &'static str = "Service plan";
    const SCOPE: Scope = Scope::Everyone;
    fn guid(&self) -> &str {
        &self.guid
    }
}

impl Render for ServicePlan {
    fn render(&self, base: &str) -> Value {
        let g = &self.guid;
        let schema = |path: &[&str]| {
            let mut v = self.schemas.clone().unwrap_or(Value::Null);
            for p in path {
                v = v.get(*p).cloned().unwrap_or(Value::Null);
            }
            if v.is_object() {
                v
            } else {
                json!({})
            }
        };
        json!({
            "guid": g, "name": self.name, "description": self.description,
            "visibility_type": self.visibility_type,
            "available": self.available, "free": self.free, "costs": [],
            "created_at": self.created_at, "updated_at": self.updated_at,
            "maintenance_info": self.maintenance_info.clone().unwrap_or_else(|| json!({})),
            "broker_catalog": {
                "id": self.broker_id,
                "metadata": self.catalog_metadata.clone().unwrap_or_default(),
                "maximum_polling_duration": self.maximum_polling_duration,
                "features": {"bindable": self.bindable, "plan_updateable": self.plan_updateable},
            },
            "schemas": {
                "service_instance": {
                    "create": {"parameters": schema(&["service_instance", "create", "parameters"])},
                    "update": {"parameters": schema(&["service_instance", "update", "parameters"])},
                },
                "service_binding": {
                    "create": {"parameters": schema(&["service_binding", "create", "parameters"])},
                },
            },
            "relationships": {
                "service_offering": rel(Some(&self.offering_guid)),
                "space": rel(self.space_guid.as_deref()),
            },
            "metadata": self.metadata.json(),
            "links": {
                "self": link(base, &format!("/v3/service_plans/{g}")),
                "service_offering": link(base, &format!("/v3/service_offerings/{}", self.offering_guid)),
                "visibility": link(base, &format!("/v3/service_plans/{g}/visibility")),
            }
        })
    }
}

/// One organization that may use an `organization`-visible plan.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct ServicePlanVisibility {
    pub guid: String,
    pub plan_guid: String,
    pub org_guid: String,
    pub created_at: String,
}

impl Doc for ServicePlanVisibility {
    const TABLE: &'static str = "cc_service_plan_visibilities";
    const KIND: &'static str = "Service plan visibility";
    const SCOPE: Scope = Scope::Org("org_guid");
    fn guid(&self) -> &str {
        &self.guid
    }
}

/// Every plan's visible organizations (plan guid → org guids).
async fn visibility_map(c: &mut SqliteConnection) -> ApiResult<BTreeMap<String, Vec<String>>> {
    let all: Vec<ServicePlanVisibility> = store::find(c, &Query::new()).await?;
    let mut map: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for v in all {
        map.entry(v.plan_guid).or_default().push(v.org_guid);
    }
    Ok(map)
}

/// Whether the user sees the plan at all.
fn user_sees(access: &Access, plan: &ServicePlan, orgs: &[String]) -> bool {
    if access.reads_everything() {
        return true;
    }
    match plan.visibility_type.as_str() {
        "public" => true,
        "organization" => orgs.iter().any(|o| access.can_read_org(o)),
        "space" => plan
            .space_guid
            .as_deref()
            .is_some_and(|s| access.can_read_space(s)),
        _ => false,
    }
}

/// Whether instances of the plan may be created in the space (admins may
/// use plans not yet enabled, as in CF).
fn usable_in_space(access: &Access, plan: &ServicePlan, orgs: &[String], space: &Space) -> bool {
    match plan.visibility_type.as_str() {
        "public" => true,
        "organization" => orgs.contains(&space.org_guid),
        "space" => plan.space_guid.as_deref() == Some(space.guid.as_str()),
        _ => access.is_admin(),
    }
}

/// The plan an instance is to be created from, if the user may use it in
/// the space; otherwise CF's 422.
pub(crate) async fn plan_for_space(
    c: &mut SqliteConnection,
    access: &Access,
    plan_guid: &str,
    space: &Space,
) -> ApiResult<ServicePlan> {
    let invalid = || {
        ApiError::Unprocessable(
            "Invalid service plan. Ensure that the service plan exists, is available, and you have access to it."
                .into(),
        )
    };
    let plan = store::get::<ServicePlan>(c, plan_guid)
        .await?
        .ok_or_else(invalid)?;
    let orgs = visibility_map(c)
        .await?
        .remove(&plan.guid)
        .unwrap_or_default();
    if !plan.available
        || !user_sees(access, &plan, &orgs)
        || !usable_in_space(access, &plan, &orgs, space)
    {
        return Err(invalid());
    }
    Ok(plan)
}

/// Guids of the spaces' organizations, and of the organizations' spaces.
async fn space_orgs(c: &mut SqliteConnection) -> ApiResult<BTreeMap<String, String>> {
    let spaces: Vec<Space> = store::find(c, &Query::new()).await?;
    Ok(spaces.into_iter().map(|s| (s.guid, s.org_guid)).collect())
}

/// The plans that pass the user's visibility and the request's filters.
async fn filtered_plans(
    c: &mut SqliteConnection,
    access: &Access,
    params: &ListParams,
) -> ApiResult<Vec<ServicePlan>> {
    let mut q = Query::new();
    if let Some((field, desc)) = &params.order {
        q = q.order(field, *desc);
    }
    for (param, field) in [
        ("names", "name"),
        ("guids", "guid"),
        ("service_offering_guids", "offering_guid"),
        ("service_broker_guids", "broker_guid"),
        ("broker_catalog_ids", "broker_id"),
    ] {
        if let Some(v) = params.filter(param) {
            q = q.any_of(field, v);
        }
    }
    if let Some(names) = params.filter("service_offering_names") {
        let offerings: Vec<ServiceOffering> =
            store::find(c, &Query::new().any_of("name", names)).await?;
        q = q.any_of(
            "offering_guid",
            offerings.into_iter().map(|o| o.guid).collect(),
        );
    }
    if let Some(names) = params.filter("service_broker_names") {
        let brokers: Vec<ServiceBroker> =
            store::find(c, &Query::new().any_of("name", names)).await?;
        q = q.any_of("broker_guid", brokers.into_iter().map(|b| b.guid).collect());
    }
    if let Some(instances) = params.filter("service_instance_guids") {
        let found: Vec<ServiceInstance> =
            store::find(c, &Query::new().any_of("guid", instances)).await?;
        q = q.any_of(
            "guid",
            found
                .into_iter()
                .filter_map(|i| i.service_plan_guid)
                .collect(),
        );
    }
    let plans: Vec<ServicePlan> = store::find(c, &q).await?;
    let vis = visibility_map(c).await?;
    let spaces = space_orgs(c).await?;
    let available = params
        .filter("available")
        .map(|v| v.iter().any(|a| a == "true"));
    let in_spaces = params.filter("space_guids");
    let in_orgs = params.filter("organization_guids");
    let none = Vec::new();
    Ok(plans
        .into_iter()
        .filter(|p| {
            let orgs = vis.get(&p.guid).unwrap_or(&none);
            if !user_sees(access, p, orgs) {
                return false;
            }
            if available.is_some_and(|a| a != p.available) {
                return false;
            }
            let admin_plan = p.visibility_type == "admin";
            if let Some(wanted) = &in_spaces {
                let ok = wanted.iter().any(|s| match p.visibility_type.as_str() {
                    "public" => true,
                    "organization" => spaces.get(s).is_some_and(|o| orgs.contains(o)),
                    "space" => p.space_guid.as_deref() == Some(s.as_str()),
                    _ => admin_plan && access.is_admin(),
                });
                if !ok {
                    return false;
                }
            }
            if let Some(wanted) = &in_orgs {
                let ok = wanted.iter().any(|o| match p.visibility_type.as_str() {
                    "public" => true,
                    "organization" => orgs.contains(o),
                    "space" => p
                        .space_guid
                        .as_ref()
                        .and_then(|s| spaces.get(s))
                        .is_some_and(|org| org == o),
                    _ => admin_plan && access.is_admin(),
                });
                if !ok {
                    return false;
                }
            }
            true
        })
        .collect())
}

const PLAN_FILTERS: &[&str] = &[
    "names",
    "guids",
    "available",
    "service_offering_guids",
    "service_offering_names",
    "service_broker_guids",
    "service_broker_names",
    "broker_catalog_ids",
    "service_instance_guids",
    "space_guids",
    "organization_guids",
];

/// The values of a raw query parameter (comma-separated), e.g. `include`.
fn raw_values(raw: Option<&str>, name: &str) -> Vec<String> {
    serde_urlencoded::from_str::<Vec<(String, String)>>(raw.unwrap_or(""))
        .unwrap_or_default()
        .into_iter()
        .filter(|(k, _)| k == name)
        .flat_map(|(_, v)| v.split(',').map(str::to_string).collect::<Vec<_>>())
        .collect()
}

/// `included.service_brokers` with the fields asked for (`name`, `guid`).
async fn included_brokers(
    c: &mut SqliteConnection,
    broker_guids: BTreeSet<String>,
    fields: &[String],
) -> ApiResult<Value> {
    let brokers: Vec<ServiceBroker> = store::find(
        c,
        &Query::new().any_of("guid", broker_guids.into_iter().collect()),
    )
    .await?;
    Ok(Value::Array(
        brokers
            .into_iter()
            .map(|b| {
                let mut out = Map::new();
                for f in fields {
                    match f.as_str() {
                        "name" => out.insert("name".into(), json!(b.name)),
                        "guid" => out.insert("guid".into(), json!(b.guid)),
                        _ => None,
                    };
                }
                Value::Object(out)
            })
            .collect(),
    ))
}

async fn list_plans(
    State(api): State<Api>,
    Extension(access): Extension<Access>,
    RawQuery(raw): RawQuery,
) -> ApiResult<Response> {
    let params = ListParams::parse(raw.as_deref(), PLAN_FILTERS, &["name"])?;
    let mut c = api.inner.pool.acquire().await?;
    let plans = filtered_plans(&mut c, &access, &params).await?;
    let page = params.slice(&plans);
    let base = &api.inner.config.external_url;
    let resources = page.iter().map(|p| p.render(base)).collect();
    let mut body = params.envelope(&api, "/v3/service_plans", plans.len() as u64, resources);
    let include = raw_values(raw.as_deref(), "include");
    let broker_fields = raw_values(raw.as_deref(), "fields[service_offering.service_broker]");
    if include.iter().any(|i| i == "service_offering") || !broker_fields.is_empty() {
        let guids: Vec<String> = page
            .iter()
            .map(|p| p.offering_guid.clone())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let offerings: Vec<ServiceOffering> =
            store::find(&mut c, &Query::new().any_of("guid", guids)).await?;
        let mut included = Map::new();
        if !broker_fields.is_empty() {
            let brokers = offerings.iter().map(|o| o.broker_guid.clone()).collect();
            included.insert(
                "service_brokers".into(),
                included_brokers(&mut c, brokers, &broker_fields).await?,
            );
        }
        if include.iter().any(|i| i == "service_offering") {
            included.insert(
                "service_offerings".into(),
                Value::Array(offerings.iter().map(|o| o.render(base)).collect()),
            );
        }
        body["included"] = Value::Object(included);
    }
    Ok(ok(body))
}

/// The plan, or CF's 404 when it is missing or invisible to the user.
async fn visible_plan(
    c: &mut SqliteConnection,
    access: &Access,
    guid: &str,
) -> ApiResult<ServicePlan> {
    let plan = store::fetch::<ServicePlan>(c, guid).await?;
    let orgs = visibility_map(c)
        .await?
        .remove(&plan.guid)
        .unwrap_or_default();
    if user_sees(access, &plan, &orgs) {
        Ok(plan)
    } else {
        Err(ApiError::not_found(ServicePlan::KIND))
    }
}

async fn show_plan(
    State(api): State<Api>,
    Extension(access): Extension<Access>,
    Path(guid): Path<String>,
) -> ApiResult<Response> {
    let mut c = api.inner.pool.acquire().await?;
    let plan = visible_plan(&mut c, &access, &guid).await?;
    Ok(ok(plan.render(&api.inner.config.external_url)))
}

const OFFERING_FILTERS: &[&str] = &[
    "names",
    "guids",
    "available",
    "service_broker_guids",
    "service_broker_names",
    "space_guids",
    "organization_guids",
];

async fn list_offerings(
    State(api): State<Api>,
    Extension(access): Extension<Access>,
    RawQuery(raw): RawQuery,
) -> ApiResult<Response> {
    let params = ListParams::parse(raw.as_deref(), OFFERING_FILTERS, &["name"])?;
    let mut c = api.inner.pool.acquire().await?;
    // An offering is listed when one of its plans passes the visibility
    // and space/organization filters.
    let mut plan_params = params.clone();
    plan_params.order = None;
    plan_params.filters.retain(|k, _| {
        matches!(
            k.as_str(),
            "space_guids" | "organization_guids" | "service_broker_guids" | "service_broker_names"
        )
    });
    let with_plans: BTreeSet<String> = filtered_plans(&mut c, &access, &plan_params)
        .await?
        .into_iter()
        .map(|p| p.offering_guid)
        .collect();
    let mut q = Query::new();
    if let Some((field, desc)) = &params.order {
        q = q.order(field, *desc);
    }
    for (param, field) in [
        ("names", "name"),
        ("guids", "guid"),
        ("service_broker_guids", "broker_guid"),
    ] {
        if let Some(v) = params.filter(param) {
            q = q.any_of(field, v);
        }
    }
    let available = params
        .filter("available")
        .map(|v| v.iter().any(|a| a == "true"));
    let offerings: Vec<ServiceOffering> = store::find(&mut c, &q)
        .await?
        .into_iter()
        .filter(|o: &ServiceOffering| with_plans.contains(&o.guid))
        .filter(|o| available.is_none_or(|a| a == o.available))
        .collect();
    let page = params.slice(&offerings);
    let base = &api.inner.config.external_url;
    let resources = page.iter().map(|o| o.render(base)).collect();
    let mut body = params.envelope(
        &api,
        "/v3/service_offerings",
        offerings.len() as u64,
        resources,
    );
    let broker_fields = raw_values(raw.as_deref(), "fields[service_broker]");
    if !broker_fields.is_empty() {
        let brokers = page.iter().map(|o| o.broker_guid.clone()).collect();
        body["included"] = json!({
            "service_brokers": included_brokers(&mut c, brokers, &broker_fields).await?,
        });
    }
    Ok(ok(body))
}

async fn show_offering(
    State(api): State<Api>,
    Extension(access): Extension<Access>,
    Path(guid): Path<String>,
) -> ApiResult<Response> {
    let mut c = api.inner.pool.acquire().await?;
    let offering = store::fetch::<ServiceOffering>(&mut c, &guid).await?;
    if !access.reads_everything() {
        let plans: Vec<ServicePlan> =
            store::find(&mut c, &Query::new().eq("offering_guid", &guid)).await?;
        let vis = visibility_map(&mut c).await?;
        let none = Vec::new();
        if !plans
            .iter()
            .any(|p| user_sees(&access, p, vis.get(&p.guid).unwrap_or(&none)))
        {
            return Err(ApiError::not_found(ServiceOffering::KIND));
        }
    }
    Ok(ok(offering.render(&api.inner.config.external_url)))
}

/// The plan's visibility as CF renders it.
async fn visibility_json(c: &mut SqliteConnection, plan: &ServicePlan) -> ApiResult<Value> {
    Ok(match plan.visibility_type.as_str() {
        "organization" => {
            let vis: Vec<ServicePlanVisibility> =
                store::find(c, &Query::new().eq("plan_guid", &plan.guid)).await?;
            let orgs: Vec<Org> = store::find(
                c,
                &Query::new().any_of("guid", vis.into_iter().map(|v| v.org_guid).collect()),
            )
            .await?;
            json!({
                "type": "organization",
                "organizations": orgs.iter().map(|o| json!({"guid": o.guid, "name": o.name})).collect::<Vec<_>>(),
            })
        }
        "space" => {
            let space = match &plan.space_guid {
                Some(s) => store::get::<Space>(c, s).await?,
                None => None,
            };
            json!({"type": "space", "space": space.map(|s| json!({"guid": s.guid, "name": s.name}))})
        }
        other => json!({"type": other}),
    })
}

async fn show_visibility(
    State(api): State<Api>,
    Extension(access): Extension<Access>,
    Path(guid): Path<String>,
) -> ApiResult<Response> {
    let mut c = api.inner.pool.acquire().await?;
    let plan = visible_plan(&mut c, &access, &guid).await?;
    Ok(ok(visibility_json(&mut c, &plan).await?))
}

#[derive(Debug, Deserialize)]
struct VisibilityRequest {
    #[serde(rename = "type")]
    kind: Option<String>,
    organizations: Option<Vec<crate::apps::GuidRef>>,
}

async fn replace_visibility(
    State(api): State<Api>,
    Path(guid): Path<String>,
    body: Bytes,
) -> ApiResult<Response> {
    change_visibility(&api, &guid, &body, false).await
}

async fn append_visibility(
    State(api): State<Api>,
    Path(guid): Path<String>,
    body: Bytes,
) -> ApiResult<Response> {
    change_visibility(&api, &guid, &body, true).await
}

/// PATCH (replace) or POST (append) a plan's visibility; only admins get
/// here (authz lets nobody else write platform-wide kinds).
async fn change_visibility(
    api: &Api,
    guid: &str,
    body: &[u8],
    append: bool,
) -> ApiResult<Response> {
    let req: VisibilityRequest = parse_json(body)?;
    let kind = req.kind.unwrap_or_default();
    if !matches!(kind.as_str(), "public" | "admin" | "organization") {
        return Err(ApiError::Unprocessable(
            "Type must be one of 'public', 'admin', 'organization'".into(),
        ));
    }
    let mut tx = store::begin(&api.inner.pool).await?;
    let mut plan = store::fetch::<ServicePlan>(&mut tx, guid).await?;
    if plan.visibility_type == "space" {
        return Err(ApiError::Unprocessable(
            "cannot update plans with visibility type 'space'".into(),
        ));
    }
    let existing: Vec<ServicePlanVisibility> =
        store::find(&mut tx, &Query::new().eq("plan_guid", &plan.guid)).await?;
    let keep_existing = append && kind == "organization" && plan.visibility_type == "organization";
    if !keep_existing {
        for v in &existing {
            store::delete::<ServicePlanVisibility>(&mut tx, &v.guid).await?;
        }
    }
    if kind == "organization" {
        let wanted = req.organizations.unwrap_or_default();
        if wanted.is_empty() {
            return Err(ApiError::Unprocessable(
                "Organizations can't be blank when type is 'organization'".into(),
            ));
        }
        let mut missing = Vec::new();
        for org in &wanted {
            if store::get::<Org>(&mut tx, &org.guid).await?.is_none() {
                missing.push(org.guid.clone());
            }
        }
        if !missing.is_empty() {
            return Err(ApiError::Unprocessable(format!(
                "Could not find organizations with guids: [\"{}\"]",
                missing.join("\", \"")
            )));
        }
        for org in wanted {
            let already = keep_existing && existing.iter().any(|v| v.org_guid == org.guid);
            if !already {
                store::insert(
                    &mut tx,
                    &ServicePlanVisibility {
                        guid: new_guid(),
                        plan_guid: plan.guid.clone(),
                        org_guid: org.guid,
                        created_at: now(),
                    },
                )
                .await?;
            }
        }
    }
    plan.visibility_type = kind;
    plan.updated_at = now();
    store::put(&mut tx, &plan).await?;
    let body = visibility_json(&mut tx, &plan).await?;
    tx.commit().await?;
    Ok(ok(body))
}

async fn remove_visibility(
    State(api): State<Api>,
    Path((guid, org)): Path<(String, String)>,
) -> ApiResult<Response> {
    let mut tx = store::begin(&api.inner.pool).await?;
    let plan = store::fetch::<ServicePlan>(&mut tx, &guid).await?;
    let found = store::find_one::<ServicePlanVisibility>(
        &mut tx,
        &Query::new()
            .eq("plan_guid", &plan.guid)
            .eq("org_guid", &org),
    )
    .await?
    .ok_or_else(|| ApiError::not_found(ServicePlanVisibility::KIND))?;
    store::delete::<ServicePlanVisibility>(&mut tx, &found.guid).await?;
    tx.commit().await?;
    Ok(no_content())
}
