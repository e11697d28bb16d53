//! The mesh pull: a snapshot from peers first, from the Hub only for what no peer can supply.
//!
//! 1. Resolve the revision (a full commit needs no request); a snapshot complete on disk returns.
//! 2. Ask providers of the snapshot for its signed manifest (nearest first); a manifest that does
//!    not verify is skipped. Without one, the Hub's listing is used, and chunk hashes come from
//!    the peers that read the chunks from the Hub (the blob's etag is the final judge).
//! 3. Each missing blob: under the blob lock, open the partial blob (resuming), advertise it, then
//!    loop: refresh what providers hold, let the scheduler decide, run its requests, verify every
//!    peer chunk against its BLAKE3 hash before writing it, and feed results back. Chunks nobody
//!    has come from the Hub, split among the nodes pulling at the same time.
//! 4. Every blob is checked against its etag before it enters `blobs/`; on a mismatch the blob is
//!    fetched again from the Hub alone. Then the snapshot is assembled as in a Hub pull, and its
//!    manifest (received, or made and signed here) is kept and served.

use crate::transfer::ratelimit::{pay, Limits, RateLimit};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::future::{BoxFuture, FutureExt};
use futures_util::stream::{self, BoxStream, FuturesUnordered, StreamExt, TryStreamExt};
use tokio::sync::mpsc;
use url::Url;

use super::local::SnapshotId;
use super::pace::{LookupPace, MAX_LOOKUP_EVERY};
use super::peers::{BlobHave, Peers};
use super::LocalStore;
use crate::cache::RepoCache;
use crate::discovery::{ContentKey, Discovery, NodeInfo};
use crate::etag::Etag;
use crate::hub::{HubClient, HubError};
use crate::manifest::{
    ChunkHash, FileEntry, Manifest, ManifestFile, SignedManifest, MANIFEST_VERSION,
};
use crate::node::{NodeId, NodeKey};
use crate::progress::{Origin, Progress};
use crate::pull::{blocking, commit_verified, PullError};
use crate::repo::{CommitId, RepoRef};
use crate::scheduler::{proximity, Fault, Request, SchedConfig, Scheduler, Source};
use crate::store::{chunk_count, chunk_range, ChunkBuf, PartialBlob, StoreError, CHUNK_SIZE};

/// Longest time between two checkpoints of a partial blob's chunk record.
const CHECKPOINT_EVERY: Duration = Duration::from_secs(1);
/// How long a peer may take to say what it holds (datacenter RTTs are sub-millisecond).
const PEER_ANSWER_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a manifest request to one provider goes unanswered before the next provider is
/// asked as well (a healthy one answers within milliseconds: one handshake and one request).
const MANIFEST_HEDGE: Duration = Duration::from_millis(200);
/// Providers asked for a snapshot's manifest at once, at most.
const MANIFEST_ASKS_AT_ONCE: usize = 3;
/// How long a peer that failed to answer is left alone before it is asked again (doubles with
/// each further failure, up to [`MAX_DOWN_TIME`]). Its provider records may outlive it.
const DOWN_TIME: Duration = Duration::from_secs(1);
/// Longest time a failing peer is left alone.
const MAX_DOWN_TIME: Duration = Duration::from_secs(30);
/// How long a node seen pulling the blob still counts as one of its pullers without a fresh
/// answer: one slow answer must not move stripe ownership (and start duplicate Hub fetches).
const PULLER_MEMORY: Duration = Duration::from_secs(10);
/// Longest a blob's first Hub request waits for the set of pullers to settle, in gather windows.
pub(crate) const MAX_GATHER_WINDOWS: u32 = 16;

/// Tuning of mesh pulls.
#[derive(Debug, Clone)]
pub struct MeshConfig {
    /// The per-blob scheduler.
    pub sched: SchedConfig,
    /// Blobs fetched at once.
    pub max_blobs: usize,
    /// How often providers and what they hold are looked up again during a blob's fetch.
    pub refresh: Duration,
    /// After advertising a blob, how long to wait for other pullers to show up before taking
    /// anything from the Hub (only matters when no peer holds any of it yet). The first Hub
    /// request also waits for a whole refresh that leaves the set of pullers unchanged (at
    /// most 16 windows in all), so that nodes starting together agree on who owns which stripe.
    pub gather: Duration,
    /// Most providers asked per lookup.
    pub max_providers: usize,
    /// Peers learned by peer exchange are asked only when a lookup finds at least this many
    /// providers: the DHT's list is full (libp2p keeps 20 per key; a listed node sees 19
    /// others), so there are pullers it cannot list. Below that, every puller is listed and
    /// peer exchange would add nothing but questions.
    pub exchange_after: usize,
    /// Consecutive failed Hub requests for one blob before the pull fails.
    pub max_hub_failures: u32,
    /// The node's bandwidth limits: pulls pay `download` for every byte from peers or the Hub;
    /// [`crate::agent::Node`] hands `upload` to the chunk server.
    pub limits: Limits,
}

impl Default for MeshConfig {
    /// 4 blobs at once, refresh every 250 ms, 500 ms gather window, 32 providers, peer exchange
    /// from 19 providers found, 6 Hub failures.
    fn default() -> Self {
        MeshConfig {
            sched: SchedConfig::default(),
            max_blobs: 4,
            refresh: Duration::from_millis(250),
            gather: Duration::from_millis(500),
            max_providers: 32,
            exchange_after: crate::discovery::DHT_PROVIDERS_PER_KEY - 1,
            max_hub_failures: 6,
            limits: Limits::default(),
        }
    }
}

/// Byte counters of a node's pulls.
#[derive(Debug, Default)]
pub struct MeshCounters {
    /// File bytes received from peers (verified).
    pub bytes_from_peers: AtomicU64,
    /// File bytes received from the Hub.
    pub bytes_from_hub: AtomicU64,
    /// Chunks from peers that failed verification.
    pub bad_chunks: AtomicU64,
    /// Refreshes of a blob's view: each asks its providers what they hold.
    pub view_refreshes: AtomicU64,
    /// Of those, the ones that looked the providers up in the DHT (see [`super::pace`]).
    pub provider_lookups: AtomicU64,
}

