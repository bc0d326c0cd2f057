//! Managed service instances and their bindings: what the Cloud Controller
//! asks of the broker when a user creates, updates or deletes an instance
//! from a plan, binds it to an app or creates a service key.
//!
//! Every such request stores the operation on the instance (or binding)
//! as [`PendingOp`], answers `202` with a job, and runs the broker call in
//! a task of its own: never inside a transaction, never holding a lock
//! across the network. An asynchronous answer (`202` from the broker) is
//! polled through `last_operation`, honouring `Retry-After` within the
//! platform's bounds, until the plan's `maximum_polling_duration` (or the
//! platform's) runs out. The operation's progress is stored at each step,
//! so `Api::resume` continues polling after a restart; a first call that a
//! restart interrupted fails (create, update, bind) or is sent again
//! (deprovision, unbind — both idempotent in OSB).

use std::time::Duration;

use axum::response::Response;
use ingot_brokers::osb::{
    BindRequest, BindingDetails, Bound, Context, Deprovisioned, MaintenanceInfo, OperationKind,
    OperationState, OriginatingIdentity, PlanRef, PreviousValues, ProvisionRequest, Provisioned,
    Unbound, UpdateRequest, Updated,
};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use sqlx::{Sqlite, SqliteConnection, Transaction};

use crate::authz::Access;
use crate::error::{ApiError, ApiResult};
use crate::http::{accepted_job, ok};
use crate::model::{now, EventParty, Job, Metadata, Org, Render, Space};
use crate::service_brokers::{finish_job, job_polling, unable_to_perform, ServiceBroker};
use crate::service_offerings::{plan_for_space, ServiceOffering, ServicePlan};
use crate::services::{
    audit_instance, instance_name_taken, refuse_if_bound, Binding, ServiceInstance,
};
use crate::store::{self, Query};
use crate::{Api, Principal};

/// A broker operation in flight on an instance or a binding.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct PendingOp {
    /// `create`, `update` or `delete`.
    pub kind: String,
    /// The job the user polls.
    pub job_guid: String,
    /// Whether the broker answered asynchronously and we poll it.
    pub polling: bool,
    /// The broker's opaque operation id.
    pub broker_operation: Option<String>,
    /// When polling gives up, in milliseconds since the epoch.
    pub deadline_ms: i64,
    /// Who asked (the originating identity and the audit actor).
    pub user_guid: String,
    pub user_name: String,
    /// An update's new plan.
    pub plan_guid: Option<String>,
    /// The broker's id of that plan.
    pub plan_broker_id: Option<String>,
    /// The `maintenance_info` the instance will have when this succeeds.
    pub maintenance_info: Option<Value>,
}

impl PendingOp {
    fn new(kind: &str, job_guid: &str, p: &Principal) -> Self {
        PendingOp {
            kind: kind.into(),
            job_guid: job_guid.into(),
            polling: false,
            broker_operation: None,
            deadline_ms: 0,
            user_guid: p.user_guid.clone(),
            user_name: p.user_name.clone(),
            plan_guid: None,
            plan_broker_id: None,
            maintenance_info: None,
        }
    }

    fn principal(&self) -> Principal {
        Principal {
            user_guid: self.user_guid.clone(),
            user_name: self.user_name.clone(),
            scopes: Vec::new(),
        }
    }

    fn identity(&self) -> OriginatingIdentity {
        OriginatingIdentity {
            user_id: self.user_guid.clone(),
        }
    }
}

/// CF's verb for an instance operation, as its messages use it.
fn instance_verb(kind: &str) -> &'static str {
    match kind {
        "create" => "provision",
        "update" => "update",
        _ => "deprovision",
    }
}

fn binding_verb(kind: &str) -> &'static str {
    if kind == "create" {
        "bind"
    } else {
        "unbind"
    }
}

