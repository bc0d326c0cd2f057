//! Organization quotas (`org-quotas`/`quotas`, `org-quota`/`quota`,
//! `create-org-quota`/`create-quota`, `update-org-quota`/`update-quota`,
//! `delete-org-quota`/`delete-quota`, `set-org-quota`) and space quotas
//! (`space-quotas`, `space-quota`, `create-space-quota`,
//! `update-space-quota`, `delete-space-quota`, `set-space-quota`,
//! `unset-space-quota`), with cf's flags.

use std::time::Duration;

use anyhow::anyhow;
use clap::Args;
use ingot_client::quotas::{
    parse_count_limit, parse_log_limit, parse_memory_limit, Quota, QuotaKind, QuotaLimits,
};

use super::{find_org_named, find_space_in, ui, ListArgs, OrExplain as _, Session};

/// How long a delete may take before the CLI stops waiting.
const DELETE_TIMEOUT: Duration = Duration::from_secs(120);

/// The limit flags of `create-*-quota` and `update-*-quota`, as cf has them.
#[derive(Args, Default)]
pub struct LimitFlags {
    /// Total memory of all started processes and tasks (e.g. 1024M, 1G, 10G); -1 for unlimited.
    #[arg(short = 'm', allow_hyphen_values = true)]
    total_memory: Option<String>,
    /// Most memory one process or task may have (e.g. 1024M, 1G); -1 for unlimited.
    #[arg(short = 'i', allow_hyphen_values = true)]
    instance_memory: Option<String>,
    /// Total number of routes; -1 for unlimited.
    #[arg(short = 'r', allow_hyphen_values = true)]
    routes: Option<String>,
    /// Total number of service instances; -1 for unlimited.
    #[arg(short = 's', allow_hyphen_values = true)]
    service_instances: Option<String>,
    /// Total number of app instances; -1 for unlimited.
    #[arg(short = 'a', allow_hyphen_values = true)]
    app_instances: Option<String>,
    /// Allow instances of paid service plans.
    #[arg(long)]
    allow_paid_service_plans: bool,
    /// Maximum number of routes that may reserve a TCP port; -1 for unlimited.
    #[arg(long, allow_hyphen_values = true)]
    reserved_route_ports: Option<String>,
    /// Total log volume per second of all processes (e.g. 128B, 4K, 1M); -1 for unlimited.
    #[arg(short = 'l', allow_hyphen_values = true)]
    log_volume: Option<String>,
}

impl LimitFlags {
    /// The limits the flags set, checked before anything is sent.
    pub(crate) fn limits(&self, disallow_paid: bool) -> anyhow::Result<QuotaLimits> {
        let e = |err: ingot_client::ClientError| anyhow!("{err}");
        let mem = |flag: &str, v: &Option<String>| {
            v.as_deref()
                .map(|v| parse_memory_limit(flag, v))
                .transpose()
                .map_err(e)
        };
        let count = |flag: &str, v: &Option<String>| {
            v.as_deref()
                .map(|v| parse_count_limit(flag, v))
                .transpose()
                .map_err(e)
        };
        if self.allow_paid_service_plans && disallow_paid {
            return Err(anyhow!(
                "--allow-paid-service-plans and --disallow-paid-service-plans cannot be used together"
            ));
        }
        Ok(QuotaLimits {
            total_memory_in_mb: mem("-m", &self.total_memory)?,
            per_process_memory_in_mb: mem("-i", &self.instance_memory)?,
            total_routes: count("-r", &self.routes)?,
            total_service_instances: count("-s", &self.service_instances)?,
            total_instances: count("-a", &self.app_instances)?,
            total_reserved_ports: count("--reserved-route-ports", &self.reserved_route_ports)?,
            log_rate_limit_in_bytes_per_second: self
                .log_volume
                .as_deref()
                .map(|v| parse_log_limit("-l", v))
                .transpose()
                .map_err(e)?,
            paid_services_allowed: if self.allow_paid_service_plans {
                Some(true)
            } else if disallow_paid {
                Some(false)
            } else {
                None
            },
        })
    }
}