/// What a mesh pull did.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct MeshReport {
    /// `.../snapshots/<commit>`.
    pub snapshot_dir: PathBuf,
    /// The commit.
    pub commit: CommitId,
    /// Whether it was complete on disk already.
    pub already_complete: bool,
    /// Whether the manifest came from a peer.
    pub manifest_from_peer: bool,
    /// File bytes from peers in this pull.
    pub bytes_from_peers: u64,
    /// File bytes from the Hub in this pull.
    pub bytes_from_hub: u64,
}

/// Everything a node needs to pull through the mesh.
pub struct Mesh {
    /// This node.
    pub me: NodeInfo,
    /// Its key (signs the manifests it makes).
    pub key: NodeKey,
    /// The Hub.
    pub hub: HubClient,
    /// The HF cache root.
    pub cache_root: PathBuf,
    /// Who holds what.
    pub discovery: Arc<dyn Discovery>,
    /// Requests to peers.
    pub peers: Arc<dyn Peers>,
    /// This node's holdings. The announce loop ([`super::announce::run`]) must mirror them into
    /// `discovery`: a blob's first Hub request waits for its announcement (at most 8 s).
    pub store: Arc<LocalStore>,
    /// Tuning.
    pub cfg: MeshConfig,
    /// Byte counters.
    pub counters: Arc<MeshCounters>,
}

#[derive(Default)]
struct Tally {
    from_peers: AtomicU64,
    from_hub: AtomicU64,
}

impl Mesh {
    /// Pulls `what` into the cache tree through the mesh.
    pub async fn pull(
        &self,
        what: &RepoRef,
        progress: Arc<dyn Progress>,
    ) -> Result<MeshReport, PullError> {
        let cache = RepoCache::new(&self.cache_root, what.kind, &what.id);
        let cache_err = |path: PathBuf| move |source| PullError::Cache { path, source };
        let commit = match what.revision.as_commit() {
            Some(c) => c,
            None => {
                self.hub
                    .resolve_revision(what.kind, &what.id, &what.revision)
                    .await?
            }
        };
        if cache.snapshot_complete(&commit) {
            cache
                .write_ref(&what.revision, &commit)
                .map_err(cache_err(cache.layout().repo_dir()))?;
            return Ok(MeshReport {
                snapshot_dir: cache.layout().snapshot_dir(&commit),
                commit,
                already_complete: true,
                manifest_from_peer: false,
                bytes_from_peers: 0,
                bytes_from_hub: 0,
            });
        }
        let snapshot: SnapshotId = (what.kind, what.id.clone(), commit.clone());
        let received = self.manifest_from_peers(&snapshot).await;
        let files: Vec<FileEntry> = match &received {
            Some((m, _)) => m.files.iter().map(|f| f.entry.clone()).collect(),
            None => self.hub.list_files(what.kind, &what.id, &commit).await?,
        };
        let trusted: HashMap<Etag, Arc<Vec<ChunkHash>>> = received
            .iter()
            .flat_map(|(m, _)| {
                m.files
                    .iter()
                    .map(|f| (f.entry.etag.clone(), Arc::new(f.chunks.clone())))
            })
            .collect();
        cache
            .ensure_cachedir_tag()
            .map_err(cache_err(self.cache_root.clone()))?;

        let mut distinct: HashMap<&Etag, &FileEntry> = HashMap::new();
        for f in &files {
            distinct.entry(&f.etag).or_insert(f);
        }
        let total: u64 = distinct
            .values()
            .filter(|f| !cache.has_blob(&f.etag, f.size))
            .map(|f| f.size)
            .sum();
        progress.begin(&what.to_string(), total);
        let tally = Tally::default();
        // Collected first: a lazily mapped stream of borrowing futures is not `Send` for every
        // lifetime, which would make the pull impossible to spawn.
        let fetches: Vec<_> = distinct
            .values()
            .map(|f| {
                let trusted = trusted.get(&f.etag).cloned();
                self.ensure_blob(&cache, what, &commit, f, trusted, &*progress, &tally)
            })
            .collect();
        let hashes: Vec<(Etag, Arc<Vec<ChunkHash>>)> = stream::iter(fetches)
            .buffer_unordered(self.cfg.max_blobs.max(1))
            .try_collect()
            .await?;
        progress.finish();

        let dir = cache
            .assemble_snapshot(&commit, &files)
            .map_err(cache_err(cache.layout().snapshot_dir(&commit)))?;
        cache
            .write_ref(&what.revision, &commit)
            .map_err(cache_err(cache.layout().repo_dir()))?;
        cache.tidy_work_dir();

        let manifest_from_peer = received.is_some();
        let (manifest, signed) = match received {
            Some(pair) => pair,
            None => {
                let by_etag: HashMap<Etag, Arc<Vec<ChunkHash>>> = hashes.into_iter().collect();
                let m = Manifest {
                    version: MANIFEST_VERSION,
                    kind: what.kind,
                    repo: what.id.clone(),
                    commit: commit.clone(),
                    chunk_size: CHUNK_SIZE,
                    files: files
                        .iter()
                        .map(|f| ManifestFile {
                            entry: f.clone(),
                            chunks: by_etag[&f.etag].to_vec(),
                        })
                        .collect(),
                };
                let signed = SignedManifest::sign(&m, &self.key);
                (m, signed)
            }
        };
        self.store
            .complete_snapshot(&manifest, signed)
            .map_err(cache_err(self.cache_root.clone()))?;
        Ok(MeshReport {
            snapshot_dir: dir,
            commit,
            already_complete: false,
            manifest_from_peer,
            bytes_from_peers: tally.from_peers.load(Ordering::Relaxed),
            bytes_from_hub: tally.from_hub.load(Ordering::Relaxed),
        })
    }

