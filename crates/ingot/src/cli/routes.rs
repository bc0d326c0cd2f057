//! `domains`, `routes`, `create-route`, `map-route`, `unmap-route`,
//! `delete-route`, with cf's flags (`--hostname`, `--path`; `--port` and
//! `--random-port` for a TCP domain).

use std::time::Duration;

use anyhow::anyhow;
use clap::Args;
use ingot_client::routes::{Domain, RouteDetail};
use ingot_client::Client;
use serde::Serialize;

use super::{find_app, ui, OrExplain as _, Session};

/// A route named as cf names it: a domain and a host and a path, or, on a
/// TCP domain, a domain and a port.
#[derive(Args)]
pub struct RouteArgs {
    /// The domain, e.g. apps.localhost (or tcp.apps.localhost for a TCP route).
    domain: String,
    /// The host name (`NAME` of `NAME.DOMAIN`).
    #[arg(long = "hostname", visible_alias = "host")]
    hostname: Option<String>,
    /// The path, e.g. /api.
    #[arg(long)]
    path: Option<String>,
    /// The router port of a TCP route.
    #[arg(long)]
    port: Option<u16>,
    /// Create the TCP route on a free port of the domain's router group
    /// (create-route only).
    #[arg(long, conflicts_with = "port")]
    random_port: bool,
}

/// An app and a route.
#[derive(Args)]
pub struct MapArgs {
    /// The app's name.
    app: String,
    #[command(flatten)]
    route: RouteArgs,
}

/// Flags of `delete-route`.
#[derive(Args)]
pub struct DeleteRouteArgs {
    #[command(flatten)]
    route: RouteArgs,
    /// Do not ask for confirmation.
    #[arg(short = 'f')]
    force: bool,
}

impl RouteArgs {
    fn host(&self) -> &str {
        self.hostname.as_deref().unwrap_or("")
    }

    /// The path as the API stores it: empty, or starting with `/`.
    fn path(&self) -> String {
        match self.path.as_deref().map(|p| p.trim_end_matches('/')) {
            None | Some("") => String::new(),
            Some(p) if p.starts_with('/') => p.to_string(),
            Some(p) => format!("/{p}"),
        }
    }

    fn url(&self) -> String {
        if let Some(port) = self.port {
            return format!("{}:{port}", self.domain);
        }
        let host = self.host();
        let base = if host.is_empty() {
            self.domain.clone()
        } else {
            format!("{host}.{}", self.domain)
        };
        format!("{base}{}", self.path())
    }
}

/// The route these flags name on `domain`, if it exists: by port on a TCP
/// domain, by host and path on an HTTP one.
async fn find_route(
    client: &Client,
    domain: &Domain,
    args: &RouteArgs,
) -> anyhow::Result<Option<RouteDetail>> {
    if domain.is_tcp() {
        let port = args.port.ok_or_else(|| {
            anyhow!(
                "domain {} is a TCP domain: name the route with --port N",
                domain.name
            )
        })?;
        return client
            .find_tcp_route(&domain.guid, port)
            .await
            .or_explain("cannot look up the route");
    }
    if args.port.is_some() || args.random_port {
        return Err(anyhow!(
            "Routes with protocol 'http' do not support ports: domain {} is an HTTP domain",
            domain.name
        ));
    }
    client
        .find_route(&domain.guid, args.host(), &args.path())
        .await
        .or_explain("cannot look up the route")
}

/// Creates the route these flags name (on a free port for a TCP route
/// without `--port`).
async fn new_route(
    client: &Client,
    space_guid: &str,
    domain: &Domain,
    args: &RouteArgs,
) -> anyhow::Result<RouteDetail> {
    let created = if domain.is_tcp() {
        client
            .create_tcp_route(space_guid, &domain.guid, args.port)
            .await
    } else {
        client
            .create_route(space_guid, &domain.guid, args.host(), &args.path())
            .await
    };
    created.or_explain(format!("cannot create route {}", args.url()))
}

fn refuse_random_port(args: &RouteArgs) -> anyhow::Result<()> {
    if args.random_port {
        return Err(anyhow!(
            "--random-port is for create-route only: name the TCP route with --port N"
        ));
    }
    Ok(())
}

