//! The scale model's inputs (a TOML file or flags) and its report.

use std::fmt::Write as _;

use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use crate::scheduler::SchedConfig;

/// When hosts ask for the model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Arrival {
    /// Every host at time 0.
    AllAtOnce,
    /// Evenly spread over `over_secs`.
    Staggered {
        /// Spread.
        over_secs: f64,
    },
    /// A Poisson process of `per_sec` hosts per second on average.
    Poisson {
        /// Mean arrivals per second.
        per_sec: f64,
    },
    /// Host `i` asks at `at_secs[i]` (a real-run scenario's asks).
    Times {
        /// One time per host, seconds.
        at_secs: Vec<f64>,
    },
}

/// A rack that dies at a given time (every host in it stops, with its records).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RackFailure {
    /// Seconds after the start.
    pub at_secs: f64,
    /// Rack label, `z<zone>-r<rack>` (e.g. `z0-r1`).
    pub rack: String,
}

/// The scenario of one model run.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ScaleParams {
    /// Hosts.
    pub hosts: usize,
    /// Zones (hosts are dealt round-robin).
    pub zones: usize,
    /// Racks per zone.
    pub racks_per_zone: usize,
    /// Each host's link, each way, bytes/s.
    pub link_bytes_per_sec: f64,
    /// The Hub's total egress, bytes/s.
    pub hub_bytes_per_sec: f64,
    /// Model size, bytes (split evenly over `files`).
    pub model_bytes: u64,
    /// Files in the model.
    pub files: usize,
    /// Simulated chunk size (the real one is 4 MiB; larger values make huge runs tractable).
    pub chunk_bytes: u64,
    /// Arrival process.
    pub arrival: Arrival,
    /// Seed of the arrival process.
    pub seed: u64,
    /// An optional rack failure.
    pub failure: Option<RackFailure>,
    /// Provider records the DHT keeps per key (libp2p Kademlia's store default: 20).
    pub providers_per_key: usize,
    /// Providers a lookup answers (`MeshConfig::max_providers`).
    pub max_providers: usize,
    /// The gather window before a blob's first Hub request (`MeshConfig::gather`).
    pub gather_secs: f64,
    /// Files a host fetches at once, in order (`MeshConfig::max_blobs`).
    pub max_blobs: usize,
    /// Seconds between two refreshes of a host's view of its providers (`MeshConfig::refresh`).
    pub refresh_secs: f64,
    /// Peer exchange: each answer to "what do you hold" also names up to this many of the
    /// answerer's other recent askers, and the asker adds them to its view (sources only: stripe
    /// owners stay the DHT's providers). The mesh's is `wire::MAX_PEER_HINTS`; 0 turns it off.
    pub peer_exchange: usize,
    /// Chunk requests a host serves at once; more are refused as busy
    /// (`transfer::config::UPLOAD_SLOTS`; 0: no limit).
    pub upload_slots: usize,
    /// Time step, seconds.
    pub tick_secs: f64,
    /// Sampling interval of the Hub timeline, seconds.
    pub sample_secs: f64,
    /// Give up after this many simulated seconds.
    pub time_limit_secs: f64,
    /// The scheduler's tuning (not in the file: the mesh's defaults).
    #[serde(skip)]
    pub sched: SchedConfig,
}

impl Default for ScaleParams {
    /// 1,000 hosts in 4 zones of 10 racks, 100 Gb/s links, a 10 Gb/s Hub, a 140 GB model in 30
    /// files, 64 MiB simulated chunks, everyone at once.
    fn default() -> Self {
        ScaleParams {
            hosts: 1000,
            zones: 4,
            racks_per_zone: 10,
            link_bytes_per_sec: 12.5e9,
            hub_bytes_per_sec: 1.25e9,
            model_bytes: 140_000_000_000,
            files: 30,
            chunk_bytes: 64 << 20,
            arrival: Arrival::AllAtOnce,
            seed: 1,
            failure: None,
            providers_per_key: crate::discovery::DHT_PROVIDERS_PER_KEY,
            max_providers: 32,
            max_blobs: 4,
            gather_secs: 0.5,
            refresh_secs: 0.25,
            upload_slots: crate::transfer::config::UPLOAD_SLOTS,
            peer_exchange: crate::wire::MAX_PEER_HINTS,
            tick_secs: 0.05,
            sample_secs: 1.0,
            time_limit_secs: 7200.0,
            sched: SchedConfig::default(),
        }
    }
}

