//! The daemon's side of the policy: candidates from the cache tree, a pass (`gc`), the automatic
//! passes, and removing one snapshot.

use std::collections::{BTreeSet, HashMap};
use std::os::unix::fs::MetadataExt;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::inuse::{self, BlobFile, Holder};
use super::plan::{self, Candidate, Limits, Protection};
use super::{
    describe, snapshot_report, EvictError, EvictedReport, GcReport, ProtectedReport, GC_EVERY,
};
use crate::agent::daemon::Daemon;
use crate::cache::scan::{self, CachedSnapshot};
use crate::cache::RepoCache;
use crate::mesh::local::SnapshotId;

/// What the tree holds now, and who holds what open.
pub(super) struct Census {
    /// Every snapshot of the tree.
    pub(super) snapshots: Vec<CachedSnapshot>,
    /// Blob bytes.
    pub(super) usage: u64,
    /// The snapshots a local process holds a blob of open or mapped, and who (looked for only
    /// when usage is above the high watermark, or for a single eviction).
    held_open: HashMap<SnapshotId, String>,
}

/// Runs blocking file-system work off the async threads.
pub(super) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, EvictError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| EvictError::Task(e.to_string()))
}

impl Daemon {
    /// Applies the eviction policy now (`POST /v1/gc`, `hfmesh gc`).
    pub async fn gc(&self) -> Result<GcReport, EvictError> {
        self.apply_policy(None).await
    }

