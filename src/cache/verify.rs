//! Re-hashing a cache tree: every file of every snapshot is checked against the etag it should
//! have (SHA-256 for LFS files, the git blob id otherwise), and damaged blobs are taken out of
//! the tree so that the next pull of that snapshot fetches them again.
//!
//! What a snapshot should hold comes from `trees/<commit>.json` when it exists (paths, sizes and
//! etags, as hfmesh and `huggingface_hub` write it); otherwise from the snapshot's symlinks, whose
//! targets name the blobs.

use std::fs;
use std::io;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::{tree_json, RepoCache};
use crate::etag::Etag;
use crate::repo::{CommitId, RepoId, RepoKind, RepoPath, RepoRef, Revision};
use crate::store::hash_file;

/// One snapshot to check.
pub type Target = (RepoKind, RepoId, CommitId);

/// Refetches what [`quarantine`] took out of the tree.
// Callers are concrete types, so whether the future is `Send` follows from the implementation.
#[allow(async_fn_in_trait)]
pub trait Repair {
    /// Damaged blobs are about to leave the tree: stop serving them.
    fn forget(&self, _etags: &[Etag]) {}
    /// Pulls the snapshot `what` (its revision is the commit) so that its missing files return.
    async fn refetch(&self, what: RepoRef) -> Result<(), String>;
}

/// One snapshot's check, and its repair when it needed one.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Verdict {
    /// The check before any repair.
    #[serde(flatten)]
    pub check: SnapshotCheck,
    /// `None`: nothing to repair or no repair asked; `Some(true)`: refetched and now intact.
    pub repaired: Option<bool>,
    /// Why the repair failed.
    pub repair_error: Option<String>,
}

/// The result of `hfmesh verify`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct VerifyReport {
    /// Snapshots checked.
    pub snapshots: Vec<Verdict>,
    /// Files checked in all.
    pub files: u64,
    /// Bytes hashed in all.
    pub bytes: u64,
    /// Damaged files found.
    pub damaged: u64,
    /// Snapshots that were damaged and are intact again.
    pub repaired: u64,
}

impl VerifyReport {
    /// Whether every snapshot is intact now (undamaged, or repaired).
    pub fn healthy(&self) -> bool {
        self.snapshots
            .iter()
            .all(|v| v.check.damage.is_empty() || v.repaired == Some(true))
    }
}

/// Which snapshots `hfmesh verify [REPO[:REV]]` checks: all of the cache when `filter` is `None`,
/// every snapshot of a repository for `org/name`, one snapshot for `org/name:rev` (a commit, or a
/// ref found in the cache; no network request is made).
pub fn select(root: &Path, filter: Option<&str>, kind: RepoKind) -> Result<Vec<Target>, String> {
    let Some(filter) = filter else {
        let mut repos = super::scan::repo_folders(root);
        repos.sort();
        return Ok(repos
            .into_iter()
            .flat_map(|(kind, id)| {
                RepoCache::new(root, kind, &id)
                    .commits()
                    .into_iter()
                    .map(move |c| (kind, id.clone(), c))
            })
            .collect());
    };
    let what = RepoRef::parse(filter, kind).map_err(|e| e.to_string())?;
    let cache = RepoCache::new(root, kind, &what.id);
    if !filter.contains(':') {
        let all = cache.commits();
        if all.is_empty() {
            return Err(format!(
                "the cache at {} holds no snapshot of {} {}",
                root.display(),
                kind,
                what.id
            ));
        }
        return Ok(all
            .into_iter()
            .map(|c| (kind, what.id.clone(), c))
            .collect());
    }
    let commit = local_commit(&cache, &what.revision).ok_or_else(|| {
        format!(
            "the cache at {} has no snapshot of {} {}:{}",
            root.display(),
            kind,
            what.id,
            what.revision
        )
    })?;
    Ok(vec![(kind, what.id, commit)])
}

/// The commit `revision` names in the cache, if its snapshot folder exists.
fn local_commit(cache: &RepoCache, revision: &Revision) -> Option<CommitId> {
    let commit = CommitId::parse(revision.as_str())
        .ok()
        .or_else(|| cache.read_ref(revision))?;
    cache
        .layout()
        .snapshot_dir(&commit)
        .is_dir()
        .then_some(commit)
}

