//! The task that owns the libp2p `Swarm`: builds it, then serves commands from the handles and
//! swarm events in one loop. Provider lookups in flight live in [`super::lookup`].

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use futures_util::StreamExt;
use libp2p::core::{multiaddr::Protocol, transport::Transport as _, upgrade, Multiaddr};
use libp2p::identity::Keypair;
use libp2p::kad::{self, store::MemoryStore, store::MemoryStoreConfig, Mode, QueryResult};
use libp2p::pnet::{PnetConfig, PreSharedKey};
use libp2p::swarm::{
    behaviour::toggle::Toggle, dial_opts::DialOpts, dial_opts::PeerCondition, ConnectionId,
    NetworkBehaviour, SwarmEvent,
};
use libp2p::{identify, mdns, noise, tcp, yamux, PeerId, StreamProtocol, Swarm, SwarmBuilder};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use super::lookup::Lookups;
use super::{agent, Libp2pConfig, IDENTIFY_PROTOCOL, KAD_PROTOCOL};
use crate::discovery::{DiscoveryError, NodeInfo};
use crate::node::NodeId;

/// Most provider keys one node stores (its own and others'), bounding the store's memory.
const MAX_STORED_KEYS: usize = 100_000;
/// Deadline of the transport handshake (TCP + pnet + noise + yamux).
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a connection with no protocol activity stays open.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// How often the bootstrap addresses are dialed again while we have no connection at all.
const REDIAL_INTERVAL: Duration = Duration::from_secs(5);
/// How long `spawn` waits for the listener to report its address.
const LISTEN_TIMEOUT: Duration = Duration::from_secs(5);
/// Most listen addresses of one peer added to the routing table from identify.
const MAX_PEER_ADDRS: usize = 8;

/// A request from a handle to the swarm task.
pub(super) enum Command {
    Provide {
        key: [u8; 32],
        reply: oneshot::Sender<Result<(), DiscoveryError>>,
    },
    Withdraw {
        key: [u8; 32],
        reply: oneshot::Sender<()>,
    },
    Providers {
        key: [u8; 32],
        limit: usize,
        reply: oneshot::Sender<Vec<NodeInfo>>,
    },
    Peers {
        reply: oneshot::Sender<Vec<NodeInfo>>,
    },
    AddPeer {
        addr: SocketAddr,
        reply: oneshot::Sender<Result<(), DiscoveryError>>,
    },
    Shutdown {
        reply: oneshot::Sender<()>,
    },
}

#[derive(NetworkBehaviour)]
struct Behaviour {
    kad: kad::Behaviour<MemoryStore>,
    identify: identify::Behaviour,
    mdns: Toggle<mdns::tokio::Behaviour>,
}

/// Why we dialed an address whose peer id we did not know.
enum Dial {
    Bootstrap,
    AddPeer(oneshot::Sender<Result<(), DiscoveryError>>),
}

struct Actor {
    swarm: Swarm<Behaviour>,
    commands: mpsc::Receiver<Command>,
    local_peer: PeerId,
    /// The IP we listen on (decides whether loopback addresses are worth advertising).
    listen_ip: IpAddr,
    bootstrap: Vec<Multiaddr>,
    /// Only dial-by-address dials live here; they resolve on connection or failure.
    dials: HashMap<ConnectionId, Dial>,
    /// The remote IP of every open connection (for peers' QUIC addresses).
    connection_ips: HashMap<ConnectionId, IpAddr>,
    /// Peers that completed identify with a valid hfmesh advertisement.
    identified: HashMap<PeerId, NodeInfo>,
    /// Our keys being announced (kad's store re-announces them; this is what we promised).
    provided: HashSet<[u8; 32]>,
    /// `provide` calls waiting for their first announcement to finish.
    announcing: HashMap<kad::QueryId, oneshot::Sender<Result<(), DiscoveryError>>>,
    lookups: Lookups<kad::QueryId>,
    query_timeout: Duration,
}

