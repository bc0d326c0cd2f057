//! The CLI's saved login: the platform's endpoints, the tokens, and the
//! targeted org and space, in `$INGOT_CLI_HOME/config.json` or else
//! `~/.ingot/config.json`, readable by its owner only (mode 0600).

use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::client::{Client, Endpoints, Tokens};
use crate::error::{ClientError, Result};

/// A targeted org or space.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Target {
    /// Its guid.
    pub guid: String,
    /// Its name.
    pub name: String,
}

/// Everything `ingot login` and `ingot target` remember.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Config {
    /// The platform, once `login -a` has reached it.
    #[serde(default)]
    pub endpoints: Option<Endpoints>,
    /// The login's tokens.
    #[serde(default)]
    pub tokens: Option<Tokens>,
    /// Who logged in.
    #[serde(default)]
    pub user: Option<String>,
    /// The targeted organization.
    #[serde(default)]
    pub org: Option<Target>,
    /// The targeted space.
    #[serde(default)]
    pub space: Option<Target>,
    /// Where the platform's router listens (e.g. `http://127.0.0.1:8080`),
    /// when known: routes are then shown as URLs through it.
    #[serde(default)]
    pub router_url: Option<String>,
}

/// Where the configuration lives: `$INGOT_CLI_HOME/config.json`, or else
/// `$HOME/.ingot/config.json`.
pub fn config_path() -> PathBuf {
    if let Some(dir) = std::env::var_os("INGOT_CLI_HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir).join("config.json");
    }
    let home = std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/root"));
    home.join(".ingot").join("config.json")
}

impl Config {
    /// Reads the configuration; a missing file is an empty configuration.
    pub fn load(path: &Path) -> Result<Config> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Config::default()),
            Err(source) => {
                return Err(ClientError::Io {
                    path: path.display().to_string(),
                    source,
                })
            }
        };
        serde_json::from_str(&text).map_err(|e| ClientError::Invalid {
            what: path.display().to_string(),
            detail: format!("is not a valid CLI configuration ({e}); delete it and log in again"),
        })
    }

    /// Writes the configuration atomically with mode 0600 (it holds tokens).
    pub fn save(&self, path: &Path) -> Result<()> {
        let io = |source| ClientError::Io {
            path: path.display().to_string(),
            source,
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let text = serde_json::to_string_pretty(self).map_err(|e| ClientError::Invalid {
            what: "configuration".into(),
            detail: e.to_string(),
        })?;
        let tmp = path.with_extension("json.tmp");
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(io)?;
        // An existing tmp file keeps its old mode; force 0600.
        file.set_permissions(std::fs::Permissions::from_mode(0o600))
            .map_err(io)?;
        file.write_all(text.as_bytes()).map_err(io)?;
        file.sync_all().map_err(io)?;
        std::fs::rename(&tmp, path).map_err(io)?;
        Ok(())
    }

    /// A route (`host.domain/path`) as the URL a browser opens: with the
    /// router's scheme and port when the router is known, else as it is.
    pub fn route_link(&self, route: &str) -> String {
        let Some(router) = self.router_url.as_deref() else {
            return route.to_string();
        };
        let Ok(url) = reqwest::Url::parse(router) else {
            return route.to_string();
        };
        let (host, path) = match route.find('/') {
            Some(i) => (&route[..i], &route[i..]),
            None => (route, ""),
        };
        match url.port() {
            Some(port) => format!("{}://{host}:{port}{path}", url.scheme()),
            None => format!("{}://{host}{path}", url.scheme()),
        }
    }

    /// Logs in and targets the first org and its first space (by name), as
    /// `ingot up` does for the local CLI; nothing is saved.
    pub async fn login_first_target(
        api_url: &str,
        username: &str,
        password: &str,
    ) -> Result<Config> {
        let client = Client::connect(api_url).await?;
        client.login(username, password).await?;
        let mut config = Config {
            endpoints: Some(client.endpoints().clone()),
            user: Some(username.to_string()),
            ..Config::default()
        };
        if let Some(org) = client.organizations(None).await?.into_iter().next() {
            let space = client.spaces(&org.guid, None).await?.into_iter().next();
            config.org = Some(Target {
                guid: org.guid,
                name: org.name,
            });
            config.space = space.map(|s| Target {
                guid: s.guid,
                name: s.name,
            });
        }
        // Read last: a refresh during the listing replaces them.
        config.tokens = client.tokens();
        Ok(config)
    }

    /// A client for the saved login, if there is one.
    pub fn client(&self) -> Option<Client> {
        let endpoints = self.endpoints.clone()?;
        Some(Client::new(endpoints, self.tokens.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_round_trips_with_mode_0600() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let path = tmp.path().join("sub").join("config.json");
        assert_eq!(
            Config::load(&path).expect("missing is empty"),
            Config::default()
        );
        let cfg = Config {
            endpoints: Some(Endpoints {
                api: "http://127.0.0.1:9000".into(),
                login: "http://127.0.0.1:9000/uaa".into(),
                uaa: "http://127.0.0.1:9000/uaa".into(),
                log_cache: "http://127.0.0.1:9000/log-cache".into(),
            }),
            tokens: Some(Tokens {
                access_token: "a.b.c".into(),
                refresh_token: Some("r".into()),
            }),
            user: Some("admin".into()),
            org: Some(Target {
                guid: "o1".into(),
                name: "main".into(),
            }),
            space: Some(Target {
                guid: "s1".into(),
                name: "dev".into(),
            }),
            router_url: Some("http://0.0.0.0:8080".into()),
        };
        cfg.save(&path).expect("save");
        let mode = std::fs::metadata(&path).expect("stat").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(Config::load(&path).expect("load"), cfg);
        // Saving again replaces the file and keeps the mode.
        let mut less = cfg.clone();
        less.space = None;
        less.save(&path).expect("save");
        assert_eq!(Config::load(&path).expect("load"), less);
    }

    #[test]
    fn routes_become_urls_through_the_router() {
        let mut cfg = Config::default();
        assert_eq!(cfg.route_link("web.apps.localhost"), "web.apps.localhost");
        cfg.router_url = Some("http://0.0.0.0:8080".into());
        assert_eq!(
            cfg.route_link("web.apps.localhost"),
            "http://web.apps.localhost:8080"
        );
        assert_eq!(
            cfg.route_link("web.apps.localhost/api"),
            "http://web.apps.localhost:8080/api"
        );
        cfg.router_url = Some("https://10.0.0.1".into());
        assert_eq!(
            cfg.route_link("web.apps.localhost"),
            "https://web.apps.localhost"
        );
    }

    #[test]
    fn a_corrupt_config_says_what_to_do() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let path = tmp.path().join("config.json");
        std::fs::write(&path, "{not json").expect("write");
        let err = Config::load(&path).expect_err("corrupt");
        assert!(err.to_string().contains("log in again"), "{err}");
    }
}
