//! `apps`, `app`, `scale`, `start`, `stop`, `restart`, `delete`, `env`,
//! `set-env`: looking at and steering apps that exist.

use std::time::{Duration, Instant};

use anyhow::anyhow;
use clap::Args;
use ingot_client::manifest::parse_megabytes;
use ingot_client::resources::{App, InstanceStats};
use ingot_client::Client;

use serde::Serialize;

use super::{find_app, ui, ListArgs, OrExplain as _, Session};

/// How long `start`, `restart` and `push` wait for a running instance.
pub(crate) const START_TIMEOUT: Duration = Duration::from_secs(180);

/// An app name.
#[derive(Args)]
pub struct AppArgs {
    /// The app's name.
    name: String,
}

impl AppArgs {
    /// The arguments naming this app.
    pub(crate) fn named(name: String) -> Self {
        AppArgs { name }
    }
}

/// An app name, and `--json` for `app` and `env`.
#[derive(Args)]
pub struct ShowArgs {
    /// The app's name.
    name: String,
    /// Print machine-readable JSON instead of text.
    #[arg(long)]
    json: bool,
}

/// Flags of `scale`.
#[derive(Args)]
pub struct ScaleArgs {
    /// The app's name.
    name: String,
    /// Number of instances.
    #[arg(short = 'i', long = "instances")]
    instances: Option<u32>,
    /// Memory per instance, e.g. 256M or 1G.
    #[arg(short = 'm', long = "memory")]
    memory: Option<String>,
    /// Disk per instance, e.g. 1G.
    #[arg(short = 'k', long = "disk")]
    disk: Option<String>,
    /// Log bytes per second per instance, e.g. 1K or 10M; -1 for no limit.
    #[arg(short = 'l', long = "log-rate-limit", allow_hyphen_values = true)]
    log_rate_limit: Option<String>,
    /// Do not ask before restarting the app for new memory or disk.
    #[arg(short = 'f')]
    force: bool,
}

/// Flags of `delete`.
#[derive(Args)]
pub struct DeleteArgs {
    /// The app's name.
    name: String,
    /// Do not ask for confirmation.
    #[arg(short = 'f')]
    force: bool,
    /// Also delete the app's routes.
    #[arg(short = 'r')]
    routes: bool,
}

/// Flags of `set-env`.
#[derive(Args)]
pub struct SetEnvArgs {
    /// The app's name.
    name: String,
    /// Variable name.
    key: String,
    /// Variable value.
    value: String,
}

/// `ingot apps`.
pub(crate) async fn apps(args: ListArgs) -> anyhow::Result<()> {
    let mut session = Session::open()?;
    let (org, space) = session.target()?;
    if !args.json {
        println!(
            "Getting apps in org {} / space {} as {}...\n",
            org.name,
            space.name,
            session.user()
        );
    }
    let client = session.client();
    let apps = client
        .apps(&space.guid)
        .await
        .or_explain(format!("cannot list the apps of space {}", space.name))?;
    let mut rows = vec![vec![
        "name".to_string(),
        "requested state".to_string(),
        "processes".to_string(),
        "routes".to_string(),
    ]];
    let mut listed = Vec::new();
    for app in apps {
        let processes = process_counts(client, &app).await?;
        let routes = client
            .app_routes(&app.guid)
            .await
            .or_explain(format!("cannot list the routes of app {}", app.name))?
            .into_iter()
            .map(|r| session.route_link(&r.url))
            .collect::<Vec<_>>();
        listed.push(AppRow {
            name: app.name,
            guid: app.guid,
            state: app.state.to_lowercase(),
            processes,
            routes,
        });
    }
    session.keep_tokens();
    if args.json {
        println!("{}", serde_json::to_string_pretty(&listed)?);
        return Ok(());
    }
    for app in listed {
        let processes = summary_text(&app.processes);
        rows.push(vec![app.name, app.state, processes, app.routes.join(", ")]);
    }
    if rows.len() == 1 {
        println!("No apps found.");
    } else {
        print!("{}", ui::table(&rows));
    }
    Ok(())
}

