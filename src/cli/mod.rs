//! The `hfmesh` command line: one binary for pulls, the hub emulator and (later) the agent and
//! ops commands. Errors are printed as one line (the whole cause chain) with a non-zero exit.

use clap::{Parser, Subcommand};

/// hfmesh: Hugging Face models and datasets on every host, from peers first.
#[derive(Debug, Parser)]
#[command(name = "hfmesh", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve an HF-compatible Hub on loopback (for tests, demos and simulations).
    HubEmulator(crate::emulator::cli::HubEmulatorArgs),
}

/// Parses the command line, runs the command and returns the process exit code.
pub fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("hfmesh: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Command::HubEmulator(args) => crate::emulator::cli::run(args).await,
        }
    });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("hfmesh: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
