//! Plugins: any executable `ingot-NAME` on `PATH` (or in the plugin
//! directory) runs as `ingot NAME …`, the way git and kubectl extend
//! themselves. The plugin receives the target and a fresh token in its
//! environment (the contract is in docs/cli.md), and its exit status becomes
//! the CLI's because the CLI replaces itself with the plugin.

use std::ffi::OsStr;
use std::io::Write as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, Context as _};
use clap::Args;
use ingot_client::config::{config_path, Config};
use serde::Serialize;

use super::{help, ui, ListArgs};

/// The prefix of every plugin executable's file name.
pub(crate) const PREFIX: &str = "ingot-";

/// Flags of `install-plugin`.
#[derive(Args)]
pub struct InstallArgs {
    /// A plugin executable: a file path, or an http(s) URL to download.
    source: String,
    /// Replace an installed plugin of the same name without asking.
    #[arg(short = 'f')]
    force: bool,
    /// The plugin's command name (default: the file name without `ingot-`).
    #[arg(long)]
    name: Option<String>,
}

/// Flags of `uninstall-plugin`.
#[derive(Args)]
pub struct UninstallArgs {
    /// The plugin's command name (`foo` for `ingot-foo`).
    name: String,
}

/// One plugin found on the search path.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct Plugin {
    /// The command name: `foo` for `ingot-foo`.
    pub name: String,
    /// The executable that runs.
    pub path: PathBuf,
    /// Whether it lives in the plugin directory (`install-plugin` put it there).
    pub installed: bool,
}

/// Where `install-plugin` puts plugins: `$INGOT_CLI_HOME/plugins`, or else
/// `~/.ingot/plugins` (beside the CLI configuration).
pub(crate) fn plugin_dir() -> PathBuf {
    let config = config_path();
    config
        .parent()
        .map(|p| p.join("plugins"))
        .unwrap_or_else(|| PathBuf::from("plugins"))
}

/// The directories searched, in order: the plugin directory first (an
/// explicitly installed plugin wins), then each entry of `path_var`.
pub(crate) fn search_dirs(path_var: Option<&OsStr>, plugin_dir: &Path) -> Vec<PathBuf> {
    let mut dirs = vec![plugin_dir.to_path_buf()];
    if let Some(p) = path_var {
        dirs.extend(std::env::split_paths(p).filter(|d| !d.as_os_str().is_empty()));
    }
    dirs
}

/// The search directories of this process (`$PATH` and [`plugin_dir`]).
pub(crate) fn current_search_dirs() -> Vec<PathBuf> {
    search_dirs(std::env::var_os("PATH").as_deref(), &plugin_dir())
}

fn is_executable_file(path: &Path) -> bool {
    std::fs::metadata(path)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// A plugin name is one path component without surprises.
fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('-')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && name != "."
        && name != ".."
}

/// The first `ingot-NAME` executable in `dirs`.
pub(crate) fn find_plugin(name: &str, dirs: &[PathBuf]) -> Option<Plugin> {
    if !valid_name(name) {
        return None;
    }
    let installed_dir = dirs.first();
    dirs.iter().find_map(|dir| {
        let path = dir.join(format!("{PREFIX}{name}"));
        is_executable_file(&path).then(|| Plugin {
            name: name.to_string(),
            path,
            installed: Some(dir) == installed_dir,
        })
    })
}

/// Every plugin in `dirs`, by name; a name found twice is the first one's
/// (the one that runs). Built-in command names are left out: they shadow
/// any plugin of the same name.
pub(crate) fn list_plugins(dirs: &[PathBuf], builtins: &[String]) -> Vec<Plugin> {
    let mut found: Vec<Plugin> = Vec::new();
    for dir in dirs {
        let Ok(entries) = std::fs::read_dir(dir) else {
            continue;
        };
        let mut names: Vec<String> = entries
            .filter_map(|e| e.ok())
            .filter_map(|e| e.file_name().to_str().map(str::to_string))
            .filter_map(|f| f.strip_prefix(PREFIX).map(str::to_string))
            .collect();
        names.sort();
        for name in names {
            if found.iter().any(|p| p.name == name) || builtins.contains(&name) {
                continue;
            }
            if let Some(p) = find_plugin(&name, std::slice::from_ref(dir)) {
                found.push(Plugin {
                    installed: Some(dir) == dirs.first(),
                    ..p
                });
            }
        }
    }
    found.sort_by(|a, b| a.name.cmp(&b.name));
    found
}