/// One app in `apps --json`.
#[derive(Debug, Serialize)]
pub(crate) struct AppRow {
    /// The app's name.
    pub name: String,
    /// The app's GUID.
    pub guid: String,
    /// Requested state, lower case: `started` or `stopped`.
    pub state: String,
    /// Its processes, with instance counts.
    pub processes: Vec<ProcessCount>,
    /// Its routes, as URLs.
    pub routes: Vec<String>,
}

/// Desired and running instances of one process type.
#[derive(Debug, Serialize)]
pub(crate) struct ProcessCount {
    /// The process type, e.g. `web`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Desired instances.
    pub instances: u32,
    /// Instances now RUNNING.
    pub running: usize,
}

/// `web:1/2, worker:0/1` — running over desired, per process type.
fn summary_text(counts: &[ProcessCount]) -> String {
    counts
        .iter()
        .map(|p| format!("{}:{}/{}", p.kind, p.running, p.instances))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Running and desired instances, per process type.
async fn process_counts(client: &Client, app: &App) -> anyhow::Result<Vec<ProcessCount>> {
    let processes = client
        .processes(&app.guid)
        .await
        .or_explain(format!("cannot list the processes of app {}", app.name))?;
    let mut parts = Vec::new();
    for p in processes {
        let running = if p.instances == 0 {
            0
        } else {
            client
                .process_stats(&p.guid)
                .await
                .map(|s| s.iter().filter(|i| i.state == "RUNNING").count())
                .unwrap_or(0)
        };
        parts.push(ProcessCount {
            kind: p.kind,
            instances: p.instances,
            running,
        });
    }
    Ok(parts)
}

/// Prints what `cf app` prints: the app, its routes, droplet, and a table
/// of the web process's instances.
pub(crate) async fn print_app_summary(session: &Session, app: &App) -> anyhow::Result<()> {
    let client = session.client();
    let routes = client
        .app_routes(&app.guid)
        .await
        .or_explain(format!("cannot list the routes of app {}", app.name))?;
    let droplet = client
        .current_droplet(&app.guid)
        .await
        .or_explain(format!("cannot read the droplet of app {}", app.name))?;
    let buildpacks = droplet
        .as_ref()
        .map(|d| {
            d.buildpacks
                .iter()
                .map(|b| b.buildpack_name.clone().unwrap_or_else(|| b.name.clone()))
                .collect::<Vec<_>>()
                .join(", ")
        })
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| app.lifecycle.data.buildpacks.join(", "));
    let stack = droplet
        .as_ref()
        .and_then(|d| d.stack.clone())
        .or_else(|| app.lifecycle.data.stack.clone())
        .unwrap_or_default();
    let mut rows = vec![
        vec!["name:".to_string(), app.name.clone()],
        vec!["requested state:".to_string(), app.state.to_lowercase()],
        vec![
            "routes:".to_string(),
            routes
                .iter()
                .map(|r| r.url.clone())
                .collect::<Vec<_>>()
                .join(", "),
        ],
    ];
    match droplet.as_ref().and_then(|d| d.image.clone()) {
        // cf shows the image of a docker app instead of stack and buildpacks.
        Some(image) => rows.push(vec!["docker image:".to_string(), image]),
        None => {
            rows.push(vec!["stack:".to_string(), stack]);
            rows.push(vec!["buildpacks:".to_string(), buildpacks]);
        }
    }
    print!("{}", ui::table(&rows));

    let processes = client
        .processes(&app.guid)
        .await
        .or_explain(format!("cannot list the processes of app {}", app.name))?;
    for p in processes {
        let stats = client
            .process_stats(&p.guid)
            .await
            .or_explain(format!("cannot read the instances of app {}", app.name))?;
        let running = stats.iter().filter(|s| s.state == "RUNNING").count();
        println!();
        let head = vec![
            vec!["type:".to_string(), p.kind.clone()],
            vec![
                "instances:".to_string(),
                format!("{running}/{}", p.instances),
            ],
            vec!["memory usage:".to_string(), format!("{}M", p.memory_in_mb)],
        ];
        print!("{}", ui::table(&head));
        if stats.is_empty() {
            println!("There are no running instances of this process.");
            continue;
        }
        print!("{}", ui::table(&instance_rows(&stats)));
    }
    Ok(())
}

