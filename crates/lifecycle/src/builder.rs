//! The builder: stages an app with Cloud Foundry buildpacks
//! (buildpackapplifecycle's `builder`), inside the staging container.
//!
//! The contract, as CF runs it:
//! - detection (unless `--skip-detect`): `bin/detect BUILD_DIR` of each
//!   buildpack in order; the first to exit 0 wins and its stdout is the
//!   detected name. None → [`crate::DETECT_FAIL_MSG`], exit 222.
//! - with `--skip-detect` every buildpack but the last runs
//!   `bin/supply BUILD_DIR CACHE_DIR DEPS_DIR DEPS_IDX`.
//! - the final buildpack runs `bin/supply` (if any) then
//!   `bin/finalize BUILD_DIR CACHE_DIR DEPS_DIR DEPS_IDX PROFILE_DIR`, or, when
//!   it has no `bin/finalize`, `bin/compile BUILD_DIR CACHE_DIR`.
//! - `bin/release BUILD_DIR` prints YAML whose `default_process_types` the
//!   app's `Procfile` overrides.
//!
//! `DEPS_IDX` is the buildpack's position, zero-padded to the width of the
//! buildpack count; each supply buildpack's `CACHE_DIR` is
//! `<cache>/<hash of its name>`, the final one's `<cache>/final`.
//! Buildpack output goes straight to the builder's stdout/stderr, line by line
//! (only detect's and release's stdout are captured, as in CF).

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use sha1::{Digest, Sha1};

use crate::archive::{write_droplet, DropletContents};
use crate::{
    LifecycleError, StagingResult, COMPILE_FAIL_MSG, EXIT_BUILDPACK_FAILED, EXIT_RELEASE_FAILED,
    EXIT_SUPPLY_FAILED, FINALIZE_FAIL_MSG, NO_SUPPLY_SCRIPT_FAIL_MSG, RELEASE_FAIL_MSG,
    SUPPLY_FAIL_MSG,
};

/// Cloud Foundry's warning when the last of several buildpacks has no finalize.
const MISSING_FINALIZE_WARN_MSG: &str = "Warning: the last buildpack is not compatible with multi-buildpack apps and cannot make use of any dependencies supplied by the buildpacks specified before it";

/// Where and how to stage; the defaults are the staging container's layout.
#[derive(Debug, Clone, clap::Parser)]
#[command(about = "Stage an app with Cloud Foundry buildpacks into a droplet")]
pub struct BuilderConfig {
    /// Buildpack names (directories under --buildpacks-dir), comma separated.
    #[arg(long = "buildpack-order", value_delimiter = ',', required = true)]
    pub buildpack_order: Vec<String>,
    /// Run the buildpacks in order without detection (multi-buildpack).
    #[arg(long)]
    pub skip_detect: bool,
    /// Where the droplet tarball goes.
    #[arg(long, default_value = "/tmp/output/droplet.tgz")]
    pub output_droplet: PathBuf,
    /// Where result.json (a [`StagingResult`]) goes.
    #[arg(long, default_value = "/tmp/output/result.json")]
    pub output_metadata: PathBuf,
    /// The unpacked app (`BUILD_DIR`), staged in place.
    #[arg(long, default_value = "/home/vcap/app")]
    pub app_dir: PathBuf,
    /// `DEPS_DIR`.
    #[arg(long, default_value = "/home/vcap/deps")]
    pub deps_dir: PathBuf,
    /// The final buildpack's `PROFILE_DIR`.
    #[arg(long, default_value = "/home/vcap/profile.d")]
    pub profile_dir: PathBuf,
    /// The root of the buildpacks' `CACHE_DIR`s.
    #[arg(long, default_value = "/tmp/cache")]
    pub cache_dir: PathBuf,
    /// The directory holding one directory per buildpack.
    #[arg(long, default_value = "/tmp/buildpacks")]
    pub buildpacks_dir: PathBuf,
}

