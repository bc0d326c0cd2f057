//! Service brokers and the marketplace: `create-service-broker`,
//! `service-brokers`, `update-service-broker`, `delete-service-broker`,
//! `marketplace`, `service-access`, `enable-service-access`,
//! `disable-service-access`.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::anyhow;
use clap::Args;
use ingot_client::marketplace::{
    access_word, CatalogFilter, ServiceBroker, ServiceOffering, ServicePlan,
};
use ingot_client::Client;
use serde::Serialize;

use super::{find_org_named, ui, ListArgs, OrExplain as _, Session};

/// How long registering a broker (reading its catalog) may take.
const BROKER_TIMEOUT: Duration = Duration::from_secs(300);

/// Flags of `create-service-broker`.
#[derive(Args)]
pub struct CreateBrokerArgs {
    /// The broker's name.
    name: String,
    /// The user name the platform authenticates with.
    username: String,
    /// The password the platform authenticates with.
    password: String,
    /// The broker's URL.
    url: String,
    /// Make the broker's plans visible only in the targeted space.
    #[arg(long)]
    space_scoped: bool,
}

/// Flags of `update-service-broker`.
#[derive(Args)]
pub struct UpdateBrokerArgs {
    /// The broker's name.
    name: String,
    /// The user name the platform authenticates with.
    username: String,
    /// The password the platform authenticates with.
    password: String,
    /// The broker's URL.
    url: String,
}

/// Flags of `delete-service-broker`.
#[derive(Args)]
pub struct DeleteBrokerArgs {
    /// The broker's name.
    name: String,
    /// Do not ask for confirmation.
    #[arg(short = 'f')]
    force: bool,
}

/// Flags of `marketplace`.
#[derive(Args)]
pub struct MarketplaceArgs {
    /// Show the plans of this service offering.
    #[arg(short = 'e')]
    offering: Option<String>,
    /// Only offerings of this broker.
    #[arg(short = 'b')]
    broker: Option<String>,
    /// Print machine-readable JSON.
    #[arg(long)]
    json: bool,
}

/// Flags of `service-access`.
#[derive(Args)]
pub struct AccessListArgs {
    /// Only this broker.
    #[arg(short = 'b')]
    broker: Option<String>,
    /// Only this service offering.
    #[arg(short = 'e')]
    offering: Option<String>,
    /// Only plans this organization can use.
    #[arg(short = 'o')]
    org: Option<String>,
    /// Print machine-readable JSON.
    #[arg(long)]
    json: bool,
}

/// Flags of `enable-service-access` and `disable-service-access`.
#[derive(Args)]
pub struct AccessArgs {
    /// The service offering.
    offering: String,
    /// The broker, when several offer a service of that name.
    #[arg(short = 'b')]
    broker: Option<String>,
    /// Only this plan.
    #[arg(short = 'p')]
    plan: Option<String>,
    /// Only for this organization.
    #[arg(short = 'o')]
    org: Option<String>,
}

async fn find_broker(session: &Session, name: &str) -> anyhow::Result<ServiceBroker> {
    session
        .client()
        .service_brokers(Some(name))
        .await
        .or_explain(format!("cannot look up service broker {name}"))?
        .into_iter()
        .find(|b| b.name == name)
        .ok_or_else(|| {
            anyhow!("service broker {name} not found: run `ingot service-brokers` to see them")
        })
}

/// `ingot create-service-broker NAME USER PASS URL [--space-scoped]`.
pub(crate) async fn create_service_broker(args: CreateBrokerArgs) -> anyhow::Result<()> {
    let mut session = Session::open()?;
    let space = if args.space_scoped {
        let (org, space) = session.target()?;
        println!(
            "Creating service broker {} in org {} / space {} as {}...",
            args.name,
            org.name,
            space.name,
            session.user()
        );
        Some(space.guid)
    } else {
        println!(
            "Creating service broker {} as {}...",
            args.name,
            session.user()
        );
        None
    };
    session
        .client()
        .create_service_broker(
            &args.name,
            &args.username,
            &args.password,
            &args.url,
            space.as_deref(),
            BROKER_TIMEOUT,
        )
        .await
        .or_explain(format!(
            "cannot register service broker {} at {}",
            args.name, args.url
        ))?;
    session.keep_tokens();
    println!(
        "OK\n\nTIP: run `ingot marketplace` to see its offerings{}",
        if args.space_scoped {
            ""
        } else {
            ", and `ingot enable-service-access SERVICE` to make them visible"
        }
    );
    Ok(())
}

