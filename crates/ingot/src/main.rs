//! `ingot`: the platform (`ingot up`) and its command-line client in one binary.
//!
//! The same binary also runs inside and beside containers: `ingot lifecycle …`
//! (builder, launcher, static file server) and `ingot internal shim …`.

mod builtin_brokers;
mod cli;
mod runtime;
mod ssh_gate;
mod up;

use clap::{Parser, Subcommand};

/// Ingot: a Cloud Foundry-compatible application platform.
#[derive(Parser)]
#[command(name = "ingot", version, about, propagate_version = true)]
struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the whole platform in this process, on the embedded defaults.
    Up(up::UpArgs),
    /// Code that runs inside containers (builder, launcher, static server).
    #[command(hide = true, disable_help_flag = true)]
    Lifecycle {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Helper processes of the platform itself (the container shim).
    #[command(hide = true, disable_help_flag = true)]
    Internal {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    #[command(flatten)]
    Cli(cli::Command),
}

fn main() {
    // `ingot ssh` runs OpenSSH with this binary as its SSH_ASKPASS: called
    // with the prompt as its only argument, it answers with the code.
    if let (Some(code), 2) = (cli::askpass_answer(), std::env::args().len()) {
        println!("{code}");
        return;
    }
    let args = Args::parse();
    let code = match args.command {
        // These two must not start a tokio runtime: they fork and exec.
        Command::Lifecycle { args } => ingot_lifecycle::run_cli(&args),
        Command::Internal { args } => ingot_containers::run_internal(&args),
        Command::Up(up_args) => run_async(up::run(up_args)),
        Command::Cli(command) => run_async(cli::run(command)),
    };
    std::process::exit(code);
}

/// Runs an async entry point on a fresh multi-threaded runtime and turns its
/// outcome into an exit code, printing the error chain the way users read it.
fn run_async(fut: impl std::future::Future<Output = anyhow::Result<()>>) -> i32 {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(err) => {
            eprintln!("error: cannot start the async runtime: {err}");
            return 1;
        }
    };
    match runtime.block_on(fut) {
        Ok(()) => 0,
        Err(err) => {
            eprintln!("error: {err:#}");
            1
        }
    }
}
