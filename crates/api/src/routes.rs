//! Routes and their destinations. A change re-desires the started apps it
//! touches, so the runtime (and through it the router) learns the new URIs.
//!
//! TCP routes live on the shared TCP domain (`tcp.<app domain>`, the one of
//! router group `default-tcp`): no host, no path, a router port from the
//! group's reservable range, unique within the group. The routing API's
//! `GET /routing/v1/router_groups` answers that one group for the cf CLI.

use std::collections::BTreeSet;

use axum::extract::{Path, RawQuery, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get};
use axum::{Extension, Router};
use bytes::Bytes;
use serde::Deserialize;
use serde_json::{json, Value};
use sqlx::SqliteConnection;

use crate::apps::{redesire, spaces_of, ToOne};
use crate::authz::Access;
use crate::error::{ApiError, ApiResult};
use crate::http::{accepted_job, created, no_content, ok, parse_json, ListParams};
use crate::model::{new_guid, now, App, Destination, Domain, Job, Metadata, Org, Route, Space};
use crate::store::{self, Query};
use crate::Api;

pub(crate) fn routes() -> Router<Api> {
    Router::new()
        .route("/v3/routes", get(list_routes).post(create_route))
        .route("/v3/routes/{guid}", get(get_route).delete(delete_route))
        .route(
            "/v3/routes/{guid}/destinations",
            get(get_destinations)
                .post(add_destinations)
                .patch(replace_destinations),
        )
        .route(
            "/v3/routes/{guid}/destinations/{dguid}",
            delete(remove_destination),
        )
        .route("/v3/apps/{guid}/routes", get(app_routes))
        .route("/routing/v1/router_groups", get(router_groups))
}

/// The name of the one TCP router group, as in CF's default deployment.
const ROUTER_GROUP: &str = "default-tcp";

/// The shared TCP domain's name: `tcp.<app domain>` (a host of the app
/// domain could only be an HTTP route, so the names never collide).
pub(crate) fn tcp_domain_name(api: &Api) -> String {
    format!("tcp.{}", api.inner.config.app_domain)
}

#[derive(Deserialize)]
struct RouterGroupQuery {
    name: Option<String>,
}

/// The routing API's router groups: the one TCP group, `default-tcp`, with
/// the guid its domain names and the reservable ports as `A-B`.
async fn router_groups(State(api): State<Api>, RawQuery(q): RawQuery) -> ApiResult<Response> {
    let query: RouterGroupQuery = serde_urlencoded::from_str(q.as_deref().unwrap_or(""))
        .map_err(|e| ApiError::BadQueryParameter(e.to_string()))?;
    let mut c = api.inner.pool.acquire().await?;
    let domains: Vec<Domain> = store::find(&mut c, &Query::new()).await?;
    let ports = api.tcp_ports();
    let groups: Vec<Value> = domains
        .iter()
        .filter_map(|d| d.router_group.as_ref())
        .take(1)
        .map(|guid| {
            json!({
                "guid": guid, "name": ROUTER_GROUP, "type": "tcp",
                "reservable_ports": format!("{}-{}", ports.start, ports.end),
            })
        })
        .collect();
    match query.name {
        Some(name) if name != ROUTER_GROUP || groups.is_empty() => Ok((
            axum::http::StatusCode::NOT_FOUND,
            axum::Json(json!({
                "name": "ResourceNotFoundError",
                "message": format!("Router Group '{name}' not found"),
            })),
        )
            .into_response()),
        _ => Ok(ok(Value::Array(groups))),
    }
}

/// Checks a host label as CF does.
pub(crate) fn validate_host(host: &str) -> ApiResult<()> {
    if host.len() > 63
        || !host
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '*')
    {
        return Err(ApiError::Unprocessable(format!(
            "Host '{host}' must be no more than 63 characters and contain only lowercase letters, digits and hyphens"
        )));
    }
    Ok(())
}

/// Checks a route path as CF does: empty, or `/…` but not `/` alone.
pub(crate) fn validate_path(path: &str) -> ApiResult<()> {
    if path.is_empty() {
        return Ok(());
    }
    if !path.starts_with('/') || path == "/" || path.contains('?') || path.contains("..") {
        return Err(ApiError::Unprocessable(format!(
            "Path '{path}' must begin with a '/' and cannot be '/' alone"
        )));
    }
    Ok(())
}

async fn render(api: &Api, c: &mut SqliteConnection, r: &Route) -> ApiResult<Value> {
    let domain: Domain = store::fetch(c, &r.domain_guid).await?;
    Ok(r.json(&api.inner.config.external_url, &domain.name))
}

