//! The multi-peer scheduler for one blob: which chunk to ask of whom. Pure: it takes events and
//! `now`, and returns decisions; the mesh driver executes them over QUIC and HTTP, and the
//! simulator can drive it directly.
//!
//! Rules, in order, for each chunk this node lacks and is not already fetching:
//! 1. if peers that are not banned hold it (and its hash is known, so it can be verified), ask the
//!    nearest one with spare capacity: same rack, then same zone, then least busy (with our own
//!    requests), then lowest RTT (in 250 µs steps), then this node's own ranking of the peer (a
//!    hash of both ids: nodes choosing among equal peers spread over them instead of herding);
//!    consecutive chunks from one peer go in one request;
//! 2. otherwise it must come from the Hub, once for the whole cluster: the chunk's *stripe* has
//!    one owner among the nodes pulling this blob (rendezvous hashing over their ids), and only
//!    the owner fetches it from the Hub. The others wait for it to appear at the owner — unless
//!    the stripe has made no progress for its grace (the owner may be stuck, or disagree about
//!    who owns what), in which case the next node in the stripe's rendezvous order takes the
//!    rest of it from the Hub; after another grace without progress the one after it, and so on
//!    (a node that does not count as a puller comes last). So a stuck stripe is fetched again by
//!    one node per grace, not by every waiting node at once. Progress is a chunk of the stripe
//!    newly held here or by any peer; each one restarts the wait, so a slow Hub that the owner
//!    is still draining never triggers a duplicate fetch; so does a change of owner (the pullers
//!    changed: a peer left or was cut off), which gives the new owner a whole grace. The grace
//!    is `origin_grace`, or three times the longest gap seen between two progress steps of that
//!    stripe if that is longer (a Hub slower than the fixed grace per chunk). An owner that joins
//!    late leaves a stripe that peers hold part of while it holds none to whoever is fetching it
//!    (with the same grace).
//!
//! A peer that sends a chunk that fails verification is banned for this blob and everything it
//! owed is asked of others; a request that stalls past `stall_timeout` is given up (a strike) and
//! re-asked elsewhere; a peer with `max_strikes` strikes is banned. A peer that refuses a request
//! because all its upload slots are taken ([`Fault::Busy`]) is no fault of anyone's: it is left
//! alone for `busy_backoff` and its chunks go to other holders meanwhile (or wait for it, never
//! to the Hub), so a chunk only one node holds spreads from the few it serves at full speed
//! instead of reaching everyone at once at a crawl.

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::ops::Range;
use std::time::{Duration, Instant};

use crate::node::{NodeId, Topology};
use crate::store::Bitmap;

/// Tuning of the scheduler.
#[derive(Debug, Clone)]
pub struct SchedConfig {
    /// Chunks in one request to a peer.
    pub chunks_per_request: u64,
    /// Requests in flight to one peer.
    pub requests_per_peer: usize,
    /// Requests in flight to the Hub from this node for this blob.
    pub hub_requests: usize,
    /// Chunks per stripe: the unit of Hub ownership and the largest Hub request.
    pub stripe_chunks: u64,
    /// How long a stripe may make no progress at its owner before we fetch it from the Hub
    /// ourselves (stretched to 3 × the longest gap seen between its chunks).
    pub origin_grace: Duration,
    /// A peer request older than this is given up and re-asked elsewhere.
    pub stall_timeout: Duration,
    /// Strikes (stalls, failed requests) before a peer is banned.
    pub max_strikes: u32,
    /// How long a peer that answered "busy" is not asked again.
    pub busy_backoff: Duration,
}

impl Default for SchedConfig {
    /// 4 chunks (16 MiB) per peer request, 4 in flight per peer, 2 Hub requests, 4-chunk stripes,
    /// 20 s origin grace, 10 s stall timeout, 3 strikes, 50 ms busy backoff.
    fn default() -> Self {
        SchedConfig {
            chunks_per_request: 4,
            requests_per_peer: 4,
            hub_requests: 2,
            stripe_chunks: 4,
            origin_grace: Duration::from_secs(20),
            stall_timeout: Duration::from_secs(10),
            max_strikes: 3,
            busy_backoff: Duration::from_millis(50),
        }
    }
}

