//! Frames over quinn streams: read a frame (header checked before anything is allocated, the
//! body grown only as bytes arrive), read a chunk payload into one reused chunk buffer,
//! write frames and payloads without copying.

use bytes::Bytes;

use super::TransferError;
use crate::node::NodeId;
use crate::store::ChunkBuf;
use crate::wire::{self, Message, HEADER_LEN};

/// Reads the next frame; `Ok(None)` when the stream ended cleanly between frames. Returns the
/// message and its size on the wire.
pub(crate) async fn read_frame<M: Message>(
    recv: &mut quinn::RecvStream,
    peer: NodeId,
) -> Result<Option<(M, usize)>, TransferError> {
    let mut head = [0u8; HEADER_LEN];
    let mut got = 0;
    while got < HEADER_LEN {
        match recv
            .read(&mut head[got..])
            .await
            .map_err(|e| TransferError::read(peer, e))?
        {
            Some(n) => got += n,
            None if got == 0 => return Ok(None),
            None => return Err(truncated(peer)),
        }
    }
    let header = wire::parse_header::<M>(&head).map_err(|e| TransferError::wire(peer, e))?;
    // Grow with the bytes that actually arrive: a header alone cannot make us allocate its limit.
    let mut body = Vec::with_capacity(header.len.min(wire::MAX_CONTROL_FRAME));
    while body.len() < header.len {
        match recv
            .read_chunk(header.len - body.len(), true)
            .await
            .map_err(|e| TransferError::read(peer, e))?
        {
            Some(chunk) => body.extend_from_slice(&chunk.bytes),
            None => return Err(truncated(peer)),
        }
    }
    let message = wire::decode_body(header, &body).map_err(|e| TransferError::wire(peer, e))?;
    Ok(Some((message, HEADER_LEN + header.len)))
}

/// Reads exactly `len` raw bytes (a chunk payload, `len` already checked against the limit) into
/// one reused chunk buffer (see [`ChunkBuf`]).
pub(crate) async fn read_payload(
    recv: &mut quinn::RecvStream,
    peer: NodeId,
    len: usize,
) -> Result<Bytes, TransferError> {
    let mut buf = ChunkBuf::take(len);
    let mut got = 0;
    while got < len {
        match recv
            .read(&mut buf.as_mut_slice()[got..])
            .await
            .map_err(|e| TransferError::read(peer, e))?
        {
            Some(n) => got += n,
            None => return Err(truncated(peer)),
        }
    }
    Ok(buf.freeze())
}

/// Writes one frame; returns its size.
pub(crate) async fn write_frame<M: Message>(
    send: &mut quinn::SendStream,
    peer: NodeId,
    message: &M,
) -> Result<usize, TransferError> {
    let bytes = wire::encode(message).map_err(|e| TransferError::Local(e.to_string()))?;
    send.write_all(&bytes)
        .await
        .map_err(|e| TransferError::write(peer, e))?;
    Ok(bytes.len())
}

/// Writes a chunk frame followed by its payload, handing the payload to quinn without a copy.
pub(crate) async fn write_chunk(
    send: &mut quinn::SendStream,
    peer: NodeId,
    index: u64,
    payload: Bytes,
) -> Result<usize, TransferError> {
    let len = u32::try_from(payload.len())
        .map_err(|_| TransferError::Local(format!("chunk {index} is too large")))?;
    let head = wire::encode(&wire::Response::Chunk { index, len })
        .map_err(|e| TransferError::Local(e.to_string()))?;
    let total = head.len() + payload.len();
    send.write_all_chunks(&mut [Bytes::from(head), payload])
        .await
        .map_err(|e| TransferError::write(peer, e))?;
    Ok(total)
}

fn truncated(peer: NodeId) -> TransferError {
    TransferError::Protocol {
        peer,
        reason: "the stream ended inside a frame".into(),
    }
}
