//! Docker image instances and tasks: the image is pulled on the cell (never
//! from inside a container, so security groups do not apply to the pull),
//! its layers become the container's root, and it runs the way Diego runs a
//! docker app.
//!
//! - Command: with no start command, the image's `Entrypoint` + `Cmd`,
//!   executed directly; with one (the process's `command`, a task's
//!   command), `/bin/sh -c COMMAND` — Diego's docker launcher does the same.
//! - Port: the lowest exposed TCP port of the image, else 8080; `PORT` and
//!   the health check and routes use it (Cloud Controller takes the first
//!   exposed port of a docker image as the process's port).
//! - Environment: the image's `Env`, overlaid by CF's (`PORT`,
//!   `VCAP_APPLICATION`, `VCAP_SERVICES`, `CF_INSTANCE_*`, `MEMORY_LIMIT`, the
//!   user's variables). The variables only a buildpack droplet needs
//!   (`HOME`, `TMPDIR`, `USER`, `PATH`, `LANG`) are left to the image unless the
//!   user sets them. The instance's own address (`CF_INSTANCE_IP`, `_ADDR`)
//!   stays empty: it is known only once the container exists, and the image
//!   has no launcher of ours to fill it in.
//! - User and working directory: the image's (`User` resolved against the
//!   image's `/etc/passwd` and `/etc/group`; no user means root). Root in the
//!   image is root in the container, which is only as privileged as the
//!   container layer's isolation makes container root.
//!
//! Layers live in one content-addressed [`ImageStore`] per cell under
//! `<work dir>/images`, shared between images. An image is *in use* while a
//! container runs from it or a desired LRP names it; when an instance or
//! task of an image ends, everything else is garbage-collected.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use ingot_containers::image::{
    Credentials, ImageConfig, ImageRecord, ImageStore, PullLimits, Reference, RegistryClient,
    RegistryConfig,
};
use ingot_containers::{Container, ContainerSpec, EgressRule, ProcessSpec, Stack};
use tokio::sync::RwLock;

use crate::cell::{limits_for, Cell, APP_PORT};
use crate::{DesiredLrp, SchedulerError, TaskDefinition};

/// A Docker image to run instead of a droplet, and how to pull it.
#[derive(Clone, PartialEq, Eq)]
pub struct ImageSource {
    /// The image reference as the user gave it, e.g.
    /// `registry.example.com:5000/team/web:1` or `busybox`.
    pub reference: String,
    /// The registry user name, for a private registry.
    pub username: Option<String>,
    /// The registry password (never logged or shown).
    pub password: Option<String>,
}

impl std::fmt::Debug for ImageSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The password must not reach a log line or a panic message.
        f.debug_struct("ImageSource")
            .field("reference", &self.reference)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .finish()
    }
}

impl ImageSource {
    fn credentials(&self) -> Option<Credentials> {
        match (&self.username, &self.password) {
            (Some(username), Some(password)) if !username.is_empty() => Some(Credentials {
                username: username.clone(),
                password: password.clone(),
            }),
            _ => None,
        }
    }
}

/// A pulled image, ready to be a container's root.
pub(crate) struct PulledImage {
    /// The root: the bottom layer as the stack, the others above it.
    pub(crate) stack: Stack,
    /// Layers above the stack's rootfs, topmost first.
    pub(crate) layers: Vec<PathBuf>,
    /// Every layer, topmost first (for resolving the image's user).
    pub(crate) all_layers: Vec<PathBuf>,
    /// What the image says about running it.
    pub(crate) config: ImageConfig,
}

/// The cell's image store and registry client, and which containers use
/// which image.
pub(crate) struct Images {
    store: ImageStore,
    client: RegistryClient,
    /// Image ids by the container (instance or task guid) running from them.
    in_use: Mutex<HashMap<String, String>>,
    /// Held shared from the start of a pull until its container is
    /// registered in `in_use`, exclusively by gc: gc never removes layers
    /// that a container is about to be created from.
    using: RwLock<()>,
}

impl Images {
    /// Opens (creating) the store under `dir`.
    pub(crate) fn open(dir: &Path) -> Result<Images, SchedulerError> {
        let image_error = |err: ingot_containers::image::ImageError| SchedulerError::Image {
            reference: String::new(),
            message: err.to_string(),
        };
        let store = ImageStore::open(dir, PullLimits::default()).map_err(image_error)?;
        let client = RegistryClient::new(RegistryConfig::default()).map_err(image_error)?;
        Ok(Images {
            store,
            client,
            in_use: Mutex::new(HashMap::new()),
            using: RwLock::new(()),
        })
    }

