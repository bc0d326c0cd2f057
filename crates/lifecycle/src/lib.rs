//! Code that runs inside Ingot's containers: Cloud Foundry's
//! buildpackapplifecycle (builder and launcher), a static file server, the
//! built-in system buildpacks, the droplet format and the CF environment.
//!
//! The `ingot` binary is bind-mounted read-only into every container at
//! [`LIFECYCLE_PATH`]; `ingot lifecycle <args>` calls [`run_cli`].
//!
//! # Layout inside the containers
//!
//! Staging happens at the same paths the app later runs at, so nothing a
//! buildpack writes needs relocating (a Python virtualenv, whose scripts carry
//! absolute paths, keeps working):
//!
//! | path | staging container | app container |
//! |---|---|---|
//! | `/home/vcap/app` | the unpacked package (writable), `BUILD_DIR` | the droplet's `app` |
//! | `/home/vcap/deps` | `DEPS_DIR`, one `<index>` directory per buildpack | the droplet's `deps` |
//! | `/home/vcap/profile.d` | the final buildpack's `PROFILE_DIR` | sourced by the launcher |
//! | `/tmp/buildpacks/<name>/` | the buildpacks, read-only | — |
//! | `/tmp/cache` | `CACHE_DIR` root (per buildpack sub-directories) | — |
//! | `/tmp/output` | `droplet.tgz`, `result.json` | — |
//!
//! The droplet is a gzip tarball rooted at `/home/vcap` holding `./app`,
//! `./deps`, `./profile.d`, `./staging_info.yml`, `./tmp` and `./logs`,
//! exactly as Cloud Foundry lays it out; the cell unpacks it into the app
//! container's `/home/vcap` with [`unpack_droplet`].
//!
//! # Commands
//!
//! - `builder` ([`builder`]): detect / supply / finalize (or compile) /
//!   release, then the droplet and `result.json` ([`StagingResult`]). Exit
//!   codes are Cloud Foundry's ([`EXIT_NO_APP_DETECTED`], …).
//! - `launcher` ([`launcher`]): sources `profile.d` scripts and `exec`s the
//!   start command in one bash.
//! - `static-server` ([`static_server`]): serves the `staticfile_buildpack`'s
//!   files on `$PORT`.

pub mod archive;
pub mod builder;
pub mod buildpacks;
pub mod env;
mod init;
pub mod launcher;
pub mod static_server;

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

pub use archive::{unpack_droplet, unpack_zip, unpack_zip_owned};
pub use buildpacks::{install_builtin_buildpacks, BuiltinBuildpack, BUILTIN_BUILDPACK_NAMES};
pub use env::{instance_environment, staging_environment, InstanceInfo, StagingInfo};

/// Where the `ingot` binary is bind-mounted inside every container.
pub const LIFECYCLE_PATH: &str = "/tmp/lifecycle/ingot";

/// Builder exit code: no buildpack's `bin/detect` accepted the app
/// (Cloud Foundry's `NoAppDetectedError`, `DETECT_FAIL_CODE`).
pub const EXIT_NO_APP_DETECTED: i32 = 222;
/// Builder exit code: `bin/compile` failed, or the final buildpack failed in
/// general (Cloud Foundry's `BuildpackCompileFailed`, `COMPILE_FAIL_CODE`).
pub const EXIT_BUILDPACK_FAILED: i32 = 223;
/// Builder exit code: `bin/release` failed or printed invalid YAML
/// (`BuildpackReleaseFailed`, `RELEASE_FAIL_CODE`).
pub const EXIT_RELEASE_FAILED: i32 = 224;
/// Builder exit code: a `bin/supply` failed, or a supply buildpack has none
/// (`SUPPLY_FAIL_CODE`).
pub const EXIT_SUPPLY_FAILED: i32 = 225;
/// Builder exit code: the final buildpack's `bin/finalize` failed
/// (`FINALIZE_FAIL_CODE`).
pub const EXIT_FINALIZE_FAILED: i32 = 226;
/// Exit code for bad arguments or an I/O failure of the lifecycle itself.
pub const EXIT_USAGE: i32 = 1;

/// Cloud Foundry's message when no buildpack detects the app.
pub const DETECT_FAIL_MSG: &str = "None of the buildpacks detected a compatible application";
/// Cloud Foundry's message when compiling the droplet fails.
pub const COMPILE_FAIL_MSG: &str = "Failed to compile droplet";
/// Cloud Foundry's message when `bin/release` fails.
pub const RELEASE_FAIL_MSG: &str = "Failed to build droplet release";
/// Cloud Foundry's message when a `bin/supply` fails.
pub const SUPPLY_FAIL_MSG: &str = "Failed to run all supply scripts";
/// Cloud Foundry's message when a non-final buildpack has no `bin/supply`.
pub const NO_SUPPLY_SCRIPT_FAIL_MSG: &str =
    "Error: one of the buildpacks chosen to supply dependencies does not support multi-buildpack apps";