/// Finds the route, or creates it in `space_guid`, in the caller's
/// transaction. A route of another space is refused.
pub(crate) async fn find_or_create(
    c: &mut SqliteConnection,
    host: &str,
    domain: &Domain,
    path: &str,
    space_guid: &str,
) -> ApiResult<Route> {
    if domain.router_group.is_some() {
        return Err(ApiError::Unprocessable(
            "Hosts are not supported for TCP routes.".into(),
        ));
    }
    validate_host(host)?;
    validate_path(path)?;
    let q = Query::new()
        .eq("domain_guid", &domain.guid)
        .eq("host", host)
        .eq("path", path);
    if let Some(r) = store::find_one::<Route>(c, &q).await? {
        if r.space_guid != space_guid {
            return Err(ApiError::Unprocessable(format!(
                "The route '{}' is already in use by another space.",
                r.url(&domain.name)
            )));
        }
        return Ok(r);
    }
    crate::quotas::check_route(c, space_guid).await?;
    let at = now();
    let route = Route {
        guid: new_guid(),
        host: host.to_string(),
        path: path.to_string(),
        domain_guid: domain.guid.clone(),
        space_guid: space_guid.to_string(),
        destinations: Vec::new(),
        port: None,
        created_at: at.clone(),
        updated_at: at,
        metadata: Metadata::default(),
    };
    store::insert(c, &route).await?;
    Ok(route)
}

/// Creates a TCP route on `domain` (a domain with a router group) in the
/// caller's transaction: on `port`, or on a random free port of the
/// reservable range when `None`, as CF does.
async fn create_tcp_route(
    api: &Api,
    c: &mut SqliteConnection,
    domain: &Domain,
    space_guid: &str,
    port: Option<u16>,
) -> ApiResult<Route> {
    let range = api.tcp_ports();
    // The ports in use anywhere in the domain's router group.
    let group: Vec<String> = store::find::<Domain>(c, &Query::new())
        .await?
        .into_iter()
        .filter(|d| d.router_group == domain.router_group)
        .map(|d| d.guid)
        .collect();
    let taken: Vec<Route> = store::find::<Route>(c, &Query::new().any_of("domain_guid", group))
        .await?
        .into_iter()
        .filter(|r| r.port.is_some())
        .collect();
    let port = match port {
        Some(p) => {
            if let Some(existing) = taken.iter().find(|r| r.port == Some(p)) {
                if existing.domain_guid == domain.guid {
                    return Err(ApiError::Unprocessable(format!(
                        "Route already exists with port '{p}' for domain '{}'.",
                        domain.name
                    )));
                }
                return Err(port_unavailable(p));
            }
            if !(range.start..=range.end).contains(&p) {
                return Err(port_unavailable(p));
            }
            p
        }
        None => {
            let free: Vec<u16> = (range.start..=range.end)
                .filter(|p| !taken.iter().any(|r| r.port == Some(*p)))
                .collect();
            if free.is_empty() {
                return Err(ApiError::Unprocessable(
                    "There are no more ports available for this domain.".into(),
                ));
            }
            // A random pick, so that a released port is not handed out
            // again at once (uuid v4 bits are random enough for this).
            let len = u128::try_from(free.len()).unwrap_or(1);
            let at = usize::try_from(uuid::Uuid::new_v4().as_u128() % len).unwrap_or(0);
            free[at]
        }
    };
    crate::quotas::check_route(c, space_guid).await?;
    check_reserved_ports(c, space_guid).await?;
    let at = now();
    let route = Route {
        guid: new_guid(),
        host: String::new(),
        path: String::new(),
        domain_guid: domain.guid.clone(),
        space_guid: space_guid.to_string(),
        destinations: Vec::new(),
        port: Some(port),
        created_at: at.clone(),
        updated_at: at,
        metadata: Metadata::default(),
    };
    store::insert(c, &route).await?;
    Ok(route)
}

fn port_unavailable(port: u16) -> ApiError {
    ApiError::Unprocessable(format!(
        "Port '{port}' is not available. Try a different port or use a different domain."
    ))
}

