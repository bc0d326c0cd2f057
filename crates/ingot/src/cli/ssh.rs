//! `ssh`, `ssh-code`, the ssh switches (`enable-ssh`, `disable-ssh`,
//! `ssh-enabled`, `allow-space-ssh`, `disallow-space-ssh`,
//! `space-ssh-allowed`) and `events`.
//!
//! `ingot ssh` runs the system's OpenSSH client against the platform's SSH
//! proxy: it fetches a one-time code, checks the proxy's host key against
//! the fingerprint the API publishes (so no "unknown host" question and no
//! man in the middle), and hands the code to `ssh` through `SSH_ASKPASS`,
//! answered by this same binary.

use std::io::Write as _;
use std::process::Stdio;

use anyhow::{anyhow, Context as _};
use base64::Engine as _;
use clap::Args;
use serde::Serialize;
use sha2::Digest as _;

use super::{find_app, ui, OrExplain as _, Session};

/// The environment variable that makes this binary answer `ssh`'s password
/// prompt with a one-time code.
pub(crate) const ASKPASS_CODE: &str = "INGOT_SSH_ASKPASS_CODE";

/// Flags of `ssh`, as `cf ssh` names them.
#[derive(Args)]
pub struct SshArgs {
    /// The app's name.
    name: String,
    /// The instance to enter.
    #[arg(short = 'i', long = "app-instance-index", default_value_t = 0)]
    index: u32,
    /// The process type.
    #[arg(long, default_value = "web")]
    process: String,
    /// Run this command instead of a shell.
    #[arg(short = 'c', long = "command")]
    command: Option<String>,
    /// Forward a local port: `[BIND:]LOCAL_PORT:HOST:PORT` (HOST as seen
    /// from inside the instance, e.g. localhost).
    #[arg(short = 'L', value_name = "[BIND:]PORT:HOST:HOSTPORT")]
    forwards: Vec<String>,
    /// Run no command (for port forwarding only).
    #[arg(short = 'N')]
    no_command: bool,
    /// Ask for a terminal even with a command.
    #[arg(short = 't', long = "request-pseudo-tty")]
    tty: bool,
    /// Never ask for a terminal.
    #[arg(short = 'T', long = "disable-pseudo-tty")]
    no_tty: bool,
}

/// An app name.
#[derive(Args)]
pub struct AppNameArgs {
    /// The app's name.
    name: String,
}

/// A space name.
#[derive(Args)]
pub struct SpaceNameArgs {
    /// The space's name (in the targeted org).
    name: String,
}

/// Flags of `events`.
#[derive(Args)]
pub struct EventsArgs {
    /// The app's name.
    name: String,
    /// Print machine-readable JSON instead of a table.
    #[arg(long)]
    json: bool,
}

/// `ingot ssh-code`: prints a one-time SSH code.
pub(crate) async fn ssh_code() -> anyhow::Result<()> {
    let mut session = Session::open()?;
    let client = session.client();
    let endpoint = client
        .ssh_endpoint()
        .await
        .or_explain("cannot read the platform's SSH endpoint")?
        .ok_or_else(|| anyhow!("this platform serves no SSH"))?;
    let code = client
        .ssh_code(&endpoint.oauth_client)
        .await
        .or_explain("cannot get a one-time SSH code")?;
    session.keep_tokens();
    println!("{code}");
    Ok(())
}

/// The SHA-256 fingerprint of an OpenSSH public key line's key blob, as
/// base64 without padding (what `/` publishes).
fn fingerprint_of(key_line: &str) -> Option<String> {
    let blob = key_line.split_whitespace().nth(2)?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(blob)
        .ok()?;
    let digest = sha2::Sha256::digest(&bytes);
    Some(base64::engine::general_purpose::STANDARD_NO_PAD.encode(digest))
}

/// Reads the proxy's host key with `ssh-keyscan` and checks it against the
/// published fingerprint; returns the `known_hosts` line.
async fn verified_host_key(
    host: &str,
    port: &str,
    fingerprint: Option<&str>,
) -> anyhow::Result<String> {
    let out = tokio::process::Command::new("ssh-keyscan")
        .args(["-p", port, "-t", "ed25519", host])
        .stdin(Stdio::null())
        .output()
        .await
        .context(
            "cannot run ssh-keyscan: install OpenSSH's client (Debian: apt install openssh-client)",
        )?;
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find(|l| !l.starts_with('#') && l.contains("ssh-ed25519"))
        .ok_or_else(|| anyhow!("the SSH proxy at {host}:{port} did not show its host key"))?;
    if let Some(expected) = fingerprint {
        let actual = fingerprint_of(line).unwrap_or_default();
        if actual != expected {
            return Err(anyhow!(
                "the SSH proxy at {host}:{port} has host key SHA256:{actual}, but the platform says SHA256:{expected}: refusing to connect"
            ));
        }
    }
    Ok(line.to_string())
}

