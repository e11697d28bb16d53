//! What can go wrong in a transfer, sorted by whose fault it is and whether trying again helps.

use std::net::SocketAddr;
use std::time::Duration;

use crate::node::NodeId;
use crate::wire::{CloseCode, ErrorCode, WireError};

/// A failed transfer operation.
///
/// Three families: the **peer's fault** (it broke the protocol, failed the cluster hello, or is
/// not who we dialled: avoid it, see [`TransferError::is_peer_fault`]); **retryable** network
/// trouble (timeouts, lost connections, a peer that is busy or shutting down: try again or
/// elsewhere, see [`TransferError::is_retryable`]); and **local** failures (configuration,
/// binding, our endpoint shut down), which neither another peer nor a retry fixes.
#[derive(Debug, Clone, thiserror::Error)]
pub enum TransferError {
    /// The peer sent bytes that break the wire protocol.
    #[error("peer {peer} violated the protocol: {reason}")]
    Protocol {
        /// The peer.
        peer: NodeId,
        /// What it did.
        reason: String,
    },
    /// The peer's hello was missing or wrong: it is not a member of this cluster (its MAC does
    /// not verify), or it claims another node id than its certificate.
    #[error("peer {peer} failed the cluster hello: {reason}")]
    BadHello {
        /// The peer.
        peer: NodeId,
        /// What was wrong.
        reason: String,
    },
    /// The node at the address we dialled holds another key than the one we expected.
    #[error("the node at {addr} is not {expected}{}", .got.map(|g| format!(" but {g}")).unwrap_or_default())]
    WrongIdentity {
        /// Where we dialled.
        addr: SocketAddr,
        /// Who we expected there.
        expected: NodeId,
        /// Who answered (if its certificate could be read).
        got: Option<NodeId>,
    },
    /// The peer refused our hello: our cluster secret differs from its one (or ours is the
    /// wrong one). Neither retryable nor provably the peer's fault.
    #[error("peer {peer} refused this node's cluster hello: check that both use the same cluster secret")]
    Rejected {
        /// The peer.
        peer: NodeId,
    },
    /// The peer says we broke the protocol (a bug on one side).
    #[error("peer {peer} closed the connection, saying this node violated the protocol: {reason}")]
    Accused {
        /// The peer.
        peer: NodeId,
        /// Its reason.
        reason: String,
    },
    /// The peer answered the request with an error.
    #[error("peer {peer} could not serve the request ({code:?}): {message}")]
    Remote {
        /// The peer.
        peer: NodeId,
        /// Its error code.
        code: ErrorCode,
        /// Its message.
        message: String,
    },
    /// The connection failed or was lost (timeout, reset, closed by the peer).
    #[error("connection to {peer} lost: {reason}")]
    Connection {
        /// The peer.
        peer: NodeId,
        /// What quinn reported.
        reason: String,
    },
    /// A stream was reset or stopped by the peer.
    #[error("request stream to {peer} failed: {reason}")]
    Stream {
        /// The peer.
        peer: NodeId,
        /// What quinn reported.
        reason: String,
    },
    /// A dial of the peer failed a moment ago, and it is not dialled again yet (see
    /// [`crate::transfer::config::DIAL_BACKOFF`]).
    #[error("peer {peer} is not dialled again for {retry_in:?}: the last dial failed: {last}")]
    Unreachable {
        /// The peer.
        peer: NodeId,
        /// How long until it is dialled again.
        retry_in: Duration,
        /// Why the last dial failed.
        last: Box<TransferError>,
    },
    /// An operation did not finish in time.
    #[error("{what} timed out after {after:?}")]
    Timeout {
        /// What was waited for.
        what: &'static str,
        /// How long.
        after: Duration,
    },
    /// The endpoint could not be bound.
    #[error("cannot bind the transfer endpoint on {addr}: {source}")]
    Bind {
        /// The listen address.
        addr: SocketAddr,
        /// The OS error (shared, so that the error can be cloned for every caller that waited
        /// on one failed operation).
        source: std::sync::Arc<std::io::Error>,
    },
    /// The TLS or QUIC configuration could not be built (a bug or a bad node key).
    #[error("TLS setup failed: {0}")]
    Tls(String),
    /// This endpoint is shut down.
    #[error("the transfer endpoint is shut down")]
    Closed,
    /// Something else failed on this side.
    #[error("{0}")]
    Local(String),
}

impl TransferError {
    /// Whether the peer misbehaved (protocol violation, bad hello, wrong identity): the caller
    /// should drop and avoid it.
    pub fn is_peer_fault(&self) -> bool {
        matches!(
            self,
            TransferError::Protocol { .. }
                | TransferError::BadHello { .. }
                | TransferError::WrongIdentity { .. }
        )
    }

    /// Whether the peer refused for now (all its upload slots taken, or shutting down): ask
    /// another, or it again later; no fault of anyone's.
    pub fn is_busy(&self) -> bool {
        matches!(
            self,
            TransferError::Remote {
                code: ErrorCode::Unavailable,
                ..
            }
        )
    }

    /// Whether trying again (later, or with another peer) may succeed: network failures,
    /// timeouts, and a peer that is busy, shutting down or failed to read its disk.
    pub fn is_retryable(&self) -> bool {
        match self {
            TransferError::Connection { .. }
            | TransferError::Stream { .. }
            | TransferError::Timeout { .. }
            | TransferError::Unreachable { .. } => true,
            TransferError::Remote { code, .. } => {
                matches!(code, ErrorCode::Internal | ErrorCode::Unavailable)
            }
            _ => false,
        }
    }

    /// A protocol violation by `peer` from a wire decoding error.
    pub(crate) fn wire(peer: NodeId, e: WireError) -> TransferError {
        TransferError::Protocol {
            peer,
            reason: e.to_string(),
        }
    }

    /// Maps a lost connection, reading the peer's close code when it closed it on purpose.
    pub(crate) fn connection(peer: NodeId, e: quinn::ConnectionError) -> TransferError {
        match &e {
            quinn::ConnectionError::ApplicationClosed(close) => {
                let reason = String::from_utf8_lossy(&close.reason).into_owned();
                match u32::try_from(close.error_code.into_inner())
                    .ok()
                    .and_then(CloseCode::from_u32)
                {
                    Some(CloseCode::BadHello) => TransferError::Rejected { peer },
                    Some(CloseCode::Protocol) => TransferError::Accused { peer, reason },
                    _ => TransferError::Connection {
                        peer,
                        reason: format!("closed by the peer: {reason}"),
                    },
                }
            }
            quinn::ConnectionError::LocallyClosed => TransferError::Closed,
            _ => TransferError::Connection {
                peer,
                reason: e.to_string(),
            },
        }
    }

    pub(crate) fn read(peer: NodeId, e: quinn::ReadError) -> TransferError {
        match e {
            quinn::ReadError::ConnectionLost(c) => TransferError::connection(peer, c),
            other => TransferError::Stream {
                peer,
                reason: other.to_string(),
            },
        }
    }

    pub(crate) fn write(peer: NodeId, e: quinn::WriteError) -> TransferError {
        match e {
            quinn::WriteError::ConnectionLost(c) => TransferError::connection(peer, c),
            other => TransferError::Stream {
                peer,
                reason: other.to_string(),
            },
        }
    }
}