    fn in_use(&self) -> std::sync::MutexGuard<'_, HashMap<String, String>> {
        // Plain data: a panic while holding the lock leaves nothing half done.
        self.in_use
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Pulls `source` (layers already in the store are reused) and records
    /// that container `container_id` runs from it until [`Images::release`].
    pub(crate) async fn pull_for(
        &self,
        container_id: &str,
        source: &ImageSource,
    ) -> Result<PulledImage, SchedulerError> {
        let failed = |message: String| SchedulerError::Image {
            reference: source.reference.clone(),
            message,
        };
        let reference = Reference::parse(&source.reference).map_err(|e| failed(e.to_string()))?;
        let _pulling = self.using.read().await;
        let (record, report) = self
            .store
            .pull(&self.client, &reference, source.credentials().as_ref())
            .await
            .map_err(|e| failed(e.to_string()))?;
        tracing::info!(
            image = %source.reference,
            id = %record.id,
            downloaded = report.downloaded_layers.len(),
            reused = report.reused_layers.len(),
            "pulled image"
        );
        self.in_use()
            .insert(container_id.to_string(), record.id.clone());
        self.prepare(&record).map_err(|e| {
            self.release(container_id);
            failed(e)
        })
    }

    fn prepare(&self, record: &ImageRecord) -> Result<PulledImage, String> {
        let (stack, layers) = self
            .store
            .container_root(record)
            .map_err(|e| e.to_string())?;
        Ok(PulledImage {
            stack,
            layers,
            all_layers: self.store.layer_dirs(record),
            config: record.config.clone(),
        })
    }

    /// Container `container_id` no longer runs from its image.
    pub(crate) fn release(&self, container_id: &str) {
        self.in_use().remove(container_id);
    }

    /// Removes every image that no container runs from and that none of
    /// `desired` (references of desired LRPs) names, with the layers and
    /// blobs only they used.
    pub(crate) async fn collect(&self, desired: &[String]) {
        let _exclusive = self.using.write().await;
        let mut keep: Vec<String> = self.in_use().values().cloned().collect();
        for reference in desired {
            if let Ok(record) = self.store.get(reference) {
                keep.push(record.id);
            }
        }
        match self.store.gc(&keep).await {
            Ok(report) if !report.images.is_empty() || !report.layers.is_empty() => {
                tracing::info!(images = ?report.images, layers = report.layers.len(), "removed unused images");
            }
            Ok(_) => {}
            Err(err) => tracing::warn!(error = %err, "image garbage collection failed"),
        }
    }

    /// The store (for tests).
    #[cfg(test)]
    pub(crate) fn store(&self) -> &ImageStore {
        &self.store
    }
}

/// The port an image's app listens on: its lowest exposed TCP port, else 8080.
pub(crate) fn image_port(config: &ImageConfig) -> u16 {
    config.port.unwrap_or(APP_PORT)
}

/// Variables of CF's environment that only make sense in a buildpack
/// droplet's layout (`/home/vcap`, the stack's `PATH`).
const BUILDPACK_ONLY: &[&str] = &["HOME", "TMPDIR", "USER", "PATH", "LANG"];

/// CF's environment for a docker container: `cf_env` without the
/// buildpack-only variables, except those the user set in `user_env`.
pub(crate) fn docker_environment(
    cf_env: Vec<(String, String)>,
    user_env: &std::collections::BTreeMap<String, String>,
) -> Vec<(String, String)> {
    cf_env
        .into_iter()
        .filter(|(name, _)| !BUILDPACK_ONLY.contains(&name.as_str()) || user_env.contains_key(name))
        .collect()
}

/// The process of a docker container: `command` through `/bin/sh -c` when
/// one is given, else the image's entrypoint + cmd; the image's env with
/// `env` over it, the image's user and working directory.
pub(crate) fn image_process(
    image: &PulledImage,
    command: &str,
    env: &[(String, String)],
) -> Result<ProcessSpec, String> {
    let args: Vec<String> = if command.trim().is_empty() {
        Vec::new()
    } else {
        vec!["/bin/sh".into(), "-c".into(), command.to_string()]
    };
    image
        .config
        .process_spec(&image.all_layers, &args, env)
        .map_err(|e| e.to_string())
}