/// `ingot ssh APP`: a shell or a command in an instance, or port forwards.
pub(crate) async fn ssh(args: SshArgs) -> anyhow::Result<()> {
    let mut session = Session::open()?;
    let (_, space) = session.target()?;
    let app = find_app(&session, &space, &args.name).await?;
    let client = session.client();
    let enabled = client
        .ssh_enabled(&app.guid)
        .await
        .or_explain(format!("cannot check whether app {} allows SSH", app.name))?;
    if !enabled.enabled {
        return Err(anyhow!(
            "SSH into app {} is off ({}): run `ingot enable-ssh {}` (and `ingot allow-space-ssh {}` for the space), then `ingot restart {}`",
            app.name,
            enabled.reason,
            app.name,
            space.name,
            app.name
        ));
    }
    let process = client
        .process(&app.guid, &args.process)
        .await
        .or_explain(format!("app {} has no {} process", app.name, args.process))?;
    let endpoint = client
        .ssh_endpoint()
        .await
        .or_explain("cannot read the platform's SSH endpoint")?
        .ok_or_else(|| anyhow!("this platform serves no SSH"))?;
    let (host, port) = endpoint.address.rsplit_once(':').ok_or_else(|| {
        anyhow!(
            "the platform's SSH address {} has no port",
            endpoint.address
        )
    })?;
    let known = verified_host_key(host, port, endpoint.fingerprint.as_deref()).await?;
    let code = client
        .ssh_code(&endpoint.oauth_client)
        .await
        .or_explain("cannot get a one-time SSH code")?;
    session.keep_tokens();

    let mut known_hosts =
        tempfile::NamedTempFile::new().context("cannot create a known_hosts file")?;
    writeln!(known_hosts, "{known}").context("cannot write the known_hosts file")?;
    let exe = std::env::current_exe().context("cannot find the ingot binary itself")?;
    let mut ssh = std::process::Command::new("ssh");
    ssh.arg("-p")
        .arg(port)
        .arg("-o")
        .arg(format!(
            "UserKnownHostsFile={}",
            known_hosts.path().display()
        ))
        .args(["-o", "StrictHostKeyChecking=yes"])
        .args(["-o", "PubkeyAuthentication=no"])
        .args([
            "-o",
            "PreferredAuthentications=password,keyboard-interactive",
        ])
        .args(["-o", "NumberOfPasswordPrompts=1"])
        .args(["-o", "LogLevel=ERROR"])
        .env("SSH_ASKPASS", &exe)
        .env("SSH_ASKPASS_REQUIRE", "force")
        .env(ASKPASS_CODE, &code);
    for forward in &args.forwards {
        ssh.arg("-L").arg(forward);
    }
    if args.no_command {
        ssh.arg("-N");
    }
    if args.tty {
        ssh.arg("-t");
    } else if args.no_tty {
        ssh.arg("-T");
    }
    ssh.arg(format!("cf:{}/{}@{host}", process.guid, args.index));
    if let Some(command) = &args.command {
        ssh.arg(command);
    }
    let status = ssh
        .status()
        .context("cannot run ssh: install OpenSSH's client (Debian: apt install openssh-client)")?;
    drop(known_hosts);
    match status.code() {
        Some(0) => Ok(()),
        Some(code) => std::process::exit(code),
        None => Err(anyhow!("ssh was killed by a signal")),
    }
}

async fn switch_app(args: AppNameArgs, enabled: bool) -> anyhow::Result<()> {
    let mut session = Session::open()?;
    let (_, space) = session.target()?;
    let app = find_app(&session, &space, &args.name).await?;
    let verb = if enabled { "Enabling" } else { "Disabling" };
    println!(
        "{verb} ssh support for app {} as {}...",
        app.name,
        session.user()
    );
    session
        .client()
        .set_app_ssh(&app.guid, enabled)
        .await
        .or_explain(format!("cannot change SSH for app {}", app.name))?;
    session.keep_tokens();
    println!("OK");
    Ok(())
}

/// `ingot enable-ssh APP`.
pub(crate) async fn enable_ssh(args: AppNameArgs) -> anyhow::Result<()> {
    switch_app(args, true).await
}

/// `ingot disable-ssh APP`.
pub(crate) async fn disable_ssh(args: AppNameArgs) -> anyhow::Result<()> {
    switch_app(args, false).await
}

