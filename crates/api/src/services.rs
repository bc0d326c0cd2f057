//! Service instances and their bindings to apps. User-provided instances
//! (`cf create-user-provided-service`) carry credentials, a syslog drain URL
//! and a route service URL given by the user; a binding puts the
//! credentials into the app's `VCAP_SERVICES`, and a drain URL makes the
//! platform forward the app's logs there. Managed instances (from a
//! broker's plan) and their bindings share these endpoints; what they ask of
//! the broker lives in `services_managed`.

use axum::extract::{Path, RawQuery, State};
use axum::response::Response;
use axum::routing::get;
use axum::{Extension, Router};
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use sqlx::SqliteConnection;

use crate::apps::app_context;
use crate::authz::{Access, Scope};
use crate::error::{ApiError, ApiResult};
use crate::http::{created, no_content, ok, page_response, parse_json, require, show, ListParams};
use crate::model::{link, new_guid, now, rel, App, Metadata, Render, Space};
use crate::store::{self, Doc, Query};
use crate::{Api, Principal};

pub(crate) fn routes() -> Router<Api> {
    Router::new()
        .route(
            "/v3/service_instances",
            get(list_instances).post(create_instance),
        )
        .route(
            "/v3/service_instances/{guid}",
            get(show_instance)
                .patch(update_instance)
                .delete(delete_instance),
        )
        .route(
            "/v3/service_instances/{guid}/credentials",
            get(instance_credentials),
        )
        .route(
            "/v3/service_credential_bindings",
            get(list_bindings).post(create_binding),
        )
        .route(
            "/v3/service_credential_bindings/{guid}",
            get(show::<Binding>).delete(delete_binding),
        )
        .route(
            "/v3/service_credential_bindings/{guid}/details",
            get(binding_details),
        )
}

/// A service instance (user-provided, for now).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct ServiceInstance {
    pub guid: String,
    pub name: String,
    pub space_guid: String,
    /// `user-provided` (or `managed`, with brokers).
    #[serde(rename = "type")]
    pub kind: String,
    pub credentials: Map<String, Value>,
    pub syslog_drain_url: Option<String>,
    pub route_service_url: Option<String>,
    pub tags: Vec<String>,
    /// The last operation's type: `create`, `update` or `delete`.
    pub last_operation: String,
    /// `initial`, `in progress`, `succeeded` or `failed`.
    #[serde(default = "succeeded")]
    pub last_operation_state: String,
    /// The broker's (or the platform's) words about the last operation.
    #[serde(default)]
    pub last_operation_description: Option<String>,
    /// The plan of a managed instance.
    #[serde(default)]
    pub service_plan_guid: Option<String>,
    #[serde(default)]
    pub dashboard_url: Option<String>,
    /// The `maintenance_info` the instance was last provisioned or updated with.
    #[serde(default)]
    pub maintenance_info: Option<Value>,
    /// The broker operation in flight, if any.
    #[serde(default)]
    pub pending: Option<crate::services_managed::PendingOp>,
    pub created_at: String,
    pub updated_at: String,
    #[serde(default)]
    pub metadata: Metadata,
}

fn succeeded() -> String {
    "succeeded".into()
}

fn app_kind() -> String {
    "app".into()
}

fn create_op() -> String {
    "create".into()
}

/// CF's `last_operation` object.
fn last_operation_json(kind: &str, state: &str, description: Option<&str>, at: &str) -> Value {
    let description = match (description, state) {
        (Some(d), _) => json!(d),
        (None, "succeeded") => json!("Operation succeeded"),
        (None, _) => Value::Null,
    };
    json!({
        "type": kind, "state": state, "description": description,
        "created_at": at, "updated_at": at,
    })
}

impl ServiceInstance {
    /// Whether a broker made it.
    pub(crate) fn is_managed(&self) -> bool {
        self.kind == "managed"
    }
}

impl Doc for ServiceInstance {
    const TABLE: &'static str = "cc_service_instances";
    const KIND: &'static str = "Service instance";
    const SCOPE: Scope = Scope::Space("space_guid");
    fn guid(&self) -> &str {
        &self.guid
    }
}

