//! Where things live in the Hugging Face cache tree, and where the cache tree itself is.
//!
//! ```text
//! <cache>/CACHEDIR.TAG
//! <cache>/.locks/<repo folder>/<etag>.lock
//! <cache>/<kind>s--<org>--<name>/blobs/<etag>
//! <cache>/<kind>s--<org>--<name>/snapshots/<commit>/<path>   -> ../../blobs/<etag> (relative)
//! <cache>/<kind>s--<org>--<name>/refs/<revision>             (40 hex, no newline)
//! <cache>/<kind>s--<org>--<name>/trees/<commit>.json
//! <cache>/<kind>s--<org>--<name>/.hfmesh/{partial,tmp}/       (hfmesh's work area)
//! ```
//!
//! The work area sits inside the repo folder so that renames into `blobs/`, `snapshots/` and
//! `refs/` stay on one file system, and so that `scan_cache_dir()` (which only reads
//! `snapshots/` and `refs/` of a repo folder) never sees it.

use std::path::{Path, PathBuf};

use crate::etag::Etag;
use crate::repo::{CommitId, RepoId, RepoKind, RepoPath, Revision};

/// Name of hfmesh's work area inside a repo folder.
pub const WORK_DIR: &str = ".hfmesh";

/// Where the cache tree is: `flag`, else `HF_HUB_CACHE`, else `HUGGINGFACE_HUB_CACHE`, else
/// `HF_HOME/hub`, else `XDG_CACHE_HOME/huggingface/hub`, else `~/.cache/huggingface/hub`.
///
/// `env` looks up an environment variable (a parameter so tests need not touch the process
/// environment). A leading `~` is expanded, as `huggingface_hub` does.
pub fn resolve_cache_dir(flag: Option<&Path>, env: &dyn Fn(&str) -> Option<String>) -> PathBuf {
    if let Some(p) = flag {
        return p.to_path_buf();
    }
    let var = |name: &str| {
        env(name)
            .filter(|v| !v.is_empty())
            .map(|v| expand_home(&v, env))
    };
    if let Some(p) = var("HF_HUB_CACHE").or_else(|| var("HUGGINGFACE_HUB_CACHE")) {
        return p;
    }
    hf_home(env).join("hub")
}

/// `HF_HOME`, else `XDG_CACHE_HOME/huggingface`, else `~/.cache/huggingface`.
pub fn hf_home(env: &dyn Fn(&str) -> Option<String>) -> PathBuf {
    let var = |name: &str| {
        env(name)
            .filter(|v| !v.is_empty())
            .map(|v| expand_home(&v, env))
    };
    if let Some(p) = var("HF_HOME") {
        return p;
    }
    if let Some(p) = var("XDG_CACHE_HOME") {
        return p.join("huggingface");
    }
    expand_home("~/.cache/huggingface", env)
}

fn expand_home(p: &str, env: &dyn Fn(&str) -> Option<String>) -> PathBuf {
    match p.strip_prefix('~') {
        Some(rest) if rest.is_empty() || rest.starts_with('/') => {
            let home = env("HOME").unwrap_or_else(|| "/".to_string());
            PathBuf::from(format!("{home}{rest}"))
        }
        _ => PathBuf::from(p),
    }
}

/// Paths of one repository's folder in the cache tree.
#[derive(Debug, Clone)]
pub struct RepoLayout {
    root: PathBuf,
    folder: String,
}

impl RepoLayout {
    /// The layout of `id` (of `kind`) under the cache root `root`.
    pub fn new(root: &Path, kind: RepoKind, id: &RepoId) -> Self {
        RepoLayout {
            root: root.to_path_buf(),
            folder: id.folder_name(kind),
        }
    }

    /// The cache root.
    pub fn cache_root(&self) -> &Path {
        &self.root
    }

    /// `models--org--name`.
    pub fn folder_name(&self) -> &str {
        &self.folder
    }

    /// `<cache>/models--org--name`.
    pub fn repo_dir(&self) -> PathBuf {
        self.root.join(&self.folder)
    }

    /// `<repo>/blobs`.
    pub fn blobs_dir(&self) -> PathBuf {
        self.repo_dir().join("blobs")
    }

    /// `<repo>/blobs/<etag>`.
    pub fn blob(&self, etag: &Etag) -> PathBuf {
        self.blobs_dir().join(etag.as_str())
    }

    /// `<repo>/snapshots/<commit>`.
    pub fn snapshot_dir(&self, commit: &CommitId) -> PathBuf {
        self.repo_dir().join("snapshots").join(commit.as_str())
    }

