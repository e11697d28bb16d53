//! Etags: the content hashes that name blobs in the cache tree, and the hashers that check them.
//!
//! The Hub names a regular git file by its git blob id (SHA-1 over `"blob <len>\0"` and the
//! bytes, 40 hex) and an LFS file by the SHA-256 of its content (64 hex). Both become the file
//! name under `blobs/`, so an etag is validated before it is ever used as a path.

use std::fmt;

use serde::{Deserialize, Serialize};
use sha1::Digest as _;

/// Which hash an etag is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum EtagKind {
    /// Git blob id: SHA-1 over `"blob <len>\0" ++ content`; 40 hex.
    GitSha1,
    /// SHA-256 of the content (LFS files); 64 hex.
    Sha256,
}

/// A validated, normalized etag: lowercase hex of 40 (git SHA-1) or 64 (SHA-256) characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Etag(String);

/// An etag string that is not a 40- or 64-character hex hash.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a valid etag (expected a 40-hex git blob id or a 64-hex sha256)")]
pub struct BadEtag(pub String);

impl Etag {
    /// Parses an etag, accepting the raw header forms `"abc"` and `W/"abc"` (normalized as
    /// `huggingface_hub` does) and upper-case hex.
    pub fn parse(raw: &str) -> Result<Self, BadEtag> {
        let s = raw
            .trim_start_matches(['W', '/'])
            .trim_matches('"')
            .to_ascii_lowercase();
        let hex = s.bytes().all(|b| b.is_ascii_hexdigit());
        if hex && (s.len() == 40 || s.len() == 64) {
            Ok(Etag(s))
        } else {
            Err(BadEtag(raw.chars().take(100).collect()))
        }
    }

    /// The kind of hash, from the length.
    pub fn kind(&self) -> EtagKind {
        if self.0.len() == 64 {
            EtagKind::Sha256
        } else {
            EtagKind::GitSha1
        }
    }

    /// The lowercase hex.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// A hasher that computes this kind of etag over a content of `size` bytes.
    pub fn hasher(&self, size: u64) -> EtagHasher {
        EtagHasher::new(self.kind(), size)
    }
}

impl fmt::Display for Etag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for Etag {
    type Error = BadEtag;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Etag::parse(&s)
    }
}

impl From<Etag> for String {
    fn from(e: Etag) -> String {
        e.0
    }
}

/// Streaming hasher for an etag. Feed the content in order, then [`EtagHasher::finish`].
pub enum EtagHasher {
    GitSha1(sha1::Sha1),
    Sha256(sha2::Sha256),
}

impl EtagHasher {
    /// Starts a hasher of `kind` for a content of exactly `size` bytes (git blob ids hash the
    /// length first).
    pub fn new(kind: EtagKind, size: u64) -> Self {
        match kind {
            EtagKind::GitSha1 => {
                let mut h = sha1::Sha1::new();
                h.update(format!("blob {size}\0").as_bytes());
                EtagHasher::GitSha1(h)
            }
            EtagKind::Sha256 => EtagHasher::Sha256(sha2::Sha256::new()),
        }
    }

    /// Feeds the next bytes of the content.
    pub fn update(&mut self, data: &[u8]) {
        match self {
            EtagHasher::GitSha1(h) => h.update(data),
            EtagHasher::Sha256(h) => h.update(data),
        }
    }

    /// The etag of everything fed so far.
    pub fn finish(self) -> Etag {
        let hex = match self {
            EtagHasher::GitSha1(h) => hex::encode(h.finalize()),
            EtagHasher::Sha256(h) => hex::encode(h.finalize()),
        };
        Etag(hex)
    }
}

/// Git blob id of `data` (what the Hub uses as the etag of a regular file).
pub fn git_blob_id(data: &[u8]) -> Etag {
    let mut h = EtagHasher::new(EtagKind::GitSha1, data.len() as u64);
    h.update(data);
    h.finish()
}

/// SHA-256 of `data` (the etag of an LFS file).
pub fn sha256(data: &[u8]) -> Etag {
    let mut h = EtagHasher::new(EtagKind::Sha256, data.len() as u64);
    h.update(data);
    h.finish()
}

/// The text of the git LFS pointer file that stands in the git tree for an LFS file.
pub fn lfs_pointer(sha256: &Etag, size: u64) -> String {
    format!("version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_hashes_from_the_reference() {
        assert_eq!(
            git_blob_id(b"{\"a\": 1}\n").as_str(),
            "cb5b2f69babc53f9145b45ad20b9a075d48717ef"
        );
        let zeros = vec![0u8; 1 << 20];
        let sha = sha256(&zeros);
        assert_eq!(
            sha.as_str(),
            "30e14955ebf1352266dc2ff8067e68104607e750abb9d3b36582b8af909fcb58"
        );
        let pointer = lfs_pointer(&sha, 1 << 20);
        assert_eq!(pointer.len(), 132);
        assert_eq!(
            git_blob_id(pointer.as_bytes()).as_str(),
            "9bf2820abd0acc86f31fc02ce312debf25384d12"
        );
    }

    #[test]
    fn normalizes_header_forms() {
        let e = Etag::parse("W/\"CB5B2F69BABC53F9145B45AD20B9A075D48717EF\"").unwrap();
        assert_eq!(e.as_str(), "cb5b2f69babc53f9145b45ad20b9a075d48717ef");
        assert_eq!(e.kind(), EtagKind::GitSha1);
        assert!(Etag::parse("\"../../etc\"").is_err());
        assert!(Etag::parse("abc").is_err());
        assert!(Etag::parse(&"g".repeat(40)).is_err());
    }

    #[test]
    fn streaming_equals_one_shot() {
        let data: Vec<u8> = (0..10_000u32).map(|i| (i * 7) as u8).collect();
        let mut h = EtagHasher::new(EtagKind::GitSha1, data.len() as u64);
        for part in data.chunks(333) {
            h.update(part);
        }
        assert_eq!(h.finish(), git_blob_id(&data));
        assert_eq!(
            git_blob_id(b"").as_str(),
            "e69de29bb2d1d6434b8b29ae775ad8c2e48c5391"
        );
    }
}
