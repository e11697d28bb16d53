//! The chunk store: blobs split into fixed-size chunks, partial blobs whose complete chunks are
//! recorded, and the final check of a blob against its etag.
//!
//! Chunks are the unit of resume (and, later, of transfer between peers). They live inside the
//! HF cache tree's own files: there is never a second copy of the bytes.

/// Sets of chunk indices.
pub mod bitmap;
/// Chunk-sized buffers kept for reuse.
pub mod buffers;
/// Positioned I/O through the page cache or around it (`O_DIRECT`).
pub mod dio;
/// A blob being downloaded, with its persisted record of complete chunks.
pub mod partial;

use std::ops::Range;

pub use bitmap::Bitmap;
pub use buffers::ChunkBuf;
pub use partial::{hash_file, PartialBlob};

/// Size of a chunk in bytes: the unit of resume and verification. The last chunk of a blob may be
/// shorter. See `docs/ARCHITECTURE.md` ("Chunk size") for why this value.
pub const CHUNK_SIZE: u64 = 4 << 20;

/// Number of chunks of a blob of `size` bytes (0 for an empty blob).
pub fn chunk_count(size: u64) -> u64 {
    size.div_ceil(CHUNK_SIZE)
}

/// Byte range of chunk `index` of a blob of `size` bytes.
pub fn chunk_range(size: u64, index: u64) -> Range<u64> {
    let start = index * CHUNK_SIZE;
    start.min(size)..(start + CHUNK_SIZE).min(size)
}

/// What can go wrong in the chunk store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The finished blob does not hash to its etag: the source sent wrong bytes.
    #[error("content does not match its etag: expected {expected}, got {actual}")]
    EtagMismatch { expected: String, actual: String },
    /// A write outside the blob.
    #[error("write of {len} bytes at offset {offset} is outside a blob of {size} bytes")]
    OutOfBounds { offset: u64, len: u64, size: u64 },
    /// Verification was asked of a blob with missing chunks.
    #[error("blob {etag} is not complete")]
    Incomplete { etag: String },
    /// A local file-system failure.
    #[error("cache I/O failed: {0}")]
    Io(#[from] std::io::Error),
}

#[cfg(test)]
mod tests;
