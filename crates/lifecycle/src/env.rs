//! The Cloud Foundry environment of a staging task and of an app instance:
//! what Cloud Controller (`VCAP_APPLICATION`, `VCAP_SERVICES`,
//! `MEMORY_LIMIT`, …) and Diego (`CF_INSTANCE_*`, `PORT`, `HOME`, …) put
//! into the container.
//!
//! The user's variables come last and replace a system variable of the same
//! name (so that `getenv`, which takes the first match, sees one value),
//! except `PORT` and `VCAP_*`, which Cloud Controller never lets users set.

use serde::{Deserialize, Serialize};
use serde_json::json;

/// The container port an app listens on unless told otherwise (Diego's).
pub const DEFAULT_APP_PORT: u16 = 8080;
/// `limits.fds` of `VCAP_APPLICATION` when none is given (CF's default).
pub const DEFAULT_FILE_DESCRIPTORS: u64 = 16384;
/// `PATH` in the container before any buildpack's profile.d changes it.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// What the environment of one app instance is made from.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceInfo {
    /// The app's guid (`application_id`).
    pub app_guid: String,
    /// The app's name.
    pub app_name: String,
    /// The space's guid.
    pub space_guid: String,
    /// The space's name.
    pub space_name: String,
    /// The organization's guid.
    pub org_guid: String,
    /// The organization's name.
    pub org_name: String,
    /// The process's guid (`process_id`).
    pub process_guid: String,
    /// The process type (`process_type`); empty means `web`.
    pub process_type: String,
    /// The app version (`version`, `application_version`): changes with
    /// every restart in CF.
    pub version: String,
    /// The instance's guid (`CF_INSTANCE_GUID`, `instance_id`).
    pub instance_guid: String,
    /// The instance's index (`CF_INSTANCE_INDEX`).
    pub instance_index: u32,
    /// The address others reach the instance at (`CF_INSTANCE_IP`): the
    /// cell's, or the container's when it is directly routable.
    pub host_ip: String,
    /// The container's own address (`CF_INSTANCE_INTERNAL_IP`).
    pub internal_ip: String,
    /// The port the app listens on inside the container (`PORT`); 0 means 8080.
    pub port: u16,
    /// The port at `host_ip` that reaches `port` (`CF_INSTANCE_PORT`); 0
    /// means the same as `port`.
    pub external_port: u16,
    /// Memory limit in MB (`MEMORY_LIMIT`, `limits.mem`).
    pub memory_mb: u64,
    /// Disk limit in MB (`limits.disk`).
    pub disk_mb: u64,
    /// File descriptor limit (`limits.fds`); 0 means CF's default 16384.
    pub file_descriptors: u64,
    /// The app's routes, as `host.domain[/path]`.
    pub uris: Vec<String>,
    /// The API's URL (`cf_api`).
    pub cf_api: String,
    /// The user's environment variables, in order.
    pub user_env: Vec<(String, String)>,
    /// `VCAP_SERVICES` as JSON; empty means `{}`.
    pub vcap_services: String,
}

/// What the environment of a staging task is made from.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StagingInfo {
    /// The app's guid.
    pub app_guid: String,
    /// The app's name.
    pub app_name: String,
    /// The space's guid.
    pub space_guid: String,
    /// The space's name.
    pub space_name: String,
    /// The organization's guid.
    pub org_guid: String,
    /// The organization's name.
    pub org_name: String,
    /// The app version.
    pub version: String,
    /// The stack's name (`CF_STACK`), e.g. `cflinuxfs4`.
    pub stack: String,
    /// Memory limit of the staging task in MB.
    pub memory_mb: u64,
    /// Disk limit of the staging task in MB.
    pub disk_mb: u64,
    /// File descriptor limit; 0 means CF's default 16384.
    pub file_descriptors: u64,
    /// The app's routes.
    pub uris: Vec<String>,
    /// The API's URL.
    pub cf_api: String,
    /// The user's environment variables (they apply to staging too, e.g.
    /// `PIP_INDEX_URL`).
    pub user_env: Vec<(String, String)>,
}

/// The fields of `VCAP_APPLICATION` common to staging and running.
struct AppVars<'a> {
    app_guid: &'a str,
    app_name: &'a str,
    space_guid: &'a str,
    space_name: &'a str,
    org_guid: &'a str,
    org_name: &'a str,
    version: &'a str,
    uris: &'a [String],
    cf_api: &'a str,
    memory_mb: u64,
    disk_mb: u64,
    file_descriptors: u64,
}

