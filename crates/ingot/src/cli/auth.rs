//! `login`, `logout`, `target`, `orgs`, `spaces`: who the CLI is and where
//! it points.

use anyhow::{anyhow, Context as _};
use clap::Args;
use ingot_client::config::{config_path, Config, Target};
use ingot_client::resources::{Organization, Space};
use ingot_client::Client;

use super::{ui, ListArgs, OrExplain as _, Session};

/// Flags of `login`.
#[derive(Args)]
pub struct LoginArgs {
    /// API URL, e.g. http://127.0.0.1:9000 (default: the saved one).
    #[arg(short = 'a')]
    api: Option<String>,
    /// User name.
    #[arg(short = 'u')]
    username: Option<String>,
    /// Password.
    #[arg(short = 'p')]
    password: Option<String>,
    /// Organization to target.
    #[arg(short = 'o')]
    org: Option<String>,
    /// Space to target.
    #[arg(short = 's')]
    space: Option<String>,
    /// Accepted for compatibility with cf; Ingot's local API is plain HTTP.
    #[arg(long, hide = true)]
    skip_ssl_validation: bool,
}

/// Flags of `target`.
#[derive(Args)]
pub struct TargetArgs {
    /// Organization to target.
    #[arg(short = 'o')]
    org: Option<String>,
    /// Space to target.
    #[arg(short = 's')]
    space: Option<String>,
}

fn need(value: Option<String>, label: &str, flag: &str, secret: bool) -> anyhow::Result<String> {
    match value {
        Some(v) => Ok(v),
        None if ui::interactive() => {
            if secret {
                ui::prompt_secret(label)
            } else {
                ui::prompt(label)
            }
        }
        None => Err(anyhow!("no {label} given: pass {flag}")),
    }
}

/// `ingot login`.
pub(crate) async fn login(args: LoginArgs) -> anyhow::Result<()> {
    let path = config_path();
    let saved = Config::load(&path)?;
    let api = match args.api {
        Some(a) => a,
        None => match saved.endpoints.as_ref().map(|e| e.api.clone()) {
            Some(a) => a,
            None => need(None, "API endpoint", "-a API_URL", false)?,
        },
    };
    let api = if api.contains("://") {
        api
    } else {
        format!("http://{api}")
    };
    println!("API endpoint: {api}");
    let client = Client::connect(&api)
        .await
        .or_explain(format!("cannot reach the API at {api}"))?;
    let username = need(args.username, "Username", "-u USER", false)?;
    let password = need(args.password, "Password", "-p PASSWORD", true)?;
    println!("Authenticating...");
    client
        .login(&username, &password)
        .await
        .map_err(|e| anyhow!("cannot log in as {username}: {e}"))?;
    println!("OK");

    let mut config = Config {
        endpoints: Some(client.endpoints().clone()),
        tokens: client.tokens(),
        user: Some(username),
        org: None,
        space: None,
        // The router of the same platform stays known across logins.
        router_url: saved
            .router_url
            .clone()
            .filter(|_| saved.endpoints.as_ref().map(|e| e.api.as_str()) == Some(api.as_str())),
    };
    let orgs = client
        .organizations(None)
        .await
        .or_explain("cannot list the organizations")?;
    let org = match args.org {
        Some(name) => Some(orgs.into_iter().find(|o| o.name == name).ok_or_else(|| {
            anyhow!("organization {name} not found: run `ingot orgs` after logging in")
        })?),
        None => choose_org(orgs)?,
    };
    if let Some(org) = org {
        let spaces = client
            .spaces(&org.guid, None)
            .await
            .or_explain(format!("cannot list the spaces of org {}", org.name))?;
        let space = match args.space {
            Some(name) => Some(spaces.into_iter().find(|s| s.name == name).ok_or_else(|| {
                anyhow!(
                    "space {name} not found in org {}: run `ingot spaces`",
                    org.name
                )
            })?),
            None => choose_space(spaces)?,
        };
        config.org = Some(Target {
            guid: org.guid,
            name: org.name,
        });
        config.space = space.map(|s| Target {
            guid: s.guid,
            name: s.name,
        });
    }
    config
        .save(&path)
        .with_context(|| format!("cannot save the CLI configuration to {}", path.display()))?;
    println!();
    print_target(&config);
    Ok(())
}

fn choose_org(orgs: Vec<Organization>) -> anyhow::Result<Option<Organization>> {
    let names: Vec<String> = orgs.iter().map(|o| o.name.clone()).collect();
    Ok(choose("Org", &names)?.map(|i| orgs[i].clone()))
}

fn choose_space(spaces: Vec<Space>) -> anyhow::Result<Option<Space>> {
    let names: Vec<String> = spaces.iter().map(|s| s.name.clone()).collect();
    Ok(choose("Space", &names)?.map(|i| spaces[i].clone()))
}

/// One of several: the only one automatically, else a numbered menu on a
/// terminal, else none.
fn choose(label: &str, names: &[String]) -> anyhow::Result<Option<usize>> {
    match names.len() {
        0 => Ok(None),
        1 => Ok(Some(0)),
        _ if !ui::interactive() => Ok(None),
        _ => {
            println!("Select an {}:", label.to_lowercase());
            for (i, n) in names.iter().enumerate() {
                println!("{}. {n}", i + 1);
            }
            let answer = ui::prompt(&format!("{label} (enter to skip)"))?;
            if answer.is_empty() {
                return Ok(None);
            }
            if let Ok(i) = answer.parse::<usize>() {
                if (1..=names.len()).contains(&i) {
                    return Ok(Some(i - 1));
                }
            }
            Ok(names.iter().position(|n| *n == answer))
        }
    }
}