/// Flags of `create-org-quota` and `create-space-quota`.
#[derive(Args)]
pub struct CreateArgs {
    /// The quota's name.
    name: String,
    #[command(flatten)]
    limits: LimitFlags,
}

/// Flags of `update-org-quota` and `update-space-quota`.
#[derive(Args)]
pub struct UpdateArgs {
    /// The quota's name.
    name: String,
    /// A new name.
    #[arg(short = 'n')]
    new_name: Option<String>,
    /// Refuse instances of paid service plans.
    #[arg(long)]
    disallow_paid_service_plans: bool,
    #[command(flatten)]
    limits: LimitFlags,
}

/// Flags of `org-quota` and `space-quota`.
#[derive(Args)]
pub struct ShowArgs {
    /// The quota's name.
    name: String,
    /// Print machine-readable JSON.
    #[arg(long)]
    json: bool,
}

/// Flags of `delete-org-quota` and `delete-space-quota`.
#[derive(Args)]
pub struct DeleteArgs {
    /// The quota's name.
    name: String,
    /// Do not ask for confirmation.
    #[arg(short = 'f')]
    force: bool,
}

/// Flags of `set-org-quota`.
#[derive(Args)]
pub struct SetOrgArgs {
    /// The organization.
    org: String,
    /// The org quota.
    quota: String,
}

/// Flags of `set-space-quota` and `unset-space-quota`.
#[derive(Args)]
pub struct SpaceQuotaArgs {
    /// The space (in the targeted org).
    space: String,
    /// The space quota.
    quota: String,
}

/// A limit as cf shows it: `unlimited`, or the number.
fn count(v: Option<u64>) -> String {
    v.map_or_else(|| "unlimited".to_string(), |n| n.to_string())
}

/// Megabytes as cf shows them: `1G`, `512M`, `unlimited`.
fn megabytes(v: Option<u64>) -> String {
    v.map_or_else(
        || "unlimited".to_string(),
        |mb| ui::human_bytes(mb.saturating_mul(1024 * 1024)),
    )
}

/// Bytes per second as cf shows them: `1M`, `512B`, `unlimited`.
fn bytes(v: Option<u64>) -> String {
    v.map_or_else(|| "unlimited".to_string(), ui::human_bytes)
}

/// The columns of a quota, in cf's order, with its headings.
pub(crate) fn quota_fields(q: &Quota) -> Vec<(&'static str, String)> {
    vec![
        ("total memory", megabytes(q.apps.total_memory_in_mb)),
        (
            "instance memory",
            megabytes(q.apps.per_process_memory_in_mb),
        ),
        ("routes", count(q.routes.total_routes)),
        (
            "service instances",
            count(q.services.total_service_instances),
        ),
        (
            "paid service plans",
            if q.services.paid_services_allowed {
                "allowed"
            } else {
                "disallowed"
            }
            .to_string(),
        ),
        ("app instances", count(q.apps.total_instances)),
        ("route ports", count(q.routes.total_reserved_ports)),
        (
            "log volume per second",
            bytes(q.apps.log_rate_limit_in_bytes_per_second),
        ),
    ]
}

/// The table of `org-quotas` / `space-quotas`.
pub(crate) fn quotas_table(quotas: &[Quota]) -> String {
    let mut header = vec!["name".to_string()];
    header.extend(
        quota_fields(&Quota::default())
            .into_iter()
            .map(|(h, _)| h.to_string()),
    );
    let mut rows = vec![header];
    for q in quotas {
        let mut row = vec![q.name.clone()];
        row.extend(quota_fields(q).into_iter().map(|(_, v)| v));
        rows.push(row);
    }
    ui::table(&rows)
}

/// The lines of `org-quota NAME` / `space-quota NAME`.
pub(crate) fn quota_details(q: &Quota) -> String {
    let rows: Vec<Vec<String>> = quota_fields(q)
        .into_iter()
        .map(|(h, v)| vec![format!("{h}:"), v])
        .collect();
    ui::table(&rows)
}

