//! Domains and routes: what `domains`, `routes`, `create-route`,
//! `map-route`, `unmap-route` and `delete-route` send.

use reqwest::Method;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::client::Client;
use crate::error::Result;

/// A domain.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Domain {
    /// Its guid.
    pub guid: String,
    /// e.g. `apps.localhost`.
    pub name: String,
    /// Whether only container-to-container traffic uses it.
    #[serde(default)]
    pub internal: bool,
    /// `["http"]`, or `["tcp"]` for a domain of a TCP router group.
    #[serde(default)]
    pub supported_protocols: Vec<String>,
}

impl Domain {
    /// Whether its routes are TCP routes (a port, no host or path).
    pub fn is_tcp(&self) -> bool {
        self.supported_protocols.iter().any(|p| p == "tcp")
    }
}

/// A route with what it maps to.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct RouteDetail {
    /// Its guid.
    pub guid: String,
    /// Host part.
    #[serde(default)]
    pub host: String,
    /// Path part, may be empty.
    #[serde(default)]
    pub path: String,
    /// `host.domain/path`, or `domain:port` for a TCP route.
    #[serde(default)]
    pub url: String,
    /// `http` or `tcp`.
    #[serde(default)]
    pub protocol: String,
    /// The router port of a TCP route.
    #[serde(default)]
    pub port: Option<u16>,
    /// The apps (and processes) it sends requests to.
    #[serde(default)]
    pub destinations: Vec<Value>,
}

impl RouteDetail {
    /// The guids of the apps the route is mapped to.
    pub fn app_guids(&self) -> Vec<String> {
        self.destinations
            .iter()
            .filter_map(|d| d["app"]["guid"].as_str().map(str::to_string))
            .collect()
    }
}

impl Client {
    /// Every domain the user can see.
    pub async fn domains(&self) -> Result<Vec<Domain>> {
        self.list_all("/v3/domains", &[("order_by", "name")]).await
    }

    /// The domain of this name, if any.
    pub async fn domain_by_name(&self, name: &str) -> Result<Option<Domain>> {
        let found: Vec<Domain> = self.list_all("/v3/domains", &[("names", name)]).await?;
        Ok(found.into_iter().next())
    }

    /// The routes of a space.
    pub async fn space_routes(&self, space_guid: &str) -> Result<Vec<RouteDetail>> {
        self.list_all("/v3/routes", &[("space_guids", space_guid)])
            .await
    }

    /// The route with this domain, host and path, if it exists.
    pub async fn find_route(
        &self,
        domain_guid: &str,
        host: &str,
        path: &str,
    ) -> Result<Option<RouteDetail>> {
        let found: Vec<RouteDetail> = self
            .list_all(
                "/v3/routes",
                &[
                    ("domain_guids", domain_guid),
                    ("hosts", host),
                    ("paths", path),
                ],
            )
            .await?;
        Ok(found.into_iter().find(|r| r.host == host && r.path == path))
    }

    /// The TCP route on this domain and port, if it exists.
    pub async fn find_tcp_route(
        &self,
        domain_guid: &str,
        port: u16,
    ) -> Result<Option<RouteDetail>> {
        let port_text = port.to_string();
        let found: Vec<RouteDetail> = self
            .list_all(
                "/v3/routes",
                &[("domain_guids", domain_guid), ("ports", &port_text)],
            )
            .await?;
        Ok(found.into_iter().find(|r| r.port == Some(port)))
    }

    /// Creates a TCP route in a space on `port`, or on a free port the API
    /// picks when `None` (`--random-port`).
    pub async fn create_tcp_route(
        &self,
        space_guid: &str,
        domain_guid: &str,
        port: Option<u16>,
    ) -> Result<RouteDetail> {
        let mut body = json!({
            "relationships": {
                "space": {"data": {"guid": space_guid}},
                "domain": {"data": {"guid": domain_guid}},
            },
        });
        if let Some(port) = port {
            body["port"] = json!(port);
        }
        self.send_json(Method::POST, "/v3/routes", &body).await
    }

    /// Creates a route in a space.
    pub async fn create_route(
        &self,
        space_guid: &str,
        domain_guid: &str,
        host: &str,
        path: &str,
    ) -> Result<RouteDetail> {
        let mut body = json!({
            "host": host,
            "relationships": {
                "space": {"data": {"guid": space_guid}},
                "domain": {"data": {"guid": domain_guid}},
            },
        });
        if !path.is_empty() {
            body["path"] = json!(path);
        }
        self.send_json(Method::POST, "/v3/routes", &body).await
    }

    /// Sends the route's requests to the app's web process too.
    pub async fn map_route(&self, route_guid: &str, app_guid: &str) -> Result<()> {
        let _: Value = self
            .send_json(
                Method::POST,
                &format!("/v3/routes/{route_guid}/destinations"),
                &json!({"destinations": [{"app": {"guid": app_guid}}]}),
            )
            .await?;
        Ok(())
    }

    /// Stops sending the route's requests to the app.
    pub async fn unmap_route(&self, route: &RouteDetail, app_guid: &str) -> Result<()> {
        for destination in &route.destinations {
            if destination["app"]["guid"].as_str() != Some(app_guid) {
                continue;
            }
            if let Some(guid) = destination["guid"].as_str() {
                self.send_empty(
                    Method::DELETE,
                    &format!("/v3/routes/{}/destinations/{guid}", route.guid),
                    None,
                )
                .await?;
            }
        }
        Ok(())
    }
}
