//! Managing admin buildpacks, as `create-buildpack`, `update-buildpack`,
//! `rename-buildpack` and `delete-buildpack` do: `POST`/`PATCH`/`DELETE
//! /v3/buildpacks` and the zip upload to `/v3/buildpacks/:guid/upload`.

use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt as _;
use reqwest::multipart::{Form, Part};
use reqwest::Method;
use serde::Serialize;
use serde_json::json;

use crate::client::{decode, Client};
use crate::error::{ClientError, Result};
use crate::platform::BuildpackInfo;
use crate::v3::Progress;

/// What `update-buildpack` changes; `None` leaves a field as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct BuildpackUpdate {
    /// A new name (`--rename`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// A new place in detection order, from 1 (`-i`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub position: Option<u32>,
    /// Whether detection uses it (`--enable`/`--disable`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// Whether it may not be changed (`--lock`/`--unlock`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub locked: Option<bool>,
}

impl BuildpackUpdate {
    /// Whether the update changes nothing (then no `PATCH` is needed).
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

impl Client {
    /// The admin buildpack named `name`, if there is one.
    pub async fn buildpack_named(&self, name: &str) -> Result<Option<BuildpackInfo>> {
        let found: Vec<BuildpackInfo> = self.list_all("/v3/buildpacks", &[("names", name)]).await?;
        Ok(found.into_iter().find(|b| b.name == name))
    }

    /// One admin buildpack.
    pub async fn buildpack_info(&self, guid: &str) -> Result<BuildpackInfo> {
        self.get_json(&format!("/v3/buildpacks/{guid}")).await
    }

    /// Creates an admin buildpack at `position` (`AWAITING_UPLOAD` until its
    /// zip is uploaded).
    pub async fn create_admin_buildpack(
        &self,
        name: &str,
        position: u32,
        enabled: bool,
    ) -> Result<BuildpackInfo> {
        self.send_json(
            Method::POST,
            "/v3/buildpacks",
            &json!({"name": name, "position": position, "enabled": enabled}),
        )
        .await
    }

    /// Changes an admin buildpack.
    pub async fn update_buildpack(
        &self,
        guid: &str,
        update: &BuildpackUpdate,
    ) -> Result<BuildpackInfo> {
        let body = serde_json::to_value(update).map_err(|e| ClientError::Invalid {
            what: "buildpack update".into(),
            detail: e.to_string(),
        })?;
        self.send_json(Method::PATCH, &format!("/v3/buildpacks/{guid}"), &body)
            .await
    }

    /// Uploads a buildpack's zip as the `bits` file named `file_name`;
    /// `progress` sees its bytes go out. Returns the buildpack as the upload
    /// left it (see [`Client::wait_buildpack_ready`]).
    pub async fn upload_buildpack_zip(
        &self,
        guid: &str,
        file_name: &str,
        zip: Bytes,
        progress: Option<Progress>,
    ) -> Result<BuildpackInfo> {
        let url = format!("/v3/buildpacks/{guid}/upload");
        let resp = self
            .send(Method::POST, &url, |r| {
                r.multipart(
                    Form::new().part("bits", bits_part(zip.clone(), file_name, progress.clone())),
                )
            })
            .await?;
        decode(Method::POST, &url, resp).await
    }

    /// Polls an admin buildpack until it is `READY`.
    pub async fn wait_buildpack_ready(
        &self,
        guid: &str,
        timeout: Duration,
    ) -> Result<BuildpackInfo> {
        let start = Instant::now();
        let mut backoff = crate::poll::Backoff::new();
        loop {
            let b = self.buildpack_info(guid).await?;
            if b.state == "READY" {
                return Ok(b);
            }
            if start.elapsed() >= timeout {
                return Err(ClientError::Timeout {
                    what: format!("buildpack {} to be READY (it is {})", b.name, b.state),
                    seconds: timeout.as_secs(),
                });
            }
            backoff.wait().await;
        }
    }