impl Render for ServiceInstance {
    fn render(&self, base: &str) -> Value {
        let g = &self.guid;
        let mut out = json!({
            "guid": g, "created_at": self.created_at, "updated_at": self.updated_at,
            "name": self.name, "type": self.kind, "tags": self.tags,
            "last_operation": last_operation_json(
                &self.last_operation,
                &self.last_operation_state,
                self.last_operation_description.as_deref(),
                &self.updated_at,
            ),
            "relationships": {"space": rel(Some(&self.space_guid))},
            "metadata": self.metadata.json(),
            "links": {
                "self": link(base, &format!("/v3/service_instances/{g}")),
                "space": link(base, &format!("/v3/spaces/{}", self.space_guid)),
                "service_credential_bindings": link(base, &format!("/v3/service_credential_bindings?service_instance_guids={g}")),
                "service_route_bindings": link(base, &format!("/v3/service_route_bindings?service_instance_guids={g}")),
            }
        });
        if self.is_managed() {
            let plan = self.service_plan_guid.as_deref();
            out["maintenance_info"] = self.maintenance_info.clone().unwrap_or_else(|| json!({}));
            out["upgrade_available"] = json!(false);
            out["dashboard_url"] = json!(self.dashboard_url);
            out["relationships"]["service_plan"] = rel(plan);
            if let Some(plan) = plan {
                out["links"]["service_plan"] = link(base, &format!("/v3/service_plans/{plan}"));
            }
            out["links"]["parameters"] =
                link(base, &format!("/v3/service_instances/{g}/parameters"));
        } else {
            out["syslog_drain_url"] = json!(self.syslog_drain_url);
            out["route_service_url"] = json!(self.route_service_url);
            out["links"]["credentials"] =
                link(base, &format!("/v3/service_instances/{g}/credentials"));
        }
        out
    }
}

/// A binding of a service instance to an app (`type: app`), or a service
/// key (`type: key`, no app).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Binding {
    pub guid: String,
    pub name: Option<String>,
    #[serde(rename = "type", default = "app_kind")]
    pub kind: String,
    /// The bound app; `None` for a service key.
    pub app_guid: Option<String>,
    pub service_instance_guid: String,
    /// The instance's space (what the binding's visibility follows).
    #[serde(default)]
    pub space_guid: String,
    /// What the broker gave a managed binding (user-provided bindings use
    /// their instance's).
    #[serde(default)]
    pub credentials: Option<Map<String, Value>>,
    #[serde(default)]
    pub syslog_drain_url: Option<String>,
    #[serde(default = "create_op")]
    pub last_operation: String,
    #[serde(default = "succeeded")]
    pub last_operation_state: String,
    #[serde(default)]
    pub last_operation_description: Option<String>,
    /// The broker operation in flight, if any.
    #[serde(default)]
    pub pending: Option<crate::services_managed::PendingOp>,
    pub created_at: String,
    pub updated_at: String,
    #[serde(default)]
    pub metadata: Metadata,
}

impl Doc for Binding {
    const TABLE: &'static str = "cc_service_bindings";
    const KIND: &'static str = "Service credential binding";
    const SCOPE: Scope = Scope::Space("space_guid");
    fn guid(&self) -> &str {
        &self.guid
    }
}

impl Render for Binding {
    fn render(&self, base: &str) -> Value {
        let g = &self.guid;
        let mut out = json!({
            "guid": g, "created_at": self.created_at, "updated_at": self.updated_at,
            "name": self.name, "type": self.kind,
            "last_operation": {
                "type": self.last_operation, "state": self.last_operation_state,
                "description": self.last_operation_description,
                "created_at": self.created_at, "updated_at": self.updated_at,
            },
            "relationships": {
                "service_instance": rel(Some(&self.service_instance_guid)),
            },
            "metadata": self.metadata.json(),
            "links": {
                "self": link(base, &format!("/v3/service_credential_bindings/{g}")),
                "details": link(base, &format!("/v3/service_credential_bindings/{g}/details")),
                "service_instance": link(base, &format!("/v3/service_instances/{}", self.service_instance_guid)),
            }
        });
        if let Some(app) = &self.app_guid {
            out["relationships"]["app"] = rel(Some(app));
            out["links"]["app"] = link(base, &format!("/v3/apps/{app}"));
        }
        out
    }
}

const INSTANCE_FILTERS: &[(&str, &str)] = &[
    ("names", "name"),
    ("guids", "guid"),
    ("space_guids", "space_guid"),
    ("type", "type"),
    ("service_plan_guids", "service_plan_guid"),
];

