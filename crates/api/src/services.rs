//! Service instances and their bindings to apps. User-provided instances
//! (`cf create-user-provided-service`) carry credentials, a syslog drain URL
//! and a route service URL given by the user; a binding puts the
//! credentials into the app's `VCAP_SERVICES`, and a drain URL makes the
//! platform forward the app's logs there. Instances from brokers come with
//! the broker client (issue 7).

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
            get(show::<ServiceInstance>)
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
    pub last_operation: String,
    pub created_at: String,
    pub updated_at: String,
    #[serde(default)]
    pub metadata: Metadata,
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
        json!({
            "guid": g, "created_at": self.created_at, "updated_at": self.updated_at,
            "name": self.name, "type": self.kind, "tags": self.tags,
            "syslog_drain_url": self.syslog_drain_url,
            "route_service_url": self.route_service_url,
            "last_operation": {
                "type": self.last_operation, "state": "succeeded",
                "description": "Operation succeeded",
                "created_at": self.created_at, "updated_at": self.updated_at,
            },
            "relationships": {"space": rel(Some(&self.space_guid))},
            "metadata": self.metadata.json(),
            "links": {
                "self": link(base, &format!("/v3/service_instances/{g}")),
                "space": link(base, &format!("/v3/spaces/{}", self.space_guid)),
                "credentials": link(base, &format!("/v3/service_instances/{g}/credentials")),
                "service_credential_bindings": link(base, &format!("/v3/service_credential_bindings?service_instance_guids={g}")),
                "service_route_bindings": link(base, &format!("/v3/service_route_bindings?service_instance_guids={g}")),
            }
        })
    }
}

/// A binding of a service instance to an app.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Binding {
    pub guid: String,
    pub name: Option<String>,
    pub app_guid: String,
    pub service_instance_guid: String,
    pub created_at: String,
    pub updated_at: String,
    #[serde(default)]
    pub metadata: Metadata,
}

impl Doc for Binding {
    const TABLE: &'static str = "cc_service_bindings";
    const KIND: &'static str = "Service credential binding";
    const SCOPE: Scope = Scope::App("app_guid");
    fn guid(&self) -> &str {
        &self.guid
    }
}

impl Render for Binding {
    fn render(&self, base: &str) -> Value {
        let g = &self.guid;
        json!({
            "guid": g, "created_at": self.created_at, "updated_at": self.updated_at,
            "name": self.name, "type": "app",
            "last_operation": {
                "type": "create", "state": "succeeded", "description": null,
                "created_at": self.created_at, "updated_at": self.updated_at,
            },
            "relationships": {
                "app": rel(Some(&self.app_guid)),
                "service_instance": rel(Some(&self.service_instance_guid)),
            },
            "metadata": self.metadata.json(),
            "links": {
                "self": link(base, &format!("/v3/service_credential_bindings/{g}")),
                "details": link(base, &format!("/v3/service_credential_bindings/{g}/details")),
                "app": link(base, &format!("/v3/apps/{}", self.app_guid)),
                "service_instance": link(base, &format!("/v3/service_instances/{}", self.service_instance_guid)),
            }
        })
    }
}

const INSTANCE_FILTERS: &[(&str, &str)] = &[
    ("names", "name"),
    ("guids", "guid"),
    ("space_guids", "space_guid"),
    ("type", "type"),
];

async fn list_instances(
    State(api): State<Api>,
    Extension(access): Extension<Access>,
    RawQuery(raw): RawQuery,
) -> ApiResult<Response> {
    let mut names = ListParams::names(INSTANCE_FILTERS);
    names.push("organization_guids");
    let params = ListParams::parse(raw.as_deref(), &names, &["name"])?;
    let mut q = params.narrow(Query::new(), INSTANCE_FILTERS);
    let mut c = api.inner.pool.acquire().await?;
    if let Some(orgs) = params.filter("organization_guids") {
        q = q.any_of("space_guid", crate::apps::spaces_of(&mut c, orgs).await?);
    }
    page_response::<ServiceInstance>(
        &api,
        &access,
        &mut c,
        raw.as_deref(),
        &params,
        "/v3/service_instances",
        q,
    )
    .await
}

