//! Chunk-sized buffers kept for reuse, so that moving chunks (gathering one from QUIC, reading
//! one from disk to serve it or to hash it) does not allocate, zero and fault in a fresh
//! [`CHUNK_SIZE`] buffer per chunk. Measured on a 1 GiB agent-to-agent pull, those fresh
//! buffers cost the puller about an eighth of its CPU (page faults) and the server a fifth
//! (zeroing and page faults).
//!
//! A buffer taken from the pool goes back to it when dropped: as a [`ChunkBuf`], or as the
//! [`Bytes`] it was frozen into, once the last clone is gone. The pool keeps at most
//! [`KEPT_BUFFERS`] idle buffers; more may be out at once (they are then freed, not kept), so
//! the pool never limits how many chunks are in flight and never holds more than
//! `KEPT_BUFFERS × CHUNK_SIZE` of idle memory.
//!
//! Every buffer's content starts at a multiple of [`DIRECT_ALIGN`] in memory, so that a whole
//! chunk can be written to (or read from) a partial blob with `O_DIRECT` (see
//! [`PartialBlob`](super::PartialBlob)), without a bounce copy.

use std::sync::{Mutex, OnceLock};

use bytes::Bytes;

use super::CHUNK_SIZE;

/// Most idle buffers kept (16 × 4 MiB = 64 MiB): what a pull and the serving of one have in
/// flight at once (4 requests of 4 chunks each way, see `SchedConfig`).
pub const KEPT_BUFFERS: usize = 16;

/// Alignment of a buffer's content in memory: what `O_DIRECT` asks of buffers, file offsets and
/// lengths on the block devices we write to (their logical block size, 512 or 4096 bytes).
pub const DIRECT_ALIGN: usize = 4096;

/// One allocation of `CHUNK_SIZE + DIRECT_ALIGN` bytes, initialized, with the offset at which
/// its aligned `CHUNK_SIZE` bytes start (a `Vec`'s heap block never moves while it is owned).
struct Aligned {
    vec: Vec<u8>,
    start: usize,
}

impl Aligned {
    fn new() -> Aligned {
        let vec = vec![0u8; CHUNK_SIZE as usize + DIRECT_ALIGN];
        let start = vec.as_ptr().align_offset(DIRECT_ALIGN);
        Aligned { vec, start }
    }
}

/// The process's idle chunk buffers, each `CHUNK_SIZE` long and initialized.
fn idle() -> &'static Mutex<Vec<Aligned>> {
    static IDLE: OnceLock<Mutex<Vec<Aligned>>> = OnceLock::new();
    IDLE.get_or_init(|| Mutex::new(Vec::with_capacity(KEPT_BUFFERS)))
}

/// A buffer of up to [`CHUNK_SIZE`] bytes, on loan from the pool: the first `len` bytes are the
/// content, which starts at a multiple of [`DIRECT_ALIGN`] in memory. Goes back to the pool
/// when dropped.
pub struct ChunkBuf {
    buf: Option<Aligned>,
    len: usize,
}

impl ChunkBuf {
    /// A buffer of `len` bytes (at most [`CHUNK_SIZE`]) to be filled by the caller; its bytes
    /// are whatever the previous user left (zeros if fresh).
    ///
    /// # Panics
    /// If `len` is over [`CHUNK_SIZE`] (callers check lengths from the network first).
    pub fn take(len: usize) -> ChunkBuf {
        assert!(len as u64 <= CHUNK_SIZE, "chunk buffer of {len} bytes");
        let reused = idle().lock().unwrap_or_else(|p| p.into_inner()).pop();
        let buf = reused.unwrap_or_else(Aligned::new);
        ChunkBuf {
            buf: Some(buf),
            len,
        }
    }

    /// The content, to fill.
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        let a = self.buf.as_mut().expect("a buffer until dropped");
        &mut a.vec[a.start..a.start + self.len]
    }

    /// Appends `data` to the content (which grows by its length).
    ///
    /// # Panics
    /// If the content would grow past [`CHUNK_SIZE`].
    pub fn extend_from_slice(&mut self, data: &[u8]) {
        let end = self.len + data.len();
        assert!(end as u64 <= CHUNK_SIZE, "chunk buffer of {end} bytes");
        let a = self.buf.as_mut().expect("a buffer until dropped");
        a.vec[a.start + self.len..a.start + end].copy_from_slice(data);
        self.len = end;
    }

    /// The content, shared without a copy; the buffer goes back to the pool once every clone is
    /// dropped.
    pub fn freeze(self) -> Bytes {
        Bytes::from_owner(self)
    }
}

impl AsRef<[u8]> for ChunkBuf {
    fn as_ref(&self) -> &[u8] {
        let a = self.buf.as_ref().expect("a buffer until dropped");
        &a.vec[a.start..a.start + self.len]
    }
}

impl std::ops::Deref for ChunkBuf {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        self.as_ref()
    }
}

impl std::fmt::Debug for ChunkBuf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChunkBuf").field("len", &self.len).finish()
    }
}

impl Drop for ChunkBuf {
    fn drop(&mut self) {
        let Some(buf) = self.buf.take() else { return };
        let mut idle = idle().lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() < KEPT_BUFFERS {
            idle.push(buf);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_buffer_is_its_content_and_comes_back() {
        let mut b = ChunkBuf::take(5);
        b.as_mut_slice().copy_from_slice(b"hello");
        let bytes = b.freeze();
        assert_eq!(&bytes[..], b"hello");
        let again = bytes.clone();
        drop(bytes);
        assert_eq!(&again[..], b"hello", "a clone keeps the buffer alive");
        drop(again);
        let full = ChunkBuf::take(CHUNK_SIZE as usize);
        assert_eq!(full.len(), CHUNK_SIZE as usize);
    }

    #[test]
    fn every_buffer_starts_aligned_and_grows_by_appending() {
        let bufs: Vec<ChunkBuf> = (0..KEPT_BUFFERS + 2).map(|_| ChunkBuf::take(0)).collect();
        for b in &bufs {
            assert!((b.as_ptr() as usize).is_multiple_of(DIRECT_ALIGN));
        }
        drop(bufs);
        let mut b = ChunkBuf::take(0);
        b.extend_from_slice(b"ab");
        b.extend_from_slice(b"cd");
        assert_eq!(&b[..], b"abcd");
        assert!(
            (b.as_ptr() as usize).is_multiple_of(DIRECT_ALIGN),
            "reused buffers too"
        );
    }

    #[test]
    #[should_panic(expected = "chunk buffer")]
    fn appending_past_a_chunk_is_refused() {
        let mut b = ChunkBuf::take(CHUNK_SIZE as usize);
        b.extend_from_slice(b"x");
    }

    #[test]
    fn the_pool_keeps_a_bounded_number() {
        let many: Vec<ChunkBuf> = (0..KEPT_BUFFERS + 3).map(|_| ChunkBuf::take(1)).collect();
        drop(many);
        assert!(idle().lock().unwrap().len() <= KEPT_BUFFERS);
    }

    #[test]
    #[should_panic(expected = "chunk buffer")]
    fn over_a_chunk_is_refused() {
        let _ = ChunkBuf::take(CHUNK_SIZE as usize + 1);
    }
}