/// Where a request goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Source {
    /// A peer, by id.
    Peer(NodeId),
    /// The Hub (HTTP Range).
    Hub,
}

/// A request the driver should make: chunks `chunks` of the blob from `source`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// Where to ask.
    pub source: Source,
    /// Which chunks (consecutive).
    pub chunks: Range<u64>,
}

/// How a request went wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// A chunk failed verification: the peer is banned.
    BadChunk,
    /// The peer said it does not have the chunk after all: it is asked again later.
    Missing,
    /// The connection or request failed, or stalled: a strike.
    Failed,
    /// The peer refused the request: all its upload slots are taken. No strike; it is left
    /// alone for `busy_backoff`.
    Busy,
}

/// How near a peer is, from the topology labels: lower is nearer.
pub fn proximity(me: &Topology, them: &Topology) -> u8 {
    let same = |a: &Option<String>, b: &Option<String>| a.is_some() && a == b;
    match (same(&me.zone, &them.zone), same(&me.rack, &them.rack)) {
        (true, true) => 0,
        (true, false) => 1,
        _ => 2,
    }
}

#[derive(Debug, Clone)]
struct PeerView {
    have: Bitmap,
    proximity: u8,
    rtt: Duration,
    /// This node's own ranking of the peer among equals (a hash of both ids), so that nodes
    /// choosing among equally near, equally fast peers spread over them instead of all picking
    /// the same one.
    rank: u64,
    inflight: usize,
    strikes: u32,
    banned: bool,
    /// Not asked before this moment: it answered "busy".
    busy_until: Option<Instant>,
}

/// A stripe whose chunks we wait for at its owner.
#[derive(Debug, Clone)]
struct StripeWait {
    /// When the wait began, the stripe last made progress, or its owner changed.
    since: Instant,
    /// The owner waited for: another owner (the pullers changed) starts the wait again.
    owner: NodeId,
    /// This node's turn to take the stripe over: after `turn` graces without progress.
    turn: u32,
    /// Chunks of the stripe held here or by a peer at `since`.
    held: u64,
    /// Longest time between two progress steps seen so far.
    gap: Duration,
}

#[derive(Debug, Clone)]
struct InFlight {
    source: Source,
    since: Instant,
    /// The request it belongs to (a key of `Scheduler::requests`).
    request: u64,
}

/// Scheduling state of one blob on this node.
#[derive(Debug)]
pub struct Scheduler {
    cfg: SchedConfig,
    me: NodeId,
    key: [u8; 32],
    local: Bitmap,
    verifiable: Bitmap,
    hub_allowed: bool,
    /// Ordered maps throughout: iteration order (ties between equal peers) is deterministic.
    peers: BTreeMap<NodeId, PeerView>,
    /// Per chunk, how many peers that are not banned hold it.
    holders: Vec<u32>,
    pullers: Vec<NodeId>,
    /// Owner of each stripe under the current pullers and this node's turn to take it over (0
    /// if it is the owner), filled as stripes are asked about.
    owners: Vec<Option<(NodeId, u32)>>,
    inflight: BTreeMap<u64, InFlight>,
    /// Requests with chunks still in flight: each one's source and chunks left.
    requests: BTreeMap<u64, (Source, u64)>,
    next_request: u64,
    hub_inflight: usize,
    waiting: BTreeMap<u64, StripeWait>,
    /// This node's own starting stripe for its scans (a hash of its id and the blob).
    scan_from: u64,
    /// The `now` of the latest plan: the clock of events that come without one.
    last_now: Option<Instant>,
}

