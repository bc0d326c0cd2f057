//! Application security groups as `cf security-groups`, `cf create-security-group`,
//! `cf bind-security-group` and the runtime see them: CRUD with CF's rule
//! validation, visibility and permissions, binding to spaces, and the egress
//! rules handed to the runtime for processes, tasks and stagings (and pushed
//! to running processes when groups change).

mod common;

use std::net::Ipv4Addr;

use axum::http::StatusCode;
use common::*;
use ingot_api::{EgressRule, IpRange, PortRange};
use serde_json::{json, Value};

fn user(name: &str) -> String {
    format!("bearer as:{name}")
}

fn names(body: &Value) -> Vec<String> {
    body["resources"]
        .as_array()
        .expect("resources")
        .iter()
        .map(|r| r["name"].as_str().expect("name").to_string())
        .collect()
}

async fn group_count(h: &Harness) -> u64 {
    h.get("/v3/security_groups").await["pagination"]["total_results"]
        .as_u64()
        .expect("total")
}

/// Creates a group as admin; returns its JSON.
async fn create(h: &Harness, body: Value) -> Value {
    let (status, group) = h.call("POST", "/v3/security_groups", Some(body)).await;
    assert_eq!(status, StatusCode::CREATED, "{group}");
    group
}

/// The rule `tcp` to one address and port, as the runtime gets it.
fn tcp_to(ip: [u8; 4], port: u16) -> EgressRule {
    let ip = Ipv4Addr::from(ip);
    EgressRule {
        protocol: "tcp".into(),
        destinations: vec![IpRange { start: ip, end: ip }],
        ports: vec![PortRange {
            start: port,
            end: port,
        }],
        icmp_type: None,
        icmp_code: None,
        log: false,
    }
}