async fn find_domain(session: &Session, name: &str) -> anyhow::Result<Domain> {
    session
        .client()
        .domain_by_name(name)
        .await
        .or_explain(format!("cannot look up domain {name}"))?
        .ok_or_else(|| anyhow!("domain {name} not found: run `ingot domains` to see them"))
}

#[derive(Serialize)]
struct DomainRow {
    name: String,
    guid: String,
    internal: bool,
    /// `http` or `tcp`.
    protocols: Vec<String>,
}

/// `ingot domains`.
pub(crate) async fn domains(args: super::ListArgs) -> anyhow::Result<()> {
    let mut session = Session::open()?;
    if !args.json {
        println!("Getting domains as {}...\n", session.user());
    }
    let domains = session
        .client()
        .domains()
        .await
        .or_explain("cannot list the domains")?;
    session.keep_tokens();
    let rows: Vec<DomainRow> = domains
        .into_iter()
        .map(|d| DomainRow {
            protocols: if d.supported_protocols.is_empty() {
                vec!["http".to_string()]
            } else {
                d.supported_protocols
            },
            name: d.name,
            guid: d.guid,
            internal: d.internal,
        })
        .collect();
    if args.json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(());
    }
    let mut table = vec![vec![
        "name".to_string(),
        "availability".to_string(),
        "protocols".to_string(),
    ]];
    table.extend(rows.into_iter().map(|r| {
        let kind = if r.internal { "internal" } else { "shared" };
        vec![r.name, kind.to_string(), r.protocols.join(", ")]
    }));
    print!("{}", ui::table(&table));
    Ok(())
}

#[derive(Serialize)]
struct RouteRow {
    url: String,
    host: String,
    path: String,
    /// `http` or `tcp`.
    protocol: String,
    /// The router port of a TCP route.
    port: Option<u16>,
    apps: Vec<String>,
}

/// `ingot routes`: the routes of the targeted space and the apps they reach.
pub(crate) async fn routes(args: super::ListArgs) -> anyhow::Result<()> {
    let mut session = Session::open()?;
    let (org, space) = session.target()?;
    if !args.json {
        println!(
            "Getting routes for org {} / space {} as {}...\n",
            org.name,
            space.name,
            session.user()
        );
    }
    let client = session.client();
    let routes = client
        .space_routes(&space.guid)
        .await
        .or_explain("cannot list the routes")?;
    let apps = client
        .apps(&space.guid)
        .await
        .or_explain("cannot list the apps")?;
    session.keep_tokens();
    let rows: Vec<RouteRow> = routes
        .iter()
        .map(|r| RouteRow {
            url: r.url.clone(),
            host: r.host.clone(),
            path: r.path.clone(),
            protocol: if r.protocol.is_empty() {
                "http".to_string()
            } else {
                r.protocol.clone()
            },
            port: r.port,
            apps: r
                .app_guids()
                .iter()
                .filter_map(|g| apps.iter().find(|a| &a.guid == g).map(|a| a.name.clone()))
                .collect(),
        })
        .collect();
    if args.json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(());
    }
    let mut table = vec![vec![
        "route".to_string(),
        "protocol".to_string(),
        "apps".to_string(),
    ]];
    table.extend(
        rows.into_iter()
            .map(|r| vec![r.url, r.protocol, r.apps.join(", ")]),
    );
    print!("{}", ui::table(&table));
    Ok(())
}

/// `ingot create-route DOMAIN [--hostname H] [--path P]`, or for a TCP
/// domain `ingot create-route DOMAIN [--port N | --random-port]`.
pub(crate) async fn create_route(args: RouteArgs) -> anyhow::Result<()> {
    let mut session = Session::open()?;
    let (org, space) = session.target()?;
    println!(
        "Creating route {} for org {} / space {} as {}...",
        args.url(),
        org.name,
        space.name,
        session.user()
    );
    let domain = find_domain(&session, &args.domain).await?;
    let client = session.client();
    // A TCP route without a port gets a free one: nothing to look up.
    let existing = if domain.is_tcp() && args.port.is_none() {
        None
    } else {
        find_route(client, &domain, &args).await?
    };
    if existing.is_some() {
        println!("Route {} already exists.", args.url());
    } else {
        let route = new_route(client, &space.guid, &domain, &args).await?;
        println!("Route {} has been created.", route.url);
    }
    session.keep_tokens();
    println!("OK");
    Ok(())
}

