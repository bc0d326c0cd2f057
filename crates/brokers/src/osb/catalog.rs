//! Checks a broker's catalog before the platform stores it: the spec's
//! required ids and names are non-empty, ids are unique (the platform keys
//! offerings and plans by them across catalog syncs), names are unique where
//! users type them, and every offering has a plan.

use std::collections::HashSet;

use super::Catalog;

/// The first rule the catalog breaks, in words for the operator, or `Ok`.
pub fn validate(catalog: &Catalog) -> Result<(), String> {
    let mut offering_ids = HashSet::new();
    let mut offering_names = HashSet::new();
    let mut plan_ids = HashSet::new();
    for (index, offering) in catalog.services.iter().enumerate() {
        if offering.id.trim().is_empty() {
            return Err(format!("service offering #{index} has an empty id"));
        }
        if offering.name.trim().is_empty() {
            return Err(format!(
                "service offering {:?} has an empty name",
                offering.id
            ));
        }
        if !offering_ids.insert(offering.id.as_str()) {
            return Err(format!(
                "service offering id {:?} appears more than once",
                offering.id
            ));
        }
        if !offering_names.insert(offering.name.as_str()) {
            return Err(format!(
                "service offering name {:?} appears more than once",
                offering.name
            ));
        }
        if offering.plans.is_empty() {
            return Err(format!(
                "service offering {:?} has no plans (it needs at least one)",
                offering.name
            ));
        }
        let mut plan_names = HashSet::new();
        for (plan_index, plan) in offering.plans.iter().enumerate() {
            if plan.id.trim().is_empty() {
                return Err(format!(
                    "plan #{plan_index} of service offering {:?} has an empty id",
                    offering.name
                ));
            }
            if plan.name.trim().is_empty() {
                return Err(format!(
                    "plan {:?} of service offering {:?} has an empty name",
                    plan.id, offering.name
                ));
            }
            // Plan ids are global: CF looks a plan up by its id alone.
            if !plan_ids.insert(plan.id.as_str()) {
                return Err(format!("plan id {:?} appears more than once", plan.id));
            }
            if !plan_names.insert(plan.name.as_str()) {
                return Err(format!(
                    "plan name {:?} appears more than once in service offering {:?}",
                    plan.name, offering.name
                ));
            }
            if let Some(info) = &plan.maintenance_info {
                if info.version.trim().is_empty() {
                    return Err(format!(
                        "plan {:?} has a maintenance_info without a version",
                        plan.name
                    ));
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::osb::{MaintenanceInfo, Offering, Plan};

    fn plan(id: &str, name: &str) -> Plan {
        Plan {
            id: id.into(),
            name: name.into(),
            description: "a plan".into(),
            free: None,
            bindable: None,
            plan_updateable: None,
            metadata: None,
            schemas: None,
            maintenance_info: None,
            maximum_polling_duration: None,
        }
    }

    fn offering(id: &str, name: &str, plans: Vec<Plan>) -> Offering {
        Offering {
            id: id.into(),
            name: name.into(),
            description: "an offering".into(),
            bindable: true,
            plan_updateable: false,
            tags: vec![],
            requires: vec![],
            metadata: None,
            instances_retrievable: false,
            bindings_retrievable: false,
            plans,
        }
    }

    fn good() -> Catalog {
        Catalog {
            services: vec![
                offering("o1", "db", vec![plan("p1", "small"), plan("p2", "large")]),
                offering("o2", "queue", vec![plan("p3", "small")]),
            ],
        }
    }

    #[test]
    fn accepts_a_valid_catalog_and_an_empty_one() {
        // `good()` repeats the plan name "small" across offerings: allowed.
        assert_eq!(validate(&good()), Ok(()));
        assert_eq!(validate(&Catalog { services: vec![] }), Ok(()));
    }

    #[test]
    fn names_the_first_broken_rule() {
        type Breaker = fn(&mut Catalog);
        let cases: Vec<(&str, Breaker, &str)> = vec![
            (
                "empty offering id",
                |c| c.services[0].id = String::new(),
                "service offering #0 has an empty id",
            ),
            (
                "blank offering name",
                |c| c.services[1].name = "  ".into(),
                "service offering \"o2\" has an empty name",
            ),
            (
                "duplicate offering id",
                |c| c.services[1].id = "o1".into(),
                "service offering id \"o1\" appears more than once",
            ),
            (
                "duplicate offering name",
                |c| c.services[1].name = "db".into(),
                "service offering name \"db\" appears more than once",
            ),
            (
                "offering without plans",
                |c| c.services[1].plans.clear(),
                "service offering \"queue\" has no plans (it needs at least one)",
            ),
            (
                "empty plan id",
                |c| c.services[0].plans[1].id = String::new(),
                "plan #1 of service offering \"db\" has an empty id",
            ),
            (
                "empty plan name",
                |c| c.services[0].plans[0].name = String::new(),
                "plan \"p1\" of service offering \"db\" has an empty name",
            ),
            (
                "plan id shared across offerings",
                |c| c.services[1].plans[0].id = "p1".into(),
                "plan id \"p1\" appears more than once",
            ),
            (
                "plan name repeated in an offering",
                |c| c.services[0].plans[1].name = "small".into(),
                "plan name \"small\" appears more than once in service offering \"db\"",
            ),
            (
                "maintenance_info without version",
                |c| {
                    c.services[0].plans[0].maintenance_info = Some(MaintenanceInfo {
                        version: String::new(),
                        description: None,
                    })
                },
                "plan \"small\" has a maintenance_info without a version",
            ),
        ];
        for (name, breaker, want) in cases {
            let mut catalog = good();
            breaker(&mut catalog);
            assert_eq!(validate(&catalog), Err(want.to_string()), "{name}");
        }
    }
}
