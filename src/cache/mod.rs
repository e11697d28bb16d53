//! The cache tree: the exact layout `huggingface_hub` reads and writes, with atomic finalize.
//!
//! Order of visibility for a snapshot (each step atomic, so a crash at any point leaves nothing
//! half-written that `huggingface_hub` could see): every blob is renamed into `blobs/` only after
//! it was verified; the snapshot directory appears whole (staged, then renamed) or, when another
//! writer already made it, gains one complete symlink at a time; `trees/<commit>.json` follows,
//! and `refs/<revision>` comes last.

/// Atomic writes, symlinks and renames.
pub mod fsutil;
/// Paths of the tree and where the tree is.
pub mod layout;
/// Per-blob file locks shared with `huggingface_hub`.
pub mod lock;
/// Crash-safe removal of a snapshot and the blobs only it names.
pub mod remove;
/// What the tree holds, read from disk: snapshots, the blobs they name, bytes used.
pub mod scan;
/// `trees/<commit>.json`, byte-identical to `huggingface_hub`'s.
pub mod tree_json;
/// Re-hashing snapshots and taking damaged blobs out of the tree.
pub mod verify;

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

pub use layout::{resolve_cache_dir, symlink_target, RepoLayout};
pub use lock::BlobLock;

use crate::etag::Etag;
use crate::manifest::FileEntry;
use crate::repo::{CommitId, RepoId, RepoKind, RepoPath, Revision};

/// Content of `CACHEDIR.TAG`, as `huggingface_hub` writes it.
pub const CACHEDIR_TAG: &str = "Signature: 8a477f597d28d172789f06886806bc55\n\
# This file is a cache directory tag created by huggingface_hub.\n\
# For information about cache directory tags, see:\n\
#\thttps://bford.info/cachedir/\n";

/// One repository's folder in a cache tree.
#[derive(Debug, Clone)]
pub struct RepoCache {
    layout: RepoLayout,
}

impl RepoCache {
    /// The folder of `id` in the cache rooted at `root`. Creates nothing.
    pub fn new(root: &Path, kind: RepoKind, id: &RepoId) -> Self {
        RepoCache {
            layout: RepoLayout::new(root, kind, id),
        }
    }

    /// The paths.
    pub fn layout(&self) -> &RepoLayout {
        &self.layout
    }

    /// Creates `CACHEDIR.TAG` at the cache root if absent (as `huggingface_hub` ≥ 1.9 does).
    pub fn ensure_cachedir_tag(&self) -> io::Result<()> {
        let root = self.layout.cache_root();
        let tag = root.join("CACHEDIR.TAG");
        if tag.exists() {
            return Ok(());
        }
        fs::create_dir_all(root)?;
        fsutil::write_atomic(&self.layout.tmp_dir(), &tag, CACHEDIR_TAG.as_bytes())
    }

    /// Takes the exclusive per-blob lock that `huggingface_hub` also takes, waiting for it.
    pub async fn lock_blob(&self, etag: &Etag) -> io::Result<BlobLock> {
        BlobLock::acquire(self.layout.blob_lock(etag)).await
    }

    /// Whether `blobs/<etag>` exists with the expected size.
    pub fn has_blob(&self, etag: &Etag, size: u64) -> bool {
        fs::metadata(self.layout.blob(etag)).is_ok_and(|m| m.is_file() && m.len() == size)
    }

    /// Moves a verified file into `blobs/<etag>` (atomic rename; replaces a damaged blob).
    pub fn commit_blob(&self, verified: &Path, etag: &Etag) -> io::Result<PathBuf> {
        let dest = self.layout.blob(etag);
        fs::create_dir_all(self.layout.blobs_dir())?;
        fs::rename(verified, &dest)?;
        fsutil::sync_dir(&self.layout.blobs_dir());
        Ok(dest)
    }

    /// The commit a ref points at, if the ref exists and holds a valid commit id.
    pub fn read_ref(&self, revision: &Revision) -> Option<CommitId> {
        let text = fs::read_to_string(self.layout.ref_file(revision)).ok()?;
        CommitId::parse(&text).ok()
    }

    /// Writes `refs/<revision>` (40 hex, no newline) atomically, unless the revision is the
    /// commit itself or the ref already holds it.
    pub fn write_ref(&self, revision: &Revision, commit: &CommitId) -> io::Result<()> {
        if revision.as_str() == commit.as_str() || self.read_ref(revision).as_ref() == Some(commit)
        {
            return Ok(());
        }
        let dest = self.layout.ref_file(revision);
        fsutil::write_atomic(&self.layout.tmp_dir(), &dest, commit.as_str().as_bytes())
    }

