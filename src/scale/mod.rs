//! The scale model: a time-stepped fluid simulation of a cluster pulling one model, for sizes no
//! machine here can run as real processes (1,000–10,000 hosts, models of 100+ GB).
//!
//! What is real and what is modelled:
//! - **Real:** every host runs the mesh's own [`Scheduler`] per blob, fed the way the mesh driver
//!   feeds it (`update_peer` with each provider's bitmap every refresh, `set_pullers` with the
//!   providers still pulling, `plan`, `completed`, `failed`, `expire_stalled`), on a virtual clock.
//!   A host serves at most `upload_slots` requests at once and refuses more as busy, as the
//!   transfer server does.
//! - **Modelled:** the DHT's provider records, as libp2p Kademlia's record store keeps them: each
//!   key keeps the first `providers_per_key` providers that announced it (libp2p's default is 20),
//!   and a lookup answers at most `max_providers` of them. Links are fluid: every flow gets the
//!   smallest of its fair shares of the sender's uplink, the receiver's downlink and, for Hub
//!   flows, the Hub's capacity, recomputed every tick. RTT and protocol overheads are ignored.
//!   Peer exchange as the mesh does it (`peer_exchange`, [`crate::wire::MAX_PEER_HINTS`]): each
//!   answer also names up to that many of the answerer's other recent askers, the most recent
//!   first, and the asker keeps them in its view as sources (never as stripe owners).
//!
//! The same model runs with the mesh off (every host from the Hub alone) and with one host, so a
//! report carries its own baselines.

/// `hfmesh scale-model`.
pub mod cli;
/// Scenario parameters and the report.
pub mod params;

use std::collections::HashMap;
use std::time::{Duration, Instant};

pub use params::{Arrival, ScaleComparison, ScaleParams, ScaleReport};

use crate::mesh::pace::{LookupPace, MAX_LOOKUP_EVERY};
use crate::mesh::pull::{exchange_room, pullers_settled, MAX_GATHER_WINDOWS};
use crate::node::{NodeId, NodeKey, Topology};
use crate::scheduler::{proximity, Fault, Request, Scheduler, Source};
use crate::store::Bitmap;

/// Recent askers a host remembers per blob (for peer exchange), as the mesh's store.
const MAX_ASKERS: usize = crate::mesh::local::MAX_ASKERS_PER_BLOB;

/// One transfer in flight: chunks `next..end` of blob `blob` from `source` to host `dst`.
struct Flow {
    dst: usize,
    blob: usize,
    source: Source,
    src_host: Option<usize>,
    next: u64,
    end: u64,
    /// Bytes delivered of chunk `next`.
    partial: f64,
}

struct Host {
    id: NodeId,
    topology: Topology,
    arrival: f64,
    started: bool,
    alive: bool,
    ready_at: Option<f64>,
    scheds: Vec<Scheduler>,
    /// Blobs begun, in order: `0..begun` (at most `max_blobs` of them unfinished at once).
    begun: usize,
    /// Per blob: when it was begun, and when its pullers last changed.
    begun_at: Vec<f64>,
    pullers_changed: Vec<f64>,
    /// Per blob, the pullers the last refresh found.
    last_pullers: Vec<Vec<NodeId>>,
    /// Per blob, a counter bumped whenever a chunk arrives here.
    versions: Vec<u64>,
    /// Per blob, the version of each peer in view (by host index) that this host's scheduler
    /// last saw: an unchanged peer is not copied again.
    seen: Vec<Vec<(usize, u64)>>,
    /// Per blob, peers learned from other peers' answers (`peer_exchange`), beyond the DHT's.
    learned: Vec<Vec<usize>>,
    /// Per blob, the hosts that asked this one, most recent first (at most `MAX_ASKERS`; the mesh
    /// also forgets askers after a minute, which a pull of this model never reaches per file).
    /// With each: when it last asked, and whether it found this one in the DHT's list.
    askers: Vec<Vec<(usize, f64, bool)>>,
    /// Per blob, when the DHT is asked for its providers again, and whom it named last.
    pace: Vec<LookupPace<f64, f64, usize>>,
    found: Vec<Vec<usize>>,
    next_refresh: f64,
    /// When its schedulers must plan again (an event, or their next deadline).
    wake_at: f64,
    served: f64,
}

impl Host {
    /// Whether a host that found this one in the DHT's list asked about blob `b` since `since`,
    /// but the last lookup did not find it (as the mesh's `LookupPace::unseen`).
    fn unseen_askers(&self, b: usize, since: f64, full: usize) -> bool {
        let askers = self.askers[b].iter().filter(|(_, t, l)| *l && *t >= since);
        self.pace[b].unseen(askers.map(|(a, _, _)| a), full)
    }
}

