//! The composition root of a node: store → QUIC transfer → libp2p discovery → announce loop →
//! mesh, started in that order and stopped in reverse on one cancellation token.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::discovery::libp2p::{Libp2pConfig, Libp2pDiscovery};
use crate::discovery::NodeInfo;
use crate::hub::{HubClient, HubConfig};
use crate::mesh::{announce, LocalStore, Mesh, MeshConfig, MeshCounters, MeshReport};
use crate::node::{ClusterSecret, NodeId, NodeKey, Topology};
use crate::progress::Progress;
use crate::pull::PullError;
use crate::repo::RepoRef;
use crate::transfer::{ChunkSource, Transfer, TransferConfig};

/// Everything a node needs, resolved.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// The HF cache tree.
    pub cache_dir: PathBuf,
    /// hfmesh's own state (node key, manifests).
    pub state_dir: PathBuf,
    /// The Hub.
    pub hub: HubConfig,
    /// The cluster secret.
    pub cluster: ClusterSecret,
    /// The node key.
    pub key: NodeKey,
    /// Zone and rack.
    pub topology: Topology,
    /// libp2p (TCP) listen address.
    pub p2p_listen: SocketAddr,
    /// QUIC (UDP) listen address for chunk transfers.
    pub quic_listen: SocketAddr,
    /// Other nodes' libp2p addresses.
    pub bootstrap: Vec<SocketAddr>,
    /// Find peers by mDNS too.
    pub mdns: bool,
    /// Pull tuning.
    pub mesh: MeshConfig,
    /// Provider record lifetime in the DHT.
    pub provider_ttl: Duration,
}

/// A startup failure.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The state or cache directory could not be used.
    #[error("cannot use {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The QUIC endpoint could not start.
    #[error("cannot start the transfer endpoint on {addr}: {source}")]
    Transfer {
        addr: SocketAddr,
        source: crate::transfer::TransferError,
    },
    /// The DHT could not start.
    #[error("cannot start discovery on {addr}: {source}")]
    Discovery {
        addr: SocketAddr,
        source: crate::discovery::DiscoveryError,
    },
    /// The HTTP client could not be built.
    #[error("cannot set up the Hub client: {0}")]
    Hub(#[from] reqwest::Error),
}

/// A running node.
pub struct Node {
    /// Pulls through the mesh.
    pub mesh: Arc<Mesh>,
    /// The QUIC endpoint.
    pub transfer: Transfer,
    /// The DHT.
    pub discovery: Libp2pDiscovery,
    stop: CancellationToken,
    tasks: TaskTracker,
}

impl Node {
    /// Starts a node that serves its holdings as they are.
    pub async fn start(cfg: NodeConfig) -> Result<Node, StartError> {
        Node::start_with(cfg, |store| store).await
    }

    /// Starts a node whose transfer endpoint serves through `serve` (tests wrap the store to make
    /// a node misbehave).
    pub async fn start_with(
        cfg: NodeConfig,
        serve: impl FnOnce(Arc<LocalStore>) -> Arc<dyn ChunkSource>,
    ) -> Result<Node, StartError> {
        let store = Arc::new(LocalStore::open(&cfg.cache_dir, &cfg.state_dir).map_err(
            |source| StartError::Io {
                path: cfg.state_dir.clone(),
                source,
            },
        )?);
        let transfer_cfg = TransferConfig {
            key: cfg.key.clone(),
            cluster: cfg.cluster.clone(),
            topology: cfg.topology.clone(),
            listen: cfg.quic_listen,
        };
        let transfer = Transfer::bind(transfer_cfg, serve(store.clone()))
            .await
            .map_err(|source| StartError::Transfer {
                addr: cfg.quic_listen,
                source,
            })?;
        if let Some(limit) = cfg.mesh.limits.upload.clone() {
            transfer.limit_uploads(limit);
        }
        let me = NodeInfo {
            id: cfg.key.id(),
            addr: transfer.local_addr(),
            topology: cfg.topology.clone(),
        };
        let mut dcfg = Libp2pConfig::new(
            cfg.key.clone(),
            cfg.cluster.clone(),
            cfg.p2p_listen,
            me.clone(),
        );
        dcfg.bootstrap = cfg.bootstrap.clone();
        dcfg.mdns = cfg.mdns;
        dcfg.provider_ttl = cfg.provider_ttl;
        dcfg.reprovide_interval = cfg.provider_ttl / 3;
        let discovery =
            Libp2pDiscovery::spawn(dcfg)
                .await
                .map_err(|source| StartError::Discovery {
                    addr: cfg.p2p_listen,
                    source,
                })?;
        let stop = CancellationToken::new();
        let tasks = TaskTracker::new();
        let shared: Arc<dyn crate::discovery::Discovery> = Arc::new(discovery.clone());
        tasks.spawn(announce::run(store.clone(), shared.clone(), stop.clone()));
        let mesh = Arc::new(Mesh {
            me,
            key: cfg.key.clone(),
            hub: HubClient::new(cfg.hub.clone())?,
            cache_root: cfg.cache_dir.clone(),
            discovery: shared,
            peers: Arc::new(transfer.clone()),
            store,
            cfg: cfg.mesh.clone(),
            counters: Arc::new(MeshCounters::default()),
        });
        Ok(Node {
            mesh,
            transfer,
            discovery,
            stop,
            tasks,
        })
    }

    /// This node's id.
    pub fn id(&self) -> NodeId {
        self.mesh.me.id
    }

    /// The libp2p address others bootstrap from.
    pub fn p2p_addr(&self) -> SocketAddr {
        self.discovery.listen_addr()
    }

    /// Pulls a snapshot through the mesh.
    pub async fn pull(
        &self,
        what: &RepoRef,
        progress: Arc<dyn Progress>,
    ) -> Result<MeshReport, PullError> {
        self.mesh.pull(what, progress).await
    }

    /// Stops in reverse order: the announce loop, then the transfer endpoint (draining uploads),
    /// then the DHT; last, the chunk records of blobs still arriving are saved.
    pub async fn shutdown(&self) {
        self.stop.cancel();
        self.tasks.close();
        self.tasks.wait().await;
        self.transfer.shutdown().await;
        self.discovery.shutdown().await;
        let store = self.mesh.store.clone();
        let _ = tokio::task::spawn_blocking(move || store.checkpoint_partials()).await;
    }
}