async fn list_instances(
    State(api): State<Api>,
    Extension(access): Extension<Access>,
    RawQuery(raw): RawQuery,
) -> ApiResult<Response> {
    let mut names = ListParams::names(INSTANCE_FILTERS);
    names.extend(["organization_guids", "service_plan_names"]);
    let params = ListParams::parse(raw.as_deref(), &names, &["name"])?;
    let mut q = params.narrow(Query::new(), INSTANCE_FILTERS);
    let mut c = api.inner.pool.acquire().await?;
    if let Some(orgs) = params.filter("organization_guids") {
        q = q.any_of("space_guid", crate::apps::spaces_of(&mut c, orgs).await?);
    }
    if let Some(plans) = params.filter("service_plan_names") {
        let found: Vec<crate::service_offerings::ServicePlan> =
            store::find(&mut c, &Query::new().any_of("name", plans)).await?;
        q = q.any_of(
            "service_plan_guid",
            found.into_iter().map(|p| p.guid).collect(),
        );
    }
    let q = access.narrow::<ServiceInstance>(&mut c, q).await?;
    let (docs, total) =
        store::page::<ServiceInstance>(&mut c, &q, params.page, params.per_page).await?;
    let base = &api.inner.config.external_url;
    let resources = docs.iter().map(|d| d.render(base)).collect();
    let body = params.envelope(&api, "/v3/service_instances", total, resources);
    let mut body = crate::http::with_included(&api, &mut c, raw.as_deref(), body).await?;
    let extra =
        crate::services_managed::instance_fields(&mut c, raw.as_deref(), &docs, base).await?;
    add_included(&mut body, extra);
    Ok(ok(body))
}

/// Merges resources into a body's `included` block.
fn add_included(body: &mut Value, extra: Map<String, Value>) {
    if extra.is_empty() {
        return;
    }
    if !body["included"].is_object() {
        body["included"] = json!({});
    }
    if let Value::Object(included) = &mut body["included"] {
        included.extend(extra);
    }
}

async fn show_instance(
    State(api): State<Api>,
    Path(guid): Path<String>,
    RawQuery(raw): RawQuery,
) -> ApiResult<Response> {
    let mut c = api.inner.pool.acquire().await?;
    let instance: ServiceInstance = store::fetch(&mut c, &guid).await?;
    let base = &api.inner.config.external_url;
    let mut body = instance.render(base);
    let extra = crate::services_managed::instance_fields(
        &mut c,
        raw.as_deref(),
        std::slice::from_ref(&instance),
        base,
    )
    .await?;
    add_included(&mut body, extra);
    Ok(ok(body))
}

#[derive(Debug, Deserialize)]
struct NewInstance {
    #[serde(rename = "type")]
    kind: Option<String>,
    name: Option<String>,
    relationships: Option<InstanceRelationships>,
    credentials: Option<Map<String, Value>>,
    syslog_drain_url: Option<String>,
    route_service_url: Option<String>,
    tags: Option<Vec<String>>,
    parameters: Option<Map<String, Value>>,
    metadata: Option<Value>,
}

#[derive(Debug, Deserialize)]
struct InstanceRelationships {
    space: Option<crate::apps::ToOne>,
    service_plan: Option<crate::apps::ToOne>,
}

/// A drain or route service URL: absolute, with a scheme CF accepts.
fn check_url(field: &str, url: &str, schemes: &[&str]) -> ApiResult<()> {
    let scheme = url.split_once("://").map(|(s, _)| s).unwrap_or("");
    let rest = url.split_once("://").map(|(_, r)| r).unwrap_or("");
    if !schemes.contains(&scheme) || rest.is_empty() {
        return Err(ApiError::Unprocessable(format!(
            "{field} must be a URL with one of the schemes {}",
            schemes.join(", ")
        )));
    }
    Ok(())
}

const DRAIN_SCHEMES: &[&str] = &["syslog", "syslog-tls", "https"];

/// Whether another instance of the space already has the name.
pub(crate) async fn instance_name_taken(
    c: &mut SqliteConnection,
    space_guid: &str,
    name: &str,
    except: &str,
) -> ApiResult<bool> {
    let dup = Query::new().eq("space_guid", space_guid).eq("name", name);
    Ok(store::find_one::<ServiceInstance>(c, &dup)
        .await?
        .is_some_and(|i| i.guid != except))
}

