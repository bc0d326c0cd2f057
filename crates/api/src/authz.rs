//! Who may see and change what: Cloud Foundry's global scopes and its
//! organization and space roles.
//!
//! Every `/v3` request passes [`authorize`] once, in the middleware, before
//! its handler runs: it names the resource the path (or, for a create, the
//! body's relationship) points at, finds the space or organization that owns
//! it, and applies CF's permission matrix. What a user cannot see answers 404
//! exactly as if it did not exist; what a user can see but not change answers
//! 403 `CF-NotAuthorized`. Lists are narrowed to what the user can see by
//! [`Access::narrow`], which every list goes through.

use std::collections::{BTreeSet, HashMap};

use axum::body::Body;
use axum::extract::Request;
use axum::http::Method;
use serde_json::Value;
use sqlx::SqliteConnection;

use crate::error::{ApiError, ApiResult};
use crate::model::{App, Build, Droplet, Event, Package, Process, Role, Route, Space, Task};
use crate::store::{self, Doc, Query};
use crate::{Api, Principal};

/// The organization roles, as CF names them.
pub(crate) const ORG_ROLES: &[&str] = &[
    "organization_user",
    "organization_auditor",
    "organization_manager",
    "organization_billing_manager",
];

/// The space roles, as CF names them.
pub(crate) const SPACE_ROLES: &[&str] = &[
    "space_developer",
    "space_auditor",
    "space_manager",
    "space_supporter",
];

