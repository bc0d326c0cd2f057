//! Copying a package into another app (`POST /v3/packages?source_guid=`),
//! what `ingot copy-source` uses to promote code from one space to another.

mod common;

use axum::http::StatusCode;
use common::*;
use serde_json::{json, Value};

/// `bearer as:<name>`: a user with CF's default scopes and only its roles.
fn user(name: &str) -> String {
    format!("bearer as:{name}")
}

struct World {
    h: Harness,
    /// App `site` in space `dev`, with an uploaded READY package.
    source_app: String,
    source_package: String,
    /// App `site-prod` in space `prod`.
    dest_app: String,
    dev: String,
    prod: String,
}

async fn create_app(h: &Harness, space: &str, name: &str) -> String {
    let (status, body) = h
        .call(
            "POST",
            "/v3/apps",
            Some(json!({"name": name, "relationships": {"space": {"data": {"guid": space}}}})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    body["guid"].as_str().expect("guid").to_string()
}

async fn grant(h: &Harness, who: &str, kind: &str, relation: &str, guid: &str) {
    let (status, body) = h
        .call(
            "POST",
            "/v3/roles",
            Some(json!({
                "type": kind,
                "relationships": {
                    "user": {"data": {"username": who, "origin": "uaa"}},
                    relation: {"data": {"guid": guid}},
                }
            })),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
}

/// Org `main` with spaces `dev` (app `site`, a package with `index.html`)
/// and `prod` (app `site-prod`, nothing uploaded). `both` develops in both
/// spaces, `prodonly` only in `prod`.
async fn world() -> World {
    let h = Harness::new().await;
    let dev = h.space_guid().await;
    let org = h.get("/v3/organizations?names=main").await["resources"][0]["guid"]
        .as_str()
        .expect("org")
        .to_string();
    let (status, body) = h
        .call(
            "POST",
            "/v3/spaces",
            Some(
                json!({"name": "prod", "relationships": {"organization": {"data": {"guid": org}}}}),
            ),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let prod = body["guid"].as_str().expect("guid").to_string();
    let source_app = create_app(&h, &dev, "site").await;
    let dest_app = create_app(&h, &prod, "site-prod").await;
    let (status, package) = h
        .call(
            "POST",
            "/v3/packages",
            Some(json!({"type": "bits", "relationships": {"app": {"data": {"guid": source_app}}}})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{package}");
    let source_package = package["guid"].as_str().expect("guid").to_string();
    let zip = zip_of(&[("index.html", b"promoted content"), ("Staticfile", b"")]);
    let (status, body) = h.upload(&source_package, Some(zip), None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    h.wait_for(
        &format!("/v3/packages/{source_package}"),
        "state",
        &["READY"],
    )
    .await;
    for who in ["both", "prodonly"] {
        grant(&h, who, "organization_user", "organization", &org).await;
        grant(&h, who, "space_developer", "space", &prod).await;
    }
    grant(&h, "both", "space_developer", "space", &dev).await;
    World {
        h,
        source_app,
        source_package,
        dest_app,
        dev,
        prod,
    }
}

async fn copy_as(w: &World, token: &str, source: &str, dest: &str) -> (StatusCode, Value) {
    w.h.call_as(
        Some(token),
        "POST",
        &format!("/v3/packages?source_guid={source}"),
        Some(json!({"relationships": {"app": {"data": {"guid": dest}}}})),
    )
    .await
}

/// The files of a package, by downloading it as admin.
async fn package_files(h: &Harness, package: &str) -> Vec<(String, Vec<u8>)> {
    let (status, _, bytes) = h
        .raw(
            "GET",
            &format!("/v3/packages/{package}/download"),
            Some(ADMIN),
            "",
            Vec::new(),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(bytes)).expect("a zip");
    let mut files = Vec::new();
    for i in 0..archive.len() {
        let mut entry = archive.by_index(i).expect("entry");
        if entry.is_dir() {
            continue;
        }
        let mut content = Vec::new();
        std::io::Read::read_to_end(&mut entry, &mut content).expect("read");
        files.push((entry.name().to_string(), content));
    }
    files.sort();
    files
}

#[tokio::test]
async fn a_package_copied_into_another_space_is_ready_and_stages() {
    let w = world().await;
    let (status, copy) = copy_as(&w, &user("both"), &w.source_package, &w.dest_app).await;
    assert_eq!(status, StatusCode::CREATED, "{copy}");
    assert_eq!(copy["state"], "READY", "{copy}");
    assert_eq!(copy["type"], "bits");
    assert_eq!(copy["relationships"]["app"]["data"]["guid"], w.dest_app);
    let copy_guid = copy["guid"].as_str().expect("guid").to_string();
    assert_ne!(copy_guid, w.source_package);

    // The same bits, under the destination app.
    let source = w.h.get(&format!("/v3/packages/{}", w.source_package)).await;
    assert_eq!(copy["data"]["checksum"], source["data"]["checksum"]);
    assert_eq!(
        package_files(&w.h, &copy_guid).await,
        package_files(&w.h, &w.source_package).await
    );
    let listed = w.h.get(&format!("/v3/apps/{}/packages", w.dest_app)).await;
    assert_eq!(listed["resources"][0]["guid"], copy_guid.as_str());

    // The destination stages from it, in its own space.
    let (status, build) =
        w.h.call_as(
            Some(&user("both")),
            "POST",
            "/v3/builds",
            Some(json!({"package": {"guid": copy_guid}})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{build}");
    let build_guid = build["guid"].as_str().expect("guid");
    let build =
        w.h.wait_for(&format!("/v3/builds/{build_guid}"), "state", &["STAGED"])
            .await;
    assert!(build["droplet"]["guid"].is_string(), "{build}");
    let staged = w.h.first_stage();
    assert_eq!(staged.app_guid, w.dest_app);
    assert_eq!(staged.space_guid, w.prod);
    assert_eq!(staged.package_key, format!("packages/{copy_guid}.zip"));

    // Deleting the source afterwards leaves the copy whole.
    let (status, body) =
        w.h.call("DELETE", &format!("/v3/apps/{}", w.source_app), None)
            .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(
        package_files(&w.h, &copy_guid).await,
        vec![
            ("Staticfile".to_string(), Vec::new()),
            ("index.html".to_string(), b"promoted content".to_vec()),
        ]
    );

    // The copy is an audit event of the destination app.
    let events =
        w.h.get(&format!(
            "/v3/audit_events?target_guids={}&types=audit.app.package.create",
            w.dest_app
        ))
        .await;
    assert_eq!(
        events["resources"][0]["data"]["request"]["source_package_guid"], w.source_package,
        "{events}"
    );
}

#[tokio::test]
async fn a_developer_of_the_destination_only_cannot_copy_from_elsewhere() {
    let w = world().await;
    let (status, body) = copy_as(&w, &user("prodonly"), &w.source_package, &w.dest_app).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert_eq!(body["errors"][0]["title"], "CF-ResourceNotFound");
    assert_eq!(body["errors"][0]["detail"], "Package not found");
    // Nothing was created for the destination.
    let listed = w.h.get(&format!("/v3/apps/{}/packages", w.dest_app)).await;
    assert_eq!(listed["pagination"]["total_results"], 0, "{listed}");
}

#[tokio::test]
async fn an_unknown_source_is_not_found() {
    let w = world().await;
    for token in [ADMIN.to_string(), user("both")] {
        let (status, body) = copy_as(&w, &token, "no-such-package", &w.dest_app).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{token}: {body}");
        assert_eq!(body["errors"][0]["title"], "CF-ResourceNotFound");
        assert_eq!(body["errors"][0]["detail"], "Package not found");
    }
}

#[tokio::test]
async fn a_destination_the_user_cannot_write_is_refused() {
    let w = world().await;
    // An auditor of prod sees the destination but may not change it.
    grant(
        &w.h,
        "aud",
        "organization_user",
        "organization",
        &org_of(&w).await,
    )
    .await;
    grant(&w.h, "aud", "space_developer", "space", &w.dev).await;
    grant(&w.h, "aud", "space_auditor", "space", &w.prod).await;
    let (status, body) = copy_as(&w, &user("aud"), &w.source_package, &w.dest_app).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body["errors"][0]["title"], "CF-NotAuthorized");
    // A destination the user cannot see at all is CF's 422.
    let (status, body) = copy_as(&w, &user("aud"), &w.source_package, "no-such-app").await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let listed = w.h.get(&format!("/v3/apps/{}/packages", w.dest_app)).await;
    assert_eq!(listed["pagination"]["total_results"], 0, "{listed}");
}

async fn org_of(w: &World) -> String {
    w.h.get("/v3/organizations?names=main").await["resources"][0]["guid"]
        .as_str()
        .expect("org")
        .to_string()
}

#[tokio::test]
async fn a_docker_package_copies_its_image() {
    let w = world().await;
    let (status, body) =
        w.h.call(
            "PATCH",
            "/v3/feature_flags/diego_docker",
            Some(json!({"enabled": true})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, docker) =
        w.h.call(
            "POST",
            "/v3/packages",
            Some(json!({
                "type": "docker",
                "data": {"image": "registry.example.com/team/web:1.2"},
                "relationships": {"app": {"data": {"guid": w.source_app}}}
            })),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{docker}");
    let source = docker["guid"].as_str().expect("guid").to_string();
    let (status, copy) = copy_as(&w, &user("both"), &source, &w.dest_app).await;
    assert_eq!(status, StatusCode::CREATED, "{copy}");
    assert_eq!(copy["type"], "docker");
    assert_eq!(copy["state"], "READY");
    assert_eq!(copy["data"]["image"], "registry.example.com/team/web:1.2");
    assert_eq!(copy["relationships"]["app"]["data"]["guid"], w.dest_app);
}
