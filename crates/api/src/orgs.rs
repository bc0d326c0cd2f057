//! The platform's frame: organizations, spaces, domains, stacks, users, the
//! first-boot bootstrap, jobs and audit events.

use axum::extract::{Path, RawQuery, State};
use axum::response::Response;
use axum::routing::get;
use axum::{Extension, Router};
use bytes::Bytes;
use serde::Deserialize;
use serde_json::Value;
use sqlx::SqliteConnection;

use crate::authz::Access;
use crate::error::{ApiError, ApiResult};
use crate::http::{accepted_job, created, index, list, ok, parse_json, require, show, Listed};
use crate::model::{
    new_guid, now, App, Buildpack, Domain, Event, EventParty, Job, Metadata, Org, Role, Route,
    Space, Stack, User,
};
use crate::store::{self, Query};
use crate::{Api, Principal};

/// The default stack's name; manifests naming CF's stacks get it instead.
pub(crate) const DEFAULT_STACK: &str = "ingot-default";
/// CF stack names that mean the default stack.
pub(crate) const STACK_ALIASES: &[&str] = &["cflinuxfs3", "cflinuxfs4"];
/// The buildpacks built into the lifecycle, in detection order.
pub(crate) const BUILTIN_BUILDPACKS: &[&str] = &[
    "staticfile_buildpack",
    "python_buildpack",
    "binary_buildpack",
];

pub(crate) fn routes() -> Router<Api> {
    Router::new()
        .route("/v3/organizations", get(list_orgs).post(create_org))
        .route("/v3/organizations/{guid}", get(show_org).delete(delete_org))
        .route("/v3/organizations/{guid}/domains", get(org_domains))
        .route(
            "/v3/organizations/{guid}/domains/default",
            get(org_default_domain),
        )
        .route("/v3/spaces", get(list_spaces).post(create_space))
        .route("/v3/spaces/{guid}", get(show_space).delete(delete_space))
        .route("/v3/domains", get(index::<Domain>))
        .route("/v3/domains/{guid}", get(show::<Domain>))
        .route(
            "/v3/domains/{guid}/route_reservations",
            get(route_reservations),
        )
        .route("/v3/stacks", get(index::<Stack>))
        .route("/v3/stacks/{guid}", get(show::<Stack>))
        .route("/v3/jobs/{guid}", get(show::<Job>))
        .route("/v3/audit_events", get(index::<Event>))
        .route("/v3/audit_events/{guid}", get(show::<Event>))
}

/// Organizations and spaces show their quota (see
/// [`crate::quotas::with_quota_relationships`]).
async fn list_orgs(
    State(api): State<Api>,
    access: Extension<Access>,
    raw: RawQuery,
) -> ApiResult<Response> {
    let response = index::<Org>(State(api.clone()), access, raw).await;
    crate::quotas::with_quota_relationships(&api, response).await
}

async fn show_org(State(api): State<Api>, guid: Path<String>) -> ApiResult<Response> {
    let response = show::<Org>(State(api.clone()), guid).await;
    crate::quotas::with_quota_relationships(&api, response).await
}

async fn list_spaces(
    State(api): State<Api>,
    access: Extension<Access>,
    raw: RawQuery,
) -> ApiResult<Response> {
    let response = index::<Space>(State(api.clone()), access, raw).await;
    crate::quotas::with_quota_relationships(&api, response).await
}

async fn show_space(State(api): State<Api>, guid: Path<String>) -> ApiResult<Response> {
    let response = show::<Space>(State(api.clone()), guid).await;
    crate::quotas::with_quota_relationships(&api, response).await
}

/// Filters by name and guid, ordered by name too.
const NAMED: &[(&str, &str)] = &[("names", "name"), ("guids", "guid")];

impl Listed for Org {
    const NAME: &'static str = "organizations";
    const FILTERS: &'static [(&'static str, &'static str)] = NAMED;
    const ORDERS: &'static [&'static str] = &["name"];
}

impl Listed for Space {
    const NAME: &'static str = "spaces";
    const FILTERS: &'static [(&'static str, &'static str)] = &[
        ("names", "name"),
        ("guids", "guid"),
        ("organization_guids", "org_guid"),
    ];
    const ORDERS: &'static [&'static str] = &["name"];
}

