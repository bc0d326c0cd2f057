//! `push`: the exchanges of `cf push` for a source app — apply the manifest,
//! upload only the files the platform lacks, stage while printing the
//! staging output, set the droplet, restart, wait for a running instance.
//! With `--docker-image` (or a manifest's `docker:`), the app has the
//! `docker` lifecycle and a `docker` package names the image instead of an
//! upload (see [`ingot_client::docker`]).

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context as _};
use clap::Args;
use ingot_client::bits::{build_zip, collect_app, match_resources, zip_dir};
use ingot_client::docker::{take_docker_push, PASSWORD_VARIABLE};
use ingot_client::logcache::{now_nanos, LogTail};
use ingot_client::manifest::{plan_push, PushFlags};
use ingot_client::resources::{App, MatchResource};
use ingot_client::{Client, Progress};

use super::apps::{print_app_summary, wait_running, START_TIMEOUT};
use super::{ui, OrExplain as _, Session};

/// How long applying a manifest may take.
const MANIFEST_TIMEOUT: Duration = Duration::from_secs(300);
/// How long the platform may take to process an upload.
const PACKAGE_TIMEOUT: Duration = Duration::from_secs(600);
/// How long staging may take (pip installs can be slow).
const STAGING_TIMEOUT: Duration = Duration::from_secs(900);

/// Flags of `push`, named as `cf push` names them.
#[derive(Args)]
pub struct PushArgs {
    /// The app's name (default: the manifest's).
    name: Option<String>,
    /// The app directory (or a .zip of it); default: the current directory.
    #[arg(short = 'p', long = "path")]
    path: Option<PathBuf>,
    /// Buildpack: a name, a URL, or a local directory or .zip; repeatable.
    #[arg(short = 'b', long = "buildpack")]
    buildpacks: Vec<String>,
    /// Start command.
    #[arg(short = 'c', long = "start-command")]
    command: Option<String>,
    /// Memory per instance, e.g. 256M or 1G.
    #[arg(short = 'm', long = "memory")]
    memory: Option<String>,
    /// Disk per instance, e.g. 1G.
    #[arg(short = 'k', long = "disk")]
    disk: Option<String>,
    /// Number of instances.
    #[arg(short = 'i', long = "instances")]
    instances: Option<u32>,
    /// Manifest file (default: ./manifest.yml when present).
    #[arg(short = 'f', long = "manifest")]
    manifest: Option<PathBuf>,
    /// Ignore ./manifest.yml.
    #[arg(long)]
    no_manifest: bool,
    /// Do not map a route.
    #[arg(long)]
    no_route: bool,
    /// Map a route with a random host name.
    #[arg(long)]
    random_route: bool,
    /// Upload the files but do not stage or start the app.
    #[arg(long)]
    no_start: bool,
    /// Health check type: port, process or http.
    #[arg(short = 'u', long = "health-check-type")]
    health_check_type: Option<String>,
    /// Seconds an instance may take to become healthy.
    #[arg(short = 't', long = "app-start-timeout")]
    timeout: Option<u32>,
    /// `rolling`: replace a running app's instances one at a time, without
    /// downtime.
    #[arg(long, value_enum)]
    strategy: Option<super::deploy::Strategy>,
    /// Docker image to run instead of source, e.g. registry.example.com/team/web:1.
    #[arg(short = 'o', long = "docker-image")]
    docker_image: Option<String>,
    /// Registry user name for the image; the password is read from CF_DOCKER_PASSWORD.
    #[arg(long = "docker-username")]
    docker_username: Option<String>,
}

