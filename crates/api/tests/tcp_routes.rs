//! TCP routes as `cf create-route DOMAIN --port N` (or `--random-port`) and
//! `cf map-route` drive them: the shared TCP domain, ports from the router
//! group's reservable range, Cloud Controller's errors, the reserved ports
//! quota, the `tcp:<port>` URIs the runtime receives, and the routing API's
//! router groups.

mod common;

use axum::http::StatusCode;
use common::*;
use serde_json::{json, Value};

async fn tcp_domain(h: &Harness) -> Value {
    let found = h.get("/v3/domains?names=tcp.apps.localhost").await;
    found["resources"][0].clone()
}

async fn create(h: &Harness, body: Value) -> (StatusCode, Value) {
    let space = h.space_guid().await;
    let domain = tcp_domain(h).await["guid"].clone();
    let mut body = body;
    body["relationships"] = json!({
        "space": {"data": {"guid": space}},
        "domain": {"data": {"guid": domain}},
    });
    h.call("POST", "/v3/routes", Some(body)).await
}

/// Asserts CF's 422 with this detail.
fn refused(status: StatusCode, body: &Value, detail: &str) {
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["errors"][0]["detail"], detail, "{body}");
}

#[tokio::test]
async fn the_tcp_domain_belongs_to_the_default_tcp_router_group() {
    let h = Harness::new().await;
    h.api.bootstrap("admin-guid", "admin").await.expect("again");
    let all = h.get("/v3/domains").await;
    assert_eq!(all["pagination"]["total_results"], 2, "{all}");
    let http = h.get("/v3/domains?names=apps.localhost").await["resources"][0].clone();
    assert_eq!(http["supported_protocols"], json!(["http"]));
    assert_eq!(http["router_group"], Value::Null);
    let tcp = tcp_domain(&h).await;
    assert_eq!(tcp["supported_protocols"], json!(["tcp"]), "{tcp}");
    let group = tcp["router_group"]["guid"].as_str().expect("router group");

    let groups = h.get("/routing/v1/router_groups").await;
    assert_eq!(
        groups,
        json!([{"guid": group, "name": "default-tcp", "type": "tcp", "reservable_ports": "1024-1033"}])
    );
    let named = h.get("/routing/v1/router_groups?name=default-tcp").await;
    assert_eq!(named[0]["guid"], group);
    let (status, body) = h
        .call("GET", "/routing/v1/router_groups?name=other", None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");

    // The org's default domain stays the HTTP one.
    let org = h.get("/v3/organizations?names=main").await["resources"][0]["guid"].clone();
    let default = h
        .get(&format!(
            "/v3/organizations/{}/domains/default",
            org.as_str().expect("org")
        ))
        .await;
    assert_eq!(default["name"], "apps.localhost");
}

#[tokio::test]
async fn a_tcp_route_has_a_port_and_no_host() {
    let h = Harness::new().await;
    let (status, route) = create(&h, json!({"port": 1025})).await;
    assert_eq!(status, StatusCode::CREATED, "{route}");
    assert_eq!(route["protocol"], "tcp");
    assert_eq!(route["port"], 1025);
    assert_eq!(route["host"], "");
    assert_eq!(route["path"], "");
    assert_eq!(route["url"], "tcp.apps.localhost:1025");

    let listed = h.get("/v3/routes?ports=1025").await;
    assert_eq!(listed["pagination"]["total_results"], 1, "{listed}");
    assert_eq!(listed["resources"][0]["guid"], route["guid"]);
    let none = h.get("/v3/routes?ports=1026").await;
    assert_eq!(none["pagination"]["total_results"], 0, "{none}");

    let domain = tcp_domain(&h).await["guid"]
        .as_str()
        .expect("guid")
        .to_string();
    let reserved = h
        .get(&format!(
            "/v3/domains/{domain}/route_reservations?port=1025"
        ))
        .await;
    assert_eq!(reserved["matching_route"], true);
    let free = h
        .get(&format!(
            "/v3/domains/{domain}/route_reservations?port=1026"
        ))
        .await;
    assert_eq!(free["matching_route"], false);
}

#[tokio::test]
async fn a_route_without_a_port_gets_a_free_one_until_none_is_left() {
    let h = Harness::new().await;
    let mut ports = Vec::new();
    for _ in 1024..=1033 {
        let (status, route) = create(&h, json!({})).await;
        assert_eq!(status, StatusCode::CREATED, "{route}");
        ports.push(route["port"].as_u64().expect("port"));
    }
    ports.sort_unstable();
    assert_eq!(ports, (1024..=1033).collect::<Vec<u64>>());
    let (status, body) = create(&h, json!({})).await;
    refused(
        status,
        &body,
        "There are no more ports available for this domain.",
    );
}

#[tokio::test]
async fn ports_outside_the_range_taken_or_with_a_host_are_refused() {
    let h = Harness::new().await;
    let (status, body) = create(&h, json!({"port": 2000})).await;
    refused(
        status,
        &body,
        "Port '2000' is not available. Try a different port or use a different domain.",
    );
    let (status, body) = create(&h, json!({"port": 1030})).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, body) = create(&h, json!({"port": 1030})).await;
    refused(
        status,
        &body,
        "Route already exists with port '1030' for domain 'tcp.apps.localhost'.",
    );
    let (status, body) = create(&h, json!({"port": 1031, "host": "x"})).await;
    refused(status, &body, "Hosts are not supported for TCP routes.");
    let (status, body) = create(&h, json!({"port": 1031, "path": "/x"})).await;
    refused(status, &body, "Paths are not supported for TCP routes.");

    // An HTTP domain takes no port.
    let space = h.space_guid().await;
    let http = h.get("/v3/domains?names=apps.localhost").await["resources"][0]["guid"].clone();
    let (status, body) = h
        .call(
            "POST",
            "/v3/routes",
            Some(json!({"host": "web", "port": 1031, "relationships": {
                "space": {"data": {"guid": space}}, "domain": {"data": {"guid": http}}}})),
        )
        .await;
    refused(
        status,
        &body,
        "Routes with protocol 'http' do not support ports.",
    );

    // A narrower range applies to new routes.
    h.api.set_tcp_ports(ingot_api::PortRange {
        start: 1032,
        end: 1032,
    });
    let groups = h.get("/routing/v1/router_groups").await;
    assert_eq!(groups[0]["reservable_ports"], "1032-1032");
    let (status, body) = create(&h, json!({"port": 1024})).await;
    refused(
        status,
        &body,
        "Port '1024' is not available. Try a different port or use a different domain.",
    );
    let (status, body) = create(&h, json!({})).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["port"], 1032);
}

