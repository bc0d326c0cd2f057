//! Users and their organization and space roles: `/v3/roles`, `/v3/users`,
//! and the users of an organization or a space.
//!
//! Who may grant what follows CF: organization managers grant roles in their
//! organization and its spaces, space managers in their space, admins
//! anywhere. A space role needs a role in the space's organization first.

use axum::extract::{Path, RawQuery, State};
use axum::response::Response;
use axum::routing::get;
use axum::{Extension, Router};
use bytes::Bytes;
use serde::Deserialize;
use serde_json::json;
use sqlx::SqliteConnection;

use crate::authz::{Access, ORG_ROLES, SPACE_ROLES};
use crate::error::{ApiError, ApiResult};
use crate::http::{accepted_job, created, index, list, parse_json, show, Listed};
use crate::model::{new_guid, now, EventParty, Job, Org, Role, Space, User};
use crate::orgs::{audit, user_actor};
use crate::store::{self, Query};
use crate::{Api, Principal};

pub(crate) fn routes() -> Router<Api> {
    Router::new()
        .route("/v3/roles", get(index::<Role>).post(create_role))
        .route("/v3/roles/{guid}", get(show::<Role>).delete(delete_role))
        .route("/v3/users", get(index::<User>).post(create_user))
        .route("/v3/users/{guid}", get(show::<User>).delete(delete_user))
        .route("/v3/organizations/{guid}/users", get(org_users))
        .route("/v3/spaces/{guid}/users", get(space_users))
}

impl Listed for Role {
    const NAME: &'static str = "roles";
    const FILTERS: &'static [(&'static str, &'static str)] = &[
        ("guids", "guid"),
        ("types", "type"),
        ("user_guids", "user_guid"),
        ("space_guids", "space_guid"),
        ("organization_guids", "org_guid"),
    ];
}

impl Listed for User {
    const NAME: &'static str = "users";
    const FILTERS: &'static [(&'static str, &'static str)] =
        &[("guids", "guid"), ("usernames", "username")];
}

/// `{"data":{"guid"}}` or `{"data":{"username","origin"}}`.
#[derive(Debug, Deserialize)]
struct UserRef {
    data: UserRefData,
}

#[derive(Debug, Deserialize)]
struct UserRefData {
    guid: Option<String>,
    username: Option<String>,
    origin: Option<String>,
}

#[derive(Debug, Deserialize)]
struct NewRole {
    #[serde(rename = "type")]
    kind: Option<String>,
    relationships: Option<RoleRelationships>,
}

#[derive(Debug, Deserialize)]
struct RoleRelationships {
    user: Option<UserRef>,
    organization: Option<crate::apps::ToOne>,
    space: Option<crate::apps::ToOne>,
}

/// Finds the user a request names, creating the API's record of a user the
/// token server knows but the API has not seen yet.
async fn resolve_user(api: &Api, c: &mut SqliteConnection, user: &UserRefData) -> ApiResult<User> {
    let directory = api.user_directory();
    let guid = match (&user.guid, &user.username) {
        (Some(guid), _) => guid.clone(),
        (None, Some(name)) => {
            if let Some(u) = store::find_one::<User>(c, &Query::new().eq("username", name)).await? {
                return Ok(u);
            }
            let found = match &directory {
                Some(d) => d.user_guid(name, user.origin.as_deref()).await,
                None => None,
            };
            found.ok_or_else(|| {
                ApiError::Unprocessable(format!(
                    "No user exists with the username '{name}' and origin '{}'.",
                    user.origin.as_deref().unwrap_or("uaa")
                ))
            })?
        }
        (None, None) => {
            return Err(ApiError::Unprocessable(
                "Relationships User can't be blank".into(),
            ))
        }
    };
    if let Some(u) = store::get::<User>(c, &guid).await? {
        return Ok(u);
    }
    let username = match &directory {
        Some(d) => d.username(&guid).await,
        None => None,
    }
    .ok_or_else(|| {
        ApiError::Unprocessable(format!(
            "Invalid user. Ensure that the user '{guid}' exists and you have access to it."
        ))
    })?;
    let at = now();
    let record = User {
        guid,
        username,
        created_at: at.clone(),
        updated_at: at,
    };
    store::insert(c, &record).await?;
    Ok(record)
}

fn role_target(user: &User) -> EventParty {
    EventParty {
        guid: user.guid.clone(),
        kind: "user".into(),
        name: user.username.clone(),
    }
}

/// CF's audit event type for adding or removing a role, named after the
/// role: `audit.user.space_developer_add`, `audit.user.organization_user_remove`.
fn role_event(role: &Role, verb: &str) -> String {
    format!("audit.user.{}_{verb}", role.kind)
}