/// Checks one more reserved router port (a TCP route) against the space's
/// and the organization's `total_reserved_ports`, as `check_route` checks
/// `total_routes`.
async fn check_reserved_ports(c: &mut SqliteConnection, space_guid: &str) -> ApiResult<()> {
    let space: Space = store::fetch(c, space_guid).await?;
    let space_limit = crate::quotas::space_quota(c, space_guid)
        .await?
        .and_then(|q| q.limits.total_reserved_ports);
    if let Some(limit) = space_limit {
        let used = reserved_ports(c, vec![space.guid.clone()]).await?;
        if used + 1 > limit {
            return Err(ApiError::Unprocessable(format!(
                "Reserved route ports quota exceeded for space '{}'.",
                space.name
            )));
        }
    }
    let org: Org = store::fetch(c, &space.org_guid).await?;
    let org_limit = crate::quotas::org_quota(c, &org.guid)
        .await?
        .and_then(|q| q.limits.total_reserved_ports);
    if let Some(limit) = org_limit {
        let spaces: Vec<Space> = store::find(c, &Query::new().eq("org_guid", &org.guid)).await?;
        let used = reserved_ports(c, spaces.into_iter().map(|s| s.guid).collect()).await?;
        if used + 1 > limit {
            return Err(ApiError::Unprocessable(format!(
                "Reserved route ports quota exceeded for organization '{}'.",
                org.name
            )));
        }
    }
    Ok(())
}

/// How many TCP routes the spaces hold.
async fn reserved_ports(c: &mut SqliteConnection, spaces: Vec<String>) -> ApiResult<i64> {
    let routes: Vec<Route> = store::find(c, &Query::new().any_of("space_guid", spaces)).await?;
    let count = routes.iter().filter(|r| r.port.is_some()).count();
    Ok(i64::try_from(count).unwrap_or(i64::MAX))
}

/// Adds a destination for the app's process unless it is there already.
pub(crate) fn add_destination(
    route: &mut Route,
    app_guid: &str,
    process_type: &str,
    port: Option<u16>,
) {
    let port = port.unwrap_or(8080);
    if route
        .destinations
        .iter()
        .any(|d| d.app_guid == app_guid && d.process_type == process_type && d.port == port)
    {
        return;
    }
    route.destinations.push(Destination {
        guid: new_guid(),
        app_guid: app_guid.to_string(),
        process_type: process_type.to_string(),
        port,
        protocol: if route.port.is_some() { "tcp" } else { "http1" }.into(),
        weight: None,
    });
    route.updated_at = now();
}

#[derive(Deserialize)]
struct NewRoute {
    host: Option<String>,
    path: Option<String>,
    port: Option<u16>,
    relationships: Option<RouteRelationships>,
    metadata: Option<Value>,
}

#[derive(Deserialize)]
struct RouteRelationships {
    space: Option<ToOne>,
    domain: Option<ToOne>,
}

async fn create_route(State(api): State<Api>, body: Bytes) -> ApiResult<Response> {
    let req: NewRoute = parse_json(&body)?;
    let rel = req
        .relationships
        .ok_or_else(|| ApiError::Unprocessable("Relationships can't be blank".into()))?;
    let space_guid = rel
        .space
        .map(|s| s.data.guid)
        .ok_or_else(|| ApiError::Unprocessable("Relationships Space can't be blank".into()))?;
    let domain_guid = rel
        .domain
        .map(|d| d.data.guid)
        .ok_or_else(|| ApiError::Unprocessable("Relationships Domain can't be blank".into()))?;
    let host = req.host.unwrap_or_default();
    let path = req.path.unwrap_or_default();
    let mut tx = store::begin(&api.inner.pool).await?;
    if store::get::<Space>(&mut tx, &space_guid).await?.is_none() {
        return Err(ApiError::Unprocessable(
            "Invalid space. Ensure that the space exists and you have access to it.".into(),
        ));
    }
    let domain = store::get::<Domain>(&mut tx, &domain_guid)
        .await?
        .ok_or_else(|| {
            ApiError::Unprocessable(
                "Invalid domain. Ensure that the domain exists and you have access to it.".into(),
            )
        })?;
    if domain.router_group.is_some() {
        if !host.is_empty() {
            return Err(ApiError::Unprocessable(
                "Hosts are not supported for TCP routes.".into(),
            ));
        }
        if !path.is_empty() {
            return Err(ApiError::Unprocessable(
                "Paths are not supported for TCP routes.".into(),
            ));
        }
        let mut route = create_tcp_route(&api, &mut tx, &domain, &space_guid, req.port).await?;
        if let Some(m) = &req.metadata {
            route.metadata.merge(m);
            store::put(&mut tx, &route).await?;
        }
        let body = render(&api, &mut tx, &route).await?;
        tx.commit().await?;
        return Ok(created(body));
    }
    if req.port.is_some() {
        return Err(ApiError::Unprocessable(
            "Routes with protocol 'http' do not support ports.".into(),
        ));
    }
    if host.is_empty() {
        return Err(ApiError::Unprocessable(
            "Missing host. Routes in shared domains must have a host defined.".into(),
        ));
    }
    let q = Query::new()
        .eq("domain_guid", &domain.guid)
        .eq("host", &host)
        .eq("path", &path);
    if store::find_one::<Route>(&mut tx, &q).await?.is_some() {
        let shown = if path.is_empty() {
            format!(
                "Route already exists with host '{host}' for domain '{}'.",
                domain.name
            )
        } else {
            format!(
                "Route already exists with host '{host}' and path '{path}' for domain '{}'.",
                domain.name
            )
        };
        return Err(ApiError::Unprocessable(shown));
    }
    let mut route = find_or_create(&mut tx, &host, &domain, &path, &space_guid).await?;
    if let Some(m) = &req.metadata {
        route.metadata.merge(m);
        store::put(&mut tx, &route).await?;
    }
    let body = render(&api, &mut tx, &route).await?;
    tx.commit().await?;
    Ok(created(body))
}