/// Builds the swarm, starts listening, dials the bootstrap peers and spawns the task. Returns
/// the actual listen address.
pub(super) async fn start(
    cfg: Libp2pConfig,
    commands: mpsc::Receiver<Command>,
) -> Result<SocketAddr, DiscoveryError> {
    let mut swarm = build(&cfg)?;
    swarm
        .listen_on(multiaddr(cfg.listen))
        .map_err(|e| other(format!("cannot listen on {}: {e}", cfg.listen)))?;
    let listen = wait_listening(&mut swarm, &cfg).await?;
    let local_peer = *swarm.local_peer_id();
    tracing::debug!(%local_peer, %listen, "libp2p discovery listening");
    let mut actor = Actor {
        swarm,
        commands,
        local_peer,
        listen_ip: cfg.listen.ip(),
        bootstrap: cfg.bootstrap.iter().copied().map(multiaddr).collect(),
        dials: HashMap::new(),
        connection_ips: HashMap::new(),
        identified: HashMap::new(),
        provided: HashSet::new(),
        announcing: HashMap::new(),
        lookups: Lookups::default(),
        query_timeout: cfg.query_timeout,
    };
    actor.dial_bootstrap();
    tokio::spawn(actor.run());
    Ok(listen)
}

fn build(cfg: &Libp2pConfig) -> Result<Swarm<Behaviour>, DiscoveryError> {
    let keypair = Keypair::ed25519_from_bytes(cfg.key.secret())
        .map_err(|e| other(format!("invalid node key: {e}")))?;
    let psk = PreSharedKey::new(cfg.cluster.pnet_key());
    let agent_version = agent::encode(cfg.local.addr, &cfg.local.topology);
    agent::parse(&agent_version)
        .map_err(|e| other(format!("cannot advertise this node's labels: {e}")))?;
    let swarm = SwarmBuilder::with_existing_identity(keypair)
        .with_tokio()
        .with_other_transport(|key| {
            let noise = noise::Config::new(key)?;
            let transport = tcp::tokio::Transport::new(tcp::Config::default().nodelay(true))
                .and_then(move |socket, _| PnetConfig::new(psk).handshake(socket))
                .upgrade(upgrade::Version::V1Lazy)
                .authenticate(noise)
                .multiplex(yamux::Config::default())
                .timeout(HANDSHAKE_TIMEOUT);
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>(transport)
        })
        .map_err(|e| other(format!("cannot build the libp2p transport: {e}")))?
        .with_behaviour(|key| {
            let peer = key.public().to_peer_id();
            let mdns = if cfg.mdns {
                Some(mdns::tokio::Behaviour::new(mdns::Config::default(), peer)?)
            } else {
                None
            };
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>(Behaviour {
                kad: kademlia(peer, cfg),
                identify: identify::Behaviour::new(
                    identify::Config::new(IDENTIFY_PROTOCOL.to_string(), key.public())
                        .with_agent_version(agent_version),
                ),
                mdns: mdns.into(),
            })
        })
        .map_err(|e| other(format!("cannot start discovery: {e}")))?
        .with_swarm_config(|c| c.with_idle_connection_timeout(IDLE_TIMEOUT))
        .build();
    Ok(swarm)
}

fn kademlia(peer: PeerId, cfg: &Libp2pConfig) -> kad::Behaviour<MemoryStore> {
    let mut config = kad::Config::new(StreamProtocol::new(KAD_PROTOCOL));
    config
        .set_query_timeout(cfg.query_timeout)
        .set_provider_record_ttl(Some(cfg.provider_ttl))
        .set_provider_publication_interval(Some(cfg.reprovide_interval))
        // hfmesh stores no values, only provider records.
        .set_record_ttl(Some(cfg.provider_ttl))
        .set_publication_interval(None)
        .set_replication_interval(None);
    let store = MemoryStore::with_config(
        peer,
        MemoryStoreConfig {
            max_provided_keys: MAX_STORED_KEYS,
            ..MemoryStoreConfig::default()
        },
    );
    let mut kad = kad::Behaviour::with_config(peer, store, config);
    kad.set_mode(Some(Mode::Server));
    kad
}

