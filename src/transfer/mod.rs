//! QUIC transfers between peers: the only code that names quinn types.
//!
//! One [`Transfer`] per node binds one UDP endpoint that both serves (from a [`ChunkSource`])
//! and fetches (through [`PeerConn`]s, cached per peer). Trust, in order:
//!
//! 1. **TLS 1.3 bound to node keys** (`tls.rs`): each side's certificate key is its ed25519 node
//!    key; the dialler names the [`NodeId`] it expects and the handshake fails for any other key.
//! 2. **Cluster hello** (`hello.rs`): on the first stream both sides send a MAC, keyed with the
//!    cluster secret, over keying material exported from this TLS session. The server answers
//!    nothing else before the client's hello verifies, so an outsider gets not one byte.
//! 3. **Content** is not checked here: callers verify every chunk against the signed manifest.
//!
//! The protocol itself (frames, limits, messages) is in [`crate::wire`]; the tuning of windows,
//! MTU and timers in [`config`].

mod client;
pub mod config;
mod error;
mod hello;
mod io;
/// Per-node bandwidth limits (token buckets).
pub mod ratelimit;
mod server;
mod socket;
mod stats;
mod tls;

use std::sync::Arc;

pub use client::{PeerConn, Transfer, TransferConfig};
pub use error::TransferError;
pub use stats::PeerStats;

use crate::etag::Etag;
use crate::manifest::SignedManifest;
use crate::node::{NodeId, Topology};
use crate::repo::{CommitId, RepoId, RepoKind};
use crate::store::Bitmap;
use crate::wire::Holdings;

/// What a node serves to its peers: manifests, which chunks of a blob it holds, the chunks
/// themselves (also of blobs still downloading), and a summary of its holdings. Implemented by the chunk store; tests use
/// in-memory blobs. Every method is called on tokio's blocking pool, so it may touch the disk.
pub trait ChunkSource: Send + Sync + 'static {
    /// The signed manifest of a snapshot, if this node has it.
    fn manifest(&self, kind: RepoKind, repo: &RepoId, commit: &CommitId) -> Option<SignedManifest>;
    /// Which chunks of `etag` are present and verified; `None` when nothing of it is here.
    fn have(&self, etag: &Etag) -> Option<Bitmap>;
    /// Chunk `index` of `etag` (at most `CHUNK_SIZE` bytes), or `None` when it is not present.
    /// Blocking. `Bytes` so the chunk is handed to QUIC without a copy (and, when read into a
    /// [`ChunkBuf`](crate::store::ChunkBuf), its buffer is reused once QUIC is done with it).
    fn read_chunk(&self, etag: &Etag, index: u64) -> std::io::Result<Option<bytes::Bytes>>;
    /// The BLAKE3 hash of each chunk of `etag` this node vouches for (`None` per absent chunk);
    /// `None` when nothing of it is here.
    fn chunk_hashes(&self, etag: &Etag) -> Option<Vec<Option<[u8; 32]>>> {
        let _ = etag;
        None
    }
    /// Peer exchange: which chunks of `etag` are here (as [`ChunkSource::have`]; `listed` says
    /// whether the asker found this node in the DHT's provider list) and up to
    /// [`MAX_PEER_HINTS`](crate::wire::MAX_PEER_HINTS) other nodes that asked lately; `asker` is
    /// remembered for the next ones. The default names nobody.
    fn swarm(
        &self,
        etag: &Etag,
        asker: &crate::wire::PeerHint,
        listed: bool,
    ) -> (Option<Bitmap>, Vec<crate::wire::PeerHint>) {
        let _ = (asker, listed);
        (self.have(etag), Vec::new())
    }
    /// What this node holds, for operators: its complete snapshots and its blobs, cut to the
    /// caps of [`Holdings`]. The default holds nothing, which is a valid answer.
    fn holdings(&self) -> Holdings {
        Holdings::default()
    }
}

/// What the server and client halves of an endpoint share.
pub(crate) struct Shared {
    endpoint: quinn::Endpoint,
    node: NodeId,
    topology: Topology,
    hello_key: [u8; 32],
    identity: tls::Identity,
    transport: Arc<quinn::TransportConfig>,
    source: Arc<dyn ChunkSource>,
    stats: stats::Registry,
    /// Connection tasks and in-flight uploads, drained on shutdown.
    tracker: tokio_util::task::TaskTracker,
    /// Cancelled when shutdown starts.
    cancel: tokio_util::sync::CancellationToken,
    /// The upload limit, set once by [`Transfer::limit_uploads`].
    upload_limit: std::sync::OnceLock<Arc<ratelimit::RateLimit>>,
    /// Chunk requests served at once, to all peers together ([`config::UPLOAD_SLOTS`] unless
    /// [`Transfer::set_upload_slots`] came first); a request beyond them is refused as busy.
    upload_slots: std::sync::OnceLock<Arc<tokio::sync::Semaphore>>,
    /// Chunk requests refused as busy so far.
    refused_busy: std::sync::atomic::AtomicU64,
    /// The newest protocol version this endpoint speaks (see [`crate::wire::ALPNS`]).
    newest: u16,
    /// Questions about blobs answered (`Have`, `Hashes`, `Swarm`, `Ask` requests) and the blobs
    /// they were about (one each, the items of an `Ask`).
    questions: std::sync::atomic::AtomicU64,
    question_blobs: std::sync::atomic::AtomicU64,
}

impl Shared {
    fn upload_slots(&self) -> &Arc<tokio::sync::Semaphore> {
        self.upload_slots
            .get_or_init(|| Arc::new(tokio::sync::Semaphore::new(config::UPLOAD_SLOTS)))
    }
}