/// The targeted org (space quotas belong to one).
fn target_org(session: &mut Session) -> anyhow::Result<ingot_client::config::Target> {
    // Only the org matters here: a targeted space is not needed.
    session.config_mut().org.clone().ok_or_else(|| {
        anyhow!("no org targeted: space quotas belong to an org; run `ingot target -o ORG`")
    })
}

async fn find_quota(
    session: &Session,
    kind: QuotaKind,
    name: &str,
    org: Option<&ingot_client::config::Target>,
) -> anyhow::Result<Quota> {
    let listing = match kind {
        QuotaKind::Org => "ingot org-quotas",
        QuotaKind::Space => "ingot space-quotas",
    };
    session
        .client()
        .quota_by_name(kind, name, org.map(|o| o.guid.as_str()))
        .await
        .or_explain(format!("cannot look up {} quota {name}", kind.word()))?
        .ok_or_else(|| match org {
            Some(o) => anyhow!(
                "space quota {name} not found in org {}: run `{listing}` to see them",
                o.name
            ),
            None => anyhow!("org quota {name} not found: run `{listing}` to see them"),
        })
}

/// `ingot org-quotas` / `ingot space-quotas`.
pub(crate) async fn list(args: ListArgs, kind: QuotaKind) -> anyhow::Result<()> {
    let mut session = Session::open()?;
    let org = match kind {
        QuotaKind::Org => None,
        QuotaKind::Space => Some(target_org(&mut session)?),
    };
    if !args.json {
        match &org {
            Some(o) => println!(
                "Getting space quotas for org {} as {}...\n",
                o.name,
                session.user()
            ),
            None => println!("Getting org quotas as {}...\n", session.user()),
        }
    }
    let quotas = session
        .client()
        .quotas(kind, None, org.as_ref().map(|o| o.guid.as_str()))
        .await
        .or_explain(format!("cannot list the {} quotas", kind.word()))?;
    session.keep_tokens();
    if args.json {
        println!("{}", serde_json::to_string_pretty(&quotas)?);
    } else if quotas.is_empty() {
        println!("No {} quotas found.", kind.word());
    } else {
        print!("{}", quotas_table(&quotas));
    }
    Ok(())
}

/// `ingot org-quota NAME` / `ingot space-quota NAME`.
pub(crate) async fn show(args: ShowArgs, kind: QuotaKind) -> anyhow::Result<()> {
    let mut session = Session::open()?;
    let org = match kind {
        QuotaKind::Org => None,
        QuotaKind::Space => Some(target_org(&mut session)?),
    };
    if !args.json {
        println!(
            "Getting {} quota {} info as {}...\n",
            kind.word(),
            args.name,
            session.user()
        );
    }
    let quota = find_quota(&session, kind, &args.name, org.as_ref()).await?;
    session.keep_tokens();
    if args.json {
        println!("{}", serde_json::to_string_pretty(&quota)?);
    } else {
        print!("{}", quota_details(&quota));
    }
    Ok(())
}

/// `ingot create-org-quota NAME [flags]` / `create-space-quota`.
pub(crate) async fn create(args: CreateArgs, kind: QuotaKind) -> anyhow::Result<()> {
    let limits = args.limits.limits(false)?;
    let mut session = Session::open()?;
    let org = match kind {
        QuotaKind::Org => None,
        QuotaKind::Space => Some(target_org(&mut session)?),
    };
    match &org {
        Some(o) => println!(
            "Creating space quota {} for org {} as {}...",
            args.name,
            o.name,
            session.user()
        ),
        None => println!("Creating org quota {} as {}...", args.name, session.user()),
    }
    match session
        .client()
        .create_quota(
            kind,
            &args.name,
            &limits,
            org.as_ref().map(|o| o.guid.as_str()),
        )
        .await
    {
        Ok(_) => {}
        Err(e) if e.status() == Some(422) && e.to_string().contains("already") => {
            println!(
                "{} quota {} already exists",
                capital(kind.word()),
                args.name
            );
        }
        Err(e) => {
            return Err(super::explain(
                format!("cannot create {} quota {}", kind.word(), args.name),
                e,
            ))
        }
    }
    session.keep_tokens();
    let next = match kind {
        QuotaKind::Org => format!("ingot set-org-quota ORG {}", args.name),
        QuotaKind::Space => format!("ingot set-space-quota SPACE {}", args.name),
    };
    println!("OK\n\nTIP: run `{next}` to apply it");
    Ok(())
}

