//! Typed v3 calls: one method per exchange the CLI makes, in the shapes of
//! the CF v3 API docs.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt as _;
use reqwest::multipart::{Form, Part};
use reqwest::Method;
use serde_json::json;

use crate::client::{decode, Client};
use crate::error::{ClientError, Result};
use crate::resources::{
    App, AppEnv, Build, Buildpack, Droplet, InstanceStats, Job, MatchResource, Organization,
    Package, Process, Route, Space,
};

/// Called while an upload proceeds with (bytes sent, total bytes).
pub type Progress = Arc<dyn Fn(u64, u64) + Send + Sync>;

/// The most resources one `resource_matches` call may carry.
pub const RESOURCE_MATCH_CHUNK: usize = 5000;

/// How often long operations are polled.

#[derive(serde::Deserialize)]
struct Resources<T> {
    #[serde(default = "Vec::new")]
    resources: Vec<T>,
}

impl Client {
    /// Organizations, by name, optionally only the one named `name`.
    pub async fn organizations(&self, name: Option<&str>) -> Result<Vec<Organization>> {
        let mut params = vec![("order_by", "name")];
        if let Some(n) = name {
            params.push(("names", n));
        }
        self.list_all("/v3/organizations", &params).await
    }

    /// Spaces of an organization, by name, optionally only the one named `name`.
    pub async fn spaces(&self, org_guid: &str, name: Option<&str>) -> Result<Vec<Space>> {
        let mut params = vec![("organization_guids", org_guid), ("order_by", "name")];
        if let Some(n) = name {
            params.push(("names", n));
        }
        self.list_all("/v3/spaces", &params).await
    }

    /// Apps of a space, by name.
    pub async fn apps(&self, space_guid: &str) -> Result<Vec<App>> {
        self.list_all(
            "/v3/apps",
            &[("space_guids", space_guid), ("order_by", "name")],
        )
        .await
    }

    /// The app named `name` in a space, if there is one.
    pub async fn app_by_name(&self, space_guid: &str, name: &str) -> Result<Option<App>> {
        let apps: Vec<App> = self
            .list_all("/v3/apps", &[("names", name), ("space_guids", space_guid)])
            .await?;
        Ok(apps.into_iter().find(|a| a.name == name))
    }

    /// One app.
    pub async fn app(&self, guid: &str) -> Result<App> {
        self.get_json(&format!("/v3/apps/{guid}")).await
    }

    /// Creates an app with the buildpack lifecycle.
    pub async fn create_app(
        &self,
        space_guid: &str,
        name: &str,
        buildpacks: &[String],
    ) -> Result<App> {
        let body = json!({
            "name": name,
            "relationships": {"space": {"data": {"guid": space_guid}}},
            "lifecycle": {"type": "buildpack", "data": {"buildpacks": buildpacks}},
        });
        self.send_json(Method::POST, "/v3/apps", &body).await
    }

    /// Deletes an app and waits for the deletion job.
    pub async fn delete_app(&self, guid: &str, timeout: Duration) -> Result<()> {
        let resp = self
            .send_empty(Method::DELETE, &format!("/v3/apps/{guid}"), None)
            .await?;
        self.wait_location(resp, timeout).await
    }

    /// Deletes a space with everything in it and waits for the job.
    pub async fn delete_space(&self, guid: &str, timeout: Duration) -> Result<()> {
        let resp = self
            .send_empty(Method::DELETE, &format!("/v3/spaces/{guid}"), None)
            .await?;
        self.wait_location(resp, timeout).await
    }

    /// Deletes an organization with everything in it and waits for the job.
    pub async fn delete_organization(&self, guid: &str, timeout: Duration) -> Result<()> {
        let resp = self
            .send_empty(Method::DELETE, &format!("/v3/organizations/{guid}"), None)
            .await?;
        self.wait_location(resp, timeout).await
    }

    /// Starts an app.
    pub async fn start_app(&self, guid: &str) -> Result<App> {
        self.app_action(guid, "start").await
    }

    /// Stops an app.
    pub async fn stop_app(&self, guid: &str) -> Result<App> {
        self.app_action(guid, "stop").await
    }