/// `ingot push`.
pub(crate) async fn push(args: PushArgs) -> anyhow::Result<()> {
    let mut session = Session::open()?;
    let (org, space) = session.target()?;
    let cwd = std::env::current_dir().context("cannot read the current directory")?;
    let client = session.client();

    let manifest_path = match (&args.manifest, args.no_manifest) {
        (Some(p), _) => Some(cwd.join(p)),
        (None, false) => Some(cwd.join("manifest.yml")).filter(|p| p.is_file()),
        (None, true) => None,
    };
    let manifest = match &manifest_path {
        Some(p) => {
            let text = std::fs::read_to_string(p)
                .with_context(|| format!("cannot read the manifest {}", p.display()))?;
            let dir = p
                .parent()
                .map(Path::to_path_buf)
                .unwrap_or_else(|| cwd.clone());
            Some((text, dir))
        }
        None => None,
    };

    let mut buildpacks = Vec::new();
    for b in &args.buildpacks {
        buildpacks.push(resolve_buildpack(client, b, &cwd).await?);
    }
    let flags = PushFlags {
        name: args.name.clone(),
        path: args.path.clone(),
        buildpacks,
        command: args.command.clone(),
        memory: args.memory.clone(),
        disk: args.disk.clone(),
        instances: args.instances,
        no_route: args.no_route,
        random_route: args.random_route,
        health_check_type: args.health_check_type.clone(),
        timeout: args.timeout,
    };
    let mut plan = plan_push(
        &flags,
        manifest.as_ref().map(|(t, d)| (t.as_str(), d.as_path())),
        &cwd,
    )?;
    let docker = take_docker_push(
        &mut plan,
        args.docker_image.as_deref(),
        args.docker_username.as_deref(),
        std::env::var(PASSWORD_VARIABLE).ok(),
    )?;
    if docker.is_some() && (args.path.is_some() || !args.buildpacks.is_empty()) {
        return Err(anyhow!(
            "--docker-image cannot be used with -p or -b: an image brings its own files"
        ));
    }
    let name = plan.name.clone();
    if docker.is_none() && !plan.app_dir.exists() {
        return Err(anyhow!(
            "the app path {} does not exist: pass the app directory with -p DIR",
            plan.app_dir.display()
        ));
    }

    println!(
        "Pushing app {name} to org {} / space {} as {}...",
        org.name,
        space.name,
        session.user()
    );
    if let Some(p) = &manifest_path {
        println!("Using manifest file {}", p.display());
    }
    if docker.is_some()
        && client
            .app_by_name(&space.guid, &name)
            .await
            .or_explain(format!("cannot look up app {name}"))?
            .is_none()
    {
        // The manifest would create a buildpack app; a docker app is
        // created first, and the manifest then updates it.
        client
            .create_docker_app(&space.guid, &name)
            .await
            .or_explain(format!("cannot create app {name}"))?;
    }
    println!("Applying manifest...");
    let job = client
        .apply_manifest(&space.guid, &plan.manifest_yaml)
        .await
        .or_explain(format!("cannot apply the manifest of app {name}"))?;
    client
        .wait_job(&job, MANIFEST_TIMEOUT)
        .await
        .or_explain(format!("applying the manifest of app {name} failed"))?;
    let app = client
        .app_by_name(&space.guid, &name)
        .await
        .or_explain(format!("cannot look up app {name}"))?
        .ok_or_else(|| anyhow!("app {name} is missing after applying its manifest"))?;

    let package_guid = match &docker {
        Some(docker) => {
            println!("Using docker image {}...", docker.image);
            client
                .create_docker_package(&app.guid, docker)
                .await
                .or_explain(format!("cannot create a package for app {name}"))?
                .guid
        }
        None => upload_bits(client, &app, &plan.app_dir).await?,
    };
    if args.no_start {
        println!();
        print_app_summary(&session, &app).await?;
        session.keep_tokens();
        return Ok(());
    }

    println!("Staging app and tracing logs...");
    let droplet_guid = stage(client, &app, &package_guid).await?;
    let rolling = args.strategy == Some(super::deploy::Strategy::Rolling);
    if rolling && app.state == "STARTED" {
        super::deploy::roll(&session, &app, Some(&droplet_guid), None).await?;
        let app = client
            .app(&app.guid)
            .await
            .or_explain(format!("cannot look up app {name}"))?;
        print_app_summary(&session, &app).await?;
        session.keep_tokens();
        return Ok(());
    }
    client
        .set_current_droplet(&app.guid, &droplet_guid)
        .await
        .or_explain(format!("cannot set the new droplet of app {name}"))?;
    println!("Waiting for app {name} to start...\n");
    let app = client
        .restart_app(&app.guid)
        .await
        .or_explain(format!("cannot start app {name}"))?;
    let timeout = match args.timeout {
        Some(t) => START_TIMEOUT.max(Duration::from_secs(u64::from(t) + 30)),
        None => START_TIMEOUT,
    };
    wait_running(client, &app, timeout).await?;
    print_app_summary(&session, &app).await?;
    session.keep_tokens();
    Ok(())
}

