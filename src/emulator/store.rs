//! The repositories the emulator serves: branches, tags, files, their hashes and commit ids.
//!
//! A [`Store`] is built once from [`RepoSpec`]s (from a root directory or the embedded demo) and
//! is immutable afterwards, except for the memoized hashes of synthetic files, which are
//! computed the first time a route needs them.

use std::collections::{BTreeMap, HashMap};
use std::io::{self, Read as _};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures_util::StreamExt as _;
use sha1::Digest as _;

use super::synthetic;
use crate::etag::{git_blob_id, lfs_pointer, Etag, EtagHasher, EtagKind};
use crate::repo::{CommitId, RepoId, RepoKind, RepoPath, Revision};

/// Files at least this large are LFS files whatever their name.
pub(crate) const LFS_SIZE_THRESHOLD: u64 = 10 * 1024 * 1024;

/// Extensions that the Hub's default `.gitattributes` stores in LFS (case-sensitive, as in git).
pub(crate) const LFS_EXTENSIONS: &[&str] = &[
    "7z",
    "arrow",
    "bin",
    "bz2",
    "ckpt",
    "ftz",
    "gguf",
    "gz",
    "h5",
    "joblib",
    "lz4",
    "mlmodel",
    "model",
    "msgpack",
    "npy",
    "npz",
    "onnx",
    "ot",
    "parquet",
    "pb",
    "pickle",
    "pkl",
    "pt",
    "pth",
    "rar",
    "safetensors",
    "tar",
    "tflite",
    "tgz",
    "wasm",
    "xz",
    "zip",
    "zst",
];

/// How many files are hashed at the same time.
const HASH_PARALLELISM: usize = 4;
/// Read buffer for hashing.
const HASH_BUF: usize = 1 << 20;

/// Whether a file of this path and size is stored in LFS on the Hub. Empty files never are.
pub(crate) fn is_lfs(path: &str, size: u64) -> bool {
    if size == 0 {
        return false;
    }
    if size >= LFS_SIZE_THRESHOLD {
        return true;
    }
    let name = path.rsplit('/').next().unwrap_or(path);
    name.rsplit_once('.')
        .is_some_and(|(_, ext)| LFS_EXTENSIONS.contains(&ext))
}

/// Who may download a repository's files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Gated {
    /// Anyone with read access.
    No,
    /// Gated with automatic approval (`"auto"`): only tokens in `tokens`.
    Auto,
    /// Gated with manual approval (`"manual"`): only tokens in `tokens`.
    Manual,
}

impl Gated {
    /// The value of `gated` in repo info JSON.
    pub(crate) fn json(self) -> serde_json::Value {
        match self {
            Gated::No => serde_json::Value::Bool(false),
            Gated::Auto => "auto".into(),
            Gated::Manual => "manual".into(),
        }
    }
}

/// Where a file's bytes come from.
#[derive(Debug, Clone)]
pub(crate) enum Source {
    /// A file under the root directory (already checked to stay under it).
    Disk(PathBuf),
    /// Bytes held in memory (the embedded demo).
    Memory(Bytes),
    /// Seeded synthetic content ([`synthetic`]).
    Synthetic { seed: u64 },
}

/// A file as declared, before hashing.
#[derive(Debug, Clone)]
pub(crate) struct FileSpec {
    pub path: RepoPath,
    pub size: u64,
    pub source: Source,
    /// A pinned SHA-256 (synthetic files only), so the content need not be hashed.
    pub sha256: Option<Etag>,
}

/// A branch as declared.
#[derive(Debug, Clone)]
pub(crate) struct BranchSpec {
    pub name: Revision,
    pub tags: Vec<Revision>,
    pub files: Vec<FileSpec>,
}

/// A repository as declared.
#[derive(Debug, Clone)]
pub(crate) struct RepoSpec {
    pub kind: RepoKind,
    pub id: RepoId,
    pub gated: Gated,
    pub private: bool,
    pub tokens: Vec<String>,
    pub branches: Vec<BranchSpec>,
}

/// The hashes that name a file on the Hub.
#[derive(Debug, Clone)]
pub(crate) struct Hashes {
    /// Git blob id: of the content, or of the LFS pointer for LFS files.
    pub oid: Etag,
    /// SHA-256 of the content, for LFS files only.
    pub sha256: Option<Etag>,
}