    /// Restarts an app (stops, then starts on its current droplet).
    pub async fn restart_app(&self, guid: &str) -> Result<App> {
        self.app_action(guid, "restart").await
    }

    async fn app_action(&self, guid: &str, action: &str) -> Result<App> {
        let url = format!("/v3/apps/{guid}/actions/{action}");
        let resp = self.send(Method::POST, &url, |r| r).await?;
        decode(Method::POST, &url, resp).await
    }

    /// Applies a YAML manifest to a space; returns the job URL to wait on.
    pub async fn apply_manifest(&self, space_guid: &str, yaml: &str) -> Result<String> {
        let url = format!("/v3/spaces/{space_guid}/actions/apply_manifest");
        let body = yaml.to_string();
        let resp = self
            .send(Method::POST, &url, |r| {
                r.header("Content-Type", "application/x-yaml")
                    .body(body.clone())
            })
            .await?;
        location(Method::POST, &url, &resp)
    }

    /// One job.
    pub async fn job(&self, url: &str) -> Result<Job> {
        self.get_json(url).await
    }

    /// Polls a job until it is `COMPLETE` (ok) or `FAILED` (its errors).
    pub async fn wait_job(&self, url: &str, timeout: Duration) -> Result<Job> {
        let start = Instant::now();
        let mut backoff = crate::poll::Backoff::new();
        loop {
            let job = self.job(url).await?;
            match job.state.as_str() {
                "COMPLETE" => return Ok(job),
                "FAILED" => {
                    return Err(ClientError::JobFailed {
                        guid: job.guid,
                        errors: job.errors,
                    })
                }
                _ => {}
            }
            if start.elapsed() > timeout {
                return Err(ClientError::Timeout {
                    what: format!("job {} ({})", job.guid, job.operation),
                    seconds: timeout.as_secs(),
                });
            }
            backoff.wait().await;
        }
    }

    /// Waits on the job a `202 Accepted` points to; other answers are done.
    async fn wait_location(&self, resp: reqwest::Response, timeout: Duration) -> Result<()> {
        if resp.status().as_u16() == 202 {
            if let Some(loc) = resp.headers().get("location").and_then(|v| v.to_str().ok()) {
                self.wait_job(loc, timeout).await?;
            }
        }
        Ok(())
    }

    /// Which of `resources` the platform already has, asked in chunks of at
    /// most [`RESOURCE_MATCH_CHUNK`].
    pub async fn resource_matches(
        &self,
        resources: &[MatchResource],
    ) -> Result<Vec<MatchResource>> {
        let mut matched = Vec::new();
        for chunk in resources.chunks(RESOURCE_MATCH_CHUNK) {
            let answer: Resources<MatchResource> = self
                .send_json(
                    Method::POST,
                    "/v3/resource_matches",
                    &json!({ "resources": chunk }),
                )
                .await?;
            matched.extend(answer.resources);
        }
        Ok(matched)
    }

    /// Creates a bits package for an app (`AWAITING_UPLOAD`).
    pub async fn create_package(&self, app_guid: &str) -> Result<Package> {
        let body = json!({
            "type": "bits",
            "relationships": {"app": {"data": {"guid": app_guid}}},
        });
        self.send_json(Method::POST, "/v3/packages", &body).await
    }

    /// Uploads a package: the `resources` the platform already has, and a
    /// zip of the rest (`bits`). `progress` sees the zip's bytes go out.
    pub async fn upload_package(
        &self,
        guid: &str,
        matched: &[MatchResource],
        zip: Option<Bytes>,
        progress: Option<Progress>,
    ) -> Result<Package> {
        let url = format!("/v3/packages/{guid}/upload");
        let resources = serde_json::to_string(matched).map_err(|e| ClientError::Invalid {
            what: "resources".into(),
            detail: e.to_string(),
        })?;
        let resp = self
            .send(Method::POST, &url, |r| {
                let mut form = Form::new().text("resources", resources.clone());
                if let Some(zip) = &zip {
                    form = form.part("bits", zip_part(zip.clone(), progress.clone()));
                }
                r.multipart(form)
            })
            .await?;
        decode(Method::POST, &url, resp).await
    }

