//! Deploying without downtime: `restart --strategy rolling`, the rolling
//! end of `push --strategy rolling`, `rollback`, `revisions` and
//! `cancel-deployment`.

use std::time::Duration;

use anyhow::anyhow;
use clap::Args;
use ingot_client::resources::App;
use serde::Serialize;

use super::apps::print_app_summary;
use super::{find_app, ui, OrExplain as _, Session};

/// How long a rolling deployment may take before the CLI stops waiting (the
/// deployment goes on).
const DEPLOY_TIMEOUT: Duration = Duration::from_secs(600);

/// `--strategy`: how an app is restarted with new code.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Strategy {
    /// Stop every instance, then start new ones (downtime).
    Restart,
    /// Start new instances one at a time; stop an old one only when a new
    /// one is healthy (no downtime).
    Rolling,
}

/// Flags of `restart`.
#[derive(Args)]
pub struct RestartArgs {
    /// The app's name.
    pub(crate) name: String,
    /// `rolling` replaces instances one at a time, without downtime.
    #[arg(long, value_enum)]
    pub(crate) strategy: Option<Strategy>,
}

/// Flags of `rollback`.
#[derive(Args)]
pub struct RollbackArgs {
    /// The app's name.
    name: String,
    /// The revision to go back to (see `ingot revisions APP`).
    #[arg(long)]
    version: u64,
    /// Do not ask for confirmation.
    #[arg(short = 'f')]
    force: bool,
}

/// Flags of `revisions`.
#[derive(Args)]
pub struct RevisionsArgs {
    /// The app's name.
    name: String,
    /// Print machine-readable JSON instead of a table.
    #[arg(long)]
    json: bool,
}

/// Flags of `cancel-deployment`.
#[derive(Args)]
pub struct CancelArgs {
    /// The app's name.
    name: String,
}

/// Deploys `droplet` (or, with `revision`, a revision) to a running app
/// with a rolling deployment, and waits until it is done.
pub(crate) async fn roll(
    session: &Session,
    app: &App,
    droplet: Option<&str>,
    revision: Option<&str>,
) -> anyhow::Result<()> {
    let client = session.client();
    let deployment = client
        .create_deployment(&app.guid, droplet, revision)
        .await
        .or_explain(format!(
            "cannot start a rolling deployment of app {}",
            app.name
        ))?;
    println!(
        "Waiting for app {} to deploy (new instances start one at a time; the old ones serve until they are replaced)...\n",
        app.name
    );
    let spinner = ui::spinner("deploying");
    let done = client
        .wait_deployment(&deployment.guid, DEPLOY_TIMEOUT)
        .await;
    if let Some(s) = spinner {
        s.finish_and_clear();
    }
    let done = done.or_explain(format!(
        "the deployment of app {} did not finish; it goes on: see `ingot app {}`, or `ingot cancel-deployment {}`",
        app.name, app.name, app.name
    ))?;
    if done.status.reason != "DEPLOYED" {
        return Err(anyhow!(
            "the deployment of app {} ended {}: the app runs its previous version",
            app.name,
            done.status.reason
        ));
    }
    Ok(())
}

/// `ingot restart APP --strategy rolling`.
pub(crate) async fn rolling_restart(name: &str) -> anyhow::Result<()> {
    let mut session = Session::open()?;
    let (org, space) = session.target()?;
    let app = find_app(&session, &space, name).await?;
    println!(
        "Restarting app {} in org {} / space {} as {} (rolling)...\n",
        app.name,
        org.name,
        space.name,
        session.user()
    );
    roll(&session, &app, None, None).await?;
    let app = find_app(&session, &space, name).await?;
    print_app_summary(&session, &app).await?;
    session.keep_tokens();
    Ok(())
}

/// `ingot rollback APP --version N`.
pub(crate) async fn rollback(args: RollbackArgs) -> anyhow::Result<()> {
    let mut session = Session::open()?;
    let (org, space) = session.target()?;
    let app = find_app(&session, &space, &args.name).await?;
    let revisions = session
        .client()
        .revisions(&app.guid)
        .await
        .or_explain(format!("cannot list the revisions of app {}", app.name))?;
    let target = revisions
        .iter()
        .find(|r| r.version == args.version)
        .ok_or_else(|| {
            anyhow!(
                "app {} has no revision {}: run `ingot revisions {}` to see them",
                app.name,
                args.version,
                app.name
            )
        })?;
    if !args.force
        && !ui::confirm(&format!(
            "Roll app {} back to revision {} ({})?",
            app.name, target.version, target.description
        ))?
    {
        println!("App {} has not been rolled back.", app.name);
        return Ok(());
    }
    println!(
        "Rolling back app {} to revision {} in org {} / space {} as {}...\n",
        app.name,
        target.version,
        org.name,
        space.name,
        session.user()
    );
    roll(&session, &app, None, Some(&target.guid)).await?;
    session.keep_tokens();
    println!("OK");
    Ok(())
}

#[derive(Serialize)]
struct RevisionRow {
    version: u64,
    description: String,
    created_at: String,
    deployed: bool,
}

/// `ingot revisions APP`.
pub(crate) async fn revisions(args: RevisionsArgs) -> anyhow::Result<()> {
    let mut session = Session::open()?;
    let (org, space) = session.target()?;
    let app = find_app(&session, &space, &args.name).await?;
    if !args.json {
        println!(
            "Getting revisions for app {} in org {} / space {} as {}...\n",
            app.name,
            org.name,
            space.name,
            session.user()
        );
    }
    let client = session.client();
    let revisions = client
        .revisions(&app.guid)
        .await
        .or_explain(format!("cannot list the revisions of app {}", app.name))?;
    let deployed = client
        .deployed_revision(&app.guid)
        .await
        .or_explain(format!(
            "cannot find the deployed revision of app {}",
            app.name
        ))?
        .map(|r| r.guid);
    session.keep_tokens();
    let rows: Vec<RevisionRow> = revisions
        .into_iter()
        .rev()
        .map(|r| RevisionRow {
            deployed: deployed.as_deref() == Some(r.guid.as_str()),
            version: r.version,
            description: r.description,
            created_at: r.created_at,
        })
        .collect();
    if args.json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(());
    }
    let mut table = vec![vec![
        "revision".to_string(),
        "description".to_string(),
        "created at".to_string(),
    ]];
    table.extend(rows.into_iter().map(|r| {
        let version = if r.deployed {
            format!("{}(deployed)", r.version)
        } else {
            r.version.to_string()
        };
        vec![version, r.description, r.created_at]
    }));
    print!("{}", ui::table(&table));
    Ok(())
}

/// `ingot cancel-deployment APP`.
pub(crate) async fn cancel_deployment(args: CancelArgs) -> anyhow::Result<()> {
    let mut session = Session::open()?;
    let (_, space) = session.target()?;
    let app = find_app(&session, &space, &args.name).await?;
    println!(
        "Canceling the deployment of app {} as {}...",
        app.name,
        session.user()
    );
    let client = session.client();
    let active = client
        .active_deployments(&app.guid)
        .await
        .or_explain(format!(
            "cannot look up the deployments of app {}",
            app.name
        ))?;
    let deployment = active
        .into_iter()
        .next()
        .ok_or_else(|| anyhow!("app {} has no deployment in progress", app.name))?;
    client
        .cancel_deployment(&deployment.guid)
        .await
        .or_explain(format!("cannot cancel the deployment of app {}", app.name))?;
    session.keep_tokens();
    println!("OK");
    Ok(())
}
