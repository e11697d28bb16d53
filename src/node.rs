//! Who a node is and which cluster it belongs to: its ed25519 node key (persisted), its id (the
//! public key, shown as a libp2p peer id), its topology labels, and the cluster secret from
//! which the keys that admit a node to the DHT and to QUIC transfers are derived.

use std::fmt;
use std::fs;
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use ed25519_dalek::{Signer, Verifier};
use serde::{Deserialize, Serialize};

/// First line of a node key file.
const KEY_FILE_HEADER: &str = "hfmesh-node-key-v1";

/// A node's long-lived signing key. Its public half is the node's [`NodeId`].
#[derive(Clone)]
pub struct NodeKey(ed25519_dalek::SigningKey);

impl fmt::Debug for NodeKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NodeKey({})", self.id())
    }
}

impl NodeKey {
    /// A fresh random key.
    pub fn generate() -> NodeKey {
        NodeKey(ed25519_dalek::SigningKey::from_bytes(&rand::random::<
            [u8; 32],
        >()))
    }

    /// The key whose secret is `bytes` (deterministic keys for tests).
    pub fn from_secret(bytes: [u8; 32]) -> NodeKey {
        NodeKey(ed25519_dalek::SigningKey::from_bytes(&bytes))
    }

    /// Loads the key at `path`, or creates it there (mode 0600) when it does not exist, so a
    /// node keeps its identity across restarts.
    pub fn load_or_create(path: &Path) -> io::Result<NodeKey> {
        match fs::read_to_string(path) {
            Ok(text) => parse_key_file(&text).ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("{} is not an hfmesh node key file", path.display()),
                )
            }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let key = NodeKey::generate();
                if let Some(parent) = path.parent() {
                    fs::create_dir_all(parent)?;
                }
                let tmp = path.with_extension("tmp");
                let mut f = fs::OpenOptions::new()
                    .write(true)
                    .create(true)
                    .truncate(true)
                    .mode(0o600)
                    .open(&tmp)?;
                io::Write::write_all(
                    &mut f,
                    format!("{KEY_FILE_HEADER}\n{}\n", hex::encode(key.secret())).as_bytes(),
                )?;
                f.sync_all()?;
                fs::rename(&tmp, path)?;
                Ok(key)
            }
            Err(e) => Err(e),
        }
    }

    /// The node's id.
    pub fn id(&self) -> NodeId {
        NodeId(self.0.verifying_key().to_bytes())
    }

    /// The 32 secret bytes (to build the same identity for libp2p and TLS).
    pub fn secret(&self) -> [u8; 32] {
        self.0.to_bytes()
    }

    /// Signs `message`.
    pub fn sign(&self, message: &[u8]) -> [u8; 64] {
        self.0.sign(message).to_bytes()
    }
}

fn parse_key_file(text: &str) -> Option<NodeKey> {
    let mut lines = text.lines();
    (lines.next()? == KEY_FILE_HEADER).then_some(())?;
    let bytes: [u8; 32] = hex::decode(lines.next()?.trim()).ok()?.try_into().ok()?;
    Some(NodeKey::from_secret(bytes))
}

/// A node's id: its ed25519 public key. Displayed as the libp2p peer id of that key
/// (`12D3KooW...`), so logs of both layers agree.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct NodeId(pub [u8; 32]);

impl NodeId {
    /// Whether `signature` is this node's signature of `message`.
    pub fn verify(&self, message: &[u8], signature: &[u8; 64]) -> bool {
        let Ok(key) = ed25519_dalek::VerifyingKey::from_bytes(&self.0) else {
            return false;
        };
        key.verify(message, &ed25519_dalek::Signature::from_bytes(signature))
            .is_ok()
    }

    /// The libp2p peer id bytes: an identity multihash of the protobuf-encoded public key.
    pub fn peer_id_bytes(&self) -> Vec<u8> {
        let mut v = vec![0x00, 36, 0x08, 0x01, 0x12, 0x20];
        v.extend_from_slice(&self.0);
        v
    }

    /// The id from libp2p peer id bytes of an ed25519 key.
    pub fn from_peer_id_bytes(bytes: &[u8]) -> Option<NodeId> {
        let key = bytes.strip_prefix(&[0x00, 36, 0x08, 0x01, 0x12, 0x20])?;
        Some(NodeId(key.try_into().ok()?))
    }

