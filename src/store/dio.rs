//! Positioned file I/O that goes around the page cache where that is cheaper: a file opened twice,
//! through the page cache and with `O_DIRECT`.
//!
//! - **Writes**: the whole blocks of an aligned buffer at an aligned offset go to the disk
//!   directly; the rest (an unaligned start, the last partial block) through the page cache.
//! - **Reads** ([`DualFile::read_exact_at`]) the same way, for data written directly (so not in
//!   the page cache) and read once, such as a chunk the etag hash reads back: one DMA into the
//!   caller's buffer instead of a read into the cache plus a copy out of it.
//!
//! Chunks served to peers are read through the page cache ([`DualFile::buffered`]), not around
//! it: in a storm a seed serves each chunk to several peers within seconds, and only the first
//! of them should cost a disk read. (Tried: serving reads of uncached chunks with `O_DIRECT` cut
//! the seed's CPU per GiB by a third in a one-to-one pull, but every further reader of the chunk
//! went to the disk again. Asking the cache first with `preadv2(RWF_NOWAIT)` is no way out
//! either: on a miss it starts readahead, and the disk was read twice.)
//!
//! Direct I/O is an optimization only: when the file system refuses it (`EINVAL`, on tmpfs, say)
//! or cannot open the file so, every operation goes through the page cache, with the same
//! result. A direct read of a range whose pages are dirty in the cache is correct too: the kernel
//! writes them back before it reads.

use std::fs;
use std::io;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use rustix::io::Errno;

use super::buffers::DIRECT_ALIGN;

/// A file opened through the page cache and, where the file system allows, with `O_DIRECT`.
#[derive(Debug)]
pub struct DualFile {
    path: PathBuf,
    buffered: fs::File,
    /// The same file opened with `O_DIRECT`.
    direct: Option<fs::File>,
    /// Cleared when the file system refuses direct I/O (`EINVAL`): the page cache from then.
    direct_ok: AtomicBool,
}

impl DualFile {
    /// Wraps `buffered` (the file at `path`), opening it a second time with `O_DIRECT`, for
    /// reading and writing, if `direct`.
    pub fn new(path: &Path, buffered: fs::File, direct: bool) -> DualFile {
        let direct = direct
            .then(|| {
                fs::OpenOptions::new()
                    .read(true)
                    .write(true)
                    .custom_flags(rustix::fs::OFlags::DIRECT.bits() as i32)
                    .open(path)
                    .ok()
            })
            .flatten();
        DualFile {
            path: path.to_path_buf(),
            buffered,
            direct_ok: AtomicBool::new(direct.is_some()),
            direct,
        }
    }

    /// The file opened through the page cache.
    pub fn buffered(&self) -> &fs::File {
        &self.buffered
    }

    /// Whether direct I/O is in use (not refused, and the file could be opened so).
    pub fn is_direct(&self) -> bool {
        self.direct_ok.load(Ordering::Relaxed)
    }

    /// Writes all of `data` at `offset`: its whole aligned blocks directly, the rest through the
    /// page cache.
    pub fn write_all_at(&self, data: &[u8], offset: u64) -> io::Result<()> {
        let n = self.direct_len(offset, data.as_ptr(), data.len());
        if n > 0 {
            match self.direct_file().write_all_at(&data[..n], offset) {
                Ok(()) => return self.buffered.write_all_at(&data[n..], offset + n as u64),
                Err(e) => self.refused(e)?,
            }
        }
        self.buffered.write_all_at(data, offset)
    }