/// A started app `web` in space `dev` with a staged droplet; returns the
/// app's and its web process's guids.
async fn started_app(h: &Harness) -> (String, String) {
    let space = h.space_guid().await;
    let (status, job) = h
        .apply_manifest(&space, "applications:\n- name: web\n  memory: 128M\n")
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{job}");
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

#[tokio::test]
async fn first_boot_has_cf_default_groups_for_running_and_staging() {
    let h = Harness::new().await;
    let list = h.get("/v3/security_groups").await;
    let mut found = names(&list);
    found.sort();
    assert_eq!(found, vec!["dns", "public_networks"]);
    for g in list["resources"].as_array().expect("groups") {
        assert_eq!(
            g["globally_enabled"],
            json!({"running": true, "staging": true})
        );
    }
    let dns = &list["resources"]
        .as_array()
        .expect("groups")
        .iter()
        .find(|g| g["name"] == "dns")
        .expect("dns")["rules"];
    assert_eq!(
        dns,
        &json!([
            {"protocol": "tcp", "destination": "0.0.0.0/0", "ports": "53"},
            {"protocol": "udp", "destination": "0.0.0.0/0", "ports": "53"},
        ])
    );
    let space = h.space_guid().await;
    for kind in ["running", "staging"] {
        let body = h
            .get(&format!("/v3/spaces/{space}/{kind}_security_groups"))
            .await;
        assert_eq!(body["pagination"]["total_results"], 2, "{kind}: {body}");
    }
    // A second bootstrap (a platform restart) adds nothing.
    h.api.bootstrap("admin-guid", "admin").await.expect("again");
    assert_eq!(group_count(&h).await, 2);
}

#[tokio::test]
async fn admins_create_show_update_and_delete_groups() {
    let h = Harness::new().await;
    let space = h.space_guid().await;
    let group = create(
        &h,
        json!({
            "name": "db",
            "rules": [
                {"protocol": "tcp", "destination": "10.10.10.0/24", "ports": "443,80,8080"},
                {"protocol": "icmp", "destination": "10.10.10.0/24", "type": 8, "code": 0,
                 "description": "ping"},
                {"protocol": "udp", "destination": "10.0.0.1-10.0.0.9,192.168.0.7", "ports": "1000-2000", "log": true},
            ],
            "relationships": {"running_spaces": {"data": [{"guid": space}]}},
        }),
    )
    .await;
    let guid = group["guid"].as_str().expect("guid").to_string();
    assert_eq!(group["name"], "db");
    assert_eq!(
        group["globally_enabled"],
        json!({"running": false, "staging": false})
    );
    assert_eq!(group["rules"][0]["ports"], "443,80,8080");
    assert_eq!(group["rules"][1]["description"], "ping");
    assert_eq!(
        group["relationships"]["running_spaces"]["data"],
        json!([{"guid": space}])
    );
    assert_eq!(group["relationships"]["staging_spaces"]["data"], json!([]));
    assert_eq!(
        group["links"]["self"]["href"],
        format!("{EXTERNAL}/v3/security_groups/{guid}")
    );
    assert_eq!(h.get(&format!("/v3/security_groups/{guid}")).await, group);
    assert_eq!(
        names(&h.get("/v3/security_groups?names=db").await),
        vec!["db"]
    );
    assert_eq!(
        names(
            &h.get(&format!("/v3/security_groups?running_space_guids={space}"))
                .await
        ),
        vec!["db"]
    );

    // `globally_enabled` is merged; `rules` replaced.
    let (status, updated) = h
        .call(
            "PATCH",
            &format!("/v3/security_groups/{guid}"),
            Some(
                json!({"name": "database", "globally_enabled": {"staging": true},
                        "rules": [{"protocol": "all", "destination": "10.0.0.0/8"}]}),
            ),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{updated}");
    assert_eq!(updated["name"], "database");
    assert_eq!(
        updated["globally_enabled"],
        json!({"running": false, "staging": true})
    );
    assert_eq!(
        updated["rules"],
        json!([{"protocol": "all", "destination": "10.0.0.0/8"}])
    );

    let (status, _) = h
        .call("DELETE", &format!("/v3/security_groups/{guid}"), None)
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let (status, body) = h
        .call("GET", &format!("/v3/security_groups/{guid}"), None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["errors"][0]["detail"], "Security group not found");
}

#[tokio::test]
async fn invalid_rules_and_names_are_refused_and_nothing_is_stored() {
    let h = Harness::new().await;
    let before = group_count(&h).await;
    let cases = [
        (
            json!({"protocol": "tcp", "destination": "10.0.0.0/33", "ports": "80"}),
            "Rules[0]: destination must contain valid CIDR(s), IP address(es), or IP address range(s)",
        ),
        (
            json!({"protocol": "tcp", "destination": "10.0.0.1", "ports": "70000"}),
            "Rules[0]: ports must be a valid single port, comma separated list of ports, or range or ports, formatted as a string",
        ),
        (
            json!({"protocol": "sctp", "destination": "10.0.0.1"}),
            "Rules[0]: protocol must be 'tcp', 'udp', 'icmp', 'icmpv6' or 'all'",
        ),
        (
            json!({"protocol": "all", "destination": "10.0.0.9-10.0.0.1"}),
            "Rules[0]: beginning of IP address range is numerically greater than the end of its range (range endpoints are inverted)",
        ),
    ];
    for (rule, detail) in cases {
        let (status, body) = h
            .call(
                "POST",
                "/v3/security_groups",
                Some(json!({"name": "bad", "rules": [rule]})),
            )
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{rule}: {body}");
        assert_eq!(body["errors"][0]["code"], 10008);
        assert_eq!(body["errors"][0]["title"], "CF-UnprocessableEntity");
        assert_eq!(body["errors"][0]["detail"], detail, "{rule}");
    }
    let (status, body) = h
        .call("POST", "/v3/security_groups", Some(json!({"rules": []})))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body["errors"][0]["detail"], "Name can't be blank");
    let (status, body) = h
        .call("POST", "/v3/security_groups", Some(json!({"name": "dns"})))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        body["errors"][0]["detail"],
        "Security group with name 'dns' already exists."
    );
    assert_eq!(group_count(&h).await, before);
}