    /// The first characters of the display form, for tables.
    pub fn short(&self) -> String {
        let s = self.to_string();
        s[s.len().saturating_sub(10)..].to_string()
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&base58(&self.peer_id_bytes()))
    }
}

impl fmt::Debug for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NodeId({self})")
    }
}

fn base58(bytes: &[u8]) -> String {
    const ALPHABET: &[u8] = b"123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz";
    let mut digits: Vec<u8> = Vec::new();
    for &b in bytes {
        let mut carry = b as u32;
        for d in digits.iter_mut() {
            carry += (*d as u32) << 8;
            *d = (carry % 58) as u8;
            carry /= 58;
        }
        while carry > 0 {
            digits.push((carry % 58) as u8);
            carry /= 58;
        }
    }
    let zeros = bytes.iter().take_while(|&&b| b == 0).count();
    std::iter::repeat_n('1', zeros)
        .chain(digits.iter().rev().map(|&d| ALPHABET[d as usize] as char))
        .collect()
}

/// Where a node sits: labels an operator sets, used to prefer near peers (same rack, then zone).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Topology {
    /// Availability zone or data hall.
    pub zone: Option<String>,
    /// Rack (or top-of-rack switch).
    pub rack: Option<String>,
}

/// The secret every node of a cluster shares. Nodes without it can neither join the DHT nor
/// fetch a byte: the DHT's private-network key and the QUIC hello's MAC key derive from it.
#[derive(Clone)]
pub struct ClusterSecret([u8; 32]);

impl fmt::Debug for ClusterSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ClusterSecret(..)")
    }
}

/// A cluster secret that is too short to be a secret.
#[derive(Debug, thiserror::Error)]
#[error("the cluster secret must be at least 16 bytes (for example 32 random bytes, hex-encoded)")]
pub struct WeakSecret;

impl ClusterSecret {
    /// Derives the cluster secret from the operator's secret material (at least 16 bytes;
    /// surrounding whitespace is ignored).
    pub fn from_material(material: &[u8]) -> Result<ClusterSecret, WeakSecret> {
        let trimmed = material.trim_ascii();
        if trimmed.len() < 16 {
            return Err(WeakSecret);
        }
        Ok(ClusterSecret(blake3::derive_key(
            "hfmesh cluster secret v1",
            trimmed,
        )))
    }

    /// The 32-byte pre-shared key of libp2p's private network (`pnet`).
    pub fn pnet_key(&self) -> [u8; 32] {
        blake3::derive_key("hfmesh libp2p pnet key v1", &self.0)
    }

    /// The key of the MAC each side of a QUIC connection sends to prove it is a member.
    pub fn hello_key(&self) -> [u8; 32] {
        blake3::derive_key("hfmesh quic hello key v1", &self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peer_ids_look_like_libp2p_ones() {
        let id = NodeKey::from_secret([7; 32]).id();
        let s = id.to_string();
        assert!(s.starts_with("12D3KooW"), "{s}");
        assert_eq!(NodeId::from_peer_id_bytes(&id.peer_id_bytes()), Some(id));
    }

    #[test]
    fn signatures_verify_only_for_the_signer() {
        let a = NodeKey::generate();
        let b = NodeKey::generate();
        let sig = a.sign(b"manifest");
        assert!(a.id().verify(b"manifest", &sig));
        assert!(!a.id().verify(b"manifest!", &sig));
        assert!(!b.id().verify(b"manifest", &sig));
    }

    #[test]
    fn node_keys_persist() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node.key");
        let a = NodeKey::load_or_create(&path).unwrap();
        let b = NodeKey::load_or_create(&path).unwrap();
        assert_eq!(a.id(), b.id());
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        fs::write(&path, "garbage").unwrap();
        assert!(NodeKey::load_or_create(&path).is_err());
    }

    #[test]
    fn cluster_secrets() {
        assert!(ClusterSecret::from_material(b"short").is_err());
        let a = ClusterSecret::from_material(b"0123456789abcdef0123\n").unwrap();
        let b = ClusterSecret::from_material(b"0123456789abcdef0123").unwrap();
        assert_eq!(a.pnet_key(), b.pnet_key());
        assert_ne!(a.pnet_key(), a.hello_key());
    }
}
