//! The built-in PostgreSQL broker against a real PostgreSQL server (one per
//! test, see `support/pg.rs`), driven over HTTP as a platform would, and
//! checked with independent connections: the admin's, and the apps' own
//! with the credentials the broker hands out.

#[path = "support/pg.rs"]
mod pg;

use ingot_brokers::postgres::{offering_id, PostgresBroker, PostgresBrokerConfig, PostgresPlan};
use pg::TestPostgres;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use tokio_postgres::NoTls;

const USER: &str = "platform";
const PASSWORD: &str = "broker-secret";

/// A broker served on a loopback port; the server task ends on drop.
struct Broker {
    base: String,
    http: reqwest::Client,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.server.abort();
    }
}

fn config(pg: &TestPostgres) -> PostgresBrokerConfig {
    PostgresBrokerConfig::new(pg.admin_url(), "127.0.0.1", pg.port(), USER, PASSWORD)
}

async fn start(config: PostgresBrokerConfig) -> Broker {
    let broker = PostgresBroker::connect(config)
        .await
        .expect("the broker connects to PostgreSQL");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind a port");
    let address = listener.local_addr().expect("local address");
    let server = tokio::spawn(async move {
        if let Err(e) = broker.serve(listener).await {
            eprintln!("broker stopped: {e}");
        }
    });
    Broker {
        base: format!("http://{address}"),
        http: reqwest::Client::new(),
        server,
    }
}

fn plan_id(name: &str) -> String {
    PostgresPlan::defaults()
        .iter()
        .find(|p| p.name == name)
        .map(PostgresPlan::id)
        .expect("a default plan")
}

impl Broker {
    /// An authenticated OSB request; the answer's status and JSON body.
    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.base))
            .basic_auth(USER, Some(PASSWORD))
            .header("X-Broker-API-Version", "2.15");
        if let Some(body) = body {
            request = request.json(&body);
        }
        answer(request).await
    }

    async fn provision(&self, id: &str, plan: &str) -> (StatusCode, Value) {
        self.call(
            Method::PUT,
            &format!("/v2/service_instances/{id}?accepts_incomplete=true"),
            Some(json!({
                "service_id": offering_id(),
                "plan_id": plan_id(plan),
                "organization_guid": "org",
                "space_guid": "space",
                "context": {"platform": "cloudfoundry", "organization_guid": "org", "space_guid": "space"},
            })),
        )
        .await
    }

    async fn update(&self, id: &str, plan: &str) -> (StatusCode, Value) {
        self.call(
            Method::PATCH,
            &format!("/v2/service_instances/{id}?accepts_incomplete=true"),
            Some(json!({
                "service_id": offering_id(),
                "plan_id": plan_id(plan),
                "previous_values": {"service_id": offering_id(), "plan_id": plan_id("small")},
            })),
        )
        .await
    }

    async fn bind(&self, id: &str, binding: &str) -> (StatusCode, Value) {
        self.call(
            Method::PUT,
            &format!("/v2/service_instances/{id}/service_bindings/{binding}"),
            Some(json!({
                "service_id": offering_id(),
                "plan_id": plan_id("small"),
                "bind_resource": {"app_guid": "app"},
            })),
        )
        .await
    }

    async fn unbind(&self, id: &str, binding: &str) -> (StatusCode, Value) {
        self.call(
            Method::DELETE,
            &format!(
                "/v2/service_instances/{id}/service_bindings/{binding}?service_id={}&plan_id={}",
                offering_id(),
                plan_id("small")
            ),
            None,
        )
        .await
    }

    async fn deprovision(&self, id: &str) -> (StatusCode, Value) {
        self.call(
            Method::DELETE,
            &format!(
                "/v2/service_instances/{id}?service_id={}&plan_id={}&accepts_incomplete=true",
                offering_id(),
                plan_id("small")
            ),
            None,
        )
        .await
    }
}

async fn answer(request: reqwest::RequestBuilder) -> (StatusCode, Value) {
    let response = request.send().await.expect("the broker answers");
    let status = response.status();
    let text = response.text().await.expect("a body");
    let body = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("status {status}: body {text:?} is not JSON: {e}"));
    (status, body)
}

