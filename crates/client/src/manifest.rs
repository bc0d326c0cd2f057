//! The manifest a push applies: the `-f` file's app (if any) with the
//! command-line flags laid over it — flags win, as in `cf push` — and the
//! memory and disk sizes written the way manifests write them.

use std::path::{Path, PathBuf};

use serde_yaml::{Mapping, Value};

use crate::error::{ClientError, Result};

/// The flags of `push` that shape the manifest.
#[derive(Debug, Clone, Default)]
pub struct PushFlags {
    /// The app name; may come from the manifest instead.
    pub name: Option<String>,
    /// `-p`: the app directory.
    pub path: Option<PathBuf>,
    /// `-b`, in order (already resolved to names or URLs).
    pub buildpacks: Vec<String>,
    /// `-c`: the start command.
    pub command: Option<String>,
    /// `-m`: memory per instance, e.g. `256M`.
    pub memory: Option<String>,
    /// `-k`: disk per instance, e.g. `1G`.
    pub disk: Option<String>,
    /// `-i`: instance count.
    pub instances: Option<u32>,
    /// `--no-route`.
    pub no_route: bool,
    /// `--random-route`.
    pub random_route: bool,
    /// `-u`: health check type (`port`, `process`, `http`).
    pub health_check_type: Option<String>,
    /// `-t`: start timeout in seconds.
    pub timeout: Option<u32>,
}

/// What a push will do, worked out before any request is made.
#[derive(Debug, Clone, PartialEq)]
pub struct PushPlan {
    /// The app's name.
    pub name: String,
    /// The directory whose files are uploaded.
    pub app_dir: PathBuf,
    /// The manifest to apply (one app, without `path`).
    pub manifest_yaml: String,
    /// The app's entry of that manifest.
    pub app: Mapping,
}

/// Parses a size such as `256M`, `256MB`, `1G`, `1gb`, `1024K` or a bare
/// `512` (megabytes) into megabytes.
pub fn parse_megabytes(input: &str) -> Result<u64> {
    let invalid = |detail: &str| ClientError::Invalid {
        what: format!("size {input:?}"),
        detail: detail.to_string(),
    };
    let s = input.trim().to_ascii_uppercase();
    let s = s.strip_suffix('B').unwrap_or(&s);
    let (digits, factor_kb): (&str, u64) = match s.chars().last() {
        Some('K') => (&s[..s.len() - 1], 1),
        Some('M') => (&s[..s.len() - 1], 1024),
        Some('G') => (&s[..s.len() - 1], 1024 * 1024),
        Some('T') => (&s[..s.len() - 1], 1024 * 1024 * 1024),
        Some(c) if c.is_ascii_digit() => (s, 1024),
        _ => return Err(invalid("use a number with a unit such as 256M or 1G")),
    };
    let n: u64 = digits
        .trim()
        .parse()
        .map_err(|_| invalid("use a number with a unit such as 256M or 1G"))?;
    let kb = n
        .checked_mul(factor_kb)
        .ok_or_else(|| invalid("too large"))?;
    if kb % 1024 != 0 || kb == 0 {
        return Err(invalid("must be a positive whole number of megabytes"));
    }
    Ok(kb / 1024)
}