/// One served file.
#[derive(Debug)]
pub(crate) struct FileData {
    pub path: RepoPath,
    pub size: u64,
    pub lfs: bool,
    pub source: Source,
    hashes: tokio::sync::OnceCell<Hashes>,
}

impl FileData {
    /// Length of the LFS pointer text for this file with content hash `sha256`.
    pub(crate) fn pointer_size(&self, sha256: &Etag) -> u64 {
        lfs_pointer(sha256, self.size).len() as u64
    }

    /// The stand-in for the oid in the commit id: synthetic content is named by its seed so that
    /// commit ids never need the content hashed.
    fn commit_oid(&self) -> String {
        match (&self.source, self.hashes.get()) {
            (Source::Synthetic { seed }, _) => format!("synthetic:{seed}"),
            (_, Some(h)) => h.oid.to_string(),
            (_, None) => String::new(),
        }
    }

    /// Hashes the content (blocking; call from `spawn_blocking`).
    fn compute_hashes(&self) -> io::Result<Hashes> {
        let kind = if self.lfs {
            EtagKind::Sha256
        } else {
            EtagKind::GitSha1
        };
        let mut hasher = EtagHasher::new(kind, self.size);
        match &self.source {
            Source::Memory(bytes) => hasher.update(bytes),
            Source::Disk(path) => {
                let file = std::fs::File::open(path)?;
                let mut reader = file.take(self.size + 1);
                let mut buf = vec![0; HASH_BUF];
                let mut total = 0u64;
                loop {
                    let n = reader.read(&mut buf)?;
                    if n == 0 {
                        break;
                    }
                    hasher.update(&buf[..n]);
                    total += n as u64;
                }
                if total != self.size {
                    return Err(io::Error::other(format!(
                        "{} changed size while being hashed",
                        path.display()
                    )));
                }
            }
            Source::Synthetic { seed } => {
                let mut buf = vec![0; HASH_BUF];
                let mut offset = 0u64;
                while offset < self.size {
                    let n = (self.size - offset).min(HASH_BUF as u64) as usize;
                    synthetic::fill(*seed, offset, &mut buf[..n]);
                    hasher.update(&buf[..n]);
                    offset += n as u64;
                }
            }
        }
        Ok(self.hashes_from(hasher.finish()))
    }

    fn hashes_from(&self, etag: Etag) -> Hashes {
        if self.lfs {
            let oid = git_blob_id(lfs_pointer(&etag, self.size).as_bytes());
            Hashes {
                oid,
                sha256: Some(etag),
            }
        } else {
            Hashes {
                oid: etag,
                sha256: None,
            }
        }
    }
}

/// An entry of a branch's tree.
#[derive(Debug, Clone)]
pub(crate) enum Entry {
    /// A directory, with a deterministic 40-hex oid.
    Dir { oid: String },
    /// A file.
    File(Arc<FileData>),
}

/// One branch: its commit and every file and directory, keyed by full path.
#[derive(Debug)]
pub(crate) struct Branch {
    pub commit: CommitId,
    pub entries: BTreeMap<String, Entry>,
}

impl Branch {
    /// The file at `path`, if any.
    pub(crate) fn file(&self, path: &RepoPath) -> Option<&Arc<FileData>> {
        match self.entries.get(path.as_str()) {
            Some(Entry::File(f)) => Some(f),
            _ => None,
        }
    }

    /// Every file, sorted by path.
    pub(crate) fn files(&self) -> impl Iterator<Item = &Arc<FileData>> {
        self.entries.values().filter_map(|e| match e {
            Entry::File(f) => Some(f),
            Entry::Dir { .. } => None,
        })
    }

    /// The entries below `dir` (the root if `None`), sorted by path: only direct children
    /// unless `recursive`. `None` when `dir` is not a directory of this branch.
    pub(crate) fn list(
        &self,
        dir: Option<&RepoPath>,
        recursive: bool,
    ) -> Option<Vec<(&str, &Entry)>> {
        let prefix = match dir {
            Some(d) => match self.entries.get(d.as_str()) {
                Some(Entry::Dir { .. }) => format!("{d}/"),
                _ => return None,
            },
            None => String::new(),
        };
        let found = self
            .entries
            .range::<str, _>((
                std::ops::Bound::Included(prefix.as_str()),
                std::ops::Bound::Unbounded,
            ))
            .take_while(|(p, _)| p.starts_with(&prefix))
            .filter(|(p, _)| recursive || !p[prefix.len()..].contains('/'))
            .map(|(p, e)| (p.as_str(), e))
            .collect();
        Some(found)
    }
}

