//! What this node holds and can serve: complete snapshots (with their signed manifests, kept in
//! the state directory) and blobs, complete or still arriving (with the BLAKE3 hash of each chunk
//! it has). The transfer endpoint serves peers from it; the announce loop mirrors its holdings
//! into the DHT.
//!
//! The bytes themselves are never copied: complete blobs are read from `blobs/<etag>` in the HF
//! cache tree, partial ones from their partial file.

use std::collections::HashMap;
use std::fs;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::Notify;

use crate::cache::{fsutil, RepoCache};
use crate::discovery::ContentKey;
use crate::etag::Etag;
use crate::manifest::{ChunkHash, Manifest, SignedManifest};
use crate::node::NodeId;
use crate::repo::{CommitId, RepoId, RepoKind};
use crate::store::{chunk_count, chunk_range, Bitmap, ChunkBuf, PartialBlob};
use crate::wire::{HeldBlob, HeldSnapshot, Holdings, PeerHint, MAX_PEER_HINTS};

/// How long a peer's question about a blob is remembered.
pub const ASKED_MEMORY: Duration = Duration::from_secs(60);
/// Blobs whose last question is remembered, at most (when full, questions older than
/// [`ASKED_MEMORY`] are forgotten to make room).
const MAX_ASKED: usize = 4096;
/// Recent askers remembered per blob for peer exchange (the most recent ones).
pub(crate) const MAX_ASKERS_PER_BLOB: usize = 64;

/// A snapshot's identity.
pub type SnapshotId = (RepoKind, RepoId, CommitId);

enum Blob {
    Partial(Arc<PartialBlob>),
    Complete {
        path: PathBuf,
        size: u64,
        hashes: Arc<Vec<ChunkHash>>,
    },
}

#[derive(Default)]
struct Inner {
    snapshots: HashMap<SnapshotId, SignedManifest>,
    /// The blobs each snapshot names.
    names: HashMap<SnapshotId, Vec<Etag>>,
    blobs: HashMap<Etag, Blob>,
    /// When a peer last asked which chunks of a blob are here.
    asked: HashMap<Etag, Instant>,
    /// Per blob, the nodes that asked about it lately for peer exchange, most recent first, and
    /// whether they found this node in the DHT's provider list.
    askers: HashMap<Etag, Vec<(PeerHint, Instant, bool)>>,
    /// When this node's announcement of each blob it advertises last ran its course (see
    /// [`LocalStore::announced_at`]); forgotten when the blob is withdrawn.
    announced: HashMap<Etag, Instant>,
}

impl Inner {
    /// Remembers that a peer asked about `etag` at `now` (see [`LocalStore::asked_since`]).
    fn note_asked(&mut self, etag: &Etag, now: Instant) {
        if self.asked.len() >= MAX_ASKED && !self.asked.contains_key(etag) {
            self.asked
                .retain(|_, t| now.duration_since(*t) < ASKED_MEMORY);
        }
        if self.asked.len() < MAX_ASKED || self.asked.contains_key(etag) {
            self.asked.insert(etag.clone(), now);
        }
    }

    /// Which chunks of `etag` are here.
    fn bitmap(&self, etag: &Etag) -> Option<Bitmap> {
        match self.blobs.get(etag)? {
            Blob::Partial(p) => Some(p.bitmap()),
            Blob::Complete { size, .. } => Some(Bitmap::full(chunk_count(*size))),
        }
    }
}

/// This node's holdings.
pub struct LocalStore {
    cache_root: PathBuf,
    state_dir: PathBuf,
    inner: Mutex<Inner>,
    changed: Notify,
}

impl LocalStore {
    /// A store over the cache at `cache_root`, keeping manifests under `state_dir/manifests`.
    /// Snapshots whose manifest is there and whose tree is complete on disk are loaded, so a
    /// restarted node serves what it held.
    pub fn open(cache_root: &Path, state_dir: &Path) -> io::Result<LocalStore> {
        let store = LocalStore {
            cache_root: cache_root.to_path_buf(),
            state_dir: state_dir.to_path_buf(),
            inner: Mutex::new(Inner::default()),
            changed: Notify::new(),
        };
        let dir = store.manifest_dir();
        if let Ok(entries) = fs::read_dir(&dir) {
            for entry in entries.flatten() {
                let Ok(bytes) = fs::read(entry.path()) else {
                    continue;
                };
                let Ok(signed) = postcard::from_bytes::<SignedManifest>(&bytes) else {
                    continue;
                };
                let Ok(m) = postcard::from_bytes::<Manifest>(&signed.body) else {
                    continue;
                };
                let Ok(m) = signed.open((m.kind, &m.repo, &m.commit)) else {
                    continue;
                };
                if RepoCache::new(cache_root, m.kind, &m.repo).snapshot_complete(&m.commit) {
                    store.register_snapshot(&m, signed);
                }
            }
        }
        Ok(store)
    }

