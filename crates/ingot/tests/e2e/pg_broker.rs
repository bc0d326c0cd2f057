//! The built-in PostgreSQL broker against a real PostgreSQL the test
//! starts: the database listens on an address of the host that apps reach
//! only once a security group allows it, as a CF operator would set it up.
//! An app binds, connects with its credentials and stores a row; a plan
//! update changes the connection limit in place and keeps the data; after
//! unbinding, the credentials no longer work.

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::pg::TestPostgres;
use crate::platform::Platform;

/// The host address the database listens on (on a veth pair the test
/// adds: the kernel here has no dummy links), outside the container network.
pub const DB_ADDRESS: Ipv4Addr = Ipv4Addr::new(10, 252, 0, 1);
const DB_LINK: &str = "e2epg0";
const DB_PEER: &str = "e2epg1";

/// The link holding [`DB_ADDRESS`], removed on drop.
pub struct DbAddress;

impl DbAddress {
    pub fn add() -> DbAddress {
        let _ = Command::new("ip")
            .args(["link", "del", DB_LINK])
            .stderr(std::process::Stdio::null())
            .status();
        for args in [
            vec![
                "link", "add", DB_LINK, "type", "veth", "peer", "name", DB_PEER,
            ],
            vec!["addr", "add", "10.252.0.1/32", "dev", DB_LINK],
            vec!["link", "set", DB_LINK, "up"],
            vec!["link", "set", DB_PEER, "up"],
        ] {
            let status = Command::new("ip").args(&args).status().expect("run ip");
            assert!(status.success(), "ip {}", args.join(" "));
        }
        DbAddress
    }
}

impl Drop for DbAddress {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["link", "del", DB_LINK]).status();
    }
}

/// Starts the database on loopback and [`DB_ADDRESS`]; returns it and the
/// `ingot up` flags that run the built-in broker against it.
pub fn start_database() -> (TestPostgres, Vec<String>) {
    let pg = TestPostgres::start_on(&[IpAddr::V4(DB_ADDRESS)]);
    let flags = vec![
        "--postgres-broker-admin-url".to_string(),
        pg.admin_url(),
        "--postgres-broker-host".to_string(),
        DB_ADDRESS.to_string(),
        "--postgres-broker-port".to_string(),
        pg.port().to_string(),
    ];
    (pg, flags)
}

