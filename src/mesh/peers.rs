//! What the mesh pull asks of other nodes, behind a trait: over QUIC in production
//! ([`crate::transfer`]), in memory for tests and the simulator ([`MemoryPeers`]).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;

use super::local::{LocalStore, SnapshotId};
use crate::discovery::NodeInfo;
use crate::etag::Etag;
use crate::manifest::{ChunkHash, SignedManifest};
use crate::node::NodeId;
use crate::store::Bitmap;
use crate::wire::PeerHint;

/// A failed request to a peer.
#[derive(Debug, thiserror::Error)]
#[error("peer {peer}: {message}")]
pub struct PeerError {
    /// Which peer.
    pub peer: NodeId,
    /// What went wrong.
    pub message: String,
    /// Whether the peer broke the protocol (as opposed to a network failure).
    pub peer_fault: bool,
    /// Whether the peer refused because all its upload slots are taken (ask another, or it
    /// again a little later).
    pub busy: bool,
}

impl PeerError {
    /// A failure that is nobody's fault (the peer is unreachable, the connection dropped).
    pub fn lost(peer: NodeId, message: impl Into<String>) -> PeerError {
        PeerError {
            peer,
            message: message.into(),
            peer_fault: false,
            busy: false,
        }
    }
}

/// What one node holds of a blob: which chunks, and the hash it vouches for each.
#[derive(Debug, Clone)]
pub struct BlobHave {
    /// Chunks present.
    pub chunks: Bitmap,
    /// BLAKE3 per chunk as the peer vouches for it (asked only when no signed manifest is known).
    pub hashes: Option<Vec<Option<ChunkHash>>>,
}

/// Requests to other nodes.
#[async_trait::async_trait]
pub trait Peers: Send + Sync + 'static {
    /// The signed manifest of a snapshot, if the peer holds it whole.
    async fn manifest(
        &self,
        peer: &NodeInfo,
        snapshot: &SnapshotId,
    ) -> Result<Option<SignedManifest>, PeerError>;
    /// What the peer holds of a blob (`None`: nothing), and other nodes that asked it about the
    /// blob lately (peer exchange). `me` is the asker; `listed`: the peer was found in the DHT's
    /// provider list (only then does the question make it count as a co-puller).
    async fn have(
        &self,
        me: &NodeInfo,
        peer: &NodeInfo,
        etag: &Etag,
        with_hashes: bool,
        listed: bool,
    ) -> Result<(Option<BlobHave>, Vec<NodeInfo>), PeerError>;
    /// Chunks `first..first+count` of a blob: calls `on_chunk` with each one the peer sends
    /// (unverified), in order, as it arrives (so it can be checked and written while the next
    /// one is on the wire). An error may come after some chunks were handed over.
    async fn chunks(
        &self,
        peer: &NodeInfo,
        etag: &Etag,
        first: u64,
        count: u32,
        on_chunk: &mut (dyn FnMut(u64, Bytes) + Send),
    ) -> Result<(), PeerError>;
    /// Round-trip time to the peer, if measured.
    fn rtt(&self, peer: &NodeId) -> Duration;
}

/// Nodes in one process, reached by calling their stores directly. A node can be made to lie
/// (corrupt chunks), disappear, or fall silent, for tests.
#[derive(Default, Clone)]
pub struct MemoryPeers {
    nodes: Arc<Mutex<HashMap<NodeId, MemoryNode>>>,
}

#[derive(Clone)]
struct MemoryNode {
    store: Arc<LocalStore>,
    corrupt: bool,
    /// Requests are never answered (a host that died without a word: its datagrams go nowhere).
    silent: bool,
    /// Chunk requests answered before the node vanishes (`None`: never).
    dies_after: Option<Arc<std::sync::atomic::AtomicI64>>,
    /// Chunk requests still to be refused as "busy".
    busy_for: Arc<std::sync::atomic::AtomicI64>,
}