/// Waits for the listener's first address. Addresses we can be reached at become our external
/// addresses, which kad puts in the provider records it sends (loopback ones only when we
/// listen on loopback).
async fn wait_listening(
    swarm: &mut Swarm<Behaviour>,
    cfg: &Libp2pConfig,
) -> Result<SocketAddr, DiscoveryError> {
    let wait = async {
        loop {
            match swarm.select_next_some().await {
                SwarmEvent::NewListenAddr { address, .. } => {
                    let Some((_, port)) = socket_parts(&address) else {
                        continue;
                    };
                    note_listen_addr(swarm, cfg.listen.ip(), address);
                    return Ok(SocketAddr::new(cfg.listen.ip(), port));
                }
                SwarmEvent::ListenerError { error, .. } => {
                    return Err(other(format!("cannot listen on {}: {error}", cfg.listen)))
                }
                SwarmEvent::ListenerClosed { reason, .. } => {
                    return Err(other(format!(
                        "listener on {} closed: {reason:?}",
                        cfg.listen
                    )))
                }
                _ => {}
            }
        }
    };
    tokio::time::timeout(LISTEN_TIMEOUT, wait)
        .await
        .map_err(|_| DiscoveryError::Timeout(LISTEN_TIMEOUT))?
}

fn note_listen_addr(swarm: &mut Swarm<Behaviour>, listen_ip: IpAddr, address: Multiaddr) {
    let Some((ip, _)) = socket_parts(&address) else {
        return;
    };
    if !ip.is_loopback() || listen_ip.is_loopback() {
        swarm.add_external_address(address);
    }
}

impl Actor {
    async fn run(mut self) {
        let mut redial = tokio::time::interval(REDIAL_INTERVAL);
        redial.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let shutdown_reply = loop {
            let next_deadline = self.lookups.next_deadline();
            tokio::select! {
                command = self.commands.recv() => match command {
                    Some(Command::Shutdown { reply }) => break Some(reply),
                    Some(command) => self.on_command(command),
                    None => break None,
                },
                event = self.swarm.select_next_some() => self.on_swarm_event(event),
                () = sleep_until(next_deadline) => self.settle_lookups(),
                _ = redial.tick() => {
                    if self.swarm.connected_peers().next().is_none() {
                        self.dial_bootstrap();
                    }
                }
            }
        };
        tracing::debug!(peer = %self.local_peer, "libp2p discovery stopping");
        drop(self);
        if let Some(reply) = shutdown_reply {
            let _ = reply.send(());
        }
    }

    fn on_command(&mut self, command: Command) {
        match command {
            Command::Provide { key, reply } => {
                let record = kad::RecordKey::new(&key);
                match self.swarm.behaviour_mut().kad.start_providing(record) {
                    Ok(query) => {
                        self.provided.insert(key);
                        self.announcing.insert(query, reply);
                    }
                    Err(e) => {
                        let _ = reply.send(Err(other(format!("cannot provide: {e:?}"))));
                    }
                }
            }
            Command::Withdraw { key, reply } => {
                self.provided.remove(&key);
                let record = kad::RecordKey::new(&key);
                self.swarm.behaviour_mut().kad.stop_providing(&record);
                let _ = reply.send(());
            }
            Command::Providers { key, limit, reply } => {
                let record = kad::RecordKey::new(&key);
                let query = self.swarm.behaviour_mut().kad.get_providers(record);
                let deadline = Instant::now() + self.query_timeout;
                self.lookups.start(query, limit, deadline, reply);
            }
            Command::Peers { reply } => {
                let _ = reply.send(self.identified.values().cloned().collect());
            }
            Command::AddPeer { addr, reply } => {
                self.dial_address(multiaddr(addr), Dial::AddPeer(reply));
            }
            // The loop intercepts it before it gets here; acknowledging is the safe fallback.
            Command::Shutdown { reply } => {
                let _ = reply.send(());
            }
        }
    }

    fn dial_bootstrap(&mut self) {
        for addr in self.bootstrap.clone() {
            self.dial_address(addr, Dial::Bootstrap);
        }
    }

