//! Live cluster holdings: ask one node, or every node this agent knows, what it holds, over the
//! transfer protocol's `Holdings` request. Peers are asked concurrently (at most
//! [`MAX_CONCURRENT_ASKS`] at once), each within [`PEER_HOLDINGS_TIMEOUT`]; a peer that does not
//! answer is reported with its error rather than failing the whole answer.

use std::sync::Arc;
use std::time::Duration;

use futures_util::stream::{self, StreamExt};
use serde::{Deserialize, Serialize};

use super::daemon::Daemon;
use crate::discovery::{Discovery, NodeInfo};
use crate::transfer::{Transfer, TransferError};
use crate::wire::{HeldBlob, HeldSnapshot, Holdings};

/// How long one peer may take to connect and answer a holdings request.
pub const PEER_HOLDINGS_TIMEOUT: Duration = Duration::from_secs(5);

/// Most peers asked at the same time by `?all=true`.
pub const MAX_CONCURRENT_ASKS: usize = 64;

/// One node's holdings in `GET /v1/holdings?peer=ID` and `?all=true`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NodeHoldingsReport {
    /// The node id.
    pub id: String,
    /// Its QUIC address.
    pub addr: String,
    /// Zone label.
    pub zone: Option<String>,
    /// Rack label.
    pub rack: Option<String>,
    /// Whether this is the agent's own node (answered from its store, not over the network).
    pub local: bool,
    /// Why the node did not answer; the lists are then empty.
    pub error: Option<String>,
    /// Whether the node holds more than the lists show (see `wire::MAX_HELD_SNAPSHOTS`).
    pub truncated: bool,
    /// Complete snapshots.
    pub snapshots: Vec<HeldSnapshotReport>,
    /// Blobs, partial ones first.
    pub blobs: Vec<HeldBlobReport>,
}

/// A complete snapshot a node holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HeldSnapshotReport {
    /// `model` or `dataset`.
    pub kind: String,
    /// Repository id.
    pub repo: String,
    /// Commit.
    pub commit: String,
    /// Files in the snapshot.
    pub files: u64,
    /// Bytes of its files.
    pub bytes: u64,
}

/// A blob a node holds, complete or partial.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HeldBlobReport {
    /// Its etag (sha256 of an LFS file, git blob id otherwise).
    pub etag: String,
    /// Size in bytes.
    pub size: u64,
    /// Chunks present and verified.
    pub chunks_present: u64,
    /// Chunks of the whole blob.
    pub chunks_total: u64,
    /// Whether every chunk is present.
    pub complete: bool,
}

impl From<&HeldSnapshot> for HeldSnapshotReport {
    fn from(s: &HeldSnapshot) -> Self {
        HeldSnapshotReport {
            kind: s.kind.to_string(),
            repo: s.repo.to_string(),
            commit: s.commit.to_string(),
            files: s.files,
            bytes: s.bytes,
        }
    }
}

impl From<&HeldBlob> for HeldBlobReport {
    fn from(b: &HeldBlob) -> Self {
        HeldBlobReport {
            etag: b.etag.to_string(),
            size: b.size,
            chunks_present: b.present,
            chunks_total: b.chunks,
            complete: b.is_complete(),
        }
    }
}

/// The report of `node`: its holdings, or why it gave none.
fn report(node: &NodeInfo, local: bool, held: Result<Holdings, String>) -> NodeHoldingsReport {
    let (held, error) = match held {
        Ok(h) => (h, None),
        Err(e) => (Holdings::default(), Some(e)),
    };
    NodeHoldingsReport {
        id: node.id.to_string(),
        addr: node.addr.to_string(),
        zone: node.topology.zone.clone(),
        rack: node.topology.rack.clone(),
        local,
        error,
        truncated: held.truncated,
        snapshots: held.snapshots.iter().map(Into::into).collect(),
        blobs: held.blobs.iter().map(Into::into).collect(),
    }
}

/// Why a node named by an operator cannot be asked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FindPeerError {
    /// No known node has that id (or id suffix).
    #[error("no known node has the id `{0}`: see `hfmesh peers` for the peers this agent knows")]
    Unknown(String),
    /// Several known nodes end with that suffix.
    #[error("`{0}` matches {1} nodes: give more of the id")]
    Ambiguous(String, usize),
}