/// Uploads the app's files (only those the platform lacks) into a new
/// package and waits until it is READY; returns the package's guid.
async fn upload_bits(client: &Client, app: &App, path: &Path) -> anyhow::Result<String> {
    println!("Packaging files to upload...");
    let (matched, zip) = if path.is_file() {
        // A prepared zip is uploaded as it is, as cf does with `-p app.zip`.
        let bytes = std::fs::read(path)
            .with_context(|| format!("cannot read the app archive {}", path.display()))?;
        (Vec::new(), bytes)
    } else {
        let dir = path.to_path_buf();
        let entries = tokio::task::spawn_blocking(move || collect_app(&dir))
            .await
            .context("the file scan stopped unexpectedly")?
            .map_err(|e| anyhow!("cannot read the app directory: {e}"))?;
        let wanted = match_resources(&entries);
        let matched: Vec<MatchResource> = if wanted.is_empty() {
            Vec::new()
        } else {
            client
                .resource_matches(&wanted)
                .await
                .or_explain("cannot ask which files the platform already has")?
        };
        let skip: HashSet<String> = matched.iter().map(|m| m.path.clone()).collect();
        // Send back the server's matches with the local modes and sizes.
        let matched: Vec<MatchResource> = wanted
            .into_iter()
            .filter(|w| skip.contains(&w.path))
            .collect();
        let zip = tokio::task::spawn_blocking(move || build_zip(&entries, &skip))
            .await
            .context("zipping stopped unexpectedly")?
            .map_err(|e| anyhow!("cannot zip the app directory: {e}"))?;
        (matched, zip)
    };

    let package = client
        .create_package(&app.guid)
        .await
        .or_explain(format!("cannot create a package for app {}", app.name))?;
    println!(
        "Uploading files ({}; {} file(s) already on the platform)...",
        ui::human_bytes(zip.len() as u64),
        matched.len()
    );
    let bar = ui::upload_bar(zip.len() as u64);
    let progress: Option<Progress> = bar.clone().map(|b| {
        let p: Progress = Arc::new(move |sent, _total| b.set_position(sent));
        p
    });
    let uploaded = client
        .upload_package(&package.guid, &matched, Some(zip.into()), progress)
        .await;
    // A finished bar stays on screen, a failed one goes: the error says why.
    if let Some(b) = bar {
        if uploaded.is_ok() {
            b.finish();
        } else {
            b.finish_and_clear();
        }
    }
    uploaded.or_explain(format!("cannot upload the files of app {}", app.name))?;
    client
        .wait_package_ready(&package.guid, PACKAGE_TIMEOUT)
        .await
        .or_explain(format!("the upload of app {} was not accepted", app.name))?;
    Ok(package.guid)
}

