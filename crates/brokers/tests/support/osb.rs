//! Shared code of the OSB client tests: starts the Python test brokers
//! (written with the PyPI `openbrokerapi` package, in `tests/brokers/`) on a
//! free loopback port, reads the calls they recorded, and kills them when
//! the test ends, however it ends.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ingot_brokers::osb::{
    BrokerClient, BrokerEndpoint, ClientConfig, Context, OriginatingIdentity,
};
use serde_json::Value;

/// Basic-auth user the test brokers accept.
pub const USERNAME: &str = "broker-user";
/// Basic-auth password the test brokers accept.
pub const PASSWORD: &str = "broker-pass";

/// The venv with `openbrokerapi`: `$INGOT_TEST_PYTHON`, else the one the
/// workspace's test setup creates under `target/test-python`.
pub fn python() -> PathBuf {
    match std::env::var_os("INGOT_TEST_PYTHON") {
        Some(path) => PathBuf::from(path),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/test-python/bin/python"),
    }
}

/// A running Python broker; killed on drop.
pub struct PythonBroker {
    child: Child,
    dir: tempfile::TempDir,
    /// Where it listens and how to log in.
    pub endpoint: BrokerEndpoint,
}

impl PythonBroker {
    /// Starts `tests/brokers/<script>` and waits until it serves its catalog.
    pub async fn start(script: &str) -> PythonBroker {
        let dir = tempfile::tempdir().expect("temp dir");
        let log = dir.path().join("calls.jsonl");
        let stderr = std::fs::File::create(dir.path().join("stderr.log")).expect("stderr file");
        let script_path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/brokers")
            .join(script);
        let python = python();
        let mut child = Command::new(&python)
            .arg(&script_path)
            .args(["--log"])
            .arg(&log)
            .args(["--username", USERNAME, "--password", PASSWORD])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "starting {} {}: {e}",
                    python.display(),
                    script_path.display()
                )
            });
        // From here on the guard owns the process, so a failed wait kills it.
        let stdout = child.stdout.take().expect("piped stdout");
        let mut broker = PythonBroker {
            child,
            dir,
            endpoint: BrokerEndpoint {
                url: String::new(),
                username: USERNAME.into(),
                password: PASSWORD.into(),
            },
        };
        let line = tokio::task::spawn_blocking(move || {
            let mut line = String::new();
            BufReader::new(stdout).read_line(&mut line).map(|_| line)
        })
        .await
        .expect("reader task")
        .expect("broker stdout");
        let port: u16 = line
            .trim()
            .strip_prefix("PORT ")
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| {
                panic!(
                    "{script} did not print its port: {line:?}\n{}",
                    broker.stderr()
                )
            });
        broker.endpoint.url = format!("http://127.0.0.1:{port}");
        broker.wait_ready(script).await;
        broker
    }

    /// Polls the catalog until the broker answers 200.
    async fn wait_ready(&self, script: &str) {
        let client = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let answer = client
                .get(format!("{}/v2/catalog", self.endpoint.url))
                .basic_auth(USERNAME, Some(PASSWORD))
                .header("X-Broker-API-Version", "2.15")
                .timeout(Duration::from_secs(2))
                .send()
                .await;
            if matches!(&answer, Ok(r) if r.status() == 200) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{script} not ready: {answer:?}\n{}",
                self.stderr()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // The readiness probe is not part of what tests check.
        let _ = std::fs::remove_file(self.log_path());
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("calls.jsonl")
    }

    /// What the broker wrote to stderr, for failure messages.
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("stderr.log")).unwrap_or_default()
    }

    /// Every call the broker received so far, in order.
    pub fn calls(&self) -> Vec<Value> {
        let text = std::fs::read_to_string(self.log_path()).unwrap_or_default();
        text.lines()
            .map(|line| serde_json::from_str(line).expect("broker log line is JSON"))
            .collect()
    }

    /// The calls received with this method whose path is `path`.
    pub fn calls_to(&self, method: &str, path: &str) -> Vec<Value> {
        self.calls()
            .into_iter()
            .filter(|c| c["method"] == method && c["path"] == path)
            .collect()
    }

    /// The one call with this method and path; fails listing all calls otherwise.
    pub fn only_call(&self, method: &str, path: &str) -> Value {
        let calls = self.calls_to(method, path);
        assert_eq!(
            calls.len(),
            1,
            "expected one {method} {path}, broker saw: {:#?}",
            self.calls()
        );
        calls.into_iter().next().expect("one call")
    }
}

impl Drop for PythonBroker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A client with a short timeout, as tests use.
pub fn client() -> BrokerClient {
    BrokerClient::new(ClientConfig {
        timeout: Duration::from_secs(10),
        max_response_bytes: 1024 * 1024,
    })
    .expect("client")
}

/// The user on whose behalf the tests act.
pub fn user() -> OriginatingIdentity {
    OriginatingIdentity {
        user_id: "user-guid-1".into(),
    }
}

/// The CF context the tests send.
pub fn context(instance_name: &str) -> Context {
    Context {
        platform: "cloudfoundry".into(),
        organization_guid: "org-guid".into(),
        space_guid: "space-guid".into(),
        organization_name: Some("org".into()),
        space_name: Some("space".into()),
        instance_name: Some(instance_name.into()),
    }
}

/// Checks the headers every call must carry, as the broker recorded them.
pub fn assert_osb_headers(call: &Value, with_identity: bool) {
    assert_eq!(call["api_version"], "2.15", "{call:#}");
    assert_eq!(call["auth_user"], USERNAME, "{call:#}");
    assert_eq!(call["auth_password"], PASSWORD, "{call:#}");
    let request_id = call["request_identity"].as_str().unwrap_or_default();
    assert!(uuid::Uuid::parse_str(request_id).is_ok(), "{call:#}");
    if with_identity {
        assert_eq!(
            call["originating_identity"],
            serde_json::json!({"platform": "cloudfoundry", "value": {"user_id": "user-guid-1"}}),
            "{call:#}"
        );
    } else {
        assert_eq!(call["originating_identity"], Value::Null, "{call:#}");
    }
}
