//! Per-node bandwidth limits: a token bucket of bytes per second that callers pay into after (or
//! before) moving bytes, so one node's transfers average at most the configured rate. Used by
//! the chunk server for uploads and by pulls (peers and Hub) for downloads; the simulation
//! harness uses them to give each loopback agent its own "link".
//!
//! The bucket may go into debt: [`RateLimit::reserve`] always grants and returns how long the
//! caller must wait, so a request larger than the burst is paced instead of refused. The pure
//! core ([`RateLimit::reserve`]) takes `now`; [`RateLimit::acquire`] is the thin async driver.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

/// Burst allowance: this much time's worth of bytes may pass at once after an idle spell.
pub const BURST_WINDOW: Duration = Duration::from_millis(50);
/// Smallest burst, so tiny rates still let one QUIC datagram's worth through.
pub const MIN_BURST: u64 = 64 << 10;

/// A token bucket of bytes, shared by every transfer of one direction on one node.
#[derive(Debug)]
pub struct RateLimit {
    rate: u64,
    burst: f64,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    /// Bytes that may pass now; negative while in debt.
    tokens: f64,
    last: Instant,
}

impl RateLimit {
    /// A limit of `bytes_per_sec` (at least 1), starting with a full bucket.
    pub fn new(bytes_per_sec: u64) -> RateLimit {
        let rate = bytes_per_sec.max(1);
        let burst = ((rate as f64) * BURST_WINDOW.as_secs_f64()).max(MIN_BURST as f64);
        RateLimit {
            rate,
            burst,
            state: Mutex::new(State {
                tokens: burst,
                last: Instant::now(),
            }),
        }
    }

    /// The configured rate in bytes per second.
    pub fn rate(&self) -> u64 {
        self.rate
    }

    /// Takes `bytes` from the bucket at `now` and returns how long the caller must wait before
    /// the bytes are within the rate (zero when they already are). Always grants.
    pub fn reserve(&self, bytes: u64, now: Instant) -> Duration {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let elapsed = now.saturating_duration_since(s.last).as_secs_f64();
        s.last = s.last.max(now);
        s.tokens = (s.tokens + elapsed * self.rate as f64).min(self.burst);
        s.tokens -= bytes as f64;
        if s.tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-s.tokens / self.rate as f64)
        }
    }

    /// Pays for `bytes`, sleeping as long as the rate requires.
    pub async fn acquire(&self, bytes: u64) {
        let wait = self.reserve(bytes, Instant::now());
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }
}

/// Pays for `bytes` on `limit` if there is one.
pub async fn pay(limit: &Option<Arc<RateLimit>>, bytes: u64) {
    if let Some(l) = limit {
        l.acquire(bytes).await;
    }
}

/// A node's two limits; `None` is unlimited.
#[derive(Debug, Clone, Default)]
pub struct Limits {
    /// Bytes per second served to peers, over all of them.
    pub upload: Option<Arc<RateLimit>>,
    /// Bytes per second received from peers and the Hub, over all pulls.
    pub download: Option<Arc<RateLimit>>,
}

impl Limits {
    /// Limits from optional rates in bytes per second.
    pub fn new(upload: Option<u64>, download: Option<u64>) -> Limits {
        Limits {
            upload: upload.map(|r| Arc::new(RateLimit::new(r))),
            download: download.map(|r| Arc::new(RateLimit::new(r))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn within_the_burst_passes_at_once() {
        let l = RateLimit::new(1_000_000);
        let t = Instant::now();
        assert_eq!(l.reserve(50_000, t), Duration::ZERO);
    }

    #[test]
    fn debt_is_paid_at_the_rate() {
        let l = RateLimit::new(1_000_000); // burst = 64 KiB (MIN_BURST > 50 ms of 1 MB/s)
        let t = Instant::now();
        let wait = l.reserve(MIN_BURST + 500_000, t);
        assert!((wait.as_secs_f64() - 0.5).abs() < 0.01, "{wait:?}");
        // Another request right away waits for both debts.
        let wait = l.reserve(250_000, t);
        assert!((wait.as_secs_f64() - 0.75).abs() < 0.01, "{wait:?}");
    }

    #[test]
    fn idle_time_refills_only_up_to_the_burst() {
        let l = RateLimit::new(10_000_000); // burst = 500 kB
        let t = Instant::now();
        assert_eq!(l.reserve(500_000, t), Duration::ZERO);
        // An hour idle still gives one burst, not an hour of bytes.
        let later = t + Duration::from_secs(3600);
        assert_eq!(l.reserve(500_000, later), Duration::ZERO);
        let wait = l.reserve(1_000_000, later);
        assert!((wait.as_secs_f64() - 0.1).abs() < 0.01, "{wait:?}");
    }

    #[test]
    fn callers_that_wait_as_told_average_the_rate() {
        let l = RateLimit::new(4_000_000);
        let start = Instant::now();
        let mut now = start;
        for _ in 0..100 {
            now += l.reserve(400_000, now); // 40 MB in all
        }
        let took = (now - start).as_secs_f64();
        // 40 MB at 4 MB/s is 10 s, less the initial burst (200 kB = 0.05 s).
        assert!((took - 9.95).abs() < 0.01, "took {took}");
    }

    #[tokio::test]
    async fn acquire_sleeps_for_the_debt() {
        let l = RateLimit::new(1_000_000);
        let start = Instant::now();
        l.acquire(MIN_BURST + 100_000).await;
        let took = start.elapsed().as_secs_f64();
        assert!((0.09..0.5).contains(&took), "took {took}");
    }

    #[test]
    fn zero_rate_is_clamped() {
        assert_eq!(RateLimit::new(0).rate(), 1);
        assert!(Limits::new(None, None).upload.is_none());
        assert_eq!(Limits::new(Some(5), None).upload.unwrap().rate(), 5);
    }
}