impl ScaleParams {
    /// Parses a TOML scenario (missing keys take the defaults) and validates it.
    pub fn from_toml(text: &str) -> Result<ScaleParams, String> {
        let p: ScaleParams =
            toml::from_str(text).map_err(|e| format!("bad scale scenario: {e}"))?;
        p.validate()?;
        Ok(p)
    }

    /// Checks that the numbers make sense; one sentence per problem.
    pub fn validate(&self) -> Result<(), String> {
        let positive = [
            ("hosts", self.hosts as f64),
            ("zones", self.zones as f64),
            ("racks_per_zone", self.racks_per_zone as f64),
            ("link_bytes_per_sec", self.link_bytes_per_sec),
            ("hub_bytes_per_sec", self.hub_bytes_per_sec),
            ("model_bytes", self.model_bytes as f64),
            ("files", self.files as f64),
            ("chunk_bytes", self.chunk_bytes as f64),
            ("providers_per_key", self.providers_per_key as f64),
            ("max_providers", self.max_providers as f64),
            ("max_blobs", self.max_blobs as f64),
            ("gather_secs", self.gather_secs),
            ("refresh_secs", self.refresh_secs),
            ("tick_secs", self.tick_secs),
            ("sample_secs", self.sample_secs),
            ("time_limit_secs", self.time_limit_secs),
        ];
        if let Some((name, _)) = positive.iter().find(|(_, v)| !(v.is_finite() && *v > 0.0)) {
            return Err(format!("`{name}` must be a positive number"));
        }
        if self.model_bytes < self.files as u64 {
            return Err("`model_bytes` must be at least one byte per file".into());
        }
        match self.arrival {
            Arrival::Staggered { over_secs } if !over_secs.is_finite() || over_secs < 0.0 => {
                Err("`arrival.over_secs` must be zero or more".into())
            }
            Arrival::Poisson { per_sec } if !per_sec.is_finite() || per_sec <= 0.0 => {
                Err("`arrival.per_sec` must be positive".into())
            }
            Arrival::Times { ref at_secs } if at_secs.len() != self.hosts => Err(format!(
                "`arrival.at_secs` has {} times for {} hosts",
                at_secs.len(),
                self.hosts
            )),
            Arrival::Times { ref at_secs }
                if at_secs.iter().any(|t| !(t.is_finite() && *t >= 0.0)) =>
            {
                Err("`arrival.at_secs` must be zero or more".into())
            }
            _ => Ok(()),
        }
    }

    /// The model of a real-run scenario (`hfmesh simulate`'s TOML), so that the two can be
    /// compared at a size both can run: its hosts (zones and racks from their labels, each
    /// host's link the slower of its upload and download caps, the same for all), the Hub's
    /// bandwidth, its one model (equal files; the real ones differ by a few bytes) and each
    /// host's ask time. Hub latency, 429s and faults are not modelled: a scenario with faults,
    /// several models, or hosts that ask for nothing is refused.
    pub fn from_scenario(s: &crate::sim::scenario::Scenario) -> Result<ScaleParams, String> {
        let [model] = s.models.as_slice() else {
            return Err(format!(
                "`{}` has {} models; the scale model plays one",
                s.name,
                s.models.len()
            ));
        };
        if !s.faults.is_empty() {
            return Err(format!(
                "`{}` has faults; the scale model plays none of a real run's faults",
                s.name
            ));
        }
        let mut at_secs = vec![None; s.hosts.len()];
        for ask in &s.asks {
            at_secs[ask.host] = Some(ask.at_secs);
        }
        let at_secs: Vec<f64> = at_secs
            .into_iter()
            .collect::<Option<_>>()
            .ok_or_else(|| format!("in `{}` some hosts ask for nothing", s.name))?;
        let mut zones: Vec<&str> = s.hosts.iter().map(|h| h.zone.as_str()).collect();
        zones.sort_unstable();
        zones.dedup();
        let mut racks: Vec<(&str, &str)> = s
            .hosts
            .iter()
            .map(|h| (h.zone.as_str(), h.rack.as_str()))
            .collect();
        racks.sort_unstable();
        racks.dedup();
        let link = s
            .hosts
            .iter()
            .map(|h| h.upload.min(h.download))
            .min()
            .unwrap_or(1);
        let p = ScaleParams {
            hosts: s.hosts.len(),
            zones: zones.len(),
            racks_per_zone: racks.len().div_ceil(zones.len().max(1)),
            link_bytes_per_sec: link as f64,
            hub_bytes_per_sec: s.hub_bandwidth as f64,
            model_bytes: model.size,
            files: model.files as usize,
            chunk_bytes: crate::store::CHUNK_SIZE,
            arrival: Arrival::Times { at_secs },
            seed: s.seed,
            tick_secs: 0.01,
            ..ScaleParams::default()
        };
        p.validate()?;
        Ok(p)
    }