    /// Whether `snapshots/<commit>` is complete: its `trees/<commit>.json` exists and every file
    /// it lists is present with the listed size. Makes no network request.
    pub fn snapshot_complete(&self, commit: &CommitId) -> bool {
        let Ok(text) = fs::read_to_string(self.layout.tree_file(commit)) else {
            return false;
        };
        let Some(files) = tree_json::parse(&text) else {
            return false;
        };
        let dir = self.layout.snapshot_dir(commit);
        files.iter().all(|(path, entry)| {
            RepoPath::parse(path).is_ok()
                && fs::metadata(dir.join(path)).is_ok_and(|m| m.is_file() && m.len() == entry.size)
        })
    }

    /// Makes `snapshots/<commit>/` hold a relative symlink to its blob for every file, then writes
    /// `trees/<commit>.json`. Every blob must already be in `blobs/`.
    ///
    /// When the snapshot directory does not exist it is built in the work area and renamed into
    /// place whole; when it exists (another writer, or an older partial tree) each missing or
    /// wrong entry is replaced by an atomic symlink rename.
    pub fn assemble_snapshot(&self, commit: &CommitId, files: &[FileEntry]) -> io::Result<PathBuf> {
        for f in files {
            if !self.has_blob(&f.etag, f.size) {
                return Err(io::Error::new(
                    io::ErrorKind::NotFound,
                    format!("blob {} for {} is missing from the cache", f.etag, f.path),
                ));
            }
        }
        let dir = self.layout.snapshot_dir(commit);
        let tmp = self.layout.tmp_dir();
        if !dir.exists() {
            let staging = fsutil::temp_name(&tmp, commit.as_str());
            fs::create_dir_all(&staging)?;
            for f in files {
                let link = staging.join(f.path.as_str());
                if let Some(parent) = link.parent() {
                    fs::create_dir_all(parent)?;
                }
                std::os::unix::fs::symlink(symlink_target(&f.path, &f.etag), &link)?;
            }
            fs::create_dir_all(dir.parent().expect("snapshot dir has a parent"))?;
            match fs::rename(&staging, &dir) {
                Ok(()) => {}
                // Another writer created it meanwhile: fall through to filling it in.
                Err(_) if dir.is_dir() => fs::remove_dir_all(&staging)?,
                Err(e) => {
                    let _ = fs::remove_dir_all(&staging);
                    return Err(e);
                }
            }
        }
        for f in files {
            self.ensure_link(commit, f)?;
        }
        fsutil::sync_dir(&dir);
        self.write_tree_json(commit, files)?;
        Ok(dir)
    }

    fn ensure_link(&self, commit: &CommitId, f: &FileEntry) -> io::Result<()> {
        let link = self.layout.snapshot_file(commit, &f.path);
        let target = symlink_target(&f.path, &f.etag);
        match fs::symlink_metadata(&link) {
            Ok(m) if m.file_type().is_symlink() && fs::read_link(&link)? == target => Ok(()),
            // A regular file of the right size was placed by huggingface_hub in no-symlink mode.
            Ok(m) if m.is_file() && m.len() == f.size => Ok(()),
            Ok(m) if m.is_dir() => Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("{} is a directory where a file should be", link.display()),
            )),
            _ => fsutil::symlink_atomic(&self.layout.tmp_dir(), &target, &link),
        }
    }

    fn write_tree_json(&self, commit: &CommitId, files: &[FileEntry]) -> io::Result<()> {
        let entries: BTreeMap<String, tree_json::TreeEntry> = files
            .iter()
            .map(|f| {
                let entry = tree_json::TreeEntry {
                    size: f.size,
                    blob_id: f.blob_id.clone(),
                    lfs_sha256: f.lfs.then(|| f.etag.to_string()),
                    lfs_size: f.lfs.then_some(f.size),
                };
                (f.path.to_string(), entry)
            })
            .collect();
        let text = tree_json::render(&entries);
        let dest = self.layout.tree_file(commit);
        if fs::read_to_string(&dest).is_ok_and(|t| t == text) {
            return Ok(());
        }
        fsutil::write_atomic(&self.layout.tmp_dir(), &dest, text.as_bytes())
    }

    /// Removes hfmesh's work area when nothing is in progress in it (empty staging dirs only), so
    /// that a finished tree holds exactly what `huggingface_hub` would have written.
    pub fn tidy_work_dir(&self) {
        fsutil::remove_dir_if_empty(&self.layout.tmp_dir());
        fsutil::remove_dir_if_empty(&self.layout.partial_dir());
        fsutil::remove_dir_if_empty(&self.layout.work_dir());
    }
}

#[cfg(test)]
mod tests;