impl MemoryPeers {
    /// An empty network.
    pub fn new() -> Self {
        Self::default()
    }

    /// Makes `id` reachable, serving from `store`.
    pub fn add(&self, id: NodeId, store: Arc<LocalStore>) {
        self.lock().insert(
            id,
            MemoryNode {
                store,
                corrupt: false,
                silent: false,
                dies_after: None,
                busy_for: Arc::default(),
            },
        );
    }

    /// Makes `id` unreachable.
    pub fn remove(&self, id: &NodeId) {
        self.lock().remove(id);
    }

    /// Makes `id` flip a byte of every chunk it sends.
    pub fn corrupt(&self, id: &NodeId) {
        if let Some(n) = self.lock().get_mut(id) {
            n.corrupt = true;
        }
    }

    /// Makes `id` answer no request any more: each one waits forever (the caller's timeouts
    /// apply), as one to a host that died does until the handshake times out.
    pub fn silence(&self, id: &NodeId) {
        if let Some(n) = self.lock().get_mut(id) {
            n.silent = true;
        }
    }

    /// Makes `id` answer `requests` more chunk requests, then become unreachable.
    pub fn die_after(&self, id: &NodeId, requests: i64) {
        if let Some(n) = self.lock().get_mut(id) {
            n.dies_after = Some(Arc::new(std::sync::atomic::AtomicI64::new(requests)));
        }
    }

    /// Makes `id` refuse its next `requests` chunk requests as busy.
    pub fn busy_for(&self, id: &NodeId, requests: i64) {
        if let Some(n) = self.lock().get_mut(id) {
            n.busy_for
                .store(requests, std::sync::atomic::Ordering::SeqCst);
        }
    }

