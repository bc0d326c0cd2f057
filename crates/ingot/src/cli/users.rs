//! Organizations, spaces, users and roles: `create-org`, `create-space`,
//! `create-user`, `delete-user`, `set-org-role`, `unset-org-role`,
//! `set-space-role`, `unset-space-role`, `org-users`, `space-users`, with
//! cf's names for the roles (`OrgManager`, `SpaceDeveloper`, …).

use anyhow::anyhow;
use clap::Args;
use ingot_client::people::RoleTarget;
use ingot_client::resources::{Organization, Space};
use serde::Serialize;

use super::{ui, OrExplain as _, Session};

/// cf's role names and the API's.
const ROLE_NAMES: &[(&str, &str)] = &[
    ("OrgManager", "organization_manager"),
    ("BillingManager", "organization_billing_manager"),
    ("OrgAuditor", "organization_auditor"),
    ("OrgUser", "organization_user"),
    ("SpaceManager", "space_manager"),
    ("SpaceDeveloper", "space_developer"),
    ("SpaceAuditor", "space_auditor"),
    ("SpaceSupporter", "space_supporter"),
];

/// The API's name of a cf role name (case-insensitive), if it is one of the
/// given scope (`organization_` or `space_`).
fn api_role(name: &str, scope: &str) -> anyhow::Result<&'static str> {
    let allowed: Vec<&str> = ROLE_NAMES
        .iter()
        .filter(|(_, api)| api.starts_with(scope))
        .map(|(cf, _)| *cf)
        .collect();
    ROLE_NAMES
        .iter()
        .find(|(cf, api)| cf.eq_ignore_ascii_case(name) && api.starts_with(scope))
        .map(|(_, api)| *api)
        .ok_or_else(|| anyhow!("unknown role {name}: use one of {}", allowed.join(", ")))
}

/// cf's name of an API role.
fn cf_role(api: &str) -> &str {
    ROLE_NAMES
        .iter()
        .find(|(_, a)| *a == api)
        .map_or(api, |(cf, _)| *cf)
}

/// Flags of `create-org`.
#[derive(Args)]
pub struct CreateOrgArgs {
    /// The new organization's name.
    name: String,
}

/// Flags of `create-space`.
#[derive(Args)]
pub struct CreateSpaceArgs {
    /// The new space's name.
    name: String,
    /// The organization (the targeted one when omitted).
    #[arg(short = 'o')]
    org: Option<String>,
}

/// Flags of `delete-org`.
#[derive(Args)]
pub struct DeleteOrgArgs {
    /// The organization.
    name: String,
    /// Do not ask for confirmation.
    #[arg(short = 'f')]
    force: bool,
}

/// Flags of `delete-space`.
#[derive(Args)]
pub struct DeleteSpaceArgs {
    /// The space.
    name: String,
    /// The organization (the targeted one when omitted).
    #[arg(short = 'o')]
    org: Option<String>,
    /// Do not ask for confirmation.
    #[arg(short = 'f')]
    force: bool,
}

/// Flags of `create-user`.
#[derive(Args)]
pub struct CreateUserArgs {
    /// The user name.
    username: String,
    /// The password.
    password: String,
}

/// Flags of `delete-user`.
#[derive(Args)]
pub struct DeleteUserArgs {
    /// The user name.
    username: String,
    /// Do not ask for confirmation.
    #[arg(short = 'f')]
    force: bool,
}

/// Flags of `set-org-role` and `unset-org-role`.
#[derive(Args)]
pub struct OrgRoleArgs {
    /// The user name.
    username: String,
    /// The organization.
    org: String,
    /// OrgManager, BillingManager or OrgAuditor.
    role: String,
}

/// Flags of `set-space-role` and `unset-space-role`.
#[derive(Args)]
pub struct SpaceRoleArgs {
    /// The user name.
    username: String,
    /// The organization.
    org: String,
    /// The space.
    space: String,
    /// SpaceManager, SpaceDeveloper, SpaceAuditor or SpaceSupporter.
    role: String,
}

/// Flags of `org-users`.
#[derive(Args)]
pub struct OrgUsersArgs {
    /// The organization.
    org: String,
    /// Print machine-readable JSON instead of a table.
    #[arg(long)]
    json: bool,
}

/// Flags of `space-users`.
#[derive(Args)]
pub struct SpaceUsersArgs {
    /// The organization.
    org: String,
    /// The space.
    space: String,
    /// Print machine-readable JSON instead of a table.
    #[arg(long)]
    json: bool,
}

