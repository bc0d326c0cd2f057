//! SSH access to app instances, as the API decides it: the app's and the
//! space's `ssh` features (`enable-ssh`, `allow-space-ssh`), `ssh_enabled`,
//! and the check the SSH proxy asks for before it opens a session, which is
//! recorded as an audit event either way.

use axum::extract::{Path, State};
use axum::response::Response;
use axum::routing::get;
use axum::{Extension, Router};
use bytes::Bytes;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::apps::{app_context, app_target};
use crate::authz::Access;
use crate::error::{ApiError, ApiResult};
use crate::http::{ok, parse_json, require, ListParams};
use crate::model::{now, App, EventParty, Process, Space};
use crate::orgs::audit;
use crate::store;
use crate::{Api, Principal};

pub(crate) fn routes() -> Router<Api> {
    Router::new()
        .route("/v3/apps/{guid}/ssh_enabled", get(ssh_enabled))
        .route("/v3/apps/{guid}/features", get(app_features))
        .route(
            "/v3/apps/{guid}/features/{name}",
            get(app_feature).patch(patch_app_feature),
        )
        .route(
            "/v3/spaces/{guid}/features/{name}",
            get(space_feature).patch(patch_space_feature),
        )
}

/// Whether the platform serves SSH at all.
fn platform_ssh(api: &Api) -> bool {
    api.inner.config.ssh_endpoint.is_some()
}

fn app_feature_json(api: &Api, app: &App, name: &str) -> ApiResult<Value> {
    match name {
        "ssh" => Ok(json!({
            "name": "ssh",
            "description": "Enable SSHing into the app.",
            "enabled": app.ssh_enabled && platform_ssh(api),
        })),
        "revisions" => Ok(json!({
            "name": "revisions",
            "description": "Enable versioning of an application",
            "enabled": true,
        })),
        _ => Err(ApiError::not_found("Feature")),
    }
}

async fn app_features(State(api): State<Api>, Path(guid): Path<String>) -> ApiResult<Response> {
    let app: App = require(&api, &guid).await?;
    let resources = vec![
        app_feature_json(&api, &app, "ssh")?,
        app_feature_json(&api, &app, "revisions")?,
    ];
    let params = ListParams::parse(None, &[], &[])?;
    Ok(ok(params.envelope(
        &api,
        &format!("/v3/apps/{guid}/features"),
        2,
        resources,
    )))
}

async fn app_feature(
    State(api): State<Api>,
    Path((guid, name)): Path<(String, String)>,
) -> ApiResult<Response> {
    let app: App = require(&api, &guid).await?;
    Ok(ok(app_feature_json(&api, &app, &name)?))
}

#[derive(Deserialize)]
struct FeatureUpdate {
    enabled: Option<bool>,
}

fn parse_enabled(body: &[u8]) -> ApiResult<bool> {
    let update: FeatureUpdate = parse_json(body)?;
    update
        .enabled
        .ok_or_else(|| ApiError::Unprocessable("Enabled must be a boolean".into()))
}

/// `PATCH /v3/apps/:guid/features/ssh` (`enable-ssh`, `disable-ssh`).
async fn patch_app_feature(
    State(api): State<Api>,
    Extension(p): Extension<Principal>,
    Path((guid, name)): Path<(String, String)>,
    body: Bytes,
) -> ApiResult<Response> {
    if name != "ssh" {
        return Err(ApiError::Unprocessable(format!(
            "Feature '{name}' cannot be changed"
        )));
    }
    let enabled = parse_enabled(&body)?;
    let mut tx = store::begin(&api.inner.pool).await?;
    let mut app: App = store::fetch(&mut tx, &guid).await?;
    app.ssh_enabled = enabled;
    app.updated_at = now();
    store::put(&mut tx, &app).await?;
    crate::apps::audit_app(
        &mut tx,
        "audit.app.update",
        &p,
        &app,
        json!({"request": {"enable_ssh": enabled}}),
    )
    .await?;
    tx.commit().await?;
    Ok(ok(app_feature_json(&api, &app, "ssh")?))
}

fn space_feature_json(api: &Api, space: &Space) -> Value {
    json!({
        "name": "ssh",
        "description": "Enable SSHing into apps in the space.",
        "enabled": space.allow_ssh && platform_ssh(api),
    })
}

async fn space_feature(
    State(api): State<Api>,
    Path((guid, name)): Path<(String, String)>,
) -> ApiResult<Response> {
    let space: Space = require(&api, &guid).await?;
    if name != "ssh" {
        return Err(ApiError::not_found("Feature"));
    }
    Ok(ok(space_feature_json(&api, &space)))
}

