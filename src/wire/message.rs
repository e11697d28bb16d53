//! The messages of the protocol and the checks a decoded message must pass.

use serde::{Deserialize, Serialize};

use super::holdings::Holdings;
use super::{
    frame::WireError, CHUNK_SIZE, MAX_ASK_ITEMS, MAX_CHUNKS_PER_REQUEST, MAX_PEER_HINTS,
    MIN_PROTOCOL_VERSION, PROTOCOL_VERSION,
};
use crate::etag::Etag;
use crate::manifest::{SignedManifest, MAX_MANIFEST_BYTES};
use crate::node::{NodeId, Topology};
use crate::repo::{CommitId, RepoId, RepoKind};
use crate::store::bitmap::{Bitmap, MAX_CHUNKS};

/// The first message each side sends: who it is, and proof that it holds the cluster secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    /// [`PROTOCOL_VERSION`] of the sender.
    pub version: u16,
    /// The sender's node id; must equal the key of its TLS certificate.
    pub node: NodeId,
    /// The sender's zone and rack.
    pub topology: Topology,
    /// Keyed BLAKE3 of keying material exported from this TLS session, keyed with the cluster's
    /// hello key (`ClusterSecret::hello_key`); differs per role.
    pub mac: [u8; super::MAC_LEN],
}

/// Another node pulling a blob, as named in a [`Response::Swarm`]: how to reach it (its QUIC
/// address) and where it sits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerHint {
    /// Its node id (the dialler checks it against the TLS certificate).
    pub node: NodeId,
    /// Its QUIC endpoint, as the answering node saw it.
    pub addr: std::net::SocketAddr,
    /// Its zone and rack, from its hello.
    pub topology: Topology,
}

/// One blob of a [`Request::Ask`]: the question of a [`Request::Swarm`], and whether the
/// asker also wants the chunk hashes of a [`Request::Hashes`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AskItem {
    /// The blob.
    pub etag: Etag,
    /// As in [`Request::Swarm`]: whether the asker found the server in the DHT's provider list.
    pub listed: bool,
    /// Whether to include the hashes the server vouches for (asked while no complete signed
    /// manifest gives them).
    pub hashes: bool,
}

/// The answer about one blob of a [`Request::Ask`], in the order asked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Asked {
    /// The chunks held, or `None` when the server holds nothing of the blob.
    pub have: Option<Bitmap>,
    /// When asked and something is held: per chunk the hash vouched for (as in
    /// [`Response::Hashes`]). `None` also when the answer's hash budget
    /// ([`MAX_ASK_HASH_BYTES`](super::MAX_ASK_HASH_BYTES)) was spent: ask with
    /// [`Request::Hashes`] then.
    pub hashes: Option<Vec<Option<[u8; 32]>>>,
    /// Other nodes that asked about the blob lately (at most [`MAX_PEER_HINTS`]).
    pub others: Vec<PeerHint>,
}

/// What a client asks. One request per stream (the hello on the first).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// The client's hello; only valid as the first request of a connection.
    Hello(Hello),
    /// The signed manifest of a snapshot.
    Manifest {
        /// Model or dataset.
        kind: RepoKind,
        /// Repository id.
        repo: RepoId,
        /// The snapshot's commit.
        commit: CommitId,
    },
    /// Which chunks of a blob the server holds.
    Have {
        /// The blob.
        etag: Etag,
    },
    /// The BLAKE3 hash of each chunk of a blob that the server vouches for (chunks it read from
    /// the Hub or verified itself): how chunks are checked before a complete signed manifest
    /// exists, when several nodes cold-start the same blob.
    Hashes {
        /// The blob.
        etag: Etag,
    },
    /// Chunks `first..first + count` of a blob. Answered in order, one [`Response::Chunk`] or
    /// [`Response::Missing`] per index.
    Chunks {
        /// The blob.
        etag: Etag,
        /// First chunk index.
        first: u64,
        /// Number of chunks, `1..=MAX_CHUNKS_PER_REQUEST`.
        count: u32,
    },
    /// What the server holds: its complete snapshots and its blobs, complete or partial (for
    /// operators; the pull path never asks it).
    Holdings,
    /// Which chunks of a blob the server holds, and up to [`MAX_PEER_HINTS`] other nodes that
    /// asked it about the blob lately (peer exchange: the DHT lists only a few providers per
    /// key, so pullers learn of the rest from each other). The server remembers the asker for
    /// the next ones.
    Swarm {
        /// The blob.
        etag: Etag,
        /// Whether the asker found the server in the DHT's provider list. Only such asks make the
        /// server count itself among the blob's co-pullers (stripe owners), whom every puller
        /// must see alike.
        listed: bool,
    },
    /// [`Request::Swarm`] (and [`Request::Hashes`] where asked) for up to [`MAX_ASK_ITEMS`]
    /// blobs in one question: a node pulling several blobs from the same peers asks each peer
    /// once per refresh instead of once or twice per blob (protocol version 3).
    Ask {
        /// The blobs, `1..=MAX_ASK_ITEMS` of them.
        items: Vec<AskItem>,
    },
}

