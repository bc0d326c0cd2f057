//! One-off tasks (Diego's Tasks): a command run once from an app's droplet
//! in a container of its own, without health check, routes or restart.
//!
//! A task's logs are tagged `APP/TASK/<name>` on the app's stream. It ends
//! when its command exits, or when it is cancelled (SIGTERM, then SIGKILL
//! after the stop grace period) — a scheduler shutdown cancels every task.
//! Either way its container is destroyed and a
//! [`SchedulerEvent::TaskCompleted`] reports how it ended.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use ingot_containers::{Container, ExitStatus};
use ingot_logs::{forward_lines, Envelope, LogKind};
use tokio_util::sync::CancellationToken;

use crate::cell::{Cell, APP_PORT};
use crate::{SchedulerConfig, SchedulerError, SchedulerEvent};

/// CF's `failure_reason` of a cancelled task.
pub const TASK_CANCELLED: &str = "task was cancelled";

/// How long to wait for the exit status of a task that was stopped, beyond
/// the stop grace period, before reporting it as unknown.
const EXIT_REPORT_TIMEOUT: Duration = Duration::from_secs(10);

/// A task the API wants run once.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskDefinition {
    /// The task's guid; also its container's id.
    pub task_guid: String,
    /// The task's name (logs are tagged `APP/TASK/<name>`).
    pub name: String,
    /// The app whose droplet it runs; its logs use this as source id.
    pub app_guid: String,
    /// The app's name.
    pub app_name: String,
    /// Space guid.
    pub space_guid: String,
    /// Space name.
    pub space_name: String,
    /// Organization guid.
    pub org_guid: String,
    /// Organization name.
    pub org_name: String,
    /// The droplet to run.
    pub droplet_guid: String,
    /// Its blob key.
    pub droplet_key: String,
    /// The command.
    pub command: String,
    /// Memory limit.
    pub memory_mb: u64,
    /// Disk limit.
    pub disk_mb: u64,
    /// The user's environment variables.
    pub environment: BTreeMap<String, String>,
    /// Where the task may open connections (the space's running security
    /// groups); empty allows nothing.
    pub egress: Vec<ingot_containers::EgressRule>,
    /// A Docker image to run the command in instead of the droplet.
    pub image: Option<crate::ImageSource>,
}

/// How a task ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskCompletedEvent {
    /// The task.
    pub task_guid: String,
    /// Its app.
    pub app_guid: String,
    /// The exit status of its command; -1 when it never ran or is unknown.
    pub exit_status: i32,
    /// `None` when it succeeded; else why it failed, in CF's words
    /// (`Exited with status 2`, `task was cancelled`, …).
    pub failure_reason: Option<String>,
    /// Whether the cgroup's OOM killer fired.
    pub oom: bool,
}

/// How a task's process ended, before it is worded for the API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ending {
    Exited(ExitStatus),
    Cancelled,
}

/// CF's `failure_reason` for an ending (`None` for success).
fn failure_reason(ending: Ending) -> Option<String> {
    match ending {
        Ending::Cancelled => Some(TASK_CANCELLED.to_string()),
        Ending::Exited(status) if status.code == 0 && !status.oom_killed => None,
        Ending::Exited(status) => {
            let mut reason = format!("Exited with status {}", status.code);
            if status.oom_killed {
                reason.push_str(" (out of memory)");
            }
            Some(reason)
        }
    }
}

/// The environment of a task: an instance's, without what only a
/// long-running instance has (an index and a port), as Diego gives tasks.
pub(crate) fn task_environment(
    config: &SchedulerConfig,
    task: &TaskDefinition,
) -> Vec<(String, String)> {
    const INSTANCE_ONLY: &[&str] = &[
        "CF_INSTANCE_INDEX",
        "INSTANCE_INDEX",
        "PORT",
        "VCAP_APP_PORT",
        "CF_INSTANCE_PORT",
        "CF_INSTANCE_ADDR",
    ];
    let info = ingot_lifecycle::InstanceInfo {
        app_guid: task.app_guid.clone(),
        app_name: task.app_name.clone(),
        space_guid: task.space_guid.clone(),
        space_name: task.space_name.clone(),
        org_guid: task.org_guid.clone(),
        org_name: task.org_name.clone(),
        process_guid: task.app_guid.clone(),
        process_type: "task".to_string(),
        version: task.droplet_guid.clone(),
        instance_guid: task.task_guid.clone(),
        instance_index: 0,
        port: APP_PORT,
        memory_mb: task.memory_mb,
        disk_mb: task.disk_mb,
        uris: Vec::new(),
        cf_api: config.cf_api.clone(),
        user_env: task.environment.clone().into_iter().collect(),
        ..Default::default()
    };
    ingot_lifecycle::instance_environment(&info)
        .into_iter()
        .filter(|(name, _)| !INSTANCE_ONLY.contains(&name.as_str()))
        .map(|(name, value)| match name.as_str() {
            "CF_INSTANCE_PORTS" => (name, "[]".to_string()),
            "VCAP_APPLICATION" => {
                let value = without_instance_fields(&value).unwrap_or(value);
                (name, value)
            }
            _ => (name, value),
        })
        .collect()
}