impl AppVars<'_> {
    fn vcap_application(&self) -> serde_json::Map<String, serde_json::Value> {
        let fds = if self.file_descriptors == 0 {
            DEFAULT_FILE_DESCRIPTORS
        } else {
            self.file_descriptors
        };
        let value = json!({
            "application_id": self.app_guid,
            "application_name": self.app_name,
            "application_uris": self.uris,
            "application_version": self.version,
            "cf_api": self.cf_api,
            "limits": { "disk": self.disk_mb, "fds": fds, "mem": self.memory_mb },
            "name": self.app_name,
            "organization_id": self.org_guid,
            "organization_name": self.org_name,
            "space_id": self.space_guid,
            "space_name": self.space_name,
            "uris": self.uris,
            "users": null,
            "version": self.version,
        });
        match value {
            serde_json::Value::Object(map) => map,
            _ => serde_json::Map::new(),
        }
    }
}

/// The CF environment of an app instance: `PORT`, `VCAP_APPLICATION` (every
/// field CF sets, instance fields included), `VCAP_SERVICES` (`{}` for now),
/// `CF_INSTANCE_*`, `INSTANCE_GUID`/`INSTANCE_INDEX`, `HOME`
/// (`/home/vcap/app`, as CF's launcher sets it), `MEMORY_LIMIT` (`256m`),
/// `TMPDIR`, `LANG`, `USER`, `PATH`, `VCAP_APP_HOST`, `VCAP_APP_PORT`, then
/// the user's variables.
pub fn instance_environment(info: &InstanceInfo) -> Vec<(String, String)> {
    let port = if info.port == 0 {
        DEFAULT_APP_PORT
    } else {
        info.port
    };
    let external_port = if info.external_port == 0 {
        port
    } else {
        info.external_port
    };
    let process_type = if info.process_type.is_empty() {
        "web"
    } else {
        &info.process_type
    };
    let mut vcap_application = AppVars {
        app_guid: &info.app_guid,
        app_name: &info.app_name,
        space_guid: &info.space_guid,
        space_name: &info.space_name,
        org_guid: &info.org_guid,
        org_name: &info.org_name,
        version: &info.version,
        uris: &info.uris,
        cf_api: &info.cf_api,
        memory_mb: info.memory_mb,
        disk_mb: info.disk_mb,
        file_descriptors: info.file_descriptors,
    }
    .vcap_application();
    vcap_application.insert("process_id".into(), info.process_guid.clone().into());
    vcap_application.insert("process_type".into(), process_type.into());
    vcap_application.insert("host".into(), "0.0.0.0".into());
    vcap_application.insert("instance_id".into(), info.instance_guid.clone().into());
    vcap_application.insert("instance_index".into(), info.instance_index.into());
    vcap_application.insert("port".into(), port.into());

    let ports = json!([{ "external": external_port, "internal": port }]);
    let system = vec![
        ("PORT", port.to_string()),
        ("VCAP_APP_PORT", port.to_string()),
        ("VCAP_APP_HOST", "0.0.0.0".to_string()),
        (
            "VCAP_APPLICATION",
            serde_json::Value::Object(vcap_application).to_string(),
        ),
        (
            "VCAP_SERVICES",
            if info.vcap_services.is_empty() {
                "{}".to_string()
            } else {
                info.vcap_services.clone()
            },
        ),
        ("CF_INSTANCE_INDEX", info.instance_index.to_string()),
        ("CF_INSTANCE_GUID", info.instance_guid.clone()),
        ("CF_INSTANCE_IP", info.host_ip.clone()),
        ("CF_INSTANCE_INTERNAL_IP", info.internal_ip.clone()),
        ("CF_INSTANCE_PORT", external_port.to_string()),
        (
            "CF_INSTANCE_ADDR",
            format!("{}:{external_port}", info.host_ip),
        ),
        ("CF_INSTANCE_PORTS", ports.to_string()),
        ("INSTANCE_GUID", info.instance_guid.clone()),
        ("INSTANCE_INDEX", info.instance_index.to_string()),
        ("HOME", "/home/vcap/app".to_string()),
        ("TMPDIR", "/home/vcap/tmp".to_string()),
        ("LANG", "en_US.UTF-8".to_string()),
        ("USER", "vcap".to_string()),
        ("PATH", DEFAULT_PATH.to_string()),
        ("MEMORY_LIMIT", format!("{}m", info.memory_mb)),
    ];
    with_user_env(system, &info.user_env)
}