    /// The scheduler's tuning for the simulated chunk size. Its timeouts are for 4 MiB chunks:
    /// a request may take `stall_timeout`, a stripe may go `origin_grace` without a chunk
    /// arriving and a busy peer is left alone for `busy_backoff`. With chunks `k` times larger
    /// each request moves `k` times the bytes, so all three are stretched `k` times; otherwise a
    /// loaded peer's requests would count as stalled (and the peer be banned) only because the
    /// model's chunks are coarse.
    pub fn sched_config(&self) -> SchedConfig {
        let k = (self.chunk_bytes as f64 / crate::store::CHUNK_SIZE as f64).max(1.0);
        SchedConfig {
            stall_timeout: self.sched.stall_timeout.mul_f64(k),
            origin_grace: self.sched.origin_grace.mul_f64(k),
            busy_backoff: self.sched.busy_backoff.mul_f64(k),
            ..self.sched.clone()
        }
    }

    /// The files' sizes: `model_bytes` split evenly, the remainder on the first.
    pub fn file_sizes(&self) -> Vec<u64> {
        let each = self.model_bytes / self.files as u64;
        let mut sizes = vec![each; self.files];
        sizes[0] += self.model_bytes - each * self.files as u64;
        sizes
    }

    /// When each host asks, in seconds (seeded, so runs repeat).
    pub fn arrival_times(&self) -> Vec<f64> {
        let n = self.hosts;
        match &self.arrival {
            Arrival::AllAtOnce => vec![0.0; n],
            Arrival::Times { at_secs } => at_secs.clone(),
            &Arrival::Staggered { over_secs } => (0..n)
                .map(|i| over_secs * i as f64 / n.max(2).saturating_sub(1) as f64)
                .collect(),
            &Arrival::Poisson { per_sec } => {
                let mut rng = rand::rngs::StdRng::seed_from_u64(self.seed);
                let mut t = 0.0;
                (0..n)
                    .map(|_| {
                        let u: f64 = rng.random_range(f64::MIN_POSITIVE..1.0);
                        let at = t;
                        t += -u.ln() / per_sec;
                        at
                    })
                    .collect()
            }
        }
    }
}

/// What one run of the model found.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ScaleReport {
    /// Hosts in the scenario.
    pub hosts: usize,
    /// Hosts alive at the end.
    pub alive: usize,
    /// Hosts that became ready.
    pub ready: usize,
    /// Each ready host's time from its request to ready, sorted.
    pub ready_secs: Vec<f64>,
    /// Simulated time at the end.
    pub end_secs: f64,
    /// Model size.
    pub model_bytes: u64,
    /// Bytes the Hub sent.
    pub hub_bytes: f64,
    /// Requests to the Hub.
    pub hub_requests: u64,
    /// Most bytes one host served.
    pub served_max: f64,
    /// Median bytes served per host.
    pub served_median: f64,
    /// (seconds, Hub bytes so far).
    pub hub_timeline: Vec<(f64, f64)>,
    /// Refreshes of a blob's view (each asks the providers what they hold).
    #[serde(default)]
    pub refreshes: u64,
    /// Of those, the ones that looked the providers up in the DHT (see `mesh::pace`).
    #[serde(default)]
    pub dht_lookups: u64,
}

impl ScaleReport {
    /// Hub egress ÷ model size.
    pub fn hub_egress_ratio(&self) -> f64 {
        self.hub_bytes / self.model_bytes as f64
    }

