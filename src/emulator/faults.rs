//! Fault injection: latency, injected error answers, truncated bodies, and the bandwidth cap
//! shared by every client and both origins.

use std::sync::Mutex;
use std::time::Duration;

use rand::{Rng as _, SeedableRng as _};
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

/// Fault settings. Every field is optional and the default injects nothing. Replaced as a whole
/// by [`super::Emulator::set_faults`] or `POST /_emulator/faults` (this type as JSON).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Faults {
    /// Delay added before every response, on both origins (not on `/_emulator/*`).
    pub latency_ms: Option<u64>,
    /// Cap on file-content bytes per second, shared by all clients and both origins.
    pub bandwidth_bps: Option<u64>,
    /// Error answers, checked in order; the first rule that matches a request answers it.
    pub errors: Vec<ErrorRule>,
    /// Cut the next file bodies short.
    pub truncate: Option<Truncate>,
    /// Seed of the generator behind [`ErrorRule::probability`] (default 0), so runs repeat.
    pub seed: Option<u64>,
}

/// Answer matching requests with an error status instead of serving them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ErrorRule {
    /// The status to answer, e.g. 429, 500, 502, 503.
    pub status: u16,
    /// `Retry-After` seconds, sent with the error when set.
    pub retry_after_secs: Option<u64>,
    /// Answer only the next `count` matching requests; `None` answers all of them (an outage).
    pub count: Option<u64>,
    /// Only requests whose path contains this string match.
    pub path_contains: Option<String>,
    /// Each matching request fails with this probability (seeded, deterministic); default 1.
    pub probability: Option<f64>,
}

/// Cut file bodies short by aborting the connection mid-body.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Truncate {
    /// How many bodies to cut. Only bodies longer than `after_bytes` count.
    pub count: u64,
    /// Bytes sent before the cut.
    pub after_bytes: u64,
}

/// An error answer chosen by [`FaultState::pick_error`].
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Injected {
    pub status: u16,
    pub retry_after_secs: Option<u64>,
}

#[derive(Debug)]
struct Inner {
    faults: Faults,
    /// Remaining count per rule (`None` = unlimited).
    remaining: Vec<Option<u64>>,
    truncations_left: u64,
    rng: rand::rngs::StdRng,
}

/// The live fault settings and their counters.
#[derive(Debug)]
pub(crate) struct FaultState {
    inner: Mutex<Inner>,
}