    /// One package.
    pub async fn package(&self, guid: &str) -> Result<Package> {
        self.get_json(&format!("/v3/packages/{guid}")).await
    }

    /// Polls a package until `READY`; `FAILED` is an error with its reason.
    pub async fn wait_package_ready(&self, guid: &str, timeout: Duration) -> Result<Package> {
        let start = Instant::now();
        let mut backoff = crate::poll::Backoff::new();
        loop {
            let pkg = self.package(guid).await?;
            match pkg.state.as_str() {
                "READY" => return Ok(pkg),
                "FAILED" | "EXPIRED" => {
                    return Err(ClientError::Invalid {
                        what: format!("package {guid}"),
                        detail: format!(
                            "processing the upload failed: {}",
                            pkg.data.error.unwrap_or_else(|| pkg.state.clone())
                        ),
                    })
                }
                _ => {}
            }
            if start.elapsed() > timeout {
                return Err(ClientError::Timeout {
                    what: format!("package {guid} to be READY (it is {})", pkg.state),
                    seconds: timeout.as_secs(),
                });
            }
            backoff.wait().await;
        }
    }

    /// Starts staging a package.
    pub async fn create_build(&self, package_guid: &str) -> Result<Build> {
        self.send_json(
            Method::POST,
            "/v3/builds",
            &json!({"package": {"guid": package_guid}}),
        )
        .await
    }

    /// One build.
    pub async fn build(&self, guid: &str) -> Result<Build> {
        self.get_json(&format!("/v3/builds/{guid}")).await
    }

    /// One droplet.
    pub async fn droplet(&self, guid: &str) -> Result<Droplet> {
        self.get_json(&format!("/v3/droplets/{guid}")).await
    }