/// Checks every target (re-hashing on the blocking pool) and, with `repair`, takes damaged files
/// out of the tree, refetches the snapshot and checks it again.
pub async fn verify<R: Repair>(
    root: &Path,
    targets: Vec<Target>,
    repair: Option<&R>,
) -> VerifyReport {
    let mut report = VerifyReport::default();
    for (kind, id, commit) in targets {
        let cache = RepoCache::new(root, kind, &id);
        let check = check_blocking(&cache, kind, &id, &commit).await;
        report.files += check.files;
        report.bytes += check.bytes;
        report.damaged += check.damage.len() as u64;
        let mut verdict = Verdict {
            check,
            repaired: None,
            repair_error: None,
        };
        if let (Some(repair), false) = (repair, verdict.check.damage.is_empty()) {
            match repair_one(&cache, &verdict.check, repair).await {
                Ok(()) => {
                    verdict.repaired = Some(true);
                    report.repaired += 1;
                }
                Err(e) => {
                    verdict.repaired = Some(false);
                    verdict.repair_error = Some(e);
                }
            }
        }
        report.snapshots.push(verdict);
    }
    report
}

async fn check_blocking(
    cache: &RepoCache,
    kind: RepoKind,
    id: &RepoId,
    commit: &CommitId,
) -> SnapshotCheck {
    let (cache, id, commit) = (cache.clone(), id.clone(), commit.clone());
    let fallback = (id.clone(), commit.clone());
    tokio::task::spawn_blocking(move || check_snapshot(&cache, kind, &id, &commit))
        .await
        .unwrap_or_else(|e| SnapshotCheck {
            kind,
            repo: fallback.0,
            commit: fallback.1,
            files: 0,
            bytes: 0,
            damage: vec![Damage {
                path: String::new(),
                etag: String::new(),
                problem: Problem::Unreadable {
                    error: format!("the check failed: {e}"),
                },
            }],
        })
}

/// Quarantines, refetches, and checks again.
async fn repair_one<R: Repair>(
    cache: &RepoCache,
    check: &SnapshotCheck,
    repair: &R,
) -> Result<(), String> {
    let etags: Vec<Etag> = check
        .damage
        .iter()
        .filter_map(|d| Etag::parse(&d.etag).ok())
        .collect();
    repair.forget(&etags);
    quarantine(cache, check)
        .await
        .map_err(|e| format!("cannot take the damaged files out of the tree: {e}"))?;
    let what = RepoRef {
        kind: check.kind,
        id: check.repo.clone(),
        revision: check.commit.clone().into(),
    };
    repair.refetch(what).await?;
    let again = check_blocking(cache, check.kind, &check.repo, &check.commit).await;
    match again.damage.first() {
        None => Ok(()),
        Some(d) => Err(format!(
            "still damaged after the refetch: {} ({:?})",
            d.path, d.problem
        )),
    }
}

/// What is wrong with one file of a snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "problem")]
pub enum Problem {
    /// The file (or the blob its link points at) is not there.
    Missing,
    /// The link points at another blob than the tree lists.
    WrongLink {
        /// The blob it points at.
        points_at: String,
    },
    /// The blob has another size than the tree lists.
    WrongSize {
        /// Listed size.
        expected: u64,
        /// Size on disk.
        found: u64,
    },
    /// The blob's content does not hash to its etag.
    WrongHash {
        /// What it hashes to.
        found: String,
    },
    /// The file could not be read.
    Unreadable {
        /// The I/O error.
        error: String,
    },
}

/// One damaged file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Damage {
    /// Path in the snapshot.
    pub path: String,
    /// The etag it should have.
    pub etag: String,
    /// What is wrong.
    #[serde(flatten)]
    pub problem: Problem,
}

/// The result of checking one snapshot.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SnapshotCheck {
    /// `model` or `dataset`.
    pub kind: RepoKind,
    /// Repository id.
    pub repo: RepoId,
    /// Commit.
    pub commit: CommitId,
    /// Files checked.
    pub files: u64,
    /// Bytes hashed.
    pub bytes: u64,
    /// Damaged files (empty: the snapshot is intact).
    pub damage: Vec<Damage>,
}

/// One file a snapshot should hold.
struct Expected {
    path: RepoPath,
    etag: Etag,
    size: Option<u64>,
}

/// Re-hashes every file of `snapshots/<commit>` (blocking I/O; reads every byte).
pub fn check_snapshot(
    cache: &RepoCache,
    kind: RepoKind,
    repo: &RepoId,
    commit: &CommitId,
) -> SnapshotCheck {
    let mut check = SnapshotCheck {
        kind,
        repo: repo.clone(),
        commit: commit.clone(),
        files: 0,
        bytes: 0,
        damage: Vec::new(),
    };
    for want in expected_files(cache, commit) {
        check.files += 1;
        match check_file(cache, commit, &want) {
            Ok(bytes) => check.bytes += bytes,
            Err(problem) => check.damage.push(Damage {
                path: want.path.to_string(),
                etag: want.etag.to_string(),
                problem,
            }),
        }
    }
    check
}

