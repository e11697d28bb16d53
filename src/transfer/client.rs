//! The endpoint as a whole ([`Transfer`]: bind, connect, stats, shutdown) and the fetching half
//! ([`PeerConn`]: manifest, have, ask, hashes, chunks, holdings).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use tokio::time::timeout;

use super::config::{
    self, ASK_GATHER, DRAIN_TIMEOUT, FRAME_TIMEOUT, HANDSHAKE_TIMEOUT, HELLO_TIMEOUT,
    WAIT_IDLE_TIMEOUT,
};
use super::hello::{self, Role};
use super::stats::{Counters, PeerStats, Registry};
use super::{io, server, socket, tls, ChunkSource, Shared, TransferError};
use crate::discovery::NodeInfo;
use crate::etag::Etag;
use crate::manifest::SignedManifest;
use crate::node::{ClusterSecret, NodeId, NodeKey, Topology};
use crate::repo::{CommitId, RepoId, RepoKind};
use crate::store::Bitmap;
use crate::wire::{
    AskItem, Asked, CloseCode, Holdings, Message, Request, Response, MAX_ASK_ITEMS,
    PROTOCOL_VERSION,
};

/// What an endpoint needs: who this node is, which cluster it is in, and where to listen.
#[derive(Debug, Clone)]
pub struct TransferConfig {
    /// The node key; the TLS certificate is made from it.
    pub key: NodeKey,
    /// The cluster secret; the hello MAC key is derived from it.
    pub cluster: ClusterSecret,
    /// This node's zone and rack, sent in the hello.
    pub topology: Topology,
    /// UDP address to bind (port 0 for any).
    pub listen: SocketAddr,
}

/// A node's QUIC endpoint: serves its [`ChunkSource`] to cluster members and fetches from them.
/// Cheap to clone (one shared endpoint inside).
#[derive(Clone)]
pub struct Transfer {
    shared: Arc<Shared>,
    conns: Arc<Mutex<Conns>>,
}

/// The cached connection to one peer; the async lock makes concurrent `connect`s dial once.
type Slot = Arc<tokio::sync::Mutex<Dialed>>;

/// Peers to take no sweep for below this many slots (see [`Conns::slot`]).
const SWEEP_FROM: usize = 1024;

/// One slot per peer dialled. Over weeks on a large cluster a node dials thousands of peers, and a
/// closed connection's handle keeps its state alive: slots with nothing open and no failure
/// worth remembering are swept when the map has doubled since the last sweep.
#[derive(Default)]
struct Conns {
    slots: HashMap<NodeId, Slot>,
    /// The size at which the next sweep runs.
    sweep_at: usize,
}

impl Conns {
    /// The slot of `peer`, made if new (after a sweep, when one is due).
    fn slot(&mut self, peer: NodeId) -> Slot {
        if !self.slots.contains_key(&peer) && self.slots.len() >= self.sweep_at.max(SWEEP_FROM) {
            self.slots.retain(|_, slot| {
                // A slot in use (a dial under way) stays.
                slot.try_lock().map_or(true, |d| !d.idle())
            });
            self.sweep_at = 2 * self.slots.len();
        }
        self.slots.entry(peer).or_default().clone()
    }
}

/// What dialling one peer last came to.
#[derive(Default)]
struct Dialed {
    /// The open connection, if any.
    conn: Option<PeerConn>,
    /// The last dial failed (with no success since).
    failed: Option<DialFailure>,
}

/// A failed dial, and how long the peer is left alone after it.
struct DialFailure {
    /// The address that was dialled.
    addr: SocketAddr,
    /// When the dial gave up.
    at: std::time::Instant,
    /// Dials failed in a row.
    streak: u32,
    /// Why the last one failed.
    error: TransferError,
}

impl Dialed {
    /// Nothing open, and no failure still holding off a dial: forgetting it changes nothing but
    /// the length of a later failure streak.
    fn idle(&self) -> bool {
        let open = self
            .conn
            .as_ref()
            .is_some_and(|c| c.conn.close_reason().is_none());
        let holding = self
            .failed
            .as_ref()
            .is_some_and(|f| f.at.elapsed() < config::MAX_DIAL_BACKOFF);
        !open && !holding
    }
}

