use std::sync::Arc;

use bytes::Bytes;

use super::partial::HELD_CHUNKS;
use super::*;
use crate::etag::{sha256, Etag};

/// Sizes around chunk boundaries (iroh-blobs style).
const INTERESTING_SIZES: [u64; 7] = [
    0,
    1,
    CHUNK_SIZE - 1,
    CHUNK_SIZE,
    CHUNK_SIZE + 1,
    3 * CHUNK_SIZE,
    3 * CHUNK_SIZE + 7,
];

fn content(size: u64) -> Vec<u8> {
    (0..size)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect()
}

fn fill(p: &PartialBlob, data: &[u8], chunks: impl Iterator<Item = u64>) {
    for i in chunks {
        let r = chunk_range(data.len() as u64, i);
        p.write_at(r.start, &data[r.start as usize..r.end as usize])
            .unwrap();
        p.mark_complete(i);
    }
}

#[test]
fn chunk_arithmetic_at_edges() {
    assert_eq!(chunk_count(0), 0);
    assert_eq!(chunk_count(1), 1);
    assert_eq!(chunk_count(CHUNK_SIZE), 1);
    assert_eq!(chunk_count(CHUNK_SIZE + 1), 2);
    assert_eq!(chunk_range(CHUNK_SIZE + 1, 1), CHUNK_SIZE..CHUNK_SIZE + 1);
}

#[test]
fn out_of_order_writes_verify_at_every_interesting_size() {
    for size in INTERESTING_SIZES {
        let dir = tempfile::tempdir().unwrap();
        let data = content(size);
        let etag = sha256(&data);
        let p = PartialBlob::open(dir.path(), &etag, size).unwrap();
        fill(&p, &data, (0..p.chunks()).rev());
        assert!(p.is_complete());
        let path = p.verify().unwrap();
        assert_eq!(std::fs::read(path).unwrap(), data, "size {size}");
    }
}

#[test]
fn resumes_from_the_last_checkpoint_only() {
    let dir = tempfile::tempdir().unwrap();
    let size = 3 * CHUNK_SIZE + 7;
    let data = content(size);
    let etag = sha256(&data);
    {
        let p = PartialBlob::open(dir.path(), &etag, size).unwrap();
        fill(&p, &data, [0, 2].into_iter());
        p.checkpoint().unwrap();
        fill(&p, &data, [1].into_iter()); // lost: never checkpointed
    }
    let p = PartialBlob::open(dir.path(), &etag, size).unwrap();
    assert_eq!(p.missing_runs(), vec![1..2, 3..4]);
    assert_eq!(p.bytes_done(), 2 * CHUNK_SIZE);
    fill(&p, &data, [1, 3].into_iter());
    assert_eq!(std::fs::read(p.verify().unwrap()).unwrap(), data);
}

#[test]
fn a_record_for_another_blob_is_not_trusted() {
    let dir = tempfile::tempdir().unwrap();
    let data = content(CHUNK_SIZE + 1);
    let etag = sha256(&data);
    let p = PartialBlob::open(dir.path(), &etag, data.len() as u64).unwrap();
    fill(&p, &data, [0].into_iter());
    p.checkpoint().unwrap();
    drop(p);
    // Same etag, different size claimed: start afresh.
    let p = PartialBlob::open(dir.path(), &etag, data.len() as u64 + 1).unwrap();
    assert_eq!(p.missing_runs(), vec![0..2]);
}

#[test]
fn wrong_content_is_refused_and_discarded() {
    let dir = tempfile::tempdir().unwrap();
    let data = content(CHUNK_SIZE + 5);
    let etag = sha256(&data);
    let p = PartialBlob::open(dir.path(), &etag, data.len() as u64).unwrap();
    let mut bad = data.clone();
    bad[7] ^= 1;
    fill(&p, &bad, 0..2);
    assert!(matches!(p.verify(), Err(StoreError::EtagMismatch { .. })));
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        0,
        "bad bytes are not kept"
    );
    let etag2 = Etag::parse(&"0".repeat(64)).unwrap();
    let p = PartialBlob::open(dir.path(), &etag2, 4).unwrap();
    assert!(
        p.write_at(2, b"abc").is_err(),
        "writes past the end are refused"
    );
}

#[test]
fn chunk_hashes_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let data = content(2 * CHUNK_SIZE);
    let etag = sha256(&data);
    let h0 = *blake3::hash(&data[..CHUNK_SIZE as usize]).as_bytes();
    {
        let p = PartialBlob::open(dir.path(), &etag, data.len() as u64).unwrap();
        p.write_at(0, &data[..CHUNK_SIZE as usize]).unwrap();
        p.mark_complete_with_hash(0, h0);
        p.checkpoint().unwrap();
    }
    let p = PartialBlob::open(dir.path(), &etag, data.len() as u64).unwrap();
    assert_eq!(p.chunk_hash(0), Some(h0));
    assert_eq!(p.chunk_hash(1), None);
    assert!(p.bitmap().get(0) && !p.bitmap().get(1));
    assert_eq!(p.chunk_hash(7), None, "out of range is simply unknown");
}

