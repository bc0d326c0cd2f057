//! The OSB client against a real synchronous broker written with the PyPI
//! `openbrokerapi` package (`tests/brokers/sync_broker.py`): every call is
//! checked both in what the client returns and in what the broker received.

#[path = "support/osb.rs"]
mod support;

use ingot_brokers::osb::{
    BindRequest, Bound, BrokerError, Deprovisioned, MaintenanceInfo, PlanRef, PreviousValues,
    ProvisionRequest, Provisioned, Unbound, UpdateRequest, Updated,
};
use serde_json::json;
use support::{assert_osb_headers, client, context, user, PythonBroker};

const SERVICE: &str = "sync-db-id";

fn provision_request(plan_id: &str) -> ProvisionRequest {
    ProvisionRequest {
        service_id: SERVICE.into(),
        plan_id: plan_id.into(),
        organization_guid: "org-guid".into(),
        space_guid: "space-guid".into(),
        context: context("my-db"),
        parameters: Some(json!({"size": 3}).as_object().cloned().expect("object")),
        maintenance_info: None,
    }
}

fn ids(plan_id: &str) -> PlanRef {
    PlanRef {
        service_id: SERVICE.into(),
        plan_id: plan_id.into(),
    }
}

#[tokio::test]
async fn catalog_of_a_real_broker_is_read_and_validated() {
    let broker = PythonBroker::start("sync_broker.py").await;
    let catalog = client().catalog(&broker.endpoint).await.expect("catalog");

    assert_eq!(catalog.services.len(), 1);
    let offering = &catalog.services[0];
    assert_eq!(
        (offering.id.as_str(), offering.name.as_str()),
        (SERVICE, "sync-db")
    );
    assert!(offering.bindable && offering.plan_updateable && offering.bindings_retrievable);
    assert_eq!(offering.tags, ["sql", "sync"]);
    let plans: Vec<_> = offering
        .plans
        .iter()
        .map(|p| (p.id.as_str(), p.name.as_str()))
        .collect();
    assert_eq!(
        plans,
        [
            ("sync-small", "small"),
            ("sync-large", "large"),
            ("sync-fixed", "fixed")
        ]
    );
    assert_eq!(offering.plans[2].plan_updateable, Some(false));
    assert_eq!(
        offering.plans[1].maintenance_info,
        Some(MaintenanceInfo {
            version: "2.1.0".into(),
            description: Some("newer engine".into()),
        })
    );

    // A catalog fetch is not a user's action: no originating identity.
    let call = broker.only_call("GET", "/v2/catalog");
    assert_osb_headers(&call, false);
}