/// `app --json`: the app, its routes, droplet and instances.
#[derive(Debug, Serialize)]
pub(crate) struct AppDetail {
    /// The app's name.
    pub name: String,
    /// The app's GUID.
    pub guid: String,
    /// Requested state, lower case.
    pub state: String,
    /// Its routes, as URLs.
    pub routes: Vec<String>,
    /// The stack it runs on, when known.
    pub stack: Option<String>,
    /// The buildpacks of its droplet (or those requested).
    pub buildpacks: Vec<String>,
    /// Its processes.
    pub processes: Vec<ProcessDetail>,
}

/// One process of `app --json`.
#[derive(Debug, Serialize)]
pub(crate) struct ProcessDetail {
    /// The process type, e.g. `web`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Desired instances.
    pub instances: u32,
    /// Instances now RUNNING.
    pub running: usize,
    /// Memory limit per instance.
    pub memory_in_mb: u64,
    /// Disk limit per instance.
    pub disk_in_mb: u64,
    /// Each instance.
    pub stats: Vec<InstanceDetail>,
}

/// One instance of `app --json`.
#[derive(Debug, Serialize)]
pub(crate) struct InstanceDetail {
    /// Its index.
    pub index: u32,
    /// Its state, lower case: `running`, `starting`, `crashed`, `down`.
    pub state: String,
    /// Seconds since it started, when running.
    pub uptime_seconds: Option<u64>,
    /// CPU use as a fraction of one core.
    pub cpu: Option<f64>,
    /// Memory in use, bytes.
    pub memory_bytes: Option<u64>,
    /// Memory limit, bytes.
    pub memory_quota_bytes: Option<u64>,
    /// Disk in use, bytes.
    pub disk_bytes: Option<u64>,
    /// Disk limit, bytes.
    pub disk_quota_bytes: Option<u64>,
    /// Why it is not running, when the platform says.
    pub details: Option<String>,
}

/// An instance as `app --json` shows it.
pub(crate) fn instance_detail(s: &InstanceStats) -> InstanceDetail {
    InstanceDetail {
        index: s.index,
        state: s.state.to_lowercase(),
        uptime_seconds: s.uptime,
        cpu: s.usage.as_ref().map(|u| u.cpu),
        memory_bytes: s.usage.as_ref().map(|u| u.mem),
        memory_quota_bytes: s.mem_quota,
        disk_bytes: s.usage.as_ref().map(|u| u.disk),
        disk_quota_bytes: s.disk_quota,
        details: s.details.clone(),
    }
}

/// Gathers what `app --json` prints.
async fn app_detail(session: &Session, app: &App) -> anyhow::Result<AppDetail> {
    let client = session.client();
    let routes = client
        .app_routes(&app.guid)
        .await
        .or_explain(format!("cannot list the routes of app {}", app.name))?;
    let droplet = client
        .current_droplet(&app.guid)
        .await
        .or_explain(format!("cannot read the droplet of app {}", app.name))?;
    let mut buildpacks: Vec<String> = droplet
        .as_ref()
        .map(|d| {
            d.buildpacks
                .iter()
                .map(|b| b.buildpack_name.clone().unwrap_or_else(|| b.name.clone()))
                .collect()
        })
        .unwrap_or_default();
    if buildpacks.is_empty() {
        buildpacks = app.lifecycle.data.buildpacks.clone();
    }
    let stack = droplet
        .as_ref()
        .and_then(|d| d.stack.clone())
        .or_else(|| app.lifecycle.data.stack.clone());
    let mut processes = Vec::new();
    for p in client
        .processes(&app.guid)
        .await
        .or_explain(format!("cannot list the processes of app {}", app.name))?
    {
        let stats = client
            .process_stats(&p.guid)
            .await
            .or_explain(format!("cannot read the instances of app {}", app.name))?;
        processes.push(ProcessDetail {
            running: stats.iter().filter(|s| s.state == "RUNNING").count(),
            kind: p.kind,
            instances: p.instances,
            memory_in_mb: p.memory_in_mb,
            disk_in_mb: p.disk_in_mb,
            stats: stats.iter().map(instance_detail).collect(),
        });
    }
    Ok(AppDetail {
        name: app.name.clone(),
        guid: app.guid.clone(),
        state: app.state.to_lowercase(),
        routes: routes.iter().map(|r| session.route_link(&r.url)).collect(),
        stack,
        buildpacks,
        processes,
    })
}

