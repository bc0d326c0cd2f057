//! Service brokers registered with the platform: `/v3/service_brokers`.
//!
//! An admin registers a global broker; a space developer may register a
//! broker scoped to one of its spaces (its plans are visible only there).
//! Registering, updating and deleting answer a job: the job fetches the
//! broker's catalog (`GET /v2/catalog`) outside any transaction and then
//! upserts its offerings and plans in one. A catalog that cannot be had
//! fails the job with the broker client's error, and a broker being
//! registered is removed again. The broker's credentials are never shown.
//!
//! This file also holds what every broker call shares: the OSB client and
//! its polling limits ([`BrokerSettings`], set through [`Api`]), and the
//! helpers that finish a job.

use std::time::Duration;

use axum::extract::{Path, RawQuery, State};
use axum::response::Response;
use axum::routing::get;
use axum::{Extension, Router};
use bytes::Bytes;
use ingot_brokers::osb::{BrokerClient, BrokerEndpoint, BrokerError, Catalog, ClientConfig};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sqlx::SqliteConnection;

use crate::authz::{Access, Scope};
use crate::error::{ApiError, ApiResult};
use crate::http::{accepted_job, ok, page_response, parse_json, ListParams};
use crate::model::{link, new_guid, now, rel, EventParty, Job, Metadata, Render, Space};
use crate::service_offerings::{ServiceOffering, ServicePlan, ServicePlanVisibility};
use crate::services::ServiceInstance;
use crate::store::{self, Doc, Query};
use crate::{Api, Principal};

pub(crate) fn routes() -> Router<Api> {
    Router::new()
        .route("/v3/service_brokers", get(list_brokers).post(create_broker))
        .route(
            "/v3/service_brokers/{guid}",
            get(show_broker).patch(update_broker).delete(delete_broker),
        )
}

/// How the platform polls a broker's asynchronous operations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BrokerPolling {
    /// Time between two `last_operation` calls when the broker sends no
    /// `Retry-After`.
    pub interval: Duration,
    /// The longest wait between two calls, whatever `Retry-After` says.
    pub max_interval: Duration,
    /// How long an operation may take when its plan sets no
    /// `maximum_polling_duration` (and the cap on the plan's own).
    pub max_duration: Duration,
}

impl Default for BrokerPolling {
    /// Every 5 s, at most a minute apart, for at most a week (CF's default
    /// `broker_client_max_async_poll_duration_minutes`).
    fn default() -> Self {
        BrokerPolling {
            interval: Duration::from_secs(5),
            max_interval: Duration::from_secs(60),
            max_duration: Duration::from_secs(7 * 24 * 3600),
        }
    }
}

/// The OSB client the API uses, built on first use from its limits.
pub(crate) struct BrokerSettings {
    client: std::sync::Mutex<Option<BrokerClient>>,
    config: std::sync::Mutex<ClientConfig>,
    polling: std::sync::Mutex<BrokerPolling>,
}

impl Default for BrokerSettings {
    fn default() -> Self {
        BrokerSettings {
            client: std::sync::Mutex::new(None),
            config: std::sync::Mutex::new(ClientConfig::default()),
            polling: std::sync::Mutex::new(BrokerPolling::default()),
        }
    }
}

impl Api {
    /// Sets how asynchronous broker operations are polled (tests shorten it).
    pub fn set_broker_polling(&self, polling: BrokerPolling) {
        *self
            .inner
            .brokers
            .polling
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = polling;
    }

    /// Sets the broker client's timeout and response size limit.
    pub fn set_broker_client_config(&self, config: ClientConfig) {
        let settings = &self.inner.brokers;
        *settings.config.lock().unwrap_or_else(|p| p.into_inner()) = config;
        *settings.client.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }

    pub(crate) fn broker_polling(&self) -> BrokerPolling {
        *self
            .inner
            .brokers
            .polling
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// The OSB client (cheap to clone; every call carries its timeout).
    pub(crate) fn broker_client(&self) -> Result<BrokerClient, BrokerError> {
        let settings = &self.inner.brokers;
        let mut client = settings.client.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = client.as_ref() {
            return Ok(c.clone());
        }
        let config = settings
            .config
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let built = BrokerClient::new(config)?;
        *client = Some(built.clone());
        Ok(built)
    }
}

/// A broker change whose catalog fetch is still running.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct BrokerPending {
    /// `create` or `update`.
    pub kind: String,
    pub job_guid: String,
    /// The values an update asks for; applied once the catalog is read.
    pub name: Option<String>,
    pub url: Option<String>,
    pub username: Option<String>,
    pub password: Option<String>,
}

/// A registered broker.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct ServiceBroker {
    pub guid: String,
    pub name: String,
    pub url: String,
    pub username: String,
    pub password: String,
    /// Set for a space-scoped broker.
    pub space_guid: Option<String>,
    #[serde(default)]
    pub pending: Option<BrokerPending>,
    pub created_at: String,
    pub updated_at: String,
    #[serde(default)]
    pub metadata: Metadata,
}

impl Doc for ServiceBroker {
    const TABLE: &'static str = "cc_service_brokers";
    const KIND: &'static str = "Service broker";
    // Global brokers have no space: only global readers list them.
    const SCOPE: Scope = Scope::Space("space_guid");
    fn guid(&self) -> &str {
        &self.guid
    }
}

impl Render for ServiceBroker {
    fn render(&self, base: &str) -> Value {
        let g = &self.guid;
        let mut links = json!({
            "self": link(base, &format!("/v3/service_brokers/{g}")),
            "service_offerings": link(base, &format!("/v3/service_offerings?service_broker_guids={g}")),
        });
        let relationships = match &self.space_guid {
            Some(space) => {
                links["space"] = link(base, &format!("/v3/spaces/{space}"));
                json!({"space": rel(Some(space))})
            }
            None => json!({}),
        };
        json!({
            "guid": g, "name": self.name, "url": self.url,
            "created_at": self.created_at, "updated_at": self.updated_at,
            "relationships": relationships,
            "metadata": self.metadata.json(),
            "links": links,
        })
    }
}

impl ServiceBroker {
    pub(crate) fn endpoint(&self) -> BrokerEndpoint {
        BrokerEndpoint {
            url: self.url.clone(),
            username: self.username.clone(),
            password: self.password.clone(),
        }
    }
}

/// Whether the user sees the broker: global readers see all, others only
/// the brokers of spaces they can read.
pub(crate) fn can_see_broker(access: &Access, broker: &ServiceBroker) -> bool {
    access.reads_everything()
        || broker
            .space_guid
            .as_deref()
            .is_some_and(|s| access.can_read_space(s))
}

/// A job's error entry for a failed broker operation, in CF's words.
pub(crate) fn unable_to_perform(operation: &str, why: &str) -> Value {
    json!({
        "code": 10009,
        "title": "CF-UnableToPerform",
        "detail": format!("{operation} could not be completed: {why}"),
    })
}

/// Marks a job `COMPLETE`, or `FAILED` with the error.
pub(crate) async fn finish_job(
    c: &mut SqliteConnection,
    job_guid: &str,
    error: Option<Value>,
) -> ApiResult<()> {
    if let Some(mut job) = store::get::<Job>(c, job_guid).await? {
        match error {
            None => job.state = "COMPLETE".into(),
            Some(e) => {
                job.state = "FAILED".into();
                job.errors = vec![e];
            }
        }
        job.updated_at = now();
        store::put(c, &job).await?;
    }
    Ok(())
}

/// Marks a job `POLLING`: the broker took the operation on and works on it
/// asynchronously (the cf CLI stops waiting there unless asked to wait).
pub(crate) async fn job_polling(c: &mut SqliteConnection, job_guid: &str) -> ApiResult<()> {
    if let Some(mut job) = store::get::<Job>(c, job_guid).await? {
        job.state = "POLLING".into();
        job.updated_at = now();
        store::put(c, &job).await?;
    }
    Ok(())
}