#[derive(Serialize)]
struct BrokerRow {
    name: String,
    guid: String,
    url: String,
    space_guid: Option<String>,
}

/// `ingot service-brokers`.
pub(crate) async fn service_brokers(args: ListArgs) -> anyhow::Result<()> {
    let mut session = Session::open()?;
    if !args.json {
        println!("Getting service brokers as {}...\n", session.user());
    }
    let brokers = session
        .client()
        .service_brokers(None)
        .await
        .or_explain("cannot list the service brokers")?;
    session.keep_tokens();
    let rows: Vec<BrokerRow> = brokers
        .into_iter()
        .map(|b| BrokerRow {
            space_guid: b.relationships.space.guid().map(str::to_string),
            name: b.name,
            guid: b.guid,
            url: b.url,
        })
        .collect();
    if args.json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
    } else if rows.is_empty() {
        println!("No service brokers found.");
    } else {
        let mut table = vec![vec!["name".to_string(), "url".to_string()]];
        table.extend(rows.into_iter().map(|r| vec![r.name, r.url]));
        print!("{}", ui::table(&table));
    }
    Ok(())
}

/// `ingot update-service-broker NAME USER PASS URL`.
pub(crate) async fn update_service_broker(args: UpdateBrokerArgs) -> anyhow::Result<()> {
    let mut session = Session::open()?;
    println!(
        "Updating service broker {} as {}...",
        args.name,
        session.user()
    );
    let broker = find_broker(&session, &args.name).await?;
    session
        .client()
        .update_service_broker(
            &broker.guid,
            None,
            Some((&args.username, &args.password)),
            Some(&args.url),
            BROKER_TIMEOUT,
        )
        .await
        .or_explain(format!("cannot update service broker {}", args.name))?;
    session.keep_tokens();
    println!("OK");
    Ok(())
}

/// `ingot delete-service-broker NAME [-f]`.
pub(crate) async fn delete_service_broker(args: DeleteBrokerArgs) -> anyhow::Result<()> {
    let mut session = Session::open()?;
    if !args.force && !ui::confirm(&format!("Really delete the service broker {}?", args.name))? {
        println!("Delete cancelled");
        return Ok(());
    }
    println!(
        "Deleting service broker {} as {}...",
        args.name,
        session.user()
    );
    let found = session
        .client()
        .service_brokers(Some(&args.name))
        .await
        .or_explain(format!("cannot look up service broker {}", args.name))?
        .into_iter()
        .find(|b| b.name == args.name);
    let Some(broker) = found else {
        println!("Service broker {} does not exist.\nOK", args.name);
        return Ok(());
    };
    session
        .client()
        .delete_service_broker(&broker.guid, BROKER_TIMEOUT)
        .await
        .or_explain(format!(
            "cannot delete service broker {}; delete its service instances first (`ingot services`)",
            args.name
        ))?;
    session.keep_tokens();
    println!("OK");
    Ok(())
}

/// The catalog: offerings with their plans and broker names.
struct Catalog {
    offerings: Vec<ServiceOffering>,
    plans: Vec<ServicePlan>,
    brokers: BTreeMap<String, String>,
}

impl Catalog {
    async fn load(client: &Client, f: &CatalogFilter<'_>) -> anyhow::Result<Catalog> {
        let offerings = client
            .service_offerings(f)
            .await
            .or_explain("cannot list the service offerings")?;
        let plans = client
            .service_plans(f)
            .await
            .or_explain("cannot list the service plans")?;
        let brokers = client
            .service_brokers(None)
            .await
            .or_explain("cannot list the service brokers")?
            .into_iter()
            .map(|b| (b.guid, b.name))
            .collect();
        Ok(Catalog {
            offerings,
            plans,
            brokers,
        })
    }

