//! The user-facing commands (`login`, `push`, `apps`, `logs`, …), with the
//! names and flags of the `cf` CLI. They speak only the Cloud Foundry v3 API,
//! through `ingot-client`; this module parses, prompts and prints.

mod apps;
mod auth;
mod curl;
mod logs;
mod push;
mod ui;

use std::path::PathBuf;

use anyhow::{anyhow, Context as _};
use clap::Subcommand;
use ingot_client::config::{config_path, Config, Target};
use ingot_client::{Client, ClientError};

/// Every user-facing command.
#[derive(Subcommand)]
pub enum Command {
    /// Log in to a platform and target an org and space.
    Login(auth::LoginArgs),
    /// Forget the saved login.
    Logout,
    /// Show or set the targeted org and space.
    Target(auth::TargetArgs),
    /// List the organizations.
    Orgs,
    /// List the spaces of the targeted organization.
    Spaces,
    /// Push an app: upload its files, stage it, start it.
    Push(push::PushArgs),
    /// List the apps of the targeted space.
    Apps,
    /// Show an app's state and its instances.
    App(apps::AppArgs),
    /// Change an app's instance count, memory or disk.
    Scale(apps::ScaleArgs),
    /// Start an app.
    Start(apps::AppArgs),
    /// Stop an app.
    Stop(apps::AppArgs),
    /// Restart an app.
    Restart(apps::AppArgs),
    /// Delete an app.
    Delete(apps::DeleteArgs),
    /// Show an app's environment variables.
    Env(apps::AppArgs),
    /// Set one of an app's environment variables.
    #[command(name = "set-env")]
    SetEnv(apps::SetEnvArgs),
    /// Show or follow an app's logs.
    Logs(logs::LogsArgs),
    /// Make an authenticated API request, as `cf curl` does.
    Curl(curl::CurlArgs),
}

/// Runs one user-facing command.
pub async fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Login(args) => auth::login(args).await,
        Command::Logout => auth::logout(),
        Command::Target(args) => auth::target(args).await,
        Command::Orgs => auth::orgs().await,
        Command::Spaces => auth::spaces().await,
        Command::Push(args) => push::push(args).await,
        Command::Apps => apps::apps().await,
        Command::App(args) => apps::app(args).await,
        Command::Scale(args) => apps::scale(args).await,
        Command::Start(args) => apps::start(args).await,
        Command::Stop(args) => apps::stop(args).await,
        Command::Restart(args) => apps::restart(args).await,
        Command::Delete(args) => apps::delete(args).await,
        Command::Env(args) => apps::env(args).await,
        Command::SetEnv(args) => apps::set_env(args).await,
        Command::Logs(args) => logs::logs(args).await,
        Command::Curl(args) => curl::curl(args).await,
    }
}

/// Logs the local CLI in to a platform that has just booted: logs in,
/// targets the first org and space (by name), and saves the configuration
/// where `ingot` commands read it.
pub async fn login_local(api_url: &str, username: &str, password: &str) -> anyhow::Result<()> {
    let config = Config::login_first_target(api_url, username, password)
        .await
        .map_err(|e| anyhow!("cannot log the CLI in to {api_url} as {username}: {e}"))?;
    let path = config_path();
    config
        .save(&path)
        .with_context(|| format!("cannot save the CLI configuration to {}", path.display()))
}

/// Remembers where the platform's router listens (e.g. `http://127.0.0.1:8080`)
/// so that `push` and `app` show routes as URLs through it. `ingot up` calls
/// this after [`login_local`].
pub fn remember_router(router_url: &str) -> anyhow::Result<()> {
    let path = config_path();
    let mut config = Config::load(&path)?;
    config.router_url = Some(router_url.to_string());
    config
        .save(&path)
        .with_context(|| format!("cannot save the CLI configuration to {}", path.display()))
}