    /// The first verifiable manifest of `snapshot` that a provider sends, nearest provider first.
    ///
    /// Requests are hedged: a provider that has not answered within [`MANIFEST_HEDGE`] keeps
    /// its request, and the next provider is asked as well (at most [`MANIFEST_ASKS_AT_ONCE`]
    /// at once); one that fails or holds nothing is replaced at once. The DHT keeps a provider
    /// record for hours after its node died, and a handshake with a dead node only fails after
    /// its timeout (10 s), so asking one provider after another stalled a pull whenever a dead
    /// one came first.
    async fn manifest_from_peers(
        &self,
        snapshot: &SnapshotId,
    ) -> Option<(Manifest, SignedManifest)> {
        let key = ContentKey::Snapshot {
            kind: snapshot.0,
            repo: snapshot.1.clone(),
            commit: snapshot.2.clone(),
        };
        let mut providers = self
            .discovery
            .providers(key, self.cfg.max_providers)
            .await
            .ok()?;
        providers.sort_by_key(|p| {
            (
                proximity(&self.me.topology, &p.topology),
                self.peers.rtt(&p.id),
            )
        });
        let mut waiting = providers.into_iter().peekable();
        let mut asking = FuturesUnordered::new();
        loop {
            if asking.len() < MANIFEST_ASKS_AT_ONCE {
                if let Some(p) = waiting.next() {
                    asking.push(async move {
                        let answer = self.peers.manifest(&p, snapshot).await;
                        (p, answer)
                    });
                }
            }
            let hedge = waiting.peek().is_some() && asking.len() < MANIFEST_ASKS_AT_ONCE;
            tokio::select! {
                answer = asking.next() => match answer {
                    None => return None,
                    Some((p, Ok(Some(signed)))) => {
                        match signed.open((snapshot.0, &snapshot.1, &snapshot.2)) {
                            Ok(m) => return Some((m, signed)),
                            Err(e) => tracing::warn!(peer = %p.id, error = %e, "refused a manifest"),
                        }
                    }
                    Some((_, Ok(None))) => {}
                    Some((_, Err(e))) => tracing::debug!(error = %e, "manifest request failed"),
                },
                () = tokio::time::sleep(MANIFEST_HEDGE), if hedge => {}
            }
        }
    }

    /// Makes one blob present and verified; returns its chunk hashes.
    #[allow(clippy::too_many_arguments)]
    async fn ensure_blob(
        &self,
        cache: &RepoCache,
        what: &RepoRef,
        commit: &CommitId,
        file: &FileEntry,
        trusted: Option<Arc<Vec<ChunkHash>>>,
        progress: &dyn Progress,
        tally: &Tally,
    ) -> Result<(Etag, Arc<Vec<ChunkHash>>), PullError> {
        let layout = cache.layout();
        let _lock = cache
            .lock_blob(&file.etag)
            .await
            .map_err(|source| PullError::Cache {
                path: layout.blob_lock(&file.etag),
                source,
            })?;
        let blob_path = layout.blob(&file.etag);
        if cache.has_blob(&file.etag, file.size) {
            let hashes = match trusted {
                Some(h) => h,
                None => {
                    let path = blob_path.clone();
                    let size = file.size;
                    Arc::new(
                        blocking(move || Ok(hash_chunks(&path, size).map_err(StoreError::Io)?))
                            .await?,
                    )
                }
            };
            self.store
                .complete_blob(&file.etag, blob_path, file.size, hashes.clone());
            return Ok((file.etag.clone(), hashes));
        }
        let mut hub_only = false;
        loop {
            let (dir, etag, size) = (layout.partial_dir(), file.etag.clone(), file.size);
            let partial =
                Arc::new(blocking(move || Ok(PartialBlob::open(&dir, &etag, size)?)).await?);
            progress.advance(partial.bytes_done());
            self.store.begin_blob(partial.clone());
            let started = Instant::now();
            let fetched = BlobFetch {
                mesh: self,
                what,
                commit,
                file,
                partial: partial.clone(),
                trusted: trusted.clone(),
                progress,
                tally,
                hub_only,
            }
            .run()
            .await;
            if let Err(e) = fetched {
                self.store.drop_blob(&file.etag);
                return Err(e);
            }
            let fetched_in = started.elapsed();
            let verified = commit_verified(cache, file, partial.clone()).await;
            tracing::debug!(
                path = %file.path,
                size = file.size,
                fetch_ms = fetched_in.as_millis() as u64,
                verify_ms = (started.elapsed() - fetched_in).as_millis() as u64,
                "blob fetched and verified"
            );
            match verified {
                Ok(path) => {
                    let hashes: Vec<ChunkHash> = (0..partial.chunks())
                        .map(|i| partial.chunk_hash(i).unwrap_or([0; 32]))
                        .collect();
                    let hashes = trusted.clone().unwrap_or_else(|| Arc::new(hashes));
                    self.store
                        .complete_blob(&file.etag, path, file.size, hashes.clone());
                    return Ok((file.etag.clone(), hashes));
                }
                Err(PullError::Store(StoreError::EtagMismatch { .. })) if !hub_only => {
                    // Some source lied consistently (a manifest or a peer's hashes): start over
                    // from the Hub alone.
                    self.store.drop_blob(&file.etag);
                    progress.note(&format!(
                        "{}: content did not match its etag; fetching it from the Hub",
                        file.path
                    ));
                    hub_only = true;
                }
                Err(PullError::Store(StoreError::EtagMismatch { .. })) => {
                    self.store.drop_blob(&file.etag);
                    return Err(PullError::Corrupt {
                        path: file.path.to_string(),
                        etag: file.etag.to_string(),
                    });
                }
                Err(e) => {
                    self.store.drop_blob(&file.etag);
                    return Err(e);
                }
            }
        }
    }
}

/// BLAKE3 of every chunk of the file at `path`.
pub fn hash_chunks(path: &std::path::Path, size: u64) -> std::io::Result<Vec<ChunkHash>> {
    use std::os::unix::fs::FileExt;
    let f = std::fs::File::open(path)?;
    let mut buf = vec![0u8; CHUNK_SIZE as usize];
    (0..chunk_count(size))
        .map(|i| {
            let r = chunk_range(size, i);
            let b = &mut buf[..(r.end - r.start) as usize];
            f.read_exact_at(b, r.start)?;
            Ok(*blake3::hash(b).as_bytes())
        })
        .collect()
}

/// Peers that failed to answer, and until when they are left alone.
#[derive(Default)]
struct Down {
    until: HashMap<NodeId, (Instant, u32)>,
}

impl Down {
    fn failed(&mut self, id: NodeId, now: Instant) {
        let failures = self.until.get(&id).map_or(0, |(_, n)| *n) + 1;
        let wait = DOWN_TIME
            .saturating_mul(1 << failures.min(5))
            .min(MAX_DOWN_TIME);
        self.until.insert(id, (now + wait, failures));
    }

    fn answered(&mut self, id: &NodeId) {
        self.until.remove(id);
    }

    /// The peers left alone at `now`.
    fn downs(&self, now: Instant) -> impl Iterator<Item = NodeId> + '_ {
        self.until
            .iter()
            .filter(move |(_, (t, _))| now < *t)
            .map(|(id, _)| *id)
    }
}

