//! `hfmesh pull REPO[:REV] [--dataset]`: download a snapshot into the cache tree and print its
//! directory as the last line of stdout. Through the local agent when one answers on its socket
//! (the agent streams the pull's progress, shown on stderr), standalone from the Hub otherwise.

use std::path::PathBuf;

use anyhow::Context as _;

use http_body_util::BodyExt;

use crate::agent::pull_stream::{PullEvent, NDJSON};
use crate::cli::ops;
use crate::hub::{HubClient, HubConfig};
use crate::mesh::MeshReport;
use crate::progress::Replay;
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
    /// Most bytes per second from the Hub, like 100MB (standalone pulls) [default: unlimited].
    #[arg(long, env = "HFMESH_MAX_DOWNLOAD_RATE", value_name = "SIZE")]
    pub max_download_rate: Option<String>,
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
    let download_limit = match &args.max_download_rate {
        None => None,
        Some(text) => {
            let rate = crate::config::units::parse_size(text).map_err(|why| {
                anyhow::anyhow!(
                    "--max-download-rate {text:?} is not a rate in bytes per second: {why}"
                )
            })?;
            Some(std::sync::Arc::new(
                crate::transfer::ratelimit::RateLimit::new(rate),
            ))
        }
    };
    let opts = PullOptions {
        max_connections: args.max_connections.max(1),
        download_limit,
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

/// Asks the local agent to pull (through the mesh) and waits for it, showing its progress on
/// stderr unless quiet.
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
    let report: MeshReport = if args.quiet {
        ops::call(socket, "POST", "/v1/pull", Some(body)).await?
    } else {
        let progress = Replay::new(&what.to_string(), crate::progress::for_stderr(false));
        watch_agent_pull(socket, body, progress).await?
    };
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        println!("{}", report.snapshot_dir.display());
    }
    Ok(())
}

/// Longest line of a streamed pull accepted from the agent.
const MAX_EVENT_LINE: usize = 1 << 20;

/// Asks the agent for a pull that streams its progress, replays the progress on `progress`
/// and returns the report. An agent that answers with a plain report (an older one) works too.
async fn watch_agent_pull(
    socket: &std::path::Path,
    body: String,
    mut progress: Replay,
) -> anyhow::Result<MeshReport> {
    let resp = ops::open(
        socket,
        "POST",
        "/v1/pull?progress=true",
        Some(body),
        Some(NDJSON),
    )
    .await?;
    let status = resp.status();
    let streamed = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with(NDJSON));
    let mut body = resp.into_body();
    if !status.is_success() || !streamed {
        let bytes = body.collect().await?.to_bytes();
        if !status.is_success() {
            anyhow::bail!("{}", ops::error_message(&bytes));
        }
        return serde_json::from_slice(&bytes).context(UNEXPECTED);
    }
    let mut buf: Vec<u8> = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.context("the agent's answer broke off")?;
        let Some(data) = frame.data_ref() else {
            continue;
        };
        buf.extend_from_slice(data);
        while let Some(end) = buf.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = buf.drain(..=end).collect();
            match serde_json::from_slice::<PullEvent>(&line).context(UNEXPECTED)? {
                PullEvent::Progress(p) => progress.update(&p),
                PullEvent::Report(report) => {
                    progress.finish();
                    return Ok(report);
                }
                PullEvent::Error(e) => {
                    progress.finish();
                    anyhow::bail!("{e}");
                }
            }
        }
        if buf.len() > MAX_EVENT_LINE {
            anyhow::bail!("{UNEXPECTED}");
        }
    }
    progress.finish();
    anyhow::bail!("the agent ended the pull without a result (was it stopped?)")
}

/// The error when the agent's answer cannot be read.
const UNEXPECTED: &str = "the agent's answer is not what this version expects";
