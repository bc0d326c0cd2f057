//! Rolling deployments, revisions and rollback, against a runtime that
//! reports as many running instances as it was asked for.

mod common;

use axum::http::StatusCode;
use common::*;
use serde_json::{json, Value};

struct Deployed {
    h: Harness,
    app: String,
    first: String,
    second: String,
}

/// App `site` with 2 instances started on one droplet, and a second droplet
/// staged but not deployed.
async fn two_droplets() -> Deployed {
    let h = Harness::new().await;
    h.runtime
        .report_desired
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let space = h.space_guid().await;
    let (status, app) = h
        .call(
            "POST",
            "/v3/apps",
            Some(json!({"name": "site", "relationships": {"space": {"data": {"guid": space}}}})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{app}");
    let app = app["guid"].as_str().expect("guid").to_string();
    let first = h
        .stage_droplet(&app, zip_of(&[("index.html", b"v1")]))
        .await;
    let (status, body) = h
        .call(
            "PATCH",
            &format!("/v3/apps/{app}/relationships/current_droplet"),
            Some(json!({"data": {"guid": first}})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = h
        .call(
            "POST",
            &format!("/v3/apps/{app}/processes/web/actions/scale"),
            Some(json!({"instances": 2})),
        )
        .await;
    assert!(status.is_success(), "{body}");
    let (status, body) = h
        .call("POST", &format!("/v3/apps/{app}/actions/start"), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let second = h
        .stage_droplet(&app, zip_of(&[("index.html", b"v2")]))
        .await;
    Deployed {
        h,
        app,
        first,
        second,
    }
}

async fn deploy(h: &Harness, body: Value) -> Value {
    let (status, deployment) = h.call("POST", "/v3/deployments", Some(body)).await;
    assert_eq!(status, StatusCode::CREATED, "{deployment}");
    assert_eq!(deployment["status"]["value"], "ACTIVE", "{deployment}");
    deployment
}

async fn wait_finalized(h: &Harness, deployment: &Value) -> Value {
    let guid = deployment["guid"].as_str().expect("guid");
    h.wait_for(
        &format!("/v3/deployments/{guid}"),
        "state",
        &["DEPLOYED", "CANCELED"],
    )
    .await
}

/// The instances desired of each process after each runtime call.
fn desired_timeline(h: &Harness) -> Vec<std::collections::BTreeMap<String, u32>> {
    let mut now = std::collections::BTreeMap::new();
    let mut timeline = Vec::new();
    for call in h.calls() {
        match call {
            Call::Desire(dp) => {
                now.insert(dp.process_guid, dp.instances);
            }
            Call::Remove(guid) => {
                now.remove(&guid);
            }
            _ => continue,
        }
        timeline.push(now.clone());
    }
    timeline
}

#[tokio::test]
async fn a_rolling_deployment_never_has_fewer_instances_than_asked() {
    let d = two_droplets().await;
    let h = &d.h;
    let old_web = h.get(&format!("/v3/apps/{}/processes/web", d.app)).await["guid"]
        .as_str()
        .expect("guid")
        .to_string();
    let calls_before = h.calls().len();
    let deployment = deploy(
        h,
        json!({"droplet": {"guid": d.second}, "relationships": {"app": {"data": {"guid": d.app}}}}),
    )
    .await;
    assert_eq!(deployment["droplet"]["guid"], d.second.as_str());
    assert_eq!(deployment["previous_droplet"]["guid"], d.first.as_str());
    let done = wait_finalized(h, &deployment).await;
    assert_eq!(done["status"]["reason"], "DEPLOYED", "{done}");

    // The runtime hears of the end just after it is recorded.
    for _ in 0..100 {
        if desired_timeline(h)
            .last()
            .is_some_and(|now| !now.contains_key(&old_web))
        {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    // At every moment at least 2 instances were desired, and the old ones
    // went only as new ones ran.
    let timeline = desired_timeline(h);
    for (i, state) in timeline.iter().enumerate().skip(calls_before) {
        let total: u32 = state.values().sum();
        assert!(
            total >= 2,
            "step {i}: only {total} instances desired: {state:?}"
        );
    }
    let last = timeline.last().expect("calls");
    assert!(
        !last.contains_key(&old_web),
        "the old process still runs: {last:?}"
    );
    let new_web = h.get(&format!("/v3/apps/{}/processes/web", d.app)).await;
    assert_ne!(new_web["guid"], old_web.as_str());
    assert_eq!(new_web["instances"], 2);
    assert_eq!(last.get(new_web["guid"].as_str().expect("guid")), Some(&2));
    let current = h.get(&format!("/v3/apps/{}/droplets/current", d.app)).await;
    assert_eq!(current["guid"], d.second.as_str());
    let events = h
        .get("/v3/audit_events?types=audit.app.deployment.create")
        .await;
    assert_eq!(events["pagination"]["total_results"], 1);
}

#[tokio::test]
async fn revisions_record_each_deploy_and_rollback_restores_one() {
    let d = two_droplets().await;
    let h = &d.h;
    let app = &d.app;
    let deployment = deploy(
        h,
        json!({"droplet": {"guid": d.second}, "relationships": {"app": {"data": {"guid": app}}}}),
    )
    .await;
    wait_finalized(h, &deployment).await;
    let revisions = h.get(&format!("/v3/apps/{app}/revisions")).await;
    let described: Vec<(u64, String, String)> = revisions["resources"]
        .as_array()
        .expect("revisions")
        .iter()
        .map(|r| {
            (
                r["version"].as_u64().expect("version"),
                r["droplet"]["guid"].as_str().expect("droplet").to_string(),
                r["description"].as_str().expect("description").to_string(),
            )
        })
        .collect();
    assert_eq!(
        described,
        vec![
            (1, d.first.clone(), "Initial revision.".to_string()),
            (2, d.second.clone(), "New droplet deployed.".to_string()),
        ]
    );
    let first = revisions["resources"][0]["guid"].as_str().expect("guid");
    let rollback = deploy(
        h,
        json!({"revision": {"guid": first}, "relationships": {"app": {"data": {"guid": app}}}}),
    )
    .await;
    let done = wait_finalized(h, &rollback).await;
    assert_eq!(done["state"], "DEPLOYED");
    let current = h.get(&format!("/v3/apps/{app}/droplets/current")).await;
    assert_eq!(current["guid"], d.first.as_str());
    let latest = h.get(&format!("/v3/apps/{app}/revisions/deployed")).await;
    assert_eq!(latest["resources"][0]["version"], 3, "{latest}");
    assert_eq!(
        latest["resources"][0]["description"],
        "Rolled back to revision 1."
    );
}

#[tokio::test]
async fn a_deployment_whose_instances_never_run_is_cancelled_back() {
    let d = two_droplets().await;
    let h = &d.h;
    let old_web = h.get(&format!("/v3/apps/{}/processes/web", d.app)).await["guid"]
        .as_str()
        .expect("guid")
        .to_string();
    let deployment = deploy(
        h,
        json!({"droplet": {"guid": d.second}, "relationships": {"app": {"data": {"guid": d.app}}}}),
    )
    .await;
    let new_process = deployment["new_processes"][0]["guid"]
        .as_str()
        .expect("new process")
        .to_string();
    h.runtime
        .unhealthy
        .lock()
        .expect("lock")
        .push(new_process.clone());
    // A second deployment while one runs is refused.
    let (status, body) = h
        .call(
            "POST",
            "/v3/deployments",
            Some(json!({"relationships": {"app": {"data": {"guid": d.app}}}})),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let guid = deployment["guid"].as_str().expect("guid");
    let (status, body) = h
        .call(
            "POST",
            &format!("/v3/deployments/{guid}/actions/cancel"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let done = wait_finalized(h, &deployment).await;
    assert_eq!(done["status"]["reason"], "CANCELED", "{done}");
    let last = desired_timeline(h).pop().expect("calls");
    assert_eq!(last.get(&old_web), Some(&2), "{last:?}");
    assert!(!last.contains_key(&new_process), "{last:?}");
    let current = h.get(&format!("/v3/apps/{}/droplets/current", d.app)).await;
    assert_eq!(current["guid"], d.first.as_str());
    let web = h.get(&format!("/v3/apps/{}/processes/web", d.app)).await;
    assert_eq!(web["guid"], old_web.as_str());
}
