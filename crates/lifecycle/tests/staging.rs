//! The builder end to end on the host: detection order, the buildpack
//! contract (arguments, supply/finalize/compile, release, Procfile), CF's
//! droplet layout, exit codes, and launching what was staged.

#![allow(clippy::unwrap_used)] // tests fail loudly on any unexpected error

mod common;

use std::fs;

use common::{cf_layout, droplet_listing, droplet_top_level, launch, Staging};
use ingot_lifecycle::builder::{stage, BuilderConfig};
use ingot_lifecycle::{EXIT_BUILDPACK_FAILED, EXIT_NO_APP_DETECTED, EXIT_SUPPLY_FAILED};

const BUILTINS: [&str; 3] = [
    "staticfile_buildpack",
    "python_buildpack",
    "binary_buildpack",
];

#[test]
fn builtin_detection_follows_cf_order() {
    // index.html and a Procfile: staticfile comes before binary.
    let staging = Staging::new();
    staging.install_builtins();
    staging.app_file("index.html", "<h1>hi</h1>");
    staging.app_file("Procfile", "worker: ./work\n");
    assert_eq!(staging.run_builder(&BUILTINS, false), 0);
    let result = staging.result();
    assert_eq!(result.detected_buildpack, "staticfile");
    assert_eq!(result.buildpack_name, "staticfile_buildpack");
    assert_eq!(
        result.start_command,
        "exec /tmp/lifecycle/ingot lifecycle static-server"
    );
    assert_eq!(result.process_types["worker"], "./work");

    // Only a Procfile: the binary buildpack, whose command is the Procfile's.
    let staging = Staging::new();
    staging.install_builtins();
    staging.app_file("Procfile", "web: ./server --port $PORT\n");
    staging.app_file("server", "#!/bin/sh\n");
    assert_eq!(staging.run_builder(&BUILTINS, false), 0);
    let result = staging.result();
    assert_eq!(result.detected_buildpack, "binary");
    assert_eq!(result.buildpack_name, "binary_buildpack");
    assert_eq!(result.start_command, "./server --port $PORT");
}

#[test]
fn nothing_detected_exits_222_with_cf_message() {
    let staging = Staging::new();
    staging.install_builtins();
    staging.app_file("README", "nothing to run here");
    assert_eq!(staging.run_builder(&BUILTINS, false), EXIT_NO_APP_DETECTED);
    assert!(
        !staging.droplet().exists(),
        "no droplet without a buildpack"
    );

    let mut config = BuilderConfig::new(BUILTINS.iter().map(|s| s.to_string()).collect());
    config.app_dir = staging.app.clone();
    config.deps_dir = staging.home.join("deps");
    config.profile_dir = staging.home.join("profile.d");
    config.cache_dir = staging.root.path().join("cache");
    config.buildpacks_dir = staging.buildpacks.clone();
    config.output_droplet = staging.droplet();
    config.output_metadata = staging.result_json();
    let err = stage(&config).unwrap_err();
    assert_eq!(
        err.to_string(),
        "None of the buildpacks detected a compatible application"
    );
    assert_eq!(err.exit_code(), EXIT_NO_APP_DETECTED);
}

#[test]
fn first_custom_buildpack_that_detects_wins_and_names_the_app() {
    let staging = Staging::new();
    staging.app_file("app.txt", "x");
    for (name, detect) in [
        ("first", "#!/bin/sh\nexit 1\n"),
        ("second", "#!/bin/sh\necho 'Second Framework 1.2'\n"),
        ("third", "#!/bin/sh\necho third\n"),
    ] {
        staging.buildpack_script(name, "detect", detect);
        staging.buildpack_script(
            name,
            "compile",
            &format!("#!/bin/sh\necho {name} > \"$1/compiled-by\"\n"),
        );
        staging.buildpack_script(name, "release", "#!/bin/sh\necho '--- {}'\n");
    }
    assert_eq!(staging.run_builder(&["first", "second", "third"], false), 0);
    let result = staging.result();
    assert_eq!(result.detected_buildpack, "Second Framework 1.2");
    assert_eq!(result.buildpack_name, "second");
    assert_eq!(result.start_command, "");
    assert_eq!(
        fs::read_to_string(staging.app.join("compiled-by")).unwrap(),
        "second\n"
    );
}

