//! Prometheus metrics, rendered by hand in the text exposition format (version 0.0.4): what a
//! node pulled from peers and from the Hub per snapshot, what it served, verification failures,
//! peers, pulls in flight and their durations, cache usage, evictions, and requests to the Hub by
//! operation and outcome.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use crate::hub::{HubOp, HubOutcome};

/// Per-snapshot and per-outcome counters that the pull path does not keep itself.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Pulls running now.
    pub pulls_in_flight: AtomicU64,
    /// Damaged files `verify` found in the local tree.
    pub verify_damage: AtomicU64,
    /// Snapshots evicted since start.
    pub evictions: AtomicU64,
    /// Blob bytes freed by evictions since start.
    pub evicted_bytes: AtomicU64,
    pulls: Mutex<PullStats>,
}

#[derive(Debug, Default)]
struct PullStats {
    /// (kind, repo) → (bytes from peers, bytes from the Hub).
    by_snapshot: BTreeMap<(String, String), (u64, u64)>,
    /// outcome → (count, total seconds).
    durations: BTreeMap<&'static str, (u64, f64)>,
}

/// Values read at scrape time from the node.
#[derive(Debug, Default)]
pub struct Gauges {
    /// File bytes received from peers (verified), all pulls.
    pub bytes_from_peers: u64,
    /// File bytes received from the Hub, all pulls.
    pub bytes_from_hub: u64,
    /// Protocol bytes sent to peers (chunks served).
    pub bytes_served: u64,
    /// Protocol bytes received from peers.
    pub bytes_received: u64,
    /// Chunk requests refused as busy (every upload slot taken).
    pub uploads_refused_busy: u64,
    /// Questions about blobs answered to peers (requests), and the blobs they were about (an
    /// `Ask` covers several blobs in one request).
    pub questions_answered: u64,
    /// See `questions_answered`.
    pub question_blobs: u64,
    /// Chunks from peers that failed verification.
    pub bad_chunks: u64,
    /// Refreshes of a blob's view during pulls (each asks the blob's providers what they hold).
    pub view_refreshes: u64,
    /// Of those, the ones that looked the providers up in the DHT.
    pub provider_lookups: u64,
    /// Peers known to discovery.
    pub peers: u64,
    /// Bytes of the cache tree's blobs.
    pub cache_bytes: u64,
    /// Snapshots held.
    pub snapshots: u64,
    /// Whether the preload is complete.
    pub ready: bool,
    /// Requests to the Hub so far: (operation, outcome, count), zeros included.
    pub hub_requests: Vec<(HubOp, HubOutcome, u64)>,
}

impl Metrics {
    /// Records a finished pull of `repo` (of `kind`) that took `seconds`.
    pub fn pull_done(
        &self,
        kind: &str,
        repo: &str,
        from_peers: u64,
        from_hub: u64,
        seconds: f64,
        ok: bool,
    ) {
        let mut p = self.pulls.lock().unwrap_or_else(|e| e.into_inner());
        let e = p
            .by_snapshot
            .entry((kind.to_string(), repo.to_string()))
            .or_default();
        e.0 += from_peers;
        e.1 += from_hub;
        let d = p
            .durations
            .entry(if ok { "ok" } else { "error" })
            .or_default();
        d.0 += 1;
        d.1 += seconds;
    }

