//! What `ssh`, `ssh-code`, `enable-ssh`, `allow-space-ssh` and `events`
//! ask the platform.

use reqwest::Method;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::client::{join, Client};
use crate::error::{ClientError, Result};

/// Where and how to reach the SSH proxy (`links.app_ssh` of `/`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SshEndpoint {
    /// `host:port`.
    pub address: String,
    /// The host key's SHA-256 fingerprint, base64 without padding.
    pub fingerprint: Option<String>,
    /// The OAuth client one-time codes are for.
    pub oauth_client: String,
}

/// `GET /v3/apps/:guid/ssh_enabled`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct SshEnabled {
    /// Whether SSH into the app is allowed.
    pub enabled: bool,
    /// Why not, when it is not.
    #[serde(default)]
    pub reason: String,
}

/// An audit event.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Event {
    /// e.g. `audit.app.ssh-authorized`.
    #[serde(rename = "type")]
    pub kind: String,
    /// When.
    #[serde(default)]
    pub created_at: String,
    /// Who.
    #[serde(default)]
    pub actor: EventActor,
    /// Details.
    #[serde(default)]
    pub data: Value,
}

/// The actor of an event.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct EventActor {
    /// The user's (or client's) name.
    #[serde(default)]
    pub name: String,
}

impl Client {
    /// The SSH proxy of the platform, if it serves one.
    pub async fn ssh_endpoint(&self) -> Result<Option<SshEndpoint>> {
        let root: Value = self.get_json("/").await?;
        let link = &root["links"]["app_ssh"];
        let Some(address) = link["href"].as_str() else {
            return Ok(None);
        };
        Ok(Some(SshEndpoint {
            address: address.to_string(),
            fingerprint: link["meta"]["host_key_fingerprint"]
                .as_str()
                .map(str::to_string),
            oauth_client: link["meta"]["oauth_client"]
                .as_str()
                .unwrap_or("ssh-proxy")
                .to_string(),
        }))
    }

    /// A one-time SSH code (`cf ssh-code`): the token server's
    /// `/oauth/authorize` answers with a redirect that carries it.
    pub async fn ssh_code(&self, oauth_client: &str) -> Result<String> {
        let url = join(
            &self.endpoints().uaa,
            &format!("/oauth/authorize?response_type=code&client_id={oauth_client}"),
        );
        let resp = self.send(Method::GET, &url, |r| r).await?;
        let location = resp
            .headers()
            .get(reqwest::header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        let code = reqwest::Url::parse(&location)
            .ok()
            .and_then(|u| {
                u.query_pairs()
                    .find(|(k, _)| k == "code")
                    .map(|(_, v)| v.into_owned())
            })
            .filter(|c| !c.is_empty());
        code.ok_or_else(|| ClientError::Unexpected {
            method: "GET".into(),
            url,
            status: resp.status().as_u16(),
            body: format!("no code in the answer's Location ({location:?})"),
        })
    }

    /// Whether SSH into the app is allowed, and why not.
    pub async fn ssh_enabled(&self, app_guid: &str) -> Result<SshEnabled> {
        self.get_json(&format!("/v3/apps/{app_guid}/ssh_enabled"))
            .await
    }

    /// `enable-ssh` / `disable-ssh`.
    pub async fn set_app_ssh(&self, app_guid: &str, enabled: bool) -> Result<()> {
        let _: Value = self
            .send_json(
                Method::PATCH,
                &format!("/v3/apps/{app_guid}/features/ssh"),
                &json!({"enabled": enabled}),
            )
            .await?;
        Ok(())
    }

    /// `allow-space-ssh` / `disallow-space-ssh`.
    pub async fn set_space_ssh(&self, space_guid: &str, enabled: bool) -> Result<()> {
        let _: Value = self
            .send_json(
                Method::PATCH,
                &format!("/v3/spaces/{space_guid}/features/ssh"),
                &json!({"enabled": enabled}),
            )
            .await?;
        Ok(())
    }

    /// Whether the space allows SSH.
    pub async fn space_ssh_allowed(&self, space_guid: &str) -> Result<bool> {
        let feature: Value = self
            .get_json(&format!("/v3/spaces/{space_guid}/features/ssh"))
            .await?;
        Ok(feature["enabled"].as_bool().unwrap_or(false))
    }

    /// The audit events about a resource (an app), newest first.
    pub async fn events_of(&self, target_guid: &str) -> Result<Vec<Event>> {
        self.list_all(
            "/v3/audit_events",
            &[("target_guids", target_guid), ("order_by", "-created_at")],
        )
        .await
    }
}