impl Scheduler {
    /// A scheduler for a blob of `chunks` chunks, identified by `key` (its etag's bytes, for the
    /// rendezvous hash), of which `local` are already here.
    pub fn new(cfg: SchedConfig, me: NodeId, key: &[u8], local: Bitmap) -> Scheduler {
        let n = local.len();
        Scheduler {
            cfg,
            me,
            key: *blake3::hash(key).as_bytes(),
            verifiable: Bitmap::empty(n),
            local,
            hub_allowed: true,
            peers: BTreeMap::new(),
            holders: vec![0; n as usize],
            pullers: vec![me],
            owners: Vec::new(),
            inflight: BTreeMap::new(),
            requests: BTreeMap::new(),
            next_request: 0,
            hub_inflight: 0,
            waiting: BTreeMap::new(),
            scan_from: rank(&me, &NodeId(*blake3::hash(key).as_bytes())),
            last_now: None,
        }
    }

    /// Whether every chunk is here.
    pub fn is_done(&self) -> bool {
        self.local.is_full()
    }

    /// Chunks here.
    pub fn local(&self) -> &Bitmap {
        &self.local
    }

    /// Whether the Hub may be used (false when it is down or the blob is unknown to it).
    pub fn set_hub_allowed(&mut self, allowed: bool) {
        self.hub_allowed = allowed;
    }

    /// Whether chunks may be fetched from the Hub yet.
    pub fn hub_allowed(&self) -> bool {
        self.hub_allowed
    }

    /// Marks chunks whose hash is known, so that they can be verified when a peer sends them.
    pub fn set_verifiable(&mut self, index: u64) {
        self.verifiable.set(index);
    }

    /// Adds or refreshes a peer: what it holds, how near it is, its RTT.
    pub fn update_peer(&mut self, id: NodeId, have: Bitmap, proximity: u8, rtt: Duration) {
        if id == self.me || have.len() != self.local.len() {
            return;
        }
        let me = self.me;
        let view = self.peers.entry(id).or_insert_with(|| PeerView {
            have: Bitmap::empty(have.len()),
            proximity,
            rtt,
            rank: rank(&me, &id),
            inflight: 0,
            strikes: 0,
            banned: false,
            busy_until: None,
        });
        if !view.banned {
            count_changes(&mut self.holders, &view.have, &have);
        }
        view.have = have;
        view.proximity = proximity;
        view.rtt = rtt;
    }

    /// Forgets a peer (it left). Requests already running to it are left to finish, fail or
    /// stall on their own, so no chunk is fetched twice while it may still arrive.
    pub fn remove_peer(&mut self, id: &NodeId) {
        if let Some(p) = self.peers.remove(id) {
            if !p.banned {
                count_changes(&mut self.holders, &p.have, &Bitmap::empty(p.have.len()));
            }
        }
        if self.pullers.contains(id) {
            let others = self.pullers.iter().filter(|p| *p != id && **p != self.me);
            let others: Vec<NodeId> = others.copied().collect();
            let counted = self.pullers.contains(&self.me);
            self.set_pullers(others, counted);
        }
    }

    /// The peers banned for this blob.
    pub fn banned_peers(&self) -> Vec<NodeId> {
        self.peers
            .iter()
            .filter(|(_, p)| p.banned)
            .map(|(id, _)| *id)
            .collect()
    }

    /// Whether a peer is banned.
    pub fn is_banned(&self, id: &NodeId) -> bool {
        self.peers.get(id).is_some_and(|p| p.banned)
    }

    /// The other nodes pulling this blob from the Hub together, and whether this node counts as
    /// one of them (owns stripes). It should count when the others know it is pulling (they asked
    /// it lately); a node they cannot see (say, one the DHT keeps no provider record of) would
    /// otherwise fetch the stripes it believes are its own while their real owners fetch them
    /// too. With no other puller, this node owns everything whatever `counted` says.
    pub fn set_pullers(&mut self, mut others: Vec<NodeId>, counted: bool) {
        others.retain(|p| *p != self.me);
        if counted || others.is_empty() {
            others.push(self.me);
        }
        others.sort();
        others.dedup();
        if others != self.pullers {
            self.pullers = others;
            self.owners.clear();
        }
    }