/// `ingot ssh-enabled APP`.
pub(crate) async fn ssh_enabled(args: AppNameArgs) -> anyhow::Result<()> {
    let mut session = Session::open()?;
    let (_, space) = session.target()?;
    let app = find_app(&session, &space, &args.name).await?;
    let state = session
        .client()
        .ssh_enabled(&app.guid)
        .await
        .or_explain(format!("cannot check SSH for app {}", app.name))?;
    session.keep_tokens();
    if state.enabled {
        println!("ssh support is enabled for app '{}'.", app.name);
    } else {
        println!(
            "ssh support is disabled for app '{}'.\n{}",
            app.name, state.reason
        );
    }
    Ok(())
}

async fn switch_space(args: SpaceNameArgs, enabled: bool) -> anyhow::Result<()> {
    let mut session = Session::open()?;
    let (org, _) = session.target()?;
    let space = session
        .client()
        .spaces(&org.guid, Some(&args.name))
        .await
        .or_explain(format!("cannot look up space {}", args.name))?
        .into_iter()
        .next()
        .ok_or_else(|| anyhow!("space {} not found in org {}", args.name, org.name))?;
    let verb = if enabled { "Enabling" } else { "Disabling" };
    println!(
        "{verb} ssh support for space {} as {}...",
        space.name,
        session.user()
    );
    session
        .client()
        .set_space_ssh(&space.guid, enabled)
        .await
        .or_explain(format!("cannot change SSH for space {}", space.name))?;
    session.keep_tokens();
    println!("OK");
    Ok(())
}

/// `ingot allow-space-ssh SPACE`.
pub(crate) async fn allow_space_ssh(args: SpaceNameArgs) -> anyhow::Result<()> {
    switch_space(args, true).await
}

/// `ingot disallow-space-ssh SPACE`.
pub(crate) async fn disallow_space_ssh(args: SpaceNameArgs) -> anyhow::Result<()> {
    switch_space(args, false).await
}

#[derive(Serialize)]
struct EventRow {
    time: String,
    event: String,
    actor: String,
    description: String,
}

/// `ingot events APP`: the app's audit events, newest first.
pub(crate) async fn events(args: EventsArgs) -> anyhow::Result<()> {
    let mut session = Session::open()?;
    let (org, space) = session.target()?;
    let app = find_app(&session, &space, &args.name).await?;
    if !args.json {
        println!(
            "Getting events for app {} in org {} / space {} as {}...\n",
            app.name,
            org.name,
            space.name,
            session.user()
        );
    }
    let events = session
        .client()
        .events_of(&app.guid)
        .await
        .or_explain(format!("cannot list the events of app {}", app.name))?;
    session.keep_tokens();
    let rows: Vec<EventRow> = events
        .into_iter()
        .map(|e| EventRow {
            time: e.created_at,
            event: e.kind,
            actor: e.actor.name,
            description: describe(&e.data),
        })
        .collect();
    if args.json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(());
    }
    let mut table = vec![vec![
        "time".to_string(),
        "event".to_string(),
        "actor".to_string(),
        "description".to_string(),
    ]];
    table.extend(
        rows.into_iter()
            .map(|r| vec![r.time, r.event, r.actor, r.description]),
    );
    print!("{}", ui::table(&table));
    Ok(())
}

/// An event's data as `key: value` pairs on one line.
fn describe(data: &serde_json::Value) -> String {
    match data.as_object() {
        Some(map) => map
            .iter()
            .filter(|(_, v)| !v.is_null())
            .map(|(k, v)| match v {
                serde_json::Value::String(s) => format!("{k}: {s}"),
                other => format!("{k}: {other}"),
            })
            .collect::<Vec<_>>()
            .join(", "),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_are_sha256_of_the_key_blob() {
        // The blob "abc" (base64 YWJj) hashes to ungWv48Bz+pBQUDeXa4iI7ADYaOWF3qctBD/YfIAFa0.
        let line = "[127.0.0.1]:2222 ssh-ed25519 YWJj";
        assert_eq!(
            fingerprint_of(line).as_deref(),
            Some("ungWv48Bz+pBQUDeXa4iI7ADYaOWF3qctBD/YfIAFa0")
        );
        assert_eq!(fingerprint_of("garbage"), None);
    }

    #[test]
    fn event_data_reads_as_one_line() {
        let data = serde_json::json!({"index": 1, "remote": "127.0.0.1:5", "none": null});
        assert_eq!(describe(&data), "index: 1, remote: 127.0.0.1:5");
    }
}