impl BuilderConfig {
    /// A configuration with the container defaults for `buildpack_order`.
    pub fn new(buildpack_order: Vec<String>) -> Self {
        BuilderConfig {
            buildpack_order,
            skip_detect: false,
            output_droplet: "/tmp/output/droplet.tgz".into(),
            output_metadata: "/tmp/output/result.json".into(),
            app_dir: "/home/vcap/app".into(),
            deps_dir: "/home/vcap/deps".into(),
            profile_dir: "/home/vcap/profile.d".into(),
            cache_dir: "/tmp/cache".into(),
            buildpacks_dir: "/tmp/buildpacks".into(),
        }
    }

    /// The buildpacks that only supply dependencies (all but the last, and
    /// only when detection is skipped).
    fn supply_buildpacks(&self) -> &[String] {
        if self.skip_detect && !self.buildpack_order.is_empty() {
            &self.buildpack_order[..self.buildpack_order.len() - 1]
        } else {
            &[]
        }
    }

    /// `DEPS_IDX` of the buildpack at position `i`, zero-padded like CF's.
    fn deps_index(&self, i: usize) -> String {
        let width = (self.supply_buildpacks().len() + 1).to_string().len();
        format!("{i:0width$}")
    }

    fn supply_cache_dir(&self, buildpack: &str) -> PathBuf {
        let digest = Sha1::digest(buildpack.as_bytes());
        self.cache_dir.join(&hex::encode(digest)[..16])
    }

    fn final_cache_dir(&self) -> PathBuf {
        self.cache_dir.join("final")
    }
}

/// Runs `ingot lifecycle builder …`.
pub(crate) fn run_cli(args: &[String]) -> Result<i32, LifecycleError> {
    let config: BuilderConfig = match crate::parse_args("builder", args) {
        Ok(config) => config,
        Err(code) => return Ok(code),
    };
    stage(&config)?;
    Ok(0)
}

/// Stages the app: runs the buildpacks, writes the droplet and result.json,
/// and returns what was written to result.json.
pub fn stage(config: &BuilderConfig) -> Result<StagingResult, LifecycleError> {
    if config.buildpack_order.is_empty() {
        return Err(LifecycleError::Usage(
            "--buildpack-order names no buildpack".into(),
        ));
    }
    for name in &config.buildpack_order {
        if name.is_empty() || name.contains('/') || name == "." || name == ".." {
            return Err(LifecycleError::Usage(format!(
                "invalid buildpack name {name:?}: it must be a directory name under {}",
                config.buildpacks_dir.display()
            )));
        }
    }
    setup(config)?;

    let (final_name, final_path, detect_output) = if config.skip_detect {
        run_supply_buildpacks(config)?
    } else {
        detect(config)?
    };

    run_final(config, &final_name, &final_path)?;
    let process_types = release(config, &final_path)?;
    let start_command = process_types.get("web").cloned().unwrap_or_default();
    if start_command.is_empty() {
        eprintln!("No start command specified by buildpack or via Procfile.");
        eprintln!("App will not start unless a command is provided at runtime.");
    }
    let detected_buildpack = detect_output
        .filter(|output| !output.is_empty())
        .unwrap_or_else(|| final_name.clone());
    let result = StagingResult {
        detected_buildpack,
        buildpack_name: final_name,
        start_command,
        process_types,
    };

    let staging_info = serde_json::json!({
        "detected_buildpack": result.detected_buildpack,
        "start_command": result.start_command,
    })
    .to_string();
    write_droplet(
        &config.output_droplet,
        &DropletContents {
            app_dir: &config.app_dir,
            deps_dir: &config.deps_dir,
            profile_dir: &config.profile_dir,
            staging_info: format!("{staging_info}\n").as_bytes(),
        },
    )?;
    let json = serde_json::to_vec(&result).map_err(|err| {
        LifecycleError::io("cannot serialize result for", &config.output_metadata)(
            std::io::Error::other(err),
        )
    })?;
    fs::write(&config.output_metadata, json)
        .map_err(LifecycleError::io("cannot write", &config.output_metadata))?;
    Ok(result)
}

