//! The cluster hello: after the TLS handshake each side proves it holds the cluster secret with a
//! MAC over keying material exported from this very TLS session, so a MAC can be neither
//! replayed on another connection nor reflected to the other side (the role is in the context).

use super::TransferError;
use crate::node::{NodeId, Topology};
use crate::wire::{Hello, MAC_LEN};

/// TLS exporter label of the hello MAC input.
const EXPORTER_LABEL: &[u8] = b"hfmesh hello v1";

/// Which side of the connection a hello is from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    /// The side that dialled.
    Client,
    /// The side that accepted.
    Server,
}

impl Role {
    fn context(self) -> &'static [u8] {
        match self {
            Role::Client => b"client",
            Role::Server => b"server",
        }
    }
}

/// The MAC `role` must send on `conn`: keyed BLAKE3 (key: the cluster's hello key) of 32 bytes
/// exported from the TLS session with label [`EXPORTER_LABEL`] and the role as context.
fn mac(
    conn: &quinn::Connection,
    hello_key: &[u8; 32],
    role: Role,
) -> Result<blake3::Hash, TransferError> {
    let mut exported = [0u8; 32];
    conn.export_keying_material(&mut exported, EXPORTER_LABEL, role.context())
        .map_err(|_| TransferError::Local("TLS keying material export failed".into()))?;
    Ok(blake3::keyed_hash(hello_key, &exported))
}

/// This node's hello as `role` on `conn`, whose handshake settled on protocol `version`.
pub(crate) fn make(
    conn: &quinn::Connection,
    hello_key: &[u8; 32],
    role: Role,
    node: NodeId,
    topology: &Topology,
    version: u16,
) -> Result<Hello, TransferError> {
    let mac: [u8; MAC_LEN] = *mac(conn, hello_key, role)?.as_bytes();
    Ok(Hello {
        version,
        node,
        topology: topology.clone(),
        mac,
    })
}

/// Checks the hello `peer` (the key of its TLS certificate) sent as `role`: its version must be
/// the one the handshake settled on (`version`), the node id its certificate's, and the MAC
/// must verify (compared in constant time). Returns why not.
pub(crate) fn check(
    conn: &quinn::Connection,
    hello_key: &[u8; 32],
    role: Role,
    hello: &Hello,
    peer: NodeId,
    version: u16,
) -> Result<(), String> {
    if hello.version != version {
        return Err(format!(
            "hello of protocol version {} on a connection that settled on {version}",
            hello.version
        ));
    }
    if hello.node != peer {
        return Err(format!(
            "hello names node {} but the certificate is {peer}",
            hello.node
        ));
    }
    let expected = mac(conn, hello_key, role).map_err(|e| e.to_string())?;
    if expected != blake3::Hash::from(hello.mac) {
        return Err("the membership MAC does not verify (another cluster secret)".into());
    }
    Ok(())
}
