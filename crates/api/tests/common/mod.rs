//! Test harness: the API over a temp-file SQLite database and a local
//! blobstore in a temporary directory, with a token validator that knows a
//! few fixed tokens and a runtime that records what it is asked to do.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use ingot_api::{
    Api, ApiConfig, DesiredProcess, InstanceReport, Principal, Runtime, StageFailure, StageOutcome,
    StageRequest, TaskRejected, TaskRequest, TokenProblem, TokenValidator,
};
use ingot_blobstore::{Blobstore, LocalBlobstore};
use serde_json::Value;
use tower::ServiceExt;

pub const ADMIN: &str = "bearer admin-token";
pub const USER: &str = "bearer user-token";
pub const EXPIRED: &str = "bearer expired-token";
/// `cloud_controller.read` and `cloud_controller.write`, without admin.
pub const WRITER: &str = "bearer writer-token";
/// `cloud_controller.admin_read_only` only.
pub const ADMIN_READ_ONLY: &str = "bearer admin-read-only-token";
/// `cloud_controller.global_auditor` only.
pub const AUDITOR: &str = "bearer auditor-token";
/// A valid token without any `cloud_controller` scope.
pub const NO_SCOPES: &str = "bearer no-scopes-token";

fn principal(name: &str, scopes: &[&str]) -> Principal {
    Principal {
        user_guid: format!("{name}-guid"),
        user_name: name.into(),
        scopes: scopes.iter().map(|s| s.to_string()).collect(),
    }
}

pub struct Tokens;

impl TokenValidator for Tokens {
    fn validate(&self, authorization: Option<&str>) -> Result<Principal, TokenProblem> {
        match authorization {
            None => Err(TokenProblem::Missing),
            Some(ADMIN) => Ok(Principal {
                user_guid: "admin-guid".into(),
                user_name: "admin".into(),
                scopes: vec!["cloud_controller.admin".into(), "openid".into()],
            }),
            Some(USER) => Ok(Principal {
                user_guid: "user-guid".into(),
                user_name: "someone".into(),
                scopes: vec!["cloud_controller.read".into()],
            }),
            Some(WRITER) => Ok(principal(
                "writer",
                &["cloud_controller.read", "cloud_controller.write"],
            )),
            Some(ADMIN_READ_ONLY) => Ok(principal("reader", &["cloud_controller.admin_read_only"])),
            Some(AUDITOR) => Ok(principal("auditor", &["cloud_controller.global_auditor"])),
            Some(NO_SCOPES) => Ok(principal("nobody", &["openid", "uaa.user"])),
            Some(EXPIRED) => Err(TokenProblem::Expired),
            // `bearer as:<name>`: a user `<name>` (guid `<name>-guid`) with
            // the scopes every CF user has; what it may do is its roles'.
            Some(t) if t.starts_with("bearer as:") => Ok(principal(
                &t["bearer as:".len()..],
                &["cloud_controller.read", "cloud_controller.write"],
            )),
            Some(_) => Err(TokenProblem::Invalid),
        }
    }
}

/// The token server's users for tests: every name `<n>` has the guid
/// `<n>-guid`, except `ghost`, who does not exist.
pub struct Directory;

#[async_trait]
impl ingot_api::UserDirectory for Directory {
    async fn user_guid(&self, username: &str, _origin: Option<&str>) -> Option<String> {
        (username != "ghost").then(|| format!("{username}-guid"))
    }
    async fn username(&self, user_guid: &str) -> Option<String> {
        user_guid
            .strip_suffix("-guid")
            .filter(|n| *n != "ghost")
            .map(str::to_string)
    }
}

/// A call the runtime received.
#[derive(Debug, Clone, PartialEq)]
pub enum Call {
    Stage(StageRequest),
    Desire(DesiredProcess),
    Remove(String),
    RunTask(TaskRequest),
    CancelTask(String),
    /// `update_egress(process_guid, rules)`.
    UpdateEgress(String, Vec<ingot_api::EgressRule>),
}

pub struct FakeRuntime {
    pub calls: Mutex<Vec<Call>>,
    pub blobs: Arc<dyn Blobstore>,
    /// When set, staging fails with this.
    pub fail_staging: Mutex<Option<StageFailure>>,
    /// When set, `run_task` refuses every task.
    pub refuse_tasks: std::sync::atomic::AtomicBool,
    /// What `cancel_task` answers (whether the task was known).
    pub knows_tasks: std::sync::atomic::AtomicBool,
    /// Instances desired per process.
    pub desired: Mutex<BTreeMap<String, u32>>,
    /// When set, a desired process reports as many instances as desired
    /// (RUNNING unless `unhealthy` names it); otherwise every process
    /// reports one running instance.
    pub report_desired: std::sync::atomic::AtomicBool,
    /// Processes whose instances never become healthy.
    pub unhealthy: Mutex<Vec<String>>,
}

