//! Request and byte counters of both origins.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

/// A snapshot of the counters (`GET /_emulator/stats`). `/_emulator/*` requests are not counted.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stats {
    /// File-content bytes sent by both origins, partial and cut bodies included.
    pub bytes_served: u64,
    /// Requests received by both origins.
    pub requests: u64,
    /// File bodies sent completely (a full file, whether asked with or without a range).
    pub files_served: u64,
    /// Requests per route: `api_info`, `api_tree`, `resolve_head`, `resolve_get`, `cdn_get`,
    /// `cdn_head`, `agent_harnesses`, `other`.
    pub requests_by_route: BTreeMap<String, u64>,
    /// Responses per HTTP status code.
    pub responses_by_status: BTreeMap<u16, u64>,
}

/// Live counters behind [`Stats`].
#[derive(Debug, Default)]
pub(crate) struct Counters {
    bytes_served: AtomicU64,
    files_served: AtomicU64,
    maps: Mutex<Stats>,
}

impl Counters {
    fn maps(&self) -> std::sync::MutexGuard<'_, Stats> {
        self.maps.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Counts a request to `route`.
    pub(crate) fn request(&self, route: &str) {
        let mut m = self.maps();
        m.requests += 1;
        *m.requests_by_route.entry(route.to_string()).or_default() += 1;
    }

    /// Counts a response status.
    pub(crate) fn status(&self, status: u16) {
        *self.maps().responses_by_status.entry(status).or_default() += 1;
    }

    /// Counts content bytes sent.
    pub(crate) fn bytes(&self, n: u64) {
        self.bytes_served.fetch_add(n, Ordering::Relaxed);
    }

    /// Counts a complete file body.
    pub(crate) fn file_done(&self) {
        self.files_served.fetch_add(1, Ordering::Relaxed);
    }

    /// A snapshot.
    pub(crate) fn snapshot(&self) -> Stats {
        let mut s = self.maps().clone();
        s.bytes_served = self.bytes_served.load(Ordering::Relaxed);
        s.files_served = self.files_served.load(Ordering::Relaxed);
        s
    }

    /// Zeroes everything.
    pub(crate) fn reset(&self) {
        let mut m = self.maps();
        *m = Stats::default();
        self.bytes_served.store(0, Ordering::Relaxed);
        self.files_served.store(0, Ordering::Relaxed);
    }
}
