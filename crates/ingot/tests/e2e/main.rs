//! End-to-end: the real `ingot` binary, real containers, the real CLI.
//!
//! One scenario walks the whole skeleton in order, the way a user would:
//! boot, push four kinds of app, read logs, crash and OOM an instance, scale,
//! look inside an instance, feed the API bad input, restart the platform, and
//! finally check that nothing is left on the host. Needs root, runc, nft, ip.

mod brokers;
mod buildpacks;
mod docker;
mod drains;
#[path = "../../../brokers/tests/support/pg.rs"]
mod pg;
mod pg_broker;
mod platform;
mod rolling;
mod security_groups;
mod ssh;
mod support;
mod system_domain;
mod tcp_routes;
mod tenants;
mod terminal;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use platform::{leftovers, Platform};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("fixtures")
        .join(name)
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read fixture") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("type").is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy");
        }
    }
}

#[test]
fn walking_skeleton() {
    let tmp = tempfile::Builder::new()
        .prefix("ingot-e2e-")
        .tempdir()
        .expect("tempdir");
    let home = tmp.path().join("home");
    let work = tmp.path().join("work");
    std::fs::create_dir_all(&work).expect("work dir");
    let egress = support::EgressServer::start();

    // A real PostgreSQL for the built-in broker, on a host address apps
    // reach only through a security group.
    let db_address = pg_broker::DbAddress::add();
    let (database, broker_flags) = pg_broker::start_database();
    let flags: Vec<&str> = broker_flags.iter().map(String::as_str).collect();
    let mut platform = Platform::start_with(&home, &flags);
    let target = platform.cli(&["target"]);
    assert!(
        target.contains("admin") && target.contains("main") && target.contains("dev"),
        "{target}"
    );

    push_static_site(&platform);
    terminal::a_person_at_a_terminal(&platform, &work);
    docker::push_a_docker_image(&platform, &work);
    push_with_an_independent_client(&platform, &work);
    push_probe(&platform, &work, &egress);
    security_groups::egress_follows_security_groups(&platform, &work, "10.251.0.2", 8000);
    brokers::marketplace_with_real_brokers(&platform, &work);
    pg_broker::an_app_keeps_rows_in_a_brokered_database(&platform, &work, &database);
    push_pip_app(&platform, &work);
    push_custom_buildpack_app(&platform);
    push_with_a_buildpack_url(&platform, &work);
    buildpacks::an_admin_manages_buildpacks(&platform, &work);
    recent_logs(&platform);
    tenants::roles_limit_what_users_see(&platform, &work);
    log_stream_and_container_metrics(&platform);
    dropsonde_decodes_recent_logs(&platform);
    dropsonde_decodes_the_streams(&platform);
    drains::a_syslog_drain_gets_the_apps_lines(&platform);
    drains::the_firehose_cli_prints_the_stream(&platform);
    inside_an_instance(&platform);
    crash_and_replace(&platform);
    out_of_memory(&platform);
    scale_to_three(&platform, &work);
    a_plugin_lists_the_apps(&platform, &work);
    a_task_runs_once(&platform);
    placement_by_capacity(&platform);
    rolling::rolling_deploys_drop_nothing(&platform, &work);
    routes_map_and_unmap(&platform);
    tcp_routes::a_tcp_route_carries_raw_bytes(&platform, &work);
    slow_start_gets_no_traffic(&platform, &work);
    bad_input_changes_nothing(&platform, &work);

    assert!(
        !leftovers(&home).is_empty(),
        "running apps should have mounts, netns, veths and cgroups"
    );
    platform.restart();
    for (host, expected) in [
        ("site.apps.localhost", "Hello from a static site"),
        ("pipapp.apps.localhost", "hello from a wheel"),
        ("custom.apps.localhost", "custom buildpack app"),
    ] {
        let body = platform.wait_for_app(host, "/");
        assert!(body.contains(expected), "{host} after restart: {body}");
    }

    // A kill -9 loses nothing acknowledged: the next boot clears what the
    // dead platform left and brings the same apps back.
    platform.kill_and_restart();
    for host in [
        "site.apps.localhost",
        "urlbp.apps.localhost",
        "probe.apps.localhost",
    ] {
        platform.wait_for_app(host, "/");
    }
    let app = platform.cli(&["app", "probe"]);
    assert!(app.contains("running"), "{app}");

    for app in [
        "site", "pysite", "probe", "pipapp", "custom", "urlbp", "slow",
    ] {
        platform.cli(&["delete", app, "-f"]);
    }
    platform.stop();
    drop(database);
    drop(db_address);
    let left = leftovers(&home);
    assert!(
        left.is_empty(),
        "left behind after stopping:\n{}",
        left.join("\n")
    );

    let system_home = tmp.path().join("system-home");
    system_domain::the_router_serves_the_platform_by_name(&system_home);
    let left = leftovers(&system_home);
    assert!(left.is_empty(), "left behind:\n{}", left.join("\n"));
}