/// The instance table of `cf app`.
fn instance_rows(stats: &[InstanceStats]) -> Vec<Vec<String>> {
    let mut rows = vec![vec![
        String::new(),
        "state".to_string(),
        "since".to_string(),
        "cpu".to_string(),
        "memory".to_string(),
        "disk".to_string(),
        "details".to_string(),
    ]];
    let now = chrono::Utc::now();
    for s in stats {
        let since = s
            .uptime
            .filter(|_| s.state == "RUNNING")
            .and_then(|u| chrono::Duration::try_seconds(u as i64))
            .map(|u| (now - u).format("%Y-%m-%dT%H:%M:%SZ").to_string())
            .unwrap_or_default();
        let (cpu, mem, disk) = match &s.usage {
            Some(u) => (
                format!("{:.1}%", u.cpu * 100.0),
                format!(
                    "{} of {}",
                    ui::human_bytes(u.mem),
                    s.mem_quota.map(ui::human_bytes).unwrap_or_default()
                ),
                format!(
                    "{} of {}",
                    ui::human_bytes(u.disk),
                    s.disk_quota.map(ui::human_bytes).unwrap_or_default()
                ),
            ),
            None => Default::default(),
        };
        rows.push(vec![
            format!("#{}", s.index),
            s.state.to_lowercase(),
            since,
            cpu,
            mem,
            disk,
            s.details.clone().unwrap_or_default(),
        ]);
    }
    rows
}

/// Polls the web process until an instance is RUNNING; all instances
/// CRASHED (or the timeout) is an error naming the app.
pub(crate) async fn wait_running(
    client: &Client,
    app: &App,
    timeout: Duration,
) -> anyhow::Result<()> {
    let process = client
        .process(&app.guid, "web")
        .await
        .or_explain(format!("cannot read the web process of app {}", app.name))?;
    if process.instances == 0 {
        return Ok(());
    }
    let start = Instant::now();
    let mut backoff = ingot_client::poll::Backoff::new();
    loop {
        let stats = client
            .process_stats(&process.guid)
            .await
            .or_explain(format!("cannot read the instances of app {}", app.name))?;
        if stats.iter().any(|s| s.state == "RUNNING") {
            return Ok(());
        }
        if !stats.is_empty() && stats.iter().all(|s| s.state == "CRASHED") {
            let why = stats
                .iter()
                .filter_map(|s| s.details.clone())
                .next()
                .map(|d| format!(" ({d})"))
                .unwrap_or_default();
            return Err(anyhow!(
                "app {} crashed while starting{why}: run `ingot logs {} --recent` to see why",
                app.name,
                app.name
            ));
        }
        if start.elapsed() > timeout {
            return Err(anyhow!(
                "app {} did not start within {} s: run `ingot logs {} --recent` to see why",
                app.name,
                timeout.as_secs(),
                app.name
            ));
        }
        backoff.wait().await;
    }
}

/// `ingot app NAME`.
pub(crate) async fn app(args: ShowArgs) -> anyhow::Result<()> {
    let mut session = Session::open()?;
    let (org, space) = session.target()?;
    if args.json {
        let app = find_app(&session, &space, &args.name).await?;
        let detail = app_detail(&session, &app).await?;
        session.keep_tokens();
        println!("{}", serde_json::to_string_pretty(&detail)?);
        return Ok(());
    }
    println!(
        "Showing health and status for app {} in org {} / space {} as {}...\n",
        args.name,
        org.name,
        space.name,
        session.user()
    );
    let app = find_app(&session, &space, &args.name).await?;
    print_app_summary(&session, &app).await?;
    session.keep_tokens();
    Ok(())
}

