//! The OSB client against a real asynchronous broker written with the PyPI
//! `openbrokerapi` package (`tests/brokers/async_broker.py`): provision,
//! update, bind, unbind and deprovision answer 202, and `last_operation`
//! goes "in progress" then "succeeded" (a deleted instance then answers 410).

#[path = "support/osb.rs"]
mod support;

use std::time::Duration;

use ingot_brokers::osb::{
    BindRequest, Bound, BrokerError, Deprovisioned, LastOperation, OperationKind, OperationState,
    PlanRef, PreviousValues, ProvisionRequest, Provisioned, Unbound, UpdateRequest, Updated,
};
use serde_json::json;
use support::{assert_osb_headers, client, context, user, PythonBroker};

const SERVICE: &str = "async-db-id";

fn ids(plan_id: &str) -> PlanRef {
    PlanRef {
        service_id: SERVICE.into(),
        plan_id: plan_id.into(),
    }
}

fn in_progress(description: &str) -> LastOperation {
    LastOperation {
        state: OperationState::InProgress,
        description: Some(description.into()),
        retry_after: Some(Duration::from_secs(2)),
    }
}

fn succeeded(description: &str) -> LastOperation {
    LastOperation {
        state: OperationState::Succeeded,
        description: Some(description.into()),
        retry_after: Some(Duration::from_secs(2)),
    }
}