async fn create_instance(
    State(api): State<Api>,
    Extension(p): Extension<Principal>,
    Extension(access): Extension<Access>,
    body: Bytes,
) -> ApiResult<Response> {
    let req: NewInstance = parse_json(&body)?;
    let managed = match req.kind.as_deref() {
        Some("user-provided") => false,
        Some("managed") => true,
        _ => {
            return Err(ApiError::Unprocessable(
                "Type must be one of 'managed', 'user-provided'".into(),
            ))
        }
    };
    let name = match req.name {
        Some(n) if !n.trim().is_empty() => n,
        _ => return Err(ApiError::Unprocessable("Name can't be blank".into())),
    };
    let (space_rel, plan_rel) = match req.relationships {
        Some(r) => (r.space, r.service_plan),
        None => (None, None),
    };
    let space_guid = space_rel
        .map(|s| s.data.guid)
        .ok_or_else(|| ApiError::Unprocessable("Relationships Space can't be blank".into()))?;
    if managed {
        let plan_guid = plan_rel.map(|p| p.data.guid).ok_or_else(|| {
            ApiError::Unprocessable("Relationships Service plan can't be blank".into())
        })?;
        return crate::services_managed::create_instance(
            &api,
            &p,
            &access,
            crate::services_managed::NewManaged {
                name,
                space_guid,
                plan_guid,
                parameters: req.parameters,
                tags: req.tags.unwrap_or_default(),
                metadata: Metadata::from_request(req.metadata.as_ref()),
            },
        )
        .await;
    }
    if let Some(url) = &req.syslog_drain_url {
        check_url("Syslog drain url", url, DRAIN_SCHEMES)?;
    }
    if let Some(url) = &req.route_service_url {
        check_url("Route service url", url, &["https"])?;
    }
    let mut tx = store::begin(&api.inner.pool).await?;
    let space: Space = store::get(&mut tx, &space_guid).await?.ok_or_else(|| {
        ApiError::Unprocessable(
            "Invalid space. Ensure that the space exists and you have access to it.".into(),
        )
    })?;
    if instance_name_taken(&mut tx, &space.guid, &name, "").await? {
        return Err(ApiError::Unprocessable(format!(
            "The service instance name is taken: {name}."
        )));
    }
    let at = now();
    let instance = ServiceInstance {
        guid: new_guid(),
        name,
        space_guid: space.guid.clone(),
        kind: "user-provided".into(),
        credentials: req.credentials.unwrap_or_default(),
        syslog_drain_url: req.syslog_drain_url,
        route_service_url: req.route_service_url,
        tags: req.tags.unwrap_or_default(),
        last_operation: "create".into(),
        last_operation_state: succeeded(),
        last_operation_description: None,
        service_plan_guid: None,
        dashboard_url: None,
        maintenance_info: None,
        pending: None,
        created_at: at.clone(),
        updated_at: at,
        metadata: Metadata::from_request(req.metadata.as_ref()),
    };
    store::insert(&mut tx, &instance).await?;
    audit_instance(
        &mut tx,
        "audit.user_provided_service_instance.create",
        &p,
        &instance,
        &space,
    )
    .await?;
    tx.commit().await?;
    Ok(created(instance.render(&api.inner.config.external_url)))
}

/// Records an instance audit event (`user_provided_service_instance` or
/// `service_instance` target) in the caller's transaction.
pub(crate) async fn audit_instance(
    c: &mut SqliteConnection,
    kind: &str,
    p: &Principal,
    instance: &ServiceInstance,
    space: &Space,
) -> ApiResult<()> {
    let target_kind = if instance.is_managed() {
        "service_instance"
    } else {
        "user_provided_service_instance"
    };
    crate::orgs::audit(
        c,
        kind,
        crate::orgs::user_actor(p),
        crate::model::EventParty {
            guid: instance.guid.clone(),
            kind: target_kind.into(),
            name: instance.name.clone(),
        },
        json!({}),
        Some(&space.guid),
        Some(&space.org_guid),
    )
    .await
}

#[derive(Debug, Deserialize)]
struct InstanceUpdate {
    name: Option<String>,
    credentials: Option<Map<String, Value>>,
    syslog_drain_url: Option<Option<String>>,
    route_service_url: Option<Option<String>>,
    tags: Option<Vec<String>>,
    parameters: Option<Map<String, Value>>,
    relationships: Option<PlanRelationship>,
    maintenance_info: Option<Value>,
    metadata: Option<Value>,
}