    fn dial_address(&mut self, addr: Multiaddr, why: Dial) {
        let opts = DialOpts::unknown_peer_id().address(addr.clone()).build();
        let id = opts.connection_id();
        match self.swarm.dial(opts) {
            Ok(()) => {
                self.dials.insert(id, why);
            }
            Err(e) => {
                tracing::debug!(%addr, "dial failed: {e}");
                if let Dial::AddPeer(reply) = why {
                    let _ = reply.send(Err(other(format!("cannot dial {addr}: {e}"))));
                }
            }
        }
    }

    fn on_swarm_event(&mut self, event: SwarmEvent<BehaviourEvent>) {
        match event {
            SwarmEvent::Behaviour(BehaviourEvent::Kad(event)) => self.on_kad_event(event),
            SwarmEvent::Behaviour(BehaviourEvent::Identify(event)) => self.on_identify(event),
            SwarmEvent::Behaviour(BehaviourEvent::Mdns(mdns::Event::Discovered(found))) => {
                for (peer, addr) in found {
                    self.swarm.behaviour_mut().kad.add_address(&peer, addr);
                    let opts = DialOpts::peer_id(peer)
                        .condition(PeerCondition::DisconnectedAndNotDialing)
                        .build();
                    let _ = self.swarm.dial(opts);
                }
            }
            SwarmEvent::NewListenAddr { address, .. } => {
                note_listen_addr(&mut self.swarm, self.listen_ip, address);
            }
            SwarmEvent::ConnectionEstablished {
                peer_id,
                connection_id,
                endpoint,
                ..
            } => {
                let remote = endpoint.get_remote_address().clone();
                if let Some((ip, _)) = socket_parts(&remote) {
                    self.connection_ips.insert(connection_id, ip);
                }
                if let Some(why) = self.dials.remove(&connection_id) {
                    tracing::debug!(peer = %peer_id, addr = %remote, "connected to seed peer");
                    let kad = &mut self.swarm.behaviour_mut().kad;
                    kad.add_address(&peer_id, remote);
                    let _ = kad.bootstrap();
                    if let Dial::AddPeer(reply) = why {
                        let _ = reply.send(Ok(()));
                    }
                }
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                connection_id,
                num_established,
                ..
            } => {
                self.connection_ips.remove(&connection_id);
                if num_established == 0 && !self.in_routing_table(&peer_id) {
                    self.identified.remove(&peer_id);
                }
            }
            SwarmEvent::OutgoingConnectionError {
                connection_id,
                peer_id,
                error,
            } => {
                tracing::debug!(peer = ?peer_id, "outgoing connection failed: {error}");
                if let Some(Dial::AddPeer(reply)) = self.dials.remove(&connection_id) {
                    let _ = reply.send(Err(other(format!("cannot connect: {error}"))));
                }
                if let Some(peer) = peer_id {
                    self.lookups.unreachable(peer);
                    self.settle_lookups();
                }
            }
            SwarmEvent::IncomingConnectionError { error, .. } => {
                tracing::debug!("incoming connection failed: {error}");
            }
            _ => {}
        }
    }

    fn on_kad_event(&mut self, event: kad::Event) {
        let kad::Event::OutboundQueryProgressed {
            id, result, step, ..
        } = event
        else {
            if let kad::Event::RoutingUpdated {
                old_peer: Some(old),
                ..
            } = event
            {
                if !self.swarm.is_connected(&old) {
                    self.identified.remove(&old);
                }
            }
            return;
        };
        match result {
            QueryResult::StartProviding(result) => {
                if let Err(e) = &result {
                    tracing::debug!("provider announcement incomplete: {e:?}");
                }
                if step.last {
                    if let Some(reply) = self.announcing.remove(&id) {
                        let _ = reply.send(Ok(()));
                    }
                }
            }
            QueryResult::GetProviders(result) => {
                match result {
                    Ok(kad::GetProvidersOk::FoundProviders { providers, .. }) => {
                        let fresh: Vec<PeerId> = providers
                            .into_iter()
                            .filter(|p| *p != self.local_peer)
                            .collect();
                        for peer in self.lookups.found(id, &fresh) {
                            if !self.identified.contains_key(&peer) {
                                self.dial_peer(peer);
                            }
                        }
                    }
                    Ok(kad::GetProvidersOk::FinishedWithNoAdditionalRecord { .. }) => {}
                    Err(e) => tracing::debug!("provider lookup ended: {e:?}"),
                }
                if step.last {
                    self.lookups.kad_done(id, Instant::now());
                }
                self.settle_lookups();
            }
            QueryResult::Bootstrap(Err(e)) => tracing::debug!("bootstrap incomplete: {e:?}"),
            _ => {}
        }
    }