    /// Applies the policy after a pull made `fresh` present (never evicting `fresh` itself),
    /// or on the timer; errors are logged.
    pub async fn auto_gc(&self, fresh: Option<SnapshotId>) {
        if self.config.quota.is_none() {
            return;
        }
        match self.apply_policy(fresh.as_ref()).await {
            Ok(r) if r.shortfall_bytes > 0 => tracing::warn!(
                usage = r.usage_after,
                shortfall = r.shortfall_bytes,
                "the cache stays above its low watermark: the rest is pinned, preloaded or in use"
            ),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "eviction failed"),
        }
    }

    /// Finishes removals a crash interrupted, then applies the policy every [`GC_EVERY`] until
    /// the daemon stops.
    pub(crate) async fn run_gc_timer(self: Arc<Self>) {
        let root = self.config.node.cache_dir.clone();
        let finished = blocking(move || crate::cache::remove::finish_interrupted(&root)).await;
        match finished {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "could not finish an interrupted eviction"),
            Err(e) => tracing::warn!(error = %e, "could not finish an interrupted eviction"),
        }
        if self.config.quota.is_none() {
            return;
        }
        let stop = self.stopping();
        loop {
            tokio::select! {
                _ = tokio::time::sleep(GC_EVERY) => self.auto_gc(None).await,
                _ = stop.cancelled() => return,
            }
        }
    }

    async fn apply_policy(&self, fresh: Option<&SnapshotId>) -> Result<GcReport, EvictError> {
        let _one = self.eviction.pass.lock().await;
        let Some(quota) = &self.config.quota else {
            let root = self.config.node.cache_dir.clone();
            let usage = blocking(move || scan::usage(&root)).await?;
            return Ok(GcReport {
                quota: None,
                usage_before: usage,
                usage_after: usage,
                evicted: vec![],
                freed_bytes: 0,
                shortfall_bytes: 0,
                protected: vec![],
            });
        };
        let limits = Limits::of(quota);
        let census = self.census(None, limits.high_bytes).await?;
        let candidates = self.candidates(&census, fresh);
        let plan = plan::plan(&candidates, census.usage, limits);
        let mut report = GcReport {
            quota: Some(limits),
            usage_before: census.usage,
            usage_after: census.usage,
            evicted: vec![],
            freed_bytes: 0,
            shortfall_bytes: plan.shortfall,
            protected: protected_reports(&candidates, plan.triggered),
        };
        for e in &plan.evict {
            let c = &candidates[e.index];
            match self.remove(&c.id).await {
                Ok(freed) => report.evicted.push(EvictedReport {
                    snapshot: snapshot_report(&c.id),
                    freed_bytes: freed,
                    last_used_ms: c.last_used_ms,
                }),
                Err(err) => {
                    tracing::warn!(snapshot = %describe(&c.id), error = %err, "not evicted")
                }
            }
        }
        report.freed_bytes = report.evicted.iter().map(|e| e.freed_bytes).sum();
        let root = self.config.node.cache_dir.clone();
        report.usage_after = blocking(move || scan::usage(&root)).await?;
        Ok(report)
    }

    /// Scans the tree (only `only`'s repository when given); looks for open files only when
    /// usage is above `high` (that reads all of `/proc`).
    pub(super) async fn census(
        &self,
        only: Option<&SnapshotId>,
        high: u64,
    ) -> Result<Census, EvictError> {
        let root = self.config.node.cache_dir.clone();
        let only = only.cloned();
        blocking(move || {
            let usage = scan::usage(&root);
            let snapshots: Vec<CachedSnapshot> = match only {
                Some((kind, repo, commit)) => scan::repo_snapshots(&root, kind, &repo)
                    .into_iter()
                    .filter(|s| s.commit == commit)
                    .collect(),
                None => scan::snapshots(&root),
            };
            let held_open = if usage > high {
                held_open(&root, &snapshots, &inuse::open_blobs())
            } else {
                HashMap::new()
            };
            Census {
                snapshots,
                usage,
                held_open,
            }
        })
        .await
    }

    fn candidates(&self, census: &Census, fresh: Option<&SnapshotId>) -> Vec<Candidate> {
        let preloaded = self.preloaded_ids();
        census
            .snapshots
            .iter()
            .map(|s| {
                let id: SnapshotId = (s.kind, s.repo.clone(), s.commit.clone());
                let protection = if fresh == Some(&id) {
                    Some(Protection::JustPulled)
                } else {
                    self.protection(&id, census, &preloaded).map(|(p, _)| p)
                };
                Candidate {
                    last_used_ms: self.eviction.book.last_used(&id).unwrap_or(s.modified_ms),
                    blobs: s.blobs.clone(),
                    protection,
                    id,
                }
            })
            .collect()
    }

    /// Why `id` must stay, with a hint for the operator.
    pub(super) fn protection(
        &self,
        id: &SnapshotId,
        census: &Census,
        preloaded: &BTreeSet<SnapshotId>,
    ) -> Option<(Protection, String)> {
        if self.eviction.book.is_pinned(id) {
            return Some((Protection::Pinned, "unpin it first (`hfmesh unpin`)".into()));
        }
        if preloaded.contains(id) {
            let hint = "remove it from the agent's preload list first";
            return Some((Protection::Preloaded, hint.into()));
        }
        if self.eviction.gate.busy(&(id.0, id.1.clone())) {
            let hint = format!("a pull of {} is running on this agent", id.1);
            return Some((Protection::InUse, hint));
        }
        let hint = census.held_open.get(id)?;
        Some((Protection::InUse, hint.clone()))
    }

    /// The snapshots the preload list stands for: what each entry resolved to when it became
    /// ready, and what its revision points at in the local refs now.
    pub(super) fn preloaded_ids(&self) -> BTreeSet<SnapshotId> {
        let root = &self.config.node.cache_dir;
        let by_ref = self.config.preload.iter().filter_map(|r| {
            let commit = r
                .revision
                .as_commit()
                .or_else(|| RepoCache::new(root, r.kind, &r.id).read_ref(&r.revision))?;
            Some((r.kind, r.id.clone(), commit))
        });
        self.eviction
            .preloaded_ids()
            .into_iter()
            .chain(by_ref)
            .collect()
    }

    /// Removes one snapshot: forgets it in the store (no longer served; its DHT records are
    /// withdrawn), removes it from disk, deletes its manifest. Returns the bytes freed.
    pub(super) async fn remove(&self, id: &SnapshotId) -> Result<u64, EvictError> {
        let what = describe(id);
        let Some(_pass) = self.eviction.gate.try_remove(&(id.0, id.1.clone())) else {
            return Err(EvictError::Protected {
                what,
                why: Protection::InUse,
                hint: format!("a pull of {} is running on this agent", id.1),
            });
        };
        let store = self.node.mesh.store.clone();
        store.forget_snapshot(id.0, &id.1, &id.2);
        let cache = RepoCache::new(&self.config.node.cache_dir, id.0, &id.1);
        let (i, commit) = (id.clone(), id.2.clone());
        let removed = blocking(move || {
            let removed = cache.remove_snapshot(&commit)?;
            store.remove_manifest(i.0, &i.1, &i.2)?;
            Ok(removed)
        })
        .await?
        .map_err(|source| EvictError::Io { what, source })?;
        let book = self.eviction.book.clone();
        let id2 = id.clone();
        if let Err(e) = blocking(move || book.forget(&id2))
            .await
            .and_then(|r| r.map_err(EvictError::from))
        {
            tracing::warn!(error = %e, "could not update the last-used times");
        }
        self.metrics.evictions.fetch_add(1, Ordering::Relaxed);
        self.metrics
            .evicted_bytes
            .fetch_add(removed.freed_bytes, Ordering::Relaxed);
        tracing::info!(snapshot = %describe(id), freed = removed.freed_bytes, "evicted");
        Ok(removed.freed_bytes)
    }
}

/// The protected candidates, when the plan ran (usage above the high watermark).
fn protected_reports(candidates: &[Candidate], triggered: bool) -> Vec<ProtectedReport> {
    if !triggered {
        return Vec::new();
    }
    candidates
        .iter()
        .filter_map(|c| {
            Some(ProtectedReport {
                snapshot: snapshot_report(&c.id),
                reason: c.protection?,
            })
        })
        .collect()
}

/// The snapshots with a blob in `open`, each with who holds it (blocking: stats each blob).
fn held_open(
    root: &std::path::Path,
    snapshots: &[CachedSnapshot],
    open: &HashMap<BlobFile, Holder>,
) -> HashMap<SnapshotId, String> {
    if open.is_empty() {
        return HashMap::new();
    }
    snapshots
        .iter()
        .filter_map(|s| {
            let cache = RepoCache::new(root, s.kind, &s.repo);
            let hint = s.blobs.iter().find_map(|(etag, _)| {
                let ino = std::fs::metadata(cache.layout().blob(etag)).ok()?.ino();
                let holder = open.get(&(ino, etag.to_string()))?;
                Some(format!("{holder} holds blobs/{etag} open"))
            })?;
            Some(((s.kind, s.repo.clone(), s.commit.clone()), hint))
        })
        .collect()
}
