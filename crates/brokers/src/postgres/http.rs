//! The OSB HTTP surface: routes, basic auth, the `X-Broker-API-Version`
//! check, request validation, and OSB error bodies
//! (`{"error": "...", "description": "..."}`).
//!
//! Ids and plans are checked here, before any SQL runs. Each operation runs
//! on its own task, so a platform that hangs up mid-request cannot leave an
//! operation half done.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use base64::Engine;
use serde::Deserialize;
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

use super::admin::{Bound, Login, Provisioned, Removed, Updated};
use super::catalog::{self, offering_id, PostgresPlan};
use super::names::valid_id;
use super::{Inner, PostgresBrokerError};

/// Largest request body read; OSB bodies are a few hundred bytes.
const MAX_BODY: usize = 64 * 1024;

/// The broker's routes, behind auth and the version check.
pub fn router(inner: Arc<Inner>) -> Router {
    Router::new()
        .route("/v2/catalog", get(get_catalog))
        .route(
            "/v2/service_instances/{instance_id}",
            axum::routing::put(provision)
                .patch(update)
                .delete(deprovision),
        )
        .route(
            "/v2/service_instances/{instance_id}/last_operation",
            get(instance_last_operation),
        )
        .route(
            "/v2/service_instances/{instance_id}/service_bindings/{binding_id}",
            axum::routing::put(bind).delete(unbind),
        )
        .route(
            "/v2/service_instances/{instance_id}/service_bindings/{binding_id}/last_operation",
            get(binding_last_operation),
        )
        .fallback(|| async { osb_error(StatusCode::NOT_FOUND, "NotFound", "no such endpoint") })
        .method_not_allowed_fallback(|| async {
            osb_error(
                StatusCode::METHOD_NOT_ALLOWED,
                "MethodNotAllowed",
                "this endpoint does not take that method",
            )
        })
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY))
        .layer(middleware::from_fn_with_state(inner.clone(), guard))
        .with_state(inner)
}

/// An OSB error response.
fn osb_error(status: StatusCode, error: &str, description: impl Into<String>) -> Response {
    let description: String = description.into();
    (
        status,
        Json(json!({ "error": error, "description": description })),
    )
        .into_response()
}

/// A refused request: the response to send (boxed, it is large).
struct Refused(Box<Response>);

impl From<Response> for Refused {
    fn from(response: Response) -> Refused {
        Refused(Box::new(response))
    }
}

impl IntoResponse for Refused {
    fn into_response(self) -> Response {
        *self.0
    }
}

fn bad_request(description: impl Into<String>) -> Response {
    osb_error(StatusCode::BAD_REQUEST, "BadRequest", description)
}

fn internal(e: &PostgresBrokerError) -> Response {
    tracing::error!(error = %e, "postgres broker: operation failed");
    osb_error(
        StatusCode::INTERNAL_SERVER_ERROR,
        "InternalError",
        e.to_string(),
    )
}

fn empty(status: StatusCode) -> Response {
    (status, Json(json!({}))).into_response()
}

/// Basic auth first (an unauthenticated caller learns nothing), then the
/// API version: `2.x` is served, anything else is 412 as the spec says.
async fn guard(State(inner): State<Arc<Inner>>, request: Request, next: Next) -> Response {
    if !authorized(
        request.headers(),
        &inner.config.username,
        &inner.config.password,
    ) {
        let mut response = osb_error(
            StatusCode::UNAUTHORIZED,
            "Unauthorized",
            "the broker's basic-auth credentials are missing or wrong",
        );
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Basic realm=\"ingot-postgres-broker\""),
        );
        return response;
    }
    let version = request
        .headers()
        .get("x-broker-api-version")
        .and_then(|v| v.to_str().ok());
    if !version.is_some_and(supported_version) {
        return osb_error(
            StatusCode::PRECONDITION_FAILED,
            "PreconditionFailed",
            format!(
                "this broker speaks Open Service Broker API 2.x; X-Broker-API-Version was {}",
                version.map_or("missing".to_string(), |v| format!("{v:?}"))
            ),
        );
    }
    next.run(request).await
}

/// `2.N` for any minor version.
fn supported_version(version: &str) -> bool {
    match version.trim().split_once('.') {
        Some((major, minor)) => major == "2" && minor.parse::<u32>().is_ok(),
        None => false,
    }
}

