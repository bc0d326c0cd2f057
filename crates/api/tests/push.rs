//! The push path as the cf CLI drives it, and the bad inputs that must
//! change nothing.

mod common;

use std::io::Read;

use axum::http::StatusCode;
use common::*;
use ingot_api::{CrashReport, StageFailure};
use serde_json::{json, Value};

const SITE: &str = "
applications:
- name: site
  instances: 2
  memory: 128M
  disk_quota: 512M
  buildpacks: [staticfile_buildpack]
  env:
    GREETING: hello
  health-check-type: http
  health-check-http-endpoint: /health
";

/// Creates app `site` through apply_manifest; returns (space, app guid).
async fn manifest_app(h: &Harness) -> (String, String) {
    let space = h.space_guid().await;
    let (status, job) = h.apply_manifest(&space, SITE).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{job}");
    assert_eq!(job["state"], "COMPLETE", "{job}");
    let apps = h
        .get(&format!("/v3/apps?names=site&space_guids={space}"))
        .await;
    assert_eq!(apps["pagination"]["total_results"], 1);
    let app = apps["resources"][0]["guid"]
        .as_str()
        .expect("guid")
        .to_string();
    (space, app)
}

/// Creates a bits package for the app; returns its guid.
async fn new_package(h: &Harness, app: &str) -> String {
    let (status, package) = h
        .call(
            "POST",
            "/v3/packages",
            Some(json!({"type": "bits", "relationships": {"app": {"data": {"guid": app}}}})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{package}");
    assert_eq!(package["state"], "AWAITING_UPLOAD");
    package["guid"].as_str().expect("guid").to_string()
}

/// Creates a package and uploads `zip`; returns the final package.
async fn package_with(
    h: &Harness,
    app: &str,
    zip: Option<Vec<u8>>,
    resources: Option<Value>,
) -> Value {
    let guid = new_package(h, app).await;
    let (status, uploaded) = h.upload(&guid, zip, resources).await;
    assert_eq!(status, StatusCode::OK, "{uploaded}");
    assert!(
        uploaded["state"] == "PROCESSING" || uploaded["state"] == "READY",
        "{uploaded}"
    );
    h.wait_for(
        &format!("/v3/packages/{guid}"),
        "state",
        &["READY", "FAILED"],
    )
    .await
}

/// Stages a READY package; returns the final build.
async fn build(h: &Harness, package: &str) -> Value {
    let (status, build) = h
        .call(
            "POST",
            "/v3/builds",
            Some(json!({"package": {"guid": package}})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{build}");
    assert_eq!(build["state"], "STAGING");
    let guid = build["guid"].as_str().expect("guid");
    h.wait_for(
        &format!("/v3/builds/{guid}"),
        "state",
        &["STAGED", "FAILED"],
    )
    .await
}

#[tokio::test]
async fn push_sequence_reaches_the_runtime() {
    let h = Harness::new().await;
    let (_space, app) = manifest_app(&h).await;

    // apply_manifest made the default route and the process settings.
    let routes = h.get(&format!("/v3/apps/{app}/routes")).await;
    assert_eq!(routes["resources"][0]["url"], "site.apps.localhost");
    let web = h.get(&format!("/v3/apps/{app}/processes/web")).await;
    assert_eq!(web["instances"], 2);
    assert_eq!(web["memory_in_mb"], 128);
    assert_eq!(web["disk_in_mb"], 512);
    assert_eq!(web["health_check"]["type"], "http");
    assert_eq!(web["health_check"]["data"]["endpoint"], "/health");

    // Nothing is cached yet.
    let index = b"<h1>hello</h1>".to_vec();
    let sha = sha1_hex(&index);
    let probe = json!({"resources": [{"path": "index.html", "mode": "644", "checksum": {"value": sha}, "size_in_bytes": index.len()}]});
    let (status, matched) = h
        .call("POST", "/v3/resource_matches", Some(probe.clone()))
        .await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(matched["resources"], json!([]));

    let package = package_with(&h, &app, Some(zip_of(&[("index.html", &index)])), None).await;
    assert_eq!(package["state"], "READY", "{package}");
    assert_eq!(package["data"]["checksum"]["type"], "sha256");

    // The uploaded file is now in the resource cache, and a second upload
    // can name it instead of sending it.
    let (_, matched) = h.call("POST", "/v3/resource_matches", Some(probe)).await;
    assert_eq!(matched["resources"][0]["checksum"]["value"], sha);
    let package = package_with(
        &h,
        &app,
        Some(zip_of(&[("Staticfile", b"")])),
        Some(json!([{"fn": "index.html", "sha1": sha, "size": index.len(), "mode": "644"}])),
    )
    .await;
    assert_eq!(package["state"], "READY", "{package}");
    let package_guid = package["guid"].as_str().expect("guid").to_string();
    let (status, _, zip_bytes) = h
        .raw(
            "GET",
            &format!("/v3/packages/{package_guid}/download"),
            Some(ADMIN),
            "",
            Vec::new(),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(zip_bytes)).expect("zip");
    let mut merged = String::new();
    archive
        .by_name("index.html")
        .expect("merged resource")
        .read_to_string(&mut merged)
        .expect("read");
    assert_eq!(merged.as_bytes(), index.as_slice());
    assert!(archive.by_name("Staticfile").is_ok());

    let build = build(&h, &package_guid).await;
    assert_eq!(build["state"], "STAGED", "{build}");
    let droplet_guid = build["droplet"]["guid"]
        .as_str()
        .expect("droplet")
        .to_string();
    let droplet = h.get(&format!("/v3/droplets/{droplet_guid}")).await;
    assert_eq!(droplet["state"], "STAGED");
    assert_eq!(droplet["process_types"]["web"], "./serve");
    assert_eq!(droplet["buildpacks"][0]["name"], "staticfile_buildpack");
    assert_eq!(droplet["checksum"]["type"], "sha256");
    let stage = h.first_stage();
    assert_eq!(
        stage.buildpacks,
        vec![ingot_api::BuildpackRef::Builtin(
            "staticfile_buildpack".into()
        )]
    );
    assert_eq!(stage.package_key, format!("packages/{package_guid}.zip"));
    assert_eq!(stage.environment["GREETING"], "hello");

    // Starting needs a droplet.
    let (status, body) = h
        .call("POST", &format!("/v3/apps/{app}/actions/start"), None)
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        body["errors"][0]["detail"],
        "Assign a droplet before starting this app."
    );

    let (status, rel) = h
        .call(
            "PATCH",
            &format!("/v3/apps/{app}/relationships/current_droplet"),
            Some(json!({"data": {"guid": droplet_guid}})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{rel}");
    assert_eq!(rel["data"]["guid"], droplet_guid);
    let current = h.get(&format!("/v3/apps/{app}/droplets/current")).await;
    assert_eq!(current["guid"], droplet_guid);

    let (status, started) = h
        .call("POST", &format!("/v3/apps/{app}/actions/start"), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{started}");
    assert_eq!(started["state"], "STARTED");
    let desired = h.desires();
    assert_eq!(desired.len(), 1, "{desired:?}");
    let d = &desired[0];
    assert_eq!(d.app_guid, app);
    assert_eq!(d.process_type, "web");
    assert_eq!(d.process_guid, web["guid"]);
    assert_eq!(d.app_name, "site");
    assert_eq!(d.space_name, "dev");
    assert_eq!(d.org_name, "main");
    assert_eq!(d.droplet_guid, droplet_guid);
    assert_eq!(d.droplet_key, format!("droplets/{droplet_guid}.tgz"));
    assert_eq!(d.command, "./serve");
    assert_eq!(d.instances, 2);
    assert_eq!(d.memory_mb, 128);
    assert_eq!(d.disk_mb, 512);
    assert_eq!(d.environment["GREETING"], "hello");
    assert_eq!(d.uris, vec!["site.apps.localhost".to_string()]);
    assert_eq!(d.health_check.kind, "http");
    assert_eq!(d.health_check.endpoint.as_deref(), Some("/health"));
    let api_lines: Vec<String> = h
        .logs
        .0
        .lock()
        .expect("lock")
        .iter()
        .filter(|e| e.source_type() == Some("API") && e.source_id == app)
        .filter_map(|e| match &e.message {
            ingot_logs::Message::Log { payload, .. } => {
                Some(String::from_utf8_lossy(payload).into_owned())
            }
            _ => None,
        })
        .collect();
    assert!(
        api_lines.contains(&format!("Starting app with guid {app}")),
        "{api_lines:?}"
    );

    // Stats: the runtime's instance and a DOWN one for the missing index.
    let web_guid = web["guid"].as_str().expect("guid");
    let stats = h.get(&format!("/v3/processes/{web_guid}/stats")).await;
    assert_eq!(stats["resources"][0]["state"], "RUNNING");
    assert_eq!(stats["resources"][0]["instance_ports"][0]["external"], 8080);
    assert_eq!(stats["resources"][0]["mem_quota"], 128 * 1024 * 1024);
    assert_eq!(stats["resources"][1]["state"], "DOWN");

    // Scaling a running app re-desires it.
    let (status, scaled) = h
        .call(
            "POST",
            &format!("/v3/processes/{web_guid}/actions/scale"),
            Some(json!({"instances": 3})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{scaled}");
    assert_eq!(scaled["instances"], 3);
    let last = h.desires().pop().expect("re-desired");
    assert_eq!(last.instances, 3);
    assert_eq!(last.command, "./serve");

    // A new route re-desires with the new URI.
    let domain = h.get("/v3/domains").await["resources"][0]["guid"].clone();
    let (status, route) = h
        .call(
            "POST",
            "/v3/routes",
            Some(json!({"host": "www", "relationships": {"space": {"data": {"guid": _space}}, "domain": {"data": {"guid": domain}}}})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{route}");
    let route_guid = route["guid"].as_str().expect("guid");
    let (status, dests) = h
        .call(
            "POST",
            &format!("/v3/routes/{route_guid}/destinations"),
            Some(json!({"destinations": [{"app": {"guid": app}}]})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{dests}");
    let last = h.desires().pop().expect("re-desired");
    assert_eq!(
        last.uris,
        vec![
            "site.apps.localhost".to_string(),
            "www.apps.localhost".to_string()
        ]
    );

    // Stop removes; the audit trail has the whole story.
    let (status, stopped) = h
        .call("POST", &format!("/v3/apps/{app}/actions/stop"), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(stopped["state"], "STOPPED");
    assert!(h.calls().contains(&Call::Remove(web_guid.to_string())));
    let events = h
        .get(&format!("/v3/audit_events?target_guids={app}&per_page=100"))
        .await;
    let types: Vec<&str> = events["resources"]
        .as_array()
        .expect("resources")
        .iter()
        .map(|e| e["type"].as_str().expect("type"))
        .collect();
    for t in [
        "audit.app.create",
        "audit.app.build.create",
        "audit.app.droplet.create",
        "audit.app.start",
        "audit.app.process.scale",
        "audit.app.stop",
    ] {
        assert!(types.contains(&t), "{t} missing from {types:?}");
    }

    // Delete answers with a job and forgets the app.
    let (status, _, _) = h
        .raw(
            "DELETE",
            &format!("/v3/apps/{app}"),
            Some(ADMIN),
            "",
            Vec::new(),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let (status, _) = h.call("GET", &format!("/v3/apps/{app}"), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn hostile_zips_fail_the_package_and_change_nothing() {
    let h = Harness::new().await;
    let (_space, app) = manifest_app(&h).await;
    let before = h.get(&format!("/v3/apps/{app}")).await;
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("dot-dot", zip_of(&[("../evil.txt", b"x")])),
        ("nested dot-dot", zip_of(&[("a/../../evil.txt", b"x")])),
        ("absolute", zip_of(&[("/etc/evil", b"x")])),
        ("symlink out", zip_with_link("link", "../../../etc")),
        ("absolute symlink", zip_with_link("link", "/etc/passwd")),
        ("corrupt", b"PK\x03\x04 this is not really a zip".to_vec()),
    ];
    for (what, zip) in cases {
        let package = package_with(&h, &app, Some(zip), None).await;
        assert_eq!(package["state"], "FAILED", "{what}: {package}");
        let error = package["data"]["error"].as_str().unwrap_or_default();
        assert!(!error.is_empty(), "{what}: no reason given");
    }
    // An inside link is fine.
    let package = package_with(&h, &app, Some(zip_with_link("link", "index.html")), None).await;
    assert_eq!(package["state"], "READY", "{package}");
    let after = h.get(&format!("/v3/apps/{app}")).await;
    assert_eq!(before, after);
    assert!(h.calls().is_empty(), "{:?}", h.calls());
}

#[tokio::test]
async fn duplicate_names_and_unknown_buildpacks_are_refused() {
    let h = Harness::new().await;
    let (space, _app) = manifest_app(&h).await;
    let (status, body) = h
        .call(
            "POST",
            "/v3/apps",
            Some(json!({"name": "site", "relationships": {"space": {"data": {"guid": space}}}})),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body["errors"][0]["code"], 10016);
    assert_eq!(body["errors"][0]["title"], "CF-UniquenessError");
    assert_eq!(
        body["errors"][0]["detail"],
        "App with the name 'site' already exists."
    );

    let (status, body) = h
        .call(
            "POST",
            "/v3/apps",
            Some(json!({"name": "other", "relationships": {"space": {"data": {"guid": space}}},
                        "lifecycle": {"type": "buildpack", "data": {"buildpacks": ["nope_buildpack"]}}})),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body["errors"][0]["code"], 10008);
    assert_eq!(
        body["errors"][0]["detail"],
        "Buildpack \"nope_buildpack\" must be an existing admin buildpack or a valid git URI"
    );

    // In a manifest: refused at once, and nothing of it applied.
    let (status, body) = h
        .apply_manifest(
            &space,
            "applications:\n- name: fresh\n  buildpack: nope_buildpack\n",
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let apps = h.get("/v3/apps?names=fresh").await;
    assert_eq!(apps["pagination"]["total_results"], 0);

    // Malformed YAML: a parse error, nothing applied.
    let (status, body) = h
        .apply_manifest(&space, "applications: [name: : :\n  - ]]")
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["errors"][0]["title"], "CF-MessageParseError");

    // A URL buildpack is accepted.
    let (status, body) = h
        .call(
            "PATCH",
            &format!("/v3/apps/{_app}"),
            Some(json!({"lifecycle": {"type": "buildpack", "data": {"buildpacks": ["https://example.com/bp.zip"]}}})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body["lifecycle"]["data"]["buildpacks"][0],
        "https://example.com/bp.zip"
    );
}

#[tokio::test]
async fn failed_staging_is_reported_on_the_build() {
    let h = Harness::new().await;
    let (_space, app) = manifest_app(&h).await;
    let package = package_with(&h, &app, Some(zip_of(&[("x.bin", b"x")])), None).await;
    *h.runtime.fail_staging.lock().expect("lock") = Some(StageFailure {
        code: "NoAppDetectedError".into(),
        message: "An app was not successfully detected by any available buildpack".into(),
    });
    let build = build(&h, package["guid"].as_str().expect("guid")).await;
    assert_eq!(build["state"], "FAILED");
    assert_eq!(
        build["error"],
        "NoAppDetectedError - An app was not successfully detected by any available buildpack"
    );
    assert_eq!(build["droplet"], Value::Null);
}

#[tokio::test]
async fn auto_detection_offers_every_enabled_buildpack_in_order() {
    let h = Harness::new().await;
    let space = h.space_guid().await;
    let (status, job) = h
        .apply_manifest(&space, "applications:\n- name: plain\n")
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{job}");
    let app = h.get("/v3/apps?names=plain").await["resources"][0]["guid"]
        .as_str()
        .expect("guid")
        .to_string();
    let package = package_with(&h, &app, Some(zip_of(&[("index.html", b"x")])), None).await;
    let build = build(&h, package["guid"].as_str().expect("guid")).await;
    assert_eq!(build["state"], "STAGED");
    let stage = h.first_stage();
    assert!(stage.buildpacks.is_empty());
    let names: Vec<String> = stage
        .detect_candidates
        .iter()
        .map(|b| match b {
            ingot_api::BuildpackRef::Builtin(n) => n.clone(),
            other => format!("{other:?}"),
        })
        .collect();
    assert_eq!(names, BUILTIN_BUILDPACKS);
    assert_eq!(stage.stack, "ingot-default");
}

#[tokio::test]
async fn resume_and_crashes() {
    let h = Harness::new().await;
    let (_space, app) = manifest_app(&h).await;
    let package = package_with(&h, &app, Some(zip_of(&[("index.html", b"x")])), None).await;
    let build = build(&h, package["guid"].as_str().expect("guid")).await;
    let droplet = build["droplet"]["guid"].clone();
    h.call(
        "PATCH",
        &format!("/v3/apps/{app}/relationships/current_droplet"),
        Some(json!({"data": {"guid": droplet}})),
    )
    .await;
    let (status, _) = h
        .call("POST", &format!("/v3/apps/{app}/actions/restart"), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    let first = h.desires().pop().expect("desired");

    h.api.resume().await.expect("resume");
    let again = h.desires().pop().expect("desired again");
    assert_eq!(first, again);

    h.api
        .record_crash(CrashReport {
            process_guid: first.process_guid.clone(),
            index: 0,
            instance_guid: "i-1".into(),
            exit_status: 137,
            reason: "CRASHED".into(),
            exit_description: "APP/PROC/WEB: Exited with status 137 (out of memory)".into(),
            crash_count: 1,
            crash_timestamp_ns: 1,
        })
        .await
        .expect("crash");
    let events = h
        .get("/v3/audit_events?types=audit.app.process.crash")
        .await;
    let e = &events["resources"][0];
    assert_eq!(e["target"]["guid"], app);
    assert_eq!(
        e["data"]["exit_description"],
        "APP/PROC/WEB: Exited with status 137 (out of memory)"
    );
    assert_eq!(e["data"]["index"], 0);
    assert_eq!(e["data"]["reason"], "CRASHED");
    // The version is the crashed process's, as CF reports it.
    let process = h
        .get(&format!("/v3/processes/{}", first.process_guid))
        .await;
    assert_eq!(e["data"]["version"], process["version"]);
}

#[tokio::test]
async fn admin_buildpacks_upload_and_resolve() {
    let h = Harness::new().await;
    let (status, bp) = h
        .call(
            "POST",
            "/v3/buildpacks",
            Some(json!({"name": "custom_buildpack", "position": 1})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{bp}");
    assert_eq!(bp["state"], "AWAITING_UPLOAD");
    let guid = bp["guid"].as_str().expect("guid").to_string();
    let list = h.get("/v3/buildpacks").await;
    assert_eq!(list["resources"][0]["name"], "custom_buildpack");
    assert_eq!(list["resources"][1]["position"], 2);

    let zip = zip_of(&[("bin/detect", b"#!/bin/sh\nexit 0\n")]);
    let boundary = "b0undary";
    let mut body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"bits\"; filename=\"custom.zip\"\r\n\r\n"
    )
    .into_bytes();
    body.extend_from_slice(&zip);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    let (status, _, out) = h
        .raw(
            "POST",
            &format!("/v3/buildpacks/{guid}/upload"),
            Some(ADMIN),
            &format!("multipart/form-data; boundary={boundary}"),
            body,
        )
        .await;
    assert_eq!(
        status,
        StatusCode::ACCEPTED,
        "{}",
        String::from_utf8_lossy(&out)
    );
    let bp = h.get(&format!("/v3/buildpacks/{guid}")).await;
    assert_eq!(bp["state"], "READY");
    assert_eq!(bp["filename"], "custom.zip");
    assert!(h
        .blobs
        .exists(&format!("buildpacks/{guid}.zip"))
        .await
        .expect("exists"));

    let space = h.space_guid().await;
    let (status, job) = h
        .apply_manifest(
            &space,
            "applications:\n- name: c\n  buildpacks: [custom_buildpack]\n",
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{job}");
    let app = h.get("/v3/apps?names=c").await["resources"][0]["guid"]
        .as_str()
        .expect("guid")
        .to_string();
    let package = package_with(&h, &app, Some(zip_of(&[("x", b"x")])), None).await;
    build(&h, package["guid"].as_str().expect("guid")).await;
    let stage = h.first_stage();
    assert_eq!(
        stage.buildpacks,
        vec![ingot_api::BuildpackRef::Uploaded {
            name: "custom_buildpack".into(),
            blob_key: format!("buildpacks/{guid}.zip"),
        }]
    );
}

#[tokio::test]
async fn oversized_uploads_are_refused() {
    let h = Harness::new().await;
    let (_space, app) = manifest_app(&h).await;
    h.api.set_upload_limit(1024);
    let guid = &new_package(&h, &app).await;
    // Noise, so compression cannot bring it under the limit.
    let mut x: u32 = 1;
    let big: Vec<u8> = (0..64 * 1024)
        .map(|_| {
            x = x.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (x >> 24) as u8
        })
        .collect();
    let (status, body) = h
        .upload(guid, Some(zip_of(&[("big.bin", &big)])), None)
        .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
    assert!(body["errors"][0]["detail"]
        .as_str()
        .expect("detail")
        .contains("larger than the limit"));
    let package = h.get(&format!("/v3/packages/{guid}")).await;
    assert_eq!(package["state"], "AWAITING_UPLOAD");
}

#[tokio::test]
async fn manifests_map_routes_processes_and_stacks() {
    let h = Harness::new().await;
    let space = h.space_guid().await;
    let yaml = "
applications:
- name: web_app
  stack: cflinuxfs4
  command: python3 app.py
  routes:
  - route: shop.apps.localhost/cart
  - route: shop.apps.localhost
  processes:
  - type: worker
    instances: 2
    memory: 64M
- name: quiet
  no-route: true
- name: lucky
  random-route: true
";
    let (status, job) = h.apply_manifest(&space, yaml).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{job}");
    assert_eq!(job["state"], "COMPLETE");
    assert!(job["warnings"][0]["detail"]
        .as_str()
        .expect("stack notice")
        .contains("cflinuxfs4"));
    assert_eq!(
        job["links"]["space"]["href"],
        format!("{EXTERNAL}/v3/spaces/{space}")
    );

    let app = h.get("/v3/apps?names=web_app").await["resources"][0].clone();
    assert_eq!(app["lifecycle"]["data"]["stack"], "ingot-default");
    let guid = app["guid"].as_str().expect("guid");
    let routes = h.get(&format!("/v3/apps/{guid}/routes")).await;
    let mut urls: Vec<&str> = routes["resources"]
        .as_array()
        .expect("routes")
        .iter()
        .map(|r| r["url"].as_str().expect("url"))
        .collect();
    urls.sort();
    assert_eq!(urls, ["shop.apps.localhost", "shop.apps.localhost/cart"]);
    let web = h.get(&format!("/v3/apps/{guid}/processes/web")).await;
    assert_eq!(web["command"], "python3 app.py");
    let worker = h.get(&format!("/v3/apps/{guid}/processes/worker")).await;
    assert_eq!(worker["instances"], 2);
    assert_eq!(worker["memory_in_mb"], 64);
    assert_eq!(worker["health_check"]["type"], "process");

    let quiet = h.get("/v3/apps?names=quiet").await["resources"][0]["guid"].clone();
    let routes = h
        .get(&format!(
            "/v3/apps/{}/routes",
            quiet.as_str().expect("guid")
        ))
        .await;
    assert_eq!(routes["pagination"]["total_results"], 0);

    let lucky = h.get("/v3/apps?names=lucky").await["resources"][0]["guid"].clone();
    let routes = h
        .get(&format!(
            "/v3/apps/{}/routes",
            lucky.as_str().expect("guid")
        ))
        .await;
    let host = routes["resources"][0]["host"].as_str().expect("host");
    assert!(
        host.starts_with("lucky-") && host.len() > "lucky-".len(),
        "{host}"
    );

    // A route on an unknown domain: the job fails, nothing is applied.
    let (status, job) = h
        .apply_manifest(
            &space,
            "applications:\n- name: nowhere\n  routes:\n  - route: a.example.org\n",
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{job}");
    assert_eq!(job["state"], "FAILED");
    assert_eq!(job["errors"][0]["code"], 10008);
    assert_eq!(
        job["errors"][0]["detail"],
        "The route 'a.example.org' did not match any existing domains."
    );
    let apps = h.get("/v3/apps?names=nowhere").await;
    assert_eq!(apps["pagination"]["total_results"], 0);
}

#[tokio::test]
async fn resume_fails_work_a_restart_interrupted() {
    let h = Harness::new().await;
    let (_space, app) = manifest_app(&h).await;
    let guid = &new_package(&h, &app).await;
    // As if the previous platform process died mid-upload.
    sqlx::query(
        "UPDATE cc_packages SET doc = json_set(doc, '$.state', 'PROCESSING') WHERE guid = ?",
    )
    .bind(guid)
    .execute(&h.pool)
    .await
    .expect("update");
    h.api.resume().await.expect("resume");
    let package = h.get(&format!("/v3/packages/{guid}")).await;
    assert_eq!(package["state"], "FAILED");
    assert!(package["data"]["error"]
        .as_str()
        .expect("error")
        .contains("restart"));
}

#[tokio::test]
async fn lists_below_an_app_or_package_hold_only_theirs() {
    let h = Harness::new().await;
    let (_space, app) = manifest_app(&h).await;
    // Another app's package and build must not show up below `site`.
    let space = h.space_guid().await;
    let other = "applications:\n- name: other\n";
    let (status, _) = h.apply_manifest(&space, other).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let apps = h.get("/v3/apps?names=other").await;
    let other_app = apps["resources"][0]["guid"].as_str().expect("guid");
    new_package(&h, other_app).await;

    let zip = zip_of(&[("index.html", b"x")]);
    let package = package_with(&h, &app, Some(zip), None).await;
    let package = package["guid"].as_str().expect("guid");
    let build = build(&h, package).await;
    let droplet = build["droplet"]["guid"].as_str().expect("droplet");

    for (path, guid) in [
        (format!("/v3/apps/{app}/packages"), package),
        (
            format!("/v3/apps/{app}/builds"),
            build["guid"].as_str().expect("guid"),
        ),
        (format!("/v3/apps/{app}/droplets"), droplet),
        (format!("/v3/packages/{package}/droplets"), droplet),
    ] {
        let list = h.get(&path).await;
        assert_eq!(list["pagination"]["total_results"], 1, "{path}: {list}");
        assert_eq!(list["resources"][0]["guid"], guid, "{path}");
        let first = list["pagination"]["first"]["href"].as_str().expect("href");
        assert!(first.starts_with(&format!("{EXTERNAL}{path}?")), "{first}");
    }
    let all = h.get("/v3/packages").await;
    assert_eq!(all["pagination"]["total_results"], 2);

    // `current=true` is the current droplet alone: none until one is set.
    let current = format!("/v3/apps/{app}/droplets?current=true");
    assert_eq!(h.get(&current).await["pagination"]["total_results"], 0);
    h.call(
        "PATCH",
        &format!("/v3/apps/{app}/relationships/current_droplet"),
        Some(json!({"data": {"guid": droplet}})),
    )
    .await;
    assert_eq!(h.get(&current).await["resources"][0]["guid"], droplet);

    for path in [
        "/v3/apps/missing/builds",
        "/v3/apps/missing/packages",
        "/v3/packages/missing/droplets",
    ] {
        let (status, body) = h.call("GET", path, None).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}: {body}");
    }
}

#[tokio::test]
async fn a_process_is_reached_by_guid_or_by_app_and_type() {
    let h = Harness::new().await;
    let (_space, app) = manifest_app(&h).await;
    let by_type = format!("/v3/apps/{app}/processes/web");
    let web = h.get(&by_type).await;
    let by_guid = format!("/v3/processes/{}", web["guid"].as_str().expect("guid"));
    assert_eq!(h.get(&by_guid).await, web);

    for (base, instances) in [(&by_type, 4), (&by_guid, 5)] {
        let (status, scaled) = h
            .call(
                "POST",
                &format!("{base}/actions/scale"),
                Some(json!({"instances": instances})),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{base}: {scaled}");
        assert_eq!(h.get(&by_guid).await["instances"], instances);
        // A stopped app has no instances running: every index is DOWN.
        let stats = h.get(&format!("{base}/stats")).await;
        let states = stats["resources"].as_array().expect("resources");
        assert_eq!(states.len(), instances);
        assert!(states.iter().all(|s| s["state"] == "DOWN"), "{stats}");
    }
    let (status, patched) = h
        .call("PATCH", &by_type, Some(json!({"command": "./other"})))
        .await;
    assert_eq!(status, StatusCode::OK, "{patched}");
    assert_eq!(h.get(&by_guid).await["command"], "./other");

    for path in [
        format!("/v3/apps/{app}/processes/worker"),
        "/v3/apps/missing/processes/web".to_string(),
        "/v3/processes/missing/stats".to_string(),
    ] {
        let (status, body) = h.call("GET", &path, None).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}: {body}");
    }
}

#[tokio::test]
async fn unknown_app_actions_are_not_found_and_change_nothing() {
    let h = Harness::new().await;
    let (_space, app) = manifest_app(&h).await;
    let before = h.get(&format!("/v3/apps/{app}")).await;
    let (status, body) = h
        .call("POST", &format!("/v3/apps/{app}/actions/explode"), None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert_eq!(body["errors"][0]["title"], "CF-NotFound");
    assert_eq!(h.get(&format!("/v3/apps/{app}")).await, before);
    assert!(h.calls().is_empty(), "{:?}", h.calls());
}