/// The environment a plugin receives (see docs/cli.md): variable name and
/// value, only those that are known.
pub(crate) fn plugin_env(config: &Config) -> Vec<(&'static str, String)> {
    let mut env = vec![("INGOT_CLI_VERSION", env!("CARGO_PKG_VERSION").to_string())];
    if let Ok(exe) = std::env::current_exe() {
        env.push(("INGOT_CLI", exe.display().to_string()));
    }
    if let Some(e) = &config.endpoints {
        env.push(("INGOT_API_URL", e.api.clone()));
    }
    if let Some(t) = &config.tokens {
        env.push(("INGOT_TOKEN", t.access_token.clone()));
    }
    if let Some(o) = &config.org {
        env.push(("INGOT_ORG", o.name.clone()));
        env.push(("INGOT_ORG_GUID", o.guid.clone()));
    }
    if let Some(s) = &config.space {
        env.push(("INGOT_SPACE", s.name.clone()));
        env.push(("INGOT_SPACE_GUID", s.guid.clone()));
    }
    env
}

/// The variables of the contract, cleared before the known ones are set so
/// that a stale value from the caller's shell never reaches the plugin.
const CONTRACT: [&str; 8] = [
    "INGOT_CLI_VERSION",
    "INGOT_CLI",
    "INGOT_API_URL",
    "INGOT_TOKEN",
    "INGOT_ORG",
    "INGOT_ORG_GUID",
    "INGOT_SPACE",
    "INGOT_SPACE_GUID",
];

