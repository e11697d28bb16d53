//! Seeded synthetic file content: generated on the fly from `(seed, offset)`, never stored.
//!
//! Byte `i` of a synthetic file is byte `i % 8` (little-endian) of the 64-bit word
//! `splitmix64(seed + (i / 8 + 1) * GOLDEN_GAMMA)`. Every word is computed independently, so any
//! range can be produced without producing what comes before it (random access for `Range`),
//! generation runs at several GB/s, and the output is incompressible. The content depends only
//! on the seed: two files with the same seed share a prefix, and a file's content is the same in
//! every emulator, on every run.

/// The splitmix64 increment (2^64 / golden ratio).
const GOLDEN_GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;

/// The splitmix64 output mix (a bijection on `u64`).
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The 8-byte word number `index` of the content with `seed`.
fn word(seed: u64, index: u64) -> [u8; 8] {
    mix(seed.wrapping_add(index.wrapping_add(1).wrapping_mul(GOLDEN_GAMMA))).to_le_bytes()
}

/// Fills `buf` with the content of seed `seed` at bytes `offset .. offset + buf.len()`.
pub(crate) fn fill(seed: u64, offset: u64, buf: &mut [u8]) {
    let mut filled = 0;
    let mut index = offset / 8;
    let skip = (offset % 8) as usize;
    if skip != 0 {
        let w = word(seed, index);
        let n = (8 - skip).min(buf.len());
        buf[..n].copy_from_slice(&w[skip..skip + n]);
        filled = n;
        index += 1;
    }
    let mut words = buf[filled..].chunks_exact_mut(8);
    for chunk in &mut words {
        chunk.copy_from_slice(&word(seed, index));
        index += 1;
    }
    let rest = words.into_remainder();
    if !rest.is_empty() {
        let n = rest.len();
        rest.copy_from_slice(&word(seed, index)[..n]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn whole(seed: u64, len: usize) -> Vec<u8> {
        let mut v = vec![0; len];
        fill(seed, 0, &mut v);
        v
    }

    #[test]
    fn any_slice_equals_the_same_bytes_of_the_whole() {
        let all = whole(7, 100);
        for start in 0..40 {
            for len in [0, 1, 3, 7, 8, 9, 16, 17, 60 - start.min(59)] {
                let mut part = vec![0; len];
                fill(7, start as u64, &mut part);
                assert_eq!(part, all[start..start + len], "start {start} len {len}");
            }
        }
    }

    #[test]
    fn seeds_differ_and_content_is_stable() {
        assert_ne!(whole(1, 64), whole(2, 64));
        assert_eq!(whole(1, 64), whole(1, 64));
        // Pin the format: changing it would change every synthetic etag.
        assert_eq!(
            hex::encode(whole(0, 8)),
            hex::encode(mix(GOLDEN_GAMMA).to_le_bytes())
        );
    }

    #[test]
    fn content_looks_random() {
        let data = whole(42, 1 << 16);
        let mut counts = [0usize; 256];
        for b in &data {
            counts[*b as usize] += 1;
        }
        // Each byte value appears about 256 times; none is wildly off.
        assert!(
            counts.iter().all(|&c| (150..400).contains(&c)),
            "{counts:?}"
        );
    }
}
