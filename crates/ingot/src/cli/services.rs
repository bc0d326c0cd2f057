//! `create-user-provided-service` (`cups`), `update-user-provided-service`
//! (`uups`), `create-service`, `update-service`, `service`, `services`,
//! `bind-service`, `unbind-service`, `delete-service`, and service keys
//! (`create-service-key`, `service-keys`, `service-key`,
//! `delete-service-key`).
//!
//! Managed instances change asynchronously. Without `--wait` a command
//! says the operation is in progress and how to follow it, as cf does;
//! with `--wait` it shows the broker's progress (a spinner on a terminal,
//! one line per change otherwise) and fails with the broker's description
//! when the operation fails.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{anyhow, Context as _};
use clap::Args;
use ingot_client::marketplace::CatalogFilter;
use ingot_client::services::{
    Accepted, LastOperation, ManagedFields, ServiceInstance, UserProvided,
};
use ingot_client::Client;
use serde::Serialize;

use super::{find_app, ui, OrExplain as _, Session};

/// How long `--wait` follows a broker's operation.
const OPERATION_TIMEOUT: Duration = Duration::from_secs(30 * 60);

/// Flags of `create-user-provided-service` and `update-user-provided-service`.
#[derive(Args)]
pub struct UserProvidedArgs {
    /// The service instance's name.
    name: String,
    /// Credentials: a JSON object, or the path of a file holding one.
    #[arg(short = 'p')]
    credentials: Option<String>,
    /// Forward the bound apps' logs here: syslog://, syslog-tls:// or https://.
    #[arg(short = 'l')]
    syslog_drain_url: Option<String>,
    /// Route service URL (https://).
    #[arg(short = 'r')]
    route_service_url: Option<String>,
    /// Comma-separated tags.
    #[arg(short = 't')]
    tags: Option<String>,
}

/// An app and a service instance.
#[derive(Args)]
pub struct BindArgs {
    /// The app's name.
    app: String,
    /// The service instance's name.
    service: String,
}

/// Flags of `delete-service`.
#[derive(Args)]
pub struct DeleteServiceArgs {
    /// The service instance's name.
    name: String,
    /// Do not ask for confirmation.
    #[arg(short = 'f')]
    force: bool,
    /// Wait for the broker to finish deleting it.
    #[arg(short = 'w', long)]
    wait: bool,
}

/// Flags of `create-service`.
#[derive(Args)]
pub struct CreateServiceArgs {
    /// The service offering (see `ingot marketplace`).
    offering: String,
    /// The plan.
    plan: String,
    /// The new instance's name.
    name: String,
    /// The broker, when several offer a service of that name.
    #[arg(short = 'b')]
    broker: Option<String>,
    /// Parameters for the broker: a JSON object, or the path of a file holding one.
    #[arg(short = 'c')]
    parameters: Option<String>,
    /// Comma-separated tags.
    #[arg(short = 't')]
    tags: Option<String>,
    /// Wait for the broker to finish creating it.
    #[arg(short = 'w', long)]
    wait: bool,
}

/// Flags of `update-service`.
#[derive(Args)]
pub struct UpdateServiceArgs {
    /// The service instance's name.
    name: String,
    /// A new plan.
    #[arg(short = 'p')]
    plan: Option<String>,
    /// Parameters for the broker: a JSON object, or the path of a file holding one.
    #[arg(short = 'c')]
    parameters: Option<String>,
    /// Comma-separated tags (replace the current ones).
    #[arg(short = 't')]
    tags: Option<String>,
    /// Wait for the broker to finish updating it.
    #[arg(short = 'w', long)]
    wait: bool,
}

/// Flags of `service`.
#[derive(Args)]
pub struct ServiceArgs {
    /// The service instance's name.
    name: String,
    /// Print only the instance's guid.
    #[arg(long)]
    guid: bool,
    /// Print machine-readable JSON.
    #[arg(long)]
    json: bool,
}

/// Flags of `create-service-key`.
#[derive(Args)]
pub struct CreateKeyArgs {
    /// The service instance's name.
    instance: String,
    /// The key's name.
    key: String,
    /// Parameters for the broker: a JSON object, or the path of a file holding one.
    #[arg(short = 'c')]
    parameters: Option<String>,
    /// Wait for the broker to finish creating it.
    #[arg(short = 'w', long)]
    wait: bool,
}

/// Flags of `service-keys`.
#[derive(Args)]
pub struct KeysArgs {
    /// The service instance's name.
    instance: String,
    /// Print machine-readable JSON.
    #[arg(long)]
    json: bool,
}

/// Flags of `service-key`.
#[derive(Args)]
pub struct KeyArgs {
    /// The service instance's name.
    instance: String,
    /// The key's name.
    key: String,
    /// Print only the key's guid.
    #[arg(long)]
    guid: bool,
}

/// Flags of `delete-service-key`.
#[derive(Args)]
pub struct DeleteKeyArgs {
    /// The service instance's name.
    instance: String,
    /// The key's name.
    key: String,
    /// Do not ask for confirmation.
    #[arg(short = 'f')]
    force: bool,
    /// Wait for the broker to finish deleting it.
    #[arg(short = 'w', long)]
    wait: bool,
}