async fn find_org(session: &Session, name: &str) -> anyhow::Result<Organization> {
    session
        .client()
        .organizations(Some(name))
        .await
        .or_explain(format!("cannot look up org {name}"))?
        .into_iter()
        .next()
        .ok_or_else(|| {
            anyhow!("org {name} not found: run `ingot orgs` to see the orgs you can see")
        })
}

async fn find_space(session: &Session, org: &Organization, name: &str) -> anyhow::Result<Space> {
    session
        .client()
        .spaces(&org.guid, Some(name))
        .await
        .or_explain(format!("cannot look up space {name}"))?
        .into_iter()
        .next()
        .ok_or_else(|| {
            anyhow!(
                "space {name} not found in org {}: run `ingot spaces` to see the spaces",
                org.name
            )
        })
}

/// `ingot create-org NAME`: creates it and makes the creator its manager.
pub(crate) async fn create_org(args: CreateOrgArgs) -> anyhow::Result<()> {
    let mut session = Session::open()?;
    let user = session.user();
    println!("Creating org {} as {user}...", args.name);
    let org = session
        .client()
        .create_organization(&args.name)
        .await
        .or_explain(format!("cannot create org {}", args.name))?;
    for role in ["organization_user", "organization_manager"] {
        session
            .client()
            .set_role(&user, role, RoleTarget::Org(&org.guid))
            .await
            .or_explain(format!("cannot make {user} a manager of org {}", org.name))?;
    }
    session.keep_tokens();
    println!(
        "OK\n\nTIP: run `ingot target -o {}` to target the new org",
        org.name
    );
    Ok(())
}

/// `ingot create-space NAME [-o ORG]`: creates it and makes the creator its
/// manager and developer, as cf does.
pub(crate) async fn create_space(args: CreateSpaceArgs) -> anyhow::Result<()> {
    let mut session = Session::open()?;
    let org = org_or_target(&mut session, args.org.as_deref()).await?;
    let user = session.user();
    println!(
        "Creating space {} in org {} as {user}...",
        args.name, org.name
    );
    let space = session
        .client()
        .create_space(&org.guid, &args.name)
        .await
        .or_explain(format!(
            "cannot create space {} in org {}",
            args.name, org.name
        ))?;
    // A space role needs an org role first; the creator becomes an org
    // user if it is not one already, as cf does.
    match session
        .client()
        .set_role(&user, "organization_user", RoleTarget::Org(&org.guid))
        .await
    {
        Err(e) if !(e.status() == Some(422) && e.to_string().contains("already has")) => {
            return Err(super::explain(
                format!("cannot make {user} a user of org {}", org.name),
                e,
            ));
        }
        _ => {}
    }
    for role in ["space_manager", "space_developer"] {
        session
            .client()
            .set_role(&user, role, RoleTarget::Space(&space.guid))
            .await
            .or_explain(format!("cannot give {user} a role in space {}", space.name))?;
    }
    session.keep_tokens();
    println!(
        "OK\n\nTIP: run `ingot target -o {} -s {}` to target the new space",
        org.name, space.name
    );
    Ok(())
}

/// How long a recursive delete may take before the CLI stops waiting.
const DELETE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(300);

/// The organization named by `-o`, or the targeted one.
async fn org_or_target(session: &mut Session, name: Option<&str>) -> anyhow::Result<Organization> {
    match name {
        Some(name) => find_org(session, name).await,
        None => {
            let org = session.config_mut().org.clone().ok_or_else(|| {
                anyhow!("no org targeted: run `ingot target -o ORG` or pass -o ORG")
            })?;
            Ok(Organization {
                guid: org.guid,
                name: org.name,
            })
        }
    }
}

/// Asks before a recursive delete unless `force`; says so when cancelled.
fn confirm_delete(force: bool, what: &str) -> anyhow::Result<bool> {
    if force || ui::confirm(&format!("Really delete the {what} and everything in it?"))? {
        return Ok(true);
    }
    println!("Delete cancelled");
    Ok(false)
}

