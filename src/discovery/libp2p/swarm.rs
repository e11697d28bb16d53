//! The task that owns the libp2p `Swarm`: builds it, then serves commands from the handles and
//! swarm events in one loop. Provider lookups in flight live in [`super::lookup`]; the swarm is
//! built in [`super::build`].

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use futures_util::StreamExt;
use libp2p::core::Multiaddr;
use libp2p::kad::{self, QueryResult};
use libp2p::swarm::{dial_opts::DialOpts, dial_opts::PeerCondition, ConnectionId, SwarmEvent};
use libp2p::{identify, mdns, PeerId, Swarm};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use super::build::{
    build, multiaddr, note_listen_addr, socket_parts, wait_listening, Behaviour, BehaviourEvent,
};
use super::lookup::Lookups;
use super::{agent, Libp2pConfig, IDENTIFY_PROTOCOL, KAD_PROTOCOL};
use crate::discovery::{DiscoveryError, NodeInfo};
use crate::node::NodeId;

/// How often the bootstrap addresses are dialed again while we have no connection at all.
const REDIAL_INTERVAL: Duration = Duration::from_secs(5);
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
    /// Provided keys whose last announcement reached no peer.
    unannounced: HashSet<[u8; 32]>,
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
        unannounced: HashSet::new(),
        announcing: HashMap::new(),
        lookups: Lookups::default(),
        query_timeout: cfg.query_timeout,
    };
    actor.dial_bootstrap();
    tokio::spawn(actor.run());
    Ok(listen)
}

impl Actor {
    async fn run(mut self) {
        let mut redial =
            tokio::time::interval_at(Instant::now() + REDIAL_INTERVAL, REDIAL_INTERVAL);
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
                self.unannounced.remove(&key);
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
                match self.dials.remove(&connection_id) {
                    Some(Dial::Bootstrap) => {
                        tracing::info!("cannot connect to bootstrap peer: {error}");
                    }
                    Some(Dial::AddPeer(reply)) => {
                        let _ = reply.send(Err(other(format!("cannot connect: {error}"))));
                    }
                    None => tracing::debug!(peer = ?peer_id, "outgoing connection failed: {error}"),
                }
                if let Some(peer) = peer_id.filter(|p| !self.swarm.is_connected(p)) {
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
        match event {
            kad::Event::OutboundQueryProgressed {
                id,
                result: QueryResult::StartProviding(result),
                stats,
                step,
            } => self.on_announced(id, result, stats.num_successes(), step.last),
            kad::Event::OutboundQueryProgressed {
                id,
                result: QueryResult::GetProviders(result),
                step,
                ..
            } => self.on_providers(id, result, step.last),
            kad::Event::OutboundQueryProgressed {
                result: QueryResult::Bootstrap(Err(e)),
                ..
            } => tracing::debug!("bootstrap incomplete: {e:?}"),
            kad::Event::RoutingUpdated {
                peer,
                is_new_peer,
                old_peer,
                ..
            } => {
                if let Some(old) = old_peer.filter(|old| !self.swarm.is_connected(old)) {
                    self.identified.remove(&old);
                }
                if is_new_peer && !self.unannounced.is_empty() {
                    tracing::debug!(%peer, keys = self.unannounced.len(), "announcing to new peer");
                    for key in std::mem::take(&mut self.unannounced) {
                        let record = kad::RecordKey::new(&key);
                        let _ = self.swarm.behaviour_mut().kad.start_providing(record);
                    }
                }
            }
            _ => {}
        }
    }

    /// An announcement of ours finished. One that reached nobody (we had no peers yet) is
    /// repeated as soon as the routing table gains a peer, not only at the next reprovide.
    fn on_announced(
        &mut self,
        id: kad::QueryId,
        result: kad::AddProviderResult,
        reached: u32,
        last: bool,
    ) {
        if !last {
            return;
        }
        let key = match &result {
            Ok(ok) => &ok.key,
            Err(e) => e.key(),
        };
        tracing::debug!(
            reached,
            ok = result.is_ok(),
            "provider announcement finished"
        );
        if reached == 0 {
            if let Ok(key) = <[u8; 32]>::try_from(key.as_ref()) {
                if self.provided.contains(&key) {
                    self.unannounced.insert(key);
                }
            }
        }
        if let Some(reply) = self.announcing.remove(&id) {
            let _ = reply.send(Ok(()));
        }
    }

    fn on_providers(&mut self, id: kad::QueryId, result: kad::GetProvidersResult, last: bool) {
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
        if last {
            self.lookups.kad_done(id, Instant::now());
        }
        self.settle_lookups();
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

fn other(message: String) -> DiscoveryError {
    DiscoveryError::Other(message)
}