/// Route filters that are document fields.
const FILTERS: &[(&str, &str)] = &[
    ("hosts", "host"),
    ("paths", "path"),
    ("guids", "guid"),
    ("space_guids", "space_guid"),
    ("domain_guids", "domain_guid"),
];

async fn list_routes(
    State(api): State<Api>,
    Extension(access): Extension<Access>,
    RawQuery(q): RawQuery,
) -> ApiResult<Response> {
    let mut names = ListParams::names(FILTERS);
    names.extend(["organization_guids", "app_guids", "ports"]);
    let params = ListParams::parse(q.as_deref(), &names, &[])?;
    let mut query = params.narrow(Query::new(), FILTERS);
    let mut c = api.inner.pool.acquire().await?;
    if let Some(orgs) = params.filter("organization_guids") {
        query = query.any_of("space_guid", spaces_of(&mut c, orgs).await?);
    }
    let query = access.narrow::<Route>(&mut c, query).await?;
    let mut routes: Vec<Route> = store::find(&mut c, &query).await?;
    if let Some(apps) = params.filter("app_guids") {
        routes.retain(|r| r.destinations.iter().any(|d| apps.contains(&d.app_guid)));
    }
    // Ports are numbers in the stored document: filtered here.
    if let Some(ports) = params.filter("ports") {
        routes.retain(|r| r.port.is_some_and(|p| ports.contains(&p.to_string())));
    }
    page(&api, &mut c, q.as_deref(), &params, "/v3/routes", &routes).await
}

async fn app_routes(
    State(api): State<Api>,
    Path(guid): Path<String>,
    RawQuery(q): RawQuery,
) -> ApiResult<Response> {
    const APP_FILTERS: &[(&str, &str)] = &[
        ("hosts", "host"),
        ("paths", "path"),
        ("domain_guids", "domain_guid"),
    ];
    let params = ListParams::parse(q.as_deref(), &ListParams::names(APP_FILTERS), &[])?;
    let mut c = api.inner.pool.acquire().await?;
    let app: App = store::fetch(&mut c, &guid).await?;
    let query = params.narrow(Query::new().eq("space_guid", &app.space_guid), APP_FILTERS);
    let mut routes: Vec<Route> = store::find(&mut c, &query).await?;
    routes.retain(|r| r.destinations.iter().any(|d| d.app_guid == guid));
    let path = format!("/v3/apps/{guid}/routes");
    page(&api, &mut c, q.as_deref(), &params, &path, &routes).await
}

/// One page of routes (filtered in memory, as destinations are), in CF's
/// list envelope with the `included` block asked for.
async fn page(
    api: &Api,
    c: &mut SqliteConnection,
    raw: Option<&str>,
    params: &ListParams,
    path: &str,
    routes: &[Route],
) -> ApiResult<Response> {
    let mut resources = Vec::new();
    for r in params.slice(routes) {
        resources.push(render(api, c, &r).await?);
    }
    let body = params.envelope(api, path, routes.len() as u64, resources);
    Ok(ok(crate::http::with_included(api, c, raw, body).await?))
}

async fn get_route(State(api): State<Api>, Path(guid): Path<String>) -> ApiResult<Response> {
    let mut c = api.inner.pool.acquire().await?;
    let r: Route = store::fetch(&mut c, &guid).await?;
    Ok(ok(render(&api, &mut c, &r).await?))
}

fn apps_of(route: &Route) -> BTreeSet<String> {
    route
        .destinations
        .iter()
        .map(|d| d.app_guid.clone())
        .collect()
}

