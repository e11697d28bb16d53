//! The eviction policy, pure: given the snapshots in the cache tree, the bytes used and the
//! quota, which snapshots to remove and in what order.
//!
//! - Nothing happens unless usage is above the high watermark.
//! - Then snapshots go least recently used first until usage is at or below the low watermark.
//! - A protected snapshot (pinned, preloaded, in use, just pulled) never goes, and neither does
//!   one whose every blob a protected snapshot also names (removing it could free nothing).
//! - Blobs live per repository folder: a blob frees its bytes only when the last snapshot of
//!   its repository that names it goes.
//! - When every candidate is gone and usage is still above the low watermark, the plan says by
//!   how much (`shortfall`).

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::config::Quota;
use crate::etag::Etag;
use crate::mesh::local::SnapshotId;
use crate::repo::{RepoId, RepoKind};

/// Why a snapshot must stay.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Protection {
    /// Pinned by an operator.
    Pinned,
    /// On this agent's preload list.
    Preloaded,
    /// A pull of its repository is running here, or a process holds one of its blobs open.
    InUse,
    /// The pull that triggered this run just made it.
    JustPulled,
}

impl std::fmt::Display for Protection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Protection::Pinned => "pinned",
            Protection::Preloaded => "preloaded",
            Protection::InUse => "in use",
            Protection::JustPulled => "just pulled",
        })
    }
}

/// One snapshot as the policy sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    /// Which snapshot.
    pub id: SnapshotId,
    /// The distinct blobs it names, with their sizes.
    pub blobs: Vec<(Etag, u64)>,
    /// When it was last pulled or asked for, in milliseconds since the Unix epoch.
    pub last_used_ms: u64,
    /// Why it must stay, if it must.
    pub protection: Option<Protection>,
}

/// The watermarks of a quota, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    /// The quota.
    pub max_bytes: u64,
    /// Eviction starts above this many bytes.
    pub high_bytes: u64,
    /// Eviction stops at or below this many bytes.
    pub low_bytes: u64,
}

impl Limits {
    /// The byte limits of `quota` (fractions of `max_bytes`, rounded down).
    pub fn of(quota: &Quota) -> Limits {
        let part = |f: f64| (quota.max_bytes as f64 * f).floor() as u64;
        Limits {
            max_bytes: quota.max_bytes,
            high_bytes: part(quota.high_watermark),
            low_bytes: part(quota.low_watermark),
        }
    }
}

/// One snapshot to remove.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Eviction {
    /// Its index in the candidates.
    pub index: usize,
    /// Bytes its removal frees, given the removals before it.
    pub frees: u64,
}

/// What to remove.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// Whether usage was above the high watermark.
    pub triggered: bool,
    /// The removals, in order.
    pub evict: Vec<Eviction>,
    /// Usage once they are done.
    pub usage_after: u64,
    /// Bytes still above the low watermark once they are done (protected snapshots and blobs
    /// no snapshot names account for it).
    pub shortfall: u64,
}

/// A blob of one repository folder.
type BlobKey = (RepoKind, RepoId, Etag);

/// Plans the removals that bring `usage` down to the low watermark of `limits`.
pub fn plan(candidates: &[Candidate], usage: u64, limits: Limits) -> Plan {
    if usage <= limits.high_bytes {
        return Plan {
            usage_after: usage,
            ..Plan::default()
        };
    }
    let mut refs = reference_counts(candidates);
    let mut left = usage;
    let mut evict = Vec::new();
    for index in lru_order(candidates) {
        if left <= limits.low_bytes {
            break;
        }
        let frees = release(&candidates[index], &mut refs);
        left = left.saturating_sub(frees);
        evict.push(Eviction { index, frees });
    }
    Plan {
        triggered: true,
        evict,
        usage_after: left,
        shortfall: left.saturating_sub(limits.low_bytes),
    }
}

/// How many snapshots of its repository name each blob, and whether a protected one does.
fn reference_counts(candidates: &[Candidate]) -> HashMap<BlobKey, (usize, bool)> {
    let mut refs: HashMap<BlobKey, (usize, bool)> = HashMap::new();
    for c in candidates {
        for (etag, _) in &c.blobs {
            let r = refs.entry(blob_key(c, etag)).or_default();
            r.0 += 1;
            r.1 |= c.protection.is_some();
        }
    }
    refs
}

/// The unprotected candidates that could free something, least recently used first (ties in
/// snapshot order, so the plan is deterministic).
fn lru_order(candidates: &[Candidate]) -> Vec<usize> {
    let refs = reference_counts(candidates);
    let mut order: Vec<usize> = (0..candidates.len())
        .filter(|&i| candidates[i].protection.is_none())
        .filter(|&i| {
            let c = &candidates[i];
            c.blobs.iter().any(|(e, _)| !refs[&blob_key(c, e)].1)
        })
        .collect();
    order.sort_by(|&a, &b| {
        let (a, b) = (&candidates[a], &candidates[b]);
        (a.last_used_ms, &a.id).cmp(&(b.last_used_ms, &b.id))
    });
    order
}

/// Drops `c`'s references; returns the bytes of the blobs no snapshot names any more.
fn release(c: &Candidate, refs: &mut HashMap<BlobKey, (usize, bool)>) -> u64 {
    let mut freed = 0;
    for (etag, size) in &c.blobs {
        if let Some(r) = refs.get_mut(&blob_key(c, etag)) {
            r.0 -= 1;
            if r.0 == 0 {
                freed += size;
            }
        }
    }
    freed
}

fn blob_key(c: &Candidate, etag: &Etag) -> BlobKey {
    (c.id.0, c.id.1.clone(), etag.clone())
}

#[cfg(test)]
mod tests;