fn push_static_site(platform: &Platform) {
    let out = platform.cli(&[
        "push",
        "site",
        "-p",
        fixture("static-site").to_str().expect("utf-8"),
    ]);
    assert!(
        out.contains("site.apps.localhost"),
        "push should end with the app's route:\n{out}"
    );
    let body = platform.wait_for_app("site.apps.localhost", "/");
    assert!(body.contains("Hello from a static site on Ingot"), "{body}");
    let (status, _) = platform.get_app("site.apps.localhost", "/missing.html");
    assert_eq!(status, 404);

    // The same app over HTTPS: SNI picks the platform's self-signed
    // certificate for the app domain, which the platform wrote to its home.
    let pem =
        std::fs::read(platform.home.join("router-certificate.pem")).expect("router certificate");
    let client = reqwest::blocking::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&pem).expect("PEM"))
        .resolve("site.apps.localhost", platform.router_tls)
        .build()
        .expect("TLS client");
    let url = format!(
        "https://site.apps.localhost:{}/",
        platform.router_tls.port()
    );
    let response = client
        .get(url)
        .send()
        .expect("HTTPS request through the router");
    assert_eq!(response.status().as_u16(), 200);
    assert!(response
        .text()
        .expect("body")
        .contains("Hello from a static site"));
}

/// The same push flow, driven over HTTP by the PyPI `cloudfoundry-client`
/// library instead of by `ingot`.
fn push_with_an_independent_client(platform: &Platform, work: &Path) {
    let python = std::env::var("INGOT_TEST_PYTHON").expect(
        "INGOT_TEST_PYTHON names a python with cloudfoundry-client installed; scripts/test.sh sets it up",
    );
    let zip_path = work.join("site.zip");
    support::zip_dir(&fixture("static-site"), &zip_path);
    let credentials: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(platform.home.join("admin-credentials.json"))
            .expect("admin credentials"),
    )
    .expect("credentials JSON");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/e2e/cf_python_push.py");
    let out = Command::new(python)
        .arg(script)
        .arg(&platform.api_url)
        .arg(credentials["username"].as_str().expect("username"))
        .arg(credentials["password"].as_str().expect("password"))
        .arg("pysite")
        .arg(&zip_path)
        .arg(platform.router.to_string())
        .arg("apps.localhost")
        .output()
        .expect("run the cloudfoundry-client push");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("Hello from a static site"),
        "cloudfoundry-client push failed ({}):\n{stdout}\n{}\n--- platform log ---\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr),
        platform.log_text()
    );
}

fn push_probe(platform: &Platform, work: &Path, egress: &support::EgressServer) {
    let dir = work.join("probe");
    copy_dir(&fixture("probe"), &dir);
    let manifest = format!(
        "applications:\n- name: probe\n  memory: 128M\n  env:\n    EGRESS_URL: {}\n    PLATFORM_HOME: {}\n",
        egress.url(),
        platform.home.display()
    );
    std::fs::write(dir.join("manifest.yml"), manifest).expect("manifest");
    platform.cli(&[
        "push",
        "probe",
        "-p",
        dir.to_str().expect("utf-8"),
        "-f",
        dir.join("manifest.yml").to_str().expect("utf-8"),
    ]);
    platform.wait_for_app("probe.apps.localhost", "/");
}

fn push_pip_app(platform: &Platform, work: &Path) {
    let dir = work.join("pipapp");
    std::fs::create_dir_all(dir.join("vendor")).expect("vendor dir");
    std::fs::copy(fixture("pip-app").join("app.py"), dir.join("app.py")).expect("app.py");
    std::fs::copy(
        fixture("pip-app").join("requirements.txt"),
        dir.join("requirements.txt"),
    )
    .expect("requirements");
    support::build_wheel(&fixture("pip-app").join("pkg"), &dir.join("vendor"));
    platform.cli(&["push", "pipapp", "-p", dir.to_str().expect("utf-8")]);
    let body = platform.wait_for_app("pipapp.apps.localhost", "/");
    assert_eq!(body, "hello from a wheel installed at staging");
}

