//! The resource model as stored, and its rendering into CF v3 JSON.
//!
//! The stored documents hold only what Ingot needs; the CF shapes (links,
//! relationships, nested `data`) are produced here, at the edge, from the
//! API's external URL.

use std::collections::BTreeMap;

use crate::authz::Scope;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use crate::store::Doc;
use crate::DesiredProcess;

/// Now, as CF writes timestamps: `2026-11-25T11:31:22Z`.
pub(crate) fn now() -> String {
    chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// A fresh resource guid (uuid v4).
pub(crate) fn new_guid() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// Labels and annotations of a resource.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct Metadata {
    #[serde(default)]
    pub labels: Map<String, Value>,
    #[serde(default)]
    pub annotations: Map<String, Value>,
}

impl Metadata {
    /// The metadata a create request asks for (none when it has no `metadata`).
    pub(crate) fn from_request(patch: Option<&Value>) -> Self {
        let mut metadata = Metadata::default();
        if let Some(patch) = patch {
            metadata.merge(patch);
        }
        metadata
    }

    pub(crate) fn json(&self) -> Value {
        json!({"labels": self.labels, "annotations": self.annotations})
    }

    /// Applies a metadata patch: a `null` value removes the key.
    pub(crate) fn merge(&mut self, patch: &Value) {
        for (field, target) in [
            ("labels", &mut self.labels),
            ("annotations", &mut self.annotations),
        ] {
            if let Some(Value::Object(map)) = patch.get(field) {
                for (k, v) in map {
                    if v.is_null() {
                        target.remove(k);
                    } else {
                        target.insert(k.clone(), v.clone());
                    }
                }
            }
        }
    }
}

/// `{"href": base + path}`.
pub(crate) fn link(base: &str, path: &str) -> Value {
    json!({"href": format!("{base}{path}")})
}

/// A link with the method to use.
pub(crate) fn link_method(base: &str, path: &str, method: &str) -> Value {
    json!({"href": format!("{base}{path}"), "method": method})
}

/// -1: no limit on an instance's log rate.
fn unlimited_log_rate() -> i64 {
    -1
}

/// `true`, the default of the switches that are on unless turned off.
fn yes() -> bool {
    true
}

/// A to-one relationship, `{"data": null}` when unset.
pub(crate) fn rel(guid: Option<&str>) -> Value {
    match guid {
        Some(g) => json!({"data": {"guid": g}}),
        None => json!({"data": null}),
    }
}

/// A resource whose CF JSON needs nothing but the API's external URL, so the
/// generic show and list handlers of [`crate::http`] can serve it.
pub(crate) trait Render: Doc {
    /// The resource as CF renders it, its links built on `base`.
    fn render(&self, base: &str) -> Value;
}