/// Asserts an OSB error body.
fn assert_osb_error(status: StatusCode, body: &Value, expected: StatusCode, what: &str) {
    assert_eq!(status, expected, "{what}: {body}");
    assert!(body["error"].is_string(), "{what}: no `error` in {body}");
    assert!(
        body["description"].as_str().is_some_and(|d| !d.is_empty()),
        "{what}: no `description` in {body}"
    );
}

async fn connect(url: &str) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    let (client, connection) = tokio_postgres::connect(url, NoTls).await?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(client)
}

async fn admin(pg: &TestPostgres) -> tokio_postgres::Client {
    connect(&pg.admin_url())
        .await
        .unwrap_or_else(|e| panic!("admin connection: {e}\n{}", pg.log()))
}

/// `datconnlimit` of the database, or None when it does not exist.
async fn connection_limit(admin: &tokio_postgres::Client, database: &str) -> Option<i32> {
    admin
        .query_opt(
            "SELECT datconnlimit FROM pg_database WHERE datname = $1",
            &[&database],
        )
        .await
        .expect("query pg_database")
        .map(|row| row.get(0))
}

/// Every database and role name, to show that a request changed nothing.
async fn snapshot(admin: &tokio_postgres::Client) -> Vec<String> {
    let rows = admin
        .query(
            "SELECT 'db ' || datname FROM pg_database
             UNION ALL SELECT 'role ' || rolname FROM pg_roles
             UNION ALL SELECT 'instance ' || instance_id FROM ingot_postgres_broker.instances
             UNION ALL SELECT 'binding ' || binding_id FROM ingot_postgres_broker.bindings
             ORDER BY 1",
            &[],
        )
        .await
        .expect("snapshot");
    rows.iter().map(|r| r.get(0)).collect()
}

fn creds(body: &Value) -> &Value {
    &body["credentials"]
}

fn text(value: &Value) -> &str {
    value
        .as_str()
        .unwrap_or_else(|| panic!("{value} is not a string"))
}

fn db_error_code(e: &tokio_postgres::Error) -> String {
    e.as_db_error()
        .map(|d| d.code().code().to_string())
        .unwrap_or_else(|| e.to_string())
}

#[tokio::test]
async fn catalog_offers_postgresql_with_connection_limited_plans() {
    let pg = TestPostgres::start();
    let broker = start(config(&pg)).await;

    let (status, catalog) = broker.call(Method::GET, "/v2/catalog", None).await;
    assert_eq!(status, StatusCode::OK, "{catalog}");
    let offering = &catalog["services"][0];
    assert_eq!(catalog["services"].as_array().map(Vec::len), Some(1));
    assert_eq!(offering["name"], "postgresql");
    assert_eq!(offering["id"], offering_id());
    assert_eq!(offering["bindable"], true);
    assert_eq!(offering["plan_updateable"], true);
    assert_eq!(offering["tags"], json!(["postgresql", "relational"]));
    let plans: Vec<(String, String, i64)> = offering["plans"]
        .as_array()
        .expect("plans")
        .iter()
        .map(|p| {
            (
                text(&p["name"]).to_string(),
                text(&p["id"]).to_string(),
                p["metadata"]["connection_limit"].as_i64().expect("limit"),
            )
        })
        .collect();
    assert_eq!(
        plans,
        [
            ("small".to_string(), plan_id("small"), 5),
            ("medium".to_string(), plan_id("medium"), 20),
            ("large".to_string(), plan_id("large"), 100),
        ]
    );

    // A second broker with its own plans: ids derive from names.
    let mut custom = config(&pg);
    custom.plans = vec![PostgresPlan::new("tiny", 2), PostgresPlan::new("small", 5)];
    let other = start(custom).await;
    let (_, catalog2) = other.call(Method::GET, "/v2/catalog", None).await;
    let plans2 = &catalog2["services"][0]["plans"];
    assert_eq!(plans2[0]["name"], "tiny");
    assert_eq!(plans2[0]["metadata"]["connection_limit"], 2);
    assert_eq!(plans2[1]["id"], plan_id("small"), "same name, same id");
    assert_eq!(catalog2["services"][0]["id"], offering_id());

    // Auth and version come before anything else.
    let url = format!("{}/v2/catalog", broker.base);
    let (status, body) = answer(broker.http.get(&url).header("X-Broker-API-Version", "2.15")).await;
    assert_osb_error(status, &body, StatusCode::UNAUTHORIZED, "no credentials");
    let (status, body) = answer(
        broker
            .http
            .get(&url)
            .basic_auth(USER, Some("wrong"))
            .header("X-Broker-API-Version", "2.15"),
    )
    .await;
    assert_osb_error(status, &body, StatusCode::UNAUTHORIZED, "wrong password");
    let (status, body) = answer(broker.http.get(&url).basic_auth(USER, Some(PASSWORD))).await;
    assert_osb_error(status, &body, StatusCode::PRECONDITION_FAILED, "no version");
    for version in ["1.9", "3.0", "banana"] {
        let (status, body) = answer(
            broker
                .http
                .get(&url)
                .basic_auth(USER, Some(PASSWORD))
                .header("X-Broker-API-Version", version),
        )
        .await;
        assert_osb_error(status, &body, StatusCode::PRECONDITION_FAILED, version);
    }
    let (status, body) = answer(
        broker
            .http
            .get(&url)
            .basic_auth(USER, Some(PASSWORD))
            .header("X-Broker-API-Version", "2.17"),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "a later 2.x is served: {body}");
}