    /// How many more chunk requests `id` will refuse as busy.
    pub fn busy_left(&self, id: &NodeId) -> i64 {
        let left = self.lock().get(id).map(|n| n.busy_for.clone());
        left.map_or(0, |b| b.load(std::sync::atomic::Ordering::SeqCst).max(0))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<NodeId, MemoryNode>> {
        self.nodes.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The node `peer` names; never returns for a silent one.
    async fn node(&self, peer: &NodeInfo) -> Result<MemoryNode, PeerError> {
        let node = self.lock().get(&peer.id).cloned();
        match node {
            Some(n) if n.silent => std::future::pending().await,
            Some(n) => Ok(n),
            None => Err(PeerError::lost(peer.id, "unreachable")),
        }
    }
}

#[async_trait::async_trait]
impl Peers for MemoryPeers {
    async fn manifest(
        &self,
        peer: &NodeInfo,
        s: &SnapshotId,
    ) -> Result<Option<SignedManifest>, PeerError> {
        Ok(self.node(peer).await?.store.manifest(s.0, &s.1, &s.2))
    }

    async fn have(
        &self,
        me: &NodeInfo,
        peer: &NodeInfo,
        etag: &Etag,
        with_hashes: bool,
        listed: bool,
    ) -> Result<(Option<BlobHave>, Vec<NodeInfo>), PeerError> {
        let store = self.node(peer).await?.store;
        let (have, others) = store.swarm(etag, &hint(me), listed);
        let have = have.map(|chunks| BlobHave {
            chunks,
            hashes: with_hashes.then(|| store.chunk_hashes(etag)).flatten(),
        });
        Ok((have, others.into_iter().map(node_info).collect()))
    }

    async fn chunks(
        &self,
        peer: &NodeInfo,
        etag: &Etag,
        first: u64,
        count: u32,
        on_chunk: &mut (dyn FnMut(u64, Bytes) + Send),
    ) -> Result<(), PeerError> {
        let node = self.node(peer).await?;
        if let Some(left) = &node.dies_after {
            if left.fetch_sub(1, std::sync::atomic::Ordering::SeqCst) <= 0 {
                self.remove(&peer.id);
                return Err(PeerError::lost(peer.id, "connection lost"));
            }
        }
        if node
            .busy_for
            .fetch_sub(1, std::sync::atomic::Ordering::SeqCst)
            > 0
        {
            return Err(PeerError {
                busy: true,
                ..PeerError::lost(peer.id, "busy: every upload slot is taken")
            });
        }
        let (etag, id) = (etag.clone(), peer.id);
        let chunks = tokio::task::spawn_blocking(move || {
            let mut out = Vec::new();
            for i in first..first + u64::from(count) {
                let read = node
                    .store
                    .read_chunk(&etag, i)
                    .map_err(|e| PeerError::lost(id, e.to_string()))?;
                if let Some(data) = read {
                    let data = match node.corrupt && !data.is_empty() {
                        true => {
                            let mut bad = data.to_vec();
                            bad[0] ^= 0xff;
                            Bytes::from(bad)
                        }
                        false => data,
                    };
                    out.push((i, data));
                }
            }
            Ok(out)
        })
        .await
        .map_err(|e| PeerError::lost(id, e.to_string()))??;
        for (i, data) in chunks {
            on_chunk(i, data);
        }
        Ok(())
    }

    fn rtt(&self, _peer: &NodeId) -> Duration {
        Duration::ZERO
    }
}

/// A node as peer exchange names it.
fn hint(n: &NodeInfo) -> PeerHint {
    PeerHint {
        node: n.id,
        addr: n.addr,
        topology: n.topology.clone(),
    }
}

/// A node named by peer exchange, to dial.
fn node_info(h: PeerHint) -> NodeInfo {
    NodeInfo {
        id: h.node,
        addr: h.addr,
        topology: h.topology,
    }
}

fn transfer_error(peer: &NodeInfo, e: crate::transfer::TransferError) -> PeerError {
    PeerError {
        peer: peer.id,
        peer_fault: e.is_peer_fault(),
        busy: e.is_busy(),
        message: e.to_string(),
    }
}

#[async_trait::async_trait]
impl Peers for crate::transfer::Transfer {
    async fn manifest(
        &self,
        peer: &NodeInfo,
        s: &SnapshotId,
    ) -> Result<Option<SignedManifest>, PeerError> {
        let conn = self
            .connect(peer)
            .await
            .map_err(|e| transfer_error(peer, e))?;
        conn.manifest(s.0, &s.1, &s.2)
            .await
            .map_err(|e| transfer_error(peer, e))
    }

    async fn have(
        &self,
        _me: &NodeInfo,
        peer: &NodeInfo,
        etag: &Etag,
        with_hashes: bool,
        listed: bool,
    ) -> Result<(Option<BlobHave>, Vec<NodeInfo>), PeerError> {
        let conn = self
            .connect(peer)
            .await
            .map_err(|e| transfer_error(peer, e))?;
        let item = crate::wire::AskItem {
            etag: etag.clone(),
            listed,
            hashes: with_hashes,
        };
        let asked = conn.ask(item).await.map_err(|e| transfer_error(peer, e))?;
        let others = asked.others.into_iter().map(node_info).collect();
        let Some(chunks) = asked.have else {
            return Ok((None, others));
        };
        let hashes = asked.hashes;
        Ok((Some(BlobHave { chunks, hashes }), others))
    }

    async fn chunks(
        &self,
        peer: &NodeInfo,
        etag: &Etag,
        first: u64,
        count: u32,
        on_chunk: &mut (dyn FnMut(u64, Bytes) + Send),
    ) -> Result<(), PeerError> {
        let conn = self
            .connect(peer)
            .await
            .map_err(|e| transfer_error(peer, e))?;
        conn.chunks(etag, first, count, on_chunk)
            .await
            .map_err(|e| transfer_error(peer, e))?;
        Ok(())
    }

    fn rtt(&self, peer: &NodeId) -> Duration {
        self.stats()
            .into_iter()
            .find(|s| s.id == *peer)
            .and_then(|s| s.rtt)
            .unwrap_or(Duration::from_millis(1))
    }
}