/// One repository.
#[derive(Debug)]
pub(crate) struct Repo {
    pub kind: RepoKind,
    pub id: RepoId,
    pub gated: Gated,
    pub private: bool,
    pub tokens: Vec<String>,
    branches: BTreeMap<String, Arc<Branch>>,
    tags: BTreeMap<String, String>,
    by_commit: HashMap<String, String>,
}

impl Repo {
    /// The branch a revision names: a branch, a tag, or the full commit id of a branch.
    pub(crate) fn resolve(&self, rev: &str) -> Option<&Arc<Branch>> {
        let name = self
            .tags
            .get(rev)
            .or_else(|| self.by_commit.get(rev))
            .map(String::as_str)
            .unwrap_or(rev);
        self.branches.get(name)
    }

    fn token_allowed(&self, token: Option<&str>) -> bool {
        token.is_some_and(|t| self.tokens.iter().any(|allowed| allowed == t))
    }

    /// Whether metadata (info, tree) is visible with this token.
    pub(crate) fn may_read(&self, token: Option<&str>) -> bool {
        !self.private || self.token_allowed(token)
    }

    /// Whether file content may be downloaded with this token.
    pub(crate) fn may_download(&self, token: Option<&str>) -> bool {
        self.may_read(token) && (self.gated == Gated::No || self.token_allowed(token))
    }
}

/// A declaration that cannot be served.
#[derive(Debug, thiserror::Error)]
pub(crate) enum BuildError {
    #[error("{kind} {id} is declared twice")]
    DuplicateRepo { kind: RepoKind, id: RepoId },
    #[error("{kind} {id}: branch `{branch}` is declared twice")]
    DuplicateBranch {
        kind: RepoKind,
        id: RepoId,
        branch: String,
    },
    #[error("{kind} {id}: tag `{tag}` is also a branch or another tag")]
    DuplicateTag {
        kind: RepoKind,
        id: RepoId,
        tag: String,
    },
    #[error("{kind} {id}: `{path}` is both a file and a directory")]
    FileIsDir {
        kind: RepoKind,
        id: RepoId,
        path: String,
    },
    #[error("hashing {path}: {source}")]
    Hash { path: String, source: io::Error },
}

/// Every repository, plus the CDN index from SHA-256 to content.
#[derive(Debug)]
pub(crate) struct Store {
    repos: HashMap<(RepoKind, RepoId), Arc<Repo>>,
    /// LFS content by SHA-256, filled as hashes become known.
    cdn: Mutex<HashMap<String, Arc<FileData>>>,
    /// Files whose hashes are computed lazily (synthetic content).
    lazy: Vec<Arc<FileData>>,
}

impl Store {
    /// Builds the store: hashes files on disk and in memory (in parallel), computes commit ids.
    pub(crate) async fn build(specs: Vec<RepoSpec>) -> Result<Store, BuildError> {
        let mut store = Store {
            repos: HashMap::new(),
            cdn: Mutex::new(HashMap::new()),
            lazy: Vec::new(),
        };
        let mut eager = Vec::new();
        let mut pending = Vec::new();
        for mut spec in specs {
            let mut branches = Vec::new();
            for b in std::mem::take(&mut spec.branches) {
                let mut files = BTreeMap::new();
                for f in b.files {
                    let data = Arc::new(FileData {
                        lfs: is_lfs(f.path.as_str(), f.size),
                        size: f.size,
                        source: f.source,
                        path: f.path.clone(),
                        hashes: tokio::sync::OnceCell::new(),
                    });
                    match (&data.source, f.sha256) {
                        (Source::Synthetic { .. }, Some(sha)) if data.lfs => {
                            let _ = data.hashes.set(data.hashes_from(sha));
                        }
                        (Source::Synthetic { .. }, _) => store.lazy.push(data.clone()),
                        _ => eager.push(data.clone()),
                    }
                    files.insert(f.path.as_str().to_string(), data);
                }
                branches.push(PendingBranch {
                    name: b.name,
                    tags: b.tags,
                    files,
                });
            }
            pending.push((spec, branches));
        }
        let results: Vec<_> = futures_util::stream::iter(eager)
            .map(|f| async move {
                let g = f.clone();
                let r = tokio::task::spawn_blocking(move || g.compute_hashes()).await;
                (f, r.unwrap_or_else(|e| Err(io::Error::other(e))))
            })
            .buffer_unordered(HASH_PARALLELISM)
            .collect()
            .await;
        for (f, r) in results {
            let h = r.map_err(|source| BuildError::Hash {
                path: f.path.to_string(),
                source,
            })?;
            let _ = f.hashes.set(h);
        }
        for (spec, branches) in pending {
            for f in branches.iter().flat_map(|b| b.files.values()) {
                store.index(f);
            }
            let (kind, id) = (spec.kind, spec.id.clone());
            let repo = build_repo(spec, branches)?;
            if store
                .repos
                .insert((kind, id.clone()), Arc::new(repo))
                .is_some()
            {
                return Err(BuildError::DuplicateRepo { kind, id });
            }
        }
        Ok(store)
    }