async fn audit_broker(
    c: &mut SqliteConnection,
    kind: &str,
    p: &Principal,
    broker: &ServiceBroker,
    request: Value,
) -> ApiResult<()> {
    let (space, org) = match &broker.space_guid {
        Some(s) => match store::get::<Space>(c, s).await? {
            Some(space) => (Some(space.guid), Some(space.org_guid)),
            None => (None, None),
        },
        None => (None, None),
    };
    crate::orgs::audit(
        c,
        kind,
        crate::orgs::user_actor(p),
        EventParty {
            guid: broker.guid.clone(),
            kind: "service_broker".into(),
            name: broker.name.clone(),
        },
        json!({"request": request}),
        space.as_deref(),
        org.as_deref(),
    )
    .await
}

const BROKER_FILTERS: &[(&str, &str)] = &[("names", "name"), ("space_guids", "space_guid")];

async fn list_brokers(
    State(api): State<Api>,
    Extension(access): Extension<Access>,
    RawQuery(raw): RawQuery,
) -> ApiResult<Response> {
    let params = ListParams::parse(
        raw.as_deref(),
        &ListParams::names(BROKER_FILTERS),
        &["name"],
    )?;
    let q = params.narrow(Query::new(), BROKER_FILTERS);
    let mut c = api.inner.pool.acquire().await?;
    page_response::<ServiceBroker>(
        &api,
        &access,
        &mut c,
        raw.as_deref(),
        &params,
        "/v3/service_brokers",
        q,
    )
    .await
}

/// The broker, or CF's 404 when it is missing or invisible to the user.
async fn visible_broker(
    c: &mut SqliteConnection,
    access: &Access,
    guid: &str,
) -> ApiResult<ServiceBroker> {
    match store::get::<ServiceBroker>(c, guid).await? {
        Some(b) if can_see_broker(access, &b) => Ok(b),
        _ => Err(ApiError::not_found(ServiceBroker::KIND)),
    }
}

async fn show_broker(
    State(api): State<Api>,
    Extension(access): Extension<Access>,
    Path(guid): Path<String>,
) -> ApiResult<Response> {
    let mut c = api.inner.pool.acquire().await?;
    let broker = visible_broker(&mut c, &access, &guid).await?;
    Ok(ok(broker.render(&api.inner.config.external_url)))
}

#[derive(Debug, Deserialize)]
struct Authentication {
    #[serde(rename = "type")]
    kind: Option<String>,
    credentials: Option<BasicCredentials>,
}

#[derive(Debug, Deserialize)]
struct BasicCredentials {
    username: Option<String>,
    password: Option<String>,
}

#[derive(Debug, Deserialize)]
struct SpaceRel {
    space: Option<crate::apps::ToOne>,
}

#[derive(Debug, Deserialize)]
struct NewBroker {
    name: Option<String>,
    url: Option<String>,
    authentication: Option<Authentication>,
    relationships: Option<SpaceRel>,
    metadata: Option<Value>,
}

fn check_broker_url(url: &str) -> ApiResult<()> {
    let ok = (url.starts_with("http://") || url.starts_with("https://"))
        && url
            .split_once("://")
            .is_some_and(|(_, rest)| !rest.is_empty());
    if ok {
        Ok(())
    } else {
        Err(ApiError::Unprocessable("Url must be a valid url".into()))
    }
}

fn basic_credentials(auth: Authentication) -> ApiResult<(String, String)> {
    if auth.kind.as_deref() != Some("basic") {
        return Err(ApiError::Unprocessable(
            "Authentication type must be one of 'basic'".into(),
        ));
    }
    let creds = auth.credentials.ok_or_else(|| {
        ApiError::Unprocessable("Authentication credentials can't be blank".into())
    })?;
    match (creds.username, creds.password) {
        (Some(u), Some(p)) if !u.is_empty() => Ok((u, p)),
        _ => Err(ApiError::Unprocessable(
            "Authentication credentials must have a username and a password".into(),
        )),
    }
}

