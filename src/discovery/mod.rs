//! Discovery: who holds what. Nodes advertise provider records for the snapshots and blobs they
//! hold (also those still downloading) and look up the providers of what they miss.
//!
//! Callers see only the [`Discovery`] trait. [`MemoryDiscovery`] is an in-process directory for
//! tests and the simulator; the libp2p Kademlia implementation lives in `libp2p.rs` and is the
//! only code that names libp2p types.

/// The libp2p Kademlia implementation.
pub mod libp2p;
/// The in-memory implementation.
pub mod memory;

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

pub use self::libp2p::{Libp2pConfig, Libp2pDiscovery};
pub use memory::{MemoryDirectory, MemoryDiscovery};

use crate::etag::Etag;
use crate::node::{NodeId, Topology};
use crate::repo::{CommitId, RepoId, RepoKind};

/// What a node advertises it holds.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ContentKey {
    /// A snapshot: the node can serve its manifest (and some or all of its blobs).
    Snapshot {
        kind: RepoKind,
        repo: RepoId,
        commit: CommitId,
    },
    /// A blob, complete or partial.
    Blob(Etag),
}

impl ContentKey {
    /// The 32-byte DHT key: a BLAKE3 derivation that keeps snapshot and blob keys apart.
    pub fn digest(&self) -> [u8; 32] {
        match self {
            ContentKey::Snapshot { kind, repo, commit } => {
                let text = format!("{}\0{repo}\0{commit}", kind.plural());
                blake3::derive_key("hfmesh dht snapshot key v1", text.as_bytes())
            }
            ContentKey::Blob(etag) => {
                blake3::derive_key("hfmesh dht blob key v1", etag.as_str().as_bytes())
            }
        }
    }
}

/// How to reach a node and where it sits.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct NodeInfo {
    /// The node's id (its public key).
    pub id: NodeId,
    /// Its QUIC transfer endpoint.
    pub addr: SocketAddr,
    /// Its zone and rack labels.
    pub topology: Topology,
}

/// Provider records the DHT keeps per key (libp2p Kademlia's record store default): past this
/// many nodes holding a blob, the others are found by peer exchange.
pub const DHT_PROVIDERS_PER_KEY: usize = 20;

/// A failed discovery operation.
#[derive(Debug, thiserror::Error)]
pub enum DiscoveryError {
    /// The discovery task is gone (shut down or crashed).
    #[error("the discovery service has stopped")]
    Stopped,
    /// The operation did not finish within its deadline.
    #[error("discovery timed out after {0:?}")]
    Timeout(std::time::Duration),
    /// Anything else the DHT reported.
    #[error("discovery failed: {0}")]
    Other(String),
}

/// Advertising and finding content in the cluster.
#[async_trait::async_trait]
pub trait Discovery: Send + Sync + 'static {
    /// This node, as others see it.
    fn local(&self) -> NodeInfo;
    /// Advertises that this node holds `key` (and keeps re-advertising it until withdrawn).
    async fn provide(&self, key: ContentKey) -> Result<(), DiscoveryError>;
    /// Stops advertising `key`.
    async fn withdraw(&self, key: ContentKey) -> Result<(), DiscoveryError>;
    /// Other nodes that advertise `key` (never this node), at most `limit`.
    async fn providers(
        &self,
        key: ContentKey,
        limit: usize,
    ) -> Result<Vec<NodeInfo>, DiscoveryError>;
    /// Nodes currently known (connected or in the routing table), with what is known of them.
    async fn peers(&self) -> Vec<NodeInfo>;
}