    /// Fills `buf` from `offset`: its whole aligned blocks directly, the rest through the page
    /// cache. The range must lie within the file. For data known not to be cached (written
    /// directly); a range the cache holds is read from the disk all the same.
    pub fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        let n = self.direct_len(offset, buf.as_ptr(), buf.len());
        if n > 0 {
            match self.direct_file().read_exact_at(&mut buf[..n], offset) {
                Ok(()) => {
                    return self
                        .buffered
                        .read_exact_at(&mut buf[n..], offset + n as u64)
                }
                Err(e) => self.refused(e)?,
            }
        }
        self.buffered.read_exact_at(buf, offset)
    }

    /// How many leading bytes of the `len` bytes at `ptr`, to go to or come from `offset`, can
    /// move with `O_DIRECT`: all whole blocks, when buffer and offset are aligned and direct I/O
    /// is on.
    fn direct_len(&self, offset: u64, ptr: *const u8, len: usize) -> usize {
        let aligned = offset.is_multiple_of(DIRECT_ALIGN as u64)
            && (ptr as usize).is_multiple_of(DIRECT_ALIGN)
            && self.is_direct();
        if aligned {
            len / DIRECT_ALIGN * DIRECT_ALIGN
        } else {
            0
        }
    }

    fn direct_file(&self) -> &fs::File {
        self.direct.as_ref().unwrap_or(&self.buffered)
    }

    /// After a failed direct operation: `EINVAL` (the file system refuses direct I/O) turns it
    /// off for this file and lets the caller go on through the page cache; any other error is
    /// returned.
    fn refused(&self, e: io::Error) -> io::Result<()> {
        if e.raw_os_error() != Some(Errno::INVAL.raw_os_error()) {
            return Err(e);
        }
        if self.direct_ok.swap(false, Ordering::Relaxed) {
            tracing::debug!(path = %self.path.display(), error = %e,
                "direct I/O refused; going through the page cache");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::ChunkBuf;

    fn pattern(len: usize, seed: u8) -> Vec<u8> {
        (0..len)
            .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
            .collect()
    }

    fn open_rw(path: &Path, direct: bool) -> DualFile {
        let f = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .unwrap();
        DualFile::new(path, f, direct)
    }

    /// Reads and writes give the same bytes with and without direct I/O, at aligned and unaligned
    /// offsets and lengths, from aligned and unaligned buffers.
    #[test]
    fn direct_and_buffered_agree() {
        let dir = tempfile::tempdir().unwrap();
        let size = 3 * DIRECT_ALIGN * 64 + 777;
        let content = pattern(size, 5);
        for direct in [true, false] {
            let path = dir.path().join(format!("f{direct}"));
            let f = open_rw(&path, direct);
            f.buffered().set_len(size as u64).unwrap();
            // Aligned writes from an aligned buffer, then an unaligned tail and an unaligned
            // buffer in the middle.
            let mut buf = ChunkBuf::take(0);
            buf.extend_from_slice(&content[..DIRECT_ALIGN * 64]);
            f.write_all_at(&buf, 0).unwrap();
            let odd = &content[DIRECT_ALIGN * 64 + 1..DIRECT_ALIGN * 128 + 3];
            f.write_all_at(odd, DIRECT_ALIGN as u64 * 64 + 1).unwrap();
            f.write_all_at(
                &content[DIRECT_ALIGN * 64..DIRECT_ALIGN * 64 + 1],
                DIRECT_ALIGN as u64 * 64,
            )
            .unwrap();
            let mut tail = ChunkBuf::take(0);
            tail.extend_from_slice(&content[DIRECT_ALIGN * 128 + 3..]);
            f.write_all_at(&tail, DIRECT_ALIGN as u64 * 128 + 3)
                .unwrap();
            let mut last = ChunkBuf::take(0);
            last.extend_from_slice(&content[DIRECT_ALIGN * 128..]);
            f.write_all_at(&last, DIRECT_ALIGN as u64 * 128).unwrap();
            assert_eq!(fs::read(&path).unwrap(), content, "direct {direct}");

            let r = open_rw(&path, direct);
            for (start, len) in [(0, size), (DIRECT_ALIGN, DIRECT_ALIGN * 70 + 5), (13, 9000)] {
                let mut out = ChunkBuf::take(len);
                r.read_exact_at(out.as_mut_slice(), start as u64).unwrap();
                assert_eq!(
                    &out[..],
                    &content[start..start + len],
                    "direct {direct} at {start}"
                );
                let mut plain = vec![0u8; len];
                r.read_exact_at(&mut plain, start as u64).unwrap();
                assert_eq!(plain, &content[start..start + len]);
            }
            let mut past = vec![0u8; 10];
            assert!(
                r.read_exact_at(&mut past, size as u64 - 5).is_err(),
                "past the end"
            );
        }
    }
}
