//! `POST /v1/verify`: re-hash snapshots in the cache tree and repair damaged ones from the mesh
//! (peers first, then the Hub), through the agent's shared pulls.

use std::sync::Arc;

use super::daemon::Daemon;
use crate::cache::verify::{self, Repair, VerifyReport};
use crate::etag::Etag;
use crate::repo::{RepoKind, RepoRef};

/// `POST /v1/verify` body.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct VerifyRequest {
    /// `org/name[:rev]`; `None`: every snapshot in the cache.
    #[serde(default)]
    pub repo: Option<String>,
    /// Whether `repo` is a dataset.
    #[serde(default)]
    pub dataset: bool,
    /// Refetch what is damaged (default true).
    #[serde(default = "yes")]
    pub repair: bool,
}

fn yes() -> bool {
    true
}

struct ThroughMesh(Arc<Daemon>);

impl Repair for ThroughMesh {
    fn forget(&self, etags: &[Etag]) {
        for etag in etags {
            self.0.node.mesh.store.invalidate_blob(etag);
        }
    }

    async fn refetch(&self, what: RepoRef) -> Result<(), String> {
        self.0.pull(what).await.map(|_| ())
    }
}

impl Daemon {
    /// Checks the snapshots `req` selects, repairing damaged ones through the mesh when asked.
    pub async fn verify(self: &Arc<Self>, req: &VerifyRequest) -> Result<VerifyReport, String> {
        let kind = if req.dataset {
            RepoKind::Dataset
        } else {
            RepoKind::Model
        };
        let root = &self.config.node.cache_dir;
        let targets = verify::select(root, req.repo.as_deref(), kind)?;
        let repair = ThroughMesh(self.clone());
        let report = verify::verify(root, targets, req.repair.then_some(&repair)).await;
        let bad = report.damaged;
        self.metrics
            .verify_damage
            .fetch_add(bad, std::sync::atomic::Ordering::Relaxed);
        if bad > 0 {
            tracing::warn!(
                damaged = bad,
                repaired = report.repaired,
                "verify found damage"
            );
        }
        Ok(report)
    }
}