/// Runs SQL as the superuser with `psql`; returns its unaligned output.
fn psql_admin(pg: &TestPostgres, sql: &str) -> String {
    let psql = crate::pg::bin_dir()
        .expect("postgres binaries")
        .join("psql");
    let out = Command::new(psql)
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &pg.port().to_string(),
            "-U",
            "postgres",
        ])
        .args(["-d", "postgres", "-Atc", sql])
        .output()
        .expect("run psql");
    assert!(
        out.status.success(),
        "psql: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Whether `uri`'s user can log in (psql with the password from the URI).
fn can_log_in(uri: &str) -> bool {
    let psql = crate::pg::bin_dir()
        .expect("postgres binaries")
        .join("psql");
    let out = Command::new(psql)
        .arg(uri)
        .args(["-Atc", "select 1"])
        .output()
        .expect("run psql");
    out.status.success()
}

fn wheels() -> PathBuf {
    std::env::var("INGOT_TEST_WHEELS")
        .map(PathBuf::from)
        .unwrap_or_else(|_| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/test-wheels"))
}

fn app_dir(work: &Path) -> PathBuf {
    let dir = work.join("pgapp");
    let vendor = dir.join("vendor");
    std::fs::create_dir_all(&vendor).expect("vendor dir");
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/pg-app");
    for file in ["app.py", "requirements.txt"] {
        std::fs::copy(fixture.join(file), dir.join(file)).expect("copy the app");
    }
    let mut copied = 0;
    for entry in
        std::fs::read_dir(wheels()).expect("the test wheels (scripts/test.sh fetches them)")
    {
        let path = entry.expect("wheel").path();
        if path.extension().is_some_and(|e| e == "whl") {
            std::fs::copy(&path, vendor.join(path.file_name().expect("name"))).expect("copy wheel");
            copied += 1;
        }
    }
    assert!(copied > 0, "no wheels in {}", wheels().display());
    dir
}

pub fn an_app_keeps_rows_in_a_brokered_database(
    platform: &Platform,
    work: &Path,
    pg: &TestPostgres,
) {
    let market = platform.cli(&["marketplace"]);
    assert!(
        market.contains("postgresql") && market.contains("small") && market.contains("medium"),
        "{market}"
    );

    // The operator opens the database's address to the space.
    let rules = work.join("pg-rules.json");
    std::fs::write(
        &rules,
        format!(
            r#"[{{"protocol":"tcp","destination":"{DB_ADDRESS}","ports":"{}","description":"PostgreSQL"}}]"#,
            pg.port()
        ),
    )
    .expect("write rules");
    platform.cli(&[
        "create-security-group",
        "pg-access",
        rules.to_str().expect("utf-8"),
    ]);
    platform.cli(&["bind-security-group", "pg-access", "main", "--space", "dev"]);

    platform.cli(&["create-service", "postgresql", "small", "pgdb", "--wait"]);
    let (_, list) = platform.api("GET", "/v3/service_instances?names=pgdb", None);
    let instance = list["resources"][0]["guid"]
        .as_str()
        .expect("pgdb")
        .to_string();
    let limit_of = |pg: &TestPostgres| {
        psql_admin(
            pg,
            "select datconnlimit from pg_database where datname like 'ingot\\_%' order by oid desc limit 1",
        )
    };
    assert_eq!(limit_of(pg), "5", "the small plan's connection limit");

    let dir = app_dir(work);
    platform.cli(&[
        "push",
        "pgapp",
        "-p",
        dir.to_str().expect("utf-8"),
        "-m",
        "128M",
    ]);
    platform.cli(&["bind-service", "pgapp", "pgdb"]);
    platform.cli(&["restart", "pgapp"]);
    let (status, body) = platform.get_app("pgapp.apps.localhost", "/write?value=first");
    assert_eq!(
        (status, body.as_str()),
        (200, "1"),
        "\n--- platform log ---\n{}",
        platform.log_text()
    );

    // A bigger plan: the limit changes in place, the row is still there.
    platform.cli(&["update-service", "pgdb", "-p", "medium", "--wait"]);
    assert_eq!(limit_of(pg), "20");
    let (status, rows) = platform.get_app("pgapp.apps.localhost", "/rows");
    assert_eq!((status, rows.as_str()), (200, "first"));

    // Unbinding revokes the login the app was given.
    let (_, bindings) = platform.api(
        "GET",
        &format!("/v3/service_credential_bindings?service_instance_guids={instance}&type=app"),
        None,
    );
    let binding = bindings["resources"][0]["guid"]
        .as_str()
        .expect("binding")
        .to_string();
    let (_, details) = platform.api(
        "GET",
        &format!("/v3/service_credential_bindings/{binding}/details"),
        None,
    );
    let uri = details["credentials"]["uri"]
        .as_str()
        .expect("uri")
        .to_string();
    let loopback_uri = uri.replace(&DB_ADDRESS.to_string(), "127.0.0.1");
    assert!(can_log_in(&loopback_uri), "the bound credentials work");
    platform.cli(&["unbind-service", "pgapp", "pgdb"]);
    platform.wait_for(
        "the credentials to stop working",
        Duration::from_secs(30),
        || !can_log_in(&loopback_uri),
    );
    let (status, body) = platform.get_app("pgapp.apps.localhost", "/write?value=second");
    assert_eq!(status, 500, "the app's old credentials are refused: {body}");

    platform.cli(&["delete", "pgapp", "-f"]);
    platform.cli(&["delete-service", "pgdb", "-f", "--wait"]);
    assert_eq!(
        psql_admin(
            pg,
            "select count(*) from pg_database where datname like 'ingot\\_%'"
        ),
        "0",
        "deleting the service drops its database"
    );
}