    /// How many nodes pull this blob together and own stripes (this one included if it counts).
    pub fn pullers(&self) -> usize {
        self.pullers.len()
    }

    /// The owner of `stripe` and this node's turn to take it over when it makes no progress:
    /// its place in the stripe's rendezvous order (0 for the owner, 1 for the next, ...; the
    /// number of pullers if this node is not one). Cached until the pullers change.
    fn owner_and_turn(&mut self, stripe: u64) -> (NodeId, u32) {
        if self.owners.is_empty() {
            let stripes = self.local.len().div_ceil(self.stripe_len());
            self.owners = vec![None; stripes as usize];
        }
        if let Some(o) = self.owners[stripe as usize] {
            return o;
        }
        let scored = |id: &NodeId| score(&[&self.key, &id.0, &stripe.to_le_bytes()]);
        let owner = self.stripe_owner(stripe * self.stripe_len());
        let turn = match self.pullers.contains(&self.me) {
            true => {
                let mine = scored(&self.me);
                self.pullers.iter().filter(|p| scored(p) > mine).count()
            }
            false => self.pullers.len(),
        };
        let o = (owner, turn as u32);
        self.owners[stripe as usize] = Some(o);
        o
    }

    /// The owner of `chunk`'s stripe: the puller with the highest rendezvous score.
    pub fn stripe_owner(&self, chunk: u64) -> NodeId {
        let stripe = chunk / self.stripe_len();
        *self
            .pullers
            .iter()
            .max_by_key(|id| score(&[&self.key, &id.0, &stripe.to_le_bytes()]))
            .expect("pullers is never empty")
    }

    /// Chunks per stripe (at least one).
    fn stripe_len(&self) -> u64 {
        self.cfg.stripe_chunks.max(1)
    }

    /// The chunks of `stripe`.
    fn stripe_range(&self, stripe: u64) -> Range<u64> {
        let k = self.stripe_len();
        stripe * k..((stripe + 1) * k).min(self.local.len())
    }

    /// A chunk arrived and was verified and written.
    pub fn completed(&mut self, chunk: u64, from: Source) {
        self.local.set(chunk);
        self.verifiable.set(chunk);
        if let Some(f) = self.inflight.remove(&chunk) {
            self.release(&f);
        }
        if let Source::Peer(id) = from {
            if let Some(p) = self.peers.get_mut(&id) {
                p.strikes = 0;
            }
        }
    }

    /// A request for `chunks` from `from` went wrong; the chunks not yet here are asked again.
    /// One call is one fault: at most one strike, whatever the number of chunks.
    pub fn failed(&mut self, chunks: Range<u64>, from: Source, fault: Fault) {
        self.fail_chunks(&chunks.collect::<Vec<_>>(), from, fault);
    }

    fn fail_chunks(&mut self, chunks: &[u64], from: Source, fault: Fault) {
        for &c in chunks {
            if self.inflight.get(&c).is_some_and(|f| f.source == from) {
                if let Some(f) = self.inflight.remove(&c) {
                    self.release(&f);
                }
            }
            if fault == Fault::Missing {
                if let Source::Peer(id) = from {
                    if let Some(p) = self.peers.get_mut(&id) {
                        if p.have.get(c) && !p.banned {
                            self.holders[c as usize] -= 1;
                        }
                        p.have = without(&p.have, c);
                    }
                }
            }
        }
        if let Source::Peer(id) = from {
            let max = self.cfg.max_strikes;
            if let Some(p) = self.peers.get_mut(&id) {
                let was_banned = p.banned;
                match fault {
                    Fault::BadChunk => p.banned = true,
                    Fault::Failed => {
                        p.strikes += 1;
                        p.banned |= p.strikes >= max;
                    }
                    // Counted from the latest plan (the request went out at or after it).
                    Fault::Busy => p.busy_until = self.last_now.map(|t| t + self.cfg.busy_backoff),
                    Fault::Missing => {}
                }
                if p.banned && !was_banned {
                    count_changes(&mut self.holders, &p.have, &Bitmap::empty(p.have.len()));
                }
            }
            if self.is_banned(&id) {
                self.drop_inflight(|s| s == Source::Peer(id));
            }
        }
    }

