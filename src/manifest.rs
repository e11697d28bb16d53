//! What a snapshot holds: the files of one commit with their sizes and etags, as the Hub lists
//! them. (Chunk hashes join this in the peer-to-peer manifest.)

use serde::{Deserialize, Serialize};

use crate::etag::Etag;
use crate::repo::RepoPath;

/// One file of a snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    /// Path inside the repository.
    pub path: RepoPath,
    /// Content size in bytes.
    pub size: u64,
    /// The blob's name and content hash: sha256 for LFS files, git blob id otherwise.
    pub etag: Etag,
    /// Git object id in the repo tree (of the LFS pointer for LFS files).
    pub blob_id: String,
    /// Whether the file is stored in LFS (then `etag` is its sha256).
    pub lfs: bool,
}

/// Version of the manifest encoding; a manifest of another version is refused.
pub const MANIFEST_VERSION: u16 = 1;
/// Largest encoded manifest accepted from a peer (a million files or chunks fit well below it).
pub const MAX_MANIFEST_BYTES: usize = 64 << 20;

/// The BLAKE3 hash of one chunk.
pub type ChunkHash = [u8; 32];

/// One file of a manifest: what the Hub lists, plus the BLAKE3 hash of each of its chunks
/// (`crate::store::CHUNK_SIZE` bytes each, the last one shorter).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestFile {
    /// Path, size, etag, blob id, LFS flag.
    pub entry: FileEntry,
    /// BLAKE3 of each chunk, in order.
    pub chunks: Vec<ChunkHash>,
}

/// Everything a peer needs to fetch and check a snapshot: its files with their etags and chunk
/// hashes. Made by the host that read the bytes from the Hub, and signed by it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// [`MANIFEST_VERSION`].
    pub version: u16,
    /// Model or dataset.
    pub kind: crate::repo::RepoKind,
    /// Repository id.
    pub repo: crate::repo::RepoId,
    /// The commit this is a snapshot of.
    pub commit: crate::repo::CommitId,
    /// Chunk size the hashes were computed with.
    pub chunk_size: u64,
    /// Every file of the snapshot.
    pub files: Vec<ManifestFile>,
}

/// A manifest as it travels: the postcard encoding, who signed it, and the signature.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedManifest {
    /// `postcard` encoding of a [`Manifest`].
    pub body: Vec<u8>,
    /// The node that made and signed it.
    pub signer: crate::node::NodeId,
    /// ed25519 signature of `body` by `signer` (64 bytes).
    pub signature: Vec<u8>,
}

/// Why a manifest was refused.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("manifest signature does not verify")]
    BadSignature,
    #[error("manifest cannot be decoded: {0}")]
    Malformed(String),
    #[error("manifest is for {got}, expected {expected}")]
    WrongSnapshot { expected: String, got: String },
    #[error("manifest is inconsistent: {0}")]
    Inconsistent(String),
}

impl SignedManifest {
    /// Encodes and signs `manifest` with `key`.
    pub fn sign(manifest: &Manifest, key: &crate::node::NodeKey) -> SignedManifest {
        let body = postcard::to_stdvec(manifest).expect("a manifest always encodes");
        let signature = key.sign(&body).to_vec();
        SignedManifest {
            body,
            signer: key.id(),
            signature,
        }
    }

    /// Checks the signature, decodes, and validates the manifest: it must be for `expected`
    /// (kind, repo, commit), use this build's chunk size, and have exactly as many chunk hashes
    /// per file as its size needs, with no path twice.
    pub fn open(
        &self,
        expected: (
            crate::repo::RepoKind,
            &crate::repo::RepoId,
            &crate::repo::CommitId,
        ),
    ) -> Result<Manifest, ManifestError> {
        let sig: [u8; 64] = self
            .signature
            .as_slice()
            .try_into()
            .map_err(|_| ManifestError::BadSignature)?;
        if self.body.len() > MAX_MANIFEST_BYTES || !self.signer.verify(&self.body, &sig) {
            return Err(ManifestError::BadSignature);
        }
        let m: Manifest = postcard::from_bytes(&self.body)
            .map_err(|e| ManifestError::Malformed(e.to_string()))?;
        let (kind, repo, commit) = expected;
        if m.version != MANIFEST_VERSION {
            return Err(ManifestError::Malformed(format!(
                "version {} is not {MANIFEST_VERSION}",
                m.version
            )));
        }
        if (m.kind, &m.repo, &m.commit) != (kind, repo, commit) {
            return Err(ManifestError::WrongSnapshot {
                expected: format!("{kind} {repo}@{commit}"),
                got: format!("{} {}@{}", m.kind, m.repo, m.commit),
            });
        }
        if m.chunk_size != crate::store::CHUNK_SIZE {
            return Err(ManifestError::Inconsistent(format!(
                "chunk size {} is not ours",
                m.chunk_size
            )));
        }
        let mut paths = std::collections::HashSet::new();
        for f in &m.files {
            if !paths.insert(f.entry.path.as_str()) {
                return Err(ManifestError::Inconsistent(format!(
                    "`{}` is listed twice",
                    f.entry.path
                )));
            }
            if f.chunks.len() as u64 != crate::store::chunk_count(f.entry.size) {
                return Err(ManifestError::Inconsistent(format!(
                    "`{}` has the wrong number of chunk hashes",
                    f.entry.path
                )));
            }
        }
        Ok(m)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::NodeKey;
    use crate::repo::{CommitId, RepoId, RepoKind, RepoPath};

    fn manifest() -> Manifest {
        let content = vec![1u8; 5];
        Manifest {
            version: MANIFEST_VERSION,
            kind: RepoKind::Model,
            repo: RepoId::parse("acme/x").unwrap(),
            commit: CommitId::parse(&"a".repeat(40)).unwrap(),
            chunk_size: crate::store::CHUNK_SIZE,
            files: vec![ManifestFile {
                entry: FileEntry {
                    path: RepoPath::parse("f").unwrap(),
                    size: 5,
                    etag: crate::etag::git_blob_id(&content),
                    blob_id: crate::etag::git_blob_id(&content).to_string(),
                    lfs: false,
                },
                chunks: vec![*blake3::hash(&content).as_bytes()],
            }],
        }
    }

    #[test]
    fn signed_manifests_open_only_untampered_and_for_their_snapshot() {
        let m = manifest();
        let key = NodeKey::generate();
        let signed = SignedManifest::sign(&m, &key);
        let expected = (m.kind, &m.repo, &m.commit);
        assert_eq!(signed.open(expected).unwrap(), m);

        let mut tampered = signed.clone();
        let last = tampered.body.len() - 1;
        tampered.body[last] ^= 1;
        assert!(matches!(
            tampered.open(expected),
            Err(ManifestError::BadSignature)
        ));

        let mut other_signer = signed.clone();
        other_signer.signer = NodeKey::generate().id();
        assert!(matches!(
            other_signer.open(expected),
            Err(ManifestError::BadSignature)
        ));

        let other_commit = CommitId::parse(&"b".repeat(40)).unwrap();
        assert!(matches!(
            signed.open((m.kind, &m.repo, &other_commit)),
            Err(ManifestError::WrongSnapshot { .. })
        ));

        let mut bad = m.clone();
        bad.files[0].chunks.push([0; 32]);
        assert!(matches!(
            SignedManifest::sign(&bad, &key).open(expected),
            Err(ManifestError::Inconsistent(_))
        ));
    }
}
