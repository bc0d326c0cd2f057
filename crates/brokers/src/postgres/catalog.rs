//! The broker's catalog: one offering, `postgresql`, whose plans differ by
//! connection limit. Ids are derived from names, so they stay the same
//! across restarts and machines and the platform's catalog sync sees no
//! change.

use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::PostgresBrokerError;

/// The offering's name (the `label` apps see in `VCAP_SERVICES`).
pub const OFFERING_NAME: &str = "postgresql";

/// One plan: a database whose every connection (all bindings together, and
/// each binding alone) is capped at `connection_limit`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PostgresPlan {
    /// CLI-friendly name, e.g. `small`; the plan's id is derived from it.
    pub name: String,
    /// What the marketplace shows.
    pub description: String,
    /// `CONNECTION LIMIT` of the database and of each binding's role
    /// (1 ..= 2^31-1).
    pub connection_limit: u32,
}

impl PostgresPlan {
    /// A plan with a generated description.
    pub fn new(name: impl Into<String>, connection_limit: u32) -> PostgresPlan {
        let name = name.into();
        PostgresPlan {
            description: format!("A PostgreSQL database limited to {connection_limit} connections"),
            name,
            connection_limit,
        }
    }

    /// `small` (5 connections), `medium` (20), `large` (100).
    pub fn defaults() -> Vec<PostgresPlan> {
        vec![
            PostgresPlan::new("small", 5),
            PostgresPlan::new("medium", 20),
            PostgresPlan::new("large", 100),
        ]
    }

    /// The plan's stable id.
    pub fn id(&self) -> String {
        stable_id(&format!("plan/{}", self.name))
    }
}

/// The offering's stable id.
pub fn offering_id() -> String {
    stable_id(&format!("offering/{OFFERING_NAME}"))
}

/// A UUID (version 8, "custom") made from SHA-256 of the name.
fn stable_id(name: &str) -> String {
    let digest = Sha256::digest(format!("ingot-postgres-broker/{name}").as_bytes());
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    uuid::Builder::from_custom_bytes(bytes)
        .into_uuid()
        .to_string()
}

/// Refuses an empty plan list, duplicate or empty names, and limits
/// PostgreSQL cannot store.
pub fn check_plans(plans: &[PostgresPlan]) -> Result<(), PostgresBrokerError> {
    if plans.is_empty() {
        return Err(PostgresBrokerError::InvalidPlan {
            name: String::new(),
            reason: "the broker needs at least one plan".into(),
        });
    }
    for (i, plan) in plans.iter().enumerate() {
        let invalid = |reason: &str| PostgresBrokerError::InvalidPlan {
            name: plan.name.clone(),
            reason: reason.into(),
        };
        if plan.name.trim().is_empty() {
            return Err(invalid("a plan needs a name"));
        }
        if plan.connection_limit == 0 || i32::try_from(plan.connection_limit).is_err() {
            return Err(invalid(
                "the connection limit must be between 1 and 2147483647",
            ));
        }
        if plans[..i].iter().any(|p| p.name == plan.name) {
            return Err(invalid("two plans have this name"));
        }
    }
    Ok(())
}

/// `GET /v2/catalog`'s body.
pub fn catalog(plans: &[PostgresPlan]) -> Value {
    let plans: Vec<Value> = plans
        .iter()
        .map(|plan| {
            json!({
                "id": plan.id(),
                "name": plan.name,
                "description": plan.description,
                "free": true,
                "bindable": true,
                "plan_updateable": true,
                "metadata": {
                    "connection_limit": plan.connection_limit,
                    "bullets": [format!("{} connections", plan.connection_limit)],
                    "displayName": plan.name,
                },
            })
        })
        .collect();
    json!({
        "services": [{
            "id": offering_id(),
            "name": OFFERING_NAME,
            "description": "PostgreSQL databases: one database per instance, one login per binding",
            "bindable": true,
            "plan_updateable": true,
            "instances_retrievable": false,
            "bindings_retrievable": false,
            "tags": ["postgresql", "relational"],
            "metadata": {
                "displayName": "PostgreSQL",
                "providerDisplayName": "Ingot",
            },
            "plans": plans,
        }]
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_stable_uuids_and_distinct() {
        let plans = PostgresPlan::defaults();
        let ids: Vec<String> = plans.iter().map(PostgresPlan::id).collect();
        assert_eq!(
            ids,
            PostgresPlan::defaults()
                .iter()
                .map(PostgresPlan::id)
                .collect::<Vec<_>>()
        );
        assert_ne!(ids[0], ids[1]);
        assert_ne!(offering_id(), ids[0]);
        for id in ids.iter().chain([&offering_id()]) {
            assert!(uuid::Uuid::parse_str(id).is_ok(), "{id} is not a UUID");
        }
    }

    #[test]
    fn catalog_reads_as_the_osb_client_types() {
        let catalog: crate::osb::Catalog =
            serde_json::from_value(catalog(&PostgresPlan::defaults())).expect("catalog parses");
        let offering = &catalog.services[0];
        assert_eq!(offering.name, "postgresql");
        assert!(offering.bindable && offering.plan_updateable);
        assert_eq!(offering.tags, ["postgresql", "relational"]);
        let limits: Vec<(String, Value)> = offering
            .plans
            .iter()
            .map(|p| {
                let metadata = p.metadata.as_ref().expect("plan metadata");
                (p.name.clone(), metadata["connection_limit"].clone())
            })
            .collect();
        assert_eq!(
            limits,
            [
                ("small".to_string(), json!(5)),
                ("medium".to_string(), json!(20)),
                ("large".to_string(), json!(100)),
            ]
        );
    }

    #[test]
    fn bad_plan_lists_are_refused() {
        assert!(check_plans(&PostgresPlan::defaults()).is_ok());
        assert!(check_plans(&[]).is_err());
        assert!(check_plans(&[PostgresPlan::new("a", 0)]).is_err());
        assert!(check_plans(&[PostgresPlan::new("a", u32::MAX)]).is_err());
        assert!(check_plans(&[PostgresPlan::new(" ", 3)]).is_err());
        assert!(check_plans(&[PostgresPlan::new("a", 3), PostgresPlan::new("a", 4)]).is_err());
    }
}