    fn broker_of(&self, o: &ServiceOffering) -> String {
        o.relationships
            .service_broker
            .guid()
            .and_then(|g| self.brokers.get(g))
            .cloned()
            .unwrap_or_default()
    }

    fn plans_of(&self, o: &ServiceOffering) -> Vec<&ServicePlan> {
        self.plans
            .iter()
            .filter(|p| p.relationships.service_offering.guid() == Some(o.guid.as_str()))
            .collect()
    }
}

/// One offering of `marketplace --json`.
#[derive(Debug, Serialize)]
pub(crate) struct OfferingRow {
    offering: String,
    description: String,
    broker: String,
    plans: Vec<PlanRow>,
}

/// One plan of `marketplace --json`.
#[derive(Debug, Serialize)]
pub(crate) struct PlanRow {
    plan: String,
    description: String,
    free: bool,
    available: bool,
}

/// The table of `marketplace`.
pub(crate) fn marketplace_table(rows: &[OfferingRow]) -> String {
    let mut table = vec![vec![
        "offering".to_string(),
        "plans".to_string(),
        "description".to_string(),
        "broker".to_string(),
    ]];
    for r in rows {
        table.push(vec![
            r.offering.clone(),
            r.plans
                .iter()
                .map(|p| p.plan.clone())
                .collect::<Vec<_>>()
                .join(", "),
            r.description.clone(),
            r.broker.clone(),
        ]);
    }
    ui::table(&table)
}

/// `ingot marketplace [-e SERVICE] [-b BROKER]`.
pub(crate) async fn marketplace(args: MarketplaceArgs) -> anyhow::Result<()> {
    let mut session = Session::open()?;
    let target = session.target().ok();
    let user = session.user();
    if !args.json {
        let place = match &target {
            Some((o, s)) => format!(" in org {} / space {}", o.name, s.name),
            None => String::new(),
        };
        match &args.offering {
            Some(e) => println!(
                "Getting service plan information for service offering {e}{place} as {user}...\n"
            ),
            None => {
                println!("Getting all service offerings from marketplace{place} as {user}...\n")
            }
        }
    }
    let filter = CatalogFilter {
        offering_name: args.offering.as_deref(),
        broker_name: args.broker.as_deref(),
        space_guid: target.as_ref().map(|(_, s)| s.guid.as_str()),
        ..CatalogFilter::default()
    };
    let catalog = Catalog::load(session.client(), &filter).await?;
    session.keep_tokens();
    let rows: Vec<OfferingRow> = catalog
        .offerings
        .iter()
        .map(|o| OfferingRow {
            offering: o.name.clone(),
            description: o.description.clone(),
            broker: catalog.broker_of(o),
            plans: catalog
                .plans_of(o)
                .into_iter()
                .map(|p| PlanRow {
                    plan: p.name.clone(),
                    description: p.description.clone(),
                    free: p.free,
                    available: p.available,
                })
                .collect(),
        })
        .filter(|r| !r.plans.is_empty())
        .collect();
    if args.json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(());
    }
    if rows.is_empty() {
        return match &args.offering {
            Some(e) => Err(anyhow!(
                "service offering {e} not found: run `ingot marketplace` to see the offerings"
            )),
            None => {
                println!("No service offerings found.");
                Ok(())
            }
        };
    }
    if args.offering.is_some() {
        for r in rows {
            println!("broker: {}", r.broker);
            let mut table = vec![vec![
                "plan".to_string(),
                "description".to_string(),
                "free or paid".to_string(),
                "available".to_string(),
            ]];
            table.extend(r.plans.into_iter().map(|p| {
                vec![
                    p.plan,
                    p.description,
                    if p.free { "free" } else { "paid" }.to_string(),
                    if p.available { "yes" } else { "no" }.to_string(),
                ]
            }));
            for line in ui::table(&table).lines() {
                println!("   {line}");
            }
            println!();
        }
        return Ok(());
    }
    print!("{}", marketplace_table(&rows));
    println!(
        "\nTIP: Use 'ingot marketplace -e SERVICE_OFFERING' to view descriptions of individual plans of a given service offering."
    );
    Ok(())
}

