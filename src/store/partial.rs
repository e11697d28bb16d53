//! A blob being downloaded: a temporary file of the final size (allocated up front where the file
//! system can) in the repo's work area, written at chunk offsets in any order, plus a persisted
//! record of which chunks are complete.
//!
//! The record is only ever written after the data it vouches for was synced, so after a crash
//! the record may lag behind the file but never runs ahead of it: a resumed download re-fetches
//! at most what arrived since the last checkpoint. Nothing here is visible to `huggingface_hub`;
//! the blob reaches `blobs/` only through [`PartialBlob::verify`] and the cache's atomic rename.
//!
//! Whole chunks are written with `O_DIRECT` where the file system allows it (see
//! [`set_direct_io`]): from an aligned [`ChunkBuf`] straight to the disk, without copying each
//! byte into the page cache. That copy was the largest cost of a peer-to-peer pull (over half of
//! the pulling agent's CPU in a VM whose free memory is handed back to the host, where every
//! fresh page-cache page faults on first touch; a fifth to a third elsewhere), and a 140 GB model
//! written through the page cache leaves that much dirty memory for the kernel to write back
//! behind the job's back. Anything not aligned (the end of a blob, writes from the standalone
//! Hub download) goes through the page cache as before. The etag hash is fed from the chunks
//! themselves, held in memory until their turn (see [`HELD_CHUNKS`]), so nothing written directly
//! is read back in the common case.

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Read};
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::dio::DualFile;
use super::{chunk_count, chunk_range, ChunkBuf, StoreError, CHUNK_SIZE};
use crate::etag::{Etag, EtagHasher};

/// Version of the on-disk progress record; a record of another version is discarded.
const RECORD_VERSION: u32 = 2;
/// Largest progress record we read (a 1 TB blob in 4 MiB chunks needs 32 KiB of bitmap and
/// 8 MiB of chunk hashes).
const MAX_RECORD_LEN: u64 = 64 << 20;

/// Most complete chunks a blob holds in memory while they wait for the etag hash to reach them
/// (16 × 4 MiB = 64 MiB per blob being pulled). Chunks arrive out of order by about the requests
/// in flight to one peer (4 × 4 chunks); one further ahead is read back from the file instead.
pub const HELD_CHUNKS: usize = 16;

/// Longest a writer waits for room in the hold while the etag hash is busy with earlier chunks
/// (16 chunks take the hash about 40 ms; a longer wait means something else is wrong, and the
/// chunk is left to be read back instead).
const HOLD_WAIT: std::time::Duration = std::time::Duration::from_secs(1);

/// Whether partial blobs are written with `O_DIRECT` where possible (the default).
static DIRECT_IO: AtomicBool = AtomicBool::new(true);

/// Turns `O_DIRECT` writes of whole chunks (and reads of them back for the etag hash) on or off
/// for partial blobs opened from now on, in the whole process (the agent's `direct_io` setting:
/// `--direct-io=false` or `HFMESH_DIRECT_IO=false` turns it off).
pub fn set_direct_io(on: bool) {
    DIRECT_IO.store(on, Ordering::Relaxed);
}

#[derive(Debug, Serialize, Deserialize, PartialEq)]
struct Record {
    version: u32,
    etag: String,
    size: u64,
    chunk_size: u64,
    done: Vec<u8>,
    /// BLAKE3 of each complete chunk (all zeros where not complete).
    hashes: Vec<[u8; 32]>,
}

/// A partially downloaded blob. Methods do blocking file I/O: call them from blocking contexts.
#[derive(Debug)]
pub struct PartialBlob {
    etag: Etag,
    size: u64,
    data_path: PathBuf,
    record_path: PathBuf,
    /// The `.part` file, through the page cache and with `O_DIRECT`.
    file: DualFile,
    done: Mutex<Vec<u8>>,
    hashes: Mutex<Vec<[u8; 32]>>,
    /// Chunks being written by [`PartialBlob::complete_chunk`]: one writer per chunk (a second
    /// waits, then finds it complete), so a chunk once complete is never written again, while
    /// different chunks are written in parallel (direct writes wait for the disk).
    writing: Mutex<std::collections::HashSet<u64>>,
    /// Signalled when a chunk's write ends.
    written: Condvar,
    /// Chunks the etag hash had to read back from the file (not held in memory).
    read_back: std::sync::atomic::AtomicU64,
    /// Held by [`PartialBlob::checkpoint`].
    checkpointing: Mutex<()>,
    /// The etag hash of the complete prefix of the blob, fed as chunks complete.
    prefix: EtagPrefix,
}

