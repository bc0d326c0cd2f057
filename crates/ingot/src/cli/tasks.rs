//! `run-task`, `tasks`, `terminate-task`: one-off commands run from an
//! app's droplet, with the names, flags and output of the `cf` CLI.

use anyhow::anyhow;
use clap::Args;
use ingot_client::manifest::parse_megabytes;
use reqwest::Method;
use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::{find_app, ui, OrExplain as _, Session};

/// A task as the CLI reads it.
#[derive(Debug, Clone, Deserialize)]
struct Task {
    guid: String,
    sequence_id: u64,
    name: String,
    state: String,
    #[serde(default)]
    command: Option<String>,
    created_at: String,
}

/// Flags of `run-task`.
#[derive(Args)]
pub struct RunTaskArgs {
    /// The app's name.
    app: String,
    /// The command to run.
    command: String,
    /// The task's name (random if not given).
    #[arg(long)]
    name: Option<String>,
    /// Memory limit, e.g. 256M or 1G.
    #[arg(short = 'm', long = "memory")]
    memory: Option<String>,
    /// Disk limit, e.g. 1G.
    #[arg(short = 'k', long = "disk")]
    disk: Option<String>,
}

/// Flags of `tasks`.
#[derive(Args)]
pub struct TasksArgs {
    /// The app's name.
    app: String,
}

/// Flags of `terminate-task`.
#[derive(Args)]
pub struct TerminateTaskArgs {
    /// The app's name.
    app: String,
    /// The task's id (its sequence id, as `tasks` lists it).
    task_id: u64,
}

/// `ingot run-task APP COMMAND`.
pub async fn run_task(args: RunTaskArgs) -> anyhow::Result<()> {
    let mut session = Session::open()?;
    let (org, space) = session.target()?;
    let memory = args.memory.as_deref().map(parse_megabytes).transpose()?;
    let disk = args.disk.as_deref().map(parse_megabytes).transpose()?;
    let app = find_app(&session, &space, &args.app).await?;
    println!(
        "Creating task for app {} in org {} / space {} as {}...",
        app.name,
        org.name,
        space.name,
        session.user()
    );
    let task: Task = session
        .client()
        .send_json(
            Method::POST,
            &format!("/v3/apps/{}/tasks", app.guid),
            &create_body(&args.command, args.name.as_deref(), memory, disk),
        )
        .await
        .or_explain(format!("cannot run a task on app {}", app.name))?;
    println!("Task has been submitted successfully for execution.");
    println!("OK\n");
    print!(
        "{}",
        ui::table(&[
            vec!["task name:".into(), task.name],
            vec!["task id:".into(), task.sequence_id.to_string()],
        ])
    );
    session.keep_tokens();
    Ok(())
}

/// The body of `POST /v3/apps/:guid/tasks`.
fn create_body(
    command: &str,
    name: Option<&str>,
    memory_mb: Option<u64>,
    disk_mb: Option<u64>,
) -> Value {
    let mut body = Map::new();
    body.insert("command".into(), json!(command));
    if let Some(name) = name {
        body.insert("name".into(), json!(name));
    }
    if let Some(m) = memory_mb {
        body.insert("memory_in_mb".into(), json!(m));
    }
    if let Some(d) = disk_mb {
        body.insert("disk_in_mb".into(), json!(d));
    }
    Value::Object(body)
}

/// Every task of the app.
async fn app_tasks(session: &Session, app_guid: &str, app_name: &str) -> anyhow::Result<Vec<Task>> {
    session
        .client()
        .list_all::<Task>(
            &format!("/v3/apps/{app_guid}/tasks"),
            &[("per_page", "5000")],
        )
        .await
        .or_explain(format!("cannot list the tasks of app {app_name}"))
}