#[derive(Serialize)]
struct AccessRow {
    broker: String,
    offering: String,
    plan: String,
    access: String,
    orgs: Vec<String>,
}

/// `ingot service-access [-b BROKER] [-e SERVICE] [-o ORG]`.
pub(crate) async fn service_access(args: AccessListArgs) -> anyhow::Result<()> {
    let mut session = Session::open()?;
    if !args.json {
        println!("Getting service access as {}...\n", session.user());
    }
    let client = session.client();
    let filter = CatalogFilter {
        offering_name: args.offering.as_deref(),
        broker_name: args.broker.as_deref(),
        ..CatalogFilter::default()
    };
    let catalog = Catalog::load(client, &filter).await?;
    let mut rows = Vec::new();
    for o in &catalog.offerings {
        for p in catalog.plans_of(o) {
            let orgs = if p.visibility_type == "organization" {
                client
                    .plan_visibility(&p.guid)
                    .await
                    .or_explain(format!("cannot read the visibility of plan {}", p.name))?
                    .organizations
                    .into_iter()
                    .map(|o| o.name)
                    .collect()
            } else {
                Vec::new()
            };
            if let Some(org) = &args.org {
                if p.visibility_type != "public" && !orgs.contains(org) {
                    continue;
                }
            }
            rows.push(AccessRow {
                broker: catalog.broker_of(o),
                offering: o.name.clone(),
                plan: p.name.clone(),
                access: access_word(&p.visibility_type).to_string(),
                orgs,
            });
        }
    }
    session.keep_tokens();
    if args.json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(());
    }
    if rows.is_empty() {
        println!("No service offerings found.");
        return Ok(());
    }
    let mut brokers: Vec<String> = rows.iter().map(|r| r.broker.clone()).collect();
    brokers.dedup();
    for broker in brokers {
        println!("broker: {broker}");
        let mut table = vec![vec![
            "offering".to_string(),
            "plan".to_string(),
            "access".to_string(),
            "orgs".to_string(),
        ]];
        for r in rows.iter().filter(|r| r.broker == broker) {
            table.push(vec![
                r.offering.clone(),
                r.plan.clone(),
                r.access.clone(),
                r.orgs.join(", "),
            ]);
        }
        for line in ui::table(&table).lines() {
            println!("   {line}");
        }
        println!();
    }
    Ok(())
}

/// The plans `enable-`/`disable-service-access` change.
async fn access_plans(session: &Session, args: &AccessArgs) -> anyhow::Result<Vec<ServicePlan>> {
    let client = session.client();
    let offerings = client
        .service_offerings(&CatalogFilter {
            offering_name: Some(&args.offering),
            broker_name: args.broker.as_deref(),
            ..CatalogFilter::default()
        })
        .await
        .or_explain(format!("cannot look up service offering {}", args.offering))?;
    let offering = match offerings.as_slice() {
        [] => {
            return Err(anyhow!(
                "service offering {} not found: run `ingot service-access` to see the offerings",
                args.offering
            ))
        }
        [one] => one,
        _ => {
            return Err(anyhow!(
                "several brokers offer a service named {}: say which with -b BROKER",
                args.offering
            ))
        }
    };
    let plans = client
        .service_plans(&CatalogFilter {
            offering_guid: Some(&offering.guid),
            plan_name: args.plan.as_deref(),
            ..CatalogFilter::default()
        })
        .await
        .or_explain(format!("cannot list the plans of {}", args.offering))?;
    let plans: Vec<ServicePlan> = plans
        .into_iter()
        .filter(|p| args.plan.as_deref().is_none_or(|name| p.name == name))
        .collect();
    if plans.is_empty() {
        return Err(anyhow!(
            "the service offering {} has no plan {}: run `ingot marketplace -e {}` to see its plans",
            args.offering,
            args.plan.as_deref().unwrap_or("at all"),
            args.offering
        ));
    }
    Ok(plans)
}

