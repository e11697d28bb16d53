//! Pulls and removals in one repository folder exclude each other: a pull may rely on a blob
//! that is already in `blobs/` (it skips fetching it), so no blob of that repository may go
//! while the pull runs, and a pull waits for a removal in its repository to finish.
//!
//! One read-write lock per repository: each pull holds a read guard for its whole run; a removal
//! takes the write guard only if no pull holds one, and never waits.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::{OwnedRwLockReadGuard, OwnedRwLockWriteGuard, RwLock};

use crate::repo::{RepoId, RepoKind};

/// A repository folder.
pub type RepoKey = (RepoKind, RepoId);

/// The per-repository locks.
#[derive(Debug, Default)]
pub struct Gate {
    locks: Mutex<HashMap<RepoKey, Arc<RwLock<()>>>>,
}

/// Held by a pull while it runs.
pub type PullPass = OwnedRwLockReadGuard<()>;
/// Held by a removal while it runs.
pub type RemovalPass = OwnedRwLockWriteGuard<()>;

impl Gate {
    fn lock_of(&self, repo: &RepoKey) -> Arc<RwLock<()>> {
        self.locks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(repo.clone())
            .or_default()
            .clone()
    }

    /// Waits until no removal runs in `repo`, then lets a pull in until the pass drops.
    pub async fn pull(&self, repo: &RepoKey) -> PullPass {
        self.lock_of(repo).read_owned().await
    }

    /// A removal in `repo`, if no pull (and no other removal) runs there now.
    pub fn try_remove(&self, repo: &RepoKey) -> Option<RemovalPass> {
        self.lock_of(repo).try_write_owned().ok()
    }

    /// Whether a pull or a removal runs in `repo` now.
    pub fn busy(&self, repo: &RepoKey) -> bool {
        self.lock_of(repo).try_write().is_err()
    }
}

#[cfg(test)]
mod tests {
    use futures_util::FutureExt as _;

    use super::*;

    fn repo(name: &str) -> RepoKey {
        (RepoKind::Model, RepoId::parse(name).unwrap())
    }

    #[tokio::test]
    async fn pulls_and_removals_of_one_repository_exclude_each_other() {
        let gate = Gate::default();
        let (a, b) = (repo("acme/a"), repo("acme/b"));
        let p1 = gate.pull(&a).await;
        let p2 = gate.pull(&a).await;
        assert!(gate.busy(&a));
        assert!(gate.try_remove(&a).is_none(), "pulls of acme/a run");
        assert!(gate.try_remove(&b).is_some(), "other repositories are free");
        drop((p1, p2));
        let removal = gate.try_remove(&a).expect("no pull runs any more");
        assert!(
            gate.pull(&a).now_or_never().is_none(),
            "a pull waits for the removal"
        );
        assert!(gate.try_remove(&a).is_none(), "one removal at a time");
        drop(removal);
        let pass = gate.pull(&a).now_or_never();
        assert!(pass.is_some(), "the pull goes on once the removal is done");
        drop(pass);
        assert!(!gate.busy(&a));
    }
}
