//! The `hfmesh` command line: one binary for pulls, the hub emulator and (later) the agent and
//! ops commands. Errors are printed as one line (the whole cause chain) with a non-zero exit.

use clap::{Parser, Subcommand};

/// Ops commands of the disk quota: pin, unpin, evict, gc.
pub mod evict;
/// Ops commands over the agent's control API.
pub mod ops;
/// `hfmesh pull`.
pub mod pull;
/// `hfmesh verify`.
pub mod verify;

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
    /// Download a model or dataset snapshot into the Hugging Face cache tree.
    Pull(pull::PullArgs),
    /// Run the agent: serve this host's cache to the cluster and pull through the mesh.
    Agent(crate::agent::cli::AgentArgs),
    /// Show the local agent's state.
    Status(ops::OpsArgs),
    /// List the peers the local agent knows, with topology, RTT and bytes each way.
    Peers(ops::OpsArgs),
    /// List the snapshots the local agent holds and serves; with `--peer ID` or `--all`, ask
    /// nodes live what snapshots and blobs (complete or partial) they hold.
    Holdings(ops::HoldingsArgs),
    /// Ask the DHT which nodes hold a snapshot.
    WhoHas {
        /// `org/name[:rev]`.
        #[arg(value_name = "REPO[:REV]")]
        repo: String,
        /// The repository is a dataset.
        #[arg(long)]
        dataset: bool,
        #[command(flatten)]
        ops: ops::OpsArgs,
    },
    /// Re-hash the local cache tree, report damage and repair it (from the mesh through the agent).
    Verify(verify::VerifyArgs),
    /// Keep a snapshot held here out of eviction.
    Pin(evict::SnapshotArgs),
    /// Let a pinned snapshot be evicted again.
    Unpin(evict::SnapshotArgs),
    /// Remove a snapshot from this host's cache now (refused if pinned, preloaded or in use).
    Evict(evict::SnapshotArgs),
    /// Apply the eviction policy now: above the quota's high watermark, evict least recently
    /// used snapshots down to the low watermark.
    Gc(ops::OpsArgs),
    /// Project thousands of hosts with the scale model (the mesh's scheduler on a simulated network).
    ScaleModel(crate::scale::cli::ScaleArgs),
    /// Serve an HF-compatible Hub on loopback (for tests, demos and simulations).
    HubEmulator(crate::emulator::cli::HubEmulatorArgs),
    /// Play a cluster scenario (TOML) with real agents and the hub emulator (on loopback, or in
    /// network namespaces with shaped links), and write a report comparing the mesh with every
    /// host pulling from the Hub.
    Simulate(crate::sim::SimulateArgs),
}

/// Parses the command line, runs the command and returns the process exit code.
pub fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    init_logging();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("hfmesh: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Pull(args) => pull::run(args).await,
            Command::Status(args) => ops::status(&args).await,
            Command::Peers(args) => ops::peers(&args).await,
            Command::Holdings(args) => ops::holdings(&args).await,
            Command::WhoHas {
                repo,
                dataset,
                ops: args,
            } => ops::who_has(&args, &repo, dataset).await,
            Command::Verify(args) => verify::run(args).await,
            Command::Pin(args) => evict::pin(&args, true).await,
            Command::Unpin(args) => evict::pin(&args, false).await,
            Command::Evict(args) => evict::evict(&args).await,
            Command::Gc(args) => evict::gc(&args).await,
            Command::ScaleModel(args) => crate::scale::cli::run(args).await,
            Command::Agent(args) => crate::agent::cli::run(args).await,
            Command::HubEmulator(args) => crate::emulator::cli::run(args).await,
            Command::Simulate(args) => crate::sim::main(args).await,
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

/// Logs to stderr, filtered by `HFMESH_LOG` (default `warn`); `HFMESH_LOG_FORMAT=json` for JSON.
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("HFMESH_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if std::env::var("HFMESH_LOG_FORMAT").is_ok_and(|f| f == "json") {
        builder.json().init();
    } else {
        builder.init();
    }
}
