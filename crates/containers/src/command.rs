//! Running the external tools (`runc`, `ip`, `nft`) and turning their failures into errors.

use std::path::Path;
use std::process::{Output, Stdio};

use tokio::io::AsyncWriteExt;

use crate::ContainerError;

fn command_line(program: &Path, args: &[&str]) -> String {
    let mut line = program.display().to_string();
    for arg in args {
        line.push(' ');
        line.push_str(arg);
    }
    line
}

fn check(program: &Path, args: &[&str], output: Output) -> Result<String, ContainerError> {
    if output.status.success() {
        return Ok(String::from_utf8_lossy(&output.stdout).into_owned());
    }
    Err(ContainerError::Command {
        command: command_line(program, args),
        detail: format!(
            "{}: {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        ),
    })
}

/// Runs `program args…` and returns its standard output, or an error with its standard error.
pub(crate) async fn run(program: &Path, args: &[&str]) -> Result<String, ContainerError> {
    run_with_input(program, args, None).await
}

/// Like [`run`], writing `input` to the program's standard input (for `nft -f -`, `ip -batch -`).
pub(crate) async fn run_with_input(
    program: &Path,
    args: &[&str],
    input: Option<&str>,
) -> Result<String, ContainerError> {
    let spawn_error = |e: std::io::Error| ContainerError::Command {
        command: command_line(program, args),
        detail: e.to_string(),
    };
    let mut child = tokio::process::Command::new(program)
        .args(args)
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(spawn_error)?;
    if let (Some(input), Some(mut stdin)) = (input, child.stdin.take()) {
        stdin
            .write_all(input.as_bytes())
            .await
            .map_err(spawn_error)?;
        drop(stdin);
    }
    let output = child.wait_with_output().await.map_err(spawn_error)?;
    check(program, args, output)
}

/// Blocking variant of [`run`], for the shim (which has no async runtime).
pub(crate) fn run_blocking(program: &Path, args: &[&str]) -> Result<String, ContainerError> {
    let output = std::process::Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .map_err(|e| ContainerError::Command {
            command: command_line(program, args),
            detail: e.to_string(),
        })?;
    check(program, args, output)
}