    /// Gives up requests older than the stall timeout (a strike for their peer) and returns them.
    pub fn expire_stalled(&mut self, now: Instant) -> Vec<(u64, Source)> {
        let stalled: Vec<(u64, Source)> = self
            .inflight
            .iter()
            .filter(|(_, f)| {
                matches!(f.source, Source::Peer(_))
                    && now.duration_since(f.since) >= self.cfg.stall_timeout
            })
            .map(|(c, f)| (*c, f.source))
            .collect();
        let mut by_source: BTreeMap<Source, Vec<u64>> = BTreeMap::new();
        for (c, source) in &stalled {
            by_source.entry(*source).or_default().push(*c);
        }
        for (source, chunks) in by_source {
            self.fail_chunks(&chunks, source, Fault::Failed);
        }
        stalled
    }

    /// The earliest moment something may change without an event: a stall to expire, an
    /// origin grace to run out or a busy peer's backoff to end.
    pub fn next_deadline(&self) -> Option<Instant> {
        let stall = self
            .inflight
            .values()
            .filter(|f| matches!(f.source, Source::Peer(_)))
            .map(|f| f.since + self.cfg.stall_timeout);
        let grace = self.waiting.values().map(|w| w.since + self.turn_wait(w));
        let busy = self.peers.values().filter_map(|p| p.busy_until);
        stall.chain(grace).chain(busy).min()
    }

    /// Decides the next requests and records them as in flight.
    pub fn plan(&mut self, now: Instant) -> Vec<Request> {
        self.last_now = Some(now);
        for p in self.peers.values_mut() {
            if p.busy_until.is_some_and(|t| t <= now) {
                p.busy_until = None;
            }
        }
        let mut out = Vec::new();
        let n = self.local.len();
        let stripe_chunks = self.stripe_len();
        // Each node pulling along with others scans from its own stripe onwards and wraps
        // around, so that nodes following the same peers ask them for different chunks first,
        // then trade those among themselves. A node pulling alone scans in order: chunks then
        // arrive about in order, and the etag hash takes them as they come instead of reading
        // them back from the disk (see `store::partial`).
        let alone = self.pullers.iter().all(|p| *p == self.me);
        let start = if alone {
            0
        } else {
            (self.scan_from % n.div_ceil(stripe_chunks).max(1)) * stripe_chunks
        };
        // Stripes still waiting for their owner after this plan; the others stop waiting.
        let mut still_waiting: Vec<u64> = Vec::new();
        for (from, to) in [(start, n), (0, start.min(n))] {
            let mut c = from;
            while c < to {
                c = self.plan_at(c, to, now, &mut still_waiting, &mut out);
            }
        }
        still_waiting.sort_unstable();
        still_waiting.dedup();
        self.waiting
            .retain(|s, _| still_waiting.binary_search(s).is_ok());
        out
    }