fn push_custom_buildpack_app(platform: &Platform) {
    platform.cli(&[
        "push",
        "custom",
        "-p",
        fixture("custom-app").to_str().expect("utf-8"),
        "-b",
        fixture("custom-buildpack").to_str().expect("utf-8"),
    ]);
    let body = platform.wait_for_app("custom.apps.localhost", "/");
    assert_eq!(body, "custom buildpack app / set by .profile.d");

    // The droplet has Cloud Foundry's layout.
    let guid = platform.app_guid("custom");
    let (_, droplet) = platform.api("GET", &format!("/v3/apps/{guid}/droplets/current"), None);
    let droplet_guid = droplet["guid"]
        .as_str()
        .expect("current droplet")
        .to_string();
    let tgz = platform
        .home
        .join("blobs")
        .join("droplets")
        .join(format!("{droplet_guid}.tgz"));
    let listing = Command::new("tar")
        .arg("tzf")
        .arg(&tgz)
        .output()
        .expect("tar");
    let listing = String::from_utf8_lossy(&listing.stdout);
    for entry in [
        "app/greeting.txt",
        "app/.profile.d/greeting.sh",
        "deps/0/bin/greet",
        "staging_info.yml",
        "profile.d/",
    ] {
        let present = listing
            .lines()
            .any(|line| line.trim_start_matches("./") == entry);
        assert!(present, "droplet lacks {entry}:\n{listing}");
    }
}

/// `-b URL`: the cell downloads the zip and runs it through the same contract.
fn push_with_a_buildpack_url(platform: &Platform, work: &Path) {
    let served = work.join("served");
    std::fs::create_dir_all(&served).expect("served dir");
    support::zip_tree(
        &fixture("custom-buildpack"),
        &served.join("greeting-buildpack.zip"),
    );
    let server = support::FileServer::start(&served);
    let url = format!("http://127.0.0.1:{}/greeting-buildpack.zip", server.port);
    platform.cli(&[
        "push",
        "urlbp",
        "-p",
        fixture("custom-app").to_str().expect("utf-8"),
        "-b",
        &url,
    ]);
    let body = platform.wait_for_app("urlbp.apps.localhost", "/");
    assert_eq!(body, "custom buildpack app / set by .profile.d");
}

fn recent_logs(platform: &Platform) {
    let (status, _) = platform.get_app("probe.apps.localhost", "/logged-request");
    assert_eq!(status, 200);
    let mut logs = String::new();
    platform.wait_for(
        "the RTR line of the request just made",
        Duration::from_secs(10),
        || {
            logs = platform.cli(&["logs", "probe", "--recent"]);
            logs.contains("[RTR/") && logs.contains("/logged-request")
        },
    );
    assert!(
        logs.contains("[STG/"),
        "staging lines in recent logs:\n{logs}"
    );
    assert!(
        logs.contains("[APP/PROC/WEB/0]") && logs.contains("probe starting on port"),
        "app output:\n{logs}"
    );
}

/// The RLP gateway streams an app's logs as they happen, and the cell's
/// container metrics reach log-cache as gauges.
fn log_stream_and_container_metrics(platform: &Platform) {
    use base64::Engine;
    use std::io::BufRead;
    let guid = platform.app_guid("probe");
    let response = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client")
        .get(format!(
            "{}/log-stream/v2/read?log&source_id={guid}",
            platform.api_url
        ))
        .bearer_auth(platform.token())
        .send()
        .expect("open the log stream");
    assert_eq!(response.status().as_u16(), 200);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let requests = {
        let (stop, router) = (stop.clone(), platform.router);
        std::thread::spawn(move || {
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                let _ = platform::http_get(router, "probe.apps.localhost", "/streamed-request");
                std::thread::sleep(Duration::from_millis(200));
            }
        })
    };
    let mut seen = false;
    for line in std::io::BufReader::new(response).lines() {
        let Ok(line) = line else { break };
        let Some(data) = line.strip_prefix("data: ") else {
            continue;
        };
        let batch: serde_json::Value = serde_json::from_str(data).expect("SSE data is JSON");
        let payloads = batch["batch"].as_array().cloned().unwrap_or_default();
        seen = payloads.iter().any(|envelope| {
            envelope["log"]["payload"]
                .as_str()
                .and_then(|p| base64::engine::general_purpose::STANDARD.decode(p).ok())
                .is_some_and(|p| String::from_utf8_lossy(&p).contains("/streamed-request"))
        });
        if seen {
            break;
        }
    }
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    requests.join().expect("request thread");
    assert!(seen, "the RTR line of a request arrived on the log stream");

    platform.wait_for(
        "a container metrics gauge for the probe",
        Duration::from_secs(30),
        || {
            let (_, read) = platform.api(
                "GET",
                &format!("/log-cache/api/v1/read/{guid}?envelope_types=GAUGE"),
                None,
            );
            read["envelopes"]["batch"].as_array().is_some_and(|batch| {
                batch.iter().any(|e| {
                    let metrics = &e["gauge"]["metrics"];
                    metrics["memory"]["value"].as_f64().is_some_and(|m| m > 0.0)
                        && metrics["log_rate"]["unit"] == "B/s"
                        && metrics["log_rate_limit"]["value"].as_f64() == Some(-1.0)
                })
            })
        },
    );
}