#[tokio::test]
async fn provision_creates_a_database_with_the_plans_limit_once() {
    let pg = TestPostgres::start();
    let broker = start(config(&pg)).await;
    let admin = admin(&pg).await;
    let before = snapshot(&admin).await;

    // Two platforms racing on one id: one creates, the other sees it exist.
    let (a, b) = tokio::join!(
        broker.provision("inst-1", "small"),
        broker.provision("inst-1", "small")
    );
    let mut statuses = [a.0, b.0];
    statuses.sort();
    assert_eq!(
        statuses,
        [StatusCode::OK, StatusCode::CREATED],
        "{a:?} {b:?}"
    );

    let databases: Vec<(String, i32, String)> = admin
        .query(
            "SELECT d.datname::text, d.datconnlimit, r.rolname::text
             FROM pg_database d JOIN pg_roles r ON r.oid = d.datdba
             WHERE d.datname LIKE 'ingot_inst_1_%'",
            &[],
        )
        .await
        .expect("query")
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    assert_eq!(databases.len(), 1, "{databases:?}");
    let (database, limit, owner) = &databases[0];
    assert_eq!(*limit, 5, "the small plan's limit");
    assert_eq!(owner, &format!("{database}_owner"));
    let can_login: bool = admin
        .query_one(
            "SELECT rolcanlogin FROM pg_roles WHERE rolname = $1",
            &[owner],
        )
        .await
        .expect("owner role")
        .get(0);
    assert!(!can_login, "the owner role cannot log in");

    let (status, body) = broker.provision("inst-1", "small").await;
    assert_eq!(status, StatusCode::OK, "same id, same plan: {body}");
    let (status, body) = broker.provision("inst-1", "large").await;
    assert_osb_error(status, &body, StatusCode::CONFLICT, "same id, another plan");
    assert_eq!(
        connection_limit(&admin, database).await,
        Some(5),
        "the conflict changed nothing"
    );

    let (status, body) = broker
        .call(
            Method::GET,
            "/v2/service_instances/inst-1/last_operation",
            None,
        )
        .await;
    assert_eq!(
        (status, body),
        (StatusCode::OK, json!({"state": "succeeded"}))
    );

    let (status, _) = broker.provision("inst-2", "large").await;
    assert_eq!(status, StatusCode::CREATED);
    let after = snapshot(&admin).await;
    assert_eq!(
        after.len(),
        before.len() + 6,
        "two databases, two owners, two state rows: {after:?}"
    );
}

