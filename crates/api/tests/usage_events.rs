//! App usage events as billing systems read them: one per start, stop and
//! change of instances or memory, in order, read after the last one seen
//! with `after_guid`; visible only to platform-wide readers.

mod common;

use axum::http::StatusCode;
use common::*;
use serde_json::{json, Value};

fn states(list: &Value) -> Vec<(String, String, u64, u64)> {
    list["resources"]
        .as_array()
        .expect("resources")
        .iter()
        .map(|e| {
            (
                e["state"]["current"].as_str().expect("state").to_string(),
                e["state"]["previous"]
                    .as_str()
                    .expect("previous")
                    .to_string(),
                e["instance_count"]["current"].as_u64().expect("count"),
                e["instance_count"]["previous"]
                    .as_u64()
                    .expect("previous count"),
            )
        })
        .collect()
}

#[tokio::test]
async fn starts_scales_and_stops_are_recorded_in_order() {
    let h = Harness::new().await;
    let space = h.space_guid().await;
    let (status, job) = h
        .apply_manifest(
            &space,
            "applications:\n- name: metered\n  memory: 128M\n  buildpacks: [staticfile_buildpack]\n",
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{job}");
    let apps = h
        .get(&format!("/v3/apps?names=metered&space_guids={space}"))
        .await;
    let app = apps["resources"][0]["guid"]
        .as_str()
        .expect("guid")
        .to_string();
    let droplet = h.stage_droplet(&app, zip_of(&[("index.html", b"x")])).await;
    let (status, _) = h
        .call(
            "PATCH",
            &format!("/v3/apps/{app}/relationships/current_droplet"),
            Some(json!({"data": {"guid": droplet}})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        h.get("/v3/app_usage_events").await["pagination"]["total_results"],
        0
    );

    let (status, _) = h
        .call("POST", &format!("/v3/apps/{app}/actions/start"), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    let web = h.get(&format!("/v3/apps/{app}/processes/web")).await;
    let web = web["guid"].as_str().expect("process guid").to_string();
    let (status, body) = h
        .call(
            "POST",
            &format!("/v3/processes/{web}/actions/scale"),
            Some(json!({"instances": 3})),
        )
        .await;
    assert!(status.is_success(), "{status}: {body}");
    let (status, _) = h
        .call("POST", &format!("/v3/apps/{app}/actions/stop"), None)
        .await;
    assert_eq!(status, StatusCode::OK);

    let all = h.get("/v3/app_usage_events").await;
    assert_eq!(
        states(&all),
        vec![
            ("STARTED".into(), "STOPPED".into(), 1, 0),
            ("STARTED".into(), "STARTED".into(), 3, 1),
            ("STOPPED".into(), "STARTED".into(), 3, 3),
        ],
        "{all}"
    );
    let first = &all["resources"][0];
    assert_eq!(first["app"]["name"], "metered");
    assert_eq!(first["process"]["type"], "web");
    assert_eq!(first["space"]["guid"], space.as_str());
    assert_eq!(first["memory_in_mb_per_instance"]["current"], 128);

    // A consumer that has seen the first event reads the rest.
    let after = first["guid"].as_str().expect("guid");
    let rest = h
        .get(&format!("/v3/app_usage_events?after_guid={after}"))
        .await;
    assert_eq!(states(&rest).len(), 2);
    assert_eq!(rest["resources"][0]["guid"], all["resources"][1]["guid"]);
    let one = h.get(&format!("/v3/app_usage_events/{after}")).await;
    assert_eq!(one["guid"], after);
    let (status, body) = h
        .call("GET", "/v3/app_usage_events?after_guid=no-such-event", None)
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (status, _) = h
        .call("GET", "/v3/app_usage_events/no-such-event", None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // Only readers of the whole platform see them.
    let (status, _) = h
        .call_as(Some(USER), "GET", "/v3/app_usage_events", None)
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = h
        .call_as(Some(ADMIN_READ_ONLY), "GET", "/v3/app_usage_events", None)
        .await;
    assert_eq!(status, StatusCode::OK);

    // Purge and reseed: the app is stopped, so nothing is reseeded.
    let (status, _) = h
        .call_as(
            Some(ADMIN_READ_ONLY),
            "POST",
            "/v3/app_usage_events/actions/destructively_purge_all_and_reseed",
            None,
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = h
        .call("POST", &format!("/v3/apps/{app}/actions/start"), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = h
        .call(
            "POST",
            "/v3/app_usage_events/actions/destructively_purge_all_and_reseed",
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let reseeded = h.get("/v3/app_usage_events").await;
    assert_eq!(
        states(&reseeded),
        vec![("STARTED".into(), "STOPPED".into(), 3, 0)],
        "{reseeded}"
    );
}