impl Listed for Domain {
    const NAME: &'static str = "domains";
    const FILTERS: &'static [(&'static str, &'static str)] = NAMED;
    const ORDERS: &'static [&'static str] = &["name"];
}

impl Listed for Stack {
    const NAME: &'static str = "stacks";
    const FILTERS: &'static [(&'static str, &'static str)] = NAMED;
    const ORDERS: &'static [&'static str] = &["name"];
}

impl Listed for Event {
    const NAME: &'static str = "audit_events";
    const FILTERS: &'static [(&'static str, &'static str)] = &[
        ("types", "type"),
        ("target_guids", "target.guid"),
        ("space_guids", "space_guid"),
        ("organization_guids", "org_guid"),
    ];
}

pub(crate) async fn bootstrap(api: &Api, admin_guid: &str, admin_name: &str) -> ApiResult<()> {
    let mut tx = store::begin(&api.inner.pool).await?;
    let at = now();
    let orgs: Vec<Org> = store::find(&mut tx, &Query::new()).await?;
    if orgs.is_empty() {
        let org = Org {
            guid: new_guid(),
            name: "main".into(),
            suspended: false,
            created_at: at.clone(),
            updated_at: at.clone(),
            metadata: Metadata::default(),
        };
        store::insert(&mut tx, &org).await?;
        let space = Space {
            guid: new_guid(),
            name: "dev".into(),
            org_guid: org.guid.clone(),
            allow_ssh: true,
            created_at: at.clone(),
            updated_at: at.clone(),
            metadata: Metadata::default(),
        };
        store::insert(&mut tx, &space).await?;
    }
    let domain = &api.inner.config.app_domain;
    if store::find_one::<Domain>(&mut tx, &Query::new().eq("name", domain))
        .await?
        .is_none()
    {
        let d = Domain {
            guid: new_guid(),
            name: domain.clone(),
            internal: false,
            router_group: None,
            created_at: at.clone(),
            updated_at: at.clone(),
            metadata: Metadata::default(),
        };
        store::insert(&mut tx, &d).await?;
    }
    // The shared TCP domain; its router group guid stays with it, so the
    // group keeps its guid across restarts.
    let tcp = crate::routes::tcp_domain_name(api);
    if store::find_one::<Domain>(&mut tx, &Query::new().eq("name", &tcp))
        .await?
        .is_none()
    {
        let d = Domain {
            guid: new_guid(),
            name: tcp,
            internal: false,
            router_group: Some(new_guid()),
            created_at: at.clone(),
            updated_at: at.clone(),
            metadata: Metadata::default(),
        };
        store::insert(&mut tx, &d).await?;
    }
    if store::find_one::<Stack>(&mut tx, &Query::new().eq("name", DEFAULT_STACK))
        .await?
        .is_none()
    {
        let s = Stack {
            guid: new_guid(),
            name: DEFAULT_STACK.into(),
            description: "The host's system directories, read-only, with a generated /etc \
                          (cflinuxfs3 and cflinuxfs4 are aliases of it)"
                .into(),
            default: true,
            created_at: at.clone(),
            updated_at: at.clone(),
            metadata: Metadata::default(),
        };
        store::insert(&mut tx, &s).await?;
    }
    for (i, name) in BUILTIN_BUILDPACKS.iter().enumerate() {
        if store::find_one::<Buildpack>(&mut tx, &Query::new().eq("name", name))
            .await?
            .is_none()
        {
            let b = Buildpack {
                guid: new_guid(),
                name: (*name).to_string(),
                position: i64::try_from(i).unwrap_or(0) + 1,
                enabled: true,
                locked: false,
                stack: Some(DEFAULT_STACK.into()),
                state: "READY".into(),
                filename: None,
                builtin: true,
                blob_key: None,
                created_at: at.clone(),
                updated_at: at.clone(),
                metadata: Metadata::default(),
            };
            store::insert(&mut tx, &b).await?;
        }
    }
    // The first boot with quotas and security groups: the `default`
    // organization quota, and CF's default running and staging groups.
    if crate::quotas::bootstrap(&mut tx).await? {
        crate::security_groups::bootstrap(&mut tx).await?;
    }
    if store::get::<User>(&mut tx, admin_guid).await?.is_none() {
        let u = User {
            guid: admin_guid.into(),
            username: admin_name.into(),
            created_at: at.clone(),
            updated_at: at,
        };
        store::insert(&mut tx, &u).await?;
    }
    tx.commit().await?;
    Ok(())
}

