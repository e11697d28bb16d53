//! `hfmesh pull REPO[:REV] [--dataset]`: download a snapshot into the cache tree and print its
//! directory as the last line of stdout.

use std::path::PathBuf;

use anyhow::Context as _;

use crate::hub::{HubClient, HubConfig};
use crate::pull::{pull, PullOptions};
use crate::repo::{RepoKind, RepoRef};

/// Flags of `hfmesh pull`.
#[derive(Debug, clap::Args)]
pub struct PullArgs {
    /// Repository and optional revision: `org/name`, `name`, `org/name:branch|tag|commit`.
    #[arg(value_name = "REPO[:REV]")]
    pub repo: String,
    /// The repository is a dataset.
    #[arg(long)]
    pub dataset: bool,
    /// Cache directory [default: HF_HUB_CACHE, else HF_HOME/hub, else ~/.cache/huggingface/hub].
    #[arg(long, env = "HFMESH_CACHE_DIR", value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,
    /// Hub endpoint [default: HF_ENDPOINT, else https://huggingface.co].
    #[arg(long, env = "HFMESH_ENDPOINT", value_name = "URL")]
    pub endpoint: Option<String>,
    /// Hub token [default: HF_TOKEN, else RUNPOD_HUGGINGFACE_TOKEN, else the token file].
    #[arg(long, value_name = "TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Most HTTP transfers in flight at once.
    #[arg(long, env = "HFMESH_MAX_CONNECTIONS", default_value_t = PullOptions::default().max_connections)]
    pub max_connections: usize,
    /// No progress output.
    #[arg(long, short)]
    pub quiet: bool,
    /// Print a JSON report instead of the bare snapshot path (still the last line).
    #[arg(long)]
    pub json: bool,
    /// The local agent's control socket; when an agent answers there, the pull goes through it
    /// (and so through the mesh) [default: HF_HOME/hfmesh/agent.sock].
    #[arg(long, env = "HFMESH_CONTROL_SOCKET", value_name = "PATH")]
    pub socket: Option<PathBuf>,
    /// Never use the local agent: pull straight from the Hub.
    #[arg(long)]
    pub standalone: bool,
}

/// Runs `hfmesh pull`.
pub async fn run(args: PullArgs) -> anyhow::Result<()> {
    let kind = if args.dataset {
        RepoKind::Dataset
    } else {
        RepoKind::Model
    };
    let what = RepoRef::parse(&args.repo, kind)?;
    let env = |k: &str| std::env::var(k).ok();
    if !args.standalone {
        let socket = args.socket.clone().unwrap_or_else(|| {
            crate::cache::layout::hf_home(&env)
                .join("hfmesh")
                .join("agent.sock")
        });
        if std::os::unix::net::UnixStream::connect(&socket).is_ok() {
            return through_agent(&socket, &args, &what).await;
        }
    }
    let cfg = HubConfig::resolve(args.endpoint.as_deref(), args.token.as_deref(), &env)?;
    let cache_root = crate::cache::resolve_cache_dir(args.cache_dir.as_deref(), &env);
    let client = HubClient::new(cfg).context("cannot set up the HTTP client")?;
    let opts = PullOptions {
        max_connections: args.max_connections.max(1),
        ..PullOptions::default()
    };
    let progress = crate::progress::for_stderr(args.quiet);
    let report = pull(&client, &cache_root, &what, &opts, progress).await?;
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        println!("{}", report.snapshot_dir.display());
    }
    Ok(())
}

/// Asks the local agent to pull (through the mesh) and waits for it.
async fn through_agent(
    socket: &std::path::Path,
    args: &PullArgs,
    what: &RepoRef,
) -> anyhow::Result<()> {
    if !args.quiet {
        eprintln!(
            "{what}: pulling through the local agent at {}",
            socket.display()
        );
    }
    let body = serde_json::to_string(&crate::agent::control::PullRequest {
        repo: format!("{}:{}", what.id, what.revision),
        dataset: what.kind == RepoKind::Dataset,
    })?;
    let report: crate::mesh::MeshReport =
        crate::cli::ops::call(socket, "POST", "/v1/pull", Some(body)).await?;
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        println!("{}", report.snapshot_dir.display());
    }
    Ok(())
}
