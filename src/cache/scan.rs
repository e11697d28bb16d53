//! What the cache tree holds, read from disk alone: every snapshot of every `models--*` and
//! `datasets--*` folder (whoever wrote it, hfmesh or `huggingface_hub`), the blobs its symlinks
//! point at, and how many bytes the tree's blobs take.
//!
//! A snapshot names a blob through a symlink whose target ends in `blobs/<etag>` (relative, as
//! `huggingface_hub` writes it, or absolute). Regular files in a snapshot (`huggingface_hub`'s
//! no-symlink mode) name no blob: they are not counted by [`usage`] either, so the quota ignores
//! them.

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;
use std::time::UNIX_EPOCH;

use super::RepoCache;
use crate::etag::Etag;
use crate::repo::{CommitId, RepoId, RepoKind};

/// One snapshot found in the cache tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CachedSnapshot {
    /// Model or dataset.
    pub kind: RepoKind,
    /// Repository id.
    pub repo: RepoId,
    /// The commit (the name of its `snapshots/` directory).
    pub commit: CommitId,
    /// The distinct blobs its symlinks point at that exist in `blobs/`, with their sizes on disk.
    pub blobs: Vec<(Etag, u64)>,
    /// Modification time of `snapshots/<commit>`, in milliseconds since the Unix epoch.
    pub modified_ms: u64,
}

/// Every snapshot of the cache tree at `root`, sorted by kind, repository and commit. Unreadable
/// entries are skipped: a scan never fails.
pub fn snapshots(root: &Path) -> Vec<CachedSnapshot> {
    let mut out: Vec<CachedSnapshot> = repo_folders(root)
        .into_iter()
        .flat_map(|(kind, repo)| repo_snapshots(root, kind, &repo))
        .collect();
    out.sort_by(|a, b| (a.kind, &a.repo, &a.commit).cmp(&(b.kind, &b.repo, &b.commit)));
    out
}

/// Bytes of every file in every repository's `blobs/` (each file counted once, however many
/// snapshots name it). This is what the disk quota counts.
pub fn usage(root: &Path) -> u64 {
    let Ok(repos) = fs::read_dir(root) else {
        return 0;
    };
    repos
        .flatten()
        .map(|r| r.path().join("blobs"))
        .filter_map(|b| fs::read_dir(b).ok())
        .flat_map(|d| d.flatten())
        .filter_map(|e| e.metadata().ok())
        .filter(|m| m.is_file())
        .map(|m| m.len())
        .sum()
}

/// The repository a cache folder name stands for: `models--org--name`, `datasets--name`.
pub fn parse_repo_folder(name: &str) -> Option<(RepoKind, RepoId)> {
    let (plural, rest) = name.split_once("--")?;
    let kind = match plural {
        "models" => RepoKind::Model,
        "datasets" => RepoKind::Dataset,
        _ => return None,
    };
    let id = RepoId::parse(&rest.replacen("--", "/", 1)).ok()?;
    (id.folder_name(kind) == name).then_some((kind, id))
}

/// The repository folders of the cache tree at `root`.
pub fn repo_folders(root: &Path) -> Vec<(RepoKind, RepoId)> {
    let Ok(entries) = fs::read_dir(root) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .filter_map(|e| parse_repo_folder(e.file_name().to_str()?))
        .collect()
}

/// The snapshots of one repository folder.
pub fn repo_snapshots(root: &Path, kind: RepoKind, repo: &RepoId) -> Vec<CachedSnapshot> {
    let cache = RepoCache::new(root, kind, repo);
    cache
        .commits()
        .into_iter()
        .map(|commit| {
            let dir = cache.layout().snapshot_dir(&commit);
            let blobs = blob_names(&dir)
                .into_iter()
                .filter_map(|etag| {
                    let m = fs::metadata(cache.layout().blob(&etag)).ok()?;
                    m.is_file().then_some((etag, m.len()))
                })
                .collect();
            CachedSnapshot {
                kind,
                repo: repo.clone(),
                commit,
                blobs,
                modified_ms: modified_ms(&dir),
            }
        })
        .collect()
}

impl RepoCache {
    /// The commits under `snapshots/` (directories named by a full commit id), sorted.
    pub fn commits(&self) -> Vec<CommitId> {
        let Ok(entries) = fs::read_dir(self.layout().repo_dir().join("snapshots")) else {
            return Vec::new();
        };
        let mut commits: Vec<CommitId> = entries
            .flatten()
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .filter_map(|e| CommitId::parse(e.file_name().to_str()?).ok())
            .collect();
        commits.sort();
        commits
    }

    /// The blobs that the snapshots of this repository other than `except` name.
    pub fn blobs_named_except(&self, except: Option<&CommitId>) -> BTreeSet<Etag> {
        self.commits()
            .iter()
            .filter(|c| Some(*c) != except)
            .flat_map(|c| blob_names(&self.layout().snapshot_dir(c)))
            .collect()
    }
}