/// The node whose id is `query`, or ends with it (the short ids of tables), among `nodes`.
pub fn find_peer<'a>(nodes: &'a [NodeInfo], query: &str) -> Result<&'a NodeInfo, FindPeerError> {
    let query = query.trim();
    let ids: Vec<String> = nodes.iter().map(|n| n.id.to_string()).collect();
    if let Some(i) = ids.iter().position(|id| id == query) {
        return Ok(&nodes[i]);
    }
    let matches: Vec<usize> = (0..nodes.len())
        .filter(|&i| !query.is_empty() && ids[i].ends_with(query))
        .collect();
    match matches.as_slice() {
        [i] => Ok(&nodes[*i]),
        [] => Err(FindPeerError::Unknown(query.to_string())),
        many => Err(FindPeerError::Ambiguous(query.to_string(), many.len())),
    }
}

/// Asks `peer` what it holds, connecting if needed, within [`PEER_HOLDINGS_TIMEOUT`].
pub async fn ask_peer(transfer: &Transfer, peer: &NodeInfo) -> Result<Holdings, TransferError> {
    let ask = async { transfer.connect(peer).await?.holdings().await };
    tokio::time::timeout(PEER_HOLDINGS_TIMEOUT, ask)
        .await
        .map_err(|_| TransferError::Timeout {
            what: "the holdings answer",
            after: PEER_HOLDINGS_TIMEOUT,
        })?
}

/// What this node holds, read from its store on the blocking pool.
async fn local_holdings(d: &Daemon) -> Result<Holdings, String> {
    let store = d.node.mesh.store.clone();
    tokio::task::spawn_blocking(move || store.holdings())
        .await
        .map_err(|e| format!("reading the local store failed: {e}"))
}

/// The report of one node: this one from its store, a peer over the network.
pub async fn node_report(d: &Daemon, node: &NodeInfo) -> NodeHoldingsReport {
    if node.id == d.node.mesh.me.id {
        return report(node, true, local_holdings(d).await);
    }
    let held = ask_peer(&d.node.transfer, node)
        .await
        .map_err(|e| e.to_string());
    report(node, false, held)
}

/// This node and every peer it knows, with what each holds: this node first, then the peers
/// by id, those that did not answer included with their error.
pub async fn cluster(d: &Arc<Daemon>) -> Vec<NodeHoldingsReport> {
    let mut nodes = d.node.discovery.peers().await;
    nodes.retain(|p| p.id != d.node.mesh.me.id);
    nodes.sort_by_key(|p| p.id);
    nodes.insert(0, d.node.mesh.me.clone());
    // Owned futures: a stream of futures borrowing `nodes` would not be `Send` for every
    // lifetime, which axum handlers must be.
    let asks: Vec<_> = nodes
        .into_iter()
        .map(|n| {
            let d = d.clone();
            async move { node_report(&d, &n).await }
        })
        .collect();
    stream::iter(asks)
        .buffered(MAX_CONCURRENT_ASKS)
        .collect()
        .await
}

/// The node an operator named by `query` (this node or a known peer).
pub async fn lookup(d: &Daemon, query: &str) -> Result<NodeInfo, FindPeerError> {
    let mut nodes = d.node.discovery.peers().await;
    nodes.push(d.node.mesh.me.clone());
    find_peer(&nodes, query).cloned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::{NodeKey, Topology};

    fn node(n: u8) -> NodeInfo {
        NodeInfo {
            id: NodeKey::from_secret([n; 32]).id(),
            addr: "127.0.0.1:1".parse().unwrap(),
            topology: Topology::default(),
        }
    }

    #[test]
    fn peers_are_found_by_full_id_or_unique_suffix() {
        let nodes = [node(1), node(2)];
        let full = nodes[1].id.to_string();
        assert_eq!(find_peer(&nodes, &full).unwrap().id, nodes[1].id);
        assert_eq!(
            find_peer(&nodes, &format!(" {} ", nodes[0].id.short()))
                .unwrap()
                .id,
            nodes[0].id
        );
        assert_eq!(
            find_peer(&nodes, "nope"),
            Err(FindPeerError::Unknown("nope".into()))
        );
        assert!(matches!(
            find_peer(&nodes, ""),
            Err(FindPeerError::Unknown(_))
        ));
        // Two entries whose ids share a suffix (here: the same node listed twice).
        let twice = [node(1), node(1)];
        let short = twice[0].id.short();
        assert_eq!(
            find_peer(&twice, &short),
            Err(FindPeerError::Ambiguous(short.clone(), 2))
        );
    }

    #[test]
    fn a_silent_peer_is_reported_with_its_error_and_no_holdings() {
        let r = report(&node(1), false, Err("timed out".into()));
        assert_eq!(r.error.as_deref(), Some("timed out"));
        assert!(r.snapshots.is_empty() && r.blobs.is_empty() && !r.local);
    }
}