#[tokio::test]
async fn binding_credentials_connect_and_can_create_tables() {
    let pg = TestPostgres::start();
    let broker = start(config(&pg)).await;
    assert_eq!(
        broker.provision("inst", "small").await.0,
        StatusCode::CREATED
    );
    assert_eq!(
        broker.provision("other", "small").await.0,
        StatusCode::CREATED
    );

    let (status, first) = broker.bind("inst", "bind-1").await;
    assert_eq!(status, StatusCode::CREATED, "{first}");
    let c = creds(&first);
    for key in ["uri", "username", "password", "hostname", "name", "jdbcUrl"] {
        assert!(c[key].is_string(), "credentials lack {key}: {c}");
    }
    assert_eq!(c["hostname"], "127.0.0.1");
    assert_eq!(c["port"], pg.port());
    assert_eq!(
        text(&c["uri"]),
        format!(
            "postgres://{}:{}@127.0.0.1:{}/{}",
            text(&c["username"]),
            text(&c["password"]),
            pg.port(),
            text(&c["name"])
        )
    );
    assert!(text(&c["jdbcUrl"]).starts_with(&format!("jdbc:postgresql://127.0.0.1:{}/", pg.port())));

    let (status, again) = broker.bind("inst", "bind-1").await;
    assert_eq!(status, StatusCode::OK, "the same binding again: {again}");
    assert_eq!(again, first, "with the same credentials");

    let app = connect(text(&c["uri"]))
        .await
        .unwrap_or_else(|e| panic!("the credentials connect: {e}\n{}", pg.log()));
    app.batch_execute(
        "CREATE TABLE notes (value text NOT NULL); INSERT INTO notes VALUES ('hello')",
    )
    .await
    .expect("create a table in public and insert");

    // A second binding (another app) sees the first one's table.
    let (status, second) = broker.bind("inst", "bind-2").await;
    assert_eq!(status, StatusCode::CREATED);
    assert_ne!(creds(&second)["username"], c["username"]);
    let app2 = connect(text(&creds(&second)["uri"]))
        .await
        .expect("second binding connects");
    let rows = app2
        .query("SELECT value FROM notes", &[])
        .await
        .expect("read the table");
    assert_eq!(rows.len(), 1);
    app2.execute("INSERT INTO notes VALUES ('from app 2')", &[])
        .await
        .expect("insert");

    // Credentials are checked, and open only their own database.
    let wrong = pg.url(text(&c["username"]), "not-the-password", text(&c["name"]));
    let e = connect(&wrong)
        .await
        .expect_err("a wrong password is refused");
    assert_eq!(db_error_code(&e), "28P01", "{e}");
    let (_, other_binding) = broker.bind("other", "bind-3").await;
    let other_db = text(&creds(&other_binding)["name"]);
    let e = connect(&pg.url(text(&c["username"]), text(&c["password"]), other_db))
        .await
        .expect_err("another instance's database is closed to this binding");
    assert_eq!(db_error_code(&e), "42501", "{e}");

    // The small plan: at most 5 sessions to the database, all bindings
    // together (app2 holds one).
    let mut sessions = vec![app];
    for _ in 0..3 {
        sessions.push(connect(text(&c["uri"])).await.expect("within the limit"));
    }
    let e = connect(text(&c["uri"]))
        .await
        .expect_err("a 6th session is refused");
    assert_eq!(db_error_code(&e), "53300", "too many connections: {e}");

    // A binding id is unique across instances.
    let (status, body) = broker.bind("other", "bind-1").await;
    assert_osb_error(
        status,
        &body,
        StatusCode::CONFLICT,
        "binding id of another instance",
    );
    let (status, body) = broker
        .call(
            Method::GET,
            "/v2/service_instances/inst/service_bindings/bind-1/last_operation",
            None,
        )
        .await;
    assert_eq!(
        (status, body),
        (StatusCode::OK, json!({"state": "succeeded"}))
    );
}