/// `map-route` sends a second host name to an app, `routes` shows it, and
/// `unmap-route` and `delete-route` take it away again.
fn routes_map_and_unmap(platform: &Platform) {
    let host = "probe-alias.apps.localhost";
    assert_eq!(platform.get_app(host, "/").0, 404);
    platform.cli(&[
        "map-route",
        "probe",
        "apps.localhost",
        "--hostname",
        "probe-alias",
    ]);
    platform.wait_for_app(host, "/");
    let routes = platform.cli(&["routes"]);
    assert!(
        routes
            .lines()
            .any(|l| l.contains("probe-alias.apps.localhost") && l.contains("probe")),
        "{routes}"
    );
    platform.cli(&[
        "unmap-route",
        "probe",
        "apps.localhost",
        "--hostname",
        "probe-alias",
    ]);
    platform.wait_for(
        "the alias to stop reaching the app",
        Duration::from_secs(30),
        || platform.get_app(host, "/").0 != 200,
    );
    platform.cli(&[
        "delete-route",
        "apps.localhost",
        "--hostname",
        "probe-alias",
        "-f",
    ]);
    platform.wait_for(
        "the alias route to be gone",
        Duration::from_secs(30),
        || platform.get_app(host, "/").0 == 404,
    );
    let domains = platform.cli(&["domains"]);
    assert!(domains.contains("apps.localhost"), "{domains}");
}