/// A `-c`/`-p` value: a JSON object inline, or the path of a file holding
/// one; `flag` and `what` name it in errors.
pub(crate) fn json_object_arg(
    flag: &str,
    what: &str,
    text: &str,
) -> anyhow::Result<serde_json::Value> {
    let json = if text.trim_start().starts_with('{') {
        text.to_string()
    } else {
        std::fs::read_to_string(text).with_context(|| {
            format!("{flag} takes a JSON object or a file holding one; cannot read {text}")
        })?
    };
    let value: serde_json::Value = serde_json::from_str(&json)
        .map_err(|e| anyhow!("the {what} ({flag}) are not valid JSON: {e}"))?;
    if !value.is_object() {
        return Err(anyhow!("the {what} ({flag}) must be a JSON object"));
    }
    Ok(value)
}

fn split_tags(tags: &Option<String>) -> Option<Vec<String>> {
    tags.as_ref().map(|t| {
        t.split(',')
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect()
    })
}

impl UserProvidedArgs {
    fn fields(&self) -> anyhow::Result<UserProvided> {
        let credentials = self
            .credentials
            .as_deref()
            .map(|text| json_object_arg("-p", "credentials", text))
            .transpose()?;
        Ok(UserProvided {
            credentials,
            syslog_drain_url: self.syslog_drain_url.clone(),
            route_service_url: self.route_service_url.clone(),
            tags: split_tags(&self.tags),
        })
    }
}

async fn find_instance(
    session: &Session,
    space: &ingot_client::config::Target,
    name: &str,
) -> anyhow::Result<ServiceInstance> {
    session
        .client()
        .service_instance_by_name(&space.guid, name)
        .await
        .or_explain(format!("cannot look up service {name}"))?
        .ok_or_else(|| {
            anyhow!(
                "service {name} not found in space {}: run `ingot services` to see them",
                space.name
            )
        })
}

/// `ingot create-user-provided-service NAME [-p CREDENTIALS] [-l URL] [-r URL]`.
pub(crate) async fn create_user_provided(args: UserProvidedArgs) -> anyhow::Result<()> {
    let fields = args.fields()?;
    let mut session = Session::open()?;
    let (org, space) = session.target()?;
    println!(
        "Creating user provided service {} in org {} / space {} as {}...",
        args.name,
        org.name,
        space.name,
        session.user()
    );
    session
        .client()
        .create_user_provided(&space.guid, &args.name, &fields)
        .await
        .or_explain(format!("cannot create service {}", args.name))?;
    session.keep_tokens();
    println!(
        "OK\n\nTIP: run `ingot bind-service APP {}`, then restart the app",
        args.name
    );
    Ok(())
}

/// `ingot update-user-provided-service NAME [-p …] [-l …] [-r …]`.
pub(crate) async fn update_user_provided(args: UserProvidedArgs) -> anyhow::Result<()> {
    let fields = args.fields()?;
    let mut session = Session::open()?;
    let (_, space) = session.target()?;
    let instance = find_instance(&session, &space, &args.name).await?;
    println!(
        "Updating user provided service {} as {}...",
        instance.name,
        session.user()
    );
    session
        .client()
        .update_user_provided(&instance.guid, &fields)
        .await
        .or_explain(format!("cannot update service {}", instance.name))?;
    session.keep_tokens();
    println!("OK\n\nTIP: restart bound apps to give them the new credentials");
    Ok(())
}

/// One instance of `services --json`.
#[derive(Debug, Serialize)]
pub(crate) struct ServiceRow {
    name: String,
    guid: String,
    /// `user-provided` or `managed`.
    kind: String,
    /// The offering of a managed instance.
    offering: Option<String>,
    /// The plan of a managed instance.
    plan: Option<String>,
    /// The broker of a managed instance.
    broker: Option<String>,
    bound_apps: Vec<String>,
    /// `create succeeded`, `update in progress`, …
    last_operation: Option<String>,
    syslog_drain_url: Option<String>,
}

/// What a managed instance's plan is: (offering, plan, broker) names.
#[derive(Debug, Clone, Default)]
struct PlanNames {
    offering: String,
    plan: String,
    broker: String,
    offering_description: String,
    offering_tags: Vec<String>,
    documentation_url: Option<String>,
}

/// Looks the names of plans up once each. A plan the user cannot read
/// (or a platform without brokers) leaves the names empty rather than
/// failing the listing.
#[derive(Default)]
struct PlanCache {
    plans: BTreeMap<String, PlanNames>,
    brokers: Option<BTreeMap<String, String>>,
}

impl PlanCache {
    async fn names(&mut self, client: &Client, plan_guid: &str) -> PlanNames {
        if let Some(found) = self.plans.get(plan_guid) {
            return found.clone();
        }
        let mut names = PlanNames::default();
        if let Ok(plan) = client.service_plan(plan_guid).await {
            names.plan = plan.name;
            if let Some(og) = plan.relationships.service_offering.guid() {
                if let Ok(offering) = client.service_offering(og).await {
                    names.offering = offering.name;
                    names.offering_description = offering.description;
                    names.offering_tags = offering.tags;
                    names.documentation_url = offering.documentation_url;
                    if self.brokers.is_none() {
                        self.brokers = Some(
                            client
                                .service_brokers(None)
                                .await
                                .map(|bs| bs.into_iter().map(|b| (b.guid, b.name)).collect())
                                .unwrap_or_default(),
                        );
                    }
                    if let (Some(brokers), Some(bg)) =
                        (&self.brokers, offering.relationships.service_broker.guid())
                    {
                        names.broker = brokers.get(bg).cloned().unwrap_or_default();
                    }
                }
            }
        }
        self.plans.insert(plan_guid.to_string(), names.clone());
        names
    }
}

