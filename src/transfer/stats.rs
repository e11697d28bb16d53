//! Bytes moved per peer, counted at the frame level (headers, bodies and chunk payloads) in
//! both directions and by both the serving and the fetching side.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::node::NodeId;

/// Traffic with one peer since this endpoint started (over all its connections).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerStats {
    /// The peer.
    pub id: NodeId,
    /// Protocol bytes sent to it (requests and served chunks).
    pub bytes_sent: u64,
    /// Protocol bytes received from it.
    pub bytes_received: u64,
    /// The latest smoothed round-trip time seen on a connection with it.
    pub rtt: Option<Duration>,
    /// The latest path MTU (UDP payload bytes) of the packets this endpoint sends to it, as
    /// quinn's MTU discovery found it on a connection with it.
    pub path_mtu: Option<u16>,
    /// Packets to it that quinn declared lost on the latest connection with it (sampled after
    /// each request, like the path MTU).
    pub lost_packets: u64,
}

/// Live counters of one peer.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    sent: AtomicU64,
    received: AtomicU64,
    rtt_nanos: AtomicU64,
    mtu: AtomicU64,
    lost: AtomicU64,
}

impl Counters {
    pub(crate) fn sent(&self, n: usize) {
        self.sent.fetch_add(n as u64, Ordering::Relaxed);
    }

    pub(crate) fn received(&self, n: usize) {
        self.received.fetch_add(n as u64, Ordering::Relaxed);
    }

    pub(crate) fn rtt(&self, rtt: Duration) {
        let nanos = u64::try_from(rtt.as_nanos()).unwrap_or(u64::MAX).max(1);
        self.rtt_nanos.store(nanos, Ordering::Relaxed);
    }

    /// Samples the connection's RTT, path MTU and losses.
    pub(crate) fn sample(&self, conn: &quinn::Connection) {
        self.rtt(conn.rtt());
        let stats = conn.stats();
        self.mtu
            .store(u64::from(stats.path.current_mtu), Ordering::Relaxed);
        self.lost.store(stats.path.lost_packets, Ordering::Relaxed);
    }
}

/// Counters of every peer that passed the hello (so outsiders cannot grow it).
#[derive(Debug, Default)]
pub(crate) struct Registry(Mutex<HashMap<NodeId, Arc<Counters>>>);

impl Registry {
    /// The counters of `peer`, created on first use.
    pub(crate) fn get(&self, peer: NodeId) -> Arc<Counters> {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        map.entry(peer).or_default().clone()
    }

    /// A copy of every peer's counters, ordered by id.
    pub(crate) fn snapshot(&self) -> Vec<PeerStats> {
        let map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let mut out: Vec<PeerStats> = map
            .iter()
            .map(|(id, c)| {
                let rtt = c.rtt_nanos.load(Ordering::Relaxed);
                PeerStats {
                    id: *id,
                    bytes_sent: c.sent.load(Ordering::Relaxed),
                    bytes_received: c.received.load(Ordering::Relaxed),
                    rtt: (rtt > 0).then(|| Duration::from_nanos(rtt)),
                    path_mtu: u16::try_from(c.mtu.load(Ordering::Relaxed))
                        .ok()
                        .filter(|&m| m > 0),
                    lost_packets: c.lost.load(Ordering::Relaxed),
                }
            })
            .collect();
        out.sort_by_key(|s| s.id);
        out
    }
}