/// `VCAP_APPLICATION` without `instance_index` and `port`.
fn without_instance_fields(vcap_application: &str) -> Option<String> {
    let mut value: serde_json::Value = serde_json::from_str(vcap_application).ok()?;
    let object = value.as_object_mut()?;
    object.remove("instance_index");
    object.remove("port");
    Some(value.to_string())
}

impl Cell {
    /// Starts a task in the background. Refused while shutting down and for
    /// a guid that already runs.
    pub(crate) fn run_task(self: &Arc<Self>, task: TaskDefinition) -> Result<(), SchedulerError> {
        if self.is_stopping() {
            return Err(SchedulerError::ShuttingDown {
                task_guid: task.task_guid,
            });
        }
        // A child of the shutdown token: stopping the cell cancels the task.
        let cancel = self.stopped.child_token();
        {
            let mut running = self.running_tasks();
            if running.contains_key(&task.task_guid) {
                return Err(SchedulerError::TaskExists {
                    task_guid: task.task_guid,
                });
            }
            let reserved = self.reserved();
            if let Err(short) = crate::placement::fits(
                &self.config.capacity,
                &reserved,
                task.memory_mb,
                task.disk_mb,
            ) {
                return Err(SchedulerError::InsufficientResources {
                    task_guid: task.task_guid,
                    resource: short.to_string(),
                });
            }
            self.task_reservations
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .insert(task.task_guid.clone(), (task.memory_mb, task.disk_mb));
            running.insert(task.task_guid.clone(), cancel.clone());
        }
        let cell = Arc::clone(self);
        self.tasks
            .spawn(async move { cell.drive_task(task, cancel).await });
        Ok(())
    }

    /// Cancels a running task; `false` when no such task runs.
    pub(crate) fn cancel_task(&self, task_guid: &str) -> bool {
        match self.running_tasks().get(task_guid) {
            Some(cancel) => {
                cancel.cancel();
                true
            }
            None => false,
        }
    }

    fn task_log(&self, task: &TaskDefinition, line: impl Into<Vec<u8>>, kind: LogKind) {
        self.logs.emit(Envelope::log(
            &task.app_guid,
            "0",
            &format!("APP/TASK/{}", task.name),
            line,
            kind,
        ));
    }

    /// Drives one task from container creation to its report.
    async fn drive_task(self: Arc<Self>, task: TaskDefinition, cancel: CancellationToken) {
        let guid = task.task_guid.clone();
        self.task_log(&task, "Creating container", LogKind::Out);
        let created = tokio::select! {
            created = self.create_task_container(&task) => Some(created),
            _ = cancel.cancelled() => None,
        };
        let (exit_status, reason, oom) = match created {
            None => (-1, Some(TASK_CANCELLED.to_string()), false),
            Some(Err(err)) => {
                tracing::warn!(task = %guid, error = %err, "cannot create the task's container");
                self.task_log(
                    &task,
                    format!("Failed to create container: {err}"),
                    LogKind::Err,
                );
                (
                    -1,
                    Some(format!("failed to create container: {err}")),
                    false,
                )
            }
            Some(Ok(container)) => {
                self.task_log(&task, "Successfully created container", LogKind::Out);
                let ending = self.watch_task(&task, container, &cancel).await;
                let status = match ending {
                    Ending::Exited(status) => status,
                    Ending::Cancelled => ExitStatus::UNKNOWN,
                };
                if let Ending::Exited(status) = ending {
                    self.task_log(&task, format!("Exit status {}", status.code), LogKind::Out);
                }
                (status.code, failure_reason(ending), status.oom_killed)
            }
        };
        self.task_log(&task, "Destroying container", LogKind::Out);
        match self.containers.destroy(&guid).await {
            Ok(()) => self.task_log(&task, "Successfully destroyed container", LogKind::Out),
            Err(err) => {
                tracing::warn!(task = %guid, error = %err, "destroying the task's container failed")
            }
        }
        if task.image.is_some() {
            self.image_released(&guid);
        }
        self.running_tasks().remove(&guid);
        self.task_reservations
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(&guid);
        let _ = self
            .events
            .send(SchedulerEvent::TaskCompleted(TaskCompletedEvent {
                task_guid: guid,
                app_guid: task.app_guid.clone(),
                exit_status,
                failure_reason: reason,
                oom,
            }));
    }