#[tokio::test]
async fn plan_update_changes_the_limit_in_place_and_keeps_the_data() {
    let pg = TestPostgres::start();
    let broker = start(config(&pg)).await;
    let admin = admin(&pg).await;
    assert_eq!(
        broker.provision("inst", "small").await.0,
        StatusCode::CREATED
    );
    let (_, bound) = broker.bind("inst", "b").await;
    let uri = text(&creds(&bound)["uri"]).to_string();
    let database = text(&creds(&bound)["name"]).to_string();
    let app = connect(&uri).await.expect("connect");
    app.batch_execute("CREATE TABLE t (n int); INSERT INTO t VALUES (42)")
        .await
        .expect("write");
    let oid_before: u32 = admin
        .query_one(
            "SELECT oid FROM pg_database WHERE datname = $1",
            &[&database],
        )
        .await
        .expect("oid")
        .get(0);

    let mut sessions = vec![app];
    for _ in 0..4 {
        sessions.push(connect(&uri).await.expect("within the small limit"));
    }
    assert!(
        connect(&uri).await.is_err(),
        "the small plan refuses a 6th session"
    );

    let (status, body) = broker.update("inst", "medium").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(connection_limit(&admin, &database).await, Some(20));
    let oid_after: u32 = admin
        .query_one(
            "SELECT oid FROM pg_database WHERE datname = $1",
            &[&database],
        )
        .await
        .expect("oid")
        .get(0);
    assert_eq!(oid_before, oid_after, "the same database, changed in place");
    let sixth = connect(&uri)
        .await
        .expect("the medium plan admits a 6th session");
    let n: i32 = sixth
        .query_one("SELECT n FROM t", &[])
        .await
        .expect("the data is still there")
        .get(0);
    assert_eq!(n, 42);
    assert!(
        sessions[0]
            .query_one("SELECT count(*) FROM t", &[])
            .await
            .is_ok(),
        "open sessions survive the update"
    );

    // Same plan again: nothing to do; unknown plan: refused; state kept.
    assert_eq!(broker.update("inst", "medium").await.0, StatusCode::OK);
    let (status, body) = broker
        .call(
            Method::PATCH,
            "/v2/service_instances/inst",
            Some(json!({"service_id": offering_id(), "plan_id": "no-such-plan"})),
        )
        .await;
    assert_osb_error(status, &body, StatusCode::BAD_REQUEST, "unknown plan");
    assert_eq!(connection_limit(&admin, &database).await, Some(20));
    let (status, body) = broker.update("missing", "large").await;
    assert_osb_error(status, &body, StatusCode::NOT_FOUND, "unknown instance");

    // After the update the platform provisions with the new plan id.
    assert_eq!(broker.provision("inst", "medium").await.0, StatusCode::OK);
    assert_eq!(
        broker.provision("inst", "small").await.0,
        StatusCode::CONFLICT
    );
}

#[tokio::test]
async fn unbind_revokes_credentials_and_ends_open_sessions() {
    let pg = TestPostgres::start();
    let broker = start(config(&pg)).await;
    let admin = admin(&pg).await;
    assert_eq!(
        broker.provision("inst", "small").await.0,
        StatusCode::CREATED
    );
    let (_, bound) = broker.bind("inst", "b1").await;
    let c = creds(&bound).clone();
    let session = connect(text(&c["uri"])).await.expect("connect");
    session
        .batch_execute("CREATE TABLE kept (v text); INSERT INTO kept VALUES ('row')")
        .await
        .expect("write");

    let (status, body) = broker.unbind("inst", "b1").await;
    assert_eq!((status, body), (StatusCode::OK, json!({})));

    assert!(
        session.simple_query("SELECT 1").await.is_err(),
        "the open session was ended"
    );
    let e = connect(text(&c["uri"]))
        .await
        .expect_err("the credentials no longer work");
    assert_eq!(db_error_code(&e), "28P01", "{e}");
    let role_left = admin
        .query_opt(
            "SELECT 1 FROM pg_roles WHERE rolname = $1",
            &[&text(&c["username"])],
        )
        .await
        .expect("query");
    assert!(role_left.is_none(), "the role is dropped");

    let (status, body) = broker.unbind("inst", "b1").await;
    assert_eq!(
        (status, body),
        (StatusCode::GONE, json!({})),
        "unbinding twice"
    );
    let (status, _) = broker
        .call(
            Method::GET,
            "/v2/service_instances/inst/service_bindings/b1/last_operation",
            None,
        )
        .await;
    assert_eq!(status, StatusCode::GONE);

    // The data outlives the binding: a new binding reads it.
    let (status, rebound) = broker.bind("inst", "b2").await;
    assert_eq!(status, StatusCode::CREATED);
    let app = connect(text(&creds(&rebound)["uri"]))
        .await
        .expect("new binding connects");
    let v: String = app
        .query_one("SELECT v FROM kept", &[])
        .await
        .expect("the table survived the unbind")
        .get(0);
    assert_eq!(v, "row");
}

