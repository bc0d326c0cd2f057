//! `/v3/feature_flags`: Cloud Foundry's platform-wide feature switches, with
//! CF's names and default values. `PATCH` (admin only) stores `enabled` and
//! `custom_error_message` per flag; a flag never patched shows its default
//! and `updated_at: null`.
//!
//! Consulted so far: `diego_docker` (off by default, as in CF: an admin
//! turns it on before docker images can be pushed; packages of type
//! `docker` and apps with the `docker` lifecycle are refused with
//! `Feature Disabled: diego_docker` while it is off). Other flags are stored
//! and shown but do not yet change what the rest of the API allows.

use axum::extract::{Path, RawQuery, State};
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use crate::error::{ApiError, ApiResult};
use crate::http::{ok, parse_json, ListParams};
use crate::model::now;
use crate::store::{self, Doc, Query};
use crate::Api;

/// CF's feature flags and their defaults (cloud controller's
/// `FeatureFlag::DEFAULT_FLAGS`), listed by name.
pub(crate) const DEFAULTS: &[(&str, bool)] = &[
    ("app_bits_upload", true),
    ("app_scaling", true),
    ("diego_cnb", false),
    ("diego_docker", false),
    ("env_var_visibility", true),
    ("hide_marketplace_from_unauthenticated_users", false),
    ("private_domain_creation", true),
    ("resource_matching", true),
    ("route_creation", true),
    ("route_sharing", false),
    ("service_instance_creation", true),
    ("service_instance_sharing", false),
    ("set_roles_by_username", true),
    ("space_developer_env_var_visibility", true),
    ("space_scoped_private_broker_creation", true),
    ("task_creation", true),
    ("unset_roles_by_username", true),
    ("user_org_creation", false),
];

/// A flag an admin has set; flags never set are not stored.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct FeatureFlag {
    /// The flag's name, which is also its key.
    name: String,
    enabled: bool,
    custom_error_message: Option<String>,
    updated_at: String,
}

impl Doc for FeatureFlag {
    const TABLE: &'static str = "cc_feature_flags";
    const KIND: &'static str = "Feature flag";
    const SCOPE: crate::authz::Scope = crate::authz::Scope::Everyone;
    fn guid(&self) -> &str {
        &self.name
    }
}

pub(crate) fn routes() -> Router<Api> {
    Router::new()
        .route("/v3/feature_flags", get(list))
        .route("/v3/feature_flags/{name}", get(show).patch(patch))
}

/// The flag's default, or CF's 404 for a name CF does not know.
fn default_of(name: &str) -> ApiResult<bool> {
    DEFAULTS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, enabled)| *enabled)
        .ok_or_else(|| ApiError::not_found(FeatureFlag::KIND))
}

/// Whether the flag is enabled (its stored value, else its default).
pub(crate) async fn enabled(c: &mut sqlx::SqliteConnection, name: &str) -> ApiResult<bool> {
    let default = default_of(name)?;
    let stored: Option<FeatureFlag> = store::get(c, name).await?;
    Ok(stored.map_or(default, |f| f.enabled))
}

/// `Ok` when the flag is enabled; else CF's `FeatureDisabled` error with the
/// flag's custom message, or `Feature Disabled: <name>`.
pub(crate) async fn require(c: &mut sqlx::SqliteConnection, name: &str) -> ApiResult<()> {
    let default = default_of(name)?;
    let stored: Option<FeatureFlag> = store::get(c, name).await?;
    if stored.as_ref().map_or(default, |f| f.enabled) {
        return Ok(());
    }
    Err(ApiError::FeatureDisabled(
        stored
            .and_then(|f| f.custom_error_message)
            .unwrap_or_else(|| format!("Feature Disabled: {name}")),
    ))
}

fn render(api: &Api, name: &str, default: bool, stored: Option<&FeatureFlag>) -> Value {
    json!({
        "name": name,
        "enabled": stored.map_or(default, |f| f.enabled),
        "updated_at": stored.map(|f| f.updated_at.clone()),
        "custom_error_message": stored.and_then(|f| f.custom_error_message.clone()),
        "links": {"self": {"href": api.url(&format!("/v3/feature_flags/{name}"))}},
    })
}