    fn manifest_dir(&self) -> PathBuf {
        self.state_dir.join("manifests")
    }

    fn manifest_path(&self, kind: RepoKind, repo: &RepoId, commit: &CommitId) -> PathBuf {
        self.manifest_dir()
            .join(format!("{}--{commit}.manifest", repo.folder_name(kind)))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Wakes when the holdings change (for the announce loop).
    pub fn changed(&self) -> &Notify {
        &self.changed
    }

    /// Everything to advertise: each snapshot held and each blob held or arriving.
    pub fn content_keys(&self) -> Vec<ContentKey> {
        let inner = self.lock();
        let snaps = inner
            .snapshots
            .keys()
            .map(|(kind, repo, commit)| ContentKey::Snapshot {
                kind: *kind,
                repo: repo.clone(),
                commit: commit.clone(),
            });
        let blobs = inner.blobs.keys().map(|e| ContentKey::Blob(e.clone()));
        snaps.chain(blobs).collect()
    }

    /// A blob starts arriving in `partial`: its present chunks can be served from now on.
    pub fn begin_blob(&self, partial: Arc<PartialBlob>) {
        let etag = partial.etag().clone();
        let mut inner = self.lock();
        if !matches!(inner.blobs.get(&etag), Some(Blob::Complete { .. })) {
            inner.blobs.insert(etag, Blob::Partial(partial));
        }
        drop(inner);
        self.changed.notify_one();
    }

    /// A blob is complete in the cache tree at `path` with these chunk hashes.
    pub fn complete_blob(
        &self,
        etag: &Etag,
        path: PathBuf,
        size: u64,
        hashes: Arc<Vec<ChunkHash>>,
    ) {
        self.lock()
            .blobs
            .insert(etag.clone(), Blob::Complete { path, size, hashes });
        self.changed.notify_one();
    }

    /// Persists the chunk record of every blob still arriving, so a stop loses at most the
    /// chunks in flight (the periodic checkpoint alone could lose its last interval). Blocking.
    pub fn checkpoint_partials(&self) {
        let partials: Vec<Arc<PartialBlob>> = self
            .lock()
            .blobs
            .values()
            .filter_map(|b| match b {
                Blob::Partial(p) => Some(p.clone()),
                Blob::Complete { .. } => None,
            })
            .collect();
        for p in partials {
            if let Err(e) = p.checkpoint() {
                tracing::warn!(etag = %p.etag(), error = %e, "cannot checkpoint a partial blob");
            }
        }
    }

    /// Forgets a blob that was given up.
    pub fn drop_blob(&self, etag: &Etag) {
        let mut inner = self.lock();
        if matches!(inner.blobs.get(etag), Some(Blob::Partial(_))) {
            inner.blobs.remove(etag);
        }
        drop(inner);
        self.changed.notify_one();
    }

    /// Stops serving a blob found damaged on disk (a repair refetches it and registers it again).
    pub fn invalidate_blob(&self, etag: &Etag) {
        self.lock().blobs.remove(etag);
        self.changed.notify_one();
    }

    /// A snapshot is complete: keep its signed manifest (persisted, so it survives a restart),
    /// and serve every blob it names.
    pub fn complete_snapshot(&self, manifest: &Manifest, signed: SignedManifest) -> io::Result<()> {
        let path = self.manifest_path(manifest.kind, &manifest.repo, &manifest.commit);
        let bytes = postcard::to_stdvec(&signed).map_err(io::Error::other)?;
        fsutil::write_atomic(&self.state_dir.join("tmp"), &path, &bytes)?;
        self.register_snapshot(manifest, signed);
        Ok(())
    }

    fn register_snapshot(&self, m: &Manifest, signed: SignedManifest) {
        let cache = RepoCache::new(&self.cache_root, m.kind, &m.repo);
        let mut inner = self.lock();
        for f in &m.files {
            let path = cache.layout().blob(&f.entry.etag);
            let hashes = Arc::new(f.chunks.clone());
            inner.blobs.insert(
                f.entry.etag.clone(),
                Blob::Complete {
                    path,
                    size: f.entry.size,
                    hashes,
                },
            );
        }
        let id = (m.kind, m.repo.clone(), m.commit.clone());
        let names = m.files.iter().map(|f| f.entry.etag.clone()).collect();
        inner.names.insert(id.clone(), names);
        inner.snapshots.insert(id, signed);
        drop(inner);
        self.changed.notify_one();
    }

    /// Forgets a snapshot that leaves the cache: it is no longer served, nor is any complete
    /// blob of its repository that no other held snapshot names (the announce loop then
    /// withdraws their DHT records). A blob another held snapshot names stays, served from that
    /// snapshot's repository; a blob still arriving (a pull in progress) is left to its pull.
    /// The persisted manifest stays until [`LocalStore::remove_manifest`], so that a crash
    /// before the snapshot left the disk serves it again at the next start. Returns whether the
    /// snapshot was held.
    pub fn forget_snapshot(&self, kind: RepoKind, repo: &RepoId, commit: &CommitId) -> bool {
        let id = (kind, repo.clone(), commit.clone());
        let gone_dir = RepoCache::new(&self.cache_root, kind, repo)
            .layout()
            .repo_dir();
        let mut inner = self.lock();
        let held = inner.snapshots.remove(&id).is_some();
        for etag in inner.names.remove(&id).unwrap_or_default() {
            let keeper = inner
                .names
                .iter()
                .find(|(_, names)| names.contains(&etag))
                .map(|((k, r, _), _)| RepoCache::new(&self.cache_root, *k, r));
            let Some(Blob::Complete { path, .. }) = inner.blobs.get_mut(&etag) else {
                continue;
            };
            if !path.starts_with(&gone_dir) {
                continue;
            }
            match keeper {
                Some(cache) => *path = cache.layout().blob(&etag),
                None => {
                    inner.blobs.remove(&etag);
                }
            }
        }
        drop(inner);
        self.changed.notify_one();
        held
    }

    /// Deletes the persisted manifest of a snapshot that left the cache (absent is fine).
    pub fn remove_manifest(
        &self,
        kind: RepoKind,
        repo: &RepoId,
        commit: &CommitId,
    ) -> io::Result<()> {
        match fs::remove_file(self.manifest_path(kind, repo, commit)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    /// Bytes of the distinct blobs a held snapshot names.
    pub fn snapshot_bytes(&self, kind: RepoKind, repo: &RepoId, commit: &CommitId) -> Option<u64> {
        let inner = self.lock();
        let names = inner.names.get(&(kind, repo.clone(), commit.clone()))?;
        let distinct: std::collections::BTreeSet<&Etag> = names.iter().collect();
        let size = |e: &Etag| match inner.blobs.get(e) {
            Some(Blob::Complete { size, .. }) => *size,
            _ => 0,
        };
        Some(distinct.into_iter().map(size).sum())
    }

    /// The complete snapshots held here.
    pub fn snapshots(&self) -> Vec<SnapshotId> {
        let mut v: Vec<SnapshotId> = self.lock().snapshots.keys().cloned().collect();
        v.sort();
        v
    }

    /// The signed manifest of a complete snapshot held here.
    pub fn manifest(
        &self,
        kind: RepoKind,
        repo: &RepoId,
        commit: &CommitId,
    ) -> Option<SignedManifest> {
        self.lock()
            .snapshots
            .get(&(kind, repo.clone(), commit.clone()))
            .cloned()
    }

    /// Which chunks of `etag` can be served now. Called for peers: the question is remembered
    /// (see [`LocalStore::asked_since`]).
    pub fn have(&self, etag: &Etag) -> Option<Bitmap> {
        let mut inner = self.lock();
        inner.note_asked(etag, Instant::now());
        inner.bitmap(etag)
    }

    /// Peer exchange: which chunks of `etag` can be served now (remembered as a co-puller's
    /// question, like [`LocalStore::have`], only when the asker found this node in the DHT's
    /// provider list: `listed`), and up to [`MAX_PEER_HINTS`] other nodes that asked about it
    /// in the last [`ASKED_MEMORY`], the most recent first (not the nearest first: in the scale
    /// model, views filled with the asker's own rack spread chunks between racks more slowly and
    /// cost 1–2% more Hub egress). `asker` is remembered for the next ones.
    pub fn swarm(
        &self,
        etag: &Etag,
        asker: &PeerHint,
        listed: bool,
    ) -> (Option<Bitmap>, Vec<PeerHint>) {
        let mut inner = self.lock();
        let now = Instant::now();
        if listed {
            inner.note_asked(etag, now);
        }
        let have = inner.bitmap(etag);
        let fresh = |t: &Instant| now.duration_since(*t) < ASKED_MEMORY;
        if inner.askers.len() >= MAX_ASKED && !inner.askers.contains_key(etag) {
            inner
                .askers
                .retain(|_, list| list.first().is_some_and(|(_, t, _)| fresh(t)));
            if inner.askers.len() >= MAX_ASKED {
                return (have, Vec::new());
            }
        }
        let list = inner.askers.entry(etag.clone()).or_default();
        list.retain(|(h, t, _)| h.node != asker.node && fresh(t));
        let others = list
            .iter()
            .take(MAX_PEER_HINTS)
            .map(|(h, _, _)| h.clone())
            .collect();
        list.insert(0, (asker.clone(), now, listed));
        list.truncate(MAX_ASKERS_PER_BLOB);
        (have, others)
    }

    /// The nodes that found this node in the DHT's provider list of `etag` and asked about it (by
    /// [`LocalStore::swarm`]) at or after `since`, among the askers remembered for peer exchange.
    pub fn listed_askers_since(&self, etag: &Etag, since: Instant) -> Vec<NodeId> {
        let inner = self.lock();
        let Some(list) = inner.askers.get(etag) else {
            return Vec::new();
        };
        list.iter()
            .filter(|(_, t, listed)| *listed && *t >= since)
            .map(|(h, _, _)| h.node)
            .collect()
    }

    /// The announce loop's word that its announcement of `key` into the DHT ran its course
    /// (succeeded, or failed and will be tried again) at `now`.
    pub fn note_announced(&self, key: &ContentKey, now: Instant) {
        if let ContentKey::Blob(etag) = key {
            self.lock().announced.insert(etag.clone(), now);
        }
    }

    /// The announce loop withdrew `key` from the DHT: it is no longer announced.
    pub fn note_withdrawn(&self, key: &ContentKey) {
        if let ContentKey::Blob(etag) = key {
            self.lock().announced.remove(etag);
        }
    }

    /// When this node's announcement of `etag` last ran its course: from then on its own
    /// provider record is in the DHT (unless the announcement failed), and so, most likely,
    /// are those of nodes that began the blob with it. `None` until the first one ends (the
    /// announce loop, [`super::announce::run`], must be running for this to change).
    pub fn announced_at(&self, etag: &Etag) -> Option<Instant> {
        self.lock().announced.get(etag).copied()
    }

    /// Whether a peer asked about `etag` at or after `since`: it then knows this node as a
    /// provider of the blob (remembered for [`ASKED_MEMORY`]).
    pub fn asked_since(&self, etag: &Etag, since: Instant) -> bool {
        self.lock().asked.get(etag).is_some_and(|t| *t >= since)
    }

    /// The hashes this node vouches for: every chunk of a complete blob, the present chunks of a
    /// partial one (`None` where absent).
    pub fn chunk_hashes(&self, etag: &Etag) -> Option<Vec<Option<ChunkHash>>> {
        match self.lock().blobs.get(etag)? {
            Blob::Partial(p) => Some(
                (0..p.chunks())
                    .map(|i| p.chunk_hash(i).filter(|_| p.has_chunk(i)))
                    .collect(),
            ),
            Blob::Complete { hashes, .. } => Some(hashes.iter().map(|h| Some(*h)).collect()),
        }
    }

    /// What this node holds, for operators: each complete snapshot with its file count and
    /// bytes (read from its manifest), and each blob with the chunks present, cut to the caps
    /// of [`Holdings`]. Decodes every manifest: call it on the blocking pool.
    pub fn holdings(&self) -> Holdings {
        let (signed, blobs): (Vec<SignedManifest>, Vec<HeldBlob>) = {
            let inner = self.lock();
            let signed = inner.snapshots.values().cloned().collect();
            let blobs = inner.blobs.iter().map(|(e, b)| held_blob(e, b)).collect();
            (signed, blobs)
        };
        let snapshots = signed.iter().filter_map(held_snapshot).collect();
        Holdings::capped(snapshots, blobs)
    }

    /// Reads chunk `index` of `etag` if present here (blocking file I/O).
    pub fn read_chunk(&self, etag: &Etag, index: u64) -> io::Result<Option<Bytes>> {
        let source = match self.lock().blobs.get(etag) {
            None => return Ok(None),
            Some(Blob::Partial(p)) => {
                if !p.has_chunk(index) {
                    return Ok(None);
                }
                Err(p.clone())
            }
            Some(Blob::Complete { path, size, .. }) => {
                if index >= chunk_count(*size) {
                    return Ok(None);
                }
                Ok((path.clone(), *size))
            }
        };
        match source {
            Err(partial) => partial.read_chunk(index).map(|b| Some(b.freeze())),
            Ok((path, size)) => {
                let r = chunk_range(size, index);
                let mut buf = ChunkBuf::take((r.end - r.start) as usize);
                fs::File::open(path)?.read_exact_at(buf.as_mut_slice(), r.start)?;
                Ok(Some(buf.freeze()))
            }
        }
    }
}

/// A blob as listed in [`Holdings`].
fn held_blob(etag: &Etag, blob: &Blob) -> HeldBlob {
    let (size, present) = match blob {
        Blob::Partial(p) => (p.size(), p.bitmap().count()),
        Blob::Complete { size, .. } => (*size, chunk_count(*size)),
    };
    HeldBlob {
        etag: etag.clone(),
        size,
        present,
        chunks: chunk_count(size),
    }
}

/// A snapshot as listed in [`Holdings`], from its manifest (which was verified when stored).
fn held_snapshot(signed: &SignedManifest) -> Option<HeldSnapshot> {
    let m = postcard::from_bytes::<Manifest>(&signed.body).ok()?;
    Some(HeldSnapshot {
        kind: m.kind,
        repo: m.repo,
        commit: m.commit,
        files: m.files.len() as u64,
        bytes: m.files.iter().map(|f| f.entry.size).sum(),
    })
}

impl crate::transfer::ChunkSource for LocalStore {
    fn manifest(&self, kind: RepoKind, repo: &RepoId, commit: &CommitId) -> Option<SignedManifest> {
        LocalStore::manifest(self, kind, repo, commit)
    }

    fn have(&self, etag: &Etag) -> Option<Bitmap> {
        LocalStore::have(self, etag)
    }

    fn read_chunk(&self, etag: &Etag, index: u64) -> io::Result<Option<Bytes>> {
        LocalStore::read_chunk(self, etag, index)
    }

    fn swarm(
        &self,
        etag: &Etag,
        asker: &PeerHint,
        listed: bool,
    ) -> (Option<Bitmap>, Vec<PeerHint>) {
        LocalStore::swarm(self, etag, asker, listed)
    }

    fn chunk_hashes(&self, etag: &Etag) -> Option<Vec<Option<ChunkHash>>> {
        LocalStore::chunk_hashes(self, etag)
    }

    fn holdings(&self) -> Holdings {
        LocalStore::holdings(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::{FileEntry, ManifestFile, MANIFEST_VERSION};
    use crate::node::NodeKey;
    use crate::repo::RepoPath;

    /// Puts a one-file snapshot of `repo` at `commit` in the tree and in the store.
    fn hold(store: &LocalStore, cache: &Path, repo: &str, commit: char, data: &[u8]) -> Etag {
        let id = RepoId::parse(repo).unwrap();
        let commit = CommitId::parse(&commit.to_string().repeat(40)).unwrap();
        let etag = crate::etag::sha256(data);
        let rc = RepoCache::new(cache, RepoKind::Model, &id);
        let staged = cache.join("staged");
        fs::create_dir_all(cache).unwrap();
        fs::write(&staged, data).unwrap();
        let path = rc.commit_blob(&staged, &etag).unwrap();
        let entry = FileEntry {
            path: RepoPath::parse("w.bin").unwrap(),
            size: data.len() as u64,
            etag: etag.clone(),
            blob_id: "0".repeat(40),
            lfs: true,
        };
        rc.assemble_snapshot(&commit, std::slice::from_ref(&entry))
            .unwrap();
        let h = *blake3::hash(data).as_bytes();
        store.complete_blob(&etag, path, data.len() as u64, Arc::new(vec![h]));
        let m = Manifest {
            version: MANIFEST_VERSION,
            kind: RepoKind::Model,
            repo: id,
            commit,
            chunk_size: crate::store::CHUNK_SIZE,
            files: vec![ManifestFile {
                entry,
                chunks: vec![h],
            }],
        };
        let signed = SignedManifest::sign(&m, &NodeKey::generate());
        store.complete_snapshot(&m, signed).unwrap();
        etag
    }

    #[test]
    fn a_forgotten_snapshot_and_its_unshared_blobs_are_no_longer_served() {
        let dir = tempfile::tempdir().unwrap();
        let (cache, state) = (dir.path().join("hub"), dir.path().join("state"));
        let store = LocalStore::open(&cache, &state).unwrap();
        let shared = hold(&store, &cache, "acme/a", '1', b"same bytes");
        assert_eq!(hold(&store, &cache, "acme/b", '2', b"same bytes"), shared);
        let own = hold(&store, &cache, "acme/a", '3', b"only a");
        assert_eq!(store.content_keys().len(), 3 + 2);
        let (a, b) = (
            RepoId::parse("acme/a").unwrap(),
            RepoId::parse("acme/b").unwrap(),
        );
        let c = |ch: char| CommitId::parse(&ch.to_string().repeat(40)).unwrap();

        // The last registration of the shared blob was acme/b's copy; forgetting acme/b
        // re-points it at acme/a's copy, which stays served.
        assert_eq!(store.snapshot_bytes(RepoKind::Model, &b, &c('2')), Some(10));
        assert!(store.forget_snapshot(RepoKind::Model, &b, &c('2')));
        std::fs::remove_dir_all(cache.join("models--acme--b")).unwrap();
        store.remove_manifest(RepoKind::Model, &b, &c('2')).unwrap();
        assert_eq!(
            &store.read_chunk(&shared, 0).unwrap().unwrap()[..],
            b"same bytes"
        );
        assert!(store.forget_snapshot(RepoKind::Model, &a, &c('3')));
        store.remove_manifest(RepoKind::Model, &a, &c('3')).unwrap();
        assert_eq!(store.have(&own), None);
        assert_eq!(store.manifest(RepoKind::Model, &a, &c('3')), None);
        let keys = store.content_keys();
        assert_eq!(keys.len(), 2, "{keys:?}");
        assert!(keys.contains(&ContentKey::Blob(shared.clone())));
        assert!(!store.forget_snapshot(RepoKind::Model, &a, &c('3')));
        assert_eq!(store.snapshot_bytes(RepoKind::Model, &a, &c('3')), None);

        // The manifests are gone from the state directory: a restart does not bring them back.
        let again = LocalStore::open(&cache, &state).unwrap();
        assert_eq!(again.snapshots(), vec![(RepoKind::Model, a, c('1'))]);
    }

    #[test]
    fn swarm_names_the_most_recent_askers_and_counts_only_listed_asks() {
        let dir = tempfile::tempdir().unwrap();
        let (cache, state) = (dir.path().join("hub"), dir.path().join("state"));
        let store = LocalStore::open(&cache, &state).unwrap();
        let etag = crate::etag::sha256(b"a blob");
        let partial = Arc::new(PartialBlob::open(&dir.path().join("p"), &etag, 10).unwrap());
        store.begin_blob(partial);
        let peer = |n: u8, rack: &str| PeerHint {
            node: crate::node::NodeKey::from_secret([n; 32]).id(),
            addr: ([10, 0, 0, n], 4002).into(),
            topology: crate::node::Topology {
                zone: Some("z".into()),
                rack: Some(rack.into()),
            },
        };
        let before = Instant::now();
        // The first asker learns of nobody, and an unlisted ask does not make this node count.
        let (have, others) = store.swarm(&etag, &peer(1, "r1"), false);
        assert_eq!(have.map(|b| b.len()), Some(1));
        assert!(others.is_empty());
        assert!(
            !store.asked_since(&etag, before),
            "an unlisted ask is not a co-puller's"
        );
        for n in 2..=MAX_PEER_HINTS as u8 + 3 {
            store.swarm(&etag, &peer(n, "r2"), false);
        }
        // Node 3 asks again: it hears of the most recent askers, never of itself.
        let (_, others) = store.swarm(&etag, &peer(3, "r1"), true);
        assert!(store.asked_since(&etag, before), "a listed ask is");
        assert_eq!(
            store.listed_askers_since(&etag, before),
            vec![peer(3, "r1").node],
            "only the listed asker is one that found this node in the DHT"
        );
        let last = MAX_PEER_HINTS as u8 + 3;
        let expected: Vec<PeerHint> = (4..=last).rev().map(|n| peer(n, "r2")).collect();
        assert_eq!(others, expected[..MAX_PEER_HINTS]);
        assert!(
            !others.iter().any(|h| h.node == peer(3, "r1").node),
            "never the asker"
        );
        // Unknown blobs have nothing, and nobody to name yet.
        let other = crate::etag::sha256(b"another");
        assert_eq!(
            store.swarm(&other, &peer(1, "r1"), true),
            (None, Vec::new())
        );
    }

    #[test]
    fn serves_partial_and_complete_blobs_and_remembers_snapshots() {
        let dir = tempfile::tempdir().unwrap();
        let (cache, state) = (dir.path().join("hub"), dir.path().join("state"));
        let store = LocalStore::open(&cache, &state).unwrap();
        let data = vec![5u8; 10];
        let etag = crate::etag::sha256(&data);
        let partial = Arc::new(PartialBlob::open(&dir.path().join("p"), &etag, 10).unwrap());
        store.begin_blob(partial.clone());
        assert_eq!(store.read_chunk(&etag, 0).unwrap(), None, "not there yet");
        let partial_held = store.holdings();
        assert!(partial_held.snapshots.is_empty());
        assert_eq!(
            partial_held.blobs,
            vec![HeldBlob {
                etag: etag.clone(),
                size: 10,
                present: 0,
                chunks: 1
            }]
        );
        partial.write_at(0, &data).unwrap();
        let h = *blake3::hash(&data).as_bytes();
        partial.mark_complete_with_hash(0, h);
        assert_eq!(
            store.read_chunk(&etag, 0).unwrap().as_deref(),
            Some(&data[..])
        );
        assert_eq!(store.chunk_hashes(&etag), Some(vec![Some(h)]));
        // A stop saves the record of what arrived: reopened, the chunk is there.
        store.checkpoint_partials();
        let reopened = PartialBlob::open(&dir.path().join("p"), &etag, 10).unwrap();
        assert_eq!(reopened.bytes_done(), 10);

        // Complete it in a real tree and record the snapshot.
        let id = RepoId::parse("acme/x").unwrap();
        let commit = CommitId::parse(&"c".repeat(40)).unwrap();
        let rc = RepoCache::new(&cache, RepoKind::Model, &id);
        let staged = dir.path().join("staged");
        fs::write(&staged, &data).unwrap();
        let path = rc.commit_blob(&staged, &etag).unwrap();
        let entry = FileEntry {
            path: RepoPath::parse("m.bin").unwrap(),
            size: 10,
            etag: etag.clone(),
            blob_id: "0".repeat(40),
            lfs: true,
        };
        rc.assemble_snapshot(&commit, std::slice::from_ref(&entry))
            .unwrap();
        store.complete_blob(&etag, path, 10, Arc::new(vec![h]));
        let m = Manifest {
            version: MANIFEST_VERSION,
            kind: RepoKind::Model,
            repo: id.clone(),
            commit: commit.clone(),
            chunk_size: crate::store::CHUNK_SIZE,
            files: vec![ManifestFile {
                entry,
                chunks: vec![h],
            }],
        };
        let signed = SignedManifest::sign(&m, &NodeKey::generate());
        store.complete_snapshot(&m, signed.clone()).unwrap();
        assert_eq!(
            store.manifest(RepoKind::Model, &id, &commit),
            Some(signed.clone())
        );
        assert_eq!(store.content_keys().len(), 2);
        let held = store.holdings();
        assert_eq!(
            held.snapshots,
            vec![HeldSnapshot {
                kind: RepoKind::Model,
                repo: id.clone(),
                commit: commit.clone(),
                files: 1,
                bytes: 10
            }]
        );
        assert!(held.blobs[0].is_complete() && !held.truncated);

        // A restarted node serves it again.
        let again = LocalStore::open(&cache, &state).unwrap();
        assert_eq!(again.manifest(RepoKind::Model, &id, &commit), Some(signed));
        assert_eq!(
            again.read_chunk(&etag, 0).unwrap().as_deref(),
            Some(&data[..])
        );
        assert!(again.have(&etag).unwrap().is_full());
    }
}