/// Whether the `Authorization` header carries the configured user and
/// password. Digests are compared so the time taken says nothing about how
/// much of a guess was right.
fn authorized(headers: &HeaderMap, username: &str, password: &str) -> bool {
    let Some(value) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let Some((scheme, encoded)) = value.trim().split_once(' ') else {
        return false;
    };
    if !scheme.eq_ignore_ascii_case("basic") {
        return false;
    }
    let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(encoded.trim()) else {
        return false;
    };
    let expected = Sha256::digest(format!("{username}:{password}").as_bytes());
    let given = Sha256::digest(&decoded);
    expected
        .iter()
        .zip(given.iter())
        .fold(0u8, |acc, (a, b)| acc | (a ^ b))
        == 0
}

async fn get_catalog(State(inner): State<Arc<Inner>>) -> Response {
    Json(catalog::catalog(&inner.config.plans)).into_response()
}

/// The ids of the path, checked.
fn ids(path: Result<Path<Vec<String>>, PathRejection>) -> Result<Vec<String>, Refused> {
    let Path(ids) = path.map_err(|e| bad_request(format!("invalid path: {e}")))?;
    for id in &ids {
        if !valid_id(id) {
            return Err(Refused::from(bad_request(format!(
                "invalid id {id:?}: ids are 1 to {} characters of letters, digits, '-', '_' and '.'",
                super::names::MAX_ID_LEN
            ))));
        }
    }
    Ok(ids)
}

/// The JSON body, parsed into `T`.
fn body<T: for<'de> Deserialize<'de>>(body: Result<Bytes, BytesRejection>) -> Result<T, Refused> {
    let bytes = body.map_err(|e| osb_error(e.status(), "BadRequest", e.body_text()))?;
    Ok(serde_json::from_slice(&bytes)
        .map_err(|e| bad_request(format!("invalid request body: {e}")))?)
}

/// The offering must be ours.
fn check_service(service_id: &str) -> Result<(), Refused> {
    if service_id == offering_id() {
        Ok(())
    } else {
        Err(Refused::from(bad_request(format!(
            "unknown service_id {service_id:?}: this broker offers only {:?} ({})",
            catalog::OFFERING_NAME,
            offering_id()
        ))))
    }
}

fn find_plan<'a>(inner: &'a Inner, plan_id: &str) -> Result<&'a PostgresPlan, Refused> {
    inner
        .config
        .plans
        .iter()
        .find(|p| p.id() == plan_id)
        .ok_or_else(|| -> Refused {
            let known: Vec<String> = inner
                .config
                .plans
                .iter()
                .map(|p| format!("{} ({})", p.name, p.id()))
                .collect();
            bad_request(format!(
                "unknown plan_id {plan_id:?}; the plans are {}",
                known.join(", ")
            ))
            .into()
        })
}

/// The broker takes no parameters; refusing them beats ignoring a setting
/// the user thinks was applied.
fn check_parameters(parameters: &Option<Map<String, Value>>) -> Result<(), Refused> {
    match parameters {
        Some(p) if !p.is_empty() => Err(Refused::from(bad_request(
            "this broker takes no parameters; the plan sets the connection limit",
        ))),
        _ => Ok(()),
    }
}

/// `service_id` and `plan_id`, which the spec makes mandatory on deletes.
fn check_delete_query(
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Result<(), Refused> {
    let Query(query) = query.map_err(|e| bad_request(format!("invalid query: {e}")))?;
    let service_id = query
        .get("service_id")
        .ok_or_else(|| bad_request("the service_id query parameter is missing"))?;
    if !query.contains_key("plan_id") {
        return Err(bad_request("the plan_id query parameter is missing").into());
    }
    check_service(service_id)
}

/// Runs an operation on its own task (see the module docs).
async fn run<T: Send + 'static>(
    object: &str,
    op: impl Future<Output = Result<T, PostgresBrokerError>> + Send + 'static,
) -> Result<T, Refused> {
    match tokio::spawn(op).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) => Err(internal(&e).into()),
        Err(e) => Err(internal(&PostgresBrokerError::Aborted {
            object: object.to_string(),
            reason: e.to_string(),
        })
        .into()),
    }
}

#[derive(Deserialize)]
struct ProvisionBody {
    service_id: String,
    plan_id: String,
    #[serde(default)]
    parameters: Option<Map<String, Value>>,
}

