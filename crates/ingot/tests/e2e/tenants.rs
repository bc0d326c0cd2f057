//! Several users on one platform: accounts made with the CLI, roles that
//! decide what each sees and may change, and logs only for those with a
//! role in the app's space.

use std::path::Path;

use crate::platform::Platform;

/// An HTTP GET with a bearer token: (status, body).
fn get_with(url: &str, token: &str) -> (u16, serde_json::Value) {
    let response = reqwest::blocking::Client::new()
        .get(url)
        .bearer_auth(token)
        .send()
        .expect("request");
    let status = response.status().as_u16();
    let text = response.text().unwrap_or_default();
    (
        status,
        serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text)),
    )
}

/// Needs the app `site` running in `main`/`dev`.
pub fn roles_limit_what_users_see(platform: &Platform, work: &Path) {
    platform.cli(&["create-user", "alice", "alice-pw-1"]);
    platform.cli(&["create-user", "bob", "bob-pw-1"]);
    platform.cli(&["set-space-role", "alice", "main", "dev", "SpaceAuditor"]);
    let users = platform.cli(&["space-users", "main", "dev"]);
    assert!(
        users
            .lines()
            .any(|l| l.contains("SpaceAuditor") && l.contains("alice")),
        "{users}"
    );

    // Alice audits the space: she sees the app and its logs, and may change
    // nothing nor read its environment.
    let alice = work.join("cli-alice");
    platform.cli_in(
        &alice,
        &[
            "login",
            "-a",
            &platform.api_url,
            "-u",
            "alice",
            "-p",
            "alice-pw-1",
        ],
    );
    let apps = platform.cli_in(&alice, &["apps"]);
    assert!(apps.contains("site"), "{apps}");
    let refused = platform.cli_fails_in(&alice, &["scale", "site", "-i", "2"]);
    assert!(refused.contains("not authorized"), "{refused}");
    let refused = platform.cli_fails_in(&alice, &["env", "site"]);
    assert!(refused.contains("not authorized"), "{refused}");
    let logs = platform.cli_in(&alice, &["logs", "site", "--recent"]);
    assert!(logs.contains("[STG/"), "{logs}");
    let (_, site) = platform.api("GET", "/v3/apps?names=site", None);
    assert_eq!(
        site["resources"][0]["state"], "STARTED",
        "the refused scale changed nothing"
    );

    // Bob has no role: nothing is visible, not even the app's logs.
    let bob = platform.token_for("bob", "bob-pw-1");
    let guid = platform.app_guid("site");
    let (status, apps) = get_with(&format!("{}/v3/apps", platform.api_url), &bob);
    assert_eq!(status, 200, "{apps}");
    assert_eq!(apps["pagination"]["total_results"], 0, "{apps}");
    let (status, body) = get_with(&format!("{}/v3/apps/{guid}", platform.api_url), &bob);
    assert_eq!(status, 404, "{body}");
    let (status, body) = get_with(
        &format!("{}/log-cache/api/v1/read/{guid}", platform.api_url),
        &bob,
    );
    assert_eq!(status, 403, "bob read the app's logs: {body}");
    let alice_token = platform.token_for("alice", "alice-pw-1");
    let (status, body) = get_with(
        &format!("{}/log-cache/api/v1/read/{guid}", platform.api_url),
        &alice_token,
    );
    assert_eq!(status, 200, "{body}");

    // Granting is audited, and taking the role away hides the space again.
    let (_, events) = platform.api(
        "GET",
        "/v3/audit_events?types=audit.user.space_auditor_add",
        None,
    );
    let for_alice = events["resources"]
        .as_array()
        .expect("events")
        .iter()
        .filter(|e| e["target"]["name"] == "alice")
        .count();
    assert_eq!(for_alice, 1, "{events}");
    platform.cli(&["unset-space-role", "alice", "main", "dev", "SpaceAuditor"]);
    let (_, apps) = get_with(&format!("{}/v3/apps", platform.api_url), &alice_token);
    assert_eq!(apps["pagination"]["total_results"], 0, "{apps}");
    platform.cli(&["delete-user", "bob", "-f"]);
    let response = reqwest::blocking::Client::new()
        .post(format!("{}/uaa/oauth/token", platform.api_url))
        .basic_auth("cf", Some(""))
        .form(&[
            ("grant_type", "password"),
            ("username", "bob"),
            ("password", "bob-pw-1"),
        ])
        .send()
        .expect("token request");
    assert_eq!(response.status().as_u16(), 401, "a deleted user logged in");
}