/// A CF buildpack written by the test: detect, supply, finalize, release and
/// a profile.d script whose variable the app prints.
fn write_custom_buildpack(staging: &Staging, name: &str) {
    staging.buildpack_script(
        name,
        "detect",
        "#!/bin/bash\n[ -f \"$1/custom.txt\" ] && echo custom-detected\n",
    );
    staging.buildpack_script(
        name,
        "supply",
        r#"#!/bin/bash
set -e
echo "supply args: $#"
printf '%s\n' "$@" > "$3/$4/supply-args"
mkdir -p "$3/$4/bin"
printf '#!/bin/sh\necho supplied-tool\n' > "$3/$4/bin/tool"
chmod 755 "$3/$4/bin/tool"
touch "$2/cached-by-supply"
"#,
    );
    staging.buildpack_script(
        name,
        "finalize",
        r#"#!/bin/bash
set -e
printf '%s\n' "$@" > "$3/$4/finalize-args"
cat > "$5/custom.sh" <<EOF
export CUSTOM_GREETING="hello from profile.d"
export PATH="\$DEPS_DIR/$4/bin:\$PATH"
EOF
printf '#!/bin/sh\necho "greeting=$CUSTOM_GREETING"\ntool\n' > "$1/start.sh"
chmod 755 "$1/start.sh"
"#,
    );
    staging.buildpack_script(
        name,
        "release",
        "#!/bin/bash\nprintf -- '---\\ndefault_process_types:\\n  web: ./start.sh\\n  worker: sleep 1\\n'\n",
    );
}

#[test]
fn custom_buildpack_stages_a_cf_droplet_that_launches() {
    let staging = Staging::new();
    staging.app_file("custom.txt", "content");
    staging.app_file("sub/dir/file.txt", "nested");
    write_custom_buildpack(&staging, "custom");
    assert_eq!(staging.run_builder(&["custom"], false), 0);

    let result = staging.result();
    assert_eq!(result.detected_buildpack, "custom-detected");
    assert_eq!(result.buildpack_name, "custom");
    assert_eq!(result.start_command, "./start.sh");
    assert_eq!(result.process_types["worker"], "sleep 1");

    // The contract's arguments: supply BUILD CACHE DEPS IDX, finalize + PROFILE_DIR.
    let deps = staging.home.join("deps");
    let cache_final = staging.root.path().join("cache/final");
    let supply_args = fs::read_to_string(deps.join("0/supply-args")).unwrap();
    let expected = format!(
        "{}\n{}\n{}\n0\n",
        staging.app.display(),
        cache_final.display(),
        deps.display()
    );
    assert_eq!(supply_args, expected);
    let finalize_args = fs::read_to_string(deps.join("0/finalize-args")).unwrap();
    assert_eq!(
        finalize_args,
        format!("{expected}{}\n", staging.home.join("profile.d").display())
    );
    assert!(cache_final.join("cached-by-supply").exists());

    // CF's droplet layout.
    assert_eq!(droplet_top_level(&staging.droplet()), cf_layout());
    let listing = droplet_listing(&staging.droplet());
    for entry in [
        "app/custom.txt",
        "app/sub/dir/file.txt",
        "app/start.sh",
        "deps/0/bin/tool",
        "profile.d/custom.sh",
        "staging_info.yml",
        "tmp",
        "logs",
    ] {
        assert!(
            listing.contains(entry),
            "droplet lacks {entry}: {listing:?}"
        );
    }

    // The cell's view: unpack into a fresh home and launch the staged command.
    let home = staging.unpack_droplet_elsewhere();
    let info: serde_json::Value =
        serde_json::from_slice(&fs::read(home.join("staging_info.yml")).unwrap()).unwrap();
    assert_eq!(info["detected_buildpack"], "custom-detected");
    assert_eq!(info["start_command"], "./start.sh");
    let out = launch(&home, None);
    assert!(out.contains("greeting=hello from profile.d"), "{out}");
    assert!(
        out.contains("supplied-tool"),
        "the profile.d PATH reaches the deps: {out}"
    );
}

#[test]
fn procfile_overrides_the_release_and_bad_procfile_fails() {
    let staging = Staging::new();
    staging.app_file("custom.txt", "content");
    staging.app_file("Procfile", "web: ./start.sh --fast\nclock: ./clock\n");
    write_custom_buildpack(&staging, "custom");
    assert_eq!(staging.run_builder(&["custom"], false), 0);
    let result = staging.result();
    assert_eq!(result.start_command, "./start.sh --fast");
    assert_eq!(result.process_types["worker"], "sleep 1");
    assert_eq!(result.process_types["clock"], "./clock");

    let staging = Staging::new();
    staging.app_file("custom.txt", "content");
    staging.app_file("Procfile", "this is not a map\n");
    write_custom_buildpack(&staging, "custom");
    assert_eq!(
        staging.run_builder(&["custom"], false),
        EXIT_BUILDPACK_FAILED
    );
}