/// Records an audit event inside the caller's transaction.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn audit(
    c: &mut SqliteConnection,
    kind: &str,
    actor: EventParty,
    target: EventParty,
    data: Value,
    space_guid: Option<&str>,
    org_guid: Option<&str>,
) -> ApiResult<()> {
    let at = now();
    let event = Event {
        guid: new_guid(),
        kind: kind.into(),
        actor,
        target,
        data,
        space_guid: space_guid.map(str::to_string),
        org_guid: org_guid.map(str::to_string),
        created_at: at.clone(),
        updated_at: at,
    };
    store::insert(c, &event).await
}

/// The audit actor for a user's request.
pub(crate) fn user_actor(p: &Principal) -> EventParty {
    EventParty {
        guid: p.user_guid.clone(),
        kind: "user".into(),
        name: p.user_name.clone(),
    }
}

/// Finds the stack a lifecycle names (aliases → the default); `None` → default.
pub(crate) async fn resolve_stack(
    c: &mut SqliteConnection,
    name: Option<&str>,
    warnings: &mut Vec<String>,
) -> ApiResult<String> {
    let Some(name) = name.filter(|n| !n.is_empty()) else {
        return Ok(DEFAULT_STACK.into());
    };
    if STACK_ALIASES.contains(&name) {
        if store::find_one::<Stack>(c, &Query::new().eq("name", name))
            .await?
            .is_none()
        {
            warnings.push(format!(
                "Stack '{name}' runs on Ingot's default stack '{DEFAULT_STACK}'."
            ));
            return Ok(DEFAULT_STACK.into());
        }
        return Ok(name.into());
    }
    match store::find_one::<Stack>(c, &Query::new().eq("name", name)).await? {
        Some(_) => Ok(name.into()),
        None => Err(ApiError::Unprocessable(format!(
            "Stack '{name}' does not exist"
        ))),
    }
}

#[derive(Deserialize)]
struct NewOrg {
    name: Option<String>,
    #[serde(default)]
    suspended: bool,
    #[serde(default)]
    metadata: Option<Value>,
}

fn require_name(name: Option<String>) -> ApiResult<String> {
    match name {
        Some(n) if !n.trim().is_empty() => Ok(n),
        Some(_) => Err(ApiError::Unprocessable("Name can't be blank".into())),
        None => Err(ApiError::Unprocessable(
            "Name can't be blank, Name must be a string".into(),
        )),
    }
}

/// `POST /v3/organizations`: admins, or anyone with the write scope while
/// the `user_org_creation` feature flag is on (the creator then manages it).
async fn create_org(
    State(api): State<Api>,
    Extension(p): Extension<Principal>,
    Extension(access): Extension<Access>,
    body: Bytes,
) -> ApiResult<Response> {
    let req: NewOrg = parse_json(&body)?;
    let name = require_name(req.name)?;
    let at = now();
    let org = Org {
        guid: new_guid(),
        name: name.clone(),
        suspended: req.suspended,
        created_at: at.clone(),
        updated_at: at,
        metadata: Metadata::from_request(req.metadata.as_ref()),
    };
    let mut tx = store::begin(&api.inner.pool).await?;
    if store::find_one::<Org>(&mut tx, &Query::new().eq("name", &name))
        .await?
        .is_some()
    {
        return Err(ApiError::Uniqueness(format!(
            "Organization '{name}' already exists."
        )));
    }
    if !access.is_admin() {
        if !crate::feature_flags::enabled(&mut tx, "user_org_creation").await? {
            return Err(ApiError::NotAuthorized);
        }
        store::insert(&mut tx, &org).await?;
        crate::roles::grant_creator(&mut tx, &p, &org.guid).await?;
    } else {
        store::insert(&mut tx, &org).await?;
    }
    crate::quotas::assign_default(&mut tx, &org.guid).await?;
    let mut body = org.json(&api.inner.config.external_url);
    crate::quotas::fill_quota_relationships(&api, &mut tx, &mut body).await?;
    tx.commit().await?;
    Ok(created(body))
}

