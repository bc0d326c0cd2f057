//! `copy-source SOURCE_APP DESTINATION_APP`: copies the source app's newest
//! package into the destination app (in any space the user may write,
//! `POST /v3/packages?source_guid=`), then stages it and restarts the
//! destination on the new droplet, as cf's `copy-source` does — the way
//! code is promoted from a development space to production.

use std::time::Duration;

use anyhow::anyhow;
use clap::Args;
use ingot_client::config::Target;
use ingot_client::resources::Organization;

use super::apps::{print_app_summary, wait_running, START_TIMEOUT};
use super::deploy::{roll, Strategy};
use super::{find_app, find_org_named, find_space_in, OrExplain as _, Session};

/// How long the copied package may take to become READY.
const PACKAGE_TIMEOUT: Duration = Duration::from_secs(600);

/// Flags of `copy-source`.
#[derive(Args)]
pub struct CopySourceArgs {
    /// The app to copy from (in the targeted space).
    source_app: String,
    /// The app to copy to.
    destination_app: String,
    /// The destination app's space (default: the targeted space).
    #[arg(short = 's', long = "space")]
    space: Option<String>,
    /// The destination space's organization (default: the targeted org); needs --space.
    #[arg(short = 'o', long = "organization")]
    organization: Option<String>,
    /// Only copy the source; do not stage or restart the destination.
    #[arg(long)]
    no_restart: bool,
    /// How to restart the destination: `rolling` replaces instances one at a time.
    #[arg(long, value_enum)]
    strategy: Option<Strategy>,
}

/// The space the destination app is in.
async fn destination_space(
    session: &Session,
    args: &CopySourceArgs,
    org: &Target,
    space: &Target,
) -> anyhow::Result<(String, Target)> {
    match (&args.space, &args.organization) {
        (None, Some(_)) => Err(anyhow!(
            "--organization needs --space: say which space of that org the destination app is in"
        )),
        (None, None) => Ok((org.name.clone(), space.clone())),
        (Some(space_name), org_name) => {
            let dest_org = match org_name {
                Some(name) => find_org_named(session, name).await?,
                None => Organization {
                    guid: org.guid.clone(),
                    name: org.name.clone(),
                },
            };
            let found = find_space_in(session, &dest_org, space_name).await?;
            Ok((
                dest_org.name,
                Target {
                    guid: found.guid,
                    name: found.name,
                },
            ))
        }
    }
}

/// `ingot copy-source SOURCE_APP DESTINATION_APP [-s SPACE [-o ORG]] [--no-restart] [--strategy rolling]`.
pub(crate) async fn copy_source(args: CopySourceArgs) -> anyhow::Result<()> {
    let mut session = Session::open()?;
    let (org, space) = session.target()?;
    let source = find_app(&session, &space, &args.source_app).await?;
    let (dest_org, dest_space) = destination_space(&session, &args, &org, &space).await?;
    let dest = session
        .client()
        .app_by_name(&dest_space.guid, &args.destination_app)
        .await
        .or_explain(format!("cannot look up app {}", args.destination_app))?
        .ok_or_else(|| {
            anyhow!(
                "destination app {} not found in org {dest_org} / space {}: copy-source copies into an existing app; create it first (`ingot target -o {dest_org} -s {}`, then `ingot push {} --no-start`)",
                args.destination_app,
                dest_space.name,
                dest_space.name,
                args.destination_app
            )
        })?;
    println!(
        "Copying source from app {} to target app {} in org {} / space {} as {}...\n",
        source.name,
        dest.name,
        dest_org,
        dest_space.name,
        session.user()
    );
    let client = session.client();
    let source_package = client
        .newest_ready_package(&source.guid)
        .await
        .or_explain(format!("cannot find the source of app {}", source.name))?
        .ok_or_else(|| {
            anyhow!(
                "app {} has no uploaded source to copy: run `ingot push {}` first",
                source.name,
                source.name
            )
        })?;
    let package = client
        .copy_package(&source_package, &dest.guid)
        .await
        .or_explain(format!(
            "cannot copy the source of app {} to app {}",
            source.name, dest.name
        ))?;
    if package.state != "READY" {
        client
            .wait_package_ready(&package.guid, PACKAGE_TIMEOUT)
            .await
            .or_explain(format!("the copy of app {}'s source failed", source.name))?;
    }
    if args.no_restart {
        session.keep_tokens();
        println!(
            "OK\n\nTIP: the copy is package {} of app {}; run `ingot copy-source {} {}{}` without --no-restart to stage and restart it",
            package.guid,
            dest.name,
            source.name,
            dest.name,
            args.space
                .as_ref()
                .map(|s| format!(" -s {s}"))
                .unwrap_or_default()
        );
        return Ok(());
    }
    println!("Staging app {} and tracing logs...", dest.name);
    let droplet = super::push::stage(client, &dest, &package.guid).await?;
    if args.strategy == Some(Strategy::Rolling) && dest.state == "STARTED" {
        roll(&session, &dest, Some(&droplet), None).await?;
    } else {
        client
            .set_current_droplet(&dest.guid, &droplet)
            .await
            .or_explain(format!("cannot give app {} its new droplet", dest.name))?;
        println!("\nRestarting app {}...\n", dest.name);
        client
            .restart_app(&dest.guid)
            .await
            .or_explain(format!("cannot restart app {}", dest.name))?;
        println!("Waiting for app {} to start...\n", dest.name);
        wait_running(client, &dest, START_TIMEOUT).await?;
    }
    let dest = find_app(&session, &dest_space, &dest.name).await?;
    print_app_summary(&session, &dest).await?;
    session.keep_tokens();
    Ok(())
}