    /// Time until the last ready host was ready (its request to ready, plus its arrival).
    pub fn all_ready_secs(&self) -> Option<f64> {
        (self.ready == self.alive).then(|| self.ready_secs.last().copied().unwrap_or(0.0))
    }

    /// The `q` quantile (0..=1) of ready times.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        let n = self.ready_secs.len();
        (n > 0).then(|| self.ready_secs[((n - 1) as f64 * q).round() as usize])
    }
}

/// The three runs of one scenario: the mesh, the mesh off, one host alone.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ScaleComparison {
    /// The scenario.
    pub params: ScaleParams,
    /// With the mesh.
    pub mesh: ScaleReport,
    /// Every host from the Hub.
    pub hub_only: ScaleReport,
    /// One host alone from the Hub.
    pub single: ScaleReport,
}

impl ScaleComparison {
    /// Runs the three.
    pub fn run(params: &ScaleParams) -> ScaleComparison {
        let single_params = ScaleParams {
            hosts: 1,
            failure: None,
            arrival: Arrival::AllAtOnce,
            ..params.clone()
        };
        ScaleComparison {
            params: params.clone(),
            mesh: super::run(params, true),
            hub_only: super::run(params, false),
            single: super::run(&single_params, false),
        }
    }

    /// A markdown summary.
    pub fn markdown(&self) -> String {
        let p = &self.params;
        let single = self.single.all_ready_secs().unwrap_or(f64::NAN);
        let mut out = String::new();
        let _ = writeln!(
            out,
            "Scale model: {} hosts ({} zones × {} racks), {:.1} GB model in {} files, links {:.1} Gb/s, Hub {:.1} Gb/s, arrival {:?}, providers kept per key {}, upload slots {}{}{}\n",
            p.hosts,
            p.zones,
            p.racks_per_zone,
            p.model_bytes as f64 / 1e9,
            p.files,
            p.link_bytes_per_sec * 8.0 / 1e9,
            p.hub_bytes_per_sec * 8.0 / 1e9,
            match &p.arrival {
                Arrival::Times { at_secs } => format!(
                    "as asked, {:.1}–{:.1} s",
                    at_secs.iter().copied().fold(f64::INFINITY, f64::min),
                    at_secs.iter().copied().fold(0.0, f64::max)
                ),
                other => format!("{other:?}"),
            },
            p.providers_per_key,
            match p.upload_slots {
                0 => "unlimited".to_string(),
                n => n.to_string(),
            },
            match p.peer_exchange {
                0 => ", no peer exchange".to_string(),
                n => format!(", peer exchange {n} per answer"),
            },
            p.failure
                .as_ref()
                .map(|f| format!(", rack {} dies at {:.0} s", f.rack, f.at_secs))
                .unwrap_or_default()
        );
        let _ = writeln!(
            out,
            "| run | ready / alive | p50 ready (s) | p99 ready (s) | all ready (s) | all ready ÷ one host | Hub egress ÷ model | Hub requests | most served by one host (GB) |"
        );
        let _ = writeln!(out, "|---|---|---|---|---|---|---|---|---|");
        for (name, r) in [
            ("mesh", &self.mesh),
            ("hub only", &self.hub_only),
            ("one host", &self.single),
        ] {
            let all = r.all_ready_secs();
            let fmt = |v: Option<f64>| v.map_or("—".into(), |v| format!("{v:.1}"));
            let _ = writeln!(
                out,
                "| {name} | {} / {} | {} | {} | {} | {} | {:.3} | {} | {:.1} |",
                r.ready,
                r.alive,
                fmt(r.quantile(0.5)),
                fmt(r.quantile(0.99)),
                fmt(all),
                all.map_or("—".into(), |a| format!("{:.2}", a / single)),
                r.hub_egress_ratio(),
                r.hub_requests,
                r.served_max / 1e9
            );
        }
        let m = &self.mesh;
        let _ = writeln!(
            out,
            "\nmesh: {} DHT provider lookups in {} refreshes of a blob's view ({:.0}%).",
            m.dht_lookups,
            m.refreshes,
            100.0 * m.dht_lookups as f64 / m.refreshes.max(1) as f64
        );
        out
    }
}