#[derive(Debug, Deserialize)]
struct PlanRelationship {
    service_plan: Option<crate::apps::ToOne>,
}

async fn update_instance(
    State(api): State<Api>,
    Extension(p): Extension<Principal>,
    Extension(access): Extension<Access>,
    Path(guid): Path<String>,
    body: Bytes,
) -> ApiResult<Response> {
    let req: InstanceUpdate = parse_json(&body)?;
    let mut tx = store::begin(&api.inner.pool).await?;
    let mut instance: ServiceInstance = store::fetch(&mut tx, &guid).await?;
    if instance.is_managed() {
        drop(tx);
        return crate::services_managed::update_instance(
            &api,
            &p,
            &access,
            &guid,
            crate::services_managed::ManagedUpdate {
                name: req.name,
                tags: req.tags,
                parameters: req.parameters,
                plan_guid: req
                    .relationships
                    .and_then(|r| r.service_plan)
                    .map(|p| p.data.guid),
                maintenance_info: req.maintenance_info,
                metadata: req.metadata,
            },
        )
        .await;
    }
    if let Some(name) = req.name {
        if name.trim().is_empty() {
            return Err(ApiError::Unprocessable("Name can't be blank".into()));
        }
        instance.name = name;
    }
    if let Some(credentials) = req.credentials {
        instance.credentials = credentials;
    }
    if let Some(url) = req.syslog_drain_url {
        if let Some(u) = &url {
            check_url("Syslog drain url", u, DRAIN_SCHEMES)?;
        }
        instance.syslog_drain_url = url.filter(|u| !u.is_empty());
    }
    if let Some(url) = req.route_service_url {
        if let Some(u) = &url {
            check_url("Route service url", u, &["https"])?;
        }
        instance.route_service_url = url.filter(|u| !u.is_empty());
    }
    if let Some(tags) = req.tags {
        instance.tags = tags;
    }
    if let Some(m) = &req.metadata {
        instance.metadata.merge(m);
    }
    instance.last_operation = "update".into();
    instance.updated_at = now();
    store::put(&mut tx, &instance).await?;
    let space: Space = store::fetch(&mut tx, &instance.space_guid).await?;
    audit_instance(
        &mut tx,
        "audit.user_provided_service_instance.update",
        &p,
        &instance,
        &space,
    )
    .await?;
    tx.commit().await?;
    Ok(ok(instance.render(&api.inner.config.external_url)))
}

/// CF's refusal to delete an instance that still has bindings.
pub(crate) async fn refuse_if_bound(
    c: &mut SqliteConnection,
    instance: &ServiceInstance,
) -> ApiResult<()> {
    let bound = Query::new().eq("service_instance_guid", &instance.guid);
    if store::find_one::<Binding>(c, &bound).await?.is_some() {
        return Err(ApiError::Unprocessable(format!(
            "Cannot delete service instance {}: it has bindings or service keys; unbind them first (`ingot unbind-service APP {}`, `ingot delete-service-key {} KEY`)",
            instance.name, instance.name, instance.name
        )));
    }
    Ok(())
}

async fn delete_instance(
    State(api): State<Api>,
    Extension(p): Extension<Principal>,
    Extension(access): Extension<Access>,
    Path(guid): Path<String>,
    RawQuery(raw): RawQuery,
) -> ApiResult<Response> {
    let mut tx = store::begin(&api.inner.pool).await?;
    let instance: ServiceInstance = store::fetch(&mut tx, &guid).await?;
    let purge = serde_urlencoded::from_str::<Vec<(String, String)>>(raw.as_deref().unwrap_or(""))
        .unwrap_or_default()
        .iter()
        .any(|(k, v)| k == "purge" && v == "true");
    if purge {
        // `cf purge-service-instance`: forget the instance and its
        // bindings without asking the broker (admins only, as in CF).
        if !access.is_admin() {
            return Err(ApiError::NotAuthorized);
        }
        let bindings: Vec<Binding> = store::find(
            &mut tx,
            &Query::new().eq("service_instance_guid", &instance.guid),
        )
        .await?;
        for b in bindings {
            store::delete::<Binding>(&mut tx, &b.guid).await?;
        }
        store::delete::<ServiceInstance>(&mut tx, &guid).await?;
        let space: Space = store::fetch(&mut tx, &instance.space_guid).await?;
        audit_instance(
            &mut tx,
            "audit.service_instance.purge",
            &p,
            &instance,
            &space,
        )
        .await?;
        tx.commit().await?;
        return Ok(no_content());
    }
    if instance.is_managed() {
        drop(tx);
        return crate::services_managed::delete_instance(&api, &p, &guid).await;
    }
    refuse_if_bound(&mut tx, &instance).await?;
    store::delete::<ServiceInstance>(&mut tx, &guid).await?;
    let space: Space = store::fetch(&mut tx, &instance.space_guid).await?;
    audit_instance(
        &mut tx,
        "audit.user_provided_service_instance.delete",
        &p,
        &instance,
        &space,
    )
    .await?;
    tx.commit().await?;
    Ok(no_content())
}