/// The nodes seen pulling a blob lately, and when that set last changed. A node counts for
/// [`PULLER_MEMORY`] after its last answer saying so, so that one late answer does not move
/// stripe ownership.
struct Pullers {
    seen: HashMap<NodeId, Instant>,
    current: Vec<NodeId>,
    /// Whether this node counts as a puller: a peer asked it about the blob lately, so the
    /// others can see it.
    counted: bool,
    changed: Instant,
}

impl Pullers {
    fn new(now: Instant) -> Pullers {
        Pullers {
            seen: HashMap::new(),
            current: Vec::new(),
            counted: false,
            changed: now,
        }
    }

    /// Records what `id` answered (`Some(pulling)`, or `None` for no answer) and whether this
    /// node is `counted`, and gives the scheduler the pullers as they now stand.
    fn note(
        &mut self,
        id: NodeId,
        pulling: Option<bool>,
        counted: bool,
        sched: &mut Scheduler,
        now: Instant,
    ) {
        match pulling {
            Some(true) => {
                self.seen.insert(id, now);
            }
            Some(false) => {
                self.seen.remove(&id);
            }
            None => {}
        }
        let mut current: Vec<NodeId> = self
            .seen
            .iter()
            .filter(|(_, t)| now < **t + PULLER_MEMORY)
            .map(|(id, _)| *id)
            .collect();
        current.sort();
        if current != self.current || counted != self.counted {
            self.current.clone_from(&current);
            self.counted = counted;
            self.changed = now;
        }
        // Every time: `Scheduler::remove_peer` drops a peer that did not answer from its list.
        sched.set_pullers(current, counted);
    }
}

/// A peer's answer to "what do you hold of this blob?"; `None` if it did not answer in time.
struct Answer {
    peer: NodeInfo,
    /// Whether the DHT lists the peer as a provider (else it was learned by peer exchange).
    listed: bool,
    have: Option<Option<BlobHave>>,
    /// Other nodes pulling the blob that the peer named.
    others: Vec<NodeInfo>,
}

/// Whether a blob's first Hub request may go because its co-pullers have settled: a whole
/// refresh, begun (at `refreshed`) after the gather window from `started`, after the
/// co-pullers last `changed` and after this node's own announcement of the blob ran its course
/// (`announced`), changed nothing; and no node that found this one in the DHT and asked about
/// the blob since `started` is missing from what the last lookup found (`unseen`, see
/// [`LookupPace::unseen`]). Nodes starting together then agree on who owns which stripe.
///
/// The last two guard against a DHT that has not yet stored everyone's record: on a loaded
/// host an announcement takes seconds, and a node that settled on the records stored so far
/// (7 of 16 in one storm run) fetched stripes that the others, a moment later, gave to someone
/// else. Once this node's own record is in, those of nodes that began with it most likely are;
/// and a node that asked as one that found this node listed is certainly pulling. Shared with
/// the scale model, which keeps its clock in seconds.
pub(crate) fn pullers_settled<T, D>(
    started: T,
    gather: D,
    refreshed: Option<T>,
    changed: T,
    announced: Option<T>,
    unseen: bool,
) -> bool
where
    T: Copy + PartialOrd + std::ops::Add<D, Output = T>,
{
    let after_announced = |t: T| announced.is_some_and(|a| t >= a);
    !unseen && refreshed.is_some_and(|t| t >= started + gather && t > changed && after_announced(t))
}

/// When the refresh after one begun at `last` is due: the first instant of the node-wide grid
/// of `every` (from the process's first refresh) at least half a period after `last`. Every
/// blob a node pulls refreshes at the same instants, so their questions to one peer go out
/// within [`ASK_GATHER`](crate::transfer::config::ASK_GATHER) of each other and travel as one
/// `Ask` (see [`PeerConn::ask`](crate::transfer::PeerConn::ask)).
fn next_refresh(last: Instant, every: Duration) -> Instant {
    static EPOCH: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    let epoch = *EPOCH.get_or_init(Instant::now);
    grid_tick(epoch, last + every / 2, every)
}

/// The first instant `epoch + k × every` (k ≥ 0) at or after `after`.
fn grid_tick(epoch: Instant, after: Instant, every: Duration) -> Instant {
    let every_ns = every.as_nanos().max(1);
    let since = after.saturating_duration_since(epoch).as_nanos();
    let ticks = since.div_ceil(every_ns);
    epoch + Duration::from_nanos(u64::try_from(ticks * every_ns).unwrap_or(u64::MAX))
}

/// How many peers learned by peer exchange a refresh asks besides the `found` providers: none
/// until the DHT's list is full (`exchange_after`), then up to `max_providers` in all. Shared
/// with the scale model.
pub(crate) fn exchange_room(found: usize, exchange_after: usize, max_providers: usize) -> usize {
    match found >= exchange_after {
        true => max_providers.saturating_sub(found),
        false => 0,
    }
}

/// When a blob's first Hub request goes even if its co-pullers never settle.
pub(crate) fn gather_deadline(started: Instant, gather: Duration) -> Instant {
    started + gather * MAX_GATHER_WINDOWS
}

/// What woke the fetch loop.
enum Event {
    Outcome(Option<Outcome>),
    Answer(Option<Refreshed>),
    /// A lookup beside the refreshes ended: when it began, and what it found (`None`: failed).
    Found((Instant, Option<Vec<NodeInfo>>)),
    Tick,
}

/// What a refresh yields: the providers its DHT lookup found (first, if it looked up), then each
/// peer's answer as it comes.
enum Refreshed {
    Found(Vec<NodeInfo>),
    Answer(Answer),
}

/// Records in `pace` what a lookup begun at `begun` found, and returns it: the list the
/// refreshes ask until the next lookup.
fn note_lookup(
    pace: &mut LookupPace<Instant, Duration, NodeId>,
    begun: Instant,
    found: Vec<NodeInfo>,
    refresh: Duration,
) -> Vec<NodeInfo> {
    let ids = found.iter().map(|p| p.id).collect();
    pace.found(begun, ids, refresh, MAX_LOOKUP_EVERY);
    found
}