/// `PATCH /v3/spaces/:guid/features/ssh` (`allow-space-ssh`,
/// `disallow-space-ssh`; space managers, by [`crate::authz`]).
async fn patch_space_feature(
    State(api): State<Api>,
    Extension(p): Extension<Principal>,
    Path((guid, name)): Path<(String, String)>,
    body: Bytes,
) -> ApiResult<Response> {
    if name != "ssh" {
        return Err(ApiError::not_found("Feature"));
    }
    let enabled = parse_enabled(&body)?;
    let mut tx = store::begin(&api.inner.pool).await?;
    let mut space: Space = store::fetch(&mut tx, &guid).await?;
    space.allow_ssh = enabled;
    space.updated_at = now();
    store::put(&mut tx, &space).await?;
    audit(
        &mut tx,
        "audit.space.update",
        crate::orgs::user_actor(&p),
        EventParty {
            guid: space.guid.clone(),
            kind: "space".into(),
            name: space.name.clone(),
        },
        json!({"request": {"allow_ssh": enabled}}),
        Some(&space.guid),
        Some(&space.org_guid),
    )
    .await?;
    tx.commit().await?;
    Ok(ok(space_feature_json(&api, &space)))
}

/// Why SSH to the app is off, if it is (CF's `ssh_enabled` reasons).
fn ssh_off_reason(api: &Api, app: &App, space: &Space) -> Option<String> {
    if !platform_ssh(api) {
        Some("Disabled globally".into())
    } else if !space.allow_ssh {
        Some(format!("Disabled for space {}", space.name))
    } else if !app.ssh_enabled {
        Some("Disabled for app".into())
    } else {
        None
    }
}

async fn ssh_enabled(State(api): State<Api>, Path(guid): Path<String>) -> ApiResult<Response> {
    let mut c = api.inner.pool.acquire().await?;
    let (app, space, _) = app_context(&mut c, &guid).await?;
    let reason = ssh_off_reason(&api, &app, &space);
    Ok(ok(json!({
        "enabled": reason.is_none(),
        "reason": reason.unwrap_or_default(),
    })))
}

/// The app an SSH session was allowed into.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SshGrant {
    /// The app's guid.
    pub app_guid: String,
    /// The user it was granted to.
    pub user_name: String,
}

/// Decides an SSH login to instance `index` of a process, as CF does: the
/// user must be an admin or a developer of the app's space, SSH must be on
/// for the platform, the space and the app, and the instance must run. The
/// decision is an audit event (`audit.app.ssh-authorized` or
/// `audit.app.ssh-unauthorized`) and an `SSH` log line of the app.
pub(crate) async fn authorize(
    api: &Api,
    principal: Option<&Principal>,
    process_guid: &str,
    index: u32,
    instance_running: bool,
    remote: &str,
) -> ApiResult<Result<SshGrant, String>> {
    let mut c = api.inner.pool.acquire().await?;
    let Some(process) = store::get::<Process>(&mut c, process_guid).await? else {
        return Ok(Err(format!("no process {process_guid}")));
    };
    let (app, space, org) = app_context(&mut c, &process.app_guid).await?;
    let refusal = match principal {
        None => Some(
            "the one-time code or token is not valid (get a code with `ingot ssh-code`)"
                .to_string(),
        ),
        Some(p) => {
            let access = Access::load(&mut c, p).await?;
            if !access.can_read_space(&space.guid) {
                Some(format!(
                    "user {} has no access to app {}",
                    p.user_name, app.name
                ))
            } else if !access.can_write_space(&space.guid) {
                Some(format!(
                    "user {} is not a space developer of space {}",
                    p.user_name, space.name
                ))
            } else if let Some(reason) = ssh_off_reason(api, &app, &space) {
                Some(format!("SSH is off for app {}: {reason}", app.name))
            } else if !instance_running {
                Some(format!("app {} has no running instance {index}", app.name))
            } else {
                None
            }
        }
    };
    drop(c);
    let actor = match principal {
        Some(p) => crate::orgs::user_actor(p),
        None => EventParty {
            guid: String::new(),
            kind: "user".into(),
            name: "unknown".into(),
        },
    };
    let (kind, line) = match &refusal {
        None => (
            "audit.app.ssh-authorized",
            format!(
                "Successful remote access authorization for {} by {remote}",
                actor.name
            ),
        ),
        Some(reason) => (
            "audit.app.ssh-unauthorized",
            format!("Refused remote access by {remote}: {reason}"),
        ),
    };
    let mut tx = store::begin(&api.inner.pool).await?;
    audit(
        &mut tx,
        kind,
        actor.clone(),
        app_target(&app),
        json!({"index": index, "remote": remote}),
        Some(&space.guid),
        Some(&org.guid),
    )
    .await?;
    tx.commit().await?;
    api.inner.logs.emit(ingot_logs::Envelope::log(
        &app.guid,
        &index.to_string(),
        "SSH",
        line.into_bytes(),
        ingot_logs::LogKind::Out,
    ));
    Ok(match refusal {
        None => Ok(SshGrant {
            app_guid: app.guid,
            user_name: actor.name,
        }),
        Some(reason) => Err(reason),
    })
}