#[tokio::test]
async fn deprovision_drops_the_database_and_every_role() {
    let pg = TestPostgres::start();
    let broker = start(config(&pg)).await;
    let admin = admin(&pg).await;
    let before = snapshot(&admin).await;
    assert_eq!(
        broker.provision("inst", "small").await.0,
        StatusCode::CREATED
    );
    let (_, bound) = broker.bind("inst", "b1").await;
    broker.bind("inst", "b2").await;
    let database = text(&creds(&bound)["name"]).to_string();
    let session = connect(text(&creds(&bound)["uri"])).await.expect("connect");

    let (status, body) = broker.deprovision("inst").await;
    assert_eq!((status, body), (StatusCode::OK, json!({})));
    assert_eq!(
        connection_limit(&admin, &database).await,
        None,
        "the database is gone"
    );
    assert!(
        session.simple_query("SELECT 1").await.is_err(),
        "its sessions were ended"
    );
    assert_eq!(
        snapshot(&admin).await,
        before,
        "no role, database or state row is left"
    );

    let (status, body) = broker.deprovision("inst").await;
    assert_eq!((status, body), (StatusCode::GONE, json!({})));
    let (status, _) = broker
        .call(
            Method::GET,
            "/v2/service_instances/inst/last_operation",
            None,
        )
        .await;
    assert_eq!(status, StatusCode::GONE);
    let (status, body) = broker.bind("inst", "b3").await;
    assert_osb_error(
        status,
        &body,
        StatusCode::NOT_FOUND,
        "binding a deleted instance",
    );

    // The id can be used again, for a fresh, empty database.
    assert_eq!(
        broker.provision("inst", "large").await.0,
        StatusCode::CREATED
    );
    assert_eq!(connection_limit(&admin, &database).await, Some(100));
}