async fn list(State(api): State<Api>, RawQuery(raw): RawQuery) -> ApiResult<Response> {
    let params = ListParams::parse(raw.as_deref(), &[], &["name"])?;
    let stored: Vec<FeatureFlag> = {
        let mut c = api.inner.pool.acquire().await?;
        store::find(&mut c, &Query::new()).await?
    };
    let mut all: Vec<(Value, String, String)> = DEFAULTS
        .iter()
        .map(|(name, default)| {
            let flag = stored.iter().find(|f| f.name == *name);
            let updated = flag.map(|f| f.updated_at.clone()).unwrap_or_default();
            (
                render(&api, name, *default, flag),
                name.to_string(),
                updated,
            )
        })
        .collect();
    // Ordered by name unless asked otherwise; a flag never set sorts as if
    // created and updated at the beginning of time.
    let (field, desc) = params
        .order
        .clone()
        .unwrap_or_else(|| ("name".to_string(), false));
    all.sort_by(|a, b| {
        let ord = if field == "name" {
            a.1.cmp(&b.1)
        } else {
            a.2.cmp(&b.2).then_with(|| a.1.cmp(&b.1))
        };
        if desc {
            ord.reverse()
        } else {
            ord
        }
    });
    let resources: Vec<Value> = all.into_iter().map(|(v, _, _)| v).collect();
    let total = u64::try_from(resources.len()).unwrap_or(u64::MAX);
    let page = params.slice(&resources);
    Ok(ok(params.envelope(&api, "/v3/feature_flags", total, page)))
}

async fn show(State(api): State<Api>, Path(name): Path<String>) -> ApiResult<Response> {
    let default = default_of(&name)?;
    let mut c = api.inner.pool.acquire().await?;
    let stored: Option<FeatureFlag> = store::get(&mut c, &name).await?;
    Ok(ok(render(&api, &name, default, stored.as_ref())))
}

/// The fields a `PATCH` may carry, checked as CF checks them.
fn parse_update(body: &Map<String, Value>) -> ApiResult<(Option<bool>, Option<Option<String>>)> {
    let unknown: Vec<String> = body
        .keys()
        .filter(|k| *k != "enabled" && *k != "custom_error_message")
        .map(|k| format!("'{k}'"))
        .collect();
    if !unknown.is_empty() {
        return Err(ApiError::Unprocessable(format!(
            "Unknown field(s): {}",
            unknown.join(", ")
        )));
    }
    let enabled = match body.get("enabled") {
        None => None,
        Some(Value::Bool(b)) => Some(*b),
        Some(_) => return Err(ApiError::Unprocessable("Enabled must be a boolean".into())),
    };
    let message = match body.get("custom_error_message") {
        None => None,
        Some(Value::Null) => Some(None),
        Some(Value::String(s)) if s.trim().is_empty() || s.chars().any(char::is_control) => {
            return Err(ApiError::Unprocessable(
                "Custom error message must be a non-empty string of printable characters".into(),
            ))
        }
        Some(Value::String(s)) => Some(Some(s.clone())),
        Some(_) => {
            return Err(ApiError::Unprocessable(
                "Custom error message must be a string".into(),
            ))
        }
    };
    Ok((enabled, message))
}

async fn patch(
    State(api): State<Api>,
    Path(name): Path<String>,
    body: Bytes,
) -> ApiResult<Response> {
    let default = default_of(&name)?;
    let body: Map<String, Value> = parse_json(&body)?;
    let (enabled, message) = parse_update(&body)?;
    let mut tx = store::begin(&api.inner.pool).await?;
    let mut flag = store::get::<FeatureFlag>(&mut tx, &name)
        .await?
        .unwrap_or_else(|| FeatureFlag {
            name: name.clone(),
            enabled: default,
            custom_error_message: None,
            updated_at: now(),
        });
    if let Some(e) = enabled {
        flag.enabled = e;
    }
    if let Some(m) = message {
        flag.custom_error_message = m;
    }
    flag.updated_at = now();
    store::put(&mut tx, &flag).await?;
    tx.commit().await?;
    Ok(ok(render(&api, &name, default, Some(&flag))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_cfs_and_sorted() {
        let names: Vec<&str> = DEFAULTS.iter().map(|d| d.0).collect();
        let mut sorted = names.clone();
        sorted.sort_unstable();
        assert_eq!(names, sorted);
        assert_eq!(default_of("user_org_creation").ok(), Some(false));
        assert_eq!(default_of("app_scaling").ok(), Some(true));
        assert!(matches!(
            default_of("no_such_flag"),
            Err(ApiError::ResourceNotFound(_))
        ));
    }

    #[test]
    fn updates_are_checked_like_cf() {
        let parse = |v: Value| parse_update(v.as_object().expect("object"));
        assert_eq!(
            parse(json!({"enabled": false, "custom_error_message": "no"})).ok(),
            Some((Some(false), Some(Some("no".to_string()))))
        );
        assert_eq!(
            parse(json!({"custom_error_message": null})).ok(),
            Some((None, Some(None)))
        );
        for bad in [
            json!({"enabled": "yes"}),
            json!({"custom_error_message": 3}),
            json!({"custom_error_message": ""}),
            json!({"name": "x"}),
        ] {
            assert!(
                matches!(parse(bad.clone()), Err(ApiError::Unprocessable(_))),
                "{bad}"
            );
        }
    }
}
