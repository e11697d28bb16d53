//! Removing a snapshot from the cache tree without ever showing `huggingface_hub` something it
//! would misread, whatever step a crash interrupts.
//!
//! Order (each step durable before the next):
//! 1. every `refs/*` that points at the commit (a ref to a missing snapshot makes
//!    `scan_cache_dir()` reject the whole repository);
//! 2. `trees/<commit>.json` and `.no_exist/<commit>/`;
//! 3. `snapshots/<commit>` is renamed into the work area as `evict-<commit>.<random>.tmp`, so it
//!    disappears in one step and its symlinks still say which blobs it named;
//! 4. each of those blobs that no remaining snapshot names is deleted under its `.locks` flock
//!    (a blob someone is writing right now is kept);
//! 5. the renamed directory is deleted; then the whole repository folder, if no snapshot, no
//!    blob and no work in progress is left.
//!
//! A crash after step 3 leaves a renamed directory behind; the next removal in that repository
//! (or [`finish_interrupted`]) completes steps 4 and 5 for it.

use std::collections::BTreeSet;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use super::scan::{blob_names, repo_folders};
use super::{fsutil, BlobLock, RepoCache};
use crate::etag::Etag;
use crate::repo::CommitId;

/// Prefix of a snapshot directory being removed, in the repository's work area.
const EVICTING: &str = "evict-";

/// What removing a snapshot did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Removed {
    /// Bytes of the blobs deleted.
    pub freed_bytes: u64,
    /// The blobs deleted (named by no remaining snapshot).
    pub blobs_removed: Vec<Etag>,
    /// Blobs left because another process held their lock.
    pub blobs_busy: Vec<Etag>,
    /// Whether the repository folder went too (nothing was left in it).
    pub repo_removed: bool,
}

impl RepoCache {
    /// Removes `snapshots/<commit>`, the refs and tree listing that name it, and the blobs only
    /// it named, in the crash-safe order of this module. Fails with `NotFound` when the
    /// snapshot is not there.
    pub fn remove_snapshot(&self, commit: &CommitId) -> io::Result<Removed> {
        let dir = self.layout().snapshot_dir(commit);
        if !dir.is_dir() {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("{} is not in the cache", dir.display()),
            ));
        }
        self.remove_refs_to(commit)?;
        remove_if_present(&self.layout().tree_file(commit))?;
        remove_if_present(
            &self
                .layout()
                .repo_dir()
                .join(".no_exist")
                .join(commit.as_str()),
        )?;
        fsutil::sync_dir(&self.layout().repo_dir());
        let staged = fsutil::temp_name(
            &self.layout().tmp_dir(),
            &format!("{EVICTING}{}", commit.as_str()),
        );
        fs::create_dir_all(self.layout().tmp_dir())?;
        fs::rename(&dir, &staged)?;
        fsutil::sync_dir(&self.layout().repo_dir().join("snapshots"));
        self.finish_removals()
    }

    /// Completes every removal of this repository whose snapshot directory already left
    /// `snapshots/` (steps 4 and 5).
    pub fn finish_removals(&self) -> io::Result<Removed> {
        let staged = self.staged_removals();
        let named: BTreeSet<Etag> = staged.iter().flat_map(|d| blob_names(d)).collect();
        let kept = self.blobs_named_except(None);
        let mut removed = Removed::default();
        for etag in named.difference(&kept) {
            match self.remove_blob(etag)? {
                Some(bytes) => {
                    removed.freed_bytes += bytes;
                    removed.blobs_removed.push(etag.clone());
                }
                None => removed.blobs_busy.push(etag.clone()),
            }
        }
        fsutil::sync_dir(&self.layout().blobs_dir());
        for d in staged {
            fs::remove_dir_all(&d)?;
        }
        self.tidy_work_dir();
        removed.repo_removed = self.remove_repo_if_empty()?;
        Ok(removed)
    }

    /// Snapshot directories of interrupted removals in the work area.
    fn staged_removals(&self) -> Vec<PathBuf> {
        let Ok(entries) = fs::read_dir(self.layout().tmp_dir()) else {
            return Vec::new();
        };
        entries
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with(EVICTING))
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .map(|e| e.path())
            .collect()
    }

    /// Deletes every file under `refs/` that holds `commit`, then the directories left empty.
    fn remove_refs_to(&self, commit: &CommitId) -> io::Result<()> {
        let refs = self.layout().repo_dir().join("refs");
        let mut dirs = vec![refs.clone()];
        let mut stack = vec![refs];
        while let Some(d) = stack.pop() {
            let Ok(entries) = fs::read_dir(&d) else {
                continue;
            };
            for e in entries.flatten() {
                let path = e.path();
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    dirs.push(path.clone());
                    stack.push(path);
                } else if fs::read_to_string(&path).is_ok_and(|t| t.trim() == commit.as_str()) {
                    fs::remove_file(&path)?;
                }
            }
        }
        // Deepest first, so nested refs (`refs/refs/pr/1`) leave no empty folders behind.
        for d in dirs.iter().skip(1).rev() {
            fsutil::remove_dir_if_empty(d);
        }
        Ok(())
    }

    /// Deletes `blobs/<etag>` unless someone holds its lock; `Some(bytes freed)` when deleted.
    fn remove_blob(&self, etag: &Etag) -> io::Result<Option<u64>> {
        let path = self.layout().blob(etag);
        let Ok(meta) = fs::symlink_metadata(&path) else {
            return Ok(Some(0));
        };
        let Some(_lock) = BlobLock::try_now(self.layout().blob_lock(etag))? else {
            return Ok(None);
        };
        match fs::remove_file(&path) {
            Ok(()) => Ok(Some(meta.len())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Some(0)),
            Err(e) => Err(e),
        }
    }

    /// Removes the repository folder when it holds no snapshot, no blob and no work in
    /// progress: refs and listings first, `snapshots/` last, so a crash midway leaves a folder
    /// `huggingface_hub` reads as a repository with no revisions.
    fn remove_repo_if_empty(&self) -> io::Result<bool> {
        let repo = self.layout().repo_dir();
        let empty = |p: &Path| fs::read_dir(p).map_or(true, |mut d| d.next().is_none());
        if !empty(&repo.join("snapshots"))
            || !empty(&self.layout().blobs_dir())
            || self.layout().work_dir().exists()
        {
            return Ok(false);
        }
        for dir in ["refs", "trees", ".no_exist"] {
            remove_if_present(&repo.join(dir))?;
        }
        fsutil::remove_dir_if_empty(&self.layout().blobs_dir());
        fsutil::remove_dir_if_empty(&repo.join("snapshots"));
        fsutil::remove_dir_if_empty(&repo);
        Ok(!repo.exists())
    }
}

/// Completes the removals a crash interrupted, in every repository of the cache tree at `root`.
pub fn finish_interrupted(root: &Path) -> io::Result<u64> {
    let mut freed = 0;
    for (kind, id) in repo_folders(root) {
        let cache = RepoCache::new(root, kind, &id);
        if !cache.staged_removals().is_empty() {
            freed += cache.finish_removals()?.freed_bytes;
        }
    }
    Ok(freed)
}

/// Removes a file or a directory tree; absent is fine.
fn remove_if_present(path: &Path) -> io::Result<()> {
    let result = match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => fs::remove_dir_all(path),
        Ok(_) => fs::remove_file(path),
        Err(e) => Err(e),
    };
    match result {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests;