fn operation_kind(kind: &str) -> OperationKind {
    match kind {
        "create" => OperationKind::Create,
        "update" => OperationKind::Update,
        _ => OperationKind::Delete,
    }
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

fn maintenance(value: Option<&Value>) -> Option<MaintenanceInfo> {
    value.and_then(|v| serde_json::from_value(v.clone()).ok())
}

/// Everything a broker call about an instance needs.
struct Ctx {
    instance: ServiceInstance,
    plan: ServicePlan,
    offering: ServiceOffering,
    broker: ServiceBroker,
    space: Space,
    org: Org,
}

impl Ctx {
    fn osb_context(&self) -> Context {
        Context {
            platform: "cloudfoundry".into(),
            organization_guid: self.org.guid.clone(),
            space_guid: self.space.guid.clone(),
            organization_name: Some(self.org.name.clone()),
            space_name: Some(self.space.name.clone()),
            instance_name: Some(self.instance.name.clone()),
        }
    }

    fn plan_ref(&self, plan_broker_id: Option<&str>) -> PlanRef {
        PlanRef {
            service_id: self.offering.broker_id.clone(),
            plan_id: plan_broker_id
                .map(str::to_string)
                .unwrap_or_else(|| self.plan.broker_id.clone()),
        }
    }
}

/// The offering and plan of a managed instance.
pub(crate) async fn offering_and_plan(
    c: &mut SqliteConnection,
    instance: &ServiceInstance,
) -> ApiResult<Option<(ServiceOffering, ServicePlan)>> {
    let Some(plan_guid) = &instance.service_plan_guid else {
        return Ok(None);
    };
    let Some(plan) = store::get::<ServicePlan>(c, plan_guid).await? else {
        return Ok(None);
    };
    Ok(store::get::<ServiceOffering>(c, &plan.offering_guid)
        .await?
        .map(|o| (o, plan)))
}

async fn context_in(c: &mut SqliteConnection, instance: ServiceInstance) -> ApiResult<Ctx> {
    let missing = |what: &str| {
        ApiError::Internal(format!("service instance {} has no {what}", instance.guid))
    };
    let (offering, plan) = offering_and_plan(c, &instance)
        .await?
        .ok_or_else(|| missing("plan"))?;
    let broker = store::get::<ServiceBroker>(c, &offering.broker_guid)
        .await?
        .ok_or_else(|| missing("broker"))?;
    let space = store::fetch::<Space>(c, &instance.space_guid).await?;
    let org = store::fetch::<Org>(c, &space.org_guid).await?;
    Ok(Ctx {
        instance,
        plan,
        offering,
        broker,
        space,
        org,
    })
}

/// The instance's context on a connection that is returned before the
/// caller goes to the network.
async fn load_ctx(api: &Api, guid: &str) -> ApiResult<Option<Ctx>> {
    let mut c = api.inner.pool.acquire().await?;
    match store::get::<ServiceInstance>(&mut c, guid).await? {
        Some(instance) => Ok(Some(context_in(&mut c, instance).await?)),
        None => Ok(None),
    }
}

/// The polling deadline for an operation on the plan, from now.
fn deadline_for(api: &Api, plan: &ServicePlan) -> i64 {
    let platform = api.broker_polling().max_duration;
    let limit = match plan.maximum_polling_duration {
        Some(secs) => platform.min(Duration::from_secs(secs)),
        None => platform,
    };
    now_ms().saturating_add(i64::try_from(limit.as_millis()).unwrap_or(i64::MAX))
}

/// The wait before the next `last_operation`: the broker's `Retry-After`,
/// else the platform interval, within the platform's bounds and never past
/// the deadline.
fn next_wait(api: &Api, retry_after: Option<Duration>, deadline_ms: i64) -> Duration {
    let polling = api.broker_polling();
    let floor = polling.interval.min(Duration::from_secs(1));
    let remaining =
        Duration::from_millis(u64::try_from(deadline_ms.saturating_sub(now_ms())).unwrap_or(0));
    retry_after
        .unwrap_or(polling.interval)
        .max(floor)
        .min(polling.max_interval)
        .min(remaining.max(Duration::from_millis(1)))
}

/// A new managed instance, as the request asked for it.
pub(crate) struct NewManaged {
    pub name: String,
    pub space_guid: String,
    pub plan_guid: String,
    pub parameters: Option<Map<String, Value>>,
    pub tags: Vec<String>,
    pub metadata: Metadata,
}

/// `POST /v3/service_instances` with `type: managed`.
pub(crate) async fn create_instance(
    api: &Api,
    p: &Principal,
    access: &Access,
    req: NewManaged,
) -> ApiResult<Response> {
    let mut tx = store::begin(&api.inner.pool).await?;
    let space: Space = match store::get(&mut tx, &req.space_guid).await? {
        Some(s) if access.can_read_space(&req.space_guid) => s,
        _ => {
            return Err(ApiError::Unprocessable(
                "Invalid space. Ensure that the space exists and you have access to it.".into(),
            ))
        }
    };
    if !access.can_write_space(&space.guid) {
        return Err(ApiError::NotAuthorized);
    }
    let plan = plan_for_space(&mut tx, access, &req.plan_guid, &space).await?;
    crate::quotas::check_service_instance(&mut tx, &space.guid, !plan.free).await?;
    if instance_name_taken(&mut tx, &space.guid, &req.name, "").await? {
        return Err(ApiError::Unprocessable(format!(
            "The service instance name is taken: {}.",
            req.name
        )));
    }
    let at = now();
    let guid = crate::model::new_guid();
    let job = Job::new(
        "service_instance.create",
        Some((
            "service_instances".into(),
            format!("/v3/service_instances/{guid}"),
        )),
    );
    let mut pending = PendingOp::new("create", &job.guid, p);
    pending.maintenance_info = plan.maintenance_info.clone();
    let instance = ServiceInstance {
        guid: guid.clone(),
        name: req.name,
        space_guid: space.guid.clone(),
        kind: "managed".into(),
        credentials: Map::new(),
        syslog_drain_url: None,
        route_service_url: None,
        tags: req.tags,
        last_operation: "create".into(),
        last_operation_state: "in progress".into(),
        last_operation_description: None,
        service_plan_guid: Some(plan.guid.clone()),
        dashboard_url: None,
        maintenance_info: None,
        pending: Some(pending),
        created_at: at.clone(),
        updated_at: at,
        metadata: req.metadata,
    };
    store::insert(&mut tx, &instance).await?;
    store::insert(&mut tx, &job).await?;
    tx.commit().await?;
    spawn_instance_op(api.clone(), guid, Call::Provision(req.parameters));
    Ok(accepted_job(api, &job.guid))
}

/// What a PATCH of a managed instance asks for.
pub(crate) struct ManagedUpdate {
    pub name: Option<String>,
    pub tags: Option<Vec<String>>,
    pub parameters: Option<Map<String, Value>>,
    pub plan_guid: Option<String>,
    pub maintenance_info: Option<Value>,
    pub metadata: Option<Value>,
}

fn in_progress(name: &str) -> ApiError {
    ApiError::Unprocessable(format!(
        "An operation for service instance {name} is in progress."
    ))
}

/// `PATCH /v3/service_instances/:guid` of a managed instance: name, tags
/// and metadata alone change at once (200); a plan, parameters or
/// maintenance_info go to the broker (202 and a job).
pub(crate) async fn update_instance(
    api: &Api,
    p: &Principal,
    access: &Access,
    guid: &str,
    req: ManagedUpdate,
) -> ApiResult<Response> {
    let mut tx = store::begin(&api.inner.pool).await?;
    let mut instance: ServiceInstance = store::fetch(&mut tx, guid).await?;
    if instance.pending.is_some() {
        return Err(in_progress(&instance.name));
    }
    let ctx = context_in(&mut tx, instance.clone()).await?;
    if let Some(name) = &req.name {
        if name.trim().is_empty() {
            return Err(ApiError::Unprocessable("Name can't be blank".into()));
        }
        if instance_name_taken(&mut tx, &instance.space_guid, name, &instance.guid).await? {
            return Err(ApiError::Unprocessable(format!(
                "The service instance name is taken: {name}."
            )));
        }
    }
    let mut target: Option<ServicePlan> = None;
    if let Some(plan_guid) = req.plan_guid.as_deref() {
        if plan_guid != ctx.plan.guid {
            let plan = plan_for_space(&mut tx, access, plan_guid, &ctx.space).await?;
            if plan.offering_guid != ctx.plan.offering_guid {
                return Err(ApiError::Unprocessable(
                    "The service plan relates to a different service offering.".into(),
                ));
            }
            if !ctx.plan.plan_updateable {
                return Err(ApiError::Unprocessable(
                    "The service does not support changing plans.".into(),
                ));
            }
            target = Some(plan);
        }
    }
    if let Some(mi) = &req.maintenance_info {
        let plan = target.as_ref().unwrap_or(&ctx.plan);
        let wanted = mi.get("version");
        let offered = plan
            .maintenance_info
            .as_ref()
            .and_then(|m| m.get("version"));
        if wanted.is_none() || wanted != offered {
            return Err(ApiError::Unprocessable(
                "The maintenance_info.version requested is invalid. Please ensure it matches what the service broker's catalog provides.".into(),
            ));
        }
    }
    if let Some(name) = req.name {
        instance.name = name;
    }
    if let Some(tags) = req.tags {
        instance.tags = tags;
    }
    if let Some(m) = &req.metadata {
        instance.metadata.merge(m);
    }
    instance.updated_at = now();
    let needs_broker =
        target.is_some() || req.parameters.is_some() || req.maintenance_info.is_some();
    if !needs_broker {
        store::put(&mut tx, &instance).await?;
        audit_instance(
            &mut tx,
            "audit.service_instance.update",
            p,
            &instance,
            &ctx.space,
        )
        .await?;
        tx.commit().await?;
        return Ok(ok(instance.render(&api.inner.config.external_url)));
    }
    let job = Job::new(
        "service_instance.update",
        Some((
            "service_instances".into(),
            format!("/v3/service_instances/{guid}"),
        )),
    );
    let mut pending = PendingOp::new("update", &job.guid, p);
    pending.plan_guid = target.as_ref().map(|t| t.guid.clone());
    pending.plan_broker_id = target.as_ref().map(|t| t.broker_id.clone());
    pending.maintenance_info = req.maintenance_info.clone();
    instance.pending = Some(pending);
    instance.last_operation = "update".into();
    instance.last_operation_state = "in progress".into();
    instance.last_operation_description = None;
    store::put(&mut tx, &instance).await?;
    store::insert(&mut tx, &job).await?;
    tx.commit().await?;
    spawn_instance_op(
        api.clone(),
        guid.to_string(),
        Call::Update {
            plan_id: target.map(|t| t.broker_id),
            parameters: req.parameters,
            maintenance_info: maintenance(req.maintenance_info.as_ref()),
        },
    );
    Ok(accepted_job(api, &job.guid))
}

/// `DELETE /v3/service_instances/:guid` of a managed instance: a job that
/// deprovisions it.
pub(crate) async fn delete_instance(api: &Api, p: &Principal, guid: &str) -> ApiResult<Response> {
    let mut tx = store::begin(&api.inner.pool).await?;
    let mut instance: ServiceInstance = store::fetch(&mut tx, guid).await?;
    if instance.pending.is_some() {
        return Err(in_progress(&instance.name));
    }
    refuse_if_bound(&mut tx, &instance).await?;
    let job = Job::new("service_instance.delete", None);
    instance.pending = Some(PendingOp::new("delete", &job.guid, p));
    instance.last_operation = "delete".into();
    instance.last_operation_state = "in progress".into();
    instance.last_operation_description = None;
    instance.updated_at = now();
    store::put(&mut tx, &instance).await?;
    store::insert(&mut tx, &job).await?;
    tx.commit().await?;
    spawn_instance_op(api.clone(), guid.to_string(), Call::Deprovision);
    Ok(accepted_job(api, &job.guid))
}

/// The first broker call of an instance operation.
enum Call {
    Provision(Option<Map<String, Value>>),
    Update {
        plan_id: Option<String>,
        parameters: Option<Map<String, Value>>,
        maintenance_info: Option<MaintenanceInfo>,
    },
    Deprovision,
}

/// How the broker answered the first call.
enum Answer {
    Done(Option<String>),
    Async(Option<String>, Option<String>),
    Failed(String),
}

fn spawn_instance_op(api: Api, guid: String, call: Call) {
    tokio::spawn(async move {
        if let Err(e) = run_instance_op(&api, &guid, call).await {
            tracing::error!(instance = %guid, error = %e, "service instance operation failed");
        }
    });
}

async fn run_instance_op(api: &Api, guid: &str, call: Call) -> ApiResult<()> {
    let ctx = match load_ctx(api, guid).await {
        Ok(Some(ctx)) => ctx,
        Ok(None) => return Ok(()),
        Err(e) => return finish_instance(api, guid, Err(e.to_string())).await,
    };
    let Some(pending) = ctx.instance.pending.clone() else {
        return Ok(());
    };
    let endpoint = ctx.broker.endpoint();
    let identity = pending.identity();
    let client = match api.broker_client() {
        Ok(c) => c,
        Err(e) => return finish_instance(api, guid, Err(e.to_string())).await,
    };
    let answer = match call {
        Call::Provision(parameters) => {
            let request = ProvisionRequest {
                service_id: ctx.offering.broker_id.clone(),
                plan_id: ctx.plan.broker_id.clone(),
                organization_guid: ctx.org.guid.clone(),
                space_guid: ctx.space.guid.clone(),
                context: ctx.osb_context(),
                parameters,
                maintenance_info: maintenance(ctx.plan.maintenance_info.as_ref()),
            };
            match client.provision(&endpoint, guid, &request, &identity).await {
                Ok(Provisioned::Done { dashboard_url }) => Answer::Done(dashboard_url),
                Ok(Provisioned::InProgress {
                    operation,
                    dashboard_url,
                }) => Answer::Async(operation, dashboard_url),
                Err(e) => Answer::Failed(e.to_string()),
            }
        }
        Call::Update {
            plan_id,
            parameters,
            maintenance_info,
        } => {
            let request = UpdateRequest {
                service_id: ctx.offering.broker_id.clone(),
                plan_id,
                context: ctx.osb_context(),
                parameters,
                maintenance_info,
                previous_values: PreviousValues {
                    service_id: ctx.offering.broker_id.clone(),
                    plan_id: ctx.plan.broker_id.clone(),
                    organization_id: ctx.org.guid.clone(),
                    space_id: ctx.space.guid.clone(),
                    maintenance_info: maintenance(ctx.instance.maintenance_info.as_ref()),
                },
            };
            match client.update(&endpoint, guid, &request, &identity).await {
                Ok(Updated::Done { dashboard_url }) => Answer::Done(dashboard_url),
                Ok(Updated::InProgress { operation }) => Answer::Async(operation, None),
                Err(e) => Answer::Failed(e.to_string()),
            }
        }
        Call::Deprovision => {
            match client
                .deprovision(&endpoint, guid, &ctx.plan_ref(None), &identity)
                .await
            {
                Ok(Deprovisioned::Done) => Answer::Done(None),
                Ok(Deprovisioned::InProgress { operation }) => Answer::Async(operation, None),
                Err(e) => Answer::Failed(e.to_string()),
            }
        }
    };
    match answer {
        Answer::Done(dashboard) => finish_instance(api, guid, Ok(dashboard)).await,
        Answer::Failed(why) => finish_instance(api, guid, Err(why)).await,
        Answer::Async(operation, dashboard) => {
            start_instance_polling(api, &ctx, operation, dashboard).await?;
            poll_instance(api, guid).await
        }
    }
}

/// Stores that the broker works asynchronously, and until when to poll.
async fn start_instance_polling(
    api: &Api,
    ctx: &Ctx,
    operation: Option<String>,
    dashboard: Option<String>,
) -> ApiResult<()> {
    let mut tx = store::begin(&api.inner.pool).await?;
    let Some(mut instance) = store::get::<ServiceInstance>(&mut tx, &ctx.instance.guid).await?
    else {
        return Ok(());
    };
    let Some(pending) = instance.pending.as_mut() else {
        return Ok(());
    };
    pending.polling = true;
    pending.broker_operation = operation;
    pending.deadline_ms = deadline_for(api, &ctx.plan);
    let kind = pending.kind.clone();
    let job_guid = pending.job_guid.clone();
    let p = pending.principal();
    if dashboard.is_some() {
        instance.dashboard_url = dashboard;
    }
    instance.updated_at = now();
    store::put(&mut tx, &instance).await?;
    job_polling(&mut tx, &job_guid).await?;
    audit_instance(
        &mut tx,
        &format!("audit.service_instance.start_{kind}"),
        &p,
        &instance,
        &ctx.space,
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

/// Polls the instance's `last_operation` until it ends or the deadline passes.
async fn poll_instance(api: &Api, guid: &str) -> ApiResult<()> {
    loop {
        let Some(ctx) = load_ctx(api, guid).await? else {
            return Ok(());
        };
        let Some(pending) = ctx.instance.pending.clone().filter(|p| p.polling) else {
            return Ok(());
        };
        let verb = instance_verb(&pending.kind);
        if now_ms() >= pending.deadline_ms {
            let why = format!("Service Broker failed to {verb} within the required time.");
            return finish_instance(api, guid, Err(why)).await;
        }
        let client = match api.broker_client() {
            Ok(c) => c,
            Err(e) => return finish_instance(api, guid, Err(e.to_string())).await,
        };
        let answer = client
            .instance_last_operation_of(
                &ctx.broker.endpoint(),
                guid,
                // The spec wants the plan before an update here.
                &ctx.plan_ref(None),
                pending.broker_operation.as_deref(),
                operation_kind(&pending.kind),
            )
            .await;
        let retry_after = match answer {
            Ok(lo) => match lo.state {
                OperationState::Succeeded => return finish_instance(api, guid, Ok(None)).await,
                OperationState::Failed => {
                    let why = lo
                        .description
                        .unwrap_or_else(|| format!("the service broker's {verb} failed"));
                    return finish_instance(api, guid, Err(why)).await;
                }
                OperationState::InProgress => {
                    if lo.description.is_some()
                        && lo.description != ctx.instance.last_operation_description
                    {
                        describe_instance(api, guid, lo.description).await?;
                    }
                    lo.retry_after
                }
            },
            Err(e) => {
                // A broker that cannot answer now may answer later; the
                // deadline bounds the wait.
                tracing::warn!(instance = %guid, error = %e, "last_operation failed");
                None
            }
        };
        tokio::time::sleep(next_wait(api, retry_after, pending.deadline_ms)).await;
    }
}

async fn describe_instance(api: &Api, guid: &str, description: Option<String>) -> ApiResult<()> {
    let mut tx = store::begin(&api.inner.pool).await?;
    if let Some(mut instance) = store::get::<ServiceInstance>(&mut tx, guid).await? {
        instance.last_operation_description = description;
        instance.updated_at = now();
        store::put(&mut tx, &instance).await?;
    }
    tx.commit().await?;
    Ok(())
}

/// Records how an instance operation ended, on the instance and its job.
async fn finish_instance(
    api: &Api,
    guid: &str,
    outcome: Result<Option<String>, String>,
) -> ApiResult<()> {
    let mut tx = store::begin(&api.inner.pool).await?;
    let Some(mut instance) = store::get::<ServiceInstance>(&mut tx, guid).await? else {
        return Ok(());
    };
    let Some(pending) = instance.pending.take() else {
        return Ok(());
    };
    let p = pending.principal();
    let space = store::fetch::<Space>(&mut tx, &instance.space_guid).await?;
    instance.updated_at = now();
    match outcome {
        Ok(_) if pending.kind == "delete" => {
            store::delete::<ServiceInstance>(&mut tx, guid).await?;
            audit_instance(
                &mut tx,
                "audit.service_instance.delete",
                &p,
                &instance,
                &space,
            )
            .await?;
            finish_job(&mut tx, &pending.job_guid, None).await?;
        }
        Ok(dashboard) => {
            if let Some(plan) = pending.plan_guid.clone() {
                instance.service_plan_guid = Some(plan);
            }
            if pending.maintenance_info.is_some() {
                instance.maintenance_info = pending.maintenance_info.clone();
            }
            if dashboard.is_some() {
                instance.dashboard_url = dashboard;
            }
            instance.last_operation_state = "succeeded".into();
            instance.last_operation_description = None;
            store::put(&mut tx, &instance).await?;
            audit_instance(
                &mut tx,
                &format!("audit.service_instance.{}", pending.kind),
                &p,
                &instance,
                &space,
            )
            .await?;
            finish_job(&mut tx, &pending.job_guid, None).await?;
        }
        Err(why) => {
            tracing::warn!(instance = %instance.name, error = %why, "service broker operation failed");
            instance.last_operation_state = "failed".into();
            instance.last_operation_description = Some(why.clone());
            store::put(&mut tx, &instance).await?;
            let verb = instance_verb(&pending.kind);
            finish_job(
                &mut tx,
                &pending.job_guid,
                Some(unable_to_perform(verb, &why)),
            )
            .await?;
        }
    }
    tx.commit().await?;
    Ok(())
}

/// `POST /v3/service_credential_bindings` for a managed instance: the
/// caller checked the app or the key's name; this asks the broker.
pub(crate) async fn create_binding(
    api: &Api,
    mut tx: Transaction<'static, Sqlite>,
    p: &Principal,
    instance: &ServiceInstance,
    mut binding: Binding,
    parameters: Option<Map<String, Value>>,
) -> ApiResult<Response> {
    if instance.pending.is_some() {
        return Err(in_progress(&instance.name));
    }
    if instance.last_operation == "create" && instance.last_operation_state != "succeeded" {
        return Err(ApiError::Unprocessable(format!(
            "Service instance {} is not ready: its creation failed; delete it and create it again.",
            instance.name
        )));
    }
    let Some((_, plan)) = offering_and_plan(&mut tx, instance).await? else {
        return Err(ApiError::Internal(format!(
            "service instance {} has no plan",
            instance.guid
        )));
    };
    if !plan.bindable {
        return Err(ApiError::Unprocessable(
            "Service plan does not allow bindings.".into(),
        ));
    }
    let job = Job::new(
        "service_bindings.create",
        Some((
            "service_credential_binding".into(),
            format!("/v3/service_credential_bindings/{}", binding.guid),
        )),
    );
    binding.pending = Some(PendingOp::new("create", &job.guid, p));
    binding.last_operation_state = "in progress".into();
    store::insert(&mut tx, &binding).await?;
    store::insert(&mut tx, &job).await?;
    tx.commit().await?;
    spawn_binding_op(api.clone(), binding.guid.clone(), Some(parameters));
    Ok(accepted_job(api, &job.guid))
}

/// `DELETE /v3/service_credential_bindings/:guid` of a managed binding.
pub(crate) async fn delete_binding(api: &Api, p: &Principal, guid: &str) -> ApiResult<Response> {
    let mut tx = store::begin(&api.inner.pool).await?;
    let mut binding: Binding = store::fetch(&mut tx, guid).await?;
    if binding.pending.is_some() {
        return Err(ApiError::Unprocessable(
            "An operation for the service binding is in progress.".into(),
        ));
    }
    let job = Job::new("service_bindings.delete", None);
    binding.pending = Some(PendingOp::new("delete", &job.guid, p));
    binding.last_operation = "delete".into();
    binding.last_operation_state = "in progress".into();
    binding.last_operation_description = None;
    binding.updated_at = now();
    store::put(&mut tx, &binding).await?;
    store::insert(&mut tx, &job).await?;
    tx.commit().await?;
    spawn_binding_op(api.clone(), guid.to_string(), None);
    Ok(accepted_job(api, &job.guid))
}

/// `Some(parameters)`: bind; `None`: unbind.
fn spawn_binding_op(api: Api, guid: String, bind: Option<Option<Map<String, Value>>>) {
    tokio::spawn(async move {
        if let Err(e) = run_binding_op(&api, &guid, bind).await {
            tracing::error!(binding = %guid, error = %e, "service binding operation failed");
        }
    });
}

async fn load_binding(api: &Api, guid: &str) -> ApiResult<Option<(Binding, Ctx)>> {
    let mut c = api.inner.pool.acquire().await?;
    let Some(binding) = store::get::<Binding>(&mut c, guid).await? else {
        return Ok(None);
    };
    let instance = store::fetch::<ServiceInstance>(&mut c, &binding.service_instance_guid).await?;
    let ctx = context_in(&mut c, instance).await?;
    Ok(Some((binding, ctx)))
}

enum BindAnswer {
    Done(Option<BindingDetails>),
    Async(Option<String>),
    Failed(String),
}

async fn run_binding_op(
    api: &Api,
    guid: &str,
    bind: Option<Option<Map<String, Value>>>,
) -> ApiResult<()> {
    let (binding, ctx) = match load_binding(api, guid).await {
        Ok(Some(found)) => found,
        Ok(None) => return Ok(()),
        Err(e) => return finish_binding(api, guid, Err(e.to_string())).await,
    };
    let Some(pending) = binding.pending.clone() else {
        return Ok(());
    };
    let client = match api.broker_client() {
        Ok(c) => c,
        Err(e) => return finish_binding(api, guid, Err(e.to_string())).await,
    };
    let endpoint = ctx.broker.endpoint();
    let identity = pending.identity();
    let answer = match bind {
        Some(parameters) => {
            let request = BindRequest {
                service_id: ctx.offering.broker_id.clone(),
                plan_id: ctx.plan.broker_id.clone(),
                app_guid: binding.app_guid.clone(),
                bind_resource: binding.app_guid.as_ref().map(|a| json!({"app_guid": a})),
                context: ctx.osb_context(),
                parameters,
            };
            match client
                .bind(&endpoint, &ctx.instance.guid, guid, &request, &identity)
                .await
            {
                Ok(Bound::Done(details)) => BindAnswer::Done(Some(details)),
                Ok(Bound::InProgress { operation }) => BindAnswer::Async(operation),
                Err(e) => BindAnswer::Failed(e.to_string()),
            }
        }
        None => match client
            .unbind(
                &endpoint,
                &ctx.instance.guid,
                guid,
                &ctx.plan_ref(None),
                &identity,
            )
            .await
        {
            Ok(Unbound::Done) => BindAnswer::Done(None),
            Ok(Unbound::InProgress { operation }) => BindAnswer::Async(operation),
            Err(e) => BindAnswer::Failed(e.to_string()),
        },
    };
    match answer {
        BindAnswer::Done(details) => finish_binding(api, guid, Ok(details)).await,
        BindAnswer::Failed(why) => finish_binding(api, guid, Err(why)).await,
        BindAnswer::Async(operation) => {
            let mut tx = store::begin(&api.inner.pool).await?;
            if let Some(mut b) = store::get::<Binding>(&mut tx, guid).await? {
                let job = b.pending.as_mut().map(|p| {
                    p.polling = true;
                    p.broker_operation = operation;
                    p.deadline_ms = deadline_for(api, &ctx.plan);
                    p.job_guid.clone()
                });
                store::put(&mut tx, &b).await?;
                if let Some(job) = job {
                    job_polling(&mut tx, &job).await?;
                }
            }
            tx.commit().await?;
            poll_binding(api, guid).await
        }
    }
}

async fn poll_binding(api: &Api, guid: &str) -> ApiResult<()> {
    loop {
        let Some((binding, ctx)) = load_binding(api, guid).await? else {
            return Ok(());
        };
        let Some(pending) = binding.pending.clone().filter(|p| p.polling) else {
            return Ok(());
        };
        let verb = binding_verb(&pending.kind);
        if now_ms() >= pending.deadline_ms {
            let why = format!("Service Broker failed to {verb} within the required time.");
            return finish_binding(api, guid, Err(why)).await;
        }
        let client = match api.broker_client() {
            Ok(c) => c,
            Err(e) => return finish_binding(api, guid, Err(e.to_string())).await,
        };
        let endpoint = ctx.broker.endpoint();
        let answer = client
            .binding_last_operation_of(
                &endpoint,
                &ctx.instance.guid,
                guid,
                &ctx.plan_ref(None),
                pending.broker_operation.as_deref(),
                operation_kind(&pending.kind),
            )
            .await;
        let retry_after = match answer {
            Ok(lo) => match lo.state {
                OperationState::Succeeded if pending.kind == "create" => {
                    let details = client
                        .fetch_binding(&endpoint, &ctx.instance.guid, guid)
                        .await
                        .map(Some)
                        .map_err(|e| e.to_string());
                    return finish_binding(api, guid, details).await;
                }
                OperationState::Succeeded => return finish_binding(api, guid, Ok(None)).await,
                OperationState::Failed => {
                    let why = lo
                        .description
                        .unwrap_or_else(|| format!("the service broker's {verb} failed"));
                    return finish_binding(api, guid, Err(why)).await;
                }
                OperationState::InProgress => lo.retry_after,
            },
            Err(e) => {
                tracing::warn!(binding = %guid, error = %e, "binding last_operation failed");
                None
            }
        };
        tokio::time::sleep(next_wait(api, retry_after, pending.deadline_ms)).await;
    }
}

/// Records a binding audit event: `audit.service_binding.*` on the app for
/// an app binding, `audit.service_key.*` for a key.
async fn audit_binding(
    c: &mut SqliteConnection,
    action: &str,
    p: &Principal,
    binding: &Binding,
) -> ApiResult<()> {
    match &binding.app_guid {
        Some(app_guid) => {
            if let Some(app) = store::get::<crate::model::App>(c, app_guid).await? {
                crate::apps::audit_app(
                    c,
                    &format!("audit.service_binding.{action}"),
                    p,
                    &app,
                    json!({"request": {"service_instance_guid": binding.service_instance_guid}}),
                )
                .await?;
            }
            Ok(())
        }
        None => {
            let org = store::get::<Space>(c, &binding.space_guid)
                .await?
                .map(|s| s.org_guid);
            crate::orgs::audit(
                c,
                &format!("audit.service_key.{action}"),
                crate::orgs::user_actor(p),
                EventParty {
                    guid: binding.guid.clone(),
                    kind: "service_key".into(),
                    name: binding.name.clone().unwrap_or_default(),
                },
                json!({"request": {"service_instance_guid": binding.service_instance_guid}}),
                Some(&binding.space_guid),
                org.as_deref(),
            )
            .await
        }
    }
}

async fn finish_binding(
    api: &Api,
    guid: &str,
    outcome: Result<Option<BindingDetails>, String>,
) -> ApiResult<()> {
    let mut tx = store::begin(&api.inner.pool).await?;
    let Some(mut binding) = store::get::<Binding>(&mut tx, guid).await? else {
        return Ok(());
    };
    let Some(pending) = binding.pending.take() else {
        return Ok(());
    };
    let p = pending.principal();
    binding.updated_at = now();
    match outcome {
        Ok(_) if pending.kind == "delete" => {
            store::delete::<Binding>(&mut tx, guid).await?;
            audit_binding(&mut tx, "delete", &p, &binding).await?;
            finish_job(&mut tx, &pending.job_guid, None).await?;
        }
        Ok(details) => {
            let details = details.unwrap_or_default();
            binding.credentials = Some(details.credentials);
            binding.syslog_drain_url = details.syslog_drain_url;
            binding.last_operation_state = "succeeded".into();
            binding.last_operation_description = None;
            store::put(&mut tx, &binding).await?;
            audit_binding(&mut tx, "create", &p, &binding).await?;
            finish_job(&mut tx, &pending.job_guid, None).await?;
        }
        Err(why) => {
            tracing::warn!(binding = %guid, error = %why, "service binding operation failed");
            binding.last_operation_state = "failed".into();
            binding.last_operation_description = Some(why.clone());
            store::put(&mut tx, &binding).await?;
            let verb = binding_verb(&pending.kind);
            finish_job(
                &mut tx,
                &pending.job_guid,
                Some(unable_to_perform(verb, &why)),
            )
            .await?;
        }
    }
    tx.commit().await?;
    Ok(())
}

const INTERRUPTED: &str = "The operation was interrupted by a platform restart; try again.";

/// After a restart: broker catalog fetches run again, polling resumes
/// where it stopped, deprovisions and unbinds whose first call a restart
/// interrupted are sent again (both are idempotent), and creates and
/// updates that were interrupted before the broker answered fail.
pub(crate) async fn resume(api: &Api) -> ApiResult<()> {
    crate::service_brokers::resume(api).await?;
    let (instances, bindings) = {
        let mut tx = store::begin(&api.inner.pool).await?;
        let instances: Vec<ServiceInstance> = store::find(&mut tx, &Query::new()).await?;
        let mut bindings: Vec<Binding> = store::find(&mut tx, &Query::new()).await?;
        // Bindings stored before they recorded their space: fill it in,
        // since lists are narrowed by it.
        for b in bindings.iter_mut().filter(|b| b.space_guid.is_empty()) {
            if let Some(i) = instances.iter().find(|i| i.guid == b.service_instance_guid) {
                b.space_guid = i.space_guid.clone();
                store::put(&mut tx, b).await?;
            }
        }
        tx.commit().await?;
        (instances, bindings)
    };
    for instance in instances {
        let Some(pending) = &instance.pending else {
            continue;
        };
        let (api, guid) = (api.clone(), instance.guid.clone());
        if pending.polling {
            tokio::spawn(async move {
                if let Err(e) = poll_instance(&api, &guid).await {
                    tracing::error!(instance = %guid, error = %e, "resumed polling failed");
                }
            });
        } else if pending.kind == "delete" {
            spawn_instance_op(api, guid, Call::Deprovision);
        } else {
            finish_instance(&api, &guid, Err(INTERRUPTED.into())).await?;
        }
    }
    for binding in bindings {
        let Some(pending) = &binding.pending else {
            continue;
        };
        let (api, guid) = (api.clone(), binding.guid.clone());
        if pending.polling {
            tokio::spawn(async move {
                if let Err(e) = poll_binding(&api, &guid).await {
                    tracing::error!(binding = %guid, error = %e, "resumed polling failed");
                }
            });
        } else if pending.kind == "delete" {
            spawn_binding_op(api, guid, None);
        } else {
            finish_binding(&api, &guid, Err(INTERRUPTED.into())).await?;
        }
    }
    Ok(())
}

/// The values of `fields[<resource>]` in a raw query.
fn fields_of(raw: Option<&str>, resource: &str) -> Vec<String> {
    let key = format!("fields[{resource}]");
    serde_urlencoded::from_str::<Vec<(String, String)>>(raw.unwrap_or(""))
        .unwrap_or_default()
        .into_iter()
        .filter(|(k, _)| *k == key)
        .flat_map(|(_, v)| v.split(',').map(str::to_string).collect::<Vec<_>>())
        .collect()
}

/// Keeps the asked-for fields of a rendered resource, and the relationship
/// to the next level when that level is asked for too.
fn pick(full: &Value, fields: &[String], relation: Option<&str>) -> Value {
    let mut out = Map::new();
    for f in fields {
        if let Some(v) = full.get(f) {
            out.insert(f.clone(), v.clone());
        }
    }
    if let Some(r) = relation {
        out.insert(
            "relationships".into(),
            json!({ r: full["relationships"][r].clone() }),
        );
    }
    Value::Object(out)
}

/// CF's `included` block for the `fields[…]` the cf CLI asks for when it
/// lists instances (`cf services`, `cf service`): the plans, their
/// offerings and brokers, and the spaces and organizations.
pub(crate) async fn instance_fields(
    c: &mut SqliteConnection,
    raw: Option<&str>,
    instances: &[ServiceInstance],
    base: &str,
) -> ApiResult<Map<String, Value>> {
    let mut included = Map::new();
    let plan_fields = fields_of(raw, "service_plan");
    let offering_fields = fields_of(raw, "service_plan.service_offering");
    let broker_fields = fields_of(raw, "service_plan.service_offering.service_broker");
    let space_fields = fields_of(raw, "space");
    let org_fields = fields_of(raw, "space.organization");
    let guids = |list: Vec<String>| {
        let mut l = list;
        l.sort();
        l.dedup();
        l
    };
    if !plan_fields.is_empty() || !offering_fields.is_empty() || !broker_fields.is_empty() {
        let plan_guids = guids(
            instances
                .iter()
                .filter_map(|i| i.service_plan_guid.clone())
                .collect(),
        );
        let plans: Vec<ServicePlan> =
            store::find(c, &Query::new().any_of("guid", plan_guids)).await?;
        let offering_guids = guids(plans.iter().map(|p| p.offering_guid.clone()).collect());
        let offerings: Vec<ServiceOffering> =
            store::find(c, &Query::new().any_of("guid", offering_guids)).await?;
        if !plan_fields.is_empty() {
            let deeper = (!offering_fields.is_empty()).then_some("service_offering");
            included.insert(
                "service_plans".into(),
                plans
                    .iter()
                    .map(|p| pick(&p.render(base), &plan_fields, deeper))
                    .collect(),
            );
        }
        if !offering_fields.is_empty() {
            let deeper = (!broker_fields.is_empty()).then_some("service_broker");
            included.insert(
                "service_offerings".into(),
                offerings
                    .iter()
                    .map(|o| pick(&o.render(base), &offering_fields, deeper))
                    .collect(),
            );
        }
        if !broker_fields.is_empty() {
            let broker_guids = guids(offerings.iter().map(|o| o.broker_guid.clone()).collect());
            let brokers: Vec<ServiceBroker> =
                store::find(c, &Query::new().any_of("guid", broker_guids)).await?;
            included.insert(
                "service_brokers".into(),
                brokers
                    .iter()
                    .map(|b| pick(&b.render(base), &broker_fields, None))
                    .collect(),
            );
        }
    }
    if !space_fields.is_empty() || !org_fields.is_empty() {
        let space_guids = guids(instances.iter().map(|i| i.space_guid.clone()).collect());
        let spaces: Vec<Space> = store::find(c, &Query::new().any_of("guid", space_guids)).await?;
        if !space_fields.is_empty() {
            let deeper = (!org_fields.is_empty()).then_some("organization");
            included.insert(
                "spaces".into(),
                spaces
                    .iter()
                    .map(|s| pick(&s.json(base), &space_fields, deeper))
                    .collect(),
            );
        }
        if !org_fields.is_empty() {
            let org_guids = guids(spaces.iter().map(|s| s.org_guid.clone()).collect());
            let orgs: Vec<Org> = store::find(c, &Query::new().any_of("guid", org_guids)).await?;
            included.insert(
                "organizations".into(),
                orgs.iter()
                    .map(|o| pick(&o.json(base), &org_fields, None))
                    .collect(),
            );
        }
    }
    Ok(included)
}