#[test]
fn multi_buildpack_supplies_then_finalizes_with_cf_indices() {
    let staging = Staging::new();
    staging.app_file("custom.txt", "content");
    staging.buildpack_script(
        "supplier",
        "supply",
        "#!/bin/bash\nprintf '%s\\n' \"$@\" > \"$3/$4/supplier-args\"\n",
    );
    write_custom_buildpack(&staging, "custom");
    // A stale cache of a buildpack no longer used is dropped, as in CF.
    fs::create_dir_all(staging.root.path().join("cache/stale")).unwrap();

    assert_eq!(staging.run_builder(&["supplier", "custom"], true), 0);
    let deps = staging.home.join("deps");
    let supplier_args: Vec<String> = fs::read_to_string(deps.join("0/supplier-args"))
        .unwrap()
        .lines()
        .map(String::from)
        .collect();
    assert_eq!(supplier_args.len(), 4);
    assert_eq!(supplier_args[0], staging.app.display().to_string());
    assert!(supplier_args[1].starts_with(&staging.root.path().join("cache").display().to_string()));
    assert_ne!(
        supplier_args[1],
        staging
            .root
            .path()
            .join("cache/final")
            .display()
            .to_string()
    );
    assert_eq!(supplier_args[3], "0");
    let finalize_args = fs::read_to_string(deps.join("1/finalize-args")).unwrap();
    assert!(finalize_args.lines().nth(3) == Some("1"), "{finalize_args}");
    assert!(!staging.root.path().join("cache/stale").exists());
    let result = staging.result();
    assert_eq!(result.buildpack_name, "custom");
    assert_eq!(
        result.detected_buildpack, "custom",
        "skip-detect names the final buildpack"
    );

    // A supply buildpack without bin/supply is refused with CF's message.
    let staging = Staging::new();
    staging.app_file("custom.txt", "content");
    write_custom_buildpack(&staging, "custom");
    staging.buildpack_script("compile_only", "compile", "#!/bin/sh\n");
    assert_eq!(
        staging.run_builder(&["compile_only", "custom"], true),
        EXIT_SUPPLY_FAILED
    );
}

#[test]
fn final_buildpack_without_finalize_runs_compile() {
    let staging = Staging::new();
    staging.app_file("custom.txt", "content");
    staging.buildpack_script(
        "supplier",
        "supply",
        "#!/bin/sh\ntouch \"$3/$4/supplied\"\n",
    );
    staging.buildpack_script(
        "legacy",
        "compile",
        "#!/bin/bash\nprintf '%s\\n' \"$@\" > \"$1/compile-args\"\n",
    );
    staging.buildpack_script("legacy", "release", "#!/bin/sh\necho '---'\n");
    assert_eq!(staging.run_builder(&["supplier", "legacy"], true), 0);
    let args = fs::read_to_string(staging.app.join("compile-args")).unwrap();
    assert_eq!(
        args,
        format!(
            "{}\n{}\n",
            staging.app.display(),
            staging.root.path().join("cache/final").display()
        )
    );
    assert!(staging.home.join("deps/0/supplied").exists());
    assert!(
        !staging.home.join("deps/1").exists(),
        "the unused deps dir is removed, as in CF"
    );
}

#[test]
fn failing_buildpack_is_a_compile_failure_with_cf_message() {
    let staging = Staging::new();
    staging.app_file("custom.txt", "content");
    write_custom_buildpack(&staging, "custom");
    staging.buildpack_script(
        "custom",
        "finalize",
        "#!/bin/sh\necho 'about to fail' >&2\nexit 3\n",
    );
    assert_eq!(
        staging.run_builder(&["custom"], false),
        EXIT_BUILDPACK_FAILED
    );
    assert!(!staging.droplet().exists());

    let mut config = BuilderConfig::new(vec!["custom".into()]);
    config.app_dir = staging.app.clone();
    config.deps_dir = staging.home.join("deps");
    config.profile_dir = staging.home.join("profile.d");
    config.cache_dir = staging.root.path().join("cache");
    config.buildpacks_dir = staging.buildpacks.clone();
    config.output_droplet = staging.droplet();
    config.output_metadata = staging.result_json();
    let err = stage(&config).unwrap_err();
    let message = err.to_string();
    assert!(
        message.starts_with("Failed to compile droplet"),
        "{message}"
    );
    assert!(
        message.contains("finalize") && message.contains("custom"),
        "{message}"
    );
}

#[test]
fn bad_usage_is_exit_1_and_help_is_exit_0() {
    let args = |list: &[&str]| list.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    assert_eq!(ingot_lifecycle::run_cli(&[]), ingot_lifecycle::EXIT_USAGE);
    assert_eq!(
        ingot_lifecycle::run_cli(&args(&["unknown-command"])),
        ingot_lifecycle::EXIT_USAGE
    );
    assert_eq!(
        ingot_lifecycle::run_cli(&args(&["builder"])),
        ingot_lifecycle::EXIT_USAGE,
        "--buildpack-order is required"
    );
    assert_eq!(ingot_lifecycle::run_cli(&args(&["builder", "--help"])), 0);

    // A buildpack name must be a directory name, never a path.
    let staging = Staging::new();
    staging.app_file("index.html", "x");
    assert_eq!(
        staging.run_builder(&["../escape"], true),
        ingot_lifecycle::EXIT_USAGE
    );
    // A buildpack that is missing is skipped by detection…
    staging.install_builtins();
    assert_eq!(
        staging.run_builder(&["missing", "staticfile_buildpack"], false),
        0
    );
    // …and is a supply failure when named explicitly.
    assert_eq!(
        staging.run_builder(&["missing", "staticfile_buildpack"], true),
        EXIT_SUPPLY_FAILED
    );
}