/// The CF environment of a staging task: `CF_STACK`, `MEMORY_LIMIT`,
/// `VCAP_APPLICATION` (without instance fields), `VCAP_SERVICES`, `LANG`,
/// `HOME` (`/home/vcap`), `TMPDIR`, `USER`, `PATH`, then the user's
/// variables (which buildpacks read, e.g. `PIP_INDEX_URL`).
pub fn staging_environment(info: &StagingInfo) -> Vec<(String, String)> {
    let vcap_application = AppVars {
        app_guid: &info.app_guid,
        app_name: &info.app_name,
        space_guid: &info.space_guid,
        space_name: &info.space_name,
        org_guid: &info.org_guid,
        org_name: &info.org_name,
        version: &info.version,
        uris: &info.uris,
        cf_api: &info.cf_api,
        memory_mb: info.memory_mb,
        disk_mb: info.disk_mb,
        file_descriptors: info.file_descriptors,
    }
    .vcap_application();
    let system = vec![
        ("CF_STACK", info.stack.clone()),
        ("MEMORY_LIMIT", format!("{}m", info.memory_mb)),
        (
            "VCAP_APPLICATION",
            serde_json::Value::Object(vcap_application).to_string(),
        ),
        ("VCAP_SERVICES", "{}".to_string()),
        ("LANG", "en_US.UTF-8".to_string()),
        ("HOME", "/home/vcap".to_string()),
        ("TMPDIR", "/tmp".to_string()),
        ("USER", "vcap".to_string()),
        ("PATH", DEFAULT_PATH.to_string()),
    ];
    with_user_env(system, &info.user_env)
}