/// The end of the lookup running beside the refreshes; never ready when none is running.
async fn next_found(
    dht: &mut Option<(Instant, BoxFuture<'_, Option<Vec<NodeInfo>>>)>,
) -> (Instant, Option<Vec<NodeInfo>>) {
    match dht {
        Some((begun, f)) => (*begun, f.await),
        None => std::future::pending().await,
    }
}

/// The next item of the running refresh; never ready when none is running.
async fn next_answer(lookup: &mut Option<BoxStream<'_, Refreshed>>) -> Option<Refreshed> {
    match lookup {
        Some(s) => s.next().await,
        None => std::future::pending().await,
    }
}

/// What a finished request reports back to the fetch loop.
struct Outcome {
    request: Request,
    done: Vec<u64>,
    fault: Option<(Vec<u64>, Fault)>,
    bytes: u64,
}

/// The fetch of one blob's missing chunks.
struct BlobFetch<'a> {
    mesh: &'a Mesh,
    what: &'a RepoRef,
    commit: &'a CommitId,
    file: &'a FileEntry,
    partial: Arc<PartialBlob>,
    trusted: Option<Arc<Vec<ChunkHash>>>,
    progress: &'a dyn Progress,
    tally: &'a Tally,
    hub_only: bool,
}

impl BlobFetch<'_> {
    async fn run(self) -> Result<(), PullError> {
        let m = self.mesh;
        let etag = &self.file.etag;
        let mut sched = Scheduler::new(
            m.cfg.sched.clone(),
            m.me.id,
            etag.as_str().as_bytes(),
            self.partial.bitmap(),
        );
        if let Some(t) = &self.trusted {
            (0..t.len() as u64).for_each(|i| sched.set_verifiable(i));
        }
        let mut vouched: HashMap<NodeId, Vec<Option<ChunkHash>>> = HashMap::new();
        let mut down = Down::default();
        let mut nodes: HashMap<NodeId, NodeInfo> = HashMap::new();
        // Peers named by other peers' answers (peer exchange), first learned first.
        let mut learned: Vec<NodeInfo> = Vec::new();
        let mut hub_url: Option<Url> = None;
        let mut hub_failures = 0u32;
        let started = Instant::now();
        let mut last_refresh: Option<Instant> = None;
        // The running refresh: answers are applied one by one as they arrive, so a peer that is
        // slow to answer (or cut off) holds up neither the others nor the fetch.
        let mut lookup: Option<BoxStream<'_, Refreshed>> = None;
        // When the DHT is asked for the providers again (see `mesh::pace`), and whom it named.
        let mut pace: LookupPace<Instant, Duration, NodeId> = LookupPace::new(m.cfg.refresh);
        let mut listed: Vec<NodeInfo> = Vec::new();
        // A lookup running beside the refreshes (once the Hub is open), and when it began.
        let mut dht: Option<(Instant, BoxFuture<'_, Option<Vec<NodeInfo>>>)> = None;
        let mut pullers = Pullers::new(started);
        // When the last refresh that ran to its end began.
        let mut refreshed: Option<Instant> = None;
        let mut hub_opened = self.hub_only;
        let (tx, mut rx) = mpsc::channel::<Outcome>(64);
        let mut running = 0usize;
        let mut last_checkpoint = Instant::now();
        let mut checkpointing: Option<tokio::task::JoinHandle<std::io::Result<()>>> = None;
        let key = ContentKey::Blob(etag.clone());
        while !sched.is_done() {
            let now = Instant::now();
            // Checkpoints run beside the transfer (an fsync of what arrived in the last second
            // can take that long again); a new one starts only when the previous one is done.
            if now >= last_checkpoint + CHECKPOINT_EVERY
                && checkpointing.as_ref().is_none_or(|c| c.is_finished())
            {
                if let Some(done) = checkpointing.take() {
                    done.await
                        .map_err(|e| PullError::Task(e.to_string()))?
                        .map_err(StoreError::Io)?;
                }
                last_checkpoint = now;
                let partial = self.partial.clone();
                checkpointing = Some(tokio::task::spawn_blocking(move || partial.checkpoint()));
            }
            // When the next refresh is due (once the running one has ended).
            let refresh_due = last_refresh.map(|t| next_refresh(t, m.cfg.refresh));
            if !self.hub_only && lookup.is_none() && refresh_due.is_none_or(|t| now >= t) {
                last_refresh = Some(now);
                let mut skip = sched.banned_peers();
                skip.extend(down.downs(now));
                m.counters.view_refreshes.fetch_add(1, Ordering::Relaxed);
                // Until the Hub opens, each refresh looks the providers up itself: the pullers
                // settle on a whole refresh that changed nothing, which must have looked. Then
                // lookups run beside the refreshes, paced, and a refresh asks the last list: a
                // lookup that hangs (its DHT nodes are cut off) holds up no answers.
                if !hub_opened {
                    m.counters.provider_lookups.fetch_add(1, Ordering::Relaxed);
                }
                let cached = hub_opened.then(|| listed.clone());
                lookup = Some(self.lookup(key.clone(), skip, learned.clone(), cached));
            }
            // Whether nodes that found this one listed and asked since `since` are missing from
            // what the last lookup found: before the Hub opens (since the fetch began) they
            // hold the pullers unsettled, after it (since that lookup) they bring the next
            // lookup forward.
            let unseen = |since: Instant| {
                let askers = m.store.listed_askers_since(etag, since);
                pace.unseen(&askers, m.cfg.exchange_after)
            };
            let lookup_due = || pace.due(now, true, pace.last().is_some_and(unseen));
            if !self.hub_only && hub_opened && dht.is_none() && lookup_due() {
                m.counters.provider_lookups.fetch_add(1, Ordering::Relaxed);
                dht = Some((now, self.find_providers(key.clone()).boxed()));
            }
            let give_up = gather_deadline(started, m.cfg.gather);
            if !hub_opened {
                let announced = m.store.announced_at(etag);
                let (gather, changed) = (m.cfg.gather, pullers.changed);
                let unseen = unseen(started);
                let settled =
                    pullers_settled(started, gather, refreshed, changed, announced, unseen);
                hub_opened = settled || now >= give_up;
                if hub_opened {
                    tracing::debug!(
                        file = %self.file.path,
                        settled,
                        pullers = sched.pullers(),
                        elapsed_ms = started.elapsed().as_millis() as u64,
                        "Hub open for this blob"
                    );
                }
            }
            sched.set_hub_allowed(hub_opened);
            for (chunk, source) in sched.expire_stalled(now) {
                tracing::debug!(file = %self.file.path, chunk, ?source, "request stalled");
            }
            for req in sched.plan(now) {
                if req.source == Source::Hub {
                    tracing::debug!(
                        file = %self.file.path,
                        chunks = ?req.chunks,
                        owner = sched.stripe_owner(req.chunks.start) == m.me.id,
                        pullers = sched.pullers(),
                        elapsed_ms = started.elapsed().as_millis() as u64,
                        "Hub request"
                    );
                }
                if req.source == Source::Hub && hub_url.is_none() {
                    match m
                        .hub
                        .locate(self.what.kind, &self.what.id, self.commit, &self.file.path)
                        .await
                    {
                        Ok(loc) => hub_url = Some(loc.url),
                        Err(e) => return Err(e.into()),
                    }
                }
                running += 1;
                self.spawn(req, &tx, &nodes, &vouched, hub_url.clone());
            }
            let refresh_at = match (&lookup, refresh_due) {
                // The next refresh is due once this one has ended.
                (Some(_), _) => now + Duration::from_secs(3600),
                (None, Some(t)) => t,
                (None, None) => now,
            };
            let mut wake = sched
                .next_deadline()
                .map_or(refresh_at, |d| d.min(refresh_at));
            if !hub_opened {
                wake = wake.min(give_up);
            }
            if self.hub_only && running > 0 {
                wake = now + Duration::from_secs(3600);
            }
            let event = tokio::select! {
                o = rx.recv() => Event::Outcome(o),
                a = next_answer(&mut lookup) => Event::Answer(a),
                found = next_found(&mut dht) => Event::Found(found),
                _ = tokio::time::sleep_until(wake.into()) => Event::Tick,
            };
            let first = match event {
                Event::Outcome(Some(o)) => o,
                Event::Outcome(None) | Event::Tick => continue,
                Event::Found((begun, found)) => {
                    dht = None;
                    if let Some(found) = found {
                        listed = note_lookup(&mut pace, begun, found, m.cfg.refresh);
                    }
                    continue;
                }
                Event::Answer(Some(Refreshed::Found(found))) => {
                    let begun = last_refresh.unwrap_or(started);
                    listed = note_lookup(&mut pace, begun, found, m.cfg.refresh);
                    continue;
                }
                Event::Answer(Some(Refreshed::Answer(mut answer))) => {
                    let now = Instant::now();
                    for o in std::mem::take(&mut answer.others) {
                        let known = o.id == m.me.id || learned.iter().any(|l| l.id == o.id);
                        if !known && learned.len() < m.cfg.max_providers {
                            learned.push(o);
                        }
                    }
                    let (id, pulling) =
                        self.apply(answer, &mut sched, &mut vouched, &mut nodes, &mut down, now);
                    let counted = m
                        .store
                        .asked_since(etag, now.checked_sub(PULLER_MEMORY).unwrap_or(started));
                    pullers.note(id, pulling, counted, &mut sched, now);
                    continue;
                }
                Event::Answer(None) => {
                    lookup = None;
                    refreshed = last_refresh;
                    continue;
                }
            };
            let mut batch = vec![first];
            while let Ok(o) = rx.try_recv() {
                batch.push(o);
            }
            for o in batch {
                running -= 1;
                self.progress.received(o.bytes, origin(o.request.source));
                match o.request.source {
                    Source::Hub => self.tally.from_hub.fetch_add(o.bytes, Ordering::Relaxed),
                    Source::Peer(_) => self.tally.from_peers.fetch_add(o.bytes, Ordering::Relaxed),
                };
                for &c in &o.done {
                    sched.completed(c, o.request.source);
                }
                if let Some((chunks, fault)) = o.fault {
                    if o.request.source == Source::Hub {
                        hub_failures += 1;
                        if hub_failures >= m.cfg.max_hub_failures {
                            return Err(HubError::Protocol {
                                url: hub_url.map(|u| u.to_string()).unwrap_or_default(),
                                what: format!(
                                    "{} consecutive failed transfers of `{}`",
                                    hub_failures, self.file.path
                                ),
                            }
                            .into());
                        }
                    } else if fault == Fault::BadChunk {
                        m.counters.bad_chunks.fetch_add(1, Ordering::Relaxed);
                    } else if let (Source::Peer(id), Fault::Failed) = (o.request.source, fault) {
                        down.failed(id, Instant::now());
                    }
                    for c in chunks {
                        sched.failed(c..c + 1, o.request.source, fault);
                    }
                } else if o.request.source == Source::Hub {
                    hub_failures = 0;
                }
            }
        }
        // Wait for stragglers (hedged duplicates) so nothing writes after verification starts.
        drop(tx);
        while running > 0 {
            let Some(o) = rx.recv().await else { break };
            running -= 1;
            self.progress.received(o.bytes, origin(o.request.source));
        }
        if let Some(c) = checkpointing {
            let _ = c.await; // superseded by the final checkpoint
        }
        let partial = self.partial.clone();
        blocking(move || Ok(partial.checkpoint().map_err(StoreError::Io)?)).await
    }

    /// Starts a refresh of who holds the blob and what: the provider lookup (unless `cached`
    /// gives the providers the last one found), then one question per provider not in `skip`,
    /// and, when the DHT's list is full (`exchange_after`), one per peer `learned` from earlier
    /// answers (peer exchange) while there is room for it among `max_providers`. A lookup's
    /// providers come out of the stream first, then each answer as it arrives.
    fn lookup(
        &self,
        key: ContentKey,
        skip: Vec<NodeId>,
        learned: Vec<NodeInfo>,
        cached: Option<Vec<NodeInfo>>,
    ) -> BoxStream<'_, Refreshed> {
        let m = self.mesh;
        let etag = &self.file.etag;
        let with_hashes = self.trusted.is_none();
        stream::once(async move {
            match cached {
                Some(providers) => (providers, None),
                None => {
                    let found = self.find_providers(key).await;
                    (found.clone().unwrap_or_default(), found)
                }
            }
        })
        .flat_map(move |(providers, found)| {
            let room = exchange_room(providers.len(), m.cfg.exchange_after, m.cfg.max_providers);
            let extra: Vec<NodeInfo> = learned
                .iter()
                .filter(|p| !providers.iter().any(|q| q.id == p.id))
                .take(room)
                .cloned()
                .collect();
            let listed = providers.into_iter().map(|p| (p, true));
            let asks = listed
                .chain(extra.into_iter().map(|p| (p, false)))
                .filter(|(p, _)| !skip.contains(&p.id))
                .map(|(peer, listed)| async move {
                    let ask = m.peers.have(&m.me, &peer, etag, with_hashes, listed);
                    let (have, others) = match tokio::time::timeout(PEER_ANSWER_TIMEOUT, ask).await
                    {
                        Ok(Ok((have, others))) => (Some(have), others),
                        Ok(Err(_)) | Err(_) => (None, Vec::new()),
                    };
                    Refreshed::Answer(Answer {
                        peer,
                        listed,
                        have,
                        others,
                    })
                })
                .collect::<FuturesUnordered<_>>();
            stream::iter(found.map(Refreshed::Found)).chain(asks)
        })
        .boxed()
    }

    /// Looks the providers of `key` up in the DHT; `None` if the lookup failed.
    async fn find_providers(&self, key: ContentKey) -> Option<Vec<NodeInfo>> {
        let m = self.mesh;
        let asked = Instant::now();
        match m.discovery.providers(key, m.cfg.max_providers).await {
            Ok(p) => {
                tracing::debug!(
                    found = p.len(),
                    ms = asked.elapsed().as_millis() as u64,
                    "provider lookup"
                );
                Some(p)
            }
            Err(e) => {
                tracing::debug!(error = %e, "provider lookup failed");
                None
            }
        }
    }

    /// Tells the scheduler what a provider answered. Returns the provider and whether it is
    /// pulling the blob: `Some(true)` if it holds part of it, `Some(false)` if all or none, and
    /// `None` if it did not answer.
    fn apply(
        &self,
        answer: Answer,
        sched: &mut Scheduler,
        vouched: &mut HashMap<NodeId, Vec<Option<ChunkHash>>>,
        nodes: &mut HashMap<NodeId, NodeInfo>,
        down: &mut Down,
        now: Instant,
    ) -> (NodeId, Option<bool>) {
        let m = self.mesh;
        let p = answer.peer;
        let id = p.id;
        // Only the DHT's providers, whom every puller sees alike, are co-pullers (stripe owners);
        // a peer learned by peer exchange is a source only.
        let listed = answer.listed;
        let (id, pulling) = match answer.have {
            Some(Some(have)) => {
                down.answered(&id);
                let pulling = !have.chunks.is_full();
                if let Some(hashes) = have
                    .hashes
                    .filter(|h| h.len() as u64 == sched.local().len())
                {
                    for (i, h) in hashes.iter().enumerate() {
                        if h.is_some() {
                            sched.set_verifiable(i as u64);
                        }
                    }
                    vouched.insert(id, hashes);
                }
                let near = proximity(&m.me.topology, &p.topology);
                sched.update_peer(id, have.chunks, near, m.peers.rtt(&id));
                nodes.insert(id, p);
                (id, Some(pulling))
            }
            Some(None) => {
                sched.remove_peer(&id);
                (id, Some(false))
            }
            None => {
                tracing::debug!(peer = %id, "provider did not answer what it holds");
                down.failed(id, now);
                sched.remove_peer(&id);
                (id, None)
            }
        };
        (id, pulling.filter(|_| listed))
    }

    /// Runs one request in its own task; its outcome comes back on `tx`.
    fn spawn(
        &self,
        request: Request,
        tx: &mpsc::Sender<Outcome>,
        nodes: &HashMap<NodeId, NodeInfo>,
        vouched: &HashMap<NodeId, Vec<Option<ChunkHash>>>,
        hub_url: Option<Url>,
    ) {
        let tx = tx.clone();
        let partial = self.partial.clone();
        let counters = self.mesh.counters.clone();
        match request.source {
            Source::Peer(id) => {
                let Some(node) = nodes.get(&id).cloned() else {
                    let chunks = request.chunks.clone().collect();
                    let _ = tx.try_send(Outcome {
                        request,
                        done: vec![],
                        fault: Some((chunks, Fault::Failed)),
                        bytes: 0,
                    });
                    return;
                };
                let expected: Vec<Option<ChunkHash>> = request
                    .chunks
                    .clone()
                    .map(|i| match &self.trusted {
                        Some(t) => t.get(i as usize).copied(),
                        None => vouched
                            .get(&id)
                            .and_then(|v| v.get(i as usize).copied().flatten()),
                    })
                    .collect();
                let peers = self.mesh.peers.clone();
                let etag = self.file.etag.clone();
                let limit = self.mesh.cfg.limits.download.clone();
                tokio::spawn(async move {
                    let count = (request.chunks.end - request.chunks.start) as u32;
                    // Each chunk is verified and written on a blocking thread as soon as it
                    // arrives, while the rest of the request is still on the wire.
                    let (chunk_tx, chunk_rx) = std::sync::mpsc::channel::<(u64, Bytes)>();
                    let req = request.clone();
                    let writer = tokio::task::spawn_blocking(move || {
                        write_verified(&partial, &req, chunk_rx, &expected)
                    });
                    let mut received = 0u64;
                    let got = peers
                        .chunks(&node, &etag, request.chunks.start, count, &mut |i, b| {
                            received += b.len() as u64;
                            let _ = chunk_tx.send((i, b));
                        })
                        .await;
                    drop(chunk_tx);
                    // Paid on arrival: the link's average rate holds, bursts may not.
                    pay(&limit, received).await;
                    let (done, fault, bytes) = writer
                        .await
                        .unwrap_or_else(|_| (vec![], Some(Fault::Failed), 0));
                    // A peer that failed mid-request is at fault for the rest (unless what it
                    // did send was bad).
                    let fault = match (&got, fault) {
                        (Err(_), Some(Fault::BadChunk)) => Some(Fault::BadChunk),
                        (Err(e), _) if e.busy => Some(Fault::Busy),
                        (Err(_), _) => Some(Fault::Failed),
                        (Ok(()), f) => f,
                    };
                    counters
                        .bytes_from_peers
                        .fetch_add(bytes, Ordering::Relaxed);
                    let rest: Vec<u64> = request
                        .chunks
                        .clone()
                        .filter(|c| !done.contains(c))
                        .collect();
                    let outcome = Outcome {
                        request,
                        done,
                        fault: fault.map(|f| (rest, f)),
                        bytes,
                    };
                    let _ = tx.send(outcome).await;
                });
            }
            Source::Hub => {
                let url = hub_url.expect("located before any Hub request");
                let hub = self.mesh.hub.clone();
                let size = self.file.size;
                let limit = self.mesh.cfg.limits.download.clone();
                tokio::spawn(async move {
                    let range = request.chunks.clone();
                    let (done, failed) =
                        fetch_hub_chunks(&hub, &url, &partial, size, range, &limit).await;
                    let bytes: u64 = done
                        .iter()
                        .map(|&c| chunk_range(size, c).end - chunk_range(size, c).start)
                        .sum();
                    counters.bytes_from_hub.fetch_add(bytes, Ordering::Relaxed);
                    let rest: Vec<u64> = request
                        .chunks
                        .clone()
                        .filter(|c| !done.contains(c))
                        .collect();
                    let fault = (failed || !rest.is_empty()).then_some((rest, Fault::Failed));
                    let _ = tx
                        .send(Outcome {
                            request,
                            done,
                            fault,
                            bytes,
                        })
                        .await;
                });
            }
        }
    }
}

