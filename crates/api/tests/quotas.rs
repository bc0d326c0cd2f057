//! Organization and space quotas as `cf quotas`, `cf create-quota`,
//! `cf set-quota`, `cf create-space-quota` and `cf set-space-quota` drive
//! them, and their enforcement with Cloud Controller's errors: a refused
//! change leaves everything as it was.

mod common;

use axum::http::StatusCode;
use common::*;
use serde_json::{json, Value};

fn user(name: &str) -> String {
    format!("bearer as:{name}")
}

async fn org_guid(h: &Harness) -> String {
    h.get("/v3/organizations?names=main").await["resources"][0]["guid"]
        .as_str()
        .expect("org")
        .to_string()
}

/// Creates an organization quota with these app limits and applies it to
/// org `main`; returns its guid.
async fn org_quota(h: &Harness, name: &str, limits: Value) -> String {
    let org = org_guid(h).await;
    let mut body = limits;
    body["name"] = json!(name);
    body["relationships"] = json!({"organizations": {"data": [{"guid": org}]}});
    let (status, quota) = h.call("POST", "/v3/organization_quotas", Some(body)).await;
    assert_eq!(status, StatusCode::CREATED, "{quota}");
    quota["guid"].as_str().expect("guid").to_string()
}

/// Creates a space quota in `main` with these limits, applied to `dev`.
async fn space_quota(h: &Harness, name: &str, limits: Value) -> String {
    let org = org_guid(h).await;
    let space = h.space_guid().await;
    let mut body = limits;
    body["name"] = json!(name);
    body["relationships"] = json!({
        "organization": {"data": {"guid": org}},
        "spaces": {"data": [{"guid": space}]},
    });
    let (status, quota) = h.call("POST", "/v3/space_quotas", Some(body)).await;
    assert_eq!(status, StatusCode::CREATED, "{quota}");
    quota["guid"].as_str().expect("guid").to_string()
}