/// How a resource kind's list is narrowed to what a user can see.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scope {
    /// Platform-wide resources everyone with a read scope sees (stacks,
    /// shared domains, buildpacks, jobs).
    Everyone,
    /// Owned by a space whose guid is in this field.
    Space(&'static str),
    /// Owned by an app whose guid is in this field.
    App(&'static str),
    /// An organization itself (its guid is in this field).
    Org(&'static str),
    /// Roles: visible in the organizations the user can see.
    Role,
    /// Users: the user and those with a role in an organization it can see.
    User,
}

/// What the token's scopes grant platform-wide.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Global {
    /// `cloud_controller.admin`: everything.
    Admin,
    /// `cloud_controller.admin_read_only`: reads everything, secrets included.
    ReadAll,
    /// `cloud_controller.global_auditor`: reads everything but secrets.
    Auditor,
    /// Only what the user's roles grant.
    None,
}

/// A user's rights for one request: its global scope and its roles.
#[derive(Debug, Clone)]
pub(crate) struct Access {
    global: Global,
    user_guid: String,
    org_roles: HashMap<String, Vec<String>>,
    space_roles: HashMap<String, Vec<String>>,
    readable_orgs: BTreeSet<String>,
    readable_spaces: BTreeSet<String>,
}

impl Access {
    /// Loads the user's roles. Organization managers read every space of
    /// their organizations; any role in an organization or one of its
    /// spaces makes the organization visible.
    pub(crate) async fn load(c: &mut SqliteConnection, principal: &Principal) -> ApiResult<Self> {
        let has = |s: &str| principal.scopes.iter().any(|x| x == s);
        let global = if has("cloud_controller.admin") {
            Global::Admin
        } else if has("cloud_controller.admin_read_only") {
            Global::ReadAll
        } else if has("cloud_controller.global_auditor") {
            Global::Auditor
        } else {
            Global::None
        };
        let mut access = Access {
            global,
            user_guid: principal.user_guid.clone(),
            org_roles: HashMap::new(),
            space_roles: HashMap::new(),
            readable_orgs: BTreeSet::new(),
            readable_spaces: BTreeSet::new(),
        };
        if global != Global::None {
            return Ok(access);
        }
        let roles: Vec<Role> =
            store::find(c, &Query::new().eq("user_guid", &principal.user_guid)).await?;
        for role in roles {
            access.readable_orgs.insert(role.org_guid.clone());
            match role.space_guid {
                Some(space) => {
                    access.readable_spaces.insert(space.clone());
                    access.space_roles.entry(space).or_default().push(role.kind);
                }
                None => access
                    .org_roles
                    .entry(role.org_guid)
                    .or_default()
                    .push(role.kind),
            }
        }
        let managed: Vec<String> = access
            .org_roles
            .iter()
            .filter(|(_, kinds)| kinds.iter().any(|k| k == "organization_manager"))
            .map(|(org, _)| org.clone())
            .collect();
        if !managed.is_empty() {
            let spaces: Vec<Space> =
                store::find(c, &Query::new().any_of("org_guid", managed)).await?;
            access
                .readable_spaces
                .extend(spaces.into_iter().map(|s| s.guid));
        }
        Ok(access)
    }

    /// Whether the token carries `cloud_controller.admin`.
    pub(crate) fn is_admin(&self) -> bool {
        self.global == Global::Admin
    }

    /// Whether a global scope lets the user read everything.
    pub(crate) fn reads_everything(&self) -> bool {
        self.global != Global::None
    }

    fn org_role(&self, org: &str, kind: &str) -> bool {
        self.org_roles
            .get(org)
            .is_some_and(|kinds| kinds.iter().any(|k| k == kind))
    }

    fn space_role(&self, space: &str, kind: &str) -> bool {
        self.space_roles
            .get(space)
            .is_some_and(|kinds| kinds.iter().any(|k| k == kind))
    }

    /// Whether the organization is visible.
    pub(crate) fn can_read_org(&self, org: &str) -> bool {
        self.reads_everything() || self.readable_orgs.contains(org)
    }

    /// Whether the space and what it holds are visible.
    pub(crate) fn can_read_space(&self, space: &str) -> bool {
        self.reads_everything() || self.readable_spaces.contains(space)
    }

    /// Whether the user may change apps, routes and the like in the space:
    /// admins and space developers.
    pub(crate) fn can_write_space(&self, space: &str) -> bool {
        self.is_admin() || self.space_role(space, "space_developer")
    }

    /// Whether the user may read an app's environment and download its bits.
    pub(crate) fn can_read_secrets(&self, space: &str) -> bool {
        matches!(self.global, Global::Admin | Global::ReadAll)
            || self.space_role(space, "space_developer")
    }

    /// Whether the user may manage the space (rename it, its roles, its ssh
    /// setting): admins, its space managers and its organization's managers.
    pub(crate) fn can_manage_space(&self, space: &str, org: &str) -> bool {
        self.is_admin() || self.space_role(space, "space_manager") || self.can_manage_org(org)
    }

    /// Whether the user may manage the organization: admins and its
    /// organization managers.
    pub(crate) fn can_manage_org(&self, org: &str) -> bool {
        self.is_admin() || self.org_role(org, "organization_manager")
    }

    /// `q` narrowed to the documents of `T` the user can see.
    pub(crate) async fn narrow<T: Doc>(
        &self,
        c: &mut SqliteConnection,
        q: Query,
    ) -> ApiResult<Query> {
        if self.reads_everything() {
            return Ok(q);
        }
        let spaces = || self.readable_spaces.iter().cloned().collect::<Vec<_>>();
        let orgs = || self.readable_orgs.iter().cloned().collect::<Vec<_>>();
        Ok(match T::SCOPE {
            Scope::Everyone => q,
            Scope::Space(field) => q.any_of(field, spaces()),
            Scope::Org(field) => q.any_of(field, orgs()),
            Scope::Role => q.any_of("org_guid", orgs()),
            Scope::App(field) => {
                let apps: Vec<App> =
                    store::find(c, &Query::new().any_of("space_guid", spaces())).await?;
                q.any_of(field, apps.into_iter().map(|a| a.guid).collect())
            }
            Scope::User => {
                let roles: Vec<Role> =
                    store::find(c, &Query::new().any_of("org_guid", orgs())).await?;
                let mut users: BTreeSet<String> = roles.into_iter().map(|r| r.user_guid).collect();
                users.insert(self.user_guid.clone());
                q.any_of("guid", users.into_iter().collect())
            }
        })
    }
}

/// What a request needs of the space or organization it touches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Need {
    Read,
    Secret,
    Write,
    ManageSpace,
    ManageOrg,
    Admin,
}

/// The owner of the resource a request touches.
enum Owner {
    Space { space: String, org: String },
    Org(String),
}