/// A log rate limit as cf takes it: `-1` (none), or bytes with an optional
/// `B`, `K`, `M` or `G` suffix.
fn parse_log_rate(input: &str) -> anyhow::Result<i64> {
    let text = input.trim();
    if text == "-1" {
        return Ok(-1);
    }
    let upper = text.to_ascii_uppercase();
    let (digits, unit) = match upper.trim_end_matches('B').chars().last() {
        Some('K') => (&upper[..upper.trim_end_matches('B').len() - 1], 1024),
        Some('M') => (&upper[..upper.trim_end_matches('B').len() - 1], 1024 * 1024),
        Some('G') => (
            &upper[..upper.trim_end_matches('B').len() - 1],
            1024 * 1024 * 1024,
        ),
        _ => (upper.trim_end_matches('B'), 1),
    };
    digits
        .trim()
        .parse::<i64>()
        .ok()
        .filter(|n| *n >= 0)
        .and_then(|n| n.checked_mul(unit))
        .ok_or_else(|| anyhow::anyhow!("{input} is not a log rate limit: use e.g. 1K, 10M or -1"))
}

/// `ingot scale NAME`.
pub(crate) async fn scale(args: ScaleArgs) -> anyhow::Result<()> {
    let mut session = Session::open()?;
    let (org, space) = session.target()?;
    let memory = args.memory.as_deref().map(parse_megabytes).transpose()?;
    let disk = args.disk.as_deref().map(parse_megabytes).transpose()?;
    let log_rate = args
        .log_rate_limit
        .as_deref()
        .map(parse_log_rate)
        .transpose()?;
    let app = find_app(&session, &space, &args.name).await?;
    let client = session.client();
    if args.instances.is_none() && memory.is_none() && disk.is_none() && log_rate.is_none() {
        print_app_summary(&session, &app).await?;
        session.keep_tokens();
        return Ok(());
    }
    println!(
        "Scaling app {} in org {} / space {} as {}...",
        app.name,
        org.name,
        space.name,
        session.user()
    );
    let needs_restart =
        (memory.is_some() || disk.is_some() || log_rate.is_some()) && app.state == "STARTED";
    if needs_restart && !args.force && ui::interactive() {
        let ok = ui::confirm(&format!(
            "This will cause the app {} to restart. Are you sure you want to scale it?",
            app.name
        ))?;
        if !ok {
            println!("Scale cancelled.");
            return Ok(());
        }
    }
    let process = client
        .process(&app.guid, "web")
        .await
        .or_explain(format!("cannot read the web process of app {}", app.name))?;
    client
        .scale(&process.guid, args.instances, memory, disk)
        .await
        .or_explain(format!("cannot scale app {}", app.name))?;
    if let Some(limit) = log_rate {
        client
            .set_log_rate_limit(&process.guid, limit)
            .await
            .or_explain(format!("cannot set the log rate limit of app {}", app.name))?;
    }
    if needs_restart {
        println!("Restarting app {} for the new limits...", app.name);
        let app = client
            .restart_app(&app.guid)
            .await
            .or_explain(format!("cannot restart app {}", app.name))?;
        wait_running(client, &app, START_TIMEOUT).await?;
    }
    println!();
    let app = client
        .app(&app.guid)
        .await
        .or_explain(format!("cannot read app {}", app.name))?;
    print_app_summary(&session, &app).await?;
    session.keep_tokens();
    Ok(())
}

/// `ingot start NAME`.
pub(crate) async fn start(args: AppArgs) -> anyhow::Result<()> {
    start_or_restart(args, false).await
}

/// `ingot restart NAME`.
pub(crate) async fn restart(args: AppArgs) -> anyhow::Result<()> {
    start_or_restart(args, true).await
}

async fn start_or_restart(args: AppArgs, restart: bool) -> anyhow::Result<()> {
    let mut session = Session::open()?;
    let (org, space) = session.target()?;
    let app = find_app(&session, &space, &args.name).await?;
    let client = session.client();
    let verb = if restart { "Restarting" } else { "Starting" };
    println!(
        "{verb} app {} in org {} / space {} as {}...\n",
        app.name,
        org.name,
        space.name,
        session.user()
    );
    if !restart && app.state == "STARTED" {
        println!("App {} is already started.", app.name);
        return Ok(());
    }
    let app = if restart {
        client.restart_app(&app.guid).await
    } else {
        client.start_app(&app.guid).await
    }
    .or_explain(format!(
        "cannot {} app {}",
        verb.to_lowercase().trim_end_matches("ing"),
        args.name
    ))?;
    println!("Waiting for app {} to start...\n", app.name);
    wait_running(client, &app, START_TIMEOUT).await?;
    print_app_summary(&session, &app).await?;
    session.keep_tokens();
    Ok(())
}

