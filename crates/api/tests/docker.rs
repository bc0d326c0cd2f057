//! Docker image apps through the API: the `diego_docker` feature flag, the
//! `docker` app lifecycle, `docker` packages (credentials shown as `***`),
//! builds that stage without buildpacks, and the image handed to the runtime
//! for instances and tasks.

mod common;

use axum::http::StatusCode;
use common::*;
use serde_json::{json, Value};

const IMAGE: &str = "127.0.0.1:5000/team/web:1";
const PASSWORD: &str = "s3cret-registry-pass";

async fn enable_docker(h: &Harness) {
    let (status, body) = h
        .call(
            "PATCH",
            "/v3/feature_flags/diego_docker",
            Some(json!({"enabled": true})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

async fn create_docker_app(h: &Harness, space: &str, name: &str) -> (StatusCode, Value) {
    h.call(
        "POST",
        "/v3/apps",
        Some(json!({
            "name": name,
            "relationships": {"space": {"data": {"guid": space}}},
            "lifecycle": {"type": "docker", "data": {}},
        })),
    )
    .await
}

async fn create_docker_package(h: &Harness, app: &str, data: Value) -> (StatusCode, Value) {
    h.call(
        "POST",
        "/v3/packages",
        Some(json!({
            "type": "docker",
            "relationships": {"app": {"data": {"guid": app}}},
            "data": data,
        })),
    )
    .await
}

fn guid(v: &Value) -> String {
    v["guid"].as_str().expect("guid").to_string()
}

#[tokio::test]
async fn docker_pushes_are_refused_while_diego_docker_is_off() {
    let h = Harness::new().await;
    let space = h.space_guid().await;
    let (status, body) = create_docker_app(&h, &space, "web").await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(
        body["errors"][0],
        json!({"code": 330002, "title": "CF-FeatureDisabled", "detail": "Feature Disabled: diego_docker"})
    );

    let (status, app) = h
        .call(
            "POST",
            "/v3/apps",
            Some(json!({"name": "web", "relationships": {"space": {"data": {"guid": space}}}})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{app}");
    let (status, body) = create_docker_package(&h, &guid(&app), json!({"image": IMAGE})).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body["errors"][0]["title"], "CF-FeatureDisabled");

    // An admin's custom message replaces CF's default one.
    let (status, _) = h
        .call(
            "PATCH",
            "/v3/feature_flags/diego_docker",
            Some(json!({"custom_error_message": "Ask the platform team for docker"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (_, body) = create_docker_package(&h, &guid(&app), json!({"image": IMAGE})).await;
    assert_eq!(
        body["errors"][0]["detail"],
        "Ask the platform team for docker"
    );
}

#[tokio::test]
async fn docker_package_data_is_checked() {
    let h = Harness::new().await;
    enable_docker(&h).await;
    let space = h.space_guid().await;
    let (_, app) = create_docker_app(&h, &space, "web").await;
    let app = guid(&app);
    for (data, detail) in [
        (json!({}), "Data Image required"),
        (json!({"image": "  "}), "Data Image required"),
        (
            json!({"image": "busy box"}),
            "Data Image \"busy box\" is not a valid image reference",
        ),
        (
            json!({"image": IMAGE, "username": "deployer"}),
            "Data Password is required when a username is given",
        ),
        (
            json!({"image": IMAGE, "password": PASSWORD}),
            "Data Username is required when a password is given",
        ),
    ] {
        let (status, body) = create_docker_package(&h, &app, data.clone()).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{data}: {body}");
        assert_eq!(body["errors"][0]["detail"], detail, "{data}");
    }
}

#[tokio::test]
async fn a_docker_app_stages_without_buildpacks_and_runs_its_image() {
    let h = Harness::new().await;
    enable_docker(&h).await;
    let space = h.space_guid().await;
    let (status, app) = create_docker_app(&h, &space, "web").await;
    assert_eq!(status, StatusCode::CREATED, "{app}");
    assert_eq!(app["lifecycle"], json!({"type": "docker", "data": {}}));
    let app = guid(&app);
    assert_eq!(
        h.get(&format!("/v3/apps/{app}")).await["lifecycle"]["type"],
        "docker"
    );
    let (_, source_app) = h
        .call(
            "POST",
            "/v3/apps",
            Some(json!({"name": "src", "relationships": {"space": {"data": {"guid": space}}}})),
        )
        .await;
    let listed = h.get("/v3/apps?lifecycle_type=docker").await;
    assert_eq!(listed["pagination"]["total_results"], 1, "{listed}");
    assert_eq!(listed["resources"][0]["guid"], app);
    assert_ne!(source_app["guid"], app);

    // The package: READY at once, the password never shown.
    let (status, package) = create_docker_package(
        &h,
        &app,
        json!({"image": IMAGE, "username": "deployer", "password": PASSWORD}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{package}");
    assert_eq!(package["type"], "docker");
    assert_eq!(package["state"], "READY");
    assert_eq!(
        package["data"],
        json!({"image": IMAGE, "username": "deployer", "password": "***"})
    );
    let package_guid = guid(&package);
    let shown = h.get(&format!("/v3/packages/{package_guid}")).await;
    assert_eq!(shown["data"]["password"], "***");
    let listed = h.get(&format!("/v3/apps/{app}/packages")).await;
    assert!(!listed.to_string().contains(PASSWORD), "{listed}");

    // The build: STAGED at once with a docker droplet, no staging task.
    let (status, build) = h
        .call(
            "POST",
            "/v3/builds",
            Some(json!({"package": {"guid": package_guid}})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{build}");
    assert_eq!(build["state"], "STAGED");
    assert_eq!(build["lifecycle"], json!({"type": "docker", "data": {}}));
    assert!(
        !h.calls().iter().any(|c| matches!(c, Call::Stage(_))),
        "a docker build runs no staging"
    );
    let droplet_guid = build["droplet"]["guid"]
        .as_str()
        .expect("droplet")
        .to_string();
    let droplet = h.get(&format!("/v3/droplets/{droplet_guid}")).await;
    assert_eq!(droplet["state"], "STAGED");
    assert_eq!(droplet["image"], IMAGE);
    assert_eq!(droplet["lifecycle"], json!({"type": "docker", "data": {}}));
    assert_eq!(droplet["buildpacks"], json!([]));
    assert_eq!(droplet["stack"], Value::Null);
    let (status, body) = h
        .call(
            "GET",
            &format!("/v3/droplets/{droplet_guid}/download"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");

    // Started: the runtime is told the image and the credentials, and no
    // start command (the image's entrypoint and cmd run).
    let (status, body) = h
        .call(
            "PATCH",
            &format!("/v3/apps/{app}/relationships/current_droplet"),
            Some(json!({"data": {"guid": droplet_guid}})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = h
        .call("POST", &format!("/v3/apps/{app}/actions/start"), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let desired = h.desires().pop().expect("desired");
    let image = desired.docker_image.clone().expect("docker image");
    assert_eq!(image.reference, IMAGE);
    assert_eq!(image.username.as_deref(), Some("deployer"));
    assert_eq!(image.password.as_deref(), Some(PASSWORD));
    assert_eq!(desired.command, "");
    assert!(
        !format!("{image:?}").contains(PASSWORD),
        "Debug hides the password"
    );
    let process = h.get(&format!("/v3/apps/{app}/processes/web")).await;
    assert!(!process.to_string().contains(PASSWORD), "{process}");

    // A task runs its command in the same image.
    let (status, task) = h
        .call(
            "POST",
            &format!("/v3/apps/{app}/tasks"),
            Some(json!({"command": "echo migrated"})),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{task}");
    let run = h.task_runs().pop().expect("task run");
    assert_eq!(run.command, "echo migrated");
    assert_eq!(
        run.docker_image.map(|i| i.reference).as_deref(),
        Some(IMAGE)
    );

    // The lifecycle type of an app does not change.
    let (status, body) = h
        .call(
            "PATCH",
            &format!("/v3/apps/{app}"),
            Some(json!({"lifecycle": {"type": "buildpack", "data": {}}})),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
}

#[tokio::test]
async fn a_buildpack_app_gets_no_image() {
    let h = Harness::new().await;
    let space = h.space_guid().await;
    let (_, app) = h
        .call(
            "POST",
            "/v3/apps",
            Some(json!({"name": "src", "relationships": {"space": {"data": {"guid": space}}}})),
        )
        .await;
    let app = guid(&app);
    let droplet = h
        .stage_droplet(&app, zip_of(&[("index.html", b"hi".as_slice())]))
        .await;
    let shown = h.get(&format!("/v3/droplets/{droplet}")).await;
    assert_eq!(shown["lifecycle"]["type"], "buildpack");
    assert_eq!(shown["image"], Value::Null);
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
    assert_eq!(h.desires().pop().expect("desired").docker_image, None);
}