/// Merges the manifest file (its text and its directory) with the flags.
/// `cwd` is where a push without `-p` or `path:` takes its files from.
pub fn plan_push(
    flags: &PushFlags,
    manifest: Option<(&str, &Path)>,
    cwd: &Path,
) -> Result<PushPlan> {
    let mut app = Mapping::new();
    let mut manifest_dir = cwd.to_path_buf();
    if let Some((text, dir)) = manifest {
        manifest_dir = dir.to_path_buf();
        app = pick_app(text, flags.name.as_deref())?;
    }
    let key = |k: &str| Value::String(k.to_string());
    let name = match &flags.name {
        Some(n) => n.clone(),
        None => app
            .get(key("name"))
            .and_then(Value::as_str)
            .map(str::to_string)
            .ok_or_else(|| ClientError::Invalid {
                what: "push".into(),
                detail: "no app name: give one (`ingot push NAME`) or a manifest with `name:`"
                    .into(),
            })?,
    };
    app.insert(key("name"), Value::String(name.clone()));

    if !flags.buildpacks.is_empty() {
        app.remove(key("buildpack"));
        app.insert(
            key("buildpacks"),
            Value::Sequence(
                flags
                    .buildpacks
                    .iter()
                    .cloned()
                    .map(Value::String)
                    .collect(),
            ),
        );
    }
    if let Some(c) = &flags.command {
        app.insert(key("command"), Value::String(c.clone()));
    }
    if let Some(m) = &flags.memory {
        app.insert(
            key("memory"),
            Value::String(format!("{}M", parse_megabytes(m)?)),
        );
    } else if let Some(m) = app.get(key("memory")).cloned() {
        app.insert(key("memory"), normalize_size(&m, "memory")?);
    }
    if let Some(d) = &flags.disk {
        app.insert(
            key("disk_quota"),
            Value::String(format!("{}M", parse_megabytes(d)?)),
        );
    } else if let Some(d) = app.get(key("disk_quota")).cloned() {
        app.insert(key("disk_quota"), normalize_size(&d, "disk_quota")?);
    }
    if let Some(i) = flags.instances {
        app.insert(key("instances"), Value::Number(i.into()));
    }
    if flags.no_route {
        app.remove(key("routes"));
        app.remove(key("random-route"));
        app.insert(key("no-route"), Value::Bool(true));
    }
    if flags.random_route {
        app.insert(key("random-route"), Value::Bool(true));
    }
    if let Some(h) = &flags.health_check_type {
        let h = match h.as_str() {
            // cf still accepts the old name of `process`.
            "none" => "process",
            other => other,
        };
        if !["port", "process", "http"].contains(&h) {
            return Err(ClientError::Invalid {
                what: format!("health check type {h:?}"),
                detail: "use port, process or http".into(),
            });
        }
        app.insert(key("health-check-type"), Value::String(h.to_string()));
    }
    if let Some(t) = flags.timeout {
        app.insert(key("timeout"), Value::Number(t.into()));
    }

    let app_dir = match (&flags.path, app.get(key("path")).and_then(Value::as_str)) {
        (Some(p), _) => absolute(cwd, p),
        (None, Some(p)) => absolute(&manifest_dir, Path::new(p)),
        (None, None) => cwd.to_path_buf(),
    };
    // The path is the client's business; the API does not take it.
    app.remove(key("path"));

    let mut doc = Mapping::new();
    doc.insert(
        key("applications"),
        Value::Sequence(vec![Value::Mapping(app.clone())]),
    );
    let manifest_yaml =
        serde_yaml::to_string(&Value::Mapping(doc)).map_err(|e| ClientError::Invalid {
            what: "manifest".into(),
            detail: e.to_string(),
        })?;
    Ok(PushPlan {
        name,
        app_dir,
        manifest_yaml,
        app,
    })
}

fn absolute(base: &Path, p: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        base.join(p)
    }
}

fn normalize_size(v: &Value, field: &str) -> Result<Value> {
    let text = match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        _ => {
            return Err(ClientError::Invalid {
                what: format!("manifest `{field}`"),
                detail: "must be a size such as 256M".into(),
            })
        }
    };
    Ok(Value::String(format!("{}M", parse_megabytes(&text)?)))
}