/// Checks `req` against the permission matrix; returns it (its body read and
/// put back when a create's target is in the body) or the refusal.
pub(crate) async fn authorize(api: &Api, access: &Access, req: Request) -> ApiResult<Request> {
    if access.is_admin() {
        return Ok(req);
    }
    let method = req.method().clone();
    let path = req.uri().path().trim_end_matches('/').to_string();
    let segments: Vec<&str> = path.split('/').skip(1).collect();
    let read = method == Method::GET || method == Method::HEAD;
    let mut c = api.inner.pool.acquire().await?;
    match segments.as_slice() {
        ["v3", kind, guid, rest @ ..] => {
            check_resource(&mut c, access, &method, kind, guid, rest).await?;
            Ok(req)
        }
        ["v3", kind] if !read => check_create(&mut c, access, kind, req).await,
        _ => Ok(req),
    }
}

/// A request on `/v3/<kind>/<guid>/<rest…>`.
async fn check_resource(
    c: &mut SqliteConnection,
    access: &Access,
    method: &Method,
    kind: &str,
    guid: &str,
    rest: &[&str],
) -> ApiResult<()> {
    let read = *method == Method::GET || *method == Method::HEAD;
    let need = match (kind, rest) {
        ("apps", ["env" | "environment_variables" | "manifest"]) if read => Need::Secret,
        ("revisions", ["environment_variables"]) if read => Need::Secret,
        ("service_instances", ["credentials"]) => Need::Secret,
        ("service_credential_bindings", ["details"]) => Need::Secret,
        ("packages" | "droplets", ["download"]) => Need::Secret,
        // manifest_diff is a POST that changes nothing, but CF asks for the
        // rights that applying the manifest needs.
        ("spaces", ["actions", "apply_manifest"] | ["manifest_diff"] | ["routes"]) => Need::Write,
        ("spaces", [] | ["features", _]) if !read => {
            if *method == Method::DELETE {
                Need::ManageOrg
            } else {
                Need::ManageSpace
            }
        }
        ("spaces", ["relationships", _]) if !read => Need::ManageOrg,
        ("organizations", []) if *method == Method::DELETE => Need::Admin,
        ("organizations", _) if !read => Need::ManageOrg,
        ("roles", _) if !read => Need::ManageSpace,
        ("users", _) if !read => Need::Admin,
        _ if read => Need::Read,
        _ => Need::Write,
    };
    let owner = match kind {
        "organizations" => Some(Owner::Org(guid.to_string())),
        "spaces" => match store::get::<Space>(c, guid).await? {
            Some(s) => Some(Owner::Space {
                space: s.guid,
                org: s.org_guid,
            }),
            None => None,
        },
        "apps" => app_owner(c, Some(guid.to_string())).await?,
        "packages" => {
            let app = store::get::<Package>(c, guid).await?.map(|p| p.app_guid);
            app_owner(c, app).await?
        }
        "builds" => {
            let app = store::get::<Build>(c, guid).await?.map(|b| b.app_guid);
            app_owner(c, app).await?
        }
        "droplets" => {
            let app = store::get::<Droplet>(c, guid).await?.map(|d| d.app_guid);
            app_owner(c, app).await?
        }
        "processes" => {
            let app = store::get::<Process>(c, guid).await?.map(|p| p.app_guid);
            app_owner(c, app).await?
        }
        "tasks" => {
            let app = store::get::<Task>(c, guid).await?.map(|t| t.app_guid);
            app_owner(c, app).await?
        }
        "service_instances" => match store::get::<crate::services::ServiceInstance>(c, guid).await?
        {
            Some(i) => space_owner(c, &i.space_guid).await?,
            None => None,
        },
        "service_credential_bindings" => {
            match store::get::<crate::services::Binding>(c, guid).await? {
                // A service key has no app: it belongs to its instance's space.
                Some(b) => match b.app_guid {
                    Some(app) => app_owner(c, Some(app)).await?,
                    None => space_owner(c, &b.space_guid).await?,
                },
                None => None,
            }
        }
        // A space-scoped broker belongs to its space; global ones are the
        // platform's (reads are narrowed by the handler).
        "service_brokers" => {
            match store::get::<crate::service_brokers::ServiceBroker>(c, guid).await? {
                Some(b) => match b.space_guid {
                    Some(space) => space_owner(c, &space).await?,
                    None => return admin_only(access, read, ""),
                },
                None => None,
            }
        }
        "deployments" => {
            let app = store::get::<crate::deployments::Deployment>(c, guid)
                .await?
                .map(|d| d.app_guid);
            app_owner(c, app).await?
        }
        "revisions" => {
            let app = store::get::<crate::deployments::Revision>(c, guid)
                .await?
                .map(|r| r.app_guid);
            app_owner(c, app).await?
        }
        "routes" => match store::get::<Route>(c, guid).await? {
            Some(r) => space_owner(c, &r.space_guid).await?,
            None => None,
        },
        "roles" => match store::get::<Role>(c, guid).await? {
            Some(r) => Some(match r.space_guid {
                Some(space) => Owner::Space {
                    space,
                    org: r.org_guid,
                },
                None => Owner::Org(r.org_guid),
            }),
            None => None,
        },
        "audit_events" => match store::get::<Event>(c, guid).await? {
            Some(e) => match (e.space_guid, e.org_guid) {
                (Some(space), org) => Some(Owner::Space {
                    space,
                    org: org.unwrap_or_default(),
                }),
                (None, Some(org)) => Some(Owner::Org(org)),
                (None, None) => return admin_only(access, read, "Event"),
            },
            None => None,
        },
        "users" => {
            if read && guid != access.user_guid {
                let visible = access
                    .narrow::<crate::model::User>(c, Query::new().eq("guid", guid))
                    .await?;
                if store::find_one::<crate::model::User>(c, &visible)
                    .await?
                    .is_none()
                {
                    return Err(ApiError::not_found("User"));
                }
            }
            return if need == Need::Admin {
                Err(ApiError::NotAuthorized)
            } else {
                Ok(())
            };
        }
        // Security groups and quotas: who may see or change one depends on
        // its global switches and the spaces or organizations it names,
        // which their handlers check (CF's matrix lets space and org
        // managers bind groups and org managers write space quotas).
        "security_groups" | "organization_quotas" | "space_quotas" => return Ok(()),
        // Platform-wide kinds: stacks, domains, buildpacks, feature flags,
        // environment variable groups, jobs. Everyone reads; admins write.
        _ => return admin_only(access, read, ""),
    };
    // A missing resource is left to the handler, whose 404 names its kind.
    let Some(owner) = owner else { return Ok(()) };
    let not_found = || ApiError::not_found(kind_name(kind));
    match owner {
        Owner::Org(org) => {
            if !access.can_read_org(&org) {
                return Err(not_found());
            }
            let allowed = match need {
                Need::Read | Need::Secret => true,
                Need::Admin => access.is_admin(),
                _ => access.can_manage_org(&org),
            };
            if allowed {
                Ok(())
            } else {
                Err(ApiError::NotAuthorized)
            }
        }
        Owner::Space { space, org } => {
            if !access.can_read_space(&space) {
                return Err(not_found());
            }
            let allowed = match need {
                Need::Read => true,
                Need::Secret => access.can_read_secrets(&space),
                Need::Write => access.can_write_space(&space),
                Need::ManageSpace => access.can_manage_space(&space, &org),
                Need::ManageOrg => access.can_manage_org(&org),
                Need::Admin => access.is_admin(),
            };
            if allowed {
                Ok(())
            } else {
                Err(ApiError::NotAuthorized)
            }
        }
    }
}

