//! Service brokers, offerings, plans and plan visibility: what
//! `create-service-broker`, `service-brokers`, `marketplace`,
//! `service-access`, `enable-service-access` and their siblings send.

use std::time::Duration;

use reqwest::Method;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use crate::client::Client;
use crate::error::Result;
use crate::resources::ToOne;

/// A service broker.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct ServiceBroker {
    /// Its guid.
    pub guid: String,
    /// Its name.
    #[serde(default)]
    pub name: String,
    /// Where it listens.
    #[serde(default)]
    pub url: String,
    /// The space it is restricted to, if space-scoped.
    #[serde(default)]
    pub relationships: BrokerRelationships,
}

/// A broker's relationships.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct BrokerRelationships {
    /// The space of a space-scoped broker.
    #[serde(default)]
    pub space: ToOne,
}

/// A service offering (what `marketplace` calls an offering).
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct ServiceOffering {
    /// Its guid.
    pub guid: String,
    /// Its name.
    #[serde(default)]
    pub name: String,
    /// What it provides.
    #[serde(default)]
    pub description: String,
    /// Whether new instances can be made.
    #[serde(default)]
    pub available: bool,
    /// Its tags.
    #[serde(default)]
    pub tags: Vec<String>,
    /// Where it is documented.
    #[serde(default)]
    pub documentation_url: Option<String>,
    /// Its broker.
    #[serde(default)]
    pub relationships: OfferingRelationships,
}

/// An offering's relationships.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct OfferingRelationships {
    /// The broker providing it.
    #[serde(default)]
    pub service_broker: ToOne,
}

/// A service plan.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct ServicePlan {
    /// Its guid.
    pub guid: String,
    /// Its name.
    #[serde(default)]
    pub name: String,
    /// What it offers.
    #[serde(default)]
    pub description: String,
    /// `public`, `admin`, `organization` or `space`.
    #[serde(default)]
    pub visibility_type: String,
    /// Whether new instances can be made.
    #[serde(default)]
    pub available: bool,
    /// Whether it is free.
    #[serde(default)]
    pub free: bool,
    /// Its costs, as the broker lists them.
    #[serde(default)]
    pub costs: Vec<Value>,
    /// Its offering.
    #[serde(default)]
    pub relationships: PlanRelationships,
}

/// A plan's relationships.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct PlanRelationships {
    /// The offering it belongs to.
    #[serde(default)]
    pub service_offering: ToOne,
}

/// `GET /v3/service_plans/:guid/visibility`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct PlanVisibility {
    /// `public`, `admin`, `organization` or `space`.
    #[serde(rename = "type", default)]
    pub kind: String,
    /// The organizations of an `organization` visibility.
    #[serde(default)]
    pub organizations: Vec<NamedRef>,
    /// The space of a `space` visibility.
    #[serde(default)]
    pub space: Option<NamedRef>,
}

/// `{"guid":…, "name":…}`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct NamedRef {
    /// The guid.
    #[serde(default)]
    pub guid: String,
    /// The name.
    #[serde(default)]
    pub name: String,
}

/// Filters of an offering or plan list; empty fields do not filter.
#[derive(Debug, Clone, Default)]
pub struct CatalogFilter<'a> {
    /// Offerings (plans: of offerings) with this name.
    pub offering_name: Option<&'a str>,
    /// Of the broker of this name.
    pub broker_name: Option<&'a str>,
    /// Visible in this space.
    pub space_guid: Option<&'a str>,
    /// Plans of this offering.
    pub offering_guid: Option<&'a str>,
    /// Plans of this name.
    pub plan_name: Option<&'a str>,
}

fn basic_auth(username: &str, password: &str) -> Value {
    json!({"type": "basic", "credentials": {"username": username, "password": password}})
}

impl Client {
    /// Every broker the user can see, by name.
    pub async fn service_brokers(&self, name: Option<&str>) -> Result<Vec<ServiceBroker>> {
        let mut params = vec![("order_by", "name")];
        if let Some(n) = name {
            params.push(("names", n));
        }
        let mut brokers: Vec<ServiceBroker> = self.list_all("/v3/service_brokers", &params).await?;
        brokers.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(brokers)
    }

    /// Registers a broker (for one space when `space_guid` is given) and
    /// waits for the catalog to be read.
    pub async fn create_service_broker(
        &self,
        name: &str,
        username: &str,
        password: &str,
        url: &str,
        space_guid: Option<&str>,
        timeout: Duration,
    ) -> Result<()> {
        let mut body = json!({
            "name": name,
            "url": url,
            "authentication": basic_auth(username, password),
        });
        if let Some(space) = space_guid {
            body["relationships"] = json!({"space": {"data": {"guid": space}}});
        }
        let resp = self
            .send_empty(Method::POST, "/v3/service_brokers", Some(&body))
            .await?;
        self.wait_accepted(resp, timeout).await
    }

