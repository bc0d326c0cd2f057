//! SSH into app instances with the real OpenSSH client: through `ingot ssh`,
//! and directly with a one-time code from `ingot ssh-code` (and `sshpass`),
//! as `cf ssh` users and scripts do.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use crate::platform::Platform;

const SSH_OPTIONS: &[&str] = &[
    "-o",
    "StrictHostKeyChecking=no",
    "-o",
    "UserKnownHostsFile=/dev/null",
    "-o",
    "LogLevel=ERROR",
    "-o",
    "PubkeyAuthentication=no",
    "-o",
    "NumberOfPasswordPrompts=1",
];

/// `sshpass -p CODE ssh … USER@127.0.0.1 COMMAND`.
fn ssh_with_code(
    platform: &Platform,
    code: &str,
    user: &str,
    extra: &[&str],
    command: &str,
) -> Output {
    Command::new("sshpass")
        .args(["-p", code, "ssh", "-p", &platform.ssh.port().to_string()])
        .args(SSH_OPTIONS)
        .args(extra)
        .arg(format!("{user}@127.0.0.1"))
        .arg(command)
        .stdin(Stdio::null())
        .output()
        .expect("run sshpass + ssh (apt install sshpass openssh-client)")
}

fn code_in(platform: &Platform, cli_home: &Path) -> String {
    platform.cli_in(cli_home, &["ssh-code"]).trim().to_string()
}

fn text(out: &Output) -> String {
    format!(
        "status {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Needs app `probe` running with 3 instances.
pub fn ssh_into_instances(platform: &Platform, work: &Path) {
    let admin = platform.cli_home.clone();
    // Through `ingot ssh`: the host key is checked against the published
    // fingerprint, the code is fetched and handed over by the CLI.
    let out = platform.cli(&[
        "ssh",
        "probe",
        "-i",
        "1",
        "-c",
        "echo index=$CF_INSTANCE_INDEX",
    ]);
    assert!(out.contains("index=1"), "{out}");
    let exit = platform.cli_output(&["ssh", "probe", "-c", "exit 3"]);
    assert_eq!(exit.status.code(), Some(3), "{exit:?}");

    // What an instance writes counts as its disk use in stats.
    platform.cli(&[
        "ssh",
        "probe",
        "-i",
        "2",
        "-c",
        "head -c 3000000 /dev/urandom > /home/vcap/fill",
    ]);
    let guid = platform.app_guid("probe");
    platform.wait_for(
        "instance 2 to report its disk use",
        Duration::from_secs(30),
        || {
            let (_, stats) =
                platform.api("GET", &format!("/v3/apps/{guid}/processes/web/stats"), None);
            stats["resources"]
                .as_array()
                .and_then(|r| r.iter().find(|i| i["index"] == 2))
                .and_then(|i| i["usage"]["disk"].as_u64())
                .is_some_and(|disk| disk >= 3_000_000)
        },
    );

    // Directly, as user cf:<process guid>/<index> with a one-time code.
    let (_, process) = platform.api(
        "GET",
        &format!("/v3/apps/{}/processes/web", platform.app_guid("probe")),
        None,
    );
    let process = process["guid"].as_str().expect("process guid").to_string();
    let user = |index: u32| format!("cf:{process}/{index}");
    let code = code_in(platform, &admin);
    let out = ssh_with_code(
        platform,
        &code,
        &user(1),
        &[],
        "echo index=$CF_INSTANCE_INDEX ip=$CF_INSTANCE_IP",
    );
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("index=1 ip=10."), "{}", text(&out));
    // The same code again is refused: codes are single use.
    let again = ssh_with_code(platform, &code, &user(1), &[], "true");
    assert_eq!(again.status.code(), Some(255), "{}", text(&again));
    // An index the app does not have is refused.
    let code = code_in(platform, &admin);
    let missing = ssh_with_code(platform, &code, &user(99), &[], "true");
    assert_eq!(missing.status.code(), Some(255), "{}", text(&missing));

    // -L reaches a port the app listens on only inside its container.
    let code = code_in(platform, &admin);
    let local = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("a free port")
        .local_addr()
        .expect("addr")
        .port();
    let forward = format!("{local}:localhost:9977");
    let mut tunnel = Command::new("sshpass")
        .args(["-p", &code, "ssh", "-p", &platform.ssh.port().to_string()])
        .args(SSH_OPTIONS)
        .args(["-L", &forward])
        .arg(format!("{}@127.0.0.1", user(0)))
        .arg("cd /tmp && echo inside-only > marker.txt && exec python3 -m http.server 9977 --bind 127.0.0.1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("ssh -L");
    let url = format!("http://127.0.0.1:{local}/marker.txt");
    let mut body = String::new();
    platform.wait_for(
        "the forwarded port to answer",
        Duration::from_secs(30),
        || {
            body = reqwest::blocking::get(&url)
                .ok()
                .filter(|r| r.status().is_success())
                .and_then(|r| r.text().ok())
                .unwrap_or_default();
            body.contains("inside-only")
        },
    );
    let _ = tunnel.kill();
    let _ = tunnel.wait();

    // scp copies a file out (modern scp speaks SFTP).
    let code = code_in(platform, &admin);
    let copied = work.join("app-copy.py");
    let out = Command::new("sshpass")
        .args(["-p", &code, "scp", "-P", &platform.ssh.port().to_string()])
        .args(SSH_OPTIONS)
        // scp reads `cf:…` as a host name: the user goes in an option.
        .arg("-o")
        .arg(format!("User={}", user(0)))
        .arg("127.0.0.1:/home/vcap/app/app.py")
        .arg(&copied)
        .stdin(Stdio::null())
        .output()
        .expect("scp");
    assert!(out.status.success(), "{}", text(&out));
    let original = std::fs::read(crate::fixture("probe").join("app.py")).expect("fixture");
    assert_eq!(std::fs::read(&copied).expect("copied file"), original);

    // A space auditor may look but not enter.
    platform.cli(&["create-user", "carol", "carol-pw-1"]);
    platform.cli(&["set-space-role", "carol", "main", "dev", "SpaceAuditor"]);
    let carol = work.join("cli-carol");
    platform.cli_in(
        &carol,
        &[
            "login",
            "-a",
            &platform.api_url,
            "-u",
            "carol",
            "-p",
            "carol-pw-1",
        ],
    );
    let code = code_in(platform, &carol);
    let refused = ssh_with_code(platform, &code, &user(0), &[], "true");
    assert_eq!(refused.status.code(), Some(255), "{}", text(&refused));

    // With SSH turned off for the app, even the admin is refused.
    platform.cli(&["disable-ssh", "probe"]);
    let code = code_in(platform, &admin);
    let off = ssh_with_code(platform, &code, &user(0), &[], "true");
    assert_eq!(off.status.code(), Some(255), "{}", text(&off));
    let said = platform.cli_fails(&["ssh", "probe", "-c", "true"]);
    assert!(said.contains("enable-ssh"), "{said}");
    platform.cli(&["enable-ssh", "probe"]);

    // Every attempt is an audit event.
    let events = platform.cli(&["events", "probe"]);
    let granted = events.matches("audit.app.ssh-authorized").count();
    let refused = events.matches("audit.app.ssh-unauthorized").count();
    assert!(granted >= 5, "{granted} authorized:\n{events}");
    assert!(refused >= 4, "{refused} refused:\n{events}");
}
