//! Building the swarm: the pnet-protected transport, the behaviours (private Kademlia,
//! identify, optional mDNS), and the first listen address.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use futures_util::StreamExt;
use libp2p::core::{multiaddr::Protocol, transport::Transport as _, upgrade, Multiaddr};
use libp2p::futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use libp2p::identity::Keypair;
use libp2p::kad::{self, store::MemoryStore, store::MemoryStoreConfig, Mode};
use libp2p::pnet::{PnetConfig, PnetError, PnetOutput, PreSharedKey};
use libp2p::swarm::{behaviour::toggle::Toggle, NetworkBehaviour, SwarmEvent};
use libp2p::{identify, mdns, noise, tcp, yamux, PeerId, StreamProtocol, Swarm, SwarmBuilder};

use super::{agent, Libp2pConfig, IDENTIFY_PROTOCOL, KAD_PROTOCOL};
use crate::discovery::DiscoveryError;

/// Most provider keys one node stores (its own and others'), bounding the store's memory.
const MAX_STORED_KEYS: usize = 100_000;
/// Deadline of the transport handshake (TCP + pnet + noise + yamux).
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a connection with no protocol activity stays open.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// How long `spawn` waits for the listener to report its address.
const LISTEN_TIMEOUT: Duration = Duration::from_secs(5);

/// Sent by both sides through the fresh pnet stream. A peer with another cluster secret reads
/// garbage instead, so a mismatch fails in one round trip with a clear error rather than
/// stalling the next handshake until [`HANDSHAKE_TIMEOUT`].
const PNET_CHECK: &[u8; 16] = b"hfmesh pnet ok\n\0";

/// The behaviours of an hfmesh node.
#[derive(NetworkBehaviour)]
pub(super) struct Behaviour {
    pub(super) kad: kad::Behaviour<MemoryStore>,
    pub(super) identify: identify::Behaviour,
    pub(super) mdns: Toggle<mdns::tokio::Behaviour>,
}

/// pnet's handshake (nonce exchange) followed by a check that both sides use the same key.
async fn pnet_handshake<S>(socket: S, psk: PreSharedKey) -> Result<PnetOutput<S>, PnetError>
where
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let mut stream = PnetConfig::new(psk).handshake(socket).await?;
    stream.write_all(PNET_CHECK).await?;
    stream.flush().await?;
    let mut echo = [0u8; PNET_CHECK.len()];
    stream.read_exact(&mut echo).await?;
    if &echo != PNET_CHECK {
        return Err(PnetError::HandshakeError(std::io::Error::new(
            std::io::ErrorKind::PermissionDenied,
            "the peer does not share this cluster's secret",
        )));
    }
    Ok(stream)
}

/// The swarm for `cfg`, not yet listening.
pub(super) fn build(cfg: &Libp2pConfig) -> Result<Swarm<Behaviour>, DiscoveryError> {
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
                .and_then(move |socket, _| pnet_handshake(socket, psk))
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
    // Provider records only: hfmesh puts no values in the DHT, so peers cannot store any here.
    let store = MemoryStore::with_config(
        peer,
        MemoryStoreConfig {
            max_provided_keys: MAX_STORED_KEYS,
            max_records: 0,
            max_value_bytes: 0,
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
pub(super) async fn wait_listening(
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

pub(super) fn note_listen_addr(
    swarm: &mut Swarm<Behaviour>,
    listen_ip: IpAddr,
    address: Multiaddr,
) {
    let Some((ip, _)) = socket_parts(&address) else {
        return;
    };
    if !ip.is_loopback() || listen_ip.is_loopback() {
        swarm.add_external_address(address);
    }
}

pub(super) fn multiaddr(addr: SocketAddr) -> Multiaddr {
    Multiaddr::empty()
        .with(Protocol::from(addr.ip()))
        .with(Protocol::Tcp(addr.port()))
}

/// The IP and TCP port of an `/ip4|ip6/../tcp/..` address.
pub(super) fn socket_parts(addr: &Multiaddr) -> Option<(IpAddr, u16)> {
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