/// What a server answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Response {
    /// The server's hello.
    Hello(Hello),
    /// The manifest, or `None` when the server does not know the snapshot.
    Manifest(Option<SignedManifest>),
    /// The chunks held, or `None` when the server holds nothing of the blob.
    Have(Option<Bitmap>),
    /// Per chunk the hash vouched for (or `None`); `None` when the server holds nothing of it.
    Hashes(Option<Vec<Option<[u8; 32]>>>),
    /// What the server holds, cut to the caps of [`Holdings`].
    Holdings(Holdings),
    /// The answer to [`Request::Swarm`].
    Swarm {
        /// The chunks held, or `None` when the server holds nothing of the blob.
        have: Option<Bitmap>,
        /// Other nodes that asked about the blob lately (at most [`MAX_PEER_HINTS`]).
        others: Vec<PeerHint>,
    },
    /// The answer to [`Request::Ask`]: one per blob asked, in the same order.
    Ask(Vec<Asked>),
    /// Chunk `index` follows as `len` raw bytes (`len <= CHUNK_SIZE`).
    Chunk {
        /// Chunk index.
        index: u64,
        /// Length of the raw payload that follows this frame.
        len: u32,
    },
    /// The server does not hold chunk `index`.
    Missing {
        /// Chunk index.
        index: u64,
    },
    /// The request failed; the stream ends after this.
    Error {
        /// What kind of failure.
        code: ErrorCode,
        /// A human sentence (at most `MAX_ERROR_MESSAGE` bytes).
        message: String,
    },
}

/// Why a server refused or failed a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ErrorCode {
    /// The request was valid but not allowed here (for example a second hello).
    BadRequest,
    /// The server failed to read its own store.
    Internal,
    /// The server is shutting down or overloaded; ask again later or elsewhere.
    Unavailable,
}

/// Application close codes of a connection (QUIC `CONNECTION_CLOSE` with an application error).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum CloseCode {
    /// Normal close: idle, or the peer is done.
    Done = 0,
    /// The peer's hello was missing, malformed, of another version, for another node id, or its
    /// MAC did not verify (it is not a member of this cluster).
    BadHello = 1,
    /// The peer violated the protocol (garbage, oversized or unexpected frames).
    Protocol = 2,
    /// The endpoint is shutting down.
    Shutdown = 3,
}

impl CloseCode {
    /// The code from its number; `None` for numbers this version does not know.
    pub fn from_u32(code: u32) -> Option<CloseCode> {
        [
            CloseCode::Done,
            CloseCode::BadHello,
            CloseCode::Protocol,
            CloseCode::Shutdown,
        ]
        .into_iter()
        .find(|c| *c as u32 == code)
    }
}

fn validate_hello(h: &Hello) -> Result<(), WireError> {
    if !(MIN_PROTOCOL_VERSION..=PROTOCOL_VERSION).contains(&h.version) {
        return Err(WireError::Invalid(format!(
            "hello of protocol version {}, expected {MIN_PROTOCOL_VERSION} to {PROTOCOL_VERSION}",
            h.version
        )));
    }
    Ok(())
}

fn validate_hashes(h: &[Option<[u8; 32]>]) -> Result<(), WireError> {
    if h.len() as u64 > MAX_CHUNKS {
        return Err(WireError::Invalid(format!("{} chunk hashes", h.len())));
    }
    Ok(())
}

