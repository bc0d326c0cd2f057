//! The built-in system buildpacks, shipped inside the `ingot` binary and
//! written out by [`install_builtin_buildpacks`]: `staticfile_buildpack`,
//! `python_buildpack`, `binary_buildpack` (Cloud Foundry's names, in the
//! order detection tries them). Each is a plain CF buildpack (bash scripts
//! under `crates/lifecycle/buildpacks/<name>/bin/`) run by the builder like
//! any custom buildpack.

use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// The built-in buildpacks' names, in detection order.
pub const BUILTIN_BUILDPACK_NAMES: [&str; 3] = [
    "staticfile_buildpack",
    "python_buildpack",
    "binary_buildpack",
];

/// A built-in buildpack written to disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuiltinBuildpack {
    /// Its Cloud Foundry name, e.g. `python_buildpack`.
    pub name: String,
    /// The directory holding its `bin/`.
    pub path: PathBuf,
}

type Scripts = &'static [(&'static str, &'static str)];

macro_rules! scripts {
    ($name:literal: $($script:literal),+) => {
        &[$(($script, include_str!(concat!("../buildpacks/", $name, "/bin/", $script)))),+]
    };
}

const STATICFILE: Scripts =
    scripts!("staticfile_buildpack": "detect", "supply", "finalize", "release");
const PYTHON: Scripts = scripts!("python_buildpack": "detect", "supply", "finalize", "release");
const BINARY: Scripts = scripts!("binary_buildpack": "detect", "supply", "finalize", "release");

fn scripts_of(name: &str) -> Scripts {
    match name {
        "staticfile_buildpack" => STATICFILE,
        "python_buildpack" => PYTHON,
        _ => BINARY,
    }
}

/// Writes the built-in buildpacks under `dir` (`dir/<name>/bin/<script>`,
/// scripts mode 0755) and returns them in detection order. Existing scripts
/// are replaced atomically (write, then rename), so a staging that has the
/// directory mounted never sees a half-written script.
pub fn install_builtin_buildpacks(dir: &Path) -> std::io::Result<Vec<BuiltinBuildpack>> {
    let mut installed = Vec::with_capacity(BUILTIN_BUILDPACK_NAMES.len());
    for name in BUILTIN_BUILDPACK_NAMES {
        let root = dir.join(name);
        let bin = root.join("bin");
        fs::create_dir_all(&bin)?;
        fs::set_permissions(&root, fs::Permissions::from_mode(0o755))?;
        fs::set_permissions(&bin, fs::Permissions::from_mode(0o755))?;
        for (script, body) in scripts_of(name) {
            let mut tmp = tempfile::NamedTempFile::new_in(&bin)?;
            tmp.write_all(body.as_bytes())?;
            tmp.as_file()
                .set_permissions(fs::Permissions::from_mode(0o755))?;
            tmp.persist(bin.join(script)).map_err(|err| err.error)?;
        }
        installed.push(BuiltinBuildpack {
            name: name.to_string(),
            path: root,
        });
    }
    Ok(installed)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests fail loudly on any unexpected error
mod tests {
    use super::*;

    #[test]
    fn installs_every_script_executable_in_detection_order() {
        let tmp = tempfile::tempdir().unwrap();
        let installed = install_builtin_buildpacks(tmp.path()).unwrap();
        let names: Vec<_> = installed.iter().map(|b| b.name.as_str()).collect();
        assert_eq!(names, BUILTIN_BUILDPACK_NAMES);
        for bp in &installed {
            for script in ["detect", "supply", "finalize", "release"] {
                let meta = fs::metadata(bp.path.join("bin").join(script)).unwrap();
                assert_eq!(
                    meta.permissions().mode() & 0o777,
                    0o755,
                    "{}/{script}",
                    bp.name
                );
            }
        }
        // Installing again over an existing tree works (platform restart).
        install_builtin_buildpacks(tmp.path()).unwrap();
    }
}