/// The etag hash of the blob's complete prefix, fed as chunks complete, off the writers' path:
/// the SHA-256 of a blob is one sequential stream (about 1.8 GB/s on one core), so a writer that
/// hashed inline would hold up its own request and every writer waiting for the hash.
struct EtagPrefix {
    state: Mutex<PrefixState>,
    /// Signalled when hashing stops, and each time the prefix grows.
    idle: Condvar,
    /// Over chunks `0..state.next`; `None` once [`PartialBlob::verify`] took it.
    hasher: Mutex<Option<EtagHasher>>,
}

/// Chunks `0..next` are hashed; complete chunks after `next` are kept in memory for the hash
/// (at most [`HELD_CHUNKS`], plus the one due); `hashing` is set while one thread feeds it.
struct PrefixState {
    next: u64,
    held: BTreeMap<u64, Bytes>,
    hashing: bool,
}

impl std::fmt::Debug for EtagPrefix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        f.debug_struct("EtagPrefix")
            .field("next", &st.next)
            .field("held", &st.held.len())
            .field("hashing", &st.hashing)
            .finish()
    }
}

impl PartialBlob {
    /// Opens the partial download of `etag` (of `size` bytes) in `dir`, resuming a previous one
    /// whose record matches, or starting afresh.
    pub fn open(dir: &Path, etag: &Etag, size: u64) -> Result<PartialBlob, StoreError> {
        Self::open_with(dir, etag, size, DIRECT_IO.load(Ordering::Relaxed))
    }

    /// [`PartialBlob::open`], with whole chunks written with `O_DIRECT` (where the file system
    /// allows it) when `direct_io` is set, through the page cache otherwise, whatever
    /// [`set_direct_io`] says.
    pub fn open_with(
        dir: &Path,
        etag: &Etag,
        size: u64,
        direct_io: bool,
    ) -> Result<PartialBlob, StoreError> {
        fs::create_dir_all(dir)?;
        let data_path = dir.join(format!("{etag}.part"));
        let record_path = dir.join(format!("{etag}.chunks"));
        let resumed = read_record(&record_path)
            .filter(|r| {
                r.version == RECORD_VERSION
                    && r.etag == etag.as_str()
                    && r.size == size
                    && r.chunk_size == CHUNK_SIZE
                    && r.done.len() == bitmap_len(size)
                    && r.hashes.len() as u64 == chunk_count(size)
            })
            .filter(|_| fs::metadata(&data_path).is_ok_and(|m| m.len() == size));
        let (file, done, hashes) = match resumed {
            Some(r) => (
                fs::OpenOptions::new()
                    .read(true)
                    .write(true)
                    .open(&data_path)?,
                r.done,
                r.hashes,
            ),
            None => {
                let _ = fs::remove_file(&record_path);
                let file = fs::OpenOptions::new()
                    .read(true)
                    .write(true)
                    .create(true)
                    .truncate(true)
                    .open(&data_path)?;
                allocate(&file, size)?;
                let hashes = vec![[0u8; 32]; chunk_count(size) as usize];
                (file, vec![0u8; bitmap_len(size)], hashes)
            }
        };
        Ok(PartialBlob {
            etag: etag.clone(),
            size,
            file: DualFile::new(&data_path, file, direct_io),
            data_path,
            record_path,
            done: Mutex::new(done),
            hashes: Mutex::new(hashes),
            writing: Mutex::new(Default::default()),
            written: Condvar::new(),
            read_back: Default::default(),
            checkpointing: Mutex::new(()),
            prefix: EtagPrefix {
                state: Mutex::new(PrefixState {
                    next: 0,
                    held: BTreeMap::new(),
                    hashing: false,
                }),
                idle: Condvar::new(),
                hasher: Mutex::new(Some(etag.hasher(size))),
            },
        })
    }

    /// The blob's etag.
    pub fn etag(&self) -> &Etag {
        &self.etag
    }

    /// The blob's size in bytes.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Number of chunks.
    pub fn chunks(&self) -> u64 {
        chunk_count(self.size)
    }

