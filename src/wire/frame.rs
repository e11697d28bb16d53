//! Framing: `kind:u8 len:u32be body`, per-kind size limits checked before allocation, an encoder
//! to bytes and an incremental decoder over `&[u8]`.

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::message::{Hello, Request, Response};
use super::{
    MAX_ASK_FRAME, MAX_CONTROL_FRAME, MAX_ERROR_MESSAGE, MAX_HAVE_FRAME, MAX_HOLDINGS_FRAME,
    MAX_MANIFEST_FRAME, MAX_SWARM_FRAME,
};

/// Length of a frame header: one kind byte and a big-endian `u32` body length.
pub const HEADER_LEN: usize = 5;

mod kind {
    pub const REQ_HELLO: u8 = 0x01;
    pub const REQ_MANIFEST: u8 = 0x02;
    pub const REQ_HAVE: u8 = 0x03;
    pub const REQ_CHUNKS: u8 = 0x04;
    pub const REQ_HASHES: u8 = 0x05;
    pub const REQ_HOLDINGS: u8 = 0x06;
    pub const REQ_SWARM: u8 = 0x07;
    pub const REQ_ASK: u8 = 0x08;
    pub const RESP_HELLO: u8 = 0x81;
    pub const RESP_MANIFEST: u8 = 0x82;
    pub const RESP_HAVE: u8 = 0x83;
    pub const RESP_CHUNK: u8 = 0x84;
    pub const RESP_MISSING: u8 = 0x85;
    pub const RESP_ERROR: u8 = 0x86;
    pub const RESP_HASHES: u8 = 0x87;
    pub const RESP_HOLDINGS: u8 = 0x88;
    pub const RESP_SWARM: u8 = 0x89;
    pub const RESP_ASK: u8 = 0x8a;
}

/// Why bytes from a peer are not a valid frame. Every variant is the sender's fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// The kind byte names no message of this direction and version.
    #[error("unknown frame kind {0:#04x}")]
    UnknownKind(u8),
    /// The header announces a body above the kind's limit (refused before allocating).
    #[error("frame of kind {kind:#04x} announces {len} bytes, more than its limit of {limit}")]
    TooLarge {
        /// The frame kind.
        kind: u8,
        /// The announced body length.
        len: usize,
        /// The kind's limit.
        limit: usize,
    },
    /// The body does not decode as the kind's message, or has bytes left over.
    #[error("malformed frame body: {0}")]
    Malformed(String),
    /// The message decodes but breaks a rule (a count, an index, a size, a version).
    #[error("invalid message: {0}")]
    Invalid(String),
}

/// A message that travels in frames: [`Request`] (client to server) or [`Response`].
pub trait Message: Sized {
    /// The frame kind byte of this message.
    fn kind(&self) -> u8;
    /// The largest body a frame of `kind` may have; `None` if `kind` is not of this direction.
    fn limit(kind: u8) -> Option<usize>;
    /// Appends the postcard body to `out`.
    fn write_body(&self, out: &mut Vec<u8>) -> Result<(), postcard::Error>;
    /// Decodes the body of a frame of `kind` (exactly; trailing bytes are an error).
    fn read_body(kind: u8, body: &[u8]) -> Result<Self, WireError>;
    /// Semantic checks (see [`Request::validate`], [`Response::validate`]).
    fn validate(&self) -> Result<(), WireError>;
}

/// A validated frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// The frame kind.
    pub kind: u8,
    /// The body length, within the kind's limit.
    pub len: usize,
}

/// The result of [`decode`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decoded<M> {
    /// The buffer holds only part of a frame; at least this many bytes in total are needed
    /// (never more than the kind's limit plus [`HEADER_LEN`]).
    NeedMore(usize),
    /// A whole frame: the message and how many bytes of the buffer it used.
    Frame {
        /// The decoded, validated message.
        message: M,
        /// Bytes consumed from the front of the buffer.
        consumed: usize,
    },
}

/// Encodes `message` as one frame. Fails if the message breaks its own limits (a local bug, or
/// a manifest too large to send).
pub fn encode<M: Message>(message: &M) -> Result<Vec<u8>, WireError> {
    message.validate()?;
    let kind = message.kind();
    let limit = M::limit(kind).ok_or(WireError::UnknownKind(kind))?;
    let mut out = vec![kind, 0, 0, 0, 0];
    message
        .write_body(&mut out)
        .map_err(|e| WireError::Malformed(e.to_string()))?;
    let len = out.len() - HEADER_LEN;
    if len > limit {
        return Err(WireError::TooLarge { kind, len, limit });
    }
    out[1..HEADER_LEN].copy_from_slice(&(len as u32).to_be_bytes());
    Ok(out)
}

