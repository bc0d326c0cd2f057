//! The API's framework as a client sees it: the root links, the error
//! envelope and status codes, token errors, pagination, filters, order.

mod common;

use axum::http::StatusCode;
use common::*;
use serde_json::{json, Value};

#[tokio::test]
async fn root_links_need_no_token() {
    let h = Harness::new().await;
    let (status, root) = h.call_as(None, "GET", "/", None).await;
    assert_eq!(status, StatusCode::OK);
    let links = &root["links"];
    assert_eq!(
        links["cloud_controller_v3"]["href"],
        format!("{EXTERNAL}/v3")
    );
    assert!(links["cloud_controller_v3"]["meta"]["version"]
        .as_str()
        .expect("version")
        .starts_with("3."));
    assert_eq!(links["login"]["href"], format!("{EXTERNAL}/uaa"));
    assert_eq!(links["uaa"]["href"], format!("{EXTERNAL}/uaa"));
    assert_eq!(links["log_cache"]["href"], format!("{EXTERNAL}/log-cache"));
    assert_eq!(links["credhub"], Value::Null);

    let (status, v2) = h.call_as(None, "GET", "/v2/info", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(v2["token_endpoint"], format!("{EXTERNAL}/uaa"));
    assert_eq!(v2["authorization_endpoint"], format!("{EXTERNAL}/uaa"));
    assert_eq!(v2["min_cli_version"], Value::Null);

    let (status, info) = h.call_as(None, "GET", "/v3/info", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(info["name"], "ingot");
    let (status, v3) = h.call_as(None, "GET", "/v3", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(v3["links"]["apps"]["href"], format!("{EXTERNAL}/v3/apps"));
}

#[tokio::test]
async fn tokens_are_required_and_checked() {
    let h = Harness::new().await;
    let (status, body) = h.call_as(None, "GET", "/v3/apps", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        body,
        json!({"errors":[{"code":10002,"title":"CF-NotAuthenticated","detail":"Authentication error"}]})
    );
    for token in ["bearer garbage", EXPIRED] {
        let (status, body) = h.call_as(Some(token), "GET", "/v3/apps", None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{token}");
        assert_eq!(body["errors"][0]["code"], 1000);
        assert_eq!(body["errors"][0]["title"], "CF-InvalidAuthToken");
    }
    // A valid token without admin may read but not write.
    let (status, _) = h
        .call_as(Some(USER), "GET", "/v3/organizations", None)
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = h
        .call_as(
            Some(USER),
            "POST",
            "/v3/organizations",
            Some(json!({"name":"x"})),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(body["errors"][0]["code"], 10003);
    assert_eq!(body["errors"][0]["title"], "CF-NotAuthorized");
}

#[tokio::test]
async fn errors_use_the_cf_envelope() {
    let h = Harness::new().await;
    let (status, body) = h.call("GET", "/v3/apps/no-such-guid", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(
        body,
        json!({"errors":[{"code":10010,"title":"CF-ResourceNotFound","detail":"App not found"}]})
    );
    let (status, _, bytes) = h
        .raw(
            "POST",
            "/v3/apps",
            Some(ADMIN),
            "application/json",
            b"{not json".to_vec(),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let body: Value = serde_json::from_slice(&bytes).expect("json");
    assert_eq!(body["errors"][0]["code"], 1001);
    assert_eq!(body["errors"][0]["title"], "CF-MessageParseError");

    let (status, body) = h.call("GET", "/v3/nothing-here", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["errors"][0]["title"], "CF-NotFound");

    let (status, body) = h
        .call("POST", "/v3/organizations", Some(json!({"name": "main"})))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body["errors"][0]["code"], 10016);
    assert_eq!(
        body["errors"][0]["detail"],
        "Organization 'main' already exists."
    );
}

#[tokio::test]
async fn lists_page_filter_and_order() {
    let h = Harness::new().await;
    for name in ["bravo", "alpha", "charlie"] {
        let (status, org) = h
            .call("POST", "/v3/organizations", Some(json!({"name": name})))
            .await;
        assert_eq!(status, StatusCode::CREATED);
        assert_eq!(org["name"], name);
        assert!(org["links"]["self"]["href"]
            .as_str()
            .expect("href")
            .starts_with(EXTERNAL));
    }
    let page1 = h.get("/v3/organizations?order_by=name&per_page=2").await;
    assert_eq!(page1["pagination"]["total_results"], 4);
    assert_eq!(page1["pagination"]["total_pages"], 2);
    let names: Vec<&str> = page1["resources"]
        .as_array()
        .expect("resources")
        .iter()
        .map(|o| o["name"].as_str().expect("name"))
        .collect();
    assert_eq!(names, ["alpha", "bravo"]);
    assert_eq!(page1["pagination"]["previous"], Value::Null);
    let next = page1["pagination"]["next"]["href"].as_str().expect("next");
    assert!(
        next.starts_with(&format!("{EXTERNAL}/v3/organizations?page=2&per_page=2")),
        "{next}"
    );
    let page2 = h.get(next.strip_prefix(EXTERNAL).expect("absolute")).await;
    let names: Vec<&str> = page2["resources"]
        .as_array()
        .expect("resources")
        .iter()
        .map(|o| o["name"].as_str().expect("name"))
        .collect();
    assert_eq!(names, ["charlie", "main"]);
    assert_eq!(page2["pagination"]["next"], Value::Null);

    let desc = h.get("/v3/organizations?order_by=-name").await;
    assert_eq!(desc["resources"][0]["name"], "main");

    let some = h.get("/v3/organizations?names=alpha,charlie").await;
    assert_eq!(some["pagination"]["total_results"], 2);

    for bad in ["per_page=5001", "page=0", "order_by=color", "colour=blue"] {
        let (status, body) = h
            .call("GET", &format!("/v3/organizations?{bad}"), None)
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}");
        assert_eq!(body["errors"][0]["code"], 10005, "{bad}");
    }

    // Spaces by organization, with the organization included.
    let main = h.get("/v3/organizations?names=main").await;
    let org = main["resources"][0]["guid"].as_str().expect("guid");
    let spaces = h
        .get(&format!(
            "/v3/spaces?organization_guids={org}&include=organization"
        ))
        .await;
    assert_eq!(spaces["resources"][0]["name"], "dev");
    assert_eq!(spaces["included"]["organizations"][0]["guid"], org);
}

#[tokio::test]
async fn bootstrap_is_idempotent_and_complete() {
    let h = Harness::new().await;
    h.api.bootstrap("admin-guid", "admin").await.expect("again");
    let orgs = h.get("/v3/organizations").await;
    assert_eq!(orgs["pagination"]["total_results"], 1);
    let domains = h.get("/v3/domains").await;
    assert_eq!(domains["resources"][0]["name"], "apps.localhost");
    let stacks = h.get("/v3/stacks").await;
    assert_eq!(stacks["resources"][0]["name"], "ingot-default");
    assert_eq!(stacks["resources"][0]["default"], true);
    let bps = h.get("/v3/buildpacks").await;
    let names: Vec<&str> = bps["resources"]
        .as_array()
        .expect("resources")
        .iter()
        .map(|b| b["name"].as_str().expect("name"))
        .collect();
    assert_eq!(names, BUILTIN_BUILDPACKS);
    assert_eq!(bps["resources"][1]["position"], 2);
    // The admin's user record is served, not an empty list.
    let users = h.get("/v3/users").await;
    assert_eq!(users["pagination"]["total_results"], 1);
    assert_eq!(users["resources"][0]["guid"], "admin-guid");
    assert_eq!(users["resources"][0]["username"], "admin");
    let admin = h.get("/v3/users/admin-guid").await;
    assert_eq!(admin["presentation_name"], "admin");
    let none = h.get("/v3/users?usernames=nobody").await;
    assert_eq!(none["pagination"]["total_results"], 0);
}

#[tokio::test]
async fn metrics_count_requests() {
    let h = Harness::new().await;
    let mut registry = prometheus_client::registry::Registry::default();
    h.api.register_metrics(&mut registry);
    h.call("GET", "/v3/organizations", None).await;
    h.call_as(None, "GET", "/v3/organizations", None).await;
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).expect("encode");
    assert!(
        text.contains("ingot_api_requests_total{method=\"GET\",status=\"200\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("ingot_api_requests_total{method=\"GET\",status=\"401\"} 1"),
        "{text}"
    );
}

#[tokio::test]
async fn resources_ingot_lacks_list_empty() {
    let h = Harness::new().await;
    for path in [
        "/v3/service_instances?space_guids=x&names=y",
        "/v3/service_credential_bindings?app_guids=x",
        "/v3/deployments?app_guids=x&status_values=ACTIVE",
        "/v3/apps/any/sidecars",
    ] {
        let body = h.get(path).await;
        assert_eq!(body["pagination"]["total_results"], 0, "{path}");
        assert_eq!(body["resources"], json!([]), "{path}");
    }
}
