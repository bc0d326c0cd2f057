//! The launcher on the host: CF's profile.d order, its environment, and the
//! exec chain that makes the start command the process the launcher was.

#![allow(clippy::unwrap_used)] // tests fail loudly on any unexpected error

mod common;

use std::fs;
use std::io::Read;
use std::path::PathBuf;

use common::launch;
use ingot_lifecycle::launcher::launch_command;

/// A droplet-shaped home: `app`, `deps`, `profile.d`, `tmp`.
fn home() -> (tempfile::TempDir, PathBuf) {
    let root = tempfile::tempdir().unwrap();
    let home = root.path().join("home/vcap");
    for dir in ["app/.profile.d", "deps/0", "profile.d", "tmp"] {
        fs::create_dir_all(home.join(dir)).unwrap();
    }
    (root, home)
}

#[test]
fn sources_profile_scripts_in_cf_order_then_runs_the_command() {
    let (_root, home) = home();
    fs::write(
        home.join("profile.d/0_first.sh"),
        "export ORDER=buildpack\n",
    )
    .unwrap();
    fs::write(
        home.join("profile.d/1_second.sh"),
        "export ORDER=\"$ORDER,buildpack2\"\n",
    )
    .unwrap();
    fs::write(
        home.join("app/.profile.d/app.sh"),
        "export ORDER=\"$ORDER,app-profile-d\"\n",
    )
    .unwrap();
    fs::write(
        home.join("app/.profile"),
        "export ORDER=\"$ORDER,dot-profile\"\n",
    )
    .unwrap();

    let out = launch(
        &home,
        Some("echo \"order=$ORDER\"; echo \"home=$HOME\"; echo \"deps=$DEPS_DIR\"; echo \"tmp=$TMPDIR\"; echo \"cwd=$PWD\""),
    );
    assert!(
        out.contains("order=buildpack,buildpack2,app-profile-d,dot-profile\n"),
        "{out}"
    );
    let app = home.join("app");
    assert!(out.contains(&format!("home={}\n", app.display())), "{out}");
    assert!(
        out.contains(&format!("deps={}\n", home.join("deps").display())),
        "{out}"
    );
    assert!(
        out.contains(&format!("tmp={}\n", home.join("tmp").display())),
        "{out}"
    );
    assert!(out.contains(&format!("cwd={}\n", app.display())), "{out}");
    // CF's messages around the pre-start scripts.
    assert!(out.starts_with("Invoking pre-start scripts.\n"), "{out}");
    assert!(out.contains("Invoking start command.\n"), "{out}");
}

#[test]
fn the_command_replaces_the_launcher_process() {
    let (_root, home) = home();
    let mut child = launch_command(&home.join("app"), Some("echo \"pid=$$\""))
        .unwrap()
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let launcher_pid = child.id();
    let mut out = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    assert!(child.wait().unwrap().success());
    // `$$` of the command's shell is the pid the launcher started with: each
    // step exec'd rather than forked, so signals reach the app.
    assert!(out.contains(&format!("pid={launcher_pid}\n")), "{out}");
}

#[test]
fn exit_status_of_the_command_is_the_launchers() {
    let (_root, home) = home();
    let status = launch_command(&home.join("app"), Some("exit 7"))
        .unwrap()
        .status()
        .unwrap();
    assert_eq!(status.code(), Some(7));
}

#[test]
fn start_command_comes_from_staging_info_and_is_required() {
    let (_root, home) = home();
    let err = launch_command(&home.join("app"), None).unwrap_err();
    assert!(err.to_string().contains("no start command"), "{err}");

    fs::write(
        home.join("staging_info.yml"),
        r#"{"detected_buildpack":"x","start_command":"echo staged-command-ran"}"#,
    )
    .unwrap();
    let out = launch(&home, None);
    assert!(out.contains("staged-command-ran"), "{out}");
    // An explicit command (-c, manifest) wins over the staged one.
    let out = launch(&home, Some("echo explicit"));
    assert!(
        out.contains("explicit") && !out.contains("staged-command-ran"),
        "{out}"
    );
}
