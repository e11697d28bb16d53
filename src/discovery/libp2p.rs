//! The libp2p Kademlia implementation of [`Discovery`]: a private DHT of hfmesh nodes.
//!
//! - Transport: TCP, then libp2p's private-network layer (`pnet`) keyed by the cluster secret
//!   ([`ClusterSecret::pnet_key`]), then noise (authenticated by the node key) and yamux. A node
//!   without the secret cannot complete a connection, so it can neither join the DHT nor learn
//!   anything from it.
//! - Kademlia under the private protocol [`KAD_PROTOCOL`] (never the public IPFS DHT), always in
//!   server mode, with provider records for [`ContentKey::digest`].
//! - identify (protocol version [`IDENTIFY_PROTOCOL`]) carries each node's QUIC port and topology
//!   labels in its agent version (see `libp2p/agent.rs`).
//!
//! One task owns the `Swarm` (`libp2p/swarm.rs`, built in `libp2p/build.rs`); [`Libp2pDiscovery`] is a cloneable handle that
//! sends it commands over a bounded channel and waits for each reply with a deadline.

mod agent;
mod build;
mod lookup;
mod swarm;

use std::net::SocketAddr;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use super::{ContentKey, Discovery, DiscoveryError, NodeInfo};
use crate::node::{ClusterSecret, NodeKey};
use swarm::Command;

/// The Kademlia protocol name of hfmesh's DHT.
pub const KAD_PROTOCOL: &str = "/hfmesh/kad/1.0.0";
/// The identify protocol version hfmesh nodes announce and require from each other. (libp2p
/// fixes identify's stream protocol to `/ipfs/id/1.0.0`; this is the version field inside it,
/// and the stream is only reachable through the cluster's pnet anyway.)
pub const IDENTIFY_PROTOCOL: &str = "/hfmesh/id/1.0.0";
/// Capacity of the command channel to the swarm task; callers wait (within their deadline) when
/// it is full.
const COMMAND_QUEUE: usize = 64;
/// Extra time a caller waits beyond the swarm's own deadline for a query, so that the swarm task
/// answers with partial results before the caller gives up.
const REPLY_SLACK: Duration = Duration::from_secs(2);

/// Settings of a [`Libp2pDiscovery`].
#[derive(Debug, Clone)]
pub struct Libp2pConfig {
    /// The node key; the libp2p identity is built from it, so the peer id is the [`NodeId`].
    ///
    /// [`NodeId`]: crate::node::NodeId
    pub key: NodeKey,
    /// The cluster secret; its pnet key admits connections.
    pub cluster: ClusterSecret,
    /// The TCP address libp2p listens on (port 0 picks a free port).
    pub listen: SocketAddr,
    /// What this node advertises: its QUIC transfer endpoint and topology. `local.id` must be
    /// `key.id()`. An unspecified IP (`0.0.0.0`) lets peers use the IP they see us connect from.
    pub local: NodeInfo,
    /// Other nodes' libp2p TCP addresses to join through (their peer ids need not be known).
    pub bootstrap: Vec<SocketAddr>,
    /// Whether to also find peers by mDNS (only on a flat LAN).
    pub mdns: bool,
    /// How long other nodes keep a provider record of ours. Also bounds how long a withdrawn
    /// record can still be found (Kademlia has no delete).
    pub provider_ttl: Duration,
    /// How often our provider records are announced again; must be shorter than
    /// `provider_ttl`.
    pub reprovide_interval: Duration,
    /// Deadline of one DHT query (and of a `providers` call as a whole).
    pub query_timeout: Duration,
}

impl Libp2pConfig {
    /// Default provider record lifetime: one hour.
    pub const DEFAULT_PROVIDER_TTL: Duration = Duration::from_secs(3600);
    /// Default re-announce interval: twenty minutes.
    pub const DEFAULT_REPROVIDE_INTERVAL: Duration = Duration::from_secs(20 * 60);
    /// Default query deadline: ten seconds.
    pub const DEFAULT_QUERY_TIMEOUT: Duration = Duration::from_secs(10);

    /// A config with the defaults: no bootstrap peers, no mDNS, the default durations.
    pub fn new(
        key: NodeKey,
        cluster: ClusterSecret,
        listen: SocketAddr,
        local: NodeInfo,
    ) -> Libp2pConfig {
        Libp2pConfig {
            key,
            cluster,
            listen,
            local,
            bootstrap: Vec::new(),
            mdns: false,
            provider_ttl: Self::DEFAULT_PROVIDER_TTL,
            reprovide_interval: Self::DEFAULT_REPROVIDE_INTERVAL,
            query_timeout: Self::DEFAULT_QUERY_TIMEOUT,
        }
    }
}