async fn name_taken(c: &mut SqliteConnection, name: &str, except: &str) -> ApiResult<bool> {
    let other = store::find_one::<ServiceBroker>(c, &Query::new().eq("name", name)).await?;
    Ok(other.is_some_and(|b| b.guid != except))
}

async fn create_broker(
    State(api): State<Api>,
    Extension(p): Extension<Principal>,
    Extension(access): Extension<Access>,
    body: Bytes,
) -> ApiResult<Response> {
    let req: NewBroker = parse_json(&body)?;
    let name = match req.name {
        Some(n) if !n.trim().is_empty() => n,
        _ => return Err(ApiError::Unprocessable("Name can't be blank".into())),
    };
    let url = req
        .url
        .ok_or_else(|| ApiError::Unprocessable("Url can't be blank".into()))?;
    check_broker_url(&url)?;
    let (username, password) = basic_credentials(
        req.authentication
            .ok_or_else(|| ApiError::Unprocessable("Authentication can't be blank".into()))?,
    )?;
    let space_guid = req.relationships.and_then(|r| r.space).map(|s| s.data.guid);
    let mut tx = store::begin(&api.inner.pool).await?;
    match &space_guid {
        Some(space) => {
            let found = store::get::<Space>(&mut tx, space).await?;
            if found.is_none() || !access.can_read_space(space) {
                return Err(ApiError::Unprocessable(
                    "Invalid space. Ensure that the space exists and you have access to it.".into(),
                ));
            }
            if !access.can_write_space(space) {
                return Err(ApiError::NotAuthorized);
            }
        }
        None if !access.is_admin() => return Err(ApiError::NotAuthorized),
        None => {}
    }
    if name_taken(&mut tx, &name, "").await? {
        return Err(ApiError::Uniqueness(format!("Name must be unique: {name}")));
    }
    let at = now();
    let job = Job::new("service_broker.catalog.synchronize", None);
    let broker = ServiceBroker {
        guid: new_guid(),
        name,
        url,
        username,
        password,
        space_guid,
        pending: Some(BrokerPending {
            kind: "create".into(),
            job_guid: job.guid.clone(),
            name: None,
            url: None,
            username: None,
            password: None,
        }),
        created_at: at.clone(),
        updated_at: at,
        metadata: Metadata::from_request(req.metadata.as_ref()),
    };
    let mut job = job;
    job.resource = Some((
        "service_brokers".into(),
        format!("/v3/service_brokers/{}", broker.guid),
    ));
    store::insert(&mut tx, &broker).await?;
    store::insert(&mut tx, &job).await?;
    audit_broker(
        &mut tx,
        "audit.service_broker.create",
        &p,
        &broker,
        json!({"name": broker.name, "broker_url": broker.url,
               "authentication": {"credentials": {"username": broker.username, "password": "[PRIVATE DATA HIDDEN]"}}}),
    )
    .await?;
    tx.commit().await?;
    spawn_sync(api.clone(), broker.guid.clone());
    Ok(accepted_job(&api, &job.guid))
}

#[derive(Debug, Deserialize)]
struct BrokerUpdate {
    name: Option<String>,
    url: Option<String>,
    authentication: Option<Authentication>,
    metadata: Option<Value>,
}