/// What the snapshot should hold: from `trees/<commit>.json`, else from its symlinks.
fn expected_files(cache: &RepoCache, commit: &CommitId) -> Vec<Expected> {
    let listed = fs::read_to_string(cache.layout().tree_file(commit))
        .ok()
        .and_then(|text| tree_json::parse(&text));
    if let Some(files) = listed {
        return files
            .into_iter()
            .filter_map(|(path, e)| {
                let etag = Etag::parse(e.lfs_sha256.as_deref().unwrap_or(&e.blob_id)).ok()?;
                Some(Expected {
                    path: RepoPath::parse(&path).ok()?,
                    etag,
                    size: Some(e.size),
                })
            })
            .collect();
    }
    let dir = cache.layout().snapshot_dir(commit);
    let mut found = Vec::new();
    walk_links(&dir, &dir, &mut found);
    found.sort_by(|a, b| a.path.as_str().cmp(b.path.as_str()));
    found
}

/// Collects every symlink under `dir` whose target names a blob.
fn walk_links(base: &Path, dir: &Path, out: &mut Vec<Expected>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let Ok(t) = entry.file_type() else { continue };
        if t.is_dir() {
            walk_links(base, &path, out);
            continue;
        }
        let blob = fs::read_link(&path).ok().and_then(|target| {
            let name = target.file_name()?.to_string_lossy().into_owned();
            Etag::parse(&name).ok()
        });
        let rel = path.strip_prefix(base).ok().and_then(|p| p.to_str());
        if let (Some(etag), Some(rel)) = (blob, rel) {
            if let Ok(path) = RepoPath::parse(rel) {
                out.push(Expected {
                    path,
                    etag,
                    size: None,
                });
            }
        }
    }
}

/// Checks one file; answers the bytes hashed.
fn check_file(cache: &RepoCache, commit: &CommitId, want: &Expected) -> Result<u64, Problem> {
    let link = cache.layout().snapshot_file(commit, &want.path);
    let meta = fs::symlink_metadata(&link).map_err(|_| Problem::Missing)?;
    let content = if meta.file_type().is_symlink() {
        let target = fs::read_link(&link).map_err(unreadable)?;
        let points_at = target
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if points_at != want.etag.as_str() {
            return Err(Problem::WrongLink { points_at });
        }
        cache.layout().blob(&want.etag)
    } else {
        // `huggingface_hub` without symlinks puts the file itself in the snapshot.
        link
    };
    let found = match fs::metadata(&content) {
        Ok(m) if m.is_file() => m.len(),
        Ok(_) => return Err(Problem::Missing),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(Problem::Missing),
        Err(e) => return Err(unreadable(e)),
    };
    if let Some(expected) = want.size.filter(|s| *s != found) {
        return Err(Problem::WrongSize { expected, found });
    }
    let hash = hash_file(&content, &want.etag, found).map_err(unreadable)?;
    if hash != want.etag {
        return Err(Problem::WrongHash {
            found: hash.to_string(),
        });
    }
    Ok(found)
}

fn unreadable(e: io::Error) -> Problem {
    Problem::Unreadable {
        error: e.to_string(),
    }
}

/// Takes the damaged files of `check` out of the tree so a pull of the snapshot fetches them
/// again: a damaged blob is deleted (under the per-blob lock `huggingface_hub` also takes) and a
/// wrong or dangling link is removed. Readers that have the old file open keep reading it.
pub async fn quarantine(cache: &RepoCache, check: &SnapshotCheck) -> io::Result<()> {
    for d in &check.damage {
        let (Ok(etag), Ok(path)) = (Etag::parse(&d.etag), RepoPath::parse(&d.path)) else {
            continue;
        };
        let link = cache.layout().snapshot_file(&check.commit, &path);
        let is_link = fs::symlink_metadata(&link).is_ok_and(|m| m.file_type().is_symlink());
        if matches!(
            d.problem,
            Problem::WrongSize { .. } | Problem::WrongHash { .. }
        ) {
            let _lock = cache.lock_blob(&etag).await?;
            let victim = if is_link {
                cache.layout().blob(&etag)
            } else {
                link.clone()
            };
            remove_if_present(&victim)?;
        }
        if is_link {
            remove_if_present(&link)?;
        }
    }
    Ok(())
}