/// A handle to the libp2p discovery service. Cheap to clone; every clone talks to the same
/// swarm task. The task stops on [`Libp2pDiscovery::shutdown`] or when every handle is dropped.
#[derive(Debug, Clone)]
pub struct Libp2pDiscovery {
    commands: mpsc::Sender<Command>,
    local: NodeInfo,
    listen: SocketAddr,
    query_timeout: Duration,
}

impl Libp2pDiscovery {
    /// Starts the swarm task. When this returns the node listens on [`Self::listen_addr`] and
    /// has started dialing its bootstrap peers.
    pub async fn spawn(cfg: Libp2pConfig) -> Result<Libp2pDiscovery, DiscoveryError> {
        if cfg.local.id != cfg.key.id() {
            return Err(DiscoveryError::Other(
                "the advertised node id is not the node key's id".into(),
            ));
        }
        if cfg.reprovide_interval >= cfg.provider_ttl || cfg.reprovide_interval.is_zero() {
            return Err(DiscoveryError::Other(format!(
                "the reprovide interval ({:?}) must be non-zero and shorter than the provider \
                 record TTL ({:?})",
                cfg.reprovide_interval, cfg.provider_ttl
            )));
        }
        let (tx, rx) = mpsc::channel(COMMAND_QUEUE);
        let local = cfg.local.clone();
        let query_timeout = cfg.query_timeout;
        let listen = swarm::start(cfg, rx).await?;
        Ok(Libp2pDiscovery {
            commands: tx,
            local,
            listen,
            query_timeout,
        })
    }

    /// The TCP address libp2p listens on (the real port when the config asked for port 0).
    pub fn listen_addr(&self) -> SocketAddr {
        self.listen
    }

    /// Dials a peer at `addr` and adds it to the routing table once connected. Fails when the
    /// connection cannot be made (unreachable, or not a member of this cluster).
    pub async fn add_peer(&self, addr: SocketAddr) -> Result<(), DiscoveryError> {
        self.request(self.query_timeout, |reply| Command::AddPeer { addr, reply })
            .await?
    }

    /// Stops the swarm task and waits until it has closed its connections. Later calls on any
    /// clone return [`DiscoveryError::Stopped`].
    pub async fn shutdown(&self) {
        let _ = self
            .request(self.query_timeout, |reply| Command::Shutdown { reply })
            .await;
    }

    /// Sends a command and waits for its reply, both within `deadline`.
    async fn request<T>(
        &self,
        deadline: Duration,
        command: impl FnOnce(oneshot::Sender<T>) -> Command,
    ) -> Result<T, DiscoveryError> {
        let (reply, answer) = oneshot::channel();
        let exchange = async {
            self.commands
                .send(command(reply))
                .await
                .map_err(|_| DiscoveryError::Stopped)?;
            answer.await.map_err(|_| DiscoveryError::Stopped)
        };
        tokio::time::timeout(deadline, exchange)
            .await
            .map_err(|_| DiscoveryError::Timeout(deadline))?
    }
}

#[async_trait::async_trait]
impl Discovery for Libp2pDiscovery {
    fn local(&self) -> NodeInfo {
        self.local.clone()
    }

    /// Stores the provider record locally and announces it to the closest nodes; returns when
    /// the announcement finished (reached peers or not: the record is re-announced every
    /// `reprovide_interval` until withdrawn).
    async fn provide(&self, key: ContentKey) -> Result<(), DiscoveryError> {
        let key = key.digest();
        self.request(self.query_timeout + REPLY_SLACK, |reply| Command::Provide {
            key,
            reply,
        })
        .await?
    }

    /// Stops announcing `key` and forgets it. Kademlia has no delete: copies of our provider
    /// record already stored by other nodes stay findable until they expire, at most
    /// `provider_ttl` after our last announcement. A short TTL (with a proportionally short
    /// reprovide interval) bounds that staleness; callers must in any case treat providers as
    /// hints (a transfer from a node that no longer holds the content simply fails over).
    async fn withdraw(&self, key: ContentKey) -> Result<(), DiscoveryError> {
        let key = key.digest();
        self.request(self.query_timeout, |reply| Command::Withdraw { key, reply })
            .await
    }

    /// Looks up providers of `key`, stopping at `limit` fully identified providers, when the
    /// lookup ends, or after `query_timeout` (then with what was found so far). Providers not
    /// yet identified are dialed and identified first; those that cannot be are left out.
    async fn providers(
        &self,
        key: ContentKey,
        limit: usize,
    ) -> Result<Vec<NodeInfo>, DiscoveryError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let key = key.digest();
        self.request(self.query_timeout + REPLY_SLACK, |reply| {
            Command::Providers { key, limit, reply }
        })
        .await
    }

    /// Identified peers (connected, or still in the routing table).
    async fn peers(&self) -> Vec<NodeInfo> {
        self.request(self.query_timeout, |reply| Command::Peers { reply })
            .await
            .unwrap_or_default()
    }
}