/// A started app `web` (one 256 MB instance of web) in `dev`; returns the
/// app's and its web process's guids.
async fn started_app(h: &Harness) -> (String, String) {
    let space = h.space_guid().await;
    let (status, job) = h
        .apply_manifest(&space, "applications:\n- name: web\n  memory: 256M\n")
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{job}");
    assert_eq!(job["state"], "COMPLETE", "{job}");
    let app = h.get("/v3/apps?names=web").await["resources"][0]["guid"]
        .as_str()
        .expect("app")
        .to_string();
    let droplet = h
        .stage_droplet(&app, zip_of(&[("index.html", b"hi")]))
        .await;
    let (status, body) = h
        .call(
            "PATCH",
            &format!("/v3/apps/{app}/relationships/current_droplet"),
            Some(json!({"data": {"guid": droplet}})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = h
        .call("POST", &format!("/v3/apps/{app}/actions/start"), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let web = h.get(&format!("/v3/apps/{app}/processes/web")).await["guid"]
        .as_str()
        .expect("process")
        .to_string();
    (app, web)
}

/// Asserts CF's 422 with this detail.
fn refused(status: StatusCode, body: &Value, detail: &str) {
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["errors"][0]["code"], 10008, "{body}");
    assert_eq!(body["errors"][0]["title"], "CF-UnprocessableEntity");
    assert_eq!(body["errors"][0]["detail"], detail, "{body}");
}

async fn scale(h: &Harness, web: &str, body: Value) -> (StatusCode, Value) {
    h.call(
        "POST",
        &format!("/v3/processes/{web}/actions/scale"),
        Some(body),
    )
    .await
}

#[tokio::test]
async fn organizations_have_the_default_quota_and_show_it() {
    let h = Harness::new().await;
    let list = h.get("/v3/organization_quotas").await;
    assert_eq!(list["pagination"]["total_results"], 1);
    let default = &list["resources"][0];
    assert_eq!(default["name"], "default");
    assert_eq!(default["apps"]["total_memory_in_mb"], 102400);
    assert_eq!(default["apps"]["total_instances"], Value::Null);
    assert_eq!(default["services"]["paid_services_allowed"], true);
    assert_eq!(default["routes"]["total_routes"], 1000);
    let org = org_guid(&h).await;
    assert_eq!(
        default["relationships"]["organizations"]["data"],
        json!([{"guid": org}])
    );
    let shown = h.get(&format!("/v3/organizations/{org}")).await;
    assert_eq!(
        shown["relationships"]["quota"]["data"]["guid"],
        default["guid"]
    );
    // A new organization gets it too.
    let (status, created) = h
        .call("POST", "/v3/organizations", Some(json!({"name": "other"})))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(
        created["relationships"]["quota"]["data"]["guid"],
        default["guid"]
    );
    let listed = h.get("/v3/organizations?names=other").await;
    assert_eq!(
        listed["resources"][0]["relationships"]["quota"]["data"]["guid"],
        default["guid"]
    );
}

#[tokio::test]
async fn admins_manage_organization_quotas() {
    let h = Harness::new().await;
    let org = org_guid(&h).await;
    let (status, _) = h
        .call_as(
            Some(&user("someone")),
            "POST",
            "/v3/organization_quotas",
            Some(json!({"name": "nope"})),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(
        h.get("/v3/organization_quotas").await["pagination"]["total_results"],
        1
    );

    let (status, q) = h
        .call(
            "POST",
            "/v3/organization_quotas",
            Some(
                json!({"name": "small", "apps": {"total_memory_in_mb": 2048, "per_app_tasks": 2},
                        "services": {"paid_services_allowed": false}}),
            ),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{q}");
    let guid = q["guid"].as_str().expect("guid").to_string();
    assert_eq!(
        q["apps"],
        json!({"total_memory_in_mb": 2048, "per_process_memory_in_mb": null, "total_instances": null,
               "per_app_tasks": 2, "log_rate_limit_in_bytes_per_second": null})
    );
    assert_eq!(q["domains"], json!({"total_domains": null}));
    assert_eq!(q["relationships"]["organizations"]["data"], json!([]));

    let (status, body) = h
        .call(
            "POST",
            "/v3/organization_quotas",
            Some(json!({"name": "small", "apps": {"total_memory_in_mb": -5}})),
        )
        .await;
    refused(
        status,
        &body,
        "Apps Total memory in mb must be greater than or equal to 0",
    );

    let (status, body) = h
        .call(
            "PATCH",
            &format!("/v3/organization_quotas/{guid}"),
            Some(json!({"apps": {"total_memory_in_mb": null, "total_instances": 4}})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["apps"]["total_memory_in_mb"], Value::Null);
    assert_eq!(body["apps"]["total_instances"], 4);
    assert_eq!(body["apps"]["per_app_tasks"], 2, "untouched fields stay");

    let (status, body) = h
        .call(
            "POST",
            &format!("/v3/organization_quotas/{guid}/relationships/organizations"),
            Some(json!({"data": [{"guid": org}]})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["data"], json!([{"guid": org}]));
    let shown = h.get(&format!("/v3/organizations/{org}")).await;
    assert_eq!(shown["relationships"]["quota"]["data"]["guid"], guid);
    let default = h.get("/v3/organization_quotas?names=default").await;
    assert_eq!(
        default["resources"][0]["relationships"]["organizations"]["data"],
        json!([])
    );

    let (status, body) = h
        .call("DELETE", &format!("/v3/organization_quotas/{guid}"), None)
        .await;
    refused(
        status,
        &body,
        "This quota is applied to one or more organizations. Apply different quotas to those organizations before deleting.",
    );
    for kind in [
        "audit.organization_quota.create",
        "audit.organization_quota.update",
        "audit.organization_quota.apply",
    ] {
        let events = h.get(&format!("/v3/audit_events?types={kind}")).await;
        assert_eq!(events["pagination"]["total_results"], 1, "{kind}: {events}");
        assert_eq!(events["resources"][0]["target"]["guid"], guid);
    }
    let default_guid = default["resources"][0]["guid"].as_str().expect("guid");
    let (status, _) = h
        .call(
            "DELETE",
            &format!("/v3/organization_quotas/{default_guid}"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
}

#[tokio::test]
async fn scaling_past_the_memory_quota_is_refused_and_changes_nothing() {
    let h = Harness::new().await;
    let (_, web) = started_app(&h).await;
    org_quota(&h, "tight", json!({"apps": {"total_memory_in_mb": 1024}})).await;
    let desires = h.desires().len();
    let (status, body) = scale(&h, &web, json!({"instances": 5})).await;
    refused(status, &body, "memory quota_exceeded");
    let process = h.get(&format!("/v3/processes/{web}")).await;
    assert_eq!(process["instances"], 1);
    assert_eq!(process["memory_in_mb"], 256);
    assert_eq!(h.desires().len(), desires, "the runtime heard nothing");
    let (status, body) = scale(&h, &web, json!({"memory_in_mb": 2048})).await;
    refused(status, &body, "memory quota_exceeded");
    // Within the quota it scales.
    let (status, body) = scale(&h, &web, json!({"instances": 4})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(h.desires().last().expect("desired").instances, 4);
}

#[tokio::test]
async fn instance_and_per_process_limits_are_enforced() {
    let h = Harness::new().await;
    let (_, web) = started_app(&h).await;
    org_quota(
        &h,
        "few",
        json!({"apps": {"total_instances": 2, "per_process_memory_in_mb": 512}}),
    )
    .await;
    let (status, body) = scale(&h, &web, json!({"instances": 3})).await;
    refused(
        status,
        &body,
        "app_instance_limit app_instance_limit_exceeded",
    );
    let (status, body) = scale(&h, &web, json!({"memory_in_mb": 1024})).await;
    refused(status, &body, "memory instance_memory_limit_exceeded");
    let (status, body) = scale(&h, &web, json!({"instances": 2, "memory_in_mb": 512})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

#[tokio::test]
async fn space_and_organization_quotas_are_both_enforced() {
    let h = Harness::new().await;
    let (app, web) = started_app(&h).await;
    space_quota(
        &h,
        "dev-space",
        json!({"apps": {"total_memory_in_mb": 512, "per_process_memory_in_mb": 400}}),
    )
    .await;
    let (status, body) = scale(&h, &web, json!({"instances": 3})).await;
    refused(status, &body, "memory space_quota_exceeded");
    let (status, body) = scale(&h, &web, json!({"memory_in_mb": 450})).await;
    refused(status, &body, "memory space_instance_memory_limit_exceeded");
    // The organization's quota counts too, though the space has room.
    org_quota(
        &h,
        "org-tight",
        json!({"apps": {"total_memory_in_mb": 300}}),
    )
    .await;
    let (status, body) = scale(&h, &web, json!({"instances": 2})).await;
    refused(status, &body, "memory quota_exceeded");
    // A stopped app starts only within the quotas.
    let (status, _) = h
        .call("POST", &format!("/v3/apps/{app}/actions/stop"), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = scale(&h, &web, json!({"instances": 3})).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "a stopped app scales freely: {body}"
    );
    let desires = h.desires().len();
    let (status, body) = h
        .call("POST", &format!("/v3/apps/{app}/actions/start"), None)
        .await;
    refused(
        status,
        &body,
        "memory space_quota_exceeded, memory quota_exceeded",
    );
    assert_eq!(h.get(&format!("/v3/apps/{app}")).await["state"], "STOPPED");
    assert_eq!(h.desires().len(), desires);
}

#[tokio::test]
async fn null_limits_are_unlimited() {
    let h = Harness::new().await;
    let (_, web) = started_app(&h).await;
    let (status, body) = h
        .call(
            "POST",
            "/v3/organization_quotas",
            Some(json!({"name": "open", "apps": {"total_memory_in_mb": null, "total_instances": null},
                        "relationships": {"organizations": {"data": [{"guid": org_guid(&h).await}]}}})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, body) = scale(&h, &web, json!({"instances": 500, "memory_in_mb": 4096})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

#[tokio::test]
async fn routes_past_the_quota_are_refused() {
    let h = Harness::new().await;
    let space = h.space_guid().await;
    let domain = h.get("/v3/domains").await["resources"][0]["guid"]
        .as_str()
        .expect("domain")
        .to_string();
    let route = |host: &str| {
        json!({"host": host, "relationships": {"space": {"data": {"guid": space}},
               "domain": {"data": {"guid": domain}}}})
    };
    let (status, body) = h.call("POST", "/v3/routes", Some(route("one"))).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    space_quota(&h, "one-route", json!({"routes": {"total_routes": 1}})).await;
    let (status, body) = h.call("POST", "/v3/routes", Some(route("two"))).await;
    refused(status, &body, "Routes quota exceeded for space 'dev'.");
    org_quota(&h, "no-routes", json!({"routes": {"total_routes": 1}})).await;
    let (status, _) = h
        .call(
            "PATCH",
            &format!(
                "/v3/space_quotas/{}",
                h.get("/v3/space_quotas").await["resources"][0]["guid"]
                    .as_str()
                    .expect("guid")
            ),
            Some(json!({"routes": {"total_routes": null}})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = h.call("POST", "/v3/routes", Some(route("two"))).await;
    refused(
        status,
        &body,
        "Routes quota exceeded for organization 'main'.",
    );
    assert_eq!(h.get("/v3/routes").await["pagination"]["total_results"], 1);
}

#[tokio::test]
async fn tasks_past_the_quota_are_refused_and_not_run() {
    let h = Harness::new().await;
    let (app, _) = started_app(&h).await;
    org_quota(&h, "tasks", json!({"apps": {"total_memory_in_mb": 300}})).await;
    let runs = h.task_runs().len();
    let (status, body) = h
        .call(
            "POST",
            &format!("/v3/apps/{app}/tasks"),
            Some(json!({"command": "echo hi", "memory_in_mb": 128})),
        )
        .await;
    refused(
        status,
        &body,
        "memory_in_mb exceeds organization memory quota",
    );
    assert_eq!(h.task_runs().len(), runs);
    assert_eq!(
        h.get(&format!("/v3/apps/{app}/tasks")).await["pagination"]["total_results"],
        0
    );
    let (status, body) = h
        .call(
            "POST",
            &format!("/v3/apps/{app}/tasks"),
            Some(json!({"command": "echo hi", "memory_in_mb": 32})),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");

    space_quota(&h, "one-task", json!({"apps": {"per_app_tasks": 1}})).await;
    let (status, body) = h
        .call(
            "POST",
            &format!("/v3/apps/{app}/tasks"),
            Some(json!({"command": "echo again", "memory_in_mb": 8})),
        )
        .await;
    refused(status, &body, "app_task_limit quota exceeded");
}

#[tokio::test]
async fn org_managers_write_space_quotas_of_their_organization() {
    let h = Harness::new().await;
    let org = org_guid(&h).await;
    let space = h.space_guid().await;
    for (who, kind, relation, guid) in [
        ("boss", "organization_manager", "organization", org.as_str()),
        ("dev", "organization_user", "organization", org.as_str()),
        ("dev", "space_developer", "space", space.as_str()),
    ] {
        let (status, body) = h
            .call(
                "POST",
                "/v3/roles",
                Some(json!({"type": kind, "relationships": {
                    "user": {"data": {"username": who, "origin": "uaa"}},
                    relation: {"data": {"guid": guid}}}})),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }
    let body = json!({"name": "q", "apps": {"total_instances": 10},
                      "relationships": {"organization": {"data": {"guid": org}}}});
    let (status, _) = h
        .call_as(
            Some(&user("dev")),
            "POST",
            "/v3/space_quotas",
            Some(body.clone()),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, q) = h
        .call_as(Some(&user("boss")), "POST", "/v3/space_quotas", Some(body))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{q}");
    let guid = q["guid"].as_str().expect("guid");
    assert_eq!(q["relationships"]["organization"]["data"]["guid"], org);
    let (status, body) = h
        .call_as(
            Some(&user("boss")),
            "POST",
            &format!("/v3/space_quotas/{guid}/relationships/spaces"),
            Some(json!({"data": [{"guid": space}]})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let shown = h.get(&format!("/v3/spaces/{space}")).await;
    assert_eq!(shown["relationships"]["quota"]["data"]["guid"], guid);
    // The developer sees the quota of its space but cannot change it.
    let (status, _) = h
        .call_as(
            Some(&user("dev")),
            "GET",
            &format!("/v3/space_quotas/{guid}"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = h
        .call_as(
            Some(&user("dev")),
            "DELETE",
            &format!("/v3/space_quotas/{guid}/relationships/spaces/{space}"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = h
        .call_as(
            Some(&user("boss")),
            "DELETE",
            &format!("/v3/space_quotas/{guid}/relationships/spaces/{space}"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let shown = h.get(&format!("/v3/spaces/{space}")).await;
    assert_eq!(shown["relationships"]["quota"]["data"], Value::Null);
}

#[tokio::test]
async fn log_rate_limits_are_enforced() {
    let h = Harness::new().await;
    let (_, web) = started_app(&h).await;
    let space = h.space_guid().await;
    let org = org_guid(&h).await;
    let (status, q) = h
        .call(
            "POST",
            "/v3/space_quotas",
            Some(
                json!({"name": "logs", "apps": {"log_rate_limit_in_bytes_per_second": 1000},
                        "relationships": {"organization": {"data": {"guid": org}}}}),
            ),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{q}");
    let guid = q["guid"].as_str().expect("guid");
    let apply = format!("/v3/space_quotas/{guid}/relationships/spaces");
    // The running app logs without a limit: CF refuses the quota.
    let (status, body) = h
        .call("POST", &apply, Some(json!({"data": [{"guid": space}]})))
        .await;
    refused(
        status,
        &body,
        "Current usage exceeds new quota values. The space(s) being assigned this quota contain apps running with an unlimited log rate limit.",
    );
    let (status, body) = scale(&h, &web, json!({"log_rate_limit_in_bytes_per_second": 400})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = h
        .call("POST", &apply, Some(json!({"data": [{"guid": space}]})))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = scale(&h, &web, json!({"instances": 3})).await;
    refused(status, &body, "log_rate_limit exceeds space log rate quota");
    let (status, body) = scale(&h, &web, json!({"log_rate_limit_in_bytes_per_second": -1})).await;
    refused(
        status,
        &body,
        "log_rate_limit cannot be unlimited in space 'dev'.",
    );
    let process = h.get(&format!("/v3/processes/{web}")).await;
    assert_eq!(process["instances"], 1);
    assert_eq!(process["log_rate_limit_in_bytes_per_second"], 400);
}

#[tokio::test]
async fn staging_needs_room_for_its_memory() {
    let h = Harness::new().await;
    let (app, _) = started_app(&h).await;
    org_quota(&h, "no-room", json!({"apps": {"total_memory_in_mb": 1024}})).await;
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
    let stagings = h
        .calls()
        .iter()
        .filter(|c| matches!(c, Call::Stage(_)))
        .count();
    let (status, body) = h
        .call(
            "POST",
            "/v3/builds",
            Some(json!({"package": {"guid": package}})),
        )
        .await;
    refused(
        status,
        &body,
        "organization's memory limit exceeded: staging requires 1024M memory",
    );
    let (status, body) = h
        .call(
            "POST",
            "/v3/builds",
            Some(json!({"package": {"guid": package}, "staging_memory_in_mb": 512})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    h.wait_for(
        &format!("/v3/builds/{}", body["guid"].as_str().expect("guid")),
        "state",
        &["STAGED"],
    )
    .await;
    assert_eq!(
        h.calls()
            .iter()
            .filter(|c| matches!(c, Call::Stage(_)))
            .count(),
        stagings + 1,
        "only the build within the quota staged"
    );
}
