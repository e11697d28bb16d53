//! Provider lookups in flight: which providers each has found, which of them could not be
//! reached, and when it must answer. No I/O: the swarm task feeds it events and answers what
//! [`Lookups::settle`] says is done.

use std::collections::{HashMap, HashSet};
use std::hash::Hash;
use std::time::Duration;

use libp2p::PeerId;
use tokio::sync::oneshot;
use tokio::time::Instant;

use crate::discovery::NodeInfo;

/// How long a lookup waits, after the DHT query ended, for found providers to be identified.
pub(super) const IDENTIFY_WAIT: Duration = Duration::from_secs(3);
/// Most providers one lookup keeps track of, whatever peers report.
pub(super) const MAX_FOUND: usize = 1024;

/// The lookups of one swarm, keyed by their DHT query id `Q`.
pub(super) struct Lookups<Q> {
    active: HashMap<Q, Lookup>,
}

struct Lookup {
    limit: usize,
    deadline: Instant,
    /// Providers in the order they were found (never the local node).
    found: Vec<PeerId>,
    unreachable: HashSet<PeerId>,
    kad_done: bool,
    reply: oneshot::Sender<Vec<NodeInfo>>,
}

impl<Q> Default for Lookups<Q> {
    fn default() -> Self {
        Lookups {
            active: HashMap::new(),
        }
    }
}

impl<Q: Copy + Eq + Hash> Lookups<Q> {
    /// Tracks a new lookup that answers on `reply` by `deadline` at the latest.
    pub(super) fn start(
        &mut self,
        id: Q,
        limit: usize,
        deadline: Instant,
        reply: oneshot::Sender<Vec<NodeInfo>>,
    ) {
        let lookup = Lookup {
            limit,
            deadline,
            found: Vec::new(),
            unreachable: HashSet::new(),
            kad_done: false,
            reply,
        };
        self.active.insert(id, lookup);
    }

    /// The earliest deadline of any lookup.
    pub(super) fn next_deadline(&self) -> Option<Instant> {
        self.active.values().map(|l| l.deadline).min()
    }

    /// Records providers reported to lookup `id`; returns those it had not seen yet.
    pub(super) fn found(&mut self, id: Q, peers: &[PeerId]) -> Vec<PeerId> {
        let Some(lookup) = self.active.get_mut(&id) else {
            return Vec::new();
        };
        let mut fresh = Vec::new();
        for peer in peers {
            if lookup.found.len() >= MAX_FOUND {
                break;
            }
            if !lookup.found.contains(peer) {
                lookup.found.push(*peer);
                fresh.push(*peer);
            }
        }
        fresh
    }

    /// The DHT query of lookup `id` ended: found providers get [`IDENTIFY_WAIT`] more.
    pub(super) fn kad_done(&mut self, id: Q, now: Instant) {
        if let Some(lookup) = self.active.get_mut(&id) {
            lookup.kad_done = true;
            lookup.deadline = lookup.deadline.min(now + IDENTIFY_WAIT);
        }
    }

    /// `peer` could not be reached: no lookup waits for it any more.
    pub(super) fn unreachable(&mut self, peer: PeerId) {
        for lookup in self.active.values_mut() {
            if lookup.found.contains(&peer) {
                lookup.unreachable.insert(peer);
            }
        }
    }

    /// Answers the lookups that have `limit` identified providers, have nothing left to wait
    /// for, are past their deadline, or whose caller left. Returns their ids, so that DHT
    /// queries still running can be stopped.
    pub(super) fn settle(
        &mut self,
        identified: &HashMap<PeerId, NodeInfo>,
        now: Instant,
    ) -> Vec<Q> {
        let done: Vec<Q> = self
            .active
            .iter()
            .filter(|(_, l)| l.is_done(identified, now))
            .map(|(id, _)| *id)
            .collect();
        for id in &done {
            if let Some(lookup) = self.active.remove(id) {
                let mut nodes: Vec<NodeInfo> = lookup
                    .found
                    .iter()
                    .filter_map(|p| identified.get(p).cloned())
                    .collect();
                nodes.truncate(lookup.limit);
                let _ = lookup.reply.send(nodes);
            }
        }
        done
    }
}

