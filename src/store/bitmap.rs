//! Which chunks of a blob are present: a fixed-length bitmap, also the `Have` answer peers send.

use std::ops::Range;

use serde::{Deserialize, Serialize};

/// Most chunks a bitmap may describe (a 4 TiB blob in 4 MiB chunks); bounds what a peer can make
/// us allocate.
pub const MAX_CHUNKS: u64 = 1 << 20;

/// A set of chunk indices in `0..len`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bitmap {
    len: u64,
    bits: Vec<u8>,
}

impl Bitmap {
    /// No chunk of `len`.
    pub fn empty(len: u64) -> Bitmap {
        Bitmap {
            len,
            bits: vec![0; len.div_ceil(8) as usize],
        }
    }

    /// Every chunk of `len`.
    pub fn full(len: u64) -> Bitmap {
        let mut b = Bitmap::empty(len);
        (0..len).for_each(|i| b.set(i));
        b
    }

    /// From raw bits (as stored or received); `None` if the sizes disagree or `len` is too large.
    pub fn from_bits(len: u64, bits: Vec<u8>) -> Option<Bitmap> {
        (len <= MAX_CHUNKS && bits.len() as u64 == len.div_ceil(8)).then_some(Bitmap { len, bits })
    }

    /// The raw bits.
    pub fn bits(&self) -> &[u8] {
        &self.bits
    }

    /// Number of chunks described.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether it describes no chunk at all.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether chunk `i` is present (false outside `0..len`).
    pub fn get(&self, i: u64) -> bool {
        i < self.len && self.bits[(i / 8) as usize] & (1 << (i % 8)) != 0
    }

    /// Marks chunk `i` present (ignored outside `0..len`).
    pub fn set(&mut self, i: u64) {
        if i < self.len {
            self.bits[(i / 8) as usize] |= 1 << (i % 8);
        }
    }

    /// Number of chunks present.
    pub fn count(&self) -> u64 {
        // Whole bytes by popcount, the last partial byte bit by bit (bits past `len` may be set
        // in bitmaps from peers and do not count).
        let whole = (self.len / 8) as usize;
        let full: u64 = self.bits[..whole]
            .iter()
            .map(|b| u64::from(b.count_ones()))
            .sum();
        full + (whole as u64 * 8..self.len)
            .filter(|&i| self.get(i))
            .count() as u64
    }

    /// Whether every chunk is present.
    pub fn is_full(&self) -> bool {
        let whole = (self.len / 8) as usize;
        self.bits[..whole].iter().all(|&b| b == 0xff)
            && (whole as u64 * 8..self.len).all(|i| self.get(i))
    }

    /// Runs of absent chunks, in order.
    pub fn missing_runs(&self) -> Vec<Range<u64>> {
        let mut runs: Vec<Range<u64>> = Vec::new();
        for i in (0..self.len).filter(|&i| !self.get(i)) {
            match runs.last_mut() {
                Some(r) if r.end == i => r.end = i + 1,
                _ => runs.push(i..i + 1),
            }
        }
        runs
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bitmap_basics() {
        let mut b = Bitmap::empty(10);
        assert_eq!(b.missing_runs(), vec![0..10]);
        b.set(0);
        b.set(3);
        b.set(99);
        assert!(b.get(3) && !b.get(4) && !b.get(99));
        assert_eq!(b.count(), 2);
        assert_eq!(b.missing_runs(), vec![1..3, 4..10]);
        assert!(Bitmap::full(9).is_full());
        assert!(Bitmap::from_bits(9, vec![0; 1]).is_none());
        // Bits past the end, as a peer may send them, count for nothing.
        let odd = Bitmap::from_bits(10, vec![0xff, 0xfe]).unwrap();
        assert_eq!(odd.count(), 9);
        assert!(!odd.is_full() && !odd.get(8) && odd.get(9));
        assert!(Bitmap::from_bits(10, vec![0xff, 0x03]).unwrap().is_full());
        assert!(Bitmap::full(16).is_full() && Bitmap::full(16).count() == 16);
        assert!(
            Bitmap::from_bits(MAX_CHUNKS + 1, vec![0; (MAX_CHUNKS as usize + 8) / 8]).is_none()
        );
    }
}