fn non_empty(s: String) -> Option<String> {
    (!s.is_empty()).then_some(s)
}

/// The table of `services`, with cf's columns.
pub(crate) fn services_table(rows: &[ServiceRow]) -> String {
    let mut table = vec![vec![
        "name".to_string(),
        "offering".to_string(),
        "plan".to_string(),
        "bound apps".to_string(),
        "last operation".to_string(),
        "broker".to_string(),
    ]];
    for r in rows {
        let offering = if r.kind == "user-provided" {
            "user-provided".to_string()
        } else {
            r.offering.clone().unwrap_or_default()
        };
        table.push(vec![
            r.name.clone(),
            offering,
            r.plan.clone().unwrap_or_default(),
            r.bound_apps.join(", "),
            r.last_operation.clone().unwrap_or_default(),
            r.broker.clone().unwrap_or_default(),
        ]);
    }
    ui::table(&table)
}

/// `ingot services`.
pub(crate) async fn services(args: super::ListArgs) -> anyhow::Result<()> {
    let mut session = Session::open()?;
    let (org, space) = session.target()?;
    if !args.json {
        println!(
            "Getting services in org {} / space {} as {}...\n",
            org.name,
            space.name,
            session.user()
        );
    }
    let client = session.client();
    let instances = client
        .service_instances(&space.guid)
        .await
        .or_explain("cannot list the services")?;
    let apps = client
        .apps(&space.guid)
        .await
        .or_explain("cannot list the apps")?;
    let mut cache = PlanCache::default();
    let mut rows = Vec::new();
    for instance in instances {
        let bindings = client
            .bindings(None, Some(&instance.guid))
            .await
            .or_explain(format!("cannot list the bindings of {}", instance.name))?;
        let bound_apps = bindings
            .iter()
            .filter_map(|b| b.relationships.app.data.as_ref())
            .filter_map(|d| apps.iter().find(|a| a.guid == d.guid))
            .map(|a| a.name.clone())
            .collect();
        let names = match instance.relationships.service_plan.guid() {
            Some(plan) if instance.kind == "managed" => Some(cache.names(client, plan).await),
            _ => None,
        };
        rows.push(ServiceRow {
            name: instance.name,
            guid: instance.guid,
            kind: instance.kind,
            offering: names.as_ref().and_then(|n| non_empty(n.offering.clone())),
            plan: names.as_ref().and_then(|n| non_empty(n.plan.clone())),
            broker: names.as_ref().and_then(|n| non_empty(n.broker.clone())),
            bound_apps,
            last_operation: instance.last_operation.map(|o| o.summary()),
            syslog_drain_url: instance.syslog_drain_url,
        });
    }
    session.keep_tokens();
    if args.json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(());
    }
    if rows.is_empty() {
        println!("No services found.");
        return Ok(());
    }
    print!("{}", services_table(&rows));
    Ok(())
}

/// Follows a managed instance's operation until it ends: a spinner with
/// the broker's state and description on a terminal, a line per change
/// otherwise. A failed operation is an error carrying the broker's words.
async fn follow_operation(
    client: &Client,
    instance: &ServiceInstance,
    verb: &str,
) -> anyhow::Result<Option<ServiceInstance>> {
    println!("Waiting for the operation to complete...");
    let spinner = ui::spinner(&format!("{verb} in progress"));
    let mut last: Option<LastOperation> = None;
    let outcome = client
        .wait_instance_operation(&instance.guid, OPERATION_TIMEOUT, |op| {
            let line = operation_line(op);
            match &spinner {
                Some(s) => s.set_message(line),
                None => {
                    if last.as_ref() != Some(op) {
                        println!("   {line}");
                    }
                }
            }
            last = Some(op.clone());
        })
        .await;
    if let Some(s) = spinner {
        s.finish_and_clear();
    }
    let outcome = outcome.or_explain(format!(
        "cannot follow the {verb} of service {}: run `ingot service {}` to see how it is going",
        instance.name, instance.name
    ))?;
    if let Some(op) = outcome.as_ref().and_then(|i| i.last_operation.as_ref()) {
        if op.state == "failed" {
            return Err(anyhow!(
                "{} of service {} failed: {}: run `ingot service {}` for details",
                capitalize(&op.kind),
                instance.name,
                op.description
                    .as_deref()
                    .filter(|d| !d.is_empty())
                    .unwrap_or("the broker gave no reason"),
                instance.name
            ));
        }
    }
    Ok(outcome)
}

/// `create in progress: provisioning 40%` as the spinner shows it.
pub(crate) fn operation_line(op: &LastOperation) -> String {
    match op.description.as_deref().filter(|d| !d.is_empty()) {
        Some(d) => format!("{}: {d}", op.summary()),
        None => op.summary(),
    }
}