async fn create_role(
    State(api): State<Api>,
    Extension(p): Extension<Principal>,
    Extension(access): Extension<Access>,
    body: Bytes,
) -> ApiResult<Response> {
    let req: NewRole = parse_json(&body)?;
    let kind = req
        .kind
        .ok_or_else(|| ApiError::Unprocessable("Type must be one of the allowed types".into()))?;
    let is_org_role = ORG_ROLES.contains(&kind.as_str());
    if !is_org_role && !SPACE_ROLES.contains(&kind.as_str()) {
        let allowed: Vec<&str> = ORG_ROLES.iter().chain(SPACE_ROLES).copied().collect();
        return Err(ApiError::Unprocessable(format!(
            "Type must be one of the allowed types {}",
            allowed.join(", ")
        )));
    }
    let rels = req
        .relationships
        .ok_or_else(|| ApiError::Unprocessable("Relationships can't be blank".into()))?;
    let user_ref = rels
        .user
        .ok_or_else(|| ApiError::Unprocessable("Relationships User can't be blank".into()))?;
    let mut tx = store::begin(&api.inner.pool).await?;
    let (org, space) = if is_org_role {
        let guid = rels.organization.map(|o| o.data.guid).ok_or_else(|| {
            ApiError::Unprocessable(
                "Relationships Organization can't be blank for an organization role".into(),
            )
        })?;
        let org = match store::get::<Org>(&mut tx, &guid).await? {
            Some(org) if access.can_read_org(&org.guid) => org,
            _ => {
                return Err(ApiError::Unprocessable(
                    "Invalid organization. Ensure that the organization exists and you have access to it.".into(),
                ))
            }
        };
        if !access.can_manage_org(&org.guid) {
            return Err(ApiError::NotAuthorized);
        }
        (org, None)
    } else {
        let guid = rels.space.map(|s| s.data.guid).ok_or_else(|| {
            ApiError::Unprocessable("Relationships Space can't be blank for a space role".into())
        })?;
        let space = match store::get::<Space>(&mut tx, &guid).await? {
            Some(space) if access.can_read_space(&space.guid) => space,
            _ => {
                return Err(ApiError::Unprocessable(
                    "Invalid space. Ensure that the space exists and you have access to it.".into(),
                ))
            }
        };
        if !access.can_manage_space(&space.guid, &space.org_guid) {
            return Err(ApiError::NotAuthorized);
        }
        let org: Org = store::fetch(&mut tx, &space.org_guid).await?;
        (org, Some(space))
    };
    let user = resolve_user(&api, &mut tx, &user_ref.data).await?;
    let mut existing = Query::new()
        .eq("type", &kind)
        .eq("user_guid", &user.guid)
        .eq("org_guid", &org.guid);
    if let Some(space) = &space {
        existing = existing.eq("space_guid", &space.guid);
        let member = Query::new()
            .eq("user_guid", &user.guid)
            .eq("org_guid", &org.guid)
            .any_of("type", ORG_ROLES.iter().map(|r| r.to_string()).collect());
        let org_roles: Vec<Role> = store::find(&mut tx, &member).await?;
        if !org_roles.iter().any(|r| r.space_guid.is_none()) {
            return Err(ApiError::Unprocessable(format!(
                "Users cannot be assigned roles in a space if they do not have a role in that space's organization. \
                 Run `ingot set-org-role {} {} OrgUser` first.",
                user.username, org.name
            )));
        }
    }
    let duplicates: Vec<Role> = store::find(&mut tx, &existing).await?;
    if duplicates
        .iter()
        .any(|r| r.space_guid.as_deref() == space.as_ref().map(|s| s.guid.as_str()))
    {
        let place = match &space {
            Some(s) => format!("space '{}'", s.name),
            None => format!("organization '{}'", org.name),
        };
        return Err(ApiError::Unprocessable(format!(
            "User '{}' already has '{kind}' role in {place}.",
            user.username
        )));
    }
    let at = now();
    let role = Role {
        guid: new_guid(),
        kind,
        user_guid: user.guid.clone(),
        org_guid: org.guid.clone(),
        space_guid: space.as_ref().map(|s| s.guid.clone()),
        created_at: at.clone(),
        updated_at: at,
    };
    store::insert(&mut tx, &role).await?;
    audit(
        &mut tx,
        &role_event(&role, "add"),
        user_actor(&p),
        role_target(&user),
        json!({}),
        role.space_guid.as_deref(),
        Some(&role.org_guid),
    )
    .await?;
    tx.commit().await?;
    Ok(created(role.json(&api.inner.config.external_url)))
}

async fn delete_role(
    State(api): State<Api>,
    Extension(p): Extension<Principal>,
    Path(guid): Path<String>,
) -> ApiResult<Response> {
    let mut tx = store::begin(&api.inner.pool).await?;
    let role: Role = store::fetch(&mut tx, &guid).await?;
    if role.space_guid.is_none() && role.kind == "organization_user" {
        let others: Vec<Role> = store::find(
            &mut tx,
            &Query::new()
                .eq("user_guid", &role.user_guid)
                .eq("org_guid", &role.org_guid),
        )
        .await?;
        if others.iter().any(|r| r.guid != role.guid) {
            return Err(ApiError::Unprocessable(
                "Cannot remove the organization_user role while the user has other roles in the organization or its spaces; remove those first.".into(),
            ));
        }
    }
    store::delete::<Role>(&mut tx, &guid).await?;
    let user: Option<User> = store::get(&mut tx, &role.user_guid).await?;
    let target = user.map_or_else(
        || EventParty {
            guid: role.user_guid.clone(),
            kind: "user".into(),
            name: String::new(),
        },
        |u| role_target(&u),
    );
    audit(
        &mut tx,
        &role_event(&role, "remove"),
        user_actor(&p),
        target,
        json!({}),
        role.space_guid.as_deref(),
        Some(&role.org_guid),
    )
    .await?;
    let job = Job::completed("role.delete", None);
    store::insert(&mut tx, &job).await?;
    tx.commit().await?;
    Ok(accepted_job(&api, &job.guid))
}