/// Creates the directories the contract promises and drops caches of
/// buildpacks no longer in use (as CF does).
fn setup(config: &BuilderConfig) -> Result<(), LifecycleError> {
    let mut dirs = vec![config.final_cache_dir(), config.profile_dir.clone()];
    for output in [&config.output_droplet, &config.output_metadata] {
        if let Some(parent) = output.parent() {
            dirs.push(parent.to_path_buf());
        }
    }
    for buildpack in config.supply_buildpacks() {
        dirs.push(config.supply_cache_dir(buildpack));
    }
    for i in 0..=config.supply_buildpacks().len() {
        dirs.push(config.deps_dir.join(config.deps_index(i)));
    }
    for dir in &dirs {
        fs::create_dir_all(dir).map_err(LifecycleError::io("cannot create", dir))?;
    }
    let keep: Vec<PathBuf> = std::iter::once(config.final_cache_dir())
        .chain(
            config
                .supply_buildpacks()
                .iter()
                .map(|b| config.supply_cache_dir(b)),
        )
        .collect();
    let entries = fs::read_dir(&config.cache_dir)
        .map_err(LifecycleError::io("cannot read", &config.cache_dir))?;
    for entry in entries.flatten() {
        let path = entry.path();
        if !keep.contains(&path) {
            let removed = if path.is_dir() && !path.is_symlink() {
                fs::remove_dir_all(&path)
            } else {
                fs::remove_file(&path)
            };
            removed.map_err(LifecycleError::io("cannot remove stale cache", &path))?;
        }
    }
    Ok(())
}

/// The directory of buildpack `name` that holds `bin/`: `<dir>/<name>`, or
/// its only sub-directory (zips often wrap everything in one folder).
fn buildpack_path(config: &BuilderConfig, name: &str) -> Result<PathBuf, String> {
    let path = config.buildpacks_dir.join(name);
    if path.join("bin").is_dir() {
        return Ok(path);
    }
    let entries: Vec<_> = fs::read_dir(&path)
        .map_err(|err| {
            format!(
                "Failed to read buildpack directory '{}' for buildpack '{name}': {err}",
                path.display()
            )
        })?
        .flatten()
        .collect();
    if let [only] = entries.as_slice() {
        let nested = only.path();
        if nested.join("bin").is_dir() {
            return Ok(nested);
        }
    }
    Err(format!(
        "malformed buildpack does not contain a /bin dir: {name}"
    ))
}

fn buildpack_error(message: &'static str, exit_code: i32, detail: String) -> LifecycleError {
    LifecycleError::Buildpack {
        message,
        detail,
        exit_code,
    }
}

/// Runs the supply buildpacks; returns the final buildpack's name and path.
fn run_supply_buildpacks(
    config: &BuilderConfig,
) -> Result<(String, PathBuf, Option<String>), LifecycleError> {
    let supply_err = |detail| buildpack_error(SUPPLY_FAIL_MSG, EXIT_SUPPLY_FAILED, detail);
    let mut paths = Vec::new();
    for name in config.supply_buildpacks() {
        let path = buildpack_path(config, name).map_err(supply_err)?;
        if !path.join("bin/supply").exists() {
            return Err(buildpack_error(
                NO_SUPPLY_SCRIPT_FAIL_MSG,
                EXIT_SUPPLY_FAILED,
                format!("buildpack {name} has no bin/supply"),
            ));
        }
        paths.push(path);
    }
    for (i, (name, path)) in config.supply_buildpacks().iter().zip(&paths).enumerate() {
        let cache = config.supply_cache_dir(name);
        let deps_idx = config.deps_index(i);
        run_script(
            name,
            path,
            "supply",
            &[
                &config.app_dir,
                &cache,
                &config.deps_dir,
                Path::new(&deps_idx),
            ],
        )
        .map_err(supply_err)?;
    }
    let final_name = config.buildpack_order[config.supply_buildpacks().len()].clone();
    let final_path = buildpack_path(config, &final_name).map_err(supply_err)?;
    Ok((final_name, final_path, None))
}

