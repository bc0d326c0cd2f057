//! `/v3/feature_flags`: CF's flags with their defaults, read by anyone who
//! may read, set by admins.

mod common;

use axum::http::StatusCode;
use common::*;
use serde_json::{json, Value};

fn names(list: &Value) -> Vec<String> {
    list["resources"]
        .as_array()
        .expect("resources")
        .iter()
        .map(|r| r["name"].as_str().expect("name").to_string())
        .collect()
}

#[tokio::test]
async fn flags_list_with_cf_defaults() {
    let h = Harness::new().await;
    let list = h.get("/v3/feature_flags").await;
    assert_eq!(list["pagination"]["total_results"], 18);
    let all = names(&list);
    let mut sorted = all.clone();
    sorted.sort();
    assert_eq!(all, sorted, "ordered by name");
    let find = |name: &str| -> Value {
        list["resources"]
            .as_array()
            .expect("resources")
            .iter()
            .find(|r| r["name"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("{name} listed"))
    };
    for (name, enabled) in [
        ("user_org_creation", false),
        ("app_scaling", true),
        ("app_bits_upload", true),
        ("diego_docker", false),
        ("route_creation", true),
        ("service_instance_sharing", false),
        ("task_creation", true),
    ] {
        assert_eq!(
            find(name),
            json!({
                "name": name, "enabled": enabled, "updated_at": null,
                "custom_error_message": null,
                "links": {"self": {"href": format!("{EXTERNAL}/v3/feature_flags/{name}")}},
            })
        );
    }

    let page = h.get("/v3/feature_flags?per_page=5&page=4").await;
    assert_eq!(names(&page), all[15..].to_vec());
    assert_eq!(page["pagination"]["total_pages"], 4);
    let desc = h.get("/v3/feature_flags?order_by=-name").await;
    let mut reversed = all.clone();
    reversed.reverse();
    assert_eq!(names(&desc), reversed);
    let (status, body) = h.call("GET", "/v3/feature_flags?bogus=1", None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");

    let (_, v3) = h.call_as(None, "GET", "/v3", None).await;
    assert_eq!(
        v3["links"]["feature_flags"]["href"],
        format!("{EXTERNAL}/v3/feature_flags")
    );
}

#[tokio::test]
async fn admins_set_a_flag_and_everyone_sees_it() {
    let h = Harness::new().await;
    let (status, flag) = h
        .call(
            "PATCH",
            "/v3/feature_flags/app_scaling",
            Some(json!({"enabled": false, "custom_error_message": "Scaling is off today"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{flag}");
    assert_eq!(flag["name"], "app_scaling");
    assert_eq!(flag["enabled"], false);
    assert_eq!(flag["custom_error_message"], "Scaling is off today");
    assert!(flag["updated_at"].is_string(), "{flag}");

    let (status, seen) = h
        .call_as(Some(USER), "GET", "/v3/feature_flags/app_scaling", None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(seen, flag);
    let list = h.get("/v3/feature_flags").await;
    let listed = list["resources"]
        .as_array()
        .expect("resources")
        .iter()
        .find(|r| r["name"] == "app_scaling")
        .cloned()
        .expect("listed");
    assert_eq!(listed, flag);

    // A later patch changes only what it names; null clears the message.
    let (status, flag) = h
        .call(
            "PATCH",
            "/v3/feature_flags/app_scaling",
            Some(json!({"custom_error_message": null})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{flag}");
    assert_eq!(flag["enabled"], false);
    assert_eq!(flag["custom_error_message"], Value::Null);
    let (status, flag) = h
        .call(
            "PATCH",
            "/v3/feature_flags/user_org_creation",
            Some(json!({"enabled": true})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{flag}");
    assert_eq!(
        h.get("/v3/feature_flags/user_org_creation").await["enabled"],
        true
    );
}

#[tokio::test]
async fn unknown_flags_and_bad_bodies_are_refused() {
    let h = Harness::new().await;
    for (method, body) in [("GET", None), ("PATCH", Some(json!({"enabled": true})))] {
        let (status, err) = h.call(method, "/v3/feature_flags/no_such_flag", body).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{method}: {err}");
        assert_eq!(
            err,
            json!({"errors": [{"code": 10010, "title": "CF-ResourceNotFound", "detail": "Feature flag not found"}]})
        );
    }
    for body in [
        json!({"enabled": "no"}),
        json!({"custom_error_message": 7}),
        json!({"enabled": true, "name": "renamed"}),
    ] {
        let (status, err) = h
            .call(
                "PATCH",
                "/v3/feature_flags/route_creation",
                Some(body.clone()),
            )
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}: {err}");
        assert_eq!(err["errors"][0]["title"], "CF-UnprocessableEntity");
    }
    let (status, _, out) = h
        .raw(
            "PATCH",
            "/v3/feature_flags/route_creation",
            Some(ADMIN),
            "application/json",
            b"{nope".to_vec(),
        )
        .await;
    assert_eq!(
        status,
        StatusCode::BAD_REQUEST,
        "{}",
        String::from_utf8_lossy(&out)
    );
    let flag = h.get("/v3/feature_flags/route_creation").await;
    assert_eq!(flag["enabled"], true);
    assert_eq!(flag["updated_at"], Value::Null);
}