/// Where the bytes of a request to `source` come from, for progress output.
fn origin(source: Source) -> Origin {
    match source {
        Source::Hub => Origin::Hub,
        Source::Peer(_) => Origin::Peers,
    }
}

/// Verifies each received chunk against its expected hash and writes the good ones, stopping at
/// the first bad one. Returns the chunks written, the fault (if any) and the bytes written.
fn write_verified(
    partial: &Arc<PartialBlob>,
    request: &Request,
    chunks: impl IntoIterator<Item = (u64, Bytes)>,
    expected: &[Option<ChunkHash>],
) -> (Vec<u64>, Option<Fault>, u64) {
    let mut done = Vec::new();
    let mut bytes = 0;
    for (index, data) in chunks {
        if !request.chunks.contains(&index) {
            return (done, Some(Fault::BadChunk), bytes);
        }
        let range = chunk_range(partial.size(), index);
        let Some(want) = expected[(index - request.chunks.start) as usize] else {
            return (done, Some(Fault::Missing), bytes);
        };
        if data.len() as u64 != range.end - range.start || *blake3::hash(&data).as_bytes() != want {
            return (done, Some(Fault::BadChunk), bytes);
        }
        // A chunk complete already (a hedged duplicate) is not written again.
        let len = data.len() as u64;
        if partial.complete_chunk(index, data, want).is_err() {
            return (done, Some(Fault::Failed), bytes);
        }
        bytes += len;
        done.push(index);
    }
    let missing = done.len() as u64 != request.chunks.end - request.chunks.start;
    (done, missing.then_some(Fault::Missing), bytes)
}

