//! Service instances and bindings: what `create-user-provided-service`,
//! `update-user-provided-service`, `services`, `bind-service`,
//! `unbind-service` and `delete-service` send.

use reqwest::Method;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::client::Client;
use crate::error::Result;
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
}

/// A binding of an instance to an app.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Binding {
    /// Its guid.
    pub guid: String,
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
    pub async fn bind(&self, app_guid: &str, instance_guid: &str) -> Result<Binding> {
        self.send_json(
            Method::POST,
            "/v3/service_credential_bindings",
            &json!({
                "type": "app",
                "relationships": {
                    "app": {"data": {"guid": app_guid}},
                    "service_instance": {"data": {"guid": instance_guid}},
                },
            }),
        )
        .await
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
        self.send_empty(
            Method::DELETE,
            &format!("/v3/service_credential_bindings/{binding_guid}"),
            None,
        )
        .await?;
        Ok(())
    }
}
