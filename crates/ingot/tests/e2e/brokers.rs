//! The marketplace with real Open Service Brokers written with the PyPI
//! `openbrokerapi` package (the brokers of `crates/brokers/tests/brokers`):
//! one synchronous, one asynchronous. Every step is checked on the broker's
//! side, in the log of calls it received.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::platform::Platform;

/// A broker process, killed on drop.
pub struct Broker {
    child: Child,
    pub url: String,
    log: PathBuf,
}

impl Broker {
    pub fn start(script: &str, work: &Path) -> Broker {
        let python = std::env::var("INGOT_TEST_PYTHON").unwrap_or_else(|_| {
            concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../../target/test-python/bin/python"
            )
            .to_string()
        });
        let script = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../brokers/tests/brokers")
            .join(script);
        let log = work.join(format!(
            "{}.calls.jsonl",
            script
                .file_stem()
                .and_then(|s| s.to_str())
                .unwrap_or("broker")
        ));
        let mut child = Command::new(&python)
            .arg(&script)
            .args(["--log", log.to_str().expect("utf-8")])
            .args(["--username", "broker-user", "--password", "broker-pass"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("start {} with {python}: {e}", script.display()));
        let stdout = child.stdout.take().expect("broker stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("read the broker's port");
        let port: u16 = line
            .trim()
            .strip_prefix("PORT ")
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("broker {} said {line:?}", script.display()));
        Broker {
            child,
            url: format!("http://127.0.0.1:{port}"),
            log,
        }
    }

