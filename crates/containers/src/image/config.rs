//! The image config: how the image wants to be run (entrypoint, cmd, env, user,
//! working directory, exposed port), and resolving its user to a uid:gid.

use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::ImageError;

/// What an image says about running it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageConfig {
    /// `Entrypoint`.
    pub entrypoint: Vec<String>,
    /// `Cmd` (the entrypoint's default arguments, or the command when there is none).
    pub cmd: Vec<String>,
    /// `Env`, in order, as `NAME`, `value`.
    pub env: Vec<(String, String)>,
    /// `User`: a name, `uid`, `name:group` or `uid:gid`; empty means root.
    pub user: String,
    /// `WorkingDir`; empty means `/`.
    pub working_dir: String,
    /// The lowest-numbered TCP port of `ExposedPorts` (the one to route to and health-check).
    pub port: Option<u16>,
    /// Every TCP port of `ExposedPorts`, ascending.
    #[serde(default)]
    pub ports: Vec<u16>,
    /// `rootfs.diff_ids`: digests of the uncompressed layers, bottom first.
    pub diff_ids: Vec<String>,
    /// `os` (`linux`).
    pub os: String,
    /// `architecture` (`amd64`).
    pub architecture: String,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
struct RunConfig {
    #[serde(default)]
    entrypoint: Option<Vec<String>>,
    #[serde(default)]
    cmd: Option<Vec<String>>,
    #[serde(default)]
    env: Option<Vec<String>>,
    #[serde(default)]
    user: Option<String>,
    #[serde(default)]
    working_dir: Option<String>,
    #[serde(default)]
    exposed_ports: Option<serde_json::Map<String, serde_json::Value>>,
}

#[derive(Deserialize)]
struct RootFs {
    #[serde(default)]
    diff_ids: Vec<String>,
}

#[derive(Deserialize)]
struct RawConfig {
    #[serde(default)]
    config: Option<RunConfig>,
    #[serde(default)]
    rootfs: Option<RootFs>,
    #[serde(default)]
    os: String,
    #[serde(default)]
    architecture: String,
}

impl ImageConfig {
    /// Parses an OCI / Docker image config document.
    pub fn parse(what: &str, body: &[u8]) -> Result<ImageConfig, ImageError> {
        let raw: RawConfig = serde_json::from_slice(body).map_err(|e| ImageError::Invalid {
            what: what.to_string(),
            reason: e.to_string(),
        })?;
        let run = raw.config.unwrap_or_default();
        let env = run
            .env
            .unwrap_or_default()
            .into_iter()
            .map(|kv| match kv.split_once('=') {
                Some((k, v)) => (k.to_string(), v.to_string()),
                None => (kv, String::new()),
            })
            .collect();
        let mut ports: Vec<u16> = run
            .exposed_ports
            .unwrap_or_default()
            .keys()
            .filter_map(|key| {
                let (port, proto) = key.split_once('/').unwrap_or((key, "tcp"));
                (proto.eq_ignore_ascii_case("tcp"))
                    .then(|| port.parse::<u16>().ok())
                    .flatten()
            })
            .filter(|p| *p != 0)
            .collect();
        ports.sort_unstable();
        ports.dedup();
        let port = ports.first().copied();
        Ok(ImageConfig {
            entrypoint: run.entrypoint.unwrap_or_default(),
            cmd: run.cmd.unwrap_or_default(),
            env,
            user: run.user.unwrap_or_default(),
            working_dir: run.working_dir.unwrap_or_default(),
            port,
            ports,
            diff_ids: raw.rootfs.map(|r| r.diff_ids).unwrap_or_default(),
            os: raw.os,
            architecture: raw.architecture,
        })
    }

    /// The command to run: entrypoint followed by cmd (Docker's rule).
    pub fn command(&self) -> Vec<String> {
        self.entrypoint.iter().chain(&self.cmd).cloned().collect()
    }

    /// The image's environment with `overrides` (e.g. the app's) replacing or adding
    /// variables; order: the image's variables first, then new ones.
    pub fn merged_env(&self, overrides: &[(String, String)]) -> Vec<(String, String)> {
        let mut env = self.env.clone();
        for (k, v) in overrides {
            match env.iter_mut().find(|(name, _)| name == k) {
                Some(slot) => slot.1 = v.clone(),
                None => env.push((k.clone(), v.clone())),
            }
        }
        env
    }

