//! `security-groups`, `security-group`, `create-security-group`,
//! `update-security-group`, `delete-security-group`, `bind-security-group`,
//! `unbind-security-group`, `bind-running-security-group`,
//! `bind-staging-security-group`, `unbind-running-security-group`,
//! `unbind-staging-security-group`, `running-security-groups`,
//! `staging-security-groups`.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{anyhow, Context as _};
use clap::Args;
use ingot_client::resources::{Organization, Space};
use ingot_client::security_groups::{parse_rules, Lifecycle, SecurityGroup};
use ingot_client::Client;
use serde::Serialize;

use super::{find_org_named, find_space_in, ui, ListArgs, OrExplain as _, Session};

/// How long a delete may take before the CLI stops waiting.
const DELETE_TIMEOUT: Duration = Duration::from_secs(120);

/// The tip cf prints after every change to security groups.
const TIP: &str = "TIP: Changes require an app restart (for running) or restage (for staging) to apply to existing applications.";

/// `--lifecycle`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LifecycleArg {
    /// Running app instances and tasks.
    Running,
    /// Staging containers.
    Staging,
}

impl From<LifecycleArg> for Lifecycle {
    fn from(l: LifecycleArg) -> Self {
        match l {
            LifecycleArg::Running => Lifecycle::Running,
            LifecycleArg::Staging => Lifecycle::Staging,
        }
    }
}

/// A security group's name.
#[derive(Args)]
pub struct GroupArgs {
    /// The security group's name.
    name: String,
}

/// Flags of `security-group`.
#[derive(Args)]
pub struct ShowArgs {
    /// The security group's name.
    name: String,
    /// Print machine-readable JSON.
    #[arg(long)]
    json: bool,
}

/// Flags of `create-security-group` and `update-security-group`.
#[derive(Args)]
pub struct RulesArgs {
    /// The security group's name.
    name: String,
    /// A JSON file holding an array of rules.
    path_to_json_rules_file: String,
}

/// Flags of `delete-security-group`.
#[derive(Args)]
pub struct DeleteArgs {
    /// The security group's name.
    name: String,
    /// Do not ask for confirmation.
    #[arg(short = 'f')]
    force: bool,
}

/// Flags of `bind-security-group`.
#[derive(Args)]
pub struct BindArgs {
    /// The security group's name.
    name: String,
    /// The organization.
    org: String,
    /// Only this space (default: every space of the organization).
    #[arg(long)]
    space: Option<String>,
    /// Apply to running apps or to staging.
    #[arg(long, value_enum, default_value = "running")]
    lifecycle: LifecycleArg,
}

/// Flags of `unbind-security-group`.
#[derive(Args)]
pub struct UnbindArgs {
    /// The security group's name.
    name: String,
    /// The organization.
    org: String,
    /// The space.
    space: String,
    /// Remove it from running apps or from staging.
    #[arg(long, value_enum, default_value = "running")]
    lifecycle: LifecycleArg,
}

/// Reads and checks a rules file before anything is sent.
fn read_rules(path: &str) -> anyhow::Result<serde_json::Value> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the rules file {path}"))?;
    parse_rules(path, &text).map_err(|e| anyhow!("{e}"))
}

async fn find_group(session: &Session, name: &str) -> anyhow::Result<SecurityGroup> {
    session
        .client()
        .security_group_by_name(name)
        .await
        .or_explain(format!("cannot look up security group {name}"))?
        .ok_or_else(|| {
            anyhow!("security group {name} not found: run `ingot security-groups` to see them")
        })
}

/// One binding of a group, as `security-groups` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct BindingRow {
    /// The organization, `<all>` when global.
    organization: String,
    /// The space, `<all>` when global.
    space: String,
    /// `running` or `staging`.
    lifecycle: String,
}

/// A group with its bindings, for tables and `--json`.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct GroupRow {
    name: String,
    guid: String,
    rules: Vec<serde_json::Value>,
    bindings: Vec<BindingRow>,
}

