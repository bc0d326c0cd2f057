//! `--system-domain`: the router serves the platform itself by host name
//! (the API at `api.D`, the token server at `uaa.D`, log-cache at
//! `log-cache.D`), and `/` links to those names, as on Cloud Foundry behind
//! wildcard DNS.

use std::path::Path;

use crate::platform::Platform;

/// Boots its own platform (the main one must be stopped: they share the
/// host prefix).
pub fn the_router_serves_the_platform_by_name(home: &Path) {
    let mut platform = Platform::start_with(home, &["--system-domain", "sys.test", "--no-login"]);
    let port = platform.router.port();
    let client = reqwest::blocking::Client::new();
    let via_router = |host: &str, path: &str| {
        client
            .get(format!("http://{}{path}", platform.router))
            .header("Host", host)
    };

    let root: serde_json::Value = via_router("api.sys.test", "/")
        .send()
        .expect("GET / through the router")
        .json()
        .expect("root JSON");
    assert_eq!(
        root["links"]["uaa"]["href"],
        format!("http://uaa.sys.test:{port}"),
        "{root}"
    );
    assert_eq!(
        root["links"]["log_cache"]["href"],
        format!("http://log-cache.sys.test:{port}")
    );
    assert_eq!(
        root["links"]["cloud_controller_v3"]["href"],
        format!("http://api.sys.test:{port}/v3")
    );
    assert!(
        root["links"]["app_ssh"]["href"]
            .as_str()
            .is_some_and(|h| h.starts_with("ssh.sys.test:")),
        "{root}"
    );

    // The token server answers at uaa.D, and its token works at api.D.
    let credentials: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(home.join("admin-credentials.json")).expect("credentials"),
    )
    .expect("JSON");
    let token: serde_json::Value = client
        .post(format!("http://{}/oauth/token", platform.router))
        .header("Host", "uaa.sys.test")
        .basic_auth("cf", Some(""))
        .form(&[
            ("grant_type", "password"),
            (
                "username",
                credentials["username"].as_str().expect("username"),
            ),
            (
                "password",
                credentials["password"].as_str().expect("password"),
            ),
        ])
        .send()
        .expect("token through the router")
        .json()
        .expect("token JSON");
    let token = token["access_token"]
        .as_str()
        .expect("access_token")
        .to_string();
    let orgs = via_router("api.sys.test", "/v3/organizations")
        .bearer_auth(&token)
        .send()
        .expect("orgs");
    assert_eq!(orgs.status().as_u16(), 200);
    let info = via_router("log-cache.sys.test", "/api/v1/info")
        .send()
        .expect("log-cache info");
    assert_eq!(info.status().as_u16(), 200);
    let info: serde_json::Value = info.json().expect("info JSON");
    assert!(info["version"].is_string(), "{info}");
    // An unknown name under the domain is still the router's 404.
    let unknown = via_router("nothing.sys.test", "/").send().expect("unknown");
    assert_eq!(unknown.status().as_u16(), 404);
    platform.stop();
}
