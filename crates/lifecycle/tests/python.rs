//! The built-in `python_buildpack` on the host: a virtualenv in the droplet,
//! the start command, and requirements installed from vendored wheels
//! without any network.

#![allow(clippy::unwrap_used)] // tests fail loudly on any unexpected error

mod common;

use std::fs;
use std::io::Write;
use std::path::Path;

use base64::Engine;
use common::{cf_layout, droplet_top_level, launch, Staging};
use sha2::{Digest, Sha256};

const BUILTINS: [&str; 3] = [
    "staticfile_buildpack",
    "python_buildpack",
    "binary_buildpack",
];

#[test]
fn stdlib_app_gets_a_virtualenv_and_its_start_command() {
    let staging = Staging::new();
    staging.install_builtins();
    staging.app_file(
        "app.py",
        "import os\nprint('port', os.environ.get('PORT'))\n",
    );
    assert_eq!(staging.run_builder(&BUILTINS, false), 0);

    let result = staging.result();
    assert_eq!(result.detected_buildpack, "python");
    assert_eq!(result.buildpack_name, "python_buildpack");
    assert_eq!(result.start_command, "python app.py");
    assert!(staging.home.join("deps/0/venv/bin/python").exists());
    assert_eq!(droplet_top_level(&staging.droplet()), cf_layout());

    // In the app's container: python is the droplet's virtualenv.
    let home = staging.unpack_droplet_elsewhere();
    let out = launch(
        &home,
        Some("python -c 'import sys; print(sys.prefix)'; echo unbuffered=$PYTHONUNBUFFERED"),
    );
    let venv = home.join("deps/0/venv");
    assert!(out.contains(&format!("{}\n", venv.display())), "{out}");
    assert!(out.contains("unbuffered=1"), "{out}");
    let out = launch(&home, None);
    assert!(
        out.contains("port"),
        "the staged start command runs app.py: {out}"
    );
}

#[test]
fn main_py_and_procfile_set_the_start_command() {
    let staging = Staging::new();
    staging.install_builtins();
    staging.app_file("main.py", "print('main')\n");
    // The release script's default, before a Procfile overrides it.
    let release = staging.buildpacks.join("python_buildpack/bin/release");
    let out = std::process::Command::new(&release)
        .arg(&staging.app)
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("web: python main.py"));
    staging.app_file("Procfile", "web: python main.py --serve\n");
    assert_eq!(staging.run_builder(&BUILTINS, false), 0);
    assert_eq!(staging.result().start_command, "python main.py --serve");
}

/// Builds a pure-Python wheel by hand: a zip with the module, METADATA, WHEEL
/// and a RECORD of sha256 hashes.
fn build_wheel(dir: &Path, dist: &str, version: &str, module: &str, source: &str) {
    let dist_info = format!("{dist}-{version}.dist-info");
    let files = vec![
        (format!("{module}/__init__.py"), source.to_string()),
        (
            format!("{dist_info}/METADATA"),
            format!("Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n"),
        ),
        (
            format!("{dist_info}/WHEEL"),
            "Wheel-Version: 1.0\nGenerator: ingot-test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
                .to_string(),
        ),
    ];
    let mut record = String::new();
    for (name, body) in &files {
        let hash = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(Sha256::digest(body.as_bytes()));
        record.push_str(&format!("{name},sha256={hash},{}\n", body.len()));
    }
    record.push_str(&format!("{dist_info}/RECORD,,\n"));
    fs::create_dir_all(dir).unwrap();
    let path = dir.join(format!("{dist}-{version}-py3-none-any.whl"));
    let mut zip = zip::ZipWriter::new(fs::File::create(path).unwrap());
    let options = zip::write::SimpleFileOptions::default();
    for (name, body) in files
        .iter()
        .chain([(format!("{dist_info}/RECORD"), record)].iter())
    {
        zip.start_file(name.as_str(), options).unwrap();
        zip.write_all(body.as_bytes()).unwrap();
    }
    zip.finish().unwrap();
}

#[test]
fn requirements_install_from_vendored_wheels() {
    let staging = Staging::new();
    staging.install_builtins();
    staging.app_file("requirements.txt", "hello_ingot==1.0\n");
    staging.app_file(
        "app.py",
        "import hello_ingot\nprint(hello_ingot.GREETING)\n",
    );
    build_wheel(
        &staging.app.join("vendor"),
        "hello_ingot",
        "1.0",
        "hello_ingot",
        "GREETING = 'hello from a vendored wheel'\n",
    );
    assert_eq!(staging.run_builder(&BUILTINS, false), 0);
    assert_eq!(staging.result().start_command, "python app.py");

    let home = staging.unpack_droplet_elsewhere();
    let out = launch(&home, None);
    assert!(out.contains("hello from a vendored wheel"), "{out}");
    // Installed in the droplet's virtualenv, not elsewhere on the system.
    let site = fs::read_dir(home.join("deps/0/venv/lib"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path()
        .join("site-packages/hello_ingot");
    assert!(site.is_dir(), "{} missing", site.display());
}

#[test]
fn missing_requirement_fails_staging() {
    let staging = Staging::new();
    staging.install_builtins();
    staging.app_file("requirements.txt", "not_vendored_anywhere==9.9\n");
    staging.app_file("app.py", "print('x')\n");
    fs::create_dir_all(staging.app.join("vendor")).unwrap();
    assert_eq!(
        staging.run_builder(&BUILTINS, false),
        ingot_lifecycle::EXIT_BUILDPACK_FAILED
    );
    assert!(!staging.droplet().exists());
}