    /// Plans chunk `c` (and the chunks after it up to `to` that go in the same request); returns
    /// the next chunk to look at.
    fn plan_at(
        &mut self,
        c: u64,
        to: u64,
        now: Instant,
        still_waiting: &mut Vec<u64>,
        out: &mut Vec<Request>,
    ) -> u64 {
        if self.local.get(c) || self.inflight.contains_key(&c) {
            return c + 1;
        }
        if let Some(peer) = self.best_peer(c) {
            let max = self.cfg.chunks_per_request.min(to - c);
            let end = self.run_end(c, max, |s, i| s.peer_can_serve(&peer, i));
            self.start(c..end, Source::Peer(peer), now, out);
            return end;
        }
        if self.any_peer_holds(c) {
            // Held by peers that are busy: wait for them rather than go to the Hub.
            return c + 1;
        }
        if !self.hub_allowed || self.hub_inflight >= self.cfg.hub_requests {
            return c + 1;
        }
        let stripe = c / self.stripe_len();
        if still_waiting.last() == Some(&stripe) {
            // Another chunk of a stripe this plan already found waiting.
            return c + 1;
        }
        let (owner, turn) = self.owner_and_turn(stripe);
        let mine = (owner == self.me && !self.under_way_elsewhere(stripe)) || {
            let held = self.stripe_held(stripe);
            let w = self.waiting.entry(stripe).or_insert(StripeWait {
                since: now,
                owner,
                turn,
                held,
                gap: Duration::ZERO,
            });
            if held > w.held {
                w.gap = w.gap.max(now.duration_since(w.since));
                w.since = now;
                w.held = held;
            }
            if w.owner != owner {
                // The pullers changed: the new owner gets a whole grace of its own.
                w.since = now;
                w.owner = owner;
            }
            w.turn = turn.max(1);
            let w = w.clone();
            now.duration_since(w.since) >= self.turn_wait(&w)
        };
        if !mine {
            still_waiting.push(stripe);
            return c + 1;
        }
        let stripe_end = self.stripe_range(stripe).end.min(to);
        let end = self.run_end(c, stripe_end - c, |s, i| !s.any_peer_holds(i));
        self.start(c..end, Source::Hub, now, out);
        end
    }

    /// Whether peers hold chunks of `stripe` while this node holds none: another node is
    /// already fetching it from the Hub (it owned the stripe before this node joined, say), so
    /// it is left to them for as long as it makes progress.
    fn under_way_elsewhere(&self, stripe: u64) -> bool {
        let chunks = self.stripe_range(stripe);
        chunks.clone().all(|i| !self.local.get(i))
            && chunks.into_iter().any(|i| self.holders[i as usize] > 0)
    }

    /// How long stripe wait `w` may go without progress.
    fn grace(&self, w: &StripeWait) -> Duration {
        self.cfg.origin_grace.max(w.gap.saturating_mul(3))
    }

    /// How long this node waits for stripe wait `w` before taking the stripe over: a grace per
    /// node ahead of it in the stripe's order, so that the owner's successor takes over a stuck
    /// stripe alone, and the next one only if the successor makes no progress either, instead
    /// of every waiting node at once.
    fn turn_wait(&self, w: &StripeWait) -> Duration {
        self.grace(w).saturating_mul(w.turn)
    }

    /// Chunks of `stripe` that are here or that a peer can serve.
    fn stripe_held(&self, stripe: u64) -> u64 {
        self.stripe_range(stripe)
            .filter(|&i| self.local.get(i) || self.any_peer_holds(i))
            .count() as u64
    }

    fn start(&mut self, chunks: Range<u64>, source: Source, now: Instant, out: &mut Vec<Request>) {
        let request = self.next_request;
        self.next_request += 1;
        self.requests
            .insert(request, (source, chunks.end - chunks.start));
        for i in chunks.clone() {
            let f = InFlight {
                source,
                since: now,
                request,
            };
            self.inflight.insert(i, f);
        }
        match source {
            Source::Hub => self.hub_inflight += 1,
            Source::Peer(id) => {
                if let Some(p) = self.peers.get_mut(&id) {
                    p.inflight += 1;
                }
            }
        }
        out.push(Request { source, chunks });
    }

    /// End of the run of chunks from `start` (at most `max`) that are missing, not in flight,
    /// and satisfy `ok`.
    fn run_end(&self, start: u64, max: u64, ok: impl Fn(&Self, u64) -> bool) -> u64 {
        let mut end = start + 1;
        while end < (start + max).min(self.local.len())
            && !self.local.get(end)
            && !self.inflight.contains_key(&end)
            && ok(self, end)
        {
            end += 1;
        }
        end
    }

    fn peer_can_serve(&self, id: &NodeId, chunk: u64) -> bool {
        self.verifiable.get(chunk)
            && self
                .peers
                .get(id)
                .is_some_and(|p| !p.banned && p.have.get(chunk))
    }