    /// The repository `id` of `kind`.
    pub(crate) fn repo(&self, kind: RepoKind, id: &RepoId) -> Option<&Arc<Repo>> {
        self.repos.get(&(kind, id.clone()))
    }

    /// Whether a repository of that kind and id (not yet validated) exists.
    pub(crate) fn has(&self, kind: RepoKind, id: &str) -> bool {
        RepoId::parse(id).is_ok_and(|id| self.repos.contains_key(&(kind, id)))
    }

    /// Every repository id, sorted (for logs and the CLI banner).
    pub(crate) fn summary(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .repos
            .values()
            .map(|r| format!("{} {}", r.kind, r.id))
            .collect();
        v.sort();
        v
    }

    fn index(&self, f: &Arc<FileData>) {
        if let Some(sha) = f.hashes.get().and_then(|h| h.sha256.as_ref()) {
            if let Ok(mut cdn) = self.cdn.lock() {
                cdn.entry(sha.to_string()).or_insert_with(|| f.clone());
            }
        }
    }

    /// The hashes of a file, computing them on first use (on a blocking thread).
    pub(crate) async fn hashes<'a>(&self, f: &'a Arc<FileData>) -> io::Result<&'a Hashes> {
        ensure_hashed(f.clone()).await?;
        self.index(f);
        f.hashes
            .get()
            .ok_or_else(|| io::Error::other("hash not computed"))
    }

    /// The hashes of many files, computed in parallel; in the same order as `files`.
    pub(crate) async fn hashes_many<'a>(
        &self,
        files: &[&'a Arc<FileData>],
    ) -> io::Result<Vec<&'a Hashes>> {
        let pending: Vec<Arc<FileData>> = files
            .iter()
            .filter(|f| f.hashes.get().is_none())
            .map(|f| (*f).clone())
            .collect();
        let results: Vec<io::Result<()>> = futures_util::stream::iter(pending)
            .map(ensure_hashed)
            .buffer_unordered(HASH_PARALLELISM)
            .collect()
            .await;
        results.into_iter().collect::<io::Result<()>>()?;
        files
            .iter()
            .map(|f| {
                self.index(f);
                f.hashes
                    .get()
                    .ok_or_else(|| io::Error::other("hash not computed"))
            })
            .collect()
    }

    /// The LFS file whose content has this SHA-256. Hashes every lazy file on a miss, so a CDN
    /// URL works even before any listing named it.
    pub(crate) async fn by_sha256(&self, sha: &str) -> Option<Arc<FileData>> {
        let lookup = || self.cdn.lock().ok().and_then(|cdn| cdn.get(sha).cloned());
        if let Some(f) = lookup() {
            return Some(f);
        }
        let pending: Vec<&Arc<FileData>> = self
            .lazy
            .iter()
            .filter(|f| f.lfs && f.hashes.get().is_none())
            .collect();
        if pending.is_empty() {
            return None;
        }
        self.hashes_many(&pending).await.ok()?;
        lookup()
    }
}

