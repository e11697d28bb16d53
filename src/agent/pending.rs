//! Pulls asked of the agent and not yet finished, one small file each under
//! `<state>/pending/`, so that an agent stopped or killed mid-pull resumes them when it starts
//! again (the bytes already received are kept in the partial blobs' chunk records).

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::cache::fsutil;
use crate::repo::RepoRef;

/// The pending-pull directory of one agent.
#[derive(Debug, Clone)]
pub struct Pending {
    dir: PathBuf,
}

impl Pending {
    /// The directory `<state_dir>/pending` (created on first use).
    pub fn new(state_dir: &Path) -> Pending {
        Pending {
            dir: state_dir.join("pending"),
        }
    }

    fn file(&self, what: &RepoRef) -> PathBuf {
        let key = format!("{}:{}:{}", what.kind, what.id, what.revision);
        let name = blake3::hash(key.as_bytes()).to_hex();
        self.dir.join(format!("{}.json", &name[..32]))
    }

    /// Records that `what` is being pulled.
    pub fn add(&self, what: &RepoRef) -> io::Result<()> {
        let bytes = serde_json::to_vec(what).map_err(io::Error::other)?;
        fsutil::write_atomic(&self.dir.join("tmp"), &self.file(what), &bytes)
    }

    /// Forgets `what` (its pull ended, well or not).
    pub fn remove(&self, what: &RepoRef) {
        let _ = fs::remove_file(self.file(what));
    }

    /// The pulls left unfinished by an earlier run; unreadable entries are dropped with a warning.
    pub fn list(&self) -> Vec<RepoRef> {
        let Ok(entries) = fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        let mut found = Vec::new();
        for entry in entries.flatten() {
            let path = entry.path();
            if path.extension().is_none_or(|e| e != "json") {
                continue;
            }
            match fs::read(&path)
                .ok()
                .and_then(|b| serde_json::from_slice::<RepoRef>(&b).ok())
            {
                Some(what) => found.push(what),
                None => {
                    tracing::warn!(file = %path.display(), "dropping an unreadable pending pull");
                    let _ = fs::remove_file(&path);
                }
            }
        }
        found.sort_by_key(|w| w.to_string());
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::repo::RepoKind;

    #[test]
    fn pulls_are_remembered_until_removed() {
        let dir = tempfile::tempdir().unwrap();
        let p = Pending::new(dir.path());
        assert!(p.list().is_empty());
        let a = RepoRef::parse("acme/a:main", RepoKind::Model).unwrap();
        let b = RepoRef::parse("acme/a:main", RepoKind::Dataset).unwrap();
        p.add(&a).unwrap();
        p.add(&b).unwrap();
        p.add(&a).unwrap();
        assert_eq!(Pending::new(dir.path()).list().len(), 2, "kinds differ");
        p.remove(&a);
        assert_eq!(p.list(), vec![b]);
        fs::write(dir.path().join("pending/junk.json"), b"{").unwrap();
        assert_eq!(p.list().len(), 1, "junk is dropped");
        assert!(!dir.path().join("pending/junk.json").exists());
    }
}