/// Fetches whole chunks `chunks` from the Hub at `url`, hashing and writing each as it
/// completes. Returns the chunks written and whether the transfer failed before the end.
async fn fetch_hub_chunks(
    hub: &HubClient,
    url: &Url,
    partial: &Arc<PartialBlob>,
    size: u64,
    chunks: std::ops::Range<u64>,
    limit: &Option<Arc<RateLimit>>,
) -> (Vec<u64>, bool) {
    let start = chunk_range(size, chunks.start).start;
    let end = chunk_range(size, chunks.end - 1).end;
    let mut resp = match hub.open_range(url, start..end, size).await {
        Ok(r) => r,
        Err(e) => {
            tracing::debug!(error = %e, "Hub range request failed");
            return (vec![], true);
        }
    };
    let mut done = Vec::new();
    let mut index = chunks.start;
    let mut buf = ChunkBuf::take(0);
    while index < chunks.end {
        match resp.chunk().await {
            Ok(Some(piece)) => {
                pay(limit, piece.len() as u64).await;
                let mut piece = &piece[..];
                while !piece.is_empty() && index < chunks.end {
                    let want = chunk_range(size, index);
                    let need = (want.end - want.start) as usize;
                    let take = (need - buf.len()).min(piece.len());
                    buf.extend_from_slice(&piece[..take]);
                    piece = &piece[take..];
                    if buf.len() == need {
                        let data = std::mem::replace(&mut buf, ChunkBuf::take(0)).freeze();
                        let p = partial.clone();
                        let written = tokio::task::spawn_blocking(move || {
                            let hash = *blake3::hash(&data).as_bytes();
                            p.complete_chunk(index, data, hash).is_ok()
                        })
                        .await
                        .unwrap_or(false);
                        if !written {
                            return (done, true);
                        }
                        done.push(index);
                        index += 1;
                    }
                }
            }
            Ok(None) | Err(_) => return (done, true),
        }
    }
    (done, false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pullers_settle_on_a_quiet_refresh_after_the_nodes_own_announcement_with_no_unseen_asker() {
        // Seconds: began at 0, a 0.5 gather window, pullers last changed at 0.6.
        let settled = |refreshed: f64, announced: Option<f64>, unseen: bool| {
            pullers_settled(0.0, 0.5, Some(refreshed), 0.6, announced, unseen)
        };
        assert!(settled(0.75, Some(0.1), false));
        assert!(!settled(0.4, Some(0.1), false), "within the gather window");
        assert!(
            !settled(0.6, Some(0.1), false),
            "begun when the pullers changed"
        );
        assert!(
            !settled(0.75, None, false),
            "the announcement still under way"
        );
        assert!(
            !settled(0.75, Some(0.8), false),
            "begun before the announcement ended"
        );
        assert!(settled(0.8, Some(0.8), false));
        assert!(
            !settled(0.75, Some(0.1), true),
            "a puller asked that no lookup found"
        );
        assert!(
            !pullers_settled(0.0, 0.5, None, 0.0, Some(0.0), false),
            "no whole refresh"
        );
    }

    #[test]
    fn refreshes_fall_on_one_grid_whenever_they_began() {
        let epoch = Instant::now();
        let every = Duration::from_millis(250);
        let ms = |n: u64| Duration::from_millis(n);
        assert_eq!(grid_tick(epoch, epoch, every), epoch);
        assert_eq!(grid_tick(epoch, epoch + ms(1), every), epoch + ms(250));
        assert_eq!(grid_tick(epoch, epoch + ms(250), every), epoch + ms(250));
        assert_eq!(grid_tick(epoch, epoch + ms(1001), every), epoch + ms(1250));
        // Two blobs whose refreshes began 90 ms apart refresh together from the next one on.
        for began in [ms(1010), ms(1100)] {
            let due = grid_tick(epoch, epoch + began + every / 2, every);
            assert_eq!(due, epoch + ms(1250), "began at {began:?}");
        }
    }
}