    /// Forwards the task's output and waits for it to exit or be cancelled
    /// (then stops it and waits for its exit).
    async fn watch_task(
        &self,
        task: &TaskDefinition,
        mut container: Container,
        cancel: &CancellationToken,
    ) -> Ending {
        let source_type = format!("APP/TASK/{}", task.name);
        let stdout_done = forward_lines(
            container.stdout,
            Arc::clone(&self.logs),
            task.app_guid.clone(),
            "0".to_string(),
            source_type.clone(),
            LogKind::Out,
        );
        let stderr_done = forward_lines(
            container.stderr,
            Arc::clone(&self.logs),
            task.app_guid.clone(),
            "0".to_string(),
            source_type,
            LogKind::Err,
        );
        let ending = tokio::select! {
            status = &mut container.exit => {
                Ending::Exited(status.unwrap_or(ExitStatus::UNKNOWN))
            }
            _ = cancel.cancelled() => Ending::Cancelled,
        };
        if ending == Ending::Cancelled {
            if let Err(err) = self
                .containers
                .stop(&task.task_guid, self.config.stop_grace)
                .await
            {
                tracing::warn!(task = %task.task_guid, error = %err, "stopping the task failed");
            }
            // The exit status is only for the platform's log: the task
            // failed as cancelled whatever its command made of the signal.
            if let Ok(Ok(status)) =
                tokio::time::timeout(EXIT_REPORT_TIMEOUT, &mut container.exit).await
            {
                tracing::debug!(task = %task.task_guid, code = status.code, "cancelled task exited");
            }
        }
        let _ = stdout_done.await;
        let _ = stderr_done.await;
        ending
    }

    async fn create_task_container(
        &self,
        task: &TaskDefinition,
    ) -> Result<Container, SchedulerError> {
        if let Some(image) = &task.image {
            return self.create_image_task_container(task, image).await;
        }
        let layer = self
            .droplet_layer(&task.droplet_guid, &task.droplet_key)
            .await?;
        self.run_droplet(
            &task.task_guid,
            layer,
            &task.command,
            task_environment(&self.config, task),
            crate::cell::limits_for(task.memory_mb, task.disk_mb),
            &task.egress,
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    fn definition() -> TaskDefinition {
        TaskDefinition {
            task_guid: "task-guid".into(),
            name: "migrate".into(),
            app_guid: "app-guid".into(),
            app_name: "worker".into(),
            space_guid: "space-guid".into(),
            space_name: "dev".into(),
            org_guid: "org-guid".into(),
            org_name: "main".into(),
            droplet_guid: "droplet-guid".into(),
            droplet_key: "droplets/droplet-guid.tgz".into(),
            command: "rake db:migrate".into(),
            memory_mb: 64,
            disk_mb: 512,
            environment: BTreeMap::from([("GREETING".into(), "hello".into())]),
            egress: Vec::new(),
            image: None,
        }
    }

    fn config() -> SchedulerConfig {
        SchedulerConfig {
            work_dir: PathBuf::from("/nonexistent"),
            lifecycle_binary: PathBuf::from("/nonexistent/ingot"),
            cf_api: "http://127.0.0.1:9000".into(),
            converge_interval: Duration::from_secs(1),
            stop_grace: Duration::from_secs(1),
            route_drain: Duration::ZERO,
            capacity: crate::CellCapacity::unlimited(),
        }
    }

    #[test]
    fn a_task_has_no_index_and_no_port_but_the_app_environment() {
        let env: BTreeMap<String, String> = task_environment(&config(), &definition())
            .into_iter()
            .collect();
        for absent in [
            "CF_INSTANCE_INDEX",
            "INSTANCE_INDEX",
            "PORT",
            "CF_INSTANCE_PORT",
        ] {
            assert!(!env.contains_key(absent), "{absent} is set: {env:?}");
        }
        assert_eq!(env.get("GREETING").map(String::as_str), Some("hello"));
        assert_eq!(
            env.get("CF_INSTANCE_GUID").map(String::as_str),
            Some("task-guid")
        );
        assert_eq!(env.get("CF_INSTANCE_PORTS").map(String::as_str), Some("[]"));
        let vcap: serde_json::Value =
            serde_json::from_str(env.get("VCAP_APPLICATION").expect("VCAP_APPLICATION"))
                .expect("json");
        assert_eq!(vcap["application_name"], "worker");
        assert_eq!(vcap["space_name"], "dev");
        assert!(vcap.get("instance_index").is_none(), "{vcap}");
        assert!(vcap.get("port").is_none(), "{vcap}");
    }

    #[test]
    fn failure_reasons_are_worded_like_cf() {
        let exited = |code, oom_killed| {
            Ending::Exited(ExitStatus {
                code,
                signal: None,
                oom_killed,
            })
        };
        assert_eq!(failure_reason(exited(0, false)), None);
        assert_eq!(
            failure_reason(exited(3, false)).as_deref(),
            Some("Exited with status 3")
        );
        assert_eq!(
            failure_reason(exited(137, true)).as_deref(),
            Some("Exited with status 137 (out of memory)")
        );
        assert_eq!(
            failure_reason(Ending::Cancelled).as_deref(),
            Some("task was cancelled")
        );
    }
}