    /// Changes a broker's URL and credentials (and, with `new_name`, its
    /// name), and waits for the catalog to be read again.
    pub async fn update_service_broker(
        &self,
        guid: &str,
        new_name: Option<&str>,
        credentials: Option<(&str, &str)>,
        url: Option<&str>,
        timeout: Duration,
    ) -> Result<()> {
        let mut body = Map::new();
        if let Some(n) = new_name {
            body.insert("name".into(), json!(n));
        }
        if let Some(u) = url {
            body.insert("url".into(), json!(u));
        }
        if let Some((user, pass)) = credentials {
            body.insert("authentication".into(), basic_auth(user, pass));
        }
        let resp = self
            .send_empty(
                Method::PATCH,
                &format!("/v3/service_brokers/{guid}"),
                Some(&Value::Object(body)),
            )
            .await?;
        self.wait_accepted(resp, timeout).await
    }

    /// Deletes a broker (and its offerings) and waits for the job.
    pub async fn delete_service_broker(&self, guid: &str, timeout: Duration) -> Result<()> {
        let resp = self
            .send_empty(Method::DELETE, &format!("/v3/service_brokers/{guid}"), None)
            .await?;
        self.wait_accepted(resp, timeout).await
    }

    /// Offerings, filtered.
    pub async fn service_offerings(&self, f: &CatalogFilter<'_>) -> Result<Vec<ServiceOffering>> {
        let mut params = vec![("order_by", "name")];
        if let Some(n) = f.offering_name {
            params.push(("names", n));
        }
        if let Some(b) = f.broker_name {
            params.push(("service_broker_names", b));
        }
        if let Some(s) = f.space_guid {
            params.push(("space_guids", s));
        }
        let mut found: Vec<ServiceOffering> =
            self.list_all("/v3/service_offerings", &params).await?;
        found.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(found)
    }

    /// One offering.
    pub async fn service_offering(&self, guid: &str) -> Result<ServiceOffering> {
        self.get_json(&format!("/v3/service_offerings/{guid}"))
            .await
    }

    /// Plans, filtered.
    pub async fn service_plans(&self, f: &CatalogFilter<'_>) -> Result<Vec<ServicePlan>> {
        let mut params = vec![("order_by", "name")];
        if let Some(n) = f.offering_name {
            params.push(("service_offering_names", n));
        }
        if let Some(b) = f.broker_name {
            params.push(("service_broker_names", b));
        }
        if let Some(s) = f.space_guid {
            params.push(("space_guids", s));
        }
        if let Some(o) = f.offering_guid {
            params.push(("service_offering_guids", o));
        }
        if let Some(p) = f.plan_name {
            params.push(("names", p));
        }
        self.list_all("/v3/service_plans", &params).await
    }

    /// One plan.
    pub async fn service_plan(&self, guid: &str) -> Result<ServicePlan> {
        self.get_json(&format!("/v3/service_plans/{guid}")).await
    }

    /// A plan's visibility.
    pub async fn plan_visibility(&self, plan_guid: &str) -> Result<PlanVisibility> {
        self.get_json(&format!("/v3/service_plans/{plan_guid}/visibility"))
            .await
    }

    /// Makes a plan `public` (every org) or `admin` (admins only).
    pub async fn set_plan_visibility(&self, plan_guid: &str, kind: &str) -> Result<()> {
        self.send_empty(
            Method::PATCH,
            &format!("/v3/service_plans/{plan_guid}/visibility"),
            Some(&json!({"type": kind})),
        )
        .await?;
        Ok(())
    }

    /// Adds an organization to a plan's visibility.
    pub async fn add_plan_org(&self, plan_guid: &str, org_guid: &str) -> Result<()> {
        self.send_empty(
            Method::POST,
            &format!("/v3/service_plans/{plan_guid}/visibility"),
            Some(&json!({"type": "organization", "organizations": [{"guid": org_guid}]})),
        )
        .await?;
        Ok(())
    }

    /// Removes an organization from a plan's visibility.
    pub async fn remove_plan_org(&self, plan_guid: &str, org_guid: &str) -> Result<()> {
        self.send_empty(
            Method::DELETE,
            &format!("/v3/service_plans/{plan_guid}/visibility/{org_guid}"),
            None,
        )
        .await?;
        Ok(())
    }
}

/// cf's word for a plan's visibility in `service-access`: `all` (public),
/// `none` (admins only), `limited` (some organizations or one space).
pub fn access_word(visibility_type: &str) -> &'static str {
    match visibility_type {
        "public" => "all",
        "admin" => "none",
        _ => "limited",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catalog_shapes_parse() {
        let plan: ServicePlan = serde_json::from_value(json!({
            "guid": "p1", "name": "small", "description": "Small", "visibility_type": "public",
            "available": true, "free": false,
            "costs": [{"currency": "USD", "amount": 199.99, "unit": "Monthly"}],
            "relationships": {"service_offering": {"data": {"guid": "o1"}}}
        }))
        .expect("plan");
        assert_eq!(plan.relationships.service_offering.guid(), Some("o1"));
        assert!(!plan.free);
        let visibility: PlanVisibility = serde_json::from_value(json!({
            "type": "organization",
            "organizations": [{"guid": "g", "name": "my_org"}]
        }))
        .expect("visibility");
        assert_eq!(visibility.organizations[0].name, "my_org");
        assert_eq!(access_word("public"), "all");
        assert_eq!(access_word("admin"), "none");
        assert_eq!(access_word("organization"), "limited");
    }
}
