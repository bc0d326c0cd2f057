//! Service instances, bindings and keys: what `create-user-provided-service`,
//! `update-user-provided-service`, `create-service`, `update-service`,
//! `service`, `services`, `bind-service`, `unbind-service`,
//! `delete-service` and the service key commands send.
//!
//! Managed instances change asynchronously: the API answers `202` with a
//! job, and the instance's `last_operation` says how the broker is doing.

use std::time::{Duration, Instant};

use reqwest::Method;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::client::Client;
use crate::error::{ClientError, Result};
use crate::resources::ToOne;

/// A service instance.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ServiceInstance {
    /// Its guid.
    pub guid: String,
    /// Its name.
    #[serde(default)]
    pub name: String,
    /// `user-provided` or `managed`.
    #[serde(rename = "type", default)]
    pub kind: String,
    /// Where the apps' logs go, if anywhere.
    #[serde(default)]
    pub syslog_drain_url: Option<String>,
    /// A user-provided instance's route service.
    #[serde(default)]
    pub route_service_url: Option<String>,
    /// Its tags.
    #[serde(default)]
    pub tags: Vec<String>,
    /// A managed instance's dashboard.
    #[serde(default)]
    pub dashboard_url: Option<String>,
    /// The last create, update or delete and how it went.
    #[serde(default)]
    pub last_operation: Option<LastOperation>,
    /// Its plan (managed) and space.
    #[serde(default)]
    pub relationships: InstanceRelationships,
}

/// A service instance's relationships.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct InstanceRelationships {
    /// The plan of a managed instance.
    #[serde(default)]
    pub service_plan: ToOne,
    /// Its space.
    #[serde(default)]
    pub space: ToOne,
}

/// `last_operation` of an instance or binding.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
pub struct LastOperation {
    /// `create`, `update` or `delete`.
    #[serde(rename = "type", default)]
    pub kind: String,
    /// `initial`, `in progress`, `succeeded` or `failed`.
    #[serde(default)]
    pub state: String,
    /// What the broker said.
    #[serde(default)]
    pub description: Option<String>,
    /// When it started.
    #[serde(default)]
    pub created_at: Option<String>,
    /// When it last changed.
    #[serde(default)]
    pub updated_at: Option<String>,
}

impl LastOperation {
    /// `create succeeded`, `delete in progress`, … as cf shows it.
    pub fn summary(&self) -> String {
        format!("{} {}", self.kind, self.state).trim().to_string()
    }

    /// Whether the operation has ended (succeeded or failed).
    pub fn finished(&self) -> bool {
        matches!(self.state.as_str(), "succeeded" | "failed")
    }
}

/// A service key (a credential binding of type `key`).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ServiceKey {
    /// Its guid.
    pub guid: String,
    /// Its name.
    #[serde(default)]
    pub name: Option<String>,
    /// The last create or delete and how it went.
    #[serde(default)]
    pub last_operation: Option<LastOperation>,
}

/// What a managed create or update sends; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct ManagedFields {
    /// The plan.
    pub plan_guid: Option<String>,
    /// Parameters for the broker, a JSON object.
    pub parameters: Option<Value>,
    /// Tags.
    pub tags: Option<Vec<String>>,
}

/// How long a bind or unbind may wait for its broker.
const BROKER_JOB_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(600);

/// How an asynchronous change was answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Accepted {
    /// Done already (`200`, `201` or `204`).
    Done,
    /// Going on; the job's URL.
    InProgress(String),
}

fn accepted(resp: &reqwest::Response) -> Accepted {
    let job = resp
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    match (resp.status().as_u16(), job) {
        (202, Some(job)) => Accepted::InProgress(job),
        _ => Accepted::Done,
    }
}

/// A binding of an instance to an app.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Binding {
    /// Its guid.
    pub guid: String,
    /// Its name, if it was given one.
    #[serde(default)]
    pub name: Option<String>,
    /// The last create or delete and how it went.
    #[serde(default)]
    pub last_operation: Option<LastOperation>,
    /// The app and the instance.
    #[serde(default)]
    pub relationships: BindingRelationships,
}

/// A binding's ends.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct BindingRelationships {
    /// The app.
    #[serde(default)]
    pub app: ToOne,
    /// The instance.
    #[serde(default)]
    pub service_instance: ToOne,
}

/// What a user-provided instance carries; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct UserProvided {
    /// Credentials, a JSON object.
    pub credentials: Option<Value>,
    /// `syslog://`, `syslog-tls://` or `https://` drain.
    pub syslog_drain_url: Option<String>,
    /// An `https://` route service.
    pub route_service_url: Option<String>,
    /// Tags.
    pub tags: Option<Vec<String>>,
}

impl UserProvided {
    fn fields(&self, body: &mut Value) {
        if let Some(c) = &self.credentials {
            body["credentials"] = c.clone();
        }
        if let Some(u) = &self.syslog_drain_url {
            body["syslog_drain_url"] = json!(u);
        }
        if let Some(u) = &self.route_service_url {
            body["route_service_url"] = json!(u);
        }
        if let Some(t) = &self.tags {
            body["tags"] = json!(t);
        }
    }
}