fn admin_only(access: &Access, read: bool, _kind: &str) -> ApiResult<()> {
    if read || access.is_admin() {
        Ok(())
    } else {
        Err(ApiError::NotAuthorized)
    }
}

/// CF's name for a kind in its "… not found" message.
fn kind_name(kind: &str) -> &'static str {
    match kind {
        "organizations" => "Organization",
        "spaces" => "Space",
        "apps" => "App",
        "packages" => "Package",
        "builds" => "Build",
        "droplets" => "Droplet",
        "processes" => "Process",
        "tasks" => "Task",
        "deployments" => "Deployment",
        "revisions" => "Revision",
        "service_instances" => "Service instance",
        "service_credential_bindings" => "Service credential binding",
        "service_brokers" => "Service broker",
        "routes" => "Route",
        "roles" => "Role",
        "audit_events" => "Event",
        _ => "Resource",
    }
}

async fn space_owner(c: &mut SqliteConnection, space: &str) -> ApiResult<Option<Owner>> {
    Ok(store::get::<Space>(c, space).await?.map(|s| Owner::Space {
        space: s.guid,
        org: s.org_guid,
    }))
}

async fn app_owner(c: &mut SqliteConnection, app: Option<String>) -> ApiResult<Option<Owner>> {
    let Some(app) = app else { return Ok(None) };
    match store::get::<App>(c, &app).await? {
        Some(app) => space_owner(c, &app.space_guid).await,
        None => Ok(None),
    }
}

