//! Ops commands of the disk quota: `pin`, `unpin`, `evict` and `gc`, over the local agent's
//! control API. Each prints one line or a table, or the agent's JSON answer with `--json`.

use std::time::{SystemTime, UNIX_EPOCH};

use crate::agent::control::{PullRequest, SnapshotReport};
use crate::agent::evict::{EvictReport, EvictedReport, GcReport, PinReport};
use crate::progress::human_bytes;

use super::ops::{call, OpsArgs};

/// `REPO[:REV] [--dataset]` and the ops flags.
#[derive(Debug, clap::Args)]
pub struct SnapshotArgs {
    /// `org/name[:rev]` (a branch or tag is resolved through this host's refs first).
    #[arg(value_name = "REPO[:REV]")]
    pub repo: String,
    /// The repository is a dataset.
    #[arg(long)]
    pub dataset: bool,
    /// The agent's socket and the output form.
    #[command(flatten)]
    pub ops: OpsArgs,
}

impl SnapshotArgs {
    fn body(&self) -> anyhow::Result<Option<String>> {
        let req = PullRequest {
            repo: self.repo.clone(),
            dataset: self.dataset,
        };
        Ok(Some(serde_json::to_string(&req)?))
    }
}

/// `hfmesh pin` (or `hfmesh unpin` when `pinned` is false).
pub async fn pin(args: &SnapshotArgs, pinned: bool) -> anyhow::Result<()> {
    let path = if pinned { "/v1/pin" } else { "/v1/unpin" };
    let r: PinReport = call(&args.ops.socket_path(), "POST", path, args.body()?).await?;
    if args.ops.json {
        println!("{}", serde_json::to_string(&r)?);
        return Ok(());
    }
    let state = match (r.pinned, r.changed) {
        (true, true) => "pinned",
        (true, false) => "already pinned",
        (false, true) => "unpinned",
        (false, false) => "was not pinned",
    };
    println!("{} {state}", snapshot_name(&r.snapshot));
    Ok(())
}

/// `hfmesh evict`.
pub async fn evict(args: &SnapshotArgs) -> anyhow::Result<()> {
    let socket = args.ops.socket_path();
    let r: EvictReport = call(&socket, "POST", "/v1/evict", args.body()?).await?;
    if args.ops.json {
        println!("{}", serde_json::to_string(&r)?);
        return Ok(());
    }
    println!(
        "evicted {}: freed {}; cache {} -> {}",
        snapshot_name(&r.evicted.snapshot),
        human_bytes(r.evicted.freed_bytes),
        human_bytes(r.usage_before),
        human_bytes(r.usage_after)
    );
    Ok(())
}

/// `hfmesh gc`.
pub async fn gc(args: &OpsArgs) -> anyhow::Result<()> {
    let r: GcReport = call(&args.socket_path(), "POST", "/v1/gc", None).await?;
    if args.json {
        println!("{}", serde_json::to_string(&r)?);
        return Ok(());
    }
    let Some(q) = r.quota else {
        println!(
            "no quota is set (cache.max_size, --max-cache-size): nothing is evicted; cache {}",
            human_bytes(r.usage_before)
        );
        return Ok(());
    };
    println!(
        "cache {} -> {} of {} (evicts above {}, down to {}); evicted {} snapshot(s), freed {}",
        human_bytes(r.usage_before),
        human_bytes(r.usage_after),
        human_bytes(q.max_bytes),
        human_bytes(q.high_bytes),
        human_bytes(q.low_bytes),
        r.evicted.len(),
        human_bytes(r.freed_bytes)
    );
    if !r.evicted.is_empty() {
        print_evicted(&r.evicted);
    }
    if r.shortfall_bytes > 0 {
        println!(
            "still {} above the low watermark; kept: {}",
            human_bytes(r.shortfall_bytes),
            r.protected
                .iter()
                .map(|p| format!("{} ({})", snapshot_name(&p.snapshot), p.reason))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    Ok(())
}

fn print_evicted(evicted: &[EvictedReport]) {
    println!(
        "{:<8} {:<40} {:<40} {:>10} {:>10}",
        "KIND", "REPO", "COMMIT", "FREED", "LAST USED"
    );
    for e in evicted {
        println!(
            "{:<8} {:<40} {:<40} {:>10} {:>10}",
            e.snapshot.kind,
            e.snapshot.repo,
            e.snapshot.commit,
            human_bytes(e.freed_bytes),
            age(Some(e.last_used_ms))
        );
    }
}

/// `org/name@commit`, datasets prefixed with `dataset `.
pub fn snapshot_name(s: &SnapshotReport) -> String {
    let kind = if s.kind == "dataset" { "dataset " } else { "" };
    format!("{kind}{}@{}", s.repo, s.commit)
}

/// How long ago `ms` (milliseconds since the Unix epoch) was: `42s ago`, `5m ago`, `3h ago`,
/// `2d ago`; `-` when unknown.
pub fn age(ms: Option<u64>) -> String {
    let Some(ms) = ms else {
        return "-".into();
    };
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let secs = now.saturating_sub(ms) / 1000;
    match secs {
        0..60 => format!("{secs}s ago"),
        60..3600 => format!("{}m ago", secs / 60),
        3600..86400 => format!("{}h ago", secs / 3600),
        _ => format!("{}d ago", secs / 86400),
    }
}