/// Stages a package while printing the staging output (`STG` lines);
/// returns the droplet's guid.
pub(crate) async fn stage(
    client: &Client,
    app: &App,
    package_guid: &str,
) -> anyhow::Result<String> {
    let mut tail = LogTail::new(&app.guid, now_nanos());
    let build = client
        .create_build(package_guid)
        .await
        .or_explain(format!("cannot start staging app {}", app.name))?;
    let start = Instant::now();
    let mut logs_ok = true;
    let mut poll_build = true;
    let mut backoff = ingot_client::poll::Backoff::new();
    loop {
        print_staging_lines(client, &mut tail, &mut logs_ok).await;
        // The build is polled every other tick, the logs every tick.
        if poll_build {
            let build = client
                .build(&build.guid)
                .await
                .or_explain(format!("cannot follow the staging of app {}", app.name))?;
            match build.state.as_str() {
                "STAGED" => {
                    print_staging_lines(client, &mut tail, &mut logs_ok).await;
                    return build.droplet.map(|d| d.guid).ok_or_else(|| {
                        anyhow!(
                            "staging app {} succeeded but the build {} names no droplet",
                            app.name,
                            build.guid
                        )
                    });
                }
                "FAILED" => {
                    print_staging_lines(client, &mut tail, &mut logs_ok).await;
                    return Err(anyhow!(
                        "staging app {} failed: {}: run `ingot logs {} --recent` for the staging output",
                        app.name,
                        build.error.unwrap_or_else(|| "no reason given".into()),
                        app.name
                    ));
                }
                _ => {}
            }
        }
        if start.elapsed() > STAGING_TIMEOUT {
            return Err(anyhow!(
                "staging app {} did not finish within {} s: run `ingot logs {} --recent`",
                app.name,
                STAGING_TIMEOUT.as_secs(),
                app.name
            ));
        }
        poll_build = !poll_build;
        backoff.wait().await;
    }
}

/// Prints the new staging lines. A log-cache failure is reported once and
/// does not stop the push: the output is a convenience, the build decides.
async fn print_staging_lines(client: &Client, tail: &mut LogTail, logs_ok: &mut bool) {
    match tail.poll(client).await {
        Ok(lines) => {
            for env in lines.iter().filter(|e| e.source_type() == "STG") {
                println!("{}", env.format_line(&chrono::Local));
            }
        }
        Err(e) if *logs_ok => {
            *logs_ok = false;
            eprintln!("warning: cannot read the staging output: {e}");
        }
        Err(_) => {}
    }
}

/// A `-b` value: names and URLs pass through; a local directory or .zip is
/// uploaded as an admin buildpack named after it, and that name is used.
async fn resolve_buildpack(client: &Client, spec: &str, cwd: &Path) -> anyhow::Result<String> {
    if spec.contains("://") {
        return Ok(spec.to_string());
    }
    // `./bp` reads better as `/cwd/bp` than as `/cwd/./bp`.
    let path: PathBuf = cwd
        .join(spec)
        .components()
        .filter(|c| !matches!(c, std::path::Component::CurDir))
        .collect();
    let is_zip = path.is_file() && spec.ends_with(".zip");
    if !(path.is_dir() || is_zip) {
        return Ok(spec.to_string());
    }
    let stem = path
        .file_name()
        .map(|n| n.to_string_lossy().trim_end_matches(".zip").to_string())
        .unwrap_or_default();
    let name = buildpack_name(&stem);
    if name.is_empty() {
        return Err(anyhow!("cannot name a buildpack after {}", path.display()));
    }
    println!("Uploading buildpack {name} from {}...", path.display());
    let bytes = if is_zip {
        std::fs::read(&path)
            .with_context(|| format!("cannot read the buildpack {}", path.display()))?
    } else {
        let dir = path.clone();
        tokio::task::spawn_blocking(move || zip_dir(&dir))
            .await
            .context("zipping stopped unexpectedly")?
            .map_err(|e| anyhow!("cannot zip the buildpack directory: {e}"))?
    };
    let existing = client
        .buildpacks(Some(&name))
        .await
        .or_explain(format!("cannot look up buildpack {name}"))?
        .into_iter()
        .find(|b| b.name == name);
    let buildpack = match existing {
        Some(b) => b,
        None => client
            .create_buildpack(&name)
            .await
            .or_explain(format!("cannot create buildpack {name}"))?,
    };
    client
        .upload_buildpack(
            &buildpack.guid,
            &format!("{name}.zip"),
            bytes.into(),
            Duration::from_secs(120),
        )
        .await
        .or_explain(format!("cannot upload buildpack {name}"))?;
    Ok(name)
}

/// A buildpack name from a file name: letters, digits, `_` and `-` only.
fn buildpack_name(stem: &str) -> String {
    stem.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buildpack_names_are_safe() {
        assert_eq!(buildpack_name("my buildpack.v2"), "my_buildpack_v2");
        assert_eq!(buildpack_name("custom-bp_1"), "custom-bp_1");
    }
}