    /// Whether chunk `index` is complete.
    pub fn has_chunk(&self, index: u64) -> bool {
        let done = self.done.lock().expect("bitmap lock");
        done[(index / 8) as usize] & (1 << (index % 8)) != 0
    }

    /// Bytes already complete.
    pub fn bytes_done(&self) -> u64 {
        (0..self.chunks())
            .filter(|&i| self.has_chunk(i))
            .map(|i| {
                let r = chunk_range(self.size, i);
                r.end - r.start
            })
            .sum()
    }

    /// Runs of missing chunks, as chunk index ranges, in order.
    pub fn missing_runs(&self) -> Vec<Range<u64>> {
        let mut runs: Vec<Range<u64>> = Vec::new();
        for i in (0..self.chunks()).filter(|&i| !self.has_chunk(i)) {
            match runs.last_mut() {
                Some(r) if r.end == i => r.end = i + 1,
                _ => runs.push(i..i + 1),
            }
        }
        runs
    }

    /// Writes `data` at byte `offset` of the blob.
    pub fn write_at(&self, offset: u64, data: &[u8]) -> Result<(), StoreError> {
        if offset
            .checked_add(data.len() as u64)
            .is_none_or(|end| end > self.size)
        {
            return Err(StoreError::OutOfBounds {
                offset,
                len: data.len() as u64,
                size: self.size,
            });
        }
        self.file.write_all_at(data, offset).map_err(StoreError::Io)
    }