/// The largest create body read here; creates are small JSON documents.
const CREATE_BODY_LIMIT: usize = 1 << 20;

/// `POST /v3/<kind>`: the target space or organization is in the body.
async fn check_create(
    c: &mut SqliteConnection,
    access: &Access,
    kind: &str,
    req: Request,
) -> ApiResult<Request> {
    // Kinds whose handler checks the rights itself (it needs more of the
    // body than its owner), or that anyone with the write scope may use.
    if matches!(
        kind,
        "roles"
            | "resource_matches"
            | "organizations"
            | "security_groups"
            | "organization_quotas"
            | "space_quotas"
    ) {
        return Ok(req);
    }
    if !matches!(
        kind,
        "apps"
            | "packages"
            | "builds"
            | "routes"
            | "spaces"
            | "deployments"
            | "service_instances"
            | "service_credential_bindings"
            | "service_brokers"
    ) {
        return Err(ApiError::NotAuthorized);
    }
    let (parts, body) = req.into_parts();
    let bytes = axum::body::to_bytes(body, CREATE_BODY_LIMIT)
        .await
        .map_err(|_| ApiError::MessageParse("invalid request body".into()))?;
    // A body that does not parse is left to the handler's own error.
    let json: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    let rel = |name: &str| {
        json["relationships"][name]["data"]["guid"]
            .as_str()
            .map(str::to_string)
    };
    let invalid = |what: &str| {
        ApiError::Unprocessable(format!(
            "Invalid {what}. Ensure that the {what} exists and you have access to it."
        ))
    };
    let (owner, need, what) = match kind {
        "spaces" => (
            rel("organization").map(Owner::Org),
            Need::ManageOrg,
            "organization",
        ),
        "deployments" | "service_credential_bindings" => {
            (app_owner(c, rel("app")).await?, Need::Write, "app")
        }
        "apps" | "routes" | "service_instances" | "service_brokers" => match rel("space") {
            Some(space) => (space_owner(c, &space).await?, Need::Write, "space"),
            None => (None, Need::Write, "space"),
        },
        "packages" => {
            let source = parts.uri.query().and_then(|q| {
                serde_urlencoded::from_str::<Vec<(String, String)>>(q)
                    .ok()?
                    .into_iter()
                    .find(|(k, _)| k == "source_guid")
                    .map(|(_, v)| v)
            });
            if let Some(source) = source {
                let app = store::get::<Package>(c, &source).await?.map(|p| p.app_guid);
                let readable = match app_owner(c, app).await? {
                    Some(Owner::Space { space, .. }) => access.can_read_secrets(&space),
                    _ => false,
                };
                if !readable {
                    return Err(ApiError::not_found("Package"));
                }
            }
            (app_owner(c, rel("app")).await?, Need::Write, "app")
        }
        _ => {
            let package = json["package"]["guid"].as_str().map(str::to_string);
            let app = match package {
                Some(p) => store::get::<Package>(c, &p).await?.map(|p| p.app_guid),
                None => None,
            };
            (app_owner(c, app).await?, Need::Write, "package")
        }
    };
    // No owner named or found: the handler gives its own 422.
    if let Some(owner) = owner {
        let (visible, allowed) = match owner {
            Owner::Org(org) => (access.can_read_org(&org), access.can_manage_org(&org)),
            Owner::Space { space, .. } => (
                access.can_read_space(&space),
                need == Need::Write && access.can_write_space(&space),
            ),
        };
        if !visible {
            return Err(invalid(what));
        }
        if !allowed {
            return Err(ApiError::NotAuthorized);
        }
    }
    Ok(Request::from_parts(parts, Body::from(bytes)))
}