async fn provision(
    State(inner): State<Arc<Inner>>,
    path: Result<Path<Vec<String>>, PathRejection>,
    raw: Result<Bytes, BytesRejection>,
) -> Response {
    let outcome = async {
        let [instance_id] = <[String; 1]>::try_from(ids(path)?)
            .map_err(|_| bad_request("expected one id in the path"))?;
        let request: ProvisionBody = body(raw)?;
        check_service(&request.service_id)?;
        let plan = find_plan(&inner, &request.plan_id)?;
        check_parameters(&request.parameters)?;
        let (plan_id, limit) = (plan.id(), plan.connection_limit);
        let worker = inner.clone();
        let id = instance_id.clone();
        let done = run(&instance_id, async move {
            worker.admin.provision(&id, &plan_id, limit).await
        })
        .await?;
        Ok::<_, Refused>(match done {
            Provisioned::Created => {
                tracing::info!(instance_id, "postgres broker: provisioned");
                empty(StatusCode::CREATED)
            }
            Provisioned::Exists => empty(StatusCode::OK),
            Provisioned::Conflict => osb_error(
                StatusCode::CONFLICT,
                "Conflict",
                format!("instance {instance_id} already exists with another plan"),
            ),
        })
    }
    .await;
    outcome.unwrap_or_else(IntoResponse::into_response)
}

#[derive(Deserialize)]
struct UpdateBody {
    service_id: String,
    #[serde(default)]
    plan_id: Option<String>,
    #[serde(default)]
    parameters: Option<Map<String, Value>>,
}

async fn update(
    State(inner): State<Arc<Inner>>,
    path: Result<Path<Vec<String>>, PathRejection>,
    raw: Result<Bytes, BytesRejection>,
) -> Response {
    let outcome = async {
        let [instance_id] = <[String; 1]>::try_from(ids(path)?)
            .map_err(|_| bad_request("expected one id in the path"))?;
        let request: UpdateBody = body(raw)?;
        check_service(&request.service_id)?;
        check_parameters(&request.parameters)?;
        let Some(plan_id) = request.plan_id else {
            // Nothing to change (no parameters either).
            let exists = inner.admin.exists(&instance_id, None).await;
            return Ok(match exists {
                Ok(true) => empty(StatusCode::OK),
                Ok(false) => not_found_instance(&instance_id),
                Err(e) => internal(&e),
            });
        };
        let plan = find_plan(&inner, &plan_id)?;
        let limit = plan.connection_limit;
        let worker = inner.clone();
        let id = instance_id.clone();
        let done = run(&instance_id, async move {
            worker.admin.update(&id, &plan_id, limit).await
        })
        .await?;
        Ok::<_, Refused>(match done {
            Updated::Changed => {
                tracing::info!(instance_id, limit, "postgres broker: plan changed");
                empty(StatusCode::OK)
            }
            Updated::Unchanged => empty(StatusCode::OK),
            Updated::NotFound => not_found_instance(&instance_id),
        })
    }
    .await;
    outcome.unwrap_or_else(IntoResponse::into_response)
}

fn not_found_instance(instance_id: &str) -> Response {
    osb_error(
        StatusCode::NOT_FOUND,
        "NotFound",
        format!("instance {instance_id} does not exist"),
    )
}

async fn deprovision(
    State(inner): State<Arc<Inner>>,
    path: Result<Path<Vec<String>>, PathRejection>,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Response {
    let outcome = async {
        let [instance_id] = <[String; 1]>::try_from(ids(path)?)
            .map_err(|_| bad_request("expected one id in the path"))?;
        check_delete_query(query)?;
        let worker = inner.clone();
        let id = instance_id.clone();
        let done = run(
            &instance_id,
            async move { worker.admin.deprovision(&id).await },
        )
        .await?;
        Ok::<_, Refused>(match done {
            Removed::Removed => {
                tracing::info!(instance_id, "postgres broker: deprovisioned");
                empty(StatusCode::OK)
            }
            Removed::Gone => empty(StatusCode::GONE),
        })
    }
    .await;
    outcome.unwrap_or_else(IntoResponse::into_response)
}

#[derive(Deserialize)]
struct BindBody {
    service_id: String,
    plan_id: String,
    #[serde(default)]
    parameters: Option<Map<String, Value>>,
}

async fn bind(
    State(inner): State<Arc<Inner>>,
    path: Result<Path<Vec<String>>, PathRejection>,
    raw: Result<Bytes, BytesRejection>,
) -> Response {
    let outcome = async {
        let [instance_id, binding_id] = <[String; 2]>::try_from(ids(path)?)
            .map_err(|_| bad_request("expected two ids in the path"))?;
        let request: BindBody = body(raw)?;
        check_service(&request.service_id)?;
        find_plan(&inner, &request.plan_id)?;
        check_parameters(&request.parameters)?;
        let worker = inner.clone();
        let (i, b) = (instance_id.clone(), binding_id.clone());
        let done = run(&binding_id, async move { worker.admin.bind(&i, &b).await }).await?;
        Ok::<_, Refused>(match done {
            Bound::Created(login) => {
                tracing::info!(instance_id, binding_id, "postgres broker: bound");
                (StatusCode::CREATED, Json(credentials(&inner, &login))).into_response()
            }
            Bound::Exists(login) => {
                (StatusCode::OK, Json(credentials(&inner, &login))).into_response()
            }
            Bound::Conflict => osb_error(
                StatusCode::CONFLICT,
                "Conflict",
                format!("binding {binding_id} already exists for another instance"),
            ),
            Bound::NoInstance => not_found_instance(&instance_id),
        })
    }
    .await;
    outcome.unwrap_or_else(IntoResponse::into_response)
}

/// The binding response: credentials at the advertised address.
fn credentials(inner: &Inner, login: &Login) -> Value {
    let host = &inner.config.advertised_host;
    let port = inner.config.advertised_port;
    // IPv6 literals need brackets inside URLs.
    let url_host = if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]")
    } else {
        host.clone()
    };
    // Names are [a-z0-9_] and the password hex, so nothing needs escaping.
    json!({
        "credentials": {
            "uri": format!(
                "postgres://{}:{}@{url_host}:{port}/{}",
                login.username, login.password, login.database
            ),
            "username": login.username,
            "password": login.password,
            "hostname": host,
            "port": port,
            "name": login.database,
            "jdbcUrl": format!(
                "jdbc:postgresql://{url_host}:{port}/{}?user={}&password={}",
                login.database, login.username, login.password
            ),
        }
    })
}