    /// The process to start a container of this image with: `command` (or, when it is
    /// empty, the image's entrypoint + cmd), the image's env merged with `env`, its
    /// working directory, and its user resolved against `layers` (topmost first).
    pub fn process_spec(
        &self,
        layers: &[PathBuf],
        command: &[String],
        env: &[(String, String)],
    ) -> Result<crate::ProcessSpec, ImageError> {
        let args = if command.is_empty() {
            self.command()
        } else {
            command.to_vec()
        };
        if args.is_empty() {
            return Err(ImageError::Invalid {
                what: "image config".into(),
                reason: "it has neither Entrypoint nor Cmd, and no command was given".into(),
            });
        }
        let (uid, gid) = resolve_user(&self.user, layers)?;
        Ok(crate::ProcessSpec {
            args,
            env: self.merged_env(env),
            cwd: self.cwd().to_string(),
            uid,
            gid,
        })
    }

    /// The working directory, `/` when the image names none.
    pub fn cwd(&self) -> &str {
        if self.working_dir.is_empty() {
            "/"
        } else {
            &self.working_dir
        }
    }
}

/// Resolves an image `user` (`""`, `name`, `uid`, `name:group`, `uid:gid`) to numeric
/// ids using the `/etc/passwd` and `/etc/group` of the image's `layers` (topmost first),
/// as Docker does: a numeric user not in `/etc/passwd` gets gid 0.
pub fn resolve_user(user: &str, layers: &[PathBuf]) -> Result<(u32, u32), ImageError> {
    if user.is_empty() {
        return Ok((0, 0));
    }
    let (user_part, group_part) = match user.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (user, None),
    };
    let passwd = read_image_file(layers, "etc/passwd")?;
    let entry = passwd.as_deref().and_then(|p| {
        p.lines().find_map(|line| {
            let fields: Vec<&str> = line.split(':').collect();
            if fields.len() < 4 {
                return None;
            }
            let (name, uid, gid) = (
                fields[0],
                fields[2].parse::<u32>().ok()?,
                fields[3].parse::<u32>().ok()?,
            );
            (name == user_part || uid.to_string() == user_part).then_some((uid, gid))
        })
    });
    let unknown = |what: &str| ImageError::Invalid {
        what: format!("image user {user:?}"),
        reason: format!("{what} not found in the image's /etc/passwd or /etc/group"),
    };
    let (uid, default_gid) = match (entry, user_part.parse::<u32>()) {
        (Some(e), _) => e,
        (None, Ok(uid)) => (uid, 0),
        (None, Err(_)) => return Err(unknown("user")),
    };
    let gid = match group_part {
        None => default_gid,
        Some(g) => match g.parse::<u32>() {
            Ok(gid) => gid,
            Err(_) => {
                let group = read_image_file(layers, "etc/group")?;
                group
                    .as_deref()
                    .and_then(|text| {
                        text.lines().find_map(|line| {
                            let fields: Vec<&str> = line.split(':').collect();
                            (fields.len() >= 3 && fields[0] == g)
                                .then(|| fields[2].parse::<u32>().ok())
                                .flatten()
                        })
                    })
                    .ok_or_else(|| unknown("group"))?
            }
        },
    };
    Ok((uid, gid))
}

/// Reads `relative` (e.g. `etc/passwd`) from the topmost layer that has it, without
/// following symlinks (a link could point anywhere on the host); a whiteout hides it.
fn read_image_file(layers: &[PathBuf], relative: &str) -> Result<Option<String>, ImageError> {
    for layer in layers {
        match lookup_no_follow(layer, relative) {
            Lookup::Regular(path) => {
                let text = fs::read(&path).map_err(ImageError::io("read", &path))?;
                return Ok(Some(String::from_utf8_lossy(&text).into_owned()));
            }
            Lookup::Hidden => return Ok(None),
            Lookup::Absent => {}
        }
    }
    Ok(None)
}

enum Lookup {
    Regular(PathBuf),
    Hidden,
    Absent,
}

