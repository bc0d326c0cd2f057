//! Adapters that connect the roles of `ingot up` through their traits:
//! the API drives the scheduler ([`SchedulerRuntime`]), the scheduler feeds
//! the router ([`RouterEmitter`]), and the token verifier guards the API and
//! the log-cache ([`Tokens`]).

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use async_trait::async_trait;
use ingot_api::{
    BuildpackRef, DesiredProcess, InstanceReport, Principal, StageFailure, StageOutcome,
    StageRequest, TaskRejected, TaskRequest, TokenProblem,
};
use ingot_auth::TokenError;
use ingot_scheduler::{
    BuildpackSource, DesiredLrp, HealthCheck, HealthCheckKind, RouteEmitter, RouteTarget,
    Scheduler, StagingRequest, TaskDefinition,
};

/// The API's [`ingot_api::Runtime`] over the scheduler.
pub struct SchedulerRuntime {
    pub scheduler: Scheduler,
}

#[async_trait]
impl ingot_api::Runtime for SchedulerRuntime {
    async fn stage(&self, request: StageRequest) -> Result<StageOutcome, StageFailure> {
        let skip_detect = !request.buildpacks.is_empty();
        let chosen = if skip_detect {
            &request.buildpacks
        } else {
            &request.detect_candidates
        };
        let mut buildpacks = Vec::new();
        for reference in chosen {
            match reference {
                BuildpackRef::Builtin(name) => {
                    buildpacks.push(BuildpackSource::Builtin(name.clone()))
                }
                BuildpackRef::Uploaded { name, blob_key } => {
                    buildpacks.push(BuildpackSource::Zip {
                        name: name.clone(),
                        blob_key: blob_key.clone(),
                    })
                }
                BuildpackRef::Url(url) => buildpacks.push(BuildpackSource::Url(url.clone())),
            }
        }
        let staging = StagingRequest {
            build_guid: request.build_guid,
            app_guid: request.app_guid,
            app_name: request.app_name,
            space_guid: request.space_guid,
            space_name: request.space_name,
            org_guid: request.org_guid,
            org_name: request.org_name,
            package_key: request.package_key,
            droplet_key: request.droplet_key,
            buildpacks,
            skip_detect,
            environment: request.environment,
            memory_mb: request.memory_mb,
            disk_mb: request.disk_mb,
            egress: egress_rules(&request.egress),
        };
        self.scheduler
            .stage(staging)
            .await
            .map(|outcome| StageOutcome {
                detected_buildpack: outcome.detected_buildpack,
                buildpack_name: outcome.buildpack_name,
                process_types: outcome.process_types,
                checksum_sha256: outcome.checksum_sha256,
            })
            .map_err(|failure| StageFailure {
                code: failure.code,
                message: failure.message,
            })
    }

    async fn desire(&self, process: DesiredProcess) {
        if process.instances == 0 {
            self.scheduler.remove(&process.process_guid);
            return;
        }
        let defaults = HealthCheck::default();
        let health_check = HealthCheck {
            kind: match process.health_check.kind.as_str() {
                "http" => HealthCheckKind::Http,
                "process" | "none" => HealthCheckKind::Process,
                _ => HealthCheckKind::Port,
            },
            endpoint: process
                .health_check
                .endpoint
                .clone()
                .unwrap_or(defaults.endpoint),
            start_timeout: process
                .health_check
                .timeout_secs
                .map_or(defaults.start_timeout, Duration::from_secs),
            invocation_timeout: process
                .health_check
                .invocation_timeout_secs
                .map_or(defaults.invocation_timeout, Duration::from_secs),
        };
        self.scheduler.desire(DesiredLrp {
            process_guid: process.process_guid,
            process_type: process.process_type,
            app_guid: process.app_guid,
            app_name: process.app_name,
            space_guid: process.space_guid,
            space_name: process.space_name,
            org_guid: process.org_guid,
            org_name: process.org_name,
            droplet_guid: process.droplet_guid,
            droplet_key: process.droplet_key,
            command: process.command,
            instances: process.instances,
            memory_mb: process.memory_mb,
            disk_mb: process.disk_mb,
            environment: process.environment,
            uris: process.uris,
            health_check,
            vcap_services: process.vcap_services,
            log_rate_limit: process.log_rate_limit,
            egress: egress_rules(&process.egress),
            image: process.docker_image.map(image_source),
        });
    }