/// A logged-in CLI: the saved configuration and a client for it.
pub(crate) struct Session {
    path: PathBuf,
    config: Config,
    client: Client,
}

impl Session {
    /// Opens the saved login; fails with what to run when there is none.
    pub(crate) fn open() -> anyhow::Result<Session> {
        let path = config_path();
        let config = Config::load(&path)?;
        let client = match (&config.tokens, config.client()) {
            (Some(_), Some(client)) => client,
            _ => return Err(anyhow!("not logged in: run `ingot login -a API_URL`")),
        };
        Ok(Session {
            path,
            config,
            client,
        })
    }

    /// The client.
    pub(crate) fn client(&self) -> &Client {
        &self.client
    }

    /// The user name shown in messages.
    pub(crate) fn user(&self) -> String {
        self.config
            .user
            .clone()
            .or_else(|| self.client.tokens().and_then(|t| t.user_name()))
            .unwrap_or_else(|| "(unknown user)".into())
    }

    /// The targeted org and space; fails with what to run when unset.
    pub(crate) fn target(&self) -> anyhow::Result<(Target, Target)> {
        match (&self.config.org, &self.config.space) {
            (Some(o), Some(s)) => Ok((o.clone(), s.clone())),
            (None, _) => Err(anyhow!(
                "no org and space targeted: run `ingot target -o ORG -s SPACE`"
            )),
            (Some(_), None) => Err(anyhow!("no space targeted: run `ingot target -s SPACE`")),
        }
    }

    /// Saves the configuration, with tokens refreshed during the command.
    pub(crate) fn save(&mut self) -> anyhow::Result<()> {
        let tokens = self.client.tokens();
        if tokens != self.config.tokens {
            self.config.tokens = tokens;
        }
        self.config.save(&self.path).with_context(|| {
            format!(
                "cannot save the CLI configuration to {}",
                self.path.display()
            )
        })
    }

    /// Saves tokens refreshed during the command, if any changed. Failing to
    /// save them is not worth failing the command over: the next command
    /// refreshes again.
    pub(crate) fn keep_tokens(&mut self) {
        if self.client.tokens() != self.config.tokens {
            let _ = self.save();
        }
    }

    /// A route as the URL to open (through the router, when known).
    pub(crate) fn route_link(&self, route: &str) -> String {
        self.config.route_link(route)
    }

    /// Mutable access to the configuration (for `target`).
    pub(crate) fn config_mut(&mut self) -> &mut Config {
        &mut self.config
    }
}

/// Turns a client error into the one sentence the user reads: what failed,
/// why, and, when it helps, the command to run next.
pub(crate) fn explain(what: impl std::fmt::Display, err: ClientError) -> anyhow::Error {
    if err.needs_login() {
        return anyhow!("{what}: {err}; your login has expired or is not valid: run `ingot login`");
    }
    if let ClientError::Transport { .. } = err {
        return anyhow!("{what}: {err}; is the platform running (`ingot up`)?");
    }
    anyhow!("{what}: {err}")
}

/// `result.or_explain("what")`: [`explain`] as a method.
pub(crate) trait OrExplain<T> {
    /// Maps the error through [`explain`].
    fn or_explain(self, what: impl std::fmt::Display) -> anyhow::Result<T>;
}

impl<T> OrExplain<T> for Result<T, ClientError> {
    fn or_explain(self, what: impl std::fmt::Display) -> anyhow::Result<T> {
        self.map_err(|e| explain(what, e))
    }
}

/// Finds an app by name in the targeted space, or says it does not exist.
pub(crate) async fn find_app(
    session: &Session,
    space: &Target,
    name: &str,
) -> anyhow::Result<ingot_client::resources::App> {
    session
        .client()
        .app_by_name(&space.guid, name)
        .await
        .or_explain(format!("cannot look up app {name}"))?
        .ok_or_else(|| {
            anyhow!(
                "app {name} not found in space {}: run `ingot apps` to see the apps there",
                space.name
            )
        })
}
