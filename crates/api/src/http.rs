//! The HTTP framework of the API: the router, the token check, request
//! counters, JSON bodies, list parameters (pagination, filters, `order_by`)
//! and the list envelope with its `pagination` links.

use std::collections::BTreeMap;

use axum::extract::{Path, RawQuery, Request, State};
use axum::http::{header, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Router};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use serde::de::DeserializeOwned;
use serde_json::{json, Value};

use crate::authz::Access;
use crate::error::{ApiError, ApiResult};
use crate::model::Render;
use crate::store::{Doc, Query};
use crate::{Api, Principal, TokenProblem};

/// The API's request counters.
#[derive(Default)]
pub(crate) struct Metrics {
    requests: Family<Vec<(String, String)>, Counter>,
}

impl Metrics {
    pub(crate) fn register(&self, registry: &mut prometheus_client::registry::Registry) {
        registry.register(
            "ingot_api_requests",
            "API requests served, by method and status",
            self.requests.clone(),
        );
    }
}

/// Builds the whole HTTP surface.
pub(crate) fn router(api: Api) -> Router {
    let protected = Router::new()
        .merge(crate::orgs::routes())
        .merge(crate::apps::routes())
        .merge(crate::packages::routes())
        .merge(crate::builds::routes())
        .merge(crate::processes::routes())
        .merge(crate::routes::routes())
        .merge(crate::manifest::routes())
        .merge(crate::empty::routes())
        .merge(crate::feature_flags::routes())
        .merge(crate::tasks::routes())
        .merge(crate::roles::routes())
        .merge(crate::deployments::routes())
        .merge(crate::ssh::routes())
        .merge(crate::services::routes())
        .merge(crate::service_brokers::routes())
        .merge(crate::service_offerings::routes())
        .merge(crate::security_groups::routes())
        .merge(crate::quotas::routes())
        .merge(crate::env_groups::routes())
        .merge(crate::usage_events::routes())
        .route_layer(axum::middleware::from_fn_with_state(
            api.clone(),
            authenticate,
        ));
    Router::new()
        .merge(crate::root::routes())
        .merge(protected)
        .fallback(|| async { ApiError::UnknownRequest })
        .layer(axum::middleware::from_fn_with_state(api.clone(), count))
        .with_state(api)
}

async fn count(State(api): State<Api>, req: Request, next: Next) -> Response {
    let method = req.method().to_string();
    let response = next.run(req).await;
    api.inner
        .metrics
        .requests
        .get_or_create(&vec![
            ("method".to_string(), method),
            ("status".to_string(), response.status().as_u16().to_string()),
        ])
        .inc();
    response
}

/// The scopes that let a token read, as in CF: `cloud_controller.read`, or
/// one of the global roles carried as a scope.
const READ_SCOPES: &[&str] = &[
    "cloud_controller.read",
    "cloud_controller.admin",
    "cloud_controller.admin_read_only",
    "cloud_controller.global_auditor",
];

fn has_any(principal: &Principal, scopes: &[&str]) -> bool {
    principal
        .scopes
        .iter()
        .any(|s| scopes.contains(&s.as_str()))
}

/// Whether the token may read: CF's `check_read_permissions!`.
pub(crate) fn may_read(principal: &Principal) -> bool {
    has_any(principal, READ_SCOPES)
}

/// Whether the token may write at all: `cloud_controller.write`, or admin.
/// The user's org and space roles are checked next, by [`crate::authz`].
pub(crate) fn may_write(principal: &Principal) -> bool {
    has_any(
        principal,
        &["cloud_controller.write", "cloud_controller.admin"],
    )
}