    async fn remove(&self, process_guid: &str) {
        self.scheduler.remove(process_guid);
    }

    async fn run_task(&self, task: TaskRequest) -> Result<(), TaskRejected> {
        let task_guid = task.task_guid.clone();
        self.scheduler
            .run_task(TaskDefinition {
                task_guid: task.task_guid,
                name: task.name,
                app_guid: task.app_guid,
                app_name: task.app_name,
                space_guid: task.space_guid,
                space_name: task.space_name,
                org_guid: task.org_guid,
                org_name: task.org_name,
                droplet_guid: task.droplet_guid,
                droplet_key: task.droplet_key,
                command: task.command,
                memory_mb: task.memory_mb,
                disk_mb: task.disk_mb,
                environment: task.environment,
                egress: egress_rules(&task.egress),
                image: task.docker_image.map(image_source),
            })
            .map_err(|err| TaskRejected {
                task_guid,
                message: err.to_string(),
            })
    }

    async fn cancel_task(&self, task_guid: &str) -> bool {
        self.scheduler.cancel_task(task_guid)
    }

    async fn update_egress(&self, process_guid: &str, egress: Vec<ingot_api::EgressRule>) {
        self.scheduler
            .update_egress(process_guid, egress_rules(&egress));
    }

    fn instances(&self, process_guid: &str) -> Vec<InstanceReport> {
        self.scheduler
            .instances(process_guid)
            .into_iter()
            .map(|status| InstanceReport {
                index: status.index,
                state: status.state,
                instance_guid: status.instance_guid.unwrap_or_default(),
                host: status.addr.map(|a| a.ip().to_string()).unwrap_or_default(),
                port: status.addr.map(|a| a.port()),
                uptime_secs: status.uptime_secs,
                mem_bytes: status.mem_bytes,
                disk_bytes: status.disk_bytes,
                cpu: status.cpu,
                details: status.details,
            })
            .collect()
    }
}

/// Scheduler route events straight into the in-process routers: HTTP
/// route URIs into the HTTP router's table, TCP route URIs (`tcp:<port>`,
/// see [`ingot_api::tcp_route_port`]) to the TCP router, which listens on
/// that port.
pub struct RouterEmitter {
    table: ingot_router::RouteTable,
    tcp: ingot_router::TcpRouter,
    /// instance guid → the TCP ports it is registered on, so that
    /// `unregister_instance` reaches the TCP router too.
    tcp_instances: std::sync::Mutex<HashMap<String, BTreeSet<u16>>>,
}

impl RouterEmitter {
    /// An emitter into these two routers.
    pub fn new(table: ingot_router::RouteTable, tcp: ingot_router::TcpRouter) -> Self {
        Self {
            table,
            tcp,
            tcp_instances: std::sync::Mutex::default(),
        }
    }