impl Cell {
    /// Pulls the LRP's image and starts an instance of it; returns the
    /// container and the port the app listens on.
    pub(crate) async fn create_image_container(
        &self,
        lrp: &DesiredLrp,
        image: &ImageSource,
        index: u32,
        guid: &str,
    ) -> Result<(Container, u16), SchedulerError> {
        let pulled = self.images.pull_for(guid, image).await?;
        let port = image_port(&pulled.config);
        let env = docker_environment(
            crate::env::instance_environment_on(&self.config, lrp, index, guid, port),
            &lrp.environment,
        );
        let process = image_process(&pulled, &lrp.command, &env).map_err(|message| {
            SchedulerError::Image {
                reference: image.reference.clone(),
                message,
            }
        })?;
        let container = self
            .run_image(
                guid,
                pulled,
                process,
                limits_for(lrp.memory_mb, lrp.disk_mb),
                &lrp.egress,
            )
            .await?;
        Ok((container, port))
    }

    /// Pulls a task's image and starts its command in it.
    pub(crate) async fn create_image_task_container(
        &self,
        task: &TaskDefinition,
        image: &ImageSource,
    ) -> Result<Container, SchedulerError> {
        let pulled = self.images.pull_for(&task.task_guid, image).await?;
        let env = docker_environment(
            crate::task::task_environment(&self.config, task),
            &task.environment,
        );
        let process = image_process(&pulled, &task.command, &env).map_err(|message| {
            SchedulerError::Image {
                reference: image.reference.clone(),
                message,
            }
        })?;
        self.run_image(
            &task.task_guid,
            pulled,
            process,
            limits_for(task.memory_mb, task.disk_mb),
            &task.egress,
        )
        .await
    }

    /// Starts a container whose root is the image's layers.
    async fn run_image(
        &self,
        id: &str,
        image: PulledImage,
        process: ProcessSpec,
        limits: ingot_containers::Limits,
        egress: &[EgressRule],
    ) -> Result<Container, SchedulerError> {
        let spec = ContainerSpec {
            id: id.to_string(),
            hostname: id.to_string(),
            stack: image.stack,
            layers: image.layers,
            // Nothing of the platform is mounted: the image's own programs run.
            bind_mounts: Vec::new(),
            process,
            limits,
            network: true,
            egress: egress.to_vec(),
        };
        self.containers
            .create(spec)
            .await
            .map_err(|err| SchedulerError::Container {
                id: id.to_string(),
                message: err.to_string(),
            })
    }

    /// Container `id` (which ran from an image) is gone: its image is no
    /// longer in use by it, and images nothing uses are removed in the
    /// background.
    pub(crate) fn image_released(&self, id: &str) {
        self.images.release(id);
        let images = Arc::clone(&self.images);
        let desired = self.desired_images();
        self.tasks
            .spawn(async move { images.collect(&desired).await });
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn config(json: serde_json::Value) -> ImageConfig {
        ImageConfig::parse("test config", json.to_string().as_bytes()).expect("config parses")
    }

    fn pulled(config: ImageConfig, layer: &Path) -> PulledImage {
        PulledImage {
            stack: Stack {
                rootfs: layer.to_path_buf(),
                bind_mounts: Vec::new(),
            },
            layers: Vec::new(),
            all_layers: vec![layer.to_path_buf()],
            config,
        }
    }

    fn layer_with_users() -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(dir.path().join("etc")).expect("etc");
        std::fs::write(
            dir.path().join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\nweb:x:1000:1001:web:/srv:/bin/sh\n",
        )
        .expect("passwd");
        std::fs::write(dir.path().join("etc/group"), "root:x:0:\nweb:x:1001:\n").expect("group");
        dir
    }

    #[test]
    fn the_port_is_the_lowest_exposed_tcp_port_else_8080() {
        let exposed = config(serde_json::json!({
            "config": {"ExposedPorts": {"9000/tcp": {}, "8000/tcp": {}, "53/udp": {}}}
        }));
        assert_eq!(image_port(&exposed), 8000);
        let udp_only = config(serde_json::json!({"config": {"ExposedPorts": {"53/udp": {}}}}));
        assert_eq!(image_port(&udp_only), 8080);
        assert_eq!(image_port(&config(serde_json::json!({}))), 8080);
    }

    #[test]
    fn without_a_command_the_image_entrypoint_and_cmd_run_directly() {
        let layer = layer_with_users();
        let image = pulled(
            config(serde_json::json!({"config": {
                "Entrypoint": ["/bin/httpd", "-f"],
                "Cmd": ["-p", "8000"],
                "User": "web",
                "WorkingDir": "/srv",
            }})),
            layer.path(),
        );
        let spec = image_process(&image, "", &[]).expect("spec");
        assert_eq!(spec.args, ["/bin/httpd", "-f", "-p", "8000"]);
        assert_eq!((spec.uid, spec.gid), (1000, 1001));
        assert_eq!(spec.cwd, "/srv");
    }