/// Every `/v3` resource needs a valid token; reads need a read scope
/// ([`may_read`]) and writes the write scope ([`may_write`]); then the
/// user's roles must allow the request ([`crate::authz::authorize`]). A
/// refusal is CF's 403 `CF-NotAuthorized`, or 404 for what the user cannot
/// see.
async fn authenticate(State(api): State<Api>, req: Request, next: Next) -> Response {
    let authorization = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.trim().is_empty());
    let principal = match api.inner.tokens.validate(authorization) {
        Ok(p) => p,
        Err(TokenProblem::Missing) => return ApiError::NotAuthenticated.into_response(),
        Err(TokenProblem::Invalid | TokenProblem::Expired) => {
            return ApiError::InvalidAuthToken.into_response()
        }
    };
    let read = matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    let allowed = if read {
        may_read(&principal)
    } else {
        may_write(&principal)
    };
    if !allowed {
        return ApiError::NotAuthorized.into_response();
    }
    let access = match load_access(&api, &principal).await {
        Ok(a) => a,
        Err(e) => return e.into_response(),
    };
    let mut req = match crate::authz::authorize(&api, &access, req).await {
        Ok(req) => req,
        Err(e) => return e.into_response(),
    };
    req.extensions_mut().insert(principal);
    req.extensions_mut().insert(access);
    next.run(req).await
}

async fn load_access(api: &Api, principal: &Principal) -> ApiResult<Access> {
    let mut c = api.inner.pool.acquire().await?;
    Access::load(&mut c, principal).await
}

/// 200 with a JSON body.
pub(crate) fn ok(body: Value) -> Response {
    (StatusCode::OK, axum::Json(body)).into_response()
}

/// 201 with a JSON body.
pub(crate) fn created(body: Value) -> Response {
    (StatusCode::CREATED, axum::Json(body)).into_response()
}

/// 202 with `Location: <external>/v3/jobs/<guid>`.
pub(crate) fn accepted_job(api: &Api, job_guid: &str) -> Response {
    (
        StatusCode::ACCEPTED,
        [(header::LOCATION, api.url(&format!("/v3/jobs/{job_guid}")))],
    )
        .into_response()
}

/// 204 without a body.
pub(crate) fn no_content() -> Response {
    StatusCode::NO_CONTENT.into_response()
}

/// Parses a JSON body: bad JSON is CF's 400 MessageParseError; JSON of the
/// wrong shape is a 422 naming the problem.
pub(crate) fn parse_json<T: DeserializeOwned>(body: &[u8]) -> ApiResult<T> {
    let value: Value = if body.iter().all(u8::is_ascii_whitespace) {
        json!({})
    } else {
        serde_json::from_slice(body)
            .map_err(|_| ApiError::MessageParse("invalid request body".to_string()))?
    };
    if !value.is_object() {
        return Err(ApiError::MessageParse("invalid request body".to_string()));
    }
    serde_json::from_value(value).map_err(|e| ApiError::Unprocessable(e.to_string()))
}