fn chunk_of(data: &[u8], i: u64) -> &[u8] {
    let r = chunk_range(data.len() as u64, i);
    &data[r.start as usize..r.end as usize]
}

/// Chunk `i` of `data` in a pooled (aligned) buffer, as the pull hands chunks over.
fn chunk_buf(data: &[u8], i: u64) -> Bytes {
    let mut b = ChunkBuf::take(0);
    b.extend_from_slice(chunk_of(data, i));
    b.freeze()
}

fn open(dir: &std::path::Path, etag: &Etag, size: u64) -> Arc<PartialBlob> {
    Arc::new(PartialBlob::open(dir, etag, size).unwrap())
}

/// The etag hash fed as chunks complete (in any order, mixed with chunks marked complete by a
/// streaming writer or resumed from a checkpoint) verifies exactly what `hash_file` would.
#[test]
fn chunks_completed_in_any_order_verify_at_every_interesting_size() {
    for size in INTERESTING_SIZES {
        let dir = tempfile::tempdir().unwrap();
        let data = content(size);
        let etag = sha256(&data);
        let p = open(dir.path(), &etag, size);
        let n = p.chunks();
        // Chunk 1 first (out of order), then streaming-style for the last, then the rest.
        let mut order: Vec<u64> = (0..n).collect();
        order.rotate_left(1.min(n as usize));
        for (k, i) in order.into_iter().enumerate() {
            let chunk = chunk_of(&data, i);
            if k % 3 == 2 {
                p.write_at(chunk_range(size, i).start, chunk).unwrap();
                p.mark_complete(i);
            } else {
                let h = *blake3::hash(chunk).as_bytes();
                assert!(p.complete_chunk(i, chunk_buf(&data, i), h).unwrap());
            }
        }
        assert_eq!(std::fs::read(p.verify().unwrap()).unwrap(), data, "{size}");
    }
}

#[test]
fn a_complete_chunk_is_never_written_again() {
    let dir = tempfile::tempdir().unwrap();
    let data = content(2 * CHUNK_SIZE + 3);
    let etag = sha256(&data);
    let p = open(dir.path(), &etag, data.len() as u64);
    let h0 = *blake3::hash(chunk_of(&data, 0)).as_bytes();
    assert!(p.complete_chunk(0, chunk_buf(&data, 0), h0).unwrap());
    // A late duplicate with other bytes (say, a hedged request answered by a liar) is ignored.
    let other = Bytes::from(vec![0xAA; CHUNK_SIZE as usize]);
    assert!(!p.complete_chunk(0, other.clone(), h0).unwrap());
    assert!(
        p.complete_chunk(1, other.slice(..3), h0).is_err(),
        "a chunk of the wrong length is refused"
    );
    for i in 1..3 {
        let h = *blake3::hash(chunk_of(&data, i)).as_bytes();
        p.complete_chunk(i, chunk_buf(&data, i), h).unwrap();
    }
    assert_eq!(std::fs::read(p.verify().unwrap()).unwrap(), data);
}

#[test]
fn wrong_chunks_fed_as_they_complete_fail_the_etag() {
    let dir = tempfile::tempdir().unwrap();
    let data = content(3 * CHUNK_SIZE);
    let etag = sha256(&data);
    let mut bad = data.clone();
    bad[CHUNK_SIZE as usize + 9] ^= 1;
    let p = open(dir.path(), &etag, data.len() as u64);
    for i in [2, 0, 1] {
        let chunk = chunk_of(&bad, i);
        p.complete_chunk(i, chunk_buf(&bad, i), *blake3::hash(chunk).as_bytes())
            .unwrap();
    }
    assert!(matches!(p.verify(), Err(StoreError::EtagMismatch { .. })));
}

#[test]
fn a_resumed_blob_hashes_its_checkpointed_prefix_from_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let data = content(3 * CHUNK_SIZE + 7);
    let etag = sha256(&data);
    {
        let p = open(dir.path(), &etag, data.len() as u64);
        for i in [0, 1] {
            let chunk = chunk_of(&data, i);
            p.complete_chunk(i, chunk_buf(&data, i), *blake3::hash(chunk).as_bytes())
                .unwrap();
        }
        p.checkpoint().unwrap();
    }
    let p = open(dir.path(), &etag, data.len() as u64);
    for i in [3, 2] {
        let chunk = chunk_of(&data, i);
        p.complete_chunk(i, chunk_buf(&data, i), *blake3::hash(chunk).as_bytes())
            .unwrap();
    }
    assert_eq!(std::fs::read(p.verify().unwrap()).unwrap(), data);
    assert_eq!(
        p.chunks_read_back(),
        2,
        "the resumed chunks 0 and 1 come from the file"
    );
}