impl Lookup {
    fn is_done(&self, identified: &HashMap<PeerId, NodeInfo>, now: Instant) -> bool {
        let ready = self
            .found
            .iter()
            .filter(|p| identified.contains_key(p))
            .count();
        let waiting = self
            .found
            .iter()
            .any(|p| !identified.contains_key(p) && !self.unreachable.contains(p));
        ready >= self.limit
            || (self.kad_done && !waiting)
            || now >= self.deadline
            || self.reply.is_closed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::{NodeId, NodeKey, Topology};

    fn peer() -> (PeerId, NodeInfo) {
        let id: NodeId = NodeKey::generate().id();
        let peer = PeerId::from_bytes(&id.peer_id_bytes()).unwrap();
        let info = NodeInfo {
            id,
            addr: ([127, 0, 0, 1], 7000).into(),
            topology: Topology::default(),
        };
        (peer, info)
    }

    #[tokio::test]
    async fn answers_when_full() {
        let now = Instant::now();
        let mut lookups = Lookups::default();
        let (tx, mut rx) = oneshot::channel();
        lookups.start(1u32, 1, now + Duration::from_secs(10), tx);
        let (a, ia) = peer();
        let (b, _) = peer();
        assert_eq!(lookups.found(1, &[a, b, a]), vec![a, b]);
        assert!(lookups.settle(&HashMap::new(), now).is_empty());
        let identified = HashMap::from([(a, ia.clone())]);
        assert_eq!(lookups.settle(&identified, now), vec![1]);
        assert_eq!(rx.try_recv().unwrap(), vec![ia]);
        assert_eq!(lookups.next_deadline(), None);
    }

    #[tokio::test]
    async fn waits_for_identify_after_the_query_then_gives_up() {
        let now = Instant::now();
        let mut lookups = Lookups::default();
        let (tx, mut rx) = oneshot::channel();
        lookups.start(7u32, 5, now + Duration::from_secs(10), tx);
        let (a, ia) = peer();
        let (b, _) = peer();
        let (c, _) = peer();
        lookups.found(7, &[a, b, c]);
        lookups.kad_done(7, now);
        assert_eq!(lookups.next_deadline(), Some(now + IDENTIFY_WAIT));
        let identified = HashMap::from([(a, ia.clone())]);
        lookups.unreachable(b);
        assert!(
            lookups.settle(&identified, now).is_empty(),
            "still waiting for c"
        );
        assert_eq!(lookups.settle(&identified, now + IDENTIFY_WAIT), vec![7]);
        assert_eq!(rx.try_recv().unwrap(), vec![ia]);
    }

    #[tokio::test]
    async fn answers_once_everything_is_resolved() {
        let now = Instant::now();
        let mut lookups = Lookups::default();
        let (tx, mut rx) = oneshot::channel();
        lookups.start(1u32, 5, now + Duration::from_secs(10), tx);
        let (a, _) = peer();
        lookups.found(1, &[a]);
        lookups.kad_done(1, now);
        lookups.unreachable(a);
        assert_eq!(lookups.settle(&HashMap::new(), now), vec![1]);
        assert_eq!(rx.try_recv().unwrap(), vec![]);
    }

    #[tokio::test]
    async fn forgets_callers_that_left() {
        let now = Instant::now();
        let mut lookups = Lookups::default();
        let (tx, rx) = oneshot::channel();
        lookups.start(1u32, 5, now + Duration::from_secs(10), tx);
        drop(rx);
        assert_eq!(lookups.settle(&HashMap::new(), now), vec![1]);
    }

    #[tokio::test]
    async fn bounds_what_peers_can_make_it_remember() {
        let mut lookups = Lookups::default();
        let (tx, _rx) = oneshot::channel();
        lookups.start(1u32, 5, Instant::now(), tx);
        let many: Vec<PeerId> = (0..MAX_FOUND + 10).map(|_| PeerId::random()).collect();
        assert_eq!(lookups.found(1, &many).len(), MAX_FOUND);
        assert!(lookups.found(1, &[PeerId::random()]).is_empty());
    }
}