    /// Every call the broker received, in order.
    pub fn calls(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// The calls with this method whose path contains `fragment`.
    pub fn calls_to(&self, method: &str, fragment: &str) -> Vec<Value> {
        self.calls()
            .into_iter()
            .filter(|c| {
                c["method"] == method && c["path"].as_str().is_some_and(|p| p.contains(fragment))
            })
            .collect()
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn instance_guid(platform: &Platform, name: &str) -> String {
    let (_, list) = platform.api("GET", &format!("/v3/service_instances?names={name}"), None);
    list["resources"][0]["guid"]
        .as_str()
        .unwrap_or_else(|| panic!("service instance {name}: {list}"))
        .to_string()
}

fn probe_services(platform: &Platform) -> Value {
    let (_, body) = platform.get_app("probe.apps.localhost", "/");
    let report: Value = serde_json::from_str(&body).expect("probe report");
    report["vcap_services"].clone()
}

pub fn marketplace_with_real_brokers(platform: &Platform, work: &Path) {
    let sync = Broker::start("sync_broker.py", work);
    let slow = Broker::start("async_broker.py", work);
    for (name, broker) in [("sync-broker", &sync), ("async-broker", &slow)] {
        platform.cli(&[
            "create-service-broker",
            name,
            "broker-user",
            "broker-pass",
            &broker.url,
        ]);
    }
    let brokers = platform.cli(&["service-brokers"]);
    assert!(
        brokers.contains("sync-broker") && brokers.contains("async-broker"),
        "{brokers}"
    );
    assert!(
        !sync.calls_to("GET", "/v2/catalog").is_empty(),
        "the catalog was fetched"
    );
    platform.cli(&["enable-service-access", "sync-db"]);
    platform.cli(&["enable-service-access", "async-db"]);
    let market = platform.cli(&["marketplace"]);
    for word in ["sync-db", "async-db", "small", "large", "standard"] {
        assert!(market.contains(word), "marketplace lacks {word}:\n{market}");
    }

    // Create, synchronously: the broker got the plan and who asked.
    platform.cli(&["create-service", "sync-db", "small", "db1", "--wait"]);
    let db1 = instance_guid(platform, "db1");
    let provisions = sync.calls_to("PUT", &format!("/v2/service_instances/{db1}"));
    assert_eq!(provisions.len(), 1, "{:?}", sync.calls());
    assert_eq!(provisions[0]["body"]["plan_id"], "sync-small");
    assert_eq!(provisions[0]["auth_user"], "broker-user");
    assert!(
        provisions[0]["originating_identity"]["value"]["user_id"].is_string(),
        "{}",
        provisions[0]
    );

    // Bind: after a restart the app sees the credentials in VCAP_SERVICES.
    platform.cli(&["bind-service", "probe", "db1"]);
    assert_eq!(
        sync.calls_to(
            "PUT",
            &format!("/v2/service_instances/{db1}/service_bindings/")
        )
        .len(),
        1
    );
    platform.cli(&["restart", "probe"]);
    platform.wait_for("the probe to see db1", Duration::from_secs(60), || {
        probe_services(platform)["sync-db"][0]["name"] == "db1"
    });
    let services = probe_services(platform);
    let entry = &services["sync-db"][0];
    assert_eq!(entry["plan"], "small", "{services}");
    assert_eq!(entry["credentials"]["password"], "secret", "{services}");
    assert!(
        entry["tags"]
            .as_array()
            .is_some_and(|t| t.iter().any(|t| t == "sync")),
        "{services}"
    );

    // Update the plan: the broker sees the new plan and the previous one.
    platform.cli(&["update-service", "db1", "-p", "large", "--wait"]);
    let updates = sync.calls_to("PATCH", &format!("/v2/service_instances/{db1}"));
    assert_eq!(updates.len(), 1, "{:?}", sync.calls());
    assert_eq!(updates[0]["body"]["plan_id"], "sync-large");
    assert_eq!(
        updates[0]["body"]["previous_values"]["plan_id"],
        "sync-small"
    );
    let shown = platform.cli(&["service", "db1"]);
    assert!(shown.contains("large"), "{shown}");

    // A plan that is not updateable: refused before the broker hears of it.
    platform.cli(&["create-service", "sync-db", "fixed", "db2", "--wait"]);
    let db2 = instance_guid(platform, "db2");
    let refused = platform.cli_fails(&["update-service", "db2", "-p", "small"]);
    assert!(
        refused.contains("does not support changing plans"),
        "{refused}"
    );
    assert!(sync
        .calls_to("PATCH", &format!("/v2/service_instances/{db2}"))
        .is_empty());

    // A service key: a binding without an app, its credentials on demand.
    platform.cli(&["create-service-key", "db1", "k1", "--wait"]);
    let key = platform.cli(&["service-key", "db1", "k1"]);
    assert!(key.contains("secret"), "{key}");
    let key_binds: Vec<Value> = sync
        .calls_to(
            "PUT",
            &format!("/v2/service_instances/{db1}/service_bindings/"),
        )
        .into_iter()
        .filter(|c| c["body"]["app_guid"].is_null())
        .collect();
    assert_eq!(key_binds.len(), 1, "{:?}", sync.calls());

    // Asynchronously: the platform polls last_operation until it succeeds.
    platform.cli(&["create-service", "async-db", "standard", "adb", "--wait"]);
    let adb = instance_guid(platform, "adb");
    assert!(
        !slow
            .calls_to(
                "GET",
                &format!("/v2/service_instances/{adb}/last_operation")
            )
            .is_empty(),
        "{:?}",
        slow.calls()
    );
    let shown = platform.cli(&["service", "adb"]);
    assert!(shown.contains("succeeded"), "{shown}");

    // Unbind, delete the key and the instances: each reaches its broker.
    platform.cli(&["unbind-service", "probe", "db1"]);
    platform.cli(&["delete-service-key", "db1", "k1", "-f", "--wait"]);
    assert_eq!(
        sync.calls_to(
            "DELETE",
            &format!("/v2/service_instances/{db1}/service_bindings/")
        )
        .len(),
        2,
        "{:?}",
        sync.calls()
    );
    platform.cli(&["delete-service", "db1", "-f", "--wait"]);
    platform.cli(&["delete-service", "db2", "-f", "--wait"]);
    platform.cli(&["delete-service", "adb", "-f", "--wait"]);
    for (broker, guid) in [(&sync, &db1), (&sync, &db2), (&slow, &adb)] {
        assert_eq!(
            broker
                .calls_to("DELETE", &format!("/v2/service_instances/{guid}"))
                .into_iter()
                .filter(|c| !c["path"]
                    .as_str()
                    .unwrap_or("")
                    .contains("service_bindings"))
                .count(),
            1,
            "{:?}",
            broker.calls()
        );
    }
    let services = platform.cli(&["services"]);
    for name in ["db1", "db2", "adb"] {
        assert!(!services.contains(name), "{services}");
    }
    roles_decide_who_may_use_the_marketplace(platform, work, &sync);
    platform.cli(&["restart", "probe"]);
    platform.wait_for("the probe to lose db1", Duration::from_secs(60), || {
        probe_services(platform).get("sync-db").is_none()
    });
}

/// A space developer does all of it in their space; an auditor only reads;
/// a user of no space sees nothing.
fn roles_decide_who_may_use_the_marketplace(platform: &Platform, work: &Path, sync: &Broker) {
    for (user, role) in [
        ("svc-dev", Some("SpaceDeveloper")),
        ("svc-auditor", Some("SpaceAuditor")),
        ("svc-outsider", None),
    ] {
        platform.cli(&["create-user", user, "svc-pw-1"]);
        if let Some(role) = role {
            platform.cli(&["set-space-role", user, "main", "dev", role]);
        }
    }
    let login = |user: &str| {
        let home = work.join(format!("cli-{user}"));
        platform.cli_in(
            &home,
            &[
                "login",
                "-a",
                &platform.api_url,
                "-u",
                user,
                "-p",
                "svc-pw-1",
            ],
        );
        home
    };
    let developer = login("svc-dev");
    let market = platform.cli_in(&developer, &["marketplace"]);
    assert!(market.contains("sync-db"), "{market}");
    platform.cli_in(
        &developer,
        &["create-service", "sync-db", "small", "devdb", "--wait"],
    );
    platform.cli_in(
        &developer,
        &["create-service-key", "devdb", "devkey", "--wait"],
    );
    let key = platform.cli_in(&developer, &["service-key", "devdb", "devkey"]);
    assert!(key.contains("secret"), "{key}");
    let devdb = instance_guid(platform, "devdb");
    let provisions = sync
        .calls_to("PUT", &format!("/v2/service_instances/{devdb}"))
        .into_iter()
        .filter(|c| c["path"] == format!("/v2/service_instances/{devdb}"))
        .count();
    assert_eq!(provisions, 1, "the developer's create reached the broker");

    let auditor = login("svc-auditor");
    let listed = platform.cli_in(&auditor, &["services"]);
    assert!(listed.contains("devdb"), "an auditor reads: {listed}");
    let refused =
        platform.cli_fails_in(&auditor, &["create-service", "sync-db", "small", "auditdb"]);
    assert!(refused.contains("not authorized"), "{refused}");
    let refused = platform.cli_fails_in(&auditor, &["service-key", "devdb", "devkey"]);
    assert!(!refused.is_empty(), "an auditor reads no credentials");

    let outsider = platform.token_for("svc-outsider", "svc-pw-1");
    let (status, list) = {
        let response = reqwest::blocking::Client::new()
            .get(format!("{}/v3/service_instances", platform.api_url))
            .bearer_auth(&outsider)
            .send()
            .expect("request");
        let status = response.status().as_u16();
        (status, response.json::<Value>().unwrap_or(Value::Null))
    };
    assert_eq!(status, 200, "{list}");
    assert_eq!(list["pagination"]["total_results"], 0, "{list}");

    platform.cli_in(
        &developer,
        &["delete-service-key", "devdb", "devkey", "-f", "--wait"],
    );
    platform.cli_in(&developer, &["delete-service", "devdb", "-f", "--wait"]);
    assert!(sync
        .calls_to("DELETE", &format!("/v2/service_instances/{devdb}"))
        .iter()
        .any(|c| !c["path"]
            .as_str()
            .unwrap_or("")
            .contains("service_bindings")));
}
