//! `logs NAME [--recent]`: an app's logs from log-cache, printed as `cf logs`
//! prints them.

use std::time::Duration;

use anyhow::Context as _;
use clap::Args;
use ingot_client::logcache::{now_nanos, LogTail};

use super::{find_app, OrExplain as _, Session};

/// How often `logs` (without `--recent`) asks for new lines.
const TAIL_INTERVAL: Duration = Duration::from_millis(500);

/// Flags of `logs`.
#[derive(Args)]
pub struct LogsArgs {
    /// The app's name.
    name: String,
    /// Print recent lines and exit, instead of following.
    #[arg(long)]
    recent: bool,
}

/// `ingot logs NAME`.
pub(crate) async fn logs(args: LogsArgs) -> anyhow::Result<()> {
    let mut session = Session::open()?;
    let (org, space) = session.target()?;
    let app = find_app(&session, &space, &args.name).await?;
    println!(
        "Retrieving logs for app {} in org {} / space {} as {}...\n",
        app.name,
        org.name,
        space.name,
        session.user()
    );
    let client = session.client();
    if args.recent {
        let lines = client
            .recent_logs(&app.guid)
            .await
            .or_explain(format!("cannot read the logs of app {}", app.name))?;
        for env in lines {
            println!("{}", env.format_line(&chrono::Local));
        }
        session.keep_tokens();
        return Ok(());
    }
    let mut tail = LogTail::new(&app.guid, now_nanos());
    // One listener for the whole tail, so that a Ctrl-C arriving while a
    // read is under way is not lost.
    let mut interrupt = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
        .context("cannot listen for Ctrl-C")?;
    loop {
        let lines = tail
            .poll(client)
            .await
            .or_explain(format!("cannot read the logs of app {}", app.name))?;
        for env in lines {
            println!("{}", env.format_line(&chrono::Local));
        }
        tokio::select! {
            _ = interrupt.recv() => break,
            _ = tokio::time::sleep(TAIL_INTERVAL) => {}
        }
    }
    session.keep_tokens();
    Ok(())
}