/// Computes and memoizes a file's hashes (once, even when asked concurrently).
async fn ensure_hashed(f: Arc<FileData>) -> io::Result<()> {
    f.hashes
        .get_or_try_init(|| {
            let g = f.clone();
            async move {
                tokio::task::spawn_blocking(move || g.compute_hashes())
                    .await
                    .map_err(io::Error::other)?
            }
        })
        .await?;
    Ok(())
}

/// A branch whose files exist but whose commit id waits for their hashes.
struct PendingBranch {
    name: Revision,
    tags: Vec<Revision>,
    files: BTreeMap<String, Arc<FileData>>,
}

/// Builds a repo (directory entries, commit ids, tags) from its spec (whose `branches` are
/// already taken) and its hashed branches.
fn build_repo(spec: RepoSpec, branches: Vec<PendingBranch>) -> Result<Repo, BuildError> {
    let kind = spec.kind;
    let mut repo = Repo {
        kind,
        id: spec.id,
        gated: spec.gated,
        private: spec.private,
        tokens: spec.tokens,
        branches: BTreeMap::new(),
        tags: BTreeMap::new(),
        by_commit: HashMap::new(),
    };
    let mut all_tags = Vec::new();
    for PendingBranch { name, tags, files } in branches {
        let commit = commit_id(kind, &repo.id, &name, &files);
        let mut entries = BTreeMap::new();
        for (path, f) in files {
            // Files come in path order, so a file `a` is in `entries` before any `a/...` needs
            // the directory `a`.
            let mut dir = path.as_str();
            while let Some((parent, _)) = dir.rsplit_once('/') {
                let entry = entries
                    .entry(parent.to_string())
                    .or_insert_with(|| Entry::Dir {
                        oid: dir_oid(&commit, parent),
                    });
                if let Entry::File(_) = entry {
                    return Err(BuildError::FileIsDir {
                        kind,
                        id: repo.id.clone(),
                        path: parent.to_string(),
                    });
                }
                dir = parent;
            }
            entries.insert(path, Entry::File(f));
        }
        repo.by_commit.insert(commit.to_string(), name.to_string());
        all_tags.extend(tags.into_iter().map(|t| (t, name.to_string())));
        let branch = Branch { commit, entries };
        if repo
            .branches
            .insert(name.to_string(), Arc::new(branch))
            .is_some()
        {
            return Err(BuildError::DuplicateBranch {
                kind,
                id: repo.id.clone(),
                branch: name.to_string(),
            });
        }
    }
    for (tag, branch) in all_tags {
        if repo.branches.contains_key(tag.as_str())
            || repo.tags.insert(tag.to_string(), branch).is_some()
        {
            return Err(BuildError::DuplicateTag {
                kind,
                id: repo.id.clone(),
                tag: tag.to_string(),
            });
        }
    }
    Ok(repo)
}

/// The commit id of a branch: SHA-1 over a canonical encoding of the kind, the repo id, the
/// branch name and the sorted `(path, oid, size)` list (a synthetic file's oid is
/// `synthetic:<seed>`). Stable across restarts; changes whenever any of them changes.
fn commit_id(
    kind: RepoKind,
    id: &RepoId,
    branch: &Revision,
    files: &BTreeMap<String, Arc<FileData>>,
) -> CommitId {
    let mut h = sha1::Sha1::new();
    h.update(format!(
        "hfmesh-emulator-commit-v1\0{kind}\0{id}\0{branch}\0{}\n",
        files.len()
    ));
    for (path, f) in files {
        h.update(format!("{path}\0{}\0{}\n", f.commit_oid(), f.size));
    }
    CommitId::parse(&hex::encode(h.finalize())).expect("sha1 hex is a valid commit id")
}