/// `ingot logout`.
pub(crate) fn logout() -> anyhow::Result<()> {
    let path = config_path();
    let mut config = Config::load(&path)?;
    config.tokens = None;
    config.user = None;
    config.org = None;
    config.space = None;
    config
        .save(&path)
        .with_context(|| format!("cannot save the CLI configuration to {}", path.display()))?;
    println!("Logged out.");
    Ok(())
}

fn print_target(config: &Config) {
    let api = config
        .endpoints
        .as_ref()
        .map(|e| e.api.clone())
        .unwrap_or_default();
    let rows = vec![
        vec!["API endpoint:".to_string(), api],
        vec!["user:".to_string(), config.user.clone().unwrap_or_default()],
        vec![
            "org:".to_string(),
            config
                .org
                .as_ref()
                .map(|o| o.name.clone())
                .unwrap_or_else(|| "(none: run `ingot target -o ORG`)".into()),
        ],
        vec![
            "space:".to_string(),
            config
                .space
                .as_ref()
                .map(|s| s.name.clone())
                .unwrap_or_else(|| "(none: run `ingot target -s SPACE`)".into()),
        ],
    ];
    print!("{}", ui::table(&rows));
}

/// `ingot target`.
pub(crate) async fn target(args: TargetArgs) -> anyhow::Result<()> {
    let mut session = Session::open()?;
    if let Some(name) = &args.org {
        let org = session
            .client()
            .organizations(Some(name))
            .await
            .or_explain(format!("cannot look up organization {name}"))?
            .into_iter()
            .find(|o| o.name == *name)
            .ok_or_else(|| anyhow!("organization {name} not found: run `ingot orgs`"))?;
        let spaces = session
            .client()
            .spaces(&org.guid, None)
            .await
            .or_explain(format!("cannot list the spaces of org {name}"))?;
        let cfg = session.config_mut();
        cfg.org = Some(Target {
            guid: org.guid,
            name: org.name,
        });
        // A new org invalidates the space; a lone space is targeted at once.
        cfg.space = match spaces.as_slice() {
            [one] => Some(Target {
                guid: one.guid.clone(),
                name: one.name.clone(),
            }),
            _ => None,
        };
    }
    if let Some(name) = &args.space {
        let org = session
            .config_mut()
            .org
            .clone()
            .ok_or_else(|| anyhow!("no org targeted: run `ingot target -o ORG -s {name}`"))?;
        let space = session
            .client()
            .spaces(&org.guid, Some(name))
            .await
            .or_explain(format!("cannot look up space {name}"))?
            .into_iter()
            .find(|s| s.name == *name)
            .ok_or_else(|| {
                anyhow!(
                    "space {name} not found in org {}: run `ingot spaces`",
                    org.name
                )
            })?;
        session.config_mut().space = Some(Target {
            guid: space.guid,
            name: space.name,
        });
    }
    session.save()?;
    let user = session.user();
    let cfg = session.config_mut();
    cfg.user = Some(user);
    print_target(cfg);
    Ok(())
}

/// One org or space in `--json` output.
#[derive(Debug, PartialEq, Eq, serde::Serialize)]
pub(crate) struct Named {
    /// Its name.
    pub name: String,
    /// Its GUID.
    pub guid: String,
}

/// `ingot orgs`.
pub(crate) async fn orgs(args: ListArgs) -> anyhow::Result<()> {
    let mut session = Session::open()?;
    if !args.json {
        println!("Getting orgs as {}...\n", session.user());
    }
    let orgs = session
        .client()
        .organizations(None)
        .await
        .or_explain("cannot list the organizations")?;
    session.keep_tokens();
    if args.json {
        let list: Vec<Named> = orgs
            .into_iter()
            .map(|o| Named {
                name: o.name,
                guid: o.guid,
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&list)?);
        return Ok(());
    }
    let mut rows = vec![vec!["name".to_string()]];
    rows.extend(orgs.into_iter().map(|o| vec![o.name]));
    print!("{}", ui::table(&rows));
    Ok(())
}

/// `ingot spaces`.
pub(crate) async fn spaces(args: ListArgs) -> anyhow::Result<()> {
    let mut session = Session::open()?;
    let org = session
        .config_mut()
        .org
        .clone()
        .ok_or_else(|| anyhow!("no org targeted: run `ingot target -o ORG`"))?;
    if !args.json {
        println!(
            "Getting spaces in org {} as {}...\n",
            org.name,
            session.user()
        );
    }
    let spaces = session
        .client()
        .spaces(&org.guid, None)
        .await
        .or_explain(format!("cannot list the spaces of org {}", org.name))?;
    session.keep_tokens();
    if args.json {
        let list: Vec<Named> = spaces
            .into_iter()
            .map(|s| Named {
                name: s.name,
                guid: s.guid,
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&list)?);
        return Ok(());
    }
    let mut rows = vec![vec!["name".to_string()]];
    rows.extend(spaces.into_iter().map(|s| vec![s.name]));
    print!("{}", ui::table(&rows));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn orgs_and_spaces_json_has_name_and_guid() {
        let v = serde_json::to_value(vec![Named {
            name: "dev".into(),
            guid: "s-1".into(),
        }])
        .expect("json");
        assert_eq!(v, serde_json::json!([{"name": "dev", "guid": "s-1"}]));
    }
}