fn capitalize(word: &str) -> String {
    let mut c = word.chars();
    c.next()
        .map(|f| f.to_uppercase().chain(c).collect())
        .unwrap_or_default()
}

/// cf's sentence for an operation left running.
pub(crate) fn in_progress_tip(verb: &str, name: &str) -> String {
    format!(
        "{verb} in progress. Use 'ingot services' or 'ingot service {name}' to check operation status."
    )
}

/// The plan `name` of the offering `offering` (of `broker`, when given).
async fn find_plan(
    client: &Client,
    offering: &str,
    plan: &str,
    broker: Option<&str>,
    space_guid: &str,
) -> anyhow::Result<String> {
    let offerings = client
        .service_offerings(&CatalogFilter {
            offering_name: Some(offering),
            broker_name: broker,
            ..CatalogFilter::default()
        })
        .await
        .or_explain(format!("cannot look up service offering {offering}"))?;
    let offerings: Vec<_> = offerings
        .into_iter()
        .filter(|o| o.name == offering)
        .collect();
    let found = match offerings.as_slice() {
        [] => {
            return Err(anyhow!(
            "service offering {offering} not found: run `ingot marketplace` to see the offerings"
        ))
        }
        [one] => one,
        _ => {
            return Err(anyhow!(
                "several brokers offer a service named {offering}: say which with -b BROKER"
            ))
        }
    };
    let plans = client
        .service_plans(&CatalogFilter {
            offering_guid: Some(&found.guid),
            plan_name: Some(plan),
            space_guid: Some(space_guid),
            ..CatalogFilter::default()
        })
        .await
        .or_explain(format!("cannot look up plan {plan} of {offering}"))?;
    plans
        .into_iter()
        .find(|p| p.name == plan)
        .map(|p| p.guid)
        .ok_or_else(|| {
            anyhow!(
                "the service offering {offering} has no plan {plan} available here: run `ingot marketplace -e {offering}` to see its plans"
            )
        })
}

/// `ingot create-service SERVICE PLAN NAME [-b BROKER] [-c PARAMS] [-t TAGS] [--wait]`.
pub(crate) async fn create_service(args: CreateServiceArgs) -> anyhow::Result<()> {
    let parameters = args
        .parameters
        .as_deref()
        .map(|t| json_object_arg("-c", "parameters", t))
        .transpose()?;
    let mut session = Session::open()?;
    let (org, space) = session.target()?;
    println!(
        "Creating service instance {} in org {} / space {} as {}...",
        args.name,
        org.name,
        space.name,
        session.user()
    );
    let client = session.client();
    let plan_guid = find_plan(
        client,
        &args.offering,
        &args.plan,
        args.broker.as_deref(),
        &space.guid,
    )
    .await?;
    let fields = ManagedFields {
        plan_guid: Some(plan_guid),
        parameters,
        tags: split_tags(&args.tags),
    };
    let answer = match client
        .create_managed_instance(&space.guid, &args.name, &fields)
        .await
    {
        Ok(a) => a,
        Err(e) if e.status() == Some(422) && e.to_string().contains("name is taken") => {
            println!("Service instance {} already exists\nOK", args.name);
            return Ok(());
        }
        Err(e) => {
            return Err(super::explain(
                format!("cannot create service {}", args.name),
                e,
            ))
        }
    };
    finish_async(
        &mut session,
        &space,
        &args.name,
        answer,
        args.wait,
        "Create",
    )
    .await
}

/// After a managed create, update or delete: waits with `--wait`, or says
/// how to follow the operation.
async fn finish_async(
    session: &mut Session,
    space: &ingot_client::config::Target,
    name: &str,
    answer: Accepted,
    wait: bool,
    verb: &str,
) -> anyhow::Result<()> {
    let done_word = match verb {
        "Create" => "created",
        "Update" => "updated",
        _ => "deleted",
    };
    match answer {
        Accepted::Done => {
            session.keep_tokens();
            println!("OK\n\nService instance {name} {done_word}.");
        }
        Accepted::InProgress(_) if !wait => {
            session.keep_tokens();
            println!("OK\n\n{}", in_progress_tip(verb, name));
        }
        Accepted::InProgress(_) => {
            let instance = match session
                .client()
                .service_instance_by_name(&space.guid, name)
                .await
                .or_explain(format!("cannot look up service {name}"))?
            {
                Some(i) => i,
                None if verb == "Delete" => {
                    println!("OK\n\nService instance {name} deleted.");
                    return Ok(());
                }
                None => {
                    return Err(anyhow!(
                        "service {name} disappeared while being {done_word}: run `ingot services`"
                    ))
                }
            };
            follow_operation(session.client(), &instance, &verb.to_lowercase()).await?;
            session.keep_tokens();
            println!("OK\n\nService instance {name} {done_word}.");
        }
    }
    Ok(())
}