/// Runs each buildpack's `bin/detect`; the first that exits 0 wins.
fn detect(config: &BuilderConfig) -> Result<(String, PathBuf, Option<String>), LifecycleError> {
    for name in &config.buildpack_order {
        let path = match buildpack_path(config, name) {
            Ok(path) => path,
            Err(message) => {
                eprintln!("{message}");
                continue;
            }
        };
        let script = path.join("bin/detect");
        if !script.exists() {
            eprintln!("buildpack {name} has no bin/detect");
            continue;
        }
        let output = Command::new(&script)
            .arg(&config.app_dir)
            .stdin(Stdio::null())
            .stderr(Stdio::inherit())
            .output();
        match output {
            Ok(output) if output.status.success() => {
                let detected = String::from_utf8_lossy(&output.stdout)
                    .trim_end_matches(['\r', '\n'])
                    .to_string();
                return Ok((name.clone(), path, Some(detected)));
            }
            Ok(_) => {}
            Err(err) => eprintln!("cannot run {}: {err}", script.display()),
        }
    }
    Err(LifecycleError::NoAppDetected)
}

/// Runs the final buildpack: supply + finalize, or compile.
fn run_final(config: &BuilderConfig, name: &str, path: &Path) -> Result<(), LifecycleError> {
    // CF reports every failure of the final buildpack as a compile failure.
    let compile_err = |step: &str, detail: String| {
        buildpack_error(
            COMPILE_FAIL_MSG,
            EXIT_BUILDPACK_FAILED,
            format!("{step}: {detail}"),
        )
    };
    let deps_idx = config.deps_index(config.supply_buildpacks().len());
    let cache = config.final_cache_dir();
    if path.join("bin/finalize").exists() {
        if path.join("bin/supply").exists() {
            run_script(
                name,
                path,
                "supply",
                &[
                    &config.app_dir,
                    &cache,
                    &config.deps_dir,
                    Path::new(&deps_idx),
                ],
            )
            .map_err(|detail| compile_err(SUPPLY_FAIL_MSG, detail))?;
        }
        run_script(
            name,
            path,
            "finalize",
            &[
                &config.app_dir,
                &cache,
                &config.deps_dir,
                Path::new(&deps_idx),
                &config.profile_dir,
            ],
        )
        .map_err(|detail| compile_err(FINALIZE_FAIL_MSG, detail))?;
    } else {
        if !config.supply_buildpacks().is_empty() {
            eprintln!("{MISSING_FINALIZE_WARN_MSG}");
        }
        let unused = config.deps_dir.join(&deps_idx);
        fs::remove_dir_all(&unused).map_err(LifecycleError::io("cannot remove", &unused))?;
        run_script(name, path, "compile", &[&config.app_dir, &cache])
            .map_err(|detail| compile_err(COMPILE_FAIL_MSG, detail))?;
    }
    Ok(())
}

/// Runs `bin/<script>` of a buildpack with its output going straight to ours.
fn run_script(name: &str, path: &Path, script: &str, args: &[&Path]) -> Result<(), String> {
    let program = path.join("bin").join(script);
    let status = Command::new(&program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::inherit())
        .stderr(Stdio::inherit())
        .status()
        .map_err(|err| format!("cannot run bin/{script} of buildpack {name}: {err}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!(
            "bin/{script} of buildpack {name} failed ({status})"
        ))
    }
}