/// The app of a manifest: the one named `name`, or the only one.
fn pick_app(text: &str, name: Option<&str>) -> Result<Mapping> {
    let invalid = |detail: String| ClientError::Invalid {
        what: "manifest".into(),
        detail,
    };
    let doc: Value = serde_yaml::from_str(text).map_err(|e| invalid(e.to_string()))?;
    let apps = doc
        .get("applications")
        .and_then(Value::as_sequence)
        .ok_or_else(|| invalid("has no `applications:` list".into()))?;
    let mut maps = apps.iter().filter_map(Value::as_mapping);
    match name {
        Some(n) => maps
            .find(|m| m.get("name").and_then(Value::as_str) == Some(n))
            .cloned()
            .or_else(|| {
                // A single unnamed-match app is the one being pushed under
                // the given name, as cf does when the manifest has one app.
                (apps.len() == 1)
                    .then(|| apps[0].as_mapping().cloned())
                    .flatten()
            })
            .ok_or_else(|| invalid(format!("has no app named {n:?}"))),
        None => {
            let all: Vec<&Mapping> = maps.collect();
            match all.as_slice() {
                [one] => Ok((*one).clone()),
                [] => Err(invalid("lists no app".into())),
                _ => Err(invalid(
                    "lists several apps: name the one to push (`ingot push NAME`)".into(),
                )),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_sizes_like_cf() {
        let cases: &[(&str, Option<u64>)] = &[
            ("256M", Some(256)),
            ("256MB", Some(256)),
            ("256m", Some(256)),
            ("1G", Some(1024)),
            ("1gb", Some(1024)),
            ("2048K", Some(2)),
            ("512", Some(512)),
            (" 64M ", Some(64)),
            ("0M", None),
            ("abc", None),
            ("1.5G", None),
            ("100K", None),
            ("", None),
            ("M", None),
        ];
        for (input, want) in cases {
            assert_eq!(parse_megabytes(input).ok(), *want, "{input:?}");
        }
    }

    #[test]
    fn flags_alone_make_a_manifest() {
        let flags = PushFlags {
            name: Some("web".into()),
            buildpacks: vec!["staticfile_buildpack".into()],
            memory: Some("1G".into()),
            instances: Some(2),
            no_route: true,
            ..PushFlags::default()
        };
        let plan = plan_push(&flags, None, Path::new("/src")).expect("plan");
        assert_eq!(plan.name, "web");
        assert_eq!(plan.app_dir, PathBuf::from("/src"));
        let doc: Value = serde_yaml::from_str(&plan.manifest_yaml).expect("yaml");
        let app = &doc["applications"][0];
        assert_eq!(app["name"], "web");
        assert_eq!(app["memory"], "1024M");
        assert_eq!(app["instances"], 2);
        assert_eq!(app["no-route"], true);
        assert_eq!(app["buildpacks"][0], "staticfile_buildpack");
    }

    #[test]
    fn flags_win_over_the_manifest_file() {
        let text = "applications:\n- name: api\n  path: ./app\n  memory: 128M\n  instances: 3\n  buildpack: python_buildpack\n  command: python app.py\n  env:\n    A: b\n  routes:\n  - route: api.apps.localhost\n";
        let flags = PushFlags {
            memory: Some("512".into()),
            buildpacks: vec!["binary_buildpack".into()],
            no_route: true,
            health_check_type: Some("none".into()),
            timeout: Some(30),
            ..PushFlags::default()
        };
        let plan =
            plan_push(&flags, Some((text, Path::new("/m"))), Path::new("/cwd")).expect("plan");
        assert_eq!(plan.name, "api");
        assert_eq!(plan.app_dir, PathBuf::from("/m/./app"));
        let doc: Value = serde_yaml::from_str(&plan.manifest_yaml).expect("yaml");
        let app = &doc["applications"][0];
        assert_eq!(app["memory"], "512M");
        assert_eq!(app["instances"], 3, "kept from the file");
        assert_eq!(app["command"], "python app.py");
        assert_eq!(app["env"]["A"], "b");
        assert!(app.get("buildpack").is_none(), "-b replaces buildpack:");
        assert_eq!(app["buildpacks"][0], "binary_buildpack");
        assert!(app.get("routes").is_none(), "--no-route drops routes");
        assert!(app.get("path").is_none(), "path is not sent");
        assert_eq!(app["health-check-type"], "process");
        assert_eq!(app["timeout"], 30);
    }

    #[test]
    fn picks_the_named_app_of_several() {
        let text = "applications:\n- name: a\n  memory: 1G\n- name: b\n  instances: 2\n";
        let flags = PushFlags {
            name: Some("b".into()),
            path: Some(PathBuf::from("dir")),
            ..PushFlags::default()
        };
        let plan =
            plan_push(&flags, Some((text, Path::new("/m"))), Path::new("/cwd")).expect("plan");
        assert_eq!(
            plan.app_dir,
            PathBuf::from("/cwd/dir"),
            "-p is relative to cwd"
        );
        assert!(plan.manifest_yaml.contains("instances: 2"));
        assert!(!plan.manifest_yaml.contains("1024M"));

        let none = PushFlags::default();
        let err =
            plan_push(&none, Some((text, Path::new("/m"))), Path::new("/")).expect_err("ambiguous");
        assert!(err.to_string().contains("several apps"), "{err}");
    }

    #[test]
    fn rejects_bad_input() {
        let flags = PushFlags {
            name: Some("x".into()),
            memory: Some("lots".into()),
            ..PushFlags::default()
        };
        assert!(plan_push(&flags, None, Path::new("/")).is_err());
        let flags = PushFlags {
            name: Some("x".into()),
            health_check_type: Some("tcp".into()),
            ..PushFlags::default()
        };
        assert!(plan_push(&flags, None, Path::new("/")).is_err());
        assert!(
            plan_push(&PushFlags::default(), None, Path::new("/")).is_err(),
            "no name"
        );
        assert!(plan_push(
            &PushFlags::default(),
            Some(("name: x", Path::new("/"))),
            Path::new("/")
        )
        .is_err());
    }
}
