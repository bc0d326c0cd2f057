//! The platform's own OSB client (`ingot_brokers::osb`) driving the built-in
//! PostgreSQL broker: the two halves of issue 7 agree on the wire, and what
//! the client reports matches what happened in PostgreSQL.

#[path = "support/pg.rs"]
mod pg;

use ingot_brokers::osb::{
    BindRequest, Bound, BrokerClient, BrokerEndpoint, BrokerError, ClientConfig, Context,
    Deprovisioned, OperationKind, OperationState, OriginatingIdentity, PlanRef, PreviousValues,
    ProvisionRequest, Provisioned, Unbound, UpdateRequest, Updated,
};
use ingot_brokers::postgres::{PostgresBroker, PostgresBrokerConfig};
use pg::TestPostgres;
use tokio_postgres::NoTls;

async fn connect(url: &str) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    let (client, connection) = tokio_postgres::connect(url, NoTls).await?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(client)
}

fn context() -> Context {
    Context {
        platform: "cloudfoundry".into(),
        organization_guid: "org-guid".into(),
        space_guid: "space-guid".into(),
        organization_name: Some("main".into()),
        space_name: Some("dev".into()),
        instance_name: Some("my-db".into()),
    }
}

#[tokio::test]
async fn the_platforms_client_drives_the_whole_lifecycle() {
    let pg = TestPostgres::start();
    let admin = connect(&pg.admin_url()).await.expect("admin connection");
    let broker = PostgresBroker::connect(PostgresBrokerConfig::new(
        pg.admin_url(),
        "127.0.0.1",
        pg.port(),
        "platform",
        "secret",
    ))
    .await
    .expect("broker starts");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let endpoint = BrokerEndpoint {
        url: format!("http://{}", listener.local_addr().expect("address")),
        username: "platform".into(),
        password: "secret".into(),
    };
    let server = tokio::spawn(broker.serve(listener));
    let client = BrokerClient::new(ClientConfig::default()).expect("client");
    let identity = OriginatingIdentity {
        user_id: "user-guid".into(),
    };

    let catalog = client
        .catalog(&endpoint)
        .await
        .expect("the catalog validates");
    let offering = &catalog.services[0];
    let plan = |name: &str| {
        offering
            .plans
            .iter()
            .find(|p| p.name == name)
            .map(|p| p.id.clone())
            .expect("plan in the catalog")
    };
    let (small, large) = (plan("small"), plan("large"));

    let provision = ProvisionRequest {
        service_id: offering.id.clone(),
        plan_id: small.clone(),
        organization_guid: "org-guid".into(),
        space_guid: "space-guid".into(),
        context: context(),
        parameters: None,
        maintenance_info: None,
    };
    let instance = "5d1b0f0e-8f4a-4c39-9d0e-1f2a3b4c5d6e";
    let done = client
        .provision(&endpoint, instance, &provision, &identity)
        .await
        .expect("provision");
    assert!(matches!(done, Provisioned::Done { .. }), "{done:?}");

    // Another plan for the same id is a conflict, and the client must not
    // "mitigate" it by deleting the existing database.
    let conflicting = ProvisionRequest {
        plan_id: large.clone(),
        ..provision.clone()
    };
    let e = client
        .provision(&endpoint, instance, &conflicting, &identity)
        .await
        .expect_err("conflict");
    assert!(
        matches!(e, BrokerError::Rejected { status: 409, .. }),
        "{e}"
    );
    let databases: i64 = admin
        .query_one(
            "SELECT count(*) FROM pg_database WHERE datname LIKE 'ingot_5d1b0f0e%'",
            &[],
        )
        .await
        .expect("count")
        .get(0);
    assert_eq!(databases, 1, "the database survived the conflict");

    let ids = PlanRef {
        service_id: offering.id.clone(),
        plan_id: small.clone(),
    };
    let last = client
        .instance_last_operation_of(&endpoint, instance, &ids, None, OperationKind::Create)
        .await
        .expect("last operation");
    assert_eq!(last.state, OperationState::Succeeded);

    let bind = BindRequest {
        service_id: offering.id.clone(),
        plan_id: small.clone(),
        app_guid: Some("app-guid".into()),
        bind_resource: Some(serde_json::json!({"app_guid": "app-guid"})),
        context: context(),
        parameters: None,
    };
    let binding = "9a8b7c6d-0000-4000-8000-000000000001";
    let Bound::Done(details) = client
        .bind(&endpoint, instance, binding, &bind, &identity)
        .await
        .expect("bind")
    else {
        panic!("a synchronous bind");
    };
    let uri = details.credentials["uri"]
        .as_str()
        .expect("uri")
        .to_string();
    let app = connect(&uri).await.expect("the credentials connect");
    app.batch_execute("CREATE TABLE t (v text); INSERT INTO t VALUES ('kept')")
        .await
        .expect("write");

    let update = UpdateRequest {
        service_id: offering.id.clone(),
        plan_id: Some(large.clone()),
        context: context(),
        parameters: None,
        maintenance_info: None,
        previous_values: PreviousValues {
            service_id: offering.id.clone(),
            plan_id: small.clone(),
            organization_id: "org-guid".into(),
            space_id: "space-guid".into(),
            maintenance_info: None,
        },
    };
    let updated = client
        .update(&endpoint, instance, &update, &identity)
        .await
        .expect("update");
    assert!(matches!(updated, Updated::Done { .. }), "{updated:?}");
    let database = details.credentials["name"].as_str().expect("name");
    let limit: i32 = admin
        .query_one(
            "SELECT datconnlimit FROM pg_database WHERE datname = $1",
            &[&database],
        )
        .await
        .expect("limit")
        .get(0);
    assert_eq!(limit, 100, "the large plan's limit");
    let bad_update = UpdateRequest {
        plan_id: Some("no-such-plan".into()),
        ..update.clone()
    };
    let e = client
        .update(&endpoint, instance, &bad_update, &identity)
        .await
        .expect_err("unknown plan");
    assert!(
        matches!(e, BrokerError::Rejected { status: 400, .. }),
        "{e}"
    );

    let ids = PlanRef {
        service_id: offering.id.clone(),
        plan_id: large.clone(),
    };
    let unbound = client
        .unbind(&endpoint, instance, binding, &ids, &identity)
        .await
        .expect("unbind");
    assert_eq!(unbound, Unbound::Done);
    assert!(app.simple_query("SELECT 1").await.is_err(), "session ended");
    assert!(connect(&uri).await.is_err(), "credentials revoked");

    let gone = client
        .deprovision(&endpoint, instance, &ids, &identity)
        .await
        .expect("deprovision");
    assert_eq!(gone, Deprovisioned::Done);
    let left: i64 = admin
        .query_one(
            "SELECT count(*) FROM pg_database WHERE datname LIKE 'ingot_5d1b0f0e%'",
            &[],
        )
        .await
        .expect("count")
        .get(0);
    assert_eq!(left, 0, "the database is dropped");
    let again = client
        .deprovision(&endpoint, instance, &ids, &identity)
        .await
        .expect("a second deprovision is done (410)");
    assert_eq!(again, Deprovisioned::Done);

    server.abort();
}