/// `ingot update-service NAME [-p PLAN] [-c PARAMS] [-t TAGS] [--wait]`.
pub(crate) async fn update_service(args: UpdateServiceArgs) -> anyhow::Result<()> {
    let parameters = args
        .parameters
        .as_deref()
        .map(|t| json_object_arg("-c", "parameters", t))
        .transpose()?;
    let mut session = Session::open()?;
    let (org, space) = session.target()?;
    println!(
        "Updating service instance {} in org {} / space {} as {}...",
        args.name,
        org.name,
        space.name,
        session.user()
    );
    if args.plan.is_none() && parameters.is_none() && args.tags.is_none() {
        println!("No changes were made.\nOK");
        return Ok(());
    }
    let instance = find_instance(&session, &space, &args.name).await?;
    if instance.kind == "user-provided" {
        return Err(anyhow!(
            "service {} is user-provided: run `ingot update-user-provided-service {}` to change it",
            instance.name,
            instance.name
        ));
    }
    let client = session.client();
    let plan_guid = match &args.plan {
        None => None,
        Some(plan) => {
            let current = instance
                .relationships
                .service_plan
                .guid()
                .ok_or_else(|| anyhow!("service {} has no plan", instance.name))?;
            let offering_guid = client
                .service_plan(current)
                .await
                .or_explain(format!("cannot read the plan of service {}", instance.name))?
                .relationships
                .service_offering
                .guid()
                .map(str::to_string)
                .ok_or_else(|| {
                    anyhow!("the plan of service {} names no offering", instance.name)
                })?;
            let plans = client
                .service_plans(&CatalogFilter {
                    offering_guid: Some(&offering_guid),
                    plan_name: Some(plan),
                    ..CatalogFilter::default()
                })
                .await
                .or_explain(format!("cannot look up plan {plan}"))?;
            Some(
                plans
                    .into_iter()
                    .find(|p| &p.name == plan)
                    .map(|p| p.guid)
                    .ok_or_else(|| {
                        anyhow!("the offering of service {} has no plan {plan}: run `ingot marketplace` to see the plans", instance.name)
                    })?,
            )
        }
    };
    let fields = ManagedFields {
        plan_guid,
        parameters,
        tags: split_tags(&args.tags),
    };
    let answer = client
        .update_managed_instance(&instance.guid, &fields)
        .await
        .or_explain(format!("cannot update service {}", instance.name))?;
    finish_async(
        &mut session,
        &space,
        &instance.name,
        answer,
        args.wait,
        "Update",
    )
    .await
}

/// `ingot service NAME` as `--json` shows it.
#[derive(Debug, Serialize)]
struct ServiceDetail {
    name: String,
    guid: String,
    kind: String,
    offering: Option<String>,
    plan: Option<String>,
    broker: Option<String>,
    description: Option<String>,
    documentation_url: Option<String>,
    dashboard_url: Option<String>,
    tags: Vec<String>,
    syslog_drain_url: Option<String>,
    route_service_url: Option<String>,
    last_operation: Option<LastOperation>,
    bound_apps: Vec<BoundApp>,
}

/// An app bound to an instance.
#[derive(Debug, Serialize)]
struct BoundApp {
    name: String,
    binding_name: Option<String>,
    status: Option<String>,
    message: Option<String>,
}

/// `ingot service NAME [--guid] [--json]`.
pub(crate) async fn service(args: ServiceArgs) -> anyhow::Result<()> {
    let mut session = Session::open()?;
    let (org, space) = session.target()?;
    let instance = find_instance(&session, &space, &args.name).await?;
    if args.guid {
        println!("{}", instance.guid);
        session.keep_tokens();
        return Ok(());
    }
    if !args.json {
        println!(
            "Showing info of service {} in org {} / space {} as {}...\n",
            instance.name,
            org.name,
            space.name,
            session.user()
        );
    }
    let client = session.client();
    let names = match instance.relationships.service_plan.guid() {
        Some(plan) if instance.kind == "managed" => {
            Some(PlanCache::default().names(client, plan).await)
        }
        _ => None,
    };
    let apps = client
        .apps(&space.guid)
        .await
        .or_explain("cannot list the apps")?;
    let bindings = client
        .bindings(None, Some(&instance.guid))
        .await
        .or_explain(format!("cannot list the bindings of {}", instance.name))?;
    let bound_apps = bindings
        .into_iter()
        .map(|b| BoundApp {
            name: b
                .relationships
                .app
                .guid()
                .and_then(|g| apps.iter().find(|a| a.guid == g))
                .map(|a| a.name.clone())
                .unwrap_or_default(),
            binding_name: b.name,
            status: b.last_operation.as_ref().map(LastOperation::summary),
            message: b.last_operation.and_then(|o| o.description),
        })
        .collect();
    session.keep_tokens();
    let detail = ServiceDetail {
        offering: names.as_ref().and_then(|n| non_empty(n.offering.clone())),
        plan: names.as_ref().and_then(|n| non_empty(n.plan.clone())),
        broker: names.as_ref().and_then(|n| non_empty(n.broker.clone())),
        description: names
            .as_ref()
            .and_then(|n| non_empty(n.offering_description.clone())),
        documentation_url: names.as_ref().and_then(|n| n.documentation_url.clone()),
        name: instance.name,
        guid: instance.guid,
        kind: instance.kind,
        dashboard_url: instance.dashboard_url,
        tags: instance.tags,
        syslog_drain_url: instance.syslog_drain_url,
        route_service_url: instance.route_service_url,
        last_operation: instance.last_operation,
        bound_apps,
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&detail)?);
        return Ok(());
    }
    print!("{}", service_text(&detail, names.map(|n| n.offering_tags)));
    Ok(())
}