impl FaultState {
    /// Starts with `faults`.
    pub(crate) fn new(faults: Faults) -> Self {
        FaultState {
            inner: Mutex::new(Inner::from(faults)),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Replaces the settings and resets every counter.
    pub(crate) fn set(&self, faults: Faults) {
        *self.lock() = Inner::from(faults);
    }

    /// The current settings.
    pub(crate) fn get(&self) -> Faults {
        self.lock().faults.clone()
    }

    /// The added latency.
    pub(crate) fn latency(&self) -> Option<Duration> {
        self.lock()
            .faults
            .latency_ms
            .filter(|&ms| ms > 0)
            .map(Duration::from_millis)
    }

    /// The bandwidth cap.
    pub(crate) fn bandwidth(&self) -> Option<u64> {
        self.lock().faults.bandwidth_bps.filter(|&b| b > 0)
    }

    /// The error to answer a request for `path` with, if a rule fires (consuming its count).
    pub(crate) fn pick_error(&self, path: &str) -> Option<Injected> {
        let inner = &mut *self.lock();
        for (i, rule) in inner.faults.errors.iter().enumerate() {
            if rule
                .path_contains
                .as_deref()
                .is_some_and(|p| !path.contains(p))
            {
                continue;
            }
            if inner.remaining[i] == Some(0) {
                continue;
            }
            if let Some(p) = rule.probability {
                if inner.rng.random::<f64>() >= p {
                    continue;
                }
            }
            if let Some(n) = &mut inner.remaining[i] {
                *n -= 1;
            }
            return Some(Injected {
                status: rule.status,
                retry_after_secs: rule.retry_after_secs,
            });
        }
        None
    }

    /// Where to cut a body of `len` bytes, if a truncation is pending and the body is long enough.
    pub(crate) fn take_truncation(&self, len: u64) -> Option<u64> {
        let inner = &mut *self.lock();
        let after = inner.faults.truncate.as_ref()?.after_bytes;
        if inner.truncations_left == 0 || len <= after {
            return None;
        }
        inner.truncations_left -= 1;
        Some(after)
    }
}

impl From<Faults> for Inner {
    fn from(faults: Faults) -> Self {
        Inner {
            remaining: faults.errors.iter().map(|r| r.count).collect(),
            truncations_left: faults.truncate.as_ref().map_or(0, |t| t.count),
            rng: rand::rngs::StdRng::seed_from_u64(faults.seed.unwrap_or(0)),
            faults,
        }
    }
}

/// How far behind the schedule the cap lets a sender fall and catch up (timer granularity).
const THROTTLE_SLACK: Duration = Duration::from_millis(20);

/// One schedule for all content bytes (a GCRA-style token bucket): each slice reserves the next
/// `len / rate` seconds of the shared link and waits until its slot starts.
#[derive(Debug)]
pub(crate) struct Throttle {
    /// When the link is free again (the theoretical arrival time).
    free_at: Mutex<Option<Instant>>,
}

impl Throttle {
    /// An idle link.
    pub(crate) fn new() -> Self {
        Throttle {
            free_at: Mutex::new(None),
        }
    }

    /// Waits until `len` bytes may be sent at `rate` bytes per second (returns at once if `None`).
    pub(crate) async fn acquire(&self, rate: Option<u64>, len: u64) {
        let Some(rate) = rate else { return };
        let start = {
            let mut free_at = self.free_at.lock().unwrap_or_else(|p| p.into_inner());
            let now = Instant::now();
            let earliest = now.checked_sub(THROTTLE_SLACK).unwrap_or(now);
            let start = free_at.map_or(now, |t| t.max(earliest));
            *free_at = Some(start + Duration::from_secs_f64(len as f64 / rate as f64));
            start
        };
        tokio::time::sleep_until(start).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counted_rules_run_out_and_paths_filter() {
        let f = FaultState::new(Faults {
            errors: vec![
                ErrorRule {
                    status: 503,
                    count: Some(1),
                    path_contains: Some("/resolve/".into()),
                    ..Default::default()
                },
                ErrorRule {
                    status: 429,
                    count: Some(2),
                    retry_after_secs: Some(3),
                    ..Default::default()
                },
            ],
            ..Default::default()
        });
        assert_eq!(
            f.pick_error("/a/b/resolve/main/x").map(|e| e.status),
            Some(503)
        );
        assert_eq!(
            f.pick_error("/a/b/resolve/main/x"),
            Some(Injected {
                status: 429,
                retry_after_secs: Some(3)
            })
        );
        assert_eq!(f.pick_error("/api/models/a/b").map(|e| e.status), Some(429));
        assert_eq!(f.pick_error("/a/b/resolve/main/x"), None);
        f.set(Faults {
            errors: vec![ErrorRule {
                status: 500,
                ..Default::default()
            }],
            ..Default::default()
        });
        for _ in 0..10 {
            assert_eq!(f.pick_error("/x").map(|e| e.status), Some(500));
        }
    }

    #[test]
    fn probability_is_seeded() {
        let rule = ErrorRule {
            status: 500,
            probability: Some(0.5),
            ..Default::default()
        };
        let run = || {
            let f = FaultState::new(Faults {
                errors: vec![rule.clone()],
                seed: Some(9),
                ..Default::default()
            });
            (0..200)
                .map(|_| f.pick_error("/").is_some())
                .collect::<Vec<_>>()
        };
        let a = run();
        assert_eq!(a, run());
        let hits = a.iter().filter(|&&h| h).count();
        assert!((60..140).contains(&hits), "{hits}");
    }

    #[test]
    fn truncation_skips_short_bodies() {
        let f = FaultState::new(Faults {
            truncate: Some(Truncate {
                count: 1,
                after_bytes: 10,
            }),
            ..Default::default()
        });
        assert_eq!(f.take_truncation(5), None);
        assert_eq!(f.take_truncation(11), Some(10));
        assert_eq!(f.take_truncation(11), None);
    }

    #[tokio::test]
    async fn throttle_paces_to_the_rate() {
        let t = Throttle::new();
        let begin = Instant::now();
        for _ in 0..10 {
            t.acquire(Some(1_000_000), 10_000).await;
        }
        // 100 kB at 1 MB/s: the last slice starts after 90 ms (a lower bound; real time is noisy).
        let took = begin.elapsed().as_secs_f64();
        assert!((0.085..2.0).contains(&took), "{took}");
        let begin = Instant::now();
        t.acquire(None, 1 << 30).await;
        assert!(begin.elapsed() < Duration::from_millis(50));
    }
}
