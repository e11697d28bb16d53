//! The peer-to-peer wire protocol: messages, their framing, and their size limits. Pure: no
//! sockets, no async runtime, no clock, so every rule here is tested without a network.
//!
//! # Connection and streams
//!
//! A connection is QUIC with one of the ALPNs in [`ALPNS`]: `hfmesh/3` (version 3 added
//! [`Request::Ask`]) or `hfmesh/2` (version 2 added [`Request::Swarm`]). Both sides offer both,
//! newest first, so a cluster can be upgraded one host at a time: two version-3 nodes speak 3,
//! and a version-3 node speaks 2 with an older one (it then asks with `Swarm` and `Hashes`
//! instead of `Ask`). The client opens the first bidirectional stream and sends
//! [`Request::Hello`], whose version must be the negotiated one; the server answers
//! [`Response::Hello`].
//! Every later request opens its own bidirectional stream: the client writes one request frame
//! and finishes its side; the server writes the response frames and finishes its side.
//!
//! # Frames
//!
//! ```text
//! frame   = kind:u8  len:u32 (big-endian)  body:[u8; len]      body = postcard
//! chunk   = frame(kind = CHUNK, body = {index, len})  payload:[u8; len]   (raw bytes)
//! ```
//!
//! The 5-byte header is checked before anything is allocated: an unknown `kind`, or a `len`
//! above that kind's limit ([`MAX_CONTROL_FRAME`] for most, [`MAX_HAVE_FRAME`] for a bitmap,
//! [`MAX_MANIFEST_FRAME`] for a manifest, [`MAX_HOLDINGS_FRAME`] for a holdings list,
//! [`MAX_SWARM_FRAME`] for a bitmap with peer hints, [`MAX_ASK_FRAME`] for a batch of those with
//! chunk hashes), is an
//! error. A chunk's raw payload follows its header
//! frame and is at most [`CHUNK_SIZE`] bytes. Bodies are `postcard` (a maintained, compact,
//! serde-based format; `bincode` is not used, see `STYLE.md`) and must be consumed exactly:
//! trailing bytes are an error. Decoded values are validated (counts, indices, bitmap sizes)
//! by [`Request::validate`] and [`Response::validate`], which the decoder calls.

mod frame;
mod holdings;
mod message;
#[cfg(test)]
mod tests;

pub use frame::{
    decode, decode_body, encode, parse_header, Decoded, Header, Message, WireError, HEADER_LEN,
};
pub use holdings::{HeldBlob, HeldSnapshot, Holdings, MAX_HELD_BLOBS, MAX_HELD_SNAPSHOTS};
pub use message::{AskItem, Asked, CloseCode, ErrorCode, Hello, PeerHint, Request, Response};

use crate::manifest::MAX_MANIFEST_BYTES;
use crate::store::bitmap::MAX_CHUNKS;

/// The TLS ALPN of this protocol version.
pub const ALPN: &[u8] = b"hfmesh/3";

/// The ALPNs this node speaks, newest first (a TLS server picks the first of its own list that
/// the client offers). A peer that speaks none of them fails the handshake.
pub const ALPNS: [&[u8]; 2] = [ALPN, b"hfmesh/2"];

/// The newest protocol version, carried in the hellos (the same number as in [`ALPN`]).
pub const PROTOCOL_VERSION: u16 = 3;

/// The oldest protocol version still spoken (the last entry of [`ALPNS`]).
pub const MIN_PROTOCOL_VERSION: u16 = 2;

/// The protocol version an ALPN names (`hfmesh/<n>`), if it is one this node speaks.
pub fn version_of_alpn(alpn: &[u8]) -> Option<u16> {
    let n: u16 = std::str::from_utf8(alpn.strip_prefix(b"hfmesh/")?)
        .ok()?
        .parse()
        .ok()?;
    (MIN_PROTOCOL_VERSION..=PROTOCOL_VERSION)
        .contains(&n)
        .then_some(n)
}

/// Most blobs one [`Request::Ask`] may ask about (the pull fetches 4 blobs at once by default).
pub const MAX_ASK_ITEMS: usize = 16;

/// Most bytes of chunk hashes one [`Response::Ask`] carries: the answering node leaves out the
/// hashes of the blobs that no longer fit (the asker then asks for them with
/// [`Request::Hashes`]). 16 MiB holds the hashes of about 500,000 chunks, 2 TB of blobs.
pub const MAX_ASK_HASH_BYTES: usize = 16 << 20;

/// Largest body of an `Ask` answer: [`MAX_ASK_ITEMS`] answers of a bitmap and peer hints, and
/// [`MAX_ASK_HASH_BYTES`] of hashes with room for their framing.
pub const MAX_ASK_FRAME: usize = MAX_ASK_ITEMS * MAX_SWARM_FRAME + MAX_ASK_HASH_BYTES + (1 << 20);

/// Most peers one `Swarm` answer names.
pub const MAX_PEER_HINTS: usize = 8;

/// Largest body of a `Swarm` answer: a bitmap as in `Have`, and [`MAX_PEER_HINTS`] peers whose
/// topology labels together fit a control frame.
pub const MAX_SWARM_FRAME: usize = MAX_HAVE_FRAME + MAX_CONTROL_FRAME;

/// Largest body of a control frame (hello, requests, chunk headers, errors): 64 KiB.
pub const MAX_CONTROL_FRAME: usize = 64 << 10;

/// Largest body of a `Have` answer: a bitmap of [`MAX_CHUNKS`] bits plus its framing.
pub const MAX_HAVE_FRAME: usize = (MAX_CHUNKS / 8) as usize + 64;

/// Largest body of a `Manifest` answer: a manifest body of [`MAX_MANIFEST_BYTES`] plus the
/// signer, the signature and their framing.
pub const MAX_MANIFEST_FRAME: usize = MAX_MANIFEST_BYTES + 1024;

/// Largest body of a `Holdings` answer: [`MAX_HELD_SNAPSHOTS`] snapshots of at most about 160
/// bytes (a 96-byte repo id, a 40-hex commit, two varints) and [`MAX_HELD_BLOBS`] blobs of at
/// most about 100 bytes (a 64-hex etag, three varints), with room to spare: 1 MiB.
pub const MAX_HOLDINGS_FRAME: usize = 1 << 20;

/// Most chunks one `Chunks` request may ask for (4 GiB at [`CHUNK_SIZE`]); bounds the work one
/// request can make a server do.
pub const MAX_CHUNKS_PER_REQUEST: u32 = 1024;

/// Longest error message sent (longer ones are cut on encode).
pub const MAX_ERROR_MESSAGE: usize = 1024;

/// Length of the membership MAC in a hello (a keyed BLAKE3 hash).
pub const MAC_LEN: usize = 32;

/// Largest raw payload of one chunk: the chunk size.
pub const CHUNK_SIZE: u64 = crate::store::CHUNK_SIZE;