fn lookup_no_follow(layer: &Path, relative: &str) -> Lookup {
    use std::os::unix::fs::FileTypeExt;
    let mut path = layer.to_path_buf();
    let components: Vec<&str> = relative.split('/').collect();
    for (i, component) in components.iter().enumerate() {
        path.push(component);
        let Ok(meta) = fs::symlink_metadata(&path) else {
            return Lookup::Absent;
        };
        let ft = meta.file_type();
        if ft.is_char_device() {
            // An overlayfs whiteout hides the file (and, for a directory, its subtree).
            return Lookup::Hidden;
        }
        let last = i + 1 == components.len();
        if last && ft.is_file() {
            return Lookup::Regular(path);
        }
        if !ft.is_dir() || last {
            return Lookup::Absent;
        }
    }
    Lookup::Absent
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_run_settings_and_builds_the_command() {
        let body = serde_json::json!({
            "architecture": "amd64", "os": "linux",
            "config": {
                "Entrypoint": ["/bin/busybox"], "Cmd": ["httpd", "-f", "-p", "8080"],
                "Env": ["PATH=/bin", "GREETING=a=b", "EMPTY"],
                "User": "app", "WorkingDir": "/srv",
                "ExposedPorts": {"9090/udp": {}, "8080/tcp": {}, "8443/tcp": {}}
            },
            "rootfs": {"type": "layers", "diff_ids": ["sha256:aa"]}
        });
        let config = ImageConfig::parse("config", body.to_string().as_bytes()).expect("parse");
        assert_eq!(
            config.command(),
            ["/bin/busybox", "httpd", "-f", "-p", "8080"]
        );
        assert_eq!(config.port, Some(8080));
        assert_eq!(config.ports, [8080, 8443]);
        assert_eq!(config.cwd(), "/srv");
        assert_eq!(config.user, "app");
        assert_eq!(config.diff_ids, ["sha256:aa"]);
        let env =
            config.merged_env(&[("PATH".into(), "/usr/bin".into()), ("X".into(), "1".into())]);
        assert_eq!(
            env,
            [
                ("PATH".to_string(), "/usr/bin".to_string()),
                ("GREETING".into(), "a=b".into()),
                ("EMPTY".into(), String::new()),
                ("X".into(), "1".into())
            ]
        );
    }

    #[test]
    fn an_empty_config_means_root_in_slash() {
        let config = ImageConfig::parse("config", b"{}").expect("parse");
        assert!(config.command().is_empty());
        assert_eq!((config.cwd(), config.port), ("/", None));
        assert_eq!(resolve_user(&config.user, &[]).expect("root"), (0, 0));
    }

    #[test]
    fn resolves_users_from_the_topmost_layer_without_following_links() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (top, bottom) = (dir.path().join("top"), dir.path().join("bottom"));
        fs::create_dir_all(top.join("etc")).expect("mkdir");
        fs::create_dir_all(bottom.join("etc")).expect("mkdir");
        fs::write(
            bottom.join("etc/passwd"),
            "root:x:0:0::/root:/bin/sh\napp:x:1000:1001::/home/app:/bin/sh\n",
        )
        .expect("write");
        fs::write(bottom.join("etc/group"), "root:x:0:\nstaff:x:50:\n").expect("write");
        let layers = [top.clone(), bottom.clone()];
        assert_eq!(resolve_user("app", &layers).expect("app"), (1000, 1001));
        assert_eq!(resolve_user("1000", &layers).expect("uid"), (1000, 1001));
        assert_eq!(
            resolve_user("4242", &layers).expect("unknown uid"),
            (4242, 0)
        );
        assert_eq!(
            resolve_user("app:staff", &layers).expect("group"),
            (1000, 50)
        );
        assert_eq!(resolve_user("7:8", &layers).expect("numeric"), (7, 8));
        assert!(resolve_user("nobody", &layers).is_err());
        // A symlinked /etc/passwd in a higher layer is not read through.
        std::os::unix::fs::symlink("/etc/passwd", top.join("etc/passwd")).expect("symlink");
        assert!(resolve_user("app", &layers).is_ok_and(|ids| ids == (1000, 1001)));
    }
}
