//! The `Holdings` answer: what a node holds, for operators asking the cluster live
//! (`hfmesh holdings --peer` / `--all`). Bounded: at most [`MAX_HELD_SNAPSHOTS`] snapshots and
//! [`MAX_HELD_BLOBS`] blobs, so the answer always fits [`MAX_HOLDINGS_FRAME`](super::MAX_HOLDINGS_FRAME).

use serde::{Deserialize, Serialize};

use super::frame::WireError;
use crate::etag::Etag;
use crate::repo::{CommitId, RepoId, RepoKind};
use crate::store::bitmap::MAX_CHUNKS;
use crate::store::chunk_count;

/// Most snapshots one `Holdings` answer lists (a node holding more sets `truncated`).
pub const MAX_HELD_SNAPSHOTS: usize = 1024;

/// Most blobs one `Holdings` answer lists (a node holding more sets `truncated`).
pub const MAX_HELD_BLOBS: usize = 4096;

/// A complete snapshot a node holds and serves.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeldSnapshot {
    /// Model or dataset.
    pub kind: RepoKind,
    /// Repository id.
    pub repo: RepoId,
    /// The snapshot's commit.
    pub commit: CommitId,
    /// Files in the snapshot.
    pub files: u64,
    /// Bytes of its files (a blob named by two paths counts twice).
    pub bytes: u64,
}

/// A blob a node holds, complete or still arriving.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeldBlob {
    /// The blob.
    pub etag: Etag,
    /// Its size in bytes.
    pub size: u64,
    /// Chunks present and verified (`present <= chunks`).
    pub present: u64,
    /// Chunks of the whole blob (at most [`MAX_CHUNKS`]).
    pub chunks: u64,
}

impl HeldBlob {
    /// Whether every chunk is present.
    pub fn is_complete(&self) -> bool {
        self.present == self.chunks
    }
}

/// What a node holds: its complete snapshots and its blobs, complete or partial.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Holdings {
    /// Complete snapshots, at most [`MAX_HELD_SNAPSHOTS`].
    pub snapshots: Vec<HeldSnapshot>,
    /// Blobs, at most [`MAX_HELD_BLOBS`].
    pub blobs: Vec<HeldBlob>,
    /// Whether the node holds more than these lists show.
    pub truncated: bool,
}

impl Holdings {
    /// Holdings from everything a node holds, cut to the caps: snapshots sorted, then partial
    /// blobs before complete ones (the rarer, more telling entries survive a cut), each by etag.
    pub fn capped(mut snapshots: Vec<HeldSnapshot>, mut blobs: Vec<HeldBlob>) -> Holdings {
        snapshots.sort_by(|a, b| (a.kind, &a.repo, &a.commit).cmp(&(b.kind, &b.repo, &b.commit)));
        blobs.sort_by(|a, b| (a.is_complete(), &a.etag).cmp(&(b.is_complete(), &b.etag)));
        let truncated = snapshots.len() > MAX_HELD_SNAPSHOTS || blobs.len() > MAX_HELD_BLOBS;
        snapshots.truncate(MAX_HELD_SNAPSHOTS);
        blobs.truncate(MAX_HELD_BLOBS);
        Holdings {
            snapshots,
            blobs,
            truncated,
        }
    }

    /// Checks what the types alone do not: list lengths within the caps, and per blob
    /// `present <= chunks <= MAX_CHUNKS` and `chunks` matching `size`.
    pub fn validate(&self) -> Result<(), WireError> {
        if self.snapshots.len() > MAX_HELD_SNAPSHOTS || self.blobs.len() > MAX_HELD_BLOBS {
            return Err(WireError::Invalid(format!(
                "holdings of {} snapshots and {} blobs (allowed: {MAX_HELD_SNAPSHOTS} and \
                 {MAX_HELD_BLOBS})",
                self.snapshots.len(),
                self.blobs.len()
            )));
        }
        match self.blobs.iter().find(|b| {
            b.present > b.chunks || b.chunks > MAX_CHUNKS || b.chunks != chunk_count(b.size)
        }) {
            Some(b) => Err(WireError::Invalid(format!(
                "blob {} of {} bytes with {} of {} chunks present",
                b.etag, b.size, b.present, b.chunks
            ))),
            None => Ok(()),
        }
    }
}