/// `ingot stop NAME`.
pub(crate) async fn stop(args: AppArgs) -> anyhow::Result<()> {
    let mut session = Session::open()?;
    let (org, space) = session.target()?;
    let app = find_app(&session, &space, &args.name).await?;
    println!(
        "Stopping app {} in org {} / space {} as {}...",
        app.name,
        org.name,
        space.name,
        session.user()
    );
    session
        .client()
        .stop_app(&app.guid)
        .await
        .or_explain(format!("cannot stop app {}", app.name))?;
    session.keep_tokens();
    println!("OK");
    Ok(())
}

/// `ingot delete NAME`.
pub(crate) async fn delete(args: DeleteArgs) -> anyhow::Result<()> {
    let mut session = Session::open()?;
    let (org, space) = session.target()?;
    if !args.force {
        if !ui::interactive() {
            return Err(anyhow!(
                "deleting app {} needs confirmation: run `ingot delete {} -f`",
                args.name,
                args.name
            ));
        }
        if !ui::confirm(&format!("Really delete the app {}?", args.name))? {
            println!("Delete cancelled.");
            return Ok(());
        }
    }
    println!(
        "Deleting app {} in org {} / space {} as {}...",
        args.name,
        org.name,
        space.name,
        session.user()
    );
    let client = session.client();
    let Some(app) = client
        .app_by_name(&space.guid, &args.name)
        .await
        .or_explain(format!("cannot look up app {}", args.name))?
    else {
        println!("App {} does not exist.", args.name);
        println!("OK");
        return Ok(());
    };
    let routes = if args.routes {
        client
            .app_routes(&app.guid)
            .await
            .or_explain(format!("cannot list the routes of app {}", app.name))?
    } else {
        Vec::new()
    };
    client
        .delete_app(&app.guid, Duration::from_secs(120))
        .await
        .or_explain(format!("cannot delete app {}", app.name))?;
    for r in routes {
        client
            .delete_route(&r.guid, Duration::from_secs(60))
            .await
            .or_explain(format!(
                "app {} is deleted but its route {} is not",
                app.name, r.url
            ))?;
    }
    session.keep_tokens();
    println!("OK");
    Ok(())
}

/// `ingot env NAME`.
pub(crate) async fn env(args: ShowArgs) -> anyhow::Result<()> {
    let mut session = Session::open()?;
    let (org, space) = session.target()?;
    let app = find_app(&session, &space, &args.name).await?;
    if args.json {
        let env = session
            .client()
            .app_env(&app.guid)
            .await
            .or_explain(format!("cannot read the environment of app {}", app.name))?;
        session.keep_tokens();
        // The API's own shape: the same field names as `GET /v3/apps/:guid/env`.
        println!("{}", serde_json::to_string_pretty(&env)?);
        return Ok(());
    }
    println!(
        "Getting env variables for app {} in org {} / space {} as {}...\n",
        app.name,
        org.name,
        space.name,
        session.user()
    );
    let env = session
        .client()
        .app_env(&app.guid)
        .await
        .or_explain(format!("cannot read the environment of app {}", app.name))?;
    session.keep_tokens();
    println!("System-Provided:");
    for (k, v) in env
        .system_env_json
        .iter()
        .chain(env.application_env_json.iter())
    {
        println!("{k}: {}\n", pretty(v));
    }
    println!("User-Provided:");
    for (k, v) in &env.environment_variables {
        println!("{k}: {}", plain(v));
    }
    println!("\nRunning Environment Variable Groups:");
    for (k, v) in &env.running_env_json {
        println!("{k}: {}", plain(v));
    }
    println!("\nStaging Environment Variable Groups:");
    for (k, v) in &env.staging_env_json {
        println!("{k}: {}", plain(v));
    }
    Ok(())
}

fn pretty(v: &serde_json::Value) -> String {
    serde_json::to_string_pretty(v).unwrap_or_else(|_| v.to_string())
}