    /// The exposition text.
    pub fn render(&self, g: &Gauges) -> String {
        let mut out = String::new();
        let mut metric = |name: &str, kind: &str, help: &str, samples: &[(String, String)]| {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} {kind}");
            for (labels, value) in samples {
                let _ = writeln!(out, "{name}{labels} {value}");
            }
        };
        let one = |v: u64| vec![(String::new(), v.to_string())];
        metric(
            "hfmesh_bytes_from_peers_total",
            "counter",
            "File bytes received from peers, verified.",
            &one(g.bytes_from_peers),
        );
        metric(
            "hfmesh_bytes_from_hub_total",
            "counter",
            "File bytes received from the Hub.",
            &one(g.bytes_from_hub),
        );
        metric(
            "hfmesh_bytes_served_total",
            "counter",
            "Protocol bytes sent to peers.",
            &one(g.bytes_served),
        );
        metric(
            "hfmesh_bytes_received_total",
            "counter",
            "Protocol bytes received from peers.",
            &one(g.bytes_received),
        );
        metric(
            "hfmesh_uploads_refused_busy_total",
            "counter",
            "Chunk requests from peers refused as busy: every upload slot was taken.",
            &one(g.uploads_refused_busy),
        );
        metric(
            "hfmesh_questions_answered_total",
            "counter",
            "Requests from peers asking which chunks of blobs this node holds.",
            &one(g.questions_answered),
        );
        metric(
            "hfmesh_question_blobs_total",
            "counter",
            "Blobs those questions were about (one request may ask about several).",
            &one(g.question_blobs),
        );
        metric(
            "hfmesh_chunk_verification_failures_total",
            "counter",
            "Chunks from peers that failed BLAKE3 verification.",
            &one(g.bad_chunks),
        );
        metric(
            "hfmesh_view_refreshes_total",
            "counter",
            "Refreshes of a blob's view during pulls: each asks the blob's providers what they hold.",
            &one(g.view_refreshes),
        );
        metric(
            "hfmesh_provider_lookups_total",
            "counter",
            "Refreshes that also looked the blob's providers up in the DHT (the rest reuse the last lookup's list).",
            &one(g.provider_lookups),
        );
        metric(
            "hfmesh_peers",
            "gauge",
            "Peers known to discovery.",
            &one(g.peers),
        );
        metric(
            "hfmesh_cache_bytes",
            "gauge",
            "Bytes of blobs in the cache tree.",
            &one(g.cache_bytes),
        );
        metric(
            "hfmesh_snapshots",
            "gauge",
            "Complete snapshots held and served.",
            &one(g.snapshots),
        );
        metric(
            "hfmesh_ready",
            "gauge",
            "1 when every preloaded snapshot is present.",
            &one(u64::from(g.ready)),
        );
        metric(
            "hfmesh_evictions_total",
            "counter",
            "Snapshots evicted from the cache tree.",
            &one(self.evictions.load(Ordering::Relaxed)),
        );
        metric(
            "hfmesh_evicted_bytes_total",
            "counter",
            "Blob bytes freed by evictions.",
            &one(self.evicted_bytes.load(Ordering::Relaxed)),
        );
        metric(
            "hfmesh_pulls_in_flight",
            "gauge",
            "Pulls running now.",
            &one(self.pulls_in_flight.load(Ordering::Relaxed)),
        );
        metric(
            "hfmesh_verify_damaged_files_total",
            "counter",
            "Damaged files found by verify in the local cache tree.",
            &one(self.verify_damage.load(Ordering::Relaxed)),
        );
        let hub: Vec<(String, String)> = g
            .hub_requests
            .iter()
            .map(|(op, outcome, n)| {
                let labels = format!("{{op=\"{}\",outcome=\"{}\"}}", op.label(), outcome.label());
                (labels, n.to_string())
            })
            .collect();
        metric(
            "hfmesh_hub_requests_total",
            "counter",
            "Requests to the Hub (every attempt, retries included), by operation and outcome.",
            &hub,
        );
        let p = self.pulls.lock().unwrap_or_else(|e| e.into_inner());
        let mut by_source = Vec::new();
        for ((kind, repo), (peers, hub)) in &p.by_snapshot {
            for (source, v) in [("peers", peers), ("hub", hub)] {
                let labels = format!(
                    "{{kind=\"{}\",repo=\"{}\",source=\"{source}\"}}",
                    escape(kind),
                    escape(repo)
                );
                by_source.push((labels, v.to_string()));
            }
        }
        metric(
            "hfmesh_snapshot_bytes_total",
            "counter",
            "File bytes pulled per snapshot and source.",
            &by_source,
        );
        let mut sums = Vec::new();
        let mut counts = Vec::new();
        for (outcome, (count, secs)) in &p.durations {
            sums.push((format!("{{outcome=\"{outcome}\"}}"), format!("{secs:.6}")));
            counts.push((format!("{{outcome=\"{outcome}\"}}"), count.to_string()));
        }
        metric(
            "hfmesh_pull_duration_seconds_sum",
            "counter",
            "Total seconds spent in pulls, by outcome.",
            &sums,
        );
        metric(
            "hfmesh_pull_duration_seconds_count",
            "counter",
            "Pulls finished, by outcome.",
            &counts,
        );
        out
    }
}

/// Escapes a label value (`\`, `"`, newline).
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_gauges_and_labels() {
        let m = Metrics::default();
        m.evictions.store(2, Ordering::Relaxed);
        m.evicted_bytes.store(4096, Ordering::Relaxed);
        m.pull_done("model", "acme/x", 10, 5, 1.5, true);
        let text = m.render(&Gauges {
            bytes_from_peers: 10,
            uploads_refused_busy: 3,
            questions_answered: 5,
            question_blobs: 17,
            view_refreshes: 40,
            provider_lookups: 9,
            ready: true,
            hub_requests: vec![
                (HubOp::Download, HubOutcome::Success, 7),
                (HubOp::Head, HubOutcome::RateLimited, 0),
            ],
            ..Gauges::default()
        });
        assert!(text.contains(
            "# TYPE hfmesh_hub_requests_total counter\n\
             hfmesh_hub_requests_total{op=\"download\",outcome=\"2xx\"} 7\n\
             hfmesh_hub_requests_total{op=\"head\",outcome=\"429\"} 0\n"
        ));
        assert!(text.contains(
            "# TYPE hfmesh_bytes_from_peers_total counter\nhfmesh_bytes_from_peers_total 10\n"
        ));
        assert!(text.contains(
            "hfmesh_snapshot_bytes_total{kind=\"model\",repo=\"acme/x\",source=\"hub\"} 5\n"
        ));
        assert!(text.contains("hfmesh_pull_duration_seconds_count{outcome=\"ok\"} 1\n"));
        assert!(text.contains("hfmesh_ready 1\n"));
        assert!(text.contains("hfmesh_uploads_refused_busy_total 3\n"));
        assert!(text.contains("hfmesh_view_refreshes_total 40\n"));
        assert!(text.contains("hfmesh_questions_answered_total 5\n"));
        assert!(text.contains("hfmesh_question_blobs_total 17\n"));
        assert!(text.contains("hfmesh_provider_lookups_total 9\n"));
        assert!(text.contains("# TYPE hfmesh_evictions_total counter\nhfmesh_evictions_total 2\n"));
        assert!(text.contains("hfmesh_evicted_bytes_total 4096\n"));
        assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