/// `ingot map-route APP DOMAIN [--hostname H] [--path P] [--port N]`: creates the
/// route if needed, then sends its requests to the app.
pub(crate) async fn map_route(args: MapArgs) -> anyhow::Result<()> {
    let mut session = Session::open()?;
    let (org, space) = session.target()?;
    let app = find_app(&session, &space, &args.app).await?;
    println!(
        "Mapping route {} to app {} in org {} / space {} as {}...",
        args.route.url(),
        app.name,
        org.name,
        space.name,
        session.user()
    );
    refuse_random_port(&args.route)?;
    let domain = find_domain(&session, &args.route.domain).await?;
    let client = session.client();
    let route = match find_route(client, &domain, &args.route).await? {
        Some(route) => route,
        None => new_route(client, &space.guid, &domain, &args.route).await?,
    };
    if route.app_guids().contains(&app.guid) {
        println!(
            "App {} is already mapped to route {}.",
            app.name,
            args.route.url()
        );
    } else {
        client
            .map_route(&route.guid, &app.guid)
            .await
            .or_explain(format!(
                "cannot map route {} to app {}",
                args.route.url(),
                app.name
            ))?;
    }
    session.keep_tokens();
    println!("OK");
    Ok(())
}

/// `ingot unmap-route APP DOMAIN [--hostname H] [--path P] [--port N]`.
pub(crate) async fn unmap_route(args: MapArgs) -> anyhow::Result<()> {
    let mut session = Session::open()?;
    let (_, space) = session.target()?;
    let app = find_app(&session, &space, &args.app).await?;
    println!(
        "Removing route {} from app {} as {}...",
        args.route.url(),
        app.name,
        session.user()
    );
    refuse_random_port(&args.route)?;
    let domain = find_domain(&session, &args.route.domain).await?;
    let client = session.client();
    let route = find_route(client, &domain, &args.route)
        .await?
        .ok_or_else(|| {
            anyhow!(
                "route {} does not exist: run `ingot routes`",
                args.route.url()
            )
        })?;
    client
        .unmap_route(&route, &app.guid)
        .await
        .or_explain(format!("cannot unmap route {}", args.route.url()))?;
    session.keep_tokens();
    println!("OK");
    Ok(())
}

/// `ingot delete-route DOMAIN [--hostname H] [--path P] [--port N] [-f]`.
pub(crate) async fn delete_route(args: DeleteRouteArgs) -> anyhow::Result<()> {
    let mut session = Session::open()?;
    let url = args.route.url();
    if !args.force && !ui::confirm(&format!("Really delete the route {url}?"))? {
        println!("Delete cancelled");
        return Ok(());
    }
    println!("Deleting route {url} as {}...", session.user());
    refuse_random_port(&args.route)?;
    let domain = find_domain(&session, &args.route.domain).await?;
    let client = session.client();
    match find_route(client, &domain, &args.route).await? {
        Some(route) => client
            .delete_route(&route.guid, Duration::from_secs(60))
            .await
            .or_explain(format!("cannot delete route {url}"))?,
        None => println!(
            "Unable to delete. Route with domain '{}' not found.",
            args.route.domain
        ),
    }
    session.keep_tokens();
    println!("OK");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_are_named_as_cf_names_them() {
        let args = RouteArgs {
            domain: "apps.localhost".into(),
            hostname: Some("shop".into()),
            path: Some("api/".into()),
            port: None,
            random_port: false,
        };
        assert_eq!(args.url(), "shop.apps.localhost/api");
        assert_eq!(args.path(), "/api");
        let bare = RouteArgs {
            domain: "example.com".into(),
            hostname: None,
            path: None,
            port: None,
            random_port: false,
        };
        assert_eq!(bare.url(), "example.com");
        let tcp = RouteArgs {
            domain: "tcp.apps.localhost".into(),
            hostname: None,
            path: None,
            port: Some(1024),
            random_port: false,
        };
        assert_eq!(tcp.url(), "tcp.apps.localhost:1024");
    }
}