fn plain(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// `ingot set-env NAME KEY VALUE`.
pub(crate) async fn set_env(args: SetEnvArgs) -> anyhow::Result<()> {
    let mut session = Session::open()?;
    let (org, space) = session.target()?;
    let app = find_app(&session, &space, &args.name).await?;
    println!(
        "Setting env variable {} for app {} in org {} / space {} as {}...",
        args.key,
        app.name,
        org.name,
        space.name,
        session.user()
    );
    session
        .client()
        .set_env(&app.guid, &args.key, Some(&args.value))
        .await
        .or_explain(format!("cannot set {} on app {}", args.key, app.name))?;
    session.keep_tokens();
    println!("OK");
    println!(
        "TIP: the app sees the new value after `ingot restart {}` (or a push).",
        app.name
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_rate_limits_read_like_cf() {
        assert_eq!(parse_log_rate("-1").ok(), Some(-1));
        assert_eq!(parse_log_rate("1K").ok(), Some(1024));
        assert_eq!(parse_log_rate("10MB").ok(), Some(10 * 1024 * 1024));
        assert_eq!(parse_log_rate("512").ok(), Some(512));
        assert!(parse_log_rate("-5").is_err());
        assert!(parse_log_rate("lots").is_err());
    }

    #[test]
    fn apps_json_has_stable_fields() {
        let row = AppRow {
            name: "web-app".into(),
            guid: "g1".into(),
            state: "started".into(),
            processes: vec![ProcessCount {
                kind: "web".into(),
                instances: 2,
                running: 1,
            }],
            routes: vec!["http://web-app.apps.internal".into()],
        };
        assert_eq!(summary_text(&row.processes), "web:1/2");
        assert_eq!(
            serde_json::to_value(vec![row]).expect("json"),
            serde_json::json!([{
                "name": "web-app",
                "guid": "g1",
                "state": "started",
                "processes": [{"type": "web", "instances": 2, "running": 1}],
                "routes": ["http://web-app.apps.internal"],
            }])
        );
    }

    #[test]
    fn app_json_instances_carry_usage_or_null() {
        let running = InstanceStats {
            index: 0,
            state: "RUNNING".into(),
            usage: Some(ingot_client::resources::Usage {
                time: None,
                cpu: 0.25,
                mem: 1024,
                disk: 2048,
            }),
            mem_quota: Some(4096),
            disk_quota: Some(8192),
            uptime: Some(12),
            details: None,
        };
        let down = InstanceStats {
            index: 1,
            state: "CRASHED".into(),
            details: Some("exited 1".into()),
            ..Default::default()
        };
        let detail = ProcessDetail {
            kind: "web".into(),
            instances: 2,
            running: 1,
            memory_in_mb: 256,
            disk_in_mb: 1024,
            stats: vec![instance_detail(&running), instance_detail(&down)],
        };
        assert_eq!(
            serde_json::to_value(&detail).expect("json"),
            serde_json::json!({
                "type": "web", "instances": 2, "running": 1,
                "memory_in_mb": 256, "disk_in_mb": 1024,
                "stats": [
                    {"index": 0, "state": "running", "uptime_seconds": 12, "cpu": 0.25,
                     "memory_bytes": 1024, "memory_quota_bytes": 4096,
                     "disk_bytes": 2048, "disk_quota_bytes": 8192, "details": null},
                    {"index": 1, "state": "crashed", "uptime_seconds": null, "cpu": null,
                     "memory_bytes": null, "memory_quota_bytes": null,
                     "disk_bytes": null, "disk_quota_bytes": null, "details": "exited 1"},
                ],
            })
        );
        let app = AppDetail {
            name: "a".into(),
            guid: "g".into(),
            state: "stopped".into(),
            routes: vec![],
            stack: None,
            buildpacks: vec!["python".into()],
            processes: vec![],
        };
        let v = serde_json::to_value(&app).expect("json");
        let mut keys: Vec<&str> = v
            .as_object()
            .expect("object")
            .keys()
            .map(String::as_str)
            .collect();
        keys.sort();
        assert_eq!(
            keys,
            [
                "buildpacks",
                "guid",
                "name",
                "processes",
                "routes",
                "stack",
                "state"
            ]
        );
    }
}