async fn instance_credentials(
    State(api): State<Api>,
    Path(guid): Path<String>,
) -> ApiResult<Response> {
    let instance: ServiceInstance = require(&api, &guid).await?;
    if instance.is_managed() {
        // Only user-provided instances have credentials of their own.
        return Err(ApiError::not_found(ServiceInstance::KIND));
    }
    Ok(ok(Value::Object(instance.credentials)))
}

const BINDING_FILTERS: &[(&str, &str)] = &[
    ("guids", "guid"),
    ("names", "name"),
    ("app_guids", "app_guid"),
    ("service_instance_guids", "service_instance_guid"),
    ("type", "type"),
];

async fn list_bindings(
    State(api): State<Api>,
    Extension(access): Extension<Access>,
    RawQuery(raw): RawQuery,
) -> ApiResult<Response> {
    let mut names = ListParams::names(BINDING_FILTERS);
    names.extend(["service_instance_names", "app_names"]);
    let params = ListParams::parse(raw.as_deref(), &names, &["name"])?;
    let mut q = params.narrow(Query::new(), BINDING_FILTERS);
    let mut c = api.inner.pool.acquire().await?;
    if let Some(names) = params.filter("service_instance_names") {
        let instances: Vec<ServiceInstance> =
            store::find(&mut c, &Query::new().any_of("name", names)).await?;
        q = q.any_of(
            "service_instance_guid",
            instances.into_iter().map(|i| i.guid).collect(),
        );
    }
    if let Some(names) = params.filter("app_names") {
        let apps: Vec<App> = store::find(&mut c, &Query::new().any_of("name", names)).await?;
        q = q.any_of("app_guid", apps.into_iter().map(|a| a.guid).collect());
    }
    page_response::<Binding>(
        &api,
        &access,
        &mut c,
        raw.as_deref(),
        &params,
        "/v3/service_credential_bindings",
        q,
    )
    .await
}

#[derive(Debug, Deserialize)]
struct NewBinding {
    #[serde(rename = "type")]
    kind: Option<String>,
    name: Option<String>,
    relationships: Option<BindingRelationships>,
    parameters: Option<Map<String, Value>>,
    metadata: Option<Value>,
}

#[derive(Debug, Deserialize)]
struct BindingRelationships {
    service_instance: Option<crate::apps::ToOne>,
    app: Option<crate::apps::ToOne>,
}