/// `'a', 'b'`, as CF lists names in its errors.
fn quoted<S: std::fmt::Display>(names: &[S]) -> String {
    names
        .iter()
        .map(|n| format!("'{n}'"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Parameters every list endpoint takes: ignored because Ingot does not
/// implement them yet, but clients send them routinely.
fn ignored_param(name: &str) -> bool {
    name == "include"
        || name == "label_selector"
        || name.starts_with("fields[")
        || name.starts_with("created_ats")
        || name.starts_with("updated_ats")
}

/// The parsed query of a list request.
#[derive(Debug, Clone)]
pub(crate) struct ListParams {
    pub page: u64,
    pub per_page: u64,
    /// The field to order by, and whether descending.
    pub order: Option<(String, bool)>,
    /// Comma-separated filters, split.
    pub filters: BTreeMap<String, Vec<String>>,
    /// The query as given minus paging, for the pagination links.
    passthrough: Vec<(String, String)>,
}

impl ListParams {
    /// Parses `page`, `per_page`, `order_by` and the allowed filters;
    /// anything else is CF's 400 BadQueryParameter.
    pub(crate) fn parse(raw: Option<&str>, filters: &[&str], orders: &[&str]) -> ApiResult<Self> {
        let pairs: Vec<(String, String)> = serde_urlencoded::from_str(raw.unwrap_or(""))
            .map_err(|e| ApiError::BadQueryParameter(e.to_string()))?;
        let mut params = ListParams {
            page: 1,
            per_page: 50,
            order: None,
            filters: BTreeMap::new(),
            passthrough: Vec::new(),
        };
        let mut unknown = Vec::new();
        for (key, value) in pairs {
            match key.as_str() {
                "page" => {
                    params.page = value.parse().ok().filter(|p| *p >= 1).ok_or_else(|| {
                        ApiError::BadQueryParameter("Page must be greater than 0".into())
                    })?;
                }
                "per_page" => {
                    params.per_page = value
                        .parse()
                        .ok()
                        .filter(|p| (1..=5000).contains(p))
                        .ok_or_else(|| {
                            ApiError::BadQueryParameter(
                                "Per page must be between 1 and 5000".into(),
                            )
                        })?;
                }
                "order_by" => {
                    let (field, desc) = match value.strip_prefix('-') {
                        Some(f) => (f, true),
                        None => (value.strip_prefix('+').unwrap_or(&value), false),
                    };
                    let mut allowed = vec!["created_at", "updated_at"];
                    allowed.extend_from_slice(orders);
                    if !allowed.contains(&field) {
                        return Err(ApiError::BadQueryParameter(format!(
                            "Order by can only be: {}",
                            quoted(&allowed)
                        )));
                    }
                    params.order = Some((field.to_string(), desc));
                    params.passthrough.push((key, value));
                }
                k if filters.contains(&k) => {
                    params
                        .filters
                        .entry(key.clone())
                        .or_default()
                        .extend(value.split(',').map(str::to_string));
                    params.passthrough.push((key, value));
                }
                k if ignored_param(k) => params.passthrough.push((key, value)),
                _ => unknown.push(key),
            }
        }
        if !unknown.is_empty() {
            return Err(ApiError::BadQueryParameter(format!(
                "Unknown query parameter(s): {}",
                quoted(&unknown)
            )));
        }
        Ok(params)
    }

    /// Parses paging only, accepting any filter (for endpoints whose lists
    /// are always empty in Ingot so far).
    pub(crate) fn parse_lenient(raw: Option<&str>) -> ApiResult<Self> {
        let pairs: Vec<(String, String)> =
            serde_urlencoded::from_str(raw.unwrap_or("")).unwrap_or_default();
        let paging: Vec<(String, String)> = pairs
            .into_iter()
            .filter(|(k, _)| k == "page" || k == "per_page")
            .collect();
        let query = serde_urlencoded::to_string(&paging).unwrap_or_default();
        ListParams::parse(Some(&query), &[], &[])
    }

    /// The query parameter names of a filter table.
    pub(crate) fn names<'a>(filters: &[(&'a str, &str)]) -> Vec<&'a str> {
        filters.iter().map(|f| f.0).collect()
    }

    /// `q` narrowed by the filters given (query parameter → document field)
    /// and ordered as asked.
    pub(crate) fn narrow(&self, mut q: Query, filters: &[(&str, &str)]) -> Query {
        for (param, field) in filters {
            if let Some(values) = self.filter(param) {
                q = q.any_of(field, values);
            }
        }
        if let Some((field, desc)) = &self.order {
            q = q.order(field, *desc);
        }
        q
    }

    /// The values of a filter, if it was given.
    pub(crate) fn filter(&self, name: &str) -> Option<Vec<String>> {
        self.filters.get(name).cloned()
    }

    fn href(&self, api: &Api, path: &str, page: u64) -> Value {
        let mut pairs = vec![
            ("page".to_string(), page.to_string()),
            ("per_page".to_string(), self.per_page.to_string()),
        ];
        pairs.extend(self.passthrough.iter().cloned());
        let query = serde_urlencoded::to_string(&pairs).unwrap_or_default();
        json!({"href": api.url(&format!("{path}?{query}"))})
    }

    /// The list envelope CF returns: `pagination` and `resources`.
    pub(crate) fn envelope(
        &self,
        api: &Api,
        path: &str,
        total: u64,
        resources: Vec<Value>,
    ) -> Value {
        let pages = total.div_ceil(self.per_page).max(1);
        let next = if self.page < pages {
            self.href(api, path, self.page + 1)
        } else {
            Value::Null
        };
        let previous = if self.page > 1 {
            self.href(api, path, (self.page - 1).min(pages))
        } else {
            Value::Null
        };
        json!({
            "pagination": {
                "total_results": total,
                "total_pages": pages,
                "first": self.href(api, path, 1),
                "last": self.href(api, path, pages),
                "next": next,
                "previous": previous,
            },
            "resources": resources,
        })
    }

    /// Pages a list already in memory (for lists computed in Rust).
    pub(crate) fn slice<T: Clone>(&self, all: &[T]) -> Vec<T> {
        let start = usize::try_from(self.page.saturating_sub(1).saturating_mul(self.per_page))
            .unwrap_or(usize::MAX);
        let len = usize::try_from(self.per_page).unwrap_or(usize::MAX);
        all.iter().skip(start).take(len).cloned().collect()
    }
}