    /// Deletes an admin buildpack and waits for the deletion job.
    pub async fn delete_buildpack(&self, guid: &str, timeout: Duration) -> Result<()> {
        let resp = self
            .send_empty(Method::DELETE, &format!("/v3/buildpacks/{guid}"), None)
            .await?;
        if resp.status().as_u16() == 202 {
            if let Some(loc) = resp.headers().get("location").and_then(|v| v.to_str().ok()) {
                self.wait_job(loc, timeout).await?;
            }
        }
        Ok(())
    }
}

/// A `bits` multipart part streaming `zip` in chunks, reporting progress.
fn bits_part(zip: Bytes, file_name: &str, progress: Option<Progress>) -> Part {
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
        .file_name(file_name.to_string());
    part.mime_str("application/zip")
        .expect("a constant, valid mime type")
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::{Arc, Mutex};

    use axum::extract::{Multipart, Path, State};
    use axum::http::StatusCode;
    use axum::response::{IntoResponse, Response};
    use axum::routing::{get, post};
    use axum::{Json, Router};
    use serde_json::Value;

    use super::*;
    use crate::client::{Endpoints, Tokens};

    /// What the fake API saw, and how many times the buildpack was read.
    #[derive(Default)]
    struct Seen {
        base: String,
        requests: Mutex<Vec<String>>,
        reads: AtomicU64,
    }

    type S = Arc<Seen>;

    fn buildpack(state: &str) -> Value {
        json!({"guid": "bp-1", "name": "my-bp", "position": 1, "enabled": true,
               "locked": false, "state": state, "stack": null, "filename": null})
    }

    async fn create(State(s): State<S>, Json(body): Json<Value>) -> Response {
        s.requests
            .lock()
            .expect("lock")
            .push(format!("POST {body}"));
        (StatusCode::CREATED, Json(buildpack("AWAITING_UPLOAD"))).into_response()
    }

    async fn list(State(s): State<S>) -> Json<Value> {
        s.requests.lock().expect("lock").push("LIST".into());
        Json(json!({"pagination": {"next": null}, "resources": [buildpack("READY")]}))
    }

    /// Not ready on the first read, ready on the second: the wait polls.
    async fn show(State(s): State<S>) -> Json<Value> {
        let n = s.reads.fetch_add(1, Ordering::SeqCst);
        Json(buildpack(if n == 0 { "AWAITING_UPLOAD" } else { "READY" }))
    }

    async fn patch(State(s): State<S>, Json(body): Json<Value>) -> Json<Value> {
        s.requests
            .lock()
            .expect("lock")
            .push(format!("PATCH {body}"));
        Json(buildpack("READY"))
    }

    async fn delete(State(s): State<S>) -> Response {
        s.requests.lock().expect("lock").push("DELETE".into());
        (
            StatusCode::ACCEPTED,
            [("location", format!("{}/v3/jobs/j-1", s.base))],
        )
            .into_response()
    }

    async fn job(State(s): State<S>) -> Json<Value> {
        s.requests.lock().expect("lock").push("JOB".into());
        Json(json!({"guid": "j-1", "state": "COMPLETE"}))
    }

    async fn upload(State(s): State<S>, Path(guid): Path<String>, mut form: Multipart) -> Response {
        while let Ok(Some(field)) = form.next_field().await {
            let name = field.name().unwrap_or_default().to_string();
            let file = field.file_name().unwrap_or_default().to_string();
            let len = field.bytes().await.map(|b| b.len()).unwrap_or(0);
            s.requests
                .lock()
                .expect("lock")
                .push(format!("UPLOAD {guid} {name} {file} {len}"));
        }
        (StatusCode::ACCEPTED, Json(buildpack("AWAITING_UPLOAD"))).into_response()
    }

    #[tokio::test]
    async fn create_upload_wait_update_and_delete_speak_the_v3_api() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        let seen = Arc::new(Seen {
            base: base.clone(),
            ..Seen::default()
        });
        let router = Router::new()
            .route("/v3/buildpacks", get(list).post(create))
            .route(
                "/v3/buildpacks/{guid}",
                get(show).patch(patch).delete(delete),
            )
            .route("/v3/buildpacks/{guid}/upload", post(upload))
            .route("/v3/jobs/{guid}", get(job))
            .with_state(seen.clone());
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        let client = Client::new(
            Endpoints {
                api: base,
                ..Endpoints::default()
            },
            Some(Tokens {
                access_token: "t".into(),
                refresh_token: None,
            }),
        );

        let created = client
            .create_admin_buildpack("my-bp", 1, false)
            .await
            .expect("create");
        assert_eq!(created.state, "AWAITING_UPLOAD");
        let sent = Arc::new(AtomicU64::new(0));
        let seen_progress = sent.clone();
        let progress: Progress = Arc::new(move |n, _| seen_progress.store(n, Ordering::SeqCst));
        let zip = Bytes::from(vec![7u8; 100_000]);
        client
            .upload_buildpack_zip("bp-1", "my-bp.zip", zip, Some(progress))
            .await
            .expect("upload");
        assert_eq!(
            sent.load(Ordering::SeqCst),
            100_000,
            "progress reaches the end"
        );
        let ready = client
            .wait_buildpack_ready("bp-1", Duration::from_secs(10))
            .await
            .expect("ready");
        assert_eq!(ready.state, "READY");
        assert_eq!(seen.reads.load(Ordering::SeqCst), 2, "polled until READY");
        let found = client.buildpack_named("my-bp").await.expect("list");
        assert_eq!(found.map(|b| b.guid).as_deref(), Some("bp-1"));
        assert!(client
            .buildpack_named("other")
            .await
            .expect("list")
            .is_none());
        let update = BuildpackUpdate {
            locked: Some(true),
            ..BuildpackUpdate::default()
        };
        client
            .update_buildpack("bp-1", &update)
            .await
            .expect("update");
        client
            .delete_buildpack("bp-1", Duration::from_secs(10))
            .await
            .expect("delete");
        server.abort();

        let requests = seen.requests.lock().expect("lock").clone();
        assert_eq!(
            requests,
            vec![
                r#"POST {"enabled":false,"name":"my-bp","position":1}"#.to_string(),
                "UPLOAD bp-1 bits my-bp.zip 100000".into(),
                "LIST".into(),
                "LIST".into(),
                r#"PATCH {"locked":true}"#.into(),
                "DELETE".into(),
                "JOB".into(),
            ]
        );
    }

    #[test]
    fn an_update_sends_only_what_changes() {
        let update = BuildpackUpdate {
            position: Some(2),
            enabled: Some(false),
            ..BuildpackUpdate::default()
        };
        assert_eq!(
            serde_json::to_value(&update).expect("serializes"),
            json!({"position": 2, "enabled": false})
        );
        assert!(!update.is_empty());
        assert!(BuildpackUpdate::default().is_empty());
        assert_eq!(
            serde_json::to_value(BuildpackUpdate::default()).expect("serializes"),
            json!({})
        );
    }
}