fn capital(word: &str) -> String {
    let mut c = word.chars();
    c.next()
        .map(|f| f.to_uppercase().chain(c).collect())
        .unwrap_or_default()
}

/// `ingot update-org-quota NAME [flags]` / `update-space-quota`.
pub(crate) async fn update(args: UpdateArgs, kind: QuotaKind) -> anyhow::Result<()> {
    let limits = args.limits.limits(args.disallow_paid_service_plans)?;
    if limits.is_empty() && args.new_name.is_none() {
        return Err(anyhow!(
            "nothing to change: give at least one of -n, -m, -i, -r, -s, -a, -l, --reserved-route-ports, --allow-paid-service-plans, --disallow-paid-service-plans"
        ));
    }
    let mut session = Session::open()?;
    let org = match kind {
        QuotaKind::Org => None,
        QuotaKind::Space => Some(target_org(&mut session)?),
    };
    println!(
        "Updating {} quota {} as {}...",
        kind.word(),
        args.name,
        session.user()
    );
    let quota = find_quota(&session, kind, &args.name, org.as_ref()).await?;
    session
        .client()
        .update_quota(kind, &quota.guid, args.new_name.as_deref(), &limits)
        .await
        .or_explain(format!("cannot update {} quota {}", kind.word(), args.name))?;
    session.keep_tokens();
    println!("OK");
    Ok(())
}

/// `ingot delete-org-quota NAME [-f]` / `delete-space-quota`.
pub(crate) async fn delete(args: DeleteArgs, kind: QuotaKind) -> anyhow::Result<()> {
    let mut session = Session::open()?;
    let org = match kind {
        QuotaKind::Org => None,
        QuotaKind::Space => Some(target_org(&mut session)?),
    };
    if !args.force
        && !ui::confirm(&format!(
            "Really delete the {} quota {}?",
            kind.word(),
            args.name
        ))?
    {
        println!("Delete cancelled");
        return Ok(());
    }
    println!(
        "Deleting {} quota {} as {}...",
        kind.word(),
        args.name,
        session.user()
    );
    let Some(quota) = session
        .client()
        .quota_by_name(kind, &args.name, org.as_ref().map(|o| o.guid.as_str()))
        .await
        .or_explain(format!(
            "cannot look up {} quota {}",
            kind.word(),
            args.name
        ))?
    else {
        println!(
            "{} quota {} does not exist\nOK",
            capital(kind.word()),
            args.name
        );
        return Ok(());
    };
    session
        .client()
        .delete_quota(kind, &quota.guid, DELETE_TIMEOUT)
        .await
        .or_explain(format!("cannot delete {} quota {}", kind.word(), args.name))?;
    session.keep_tokens();
    println!("OK");
    Ok(())
}

/// `ingot set-org-quota ORG QUOTA`.
pub(crate) async fn set_org_quota(args: SetOrgArgs) -> anyhow::Result<()> {
    let mut session = Session::open()?;
    println!(
        "Setting quota {} to org {} as {}...",
        args.quota,
        args.org,
        session.user()
    );
    let org = find_org_named(&session, &args.org).await?;
    let quota = find_quota(&session, QuotaKind::Org, &args.quota, None).await?;
    session
        .client()
        .apply_org_quota(&quota.guid, &org.guid)
        .await
        .or_explain(format!(
            "cannot set quota {} on org {}",
            quota.name, org.name
        ))?;
    session.keep_tokens();
    println!("OK");
    Ok(())
}

