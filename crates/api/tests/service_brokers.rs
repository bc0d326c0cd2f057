//! The Cloud Controller's side of service brokers, against a small but real
//! OSB broker served over loopback by the test: registration and catalog,
//! plan visibility, managed instances (sync and async), plan updates,
//! bindings into `VCAP_SERVICES`, service keys, and the failures a user
//! must see clearly.

mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use common::*;
use ingot_api::BrokerPolling;
use serde_json::{json, Value};

/// One request the broker received.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    path: String,
    query: String,
    body: Value,
}

/// A test OSB broker: synchronous unless told otherwise.
#[derive(Default)]
struct BrokerState {
    calls: Mutex<Vec<Seen>>,
    /// Provision, update, bind and deprovision answer 202.
    asynchronous: AtomicBool,
    /// `last_operation` never ends.
    never_finish: AtomicBool,
    /// Provision answers 500.
    fail_provision: AtomicBool,
    /// How many `last_operation` calls arrived.
    last_operation_polls: AtomicUsize,
    catalog: Mutex<Value>,
}

struct TestBroker {
    url: String,
    state: Arc<BrokerState>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for TestBroker {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl TestBroker {
    async fn start() -> TestBroker {
        let state = Arc::new(BrokerState::default());
        *state.catalog.lock().expect("lock") = catalog();
        let app = axum::Router::new().fallback({
            let state = state.clone();
            move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
                let state = state.clone();
                async move { answer(&state, method, uri, headers, body) }
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let server = tokio::spawn(async move {
            axum::serve(listener, app).await.expect("serve");
        });
        TestBroker { url, state, server }
    }

    fn calls(&self) -> Vec<Seen> {
        self.state.calls.lock().expect("lock").clone()
    }

    /// The calls other than the catalog and `last_operation`.
    fn actions(&self) -> Vec<(String, String)> {
        self.calls()
            .into_iter()
            .filter(|c| c.path != "/v2/catalog" && !c.path.ends_with("/last_operation"))
            .map(|c| (c.method, c.path))
            .collect()
    }
}

fn catalog() -> Value {
    json!({"services": [{
        "id": "svc-db", "name": "testdb", "description": "A test database",
        "bindable": true, "plan_updateable": true, "tags": ["sql"],
        "bindings_retrievable": true,
        "metadata": {"displayName": "Test DB"},
        "plans": [
            {"id": "plan-small", "name": "small", "description": "Small", "free": true,
             "maintenance_info": {"version": "1.0.0"}},
            {"id": "plan-large", "name": "large", "description": "Large", "free": false,
             "maximum_polling_duration": 1},
            {"id": "plan-fixed", "name": "fixed", "description": "Cannot change",
             "plan_updateable": false},
        ],
    }]})
}

fn json_response(status: StatusCode, body: Value) -> Response {
    (status, axum::Json(body)).into_response()
}

fn answer(
    state: &BrokerState,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let body_json: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    state.calls.lock().expect("lock").push(Seen {
        method: method.to_string(),
        path: uri.path().to_string(),
        query: uri.query().unwrap_or("").to_string(),
        body: body_json,
    });
    // Basic auth `u:p`, as registered.
    if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some("Basic dTpw") {
        return json_response(
            StatusCode::UNAUTHORIZED,
            json!({"description": "bad credentials"}),
        );
    }
    if headers.get("x-broker-api-version").is_none() {
        return json_response(
            StatusCode::PRECONDITION_FAILED,
            json!({"description": "no version"}),
        );
    }
    let segments: Vec<&str> = uri.path().trim_start_matches('/').split('/').collect();
    let asynchronous = state.asynchronous.load(Ordering::SeqCst);
    match (method.as_str(), segments.as_slice()) {
        ("GET", ["v2", "catalog"]) => {
            json_response(StatusCode::OK, state.catalog.lock().expect("lock").clone())
        }
        ("GET", ["v2", "service_instances", _, "last_operation"])
        | ("GET", ["v2", "service_instances", _, "service_bindings", _, "last_operation"]) => {
            state.last_operation_polls.fetch_add(1, Ordering::SeqCst);
            if state.never_finish.load(Ordering::SeqCst) {
                json_response(
                    StatusCode::OK,
                    json!({"state": "in progress", "description": "still working"}),
                )
            } else {
                json_response(StatusCode::OK, json!({"state": "succeeded"}))
            }
        }
        ("PUT", ["v2", "service_instances", _]) => {
            if state.fail_provision.load(Ordering::SeqCst) {
                json_response(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    json!({"description": "the database is on fire"}),
                )
            } else if asynchronous {
                json_response(StatusCode::ACCEPTED, json!({"operation": "provisioning"}))
            } else {
                json_response(
                    StatusCode::CREATED,
                    json!({"dashboard_url": "http://dash.example"}),
                )
            }
        }
        ("PATCH", ["v2", "service_instances", _]) => {
            if asynchronous {
                json_response(StatusCode::ACCEPTED, json!({"operation": "updating"}))
            } else {
                json_response(StatusCode::OK, json!({}))
            }
        }
        ("DELETE", ["v2", "service_instances", _]) => {
            if asynchronous {
                json_response(StatusCode::ACCEPTED, json!({"operation": "deprovisioning"}))
            } else {
                json_response(StatusCode::OK, json!({}))
            }
        }
        ("PUT", ["v2", "service_instances", instance, "service_bindings", binding]) => {
            if asynchronous {
                json_response(StatusCode::ACCEPTED, json!({"operation": "binding"}))
            } else {
                json_response(StatusCode::CREATED, credentials(instance, binding))
            }
        }
        ("GET", ["v2", "service_instances", instance, "service_bindings", binding]) => {
            json_response(StatusCode::OK, credentials(instance, binding))
        }
        ("DELETE", ["v2", "service_instances", _, "service_bindings", _]) => {
            json_response(StatusCode::OK, json!({}))
        }
        _ => json_response(
            StatusCode::NOT_FOUND,
            json!({"description": "no such endpoint"}),
        ),
    }
}

fn credentials(instance: &str, binding: &str) -> Value {
    json!({"credentials": {"uri": format!("testdb://u-{binding}:secret@db.example/{instance}"), "username": format!("u-{binding}")}})
}

/// Short polling for tests.
fn fast_polling(h: &Harness, max: Duration) {
    h.api.set_broker_polling(BrokerPolling {
        interval: Duration::from_millis(20),
        max_interval: Duration::from_millis(50),
        max_duration: max,
    });
}

/// Calls with `token` and, on a 202, returns the job path.
async fn call_for_job(
    h: &Harness,
    token: &str,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> (StatusCode, Option<String>, Value) {
    let bytes = body
        .map(|b| serde_json::to_vec(&b).expect("json"))
        .unwrap_or_default();
    let (status, headers, out) = h
        .raw(method, path, Some(token), "application/json", bytes)
        .await;
    let job = headers
        .get("location")
        .and_then(|l| l.to_str().ok())
        .and_then(|l| l.strip_prefix(EXTERNAL))
        .map(str::to_string);
    (
        status,
        job,
        serde_json::from_slice(&out).unwrap_or(Value::Null),
    )
}

/// Waits for a job to end and returns it.
async fn job_end(h: &Harness, job: &str) -> Value {
    h.wait_for(job, "state", &["COMPLETE", "FAILED"]).await
}

/// Registers the test broker as admin and waits for its catalog.
async fn register(h: &Harness, broker: &TestBroker, name: &str) -> String {
    let (status, job, body) = call_for_job(
        h,
        ADMIN,
        "POST",
        "/v3/service_brokers",
        Some(json!({
            "name": name, "url": broker.url,
            "authentication": {"type": "basic", "credentials": {"username": "u", "password": "p"}},
        })),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let job = job_end(h, &job.expect("job")).await;
    assert_eq!(job["state"], "COMPLETE", "{job}");
    let brokers = h.get(&format!("/v3/service_brokers?names={name}")).await;
    brokers["resources"][0]["guid"]
        .as_str()
        .expect("broker")
        .to_string()
}

async fn plan_guid(h: &Harness, name: &str) -> String {
    let plans = h.get(&format!("/v3/service_plans?names={name}")).await;
    plans["resources"][0]["guid"]
        .as_str()
        .unwrap_or_else(|| panic!("plan {name}: {plans}"))
        .to_string()
}

async fn make_public(h: &Harness, plan: &str) {
    let (status, body) = h
        .call(
            "PATCH",
            &format!("/v3/service_plans/{plan}/visibility"),
            Some(json!({"type": "public"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

async fn grant(h: &Harness, user: &str, role: &str, space: &str) {
    let org = h.get("/v3/organizations").await["resources"][0]["guid"]
        .as_str()
        .expect("org")
        .to_string();
    for (kind, rel, guid) in [
        ("organization_user", "organization", org.as_str()),
        (role, "space", space),
    ] {
        let (status, body) = h
            .call(
                "POST",
                "/v3/roles",
                Some(json!({"type": kind, "relationships": {
                    "user": {"data": {"username": user}},
                    rel: {"data": {"guid": guid}},
                }})),
            )
            .await;
        assert!(
            status == StatusCode::CREATED || status == StatusCode::UNPROCESSABLE_ENTITY,
            "{body}"
        );
    }
}

/// Creates a managed instance and waits for its job; returns the job and
/// the instance.
async fn create_instance(
    h: &Harness,
    token: &str,
    space: &str,
    plan: &str,
    name: &str,
) -> (Value, Value) {
    let (status, job, body) = call_for_job(
        h,
        token,
        "POST",
        "/v3/service_instances",
        Some(json!({
            "type": "managed", "name": name, "parameters": {"size": 1}, "tags": ["mine"],
            "relationships": {
                "space": {"data": {"guid": space}},
                "service_plan": {"data": {"guid": plan}},
            },
        })),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let job = job_end(h, &job.expect("job")).await;
    let list = h.get(&format!("/v3/service_instances?names={name}")).await;
    (job, list["resources"][0].clone())
}

async fn app(h: &Harness, space: &str, name: &str) -> String {
    let (status, app) = h
        .call(
            "POST",
            "/v3/apps",
            Some(json!({"name": name, "relationships": {"space": {"data": {"guid": space}}}})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{app}");
    app["guid"].as_str().expect("app").to_string()
}

#[tokio::test]
async fn registering_a_broker_publishes_its_catalog_without_its_credentials() {
    let h = Harness::new().await;
    let broker = TestBroker::start().await;
    let guid = register(&h, &broker, "test-broker").await;
    let shown = h.get(&format!("/v3/service_brokers/{guid}")).await;
    assert_eq!(shown["name"], "test-broker");
    assert_eq!(shown["url"], broker.url);
    assert!(!shown.to_string().contains("\"p\""), "{shown}");
    assert!(shown.get("authentication").is_none());

    let offerings = h.get("/v3/service_offerings").await;
    assert_eq!(offerings["pagination"]["total_results"], 1, "{offerings}");
    let offering = &offerings["resources"][0];
    assert_eq!(offering["name"], "testdb");
    assert_eq!(offering["broker_catalog"]["id"], "svc-db");
    assert_eq!(
        offering["broker_catalog"]["features"]["plan_updateable"],
        true
    );
    assert_eq!(
        offering["relationships"]["service_broker"]["data"]["guid"],
        guid.as_str()
    );

    let plans = h
        .get(&format!(
            "/v3/service_plans?service_broker_guids={guid}&include=service_offering&fields[service_offering.service_broker]=name,guid"
        ))
        .await;
    assert_eq!(plans["pagination"]["total_results"], 3, "{plans}");
    let small = plans["resources"]
        .as_array()
        .expect("plans")
        .iter()
        .find(|p| p["name"] == "small")
        .expect("small");
    assert_eq!(small["visibility_type"], "admin");
    assert_eq!(small["maintenance_info"]["version"], "1.0.0");
    assert_eq!(small["free"], true);
    assert_eq!(plans["included"]["service_offerings"][0]["name"], "testdb");
    assert_eq!(
        plans["included"]["service_brokers"][0]["name"],
        "test-broker"
    );
    let fixed = plans["resources"]
        .as_array()
        .expect("plans")
        .iter()
        .find(|p| p["name"] == "fixed")
        .expect("fixed");
    assert_eq!(
        fixed["broker_catalog"]["features"]["plan_updateable"],
        false
    );

    // The catalog reached the broker with the OSB headers.
    assert!(broker.calls().iter().any(|c| c.path == "/v2/catalog"));

    // A second broker with the same name is refused.
    let (status, _, body) = call_for_job(
        &h,
        ADMIN,
        "POST",
        "/v3/service_brokers",
        Some(json!({"name": "test-broker", "url": broker.url,
            "authentication": {"type": "basic", "credentials": {"username": "u", "password": "p"}}})),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");

    // An update resynchronises: a removed plan without instances goes away.
    broker.state.catalog.lock().expect("lock")["services"][0]["plans"]
        .as_array_mut()
        .expect("plans")
        .retain(|p| p["name"] != "large");
    let (status, job, body) = call_for_job(
        &h,
        ADMIN,
        "PATCH",
        &format!("/v3/service_brokers/{guid}"),
        Some(json!({"name": "renamed-broker"})),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(job_end(&h, &job.expect("job")).await["state"], "COMPLETE");
    assert_eq!(
        h.get(&format!("/v3/service_brokers/{guid}")).await["name"],
        "renamed-broker"
    );
    let plans = h.get("/v3/service_plans").await;
    assert_eq!(plans["pagination"]["total_results"], 2, "{plans}");
}

#[tokio::test]
async fn a_failing_catalog_fails_the_job_and_leaves_no_broker() {
    let h = Harness::new().await;
    let broker = TestBroker::start().await;
    *broker.state.catalog.lock().expect("lock") = json!({"services": [{"id": "x"}]});
    for url in [broker.url.clone(), "http://127.0.0.1:9".to_string()] {
        let (status, job, body) = call_for_job(
            &h,
            ADMIN,
            "POST",
            "/v3/service_brokers",
            Some(json!({"name": "bad", "url": url,
                "authentication": {"type": "basic", "credentials": {"username": "u", "password": "p"}}})),
        )
        .await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
        let job = job_end(&h, &job.expect("job")).await;
        assert_eq!(job["state"], "FAILED", "{job}");
        let detail = job["errors"][0]["detail"].as_str().expect("detail");
        assert!(detail.contains(&url), "{detail}");
        let brokers = h.get("/v3/service_brokers").await;
        assert_eq!(brokers["pagination"]["total_results"], 0, "{brokers}");
    }
    assert_eq!(
        h.get("/v3/service_offerings").await["pagination"]["total_results"],
        0
    );

    // An update with credentials the broker refuses fails, and the broker
    // keeps its working credentials and catalog.
    *broker.state.catalog.lock().expect("lock") = catalog();
    let guid = register(&h, &broker, "good").await;
    let (status, job, body) = call_for_job(
        &h,
        ADMIN,
        "PATCH",
        &format!("/v3/service_brokers/{guid}"),
        Some(json!({"authentication": {"type": "basic", "credentials": {"username": "u", "password": "wrong"}}})),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let job = job_end(&h, &job.expect("job")).await;
    assert_eq!(job["state"], "FAILED", "{job}");
    assert!(job["errors"][0]["detail"]
        .as_str()
        .expect("detail")
        .contains("bad credentials"));
    let (status, job, body) = call_for_job(
        &h,
        ADMIN,
        "PATCH",
        &format!("/v3/service_brokers/{guid}"),
        Some(json!({"url": broker.url})),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(job_end(&h, &job.expect("job")).await["state"], "COMPLETE");
    assert_eq!(
        h.get("/v3/service_plans").await["pagination"]["total_results"],
        3
    );
}

#[tokio::test]
async fn plans_are_invisible_to_developers_until_enabled_and_auditors_cannot_create() {
    let h = Harness::new().await;
    let broker = TestBroker::start().await;
    register(&h, &broker, "b").await;
    let space = h.space_guid().await;
    grant(&h, "dev", "space_developer", &space).await;
    grant(&h, "aud", "space_auditor", &space).await;
    let small = plan_guid(&h, "small").await;

    let (status, plans) = h
        .call_as(Some("bearer as:dev"), "GET", "/v3/service_plans", None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(plans["pagination"]["total_results"], 0, "{plans}");
    let (status, _) = h
        .call_as(
            Some("bearer as:dev"),
            "GET",
            &format!("/v3/service_plans/{small}"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, brokers) = h
        .call_as(Some("bearer as:dev"), "GET", "/v3/service_brokers", None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(brokers["pagination"]["total_results"], 0);
    let body = json!({"type": "managed", "name": "db", "relationships": {
        "space": {"data": {"guid": space}}, "service_plan": {"data": {"guid": small}}}});
    let (status, out) = h
        .call_as(
            Some("bearer as:dev"),
            "POST",
            "/v3/service_instances",
            Some(body.clone()),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{out}");
    assert!(out["errors"][0]["detail"]
        .as_str()
        .expect("detail")
        .contains("Invalid service plan"));

    // Only admins change visibility.
    let (status, _) = h
        .call_as(
            Some("bearer as:dev"),
            "PATCH",
            &format!("/v3/service_plans/{small}/visibility"),
            Some(json!({"type": "public"})),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    make_public(&h, &small).await;
    let visibility = h
        .get(&format!("/v3/service_plans/{small}/visibility"))
        .await;
    assert_eq!(visibility["type"], "public");

    let (status, plans) = h
        .call_as(
            Some("bearer as:dev"),
            "GET",
            &format!("/v3/service_plans?space_guids={space}"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(plans["pagination"]["total_results"], 1, "{plans}");
    assert_eq!(plans["resources"][0]["name"], "small");
    let (_, offerings) = h
        .call_as(Some("bearer as:dev"), "GET", "/v3/service_offerings", None)
        .await;
    assert_eq!(offerings["pagination"]["total_results"], 1);

    // An auditor reads but cannot create; nothing reached the broker.
    let (status, out) = h
        .call_as(
            Some("bearer as:aud"),
            "POST",
            "/v3/service_instances",
            Some(body.clone()),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{out}");
    assert!(broker.actions().is_empty(), "{:?}", broker.actions());

    // Organization visibility: `enable-service-access -o`.
    let large = plan_guid(&h, "large").await;
    let org = h.get("/v3/organizations").await["resources"][0]["guid"]
        .as_str()
        .expect("org")
        .to_string();
    let (status, visibility) = h
        .call(
            "POST",
            &format!("/v3/service_plans/{large}/visibility"),
            Some(json!({"type": "organization", "organizations": [{"guid": org}]})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{visibility}");
    assert_eq!(visibility["organizations"][0]["name"], "main");
    let (_, plans) = h
        .call_as(Some("bearer as:dev"), "GET", "/v3/service_plans", None)
        .await;
    assert_eq!(plans["pagination"]["total_results"], 2, "{plans}");

    // The developer creates an instance of the public plan.
    fast_polling(&h, Duration::from_secs(30));
    let (job, instance) = create_instance(&h, "bearer as:dev", &space, &small, "devdb").await;
    assert_eq!(job["state"], "COMPLETE", "{job}");
    assert_eq!(instance["last_operation"]["state"], "succeeded");
    let provision = broker
        .calls()
        .into_iter()
        .find(|c| c.method == "PUT")
        .expect("provision");
    assert_eq!(provision.body["plan_id"], "plan-small");
    assert_eq!(provision.body["context"]["space_guid"], space.as_str());

    // Service keys: the auditor may not, the developer may.
    let key = json!({"type": "key", "name": "k", "relationships": {
        "service_instance": {"data": {"guid": instance["guid"]}}}});
    let (status, out) = h
        .call_as(
            Some("bearer as:aud"),
            "POST",
            "/v3/service_credential_bindings",
            Some(key.clone()),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{out}");
    let (status, job, out) = call_for_job(
        &h,
        "bearer as:dev",
        "POST",
        "/v3/service_credential_bindings",
        Some(key),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{out}");
    assert_eq!(job_end(&h, &job.expect("job")).await["state"], "COMPLETE");
    let (status, keys) = h
        .call_as(
            Some("bearer as:aud"),
            "GET",
            "/v3/service_credential_bindings?type=key",
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(keys["pagination"]["total_results"], 1, "{keys}");
    let key_guid = keys["resources"][0]["guid"].as_str().expect("key");
    let details = format!("/v3/service_credential_bindings/{key_guid}/details");
    let (status, _) = h
        .call_as(Some("bearer as:aud"), "GET", &details, None)
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = h
        .call_as(Some("bearer as:outsider"), "GET", &details, None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, creds) = h
        .call_as(Some("bearer as:dev"), "GET", &details, None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(creds["credentials"]["uri"].is_string(), "{creds}");
}

#[tokio::test]
async fn synchronous_lifecycle_create_update_bind_key_unbind_delete() {
    let h = Harness::new().await;
    fast_polling(&h, Duration::from_secs(30));
    let broker = TestBroker::start().await;
    let broker_guid = register(&h, &broker, "b").await;
    let space = h.space_guid().await;
    let small = plan_guid(&h, "small").await;
    let large = plan_guid(&h, "large").await;

    let (job, instance) = create_instance(&h, ADMIN, &space, &small, "db").await;
    assert_eq!(job["state"], "COMPLETE", "{job}");
    assert_eq!(instance["type"], "managed");
    assert_eq!(instance["last_operation"]["type"], "create");
    assert_eq!(instance["last_operation"]["state"], "succeeded");
    assert_eq!(instance["dashboard_url"], "http://dash.example");
    assert_eq!(instance["maintenance_info"]["version"], "1.0.0");
    assert_eq!(
        instance["relationships"]["service_plan"]["data"]["guid"],
        small.as_str()
    );
    let guid = instance["guid"].as_str().expect("guid").to_string();
    let provision = broker
        .calls()
        .into_iter()
        .find(|c| c.method == "PUT")
        .expect("PUT");
    assert_eq!(provision.path, format!("/v2/service_instances/{guid}"));
    assert_eq!(provision.body["service_id"], "svc-db");
    assert_eq!(provision.body["parameters"]["size"], 1);
    assert!(provision.query.contains("accepts_incomplete=true"));

    // A rename alone is synchronous and never reaches the broker.
    let (status, renamed) = h
        .call(
            "PATCH",
            &format!("/v3/service_instances/{guid}"),
            Some(json!({"name": "db2"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{renamed}");
    assert_eq!(renamed["name"], "db2");
    assert!(!broker.calls().iter().any(|c| c.method == "PATCH"));

    // Plan change.
    let (status, job, body) = call_for_job(
        &h,
        ADMIN,
        "PATCH",
        &format!("/v3/service_instances/{guid}"),
        Some(json!({"relationships": {"service_plan": {"data": {"guid": large}}}})),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(job_end(&h, &job.expect("job")).await["state"], "COMPLETE");
    let update = broker
        .calls()
        .into_iter()
        .find(|c| c.method == "PATCH")
        .expect("PATCH");
    assert_eq!(update.body["plan_id"], "plan-large");
    assert_eq!(update.body["previous_values"]["plan_id"], "plan-small");
    let instance = h.get(&format!("/v3/service_instances/{guid}")).await;
    assert_eq!(
        instance["relationships"]["service_plan"]["data"]["guid"],
        large.as_str()
    );
    assert_eq!(instance["last_operation"]["type"], "update");
    assert_eq!(instance["last_operation"]["state"], "succeeded");

    // Bind to an app: the credentials reach VCAP_SERVICES as CF lays them out.
    let app = app(&h, &space, "web").await;
    let (status, job, body) = call_for_job(
        &h,
        ADMIN,
        "POST",
        "/v3/service_credential_bindings",
        Some(json!({"type": "app", "name": "b1", "relationships": {
            "app": {"data": {"guid": app}}, "service_instance": {"data": {"guid": guid}}}})),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(job_end(&h, &job.expect("job")).await["state"], "COMPLETE");
    let bind = broker
        .calls()
        .into_iter()
        .find(|c| c.method == "PUT" && c.path.contains("service_bindings"))
        .expect("bind");
    assert_eq!(bind.body["bind_resource"]["app_guid"], app.as_str());
    let env = h.get(&format!("/v3/apps/{app}/env")).await;
    let entry = &env["system_env_json"]["VCAP_SERVICES"]["testdb"][0];
    assert_eq!(entry["label"], "testdb", "{env}");
    assert_eq!(entry["provider"], Value::Null);
    assert_eq!(entry["plan"], "large");
    assert_eq!(entry["name"], "db2");
    assert_eq!(entry["instance_name"], "db2");
    assert_eq!(entry["instance_guid"], guid.as_str());
    assert_eq!(entry["binding_name"], "b1");
    assert_eq!(entry["tags"], json!(["sql", "mine"]));
    assert_eq!(entry["volume_mounts"], json!([]));
    let binding_guid = entry["binding_guid"].as_str().expect("binding").to_string();
    assert!(entry["credentials"]["uri"]
        .as_str()
        .expect("uri")
        .contains(&binding_guid));
    let binding = h
        .get(&format!("/v3/service_credential_bindings/{binding_guid}"))
        .await;
    assert_eq!(binding["type"], "app");
    assert_eq!(binding["last_operation"]["state"], "succeeded");

    // A service key, and its details.
    let (status, job, body) = call_for_job(
        &h,
        ADMIN,
        "POST",
        "/v3/service_credential_bindings",
        Some(json!({"type": "key", "name": "k1", "relationships": {
            "service_instance": {"data": {"guid": guid}}}})),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(job_end(&h, &job.expect("job")).await["state"], "COMPLETE");
    let keys = h
        .get(&format!(
            "/v3/service_credential_bindings?type=key&service_instance_guids={guid}"
        ))
        .await;
    assert_eq!(keys["pagination"]["total_results"], 1, "{keys}");
    let key = keys["resources"][0]["guid"]
        .as_str()
        .expect("key")
        .to_string();
    assert_eq!(keys["resources"][0]["name"], "k1");
    let details = h
        .get(&format!("/v3/service_credential_bindings/{key}/details"))
        .await;
    assert_eq!(details["credentials"]["username"], format!("u-{key}"));

    // The instance cannot go while bound; the broker is not asked.
    let (status, body) = h
        .call("DELETE", &format!("/v3/service_instances/{guid}"), None)
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    // Nor can the broker while it has instances.
    let (status, body) = h
        .call(
            "DELETE",
            &format!("/v3/service_brokers/{broker_guid}"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");

    // Unbind, delete the key, deprovision: each seen by the broker.
    for path in [
        format!("/v3/service_credential_bindings/{binding_guid}"),
        format!("/v3/service_credential_bindings/{key}"),
        format!("/v3/service_instances/{guid}"),
    ] {
        let (status, job, body) = call_for_job(&h, ADMIN, "DELETE", &path, None).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{path}: {body}");
        let job = job_end(&h, &job.expect("job")).await;
        assert_eq!(job["state"], "COMPLETE", "{path}: {job}");
    }
    let env = h.get(&format!("/v3/apps/{app}/env")).await;
    assert_eq!(env["system_env_json"]["VCAP_SERVICES"], json!({}));
    let deletes: Vec<String> = broker
        .actions()
        .into_iter()
        .filter(|(m, _)| m == "DELETE")
        .map(|(_, p)| p)
        .collect();
    assert_eq!(
        deletes,
        vec![
            format!("/v2/service_instances/{guid}/service_bindings/{binding_guid}"),
            format!("/v2/service_instances/{guid}/service_bindings/{key}"),
            format!("/v2/service_instances/{guid}"),
        ]
    );
    let (status, _) = h
        .call("GET", &format!("/v3/service_instances/{guid}"), None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // With no instances left, the broker can go, and its catalog with it.
    let (status, job, body) = call_for_job(
        &h,
        ADMIN,
        "DELETE",
        &format!("/v3/service_brokers/{broker_guid}"),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(job_end(&h, &job.expect("job")).await["state"], "COMPLETE");
    assert_eq!(
        h.get("/v3/service_plans").await["pagination"]["total_results"],
        0
    );
    let events = h.get("/v3/audit_events").await;
    let kinds: Vec<&str> = events["resources"]
        .as_array()
        .expect("events")
        .iter()
        .filter_map(|e| e["type"].as_str())
        .collect();
    for kind in [
        "audit.service_broker.create",
        "audit.service_broker.delete",
        "audit.service_instance.create",
        "audit.service_instance.update",
        "audit.service_instance.delete",
        "audit.service_binding.create",
        "audit.service_binding.delete",
        "audit.service_key.create",
        "audit.service_key.delete",
    ] {
        assert!(kinds.contains(&kind), "{kind} missing from {kinds:?}");
    }
}

#[tokio::test]
async fn a_maintenance_info_upgrade_reaches_the_broker_and_a_wrong_version_does_not() {
    let h = Harness::new().await;
    fast_polling(&h, Duration::from_secs(30));
    let broker = TestBroker::start().await;
    register(&h, &broker, "b").await;
    let space = h.space_guid().await;
    let small = plan_guid(&h, "small").await;
    let (_, instance) = create_instance(&h, ADMIN, &space, &small, "db").await;
    let guid = instance["guid"].as_str().expect("guid");
    let path = format!("/v3/service_instances/{guid}");
    let (status, body) = h
        .call(
            "PATCH",
            &path,
            Some(json!({"maintenance_info": {"version": "9.9.9"}})),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(!broker.calls().iter().any(|c| c.method == "PATCH"));
    let (status, job, body) = call_for_job(
        &h,
        ADMIN,
        "PATCH",
        &path,
        Some(json!({"maintenance_info": {"version": "1.0.0"}, "parameters": {"tier": 2}})),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(job_end(&h, &job.expect("job")).await["state"], "COMPLETE");
    let update = broker
        .calls()
        .into_iter()
        .find(|c| c.method == "PATCH")
        .expect("PATCH");
    assert_eq!(update.body["maintenance_info"]["version"], "1.0.0");
    assert_eq!(update.body["parameters"]["tier"], 2);
    assert_eq!(update.body["previous_values"]["plan_id"], "plan-small");
    assert!(update.body.get("plan_id").is_none(), "{:?}", update.body);
}

#[tokio::test]
async fn a_plan_that_is_not_updateable_is_refused_before_the_broker() {
    let h = Harness::new().await;
    fast_polling(&h, Duration::from_secs(30));
    let broker = TestBroker::start().await;
    register(&h, &broker, "b").await;
    let space = h.space_guid().await;
    let fixed = plan_guid(&h, "fixed").await;
    let small = plan_guid(&h, "small").await;
    let (_, instance) = create_instance(&h, ADMIN, &space, &fixed, "db").await;
    let guid = instance["guid"].as_str().expect("guid");
    let (status, body) = h
        .call(
            "PATCH",
            &format!("/v3/service_instances/{guid}"),
            Some(json!({"relationships": {"service_plan": {"data": {"guid": small}}}})),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["errors"][0]["title"], "CF-UnprocessableEntity");
    assert_eq!(
        body["errors"][0]["detail"],
        "The service does not support changing plans."
    );
    assert!(!broker.calls().iter().any(|c| c.method == "PATCH"));
    let instance = h.get(&format!("/v3/service_instances/{guid}")).await;
    assert_eq!(
        instance["relationships"]["service_plan"]["data"]["guid"],
        fixed.as_str()
    );
}

#[tokio::test]
async fn asynchronous_operations_are_polled_to_the_end() {
    let h = Harness::new().await;
    fast_polling(&h, Duration::from_secs(30));
    let broker = TestBroker::start().await;
    broker.state.asynchronous.store(true, Ordering::SeqCst);
    register(&h, &broker, "b").await;
    let space = h.space_guid().await;
    let small = plan_guid(&h, "small").await;
    let large = plan_guid(&h, "large").await;
    let (job, instance) = create_instance(&h, ADMIN, &space, &small, "db").await;
    assert_eq!(job["state"], "COMPLETE", "{job}");
    assert_eq!(instance["last_operation"]["state"], "succeeded");
    let guid = instance["guid"].as_str().expect("guid").to_string();
    let polls: Vec<Seen> = broker
        .calls()
        .into_iter()
        .filter(|c| c.path.ends_with("/last_operation"))
        .collect();
    assert!(!polls.is_empty());
    assert!(
        polls[0].query.contains("operation=provisioning"),
        "{:?}",
        polls[0]
    );

    let (status, job, body) = call_for_job(
        &h,
        ADMIN,
        "PATCH",
        &format!("/v3/service_instances/{guid}"),
        Some(json!({"relationships": {"service_plan": {"data": {"guid": large}}}, "parameters": {"x": 1}})),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(job_end(&h, &job.expect("job")).await["state"], "COMPLETE");
    let instance = h.get(&format!("/v3/service_instances/{guid}")).await;
    assert_eq!(
        instance["relationships"]["service_plan"]["data"]["guid"],
        large.as_str()
    );

    // An async bind: credentials fetched once the broker is done.
    let app = app(&h, &space, "web").await;
    let (status, job, body) = call_for_job(
        &h,
        ADMIN,
        "POST",
        "/v3/service_credential_bindings",
        Some(json!({"type": "app", "relationships": {
            "app": {"data": {"guid": app}}, "service_instance": {"data": {"guid": guid}}}})),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(job_end(&h, &job.expect("job")).await["state"], "COMPLETE");
    let env = h.get(&format!("/v3/apps/{app}/env")).await;
    assert!(
        env["system_env_json"]["VCAP_SERVICES"]["testdb"][0]["credentials"]["uri"]
            .as_str()
            .is_some(),
        "{env}"
    );
    assert!(broker.calls().iter().any(|c| c.method == "GET"
        && c.path.ends_with(&format!(
            "/service_bindings/{}",
            env["system_env_json"]["VCAP_SERVICES"]["testdb"][0]["binding_guid"]
                .as_str()
                .expect("b")
        ))));
}

#[tokio::test]
async fn an_operation_that_never_ends_fails_after_the_maximum_polling_duration() {
    let h = Harness::new().await;
    fast_polling(&h, Duration::from_millis(300));
    let broker = TestBroker::start().await;
    broker.state.asynchronous.store(true, Ordering::SeqCst);
    broker.state.never_finish.store(true, Ordering::SeqCst);
    register(&h, &broker, "b").await;
    let space = h.space_guid().await;
    let small = plan_guid(&h, "small").await;
    let (job, instance) = create_instance(&h, ADMIN, &space, &small, "slow").await;
    assert_eq!(job["state"], "FAILED", "{job}");
    assert!(job["errors"][0]["detail"]
        .as_str()
        .expect("detail")
        .contains("Service Broker failed to provision within the required time."));
    assert_eq!(instance["last_operation"]["type"], "create");
    assert_eq!(instance["last_operation"]["state"], "failed");
    assert!(broker.state.last_operation_polls.load(Ordering::SeqCst) >= 2);

    // The plan's own maximum_polling_duration (1 s) wins over a longer
    // platform limit.
    fast_polling(&h, Duration::from_secs(600));
    let large = plan_guid(&h, "large").await;
    let (job, slow) = create_instance(&h, ADMIN, &space, &large, "slower").await;
    assert_eq!(job["state"], "FAILED", "{job}");
    assert_eq!(slow["last_operation"]["state"], "failed");

    // A failed create can be deleted (the broker is asked to deprovision).
    broker.state.asynchronous.store(false, Ordering::SeqCst);
    let guid = instance["guid"].as_str().expect("guid");
    let (status, job, body) = call_for_job(
        &h,
        ADMIN,
        "DELETE",
        &format!("/v3/service_instances/{guid}"),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(job_end(&h, &job.expect("job")).await["state"], "COMPLETE");
    assert!(broker.actions().contains(&(
        "DELETE".to_string(),
        format!("/v2/service_instances/{guid}")
    )));
}

#[tokio::test]
async fn a_broker_error_fails_the_job_with_its_message_and_the_platform_keeps_serving() {
    let h = Harness::new().await;
    fast_polling(&h, Duration::from_secs(30));
    let broker = TestBroker::start().await;
    broker.state.fail_provision.store(true, Ordering::SeqCst);
    register(&h, &broker, "b").await;
    let space = h.space_guid().await;
    let small = plan_guid(&h, "small").await;
    let (job, instance) = create_instance(&h, ADMIN, &space, &small, "broken").await;
    assert_eq!(job["state"], "FAILED", "{job}");
    let detail = job["errors"][0]["detail"].as_str().expect("detail");
    assert!(detail.contains("the database is on fire"), "{detail}");
    assert_eq!(instance["last_operation"]["state"], "failed");
    assert!(instance["last_operation"]["description"]
        .as_str()
        .expect("description")
        .contains("the database is on fire"));
    // The platform keeps serving.
    h.get("/v3/service_instances").await;
    h.get("/v3/service_plans").await;
}

#[tokio::test]
async fn unknown_guids_answer_cf_not_found() {
    let h = Harness::new().await;
    for (path, detail) in [
        ("/v3/service_brokers/nope", "Service broker not found"),
        ("/v3/service_offerings/nope", "Service offering not found"),
        ("/v3/service_plans/nope", "Service plan not found"),
        (
            "/v3/service_plans/nope/visibility",
            "Service plan not found",
        ),
        ("/v3/service_instances/nope", "Service instance not found"),
        (
            "/v3/service_credential_bindings/nope",
            "Service credential binding not found",
        ),
    ] {
        let (status, body) = h.call("GET", path, None).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
        assert_eq!(
            body,
            json!({"errors": [{"code": 10010, "title": "CF-ResourceNotFound", "detail": detail}]}),
            "{path}"
        );
    }
    let (status, _) = h
        .call(
            "PATCH",
            "/v3/service_brokers/nope",
            Some(json!({"name": "x"})),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_space_developer_registers_a_space_scoped_broker() {
    let h = Harness::new().await;
    let broker = TestBroker::start().await;
    let space = h.space_guid().await;
    grant(&h, "dev", "space_developer", &space).await;
    let body = json!({"name": "mine", "url": broker.url,
        "authentication": {"type": "basic", "credentials": {"username": "u", "password": "p"}}});
    // Without a space it would be global: admins only.
    let (status, _, out) = call_for_job(
        &h,
        "bearer as:dev",
        "POST",
        "/v3/service_brokers",
        Some(body.clone()),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{out}");
    let mut scoped = body.clone();
    scoped["relationships"] = json!({"space": {"data": {"guid": space}}});
    let (status, job, out) = call_for_job(
        &h,
        "bearer as:dev",
        "POST",
        "/v3/service_brokers",
        Some(scoped),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{out}");
    assert_eq!(job_end(&h, &job.expect("job")).await["state"], "COMPLETE");
    let (_, brokers) = h
        .call_as(Some("bearer as:dev"), "GET", "/v3/service_brokers", None)
        .await;
    assert_eq!(brokers["pagination"]["total_results"], 1, "{brokers}");
    assert_eq!(
        brokers["resources"][0]["relationships"]["space"]["data"]["guid"],
        space.as_str()
    );
    let (_, plans) = h
        .call_as(Some("bearer as:dev"), "GET", "/v3/service_plans", None)
        .await;
    assert_eq!(plans["pagination"]["total_results"], 3, "{plans}");
    assert_eq!(plans["resources"][0]["visibility_type"], "space");
    let (_, plans) = h
        .call_as(Some("bearer as:outsider"), "GET", "/v3/service_plans", None)
        .await;
    assert_eq!(plans["pagination"]["total_results"], 0, "{plans}");
}

#[tokio::test]
async fn polling_resumes_after_a_restart() {
    let h = Harness::new().await;
    // The first platform polls once, then "dies" (it will not poll again
    // for an hour).
    h.api.set_broker_polling(BrokerPolling {
        interval: Duration::from_secs(3600),
        max_interval: Duration::from_secs(3600),
        max_duration: Duration::from_secs(7200),
    });
    let broker = TestBroker::start().await;
    broker.state.asynchronous.store(true, Ordering::SeqCst);
    broker.state.never_finish.store(true, Ordering::SeqCst);
    register(&h, &broker, "b").await;
    let space = h.space_guid().await;
    let small = plan_guid(&h, "small").await;
    let (status, job, body) = call_for_job(
        &h,
        ADMIN,
        "POST",
        "/v3/service_instances",
        Some(json!({"type": "managed", "name": "db", "relationships": {
            "space": {"data": {"guid": space}}, "service_plan": {"data": {"guid": small}}}})),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let job = job.expect("job");
    for _ in 0..500 {
        if broker.state.last_operation_polls.load(Ordering::SeqCst) > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(broker.state.last_operation_polls.load(Ordering::SeqCst), 1);
    // The broker took it on: the job says so, and so does the instance.
    let polling = h.wait_for(&job, "state", &["POLLING"]).await;
    assert!(polling["errors"].as_array().expect("errors").is_empty());
    let mut last = Value::Null;
    for _ in 0..500 {
        let list = h.get("/v3/service_instances?names=db").await;
        last = list["resources"][0]["last_operation"].clone();
        if last["description"] == "still working" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(last["state"], "in progress", "{last}");
    assert_eq!(last["description"], "still working", "{last}");
    broker.state.never_finish.store(false, Ordering::SeqCst);

    // A new platform over the same database resumes polling.
    let api = ingot_api::Api::open(
        h.pool.clone(),
        h.blobs.clone(),
        h.logs.clone(),
        Arc::new(Tokens),
        h.runtime.clone(),
        ingot_api::ApiConfig {
            external_url: EXTERNAL.into(),
            uaa_url: format!("{EXTERNAL}/uaa"),
            log_cache_url: format!("{EXTERNAL}/log-cache"),
            log_stream_url: None,
            logging_url: None,
            app_domain: "apps.localhost".into(),
            router_url: "http://127.0.0.1:8080".into(),
            ssh_endpoint: None,
            ssh_host_key_fingerprint: None,
            version: "0.1.0".into(),
        },
    )
    .await
    .expect("open");
    api.set_broker_polling(BrokerPolling {
        interval: Duration::from_millis(20),
        max_interval: Duration::from_millis(50),
        max_duration: Duration::from_secs(30),
    });
    api.resume().await.expect("resume");
    let job = job_end(&h, &job).await;
    assert_eq!(job["state"], "COMPLETE", "{job}");
    let list = h.get("/v3/service_instances?names=db").await;
    assert_eq!(list["resources"][0]["last_operation"]["state"], "succeeded");
}

#[tokio::test]
async fn instance_lists_carry_plan_offering_and_broker_names_and_purge_skips_the_broker() {
    let h = Harness::new().await;
    fast_polling(&h, Duration::from_secs(30));
    let broker = TestBroker::start().await;
    register(&h, &broker, "names-broker").await;
    let space = h.space_guid().await;
    let small = plan_guid(&h, "small").await;
    let (_, instance) = create_instance(&h, ADMIN, &space, &small, "db").await;
    let guid = instance["guid"].as_str().expect("guid").to_string();
    let list = h
        .get(&format!(
            "/v3/service_instances?space_guids={space}&fields[service_plan]=name,guid&fields[service_plan.service_offering]=name,guid,description,tags,documentation_url&fields[service_plan.service_offering.service_broker]=name,guid&fields[space]=name,guid&fields[space.organization]=name,guid"
        ))
        .await;
    let included = &list["included"];
    assert_eq!(included["service_plans"][0]["name"], "small", "{list}");
    assert!(
        included["service_plans"][0]["relationships"]["service_offering"]["data"]["guid"]
            .is_string()
    );
    assert_eq!(included["service_offerings"][0]["name"], "testdb");
    assert_eq!(
        included["service_offerings"][0]["description"],
        "A test database"
    );
    assert_eq!(included["service_brokers"][0]["name"], "names-broker");
    assert_eq!(included["spaces"][0]["name"], "dev");
    assert_eq!(included["organizations"][0]["name"], "main");

    grant(&h, "dev", "space_developer", &space).await;
    let purge = format!("/v3/service_instances/{guid}?purge=true");
    let (status, _) = h
        .call_as(Some("bearer as:dev"), "DELETE", &purge, None)
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, body) = h.call("DELETE", &purge, None).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    let (status, _) = h
        .call("GET", &format!("/v3/service_instances/{guid}"), None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(!broker.calls().iter().any(|c| c.method == "DELETE"));
}
