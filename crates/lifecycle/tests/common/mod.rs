//! Helpers shared by the lifecycle's integration tests: a staging layout in a
//! temporary directory (the container's `/home/vcap`, `/tmp/buildpacks`,
//! `/tmp/cache`, `/tmp/output` under one root), custom buildpacks written by
//! the test, droplet listings.

#![allow(clippy::unwrap_used)] // tests fail loudly on any unexpected error
#![allow(dead_code)]

use std::collections::BTreeSet;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use flate2::read::GzDecoder;
use ingot_lifecycle::StagingResult;

/// One staging run's directories, all under a temporary root that is removed
/// when this is dropped.
pub struct Staging {
    pub root: tempfile::TempDir,
    pub home: PathBuf,
    pub app: PathBuf,
    pub buildpacks: PathBuf,
}

impl Staging {
    pub fn new() -> Self {
        let root = tempfile::tempdir().unwrap();
        let home = root.path().join("home/vcap");
        let app = home.join("app");
        let buildpacks = root.path().join("buildpacks");
        fs::create_dir_all(&app).unwrap();
        fs::create_dir_all(&buildpacks).unwrap();
        Staging {
            root,
            home,
            app,
            buildpacks,
        }
    }

    /// Writes a file of the app.
    pub fn app_file(&self, name: &str, body: &str) {
        let path = self.app.join(name);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, body).unwrap();
    }

    /// Writes `bin/<script>` of buildpack `name` (mode 0755).
    pub fn buildpack_script(&self, name: &str, script: &str, body: &str) {
        let bin = self.buildpacks.join(name).join("bin");
        fs::create_dir_all(&bin).unwrap();
        let path = bin.join(script);
        fs::write(&path, body).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
    }

    pub fn install_builtins(&self) {
        ingot_lifecycle::install_builtin_buildpacks(&self.buildpacks).unwrap();
    }

    pub fn droplet(&self) -> PathBuf {
        self.root.path().join("output/droplet.tgz")
    }

    pub fn result_json(&self) -> PathBuf {
        self.root.path().join("output/result.json")
    }

    /// The builder's arguments for this layout.
    pub fn builder_args(&self, order: &[&str], skip_detect: bool) -> Vec<String> {
        let mut args = vec![
            "builder".to_string(),
            "--buildpack-order".into(),
            order.join(","),
            "--app-dir".into(),
            path_arg(&self.app),
            "--deps-dir".into(),
            path_arg(&self.home.join("deps")),
            "--profile-dir".into(),
            path_arg(&self.home.join("profile.d")),
            "--cache-dir".into(),
            path_arg(&self.root.path().join("cache")),
            "--buildpacks-dir".into(),
            path_arg(&self.buildpacks),
            "--output-droplet".into(),
            path_arg(&self.droplet()),
            "--output-metadata".into(),
            path_arg(&self.result_json()),
        ];
        if skip_detect {
            args.push("--skip-detect".into());
        }
        args
    }

    /// Runs `ingot lifecycle builder …` in process; returns its exit code.
    pub fn run_builder(&self, order: &[&str], skip_detect: bool) -> i32 {
        ingot_lifecycle::run_cli(&self.builder_args(order, skip_detect))
    }

    pub fn result(&self) -> StagingResult {
        serde_json::from_slice(&fs::read(self.result_json()).unwrap()).unwrap()
    }

    /// Unpacks the droplet into a fresh `home/vcap` (as the cell does for an
    /// app container) and returns that home.
    pub fn unpack_droplet_elsewhere(&self) -> PathBuf {
        let home = self.root.path().join("instance/home/vcap");
        let me = fs::metadata(self.root.path()).unwrap();
        use std::os::unix::fs::MetadataExt;
        ingot_lifecycle::unpack_droplet(&self.droplet(), &home, me.uid(), me.gid()).unwrap();
        home
    }
}

pub fn path_arg(path: &Path) -> String {
    path.to_str().unwrap().to_string()
}

/// Every entry name in a droplet, without a leading `./` or trailing `/`.
pub fn droplet_listing(droplet: &Path) -> BTreeSet<String> {
    let mut archive = tar::Archive::new(GzDecoder::new(fs::File::open(droplet).unwrap()));
    archive
        .entries()
        .unwrap()
        .map(|entry| {
            let entry = entry.unwrap();
            let name = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
            name.trim_start_matches("./")
                .trim_end_matches('/')
                .to_string()
        })
        .collect()
}

/// The top-level names of a droplet.
pub fn droplet_top_level(droplet: &Path) -> BTreeSet<String> {
    droplet_listing(droplet)
        .into_iter()
        .filter(|name| !name.is_empty())
        .map(|name| name.split('/').next().unwrap().to_string())
        .collect()
}

/// The layout Cloud Foundry's droplets have at their top level.
pub fn cf_layout() -> BTreeSet<String> {
    [
        "app",
        "deps",
        "logs",
        "profile.d",
        "staging_info.yml",
        "tmp",
    ]
    .into_iter()
    .map(String::from)
    .collect()
}

/// Runs the launcher's command for the app in `home` and returns its stdout;
/// panics with stdout and stderr when it fails.
pub fn launch(home: &Path, command: Option<&str>) -> String {
    let output = ingot_lifecycle::launcher::launch_command(&home.join("app"), command)
        .unwrap()
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "launcher failed ({}):\nstdout:\n{stdout}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}