async fn update_broker(
    State(api): State<Api>,
    Extension(p): Extension<Principal>,
    Extension(access): Extension<Access>,
    Path(guid): Path<String>,
    body: Bytes,
) -> ApiResult<Response> {
    let req: BrokerUpdate = parse_json(&body)?;
    let mut tx = store::begin(&api.inner.pool).await?;
    let mut broker = visible_broker(&mut tx, &access, &guid).await?;
    let allowed = access.is_admin()
        || broker
            .space_guid
            .as_deref()
            .is_some_and(|s| access.can_write_space(s));
    if !allowed {
        return Err(ApiError::NotAuthorized);
    }
    if broker.pending.is_some() {
        return Err(ApiError::Unprocessable(
            "Cannot update a broker when other operation is already in progress".into(),
        ));
    }
    if let Some(m) = &req.metadata {
        broker.metadata.merge(m);
    }
    broker.updated_at = now();
    if req.name.is_none() && req.url.is_none() && req.authentication.is_none() {
        // Metadata only: nothing to ask the broker.
        store::put(&mut tx, &broker).await?;
        tx.commit().await?;
        return Ok(ok(broker.render(&api.inner.config.external_url)));
    }
    if let Some(name) = &req.name {
        if name.trim().is_empty() {
            return Err(ApiError::Unprocessable("Name can't be blank".into()));
        }
        if name_taken(&mut tx, name, &broker.guid).await? {
            return Err(ApiError::Uniqueness(format!("Name must be unique: {name}")));
        }
    }
    if let Some(url) = &req.url {
        check_broker_url(url)?;
    }
    let creds = req.authentication.map(basic_credentials).transpose()?;
    let mut job = Job::new("service_broker.update", None);
    job.resource = Some((
        "service_brokers".into(),
        format!("/v3/service_brokers/{}", broker.guid),
    ));
    broker.pending = Some(BrokerPending {
        kind: "update".into(),
        job_guid: job.guid.clone(),
        name: req.name.clone(),
        url: req.url.clone(),
        username: creds.as_ref().map(|c| c.0.clone()),
        password: creds.map(|c| c.1),
    });
    store::put(&mut tx, &broker).await?;
    store::insert(&mut tx, &job).await?;
    audit_broker(
        &mut tx,
        "audit.service_broker.update",
        &p,
        &broker,
        json!({"name": req.name, "broker_url": req.url}),
    )
    .await?;
    tx.commit().await?;
    spawn_sync(api.clone(), broker.guid.clone());
    Ok(accepted_job(&api, &job.guid))
}