#[tokio::test]
async fn instance_and_binding_lifecycle_reaches_the_broker() {
    let broker = PythonBroker::start("sync_broker.py").await;
    let client = client();
    let endpoint = &broker.endpoint;
    let instance = "inst-1";
    let instance_path = format!("/v2/service_instances/{instance}");

    // Provision: 201.
    let provisioned = client
        .provision(
            endpoint,
            instance,
            &provision_request("sync-small"),
            &user(),
        )
        .await
        .expect("provision");
    assert_eq!(
        provisioned,
        Provisioned::Done {
            dashboard_url: Some(format!("http://dashboard.sync.test/{instance}")),
        }
    );
    let call = broker.only_call("PUT", &instance_path);
    assert_osb_headers(&call, true);
    assert_eq!(call["query"], json!({"accepts_incomplete": "true"}));
    assert_eq!(call["content_type"], "application/json");
    assert_eq!(call["body"]["plan_id"], "sync-small");
    assert_eq!(call["body"]["service_id"], SERVICE);
    assert_eq!(call["body"]["organization_guid"], "org-guid");
    assert_eq!(call["body"]["context"]["platform"], "cloudfoundry");
    assert_eq!(call["body"]["context"]["instance_name"], "my-db");
    assert_eq!(call["body"]["parameters"], json!({"size": 3}));

    // The same provision again: 200, still done.
    let again = client
        .provision(
            endpoint,
            instance,
            &provision_request("sync-small"),
            &user(),
        )
        .await
        .expect("identical provision");
    assert!(matches!(again, Provisioned::Done { .. }), "{again:?}");

    // Same id, other plan: 409, and no orphan mitigation after a 4xx.
    let conflict = client
        .provision(
            endpoint,
            instance,
            &provision_request("sync-large"),
            &user(),
        )
        .await;
    assert!(
        matches!(&conflict, Err(BrokerError::Rejected { status: 409, call: "provision", url, .. }) if url == &endpoint.url),
        "{conflict:?}"
    );
    assert!(broker.calls_to("DELETE", &instance_path).is_empty());

    // Update the plan.
    let update = UpdateRequest {
        service_id: SERVICE.into(),
        plan_id: Some("sync-large".into()),
        context: context("my-db"),
        parameters: None,
        maintenance_info: Some(MaintenanceInfo {
            version: "2.1.0".into(),
            description: None,
        }),
        previous_values: PreviousValues {
            service_id: SERVICE.into(),
            plan_id: "sync-small".into(),
            organization_id: "org-guid".into(),
            space_id: "space-guid".into(),
            maintenance_info: None,
        },
    };
    let updated = client
        .update(endpoint, instance, &update, &user())
        .await
        .expect("update");
    assert_eq!(
        updated,
        Updated::Done {
            dashboard_url: None
        }
    );
    let call = broker.only_call("PATCH", &instance_path);
    assert_osb_headers(&call, true);
    assert_eq!(call["query"], json!({"accepts_incomplete": "true"}));
    assert_eq!(call["body"]["plan_id"], "sync-large");
    assert_eq!(call["body"]["previous_values"]["plan_id"], "sync-small");
    assert_eq!(
        call["body"]["maintenance_info"],
        json!({"version": "2.1.0"})
    );

    // Bind an app.
    let binding = "bind-1";
    let binding_path = format!("{instance_path}/service_bindings/{binding}");
    let bind = BindRequest {
        service_id: SERVICE.into(),
        plan_id: "sync-large".into(),
        app_guid: Some("app-guid".into()),
        bind_resource: Some(json!({"app_guid": "app-guid"})),
        context: context("my-db"),
        parameters: None,
    };
    let bound = client
        .bind(endpoint, instance, binding, &bind, &user())
        .await
        .expect("bind");
    let Bound::Done(details) = bound else {
        panic!("sync bind is done at once: {bound:?}");
    };
    assert_eq!(
        details.credentials["uri"],
        format!("sync://user-{binding}:secret@db.sync.test/{instance}")
    );
    assert_eq!(details.credentials["password"], "secret");
    let call = broker.only_call("PUT", &binding_path);
    assert_osb_headers(&call, true);
    assert_eq!(
        call["body"]["bind_resource"],
        json!({"app_guid": "app-guid"})
    );
    assert_eq!(call["body"]["app_guid"], "app-guid");

    // The binding can be fetched (bindings_retrievable).
    let fetched = client
        .fetch_binding(endpoint, instance, binding)
        .await
        .expect("fetch");
    assert_eq!(fetched.credentials, details.credentials);
    assert_osb_headers(&broker.only_call("GET", &binding_path), false);

    // Unbind, then unbind again: 410 Gone counts as done.
    let unbound = client
        .unbind(endpoint, instance, binding, &ids("sync-large"), &user())
        .await
        .expect("unbind");
    assert_eq!(unbound, Unbound::Done);
    let calls = broker.calls_to("DELETE", &binding_path);
    assert_eq!(calls.len(), 1, "{calls:#?}");
    assert_osb_headers(&calls[0], true);
    assert_eq!(
        calls[0]["query"],
        json!({"service_id": SERVICE, "plan_id": "sync-large", "accepts_incomplete": "true"})
    );
    let again = client
        .unbind(endpoint, instance, binding, &ids("sync-large"), &user())
        .await
        .expect("unbind of a gone binding");
    assert_eq!(again, Unbound::Done);
    let gone = client.fetch_binding(endpoint, instance, binding).await;
    assert!(
        matches!(
            gone,
            Err(BrokerError::Rejected {
                status: 404,
                call: "fetch_binding",
                ..
            })
        ),
        "{gone:?}"
    );

    // Deprovision, then again: 410 Gone counts as done.
    let deprovisioned = client
        .deprovision(endpoint, instance, &ids("sync-large"), &user())
        .await
        .expect("deprovision");
    assert_eq!(deprovisioned, Deprovisioned::Done);
    let call = broker.only_call("DELETE", &instance_path);
    assert_osb_headers(&call, true);
    assert_eq!(
        call["query"],
        json!({"service_id": SERVICE, "plan_id": "sync-large", "accepts_incomplete": "true"})
    );
    let again = client
        .deprovision(endpoint, instance, &ids("sync-large"), &user())
        .await
        .expect("deprovision of a gone instance");
    assert_eq!(again, Deprovisioned::Done);

    // Every call carried its own request identity.
    let calls = broker.calls();
    let mut request_ids: Vec<_> = calls
        .iter()
        .map(|c| c["request_identity"].clone())
        .collect();
    request_ids.sort_by_key(|v| v.to_string());
    request_ids.dedup();
    assert_eq!(request_ids.len(), calls.len(), "{calls:#?}");
}

#[tokio::test]
async fn wrong_broker_password_is_rejected_with_401() {
    let broker = PythonBroker::start("sync_broker.py").await;
    let mut endpoint = broker.endpoint.clone();
    endpoint.password = "wrong".into();
    let result = client().catalog(&endpoint).await;
    match result {
        Err(BrokerError::Rejected {
            status: 401,
            call: "catalog",
            url,
            ..
        }) => {
            assert_eq!(url, endpoint.url);
        }
        other => panic!("expected 401: {other:?}"),
    }
    let call = broker.only_call("GET", "/v2/catalog");
    assert_eq!(call["auth_password"], "wrong");
}