#[tokio::test]
async fn asynchronous_operations_are_polled_to_completion() {
    let broker = PythonBroker::start("async_broker.py").await;
    let client = client();
    let endpoint = &broker.endpoint;
    let instance = "inst-a";
    let instance_path = format!("/v2/service_instances/{instance}");
    let poll_path = format!("{instance_path}/last_operation");

    // Provision: 202 with an operation and the dashboard.
    let request = ProvisionRequest {
        service_id: SERVICE.into(),
        plan_id: "async-standard".into(),
        organization_guid: "org-guid".into(),
        space_guid: "space-guid".into(),
        context: context("slow-db"),
        parameters: None,
        maintenance_info: None,
    };
    let provisioned = client
        .provision(endpoint, instance, &request, &user())
        .await
        .expect("provision");
    let op = format!("provision-{instance}");
    assert_eq!(
        provisioned,
        Provisioned::InProgress {
            operation: Some(op.clone()),
            dashboard_url: Some(format!("http://dashboard.async.test/{instance}")),
        }
    );
    assert_eq!(
        broker.only_call("PUT", &instance_path)["query"],
        json!({"accepts_incomplete": "true"})
    );

    // Poll: in progress (with Retry-After), then succeeded.
    let first = client
        .instance_last_operation_of(
            endpoint,
            instance,
            &ids("async-standard"),
            Some(&op),
            OperationKind::Create,
        )
        .await
        .expect("first poll");
    assert_eq!(first, in_progress(&format!("{op}: 50% done")));
    let second = client
        .instance_last_operation_of(
            endpoint,
            instance,
            &ids("async-standard"),
            Some(&op),
            OperationKind::Create,
        )
        .await
        .expect("second poll");
    assert_eq!(second, succeeded(&format!("{op}: done")));
    let polls = broker.calls_to("GET", &poll_path);
    assert_eq!(polls.len(), 2);
    for poll in &polls {
        assert_osb_headers(poll, false);
        assert_eq!(
            poll["query"],
            json!({"service_id": SERVICE, "plan_id": "async-standard", "operation": op})
        );
    }

    // Update the plan: 202; polls name the plan before the update.
    let update = UpdateRequest {
        service_id: SERVICE.into(),
        plan_id: Some("async-premium".into()),
        context: context("slow-db"),
        parameters: Some(json!({"iops": 1000}).as_object().cloned().expect("object")),
        maintenance_info: None,
        previous_values: PreviousValues {
            service_id: SERVICE.into(),
            plan_id: "async-standard".into(),
            organization_id: "org-guid".into(),
            space_id: "space-guid".into(),
            maintenance_info: None,
        },
    };
    let updated = client
        .update(endpoint, instance, &update, &user())
        .await
        .expect("update");
    let op = format!("update-{instance}-to-async-premium");
    assert_eq!(
        updated,
        Updated::InProgress {
            operation: Some(op.clone())
        }
    );
    let patch = broker.only_call("PATCH", &instance_path);
    assert_osb_headers(&patch, true);
    assert_eq!(patch["body"]["plan_id"], "async-premium");
    assert_eq!(patch["body"]["parameters"], json!({"iops": 1000}));
    for want in [OperationState::InProgress, OperationState::Succeeded] {
        let polled = client
            .instance_last_operation_of(
                endpoint,
                instance,
                &ids("async-standard"),
                Some(&op),
                OperationKind::Update,
            )
            .await
            .expect("update poll");
        assert_eq!(polled.state, want);
    }

    // Bind: 202; the credentials come from fetching the binding once done.
    let binding = "bind-a";
    let binding_path = format!("{instance_path}/service_bindings/{binding}");
    let bind = BindRequest {
        service_id: SERVICE.into(),
        plan_id: "async-premium".into(),
        app_guid: None,
        bind_resource: None,
        context: context("slow-db"),
        parameters: None,
    };
    let bound = client
        .bind(endpoint, instance, binding, &bind, &user())
        .await
        .expect("bind");
    let op = format!("bind-{binding}");
    assert_eq!(
        bound,
        Bound::InProgress {
            operation: Some(op.clone())
        }
    );
    let early = client.fetch_binding(endpoint, instance, binding).await;
    assert!(
        matches!(early, Err(BrokerError::Rejected { status: 404, .. })),
        "binding is not ready yet: {early:?}"
    );
    let first = client
        .binding_last_operation_of(
            endpoint,
            instance,
            binding,
            &ids("async-premium"),
            Some(&op),
            OperationKind::Create,
        )
        .await
        .expect("bind poll");
    assert_eq!(first, in_progress(&format!("{op}: working")));
    let second = client
        .binding_last_operation_of(
            endpoint,
            instance,
            binding,
            &ids("async-premium"),
            Some(&op),
            OperationKind::Create,
        )
        .await
        .expect("bind poll");
    assert_eq!(second.state, OperationState::Succeeded);
    let details = client
        .fetch_binding(endpoint, instance, binding)
        .await
        .expect("fetch");
    assert_eq!(
        details.credentials["uri"],
        format!("async://{binding}@db.async.test/{instance}")
    );
    let polls = broker.calls_to("GET", &format!("{binding_path}/last_operation"));
    assert_eq!(polls.len(), 2);
    assert_eq!(
        polls[0]["query"],
        json!({"service_id": SERVICE, "plan_id": "async-premium", "operation": op})
    );

    // Unbind: 202, then polled to success.
    let unbound = client
        .unbind(endpoint, instance, binding, &ids("async-premium"), &user())
        .await
        .expect("unbind");
    let op = format!("unbind-{binding}");
    assert_eq!(
        unbound,
        Unbound::InProgress {
            operation: Some(op.clone())
        }
    );
    assert_osb_headers(&broker.only_call("DELETE", &binding_path), true);
    for want in [OperationState::InProgress, OperationState::Succeeded] {
        let polled = client
            .binding_last_operation(
                endpoint,
                instance,
                binding,
                &ids("async-premium"),
                Some(&op),
            )
            .await
            .expect("unbind poll");
        assert_eq!(polled.state, want);
    }

    // Deprovision: 202; the broker then forgets the instance and answers
    // 410 Gone, which means the deletion succeeded.
    let deprovisioned = client
        .deprovision(endpoint, instance, &ids("async-premium"), &user())
        .await
        .expect("deprovision");
    let op = format!("deprovision-{instance}");
    assert_eq!(
        deprovisioned,
        Deprovisioned::InProgress {
            operation: Some(op.clone())
        }
    );
    let delete = broker.only_call("DELETE", &instance_path);
    assert_eq!(
        delete["query"],
        json!({"service_id": SERVICE, "plan_id": "async-premium", "accepts_incomplete": "true"})
    );
    let first = client
        .instance_last_operation(endpoint, instance, &ids("async-premium"), Some(&op))
        .await
        .expect("deprovision poll");
    assert_eq!(first.state, OperationState::InProgress);
    let gone = client
        .instance_last_operation(endpoint, instance, &ids("async-premium"), Some(&op))
        .await
        .expect("deprovision poll");
    assert_eq!(
        gone,
        LastOperation {
            state: OperationState::Succeeded,
            description: None,
            retry_after: None
        }
    );

    // Polling a creation of an instance that is gone is not a success.
    let not_created = client
        .instance_last_operation_of(
            endpoint,
            instance,
            &ids("async-premium"),
            None,
            OperationKind::Create,
        )
        .await;
    assert!(
        matches!(
            not_created,
            Err(BrokerError::Rejected {
                status: 410,
                call: "last_operation",
                ..
            })
        ),
        "{not_created:?}"
    );
}

#[tokio::test]
async fn a_failed_operation_is_reported_with_the_brokers_words() {
    let broker = PythonBroker::start("async_broker.py").await;
    let client = client();
    let request = ProvisionRequest {
        service_id: SERVICE.into(),
        plan_id: "async-standard".into(),
        organization_guid: "org-guid".into(),
        space_guid: "space-guid".into(),
        context: context("db"),
        parameters: None,
        maintenance_info: None,
    };
    client
        .provision(&broker.endpoint, "inst-f", &request, &user())
        .await
        .expect("provision");
    // The broker fails polls that name an operation it does not know.
    let failed = client
        .instance_last_operation_of(
            &broker.endpoint,
            "inst-f",
            &ids("async-standard"),
            Some("not-mine"),
            OperationKind::Create,
        )
        .await
        .expect("poll");
    assert_eq!(failed.state, OperationState::Failed);
    assert_eq!(
        failed.description.as_deref(),
        Some("unknown operation 'not-mine'")
    );
}