async fn delete_broker(
    State(api): State<Api>,
    Extension(p): Extension<Principal>,
    Extension(access): Extension<Access>,
    Path(guid): Path<String>,
) -> ApiResult<Response> {
    let mut tx = store::begin(&api.inner.pool).await?;
    let broker = visible_broker(&mut tx, &access, &guid).await?;
    let allowed = access.is_admin()
        || broker
            .space_guid
            .as_deref()
            .is_some_and(|s| access.can_write_space(s));
    if !allowed {
        return Err(ApiError::NotAuthorized);
    }
    let plans: Vec<ServicePlan> =
        store::find(&mut tx, &Query::new().eq("broker_guid", &broker.guid)).await?;
    let plan_guids: Vec<String> = plans.iter().map(|p| p.guid.clone()).collect();
    let instances: Vec<ServiceInstance> = store::find(
        &mut tx,
        &Query::new().any_of("service_plan_guid", plan_guids),
    )
    .await?;
    if !instances.is_empty() {
        return Err(ApiError::Unprocessable(format!(
            "Can not remove brokers that have associated service instances: {}",
            instances
                .iter()
                .map(|i| i.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    for plan in &plans {
        delete_plan(&mut tx, &plan.guid).await?;
    }
    let offerings: Vec<ServiceOffering> =
        store::find(&mut tx, &Query::new().eq("broker_guid", &broker.guid)).await?;
    for offering in offerings {
        store::delete::<ServiceOffering>(&mut tx, &offering.guid).await?;
    }
    store::delete::<ServiceBroker>(&mut tx, &broker.guid).await?;
    audit_broker(
        &mut tx,
        "audit.service_broker.delete",
        &p,
        &broker,
        json!({}),
    )
    .await?;
    // Nothing to ask the broker: the job is final before the 202.
    let job = Job::completed("service_broker.delete", None);
    store::insert(&mut tx, &job).await?;
    tx.commit().await?;
    Ok(accepted_job(&api, &job.guid))
}

async fn delete_plan(c: &mut SqliteConnection, plan_guid: &str) -> ApiResult<()> {
    let visibilities: Vec<ServicePlanVisibility> =
        store::find(c, &Query::new().eq("plan_guid", plan_guid)).await?;
    for v in visibilities {
        store::delete::<ServicePlanVisibility>(c, &v.guid).await?;
    }
    store::delete::<ServicePlan>(c, plan_guid).await
}

/// Runs a broker's pending catalog fetch in the background.
pub(crate) fn spawn_sync(api: Api, broker_guid: String) {
    tokio::spawn(async move {
        if let Err(e) = synchronize(&api, &broker_guid).await {
            tracing::error!(broker = %broker_guid, error = %e, "service broker synchronization failed");
        }
    });
}

/// Fetches the catalog (no transaction open meanwhile), then applies the
/// pending change and the catalog in one transaction.
async fn synchronize(api: &Api, broker_guid: &str) -> ApiResult<()> {
    let broker = {
        let mut c = api.inner.pool.acquire().await?;
        store::get::<ServiceBroker>(&mut c, broker_guid).await?
    };
    let Some(broker) = broker else { return Ok(()) };
    let Some(pending) = broker.pending.clone() else {
        return Ok(());
    };
    let mut endpoint = broker.endpoint();
    if let Some(u) = &pending.url {
        endpoint.url = u.clone();
    }
    if let (Some(u), Some(p)) = (&pending.username, &pending.password) {
        endpoint.username = u.clone();
        endpoint.password = p.clone();
    }
    let catalog = match api.broker_client() {
        Ok(client) => client.catalog(&endpoint).await,
        Err(e) => Err(e),
    };
    let mut tx = store::begin(&api.inner.pool).await?;
    let Some(mut broker) = store::get::<ServiceBroker>(&mut tx, broker_guid).await? else {
        return Ok(());
    };
    match catalog {
        Ok(catalog) => {
            broker.url = endpoint.url;
            broker.username = endpoint.username;
            broker.password = endpoint.password;
            if let Some(name) = pending.name {
                broker.name = name;
            }
            broker.pending = None;
            broker.updated_at = now();
            store::put(&mut tx, &broker).await?;
            apply_catalog(&mut tx, &broker, &catalog).await?;
            finish_job(&mut tx, &pending.job_guid, None).await?;
        }
        Err(e) => {
            tracing::warn!(broker = %broker.name, error = %e, "service broker catalog refused");
            if pending.kind == "create" {
                store::delete::<ServiceBroker>(&mut tx, &broker.guid).await?;
            } else {
                broker.pending = None;
                store::put(&mut tx, &broker).await?;
            }
            let operation = if pending.kind == "create" {
                "Service broker registration"
            } else {
                "Service broker update"
            };
            finish_job(
                &mut tx,
                &pending.job_guid,
                Some(unable_to_perform(operation, &e.to_string())),
            )
            .await?;
        }
    }
    tx.commit().await?;
    Ok(())
}

/// Upserts the catalog's offerings and plans. A plan gone from the catalog
/// is deleted, or kept unavailable while instances still use it.
async fn apply_catalog(
    c: &mut SqliteConnection,
    broker: &ServiceBroker,
    catalog: &Catalog,
) -> ApiResult<()> {
    let at = now();
    let existing_offerings: Vec<ServiceOffering> =
        store::find(c, &Query::new().eq("broker_guid", &broker.guid)).await?;
    let existing_plans: Vec<ServicePlan> =
        store::find(c, &Query::new().eq("broker_guid", &broker.guid)).await?;
    let mut kept_offerings = Vec::new();
    let mut kept_plans = Vec::new();
    for o in &catalog.services {
        let mut offering = match existing_offerings.iter().find(|e| e.broker_id == o.id) {
            Some(e) => e.clone(),
            None => ServiceOffering {
                guid: new_guid(),
                broker_guid: broker.guid.clone(),
                broker_id: o.id.clone(),
                space_guid: broker.space_guid.clone(),
                name: String::new(),
                description: String::new(),
                available: true,
                bindable: true,
                plan_updateable: false,
                instances_retrievable: false,
                bindings_retrievable: false,
                tags: Vec::new(),
                requires: Vec::new(),
                catalog_metadata: None,
                created_at: at.clone(),
                updated_at: at.clone(),
                metadata: Metadata::default(),
            },
        };
        offering.name = o.name.clone();
        offering.description = o.description.clone();
        offering.available = true;
        offering.bindable = o.bindable;
        offering.plan_updateable = o.plan_updateable;
        offering.instances_retrievable = o.instances_retrievable;
        offering.bindings_retrievable = o.bindings_retrievable;
        offering.tags = o.tags.clone();
        offering.requires = o.requires.clone();
        offering.catalog_metadata = o.metadata.clone();
        offering.updated_at = at.clone();
        store::put(c, &offering).await?;
        kept_offerings.push(offering.guid.clone());
        for p in &o.plans {
            let mut plan = match existing_plans
                .iter()
                .find(|e| e.offering_guid == offering.guid && e.broker_id == p.id)
            {
                Some(e) => e.clone(),
                None => ServicePlan {
                    guid: new_guid(),
                    offering_guid: offering.guid.clone(),
                    broker_guid: broker.guid.clone(),
                    broker_id: p.id.clone(),
                    space_guid: broker.space_guid.clone(),
                    // New plans of a global broker are for admins until
                    // `enable-service-access`.
                    visibility_type: if broker.space_guid.is_some() {
                        "space".into()
                    } else {
                        "admin".into()
                    },
                    name: String::new(),
                    description: String::new(),
                    available: true,
                    free: true,
                    bindable: true,
                    plan_updateable: false,
                    maintenance_info: None,
                    maximum_polling_duration: None,
                    catalog_metadata: None,
                    schemas: None,
                    created_at: at.clone(),
                    updated_at: at.clone(),
                    metadata: Metadata::default(),
                },
            };
            plan.name = p.name.clone();
            plan.description = p.description.clone();
            plan.available = true;
            plan.free = p.free.unwrap_or(true);
            // A plan's own feature flags override its offering's.
            plan.bindable = p.bindable.unwrap_or(o.bindable);
            plan.plan_updateable = p.plan_updateable.unwrap_or(o.plan_updateable);
            plan.maintenance_info = p
                .maintenance_info
                .as_ref()
                .and_then(|m| serde_json::to_value(m).ok());
            plan.maximum_polling_duration = p.maximum_polling_duration;
            plan.catalog_metadata = p.metadata.clone();
            plan.schemas = p.schemas.clone();
            plan.updated_at = at.clone();
            store::put(c, &plan).await?;
            kept_plans.push(plan.guid.clone());
        }
    }
    for plan in existing_plans {
        if kept_plans.contains(&plan.guid) {
            continue;
        }
        let used = store::find_one::<ServiceInstance>(
            c,
            &Query::new().eq("service_plan_guid", &plan.guid),
        )
        .await?
        .is_some();
        if used {
            let mut plan = plan;
            plan.available = false;
            plan.updated_at = at.clone();
            store::put(c, &plan).await?;
            if !kept_offerings.contains(&plan.offering_guid) {
                kept_offerings.push(plan.offering_guid.clone());
                if let Some(mut o) = store::get::<ServiceOffering>(c, &plan.offering_guid).await? {
                    if !catalog.services.iter().any(|s| s.id == o.broker_id) {
                        o.available = false;
                        o.updated_at = at.clone();
                        store::put(c, &o).await?;
                    }
                }
            }
        } else {
            delete_plan(c, &plan.guid).await?;
        }
    }
    for offering in existing_offerings {
        if !kept_offerings.contains(&offering.guid) {
            store::delete::<ServiceOffering>(c, &offering.guid).await?;
        }
    }
    Ok(())
}

/// After a restart: catalog fetches that were running start again (they
/// are idempotent).
pub(crate) async fn resume(api: &Api) -> ApiResult<()> {
    let brokers: Vec<ServiceBroker> = {
        let mut c = api.inner.pool.acquire().await?;
        store::find(&mut c, &Query::new()).await?
    };
    for broker in brokers.into_iter().filter(|b| b.pending.is_some()) {
        spawn_sync(api.clone(), broker.guid);
    }
    Ok(())
}