/// Runs `bin/release` and merges the app's Procfile over its process types.
fn release(
    config: &BuilderConfig,
    path: &Path,
) -> Result<BTreeMap<String, String>, LifecycleError> {
    let release_err = |detail| buildpack_error(RELEASE_FAIL_MSG, EXIT_RELEASE_FAILED, detail);
    let program = path.join("bin/release");
    let output = Command::new(&program)
        .arg(&config.app_dir)
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .map_err(|err| release_err(format!("cannot run {}: {err}", program.display())))?;
    if !output.status.success() {
        return Err(release_err(format!(
            "{} failed ({})",
            program.display(),
            output.status
        )));
    }
    let mut process_types = parse_release(&output.stdout)
        .map_err(|err| release_err(format!("buildpack's release output invalid: {err}")))?;
    let procfile = config.app_dir.join("Procfile");
    match fs::read(&procfile) {
        Ok(bytes) => {
            let overrides = parse_process_map(&bytes)
                .map_err(|_| LifecycleError::BadProcfile { path: procfile })?;
            process_types.extend(overrides);
        }
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
        Err(err) => return Err(LifecycleError::io("cannot read", &procfile)(err)),
    }
    Ok(process_types)
}

/// Reads `default_process_types` from `bin/release`'s YAML.
fn parse_release(yaml: &[u8]) -> Result<BTreeMap<String, String>, String> {
    let value: serde_yaml::Value = serde_yaml::from_slice(yaml).map_err(|err| err.to_string())?;
    match value.get("default_process_types") {
        None | Some(serde_yaml::Value::Null) => Ok(BTreeMap::new()),
        Some(map) => process_map(map),
    }
}

/// Reads a Procfile: a YAML map of process type to command.
fn parse_process_map(yaml: &[u8]) -> Result<BTreeMap<String, String>, String> {
    if yaml.iter().all(u8::is_ascii_whitespace) {
        return Ok(BTreeMap::new());
    }
    let value: serde_yaml::Value = serde_yaml::from_slice(yaml).map_err(|err| err.to_string())?;
    process_map(&value)
}

fn process_map(value: &serde_yaml::Value) -> Result<BTreeMap<String, String>, String> {
    let map = value
        .as_mapping()
        .ok_or("expected a map of process type to command")?;
    let mut out = BTreeMap::new();
    for (key, command) in map {
        let key = scalar(key).ok_or("process types must be strings")?;
        let command = match command {
            serde_yaml::Value::Null => String::new(),
            other => {
                scalar(other).ok_or_else(|| format!("the command of {key} must be a string"))?
            }
        };
        out.insert(key, command);
    }
    Ok(out)
}

fn scalar(value: &serde_yaml::Value) -> Option<String> {
    match value {
        serde_yaml::Value::String(s) => Some(s.clone()),
        serde_yaml::Value::Number(n) => Some(n.to_string()),
        serde_yaml::Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests fail loudly on any unexpected error
mod tests {
    use super::*;

    #[test]
    fn deps_index_is_padded_to_the_buildpack_count() {
        let mut config = BuilderConfig::new((0..12).map(|i| format!("bp{i}")).collect());
        assert_eq!(
            config.deps_index(3),
            "3",
            "without skip-detect there is one buildpack"
        );
        config.skip_detect = true;
        assert_eq!(config.deps_index(3), "03");
        assert_eq!(config.supply_buildpacks().len(), 11);
    }

    #[test]
    fn release_yaml_and_procfile_parse() {
        let types = parse_release(b"---\ndefault_process_types:\n  web: python app.py\n").unwrap();
        assert_eq!(types["web"], "python app.py");
        assert!(parse_release(b"---\ndefault_process_types: {}\n")
            .unwrap()
            .is_empty());
        assert!(parse_release(b"---\n").unwrap().is_empty());
        assert!(parse_release(b"default_process_types: [1, 2]").is_err());
        let procfile =
            parse_process_map(b"web: ./server --port $PORT\nworker: bin/work\n").unwrap();
        assert_eq!(procfile["web"], "./server --port $PORT");
        assert_eq!(procfile["worker"], "bin/work");
        assert!(parse_process_map(b"just a command line").is_err());
    }
}