/// The process that runs `plugin` with `args` and `env`: the dispatcher
/// execs it, tests run it.
pub(crate) fn plugin_command(
    plugin: &Plugin,
    args: &[String],
    env: &[(&'static str, String)],
) -> std::process::Command {
    let mut cmd = std::process::Command::new(&plugin.path);
    // argv[0] is the name the user typed, like git does for its helpers.
    std::os::unix::process::CommandExt::arg0(&mut cmd, format!("{PREFIX}{}", plugin.name));
    cmd.args(args);
    for k in CONTRACT {
        cmd.env_remove(k);
    }
    cmd.envs(env.iter().map(|(k, v)| (k, v)));
    cmd
}

/// Seconds since the epoch at which a JWT expires, if it says.
fn token_expiry(token: &str) -> Option<i64> {
    use base64::Engine as _;
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    let claims: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    claims.get("exp")?.as_i64()
}

/// Whether a token expires within a minute (a plugin needs time to use it).
pub(crate) fn token_needs_refresh(token: &str, now: i64) -> bool {
    token_expiry(token).is_some_and(|exp| exp - 60 <= now)
}

/// Loads the saved login and refreshes its token if it is (nearly) expired,
/// saving the new one. A failed refresh is a warning, not an error: the
/// plugin may not need the API at all.
async fn fresh_config() -> anyhow::Result<Config> {
    let path = config_path();
    let mut config = Config::load(&path)?;
    let stale = config
        .tokens
        .as_ref()
        .is_some_and(|t| token_needs_refresh(&t.access_token, chrono::Utc::now().timestamp()));
    if stale {
        if let Some(client) = config.client() {
            match client.refresh().await {
                Ok(()) => {
                    config.tokens = client.tokens();
                    if let Err(e) = config.save(&path) {
                        eprintln!("warning: cannot save the refreshed login: {e}");
                    }
                }
                Err(e) => eprintln!(
                    "warning: your login has expired and cannot be refreshed ({e}): run `ingot login`"
                ),
            }
        }
    }
    Ok(config)
}

/// `ingot NAME ARGS…` for a NAME that is no built-in command: runs the
/// plugin in place of this process, or fails (exit 2) with the command
/// the user probably meant.
pub(crate) async fn dispatch(argv: Vec<String>) -> anyhow::Result<()> {
    let Some((name, args)) = argv.split_first() else {
        return Err(anyhow!("no command given: run `ingot help`"));
    };
    let dirs = current_search_dirs();
    let Some(plugin) = find_plugin(name, &dirs) else {
        let known: Vec<String> = help::builtin_names()
            .into_iter()
            .chain(
                list_plugins(&dirs, &[])
                    .into_iter()
                    .map(|p| p.name.to_string()),
            )
            .collect();
        eprintln!("{}", help::unknown_command(name, &known));
        std::io::stderr().flush().ok();
        std::process::exit(help::EXIT_USAGE);
    };
    let config = fresh_config().await?;
    let env = plugin_env(&config);
    let mut cmd = plugin_command(&plugin, args, &env);
    std::io::stdout().flush().ok();
    // exec only returns on failure; on success the plugin's exit status is
    // the CLI's, and signals such as Ctrl-C reach it directly.
    let err = std::os::unix::process::CommandExt::exec(&mut cmd);
    Err(anyhow!(
        "cannot run plugin {name} ({}): {err}",
        plugin.path.display()
    ))
}

/// `ingot plugins`.
pub(crate) fn plugins(args: ListArgs) -> anyhow::Result<()> {
    let found = list_plugins(&current_search_dirs(), &help::builtin_names());
    if args.json {
        println!("{}", serde_json::to_string_pretty(&found)?);
        return Ok(());
    }
    if found.is_empty() {
        println!(
            "No plugins found. Put an executable named ingot-NAME on PATH, or run `ingot install-plugin FILE_OR_URL`."
        );
        return Ok(());
    }
    let mut rows = vec![vec!["name".to_string(), "path".to_string()]];
    rows.extend(
        found
            .into_iter()
            .map(|p| vec![p.name, p.path.display().to_string()]),
    );
    print!("{}", ui::table(&rows));
    Ok(())
}

/// The command name a source file or URL stands for.
pub(crate) fn name_from_source(source: &str) -> Option<String> {
    let last = source
        .split(['?', '#'])
        .next()?
        .trim_end_matches('/')
        .rsplit('/')
        .next()?;
    let name = last.strip_prefix(PREFIX).unwrap_or(last);
    valid_name(name).then(|| name.to_string())
}

async fn fetch_source(source: &str) -> anyhow::Result<Vec<u8>> {
    if source.starts_with("http://") || source.starts_with("https://") {
        let resp = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(120))
            .build()?
            .get(source)
            .send()
            .await
            .with_context(|| format!("cannot download plugin from {source}"))?;
        let status = resp.status();
        if !status.is_success() {
            return Err(anyhow!(
                "cannot download plugin from {source}: the server answered {status}"
            ));
        }
        let bytes = resp
            .bytes()
            .await
            .with_context(|| format!("cannot download plugin from {source}"))?;
        Ok(bytes.to_vec())
    } else {
        std::fs::read(source).with_context(|| format!("cannot read plugin file {source}"))
    }
}

/// Writes `bytes` as the plugin `name` in `dir`, executable, atomically.
pub(crate) fn install_bytes(
    dir: &Path,
    name: &str,
    bytes: &[u8],
    force: bool,
) -> anyhow::Result<PathBuf> {
    if bytes.is_empty() {
        return Err(anyhow!("plugin {name} is empty: nothing to install"));
    }
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create the plugin directory {}", dir.display()))?;
    let dest = dir.join(format!("{PREFIX}{name}"));
    if dest.exists() && !force {
        return Err(anyhow!(
            "plugin {name} is already installed at {}: pass -f to replace it",
            dest.display()
        ));
    }
    let (tmp_path, mut tmp_file) = tempfile_in(dir)?;
    tmp_file
        .write_all(bytes)
        .with_context(|| format!("cannot write {}", tmp_path.display()))?;
    drop(tmp_file);
    let written = (|| -> std::io::Result<()> {
        std::fs::set_permissions(&tmp_path, std::fs::Permissions::from_mode(0o755))?;
        std::fs::rename(&tmp_path, &dest)
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp_path);
        return Err(anyhow!(
            "cannot install plugin {name} at {}: {e}",
            dest.display()
        ));
    }
    Ok(dest)
}

/// A new file in `dir` for an atomic replace.
fn tempfile_in(dir: &Path) -> anyhow::Result<(PathBuf, std::fs::File)> {
    let path = dir.join(format!(".install-{}", uuid::Uuid::new_v4()));
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    Ok((path, file))
}

/// `ingot install-plugin SOURCE`.
pub(crate) async fn install(args: InstallArgs) -> anyhow::Result<()> {
    let name = match args.name {
        Some(n) if valid_name(&n) => n,
        Some(n) => {
            return Err(anyhow!(
                "{n:?} cannot be a plugin name: use letters, digits, - and _"
            ))
        }
        None => name_from_source(&args.source).ok_or_else(|| {
            anyhow!(
                "cannot tell the plugin's name from {}: pass --name NAME",
                args.source
            )
        })?,
    };
    if help::builtin_names().contains(&name) {
        return Err(anyhow!(
            "{name} is a built-in command, so a plugin of that name would never run: pass --name OTHER"
        ));
    }
    let dir = plugin_dir();
    let dest = dir.join(format!("{PREFIX}{name}"));
    // Checked before a possibly long download; install_bytes checks again.
    if dest.exists() && !args.force {
        return Err(anyhow!(
            "plugin {name} is already installed at {}: pass -f to replace it",
            dest.display()
        ));
    }
    println!("Installing plugin {name} from {}...", args.source);
    let bytes = fetch_source(&args.source).await?;
    let dest = install_bytes(&dir, &name, &bytes, args.force)?;
    println!("OK");
    println!(
        "Plugin {name} installed at {}: run `ingot {name}`.",
        dest.display()
    );
    Ok(())
}

/// `ingot uninstall-plugin NAME`.
pub(crate) fn uninstall(args: UninstallArgs) -> anyhow::Result<()> {
    let dir = plugin_dir();
    let path = dir.join(format!("{PREFIX}{}", args.name));
    if !valid_name(&args.name) || !path.exists() {
        let elsewhere = find_plugin(&args.name, &current_search_dirs())
            .map(|p| {
                format!(
                    " (the one at {} is on PATH: remove it yourself)",
                    p.path.display()
                )
            })
            .unwrap_or_default();
        return Err(anyhow!(
            "plugin {} is not installed in {}{elsewhere}: run `ingot plugins` to see the plugins",
            args.name,
            dir.display()
        ));
    }
    std::fs::remove_file(&path)
        .with_context(|| format!("cannot remove plugin {}", path.display()))?;
    println!("Plugin {} uninstalled.", args.name);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use ingot_client::config::Target;
    use std::ffi::OsString;

    fn script(dir: &Path, file: &str, body: &str, mode: u32) -> PathBuf {
        let p = dir.join(file);
        std::fs::write(&p, body).expect("write script");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).expect("chmod");
        p
    }

    fn config() -> Config {
        Config {
            endpoints: Some(ingot_client::Endpoints {
                api: "http://127.0.0.1:9000".into(),
                login: String::new(),
                uaa: "http://127.0.0.1:9000/uaa".into(),
                log_cache: String::new(),
            }),
            tokens: Some(ingot_client::Tokens {
                access_token: "tok-123".into(),
                refresh_token: None,
            }),
            user: Some("admin".into()),
            org: Some(Target {
                guid: "org-guid".into(),
                name: "my-org".into(),
            }),
            space: Some(Target {
                guid: "space-guid".into(),
                name: "dev".into(),
            }),
            router_url: None,
        }
    }

    #[test]
    fn a_plugin_on_path_runs_with_the_contract_environment_and_its_exit_status() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let bin = tmp.path().join("bin");
        std::fs::create_dir(&bin).expect("mkdir");
        script(
            &bin,
            "ingot-hello",
            "#!/bin/sh\necho \"args=$*\"\nenv | grep '^INGOT_' | sort\nexit 7\n",
            0o755,
        );
        let path_var = OsString::from(format!("/nonexistent:{}", bin.display()));
        let dirs = search_dirs(Some(&path_var), &tmp.path().join("plugins"));
        let plugin = find_plugin("hello", &dirs).expect("plugin found on PATH");
        assert_eq!(plugin.path, bin.join("ingot-hello"));
        assert!(!plugin.installed);

        let out = plugin_command(&plugin, &["a".into(), "--b".into()], &plugin_env(&config()))
            .output()
            .expect("run plugin");
        assert_eq!(out.status.code(), Some(7));
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(stdout.contains("args=a --b\n"), "{stdout}");
        for line in [
            "INGOT_API_URL=http://127.0.0.1:9000",
            "INGOT_TOKEN=tok-123",
            "INGOT_ORG=my-org",
            "INGOT_ORG_GUID=org-guid",
            "INGOT_SPACE=dev",
            "INGOT_SPACE_GUID=space-guid",
            &format!("INGOT_CLI_VERSION={}", env!("CARGO_PKG_VERSION")),
        ] {
            assert!(
                stdout.lines().any(|l| l == line),
                "{line} missing in {stdout}"
            );
        }
    }

    #[test]
    fn a_logged_out_cli_gives_plugins_no_token() {
        let tmp = tempfile::tempdir().expect("tempdir");
        script(
            tmp.path(),
            "ingot-env",
            "#!/bin/sh\nenv | grep '^INGOT_' | sort\n",
            0o755,
        );
        let dirs = search_dirs(None, tmp.path());
        let plugin = find_plugin("env", &dirs).expect("installed plugin");
        assert!(plugin.installed);
        let out = plugin_command(&plugin, &[], &plugin_env(&Config::default()))
            .output()
            .expect("run");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(!stdout.contains("INGOT_TOKEN"), "{stdout}");
        assert!(stdout.contains("INGOT_CLI_VERSION="), "{stdout}");
    }

    #[test]
    fn search_skips_non_executables_and_prefers_the_plugin_directory() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let installed = tmp.path().join("plugins");
        let a = tmp.path().join("a");
        let b = tmp.path().join("b");
        for d in [&installed, &a, &b] {
            std::fs::create_dir(d).expect("mkdir");
        }
        script(&a, "ingot-tool", "#!/bin/sh\n", 0o644);
        script(&b, "ingot-tool", "#!/bin/sh\n", 0o755);
        script(&b, "ingot-push", "#!/bin/sh\n", 0o755);
        script(&installed, "ingot-zed", "#!/bin/sh\n", 0o755);
        script(&b, "ingot-zed", "#!/bin/sh\n", 0o755);
        let path_var = std::env::join_paths([&a, &b]).expect("join");
        let dirs = search_dirs(Some(&path_var), &installed);

        assert_eq!(
            find_plugin("tool", &dirs).map(|p| p.path),
            Some(b.join("ingot-tool"))
        );
        assert_eq!(find_plugin("../a/ingot-tool", &dirs), None);
        assert_eq!(find_plugin("missing", &dirs), None);

        let listed = list_plugins(&dirs, &["push".to_string()]);
        let names: Vec<(&str, bool)> = listed
            .iter()
            .map(|p| (p.name.as_str(), p.installed))
            .collect();
        assert_eq!(names, vec![("tool", false), ("zed", true)]);
        assert_eq!(listed[1].path, installed.join("ingot-zed"));
    }

    #[test]
    fn plugin_list_json_has_stable_fields() {
        let p = Plugin {
            name: "hello".into(),
            path: PathBuf::from("/usr/local/bin/ingot-hello"),
            installed: false,
        };
        let v = serde_json::to_value(vec![p]).expect("json");
        assert_eq!(
            v,
            serde_json::json!([{"name": "hello", "path": "/usr/local/bin/ingot-hello", "installed": false}])
        );
    }

    #[test]
    fn install_writes_an_executable_and_refuses_to_overwrite_without_force() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("plugins");
        let dest = install_bytes(&dir, "hi", b"#!/bin/sh\necho hi\n", false).expect("install");
        assert_eq!(dest, dir.join("ingot-hi"));
        let out = std::process::Command::new(&dest).output().expect("run");
        assert_eq!(String::from_utf8_lossy(&out.stdout), "hi\n");

        let err = install_bytes(&dir, "hi", b"#!/bin/sh\necho new\n", false)
            .expect_err("exists")
            .to_string();
        assert!(err.contains("pass -f"), "{err}");
        install_bytes(&dir, "hi", b"#!/bin/sh\necho new\n", true).expect("forced");
        let out = std::process::Command::new(&dest).output().expect("run");
        assert_eq!(String::from_utf8_lossy(&out.stdout), "new\n");
        // Nothing but the plugin is left in the directory.
        let left: Vec<_> = std::fs::read_dir(&dir).expect("ls").collect();
        assert_eq!(left.len(), 1);
        assert!(install_bytes(&dir, "empty", b"", false).is_err());
    }

    /// Serves one HTTP response on loopback, for one connection.
    async fn serve_once(status: &'static str, body: &'static [u8]) -> String {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            if let Ok((mut sock, _)) = listener.accept().await {
                let mut buf = [0u8; 4096];
                let _ = sock.read(&mut buf).await;
                let head = format!(
                    "HTTP/1.1 {status}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                    body.len()
                );
                let _ = sock.write_all(head.as_bytes()).await;
                let _ = sock.write_all(body).await;
            }
        });
        format!("http://{addr}/dl/ingot-fromurl")
    }

    #[tokio::test]
    async fn plugins_download_from_a_url_and_http_errors_say_so() {
        let url = serve_once("200 OK", b"#!/bin/sh\necho downloaded\n").await;
        assert_eq!(name_from_source(&url), Some("fromurl".into()));
        let bytes = fetch_source(&url).await.expect("download");
        let tmp = tempfile::tempdir().expect("tempdir");
        let dest = install_bytes(tmp.path(), "fromurl", &bytes, false).expect("install");
        let out = std::process::Command::new(&dest).output().expect("run");
        assert_eq!(String::from_utf8_lossy(&out.stdout), "downloaded\n");

        let url = serve_once("404 Not Found", b"no").await;
        let err = fetch_source(&url).await.expect_err("404").to_string();
        assert!(err.contains("404"), "{err}");
        let err = fetch_source("/nonexistent/ingot-x")
            .await
            .expect_err("missing file")
            .to_string();
        assert!(err.contains("/nonexistent/ingot-x"), "{err}");
    }

    #[test]
    fn names_come_from_files_and_urls() {
        assert_eq!(name_from_source("/tmp/ingot-hello"), Some("hello".into()));
        assert_eq!(name_from_source("./tool"), Some("tool".into()));
        assert_eq!(
            name_from_source("http://127.0.0.1:8000/dl/ingot-x?v=1"),
            Some("x".into())
        );
        assert_eq!(name_from_source("http://127.0.0.1:8000/"), None);
    }

    #[test]
    fn tokens_are_refreshed_shortly_before_they_expire() {
        use base64::Engine as _;
        let jwt = |exp: i64| {
            let body = base64::engine::general_purpose::URL_SAFE_NO_PAD
                .encode(format!("{{\"exp\":{exp}}}"));
            format!("e30.{body}.sig")
        };
        assert!(token_needs_refresh(&jwt(1000), 1000));
        assert!(token_needs_refresh(&jwt(1030), 1000));
        assert!(!token_needs_refresh(&jwt(5000), 1000));
        assert!(!token_needs_refresh("not-a-jwt", 1000));
    }
}