#[async_trait]
impl Runtime for FakeRuntime {
    async fn stage(&self, request: StageRequest) -> Result<StageOutcome, StageFailure> {
        self.calls
            .lock()
            .expect("lock")
            .push(Call::Stage(request.clone()));
        if let Some(f) = self.fail_staging.lock().expect("lock").clone() {
            return Err(f);
        }
        self.blobs
            .put_bytes(&request.droplet_key, b"droplet")
            .await
            .map_err(|e| StageFailure {
                code: "StagingError".into(),
                message: e.to_string(),
            })?;
        Ok(StageOutcome {
            detected_buildpack: "staticfile".into(),
            buildpack_name: "staticfile_buildpack".into(),
            process_types: BTreeMap::from([("web".into(), "./serve".into())]),
            checksum_sha256: "ab".repeat(32),
        })
    }

    async fn desire(&self, process: DesiredProcess) {
        self.desired
            .lock()
            .expect("lock")
            .insert(process.process_guid.clone(), process.instances);
        self.calls.lock().expect("lock").push(Call::Desire(process));
    }

    async fn remove(&self, process_guid: &str) {
        self.desired.lock().expect("lock").remove(process_guid);
        self.calls
            .lock()
            .expect("lock")
            .push(Call::Remove(process_guid.to_string()));
    }

    async fn run_task(&self, task: TaskRequest) -> Result<(), TaskRejected> {
        let guid = task.task_guid.clone();
        self.calls.lock().expect("lock").push(Call::RunTask(task));
        if self.refuse_tasks.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(TaskRejected {
                task_guid: guid,
                message: "refused by the test".into(),
            });
        }
        Ok(())
    }

    async fn cancel_task(&self, task_guid: &str) -> bool {
        self.calls
            .lock()
            .expect("lock")
            .push(Call::CancelTask(task_guid.to_string()));
        self.knows_tasks.load(std::sync::atomic::Ordering::SeqCst)
    }

    async fn update_egress(&self, process_guid: &str, egress: Vec<ingot_api::EgressRule>) {
        self.calls
            .lock()
            .expect("lock")
            .push(Call::UpdateEgress(process_guid.to_string(), egress));
    }

    fn instances(&self, process_guid: &str) -> Vec<InstanceReport> {
        let count = if self
            .report_desired
            .load(std::sync::atomic::Ordering::SeqCst)
        {
            self.desired
                .lock()
                .expect("lock")
                .get(process_guid)
                .copied()
                .unwrap_or(0)
        } else {
            1
        };
        let state = if self
            .unhealthy
            .lock()
            .expect("lock")
            .iter()
            .any(|p| p == process_guid)
        {
            "STARTING"
        } else {
            "RUNNING"
        };
        (0..count)
            .map(|index| self.instance(index, state))
            .collect()
    }
}

impl FakeRuntime {
    fn instance(&self, index: u32, state: &str) -> InstanceReport {
        InstanceReport {
            index,
            state: state.into(),
            instance_guid: format!("instance-{index}"),
            host: "10.254.0.2".into(),
            port: Some(8080),
            uptime_secs: 5,
            mem_bytes: 1024,
            disk_bytes: 2048,
            cpu: 0.5,
            details: None,
        }
    }
}

/// Keeps every envelope the API emits.
#[derive(Default)]
pub struct CaptureSink(pub Mutex<Vec<ingot_logs::Envelope>>);

impl ingot_logs::LogSink for CaptureSink {
    fn emit(&self, envelope: ingot_logs::Envelope) {
        self.0.lock().expect("lock").push(envelope);
    }
}

pub struct Harness {
    pub logs: Arc<CaptureSink>,
    pub api: Api,
    pub router: axum::Router,
    pub runtime: Arc<FakeRuntime>,
    pub blobs: Arc<dyn Blobstore>,
    pub pool: sqlx::SqlitePool,
    _dir: tempfile::TempDir,
}

pub const EXTERNAL: &str = "http://127.0.0.1:9000";