#[derive(Debug, Deserialize)]
struct NewUser {
    guid: Option<String>,
    username: Option<String>,
    origin: Option<String>,
}

/// `POST /v3/users` (admins only, by [`crate::authz`]): makes a user of the
/// token server known to the API, by guid or by name.
async fn create_user(State(api): State<Api>, body: Bytes) -> ApiResult<Response> {
    let req: NewUser = parse_json(&body)?;
    let mut tx = store::begin(&api.inner.pool).await?;
    if let Some(guid) = &req.guid {
        if store::get::<User>(&mut tx, guid).await?.is_some() {
            return Err(ApiError::Unprocessable(format!(
                "User with guid '{guid}' already exists."
            )));
        }
    }
    let user = resolve_user(
        &api,
        &mut tx,
        &UserRefData {
            guid: req.guid,
            username: req.username,
            origin: req.origin,
        },
    )
    .await?;
    tx.commit().await?;
    Ok(created(user.json(&api.inner.config.external_url)))
}

/// `DELETE /v3/users/:guid` (admins only): forgets the user and its roles.
/// The token server's account is the token server's (`DELETE /Users/:id`).
async fn delete_user(State(api): State<Api>, Path(guid): Path<String>) -> ApiResult<Response> {
    let mut tx = store::begin(&api.inner.pool).await?;
    store::fetch::<User>(&mut tx, &guid).await?;
    let roles: Vec<Role> = store::find(&mut tx, &Query::new().eq("user_guid", &guid)).await?;
    for role in roles {
        store::delete::<Role>(&mut tx, &role.guid).await?;
    }
    store::delete::<User>(&mut tx, &guid).await?;
    let job = Job::completed("user.delete", None);
    store::insert(&mut tx, &job).await?;
    tx.commit().await?;
    Ok(accepted_job(&api, &job.guid))
}

/// The users with any role in the organization (or space).
async fn users_with_roles(api: &Api, roles: Query) -> ApiResult<Vec<String>> {
    let mut c = api.inner.pool.acquire().await?;
    let roles: Vec<Role> = store::find(&mut c, &roles).await?;
    let mut users: Vec<String> = roles.into_iter().map(|r| r.user_guid).collect();
    users.sort();
    users.dedup();
    Ok(users)
}

async fn org_users(
    State(api): State<Api>,
    Extension(access): Extension<Access>,
    Path(guid): Path<String>,
    RawQuery(raw): RawQuery,
) -> ApiResult<Response> {
    crate::http::require::<Org>(&api, &guid).await?;
    let path = format!("/v3/organizations/{guid}/users");
    users_of(
        &api,
        &access,
        raw,
        &path,
        Query::new().eq("org_guid", &guid),
    )
    .await
}

async fn space_users(
    State(api): State<Api>,
    Extension(access): Extension<Access>,
    Path(guid): Path<String>,
    RawQuery(raw): RawQuery,
) -> ApiResult<Response> {
    crate::http::require::<Space>(&api, &guid).await?;
    let path = format!("/v3/spaces/{guid}/users");
    users_of(
        &api,
        &access,
        raw,
        &path,
        Query::new().eq("space_guid", &guid),
    )
    .await
}

/// The list of users holding the roles `roles` selects.
async fn users_of(
    api: &Api,
    access: &Access,
    raw: Option<String>,
    path: &str,
    roles: Query,
) -> ApiResult<Response> {
    let users = users_with_roles(api, roles).await?;
    list::<User>(
        api,
        access,
        raw.as_deref(),
        path,
        Query::new().any_of("guid", users),
    )
    .await
}

/// Gives the creator of an organization its manager and user roles, as CF
/// does when `user_org_creation` lets a non-admin create one.
pub(crate) async fn grant_creator(
    c: &mut SqliteConnection,
    p: &Principal,
    org_guid: &str,
) -> ApiResult<()> {
    if store::get::<User>(c, &p.user_guid).await?.is_none() {
        let at = now();
        store::insert(
            c,
            &User {
                guid: p.user_guid.clone(),
                username: p.user_name.clone(),
                created_at: at.clone(),
                updated_at: at,
            },
        )
        .await?;
    }
    for kind in ["organization_user", "organization_manager"] {
        let at = now();
        store::insert(
            c,
            &Role {
                guid: new_guid(),
                kind: kind.into(),
                user_guid: p.user_guid.clone(),
                org_guid: org_guid.to_string(),
                space_guid: None,
                created_at: at.clone(),
                updated_at: at,
            },
        )
        .await?;
    }
    Ok(())
}
