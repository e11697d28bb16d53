//! Disk quota and eviction: which snapshots leave the cache tree when it grows past its quota,
//! and the operator's pins.
//!
//! - [`plan`]: the policy, pure (high/low watermarks, least recently used first, protections,
//!   blobs shared within a repository freed with their last snapshot).
//! - [`book`]: last-used times and pins, persisted in the state directory.
//! - [`inuse`]: which cache files local processes hold open or mapped (`/proc`).
//! - [`gate`]: pulls and removals in one repository exclude each other.
//! - `run.rs`: the daemon's side of the policy: candidates from the tree, `gc`, the automatic
//!   passes (after each pull and every [`GC_EVERY`]), removing one snapshot;
//!   `manual.rs`: `evict`, `pin`, `unpin`, last use, holdings.
//!
//! Removing a snapshot first forgets it in the local store (it stops being served, and the
//! announce loop withdraws its DHT records), then removes it from disk
//! (`cache::remove`), then deletes its manifest.

/// Last-used times and pins.
pub mod book;
/// Pull/removal exclusion per repository.
pub mod gate;
/// Open and mapped files of local processes.
pub mod inuse;
mod manual;
/// The pure policy.
pub mod plan;
mod run;

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use book::{Book, BookError};
pub use plan::{Limits, Protection};

use super::control::SnapshotReport;
use crate::mesh::local::SnapshotId;
use crate::repo::RepoKind;

/// How often the agent checks the quota without a pull to trigger it.
pub const GC_EVERY: Duration = Duration::from_secs(60);

/// The daemon's eviction state.
#[derive(Debug)]
pub struct Evictor {
    /// Last-used times and pins (shared with blocking tasks that save them).
    pub book: std::sync::Arc<Book>,
    /// Pull/removal exclusion.
    pub gate: gate::Gate,
    /// The snapshot each preload entry resolved to, by index in the preload list.
    preloaded: Mutex<BTreeMap<usize, SnapshotId>>,
    /// One eviction pass (or single eviction) at a time.
    pass: tokio::sync::Mutex<()>,
}

impl Evictor {
    /// The state kept in `state_dir`.
    pub fn open(state_dir: &std::path::Path) -> Result<Evictor, BookError> {
        Ok(Evictor {
            book: std::sync::Arc::new(Book::open(state_dir)?),
            gate: gate::Gate::default(),
            preloaded: Mutex::new(BTreeMap::new()),
            pass: tokio::sync::Mutex::new(()),
        })
    }

    /// Records the snapshot preload entry `index` made present.
    pub fn preloaded(&self, index: usize, id: SnapshotId) {
        self.preloaded
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(index, id);
    }

    fn preloaded_ids(&self) -> Vec<SnapshotId> {
        let map = self.preloaded.lock().unwrap_or_else(|p| p.into_inner());
        map.values().cloned().collect()
    }
}

/// Why an eviction, pin or unpin was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum EvictError {
    /// The snapshot is not in this host's cache tree.
    #[error("{what} is not in this host's cache")]
    NotHeld {
        /// The snapshot.
        what: String,
    },
    /// The snapshot must stay.
    #[error("{what} is {why}: {hint}")]
    Protected {
        /// The snapshot.
        what: String,
        /// Why.
        why: Protection,
        /// What to do, or what holds it.
        hint: String,
    },
    /// The revision could not be resolved (no local ref, and the Hub failed).
    #[error("cannot resolve {what}: {reason}")]
    Resolve {
        /// The reference.
        what: String,
        /// The Hub's error.
        reason: String,
    },
    /// The state file could not be written.
    #[error(transparent)]
    Book(#[from] BookError),
    /// A background task failed (the runtime is shutting down, or it panicked).
    #[error("a background task failed: {0}")]
    Task(String),
    /// The cache tree could not be changed.
    #[error("cannot remove {what}: {source}")]
    Io {
        /// The snapshot.
        what: String,
        /// What went wrong.
        source: std::io::Error,
    },
}

impl EvictError {
    /// The HTTP status the control API answers with.
    pub fn status(&self) -> u16 {
        match self {
            EvictError::NotHeld { .. } => 404,
            EvictError::Protected { .. } => 409,
            EvictError::Resolve { .. } => 502,
            EvictError::Book(_) | EvictError::Io { .. } | EvictError::Task(_) => 500,
        }
    }
}

/// `kind repo@commit` of a snapshot, for messages.
pub fn describe(id: &SnapshotId) -> String {
    let kind = if id.0 == RepoKind::Dataset {
        "dataset "
    } else {
        ""
    };
    format!("{kind}{}@{}", id.1, id.2)
}

fn snapshot_report(id: &SnapshotId) -> SnapshotReport {
    SnapshotReport {
        kind: id.0.to_string(),
        repo: id.1.to_string(),
        commit: id.2.to_string(),
    }
}

/// One snapshot removed.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EvictedReport {
    /// Which.
    pub snapshot: SnapshotReport,
    /// Blob bytes its removal freed.
    pub freed_bytes: u64,
    /// When it was last used (milliseconds since the Unix epoch).
    pub last_used_ms: u64,
}

/// One snapshot kept by a protection, as reported.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProtectedReport {
    /// Which.
    pub snapshot: SnapshotReport,
    /// Why it stays.
    pub reason: Protection,
}

/// `POST /v1/gc`: what an eviction pass did.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GcReport {
    /// The quota in bytes; `null` when none is set (then nothing is ever evicted).
    pub quota: Option<Limits>,
    /// Blob bytes before.
    pub usage_before: u64,
    /// Blob bytes after.
    pub usage_after: u64,
    /// The snapshots removed, in order.
    pub evicted: Vec<EvictedReport>,
    /// Blob bytes freed in all.
    pub freed_bytes: u64,
    /// Bytes still above the low watermark (protected snapshots, blobs no snapshot names).
    pub shortfall_bytes: u64,
    /// Snapshots kept by a protection (listed when usage was above the high watermark).
    pub protected: Vec<ProtectedReport>,
}

/// `POST /v1/evict`: one snapshot removed.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EvictReport {
    /// The snapshot and what its removal freed.
    pub evicted: EvictedReport,
    /// Blob bytes before.
    pub usage_before: u64,
    /// Blob bytes after.
    pub usage_after: u64,
}

/// `POST /v1/pin` and `POST /v1/unpin`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PinReport {
    /// The snapshot (revision resolved to its commit).
    pub snapshot: SnapshotReport,
    /// Whether it is pinned now.
    pub pinned: bool,
    /// Whether this request changed that.
    pub changed: bool,
}

/// One snapshot in `GET /v1/holdings`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HoldingReport {
    /// Which.
    #[serde(flatten)]
    pub snapshot: SnapshotReport,
    /// Bytes of its distinct blobs.
    pub size_bytes: u64,
    /// Whether it is pinned.
    pub pinned: bool,
    /// When it was last pulled or asked for through this agent (milliseconds since the Unix
    /// epoch), if it was.
    pub last_used_ms: Option<u64>,
}