/// The buildpacks built into the lifecycle, in the order bootstrap makes them.
pub const BUILTIN_BUILDPACKS: [&str; 3] = [
    "staticfile_buildpack",
    "python_buildpack",
    "binary_buildpack",
];

impl Harness {
    pub async fn new() -> Harness {
        let dir = tempfile::tempdir().expect("tempdir");
        let options = sqlx::sqlite::SqliteConnectOptions::new()
            .filename(dir.path().join("ingot.db"))
            .create_if_missing(true)
            .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal);
        let pool = sqlx::sqlite::SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options)
            .await
            .expect("pool");
        let blobs: Arc<dyn Blobstore> =
            Arc::new(LocalBlobstore::open(dir.path().join("blobs")).expect("blobstore"));
        let runtime = Arc::new(FakeRuntime {
            calls: Mutex::new(Vec::new()),
            blobs: blobs.clone(),
            fail_staging: Mutex::new(None),
            refuse_tasks: std::sync::atomic::AtomicBool::new(false),
            knows_tasks: std::sync::atomic::AtomicBool::new(true),
            desired: Mutex::new(BTreeMap::new()),
            report_desired: std::sync::atomic::AtomicBool::new(false),
            unhealthy: Mutex::new(Vec::new()),
        });
        let config = ApiConfig {
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
        };
        let logs = Arc::new(CaptureSink::default());
        let api = Api::open(
            pool.clone(),
            blobs.clone(),
            logs.clone(),
            Arc::new(Tokens),
            runtime.clone(),
            config,
        )
        .await
        .expect("open");
        api.set_user_directory(Arc::new(Directory));
        api.bootstrap("admin-guid", "admin")
            .await
            .expect("bootstrap");
        let router = api.router();
        Harness {
            logs,
            api,
            router,
            runtime,
            blobs,
            pool,
            _dir: dir,
        }
    }

    pub async fn raw(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        content_type: &str,
        body: Vec<u8>,
    ) -> (StatusCode, axum::http::HeaderMap, Vec<u8>) {
        let mut req = Request::builder().method(method).uri(path);
        if let Some(t) = token {
            req = req.header("authorization", t);
        }
        if !body.is_empty() {
            req = req.header("content-type", content_type);
        }
        let response = self
            .router
            .clone()
            .oneshot(req.body(Body::from(body)).expect("request"))
            .await
            .expect("response");
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes()
            .to_vec();
        (status, headers, bytes)
    }

    /// A JSON call as admin (or with `token`); returns status and JSON body.
    pub async fn call_as(
        &self,
        token: Option<&str>,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let bytes = body
            .map(|b| serde_json::to_vec(&b).expect("json"))
            .unwrap_or_default();
        let (status, _, out) = self
            .raw(method, path, token, "application/json", bytes)
            .await;
        let value = if out.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&out)
                .unwrap_or(Value::String(String::from_utf8_lossy(&out).into_owned()))
        };
        (status, value)
    }

    pub async fn call(&self, method: &str, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        self.call_as(Some(ADMIN), method, path, body).await
    }

    pub async fn get(&self, path: &str) -> Value {
        let (status, body) = self.call("GET", path, None).await;
        assert_eq!(status, StatusCode::OK, "GET {path}: {body}");
        body
    }

    pub async fn space_guid(&self) -> String {
        let spaces = self.get("/v3/spaces?names=dev").await;
        spaces["resources"][0]["guid"]
            .as_str()
            .expect("space dev")
            .to_string()
    }

    /// Applies a manifest and returns the response status and job (if any).
    pub async fn apply_manifest(&self, space: &str, yaml: &str) -> (StatusCode, Value) {
        let (status, headers, body) = self
            .raw(
                "POST",
                &format!("/v3/spaces/{space}/actions/apply_manifest"),
                Some(ADMIN),
                "application/x-yaml",
                yaml.as_bytes().to_vec(),
            )
            .await;
        if status != StatusCode::ACCEPTED {
            return (status, serde_json::from_slice(&body).unwrap_or(Value::Null));
        }
        let location = headers
            .get("location")
            .expect("Location")
            .to_str()
            .expect("ascii")
            .to_string();
        let path = location.strip_prefix(EXTERNAL).expect("absolute location");
        (status, self.get(path).await)
    }

    pub async fn upload(
        &self,
        package: &str,
        zip: Option<Vec<u8>>,
        resources: Option<Value>,
    ) -> (StatusCode, Value) {
        let boundary = "XXingotboundaryXX";
        let mut body = Vec::new();
        if let Some(r) = resources {
            write!(
                body,
                "--{boundary}\r\nContent-Disposition: form-data; name=\"resources\"\r\n\r\n{r}\r\n"
            )
            .expect("write");
        }
        if let Some(z) = zip {
            write!(
                body,
                "--{boundary}\r\nContent-Disposition: form-data; name=\"bits\"; filename=\"app.zip\"\r\nContent-Type: application/zip\r\n\r\n"
            )
            .expect("write");
            body.extend_from_slice(&z);
            body.extend_from_slice(b"\r\n");
        }
        write!(body, "--{boundary}--\r\n").expect("write");
        let (status, _, out) = self
            .raw(
                "POST",
                &format!("/v3/packages/{package}/upload"),
                Some(ADMIN),
                &format!("multipart/form-data; boundary={boundary}"),
                body,
            )
            .await;
        (status, serde_json::from_slice(&out).unwrap_or(Value::Null))
    }

    /// Uploads `zip` as a new package of the app and stages it; returns the
    /// droplet's guid.
    pub async fn stage_droplet(&self, app: &str, zip: Vec<u8>) -> String {
        let (status, package) = self
            .call(
                "POST",
                "/v3/packages",
                Some(serde_json::json!({"type": "bits", "relationships": {"app": {"data": {"guid": app}}}})),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{package}");
        let package = package["guid"].as_str().expect("guid").to_string();
        let (status, body) = self.upload(&package, Some(zip), None).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        self.wait_for(&format!("/v3/packages/{package}"), "state", &["READY"])
            .await;
        let (status, build) = self
            .call(
                "POST",
                "/v3/builds",
                Some(serde_json::json!({"package": {"guid": package}})),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{build}");
        let guid = build["guid"].as_str().expect("guid");
        let build = self
            .wait_for(&format!("/v3/builds/{guid}"), "state", &["STAGED"])
            .await;
        build["droplet"]["guid"]
            .as_str()
            .expect("droplet")
            .to_string()
    }

    /// Polls `path` until `field` is one of `states`, returning the body.
    pub async fn wait_for(&self, path: &str, field: &str, states: &[&str]) -> Value {
        for _ in 0..500 {
            let body = self.get(path).await;
            if states.iter().any(|s| body[field] == *s) {
                return body;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("{path} never reached {states:?}: {}", self.get(path).await);
    }

    pub fn calls(&self) -> Vec<Call> {
        self.runtime.calls.lock().expect("lock").clone()
    }

    /// The first staging the runtime was asked for.
    pub fn first_stage(&self) -> StageRequest {
        self.calls()
            .into_iter()
            .find_map(|c| match c {
                Call::Stage(s) => Some(s),
                _ => None,
            })
            .expect("staged")
    }

    /// Every task the runtime was asked to run.
    pub fn task_runs(&self) -> Vec<TaskRequest> {
        self.calls()
            .into_iter()
            .filter_map(|c| match c {
                Call::RunTask(t) => Some(t),
                _ => None,
            })
            .collect()
    }

    pub fn desires(&self) -> Vec<DesiredProcess> {
        self.calls()
            .into_iter()
            .filter_map(|c| match c {
                Call::Desire(d) => Some(d),
                _ => None,
            })
            .collect()
    }
}

/// Builds a zip from (name, content) files.
pub fn zip_of(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut cursor = std::io::Cursor::new(Vec::new());
    {
        let mut zip = zip::ZipWriter::new(&mut cursor);
        let options = zip::write::SimpleFileOptions::default().unix_permissions(0o644);
        for (name, content) in files {
            zip.start_file(*name, options).expect("start");
            zip.write_all(content).expect("write");
        }
        zip.finish().expect("finish");
    }
    cursor.into_inner()
}

/// Builds a zip with one file and one symlink.
pub fn zip_with_link(link: &str, target: &str) -> Vec<u8> {
    let mut cursor = std::io::Cursor::new(Vec::new());
    {
        let mut zip = zip::ZipWriter::new(&mut cursor);
        let options = zip::write::SimpleFileOptions::default().unix_permissions(0o644);
        zip.start_file("index.html", options).expect("start");
        zip.write_all(b"hi").expect("write");
        zip.add_symlink(link, target, options).expect("link");
        zip.finish().expect("finish");
    }
    cursor.into_inner()
}

pub fn sha1_hex(bytes: &[u8]) -> String {
    ingot_blobstore::sha1_hex(bytes)
}