/// After a delete: forgets the target if it pointed at what is gone (an
/// org takes its space with it), else just keeps refreshed tokens.
fn forget_target(
    session: &mut Session,
    org: Option<&str>,
    space: Option<&str>,
) -> anyhow::Result<()> {
    let config = session.config_mut();
    let org_gone = org.is_some() && config.org.as_ref().map(|o| o.guid.as_str()) == org;
    let space_gone =
        org_gone || (space.is_some() && config.space.as_ref().map(|s| s.guid.as_str()) == space);
    if org_gone {
        config.org = None;
    }
    if space_gone {
        config.space = None;
        session.save()?;
    } else {
        session.keep_tokens();
    }
    println!("OK");
    Ok(())
}

/// `ingot delete-org NAME [-f]`: the org, its spaces, and all their apps.
pub(crate) async fn delete_org(args: DeleteOrgArgs) -> anyhow::Result<()> {
    let mut session = Session::open()?;
    if !confirm_delete(args.force, &format!("org {}", args.name))? {
        return Ok(());
    }
    println!("Deleting org {} as {}...", args.name, session.user());
    let org = find_org(&session, &args.name).await?;
    session
        .client()
        .delete_organization(&org.guid, DELETE_TIMEOUT)
        .await
        .or_explain(format!("cannot delete org {}", org.name))?;
    forget_target(&mut session, Some(&org.guid), None)
}

/// `ingot delete-space NAME [-o ORG] [-f]`: the space and all its apps.
pub(crate) async fn delete_space(args: DeleteSpaceArgs) -> anyhow::Result<()> {
    let mut session = Session::open()?;
    let org = org_or_target(&mut session, args.org.as_deref()).await?;
    if !confirm_delete(args.force, &format!("space {}", args.name))? {
        return Ok(());
    }
    println!(
        "Deleting space {} in org {} as {}...",
        args.name,
        org.name,
        session.user()
    );
    let space = find_space(&session, &org, &args.name).await?;
    session
        .client()
        .delete_space(&space.guid, DELETE_TIMEOUT)
        .await
        .or_explain(format!("cannot delete space {}", space.name))?;
    forget_target(&mut session, None, Some(&space.guid))
}

/// `ingot create-user NAME PASSWORD`.
pub(crate) async fn create_user(args: CreateUserArgs) -> anyhow::Result<()> {
    let mut session = Session::open()?;
    println!("Creating user {} as {}...", args.username, session.user());
    session
        .client()
        .create_user(&args.username, &args.password)
        .await
        .or_explain(format!("cannot create user {}", args.username))?;
    session.keep_tokens();
    println!(
        "OK\n\nTIP: run `ingot set-org-role {} ORG OrgManager` or `ingot set-space-role {} ORG SPACE SpaceDeveloper` to give the user access",
        args.username, args.username
    );
    Ok(())
}

/// `ingot delete-user NAME [-f]`.
pub(crate) async fn delete_user(args: DeleteUserArgs) -> anyhow::Result<()> {
    let mut session = Session::open()?;
    if !args.force
        && !ui::confirm(&format!(
            "Really delete the user {} and all their roles?",
            args.username
        ))?
    {
        println!("Delete cancelled");
        return Ok(());
    }
    println!("Deleting user {} as {}...", args.username, session.user());
    let Some(user) = session
        .client()
        .user_by_name(&args.username)
        .await
        .or_explain(format!("cannot look up user {}", args.username))?
    else {
        println!("OK\n\nUser {} does not exist.", args.username);
        return Ok(());
    };
    session
        .client()
        .delete_user(&user.guid)
        .await
        .or_explain(format!("cannot delete user {}", args.username))?;
    session.keep_tokens();
    println!("OK");
    Ok(())
}

/// Gives (`give`) or takes a role in an organization or, with `space`, in
/// one of its spaces, printing cf's lines. Giving any role also makes the
/// user a member of the organization (`organization_user`), as cf does.
async fn change_role(
    username: &str,
    org: &str,
    space: Option<&str>,
    role: &str,
    give: bool,
) -> anyhow::Result<()> {
    let scope = if space.is_some() {
        "space_"
    } else {
        "organization_"
    };
    let role = api_role(role, scope)?;
    let mut session = Session::open()?;
    let place = match space {
        Some(s) => format!("org {org} / space {s}"),
        None => format!("org {org}"),
    };
    let (verb, preposition) = if give {
        ("Assigning", "to")
    } else {
        ("Removing", "from")
    };
    println!(
        "{verb} role {} {preposition} user {username} in {place} as {}...",
        cf_role(role),
        session.user()
    );
    let org = find_org(&session, org).await?;
    let space = match space {
        Some(name) => Some(find_space(&session, &org, name).await?),
        None => None,
    };
    let target = match &space {
        Some(s) => RoleTarget::Space(&s.guid),
        None => RoleTarget::Org(&org.guid),
    };
    let client = session.client();
    if give {
        client
            .set_role(username, "organization_user", RoleTarget::Org(&org.guid))
            .await
            .or_explain(format!(
                "cannot make {username} a member of org {}",
                org.name
            ))?;
        client
            .set_role(username, role, target)
            .await
            .or_explain(format!("cannot assign {} to {username}", cf_role(role)))?;
    } else {
        client
            .unset_role(username, role, target)
            .await
            .or_explain(format!("cannot remove {} from {username}", cf_role(role)))?;
    }
    session.keep_tokens();
    println!("OK");
    Ok(())
}