    fn tcp_instances(&self) -> std::sync::MutexGuard<'_, HashMap<String, BTreeSet<u16>>> {
        // Every mutation leaves the map consistent.
        self.tcp_instances
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl RouteEmitter for RouterEmitter {
    fn register(&self, uri: &str, target: &RouteTarget) {
        let endpoint = ingot_router::Endpoint {
            addr: target.addr,
            app_guid: target.app_guid.clone(),
            process_guid: target.process_guid.clone(),
            instance_guid: target.instance_guid.clone(),
            index: target.index,
        };
        match ingot_api::tcp_route_port(uri) {
            Some(port) => match self.tcp.register(port, endpoint) {
                Ok(_) => {
                    self.tcp_instances()
                        .entry(target.instance_guid.clone())
                        .or_default()
                        .insert(port);
                }
                // The port is taken on this host: the route stays
                // unserved, which the log says.
                Err(err) => tracing::warn!(error = %err, uri, "cannot serve a TCP route"),
            },
            None => self.table.register(uri, endpoint),
        }
    }

    fn unregister(&self, uri: &str, instance_guid: &str) {
        match ingot_api::tcp_route_port(uri) {
            Some(port) => {
                self.tcp.unregister(port, instance_guid);
                let mut instances = self.tcp_instances();
                if let Some(ports) = instances.get_mut(instance_guid) {
                    ports.remove(&port);
                    if ports.is_empty() {
                        instances.remove(instance_guid);
                    }
                }
            }
            None => self.table.unregister(uri, instance_guid),
        }
    }

    fn unregister_instance(&self, instance_guid: &str) {
        self.table.unregister_instance(instance_guid);
        let ports = self.tcp_instances().remove(instance_guid);
        for port in ports.into_iter().flatten() {
            self.tcp.unregister(port, instance_guid);
        }
    }
}

/// Token checks for the API and the log-cache, over the token server: a
/// token must be ours, unexpired, and its user must still exist.
pub struct Tokens {
    pub auth: ingot_auth::AuthServer,
}

impl Tokens {
    fn verify(&self, authorization: Option<&str>) -> Result<ingot_auth::Claims, TokenError> {
        self.auth.verify_live(authorization)
    }
}

impl ingot_api::TokenValidator for Tokens {
    fn validate(&self, authorization: Option<&str>) -> Result<Principal, TokenProblem> {
        match self.verify(authorization) {
            // A client's own token (client_credentials) speaks for the client.
            Ok(claims) if claims.is_client() => Ok(Principal {
                user_guid: claims.client_id.clone(),
                user_name: claims.client_id,
                scopes: claims.scope,
            }),
            Ok(claims) => Ok(Principal {
                user_guid: claims.user_id,
                user_name: claims.user_name,
                scopes: claims.scope,
            }),
            Err(TokenError::Missing) => Err(TokenProblem::Missing),
            Err(TokenError::Expired) => Err(TokenProblem::Expired),
            Err(_) => Err(TokenProblem::Invalid),
        }
    }
}

/// Who may read logs: the firehose needs `doppler.firehose` (or
/// `logs.admin`); an app's logs need a role that sees the app's space, as
/// CF's log access check decides.
pub struct LogAccess {
    pub tokens: std::sync::Arc<Tokens>,
    pub api: ingot_api::Api,
}

impl LogAccess {
    fn claims(
        &self,
        authorization: Option<&str>,
    ) -> Result<ingot_auth::Claims, ingot_logs::ReadDenied> {
        self.tokens
            .verify(authorization)
            .map_err(|err| ingot_logs::ReadDenied {
                status: 401,
                message: err.to_string(),
            })
    }
}

impl ingot_logs::ReadAuthorizer for LogAccess {
    fn authorize(
        &self,
        authorization: Option<&str>,
        source_id: &str,
    ) -> Result<(), ingot_logs::ReadDenied> {
        let claims = self.claims(authorization)?;
        if claims.has_scope("doppler.firehose") || claims.has_scope("logs.admin") {
            return Ok(());
        }
        let principal = Principal {
            user_guid: claims.user_id,
            user_name: claims.user_name,
            scopes: claims.scope,
        };
        // The log endpoints ask synchronously; the roles live in the
        // database. The platform runs on tokio's multi-threaded runtime,
        // where a handler may block its worker briefly for this.
        let api = self.api.clone();
        let source = source_id.to_string();
        let allowed = tokio::task::block_in_place(|| {
            tokio::runtime::Handle::current()
                .block_on(async move { api.may_read_logs(&principal, &source).await })
        });
        match allowed {
            Ok(true) => Ok(()),
            Ok(false) => Err(ingot_logs::ReadDenied {
                status: 403,
                message: format!("reading the logs of {source_id} needs a role in its space"),
            }),
            Err(err) => Err(ingot_logs::ReadDenied {
                status: 500,
                message: err.to_string(),
            }),
        }
    }
}

impl ingot_logs::StreamAuthorizer for LogAccess {
    /// The whole firehose needs `doppler.firehose` (or `logs.admin`).
    fn authorize_firehose(
        &self,
        authorization: Option<&str>,
    ) -> Result<(), ingot_logs::ReadDenied> {
        let claims = self.claims(authorization)?;
        if claims.has_scope("doppler.firehose") || claims.has_scope("logs.admin") {
            Ok(())
        } else {
            Err(ingot_logs::ReadDenied {
                status: 403,
                message: "reading the firehose needs the doppler.firehose scope".into(),
            })
        }
    }