/// A resource kind with a top-level list, `/v3/<NAME>`, served by [`index`].
pub(crate) trait Listed: Render {
    /// The collection's name in its path, e.g. `builds`.
    const NAME: &'static str;
    /// Each filter query parameter and the document field it filters.
    const FILTERS: &'static [(&'static str, &'static str)];
    /// The fields `order_by` accepts besides `created_at` and `updated_at`.
    const ORDERS: &'static [&'static str] = &[];

    /// The query every list of the kind starts from (its default order).
    fn base_query() -> Query {
        Query::new()
    }
}

/// A resource kind that owns others through a `KEY` field of theirs, e.g.
/// an app owns the builds whose `app_guid` is its guid.
pub(crate) trait Parent: Doc {
    /// The collection's name in its path, e.g. `apps`.
    const NAME: &'static str;
    /// The field of an owned document that holds the owner's guid.
    const KEY: &'static str;
}

/// The document with this guid, or CF's 404 for its kind, on a connection of
/// its own (for the checks and reads that precede a list or a task).
pub(crate) async fn require<T: Doc>(api: &Api, guid: &str) -> ApiResult<T> {
    let mut c = api.inner.pool.acquire().await?;
    crate::store::fetch(&mut c, guid).await
}

/// `GET /v3/<kind>/:guid`.
pub(crate) async fn show<T: Render>(
    State(api): State<Api>,
    Path(guid): Path<String>,
) -> ApiResult<Response> {
    let doc: T = require(&api, &guid).await?;
    Ok(ok(doc.render(&api.inner.config.external_url)))
}

/// `GET /v3/<kind>`.
pub(crate) async fn index<T: Listed>(
    State(api): State<Api>,
    Extension(access): Extension<Access>,
    RawQuery(raw): RawQuery,
) -> ApiResult<Response> {
    let path = format!("/v3/{}", T::NAME);
    list::<T>(&api, &access, raw.as_deref(), &path, T::base_query()).await
}

/// `GET /v3/<parents>/:guid/<kind>`: the parent's own, 404 without the parent.
pub(crate) async fn below<P: Parent, T: Listed>(
    State(api): State<Api>,
    Extension(access): Extension<Access>,
    Path(guid): Path<String>,
    RawQuery(raw): RawQuery,
) -> ApiResult<Response> {
    require::<P>(&api, &guid).await?;
    let path = format!("/v3/{}/{guid}/{}", P::NAME, T::NAME);
    list::<T>(
        &api,
        &access,
        raw.as_deref(),
        &path,
        T::base_query().eq(P::KEY, &guid),
    )
    .await
}

/// Serves a list of `T` within `base` (the endpoint's own constraints),
/// narrowed by `T`'s filters and ordered as asked.
pub(crate) async fn list<T: Listed>(
    api: &Api,
    access: &Access,
    raw: Option<&str>,
    path: &str,
    base: Query,
) -> ApiResult<Response> {
    let params = ListParams::parse(raw, &ListParams::names(T::FILTERS), T::ORDERS)?;
    let q = params.narrow(base, T::FILTERS);
    let mut c = api.inner.pool.acquire().await?;
    page_response::<T>(api, access, &mut c, raw, &params, path, q).await
}

/// One page of the documents matching `q` that the user can see, in CF's
/// list envelope with the `included` block the client asked for.
pub(crate) async fn page_response<T: Render>(
    api: &Api,
    access: &Access,
    c: &mut sqlx::SqliteConnection,
    raw: Option<&str>,
    params: &ListParams,
    path: &str,
    q: Query,
) -> ApiResult<Response> {
    let q = access.narrow::<T>(c, q).await?;
    let (docs, total) = crate::store::page::<T>(c, &q, params.page, params.per_page).await?;
    let base = &api.inner.config.external_url;
    let resources = docs.iter().map(|d| d.render(base)).collect();
    let body = params.envelope(api, path, total, resources);
    Ok(ok(with_included(api, c, raw, body).await?))
}

