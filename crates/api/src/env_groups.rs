//! The running and staging environment variable groups
//! (`/v3/environment_variable_groups/{running,staging}`): variables an
//! operator sets once for every app. Running apps get the running group,
//! staging gets the staging group; an app's own variable of the same name
//! wins, as in Cloud Foundry. Everyone reads them; admins change them (the
//! rule lives in `authz`).

use std::collections::BTreeMap;

use axum::extract::{Path, State};
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use crate::error::{ApiError, ApiResult};
use crate::http::{ok, parse_json};
use crate::model::now;
use crate::store::{self, Conn, Doc};
use crate::Api;

/// The two groups CF has.
const NAMES: &[&str] = &["running", "staging"];

/// A group an admin has set; a group never set is empty and not stored.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct EnvGroup {
    /// `running` or `staging`, which is also its key.
    name: String,
    var: Map<String, Value>,
    updated_at: String,
}

impl Doc for EnvGroup {
    const TABLE: &'static str = "cc_env_groups";
    const KIND: &'static str = "Environment variable group";
    const SCOPE: crate::authz::Scope = crate::authz::Scope::Everyone;
    fn guid(&self) -> &str {
        &self.name
    }
}

pub(crate) fn routes() -> Router<Api> {
    Router::new().route(
        "/v3/environment_variable_groups/{name}",
        get(show).patch(patch),
    )
}

fn known(name: &str) -> ApiResult<()> {
    if NAMES.contains(&name) {
        Ok(())
    } else {
        Err(ApiError::not_found(EnvGroup::KIND))
    }
}

/// The group's variables as strings, for a running or staging environment.
pub(crate) async fn vars(c: &mut Conn, name: &str) -> ApiResult<BTreeMap<String, String>> {
    let group: Option<EnvGroup> = store::get(c, name).await?;
    Ok(group
        .map(|g| {
            g.var
                .into_iter()
                .map(|(k, v)| {
                    let s = match v {
                        Value::String(s) => s,
                        other => other.to_string(),
                    };
                    (k, s)
                })
                .collect()
        })
        .unwrap_or_default())
}

/// The group's variables as JSON (`running_env_json`, `staging_env_json`).
pub(crate) async fn json_vars(c: &mut Conn, name: &str) -> ApiResult<Map<String, Value>> {
    let group: Option<EnvGroup> = store::get(c, name).await?;
    Ok(group.map(|g| g.var).unwrap_or_default())
}

/// `group` under `own`: the app's own variables win.
pub(crate) fn layered(
    group: BTreeMap<String, String>,
    own: BTreeMap<String, String>,
) -> BTreeMap<String, String> {
    let mut all = group;
    all.extend(own);
    all
}

fn render(api: &Api, name: &str, group: Option<&EnvGroup>) -> Value {
    json!({
        "name": name,
        "var": group.map(|g| g.var.clone()).unwrap_or_default(),
        "updated_at": group.map(|g| g.updated_at.clone()),
        "links": {"self": {"href": api.url(&format!("/v3/environment_variable_groups/{name}"))}},
    })
}

async fn show(State(api): State<Api>, Path(name): Path<String>) -> ApiResult<Response> {
    known(&name)?;
    let mut c = api.inner.pool.acquire().await?;
    let group: Option<EnvGroup> = store::get(&mut c, &name).await?;
    Ok(ok(render(&api, &name, group.as_ref())))
}

/// Checks a `PATCH` body as CF does: only `var`, an object whose values are
/// strings (or null, which removes the variable), and whose names are
/// neither empty, nor `PORT`, nor `VCAP_…`.
fn parse_update(body: &Map<String, Value>) -> ApiResult<Map<String, Value>> {
    if let Some(k) = body.keys().find(|k| *k != "var") {
        return Err(ApiError::Unprocessable(format!("Unknown field(s): '{k}'")));
    }
    let var = match body.get("var") {
        Some(Value::Object(var)) => var.clone(),
        None => Map::new(),
        Some(_) => return Err(ApiError::Unprocessable("Var must be an object".into())),
    };
    for (k, v) in &var {
        if k.is_empty() {
            return Err(ApiError::Unprocessable(
                "Var cannot have an empty key".into(),
            ));
        }
        if k == "PORT" || k.to_ascii_uppercase().starts_with("VCAP_") {
            return Err(ApiError::Unprocessable(format!(
                "Var cannot set {k}: PORT and VCAP_ variables belong to the platform"
            )));
        }
        if !matches!(v, Value::String(_) | Value::Null) {
            return Err(ApiError::Unprocessable(format!(
                "Var's value for {k} must be a string or null"
            )));
        }
    }
    Ok(var)
}

async fn patch(
    State(api): State<Api>,
    Path(name): Path<String>,
    body: Bytes,
) -> ApiResult<Response> {
    known(&name)?;
    let body: Map<String, Value> = parse_json(&body)?;
    let changes = parse_update(&body)?;
    let mut tx = store::begin(&api.inner.pool).await?;
    let mut group = store::get::<EnvGroup>(&mut tx, &name)
        .await?
        .unwrap_or_else(|| EnvGroup {
            name: name.clone(),
            var: Map::new(),
            updated_at: now(),
        });
    for (k, v) in changes {
        if v.is_null() {
            group.var.remove(&k);
        } else {
            group.var.insert(k, v);
        }
    }
    group.updated_at = now();
    store::put(&mut tx, &group).await?;
    tx.commit().await?;
    Ok(ok(render(&api, &name, Some(&group))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn updates_are_checked_like_cf() {
        let parse = |v: Value| parse_update(v.as_object().expect("object"));
        assert!(parse(json!({"var": {"A": "1", "B": null}})).is_ok());
        for bad in [
            json!({"var": {"PORT": "1"}}),
            json!({"var": {"VCAP_SERVICES": "{}"}}),
            json!({"var": {"": "x"}}),
            json!({"var": {"A": 1}}),
            json!({"var": "x"}),
            json!({"name": "running"}),
        ] {
            assert!(
                matches!(parse(bad.clone()), Err(ApiError::Unprocessable(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn the_apps_own_variables_win() {
        let group = BTreeMap::from([("A".to_string(), "g".to_string()), ("B".into(), "g".into())]);
        let own = BTreeMap::from([("B".to_string(), "app".to_string())]);
        let all = layered(group, own);
        assert_eq!(all["A"], "g");
        assert_eq!(all["B"], "app");
    }
}