async fn redesire_all(api: &Api, apps: BTreeSet<String>) -> ApiResult<()> {
    for app in apps {
        redesire(api, &app, |_, _| {}).await?;
    }
    Ok(())
}

async fn delete_route(State(api): State<Api>, Path(guid): Path<String>) -> ApiResult<Response> {
    let mut tx = store::begin(&api.inner.pool).await?;
    let route: Route = store::fetch(&mut tx, &guid).await?;
    store::delete::<Route>(&mut tx, &guid).await?;
    let job = Job::completed("route.delete", None);
    store::insert(&mut tx, &job).await?;
    tx.commit().await?;
    redesire_all(&api, apps_of(&route)).await?;
    Ok(accepted_job(&api, &job.guid))
}

fn destinations_json(api: &Api, route: &Route) -> Value {
    json!({
        "destinations": route.destinations.iter().map(Destination::json).collect::<Vec<_>>(),
        "links": {
            "self": {"href": api.url(&format!("/v3/routes/{}/destinations", route.guid))},
            "route": {"href": api.url(&format!("/v3/routes/{}", route.guid))},
        }
    })
}

async fn get_destinations(State(api): State<Api>, Path(guid): Path<String>) -> ApiResult<Response> {
    let mut c = api.inner.pool.acquire().await?;
    let r: Route = store::fetch(&mut c, &guid).await?;
    Ok(ok(destinations_json(&api, &r)))
}

#[derive(Deserialize)]
struct DestinationsBody {
    destinations: Option<Vec<NewDestination>>,
}

#[derive(Deserialize)]
struct NewDestination {
    app: Option<DestinationApp>,
    port: Option<u16>,
}

#[derive(Deserialize)]
struct DestinationApp {
    guid: String,
    process: Option<DestinationProcess>,
}

#[derive(Deserialize)]
struct DestinationProcess {
    #[serde(rename = "type")]
    kind: String,
}

async fn change_destinations(
    api: &Api,
    guid: &str,
    body: &[u8],
    replace: bool,
) -> ApiResult<Response> {
    let req: DestinationsBody = parse_json(body)?;
    let wanted = req
        .destinations
        .ok_or_else(|| ApiError::Unprocessable("Destinations must be an array".into()))?;
    let mut tx = store::begin(&api.inner.pool).await?;
    let mut route: Route = store::fetch(&mut tx, guid).await?;
    let mut touched = apps_of(&route);
    if replace {
        route.destinations.clear();
    }
    for d in wanted {
        let app_ref = d
            .app
            .ok_or_else(|| ApiError::Unprocessable("Destinations must have an app".into()))?;
        let app = store::get::<App>(&mut tx, &app_ref.guid)
            .await?
            .filter(|a| a.space_guid == route.space_guid)
            .ok_or_else(|| {
                ApiError::Unprocessable(format!(
                    "App(s) with guid(s) \"{}\" do not exist or you do not have access.",
                    app_ref.guid
                ))
            })?;
        let kind = app_ref
            .process
            .map(|p| p.kind)
            .unwrap_or_else(|| "web".into());
        add_destination(&mut route, &app.guid, &kind, d.port);
        touched.insert(app.guid);
    }
    route.updated_at = now();
    store::put(&mut tx, &route).await?;
    tx.commit().await?;
    redesire_all(api, touched).await?;
    Ok(ok(destinations_json(api, &route)))
}

async fn add_destinations(
    State(api): State<Api>,
    Path(guid): Path<String>,
    body: Bytes,
) -> ApiResult<Response> {
    change_destinations(&api, &guid, &body, false).await
}

async fn replace_destinations(
    State(api): State<Api>,
    Path(guid): Path<String>,
    body: Bytes,
) -> ApiResult<Response> {
    change_destinations(&api, &guid, &body, true).await
}

async fn remove_destination(
    State(api): State<Api>,
    Path((guid, dguid)): Path<(String, String)>,
) -> ApiResult<Response> {
    let mut tx = store::begin(&api.inner.pool).await?;
    let mut route: Route = store::fetch(&mut tx, &guid).await?;
    let Some(pos) = route.destinations.iter().position(|d| d.guid == dguid) else {
        return Err(ApiError::not_found("Destination"));
    };
    let removed = route.destinations.remove(pos);
    route.updated_at = now();
    store::put(&mut tx, &route).await?;
    tx.commit().await?;
    redesire_all(&api, BTreeSet::from([removed.app_guid])).await?;
    Ok(no_content())
}
