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