#[tokio::test]
async fn only_admins_write_groups_and_users_see_what_cf_shows_them() {
    let h = Harness::new().await;
    let space = h.space_guid().await;
    let org = h.get("/v3/organizations?names=main").await["resources"][0]["guid"]
        .as_str()
        .expect("org")
        .to_string();
    for (who, kind, target) in [
        ("dev", "space_developer", ("space", space.as_str())),
        ("mgr", "space_manager", ("space", space.as_str())),
    ] {
        for (k, t) in [
            ("organization_user", ("organization", org.as_str())),
            (kind, target),
        ] {
            let (status, body) = h
                .call(
                    "POST",
                    "/v3/roles",
                    Some(json!({"type": k, "relationships": {
                        "user": {"data": {"username": who, "origin": "uaa"}}, t.0: {"data": {"guid": t.1}}}})),
                )
                .await;
            assert_eq!(status, StatusCode::CREATED, "{body}");
        }
    }
    let before = group_count(&h).await;
    let (status, _) = h
        .call_as(
            Some(&user("dev")),
            "POST",
            "/v3/security_groups",
            Some(json!({"name": "mine", "globally_enabled": {"running": true}})),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(group_count(&h).await, before);

    // A group bound nowhere is invisible to a space developer…
    let hidden = create(&h, json!({"name": "hidden"})).await;
    let hidden = hidden["guid"].as_str().expect("guid");
    let (status, _) = h
        .call_as(
            Some(&user("dev")),
            "GET",
            &format!("/v3/security_groups/{hidden}"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (_, list) = h
        .call_as(Some(&user("dev")), "GET", "/v3/security_groups", None)
        .await;
    assert!(!names(&list).contains(&"hidden".to_string()), "{list}");
    // …and a developer cannot bind a visible one; the space manager can.
    let dns = h.get("/v3/security_groups?names=dns").await["resources"][0]["guid"]
        .as_str()
        .expect("dns")
        .to_string();
    let bind = json!({"data": [{"guid": space}]});
    let path = format!("/v3/security_groups/{dns}/relationships/running_spaces");
    let (status, _) = h
        .call_as(Some(&user("dev")), "POST", &path, Some(bind.clone()))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, body) = h
        .call_as(Some(&user("mgr")), "POST", &path, Some(bind))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["data"], json!([{"guid": space}]));
    // Updates and deletes stay the admin's.
    let (status, _) = h
        .call_as(
            Some(&user("mgr")),
            "PATCH",
            &format!("/v3/security_groups/{dns}"),
            Some(json!({"name": "x"})),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = h
        .call_as(
            Some(&user("mgr")),
            "DELETE",
            &format!("/v3/security_groups/{dns}"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(
        h.get(&format!("/v3/security_groups/{dns}")).await["name"],
        "dns"
    );
}

#[tokio::test]
async fn binding_and_unbinding_spaces() {
    let h = Harness::new().await;
    let space = h.space_guid().await;
    let group = create(
        &h,
        json!({"name": "api", "rules": [
        {"protocol": "tcp", "destination": "10.1.2.3", "ports": "8443"}]}),
    )
    .await;
    let guid = group["guid"].as_str().expect("guid");
    let running = format!("/v3/spaces/{space}/running_security_groups");
    assert!(!names(&h.get(&running).await).contains(&"api".to_string()));
    let (status, body) = h
        .call(
            "POST",
            &format!("/v3/security_groups/{guid}/relationships/running_spaces"),
            Some(json!({"data": [{"guid": space}]})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body["links"]["self"]["href"],
        format!("{EXTERNAL}/v3/security_groups/{guid}/relationships/running_spaces")
    );
    assert!(names(&h.get(&running).await).contains(&"api".to_string()));
    let staging = format!("/v3/spaces/{space}/staging_security_groups");
    assert!(!names(&h.get(&staging).await).contains(&"api".to_string()));

    let (status, body) = h
        .call(
            "POST",
            &format!("/v3/security_groups/{guid}/relationships/running_spaces"),
            Some(json!({"data": [{"guid": "no-such-space"}]})),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        body["errors"][0]["detail"],
        "Spaces with guids [\"no-such-space\"] do not exist, or you do not have access to them."
    );

    let unbind = format!("/v3/security_groups/{guid}/relationships/running_spaces/{space}");
    let (status, _) = h.call("DELETE", &unbind, None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert!(!names(&h.get(&running).await).contains(&"api".to_string()));
    let (status, body) = h.call("DELETE", &unbind, None).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        body["errors"][0]["detail"],
        format!("Unable to unbind security group from space with guid '{space}'. Ensure the space is bound to this security group.")
    );
}

#[tokio::test]
async fn effective_rules_reach_processes_tasks_and_stagings() {
    let h = Harness::new().await;
    let space = h.space_guid().await;
    create(
        &h,
        json!({"name": "build-cache", "rules": [
            {"protocol": "tcp", "destination": "10.9.9.9", "ports": "3128"}],
            "relationships": {"staging_spaces": {"data": [{"guid": space}]}}}),
    )
    .await;
    let (app, web) = started_app(&h).await;

    // Staging gets the staging rules: the defaults and the bound group.
    let stage = h.first_stage();
    assert!(
        stage.egress.contains(&tcp_to([10, 9, 9, 9], 3128)),
        "{:?}",
        stage.egress
    );
    let dns = EgressRule {
        protocol: "udp".into(),
        destinations: vec![IpRange {
            start: Ipv4Addr::new(0, 0, 0, 0),
            end: Ipv4Addr::new(255, 255, 255, 255),
        }],
        ports: vec![PortRange { start: 53, end: 53 }],
        icmp_type: None,
        icmp_code: None,
        log: false,
    };
    assert!(stage.egress.contains(&dns));

    // The running process gets the running rules only.
    let desired = h
        .desires()
        .into_iter()
        .rfind(|d| d.process_guid == web)
        .expect("desired");
    assert!(desired.egress.contains(&dns), "{:?}", desired.egress);
    assert!(!desired.egress.contains(&tcp_to([10, 9, 9, 9], 3128)));
    // The default public networks leave out 10/8.
    assert!(!desired
        .egress
        .iter()
        .filter(|r| r.protocol == "all")
        .flat_map(|r| &r.destinations)
        .any(|d| d.start <= Ipv4Addr::new(10, 1, 1, 1) && Ipv4Addr::new(10, 1, 1, 1) <= d.end));

    // Binding a running group reaches the running process without a restart.
    let desires_before = h.desires().len();
    let group = create(
        &h,
        json!({"name": "db", "rules": [
        {"protocol": "tcp", "destination": "10.1.1.1", "ports": "5432"}]}),
    )
    .await;
    let guid = group["guid"].as_str().expect("guid");
    let (status, body) = h
        .call(
            "POST",
            &format!("/v3/security_groups/{guid}/relationships/running_spaces"),
            Some(json!({"data": [{"guid": space}]})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let pushed: Vec<(String, Vec<EgressRule>)> = h
        .calls()
        .into_iter()
        .filter_map(|c| match c {
            Call::UpdateEgress(p, rules) => Some((p, rules)),
            _ => None,
        })
        .collect();
    let (process, rules) = pushed.last().expect("update_egress");
    assert_eq!(process, &web);
    assert!(rules.contains(&tcp_to([10, 1, 1, 1], 5432)));
    assert!(rules.contains(&dns));
    assert_eq!(
        h.desires().len(),
        desires_before,
        "no restart, no re-desire"
    );

    // The stored desired state has the new rules: a platform restart
    // re-desires with them.
    h.api.resume().await.expect("resume");
    let replayed = h
        .desires()
        .into_iter()
        .rfind(|d| d.process_guid == web)
        .expect("replayed");
    assert!(replayed.egress.contains(&tcp_to([10, 1, 1, 1], 5432)));

    // Tasks run with the running rules.
    let (status, body) = h
        .call(
            "POST",
            &format!("/v3/apps/{app}/tasks"),
            Some(json!({"command": "echo hi"})),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let task = h.task_runs().pop().expect("task");
    assert_eq!(task.egress, rules.clone());

    // Unbinding takes the rule away again, in place.
    let (status, _) = h
        .call(
            "DELETE",
            &format!("/v3/security_groups/{guid}/relationships/running_spaces/{space}"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let last = h
        .calls()
        .into_iter()
        .filter_map(|c| match c {
            Call::UpdateEgress(p, rules) => Some((p, rules)),
            _ => None,
        })
        .next_back()
        .expect("update_egress");
    assert_eq!(last.0, web);
    assert!(!last.1.contains(&tcp_to([10, 1, 1, 1], 5432)));
}

#[tokio::test]
async fn turning_off_a_global_group_reaches_running_processes() {
    let h = Harness::new().await;
    let (_, web) = started_app(&h).await;
    let public = h.get("/v3/security_groups?names=public_networks").await["resources"][0]["guid"]
        .as_str()
        .expect("public_networks")
        .to_string();
    let (status, body) = h
        .call(
            "PATCH",
            &format!("/v3/security_groups/{public}"),
            Some(json!({"globally_enabled": {"running": false}})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (process, rules) = h
        .calls()
        .into_iter()
        .filter_map(|c| match c {
            Call::UpdateEgress(p, rules) => Some((p, rules)),
            _ => None,
        })
        .next_back()
        .expect("update_egress");
    assert_eq!(process, web);
    // Only DNS is left.
    assert_eq!(rules.len(), 2, "{rules:?}");
    assert!(rules
        .iter()
        .all(|r| r.ports == vec![PortRange { start: 53, end: 53 }]));
}