    /// The app's current droplet, if it has one.
    pub async fn current_droplet(&self, app_guid: &str) -> Result<Option<Droplet>> {
        match self
            .get_json(&format!("/v3/apps/{app_guid}/droplets/current"))
            .await
        {
            Ok(d) => Ok(Some(d)),
            Err(e) if e.status() == Some(404) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Makes `droplet_guid` the droplet the app runs.
    pub async fn set_current_droplet(&self, app_guid: &str, droplet_guid: &str) -> Result<()> {
        self.send_empty(
            Method::PATCH,
            &format!("/v3/apps/{app_guid}/relationships/current_droplet"),
            Some(&json!({"data": {"guid": droplet_guid}})),
        )
        .await?;
        Ok(())
    }

    /// The app's processes.
    pub async fn processes(&self, app_guid: &str) -> Result<Vec<Process>> {
        self.list_all(&format!("/v3/apps/{app_guid}/processes"), &[])
            .await
    }

    /// One process of an app, by type (`web`).
    pub async fn process(&self, app_guid: &str, kind: &str) -> Result<Process> {
        self.get_json(&format!("/v3/apps/{app_guid}/processes/{kind}"))
            .await
    }

    /// Sets a process's log rate limit (bytes per second per instance, -1
    /// for none).
    pub async fn set_log_rate_limit(&self, process_guid: &str, limit: i64) -> Result<Process> {
        self.send_json(
            Method::POST,
            &format!("/v3/processes/{process_guid}/actions/scale"),
            &json!({"log_rate_limit_in_bytes_per_second": limit}),
        )
        .await
    }

    /// Scales a process (by its guid); `None` leaves that dimension as it is.
    pub async fn scale(
        &self,
        process_guid: &str,
        instances: Option<u32>,
        memory_in_mb: Option<u64>,
        disk_in_mb: Option<u64>,
    ) -> Result<Process> {
        let mut body = serde_json::Map::new();
        if let Some(i) = instances {
            body.insert("instances".into(), json!(i));
        }
        if let Some(m) = memory_in_mb {
            body.insert("memory_in_mb".into(), json!(m));
        }
        if let Some(d) = disk_in_mb {
            body.insert("disk_in_mb".into(), json!(d));
        }
        self.send_json(
            Method::POST,
            &format!("/v3/processes/{process_guid}/actions/scale"),
            &serde_json::Value::Object(body),
        )
        .await
    }

    /// Live stats of each instance of a process.
    pub async fn process_stats(&self, process_guid: &str) -> Result<Vec<InstanceStats>> {
        let answer: Resources<InstanceStats> = self
            .get_json(&format!("/v3/processes/{process_guid}/stats"))
            .await?;
        Ok(answer.resources)
    }

    /// The app's routes.
    pub async fn app_routes(&self, app_guid: &str) -> Result<Vec<Route>> {
        self.list_all(&format!("/v3/apps/{app_guid}/routes"), &[])
            .await
    }

    /// Deletes a route and waits for the job.
    pub async fn delete_route(&self, guid: &str, timeout: Duration) -> Result<()> {
        let resp = self
            .send_empty(Method::DELETE, &format!("/v3/routes/{guid}"), None)
            .await?;
        self.wait_location(resp, timeout).await
    }

    /// The app's environment.
    pub async fn app_env(&self, app_guid: &str) -> Result<AppEnv> {
        self.get_json(&format!("/v3/apps/{app_guid}/env")).await
    }

    /// Sets (or, with `None`, removes) one user-provided variable.
    pub async fn set_env(&self, app_guid: &str, key: &str, value: Option<&str>) -> Result<()> {
        self.send_empty(
            Method::PATCH,
            &format!("/v3/apps/{app_guid}/environment_variables"),
            Some(&json!({"var": {key: value}})),
        )
        .await?;
        Ok(())
    }

    /// Admin buildpacks, optionally only the one named `name`.
    pub async fn buildpacks(&self, name: Option<&str>) -> Result<Vec<Buildpack>> {
        let mut params = vec![("order_by", "position")];
        if let Some(n) = name {
            params.push(("names", n));
        }
        self.list_all("/v3/buildpacks", &params).await
    }

    /// Creates an admin buildpack (`AWAITING_UPLOAD`).
    pub async fn create_buildpack(&self, name: &str) -> Result<Buildpack> {
        self.send_json(
            Method::POST,
            "/v3/buildpacks",
            &json!({"name": name, "enabled": true}),
        )
        .await
    }

    /// Uploads a buildpack's zip and waits until the platform has it.
    pub async fn upload_buildpack(
        &self,
        guid: &str,
        file_name: &str,
        zip: Bytes,
        timeout: Duration,
    ) -> Result<()> {
        let url = format!("/v3/buildpacks/{guid}/upload");
        let resp = self
            .send(Method::POST, &url, |r| {
                r.multipart(Form::new().part(
                    "bits",
                    zip_part(zip.clone(), None).file_name(file_name.to_string()),
                ))
            })
            .await?;
        self.wait_location(resp, timeout).await
    }
}

/// A `bits` multipart part streaming `zip` and reporting progress.
fn zip_part(zip: Bytes, progress: Option<Progress>) -> Part {
    const CHUNK: usize = 64 * 1024;
    let total = zip.len() as u64;
    let chunks: Vec<Bytes> = (0..zip.len())
        .step_by(CHUNK)
        .map(|at| zip.slice(at..(at + CHUNK).min(zip.len())))
        .collect();
    let mut sent = 0u64;
    let stream = futures::stream::iter(chunks).map(move |chunk| {
        sent += chunk.len() as u64;
        if let Some(p) = &progress {
            p(sent, total);
        }
        Ok::<Bytes, std::io::Error>(chunk)
    });
    let part = Part::stream_with_length(reqwest::Body::wrap_stream(stream), total)
        .file_name("application.zip");
    part.mime_str("application/zip")
        .expect("a constant, valid mime type")
}

/// The `Location` header of a `202 Accepted`.
fn location(method: Method, url: &str, resp: &reqwest::Response) -> Result<String> {
    resp.headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .ok_or_else(|| ClientError::Unexpected {
            method: method.to_string(),
            url: url.to_string(),
            status: resp.status().as_u16(),
            body: "the answer has no Location header for the job".into(),
        })
}