    fn any_peer_holds(&self, chunk: u64) -> bool {
        self.verifiable.get(chunk) && self.holders[chunk as usize] > 0
    }

    fn best_peer(&self, chunk: u64) -> Option<NodeId> {
        if !self.any_peer_holds(chunk) {
            return None;
        }
        self.peers
            .iter()
            .filter(|(_, p)| {
                p.inflight < self.cfg.requests_per_peer
                    && !p.banned
                    && p.busy_until.is_none()
                    && p.have.get(chunk)
            })
            .min_by_key(|(id, p)| {
                // RTTs within one bucket are equal: measurement noise must not herd everyone
                // onto one peer.
                let rtt = p.rtt.as_micros() / RTT_BUCKET.as_micros();
                (p.proximity, p.inflight, rtt, p.rank, **id)
            })
            .map(|(id, _)| *id)
    }

    /// Chunk `f` left the flight. One request can cover several chunks: its slot at its source
    /// is freed when its last chunk leaves.
    fn release(&mut self, f: &InFlight) {
        let Some((source, left)) = self.requests.get_mut(&f.request) else {
            return;
        };
        *left -= 1;
        if *left > 0 {
            return;
        }
        let source = *source;
        self.requests.remove(&f.request);
        match source {
            Source::Hub => self.hub_inflight = self.hub_inflight.saturating_sub(1),
            Source::Peer(id) => {
                if let Some(p) = self.peers.get_mut(&id) {
                    p.inflight = p.inflight.saturating_sub(1);
                }
            }
        }
    }

    fn drop_inflight(&mut self, matches: impl Fn(Source) -> bool) {
        let gone: Vec<u64> = self
            .inflight
            .iter()
            .filter(|(_, f)| matches(f.source))
            .map(|(c, _)| *c)
            .collect();
        for c in gone {
            if let Some(f) = self.inflight.remove(&c) {
                self.release(&f);
            }
        }
    }
}

#[cfg(test)]
impl Scheduler {
    /// Checks the per-chunk holder counts against the peers' bitmaps.
    fn assert_holders_counted(&self) {
        for c in 0..self.local.len() {
            let held = self
                .peers
                .values()
                .filter(|p| !p.banned && p.have.get(c))
                .count() as u32;
            assert_eq!(self.holders[c as usize], held, "holders of chunk {c}");
        }
    }
}

/// RTTs are compared in steps of this much.
const RTT_BUCKET: Duration = Duration::from_micros(250);

/// `me`'s rank of `peer` among equals: nodes rank the same peers differently.
fn rank(me: &NodeId, peer: &NodeId) -> u64 {
    score(&[&me.0, &peer.0])
}

/// A 64-bit score from the BLAKE3 hash of `parts` (rendezvous hashing and rankings).
fn score(parts: &[&[u8]]) -> u64 {
    let mut h = blake3::Hasher::new();
    parts.iter().for_each(|p| {
        h.update(p);
    });
    u64::from_le_bytes(h.finalize().as_bytes()[..8].try_into().expect("8 bytes"))
}

/// Adds to `holders` the chunks `new` holds and `old` does not, and takes away the reverse.
fn count_changes(holders: &mut [u32], old: &Bitmap, new: &Bitmap) {
    for (byte, (o, n)) in old.bits().iter().zip(new.bits()).enumerate() {
        if o == n {
            continue;
        }
        let (gained, lost) = (n & !o, o & !n);
        // A peer's bitmap may carry bits past the last chunk: they count for nothing.
        for bit in 0..8.min(holders.len().saturating_sub(byte * 8)) {
            let c = byte * 8 + bit;
            if gained & (1 << bit) != 0 {
                holders[c] += 1;
            }
            if lost & (1 << bit) != 0 {
                holders[c] -= 1;
            }
        }
    }
}

fn without(b: &Bitmap, chunk: u64) -> Bitmap {
    let mut out = Bitmap::empty(b.len());
    (0..b.len())
        .filter(|&i| i != chunk && b.get(i))
        .for_each(|i| out.set(i));
    out
}
