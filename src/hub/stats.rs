//! Counts of requests to the Hub by operation and outcome, shared by every clone of a
//! [`HubClient`](super::HubClient): one atomic per pair, so counting costs one relaxed add. Every
//! attempt counts (a request retried twice is three), which is what the Hub's rate limits see.

use std::sync::atomic::{AtomicU64, Ordering};

/// What a request to the Hub was for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HubOp {
    /// Resolving a revision to its commit (`/api/{kind}s/{id}/revision/{rev}`).
    Resolve,
    /// A page of a snapshot's file listing (`/api/{kind}s/{id}/tree/...`).
    List,
    /// Locating a file (`HEAD /resolve/...`, redirects on the Hub's origin included).
    Head,
    /// File content: a whole file or a byte range, from the Hub or its CDN.
    Download,
}

impl HubOp {
    /// Every operation, in label order.
    pub const ALL: [HubOp; 4] = [HubOp::Resolve, HubOp::List, HubOp::Head, HubOp::Download];

    /// The `op` label value.
    pub fn label(self) -> &'static str {
        match self {
            HubOp::Resolve => "resolve",
            HubOp::List => "list",
            HubOp::Head => "head",
            HubOp::Download => "download",
        }
    }
}

/// How a request to the Hub ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HubOutcome {
    /// A 2xx answer.
    Success,
    /// A 3xx answer (a redirect followed by hand, or to the CDN).
    Redirect,
    /// 401: no token, or a token without access.
    Unauthorized,
    /// 403: a gated repository whose terms the token has not accepted.
    Forbidden,
    /// 404: no such repository, revision or file.
    NotFound,
    /// 429: rate limited.
    RateLimited,
    /// Another 4xx answer.
    ClientError,
    /// A 5xx answer.
    ServerError,
    /// No answer: connection refused or reset, timeout, TLS failure.
    Network,
    /// An answer outside 200..=599.
    Other,
}

impl HubOutcome {
    /// Every outcome, in label order.
    pub const ALL: [HubOutcome; 10] = [
        HubOutcome::Success,
        HubOutcome::Redirect,
        HubOutcome::Unauthorized,
        HubOutcome::Forbidden,
        HubOutcome::NotFound,
        HubOutcome::RateLimited,
        HubOutcome::ClientError,
        HubOutcome::ServerError,
        HubOutcome::Network,
        HubOutcome::Other,
    ];

    /// The outcome of an answer with HTTP status `status`.
    pub fn from_status(status: u16) -> HubOutcome {
        match status {
            401 => HubOutcome::Unauthorized,
            403 => HubOutcome::Forbidden,
            404 => HubOutcome::NotFound,
            429 => HubOutcome::RateLimited,
            200..=299 => HubOutcome::Success,
            300..=399 => HubOutcome::Redirect,
            400..=499 => HubOutcome::ClientError,
            500..=599 => HubOutcome::ServerError,
            _ => HubOutcome::Other,
        }
    }

    /// The `outcome` label value.
    pub fn label(self) -> &'static str {
        match self {
            HubOutcome::Success => "2xx",
            HubOutcome::Redirect => "3xx",
            HubOutcome::Unauthorized => "401",
            HubOutcome::Forbidden => "403",
            HubOutcome::NotFound => "404",
            HubOutcome::RateLimited => "429",
            HubOutcome::ClientError => "4xx",
            HubOutcome::ServerError => "5xx",
            HubOutcome::Network => "network",
            HubOutcome::Other => "other",
        }
    }
}

/// Requests to the Hub so far, per operation and outcome.
#[derive(Debug, Default)]
pub struct HubRequestStats {
    counts: [[AtomicU64; HubOutcome::ALL.len()]; HubOp::ALL.len()],
}

impl HubRequestStats {
    /// Counts one request of `op` that ended with `outcome`.
    pub fn record(&self, op: HubOp, outcome: HubOutcome) {
        self.counts[op as usize][outcome as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// Requests of `op` that ended with `outcome`.
    pub fn get(&self, op: HubOp, outcome: HubOutcome) -> u64 {
        self.counts[op as usize][outcome as usize].load(Ordering::Relaxed)
    }

    /// Every (operation, outcome, count), zeros included, in label order.
    pub fn snapshot(&self) -> Vec<(HubOp, HubOutcome, u64)> {
        HubOp::ALL
            .iter()
            .flat_map(|&op| HubOutcome::ALL.iter().map(move |&o| (op, o)))
            .map(|(op, o)| (op, o, self.get(op, o)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_map_to_outcomes() {
        let cases = [
            (200, "2xx"),
            (206, "2xx"),
            (302, "3xx"),
            (401, "401"),
            (403, "403"),
            (404, "404"),
            (416, "4xx"),
            (429, "429"),
            (503, "5xx"),
            (101, "other"),
        ];
        for (status, label) in cases {
            assert_eq!(HubOutcome::from_status(status).label(), label, "{status}");
        }
    }

    #[test]
    fn counts_per_operation_and_outcome() {
        let s = HubRequestStats::default();
        s.record(HubOp::Download, HubOutcome::Success);
        s.record(HubOp::Download, HubOutcome::Success);
        s.record(HubOp::Head, HubOutcome::Network);
        assert_eq!(s.get(HubOp::Download, HubOutcome::Success), 2);
        assert_eq!(s.get(HubOp::Head, HubOutcome::Network), 1);
        assert_eq!(s.get(HubOp::Resolve, HubOutcome::Success), 0);
        let all = s.snapshot();
        assert_eq!(all.len(), HubOp::ALL.len() * HubOutcome::ALL.len());
        assert_eq!(all.iter().map(|(_, _, n)| n).sum::<u64>(), 3);
        // The enum order is the index order the counters use.
        for (i, op) in HubOp::ALL.iter().enumerate() {
            assert_eq!(*op as usize, i);
        }
        for (i, o) in HubOutcome::ALL.iter().enumerate() {
            assert_eq!(*o as usize, i);
        }
    }
}