#[derive(Debug, Deserialize)]
struct NewInstance {
    #[serde(rename = "type")]
    kind: Option<String>,
    name: Option<String>,
    relationships: Option<SpaceRelationship>,
    credentials: Option<Map<String, Value>>,
    syslog_drain_url: Option<String>,
    route_service_url: Option<String>,
    tags: Option<Vec<String>>,
    metadata: Option<Value>,
}

#[derive(Debug, Deserialize)]
struct SpaceRelationship {
    space: Option<crate::apps::ToOne>,
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

async fn create_instance(
    State(api): State<Api>,
    Extension(p): Extension<Principal>,
    body: Bytes,
) -> ApiResult<Response> {
    let req: NewInstance = parse_json(&body)?;
    match req.kind.as_deref() {
        Some("user-provided") => {}
        Some("managed") => {
            return Err(ApiError::Unprocessable(
                "Managed service instances need a service broker, which Ingot cannot use yet; create a user-provided service instance (`ingot create-user-provided-service`)".into(),
            ))
        }
        _ => {
            return Err(ApiError::Unprocessable(
                "Type must be one of 'managed', 'user-provided'".into(),
            ))
        }
    }
    let name = match req.name {
        Some(n) if !n.trim().is_empty() => n,
        _ => return Err(ApiError::Unprocessable("Name can't be blank".into())),
    };
    if let Some(url) = &req.syslog_drain_url {
        check_url("Syslog drain url", url, DRAIN_SCHEMES)?;
    }
    if let Some(url) = &req.route_service_url {
        check_url("Route service url", url, &["https"])?;
    }
    let space_guid = req
        .relationships
        .and_then(|r| r.space)
        .map(|s| s.data.guid)
        .ok_or_else(|| ApiError::Unprocessable("Relationships Space can't be blank".into()))?;
    let mut tx = store::begin(&api.inner.pool).await?;
    let space: Space = store::get(&mut tx, &space_guid).await?.ok_or_else(|| {
        ApiError::Unprocessable(
            "Invalid space. Ensure that the space exists and you have access to it.".into(),
        )
    })?;
    let dup = Query::new().eq("space_guid", &space.guid).eq("name", &name);
    if store::find_one::<ServiceInstance>(&mut tx, &dup)
        .await?
        .is_some()
    {
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

async fn audit_instance(
    c: &mut SqliteConnection,
    kind: &str,
    p: &Principal,
    instance: &ServiceInstance,
    space: &Space,
) -> ApiResult<()> {
    crate::orgs::audit(
        c,
        kind,
        crate::orgs::user_actor(p),
        crate::model::EventParty {
            guid: instance.guid.clone(),
            kind: "user_provided_service_instance".into(),
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
    metadata: Option<Value>,
}

async fn update_instance(
    State(api): State<Api>,
    Extension(p): Extension<Principal>,
    Path(guid): Path<String>,
    body: Bytes,
) -> ApiResult<Response> {
    let req: InstanceUpdate = parse_json(&body)?;
    let mut tx = store::begin(&api.inner.pool).await?;
    let mut instance: ServiceInstance = store::fetch(&mut tx, &guid).await?;
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

async fn delete_instance(
    State(api): State<Api>,
    Extension(p): Extension<Principal>,
    Path(guid): Path<String>,
) -> ApiResult<Response> {
    let mut tx = store::begin(&api.inner.pool).await?;
    let instance: ServiceInstance = store::fetch(&mut tx, &guid).await?;
    let bound = Query::new().eq("service_instance_guid", &guid);
    if store::find_one::<Binding>(&mut tx, &bound).await?.is_some() {
        return Err(ApiError::Unprocessable(format!(
            "Cannot delete service instance {}: it is bound to apps; unbind it first (`ingot unbind-service APP {}`)",
            instance.name, instance.name
        )));
    }
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
    Ok(ok(Value::Object(instance.credentials)))
}

const BINDING_FILTERS: &[(&str, &str)] = &[
    ("guids", "guid"),
    ("names", "name"),
    ("app_guids", "app_guid"),
    ("service_instance_guids", "service_instance_guid"),
];

async fn list_bindings(
    State(api): State<Api>,
    Extension(access): Extension<Access>,
    RawQuery(raw): RawQuery,
) -> ApiResult<Response> {
    let mut names = ListParams::names(BINDING_FILTERS);
    names.extend(["type", "service_instance_names", "app_names"]);
    let params = ListParams::parse(raw.as_deref(), &names, &["name"])?;
    let mut q = params.narrow(Query::new(), BINDING_FILTERS);
    if let Some(types) = params.filter("type") {
        if !types.iter().any(|t| t == "app") {
            q = q.any_of("guid", Vec::new());
        }
    }
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
}

#[derive(Debug, Deserialize)]
struct BindingRelationships {
    service_instance: Option<crate::apps::ToOne>,
    app: Option<crate::apps::ToOne>,
}

async fn create_binding(
    State(api): State<Api>,
    Extension(p): Extension<Principal>,
    body: Bytes,
) -> ApiResult<Response> {
    let req: NewBinding = parse_json(&body)?;
    if req.kind.as_deref() != Some("app") {
        return Err(ApiError::Unprocessable(
            "Type must be 'app' (service keys need a managed service instance)".into(),
        ));
    }
    let rels = req
        .relationships
        .ok_or_else(|| ApiError::Unprocessable("Relationships can't be blank".into()))?;
    let instance_guid = rels.service_instance.map(|s| s.data.guid).ok_or_else(|| {
        ApiError::Unprocessable("Relationships Service instance can't be blank".into())
    })?;
    let app_guid = rels
        .app
        .map(|a| a.data.guid)
        .ok_or_else(|| ApiError::Unprocessable("Relationships App can't be blank".into()))?;
    let mut tx = store::begin(&api.inner.pool).await?;
    let instance: ServiceInstance =
        store::get(&mut tx, &instance_guid).await?.ok_or_else(|| {
            ApiError::Unprocessable(format!(
                "The service instance could not be found: {instance_guid}"
            ))
        })?;
    let (app, _, _) = app_context(&mut tx, &app_guid)
        .await
        .map_err(|_| ApiError::Unprocessable(format!("The app could not be found: {app_guid}")))?;
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
    let at = now();
    let binding = Binding {
        guid: new_guid(),
        name: req.name,
        app_guid: app.guid.clone(),
        service_instance_guid: instance.guid.clone(),
        created_at: at.clone(),
        updated_at: at,
        metadata: Metadata::default(),
    };
    store::insert(&mut tx, &binding).await?;
    crate::apps::audit_app(
        &mut tx,
        "audit.service_binding.create",
        &p,
        &app,
        json!({"request": {"service_instance_guid": instance.guid}}),
    )
    .await?;
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
    store::delete::<Binding>(&mut tx, &guid).await?;
    if let Some(app) = store::get::<App>(&mut tx, &binding.app_guid).await? {
        crate::apps::audit_app(
            &mut tx,
            "audit.service_binding.delete",
            &p,
            &app,
            json!({"request": {"service_instance_guid": binding.service_instance_guid}}),
        )
        .await?;
    }
    tx.commit().await?;
    Ok(no_content())
}

async fn binding_details(State(api): State<Api>, Path(guid): Path<String>) -> ApiResult<Response> {
    let binding: Binding = require(&api, &guid).await?;
    let instance: ServiceInstance = require(&api, &binding.service_instance_guid).await?;
    Ok(ok(json!({
        "credentials": instance.credentials,
        "syslog_drain_url": instance.syslog_drain_url,
        "volume_mounts": [],
    })))
}

/// The app's `VCAP_SERVICES`: its bound instances grouped by offering
/// label, as CF lays them out (`user-provided` for user-provided ones).
pub(crate) async fn vcap_services(c: &mut SqliteConnection, app_guid: &str) -> ApiResult<Value> {
    let bindings: Vec<Binding> = store::find(c, &Query::new().eq("app_guid", app_guid)).await?;
    let mut by_label: Map<String, Value> = Map::new();
    for binding in bindings {
        let Some(instance) =
            store::get::<ServiceInstance>(c, &binding.service_instance_guid).await?
        else {
            continue;
        };
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
        if let Value::Array(list) = by_label
            .entry("user-provided".to_string())
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
        if let Some(instance) =
            store::get::<ServiceInstance>(&mut c, &binding.service_instance_guid).await?
        {
            if let Some(url) = instance.syslog_drain_url {
                by_app.entry(binding.app_guid).or_default().push(url);
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
