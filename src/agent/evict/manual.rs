//! What an operator or a pull asks of eviction directly: evict one snapshot, pin, unpin, record
//! a use, describe a holding.
//!
//! A revision is resolved through the local refs first (what this host holds under that name),
//! then the Hub; a full commit id needs neither.

use super::book::now_ms;
use super::run::blocking;
use super::{
    describe, snapshot_report, EvictError, EvictReport, EvictedReport, HoldingReport, PinReport,
};
use crate::agent::daemon::Daemon;
use crate::cache::{scan, RepoCache};
use crate::mesh::local::SnapshotId;
use crate::repo::RepoRef;

impl Daemon {
    /// Evicts one snapshot now, unless it is pinned, preloaded or in use (`POST /v1/evict`).
    pub async fn evict(&self, what: &RepoRef) -> Result<EvictReport, EvictError> {
        let id = self.resolve(what).await?;
        let _one = self.eviction.pass.lock().await;
        let census = self.census(Some(&id), 0).await?;
        let Some(s) = census.snapshots.first() else {
            return Err(EvictError::NotHeld {
                what: describe(&id),
            });
        };
        if let Some((why, hint)) = self.protection(&id, &census, &self.preloaded_ids()) {
            return Err(EvictError::Protected {
                what: describe(&id),
                why,
                hint,
            });
        }
        let last_used_ms = self.eviction.book.last_used(&id).unwrap_or(s.modified_ms);
        let freed_bytes = self.remove(&id).await?;
        let root = self.config.node.cache_dir.clone();
        Ok(EvictReport {
            evicted: EvictedReport {
                snapshot: snapshot_report(&id),
                freed_bytes,
                last_used_ms,
            },
            usage_before: census.usage,
            usage_after: blocking(move || scan::usage(&root)).await?,
        })
    }

    /// Pins (or unpins) a snapshot (`POST /v1/pin`, `POST /v1/unpin`). Only a snapshot in this
    /// host's cache can be pinned; anything can be unpinned.
    pub async fn set_pinned(&self, what: &RepoRef, pinned: bool) -> Result<PinReport, EvictError> {
        let id = self.resolve(what).await?;
        // No eviction pass runs between the check and the change.
        let _one = self.eviction.pass.lock().await;
        let dir = RepoCache::new(&self.config.node.cache_dir, id.0, &id.1)
            .layout()
            .snapshot_dir(&id.2);
        if pinned && !dir.is_dir() {
            return Err(EvictError::NotHeld {
                what: describe(&id),
            });
        }
        let book = self.eviction.book.clone();
        let key = id.clone();
        let changed = blocking(move || book.set_pinned(&key, pinned)).await??;
        Ok(PinReport {
            snapshot: snapshot_report(&id),
            pinned,
            changed,
        })
    }

    /// Records that a snapshot was pulled or asked for now; a failure to save is logged.
    pub async fn record_use(&self, id: SnapshotId) {
        let book = self.eviction.book.clone();
        if let Err(e) = blocking(move || book.touch(&id, now_ms()))
            .await
            .and_then(|r| r.map_err(EvictError::from))
        {
            tracing::warn!(error = %e, "could not save the last-used time");
        }
    }

    /// A held snapshot with its size, pin and last use (`GET /v1/holdings`).
    pub fn holding(&self, id: &SnapshotId) -> HoldingReport {
        let store = &self.node.mesh.store;
        HoldingReport {
            snapshot: snapshot_report(id),
            size_bytes: store.snapshot_bytes(id.0, &id.1, &id.2).unwrap_or(0),
            pinned: self.eviction.book.is_pinned(id),
            last_used_ms: self.eviction.book.last_used(id),
        }
    }

    /// The snapshot `what` names: a commit as it is, else the local ref, else the Hub's answer.
    async fn resolve(&self, what: &RepoRef) -> Result<SnapshotId, EvictError> {
        let at = |commit| (what.kind, what.id.clone(), commit);
        if let Some(c) = what.revision.as_commit() {
            return Ok(at(c));
        }
        let cache = RepoCache::new(&self.config.node.cache_dir, what.kind, &what.id);
        if let Some(c) = cache.read_ref(&what.revision) {
            return Ok(at(c));
        }
        let hub = &self.node.mesh.hub;
        match hub
            .resolve_revision(what.kind, &what.id, &what.revision)
            .await
        {
            Ok(c) => Ok(at(c)),
            Err(e) => Err(EvictError::Resolve {
                what: what.to_string(),
                reason: e.to_string(),
            }),
        }
    }
}