async fn create_binding(
    State(api): State<Api>,
    Extension(p): Extension<Principal>,
    Extension(access): Extension<Access>,
    body: Bytes,
) -> ApiResult<Response> {
    let req: NewBinding = parse_json(&body)?;
    let kind = match req.kind.as_deref() {
        Some(k @ ("app" | "key")) => k.to_string(),
        _ => {
            return Err(ApiError::Unprocessable(
                "Type must be one of 'app', 'key'".into(),
            ))
        }
    };
    let rels = req
        .relationships
        .ok_or_else(|| ApiError::Unprocessable("Relationships can't be blank".into()))?;
    let instance_guid = rels.service_instance.map(|s| s.data.guid).ok_or_else(|| {
        ApiError::Unprocessable("Relationships Service instance can't be blank".into())
    })?;
    let app_guid = rels.app.map(|a| a.data.guid);
    let mut tx = store::begin(&api.inner.pool).await?;
    let not_found = || {
        ApiError::Unprocessable(format!(
            "The service instance could not be found: {instance_guid}"
        ))
    };
    let instance: ServiceInstance = store::get(&mut tx, &instance_guid)
        .await?
        .ok_or_else(not_found)?;
    if !access.can_read_space(&instance.space_guid) {
        return Err(not_found());
    }
    let app = if kind == "app" {
        let app_guid = app_guid
            .ok_or_else(|| ApiError::Unprocessable("Relationships App can't be blank".into()))?;
        let (app, _, _) = app_context(&mut tx, &app_guid).await.map_err(|_| {
            ApiError::Unprocessable(format!("The app could not be found: {app_guid}"))
        })?;
        if app.space_guid != instance.space_guid {
            return Err(ApiError::Unprocessable(
                "The service instance and the app are in different spaces.".into(),
            ));
        }
        let dup = Query::new()
            .eq("app_guid", &app.guid)
            .eq("service_instance_guid", &instance.guid);
        if store::find_one::<Binding>(&mut tx, &dup).await?.is_some() {
            return Err(ApiError::Unprocessable(format!(
                "The app is already bound to the service instance {}.",
                instance.name
            )));
        }
        Some(app)
    } else {
        // A key has no app for authz to check the space by.
        if !access.can_write_space(&instance.space_guid) {
            return Err(ApiError::NotAuthorized);
        }
        if !instance.is_managed() {
            return Err(ApiError::Unprocessable(
                "Service credential bindings of type 'key' are not supported for user-provided service instances."
                    .into(),
            ));
        }
        let name = req
            .name
            .as_deref()
            .filter(|n| !n.trim().is_empty())
            .ok_or_else(|| ApiError::Unprocessable("Name can't be blank".into()))?;
        let dup = Query::new()
            .eq("service_instance_guid", &instance.guid)
            .eq("name", name);
        if store::find_one::<Binding>(&mut tx, &dup).await?.is_some() {
            return Err(ApiError::Unprocessable(format!(
                "The binding name is invalid. Key binding names must be unique. The service instance already has a key binding with name '{name}'."
            )));
        }
        crate::quotas::check_service_key(&mut tx, &instance.space_guid).await?;
        None
    };
    let at = now();
    let binding = Binding {
        guid: new_guid(),
        name: req.name,
        kind,
        app_guid: app.as_ref().map(|a| a.guid.clone()),
        service_instance_guid: instance.guid.clone(),
        space_guid: instance.space_guid.clone(),
        credentials: None,
        syslog_drain_url: None,
        last_operation: "create".into(),
        last_operation_state: succeeded(),
        last_operation_description: None,
        pending: None,
        created_at: at.clone(),
        updated_at: at,
        metadata: Metadata::from_request(req.metadata.as_ref()),
    };
    if instance.is_managed() {
        return crate::services_managed::create_binding(
            &api,
            tx,
            &p,
            &instance,
            binding,
            req.parameters,
        )
        .await;
    }
    store::insert(&mut tx, &binding).await?;
    if let Some(app) = &app {
        crate::apps::audit_app(
            &mut tx,
            "audit.service_binding.create",
            &p,
            app,
            json!({"request": {"service_instance_guid": instance.guid}}),
        )
        .await?;
    }
    tx.commit().await?;
    Ok(created(binding.render(&api.inner.config.external_url)))
}

async fn delete_binding(
    State(api): State<Api>,
    Extension(p): Extension<Principal>,
    Path(guid): Path<String>,
) -> ApiResult<Response> {
    let mut tx = store::begin(&api.inner.pool).await?;
    let binding: Binding = store::fetch(&mut tx, &guid).await?;
    let managed = store::get::<ServiceInstance>(&mut tx, &binding.service_instance_guid)
        .await?
        .is_some_and(|i| i.is_managed());
    if managed {
        drop(tx);
        return crate::services_managed::delete_binding(&api, &p, &guid).await;
    }
    store::delete::<Binding>(&mut tx, &guid).await?;
    if let Some(app_guid) = &binding.app_guid {
        if let Some(app) = store::get::<App>(&mut tx, app_guid).await? {
            crate::apps::audit_app(
                &mut tx,
                "audit.service_binding.delete",
                &p,
                &app,
                json!({"request": {"service_instance_guid": binding.service_instance_guid}}),
            )
            .await?;
        }
    }
    tx.commit().await?;
    Ok(no_content())
}