/// `ingot set-space-quota SPACE QUOTA` / `unset-space-quota SPACE QUOTA`.
pub(crate) async fn set_space_quota(args: SpaceQuotaArgs, set: bool) -> anyhow::Result<()> {
    let mut session = Session::open()?;
    let target = target_org(&mut session)?;
    if set {
        println!(
            "Setting space quota {} to space {} as {}...",
            args.quota,
            args.space,
            session.user()
        );
    } else {
        println!(
            "Unassigning space quota {} from space {} as {}...",
            args.quota,
            args.space,
            session.user()
        );
    }
    let org = ingot_client::resources::Organization {
        guid: target.guid.clone(),
        name: target.name.clone(),
    };
    let space = find_space_in(&session, &org, &args.space).await?;
    let quota = find_quota(&session, QuotaKind::Space, &args.quota, Some(&target)).await?;
    let client = session.client();
    let result = if set {
        client.apply_space_quota(&quota.guid, &space.guid).await
    } else {
        client.remove_space_quota(&quota.guid, &space.guid).await
    };
    result.or_explain(format!(
        "cannot {} space quota {} on space {}",
        if set { "set" } else { "unset" },
        quota.name,
        space.name
    ))?;
    session.keep_tokens();
    println!("OK");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser as _;
    use ingot_client::quotas::Limit;

    #[derive(clap::Parser)]
    struct Probe {
        #[command(flatten)]
        limits: LimitFlags,
    }

    fn limits(argv: &[&str]) -> anyhow::Result<QuotaLimits> {
        let mut all = vec!["probe"];
        all.extend_from_slice(argv);
        Probe::try_parse_from(all)?.limits.limits(false)
    }

    #[test]
    fn flags_take_cf_sizes_and_minus_one() {
        let l = limits(&[
            "-m",
            "10G",
            "-i",
            "-1",
            "-r",
            "100",
            "-s",
            "-1",
            "-a",
            "25",
            "-l",
            "1M",
            "--reserved-route-ports",
            "0",
            "--allow-paid-service-plans",
        ])
        .expect("parses");
        assert_eq!(l.total_memory_in_mb, Some(Limit::At(10240)));
        assert_eq!(l.per_process_memory_in_mb, Some(Limit::Unlimited));
        assert_eq!(l.total_routes, Some(Limit::At(100)));
        assert_eq!(l.total_service_instances, Some(Limit::Unlimited));
        assert_eq!(l.total_instances, Some(Limit::At(25)));
        assert_eq!(
            l.log_rate_limit_in_bytes_per_second,
            Some(Limit::At(1 << 20))
        );
        assert_eq!(l.total_reserved_ports, Some(Limit::At(0)));
        assert_eq!(l.paid_services_allowed, Some(true));
        assert!(limits(&[]).expect("none").is_empty());
        let err = limits(&["-m", "lots"]).expect_err("refused").to_string();
        assert!(err.contains("-m \"lots\""), "{err}");
        let err = limits(&["-r", "many"]).expect_err("refused").to_string();
        assert!(err.contains("-r \"many\""), "{err}");
    }

    #[test]
    fn tables_read_like_cf() {
        let q: Quota = serde_json::from_value(serde_json::json!({
            "guid": "q", "name": "small",
            "apps": {"total_memory_in_mb": 2048, "per_process_memory_in_mb": null,
                     "total_instances": 10, "log_rate_limit_in_bytes_per_second": 1048576},
            "services": {"paid_services_allowed": false, "total_service_instances": null},
            "routes": {"total_routes": 8, "total_reserved_ports": 0}
        }))
        .expect("quota");
        let table = quotas_table(std::slice::from_ref(&q));
        let mut lines = table.lines();
        assert_eq!(
            lines.next(),
            Some("name    total memory   instance memory   routes   service instances   paid service plans   app instances   route ports   log volume per second")
        );
        assert_eq!(
            lines.next(),
            Some("small   2G             unlimited         8        unlimited           disallowed           10              0             1M")
        );
        let details = quota_details(&q);
        assert!(
            details.starts_with("total memory:            2G\n"),
            "{details}"
        );
        assert!(
            details.contains("paid service plans:      disallowed\n"),
            "{details}"
        );
    }
}