/// Every domain is shared, so every organization sees them all.
async fn org_domains(
    State(api): State<Api>,
    Extension(access): Extension<Access>,
    Path(guid): Path<String>,
    RawQuery(q): RawQuery,
) -> ApiResult<Response> {
    require::<Org>(&api, &guid).await?;
    let path = format!("/v3/organizations/{guid}/domains");
    list::<Domain>(&api, &access, q.as_deref(), &path, Query::new()).await
}

async fn org_default_domain(
    State(api): State<Api>,
    Path(guid): Path<String>,
) -> ApiResult<Response> {
    let mut c = api.inner.pool.acquire().await?;
    store::fetch::<Org>(&mut c, &guid).await?;
    let d = default_domain(&api, &mut c).await?;
    Ok(ok(d.json(&api.inner.config.external_url)))
}

/// The shared app domain (the first domain when the configured one is gone).
pub(crate) async fn default_domain(api: &Api, c: &mut SqliteConnection) -> ApiResult<Domain> {
    if let Some(d) =
        store::find_one::<Domain>(c, &Query::new().eq("name", &api.inner.config.app_domain)).await?
    {
        return Ok(d);
    }
    // Never the TCP domain: a default route has a host.
    store::find::<Domain>(c, &Query::new())
        .await?
        .into_iter()
        .find(|d| d.router_group.is_none())
        .ok_or_else(|| ApiError::not_found("Domain"))
}

#[derive(Deserialize)]
struct NewSpace {
    name: Option<String>,
    relationships: Option<SpaceRelationships>,
    #[serde(default)]
    metadata: Option<Value>,
}

#[derive(Deserialize)]
struct SpaceRelationships {
    organization: Option<crate::apps::ToOne>,
}

async fn create_space(State(api): State<Api>, body: Bytes) -> ApiResult<Response> {
    let req: NewSpace = parse_json(&body)?;
    let name = require_name(req.name)?;
    let org_guid = req
        .relationships
        .and_then(|r| r.organization)
        .map(|o| o.data.guid)
        .ok_or_else(|| {
            ApiError::Unprocessable("Relationships Organization can't be blank".into())
        })?;
    let mut tx = store::begin(&api.inner.pool).await?;
    if store::get::<Org>(&mut tx, &org_guid).await?.is_none() {
        return Err(ApiError::Unprocessable(
            "Invalid organization. Ensure the organization exists and you have access to it."
                .into(),
        ));
    }
    let dup = Query::new().eq("org_guid", &org_guid).eq("name", &name);
    if store::find_one::<Space>(&mut tx, &dup).await?.is_some() {
        return Err(ApiError::Uniqueness(
            "Name must be unique per organization".into(),
        ));
    }
    let at = now();
    let space = Space {
        guid: new_guid(),
        name,
        org_guid,
        allow_ssh: true,
        created_at: at.clone(),
        updated_at: at,
        metadata: Metadata::from_request(req.metadata.as_ref()),
    };
    store::insert(&mut tx, &space).await?;
    tx.commit().await?;
    Ok(created(space.json(&api.inner.config.external_url)))
}

#[derive(Deserialize)]
struct Reservation {
    host: Option<String>,
    path: Option<String>,
    port: Option<u16>,
}

/// Whether a route with this host and path exists on the domain.
async fn route_reservations(
    State(api): State<Api>,
    Path(guid): Path<String>,
    RawQuery(q): RawQuery,
) -> ApiResult<Response> {
    let r: Reservation = serde_urlencoded::from_str(q.as_deref().unwrap_or(""))
        .map_err(|e| ApiError::BadQueryParameter(e.to_string()))?;
    let mut c = api.inner.pool.acquire().await?;
    store::fetch::<Domain>(&mut c, &guid).await?;
    let query = Query::new()
        .eq("domain_guid", &guid)
        .eq("host", r.host.as_deref().unwrap_or(""))
        .eq("path", r.path.as_deref().unwrap_or(""));
    // A TCP route is found by its port (stored numbers are filtered here).
    let found = store::find::<crate::model::Route>(&mut c, &query)
        .await?
        .iter()
        .any(|route| r.port.is_none_or(|p| route.port == Some(p)));
    Ok(ok(serde_json::json!({"matching_route": found})))
}