async fn binding_details(State(api): State<Api>, Path(guid): Path<String>) -> ApiResult<Response> {
    let binding: Binding = require(&api, &guid).await?;
    let instance: ServiceInstance = require(&api, &binding.service_instance_guid).await?;
    if instance.is_managed() {
        if binding.last_operation_state != "succeeded" {
            return Err(ApiError::not_found("Service credential binding details"));
        }
        return Ok(ok(json!({
            "credentials": binding.credentials.unwrap_or_default(),
            "syslog_drain_url": binding.syslog_drain_url,
            "volume_mounts": [],
        })));
    }
    Ok(ok(json!({
        "credentials": instance.credentials,
        "syslog_drain_url": instance.syslog_drain_url,
        "volume_mounts": [],
    })))
}

/// The app's `VCAP_SERVICES`: its bound instances grouped by offering
/// label, as CF lays them out (`user-provided` for user-provided ones; a
/// managed binding appears once its create has succeeded).
pub(crate) async fn vcap_services(c: &mut SqliteConnection, app_guid: &str) -> ApiResult<Value> {
    let bindings: Vec<Binding> = store::find(c, &Query::new().eq("app_guid", app_guid)).await?;
    let mut by_label: Map<String, Value> = Map::new();
    for binding in bindings {
        let Some(instance) =
            store::get::<ServiceInstance>(c, &binding.service_instance_guid).await?
        else {
            continue;
        };
        let (label, entry) = if instance.is_managed() {
            // A binding whose create has not succeeded gives the app nothing
            // (one being deleted is still bound until the broker is done).
            if binding.last_operation == "create" && binding.last_operation_state != "succeeded" {
                continue;
            }
            let Some((offering, plan)) =
                crate::services_managed::offering_and_plan(c, &instance).await?
            else {
                continue;
            };
            let entry = json!({
                "label": offering.name,
                "provider": null,
                "plan": plan.name,
                "name": instance.name,
                "tags": offering.tags.iter().chain(instance.tags.iter()).cloned().collect::<Vec<_>>(),
                "instance_guid": instance.guid,
                "instance_name": instance.name,
                "binding_guid": binding.guid,
                "binding_name": binding.name,
                "credentials": binding.credentials.clone().unwrap_or_default(),
                "syslog_drain_url": binding.syslog_drain_url,
                "volume_mounts": [],
            });
            (offering.name, entry)
        } else {
            let entry = json!({
                "label": "user-provided",
                "name": instance.name,
                "tags": instance.tags,
                "instance_guid": instance.guid,
                "instance_name": instance.name,
                "binding_guid": binding.guid,
                "binding_name": binding.name,
                "credentials": instance.credentials,
                "syslog_drain_url": instance.syslog_drain_url,
                "volume_mounts": [],
            });
            ("user-provided".to_string(), entry)
        };
        if let Value::Array(list) = by_label
            .entry(label)
            .or_insert_with(|| Value::Array(Vec::new()))
        {
            list.push(entry);
        }
    }
    Ok(Value::Object(by_label))
}

/// Every app with a bound syslog drain, with its drains and the names its
/// log lines carry.
pub(crate) async fn syslog_drains(api: &Api) -> ApiResult<Vec<crate::AppDrains>> {
    let mut c = api.inner.pool.acquire().await?;
    let bindings: Vec<Binding> = store::find(&mut c, &Query::new()).await?;
    let mut by_app: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    for binding in bindings {
        let Some(app_guid) = binding.app_guid.clone() else {
            continue;
        };
        if let Some(url) = &binding.syslog_drain_url {
            by_app
                .entry(app_guid.clone())
                .or_default()
                .push(url.clone());
        }
        if let Some(instance) =
            store::get::<ServiceInstance>(&mut c, &binding.service_instance_guid).await?
        {
            if let Some(url) = instance.syslog_drain_url {
                by_app.entry(app_guid).or_default().push(url);
            }
        }
    }
    let mut out = Vec::new();
    for (app_guid, mut urls) in by_app {
        let Ok((app, space, org)) = app_context(&mut c, &app_guid).await else {
            continue;
        };
        urls.sort();
        urls.dedup();
        out.push(crate::AppDrains {
            app_guid,
            app_name: app.name,
            space_guid: space.guid,
            space_name: space.name,
            org_guid: org.guid,
            org_name: org.name,
            urls,
        });
    }
    Ok(out)
}