fn access_message(verb: &str, args: &AccessArgs, user: &str) -> String {
    let plans = match &args.plan {
        Some(p) => format!("plan {p} of service offering {}", args.offering),
        None => format!("all plans of service offering {}", args.offering),
    };
    let orgs = match &args.org {
        Some(o) => format!("org {o}"),
        None => "all orgs".to_string(),
    };
    format!("{verb} access to {plans} for {orgs} as {user}...")
}

/// `ingot enable-service-access SERVICE [-b BROKER] [-p PLAN] [-o ORG]`.
pub(crate) async fn enable_service_access(args: AccessArgs) -> anyhow::Result<()> {
    change_access(args, true).await
}

/// `ingot disable-service-access SERVICE [-b BROKER] [-p PLAN] [-o ORG]`.
pub(crate) async fn disable_service_access(args: AccessArgs) -> anyhow::Result<()> {
    change_access(args, false).await
}

async fn change_access(args: AccessArgs, enable: bool) -> anyhow::Result<()> {
    let mut session = Session::open()?;
    let verb = if enable { "Enabling" } else { "Disabling" };
    println!("{}", access_message(verb, &args, &session.user()));
    let plans = access_plans(&session, &args).await?;
    let org = match &args.org {
        Some(name) => Some(find_org_named(&session, name).await?),
        None => None,
    };
    let client = session.client();
    for plan in &plans {
        let what = format!(
            "cannot change access to plan {} of {}",
            plan.name, args.offering
        );
        match (&org, enable) {
            (None, true) => client.set_plan_visibility(&plan.guid, "public").await,
            (None, false) => client.set_plan_visibility(&plan.guid, "admin").await,
            (Some(o), true) => {
                if plan.visibility_type == "public" {
                    println!("Plan {} is already available to all orgs.", plan.name);
                    Ok(())
                } else {
                    client.add_plan_org(&plan.guid, &o.guid).await
                }
            }
            (Some(o), false) => {
                if plan.visibility_type == "public" {
                    return Err(anyhow!(
                        "plan {} of {} is available to all orgs: run `ingot disable-service-access {} -p {}` first, then enable it for the orgs that should keep it",
                        plan.name,
                        args.offering,
                        args.offering,
                        plan.name
                    ));
                }
                if plan.visibility_type == "organization" {
                    client.remove_plan_org(&plan.guid, &o.guid).await
                } else {
                    Ok(())
                }
            }
        }
        .or_explain(what)?;
    }
    session.keep_tokens();
    println!("OK");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_marketplace_table_reads_like_cf() {
        let rows = vec![OfferingRow {
            offering: "p-mysql".into(),
            description: "MySQL databases".into(),
            broker: "my-broker".into(),
            plans: vec![
                PlanRow {
                    plan: "small".into(),
                    description: "".into(),
                    free: true,
                    available: true,
                },
                PlanRow {
                    plan: "large".into(),
                    description: "".into(),
                    free: false,
                    available: true,
                },
            ],
        }];
        assert_eq!(
            marketplace_table(&rows),
            "offering   plans          description       broker\n\
             p-mysql    small, large   MySQL databases   my-broker\n"
        );
    }

    #[test]
    fn access_messages_say_what_changes_for_whom() {
        let args = AccessArgs {
            offering: "db".into(),
            broker: None,
            plan: Some("small".into()),
            org: None,
        };
        assert_eq!(
            access_message("Enabling", &args, "admin"),
            "Enabling access to plan small of service offering db for all orgs as admin..."
        );
        let args = AccessArgs {
            offering: "db".into(),
            broker: None,
            plan: None,
            org: Some("acme".into()),
        };
        assert_eq!(
            access_message("Disabling", &args, "admin"),
            "Disabling access to all plans of service offering db for org acme as admin..."
        );
    }
}
