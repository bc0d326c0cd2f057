//! Application security groups as an operator uses them: by default an
//! instance reaches neither private networks nor the host; a group bound
//! to its space opens exactly what it lists, in the running container, with
//! no restart; unbinding closes it again.

use std::net::TcpListener;
use std::path::Path;
use std::time::Duration;

use crate::platform::Platform;

/// What the probe app says when it connects to `host:port` from inside.
fn connect(platform: &Platform, host: &str, port: u16) -> String {
    let (status, body) = platform.get_app(
        "probe.apps.localhost",
        &format!("/connect?host={host}&port={port}"),
    );
    assert_eq!(status, 200, "{body}");
    body
}

fn instance_guid(platform: &Platform) -> String {
    let (_, body) = platform.get_app("probe.apps.localhost", "/");
    let report: serde_json::Value = serde_json::from_str(&body).expect("probe report");
    report["guid"].as_str().expect("guid").to_string()
}

/// `egress_host:egress_port` is a server in a network namespace of the
/// test's own, on a private address.
pub fn egress_follows_security_groups(
    platform: &Platform,
    work: &Path,
    egress_host: &str,
    egress_port: u16,
) {
    let before = instance_guid(platform);
    // The host, through its address on the container bridge.
    let host_listener = TcpListener::bind("0.0.0.0:0").expect("bind a host port");
    let host_port = host_listener.local_addr().expect("addr").port();
    let gateway = crate::platform::SUBNET.replace("0/24", "1");

    let refused = connect(platform, egress_host, egress_port);
    assert_ne!(
        refused, "connected",
        "a private address is closed by default"
    );
    let host = connect(platform, &gateway, host_port);
    assert_ne!(host, "connected", "the host is closed by default");

    let rules = work.join("egress-rules.json");
    std::fs::write(
        &rules,
        format!(
            r#"[{{"protocol":"tcp","destination":"{egress_host}","ports":"{egress_port}","description":"the e2e egress server"}}]"#
        ),
    )
    .expect("write rules");
    platform.cli(&[
        "create-security-group",
        "e2e-egress",
        rules.to_str().expect("utf-8"),
    ]);
    let listed = platform.cli(&["security-groups"]);
    assert!(listed.contains("e2e-egress"), "{listed}");
    platform.cli(&[
        "bind-security-group",
        "e2e-egress",
        "main",
        "--space",
        "dev",
    ]);
    platform.wait_for(
        "the group to open the port",
        Duration::from_secs(30),
        || connect(platform, egress_host, egress_port) == "connected",
    );
    assert_eq!(
        instance_guid(platform),
        before,
        "the running instance got the rules without a restart"
    );
    assert_ne!(
        connect(platform, egress_host, egress_port + 1),
        "connected",
        "only the listed port opens"
    );
    assert_ne!(connect(platform, &gateway, host_port), "connected");

    platform.cli(&["unbind-security-group", "e2e-egress", "main", "dev"]);
    platform.wait_for(
        "the unbinding to close the port",
        Duration::from_secs(30),
        || connect(platform, egress_host, egress_port) != "connected",
    );
    // Bound again for the rest of the scenario (the probe's egress check).
    platform.cli(&[
        "bind-security-group",
        "e2e-egress",
        "main",
        "--space",
        "dev",
    ]);
    platform.wait_for(
        "the group to open the port",
        Duration::from_secs(30),
        || connect(platform, egress_host, egress_port) == "connected",
    );
    drop(host_listener);
}