    fn on_identify(&mut self, event: identify::Event) {
        let identify::Event::Received {
            connection_id,
            peer_id,
            info,
        } = event
        else {
            return;
        };
        if info.protocol_version != IDENTIFY_PROTOCOL {
            tracing::debug!(peer = %peer_id, version = %info.protocol_version, "not an hfmesh peer");
            return;
        }
        let advert = match agent::parse(&info.agent_version) {
            Ok(advert) => advert,
            Err(e) => {
                tracing::warn!(peer = %peer_id, "refusing peer advertisement: {e}");
                return;
            }
        };
        let (Some(id), Some(&seen)) = (
            NodeId::from_peer_id_bytes(&peer_id.to_bytes()),
            self.connection_ips.get(&connection_id),
        ) else {
            return;
        };
        let node = NodeInfo {
            id,
            addr: advert.quic_addr(seen),
            topology: advert.topology,
        };
        tracing::debug!(peer = %peer_id, quic = %node.addr, "identified peer");
        self.identified.insert(peer_id, node);
        if info.protocols.iter().any(|p| p.as_ref() == KAD_PROTOCOL) {
            let usable = info
                .listen_addrs
                .into_iter()
                .filter(|a| {
                    socket_parts(a).is_some_and(|(ip, _)| {
                        !ip.is_unspecified() && (!ip.is_loopback() || seen.is_loopback())
                    })
                })
                .take(MAX_PEER_ADDRS);
            for addr in usable {
                self.swarm.behaviour_mut().kad.add_address(&peer_id, addr);
            }
        }
        self.settle_lookups();
    }

    fn dial_peer(&mut self, peer: PeerId) {
        if self.swarm.is_connected(&peer) {
            return;
        }
        let opts = DialOpts::peer_id(peer)
            .condition(PeerCondition::DisconnectedAndNotDialing)
            .build();
        if let Err(e) = self.swarm.dial(opts) {
            tracing::debug!(%peer, "cannot dial provider: {e}");
            self.lookups.unreachable(peer);
        }
    }

    /// Answers every lookup that is complete, full or past its deadline.
    fn settle_lookups(&mut self) {
        for query in self.lookups.settle(&self.identified, Instant::now()) {
            if let Some(mut q) = self.swarm.behaviour_mut().kad.query_mut(&query) {
                q.finish();
            }
        }
    }

    fn in_routing_table(&mut self, peer: &PeerId) -> bool {
        let kad = &mut self.swarm.behaviour_mut().kad;
        kad.kbucket(*peer)
            .is_some_and(|b| b.iter().any(|e| e.node.key.preimage() == peer))
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

fn multiaddr(addr: SocketAddr) -> Multiaddr {
    Multiaddr::empty()
        .with(Protocol::from(addr.ip()))
        .with(Protocol::Tcp(addr.port()))
}

/// The IP and TCP port of an `/ip4|ip6/../tcp/..` address.
fn socket_parts(addr: &Multiaddr) -> Option<(IpAddr, u16)> {
    let mut parts = addr.iter();
    let ip = match parts.next()? {
        Protocol::Ip4(ip) => IpAddr::V4(ip),
        Protocol::Ip6(ip) => IpAddr::V6(ip),
        _ => return None,
    };
    match parts.next()? {
        Protocol::Tcp(port) => Some((ip, port)),
        _ => None,
    }
}

fn other(message: String) -> DiscoveryError {
    DiscoveryError::Other(message)
}
