//! `stacks`, `stack` and `buildpacks`: the platform's root file systems and
//! admin buildpacks, as cf lists them.

use anyhow::anyhow;
use clap::Args;
use ingot_client::platform::{BuildpackInfo, Stack};
use serde::Serialize;

use super::{ui, ListArgs, OrExplain as _, Session};

/// Flags of `stack`.
#[derive(Args)]
pub struct StackArgs {
    /// The stack's name.
    name: String,
    /// Print only the stack's guid.
    #[arg(long)]
    guid: bool,
    /// Print machine-readable JSON.
    #[arg(long)]
    json: bool,
}

/// The table of `stacks`.
pub(crate) fn stacks_table(stacks: &[Stack]) -> String {
    let mut rows = vec![vec!["name".to_string(), "description".to_string()]];
    rows.extend(stacks.iter().map(|s| {
        let name = if s.default {
            format!("{} (default)", s.name)
        } else {
            s.name.clone()
        };
        vec![name, s.description.clone().unwrap_or_default()]
    }));
    ui::table(&rows)
}

/// `ingot stacks`.
pub(crate) async fn stacks(args: ListArgs) -> anyhow::Result<()> {
    let mut session = Session::open()?;
    if !args.json {
        println!("Getting stacks as {}...\n", session.user());
    }
    let stacks = session
        .client()
        .stacks(None)
        .await
        .or_explain("cannot list the stacks")?;
    session.keep_tokens();
    if args.json {
        println!("{}", serde_json::to_string_pretty(&stacks)?);
    } else if stacks.is_empty() {
        println!("No stacks found.");
    } else {
        print!("{}", stacks_table(&stacks));
    }
    Ok(())
}

/// `ingot stack NAME [--guid]`.
pub(crate) async fn stack(args: StackArgs) -> anyhow::Result<()> {
    let mut session = Session::open()?;
    let stack = session
        .client()
        .stacks(Some(&args.name))
        .await
        .or_explain(format!("cannot look up stack {}", args.name))?
        .into_iter()
        .find(|s| s.name == args.name)
        .ok_or_else(|| {
            anyhow!(
                "stack {} not found: run `ingot stacks` to see them",
                args.name
            )
        })?;
    session.keep_tokens();
    if args.guid {
        println!("{}", stack.guid);
    } else if args.json {
        println!("{}", serde_json::to_string_pretty(&stack)?);
    } else {
        println!(
            "Getting info for stack {} as {}...\n",
            stack.name,
            session.user()
        );
        let rows = vec![
            vec!["name:".to_string(), stack.name],
            vec![
                "description:".to_string(),
                stack.description.unwrap_or_default(),
            ],
            vec!["default:".to_string(), stack.default.to_string()],
        ];
        print!("{}", ui::table(&rows));
    }
    Ok(())
}

/// One buildpack of `buildpacks --json`.
#[derive(Debug, Serialize)]
pub(crate) struct BuildpackRow {
    position: Option<u32>,
    name: String,
    stack: Option<String>,
    enabled: bool,
    locked: bool,
    state: String,
    filename: Option<String>,
}

/// The table of `buildpacks`, with cf's columns.
pub(crate) fn buildpacks_table(buildpacks: &[BuildpackInfo]) -> String {
    let mut rows = vec![vec![
        "position".to_string(),
        "name".to_string(),
        "stack".to_string(),
        "enabled".to_string(),
        "locked".to_string(),
        "state".to_string(),
        "filename".to_string(),
    ]];
    rows.extend(buildpacks.iter().map(|b| {
        vec![
            b.position.map(|p| p.to_string()).unwrap_or_default(),
            b.name.clone(),
            b.stack.clone().unwrap_or_default(),
            b.enabled.to_string(),
            b.locked.to_string(),
            b.state.to_lowercase(),
            b.filename.clone().unwrap_or_default(),
        ]
    }));
    ui::table(&rows)
}

/// `ingot buildpacks`.
pub(crate) async fn buildpacks(args: ListArgs) -> anyhow::Result<()> {
    let mut session = Session::open()?;
    if !args.json {
        println!("Getting buildpacks as {}...\n", session.user());
    }
    let buildpacks = session
        .client()
        .buildpack_infos()
        .await
        .or_explain("cannot list the buildpacks")?;
    session.keep_tokens();
    if args.json {
        let rows: Vec<BuildpackRow> = buildpacks
            .into_iter()
            .map(|b| BuildpackRow {
                position: b.position,
                name: b.name,
                stack: b.stack,
                enabled: b.enabled,
                locked: b.locked,
                state: b.state,
                filename: b.filename,
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&rows)?);
    } else if buildpacks.is_empty() {
        println!("No buildpacks found.");
    } else {
        print!("{}", buildpacks_table(&buildpacks));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_read_like_cf() {
        let stacks: Vec<Stack> = serde_json::from_value(serde_json::json!([
            {"guid": "a", "name": "cflinuxfs4", "description": "Ubuntu 22.04", "default": true},
            {"guid": "b", "name": "tiny", "description": null, "default": false}
        ]))
        .expect("stacks");
        assert_eq!(
            stacks_table(&stacks),
            "name                   description\ncflinuxfs4 (default)   Ubuntu 22.04\ntiny\n"
        );
        let bps: Vec<BuildpackInfo> = serde_json::from_value(serde_json::json!([
            {"guid": "x", "name": "staticfile_buildpack", "position": 1, "enabled": true,
             "locked": false, "state": "READY", "stack": null, "filename": null}
        ]))
        .expect("buildpacks");
        assert_eq!(
            buildpacks_table(&bps),
            "position   name                   stack   enabled   locked   state   filename\n\
             1          staticfile_buildpack           true      false    ready\n"
        );
    }
}