impl Client {
    /// The instances of a space, by name.
    pub async fn service_instances(&self, space_guid: &str) -> Result<Vec<ServiceInstance>> {
        self.list_all(
            "/v3/service_instances",
            &[("space_guids", space_guid), ("order_by", "name")],
        )
        .await
    }

    /// The instance of this name in a space, if any.
    pub async fn service_instance_by_name(
        &self,
        space_guid: &str,
        name: &str,
    ) -> Result<Option<ServiceInstance>> {
        let found: Vec<ServiceInstance> = self
            .list_all(
                "/v3/service_instances",
                &[("space_guids", space_guid), ("names", name)],
            )
            .await?;
        Ok(found.into_iter().next())
    }

    /// Creates a user-provided service instance.
    pub async fn create_user_provided(
        &self,
        space_guid: &str,
        name: &str,
        fields: &UserProvided,
    ) -> Result<ServiceInstance> {
        let mut body = json!({
            "type": "user-provided",
            "name": name,
            "relationships": {"space": {"data": {"guid": space_guid}}},
        });
        fields.fields(&mut body);
        self.send_json(Method::POST, "/v3/service_instances", &body)
            .await
    }

    /// Updates a user-provided service instance.
    pub async fn update_user_provided(
        &self,
        guid: &str,
        fields: &UserProvided,
    ) -> Result<ServiceInstance> {
        let mut body = json!({});
        fields.fields(&mut body);
        self.send_json(
            Method::PATCH,
            &format!("/v3/service_instances/{guid}"),
            &body,
        )
        .await
    }

    /// One service instance.
    pub async fn service_instance(&self, guid: &str) -> Result<ServiceInstance> {
        self.get_json(&format!("/v3/service_instances/{guid}"))
            .await
    }

    /// Creates a managed instance of a plan; the broker's work goes on
    /// after the answer when it is [`Accepted::InProgress`].
    pub async fn create_managed_instance(
        &self,
        space_guid: &str,
        name: &str,
        fields: &ManagedFields,
    ) -> Result<Accepted> {
        let mut body = json!({
            "type": "managed",
            "name": name,
            "relationships": {
                "space": {"data": {"guid": space_guid}},
                "service_plan": {"data": {"guid": fields.plan_guid}},
            },
        });
        if let Some(p) = &fields.parameters {
            body["parameters"] = p.clone();
        }
        if let Some(t) = &fields.tags {
            body["tags"] = json!(t);
        }
        let resp = self
            .send_empty(Method::POST, "/v3/service_instances", Some(&body))
            .await?;
        Ok(accepted(&resp))
    }

    /// Changes a managed instance's plan, parameters or tags.
    pub async fn update_managed_instance(
        &self,
        guid: &str,
        fields: &ManagedFields,
    ) -> Result<Accepted> {
        let mut body = json!({});
        if let Some(plan) = &fields.plan_guid {
            body["relationships"] = json!({"service_plan": {"data": {"guid": plan}}});
        }
        if let Some(p) = &fields.parameters {
            body["parameters"] = p.clone();
        }
        if let Some(t) = &fields.tags {
            body["tags"] = json!(t);
        }
        let resp = self
            .send_empty(
                Method::PATCH,
                &format!("/v3/service_instances/{guid}"),
                Some(&body),
            )
            .await?;
        Ok(accepted(&resp))
    }

    /// Deletes a service instance; a managed one may be deleted
    /// asynchronously.
    pub async fn delete_instance(&self, guid: &str) -> Result<Accepted> {
        let resp = self
            .send_empty(
                Method::DELETE,
                &format!("/v3/service_instances/{guid}"),
                None,
            )
            .await?;
        Ok(accepted(&resp))
    }

    /// Polls an instance until its last operation has ended, calling
    /// `progress` with each one seen; returns the instance (`None` once a
    /// delete has removed it). A failed operation is returned, not an
    /// error: the caller says what failed.
    pub async fn wait_instance_operation(
        &self,
        guid: &str,
        timeout: Duration,
        mut progress: impl FnMut(&LastOperation),
    ) -> Result<Option<ServiceInstance>> {
        let start = Instant::now();
        let mut backoff = crate::poll::Backoff::new();
        loop {
            let instance = match self.service_instance(guid).await {
                Ok(i) => i,
                Err(e) if e.status() == Some(404) => return Ok(None),
                Err(e) => return Err(e),
            };
            match &instance.last_operation {
                Some(op) => {
                    progress(op);
                    if op.finished() {
                        return Ok(Some(instance));
                    }
                }
                None => return Ok(Some(instance)),
            }
            if start.elapsed() > timeout {
                return Err(ClientError::Timeout {
                    what: format!("the operation on service instance {}", instance.name),
                    seconds: timeout.as_secs(),
                });
            }
            backoff.wait().await;
        }
    }