/// A deterministic oid for a directory of a commit.
fn dir_oid(commit: &CommitId, dir: &str) -> String {
    let mut h = sha1::Sha1::new();
    h.update(format!("hfmesh-emulator-tree-v1\0{commit}\0{dir}"));
    hex::encode(h.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mem(path: &str, data: &'static [u8]) -> FileSpec {
        FileSpec {
            path: RepoPath::parse(path).unwrap(),
            size: data.len() as u64,
            source: Source::Memory(Bytes::from_static(data)),
            sha256: None,
        }
    }

    fn spec(files: Vec<FileSpec>) -> RepoSpec {
        RepoSpec {
            kind: RepoKind::Model,
            id: RepoId::parse("acme/x").unwrap(),
            gated: Gated::No,
            private: false,
            tokens: vec![],
            branches: vec![BranchSpec {
                name: Revision::main(),
                tags: vec![Revision::parse("v1").unwrap()],
                files,
            }],
        }
    }

    #[test]
    fn lfs_rule() {
        assert!(is_lfs("model.safetensors", 1));
        assert!(is_lfs("a/b/tokenizer.model", 5));
        assert!(!is_lfs("model.safetensors", 0));
        assert!(!is_lfs("config.json", 10 * 1024 * 1024 - 1));
        assert!(is_lfs("config.json", 10 * 1024 * 1024));
        assert!(!is_lfs("README", 3));
        assert!(!is_lfs("x.SAFETENSORS", 3));
    }

    #[tokio::test]
    async fn builds_tree_commits_and_resolves_revisions() {
        let files = vec![
            mem("config.json", b"{\"a\": 1}\n"),
            mem("a/b/c.txt", b"c"),
            mem("a/d.txt", b"d"),
        ];
        let store = Store::build(vec![spec(files.clone())]).await.unwrap();
        let repo = store
            .repo(RepoKind::Model, &RepoId::parse("acme/x").unwrap())
            .unwrap();
        let main = repo.resolve("main").unwrap();
        assert_eq!(repo.resolve("v1").unwrap().commit, main.commit);
        assert_eq!(
            repo.resolve(main.commit.as_str()).unwrap().commit,
            main.commit
        );
        assert!(repo.resolve("nope").is_none());
        let cfg = main.file(&RepoPath::parse("config.json").unwrap()).unwrap();
        assert_eq!(
            store.hashes(cfg).await.unwrap().oid.as_str(),
            "cb5b2f69babc53f9145b45ad20b9a075d48717ef"
        );
        let root: Vec<&str> = main
            .list(None, false)
            .unwrap()
            .iter()
            .map(|e| e.0)
            .collect();
        assert_eq!(root, ["a", "config.json"]);
        let all: Vec<&str> = main.list(None, true).unwrap().iter().map(|e| e.0).collect();
        assert_eq!(all, ["a", "a/b", "a/b/c.txt", "a/d.txt", "config.json"]);
        let a = RepoPath::parse("a").unwrap();
        let sub: Vec<&str> = main
            .list(Some(&a), false)
            .unwrap()
            .iter()
            .map(|e| e.0)
            .collect();
        assert_eq!(sub, ["a/b", "a/d.txt"]);
        assert!(main
            .list(Some(&RepoPath::parse("config.json").unwrap()), false)
            .is_none());
        // Same content, same commit; different content, different commit.
        let again = Store::build(vec![spec(files)]).await.unwrap();
        let again_main = again
            .repo(RepoKind::Model, &repo.id)
            .unwrap()
            .resolve("main")
            .unwrap()
            .commit
            .clone();
        assert_eq!(again_main, main.commit);
        let other = Store::build(vec![spec(vec![mem("config.json", b"{}")])])
            .await
            .unwrap();
        assert_ne!(
            other
                .repo(RepoKind::Model, &repo.id)
                .unwrap()
                .resolve("main")
                .unwrap()
                .commit,
            main.commit
        );
    }

    #[tokio::test]
    async fn lazy_synthetic_hash_feeds_the_cdn_index() {
        let f = FileSpec {
            path: RepoPath::parse("w.bin").unwrap(),
            size: 1000,
            source: Source::Synthetic { seed: 3 },
            sha256: None,
        };
        let store = Store::build(vec![spec(vec![f])]).await.unwrap();
        let mut data = vec![0; 1000];
        synthetic::fill(3, 0, &mut data);
        let sha = crate::etag::sha256(&data);
        let found = store.by_sha256(sha.as_str()).await.unwrap();
        assert_eq!(found.path.as_str(), "w.bin");
        assert!(store.by_sha256(&"0".repeat(64)).await.is_none());
    }

    #[tokio::test]
    async fn refuses_a_file_that_is_also_a_directory() {
        let err = Store::build(vec![spec(vec![mem("a", b"x"), mem("a/b", b"y")])])
            .await
            .unwrap_err();
        assert!(matches!(err, BuildError::FileIsDir { .. }), "{err}");
    }
}