#[tokio::test]
async fn hostile_input_gets_osb_errors_and_changes_nothing() {
    let pg = TestPostgres::start();
    let broker = start(config(&pg)).await;
    let admin = admin(&pg).await;
    assert_eq!(
        broker.provision("inst", "small").await.0,
        StatusCode::CREATED
    );
    let before = snapshot(&admin).await;

    let hostile = "x%22%3B%20DROP%20DATABASE%20postgres%3B%20--";
    let good_body = json!({"service_id": offering_id(), "plan_id": plan_id("small")});
    let cases: Vec<(&str, Method, String, Option<Value>, StatusCode)> = vec![
        (
            "hostile instance id",
            Method::PUT,
            format!("/v2/service_instances/{hostile}"),
            Some(good_body.clone()),
            StatusCode::BAD_REQUEST,
        ),
        (
            "hostile id, update",
            Method::PATCH,
            format!("/v2/service_instances/{hostile}"),
            Some(good_body.clone()),
            StatusCode::BAD_REQUEST,
        ),
        (
            "hostile id, delete",
            Method::DELETE,
            format!(
                "/v2/service_instances/{hostile}?service_id={}&plan_id=p",
                offering_id()
            ),
            None,
            StatusCode::BAD_REQUEST,
        ),
        (
            "hostile binding id",
            Method::PUT,
            format!("/v2/service_instances/inst/service_bindings/{hostile}"),
            Some(good_body.clone()),
            StatusCode::BAD_REQUEST,
        ),
        (
            "quote in id",
            Method::PUT,
            "/v2/service_instances/a'b".to_string(),
            Some(good_body.clone()),
            StatusCode::BAD_REQUEST,
        ),
        (
            "overlong id",
            Method::PUT,
            format!("/v2/service_instances/{}", "a".repeat(200)),
            Some(good_body.clone()),
            StatusCode::BAD_REQUEST,
        ),
        (
            "unknown plan",
            Method::PUT,
            "/v2/service_instances/new".to_string(),
            Some(json!({"service_id": offering_id(), "plan_id": "'; DROP DATABASE postgres; --"})),
            StatusCode::BAD_REQUEST,
        ),
        (
            "unknown service",
            Method::PUT,
            "/v2/service_instances/new".to_string(),
            Some(json!({"service_id": "mysql", "plan_id": plan_id("small")})),
            StatusCode::BAD_REQUEST,
        ),
        (
            "missing plan",
            Method::PUT,
            "/v2/service_instances/new".to_string(),
            Some(json!({"service_id": offering_id()})),
            StatusCode::BAD_REQUEST,
        ),
        (
            "parameters",
            Method::PUT,
            "/v2/service_instances/new".to_string(),
            Some(
                json!({"service_id": offering_id(), "plan_id": plan_id("small"), "parameters": {"connection_limit": 10000}}),
            ),
            StatusCode::BAD_REQUEST,
        ),
        (
            "wrong JSON type",
            Method::PUT,
            "/v2/service_instances/new".to_string(),
            Some(json!([1, 2])),
            StatusCode::BAD_REQUEST,
        ),
        (
            "bind to unknown instance",
            Method::PUT,
            "/v2/service_instances/nope/service_bindings/b".to_string(),
            Some(good_body.clone()),
            StatusCode::NOT_FOUND,
        ),
        (
            "bind with unknown plan",
            Method::PUT,
            "/v2/service_instances/inst/service_bindings/b".to_string(),
            Some(json!({"service_id": offering_id(), "plan_id": "zzz"})),
            StatusCode::BAD_REQUEST,
        ),
        (
            "delete without service_id",
            Method::DELETE,
            "/v2/service_instances/inst".to_string(),
            None,
            StatusCode::BAD_REQUEST,
        ),
        (
            "unbind without plan_id",
            Method::DELETE,
            format!(
                "/v2/service_instances/inst/service_bindings/b?service_id={}",
                offering_id()
            ),
            None,
            StatusCode::BAD_REQUEST,
        ),
        (
            "unknown endpoint",
            Method::GET,
            "/v2/nothing".to_string(),
            None,
            StatusCode::NOT_FOUND,
        ),
        (
            "wrong method",
            Method::POST,
            "/v2/catalog".to_string(),
            None,
            StatusCode::METHOD_NOT_ALLOWED,
        ),
    ];
    for (what, method, path, body, expected) in cases {
        let (status, answer) = broker.call(method, &path, body).await;
        assert_osb_error(status, &answer, expected, what);
    }

    // Bodies that are not JSON at all.
    for raw in ["{not json", "", "\u{0}\u{1}"] {
        let (status, body) = answer(
            broker
                .http
                .put(format!("{}/v2/service_instances/new", broker.base))
                .basic_auth(USER, Some(PASSWORD))
                .header("X-Broker-API-Version", "2.15")
                .header("Content-Type", "application/json")
                .body(raw),
        )
        .await;
        assert_osb_error(
            status,
            &body,
            StatusCode::BAD_REQUEST,
            &format!("body {raw:?}"),
        );
    }
    let (status, body) = answer(
        broker
            .http
            .put(format!("{}/v2/service_instances/new", broker.base))
            .basic_auth(USER, Some(PASSWORD))
            .header("X-Broker-API-Version", "2.15")
            .body(vec![b'x'; 128 * 1024]),
    )
    .await;
    assert_osb_error(
        status,
        &body,
        StatusCode::PAYLOAD_TOO_LARGE,
        "a 128 KiB body",
    );

    assert_eq!(snapshot(&admin).await, before, "nothing changed");
    assert_eq!(
        broker.provision("inst", "small").await.0,
        StatusCode::OK,
        "the broker still serves"
    );
}