/// The traffic controller's websockets, `/apps/:guid/stream` and
/// `/firehose/:subscription_id`, decoded frame by frame by the PyPI
/// `dropsonde` package while the app is being called.
fn dropsonde_decodes_the_streams(platform: &Platform) {
    let python =
        std::env::var("INGOT_TEST_PYTHON").expect("INGOT_TEST_PYTHON (scripts/test.sh sets it up)");
    let guid = platform.app_guid("probe");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/e2e/dropsonde_stream.py");
    let ws = platform.api_url.replacen("http", "ws", 1);
    let token = platform.token();
    for (endpoint, marker) in [
        (format!("{ws}/doppler/apps/{guid}/stream"), "/stream-marker"),
        (
            format!("{ws}/doppler/firehose/e2e-nozzle"),
            "/firehose-marker",
        ),
    ] {
        let mut reader = Command::new(&python)
            .arg(&script)
            .args([endpoint.as_str(), token.as_str(), marker])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("run the dropsonde stream check");
        platform.wait_for(
            &format!("{endpoint} to carry {marker}"),
            Duration::from_secs(30),
            || {
                platform.get_app("probe.apps.localhost", marker);
                reader.try_wait().expect("wait").is_some()
            },
        );
        let out = reader.wait_with_output().expect("output");
        assert!(
            out.status.success(),
            "{endpoint}: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// The legacy traffic controller endpoint, decoded by the PyPI `dropsonde`
/// package.
fn dropsonde_decodes_recent_logs(platform: &Platform) {
    let python =
        std::env::var("INGOT_TEST_PYTHON").expect("INGOT_TEST_PYTHON (scripts/test.sh sets it up)");
    let guid = platform.app_guid("probe");
    let (status, _) = platform.get_app("probe.apps.localhost", "/dropsonde-marker");
    assert_eq!(status, 200);
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/e2e/dropsonde_recent.py");
    let mut out = None;
    platform.wait_for(
        "the marker in the decoded recent logs",
        Duration::from_secs(20),
        || {
            let run = Command::new(&python)
                .arg(&script)
                .args([
                    platform.api_url.as_str(),
                    platform.token().as_str(),
                    guid.as_str(),
                    "/dropsonde-marker",
                ])
                .output()
                .expect("run the dropsonde check");
            let ok = run.status.success();
            if !ok {
                eprintln!(
                    "dropsonde check: {}\n{}",
                    String::from_utf8_lossy(&run.stdout),
                    String::from_utf8_lossy(&run.stderr)
                );
            }
            out = Some(run);
            ok
        },
    );
    let out = out.expect("ran");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("RTR"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

fn probe_report(platform: &Platform) -> serde_json::Value {
    let body = platform.wait_for_app("probe.apps.localhost", "/");
    serde_json::from_str(&body).unwrap_or_else(|err| panic!("probe answered {body:?}: {err}"))
}

fn inside_an_instance(platform: &Platform) {
    let report = probe_report(platform);
    assert_eq!(report["uid"], 2000, "{report}");
    assert_eq!(report["usr_writable"], false, "{report}");
    assert_eq!(report["shadow_exists"], false, "{report}");
    assert_eq!(report["root_exists"], false, "{report}");
    assert_eq!(report["platform_home_exists"], false, "{report}");
    assert_eq!(
        report["hostname"], report["guid"],
        "hostname is the instance guid: {report}"
    );
    let processes = report["processes"].as_array().expect("processes");
    assert!(
        processes.iter().all(|p| p.as_str().is_some_and(|p| {
            p.contains("python")
                || p.starts_with("/tmp/lifecycle/ingot lifecycle launcher")
                || p.is_empty()
        })),
        "only the app's processes (and its launcher, pid 1) are visible: {report}"
    );
    assert_eq!(
        report["egress"],
        support::GREETING,
        "egress to a server in another netns: {report}"
    );
    assert_eq!(
        report["vcap_application"]["application_name"], "probe",
        "{report}"
    );
}

fn stats(platform: &Platform, app: &str) -> Vec<serde_json::Value> {
    let guid = platform.app_guid(app);
    let (_, stats) = platform.api("GET", &format!("/v3/apps/{guid}/processes/web/stats"), None);
    stats["resources"].as_array().cloned().unwrap_or_default()
}

fn instance_guids(platform: &Platform, app: &str) -> Vec<(u64, String, String)> {
    let guid = platform.app_guid(app);
    let (_, stats) = platform.api("GET", &format!("/v3/apps/{guid}/processes/web/stats"), None);
    stats["resources"]
        .as_array()
        .map(|all| {
            all.iter()
                .map(|r| {
                    (
                        r["index"].as_u64().unwrap_or(0),
                        r["state"].as_str().unwrap_or("").to_string(),
                        r["instance_guid"].as_str().unwrap_or("").to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The host pid of the app process whose environment names `instance_guid`.
fn app_pid(instance_guid: &str) -> Option<i32> {
    let needle = format!("CF_INSTANCE_GUID={instance_guid}");
    std::fs::read_dir("/proc")
        .ok()?
        .flatten()
        .find_map(|entry| {
            let pid: i32 = entry.file_name().to_str()?.parse().ok()?;
            let environ = std::fs::read(entry.path().join("environ")).ok()?;
            let cmdline = std::fs::read(entry.path().join("cmdline")).ok()?;
            let is_app = String::from_utf8_lossy(&cmdline).contains("python");
            environ
                .split(|b| *b == 0)
                .any(|var| var == needle.as_bytes())
                .then_some(pid)
                .filter(|_| is_app)
        })
}

fn crash_events(platform: &Platform, app: &str) -> Vec<String> {
    let guid = platform.app_guid(app);
    let (_, events) = platform.api(
        "GET",
        &format!("/v3/audit_events?types=audit.app.process.crash&target_guids={guid}"),
        None,
    );
    events["resources"]
        .as_array()
        .map(|all| {
            all.iter()
                .map(|e| {
                    e["data"]["exit_description"]
                        .as_str()
                        .unwrap_or("")
                        .to_string()
                })
                .collect()
        })
        .unwrap_or_default()
}

fn crash_and_replace(platform: &Platform) {
    let before = probe_report(platform);
    let old_guid = before["guid"].as_str().expect("instance guid").to_string();
    let pid = app_pid(&old_guid).expect("the probe's process on the host");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("kill");
    platform.wait_for(
        "a crash event for the killed instance",
        Duration::from_secs(30),
        || !crash_events(platform, "probe").is_empty(),
    );
    let events = crash_events(platform, "probe");
    assert!(
        events
            .iter()
            .any(|e| e.contains("Exited with status 137") && !e.contains("out of memory")),
        "{events:?}"
    );
    let mut after = serde_json::Value::Null;
    platform.wait_for("a new instance to answer", Duration::from_secs(120), || {
        after = probe_report(platform);
        after["guid"].as_str().is_some_and(|g| g != old_guid)
    });
}

fn out_of_memory(platform: &Platform) {
    let before = probe_report(platform);
    let old_guid = before["guid"].as_str().expect("instance guid").to_string();
    let _ = platform.get_app("probe.apps.localhost", "/oom");
    platform.wait_for(
        "an out-of-memory crash event",
        Duration::from_secs(60),
        || {
            crash_events(platform, "probe")
                .iter()
                .any(|e| e.contains("(out of memory)"))
        },
    );
    platform.wait_for(
        "a new instance after the OOM kill",
        Duration::from_secs(120),
        || {
            probe_report(platform)["guid"]
                .as_str()
                .is_some_and(|g| g != old_guid)
        },
    );
}

fn scale_to_three(platform: &Platform, work: &Path) {
    platform.cli(&["scale", "probe", "-i", "3"]);
    platform.wait_for("three RUNNING instances", Duration::from_secs(120), || {
        let instances = instance_guids(platform, "probe");
        instances.len() == 3 && instances.iter().all(|(_, state, _)| state == "RUNNING")
    });
    let mut seen = BTreeSet::new();
    for _ in 0..30 {
        if let Some(index) = probe_report(platform)["index"].as_str() {
            seen.insert(index.to_string());
        }
    }
    assert_eq!(
        seen,
        ["0", "1", "2"].into_iter().map(String::from).collect(),
        "round robin reaches every instance"
    );
    let app = platform.cli(&["app", "probe"]);
    assert!(
        app.matches("running").count() >= 3 || app.matches("RUNNING").count() >= 3,
        "{app}"
    );
    ssh::ssh_into_instances(platform, work);
    platform.cli(&["scale", "probe", "-i", "1"]);
    platform.wait_for(
        "scaled back to one instance",
        Duration::from_secs(60),
        || instance_guids(platform, "probe").len() == 1,
    );
}

/// An executable `ingot-NAME` on `PATH` runs as `ingot NAME` with the API
/// URL, a token and the target in its environment.
fn a_plugin_lists_the_apps(platform: &Platform, work: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let dir = work.join("plugins");
    std::fs::create_dir_all(&dir).expect("plugin dir");
    let plugin = dir.join("ingot-list-apps");
    // A shell script that knows only its environment: the API URL, a token,
    // and the targeted org and space.
    std::fs::write(
        &plugin,
        "#!/bin/sh\n\
         set -e\n\
         names=$(busybox wget -q -O - --header \"Authorization: bearer $INGOT_TOKEN\" \\\n\
         \x20   \"$INGOT_API_URL/v3/apps?space_guids=$INGOT_SPACE_GUID&per_page=5000\" \\\n\
         \x20   | grep -o '\"name\":\"[^\"]*\"' | cut -d'\"' -f4 | sort | tr '\\n' ' ')\n\
         echo \"$INGOT_ORG $INGOT_SPACE $names\"\n",
    )
    .expect("write plugin");
    std::fs::set_permissions(&plugin, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let path = format!(
        "{}:{}",
        dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = Command::new(env!("CARGO_BIN_EXE_ingot"))
        .arg("list-apps")
        .env("INGOT_CLI_HOME", &platform.cli_home)
        .env("PATH", path)
        .output()
        .expect("run the plugin");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "plugin failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.starts_with("main dev ") && stdout.contains("probe"),
        "{stdout}"
    );
}

/// `run-task`: one container from the app's droplet, its output tagged
/// `APP/TASK/<name>`, its exit status as the failure reason.
fn a_task_runs_once(platform: &Platform) {
    platform.cli(&["run-task", "probe", "echo task-ran; exit 3", "--name", "t1"]);
    let guid = platform.app_guid("probe");
    let mut task = serde_json::Value::Null;
    platform.wait_for("the task to finish", Duration::from_secs(60), || {
        task = platform
            .api("GET", &format!("/v3/apps/{guid}/tasks?names=t1"), None)
            .1["resources"][0]
            .clone();
        task["state"] == "FAILED" || task["state"] == "SUCCEEDED"
    });
    assert_eq!(task["state"], "FAILED", "{task}");
    assert_eq!(
        task["result"]["failure_reason"], "Exited with status 3",
        "{task}"
    );
    let mut logs = String::new();
    platform.wait_for(
        "the task's output in the logs",
        Duration::from_secs(10),
        || {
            logs = platform.cli(&["logs", "probe", "--recent"]);
            logs.contains("[APP/TASK/t1/0]") && logs.contains("task-ran")
        },
    );
    let tasks = platform.cli(&["tasks", "probe"]);
    assert!(tasks.contains("t1") && tasks.contains("FAILED"), "{tasks}");
}

/// What does not fit on the cell waits, with CF's reason: an instance
/// asking for more memory than the machine has is `DOWN` with
/// `insufficient resources: memory` until it asks for less; such a task
/// fails with that reason.
fn placement_by_capacity(platform: &Platform) {
    let guid = platform.app_guid("probe");
    let (_, web) = platform.api("GET", &format!("/v3/apps/{guid}/processes/web"), None);
    let process = web["guid"].as_str().expect("process").to_string();
    let memory = web["memory_in_mb"].as_u64().expect("memory");
    let huge = 64 * 1024 * 1024; // 64 TiB, more than any test machine
    let scale = |mb: u64| {
        let (status, body) = platform.api(
            "POST",
            &format!("/v3/processes/{process}/actions/scale"),
            Some(serde_json::json!({"memory_in_mb": mb})),
        );
        assert!(status < 300, "{body}");
    };
    let stats = || {
        platform
            .api("GET", &format!("/v3/processes/{process}/stats"), None)
            .1["resources"][0]
            .clone()
    };
    // First the organization's quota refuses it, with CF's words, and
    // nothing changes; the operator lifts the limit.
    let (status, body) = platform.api(
        "POST",
        &format!("/v3/processes/{process}/actions/scale"),
        Some(serde_json::json!({"memory_in_mb": huge})),
    );
    assert_eq!(status, 422, "{body}");
    assert!(body.to_string().contains("memory quota_exceeded"), "{body}");
    let quota = platform.cli(&["org-quota", "default"]);
    assert!(quota.contains("default"), "{quota}");
    platform.cli(&["update-org-quota", "default", "-m", "-1"]);
    scale(huge);
    platform.wait_for(
        "the instance to be unplaced",
        Duration::from_secs(60),
        || {
            let s = stats();
            s["state"] == "DOWN" && s["details"] == "insufficient resources: memory"
        },
    );
    scale(memory);
    platform.wait_for("the instance to run again", Duration::from_secs(60), || {
        stats()["state"] == "RUNNING"
    });
    let (status, task) = platform.api(
        "POST",
        &format!("/v3/apps/{guid}/tasks"),
        Some(serde_json::json!({"command": "true", "memory_in_mb": huge})),
    );
    assert!(status < 300, "{task}");
    let task_guid = task["guid"].as_str().expect("task guid").to_string();
    let mut task = serde_json::Value::Null;
    platform.wait_for(
        "the oversized task to fail",
        Duration::from_secs(30),
        || {
            task = platform
                .api("GET", &format!("/v3/tasks/{task_guid}"), None)
                .1;
            task["state"] == "FAILED"
        },
    );
    assert_eq!(
        task["result"]["failure_reason"], "insufficient resources: memory",
        "{task}"
    );
}

fn slow_start_gets_no_traffic(platform: &Platform, work: &Path) {
    let dir = work.join("slow");
    copy_dir(&fixture("slow-app"), &dir);
    let mut push = Command::new(env!("CARGO_BIN_EXE_ingot"))
        .args(["push", "slow", "-p", dir.to_str().expect("utf-8")])
        .env("INGOT_CLI_HOME", &platform.cli_home)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("push slow");
    let mut saw_starting_without_traffic = false;
    platform.wait_for(
        "the slow app's push to finish",
        Duration::from_secs(180),
        || {
            // Only well inside the 10 s the app sleeps, so that the instance
            // cannot turn healthy between reading its state and the request.
            let exists = platform.api("GET", "/v3/apps?names=slow", None).1["resources"][0]["guid"]
                .as_str()
                .is_some();
            let starting = exists
                && stats(platform, "slow").iter().any(|r| {
                    r["state"] == "STARTING" && r["uptime"].as_u64().is_some_and(|up| up < 7)
                });
            if starting {
                let (status, _) = platform.get_app("slow.apps.localhost", "/");
                assert_ne!(status, 200, "a STARTING instance must get no traffic");
                saw_starting_without_traffic = true;
            }
            push.try_wait().expect("wait push").is_some()
        },
    );
    assert!(
        saw_starting_without_traffic,
        "the slow app was never seen STARTING"
    );
    assert_eq!(
        platform.wait_for_app("slow.apps.localhost", "/"),
        "slow app ready"
    );
}

fn bad_input_changes_nothing(platform: &Platform, work: &Path) {
    let client = reqwest::blocking::Client::new();
    // No token, a garbage token.
    let response = client
        .get(format!("{}/v3/apps", platform.api_url))
        .send()
        .expect("request");
    assert_eq!(response.status().as_u16(), 401);
    let body: serde_json::Value = response.json().expect("json");
    assert_eq!(body["errors"][0]["code"], 10002, "{body}");
    let response = client
        .get(format!("{}/v3/apps", platform.api_url))
        .bearer_auth("not-a-token")
        .send()
        .expect("request");
    assert_eq!(response.status().as_u16(), 401);
    let body: serde_json::Value = response.json().expect("json");
    assert_eq!(body["errors"][0]["code"], 1000, "{body}");
    // An expired token signed with the platform's own key.
    let expired = support::expired_token(&platform.home, &platform.api_url);
    let response = client
        .get(format!("{}/v3/apps", platform.api_url))
        .bearer_auth(expired)
        .send()
        .expect("request");
    assert_eq!(response.status().as_u16(), 401);
    let body: serde_json::Value = response.json().expect("json");
    assert_eq!(body["errors"][0]["code"], 1000, "{body}");

    // A duplicate app name.
    let (_, space) = platform.api("GET", "/v3/spaces?names=dev", None);
    let space_guid = space["resources"][0]["guid"]
        .as_str()
        .expect("space")
        .to_string();
    let (status, body) = platform.api(
        "POST",
        "/v3/apps",
        Some(serde_json::json!({"name": "probe", "relationships": {"space": {"data": {"guid": space_guid}}}})),
    );
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["errors"][0]["code"], 10016, "{body}");

    // An unknown buildpack.
    let err = platform.cli_fails(&[
        "push",
        "probe",
        "-p",
        work.join("probe").to_str().expect("utf-8"),
        "-b",
        "no_such_buildpack",
    ]);
    assert!(err.contains("no_such_buildpack"), "{err}");

    // Hostile and corrupt packages end FAILED and the running app is untouched.
    let app_guid = platform.app_guid("probe");
    for (name, zip) in support::hostile_zips(work) {
        let (status, package) = platform.api(
            "POST",
            "/v3/packages",
            Some(serde_json::json!({"type": "bits", "relationships": {"app": {"data": {"guid": app_guid}}}})),
        );
        assert_eq!(status, 201, "{package}");
        let package_guid = package["guid"].as_str().expect("package guid").to_string();
        let form = reqwest::blocking::multipart::Form::new()
            .file("bits", &zip)
            .expect("zip file")
            .text("resources", "[]");
        let response = client
            .post(format!(
                "{}/v3/packages/{package_guid}/upload",
                platform.api_url
            ))
            .bearer_auth(platform.token())
            .multipart(form)
            .send()
            .expect("upload");
        let accepted = response.status().is_success();
        let mut state = String::new();
        platform.wait_for(
            &format!("the {name} package to fail"),
            Duration::from_secs(30),
            || {
                state = platform
                    .api("GET", &format!("/v3/packages/{package_guid}"), None)
                    .1["state"]
                    .as_str()
                    .unwrap_or("")
                    .to_string();
                !accepted || state == "FAILED" || state == "READY"
            },
        );
        assert!(
            !accepted || state == "FAILED",
            "{name}: package ended {state}"
        );
    }
    let report = probe_report(platform);
    assert_eq!(
        report["uid"], 2000,
        "the probe still answers after bad uploads"
    );
}