/// `ingot tasks APP`.
pub async fn tasks(args: TasksArgs) -> anyhow::Result<()> {
    let mut session = Session::open()?;
    let (org, space) = session.target()?;
    let app = find_app(&session, &space, &args.app).await?;
    println!(
        "Getting tasks for app {} in org {} / space {} as {}...\n",
        app.name,
        org.name,
        space.name,
        session.user()
    );
    let tasks = app_tasks(&session, &app.guid, &app.name).await?;
    print!("{}", ui::table(&task_rows(tasks)));
    session.keep_tokens();
    Ok(())
}

/// The `tasks` table, newest first as cf shows it.
fn task_rows(mut tasks: Vec<Task>) -> Vec<Vec<String>> {
    tasks.sort_by_key(|t| std::cmp::Reverse(t.sequence_id));
    let mut rows = vec![vec![
        "id".to_string(),
        "name".to_string(),
        "state".to_string(),
        "start time".to_string(),
        "command".to_string(),
    ]];
    for task in tasks {
        rows.push(vec![
            task.sequence_id.to_string(),
            task.name,
            task.state,
            start_time(&task.created_at),
            task.command.unwrap_or_else(|| "[hidden]".to_string()),
        ]);
    }
    rows
}

/// `2026-11-25T12:00:00Z` as cf prints it: `Wed, 25 Nov 2026 12:00:00 UTC`.
fn start_time(created_at: &str) -> String {
    chrono::DateTime::parse_from_rfc3339(created_at)
        .map(|t| {
            t.with_timezone(&chrono::Utc)
                .format("%a, %d %b %Y %H:%M:%S UTC")
                .to_string()
        })
        .unwrap_or_else(|_| created_at.to_string())
}

/// `ingot terminate-task APP TASK_ID`.
pub async fn terminate_task(args: TerminateTaskArgs) -> anyhow::Result<()> {
    let mut session = Session::open()?;
    let (org, space) = session.target()?;
    let app = find_app(&session, &space, &args.app).await?;
    println!(
        "Terminating task {} of app {} in org {} / space {} as {}...",
        args.task_id,
        app.name,
        org.name,
        space.name,
        session.user()
    );
    let task = app_tasks(&session, &app.guid, &app.name)
        .await?
        .into_iter()
        .find(|t| t.sequence_id == args.task_id)
        .ok_or_else(|| {
            anyhow!(
                "task {} of app {} not found: run `ingot tasks {}` to see its tasks",
                args.task_id,
                app.name,
                app.name
            )
        })?;
    let _: Value = session
        .client()
        .send_json(
            Method::POST,
            &format!("/v3/tasks/{}/actions/cancel", task.guid),
            &json!({}),
        )
        .await
        .or_explain(format!(
            "cannot terminate task {} of app {}",
            args.task_id, app.name
        ))?;
    println!("OK");
    session.keep_tokens();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task(id: u64, name: &str, state: &str, command: Option<&str>) -> Task {
        Task {
            guid: format!("guid-{id}"),
            sequence_id: id,
            name: name.into(),
            state: state.into(),
            command: command.map(str::to_string),
            created_at: "2026-11-25T12:00:00Z".into(),
        }
    }

    #[test]
    fn the_table_lists_newest_first_with_cf_times() {
        let rows = task_rows(vec![
            task(1, "migrate", "SUCCEEDED", Some("rake db:migrate")),
            task(2, "a1b2c3d4", "RUNNING", None),
        ]);
        assert_eq!(rows[0], ["id", "name", "state", "start time", "command"]);
        assert_eq!(
            rows[1],
            [
                "2",
                "a1b2c3d4",
                "RUNNING",
                "Wed, 25 Nov 2026 12:00:00 UTC",
                "[hidden]"
            ]
        );
        assert_eq!(rows[2][0], "1");
        assert_eq!(rows[2][4], "rake db:migrate");
    }

    #[test]
    fn the_create_body_holds_only_what_was_given() {
        assert_eq!(
            create_body("echo hi", None, None, None),
            json!({"command": "echo hi"})
        );
        assert_eq!(
            create_body("x", Some("n"), Some(64), Some(512)),
            json!({"command": "x", "name": "n", "memory_in_mb": 64, "disk_in_mb": 512})
        );
    }
}