macro_rules! doc {
    ($ty:ty, $table:literal, $kind:literal, $scope:expr) => {
        impl Doc for $ty {
            const TABLE: &'static str = $table;
            const KIND: &'static str = $kind;
            const SCOPE: crate::authz::Scope = $scope;
            fn guid(&self) -> &str {
                &self.guid
            }
        }
    };
    ($ty:ty, $table:literal, $kind:literal, $scope:expr, rendered) => {
        doc!($ty, $table, $kind, $scope);
        impl Render for $ty {
            fn render(&self, base: &str) -> Value {
                self.json(base)
            }
        }
    };
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Org {
    pub guid: String,
    pub name: String,
    pub suspended: bool,
    pub created_at: String,
    pub updated_at: String,
    #[serde(default)]
    pub metadata: Metadata,
}
doc!(Org, "cc_orgs", "Organization", Scope::Org("guid"), rendered);

impl Org {
    pub(crate) fn json(&self, base: &str) -> Value {
        let g = &self.guid;
        json!({
            "guid": g, "created_at": self.created_at, "updated_at": self.updated_at,
            "name": self.name, "suspended": self.suspended,
            "relationships": {"quota": rel(None)},
            "metadata": self.metadata.json(),
            "links": {
                "self": link(base, &format!("/v3/organizations/{g}")),
                "domains": link(base, &format!("/v3/organizations/{g}/domains")),
                "default_domain": link(base, &format!("/v3/organizations/{g}/domains/default")),
            }
        })
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Space {
    pub guid: String,
    pub name: String,
    pub org_guid: String,
    /// `allow-space-ssh` / `disallow-space-ssh`.
    #[serde(default = "yes")]
    pub allow_ssh: bool,
    pub created_at: String,
    pub updated_at: String,
    #[serde(default)]
    pub metadata: Metadata,
}
doc!(Space, "cc_spaces", "Space", Scope::Space("guid"), rendered);

impl Space {
    pub(crate) fn json(&self, base: &str) -> Value {
        let g = &self.guid;
        json!({
            "guid": g, "created_at": self.created_at, "updated_at": self.updated_at,
            "name": self.name,
            "relationships": {"organization": rel(Some(&self.org_guid)), "quota": rel(None)},
            "metadata": self.metadata.json(),
            "links": {
                "self": link(base, &format!("/v3/spaces/{g}")),
                "features": link(base, &format!("/v3/spaces/{g}/features")),
                "organization": link(base, &format!("/v3/organizations/{}", self.org_guid)),
                "apply_manifest": link_method(base, &format!("/v3/spaces/{g}/actions/apply_manifest"), "POST"),
            }
        })
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Domain {
    pub guid: String,
    pub name: String,
    pub internal: bool,
    /// The router group's guid for a TCP domain (CF's `router_group`);
    /// `None` for an HTTP domain.
    #[serde(default)]
    pub router_group: Option<String>,
    pub created_at: String,
    pub updated_at: String,
    #[serde(default)]
    pub metadata: Metadata,
}
doc!(Domain, "cc_domains", "Domain", Scope::Everyone, rendered);

impl Domain {
    pub(crate) fn json(&self, base: &str) -> Value {
        let g = &self.guid;
        json!({
            "guid": g, "created_at": self.created_at, "updated_at": self.updated_at,
            "name": self.name, "internal": self.internal,
            "router_group": self.router_group.as_ref().map(|guid| json!({"guid": guid})),
            "supported_protocols": [if self.router_group.is_some() { "tcp" } else { "http" }],
            "relationships": {"organization": rel(None), "shared_organizations": {"data": []}},
            "metadata": self.metadata.json(),
            "links": {
                "self": link(base, &format!("/v3/domains/{g}")),
                "route_reservations": link(base, &format!("/v3/domains/{g}/route_reservations")),
            }
        })
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Stack {
    pub guid: String,
    pub name: String,
    pub description: String,
    pub default: bool,
    pub created_at: String,
    pub updated_at: String,
    #[serde(default)]
    pub metadata: Metadata,
}
doc!(Stack, "cc_stacks", "Stack", Scope::Everyone, rendered);

impl Stack {
    pub(crate) fn json(&self, base: &str) -> Value {
        json!({
            "guid": self.guid, "created_at": self.created_at, "updated_at": self.updated_at,
            "name": self.name, "description": self.description,
            "build_rootfs_image": self.name, "run_rootfs_image": self.name,
            "default": self.default,
            "metadata": self.metadata.json(),
            "links": {"self": link(base, &format!("/v3/stacks/{}", self.guid))}
        })
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Buildpack {
    pub guid: String,
    pub name: String,
    pub position: i64,
    pub enabled: bool,
    pub locked: bool,
    pub stack: Option<String>,
    pub state: String,
    pub filename: Option<String>,
    /// Built into the lifecycle (no blob).
    pub builtin: bool,
    pub blob_key: Option<String>,
    pub created_at: String,
    pub updated_at: String,
    #[serde(default)]
    pub metadata: Metadata,
}
doc!(
    Buildpack,
    "cc_buildpacks",
    "Buildpack",
    Scope::Everyone,
    rendered
);

impl Buildpack {
    pub(crate) fn json(&self, base: &str) -> Value {
        let g = &self.guid;
        json!({
            "guid": g, "created_at": self.created_at, "updated_at": self.updated_at,
            "name": self.name, "state": self.state, "filename": self.filename,
            "stack": self.stack, "position": self.position, "lifecycle": "buildpack",
            "enabled": self.enabled, "locked": self.locked,
            "metadata": self.metadata.json(),
            "links": {
                "self": link(base, &format!("/v3/buildpacks/{g}")),
                "upload": link_method(base, &format!("/v3/buildpacks/{g}/upload"), "POST"),
            }
        })
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct User {
    pub guid: String,
    pub username: String,
    pub created_at: String,
    pub updated_at: String,
}
doc!(User, "cc_users", "User", Scope::User, rendered);

impl User {
    pub(crate) fn json(&self, base: &str) -> Value {
        let g = &self.guid;
        json!({
            "guid": g, "created_at": self.created_at, "updated_at": self.updated_at,
            "username": self.username, "presentation_name": self.username, "origin": "uaa",
            "metadata": Metadata::default().json(),
            "links": {"self": link(base, &format!("/v3/users/{g}"))}
        })
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct App {
    pub guid: String,
    pub name: String,
    pub space_guid: String,
    pub state: String,
    pub buildpacks: Vec<String>,
    pub stack: String,
    pub env: Map<String, Value>,
    pub droplet_guid: Option<String>,
    /// `enable-ssh` / `disable-ssh`.
    #[serde(default = "yes")]
    pub ssh_enabled: bool,
    /// Lifecycle type `docker` (pushed as an image) instead of `buildpack`.
    #[serde(default)]
    pub docker: bool,
    pub created_at: String,
    pub updated_at: String,
    #[serde(default)]
    pub metadata: Metadata,
}
doc!(App, "cc_apps", "App", Scope::Space("space_guid"), rendered);

impl App {
    pub(crate) fn lifecycle_json(&self) -> Value {
        if self.docker {
            return json!({"type": "docker", "data": {}});
        }
        json!({"type": "buildpack", "data": {"buildpacks": self.buildpacks, "stack": self.stack}})
    }

    pub(crate) fn json(&self, base: &str) -> Value {
        let g = &self.guid;
        let a = format!("/v3/apps/{g}");
        json!({
            "guid": g, "created_at": self.created_at, "updated_at": self.updated_at,
            "name": self.name, "state": self.state,
            "lifecycle": self.lifecycle_json(),
            "relationships": {"space": rel(Some(&self.space_guid))},
            "metadata": self.metadata.json(),
            "links": {
                "self": link(base, &a),
                "environment_variables": link(base, &format!("{a}/environment_variables")),
                "space": link(base, &format!("/v3/spaces/{}", self.space_guid)),
                "processes": link(base, &format!("{a}/processes")),
                "packages": link(base, &format!("{a}/packages")),
                "current_droplet": link(base, &format!("{a}/droplets/current")),
                "droplets": link(base, &format!("{a}/droplets")),
                "tasks": link(base, &format!("{a}/tasks")),
                "start": link_method(base, &format!("{a}/actions/start"), "POST"),
                "stop": link_method(base, &format!("{a}/actions/stop"), "POST"),
                "revisions": link(base, &format!("{a}/revisions")),
                "deployed_revisions": link(base, &format!("{a}/revisions/deployed")),
                "features": link(base, &format!("{a}/features")),
            }
        })
    }

    /// The environment variables as strings, as processes see them.
    pub(crate) fn env_strings(&self) -> BTreeMap<String, String> {
        self.env
            .iter()
            .map(|(k, v)| {
                let s = match v {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                (k.clone(), s)
            })
            .collect()
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Process {
    pub guid: String,
    pub app_guid: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub command: Option<String>,
    pub instances: u32,
    pub memory_mb: u64,
    pub disk_mb: u64,
    pub health_check_type: String,
    pub health_check_endpoint: Option<String>,
    pub health_check_timeout: Option<u64>,
    pub health_check_invocation_timeout: Option<u64>,
    /// Log bytes per second per instance; -1 is unlimited.
    #[serde(default = "unlimited_log_rate")]
    pub log_rate_limit: i64,
    pub version: String,
    pub created_at: String,
    pub updated_at: String,
    #[serde(default)]
    pub metadata: Metadata,
}
doc!(Process, "cc_processes", "Process", Scope::App("app_guid"));

/// Memory of a new process. CF's default is 1024 MB; Ingot's machines are
/// small, so 256 MB.
pub(crate) const DEFAULT_MEMORY_MB: u64 = 256;
/// Disk of a new process (CF's default).
pub(crate) const DEFAULT_DISK_MB: u64 = 1024;

impl Process {
    pub(crate) fn new(app_guid: &str, kind: &str, command: Option<String>) -> Self {
        let at = now();
        Process {
            guid: new_guid(),
            app_guid: app_guid.to_string(),
            kind: kind.to_string(),
            command,
            // Only web runs by default, as in CF.
            instances: u32::from(kind == "web"),
            memory_mb: DEFAULT_MEMORY_MB,
            disk_mb: DEFAULT_DISK_MB,
            health_check_type: if kind == "web" { "port" } else { "process" }.to_string(),
            health_check_endpoint: None,
            health_check_timeout: None,
            health_check_invocation_timeout: None,
            log_rate_limit: -1,
            version: new_guid(),
            created_at: at.clone(),
            updated_at: at,
            metadata: Metadata::default(),
        }
    }

    /// The command the process runs: its own, else the droplet's for its type.
    pub(crate) fn effective_command(&self, droplet: Option<&Droplet>) -> Option<String> {
        self.command
            .clone()
            .or_else(|| droplet.and_then(|d| d.process_types.get(&self.kind).cloned()))
    }

    pub(crate) fn json(&self, base: &str, space_guid: &str, droplet: Option<&Droplet>) -> Value {
        let g = &self.guid;
        let endpoint = if self.health_check_type == "http" {
            json!(self
                .health_check_endpoint
                .clone()
                .unwrap_or_else(|| "/".to_string()))
        } else {
            Value::Null
        };
        json!({
            "guid": g, "created_at": self.created_at, "updated_at": self.updated_at,
            "type": self.kind, "command": self.effective_command(droplet),
            "instances": self.instances, "memory_in_mb": self.memory_mb, "disk_in_mb": self.disk_mb,
            "log_rate_limit_in_bytes_per_second": self.log_rate_limit,
            "health_check": {"type": self.health_check_type, "data": {
                "timeout": self.health_check_timeout,
                "invocation_timeout": self.health_check_invocation_timeout,
                "interval": null,
                "endpoint": endpoint,
            }},
            "readiness_health_check": {"type": "process", "data": {"invocation_timeout": null, "interval": null}},
            "relationships": {"app": rel(Some(&self.app_guid)), "revision": rel(None)},
            "version": self.version,
            "metadata": self.metadata.json(),
            "links": {
                "self": link(base, &format!("/v3/processes/{g}")),
                "scale": link_method(base, &format!("/v3/processes/{g}/actions/scale"), "POST"),
                "app": link(base, &format!("/v3/apps/{}", self.app_guid)),
                "space": link(base, &format!("/v3/spaces/{space_guid}")),
                "stats": link(base, &format!("/v3/processes/{g}/stats")),
            }
        })
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Package {
    pub guid: String,
    pub app_guid: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub state: String,
    pub error: Option<String>,
    pub checksum: Option<String>,
    pub image: Option<String>,
    /// Registry user name of a docker package.
    #[serde(default)]
    pub docker_username: Option<String>,
    /// Registry password of a docker package; rendered as `***`.
    #[serde(default)]
    pub docker_password: Option<String>,
    pub created_at: String,
    pub updated_at: String,
    #[serde(default)]
    pub metadata: Metadata,
}
doc!(
    Package,
    "cc_packages",
    "Package",
    Scope::App("app_guid"),
    rendered
);

impl Package {
    pub(crate) fn blob_key(&self) -> String {
        format!("packages/{}.zip", self.guid)
    }

    pub(crate) fn json(&self, base: &str) -> Value {
        let g = &self.guid;
        let data = if self.kind == "docker" {
            json!({
                "image": self.image,
                "username": self.docker_username,
                "password": self.docker_password.as_ref().map(|_| "***"),
            })
        } else {
            json!({"checksum": {"type": "sha256", "value": self.checksum}, "error": self.error})
        };
        json!({
            "guid": g, "created_at": self.created_at, "updated_at": self.updated_at,
            "type": self.kind, "data": data, "state": self.state,
            "relationships": {"app": rel(Some(&self.app_guid))},
            "metadata": self.metadata.json(),
            "links": {
                "self": link(base, &format!("/v3/packages/{g}")),
                "upload": link_method(base, &format!("/v3/packages/{g}/upload"), "POST"),
                "download": link_method(base, &format!("/v3/packages/{g}/download"), "GET"),
                "app": link(base, &format!("/v3/apps/{}", self.app_guid)),
            }
        })
    }
}

/// Who started a build.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct CreatedBy {
    pub guid: String,
    pub name: String,
    pub email: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Build {
    pub guid: String,
    pub app_guid: String,
    pub package_guid: String,
    pub state: String,
    pub error: Option<String>,
    pub droplet_guid: Option<String>,
    pub buildpacks: Vec<String>,
    pub stack: String,
    pub memory_mb: u64,
    pub disk_mb: u64,
    pub created_by: CreatedBy,
    /// Staged from a docker package (lifecycle `docker`).
    #[serde(default)]
    pub docker: bool,
    pub created_at: String,
    pub updated_at: String,
    #[serde(default)]
    pub metadata: Metadata,
}
doc!(
    Build,
    "cc_builds",
    "Build",
    Scope::App("app_guid"),
    rendered
);

impl Build {
    pub(crate) fn json(&self, base: &str) -> Value {
        let g = &self.guid;
        let mut links = json!({
            "self": link(base, &format!("/v3/builds/{g}")),
            "app": link(base, &format!("/v3/apps/{}", self.app_guid)),
        });
        if let Some(d) = &self.droplet_guid {
            links["droplet"] = link(base, &format!("/v3/droplets/{d}"));
        }
        json!({
            "guid": g, "created_at": self.created_at, "updated_at": self.updated_at,
            "state": self.state,
            "staging_memory_in_mb": self.memory_mb, "staging_disk_in_mb": self.disk_mb,
            "staging_log_rate_limit_bytes_per_second": -1,
            "error": self.error,
            "lifecycle": if self.docker {
                json!({"type": "docker", "data": {}})
            } else {
                json!({"type": "buildpack", "data": {"buildpacks": self.buildpacks, "stack": self.stack}})
            },
            "package": {"guid": self.package_guid},
            "droplet": self.droplet_guid.as_ref().map(|d| json!({"guid": d})),
            "created_by": self.created_by,
            "relationships": {"app": rel(Some(&self.app_guid))},
            "metadata": self.metadata.json(),
            "links": links,
        })
    }
}

/// A buildpack that took part in staging a droplet.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct DropletBuildpack {
    pub name: String,
    pub detect_output: Option<String>,
    pub buildpack_name: Option<String>,
    pub version: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Droplet {
    pub guid: String,
    pub app_guid: String,
    pub package_guid: Option<String>,
    pub state: String,
    pub error: Option<String>,
    pub process_types: BTreeMap<String, String>,
    pub buildpacks: Vec<DropletBuildpack>,
    pub stack: String,
    pub checksum: Option<String>,
    pub blob_key: String,
    /// The image of a docker droplet (no blob: the image is run as is).
    #[serde(default)]
    pub image: Option<String>,
    pub created_at: String,
    pub updated_at: String,
    #[serde(default)]
    pub metadata: Metadata,
}
doc!(
    Droplet,
    "cc_droplets",
    "Droplet",
    Scope::App("app_guid"),
    rendered
);

impl Droplet {
    pub(crate) fn json(&self, base: &str) -> Value {
        let g = &self.guid;
        let mut links = json!({
            "self": link(base, &format!("/v3/droplets/{g}")),
            "app": link(base, &format!("/v3/apps/{}", self.app_guid)),
            "assign_current_droplet": link_method(base, &format!("/v3/apps/{}/relationships/current_droplet", self.app_guid), "PATCH"),
            "download": link(base, &format!("/v3/droplets/{g}/download")),
        });
        if let Some(p) = &self.package_guid {
            links["package"] = link(base, &format!("/v3/packages/{p}"));
        }
        json!({
            "guid": g, "created_at": self.created_at, "updated_at": self.updated_at,
            "state": self.state, "error": self.error,
            "lifecycle": {"type": if self.image.is_some() { "docker" } else { "buildpack" }, "data": {}},
            "execution_metadata": "",
            "process_types": self.process_types,
            "checksum": self.checksum.as_ref().map(|c| json!({"type": "sha256", "value": c})),
            "buildpacks": self.buildpacks,
            "stack": if self.image.is_some() { Value::Null } else { json!(self.stack) },
            "image": self.image,
            "relationships": {"app": rel(Some(&self.app_guid))},
            "metadata": self.metadata.json(),
            "links": links,
        })
    }
}

/// Where a route sends its traffic: one process of one app.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub(crate) struct Destination {
    pub guid: String,
    pub app_guid: String,
    pub process_type: String,
    pub port: u16,
    pub protocol: String,
    pub weight: Option<u32>,
}

impl Destination {
    pub(crate) fn json(&self) -> Value {
        json!({
            "guid": self.guid,
            "app": {"guid": self.app_guid, "process": {"type": self.process_type}},
            "weight": self.weight, "port": self.port, "protocol": self.protocol,
        })
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Route {
    pub guid: String,
    pub host: String,
    pub path: String,
    pub domain_guid: String,
    pub space_guid: String,
    pub destinations: Vec<Destination>,
    /// The router port of a TCP route (no host, no path); `None` for HTTP.
    #[serde(default)]
    pub port: Option<u16>,
    pub created_at: String,
    pub updated_at: String,
    #[serde(default)]
    pub metadata: Metadata,
}
doc!(Route, "cc_routes", "Route", Scope::Space("space_guid"));

impl Route {
    /// `host.domain/path` (or `domain/path` without a host); `domain:port`
    /// for a TCP route, as CF shows it.
    pub(crate) fn url(&self, domain: &str) -> String {
        if let Some(port) = self.port {
            return format!("{domain}:{port}");
        }
        let mut url = if self.host.is_empty() {
            domain.to_string()
        } else {
            format!("{}.{domain}", self.host)
        };
        url.push_str(&self.path);
        url
    }

    /// The route as the runtime receives it in [`DesiredProcess::uris`]:
    /// `tcp:<port>` for a TCP route, else [`Route::url`].
    pub(crate) fn desired_uri(&self, domain: &str) -> String {
        match self.port {
            Some(port) => format!("{}{port}", crate::TCP_URI_PREFIX),
            None => self.url(domain),
        }
    }

    pub(crate) fn json(&self, base: &str, domain: &str) -> Value {
        let g = &self.guid;
        json!({
            "guid": g, "created_at": self.created_at, "updated_at": self.updated_at,
            "protocol": if self.port.is_some() { "tcp" } else { "http" },
            "host": self.host, "path": self.path, "port": self.port,
            "url": self.url(domain),
            "destinations": self.destinations.iter().map(Destination::json).collect::<Vec<_>>(),
            "options": {},
            "metadata": self.metadata.json(),
            "relationships": {"space": rel(Some(&self.space_guid)), "domain": rel(Some(&self.domain_guid))},
            "links": {
                "self": link(base, &format!("/v3/routes/{g}")),
                "space": link(base, &format!("/v3/spaces/{}", self.space_guid)),
                "domain": link(base, &format!("/v3/domains/{}", self.domain_guid)),
                "destinations": link(base, &format!("/v3/routes/{g}/destinations")),
            }
        })
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Job {
    pub guid: String,
    pub operation: String,
    pub state: String,
    pub errors: Vec<Value>,
    pub warnings: Vec<String>,
    /// The resource the job acts on, as (link name, path), e.g. ("space", "/v3/spaces/…").
    pub resource: Option<(String, String)>,
    pub created_at: String,
    pub updated_at: String,
}
doc!(Job, "cc_jobs", "Job", Scope::Everyone, rendered);

impl Job {
    pub(crate) fn new(operation: &str, resource: Option<(String, String)>) -> Self {
        let at = now();
        Job {
            guid: new_guid(),
            operation: operation.to_string(),
            state: "PROCESSING".to_string(),
            errors: Vec::new(),
            warnings: Vec::new(),
            resource,
            created_at: at.clone(),
            updated_at: at,
        }
    }

    /// A job that finished in the request that made it (CF's synchronous
    /// deletes and uploads still answer with a job to poll).
    pub(crate) fn completed(operation: &str, resource: Option<(String, String)>) -> Self {
        let mut job = Job::new(operation, resource);
        job.state = "COMPLETE".into();
        job
    }

    pub(crate) fn json(&self, base: &str) -> Value {
        let mut links = json!({"self": link(base, &format!("/v3/jobs/{}", self.guid))});
        if let Some((name, path)) = &self.resource {
            links[name] = link(base, path);
        }
        json!({
            "guid": self.guid, "created_at": self.created_at, "updated_at": self.updated_at,
            "operation": self.operation, "state": self.state,
            "errors": self.errors,
            "warnings": self.warnings.iter().map(|w| json!({"detail": w})).collect::<Vec<_>>(),
            "links": links,
        })
    }
}

/// The actor or target of an audit event.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct EventParty {
    pub guid: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub name: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Event {
    pub guid: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub actor: EventParty,
    pub target: EventParty,
    pub data: Value,
    pub space_guid: Option<String>,
    pub org_guid: Option<String>,
    pub created_at: String,
    pub updated_at: String,
}
doc!(
    Event,
    "cc_events",
    "Event",
    Scope::Space("space_guid"),
    rendered
);

impl Event {
    pub(crate) fn json(&self, base: &str) -> Value {
        json!({
            "guid": self.guid, "created_at": self.created_at, "updated_at": self.updated_at,
            "type": self.kind, "actor": self.actor, "target": self.target, "data": self.data,
            "space": self.space_guid.as_ref().map(|g| json!({"guid": g})),
            "organization": self.org_guid.as_ref().map(|g| json!({"guid": g})),
            "links": {"self": link(base, &format!("/v3/audit_events/{}", self.guid))}
        })
    }
}

/// The last desired state handed to the runtime for a process; `resume`
/// replays it, and scaling or route changes patch it (so an unrestarted env
/// or droplet change is not applied behind the user's back).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Desired {
    pub guid: String,
    pub app_guid: String,
    pub process: DesiredProcess,
}
doc!(Desired, "cc_desired", "Process", Scope::App("app_guid"));

/// A one-off task run from an app's droplet.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Task {
    pub guid: String,
    pub app_guid: String,
    pub name: String,
    pub command: String,
    /// `RUNNING`, `CANCELING`, `SUCCEEDED` or `FAILED`.
    pub state: String,
    /// The task's number within its app, from 1 (`cf terminate-task`'s id).
    pub sequence_id: u64,
    pub memory_mb: u64,
    pub disk_mb: u64,
    pub droplet_guid: String,
    pub failure_reason: Option<String>,
    pub created_at: String,
    pub updated_at: String,
    #[serde(default)]
    pub metadata: Metadata,
}
doc!(Task, "cc_tasks", "Task", Scope::App("app_guid"), rendered);

impl Task {
    /// Whether the task has ended (`SUCCEEDED` or `FAILED`).
    pub(crate) fn is_final(&self) -> bool {
        self.state == "SUCCEEDED" || self.state == "FAILED"
    }

    pub(crate) fn json(&self, base: &str) -> Value {
        let g = &self.guid;
        json!({
            "guid": g, "created_at": self.created_at, "updated_at": self.updated_at,
            "sequence_id": self.sequence_id, "name": self.name, "command": self.command,
            "state": self.state, "memory_in_mb": self.memory_mb, "disk_in_mb": self.disk_mb,
            "log_rate_limit_in_bytes_per_second": -1,
            "result": {"failure_reason": self.failure_reason},
            "droplet_guid": self.droplet_guid,
            "relationships": {"app": rel(Some(&self.app_guid))},
            "metadata": self.metadata.json(),
            "links": {
                "self": link(base, &format!("/v3/tasks/{g}")),
                "app": link(base, &format!("/v3/apps/{}", self.app_guid)),
                "cancel": link_method(base, &format!("/v3/tasks/{g}/actions/cancel"), "POST"),
                "droplet": link(base, &format!("/v3/droplets/{}", self.droplet_guid)),
            }
        })
    }
}

/// One role of a user: an organization role (`space_guid` empty) or a space
/// role. Space roles also record the space's organization, so that the roles
/// visible in an organization are one query.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Role {
    pub guid: String,
    /// CF's role type, e.g. `space_developer`.
    #[serde(rename = "type")]
    pub kind: String,
    pub user_guid: String,
    pub org_guid: String,
    pub space_guid: Option<String>,
    pub created_at: String,
    pub updated_at: String,
}
doc!(Role, "cc_roles", "Role", Scope::Role, rendered);

impl Role {
    pub(crate) fn json(&self, base: &str) -> Value {
        let g = &self.guid;
        let mut links = json!({
            "self": link(base, &format!("/v3/roles/{g}")),
            "user": link(base, &format!("/v3/users/{}", self.user_guid)),
        });
        let (org, space) = match &self.space_guid {
            Some(space) => {
                links["space"] = link(base, &format!("/v3/spaces/{space}"));
                (None, Some(space.as_str()))
            }
            None => {
                links["organization"] = link(base, &format!("/v3/organizations/{}", self.org_guid));
                (Some(self.org_guid.as_str()), None)
            }
        };
        json!({
            "guid": g, "created_at": self.created_at, "updated_at": self.updated_at,
            "type": self.kind,
            "relationships": {
                "user": rel(Some(&self.user_guid)),
                "organization": rel(org),
                "space": rel(space),
            },
            "links": links,
        })
    }
}