/// The text of `service NAME`, in cf's layout.
fn service_text(d: &ServiceDetail, offering_tags: Option<Vec<String>>) -> String {
    let opt = |v: &Option<String>| v.clone().unwrap_or_default();
    let mut lines: Vec<Vec<String>> = vec![
        vec!["name:".into(), d.name.clone()],
        vec!["guid:".into(), d.guid.clone()],
        vec!["type:".into(), d.kind.clone()],
    ];
    if d.kind == "managed" {
        lines.extend([
            vec!["broker:".into(), opt(&d.broker)],
            vec!["offering:".into(), opt(&d.offering)],
            vec!["plan:".into(), opt(&d.plan)],
            vec!["tags:".into(), d.tags.join(", ")],
            vec![
                "offering tags:".into(),
                offering_tags.unwrap_or_default().join(", "),
            ],
            vec!["description:".into(), opt(&d.description)],
            vec!["documentation:".into(), opt(&d.documentation_url)],
            vec!["dashboard url:".into(), opt(&d.dashboard_url)],
        ]);
    } else {
        lines.extend([
            vec!["tags:".into(), d.tags.join(", ")],
            vec!["route service url:".into(), opt(&d.route_service_url)],
            vec!["syslog drain url:".into(), opt(&d.syslog_drain_url)],
        ]);
    }
    let mut out = ui::table(&lines);
    out.push_str("\nShowing status of last operation:\n");
    match &d.last_operation {
        Some(op) => {
            let rows = vec![
                vec!["status:".to_string(), op.summary()],
                vec![
                    "message:".to_string(),
                    op.description.clone().unwrap_or_default(),
                ],
                vec![
                    "started:".to_string(),
                    op.created_at.clone().unwrap_or_default(),
                ],
                vec![
                    "updated:".to_string(),
                    op.updated_at.clone().unwrap_or_default(),
                ],
            ];
            for line in ui::table(&rows).lines() {
                out.push_str(&format!("   {line}\n"));
            }
        }
        None => {
            out.push_str("   There is no last operation available for this service instance.\n")
        }
    }
    out.push_str("\nShowing bound apps:\n");
    if d.bound_apps.is_empty() {
        out.push_str("   There are no bound apps for this service instance.\n");
    } else {
        let mut rows = vec![vec![
            "name".to_string(),
            "binding name".to_string(),
            "status".to_string(),
            "message".to_string(),
        ]];
        for b in &d.bound_apps {
            rows.push(vec![
                b.name.clone(),
                opt(&b.binding_name),
                opt(&b.status),
                opt(&b.message),
            ]);
        }
        for line in ui::table(&rows).lines() {
            out.push_str(&format!("   {line}\n"));
        }
    }
    out
}

/// `ingot bind-service APP SERVICE`.
pub(crate) async fn bind_service(args: BindArgs) -> anyhow::Result<()> {
    let mut session = Session::open()?;
    let (_, space) = session.target()?;
    let app = find_app(&session, &space, &args.app).await?;
    let instance = find_instance(&session, &space, &args.service).await?;
    println!(
        "Binding service {} to app {} as {}...",
        instance.name,
        app.name,
        session.user()
    );
    match session.client().bind(&app.guid, &instance.guid).await {
        Ok(_) => {}
        Err(e) if e.status() == Some(422) && e.to_string().contains("already bound") => {
            println!(
                "App {} is already bound to service {}.",
                app.name, instance.name
            );
        }
        Err(e) => {
            return Err(super::explain(
                format!("cannot bind service {}", instance.name),
                e,
            ))
        }
    }
    session.keep_tokens();
    println!(
        "OK\n\nTIP: run `ingot restart {}` so the app sees the credentials (log drains start at once)",
        app.name
    );
    Ok(())
}

/// `ingot unbind-service APP SERVICE`.
pub(crate) async fn unbind_service(args: BindArgs) -> anyhow::Result<()> {
    let mut session = Session::open()?;
    let (_, space) = session.target()?;
    let app = find_app(&session, &space, &args.app).await?;
    let instance = find_instance(&session, &space, &args.service).await?;
    println!(
        "Unbinding app {} from service {} as {}...",
        app.name,
        instance.name,
        session.user()
    );
    let client = session.client();
    let bindings = client
        .bindings(Some(&app.guid), Some(&instance.guid))
        .await
        .or_explain("cannot list the bindings")?;
    if bindings.is_empty() {
        println!(
            "Binding between {} and {} did not exist",
            instance.name, app.name
        );
    }
    for binding in bindings {
        client
            .unbind(&binding.guid)
            .await
            .or_explain(format!("cannot unbind service {}", instance.name))?;
    }
    session.keep_tokens();
    println!("OK");
    Ok(())
}