/// `ingot set-org-role NAME ORG ROLE`.
pub(crate) async fn set_org_role(args: OrgRoleArgs) -> anyhow::Result<()> {
    change_role(&args.username, &args.org, None, &args.role, true).await
}

/// `ingot unset-org-role NAME ORG ROLE`.
pub(crate) async fn unset_org_role(args: OrgRoleArgs) -> anyhow::Result<()> {
    change_role(&args.username, &args.org, None, &args.role, false).await
}

/// `ingot set-space-role NAME ORG SPACE ROLE`.
pub(crate) async fn set_space_role(args: SpaceRoleArgs) -> anyhow::Result<()> {
    change_role(
        &args.username,
        &args.org,
        Some(&args.space),
        &args.role,
        true,
    )
    .await
}

/// `ingot unset-space-role NAME ORG SPACE ROLE`.
pub(crate) async fn unset_space_role(args: SpaceRoleArgs) -> anyhow::Result<()> {
    change_role(
        &args.username,
        &args.org,
        Some(&args.space),
        &args.role,
        false,
    )
    .await
}

#[derive(Serialize)]
struct RoleRow {
    role: String,
    username: String,
}

async fn print_roles(
    session: &mut Session,
    target: RoleTarget<'_>,
    json: bool,
    what: &str,
) -> anyhow::Result<()> {
    let roles = session
        .client()
        .roles(target)
        .await
        .or_explain(format!("cannot list the users of {what}"))?;
    session.keep_tokens();
    let mut rows: Vec<RoleRow> = roles
        .into_iter()
        .filter(|(r, _)| r.kind != "organization_user")
        .map(|(r, name)| RoleRow {
            role: cf_role(&r.kind).to_string(),
            username: name.unwrap_or_default(),
        })
        .collect();
    rows.sort_by(|a, b| (&a.role, &a.username).cmp(&(&b.role, &b.username)));
    if json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(());
    }
    let mut table = vec![vec!["role".to_string(), "user".to_string()]];
    table.extend(rows.into_iter().map(|r| vec![r.role, r.username]));
    print!("{}", ui::table(&table));
    Ok(())
}

/// `ingot org-users ORG`.
pub(crate) async fn org_users(args: OrgUsersArgs) -> anyhow::Result<()> {
    let mut session = Session::open()?;
    if !args.json {
        println!(
            "Getting users in org {} as {}...\n",
            args.org,
            session.user()
        );
    }
    let org = find_org(&session, &args.org).await?;
    let what = format!("org {}", org.name);
    print_roles(&mut session, RoleTarget::Org(&org.guid), args.json, &what).await
}

/// `ingot space-users ORG SPACE`.
pub(crate) async fn space_users(args: SpaceUsersArgs) -> anyhow::Result<()> {
    let mut session = Session::open()?;
    if !args.json {
        println!(
            "Getting users in org {} / space {} as {}...\n",
            args.org,
            args.space,
            session.user()
        );
    }
    let org = find_org(&session, &args.org).await?;
    let space = find_space(&session, &org, &args.space).await?;
    let what = format!("space {}", space.name);
    print_roles(
        &mut session,
        RoleTarget::Space(&space.guid),
        args.json,
        &what,
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cf_role_names_map_both_ways_and_by_scope() {
        assert_eq!(
            api_role("SpaceDeveloper", "space_").ok(),
            Some("space_developer")
        );
        assert_eq!(
            api_role("orgmanager", "organization_").ok(),
            Some("organization_manager")
        );
        let err = api_role("OrgManager", "space_").expect_err("an org role is not a space role");
        assert!(err.to_string().contains("SpaceDeveloper"), "{err}");
        assert_eq!(cf_role("organization_auditor"), "OrgAuditor");
    }
}