    /// Holds the etag hasher, so that a hashing task stalls until the guard is dropped (tests).
    #[cfg(test)]
    pub(crate) fn pause_hash(&self) -> std::sync::MutexGuard<'_, Option<EtagHasher>> {
        self.prefix.hasher.lock().expect("hasher lock")
    }

    /// Chunks the etag hash has read back from the file so far, rather than taking them from
    /// memory (for tests and diagnostics).
    pub fn chunks_read_back(&self) -> u64 {
        self.read_back.load(Ordering::Relaxed)
    }

    /// Whether this blob is being written with `O_DIRECT` (for tests and diagnostics).
    pub fn writes_direct(&self) -> bool {
        self.file.is_direct()
    }

    /// Writes chunk `index` (`data`, already checked against `hash`) and records it complete,
    /// unless it is complete already (then nothing is written: a complete chunk never changes,
    /// which the etag hash fed as chunks arrive relies on). Then hands `data` to the etag hash,
    /// which a blocking task feeds with the complete prefix of the blob, so that
    /// [`PartialBlob::verify`] has little left to hash after the last chunk. Returns whether
    /// this call wrote the chunk.
    pub fn complete_chunk(
        self: &Arc<Self>,
        index: u64,
        data: Bytes,
        hash: [u8; 32],
    ) -> Result<bool, StoreError> {
        let range = chunk_range(self.size, index);
        if index >= self.chunks() || data.len() as u64 != range.end - range.start {
            return Err(StoreError::OutOfBounds {
                offset: range.start,
                len: data.len() as u64,
                size: self.size,
            });
        }
        {
            let mut writing = self.writing.lock().expect("write lock");
            loop {
                if self.has_chunk(index) {
                    return Ok(false);
                }
                if writing.insert(index) {
                    break;
                }
                writing = self.written.wait(writing).expect("write lock");
            }
        }
        let wrote = self.write_at(range.start, &data);
        let start = wrote.is_ok() && {
            // Held before it is marked complete (under the same lock the hasher checks both
            // with), so the hasher never reads back a chunk that is on its way to it.
            let mut st = self.prefix.state.lock().expect("prefix lock");
            // The hold is full while the hash works through the chunks before this one: wait for
            // it (a little, see `HOLD_WAIT`) rather than leave this chunk to be read back from
            // the disk. The pull then slows to the hash's pace instead of adding disk reads and
            // CPU when the hash falls behind. When the prefix waits for a missing chunk instead
            // (`hashing` is off), waiting would not help.
            let deadline = std::time::Instant::now() + HOLD_WAIT;
            while index > st.next && st.held.len() >= HELD_CHUNKS && st.hashing {
                let left = deadline.saturating_duration_since(std::time::Instant::now());
                if left.is_zero() {
                    break;
                }
                st = self
                    .prefix
                    .idle
                    .wait_timeout(st, left)
                    .expect("prefix lock")
                    .0;
            }
            if index == st.next || (index > st.next && st.held.len() < HELD_CHUNKS) {
                st.held.insert(index, data);
            }
            self.mark_complete_with_hash(index, hash);
            let due = st.next < self.chunks() && self.has_chunk(st.next);
            let start = due && !st.hashing;
            st.hashing |= start;
            start
        };
        self.writing.lock().expect("write lock").remove(&index);
        self.written.notify_all();
        wrote?;
        if start {
            let me = Arc::clone(self);
            let work = move || {
                if let Err(e) = me.hash_prefix() {
                    tracing::debug!(error = %e, "etag hash paused; the final check reads the rest");
                }
            };
            match tokio::runtime::Handle::try_current() {
                Ok(rt) => drop(rt.spawn_blocking(work)),
                Err(_) => drop(std::thread::spawn(work)),
            }
        }
        Ok(true)
    }

    /// Feeds the etag hash with the complete chunks that follow its prefix (those held in memory,
    /// the others read back from the file) until the next one is missing, then clears
    /// `hashing`. Called with `hashing` set by the caller, so only one thread hashes at a time.
    fn hash_prefix(&self) -> io::Result<()> {
        let result = self.hash_while_due();
        let mut st = self.prefix.state.lock().expect("prefix lock");
        st.hashing = false;
        self.prefix.idle.notify_all();
        result
    }

    fn hash_while_due(&self) -> io::Result<()> {
        loop {
            let (next, held) = {
                let mut st = self.prefix.state.lock().expect("prefix lock");
                if st.next >= self.chunks() || !self.has_chunk(st.next) {
                    return Ok(());
                }
                let next = st.next;
                (next, st.held.remove(&next))
            };
            let chunk = match held {
                Some(held) => held,
                None => self.read_back(next)?.freeze(),
            };
            if let Some(h) = self.prefix.hasher.lock().expect("hasher lock").as_mut() {
                h.update(&chunk);
            }
            self.prefix.state.lock().expect("prefix lock").next += 1;
            self.prefix.idle.notify_all();
        }
    }

    /// Reads complete chunk `index` back from the file for the etag hash: with `O_DIRECT` where
    /// the blob is written so (a chunk written directly is not in the page cache, and reading it
    /// through the cache would fill it for nothing), through the page cache otherwise.
    fn read_back(&self, index: u64) -> io::Result<ChunkBuf> {
        self.read_back.fetch_add(1, Ordering::Relaxed);
        let r = chunk_range(self.size, index);
        let mut buf = ChunkBuf::take((r.end - r.start) as usize);
        self.file.read_exact_at(buf.as_mut_slice(), r.start)?;
        Ok(buf)
    }

    /// Reads chunk `index` into a pooled buffer (only meaningful when the chunk is complete),
    /// through the page cache: this serves peers, and the next peer to ask for the chunk finds it
    /// there (see `store::dio`).
    pub fn read_chunk(&self, index: u64) -> io::Result<ChunkBuf> {
        let r = chunk_range(self.size, index);
        let mut buf = ChunkBuf::take((r.end - r.start) as usize);
        self.file
            .buffered()
            .read_exact_at(buf.as_mut_slice(), r.start)?;
        Ok(buf)
    }

    /// Records chunk `index` as complete (in memory; [`PartialBlob::checkpoint`] persists it).
    pub fn mark_complete(&self, index: u64) {
        let mut done = self.done.lock().expect("bitmap lock");
        done[(index / 8) as usize] |= 1 << (index % 8);
    }

    /// Records chunk `index` as complete with its BLAKE3 hash.
    pub fn mark_complete_with_hash(&self, index: u64, hash: [u8; 32]) {
        self.hashes.lock().expect("hashes lock")[index as usize] = hash;
        self.mark_complete(index);
    }

    /// The BLAKE3 hash recorded for chunk `index`, if one was.
    pub fn chunk_hash(&self, index: u64) -> Option<[u8; 32]> {
        let h = *self
            .hashes
            .lock()
            .expect("hashes lock")
            .get(index as usize)?;
        (h != [0; 32]).then_some(h)
    }

    /// Which chunks are complete.
    pub fn bitmap(&self) -> super::Bitmap {
        super::Bitmap::from_bits(
            self.chunks(),
            self.done.lock().expect("bitmap lock").clone(),
        )
        .unwrap_or_else(|| super::Bitmap::empty(self.chunks()))
    }

    /// Whether every chunk is complete.
    pub fn is_complete(&self) -> bool {
        (0..self.chunks()).all(|i| self.has_chunk(i))
    }

    /// Syncs the data, then persists the record of complete chunks (atomically). The record is
    /// taken before the sync, so it names only chunks written before the sync started (a chunk is
    /// written before it is marked), even while other threads keep writing. One checkpoint at a
    /// time; it may run alongside writes.
    pub fn checkpoint(&self) -> io::Result<()> {
        let _one = self.checkpointing.lock().expect("checkpoint lock");
        let record = Record {
            version: RECORD_VERSION,
            etag: self.etag.to_string(),
            size: self.size,
            chunk_size: CHUNK_SIZE,
            done: self.done.lock().expect("bitmap lock").clone(),
            hashes: self.hashes.lock().expect("hashes lock").clone(),
        };
        self.file.buffered().sync_data()?;
        let bytes = postcard::to_stdvec(&record).map_err(io::Error::other)?;
        let dir = self.record_path.parent().expect("record has a parent");
        crate::cache::fsutil::write_atomic(dir, &self.record_path, &bytes)
    }

    /// Hashes the whole blob and checks it against its etag. On success returns the path of the
    /// finished file, ready to be renamed into `blobs/`; on a mismatch the partial download is
    /// discarded (its bytes cannot be trusted) and an integrity error is returned.
    pub fn verify(&self) -> Result<PathBuf, StoreError> {
        if !self.is_complete() {
            return Err(StoreError::Incomplete {
                etag: self.etag.to_string(),
            });
        }
        self.file.buffered().sync_all()?;
        // Wait for a hashing task to stop, then hash the rest here.
        {
            let mut st = self.prefix.state.lock().expect("prefix lock");
            while st.hashing {
                st = self.prefix.idle.wait(st).expect("prefix lock");
            }
            st.hashing = true;
        }
        self.hash_prefix()?;
        let actual = {
            let mut st = self.prefix.state.lock().expect("prefix lock");
            st.held.clear();
            match self.prefix.hasher.lock().expect("hasher lock").take() {
                // Every chunk is complete, so the prefix is the whole blob.
                Some(h) if st.next == self.chunks() => h.finish(),
                // Hashed before (a second verify): start over from the file.
                _ => hash_file(&self.data_path, &self.etag, self.size)?,
            }
        };
        if actual != self.etag {
            let expected = self.etag.to_string();
            self.discard();
            return Err(StoreError::EtagMismatch {
                expected,
                actual: actual.to_string(),
            });
        }
        let _ = fs::remove_file(&self.record_path);
        Ok(self.data_path.clone())
    }

    /// Deletes the partial file and its record.
    pub fn discard(&self) {
        let _ = fs::remove_file(&self.data_path);
        let _ = fs::remove_file(&self.record_path);
    }
}

