//! The launcher: starts the app inside its container the way Cloud Foundry's
//! buildpackapplifecycle `launcher` does.
//!
//! It sets `HOME` to the app directory, `TMPDIR` and `DEPS_DIR` beside it,
//! fills `host`, `instance_id`, `instance_index` and `port` into
//! `VCAP_APPLICATION`, then in one bash: `cd` to the app, source
//! `../profile.d/*` (the final buildpack's scripts), then `.profile.d/*` and
//! `.profile` of the app, and `exec` the start command (`--command`, or the
//! droplet's `staging_info.yml`). The launcher itself is replaced by bash and
//! bash by the command, so the app is the container's main process and
//! receives its signals.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::LifecycleError;

/// The script bash runs; `$1` is the app directory, `$2` the start command.
/// Same order and messages as CF's launcher.
const LAUNCH_SCRIPT: &str = r#"
cd "$1" || exit 1

echo 'Invoking pre-start scripts.'

if [ -n "$(ls ../profile.d/* 2> /dev/null)" ]; then
  for env_file in ../profile.d/*; do
    source "$env_file"
  done
fi

if [ -n "$(ls .profile.d/* 2> /dev/null)" ]; then
  for env_file in .profile.d/*; do
    source "$env_file"
  done
fi

if [ -f .profile ]; then
  source .profile
fi

shift

echo 'Invoking start command.'

exec bash -c "$@"
"#;

#[derive(Debug, clap::Parser)]
#[command(about = "Run the app's start command after sourcing its profile.d scripts")]
struct LauncherArgs {
    /// The start command; default: `start_command` of staging_info.yml.
    #[arg(long)]
    command: Option<String>,
    /// The app directory; `staging_info.yml`, `deps`, `tmp` are beside it.
    #[arg(long, default_value = "/home/vcap/app")]
    app_dir: PathBuf,
}

/// Runs `ingot lifecycle launcher …`: returns only if exec fails.
pub(crate) fn run_cli(args: &[String]) -> Result<i32, LifecycleError> {
    let args: LauncherArgs = match crate::parse_args("launcher", args) {
        Ok(args) => args,
        Err(code) => return Ok(code),
    };
    let mut command = launch_command(&args.app_dir, args.command.as_deref())?;
    if std::process::id() == 1 {
        // First process of the container: stay as its init (see `init`).
        return crate::init::run(command).map_err(LifecycleError::io("cannot start", "/bin/bash"));
    }
    use std::os::unix::process::CommandExt;
    let err = command.exec();
    Err(LifecycleError::io("cannot exec", "/bin/bash")(err))
}

/// The start command recorded in `<home>/staging_info.yml`, if any.
pub fn staged_start_command(home: &Path) -> Result<Option<String>, LifecycleError> {
    let path = home.join("staging_info.yml");
    let bytes = match std::fs::read(&path) {
        Ok(bytes) => bytes,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(err) => return Err(LifecycleError::io("cannot read", &path)(err)),
    };
    // CF writes it as JSON, which is YAML too; accept either.
    let value: serde_yaml::Value = serde_yaml::from_slice(&bytes).map_err(|err| {
        LifecycleError::Usage(format!("Invalid staging info - {}: {err}", path.display()))
    })?;
    Ok(value
        .get("start_command")
        .and_then(|v| v.as_str())
        .filter(|s| !s.is_empty())
        .map(str::to_string))
}

/// Builds the process the launcher `exec`s: bash with the launch script, the
/// environment described in the module docs, and the start command. Useful on
/// its own to run (rather than exec) the same thing.
pub fn launch_command(app_dir: &Path, command: Option<&str>) -> Result<Command, LifecycleError> {
    let app_dir =
        std::path::absolute(app_dir).map_err(LifecycleError::io("cannot resolve", app_dir))?;
    let home = app_dir
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("/"));
    let command = match command.filter(|c| !c.is_empty()) {
        Some(command) => command.to_string(),
        None => staged_start_command(&home)?.ok_or_else(|| {
            LifecycleError::Usage(
                "launcher: no start command specified or detected in droplet".into(),
            )
        })?,
    };
    let mut cmd = Command::new("/bin/bash");
    cmd.arg("-c")
        .arg(LAUNCH_SCRIPT)
        .arg("launcher")
        .arg(&app_dir)
        .arg(&command)
        .current_dir(&home)
        .env("HOME", &app_dir)
        .env("TMPDIR", home.join("tmp"))
        .env("DEPS_DIR", home.join("deps"));
    if let Some(vcap_application) = std::env::var("VCAP_APPLICATION").ok().and_then(|v| {
        complete_vcap_application(
            &v,
            std::env::var("INSTANCE_GUID").ok().as_deref(),
            std::env::var("INSTANCE_INDEX").ok().as_deref(),
            std::env::var("PORT").ok().as_deref(),
        )
    }) {
        cmd.env("VCAP_APPLICATION", vcap_application);
    }
    // Platform-only options never reach the app (as in CF).
    cmd.env_remove("VCAP_PLATFORM_OPTIONS");
    fill_instance_addresses(&mut cmd);
    Ok(cmd)
}

/// The cell learns a container's address only when the container exists, so
/// it leaves `CF_INSTANCE_IP` and `CF_INSTANCE_INTERNAL_IP` empty and the
/// launcher, inside the container, fills them with the address of its
/// default route.
fn fill_instance_addresses(cmd: &mut Command) {
    let unset = |name: &str| std::env::var(name).map_or(true, |v| v.is_empty());
    if !unset("CF_INSTANCE_INTERNAL_IP") && !unset("CF_INSTANCE_IP") {
        return;
    }
    let Some(ip) = default_route_address() else {
        return;
    };
    let port = std::env::var("CF_INSTANCE_PORT").unwrap_or_else(|_| "8080".into());
    if unset("CF_INSTANCE_INTERNAL_IP") {
        cmd.env("CF_INSTANCE_INTERNAL_IP", ip.to_string());
    }
    if unset("CF_INSTANCE_IP") {
        cmd.env("CF_INSTANCE_IP", ip.to_string());
        cmd.env("CF_INSTANCE_ADDR", format!("{ip}:{port}"));
    }
}

/// The local address the kernel would use to reach the outside world.
/// Connecting a UDP socket sends nothing; it only picks the route.
fn default_route_address() -> Option<std::net::IpAddr> {
    let socket = std::net::UdpSocket::bind("0.0.0.0:0").ok()?;
    socket.connect("192.0.2.1:9").ok()?;
    let ip = socket.local_addr().ok()?.ip();
    (!ip.is_unspecified()).then_some(ip)
}

/// Fills the instance fields of `VCAP_APPLICATION` the way CF's launcher does;
/// `None` when it is not a JSON object (it is then passed on unchanged).
fn complete_vcap_application(
    json: &str,
    instance_guid: Option<&str>,
    index: Option<&str>,
    port: Option<&str>,
) -> Option<String> {
    let mut value: serde_json::Value = serde_json::from_str(json).ok()?;
    let map = value.as_object_mut()?;
    map.insert("host".into(), "0.0.0.0".into());
    map.insert(
        "instance_id".into(),
        instance_guid.unwrap_or_default().into(),
    );
    if let Some(port) = port.and_then(|p| p.parse::<u16>().ok()) {
        map.insert("port".into(), port.into());
    }
    if let Some(index) = index.and_then(|i| i.parse::<u32>().ok()) {
        map.insert("instance_index".into(), index.into());
    }
    Some(value.to_string())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests fail loudly on any unexpected error
mod tests {
    use super::*;

    #[test]
    fn vcap_application_gets_instance_fields() {
        let out =
            complete_vcap_application(r#"{"name":"a"}"#, Some("g-1"), Some("2"), Some("8080"))
                .unwrap();
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["name"], "a");
        assert_eq!(v["host"], "0.0.0.0");
        assert_eq!(v["instance_id"], "g-1");
        assert_eq!(v["instance_index"], 2);
        assert_eq!(v["port"], 8080);
        assert!(complete_vcap_application("not json", None, None, None).is_none());
    }
}