#[tokio::test]
async fn a_restarted_broker_keeps_its_instances_and_bindings() {
    let pg = TestPostgres::start();
    let admin = admin(&pg).await;
    let first = start(config(&pg)).await;
    assert_eq!(
        first.provision("inst", "small").await.0,
        StatusCode::CREATED
    );
    let (status, bound) = first.bind("inst", "b").await;
    assert_eq!(status, StatusCode::CREATED);
    let database = text(&creds(&bound)["name"]).to_string();
    drop(first);

    // The restarted broker advertises another address.
    let mut moved = config(&pg);
    moved.advertised_host = "10.9.8.7".into();
    moved.advertised_port = 6543;
    let second = start(moved).await;
    assert_eq!(
        second.provision("inst", "small").await.0,
        StatusCode::OK,
        "still known"
    );
    assert_eq!(
        second.provision("inst", "large").await.0,
        StatusCode::CONFLICT,
        "plan remembered"
    );
    let (status, again) = second.bind("inst", "b").await;
    assert_eq!(status, StatusCode::OK, "{again}");
    let (c1, c2) = (creds(&bound), creds(&again));
    assert_eq!(
        (&c2["username"], &c2["password"]),
        (&c1["username"], &c1["password"])
    );
    assert_eq!(
        (&c2["hostname"], &c2["port"]),
        (&json!("10.9.8.7"), &json!(6543))
    );
    assert!(text(&c2["uri"]).contains("@10.9.8.7:6543/"), "{c2}");
    connect(text(&c1["uri"]))
        .await
        .expect("the old credentials still work");

    assert_eq!(second.update("inst", "large").await.0, StatusCode::OK);
    assert_eq!(connection_limit(&admin, &database).await, Some(100));
    assert_eq!(second.unbind("inst", "b").await.0, StatusCode::OK);
    assert_eq!(second.deprovision("inst").await.0, StatusCode::OK);
    assert_eq!(connection_limit(&admin, &database).await, None);
}

#[tokio::test]
async fn the_broker_reconnects_after_postgresql_restarts() {
    let mut pg = TestPostgres::start();
    let broker = start(config(&pg)).await;
    assert_eq!(
        broker.provision("before", "small").await.0,
        StatusCode::CREATED
    );
    pg.restart();
    let (status, body) = broker.provision("after", "small").await;
    assert_eq!(status, StatusCode::CREATED, "{body}\n{}", pg.log());
    let (status, bound) = broker.bind("before", "b").await;
    assert_eq!(status, StatusCode::CREATED, "{bound}");
    connect(text(&creds(&bound)["uri"]))
        .await
        .expect("the credentials work");
}

#[tokio::test]
async fn a_broker_without_a_reachable_superuser_does_not_start() {
    let pg = TestPostgres::start();
    let admin = admin(&pg).await;
    admin
        .batch_execute("CREATE ROLE weak LOGIN PASSWORD 'weak-password' CREATEDB CREATEROLE")
        .await
        .expect("create a non-superuser");
    let mut weak = config(&pg);
    weak.admin_url = pg.url("weak", "weak-password", "postgres");
    let e = PostgresBroker::connect(weak).await.expect_err("refused");
    assert!(e.to_string().contains("not a superuser"), "{e}");

    let mut bad = config(&pg);
    bad.admin_url = pg.url("weak", "wrong-password", "postgres");
    let e = PostgresBroker::connect(bad).await.expect_err("refused");
    let message = e.to_string();
    assert!(
        message.contains(&format!("127.0.0.1:{}", pg.port())),
        "{message}"
    );
    assert!(
        !message.contains("wrong-password"),
        "the password is not shown: {message}"
    );

    let mut no_plans = config(&pg);
    no_plans.plans.clear();
    assert!(PostgresBroker::connect(no_plans).await.is_err());
}