/// Computes the etag (of the same kind as `etag`) of the file at `path`, reading it in order.
pub fn hash_file(path: &Path, etag: &Etag, size: u64) -> io::Result<Etag> {
    let mut f = fs::File::open(path)?;
    let mut hasher = etag.hasher(size);
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hasher.finish())
}

/// Gives a new partial file its final size with its blocks allocated up front (`fallocate`),
/// falling back to a sparse file where the file system cannot. Writing into allocated blocks
/// costs the kernel about a third less than filling holes (measured: 1 GiB of 4 MiB `pwrite`s
/// on ext4, 0.17 s against 0.25 s of system time), and a full disk shows at the start of a
/// blob rather than in the middle of it.
fn allocate(file: &fs::File, size: u64) -> io::Result<()> {
    use rustix::io::Errno;
    if size > 0 {
        match rustix::fs::fallocate(file, rustix::fs::FallocateFlags::empty(), 0, size) {
            Ok(()) => return Ok(()),
            Err(Errno::OPNOTSUPP | Errno::NOSYS) => {}
            Err(e) => return Err(e.into()),
        }
    }
    file.set_len(size)
}

fn bitmap_len(size: u64) -> usize {
    chunk_count(size).div_ceil(8) as usize
}

fn read_record(path: &Path) -> Option<Record> {
    let meta = fs::metadata(path).ok()?;
    if meta.len() > MAX_RECORD_LEN {
        return None;
    }
    postcard::from_bytes(&fs::read(path).ok()?).ok()
}