    #[test]
    fn a_start_command_runs_through_sh_c() {
        let layer = layer_with_users();
        let image = pulled(
            config(serde_json::json!({"config": {"Entrypoint": ["/bin/httpd"], "Cmd": ["-f"]}})),
            layer.path(),
        );
        let spec = image_process(&image, "echo hi && sleep 1", &[]).expect("spec");
        assert_eq!(spec.args, ["/bin/sh", "-c", "echo hi && sleep 1"]);
        assert_eq!((spec.uid, spec.gid), (0, 0), "no User means root");
        assert_eq!(spec.cwd, "/", "no WorkingDir means /");
    }

    #[test]
    fn an_image_with_nothing_to_run_and_no_command_is_refused() {
        let layer = layer_with_users();
        let image = pulled(config(serde_json::json!({"config": {}})), layer.path());
        let err = image_process(&image, " ", &[]).expect_err("nothing to run");
        assert!(err.contains("neither Entrypoint nor Cmd"), "{err}");
    }

    #[test]
    fn cf_variables_override_the_image_env_but_keep_its_path() {
        let layer = layer_with_users();
        let image = pulled(
            config(serde_json::json!({"config": {
                "Cmd": ["/bin/app"],
                "Env": ["PATH=/opt/app/bin:/bin", "GREETING=from-image", "PORT=1"],
            }})),
            layer.path(),
        );
        let cf_env = vec![
            ("PORT".to_string(), "8000".to_string()),
            ("VCAP_APPLICATION".to_string(), "{}".to_string()),
            ("HOME".to_string(), "/home/vcap/app".to_string()),
            ("PATH".to_string(), "/usr/bin:/bin".to_string()),
            ("LANG".to_string(), "en_US.UTF-8".to_string()),
            ("GREETING".to_string(), "from-user".to_string()),
        ];
        let user_env = BTreeMap::from([("GREETING".to_string(), "from-user".to_string())]);
        let env = docker_environment(cf_env, &user_env);
        let spec = image_process(&image, "", &env).expect("spec");
        let env: BTreeMap<String, String> = spec.env.into_iter().collect();
        assert_eq!(env["PATH"], "/opt/app/bin:/bin", "the image's PATH");
        assert_eq!(env["PORT"], "8000", "CF's PORT wins over the image's");
        assert_eq!(env["GREETING"], "from-user", "the user's variable wins");
        assert!(env.contains_key("VCAP_APPLICATION"));
        assert!(!env.contains_key("HOME"), "no buildpack HOME: {env:?}");
        assert!(!env.contains_key("LANG"), "no buildpack LANG: {env:?}");
    }

    #[test]
    fn a_path_the_user_sets_is_kept() {
        let user_env = BTreeMap::from([("PATH".to_string(), "/custom".to_string())]);
        let env = docker_environment(vec![("PATH".into(), "/custom".into())], &user_env);
        assert_eq!(env, [("PATH".to_string(), "/custom".to_string())]);
    }

    #[test]
    fn credentials_need_a_user_name_and_the_password_is_never_printed() {
        let source = ImageSource {
            reference: "127.0.0.1:5000/team/web:1".into(),
            username: Some("deployer".into()),
            password: Some("s3cret".into()),
        };
        let printed = format!("{source:?}");
        assert!(!printed.contains("s3cret"), "{printed}");
        assert!(printed.contains("deployer"), "{printed}");
        assert!(source.credentials().is_some());
        let anonymous = ImageSource {
            username: None,
            ..source.clone()
        };
        assert!(anonymous.credentials().is_none());
    }

    #[tokio::test]
    async fn a_pull_that_cannot_reach_the_registry_names_the_image() {
        let dir = tempfile::tempdir().expect("tempdir");
        let images = Images::open(&dir.path().join("images")).expect("open");
        // A port nothing listens on: bind, read the port, close.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("port")
            .port();
        let source = ImageSource {
            reference: format!("127.0.0.1:{port}/team/web:1"),
            username: None,
            password: None,
        };
        let err = images
            .pull_for("instance-1", &source)
            .await
            .err()
            .expect("pull fails");
        let message = err.to_string();
        assert!(
            message.contains(&source.reference),
            "the reference is named: {message}"
        );
        assert!(images.in_use().is_empty(), "nothing is left in use");
        images.collect(&[]).await;
        assert!(images.store().list().expect("list").is_empty());
    }
}