    /// The keys of an instance.
    pub async fn service_keys(&self, instance_guid: &str) -> Result<Vec<ServiceKey>> {
        let mut keys: Vec<ServiceKey> = self
            .list_all(
                "/v3/service_credential_bindings",
                &[("type", "key"), ("service_instance_guids", instance_guid)],
            )
            .await?;
        keys.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(keys)
    }

    /// The key of this name of an instance, if any.
    pub async fn service_key_by_name(
        &self,
        instance_guid: &str,
        name: &str,
    ) -> Result<Option<ServiceKey>> {
        let keys: Vec<ServiceKey> = self
            .list_all(
                "/v3/service_credential_bindings",
                &[
                    ("type", "key"),
                    ("service_instance_guids", instance_guid),
                    ("names", name),
                ],
            )
            .await?;
        Ok(keys.into_iter().find(|k| k.name.as_deref() == Some(name)))
    }

    /// Creates a key; for a managed instance the broker may finish later.
    pub async fn create_service_key(
        &self,
        instance_guid: &str,
        name: &str,
        parameters: Option<&Value>,
    ) -> Result<Accepted> {
        let mut body = json!({
            "type": "key",
            "name": name,
            "relationships": {"service_instance": {"data": {"guid": instance_guid}}},
        });
        if let Some(p) = parameters {
            body["parameters"] = p.clone();
        }
        let resp = self
            .send_empty(Method::POST, "/v3/service_credential_bindings", Some(&body))
            .await?;
        Ok(accepted(&resp))
    }

    /// A key's credentials (`GET …/details`, `credentials`).
    pub async fn service_key_credentials(&self, key_guid: &str) -> Result<Value> {
        let details: Value = self
            .get_json(&format!(
                "/v3/service_credential_bindings/{key_guid}/details"
            ))
            .await?;
        Ok(details.get("credentials").cloned().unwrap_or(Value::Null))
    }

    /// Deletes a key; for a managed instance the broker may finish later.
    pub async fn delete_service_key(&self, key_guid: &str) -> Result<Accepted> {
        let resp = self
            .send_empty(
                Method::DELETE,
                &format!("/v3/service_credential_bindings/{key_guid}"),
                None,
            )
            .await?;
        Ok(accepted(&resp))
    }

    /// Deletes a service instance.
    pub async fn delete_service_instance(&self, guid: &str) -> Result<()> {
        self.send_empty(
            Method::DELETE,
            &format!("/v3/service_instances/{guid}"),
            None,
        )
        .await?;
        Ok(())
    }

    /// Binds an instance to an app.
    pub async fn bind(&self, app_guid: &str, instance_guid: &str) -> Result<()> {
        let body = json!({
            "type": "app",
            "relationships": {
                "app": {"data": {"guid": app_guid}},
                "service_instance": {"data": {"guid": instance_guid}},
            },
        });
        let resp = self
            .send_empty(Method::POST, "/v3/service_credential_bindings", Some(&body))
            .await?;
        self.finish(accepted(&resp)).await
    }

    /// Waits for the job of an accepted change (a managed instance's broker
    /// call); a change that was done at once needs nothing.
    async fn finish(&self, accepted: Accepted) -> Result<()> {
        if let Accepted::InProgress(job) = accepted {
            self.wait_job(&job, BROKER_JOB_TIMEOUT).await?;
        }
        Ok(())
    }

    /// The bindings of an app, or of an instance.
    pub async fn bindings(
        &self,
        app_guid: Option<&str>,
        instance_guid: Option<&str>,
    ) -> Result<Vec<Binding>> {
        let mut params = vec![("type", "app")];
        if let Some(a) = app_guid {
            params.push(("app_guids", a));
        }
        if let Some(i) = instance_guid {
            params.push(("service_instance_guids", i));
        }
        self.list_all("/v3/service_credential_bindings", &params)
            .await
    }

    /// Removes a binding.
    pub async fn unbind(&self, binding_guid: &str) -> Result<()> {
        let resp = self
            .send_empty(
                Method::DELETE,
                &format!("/v3/service_credential_bindings/{binding_guid}"),
                None,
            )
            .await?;
        self.finish(accepted(&resp)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn managed_instances_parse_with_their_last_operation() {
        let i: ServiceInstance = serde_json::from_value(json!({
            "guid": "i1", "name": "db", "type": "managed", "tags": ["sql"],
            "last_operation": {"type": "create", "state": "in progress",
                               "description": "provisioning", "created_at": "t", "updated_at": "t"},
            "relationships": {"service_plan": {"data": {"guid": "p1"}},
                              "space": {"data": {"guid": "s1"}}}
        }))
        .expect("parses");
        let op = i.last_operation.expect("operation");
        assert_eq!(op.summary(), "create in progress");
        assert!(!op.finished());
        assert_eq!(i.relationships.service_plan.guid(), Some("p1"));
        // A user-provided instance without the managed fields still parses.
        let u: ServiceInstance =
            serde_json::from_value(json!({"guid": "u", "name": "creds", "type": "user-provided"}))
                .expect("parses");
        assert!(u.last_operation.is_none());
    }
}