impl DialFailure {
    /// [`config::DIAL_BACKOFF`], doubled for each further failure in a row, at most
    /// [`config::MAX_DIAL_BACKOFF`].
    fn backoff(&self) -> Duration {
        config::DIAL_BACKOFF
            .saturating_mul(1 << self.streak.saturating_sub(1).min(16))
            .min(config::MAX_DIAL_BACKOFF)
    }
}

impl std::fmt::Debug for Transfer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transfer")
            .field("node", &self.shared.node)
            .field("local_addr", &self.local_addr())
            .finish()
    }
}

impl Transfer {
    /// Caps the bytes per second served to all peers together; only the first call counts.
    pub fn limit_uploads(&self, limit: Arc<super::ratelimit::RateLimit>) {
        let _ = self.shared.upload_limit.set(limit);
    }

    /// Sets how many chunk requests are served at once (at least one); only a call before the
    /// first request counts.
    pub fn set_upload_slots(&self, slots: usize) {
        let slots = Arc::new(tokio::sync::Semaphore::new(slots.max(1)));
        let _ = self.shared.upload_slots.set(slots);
    }

    /// Chunk requests refused as busy since the endpoint started.
    pub fn uploads_refused_busy(&self) -> u64 {
        self.shared
            .refused_busy
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Questions about blobs this endpoint has answered (`Have`, `Hashes`, `Swarm` and `Ask`
    /// requests), and the blobs they were about: one each, and every blob of an `Ask`.
    pub fn questions_answered(&self) -> (u64, u64) {
        let s = &self.shared;
        (
            s.questions.load(std::sync::atomic::Ordering::Relaxed),
            s.question_blobs.load(std::sync::atomic::Ordering::Relaxed),
        )
    }

    /// Binds the endpoint on `cfg.listen` and starts serving `source`.
    pub async fn bind(
        cfg: TransferConfig,
        source: Arc<dyn ChunkSource>,
    ) -> Result<Transfer, TransferError> {
        Transfer::bind_speaking(cfg, source, PROTOCOL_VERSION).await
    }

    /// [`Transfer::bind`], speaking the protocol versions up to `newest` only, as an older
    /// release does: for tests of clusters upgraded one host at a time.
    pub async fn bind_speaking(
        cfg: TransferConfig,
        source: Arc<dyn ChunkSource>,
        newest: u16,
    ) -> Result<Transfer, TransferError> {
        let identity = tls::Identity::new(&cfg.key)?;
        let transport = config::transport(cfg.listen.ip().is_loopback());
        let tls_cfg = tls::server_config(&identity, newest)?;
        let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(tls_cfg)
            .map_err(|e| TransferError::Tls(e.to_string()))?;
        let mut server = quinn::ServerConfig::with_crypto(Arc::new(crypto));
        server.transport_config(transport.clone());
        server.migration(false);
        let mut endpoint_cfg = quinn::EndpointConfig::default();
        endpoint_cfg
            .max_udp_payload_size(config::MAX_UDP_PAYLOAD)
            .map_err(|e| TransferError::Local(e.to_string()))?;
        let bind = |source| TransferError::Bind {
            addr: cfg.listen,
            source: Arc::new(source),
        };
        let socket = socket::udp_socket(cfg.listen).map_err(bind)?;
        let runtime = quinn::default_runtime()
            .ok_or_else(|| TransferError::Local("no async runtime for quinn".into()))?;
        let socket = Arc::new(socket::SplitSends(
            runtime.wrap_udp_socket(socket).map_err(bind)?,
        ));
        let endpoint =
            quinn::Endpoint::new_with_abstract_socket(endpoint_cfg, Some(server), socket, runtime)
                .map_err(bind)?;
        let shared = Arc::new(Shared {
            endpoint,
            node: cfg.key.id(),
            topology: cfg.topology,
            hello_key: cfg.cluster.hello_key(),
            identity,
            transport,
            source,
            stats: Registry::default(),
            tracker: tokio_util::task::TaskTracker::new(),
            cancel: tokio_util::sync::CancellationToken::new(),
            upload_limit: std::sync::OnceLock::new(),
            upload_slots: std::sync::OnceLock::new(),
            refused_busy: Default::default(),
            newest,
            questions: Default::default(),
            question_blobs: Default::default(),
        });
        shared.tracker.spawn(server::accept_loop(shared.clone()));
        Ok(Transfer {
            shared,
            conns: Arc::default(),
        })
    }

    /// The bound UDP address (with the real port when bound to port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.shared
            .endpoint
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)))
    }

    /// This node's id.
    pub fn node(&self) -> NodeId {
        self.shared.node
    }

    /// A connection to `peer`, reused while it is open, dialled (handshake and hello) otherwise.
    /// Fails with [`TransferError::WrongIdentity`] if the node at `peer.addr` is not `peer.id`.
    ///
    /// After a failed dial the peer is not dialled again for [`config::DIAL_BACKOFF`] (doubling
    /// with each failure in a row, up to [`config::MAX_DIAL_BACKOFF`]): until then, `connect`
    /// fails at once with [`TransferError::Unreachable`]. A dead host costs a whole handshake
    /// timeout per dial, and its provider records outlive it, so without this every request to
    /// it, and every one queued behind it, waited that long. A new address is dialled at once.
    pub async fn connect(&self, peer: &NodeInfo) -> Result<PeerConn, TransferError> {
        if self.shared.cancel.is_cancelled() {
            return Err(TransferError::Closed);
        }
        let slot = {
            let mut conns = self.conns.lock().unwrap_or_else(|e| e.into_inner());
            conns.slot(peer.id)
        };
        let mut dialed = slot.lock().await;
        if let Some(c) = dialed.conn.as_ref() {
            if c.conn.close_reason().is_none() && c.conn.remote_address() == peer.addr {
                return Ok(c.clone());
            }
        }
        dialed.conn = None;
        if let Some(f) = dialed.failed.as_ref().filter(|f| f.addr == peer.addr) {
            let retry_in = f.backoff().saturating_sub(f.at.elapsed());
            if !retry_in.is_zero() {
                return Err(TransferError::Unreachable {
                    peer: peer.id,
                    retry_in,
                    last: Box::new(f.error.clone()),
                });
            }
        }
        match self.dial(peer).await {
            Ok(fresh) => {
                *dialed = Dialed {
                    conn: Some(fresh.clone()),
                    failed: None,
                };
                Ok(fresh)
            }
            Err(e) => {
                if !matches!(
                    e,
                    TransferError::Closed | TransferError::Local(_) | TransferError::Tls(_)
                ) {
                    let streak = match dialed.failed.as_ref() {
                        Some(f) if f.addr == peer.addr => f.streak + 1,
                        _ => 1,
                    };
                    tracing::debug!(peer = %peer.id, addr = %peer.addr, streak, error = %e, "dial failed");
                    dialed.failed = Some(DialFailure {
                        addr: peer.addr,
                        at: std::time::Instant::now(),
                        streak,
                        error: e.clone(),
                    });
                }
                Err(e)
            }
        }
    }

    async fn dial(&self, peer: &NodeInfo) -> Result<PeerConn, TransferError> {
        let s = &self.shared;
        let (tls_cfg, verifier) = tls::client_config(&s.identity, peer.id, s.newest)?;
        let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(tls_cfg)
            .map_err(|e| TransferError::Tls(e.to_string()))?;
        let mut client = quinn::ClientConfig::new(Arc::new(crypto));
        client.transport_config(s.transport.clone());
        let connecting = s
            .endpoint
            .connect_with(client, peer.addr, tls::SERVER_NAME)
            .map_err(|e| TransferError::Local(format!("cannot dial {}: {e}", peer.addr)))?;
        let wrong = |got| TransferError::WrongIdentity {
            addr: peer.addr,
            expected: peer.id,
            got,
        };
        let conn = match timeout(HANDSHAKE_TIMEOUT, connecting).await {
            Err(_) => {
                return Err(TransferError::Timeout {
                    what: "the QUIC handshake",
                    after: HANDSHAKE_TIMEOUT,
                })
            }
            Ok(Err(e)) => {
                return Err(match verifier.seen() {
                    Some(got) if got != peer.id => wrong(Some(got)),
                    _ => TransferError::connection(peer.id, e),
                })
            }
            Ok(Ok(conn)) => conn,
        };
        match tls::peer_id(&conn) {
            Some(got) if got == peer.id => {}
            got => {
                conn.close(quinn::VarInt::from_u32(CloseCode::BadHello as u32), b"");
                return Err(wrong(got));
            }
        }
        let Some(version) = tls::negotiated_version(&conn) else {
            conn.close(quinn::VarInt::from_u32(CloseCode::BadHello as u32), b"");
            return Err(TransferError::BadHello {
                peer: peer.id,
                reason: "no protocol version agreed".into(),
            });
        };
        match timeout(HELLO_TIMEOUT, self.client_hello(&conn, peer.id, version)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                if e.is_peer_fault() {
                    let code = quinn::VarInt::from_u32(CloseCode::BadHello as u32);
                    conn.close(code, b"bad hello");
                }
                return Err(e);
            }
            Err(_) => {
                return Err(TransferError::Timeout {
                    what: "the cluster hello",
                    after: HELLO_TIMEOUT,
                })
            }
        }
        let counters = s.stats.get(peer.id);
        counters.sample(&conn);
        Ok(PeerConn {
            conn,
            peer: peer.id,
            version,
            counters,
            asks: Arc::default(),
        })
    }

    /// Sends our hello on the first stream and checks the server's.
    async fn client_hello(
        &self,
        conn: &quinn::Connection,
        peer: NodeId,
        version: u16,
    ) -> Result<(), TransferError> {
        let s = &self.shared;
        let ours = hello::make(
            conn,
            &s.hello_key,
            Role::Client,
            s.node,
            &s.topology,
            version,
        )?;
        let (mut send, mut recv) = conn
            .open_bi()
            .await
            .map_err(|e| TransferError::connection(peer, e))?;
        io::write_frame(&mut send, peer, &Request::Hello(ours)).await?;
        let _ = send.finish();
        let theirs = match io::read_frame::<Response>(&mut recv, peer).await? {
            Some((Response::Hello(h), _)) => h,
            _ => {
                return Err(TransferError::BadHello {
                    peer,
                    reason: "the server did not answer with a hello".into(),
                })
            }
        };
        hello::check(conn, &s.hello_key, Role::Server, &theirs, peer, version)
            .map_err(|reason| TransferError::BadHello { peer, reason })
    }

    /// Bytes sent and received and the latest RTT, per peer that passed the hello.
    pub fn stats(&self) -> Vec<PeerStats> {
        self.shared.stats.snapshot()
    }

    /// Stops accepting connections and requests, lets in-flight uploads finish (at most
    /// [`DRAIN_TIMEOUT`]), closes every connection and waits (at most [`WAIT_IDLE_TIMEOUT`])
    /// for the peers to acknowledge.
    pub async fn shutdown(&self) {
        let s = &self.shared;
        s.cancel.cancel();
        s.endpoint.set_server_config(None);
        s.tracker.close();
        let _ = timeout(DRAIN_TIMEOUT, s.tracker.wait()).await;
        s.endpoint.close(
            quinn::VarInt::from_u32(CloseCode::Shutdown as u32),
            b"shutting down",
        );
        let _ = timeout(WAIT_IDLE_TIMEOUT, s.endpoint.wait_idle()).await;
    }
}