/// Deletes a space with everything in it (apps, routes, roles), in the
/// caller's transaction; returns what is left to do after the commit.
async fn delete_space_in_tx(
    c: &mut SqliteConnection,
    p: &Principal,
    space: &Space,
) -> ApiResult<Vec<crate::apps::DeletedApp>> {
    let inside = Query::new().eq("space_guid", &space.guid);
    let apps: Vec<App> = store::find(c, &inside).await?;
    let mut deleted = Vec::new();
    for app in &apps {
        deleted.push(crate::apps::delete_app_in_tx(c, p, app).await?);
    }
    let routes: Vec<Route> = store::find(c, &inside).await?;
    for route in routes {
        store::delete::<Route>(c, &route.guid).await?;
    }
    let roles: Vec<Role> = store::find(c, &inside).await?;
    for role in roles {
        store::delete::<Role>(c, &role.guid).await?;
    }
    let instances: Vec<crate::services::ServiceInstance> = store::find(c, &inside).await?;
    for instance in instances {
        store::delete::<crate::services::ServiceInstance>(c, &instance.guid).await?;
    }
    crate::security_groups::forget_space(c, &space.guid).await?;
    crate::quotas::forget_space(c, &space.guid).await?;
    store::delete::<Space>(c, &space.guid).await?;
    audit(
        c,
        "audit.space.delete-request",
        user_actor(p),
        EventParty {
            guid: space.guid.clone(),
            kind: "space".into(),
            name: space.name.clone(),
        },
        serde_json::json!({"request": {"recursive": true}}),
        None,
        Some(&space.org_guid),
    )
    .await?;
    Ok(deleted)
}

/// `DELETE /v3/spaces/:guid`: the space and everything in it, as a job.
async fn delete_space(
    State(api): State<Api>,
    Extension(p): Extension<Principal>,
    Path(guid): Path<String>,
) -> ApiResult<Response> {
    let mut tx = store::begin(&api.inner.pool).await?;
    let space: Space = store::fetch(&mut tx, &guid).await?;
    let deleted = delete_space_in_tx(&mut tx, &p, &space).await?;
    let job = Job::completed("space.delete", None);
    store::insert(&mut tx, &job).await?;
    tx.commit().await?;
    for app in deleted {
        app.finish(&api).await;
    }
    Ok(accepted_job(&api, &job.guid))
}

/// `DELETE /v3/organizations/:guid` (admins only): the organization, its
/// spaces and everything in them, as a job.
async fn delete_org(
    State(api): State<Api>,
    Extension(p): Extension<Principal>,
    Path(guid): Path<String>,
) -> ApiResult<Response> {
    let mut tx = store::begin(&api.inner.pool).await?;
    let org: Org = store::fetch(&mut tx, &guid).await?;
    let spaces: Vec<Space> = store::find(&mut tx, &Query::new().eq("org_guid", &guid)).await?;
    let mut deleted = Vec::new();
    for space in &spaces {
        deleted.extend(delete_space_in_tx(&mut tx, &p, space).await?);
    }
    let roles: Vec<Role> = store::find(&mut tx, &Query::new().eq("org_guid", &guid)).await?;
    for role in roles {
        store::delete::<Role>(&mut tx, &role.guid).await?;
    }
    crate::quotas::forget_org(&mut tx, &guid).await?;
    store::delete::<Org>(&mut tx, &guid).await?;
    audit(
        &mut tx,
        "audit.organization.delete-request",
        user_actor(&p),
        EventParty {
            guid: org.guid.clone(),
            kind: "organization".into(),
            name: org.name.clone(),
        },
        serde_json::json!({"request": {"recursive": true}}),
        None,
        Some(&org.guid),
    )
    .await?;
    let job = Job::completed("organization.delete", None);
    store::insert(&mut tx, &job).await?;
    tx.commit().await?;
    for app in deleted {
        app.finish(&api).await;
    }
    Ok(accepted_job(&api, &job.guid))
}