/// Runs the model; `mesh: false` gives every host the Hub alone.
pub fn run(p: &ScaleParams, mesh: bool) -> ScaleReport {
    let mut sim = Sim::new(p, mesh);
    sim.play();
    sim.report()
}

struct Sim<'a> {
    p: &'a ScaleParams,
    mesh: bool,
    base: Instant,
    t: f64,
    hosts: Vec<Host>,
    index: HashMap<NodeId, usize>,
    /// Per blob: the providers the DHT keeps, in announcement order.
    providers: Vec<Vec<usize>>,
    flows: Vec<Flow>,
    chunks: Vec<u64>,
    sizes: Vec<u64>,
    hub_bytes: f64,
    hub_requests: u64,
    hub_timeline: Vec<(f64, f64)>,
    refreshes: u64,
    dht_lookups: u64,
}

impl<'a> Sim<'a> {
    fn new(p: &'a ScaleParams, mesh: bool) -> Sim<'a> {
        let arrivals = p.arrival_times();
        let hosts = (0..p.hosts)
            .map(|i| {
                let mut secret = [0u8; 32];
                secret[..8].copy_from_slice(&(i as u64).to_le_bytes());
                secret[8] = 0x5c;
                let zone = i % p.zones.max(1);
                let rack = (i / p.zones.max(1)) % p.racks_per_zone.max(1);
                Host {
                    id: NodeKey::from_secret(secret).id(),
                    topology: Topology {
                        zone: Some(format!("z{zone}")),
                        rack: Some(format!("z{zone}-r{rack}")),
                    },
                    arrival: arrivals[i],
                    started: false,
                    alive: true,
                    ready_at: None,
                    scheds: Vec::new(),
                    begun: 0,
                    begun_at: vec![0.0; p.files],
                    pullers_changed: vec![0.0; p.files],
                    last_pullers: vec![Vec::new(); p.files],
                    versions: vec![0; p.files],
                    seen: vec![Vec::new(); p.files],
                    learned: vec![Vec::new(); p.files],
                    askers: vec![Vec::new(); p.files],
                    pace: vec![LookupPace::new(p.refresh_secs); p.files],
                    found: vec![Vec::new(); p.files],
                    next_refresh: 0.0,
                    wake_at: 0.0,
                    served: 0.0,
                }
            })
            .collect::<Vec<_>>();
        let index = hosts.iter().enumerate().map(|(i, h)| (h.id, i)).collect();
        let sizes = p.file_sizes();
        let chunks = sizes.iter().map(|s| s.div_ceil(p.chunk_bytes)).collect();
        Sim {
            p,
            mesh,
            base: Instant::now(),
            t: 0.0,
            hosts,
            index,
            providers: vec![Vec::new(); p.files],
            flows: Vec::new(),
            chunks,
            sizes,
            hub_bytes: 0.0,
            hub_requests: 0,
            hub_timeline: Vec::new(),
            refreshes: 0,
            dht_lookups: 0,
        }
    }

    fn now(&self) -> Instant {
        self.base + Duration::from_secs_f64(self.t)
    }

    fn play(&mut self) {
        // At most ~4,000 steps over the time the Hub alone would need for everything asked of
        // it: fine steps for a storm the mesh serves, coarse ones for a long Hub-only baseline.
        let hub_work = if self.mesh { 1.0 } else { self.p.hosts as f64 };
        let estimate = hub_work * self.p.model_bytes as f64 / self.p.hub_bytes_per_sec;
        let tick = self.p.tick_secs.max(estimate / 4000.0);
        let mut next_sample = 0.0;
        while self.t < self.p.time_limit_secs && !self.all_done() {
            self.start_arrivals();
            self.apply_failures();
            self.refresh_views();
            self.plan_requests();
            self.advance(tick);
            self.t += tick;
            if self.t >= next_sample {
                self.hub_timeline.push((self.t, self.hub_bytes));
                next_sample += self.p.sample_secs;
            }
        }
        self.hub_timeline.push((self.t, self.hub_bytes));
    }

    fn all_done(&self) -> bool {
        self.hosts.iter().all(|h| !h.alive || h.ready_at.is_some())
    }

    fn start_arrivals(&mut self) {
        for i in 0..self.hosts.len() {
            let h = &self.hosts[i];
            if h.started || !h.alive || h.arrival > self.t {
                continue;
            }
            let scheds = self
                .chunks
                .iter()
                .enumerate()
                .map(|(b, &n)| {
                    let key = (b as u64).to_le_bytes();
                    let cfg = self.p.sched_config();
                    let mut s = Scheduler::new(cfg, h.id, &key, Bitmap::empty(n));
                    // The manifest (every chunk's hash) comes with the snapshot's first peer.
                    (0..n).for_each(|c| s.set_verifiable(c));
                    s
                })
                .collect();
            let h = &mut self.hosts[i];
            h.scheds = scheds;
            h.started = true;
            h.next_refresh = self.t;
            h.wake_at = self.t;
        }
        for i in 0..self.hosts.len() {
            self.begin_blobs(i);
        }
    }

    /// Begins host `i`'s next blobs while fewer than `max_blobs` are unfinished, as the mesh
    /// does (files in order, a few at a time).
    fn begin_blobs(&mut self, i: usize) {
        let h = &self.hosts[i];
        if !h.started || !h.alive {
            return;
        }
        let mut unfinished = (0..h.begun).filter(|&b| !h.scheds[b].is_done()).count();
        while unfinished < self.p.max_blobs && self.hosts[i].begun < self.p.files {
            let b = self.hosts[i].begun;
            self.hosts[i].begun += 1;
            self.hosts[i].begun_at[b] = self.t;
            self.hosts[i].pullers_changed[b] = self.t;
            // The mesh's first Hub request of a blob waits for the pullers to settle.
            self.hosts[i].scheds[b].set_hub_allowed(!self.mesh);
            self.hosts[i].wake_at = self.t;
            self.hosts[i].next_refresh = self.t;
            // A blob is announced as soon as it starts arriving (partial blobs are served).
            if self.mesh && self.providers[b].len() < self.p.providers_per_key {
                self.providers[b].push(i);
            }
            if !self.hosts[i].scheds[b].is_done() {
                unfinished += 1;
            }
        }
    }

    fn apply_failures(&mut self) {
        let Some(f) = &self.p.failure else { return };
        if self.t < f.at_secs || self.hosts.iter().any(|h| !h.alive) {
            return;
        }
        let dead: Vec<usize> = (0..self.hosts.len())
            .filter(|&i| self.hosts[i].topology.rack.as_deref() == Some(f.rack.as_str()))
            .collect();
        for &d in &dead {
            self.hosts[d].alive = false;
        }
        for list in &mut self.providers {
            list.retain(|i| !dead.contains(i));
        }
        // Transfers from the dead fail at their receivers; transfers to them vanish.
        let flows = std::mem::take(&mut self.flows);
        for f in flows {
            if !self.hosts[f.dst].alive {
                continue;
            }
            match f.src_host {
                Some(s) if !self.hosts[s].alive => {
                    self.hosts[f.dst].scheds[f.blob].failed(f.next..f.end, f.source, Fault::Failed);
                    self.hosts[f.dst].wake_at = self.t;
                }
                _ => self.flows.push(f),
            }
        }
    }

    fn refresh_views(&mut self) {
        if !self.mesh {
            return;
        }
        for i in 0..self.hosts.len() {
            let h = &self.hosts[i];
            if !h.started || !h.alive || h.ready_at.is_some() || h.next_refresh > self.t {
                continue;
            }
            for b in 0..self.hosts[i].begun {
                if self.hosts[i].scheds[b].is_done() {
                    continue;
                }
                // As the mesh: learned peers only once the DHT's list is full (a listed host
                // finds one fewer than the list holds, as `MeshConfig::exchange_after`).
                let exchange_after = self.p.providers_per_key.saturating_sub(1);
                // Asked: the providers a lookup finds (or the last one found, by the mesh's
                // pace), then the peers learned from answers.
                let h = &self.hosts[i];
                let unseen = h.pace[b]
                    .last()
                    .is_some_and(|since| h.unseen_askers(b, since, exchange_after));
                self.refreshes += 1;
                if h.pace[b].due(self.t, h.scheds[b].hub_allowed(), unseen) {
                    self.dht_lookups += 1;
                    let found: Vec<usize> = self.providers[b]
                        .iter()
                        .copied()
                        .filter(|&j| j != i)
                        .take(self.p.max_providers)
                        .collect();
                    let (refresh, max) = (self.p.refresh_secs, MAX_LOOKUP_EVERY.as_secs_f64());
                    self.hosts[i].pace[b].found(self.t, found.clone(), refresh, max);
                    self.hosts[i].found[b] = found;
                }
                let found = self.hosts[i].found[b].clone();
                let room = exchange_room(found.len(), exchange_after, self.p.max_providers);
                let learned = self.hosts[i].learned[b].iter().copied();
                let extra: Vec<usize> = learned.filter(|j| !found.contains(j)).take(room).collect();
                let view: Vec<usize> = found.iter().copied().chain(extra).collect();
                let mut pullers = Vec::new();
                for &j in &view {
                    if !self.hosts[j].alive {
                        continue; // no answer
                    }
                    self.ask(i, j, b, found.contains(&j));
                    // Only the DHT's providers, the same for everyone, own stripes.
                    if found.contains(&j) && !self.hosts[j].scheds[b].is_done() {
                        pullers.push(self.hosts[j].id);
                    }
                }
                // It counts as a puller when the others ask it, i.e. the DHT keeps its record.
                let counted = self.providers[b].contains(&i);
                // The Hub opens by the mesh's own rule; this refresh, begun and ended now, is the
                // last whole one.
                let h = &mut self.hosts[i];
                pullers.sort();
                if pullers != h.last_pullers[b] {
                    h.last_pullers[b].clone_from(&pullers);
                    h.pullers_changed[b] = self.t;
                }
                let (begun, gather) = (h.begun_at[b], self.p.gather_secs);
                let deadline = begun + f64::from(MAX_GATHER_WINDOWS) * gather;
                // Announced when begun (the model's DHT stores a record at once).
                let unseen = h.unseen_askers(b, h.begun_at[b], exchange_after);
                let (changed, announced) = (h.pullers_changed[b], Some(begun));
                if pullers_settled(begun, gather, Some(self.t), changed, announced, unseen)
                    || self.t >= deadline
                {
                    h.scheds[b].set_hub_allowed(true);
                }
                h.scheds[b].set_pullers(pullers, counted);
            }
            self.hosts[i].next_refresh = self.t + self.p.refresh_secs;
            self.hosts[i].wake_at = self.t;
        }
    }

    /// Host `i` asks host `j` what it holds of blob `b`: `j`'s bitmap reaches `i`'s scheduler
    /// (unless unchanged since the last answer), `j` remembers `i` as an asker (and whether `i`
    /// found it `listed` by the DHT, as `LocalStore::swarm`), and with
    /// `peer_exchange` its answer names up to that many of its other recent askers, which `i`
    /// keeps (its view holds at most `max_providers` peers).
    fn ask(&mut self, i: usize, j: usize, b: usize, listed: bool) {
        if self.p.peer_exchange > 0 {
            // As `LocalStore::swarm` names them: the most recent first.
            let hints: Vec<usize> = self.hosts[j].askers[b]
                .iter()
                .map(|&(a, _, _)| a)
                .filter(|&a| a != i && self.hosts[a].alive)
                .take(self.p.peer_exchange)
                .collect();
            let learned = &mut self.hosts[i].learned[b];
            for a in hints {
                if learned.len() < self.p.max_providers && !learned.contains(&a) {
                    learned.push(a);
                }
            }
        }
        let askers = &mut self.hosts[j].askers[b];
        askers.retain(|&(a, _, _)| a != i);
        askers.insert(0, (i, self.t, listed));
        askers.truncate(MAX_ASKERS);
        let version = self.hosts[j].versions[b];
        let seen = &mut self.hosts[i].seen[b];
        match seen.iter_mut().find(|(k, _)| *k == j) {
            Some((_, v)) if *v == version => return,
            Some((_, v)) => *v = version,
            None => seen.push((j, version)),
        }
        let have = self.hosts[j].scheds[b].local().clone();
        let near = proximity(&self.hosts[i].topology, &self.hosts[j].topology);
        let id = self.hosts[j].id;
        let rtt = Duration::from_micros(100 * (u64::from(near) + 1));
        self.hosts[i].scheds[b].update_peer(id, have, near, rtt);
    }

    fn plan_requests(&mut self) {
        let now = self.now();
        // Requests each host is serving: a request beyond its upload slots is refused as busy.
        let mut uploads = vec![0usize; self.hosts.len()];
        for f in &self.flows {
            if let Some(s) = f.src_host {
                uploads[s] += 1;
            }
        }
        let slots = match self.p.upload_slots {
            0 => usize::MAX,
            n => n,
        };
        for i in 0..self.hosts.len() {
            let h = &self.hosts[i];
            if !h.started || !h.alive || h.ready_at.is_some() || h.wake_at > self.t {
                continue;
            }
            let mut wake = f64::INFINITY;
            for b in 0..self.hosts[i].begun {
                let sched = &mut self.hosts[i].scheds[b];
                if sched.is_done() {
                    continue;
                }
                for (chunk, source) in sched.expire_stalled(now) {
                    self.flows.retain(|f| {
                        !(f.dst == i
                            && f.blob == b
                            && f.source == source
                            && f.next <= chunk
                            && chunk < f.end)
                    });
                }
                for Request { source, chunks } in sched.plan(now) {
                    let src_host = match source {
                        Source::Peer(id) => self.index.get(&id).copied(),
                        Source::Hub => {
                            self.hub_requests += 1;
                            None
                        }
                    };
                    if let Some(s) = src_host {
                        if uploads[s] >= slots {
                            sched.failed(chunks, source, Fault::Busy);
                            continue;
                        }
                        uploads[s] += 1;
                    }
                    self.flows.push(Flow {
                        dst: i,
                        blob: b,
                        source,
                        src_host,
                        next: chunks.start,
                        end: chunks.end,
                        partial: 0.0,
                    });
                }
                if let Some(d) = sched.next_deadline() {
                    wake = wake.min(d.saturating_duration_since(self.base).as_secs_f64());
                }
            }
            self.hosts[i].wake_at = wake;
        }
    }

    /// Moves bytes for `dt` seconds at fair-share rates and completes the chunks that finish.
    fn advance(&mut self, dt: f64) {
        let n = self.hosts.len();
        let (mut up, mut down) = (vec![0u32; n], vec![0u32; n]);
        let mut hub = 0u32;
        for f in &self.flows {
            down[f.dst] += 1;
            match f.src_host {
                Some(s) => up[s] += 1,
                None => hub += 1,
            }
        }
        let link = self.p.link_bytes_per_sec;
        let mut finished = Vec::new();
        // Hosts that finished a blob in this step.
        let mut blob_done = Vec::new();
        for (k, f) in self.flows.iter_mut().enumerate() {
            let mut rate = link / f64::from(down[f.dst]);
            match f.src_host {
                Some(s) => rate = rate.min(link / f64::from(up[s])),
                None => rate = rate.min(self.p.hub_bytes_per_sec / f64::from(hub)),
            }
            let mut budget = rate * dt;
            while budget > 0.0 && f.next < f.end {
                let size = chunk_len(self.p.chunk_bytes, self.sizes[f.blob], f.next);
                let need = size - f.partial;
                if budget >= need {
                    budget -= need;
                    let host = &mut self.hosts[f.dst];
                    host.scheds[f.blob].completed(f.next, f.source);
                    host.versions[f.blob] += 1;
                    if host.scheds[f.blob].is_done() {
                        blob_done.push(f.dst);
                    }
                    host.wake_at = self.t;
                    match f.src_host {
                        Some(s) => self.hosts[s].served += size,
                        None => self.hub_bytes += size,
                    }
                    f.partial = 0.0;
                    f.next += 1;
                } else {
                    f.partial += budget;
                    budget = 0.0;
                }
            }
            if f.next >= f.end {
                finished.push(k);
            }
        }
        for k in finished.into_iter().rev() {
            self.flows.swap_remove(k);
        }
        // Hosts that finished a blob begin their next ones, in host order (which fixes the
        // order of their provider records).
        blob_done.sort_unstable();
        blob_done.dedup();
        for i in blob_done {
            self.begin_blobs(i);
        }
        let t = self.t + dt;
        for h in &mut self.hosts {
            if h.started && h.alive && h.ready_at.is_none() && h.scheds.iter().all(|s| s.is_done())
            {
                h.ready_at = Some(t - h.arrival);
            }
        }
    }

    fn report(&self) -> ScaleReport {
        let mut ready: Vec<f64> = self.hosts.iter().filter_map(|h| h.ready_at).collect();
        ready.sort_by(f64::total_cmp);
        let mut served: Vec<f64> = self.hosts.iter().map(|h| h.served).collect();
        served.sort_by(f64::total_cmp);
        ScaleReport {
            hosts: self.p.hosts,
            alive: self.hosts.iter().filter(|h| h.alive).count(),
            ready: ready.len(),
            ready_secs: ready,
            end_secs: self.t,
            model_bytes: self.p.model_bytes,
            hub_bytes: self.hub_bytes,
            hub_requests: self.hub_requests,
            served_max: served.last().copied().unwrap_or(0.0),
            served_median: served.get(served.len() / 2).copied().unwrap_or(0.0),
            hub_timeline: self.hub_timeline.clone(),
            refreshes: self.refreshes,
            dht_lookups: self.dht_lookups,
        }
    }
}

/// Bytes of chunk `index` of a file of `size` bytes cut in `chunk`-byte chunks.
fn chunk_len(chunk: u64, size: u64, index: u64) -> f64 {
    (size.min((index + 1) * chunk) - index * chunk) as f64
}

#[cfg(test)]
mod tests;