/// An authenticated connection to one cluster member. Cheap to clone; requests on clones run
/// concurrently (each on its own QUIC stream).
#[derive(Clone)]
pub struct PeerConn {
    conn: quinn::Connection,
    peer: NodeId,
    /// The protocol version the handshake settled on.
    version: u16,
    counters: Arc<Counters>,
    /// Questions waiting to go out together as one `Ask` (see [`PeerConn::ask`]).
    asks: Arc<Mutex<AskQueue>>,
}

/// The questions of [`PeerConn::ask`] not yet sent, and whether a task is gathering them.
#[derive(Default)]
struct AskQueue {
    waiting: Vec<(AskItem, AskReply)>,
    gathering: bool,
}

type AskReply = tokio::sync::oneshot::Sender<Result<Asked, TransferError>>;

impl std::fmt::Debug for PeerConn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerConn")
            .field("peer", &self.peer)
            .field("addr", &self.conn.remote_address())
            .finish()
    }
}

/// One request's stream, counting what crosses it.
struct Exchange<'a> {
    recv: quinn::RecvStream,
    conn: &'a PeerConn,
}

impl Exchange<'_> {
    /// The next response frame (`None` at the end of the stream), with a per-frame deadline.
    async fn next(&mut self) -> Result<Option<Response>, TransferError> {
        let peer = self.conn.peer;
        let frame = timeout(
            FRAME_TIMEOUT,
            io::read_frame::<Response>(&mut self.recv, peer),
        )
        .await
        .map_err(|_| TransferError::Timeout {
            what: "a response frame",
            after: FRAME_TIMEOUT,
        })??;
        Ok(frame.map(|(m, n)| {
            self.conn.counters.received(n);
            m
        }))
    }

    /// Exactly one response, which must not be an error.
    async fn one(&mut self) -> Result<Response, TransferError> {
        match self.next().await? {
            Some(Response::Error { code, message }) => Err(TransferError::Remote {
                peer: self.conn.peer,
                code,
                message,
            }),
            Some(r) => Ok(r),
            None => Err(self.conn.violation("the stream ended without an answer")),
        }
    }
}