/// Checks a frame header: a known kind of direction `M` and a length within its limit.
pub fn parse_header<M: Message>(bytes: &[u8; HEADER_LEN]) -> Result<Header, WireError> {
    let kind = bytes[0];
    let limit = M::limit(kind).ok_or(WireError::UnknownKind(kind))?;
    let len = u32::from_be_bytes([bytes[1], bytes[2], bytes[3], bytes[4]]) as usize;
    if len > limit {
        return Err(WireError::TooLarge { kind, len, limit });
    }
    Ok(Header { kind, len })
}

/// Decodes and validates the body of a frame whose header was checked by [`parse_header`].
pub fn decode_body<M: Message>(header: Header, body: &[u8]) -> Result<M, WireError> {
    if body.len() != header.len {
        return Err(WireError::Malformed(format!(
            "body of {} bytes, header says {}",
            body.len(),
            header.len
        )));
    }
    let message = M::read_body(header.kind, body)?;
    message.validate()?;
    Ok(message)
}

/// Decodes the frame at the front of `buf`, if it is all there. Never allocates more than the
/// header allows, never panics on any input.
pub fn decode<M: Message>(buf: &[u8]) -> Result<Decoded<M>, WireError> {
    let Some(head) = buf.first_chunk::<HEADER_LEN>() else {
        return Ok(Decoded::NeedMore(HEADER_LEN));
    };
    let header = parse_header::<M>(head)?;
    let total = HEADER_LEN + header.len;
    match buf.get(HEADER_LEN..total) {
        None => Ok(Decoded::NeedMore(total)),
        Some(body) => Ok(Decoded::Frame {
            message: decode_body(header, body)?,
            consumed: total,
        }),
    }
}

fn exact<T: DeserializeOwned>(body: &[u8]) -> Result<T, WireError> {
    let (value, rest) =
        postcard::take_from_bytes::<T>(body).map_err(|e| WireError::Malformed(e.to_string()))?;
    if !rest.is_empty() {
        return Err(WireError::Malformed(format!(
            "{} bytes after the message",
            rest.len()
        )));
    }
    Ok(value)
}

fn put<T: Serialize + ?Sized>(value: &T, out: &mut Vec<u8>) -> Result<(), postcard::Error> {
    let bytes = postcard::to_extend(value, std::mem::take(out))?;
    *out = bytes;
    Ok(())
}

impl Message for Request {
    fn kind(&self) -> u8 {
        match self {
            Request::Hello(_) => kind::REQ_HELLO,
            Request::Manifest { .. } => kind::REQ_MANIFEST,
            Request::Have { .. } => kind::REQ_HAVE,
            Request::Hashes { .. } => kind::REQ_HASHES,
            Request::Chunks { .. } => kind::REQ_CHUNKS,
            Request::Holdings => kind::REQ_HOLDINGS,
            Request::Swarm { .. } => kind::REQ_SWARM,
            Request::Ask { .. } => kind::REQ_ASK,
        }
    }

    fn limit(k: u8) -> Option<usize> {
        matches!(
            k,
            kind::REQ_HELLO
                | kind::REQ_MANIFEST
                | kind::REQ_HAVE
                | kind::REQ_CHUNKS
                | kind::REQ_HASHES
                | kind::REQ_HOLDINGS
                | kind::REQ_SWARM
                | kind::REQ_ASK
        )
        .then_some(MAX_CONTROL_FRAME)
    }

    fn write_body(&self, out: &mut Vec<u8>) -> Result<(), postcard::Error> {
        match self {
            Request::Hello(h) => put(h, out),
            Request::Manifest { kind, repo, commit } => put(&(kind, repo, commit), out),
            Request::Have { etag } => put(etag, out),
            Request::Hashes { etag } => put(etag, out),
            Request::Chunks { etag, first, count } => put(&(etag, first, count), out),
            Request::Holdings => put(&(), out),
            Request::Swarm { etag, listed } => put(&(etag, listed), out),
            Request::Ask { items } => put(items, out),
        }
    }