/// `ingot delete-service NAME [-f] [--wait]`.
pub(crate) async fn delete_service(args: DeleteServiceArgs) -> anyhow::Result<()> {
    let mut session = Session::open()?;
    let (org, space) = session.target()?;
    if !args.force && !ui::confirm(&format!("Really delete the service {}?", args.name))? {
        println!("Delete cancelled");
        return Ok(());
    }
    println!(
        "Deleting service instance {} in org {} / space {} as {}...",
        args.name,
        org.name,
        space.name,
        session.user()
    );
    let instance = find_instance(&session, &space, &args.name).await?;
    let answer = session
        .client()
        .delete_instance(&instance.guid)
        .await
        .or_explain(format!(
            "cannot delete service {}; unbind it first if apps use it (`ingot service {}`)",
            instance.name, instance.name
        ))?;
    finish_async(
        &mut session,
        &space,
        &instance.name,
        answer,
        args.wait,
        "Delete",
    )
    .await
}

/// One key of `service-keys --json`.
#[derive(Debug, Serialize)]
struct KeyRow {
    name: String,
    guid: String,
    last_operation: Option<String>,
    message: Option<String>,
}

/// `ingot create-service-key INSTANCE KEY [-c PARAMS] [--wait]`.
pub(crate) async fn create_service_key(args: CreateKeyArgs) -> anyhow::Result<()> {
    let parameters = args
        .parameters
        .as_deref()
        .map(|t| json_object_arg("-c", "parameters", t))
        .transpose()?;
    let mut session = Session::open()?;
    let (_, space) = session.target()?;
    println!(
        "Creating service key {} for service instance {} as {}...",
        args.key,
        args.instance,
        session.user()
    );
    let instance = find_instance(&session, &space, &args.instance).await?;
    let client = session.client();
    let answer = match client
        .create_service_key(&instance.guid, &args.key, parameters.as_ref())
        .await
    {
        Ok(a) => a,
        Err(e) if e.status() == Some(422) && e.to_string().contains("already has a key") => {
            println!("Service key {} already exists\nOK", args.key);
            return Ok(());
        }
        Err(e) => {
            return Err(super::explain(
                format!(
                    "cannot create service key {} for {}",
                    args.key, instance.name
                ),
                e,
            ))
        }
    };
    if let Accepted::InProgress(job) = answer {
        if !args.wait {
            session.keep_tokens();
            println!(
                "OK\n\nCreate in progress. Use 'ingot service-keys {}' to check operation status.",
                instance.name
            );
            return Ok(());
        }
        println!("Waiting for the operation to complete...");
        let spinner = ui::spinner("create in progress");
        let waited = client.wait_job(&job, OPERATION_TIMEOUT).await;
        if let Some(s) = spinner {
            s.finish_and_clear();
        }
        waited.or_explain(format!("creating service key {} failed", args.key))?;
    }
    session.keep_tokens();
    println!(
        "OK\n\nTIP: run `ingot service-key {} {}` to see its credentials",
        instance.name, args.key
    );
    Ok(())
}

/// `ingot service-keys INSTANCE`.
pub(crate) async fn service_keys(args: KeysArgs) -> anyhow::Result<()> {
    let mut session = Session::open()?;
    let (_, space) = session.target()?;
    if !args.json {
        println!(
            "Getting keys for service instance {} as {}...\n",
            args.instance,
            session.user()
        );
    }
    let instance = find_instance(&session, &space, &args.instance).await?;
    let keys = session
        .client()
        .service_keys(&instance.guid)
        .await
        .or_explain(format!("cannot list the keys of service {}", instance.name))?;
    session.keep_tokens();
    let rows: Vec<KeyRow> = keys
        .into_iter()
        .map(|k| KeyRow {
            name: k.name.unwrap_or_default(),
            guid: k.guid,
            last_operation: k.last_operation.as_ref().map(LastOperation::summary),
            message: k.last_operation.and_then(|o| o.description),
        })
        .collect();
    if args.json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
    } else if rows.is_empty() {
        println!("No service keys for service instance {}", instance.name);
    } else {
        let mut table = vec![vec![
            "name".to_string(),
            "last operation".to_string(),
            "message".to_string(),
        ]];
        table.extend(rows.into_iter().map(|r| {
            vec![
                r.name,
                r.last_operation.unwrap_or_default(),
                r.message.unwrap_or_default(),
            ]
        }));
        print!("{}", ui::table(&table));
    }
    Ok(())
}

async fn find_key(
    session: &Session,
    instance: &ServiceInstance,
    key: &str,
) -> anyhow::Result<Option<ingot_client::services::ServiceKey>> {
    session
        .client()
        .service_key_by_name(&instance.guid, key)
        .await
        .or_explain(format!("cannot look up service key {key}"))
}

/// `ingot service-key INSTANCE KEY [--guid]`: prints the credentials.
pub(crate) async fn service_key(args: KeyArgs) -> anyhow::Result<()> {
    let mut session = Session::open()?;
    let (_, space) = session.target()?;
    let instance = find_instance(&session, &space, &args.instance).await?;
    let key = find_key(&session, &instance, &args.key).await?.ok_or_else(|| {
        anyhow!(
            "no service key {} found for service instance {}: run `ingot service-keys {}` to see its keys",
            args.key,
            instance.name,
            instance.name
        )
    })?;
    if args.guid {
        println!("{}", key.guid);
        session.keep_tokens();
        return Ok(());
    }
    eprintln!(
        "Getting key {} for service instance {} as {}...\n",
        args.key,
        instance.name,
        session.user()
    );
    let credentials = session
        .client()
        .service_key_credentials(&key.guid)
        .await
        .or_explain(format!(
            "cannot read the credentials of service key {}",
            args.key
        ))?;
    session.keep_tokens();
    println!("{}", serde_json::to_string_pretty(&credentials)?);
    Ok(())
}