impl PeerConn {
    /// The peer's node id (verified by TLS).
    pub fn node(&self) -> NodeId {
        self.peer
    }

    /// The connection's current smoothed round-trip time.
    pub fn rtt(&self) -> Duration {
        self.conn.rtt()
    }

    /// Quinn's counters of the connection (path MTU, lost packets, congestion events), for
    /// benchmarks and diagnostics.
    pub fn transport_stats(&self) -> quinn::ConnectionStats {
        self.conn.stats()
    }

    fn violation(&self, reason: &str) -> TransferError {
        TransferError::Protocol {
            peer: self.peer,
            reason: reason.to_string(),
        }
    }

    /// Opens a stream and sends `request` on it.
    async fn request(&self, request: &Request) -> Result<Exchange<'_>, TransferError> {
        let (mut send, recv) = self
            .conn
            .open_bi()
            .await
            .map_err(|e| TransferError::connection(self.peer, e))?;
        let n = io::write_frame(&mut send, self.peer, request).await?;
        let _ = send.finish();
        self.counters.sent(n);
        Ok(Exchange { recv, conn: self })
    }

    fn unexpected(&self, got: &Response, wanted: &str) -> TransferError {
        self.violation(&format!(
            "answered a {wanted} request with frame kind {:#04x}",
            got.kind()
        ))
    }

    /// The signed manifest of a snapshot, or `None` if the peer does not have it. The
    /// signature and content are not checked here (see `SignedManifest::open`).
    pub async fn manifest(
        &self,
        kind: RepoKind,
        repo: &RepoId,
        commit: &CommitId,
    ) -> Result<Option<SignedManifest>, TransferError> {
        let request = Request::Manifest {
            kind,
            repo: repo.clone(),
            commit: commit.clone(),
        };
        let mut x = self.request(&request).await?;
        let answer = match x.one().await? {
            Response::Manifest(m) => m,
            other => return Err(self.unexpected(&other, "manifest")),
        };
        self.counters.sample(&self.conn);
        Ok(answer)
    }

    /// Which chunks of `etag` the peer holds; `None` if it holds nothing of it.
    pub async fn have(&self, etag: &Etag) -> Result<Option<Bitmap>, TransferError> {
        let mut x = self.request(&Request::Have { etag: etag.clone() }).await?;
        let answer = match x.one().await? {
            Response::Have(b) => b,
            other => return Err(self.unexpected(&other, "have")),
        };
        self.counters.sample(&self.conn);
        Ok(answer)
    }

    /// Peer exchange: which chunks of `etag` the peer holds (`None`: nothing) and other nodes that
    /// asked it about the blob lately. `listed`: the peer was found in the DHT's provider list.
    pub async fn swarm(
        &self,
        etag: &Etag,
        listed: bool,
    ) -> Result<(Option<Bitmap>, Vec<crate::wire::PeerHint>), TransferError> {
        let request = Request::Swarm {
            etag: etag.clone(),
            listed,
        };
        let mut x = self.request(&request).await?;
        let answer = match x.one().await? {
            Response::Swarm { have, others } => (have, others),
            other => return Err(self.unexpected(&other, "swarm")),
        };
        self.counters.sample(&self.conn);
        Ok(answer)
    }

    /// The protocol version the handshake settled on (see [`crate::wire::ALPNS`]).
    pub fn version(&self) -> u16 {
        self.version
    }

    /// What the peer holds of `item.etag` and whom else it knows pulling it, with the chunk
    /// hashes it vouches for if `item.hashes` (as [`PeerConn::swarm`] and [`PeerConn::hashes`]).
    ///
    /// Questions to the same peer that come within [`ASK_GATHER`] of each other travel together
    /// as one `Ask` request (protocol version 3): a node pulling four blobs from the same peers
    /// asks each once per refresh, not four or eight times. With a version-2 peer each question
    /// is its own `Swarm` (and `Hashes`). The request runs on a task of its own, so a caller
    /// that gives up (a timeout) cancels nobody else's question; once all of its callers have
    /// given up, the request is dropped too (a peer that stopped answering holds no streams).
    pub async fn ask(&self, item: AskItem) -> Result<Asked, TransferError> {
        if self.version < 3 {
            return self.ask_alone(item).await;
        }
        let (reply, answer) = tokio::sync::oneshot::channel();
        let start = {
            let mut q = self.asks.lock().unwrap_or_else(|e| e.into_inner());
            q.waiting.push((item, reply));
            !std::mem::replace(&mut q.gathering, true)
        };
        if start {
            tokio::spawn(self.clone().send_asks());
        }
        answer
            .await
            .map_err(|_| TransferError::Local("a question's sender stopped".into()))?
    }

    /// After [`ASK_GATHER`], sends the questions waiting by then, [`MAX_ASK_ITEMS`] per `Ask`,
    /// the requests side by side.
    async fn send_asks(self) {
        tokio::time::sleep(ASK_GATHER).await;
        let mut waiting = {
            let mut q = self.asks.lock().unwrap_or_else(|e| e.into_inner());
            q.gathering = false;
            std::mem::take(&mut q.waiting)
        };
        let mut batches = Vec::new();
        while !waiting.is_empty() {
            let rest = waiting.split_off(waiting.len().min(MAX_ASK_ITEMS));
            batches.push(std::mem::replace(&mut waiting, rest));
        }
        futures_util::future::join_all(batches.into_iter().map(|b| self.send_ask(b))).await;
    }

    /// One `Ask` for `batch`, its answers handed to each asker; dropped once every asker has
    /// given up.
    async fn send_ask(&self, batch: Vec<(AskItem, AskReply)>) {
        let (items, mut replies): (Vec<AskItem>, Vec<AskReply>) = batch.into_iter().unzip();
        let result = tokio::select! {
            r = self.ask_together(items) => r,
            () = async {
                for r in &mut replies {
                    r.closed().await;
                }
            } => return,
        };
        match result {
            Ok(answers) => {
                for (reply, a) in replies.into_iter().zip(answers) {
                    let _ = reply.send(Ok(a));
                }
            }
            Err(e) => {
                for reply in replies {
                    let _ = reply.send(Err(e.clone()));
                }
            }
        }
    }

    /// One `Ask` about `items`; the hashes that did not fit its answer are fetched after it.
    async fn ask_together(&self, items: Vec<AskItem>) -> Result<Vec<Asked>, TransferError> {
        let mut x = self
            .request(&Request::Ask {
                items: items.clone(),
            })
            .await?;
        let mut answers = match x.one().await? {
            Response::Ask(a) if a.len() == items.len() => a,
            Response::Ask(a) => {
                return Err(self.violation(&format!(
                    "answered {} of the {} blobs asked about",
                    a.len(),
                    items.len()
                )))
            }
            other => return Err(self.unexpected(&other, "ask")),
        };
        self.counters.sample(&self.conn);
        for (item, a) in items.iter().zip(&mut answers) {
            if item.hashes && a.have.is_some() && a.hashes.is_none() {
                a.hashes = self.hashes(&item.etag).await?;
            }
        }
        Ok(answers)
    }

    /// [`PeerConn::ask`] of a version-2 peer: `Swarm`, then `Hashes` if asked and held.
    async fn ask_alone(&self, item: AskItem) -> Result<Asked, TransferError> {
        let (have, others) = self.swarm(&item.etag, item.listed).await?;
        let hashes = match item.hashes && have.is_some() {
            true => self.hashes(&item.etag).await?,
            false => None,
        };
        Ok(Asked {
            have,
            hashes,
            others,
        })
    }

    /// The BLAKE3 hash of each chunk of `etag` the peer vouches for; `None` if it holds nothing.
    pub async fn hashes(
        &self,
        etag: &Etag,
    ) -> Result<Option<Vec<Option<[u8; 32]>>>, TransferError> {
        let mut x = self
            .request(&Request::Hashes { etag: etag.clone() })
            .await?;
        match x.one().await? {
            Response::Hashes(h) => Ok(h),
            other => Err(self.unexpected(&other, "hashes")),
        }
    }

    /// What the peer holds: its complete snapshots and its blobs, complete or partial (checked
    /// against the caps of [`Holdings`] by the decoder).
    pub async fn holdings(&self) -> Result<Holdings, TransferError> {
        let mut x = self.request(&Request::Holdings).await?;
        match x.one().await? {
            Response::Holdings(h) => Ok(h),
            other => Err(self.unexpected(&other, "holdings")),
        }
    }

    /// Requests chunks `first..first + count` of `etag`; calls `on_chunk(index, bytes)` as each
    /// arrives, in order (bytes are NOT verified here: the caller checks BLAKE3), and returns the
    /// indices the peer said were missing. The peer must answer every index exactly once, in
    /// order; anything else is a protocol violation. `count` is at most
    /// [`MAX_CHUNKS_PER_REQUEST`](crate::wire::MAX_CHUNKS_PER_REQUEST).
    pub async fn chunks(
        &self,
        etag: &Etag,
        first: u64,
        count: u32,
        mut on_chunk: impl FnMut(u64, Bytes) + Send,
    ) -> Result<Vec<u64>, TransferError> {
        if count == 0 {
            return Ok(Vec::new());
        }
        let request = Request::Chunks {
            etag: etag.clone(),
            first,
            count,
        };
        let mut x = self.request(&request).await?;
        let mut missing = Vec::new();
        for expected in first..first + u64::from(count) {
            match x.one().await? {
                Response::Chunk { index, len } if index == expected => {
                    let bytes = io::read_payload(&mut x.recv, self.peer, len as usize).await?;
                    self.counters.received(bytes.len());
                    on_chunk(index, bytes);
                }
                Response::Missing { index } if index == expected => missing.push(index),
                Response::Chunk { index, .. } | Response::Missing { index } => {
                    return Err(self.violation(&format!(
                        "sent chunk {index} where chunk {expected} was due"
                    )))
                }
                other => return Err(self.unexpected(&other, "chunks")),
            }
        }
        if x.next().await?.is_some() {
            return Err(self.violation("sent frames after the last chunk"));
        }
        self.counters.sample(&self.conn);
        if tracing::enabled!(tracing::Level::TRACE) {
            let path = self.conn.stats().path;
            tracing::trace!(
                peer = %self.peer,
                first,
                count,
                rtt_us = path.rtt.as_micros() as u64,
                cwnd = path.cwnd,
                lost = path.lost_packets,
                congestion_events = path.congestion_events,
                "chunks received"
            );
        }
        Ok(missing)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::NodeKey;

    fn id(n: u32) -> NodeId {
        let mut secret = [0u8; 32];
        secret[..4].copy_from_slice(&n.to_le_bytes());
        NodeKey::from_secret(secret).id()
    }

    #[test]
    fn idle_slots_are_swept_once_the_map_has_grown_and_busy_or_failing_ones_stay() {
        let mut conns = Conns::default();
        let failing = conns.slot(id(0));
        failing.try_lock().unwrap().failed = Some(DialFailure {
            addr: ([127, 0, 0, 1], 1).into(),
            at: std::time::Instant::now(),
            streak: 1,
            error: TransferError::Closed,
        });
        let dialling = conns.slot(id(1));
        let _held = dialling.try_lock().unwrap();
        for n in 2..SWEEP_FROM as u32 {
            conns.slot(id(n));
        }
        assert_eq!(conns.slots.len(), SWEEP_FROM, "no sweep below {SWEEP_FROM}");
        conns.slot(id(5)); // known: no sweep
        assert_eq!(conns.slots.len(), SWEEP_FROM);
        conns.slot(id(SWEEP_FROM as u32));
        let mut left: Vec<NodeId> = conns.slots.keys().copied().collect();
        left.sort();
        let mut want = vec![id(0), id(1), id(SWEEP_FROM as u32)];
        want.sort();
        assert_eq!(left, want, "the failing, the dialling and the new peer");
        assert!(
            Arc::ptr_eq(&conns.slot(id(0)), &failing),
            "the failure is kept"
        );
        // The next sweep waits until the map has doubled.
        assert_eq!(conns.sweep_at, 4);
    }
}