    fn authorize_source(
        &self,
        authorization: Option<&str>,
        source_id: &str,
    ) -> Result<(), ingot_logs::ReadDenied> {
        ingot_logs::ReadAuthorizer::authorize(self, authorization, source_id)
    }
}

/// Keeps the API's crash records and task states in step with the
/// scheduler's events.
pub fn forward_crashes(scheduler: &Scheduler, api: ingot_api::Api) -> tokio::task::JoinHandle<()> {
    let mut events = scheduler.subscribe();
    tokio::spawn(async move {
        loop {
            match events.recv().await {
                Ok(ingot_scheduler::SchedulerEvent::Crashed(crash)) => {
                    let report = ingot_api::CrashReport {
                        process_guid: crash.process_guid,
                        index: crash.index,
                        instance_guid: crash.instance_guid,
                        exit_status: crash.exit_status,
                        reason: "CRASHED".into(),
                        exit_description: crash.exit_description,
                        crash_count: crash.crash_count,
                        crash_timestamp_ns: crash.timestamp_ns,
                    };
                    if let Err(err) = api.record_crash(report).await {
                        tracing::warn!(error = %err, "cannot record a crash event");
                    }
                }
                Ok(ingot_scheduler::SchedulerEvent::TaskCompleted(done)) => {
                    let task_guid = done.task_guid.clone();
                    let completion = ingot_api::TaskCompletion {
                        task_guid: done.task_guid,
                        exit_status: done.exit_status,
                        failure_reason: done.failure_reason,
                    };
                    if let Err(err) = api.record_task_completion(completion).await {
                        tracing::warn!(task = %task_guid, error = %err, "cannot record a task's end");
                    }
                }
                Err(tokio::sync::broadcast::error::RecvError::Lagged(missed)) => {
                    tracing::warn!(
                        missed,
                        "scheduler events were dropped before they were recorded"
                    );
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            }
        }
    })
}

/// The token server's users, for the API to name users in roles.
pub struct Users {
    pub auth: ingot_auth::AuthServer,
}

#[async_trait]
impl ingot_api::UserDirectory for Users {
    async fn user_guid(&self, username: &str, origin: Option<&str>) -> Option<String> {
        self.auth
            .user_id_by_name(username, origin.unwrap_or(ingot_auth::ORIGIN_UAA))
            .await
            .ok()
            .flatten()
    }

    async fn username(&self, user_guid: &str) -> Option<String> {
        self.auth.username_by_id(user_guid).await.ok().flatten()
    }
}

/// The API's security group rules as the container firewall takes them.
/// The API has validated them; an ICMP type or code of -1 (or out of
/// range) means any.
fn egress_rules(rules: &[ingot_api::EgressRule]) -> Vec<ingot_containers::EgressRule> {
    use ingot_containers::{Destination, PortRange, Protocol};
    let icmp_field = |v: Option<i32>| v.and_then(|v| u8::try_from(v).ok());
    rules
        .iter()
        .filter_map(|rule| {
            let protocol = match rule.protocol.as_str() {
                "all" => Protocol::All,
                "tcp" => Protocol::Tcp,
                "udp" => Protocol::Udp,
                "icmp" => Protocol::Icmp {
                    type_: icmp_field(rule.icmp_type),
                    code: icmp_field(rule.icmp_code),
                },
                other => {
                    tracing::warn!(
                        protocol = other,
                        "skipping an egress rule of unknown protocol"
                    );
                    return None;
                }
            };
            Some(ingot_containers::EgressRule {
                protocol,
                destinations: rule
                    .destinations
                    .iter()
                    .map(|d| Destination::Range {
                        first: d.start,
                        last: d.end,
                    })
                    .collect(),
                ports: rule
                    .ports
                    .iter()
                    .map(|p| PortRange {
                        first: p.start,
                        last: p.end,
                    })
                    .collect(),
                log: rule.log,
            })
        })
        .collect()
}

/// The scheduler's image source for an API docker image.
fn image_source(image: ingot_api::DockerImage) -> ingot_scheduler::ImageSource {
    ingot_scheduler::ImageSource {
        reference: image.reference,
        username: image.username,
        password: image.password,
    }
}