#[tokio::test]
async fn the_reserved_ports_quota_limits_tcp_routes() {
    let h = Harness::new().await;
    let org = h.get("/v3/organizations?names=main").await["resources"][0]["guid"].clone();
    let space = h.space_guid().await;
    let (status, quota) = h
        .call(
            "POST",
            "/v3/space_quotas",
            Some(json!({
                "name": "one-port",
                "routes": {"total_reserved_ports": 1},
                "relationships": {
                    "organization": {"data": {"guid": org}},
                    "spaces": {"data": [{"guid": space}]},
                },
            })),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{quota}");
    let (status, body) = create(&h, json!({"port": 1024})).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, body) = create(&h, json!({"port": 1025})).await;
    refused(
        status,
        &body,
        "Reserved route ports quota exceeded for space 'dev'.",
    );
    // HTTP routes do not reserve ports.
    let http = h.get("/v3/domains?names=apps.localhost").await["resources"][0]["guid"].clone();
    let (status, body) = h
        .call(
            "POST",
            "/v3/routes",
            Some(json!({"host": "web", "relationships": {
                "space": {"data": {"guid": space}}, "domain": {"data": {"guid": http}}}})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");

    let (status, body) = h
        .call(
            "POST",
            "/v3/organization_quotas",
            Some(json!({
                "name": "no-ports",
                "routes": {"total_reserved_ports": 1},
                "relationships": {"organizations": {"data": [{"guid": org}]}},
            })),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let quota_guid = quota["guid"].as_str().expect("guid");
    let (status, body) = h
        .call(
            "DELETE",
            &format!("/v3/space_quotas/{quota_guid}/relationships/spaces/{space}"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    let (status, body) = create(&h, json!({"port": 1025})).await;
    refused(
        status,
        &body,
        "Reserved route ports quota exceeded for organization 'main'.",
    );
}

#[tokio::test]
async fn a_mapped_tcp_route_reaches_the_runtime_as_tcp_port() {
    let h = Harness::new().await;
    let space = h.space_guid().await;
    let (status, job) = h
        .apply_manifest(&space, "applications:\n- name: echo\n  no-route: true\n")
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{job}");
    let app = h.get("/v3/apps?names=echo").await["resources"][0]["guid"]
        .as_str()
        .expect("app")
        .to_string();
    let droplet = h.stage_droplet(&app, zip_of(&[("run", b"x")])).await;
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

    let (status, route) = create(&h, json!({"port": 1029})).await;
    assert_eq!(status, StatusCode::CREATED, "{route}");
    let guid = route["guid"].as_str().expect("guid");
    let (status, dests) = h
        .call(
            "POST",
            &format!("/v3/routes/{guid}/destinations"),
            Some(json!({"destinations": [{"app": {"guid": app}}]})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{dests}");
    assert_eq!(dests["destinations"][0]["protocol"], "tcp");
    let last = h.desires().pop().expect("re-desired");
    assert_eq!(last.uris, vec!["tcp:1029".to_string()]);
    assert_eq!(ingot_api::tcp_route_port(&last.uris[0]), Some(1029));
    assert_eq!(ingot_api::tcp_route_port("www.apps.localhost"), None);

    let dguid = dests["destinations"][0]["guid"].as_str().expect("dest");
    let (status, body) = h
        .call(
            "DELETE",
            &format!("/v3/routes/{guid}/destinations/{dguid}"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    let last = h.desires().pop().expect("re-desired");
    assert!(last.uris.is_empty(), "{:?}", last.uris);
}
