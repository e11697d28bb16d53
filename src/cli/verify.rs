//! `hfmesh verify [REPO[:REV]]`: re-hash the local cache tree, report damage and repair it. When
//! the local agent answers, it does the work and repairs from the mesh (peers first); otherwise
//! the tree is checked here and repaired straight from the Hub.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;

use super::ops::{call, OpsArgs};
use crate::agent::verify::VerifyRequest;
use crate::cache::verify::{self, Repair, VerifyReport};
use crate::hub::{HubClient, HubConfig};
use crate::progress::human_bytes;
use crate::pull::{pull, PullOptions};
use crate::repo::{RepoKind, RepoRef};

/// Flags of `hfmesh verify`.
#[derive(Debug, clap::Args)]
pub struct VerifyArgs {
    /// `org/name` (every snapshot of it) or `org/name:rev`; all of the cache when absent.
    #[arg(value_name = "REPO[:REV]")]
    pub repo: Option<String>,
    /// The repository is a dataset.
    #[arg(long)]
    pub dataset: bool,
    /// Only report; change nothing.
    #[arg(long)]
    pub no_repair: bool,
    /// Never use the local agent: check here and repair from the Hub.
    #[arg(long)]
    pub standalone: bool,
    /// Cache directory, without an agent [default: HF_HUB_CACHE, else HF_HOME/hub].
    #[arg(long, env = "HFMESH_CACHE_DIR", value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,
    /// Hub endpoint for repairs without an agent [default: HF_ENDPOINT, else huggingface.co].
    #[arg(long, env = "HFMESH_ENDPOINT", value_name = "URL")]
    pub endpoint: Option<String>,
    #[command(flatten)]
    pub ops: OpsArgs,
}

/// Runs `hfmesh verify`; fails when damage remains.
pub async fn run(args: VerifyArgs) -> anyhow::Result<()> {
    let socket = args.ops.socket_path();
    let report = if !args.standalone && std::os::unix::net::UnixStream::connect(&socket).is_ok() {
        let body = serde_json::to_string(&VerifyRequest {
            repo: args.repo.clone(),
            dataset: args.dataset,
            repair: !args.no_repair,
        })?;
        call::<VerifyReport>(&socket, "POST", "/v1/verify", Some(body)).await?
    } else {
        standalone(&args).await?
    };
    if args.ops.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        print(&report);
    }
    if !report.healthy() {
        anyhow::bail!(
            "{} damaged file(s) remain{}",
            report.damaged,
            if args.no_repair {
                " (run without --no-repair to refetch them)"
            } else {
                ""
            }
        );
    }
    Ok(())
}

struct FromHub {
    client: HubClient,
    root: PathBuf,
}

impl Repair for FromHub {
    async fn refetch(&self, what: RepoRef) -> Result<(), String> {
        let quiet = Arc::new(crate::progress::Silent);
        pull(
            &self.client,
            &self.root,
            &what,
            &PullOptions::default(),
            quiet,
        )
        .await
        .map(|_| ())
        .map_err(|e| e.to_string())
    }
}

async fn standalone(args: &VerifyArgs) -> anyhow::Result<VerifyReport> {
    let env = |k: &str| std::env::var(k).ok();
    let root = crate::cache::resolve_cache_dir(args.cache_dir.as_deref(), &env);
    let kind = if args.dataset {
        RepoKind::Dataset
    } else {
        RepoKind::Model
    };
    let targets = verify::select(&root, args.repo.as_deref(), kind).map_err(anyhow::Error::msg)?;
    let repair = if args.no_repair {
        None
    } else {
        let cfg = HubConfig::resolve(args.endpoint.as_deref(), None, &env)?;
        let client = HubClient::new(cfg).context("cannot set up the HTTP client")?;
        Some(FromHub {
            client,
            root: root.clone(),
        })
    };
    Ok(verify::verify(&root, targets, repair.as_ref()).await)
}

fn print(report: &VerifyReport) {
    println!(
        "{:<8} {:<40} {:<12} {:>6} {:>10}  STATE",
        "KIND", "REPO", "COMMIT", "FILES", "BYTES"
    );
    for v in &report.snapshots {
        let c = &v.check;
        let state = match (c.damage.len(), v.repaired) {
            (0, _) => "ok".to_string(),
            (n, Some(true)) => format!("repaired ({n} damaged)"),
            (n, Some(false)) => format!(
                "damaged ({n}), repair failed: {}",
                v.repair_error.as_deref().unwrap_or("?")
            ),
            (n, None) => format!("damaged ({n})"),
        };
        println!(
            "{:<8} {:<40} {:<12} {:>6} {:>10}  {state}",
            c.kind.to_string(),
            c.repo.to_string(),
            &c.commit.as_str()[..12],
            c.files,
            human_bytes(c.bytes)
        );
        for d in &c.damage {
            let what = serde_json::to_value(&d.problem)
                .ok()
                .and_then(|v| v["problem"].as_str().map(str::to_string))
                .unwrap_or_default();
            println!("         {}: {what}", d.path);
        }
    }
    println!(
        "{} snapshot(s), {} file(s), {} hashed, {} damaged, {} repaired",
        report.snapshots.len(),
        report.files,
        human_bytes(report.bytes),
        report.damaged,
        report.repaired
    );
}