/// Cloud Foundry's message when `bin/finalize` fails.
pub const FINALIZE_FAIL_MSG: &str = "Failed to run finalize script";

/// What staging produced, written as `result.json` by the builder and read
/// by the platform to create the droplet record.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct StagingResult {
    /// What the buildpack reported about the app: its `bin/detect` output, or
    /// the final buildpack's name when detection was skipped.
    pub detected_buildpack: String,
    /// The name (as given in `--buildpack-order`) of the final buildpack.
    pub buildpack_name: String,
    /// The `web` process type's command; empty when neither the buildpack nor
    /// a Procfile named one.
    pub start_command: String,
    /// Every process type: the final buildpack's `default_process_types`,
    /// overridden by the app's `Procfile`.
    pub process_types: BTreeMap<String, String>,
}

/// Everything that can fail in the lifecycle.
#[derive(Debug, thiserror::Error)]
pub enum LifecycleError {
    /// A file system operation on `path` failed.
    #[error("{action} {path}: {source}")]
    Io {
        /// What was being done, e.g. "cannot create".
        action: &'static str,
        /// The path it was done to.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// An archive (zip or tarball) could not be read.
    #[error("cannot read archive {path}: {reason}")]
    BadArchive {
        /// The archive.
        path: PathBuf,
        /// Why it is unreadable.
        reason: String,
    },
    /// An archive entry would escape the destination directory.
    #[error("archive {archive}: entry {entry:?} {reason}")]
    UnsafeEntry {
        /// The archive.
        archive: PathBuf,
        /// The offending entry's name.
        entry: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// None of the buildpacks' `bin/detect` accepted the app.
    #[error("{DETECT_FAIL_MSG}")]
    NoAppDetected,
    /// A buildpack is missing or malformed, or one of its scripts failed.
    #[error("{message}: {detail}")]
    Buildpack {
        /// Cloud Foundry's message for the failed step (e.g. [`COMPILE_FAIL_MSG`]).
        message: &'static str,
        /// What failed, for which buildpack.
        detail: String,
        /// The exit code the builder ends with.
        exit_code: i32,
    },
    /// The app's `Procfile` is not a YAML map of process type to command.
    #[error("Failed to read command from Procfile {path}: invalid YAML")]
    BadProcfile {
        /// The Procfile.
        path: PathBuf,
    },
    /// Bad command-line usage.
    #[error("{0}")]
    Usage(String),
}

impl LifecycleError {
    /// The exit code a lifecycle command ends with for this error.
    pub fn exit_code(&self) -> i32 {
        match self {
            LifecycleError::NoAppDetected => EXIT_NO_APP_DETECTED,
            LifecycleError::Buildpack { exit_code, .. } => *exit_code,
            LifecycleError::BadProcfile { .. } => EXIT_BUILDPACK_FAILED,
            _ => EXIT_USAGE,
        }
    }

    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| LifecycleError::Io {
            action,
            path,
            source,
        }
    }
}

/// Runs `ingot lifecycle <args>` (`args` are what follows `lifecycle`) and
/// returns the process exit code. The launcher does not return on success:
/// it replaces this process with the app.
pub fn run_cli(args: &[String]) -> i32 {
    let Some((command, rest)) = args.split_first() else {
        eprintln!("usage: ingot lifecycle <builder|launcher|static-server> [ARGS…]");
        return EXIT_USAGE;
    };
    let result = match command.as_str() {
        "builder" => builder::run_cli(rest),
        "launcher" => launcher::run_cli(rest),
        "static-server" => static_server::run_cli(rest),
        other => Err(LifecycleError::Usage(format!(
            "unknown lifecycle command {other:?}; expected builder, launcher or static-server"
        ))),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("{err}");
            err.exit_code()
        }
    }
}

/// Parses `args` with clap for the subcommand `name`; `--help` and errors are
/// printed and turned into an exit code.
pub(crate) fn parse_args<T: clap::Parser>(name: &str, args: &[String]) -> Result<T, i32> {
    let argv = std::iter::once(format!("ingot lifecycle {name}")).chain(args.iter().cloned());
    match T::try_parse_from(argv) {
        Ok(parsed) => Ok(parsed),
        Err(err) => {
            let code = if err.use_stderr() { EXIT_USAGE } else { 0 };
            // Printing can only fail if stdout/stderr are gone; nothing to do then.
            let _ = err.print();
            Err(code)
        }
    }
}
