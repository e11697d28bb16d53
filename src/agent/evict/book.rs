//! What the eviction policy remembers across restarts, in the agent's state directory:
//! `usage.json` (when each snapshot was last pulled or asked for through this agent) and
//! `pins.json` (the pinned snapshots). Both are rewritten whole and atomically on each change.
//!
//! A damaged `usage.json` only costs the history (snapshot directories' mtimes stand in); a
//! damaged `pins.json` stops the agent at start, since ignoring it could evict a pinned snapshot.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::cache::fsutil;
use crate::mesh::local::SnapshotId;
use crate::repo::{CommitId, RepoId, RepoKind};

/// Version of both files' format.
const FORMAT_VERSION: u32 = 1;

/// A snapshot and a time, as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Entry {
    kind: RepoKind,
    repo: RepoId,
    commit: CommitId,
    /// Milliseconds since the Unix epoch.
    at_ms: u64,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct File {
    version: u32,
    snapshots: Vec<Entry>,
}

/// A state file that could not be read or written.
#[derive(Debug, thiserror::Error)]
#[error("cannot use {}: {source}", path.display())]
pub struct BookError {
    /// The file.
    pub path: PathBuf,
    /// What went wrong.
    pub source: io::Error,
}

/// Last-used times and pins, persisted.
#[derive(Debug)]
pub struct Book {
    state_dir: PathBuf,
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    used: BTreeMap<SnapshotId, u64>,
    pinned: BTreeMap<SnapshotId, u64>,
}

impl Book {
    /// Loads both files from `state_dir` (absent files are empty).
    pub fn open(state_dir: &Path) -> Result<Book, BookError> {
        let book = Book {
            state_dir: state_dir.to_path_buf(),
            inner: Mutex::new(Inner::default()),
        };
        let used = match load(&book.usage_path()) {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(error = %e, "last-used times lost; snapshot mtimes stand in");
                BTreeMap::new()
            }
        };
        let pinned = load(&book.pins_path())?;
        *book.lock() = Inner { used, pinned };
        Ok(book)
    }

    fn usage_path(&self) -> PathBuf {
        self.state_dir.join("usage.json")
    }

    fn pins_path(&self) -> PathBuf {
        self.state_dir.join("pins.json")
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records that `id` was used at `at_ms` (milliseconds since the Unix epoch), and saves.
    pub fn touch(&self, id: &SnapshotId, at_ms: u64) -> Result<(), BookError> {
        let mut inner = self.lock();
        inner.used.insert(id.clone(), at_ms);
        save(&self.state_dir, &self.usage_path(), &inner.used)
    }

    /// When `id` was last used through this agent, if it was.
    pub fn last_used(&self, id: &SnapshotId) -> Option<u64> {
        self.lock().used.get(id).copied()
    }

    /// Pins or unpins `id`, and saves; returns whether that changed anything.
    pub fn set_pinned(&self, id: &SnapshotId, pinned: bool) -> Result<bool, BookError> {
        let mut inner = self.lock();
        let changed = if pinned {
            inner.pinned.insert(id.clone(), now_ms()).is_none()
        } else {
            inner.pinned.remove(id).is_some()
        };
        if changed {
            save(&self.state_dir, &self.pins_path(), &inner.pinned)?;
        }
        Ok(changed)
    }

    /// Whether `id` is pinned.
    pub fn is_pinned(&self, id: &SnapshotId) -> bool {
        self.lock().pinned.contains_key(id)
    }

    /// Drops the last-used time of a snapshot that left the cache, and saves.
    pub fn forget(&self, id: &SnapshotId) -> Result<(), BookError> {
        let mut inner = self.lock();
        if inner.used.remove(id).is_some() {
            save(&self.state_dir, &self.usage_path(), &inner.used)?;
        }
        Ok(())
    }
}

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn load(path: &Path) -> Result<BTreeMap<SnapshotId, u64>, BookError> {
    let err = |source| BookError {
        path: path.to_path_buf(),
        source,
    };
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(BTreeMap::new()),
        Err(e) => return Err(err(e)),
    };
    let file: File = serde_json::from_slice(&bytes)
        .map_err(|e| err(io::Error::new(io::ErrorKind::InvalidData, e)))?;
    if file.version != FORMAT_VERSION {
        return Err(err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("format version {} is not {FORMAT_VERSION}", file.version),
        )));
    }
    Ok(file
        .snapshots
        .into_iter()
        .map(|e| ((e.kind, e.repo, e.commit), e.at_ms))
        .collect())
}

fn save(state_dir: &Path, path: &Path, map: &BTreeMap<SnapshotId, u64>) -> Result<(), BookError> {
    let file = File {
        version: FORMAT_VERSION,
        snapshots: map
            .iter()
            .map(|((kind, repo, commit), at)| Entry {
                kind: *kind,
                repo: repo.clone(),
                commit: commit.clone(),
                at_ms: *at,
            })
            .collect(),
    };
    let bytes = serde_json::to_vec_pretty(&file).map_err(io::Error::other);
    bytes
        .and_then(|b| fsutil::write_atomic(&state_dir.join("tmp"), path, &b))
        .map_err(|source| BookError {
            path: path.to_path_buf(),
            source,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: char) -> SnapshotId {
        (
            RepoKind::Dataset,
            RepoId::parse("acme/d").unwrap(),
            CommitId::parse(&n.to_string().repeat(40)).unwrap(),
        )
    }

    #[test]
    fn times_and_pins_survive_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let book = Book::open(dir.path()).unwrap();
        assert_eq!(book.last_used(&id('1')), None);
        book.touch(&id('1'), 10).unwrap();
        book.touch(&id('2'), 20).unwrap();
        book.touch(&id('1'), 30).unwrap();
        assert!(book.set_pinned(&id('2'), true).unwrap());
        assert!(!book.set_pinned(&id('2'), true).unwrap(), "already pinned");
        assert!(book.set_pinned(&id('3'), true).unwrap());
        assert!(book.set_pinned(&id('3'), false).unwrap());
        assert!(!book.set_pinned(&id('3'), false).unwrap(), "not pinned");
        book.forget(&id('2')).unwrap();

        let again = Book::open(dir.path()).unwrap();
        assert_eq!(again.last_used(&id('1')), Some(30));
        assert_eq!(again.last_used(&id('2')), None);
        assert!(again.is_pinned(&id('2')));
        assert!(!again.is_pinned(&id('3')));
        let text = std::fs::read_to_string(dir.path().join("pins.json")).unwrap();
        assert!(text.contains("\"repo\": \"acme/d\""), "{text}");
        assert!(text.contains("\"kind\": \"dataset\""), "{text}");
    }

    #[test]
    fn damaged_usage_is_forgotten_but_damaged_pins_stop_the_agent() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("usage.json"), b"{not json").unwrap();
        let book = Book::open(dir.path()).unwrap();
        assert_eq!(book.last_used(&id('1')), None);
        std::fs::write(
            dir.path().join("pins.json"),
            b"{\"version\": 9, \"snapshots\": []}",
        )
        .unwrap();
        let err = Book::open(dir.path()).unwrap_err();
        assert!(err.to_string().contains("pins.json"), "{err}");
        assert!(err.to_string().contains("format version 9"), "{err}");
    }
}