/// The values of `include=` in a raw query.
fn includes(raw: Option<&str>) -> Vec<String> {
    serde_urlencoded::from_str::<Vec<(String, String)>>(raw.unwrap_or(""))
        .unwrap_or_default()
        .into_iter()
        .filter(|(k, _)| k == "include")
        .flat_map(|(_, v)| v.split(',').map(str::to_string).collect::<Vec<_>>())
        .collect()
}

fn related_guids(items: &[Value], relation: &str) -> Vec<String> {
    let mut guids: Vec<String> = items
        .iter()
        .filter_map(|r| r["relationships"][relation]["data"]["guid"].as_str())
        .map(str::to_string)
        .collect();
    guids.sort();
    guids.dedup();
    guids
}

async fn fetch_rendered<T: Render>(
    c: &mut sqlx::SqliteConnection,
    base: &str,
    guids: Vec<String>,
) -> ApiResult<Vec<Value>> {
    let docs: Vec<T> = crate::store::find(c, &Query::new().any_of("guid", guids)).await?;
    Ok(docs.iter().map(|d| d.render(base)).collect())
}

/// Adds CF's `included` block for `include=space`, `space.organization`,
/// `organization`, `domain`, `app` and `user` to a list body.
pub(crate) async fn with_included(
    api: &Api,
    c: &mut sqlx::SqliteConnection,
    raw: Option<&str>,
    mut body: Value,
) -> ApiResult<Value> {
    use crate::model::{App, Domain, Org, Space, User};
    let wanted = includes(raw);
    if wanted.is_empty() {
        return Ok(body);
    }
    let wants = |name: &str| wanted.iter().any(|w| w == name);
    let base = api.inner.config.external_url.as_str();
    let resources = body["resources"].as_array().cloned().unwrap_or_default();
    let mut included = serde_json::Map::new();
    let mut org_guids = related_guids(&resources, "organization");
    if wants("space") || wants("space.organization") {
        let spaces = fetch_rendered::<Space>(c, base, related_guids(&resources, "space")).await?;
        if wants("space.organization") {
            org_guids = related_guids(&spaces, "organization");
            let orgs = fetch_rendered::<Org>(c, base, org_guids.clone()).await?;
            included.insert("organizations".into(), Value::Array(orgs));
        }
        included.insert("spaces".into(), Value::Array(spaces));
    }
    if wants("organization") {
        let orgs = fetch_rendered::<Org>(c, base, org_guids).await?;
        included.insert("organizations".into(), Value::Array(orgs));
    }
    if wants("domain") {
        let domains =
            fetch_rendered::<Domain>(c, base, related_guids(&resources, "domain")).await?;
        included.insert("domains".into(), Value::Array(domains));
    }
    if wants("app") {
        let apps = fetch_rendered::<App>(c, base, related_guids(&resources, "app")).await?;
        included.insert("apps".into(), Value::Array(apps));
    }
    if wants("user") {
        let users = fetch_rendered::<User>(c, base, related_guids(&resources, "user")).await?;
        included.insert("users".into(), Value::Array(users));
    }
    body["included"] = Value::Object(included);
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_params_parse_filters_and_order() {
        let p = ListParams::parse(
            Some("names=a,b&order_by=-name&page=2&per_page=10"),
            &["names"],
            &["name"],
        )
        .expect("valid");
        assert_eq!(p.page, 2);
        assert_eq!(p.per_page, 10);
        assert_eq!(p.order, Some(("name".to_string(), true)));
        assert_eq!(p.filter("names"), Some(vec!["a".into(), "b".into()]));
    }

    #[test]
    fn list_params_reject_bad_values() {
        for q in [
            "per_page=5001",
            "per_page=0",
            "page=0",
            "order_by=size",
            "bogus=1",
        ] {
            let err = ListParams::parse(Some(q), &["names"], &["name"]).expect_err(q);
            assert!(
                matches!(err, ApiError::BadQueryParameter(_)),
                "{q}: {err:?}"
            );
        }
    }

    #[test]
    fn bodies_parse_or_fail_like_cf() {
        let err = parse_json::<Value>(b"{nope").expect_err("bad json");
        assert!(matches!(err, ApiError::MessageParse(_)));
        let v: Value = parse_json(b"").expect("empty is {}");
        assert_eq!(v, json!({}));
    }
}