    fn read_body(k: u8, body: &[u8]) -> Result<Self, WireError> {
        Ok(match k {
            kind::REQ_HELLO => Request::Hello(exact::<Hello>(body)?),
            kind::REQ_MANIFEST => {
                let (kind, repo, commit) = exact(body)?;
                Request::Manifest { kind, repo, commit }
            }
            kind::REQ_HAVE => Request::Have { etag: exact(body)? },
            kind::REQ_HASHES => Request::Hashes { etag: exact(body)? },
            kind::REQ_CHUNKS => {
                let (etag, first, count) = exact(body)?;
                Request::Chunks { etag, first, count }
            }
            kind::REQ_HOLDINGS => {
                exact::<()>(body)?;
                Request::Holdings
            }
            kind::REQ_SWARM => {
                let (etag, listed) = exact(body)?;
                Request::Swarm { etag, listed }
            }
            kind::REQ_ASK => Request::Ask {
                items: exact(body)?,
            },
            other => return Err(WireError::UnknownKind(other)),
        })
    }

    fn validate(&self) -> Result<(), WireError> {
        Request::validate(self)
    }
}

impl Message for Response {
    fn kind(&self) -> u8 {
        match self {
            Response::Hello(_) => kind::RESP_HELLO,
            Response::Manifest(_) => kind::RESP_MANIFEST,
            Response::Have(_) => kind::RESP_HAVE,
            Response::Hashes(_) => kind::RESP_HASHES,
            Response::Holdings(_) => kind::RESP_HOLDINGS,
            Response::Swarm { .. } => kind::RESP_SWARM,
            Response::Ask(_) => kind::RESP_ASK,
            Response::Chunk { .. } => kind::RESP_CHUNK,
            Response::Missing { .. } => kind::RESP_MISSING,
            Response::Error { .. } => kind::RESP_ERROR,
        }
    }

    fn limit(k: u8) -> Option<usize> {
        match k {
            kind::RESP_HELLO | kind::RESP_CHUNK | kind::RESP_MISSING | kind::RESP_ERROR => {
                Some(MAX_CONTROL_FRAME)
            }
            kind::RESP_HAVE => Some(MAX_HAVE_FRAME),
            kind::RESP_MANIFEST | kind::RESP_HASHES => Some(MAX_MANIFEST_FRAME),
            kind::RESP_HOLDINGS => Some(MAX_HOLDINGS_FRAME),
            kind::RESP_SWARM => Some(MAX_SWARM_FRAME),
            kind::RESP_ASK => Some(MAX_ASK_FRAME),
            _ => None,
        }
    }

    fn write_body(&self, out: &mut Vec<u8>) -> Result<(), postcard::Error> {
        match self {
            Response::Hello(h) => put(h, out),
            Response::Manifest(m) => put(m, out),
            Response::Have(b) => put(b, out),
            Response::Hashes(h) => put(h, out),
            Response::Holdings(h) => put(h, out),
            Response::Swarm { have, others } => put(&(have, others), out),
            Response::Ask(answers) => put(answers, out),
            Response::Chunk { index, len } => put(&(index, len), out),
            Response::Missing { index } => put(index, out),
            Response::Error { code, message } => {
                let mut cut = message.len().min(MAX_ERROR_MESSAGE);
                while !message.is_char_boundary(cut) {
                    cut -= 1;
                }
                put(&(code, &message[..cut]), out)
            }
        }
    }

    fn read_body(k: u8, body: &[u8]) -> Result<Self, WireError> {
        Ok(match k {
            kind::RESP_HELLO => Response::Hello(exact(body)?),
            kind::RESP_MANIFEST => Response::Manifest(exact(body)?),
            kind::RESP_HAVE => Response::Have(exact(body)?),
            kind::RESP_HASHES => Response::Hashes(exact(body)?),
            kind::RESP_HOLDINGS => Response::Holdings(exact(body)?),
            kind::RESP_SWARM => {
                let (have, others) = exact(body)?;
                Response::Swarm { have, others }
            }
            kind::RESP_ASK => Response::Ask(exact(body)?),
            kind::RESP_CHUNK => {
                let (index, len) = exact(body)?;
                Response::Chunk { index, len }
            }
            kind::RESP_MISSING => Response::Missing {
                index: exact(body)?,
            },
            kind::RESP_ERROR => {
                let (code, message) = exact(body)?;
                Response::Error { code, message }
            }
            other => return Err(WireError::UnknownKind(other)),
        })
    }

    fn validate(&self) -> Result<(), WireError> {
        Response::validate(self)
    }
}