fn validate_hints(others: &[PeerHint]) -> Result<(), WireError> {
    if others.len() > MAX_PEER_HINTS {
        return Err(WireError::Invalid(format!("{} peer hints", others.len())));
    }
    Ok(())
}

fn validate_ask_count(n: usize) -> Result<(), WireError> {
    if n == 0 || n > MAX_ASK_ITEMS {
        return Err(WireError::Invalid(format!(
            "an ask about {n} blobs (allowed: 1..={MAX_ASK_ITEMS})"
        )));
    }
    Ok(())
}

fn validate_bitmap(b: &Bitmap) -> Result<(), WireError> {
    if b.len() > MAX_CHUNKS || b.bits().len() as u64 != b.len().div_ceil(8) {
        return Err(WireError::Invalid(format!(
            "bitmap of {} chunks with {} bytes of bits",
            b.len(),
            b.bits().len()
        )));
    }
    Ok(())
}

impl Request {
    /// Checks what the types alone do not: a known version, a chunk range inside
    /// `0..MAX_CHUNKS` and at most [`MAX_CHUNKS_PER_REQUEST`] chunks.
    pub fn validate(&self) -> Result<(), WireError> {
        match self {
            Request::Hello(h) => validate_hello(h),
            Request::Manifest { .. }
            | Request::Have { .. }
            | Request::Hashes { .. }
            | Request::Holdings
            | Request::Swarm { .. } => Ok(()),
            Request::Ask { items } => validate_ask_count(items.len()),
            Request::Chunks { first, count, .. } => {
                if *count == 0 || *count > MAX_CHUNKS_PER_REQUEST {
                    return Err(WireError::Invalid(format!(
                        "a request for {count} chunks (allowed: 1..={MAX_CHUNKS_PER_REQUEST})"
                    )));
                }
                match first.checked_add(u64::from(*count)) {
                    Some(end) if end <= MAX_CHUNKS => Ok(()),
                    _ => Err(WireError::Invalid(format!(
                        "chunks {first}+{count} reach beyond {MAX_CHUNKS}"
                    ))),
                }
            }
        }
    }
}

impl Response {
    /// Checks what the types alone do not: a known version, a bitmap whose bits fit its length
    /// and [`MAX_CHUNKS`], a manifest within [`MAX_MANIFEST_BYTES`] with a 64-byte signature,
    /// chunk indices inside `0..MAX_CHUNKS`, payloads of at most [`CHUNK_SIZE`] and holdings
    /// within their caps ([`Holdings::validate`]).
    pub fn validate(&self) -> Result<(), WireError> {
        match self {
            Response::Hello(h) => validate_hello(h),
            Response::Holdings(h) => h.validate(),
            Response::Manifest(Some(m)) => {
                if m.body.len() > MAX_MANIFEST_BYTES || m.signature.len() != 64 {
                    return Err(WireError::Invalid(
                        "manifest too large or signature not 64 bytes".into(),
                    ));
                }
                Ok(())
            }
            Response::Manifest(None)
            | Response::Have(None)
            | Response::Hashes(None)
            | Response::Error { .. } => Ok(()),
            Response::Hashes(Some(h)) => validate_hashes(h),
            Response::Have(Some(b)) => validate_bitmap(b),
            Response::Swarm { have, others } => {
                validate_hints(others)?;
                have.as_ref().map_or(Ok(()), validate_bitmap)
            }
            Response::Ask(answers) => {
                validate_ask_count(answers.len())?;
                answers.iter().try_for_each(|a| {
                    validate_hints(&a.others)?;
                    a.hashes.as_deref().map_or(Ok(()), validate_hashes)?;
                    a.have.as_ref().map_or(Ok(()), validate_bitmap)
                })
            }
            Response::Chunk { index, len } => {
                if *index >= MAX_CHUNKS || u64::from(*len) > CHUNK_SIZE {
                    return Err(WireError::Invalid(format!(
                        "chunk {index} of {len} bytes is out of bounds"
                    )));
                }
                Ok(())
            }
            Response::Missing { index } => {
                if *index >= MAX_CHUNKS {
                    return Err(WireError::Invalid(format!("chunk index {index}")));
                }
                Ok(())
            }
        }
    }
}