fn remove_if_present(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::FileEntry;

    fn entry(path: &str, data: &[u8], lfs: bool) -> FileEntry {
        let git = crate::etag::git_blob_id(data);
        FileEntry {
            path: RepoPath::parse(path).unwrap(),
            size: data.len() as u64,
            etag: if lfs {
                crate::etag::sha256(data)
            } else {
                git.clone()
            },
            blob_id: git.to_string(),
            lfs,
        }
    }

    /// A snapshot of three files (one LFS, one nested) in a fresh cache.
    fn tree(root: &Path) -> (RepoCache, RepoId, CommitId, Vec<FileEntry>) {
        let id = RepoId::parse("acme/x").unwrap();
        let cache = RepoCache::new(root, RepoKind::Model, &id);
        let big = [7u8; 5000];
        let contents: [(&str, &[u8], bool); 3] = [
            ("config.json", b"{}\n", false),
            ("model.safetensors", &big, true),
            ("sub/dir/notes.txt", b"hello\n", false),
        ];
        let mut files = Vec::new();
        for (path, data, lfs) in contents {
            let f = entry(path, data, lfs);
            let staged = root.join("staged");
            fs::write(&staged, data).unwrap();
            cache.commit_blob(&staged, &f.etag).unwrap();
            files.push(f);
        }
        let commit = CommitId::parse(&"a".repeat(40)).unwrap();
        cache.assemble_snapshot(&commit, &files).unwrap();
        (cache, id, commit, files)
    }

    #[test]
    fn an_intact_snapshot_has_no_damage_and_every_byte_is_hashed() {
        let dir = tempfile::tempdir().unwrap();
        let (cache, id, commit, _) = tree(dir.path());
        let check = check_snapshot(&cache, RepoKind::Model, &id, &commit);
        assert_eq!(check.files, 3);
        assert_eq!(check.bytes, 3 + 5000 + 6);
        assert!(check.damage.is_empty(), "{:?}", check.damage);
        assert_eq!(
            select(dir.path(), None, RepoKind::Model).unwrap(),
            vec![(RepoKind::Model, id.clone(), commit.clone())]
        );
        assert_eq!(
            select(dir.path(), Some("acme/x"), RepoKind::Model).unwrap(),
            vec![(RepoKind::Model, id, commit)]
        );
    }

    #[test]
    fn flipped_truncated_and_missing_blobs_are_found_and_quarantined() {
        let dir = tempfile::tempdir().unwrap();
        let (cache, id, commit, files) = tree(dir.path());
        // A flipped byte in the LFS file, a truncated small file, a deleted one.
        let lfs = cache.layout().blob(&files[1].etag);
        let mut data = fs::read(&lfs).unwrap();
        data[1234] ^= 1;
        fs::write(&lfs, &data).unwrap();
        fs::write(cache.layout().blob(&files[0].etag), b"{").unwrap();
        fs::remove_file(cache.layout().blob(&files[2].etag)).unwrap();

        let check = check_snapshot(&cache, RepoKind::Model, &id, &commit);
        let problems: Vec<(&str, &Problem)> = check
            .damage
            .iter()
            .map(|d| (d.path.as_str(), &d.problem))
            .collect();
        assert_eq!(problems.len(), 3, "{problems:?}");
        assert_eq!(
            problems[0],
            (
                "config.json",
                &Problem::WrongSize {
                    expected: 3,
                    found: 1
                }
            )
        );
        assert!(matches!(
            problems[1],
            ("model.safetensors", Problem::WrongHash { .. })
        ));
        assert_eq!(problems[2], ("sub/dir/notes.txt", &Problem::Missing));
        assert!(!cache.snapshot_complete(&commit), "a blob is missing");

        tokio::runtime::Runtime::new()
            .unwrap()
            .block_on(quarantine(&cache, &check))
            .unwrap();
        assert!(!lfs.exists(), "the damaged blob is gone");
        assert!(!cache.snapshot_complete(&commit), "so a pull refetches it");
        let again = check_snapshot(&cache, RepoKind::Model, &id, &commit);
        assert!(again.damage.iter().all(|d| d.problem == Problem::Missing));
    }

    #[test]
    fn without_a_tree_file_the_links_say_what_to_check() {
        let dir = tempfile::tempdir().unwrap();
        let (cache, id, commit, files) = tree(dir.path());
        fs::remove_file(cache.layout().tree_file(&commit)).unwrap();
        let check = check_snapshot(&cache, RepoKind::Model, &id, &commit);
        assert_eq!(check.files, 3);
        assert!(check.damage.is_empty());
        fs::write(cache.layout().blob(&files[2].etag), b"HELLO\n").unwrap();
        let check = check_snapshot(&cache, RepoKind::Model, &id, &commit);
        assert_eq!(check.damage.len(), 1);
        assert_eq!(check.damage[0].path, "sub/dir/notes.txt");
    }
}