async fn unbind(
    State(inner): State<Arc<Inner>>,
    path: Result<Path<Vec<String>>, PathRejection>,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Response {
    let outcome = async {
        let [instance_id, binding_id] = <[String; 2]>::try_from(ids(path)?)
            .map_err(|_| bad_request("expected two ids in the path"))?;
        check_delete_query(query)?;
        let worker = inner.clone();
        let (i, b) = (instance_id.clone(), binding_id.clone());
        let done = run(
            &binding_id,
            async move { worker.admin.unbind(&i, &b).await },
        )
        .await?;
        Ok::<_, Refused>(match done {
            Removed::Removed => {
                tracing::info!(instance_id, binding_id, "postgres broker: unbound");
                empty(StatusCode::OK)
            }
            Removed::Gone => empty(StatusCode::GONE),
        })
    }
    .await;
    outcome.unwrap_or_else(IntoResponse::into_response)
}

/// Everything is synchronous: a known object's last operation succeeded; an
/// unknown one is 410 (which tells a platform polling a delete it is done).
async fn last_operation(inner: &Inner, ids: Vec<String>) -> Response {
    let exists = match ids.as_slice() {
        [instance_id] => inner.admin.exists(instance_id, None).await,
        [instance_id, binding_id] => inner.admin.exists(instance_id, Some(binding_id)).await,
        _ => return bad_request("unexpected path"),
    };
    match exists {
        Ok(true) => Json(json!({ "state": "succeeded" })).into_response(),
        Ok(false) => empty(StatusCode::GONE),
        Err(e) => internal(&e),
    }
}

async fn instance_last_operation(
    State(inner): State<Arc<Inner>>,
    path: Result<Path<Vec<String>>, PathRejection>,
) -> Response {
    match ids(path) {
        Ok(ids) => last_operation(&inner, ids).await,
        Err(refused) => refused.into_response(),
    }
}

async fn binding_last_operation(
    State(inner): State<Arc<Inner>>,
    path: Result<Path<Vec<String>>, PathRejection>,
) -> Response {
    match ids(path) {
        Ok(ids) => last_operation(&inner, ids).await,
        Err(refused) => refused.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions() {
        for ok in ["2.15", "2.0", " 2.17 "] {
            assert!(supported_version(ok), "{ok}");
        }
        for bad in ["", "2", "1.9", "3.0", "2.x", "two"] {
            assert!(!supported_version(bad), "{bad}");
        }
    }

    #[test]
    fn basic_auth() {
        let header = |value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(
                header::AUTHORIZATION,
                header::HeaderValue::from_str(value).expect("header value"),
            );
            headers
        };
        let encode = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        assert!(authorized(
            &header(&format!("Basic {}", encode("u:p:w"))),
            "u",
            "p:w"
        ));
        assert!(authorized(
            &header(&format!("basic {}", encode("u:p:w"))),
            "u",
            "p:w"
        ));
        assert!(!authorized(
            &header(&format!("Basic {}", encode("u:p"))),
            "u",
            "p:w"
        ));
        assert!(!authorized(
            &header(&format!("Bearer {}", encode("u:p:w"))),
            "u",
            "p:w"
        ));
        assert!(!authorized(&header("Basic !!!"), "u", "p:w"));
        assert!(!authorized(&HeaderMap::new(), "u", "p:w"));
    }
}