/// Names of the spaces and organizations the groups are bound to; spaces
/// the user cannot see keep their guid.
async fn space_names(
    client: &Client,
    groups: &[SecurityGroup],
) -> anyhow::Result<BTreeMap<String, (String, String)>> {
    let mut guids: Vec<String> = groups
        .iter()
        .flat_map(|g| {
            g.spaces(Lifecycle::Running)
                .into_iter()
                .chain(g.spaces(Lifecycle::Staging))
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        .collect();
    guids.sort();
    guids.dedup();
    let mut names = BTreeMap::new();
    if guids.is_empty() {
        return Ok(names);
    }
    let mut spaces: Vec<Space> = Vec::new();
    for chunk in guids.chunks(50) {
        let joined = chunk.join(",");
        spaces.extend(
            client
                .list_all::<Space>("/v3/spaces", &[("guids", joined.as_str())])
                .await
                .or_explain("cannot look up the spaces the security groups are bound to")?,
        );
    }
    let orgs: Vec<Organization> = client
        .organizations(None)
        .await
        .or_explain("cannot list the organizations")?;
    for s in spaces {
        let org = s
            .relationships
            .organization
            .guid()
            .and_then(|o| orgs.iter().find(|x| x.guid == o))
            .map(|o| o.name.clone())
            .unwrap_or_default();
        names.insert(s.guid.clone(), (org, s.name));
    }
    Ok(names)
}

fn group_rows(
    groups: Vec<SecurityGroup>,
    names: &BTreeMap<String, (String, String)>,
) -> Vec<GroupRow> {
    groups
        .into_iter()
        .map(|g| {
            let mut bindings = Vec::new();
            for lifecycle in [Lifecycle::Running, Lifecycle::Staging] {
                if g.global(lifecycle) {
                    bindings.push(BindingRow {
                        organization: "<all>".into(),
                        space: "<all>".into(),
                        lifecycle: lifecycle.as_str().into(),
                    });
                }
                for space in g.spaces(lifecycle) {
                    let (org, name) = names
                        .get(space)
                        .cloned()
                        .unwrap_or_else(|| (String::new(), space.to_string()));
                    bindings.push(BindingRow {
                        organization: org,
                        space: name,
                        lifecycle: lifecycle.as_str().into(),
                    });
                }
            }
            GroupRow {
                name: g.name,
                guid: g.guid,
                rules: g.rules,
                bindings,
            }
        })
        .collect()
}

/// The table of `security-groups`: one line per binding, a group without
/// bindings on a line of its own.
pub(crate) fn groups_table(rows: &[GroupRow]) -> String {
    let mut table = vec![vec![
        "name".to_string(),
        "organization".to_string(),
        "space".to_string(),
        "lifecycle".to_string(),
    ]];
    for row in rows {
        if row.bindings.is_empty() {
            table.push(vec![row.name.clone()]);
        }
        for b in &row.bindings {
            table.push(vec![
                row.name.clone(),
                b.organization.clone(),
                b.space.clone(),
                b.lifecycle.clone(),
            ]);
        }
    }
    ui::table(&table)
}

/// `ingot security-groups`.
pub(crate) async fn security_groups(args: ListArgs) -> anyhow::Result<()> {
    let mut session = Session::open()?;
    if !args.json {
        println!("Getting security groups as {}...\n", session.user());
    }
    let client = session.client();
    let groups = client
        .security_groups()
        .await
        .or_explain("cannot list the security groups")?;
    let names = space_names(client, &groups).await?;
    let rows = group_rows(groups, &names);
    session.keep_tokens();
    if args.json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
    } else if rows.is_empty() {
        println!("No security groups found.");
    } else {
        print!("{}", groups_table(&rows));
    }
    Ok(())
}

/// `ingot security-group NAME`.
pub(crate) async fn security_group(args: ShowArgs) -> anyhow::Result<()> {
    let mut session = Session::open()?;
    if !args.json {
        println!(
            "Getting info for security group {} as {}...\n",
            args.name,
            session.user()
        );
    }
    let group = find_group(&session, &args.name).await?;
    let names = space_names(session.client(), std::slice::from_ref(&group)).await?;
    let row = group_rows(vec![group], &names).remove(0);
    session.keep_tokens();
    if args.json {
        println!("{}", serde_json::to_string_pretty(&row)?);
        return Ok(());
    }
    println!("name:    {}", row.name);
    println!("rules:");
    println!("{}\n", serde_json::to_string_pretty(&row.rules)?);
    if row.bindings.is_empty() {
        println!("No spaces assigned");
    } else {
        let mut table = vec![vec![
            "organization".to_string(),
            "space".to_string(),
            "lifecycle".to_string(),
        ]];
        table.extend(
            row.bindings
                .into_iter()
                .map(|b| vec![b.organization, b.space, b.lifecycle]),
        );
        print!("{}", ui::table(&table));
    }
    Ok(())
}

/// `ingot create-security-group NAME PATH_TO_JSON_RULES_FILE`.
pub(crate) async fn create_security_group(args: RulesArgs) -> anyhow::Result<()> {
    let rules = read_rules(&args.path_to_json_rules_file)?;
    let mut session = Session::open()?;
    println!(
        "Creating security group {} as {}...",
        args.name,
        session.user()
    );
    match session
        .client()
        .create_security_group(&args.name, &rules)
        .await
    {
        Ok(_) => {}
        Err(e) if e.status() == Some(422) && e.to_string().contains("already exists") => {
            println!("Security group {} already exists", args.name);
        }
        Err(e) => {
            return Err(super::explain(
                format!("cannot create security group {}", args.name),
                e,
            ))
        }
    }
    session.keep_tokens();
    println!(
        "OK\n\nTIP: run `ingot bind-security-group {} ORG --space SPACE` or `ingot bind-running-security-group {}` to apply it",
        args.name, args.name
    );
    Ok(())
}

/// `ingot update-security-group NAME PATH_TO_JSON_RULES_FILE`.
pub(crate) async fn update_security_group(args: RulesArgs) -> anyhow::Result<()> {
    let rules = read_rules(&args.path_to_json_rules_file)?;
    let mut session = Session::open()?;
    println!(
        "Updating security group {} as {}...",
        args.name,
        session.user()
    );
    let group = find_group(&session, &args.name).await?;
    session
        .client()
        .update_security_group_rules(&group.guid, &rules)
        .await
        .or_explain(format!("cannot update security group {}", args.name))?;
    session.keep_tokens();
    println!("OK\n\n{TIP}");
    Ok(())
}

/// `ingot delete-security-group NAME [-f]`.
pub(crate) async fn delete_security_group(args: DeleteArgs) -> anyhow::Result<()> {
    let mut session = Session::open()?;
    if !args.force && !ui::confirm(&format!("Really delete the security group {}?", args.name))? {
        println!("Delete cancelled");
        return Ok(());
    }
    println!(
        "Deleting security group {} as {}...",
        args.name,
        session.user()
    );
    let Some(group) = session
        .client()
        .security_group_by_name(&args.name)
        .await
        .or_explain(format!("cannot look up security group {}", args.name))?
    else {
        println!("Security group {} does not exist\nOK", args.name);
        return Ok(());
    };
    session
        .client()
        .delete_security_group(&group.guid, DELETE_TIMEOUT)
        .await
        .or_explain(format!("cannot delete security group {}", args.name))?;
    session.keep_tokens();
    println!("OK\n\n{TIP}");
    Ok(())
}

/// `ingot bind-security-group NAME ORG [--space SPACE] [--lifecycle …]`.
pub(crate) async fn bind_security_group(args: BindArgs) -> anyhow::Result<()> {
    let mut session = Session::open()?;
    let lifecycle: Lifecycle = args.lifecycle.into();
    let group = find_group(&session, &args.name).await?;
    let org = find_org_named(&session, &args.org).await?;
    let spaces: Vec<Space> = match &args.space {
        Some(name) => vec![find_space_in(&session, &org, name).await?],
        None => session
            .client()
            .spaces(&org.guid, None)
            .await
            .or_explain(format!("cannot list the spaces of org {}", org.name))?,
    };
    if spaces.is_empty() {
        return Err(anyhow!(
            "org {} has no spaces to bind security group {} to: run `ingot create-space SPACE -o {}` first",
            org.name,
            group.name,
            org.name
        ));
    }
    let user = session.user();
    for space in &spaces {
        println!(
            "Assigning {} security group {} to space {} in org {} as {user}...",
            lifecycle.as_str(),
            group.name,
            space.name,
            org.name
        );
    }
    let guids: Vec<String> = spaces.iter().map(|s| s.guid.clone()).collect();
    session
        .client()
        .bind_security_group(&group.guid, lifecycle, &guids)
        .await
        .or_explain(format!("cannot bind security group {}", group.name))?;
    session.keep_tokens();
    println!("OK\n\n{TIP}");
    Ok(())
}

/// `ingot unbind-security-group NAME ORG SPACE [--lifecycle …]`.
pub(crate) async fn unbind_security_group(args: UnbindArgs) -> anyhow::Result<()> {
    let mut session = Session::open()?;
    let lifecycle: Lifecycle = args.lifecycle.into();
    let group = find_group(&session, &args.name).await?;
    let org = find_org_named(&session, &args.org).await?;
    let space = find_space_in(&session, &org, &args.space).await?;
    println!(
        "Removing {} security group {} from org {} / space {} as {}...",
        lifecycle.as_str(),
        group.name,
        org.name,
        space.name,
        session.user()
    );
    if !group.spaces(lifecycle).contains(&space.guid.as_str()) {
        println!(
            "Security group {} not bound to space {} for lifecycle phase '{}'.\nOK",
            group.name,
            space.name,
            lifecycle.as_str()
        );
        return Ok(());
    }
    session
        .client()
        .unbind_security_group(&group.guid, lifecycle, &space.guid)
        .await
        .or_explain(format!("cannot unbind security group {}", group.name))?;
    session.keep_tokens();
    println!("OK\n\n{TIP}");
    Ok(())
}

/// `bind-running-security-group` and its siblings: apply a group to every
/// space for a lifecycle, or stop doing so.
pub(crate) async fn set_global(
    args: GroupArgs,
    lifecycle: Lifecycle,
    enabled: bool,
) -> anyhow::Result<()> {
    let mut session = Session::open()?;
    if enabled {
        println!(
            "Binding security group {} to {} as {}...",
            args.name,
            lifecycle.as_str(),
            session.user()
        );
    } else {
        println!(
            "Unbinding security group {} from defaults for {} as {}...",
            args.name,
            lifecycle.as_str(),
            session.user()
        );
    }
    let group = find_group(&session, &args.name).await?;
    if group.global(lifecycle) == enabled {
        let state = if enabled { "already" } else { "not" };
        println!(
            "Security group {} is {state} bound to {}.\nOK",
            group.name,
            lifecycle.as_str()
        );
        return Ok(());
    }
    session
        .client()
        .set_security_group_global(&group.guid, lifecycle, enabled)
        .await
        .or_explain(format!("cannot change security group {}", group.name))?;
    session.keep_tokens();
    println!("OK\n\n{TIP}");
    Ok(())
}

/// `ingot running-security-groups` / `staging-security-groups`.
pub(crate) async fn global_groups(args: ListArgs, lifecycle: Lifecycle) -> anyhow::Result<()> {
    let mut session = Session::open()?;
    if !args.json {
        println!(
            "Getting global {} security groups as {}...\n",
            lifecycle.as_str(),
            session.user()
        );
    }
    let groups = session
        .client()
        .global_security_groups(lifecycle)
        .await
        .or_explain(format!(
            "cannot list the global {} security groups",
            lifecycle.as_str()
        ))?;
    session.keep_tokens();
    let names: Vec<String> = groups.into_iter().map(|g| g.name).collect();
    if args.json {
        println!("{}", serde_json::to_string_pretty(&names)?);
    } else if names.is_empty() {
        println!("No global {} security groups found.", lifecycle.as_str());
    } else {
        let mut table = vec![vec!["name".to_string()]];
        table.extend(names.into_iter().map(|n| vec![n]));
        print!("{}", ui::table(&table));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group(name: &str, running: bool, spaces: &[&str]) -> SecurityGroup {
        serde_json::from_value(serde_json::json!({
            "guid": format!("{name}-guid"), "name": name,
            "globally_enabled": {"running": running, "staging": false},
            "relationships": {
                "running_spaces": {"data": spaces.iter().map(|s| serde_json::json!({"guid": s})).collect::<Vec<_>>()},
                "staging_spaces": {"data": []}
            }
        }))
        .expect("group")
    }

    #[test]
    fn the_table_has_a_line_per_binding_like_cf() {
        let names = BTreeMap::from([("s1".to_string(), ("main".to_string(), "dev".to_string()))]);
        let rows = group_rows(
            vec![
                group("dns", true, &[]),
                group("db", false, &["s1", "hidden-space"]),
                group("unused", false, &[]),
            ],
            &names,
        );
        assert_eq!(
            groups_table(&rows),
            "name     organization   space          lifecycle\n\
             dns      <all>          <all>          running\n\
             db       main           dev            running\n\
             db                      hidden-space   running\n\
             unused\n"
        );
    }

    #[test]
    fn rules_files_are_checked_before_anything_is_sent() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("rules.json");
        std::fs::write(
            &path,
            r#"[{"protocol":"tcp","destination":"10.0.0.0/8","ports":"80"}]"#,
        )
        .expect("write");
        let p = path.to_string_lossy().to_string();
        assert!(read_rules(&p).is_ok());
        std::fs::write(&path, r#"[{"protocol":"tcp"}]"#).expect("write");
        let err = read_rules(&p).expect_err("refused").to_string();
        assert!(err.contains("rule 1 has no destination"), "{err}");
        let err = read_rules("/nonexistent/rules.json")
            .expect_err("refused")
            .to_string();
        assert!(err.contains("cannot read the rules file"), "{err}");
    }
}
