//! Tasks as `cf run-task`, `cf tasks` and `cf terminate-task` drive them:
//! creation from the current droplet, lists, cancelling, the completions the
//! runtime reports, and what a platform restart does to running tasks.

mod common;

use axum::http::StatusCode;
use common::*;
use ingot_api::TaskCompletion;
use serde_json::{json, Value};

const APP: &str = "
applications:
- name: worker
  memory: 128M
  buildpacks: [staticfile_buildpack]
  env:
    GREETING: hello
";

/// Creates app `worker`; returns its guid.
async fn new_app(h: &Harness) -> String {
    let space = h.space_guid().await;
    let (status, job) = h.apply_manifest(&space, APP).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{job}");
    let apps = h
        .get(&format!("/v3/apps?names=worker&space_guids={space}"))
        .await;
    apps["resources"][0]["guid"]
        .as_str()
        .expect("guid")
        .to_string()
}

/// Stages a package of the app and makes its droplet current; returns the
/// droplet's guid.
async fn stage(h: &Harness, app: &str) -> String {
    let (status, package) = h
        .call(
            "POST",
            "/v3/packages",
            Some(json!({"type": "bits", "relationships": {"app": {"data": {"guid": app}}}})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{package}");
    let package = package["guid"].as_str().expect("guid").to_string();
    let (status, _) = h
        .upload(&package, Some(zip_of(&[("index.html", b"x")])), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    h.wait_for(&format!("/v3/packages/{package}"), "state", &["READY"])
        .await;
    let (status, build) = h
        .call(
            "POST",
            "/v3/builds",
            Some(json!({"package": {"guid": package}})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{build}");
    let build = h
        .wait_for(
            &format!("/v3/builds/{}", build["guid"].as_str().expect("guid")),
            "state",
            &["STAGED"],
        )
        .await;
    let droplet = build["droplet"]["guid"]
        .as_str()
        .expect("droplet")
        .to_string();
    let (status, body) = h
        .call(
            "PATCH",
            &format!("/v3/apps/{app}/relationships/current_droplet"),
            Some(json!({"data": {"guid": droplet}})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    droplet
}

async fn run_task(h: &Harness, app: &str, body: Value) -> (StatusCode, Value) {
    h.call("POST", &format!("/v3/apps/{app}/tasks"), Some(body))
        .await
}

fn guid(v: &Value) -> String {
    v["guid"].as_str().expect("guid").to_string()
}

async fn event_types(h: &Harness, app: &str) -> Vec<String> {
    let events = h
        .get(&format!("/v3/audit_events?target_guids={app}&per_page=100"))
        .await;
    events["resources"]
        .as_array()
        .expect("resources")
        .iter()
        .map(|e| e["type"].as_str().unwrap_or_default().to_string())
        .collect()
}

#[tokio::test]
async fn a_task_runs_from_the_current_droplet_and_its_completion_is_recorded() {
    let h = Harness::new().await;
    let app = new_app(&h).await;
    let droplet = stage(&h, &app).await;

    let (status, task) = run_task(
        &h,
        &app,
        json!({"command": "rake db:migrate", "name": "migrate", "memory_in_mb": 64}),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{task}");
    assert_eq!(task["state"], "RUNNING");
    assert_eq!(task["name"], "migrate");
    assert_eq!(task["command"], "rake db:migrate");
    assert_eq!(task["sequence_id"], 1);
    assert_eq!(task["memory_in_mb"], 64);
    assert_eq!(task["disk_in_mb"], 1024);
    assert_eq!(task["droplet_guid"], droplet.as_str());
    assert_eq!(task["result"]["failure_reason"], Value::Null);
    assert_eq!(task["relationships"]["app"]["data"]["guid"], app.as_str());
    let task_guid = guid(&task);
    assert_eq!(
        task["links"]["cancel"]["href"],
        format!("{EXTERNAL}/v3/tasks/{task_guid}/actions/cancel")
    );

    let runs = h.task_runs();
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].task_guid, task_guid);
    assert_eq!(runs[0].name, "migrate");
    assert_eq!(runs[0].command, "rake db:migrate");
    assert_eq!(runs[0].droplet_guid, droplet);
    assert_eq!(runs[0].droplet_key, format!("droplets/{droplet}.tgz"));
    assert_eq!(runs[0].memory_mb, 64);
    assert_eq!(runs[0].app_name, "worker");
    assert_eq!(runs[0].space_name, "dev");
    assert_eq!(runs[0].org_name, "main");
    assert_eq!(
        runs[0].environment.get("GREETING").map(String::as_str),
        Some("hello")
    );

    // An unnamed task gets 8 random hex digits, and the next sequence id.
    let (status, second) = run_task(&h, &app, json!({"command": "echo hi"})).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{second}");
    let name = second["name"].as_str().expect("name");
    assert_eq!(name.len(), 8, "{name}");
    assert!(name.chars().all(|c| c.is_ascii_hexdigit()), "{name}");
    assert_eq!(second["sequence_id"], 2);

    h.api
        .record_task_completion(TaskCompletion {
            task_guid: task_guid.clone(),
            exit_status: 0,
            failure_reason: None,
        })
        .await
        .expect("record");
    h.api
        .record_task_completion(TaskCompletion {
            task_guid: guid(&second),
            exit_status: 3,
            failure_reason: Some("Exited with status 3".into()),
        })
        .await
        .expect("record");
    let done = h.get(&format!("/v3/tasks/{task_guid}")).await;
    assert_eq!(done["state"], "SUCCEEDED", "{done}");
    let failed = h.get(&format!("/v3/tasks/{}", guid(&second))).await;
    assert_eq!(failed["state"], "FAILED");
    assert_eq!(failed["result"]["failure_reason"], "Exited with status 3");

    // A late, repeated report changes nothing.
    h.api
        .record_task_completion(TaskCompletion {
            task_guid: task_guid.clone(),
            exit_status: 1,
            failure_reason: Some("Exited with status 1".into()),
        })
        .await
        .expect("record");
    assert_eq!(
        h.get(&format!("/v3/tasks/{task_guid}")).await["state"],
        "SUCCEEDED"
    );

    let types = event_types(&h, &app).await;
    assert_eq!(
        types
            .iter()
            .filter(|t| *t == "audit.app.task.create")
            .count(),
        2,
        "{types:?}"
    );
}

#[tokio::test]
async fn tasks_are_listed_for_the_app_and_everywhere() {
    let h = Harness::new().await;
    let app = new_app(&h).await;
    stage(&h, &app).await;
    for name in ["one", "two", "three"] {
        let (status, body) = run_task(&h, &app, json!({"command": "true", "name": name})).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    }
    let listed = h.get(&format!("/v3/apps/{app}/tasks")).await;
    assert_eq!(listed["pagination"]["total_results"], 3);
    let names: Vec<&str> = listed["resources"]
        .as_array()
        .expect("resources")
        .iter()
        .map(|t| t["name"].as_str().expect("name"))
        .collect();
    assert_eq!(names, ["one", "two", "three"]);
    let all = h.get("/v3/tasks?names=two").await;
    assert_eq!(all["pagination"]["total_results"], 1);
    assert_eq!(all["resources"][0]["sequence_id"], 2);
    let running = h.get("/v3/tasks?states=RUNNING").await;
    assert_eq!(running["pagination"]["total_results"], 3);

    let (status, _) = h.call("GET", "/v3/apps/no-such-app/tasks", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, body) = h.call("GET", "/v3/tasks/no-such-task", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["errors"][0]["detail"], "Task not found");
}

#[tokio::test]
async fn a_task_needs_a_droplet_and_a_command() {
    let h = Harness::new().await;
    let app = new_app(&h).await;

    let (status, body) = run_task(&h, &app, json!({"command": "echo hi"})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["errors"][0]["title"], "CF-UnprocessableEntity");
    assert_eq!(
        body["errors"][0]["detail"],
        "Task must have a droplet. Specify droplet or assign current droplet to app."
    );

    stage(&h, &app).await;
    let (status, body) = run_task(&h, &app, json!({"name": "nothing"})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(
        body["errors"][0]["detail"]
            .as_str()
            .expect("detail")
            .contains("No command or template provided"),
        "{body}"
    );
    let (status, body) = run_task(&h, &app, json!({"command": "x", "memory_in_mb": 0})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let (status, _) = run_task(&h, "no-such-app", json!({"command": "x"})).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // Only admins write.
    let (status, _) = h
        .call_as(
            Some(USER),
            "POST",
            &format!("/v3/apps/{app}/tasks"),
            Some(json!({"command": "x"})),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    assert!(h.task_runs().is_empty());
    let listed = h.get(&format!("/v3/apps/{app}/tasks")).await;
    assert_eq!(listed["pagination"]["total_results"], 0);
}

#[tokio::test]
async fn a_template_process_lends_its_command_and_limits() {
    let h = Harness::new().await;
    let app = new_app(&h).await;
    stage(&h, &app).await;
    let web = h.get(&format!("/v3/apps/{app}/processes/web")).await;
    let (status, task) = run_task(
        &h,
        &app,
        json!({"template": {"process": {"guid": web["guid"]}}}),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{task}");
    // The fake stager's droplet says `web: ./serve`.
    assert_eq!(task["command"], "./serve");
    assert_eq!(task["memory_in_mb"], 128);
}

#[tokio::test]
async fn cancelling_a_task_fails_it_as_cancelled() {
    let h = Harness::new().await;
    let app = new_app(&h).await;
    stage(&h, &app).await;
    let (_, task) = run_task(&h, &app, json!({"command": "sleep 100"})).await;
    let task_guid = guid(&task);

    let (status, canceling) = h
        .call(
            "POST",
            &format!("/v3/tasks/{task_guid}/actions/cancel"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{canceling}");
    assert_eq!(canceling["state"], "CANCELING");
    assert!(h.calls().contains(&Call::CancelTask(task_guid.clone())));

    // The runtime reports the exit the SIGTERM caused.
    h.api
        .record_task_completion(TaskCompletion {
            task_guid: task_guid.clone(),
            exit_status: 143,
            failure_reason: Some("Exited with status 143".into()),
        })
        .await
        .expect("record");
    let done = h.get(&format!("/v3/tasks/{task_guid}")).await;
    assert_eq!(done["state"], "FAILED");
    assert_eq!(done["result"]["failure_reason"], "task was cancelled");

    let (status, body) = h
        .call(
            "POST",
            &format!("/v3/tasks/{task_guid}/actions/cancel"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(
        body["errors"][0]["detail"],
        "Task state is FAILED and therefore cannot be canceled"
    );
    assert!(event_types(&h, &app)
        .await
        .contains(&"audit.app.task.cancel".to_string()));

    let (status, _) = h
        .call("POST", "/v3/tasks/no-such-task/actions/cancel", None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn cancelling_a_task_the_runtime_no_longer_runs_ends_it_at_once() {
    let h = Harness::new().await;
    let app = new_app(&h).await;
    stage(&h, &app).await;
    let (_, task) = run_task(&h, &app, json!({"command": "sleep 100"})).await;
    h.runtime
        .knows_tasks
        .store(false, std::sync::atomic::Ordering::SeqCst);
    let (status, done) = h
        .call(
            "POST",
            &format!("/v3/tasks/{}/actions/cancel", guid(&task)),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{done}");
    assert_eq!(done["state"], "FAILED");
    assert_eq!(done["result"]["failure_reason"], "task was cancelled");
}

#[tokio::test]
async fn a_task_the_runtime_refuses_fails() {
    let h = Harness::new().await;
    let app = new_app(&h).await;
    stage(&h, &app).await;
    h.runtime
        .refuse_tasks
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let (status, task) = run_task(&h, &app, json!({"command": "echo hi"})).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{task}");
    assert_eq!(task["state"], "FAILED");
    assert_eq!(
        task["result"]["failure_reason"],
        "Unable to request task to be run"
    );
}

#[tokio::test]
async fn resume_fails_tasks_a_restart_interrupted() {
    let h = Harness::new().await;
    let app = new_app(&h).await;
    stage(&h, &app).await;
    let (_, running) = run_task(&h, &app, json!({"command": "sleep 100"})).await;
    let (_, finished) = run_task(&h, &app, json!({"command": "true"})).await;
    h.api
        .record_task_completion(TaskCompletion {
            task_guid: guid(&finished),
            exit_status: 0,
            failure_reason: None,
        })
        .await
        .expect("record");

    h.api.resume().await.expect("resume");
    let failed = h.get(&format!("/v3/tasks/{}", guid(&running))).await;
    assert_eq!(failed["state"], "FAILED");
    assert!(failed["result"]["failure_reason"]
        .as_str()
        .expect("reason")
        .contains("restart"));
    let kept = h.get(&format!("/v3/tasks/{}", guid(&finished))).await;
    assert_eq!(kept["state"], "SUCCEEDED");
    // Nothing is started again.
    assert_eq!(h.task_runs().len(), 2);
}