/// The etags named by the symlinks under `dir` (recursively; symlinks are not followed).
pub fn blob_names(dir: &Path) -> BTreeSet<Etag> {
    let mut names = BTreeSet::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let Ok(t) = e.file_type() else { continue };
            if t.is_dir() {
                stack.push(e.path());
            } else if t.is_symlink() {
                if let Some(etag) = fs::read_link(e.path()).ok().and_then(|t| link_blob(&t)) {
                    names.insert(etag);
                }
            }
        }
    }
    names
}

/// The etag a snapshot symlink points at: its target must end in `blobs/<etag>`.
fn link_blob(target: &Path) -> Option<Etag> {
    let name = target.file_name()?.to_str()?;
    let parent = target.parent()?.file_name()?;
    if parent != "blobs" {
        return None;
    }
    Etag::parse(name).ok().filter(|e| e.as_str() == name)
}

fn modified_ms(path: &Path) -> u64 {
    fs::metadata(path)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::etag::git_blob_id;
    use crate::manifest::FileEntry;
    use crate::repo::RepoPath;

    fn entry(cache: &RepoCache, content: &[u8], path: &str) -> FileEntry {
        let etag = git_blob_id(content);
        let staged = cache.layout().cache_root().join("staged");
        fs::create_dir_all(cache.layout().cache_root()).unwrap();
        fs::write(&staged, content).unwrap();
        cache.commit_blob(&staged, &etag).unwrap();
        FileEntry {
            path: RepoPath::parse(path).unwrap(),
            size: content.len() as u64,
            blob_id: etag.to_string(),
            etag,
            lfs: false,
        }
    }

    #[test]
    fn folder_names_round_trip_and_strangers_are_ignored() {
        let id = RepoId::parse("acme/x").unwrap();
        assert_eq!(
            parse_repo_folder("models--acme--x"),
            Some((RepoKind::Model, id))
        );
        assert_eq!(
            parse_repo_folder("datasets--bare"),
            Some((RepoKind::Dataset, RepoId::parse("bare").unwrap()))
        );
        for bad in [
            "spaces--a--b",
            "models--a--b--c",
            "models--",
            ".locks",
            "models--a/b",
        ] {
            assert_eq!(parse_repo_folder(bad), None, "{bad}");
        }
    }

    #[test]
    fn finds_every_snapshot_with_its_blobs_and_counts_usage_once() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let m = RepoCache::new(root, RepoKind::Model, &RepoId::parse("acme/m").unwrap());
        let shared = entry(&m, b"shared bytes", "w.bin");
        let c1 = CommitId::parse(&"1".repeat(40)).unwrap();
        let c2 = CommitId::parse(&"2".repeat(40)).unwrap();
        let only = entry(&m, b"only in two", "sub/dir/x.txt");
        m.assemble_snapshot(&c1, std::slice::from_ref(&shared))
            .unwrap();
        m.assemble_snapshot(&c2, &[shared.clone(), only.clone()])
            .unwrap();
        // A dataset written by hand, as huggingface_hub would: absolute link, a dangling link,
        // a regular file, and a link that points elsewhere.
        let d = RepoCache::new(root, RepoKind::Dataset, &RepoId::parse("ds").unwrap());
        let data = entry(&d, b"rows", "data.csv");
        let c3 = CommitId::parse(&"3".repeat(40)).unwrap();
        let snap = d.layout().snapshot_dir(&c3);
        fs::create_dir_all(&snap).unwrap();
        std::os::unix::fs::symlink(d.layout().blob(&data.etag), snap.join("data.csv")).unwrap();
        let gone = git_blob_id(b"gone");
        std::os::unix::fs::symlink(format!("../../blobs/{gone}"), snap.join("gone")).unwrap();
        fs::write(snap.join("plain.txt"), b"plain").unwrap();
        std::os::unix::fs::symlink("../../elsewhere/abc", snap.join("odd")).unwrap();
        fs::create_dir_all(root.join("not-a-repo/blobs")).unwrap();
        fs::create_dir_all(m.layout().repo_dir().join("snapshots/not-a-commit")).unwrap();

        let found = snapshots(root);
        let summary: Vec<(RepoKind, &str, &str, Vec<u64>)> = found
            .iter()
            .map(|s| {
                let mut sizes: Vec<u64> = s.blobs.iter().map(|(_, n)| *n).collect();
                sizes.sort();
                (s.kind, s.repo.as_str(), &s.commit.as_str()[..1], sizes)
            })
            .collect();
        assert_eq!(
            summary,
            vec![
                (RepoKind::Model, "acme/m", "1", vec![12]),
                (RepoKind::Model, "acme/m", "2", vec![11, 12]),
                (RepoKind::Dataset, "ds", "3", vec![4]),
            ]
        );
        assert!(found.iter().all(|s| s.modified_ms > 0));
        assert_eq!(usage(root), 12 + 11 + 4, "each blob once");
        assert_eq!(
            m.blobs_named_except(Some(&c2)),
            BTreeSet::from([shared.etag])
        );
        assert_eq!(m.commits(), vec![c1, c2]);
    }
}
