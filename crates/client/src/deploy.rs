//! Rolling deployments and revisions: what `push --strategy rolling`,
//! `restart --strategy rolling`, `rollback`, `revisions` and
//! `cancel-deployment` send.

use std::time::{Duration, Instant};

use reqwest::Method;
use serde::Deserialize;
use serde_json::json;

use crate::client::Client;
use crate::error::{ClientError, Result};
use crate::poll::Backoff;

/// A deployment as `/v3/deployments` shows it.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Deployment {
    /// Its guid.
    pub guid: String,
    /// `DEPLOYING`, `DEPLOYED`, `CANCELING` or `CANCELED`.
    #[serde(default)]
    pub state: String,
    /// `status.value` (`ACTIVE`, `FINALIZED`) and `status.reason`.
    #[serde(default)]
    pub status: DeploymentStatus,
}

/// A deployment's status.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct DeploymentStatus {
    /// `ACTIVE` or `FINALIZED`.
    #[serde(default)]
    pub value: String,
    /// `DEPLOYING`, `CANCELING`, `DEPLOYED`, `CANCELED`, …
    #[serde(default)]
    pub reason: String,
}

/// A revision as `/v3/apps/:guid/revisions` shows it.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Revision {
    /// Its guid.
    pub guid: String,
    /// Its number within the app, from 1.
    pub version: u64,
    /// What changed.
    #[serde(default)]
    pub description: String,
    /// When it was made.
    #[serde(default)]
    pub created_at: String,
}

impl Client {
    /// Starts a rolling deployment of the app: of `droplet` (default: its
    /// current droplet), or of a revision (a rollback).
    pub async fn create_deployment(
        &self,
        app_guid: &str,
        droplet: Option<&str>,
        revision: Option<&str>,
    ) -> Result<Deployment> {
        let mut body = json!({
            "strategy": "rolling",
            "relationships": {"app": {"data": {"guid": app_guid}}},
        });
        if let Some(d) = droplet {
            body["droplet"] = json!({"guid": d});
        }
        if let Some(r) = revision {
            body["revision"] = json!({"guid": r});
        }
        self.send_json(Method::POST, "/v3/deployments", &body).await
    }

    /// A deployment by guid.
    pub async fn deployment(&self, guid: &str) -> Result<Deployment> {
        self.get_json(&format!("/v3/deployments/{guid}")).await
    }

    /// Polls a deployment until it is FINALIZED; fails with `timeout`.
    pub async fn wait_deployment(&self, guid: &str, timeout: Duration) -> Result<Deployment> {
        let deadline = Instant::now() + timeout;
        let mut backoff = Backoff::default();
        loop {
            let d = self.deployment(guid).await?;
            if d.status.value == "FINALIZED" {
                return Ok(d);
            }
            if Instant::now() >= deadline {
                return Err(ClientError::Timeout {
                    what: format!("deployment {guid} (still {})", d.status.reason),
                    seconds: timeout.as_secs(),
                });
            }
            tokio::time::sleep(backoff.next_interval()).await;
        }
    }

    /// The app's deployments in progress.
    pub async fn active_deployments(&self, app_guid: &str) -> Result<Vec<Deployment>> {
        self.list_all(
            "/v3/deployments",
            &[("app_guids", app_guid), ("states", "DEPLOYING,CANCELING")],
        )
        .await
    }

    /// Cancels a deployment in progress.
    pub async fn cancel_deployment(&self, guid: &str) -> Result<()> {
        self.send_empty(
            Method::POST,
            &format!("/v3/deployments/{guid}/actions/cancel"),
            None,
        )
        .await?;
        Ok(())
    }

    /// The app's revisions, oldest first.
    pub async fn revisions(&self, app_guid: &str) -> Result<Vec<Revision>> {
        self.list_all(&format!("/v3/apps/{app_guid}/revisions"), &[])
            .await
    }

    /// The revision the app runs now, if it runs.
    pub async fn deployed_revision(&self, app_guid: &str) -> Result<Option<Revision>> {
        let deployed: Vec<Revision> = self
            .list_all(&format!("/v3/apps/{app_guid}/revisions/deployed"), &[])
            .await?;
        Ok(deployed.into_iter().next())
    }
}