/// Appends the user's variables; a user variable replaces a system one of the
/// same name in place, and `PORT` / `VCAP_*` stay the platform's.
fn with_user_env(
    system: Vec<(&str, String)>,
    user_env: &[(String, String)],
) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = system
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
    for (name, value) in user_env {
        if name == "PORT" || name.starts_with("VCAP_") || name.is_empty() || name.contains('=') {
            continue;
        }
        match env.iter_mut().find(|(existing, _)| existing == name) {
            Some(slot) => slot.1 = value.clone(),
            None => env.push((name.clone(), value.clone())),
        }
    }
    env
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests fail loudly on any unexpected error
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn instance() -> InstanceInfo {
        InstanceInfo {
            app_guid: "app-guid".into(),
            app_name: "myapp".into(),
            space_guid: "space-guid".into(),
            space_name: "dev".into(),
            org_guid: "org-guid".into(),
            org_name: "main".into(),
            process_guid: "proc-guid".into(),
            process_type: String::new(),
            version: "v-1".into(),
            instance_guid: "inst-guid".into(),
            instance_index: 2,
            host_ip: "10.254.0.7".into(),
            internal_ip: "10.254.0.7".into(),
            port: 0,
            external_port: 0,
            memory_mb: 256,
            disk_mb: 1024,
            file_descriptors: 0,
            uris: vec!["myapp.apps.localhost".into()],
            cf_api: "http://127.0.0.1:9000".into(),
            user_env: vec![
                ("GREETING".into(), "hello".into()),
                ("LANG".into(), "C.UTF-8".into()),
                ("PORT".into(), "1".into()),
                ("VCAP_SERVICES".into(), "{\"x\":1}".into()),
            ],
            vcap_services: String::new(),
        }
    }

    #[test]
    fn bound_services_are_the_instances_vcap_services() {
        let mut info = instance();
        info.vcap_services = r#"{"user-provided":[{"name":"db"}]}"#.into();
        let env: HashMap<String, String> = instance_environment(&info).into_iter().collect();
        assert_eq!(env["VCAP_SERVICES"], r#"{"user-provided":[{"name":"db"}]}"#);
    }

    #[test]
    fn instance_environment_has_every_cf_variable() {
        let env = instance_environment(&instance());
        let names: Vec<&str> = env.iter().map(|(k, _)| k.as_str()).collect();
        let unique: std::collections::HashSet<_> = names.iter().collect();
        assert_eq!(unique.len(), names.len(), "duplicate names: {names:?}");
        let env: HashMap<_, _> = env.into_iter().collect();
        assert_eq!(env["PORT"], "8080");
        assert_eq!(env["VCAP_APP_PORT"], "8080");
        assert_eq!(env["VCAP_APP_HOST"], "0.0.0.0");
        assert_eq!(env["CF_INSTANCE_INDEX"], "2");
        assert_eq!(env["CF_INSTANCE_GUID"], "inst-guid");
        assert_eq!(env["CF_INSTANCE_IP"], "10.254.0.7");
        assert_eq!(env["CF_INSTANCE_INTERNAL_IP"], "10.254.0.7");
        assert_eq!(env["CF_INSTANCE_PORT"], "8080");
        assert_eq!(env["CF_INSTANCE_ADDR"], "10.254.0.7:8080");
        let ports: serde_json::Value = serde_json::from_str(&env["CF_INSTANCE_PORTS"]).unwrap();
        assert_eq!(ports, json!([{"external": 8080, "internal": 8080}]));
        assert_eq!(env["HOME"], "/home/vcap/app");
        assert_eq!(env["TMPDIR"], "/home/vcap/tmp");
        assert_eq!(env["USER"], "vcap");
        assert_eq!(env["MEMORY_LIMIT"], "256m");
        assert_eq!(env["VCAP_SERVICES"], "{}", "users cannot set VCAP_*");
        assert_eq!(
            env["LANG"], "C.UTF-8",
            "the user's value replaces the default"
        );
        assert_eq!(env["GREETING"], "hello");

        let app: serde_json::Value = serde_json::from_str(&env["VCAP_APPLICATION"]).unwrap();
        for (field, expected) in [
            ("application_id", json!("app-guid")),
            ("application_name", json!("myapp")),
            ("application_uris", json!(["myapp.apps.localhost"])),
            ("application_version", json!("v-1")),
            ("cf_api", json!("http://127.0.0.1:9000")),
            ("limits", json!({"disk": 1024, "fds": 16384, "mem": 256})),
            ("name", json!("myapp")),
            ("organization_id", json!("org-guid")),
            ("organization_name", json!("main")),
            ("process_id", json!("proc-guid")),
            ("process_type", json!("web")),
            ("space_id", json!("space-guid")),
            ("space_name", json!("dev")),
            ("uris", json!(["myapp.apps.localhost"])),
            ("users", json!(null)),
            ("version", json!("v-1")),
            ("host", json!("0.0.0.0")),
            ("instance_id", json!("inst-guid")),
            ("instance_index", json!(2)),
            ("port", json!(8080)),
        ] {
            assert_eq!(app[field], expected, "VCAP_APPLICATION.{field}");
        }
    }

    #[test]
    fn external_port_differs_when_mapped() {
        let mut info = instance();
        info.host_ip = "192.168.1.5".into();
        info.external_port = 61001;
        let env: HashMap<_, _> = instance_environment(&info).into_iter().collect();
        assert_eq!(env["PORT"], "8080");
        assert_eq!(env["CF_INSTANCE_PORT"], "61001");
        assert_eq!(env["CF_INSTANCE_ADDR"], "192.168.1.5:61001");
    }

    #[test]
    fn staging_environment_has_stack_limits_and_user_env() {
        let info = StagingInfo {
            app_guid: "app-guid".into(),
            app_name: "myapp".into(),
            stack: "cflinuxfs4".into(),
            memory_mb: 1024,
            disk_mb: 4096,
            user_env: vec![("PIP_INDEX_URL".into(), "http://10.0.0.1/simple".into())],
            ..StagingInfo::default()
        };
        let env: HashMap<_, _> = staging_environment(&info).into_iter().collect();
        assert_eq!(env["CF_STACK"], "cflinuxfs4");
        assert_eq!(env["MEMORY_LIMIT"], "1024m");
        assert_eq!(env["VCAP_SERVICES"], "{}");
        assert_eq!(env["PIP_INDEX_URL"], "http://10.0.0.1/simple");
        let app: serde_json::Value = serde_json::from_str(&env["VCAP_APPLICATION"]).unwrap();
        assert_eq!(app["application_name"], "myapp");
        assert_eq!(app["limits"]["mem"], 1024);
        assert!(app.get("instance_id").is_none());
    }
}
