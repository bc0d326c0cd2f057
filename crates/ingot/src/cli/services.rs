//! `create-user-provided-service` (`cups`), `update-user-provided-service`
//! (`uups`), `services`, `bind-service`, `unbind-service`,
//! `delete-service`.

use anyhow::{anyhow, Context as _};
use clap::Args;
use ingot_client::services::{ServiceInstance, UserProvided};
use serde::Serialize;

use super::{find_app, ui, OrExplain as _, Session};

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
}

impl UserProvidedArgs {
    fn fields(&self) -> anyhow::Result<UserProvided> {
        let credentials = match &self.credentials {
            None => None,
            Some(text) => {
                let json = if text.trim_start().starts_with('{') {
                    text.clone()
                } else {
                    std::fs::read_to_string(text).with_context(|| {
                        format!("-p takes a JSON object or a file holding one; cannot read {text}")
                    })?
                };
                let value: serde_json::Value = serde_json::from_str(&json)
                    .map_err(|e| anyhow!("the credentials are not valid JSON: {e}"))?;
                if !value.is_object() {
                    return Err(anyhow!("the credentials must be a JSON object"));
                }
                Some(value)
            }
        };
        Ok(UserProvided {
            credentials,
            syslog_drain_url: self.syslog_drain_url.clone(),
            route_service_url: self.route_service_url.clone(),
            tags: self
                .tags
                .as_ref()
                .map(|t| t.split(',').map(|s| s.trim().to_string()).collect()),
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

#[derive(Serialize)]
struct ServiceRow {
    name: String,
    kind: String,
    bound_apps: Vec<String>,
    syslog_drain_url: Option<String>,
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
        rows.push(ServiceRow {
            name: instance.name,
            kind: instance.kind,
            bound_apps,
            syslog_drain_url: instance.syslog_drain_url,
        });
    }
    session.keep_tokens();
    if args.json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(());
    }
    let mut table = vec![vec![
        "name".to_string(),
        "offering".to_string(),
        "bound apps".to_string(),
    ]];
    table.extend(rows.into_iter().map(|r| {
        vec![
            r.name,
            if r.kind == "user-provided" {
                "user-provided".to_string()
            } else {
                r.kind
            },
            r.bound_apps.join(", "),
        ]
    }));
    print!("{}", ui::table(&table));
    Ok(())
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

/// `ingot delete-service NAME [-f]`.
pub(crate) async fn delete_service(args: DeleteServiceArgs) -> anyhow::Result<()> {
    let mut session = Session::open()?;
    let (_, space) = session.target()?;
    if !args.force && !ui::confirm(&format!("Really delete the service {}?", args.name))? {
        println!("Delete cancelled");
        return Ok(());
    }
    let instance = find_instance(&session, &space, &args.name).await?;
    println!(
        "Deleting service {} as {}...",
        instance.name,
        session.user()
    );
    session
        .client()
        .delete_service_instance(&instance.guid)
        .await
        .or_explain(format!("cannot delete service {}", instance.name))?;
    session.keep_tokens();
    println!("OK");
    Ok(())
}