/// `ingot delete-service-key INSTANCE KEY [-f] [--wait]`.
pub(crate) async fn delete_service_key(args: DeleteKeyArgs) -> anyhow::Result<()> {
    let mut session = Session::open()?;
    let (_, space) = session.target()?;
    if !args.force && !ui::confirm(&format!("Really delete the service key {}?", args.key))? {
        println!("Delete cancelled");
        return Ok(());
    }
    println!(
        "Deleting key {} for service instance {} as {}...",
        args.key,
        args.instance,
        session.user()
    );
    let instance = find_instance(&session, &space, &args.instance).await?;
    let Some(key) = find_key(&session, &instance, &args.key).await? else {
        println!(
            "Service key {} does not exist for service instance {}.\nOK",
            args.key, instance.name
        );
        return Ok(());
    };
    let client = session.client();
    let answer = client
        .delete_service_key(&key.guid)
        .await
        .or_explain(format!("cannot delete service key {}", args.key))?;
    if let Accepted::InProgress(job) = answer {
        if !args.wait {
            session.keep_tokens();
            println!(
                "OK\n\nDelete in progress. Use 'ingot service-keys {}' to check operation status.",
                instance.name
            );
            return Ok(());
        }
        let spinner = ui::spinner("delete in progress");
        let waited = client.wait_job(&job, OPERATION_TIMEOUT).await;
        if let Some(s) = spinner {
            s.finish_and_clear();
        }
        waited.or_explain(format!("deleting service key {} failed", args.key))?;
    }
    session.keep_tokens();
    println!("OK");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(name: &str, kind: &str, offering: Option<&str>, op: Option<&str>) -> ServiceRow {
        ServiceRow {
            name: name.into(),
            guid: format!("{name}-guid"),
            kind: kind.into(),
            offering: offering.map(str::to_string),
            plan: offering.map(|_| "small".to_string()),
            broker: offering.map(|_| "acme".to_string()),
            bound_apps: vec!["web".into()],
            last_operation: op.map(str::to_string),
            syslog_drain_url: None,
        }
    }

    #[test]
    fn services_show_managed_and_user_provided_like_cf() {
        let table = services_table(&[
            row("creds", "user-provided", None, Some("create succeeded")),
            row("db", "managed", Some("mysql"), Some("create in progress")),
        ]);
        assert_eq!(
            table,
            "name    offering        plan    bound apps   last operation       broker\n\
             creds   user-provided           web          create succeeded\n\
             db      mysql           small   web          create in progress   acme\n"
        );
    }

    #[test]
    fn progress_lines_carry_the_brokers_words() {
        let op = LastOperation {
            kind: "create".into(),
            state: "in progress".into(),
            description: Some("40% done".into()),
            ..LastOperation::default()
        };
        assert_eq!(operation_line(&op), "create in progress: 40% done");
        let op = LastOperation {
            description: None,
            ..op
        };
        assert_eq!(operation_line(&op), "create in progress");
        assert_eq!(
            in_progress_tip("Create", "db"),
            "Create in progress. Use 'ingot services' or 'ingot service db' to check operation status."
        );
    }

    #[test]
    fn parameters_are_json_objects_inline_or_in_a_file() {
        let v = json_object_arg("-c", "parameters", r#"{"size": 2}"#).expect("inline");
        assert_eq!(v["size"], 2);
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("p.json");
        std::fs::write(&path, r#"{"a": "b"}"#).expect("write");
        let v = json_object_arg("-c", "parameters", &path.to_string_lossy()).expect("file");
        assert_eq!(v["a"], "b");
        let err = json_object_arg("-c", "parameters", "{oops").expect_err("bad json");
        assert!(err.to_string().contains("not valid JSON"), "{err}");
        std::fs::write(&path, "[1]").expect("write");
        let err = json_object_arg("-c", "parameters", &path.to_string_lossy()).expect_err("array");
        assert!(err.to_string().contains("must be a JSON object"), "{err}");
        let err = json_object_arg("-c", "parameters", "/no/such/file").expect_err("missing");
        assert!(
            err.to_string().contains("cannot read /no/such/file"),
            "{err}"
        );
    }

    #[test]
    fn a_user_provided_service_shows_its_urls() {
        let d = ServiceDetail {
            name: "creds".into(),
            guid: "g".into(),
            kind: "user-provided".into(),
            offering: None,
            plan: None,
            broker: None,
            description: None,
            documentation_url: None,
            dashboard_url: None,
            tags: vec![],
            syslog_drain_url: Some("syslog://x:514".into()),
            route_service_url: None,
            last_operation: None,
            bound_apps: vec![],
        };
        let text = service_text(&d, None);
        assert!(
            text.contains("syslog drain url:    syslog://x:514"),
            "{text}"
        );
        assert!(text.contains("There are no bound apps"), "{text}");
        assert!(!text.contains("plan:"), "{text}");
    }
}