/// Whole chunks go straight to the disk (`O_DIRECT`) or through the page cache, by choice; the
/// unaligned end of a blob and unaligned buffers always through the page cache. Either way the
/// file ends up the same and verifies.
#[test]
fn direct_and_buffered_writes_make_the_same_blob() {
    for direct in [true, false] {
        for size in INTERESTING_SIZES {
            let dir = tempfile::tempdir().unwrap();
            let data = content(size);
            let etag = sha256(&data);
            let p = Arc::new(PartialBlob::open_with(dir.path(), &etag, size, direct).unwrap());
            // Linux file systems used for tests and caches (ext4, xfs, tmpfs since 6.6) take it.
            assert_eq!(p.writes_direct(), direct, "size {size}");
            for i in (0..p.chunks()).rev() {
                let h = *blake3::hash(chunk_of(&data, i)).as_bytes();
                // Odd chunks from an unaligned copy: those take the page cache.
                let bytes = if i % 2 == 1 {
                    Bytes::copy_from_slice(chunk_of(&data, i))
                } else {
                    chunk_buf(&data, i)
                };
                assert!(p.complete_chunk(i, bytes, h).unwrap());
            }
            assert_eq!(p.writes_direct(), direct, "no write was refused");
            let path = p.verify().unwrap();
            assert_eq!(
                std::fs::read(path).unwrap(),
                data,
                "direct {direct} size {size}"
            );
        }
    }
}

/// The etag hash takes chunks from memory while they are at most `HELD_CHUNKS` ahead of it, and
/// reads back from the file only what arrived further ahead.
#[test]
fn the_etag_hash_reads_back_only_chunks_beyond_what_it_holds() {
    let n = HELD_CHUNKS as u64 + 3;
    let size = n * CHUNK_SIZE - 5;
    let data = content(size);
    let etag = sha256(&data);
    let complete = |order: &mut dyn Iterator<Item = u64>| {
        let dir = tempfile::tempdir().unwrap();
        let p = open(dir.path(), &etag, size);
        for i in order {
            let h = *blake3::hash(chunk_of(&data, i)).as_bytes();
            assert!(p.complete_chunk(i, chunk_buf(&data, i), h).unwrap());
        }
        assert_eq!(std::fs::read(p.verify().unwrap()).unwrap(), data);
        p.chunks_read_back()
    };
    assert_eq!(complete(&mut (0..n)), 0, "in order: nothing read back");
    assert_eq!(
        complete(&mut (0..n).rev().skip(n as usize - 4).chain(4..n)),
        0,
        "3 2 1 0 4.."
    );
    // Chunk 0 last: chunks 1..=HELD_CHUNKS wait in memory, the last two are read back.
    assert_eq!(complete(&mut (1..n).chain([0])), 2);
}

/// When the hold is full because the hash is busy with earlier chunks, a writer waits for room
/// instead of leaving its chunk to be read back from the disk.
#[test]
fn writers_wait_for_a_busy_hash_instead_of_reading_back() {
    let n = HELD_CHUNKS as u64 + 3;
    let size = n * CHUNK_SIZE;
    let data = Arc::new(content(size));
    let etag = sha256(&data);
    let dir = tempfile::tempdir().unwrap();
    let p = open(dir.path(), &etag, size);
    let complete = |p: &Arc<PartialBlob>, i: u64| {
        let h = *blake3::hash(chunk_of(&data, i)).as_bytes();
        assert!(p.complete_chunk(i, chunk_buf(&data, i), h).unwrap());
    };
    let paused = p.pause_hash();
    // Starts the hash, which takes chunk 0 and then stalls on the paused hasher.
    complete(&p, 0);
    std::thread::scope(|s| {
        let writer = s.spawn(|| (1..n).for_each(|i| complete(&p, i)));
        std::thread::sleep(std::time::Duration::from_millis(200));
        assert!(
            !writer.is_finished(),
            "the last writers wait for room in the hold"
        );
        drop(paused);
        writer.join().unwrap();
    });
    assert_eq!(std::fs::read(p.verify().unwrap()).unwrap(), *data);
    assert_eq!(p.chunks_read_back(), 0, "nothing read back");
}

/// Many writers of the same chunk: one writes it, the others find it complete; writers of
/// different chunks run side by side.
#[test]
fn concurrent_writers_write_each_chunk_once() {
    let n = 6u64;
    let size = n * CHUNK_SIZE;
    let data = Arc::new(content(size));
    let etag = sha256(&data);
    let dir = tempfile::tempdir().unwrap();
    let p = open(dir.path(), &etag, size);
    let wrote: Vec<bool> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..3 * n)
            .map(|k| {
                let (p, data) = (p.clone(), data.clone());
                s.spawn(move || {
                    let i = k % n;
                    let h = *blake3::hash(chunk_of(&data, i)).as_bytes();
                    p.complete_chunk(i, chunk_buf(&data, i), h).unwrap()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for i in 0..n {
        let writers = (0..3 * n)
            .filter(|k| k % n == i && wrote[*k as usize])
            .count();
        assert_eq!(writers, 1, "chunk {i} written once");
    }
    assert_eq!(std::fs::read(p.verify().unwrap()).unwrap(), *data);
}