    /// `<repo>/snapshots/<commit>/<path>`.
    pub fn snapshot_file(&self, commit: &CommitId, path: &RepoPath) -> PathBuf {
        self.snapshot_dir(commit).join(path.as_str())
    }

    /// `<repo>/refs/<revision>` (a revision with `/` is a nested path).
    pub fn ref_file(&self, revision: &Revision) -> PathBuf {
        self.repo_dir().join("refs").join(revision.as_str())
    }

    /// `<repo>/trees/<commit>.json`.
    pub fn tree_file(&self, commit: &CommitId) -> PathBuf {
        self.repo_dir().join("trees").join(format!("{commit}.json"))
    }

    /// `<cache>/.locks/<repo folder>/<etag>.lock`, the lock `huggingface_hub` takes per blob.
    pub fn blob_lock(&self, etag: &Etag) -> PathBuf {
        self.root
            .join(".locks")
            .join(&self.folder)
            .join(format!("{etag}.lock"))
    }

    /// `<repo>/.hfmesh`: hfmesh's work area.
    pub fn work_dir(&self) -> PathBuf {
        self.repo_dir().join(WORK_DIR)
    }

    /// `<repo>/.hfmesh/partial`: blobs being downloaded, with their progress records.
    pub fn partial_dir(&self) -> PathBuf {
        self.work_dir().join("partial")
    }

    /// `<repo>/.hfmesh/tmp`: staging for atomic writes of refs, trees and snapshots.
    pub fn tmp_dir(&self) -> PathBuf {
        self.work_dir().join("tmp")
    }
}

/// The relative symlink target from `snapshots/<commit>/<path>` to `blobs/<etag>`:
/// `../` repeated depth + 2 times, then `blobs/<etag>` (what `huggingface_hub` writes).
pub fn symlink_target(path: &RepoPath, etag: &Etag) -> PathBuf {
    let mut s = "../".repeat(path.depth() + 2);
    s.push_str("blobs/");
    s.push_str(etag.as_str());
    PathBuf::from(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn cache_dir_precedence() {
        let flag = Path::new("/flag");
        let all = env_of(&[
            ("HF_HUB_CACHE", "/hubcache"),
            ("HF_HOME", "/hfhome"),
            ("HOME", "/home/u"),
        ]);
        assert_eq!(resolve_cache_dir(Some(flag), &all), PathBuf::from("/flag"));
        assert_eq!(resolve_cache_dir(None, &all), PathBuf::from("/hubcache"));
        let home = env_of(&[("HF_HOME", "~/hf"), ("HOME", "/home/u")]);
        assert_eq!(
            resolve_cache_dir(None, &home),
            PathBuf::from("/home/u/hf/hub")
        );
        let xdg = env_of(&[("XDG_CACHE_HOME", "/xdg"), ("HOME", "/home/u")]);
        assert_eq!(
            resolve_cache_dir(None, &xdg),
            PathBuf::from("/xdg/huggingface/hub")
        );
        let bare = env_of(&[("HOME", "/home/u"), ("HF_HUB_CACHE", "")]);
        assert_eq!(
            resolve_cache_dir(None, &bare),
            PathBuf::from("/home/u/.cache/huggingface/hub")
        );
    }

    #[test]
    fn symlink_targets_match_huggingface_hub() {
        let etag = Etag::parse("cb5b2f69babc53f9145b45ad20b9a075d48717ef").unwrap();
        let t = |p: &str| symlink_target(&RepoPath::parse(p).unwrap(), &etag);
        assert_eq!(
            t("config.json"),
            PathBuf::from(format!("../../blobs/{etag}"))
        );
        assert_eq!(
            t("data/train.csv"),
            PathBuf::from(format!("../../../blobs/{etag}"))
        );
        assert_eq!(
            t("a/b/c.json"),
            PathBuf::from(format!("../../../../blobs/{etag}"))
        );
    }

    #[test]
    fn layout_paths() {
        let id = RepoId::parse("acme/example").unwrap();
        let l = RepoLayout::new(Path::new("/c"), RepoKind::Dataset, &id);
        let etag = Etag::parse("cb5b2f69babc53f9145b45ad20b9a075d48717ef").unwrap();
        assert_eq!(
            l.blob_lock(&etag),
            PathBuf::from(format!("/c/.locks/datasets--acme--example/{etag}.lock"))
        );
        let rev = Revision::parse("refs/pr/1").unwrap();
        assert_eq!(
            l.ref_file(&rev),
            PathBuf::from("/c/datasets--acme--example/refs/refs/pr/1")
        );
    }
}
