//! The report of a run: what was measured (JSON, stable field names) and the same as markdown
//! with the headline figures first. Every figure is computed here from the recorded counters.

use serde::{Deserialize, Serialize};

use super::run::Mode;
use super::scenario::{Host, Scenario, Targets};

/// One host's outcome in one phase.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HostResult {
    /// `h00`, …
    pub name: String,
    /// Zone label.
    pub zone: String,
    /// Rack label.
    pub rack: String,
    /// Whether it served corrupted chunks.
    pub corrupt: bool,
    /// When it first asked (seconds from the phase's start).
    pub asked_at: Option<f64>,
    /// When its snapshot was ready.
    pub ready_at: Option<f64>,
    /// The last error of its pull, if it did not end ready.
    pub error: Option<String>,
    /// File bytes it took from the Hub (mesh: the agent's counter).
    pub bytes_from_hub: u64,
    /// File bytes it took from peers.
    pub bytes_from_peers: u64,
    /// Bytes it served to peers.
    pub bytes_served: u64,
    /// Chunks from peers it rejected (BLAKE3 mismatch).
    #[serde(default)]
    pub bad_chunks: u64,
    /// `hf_check.py offline` passed on its tree (`None`: not checked).
    pub tree_ok: Option<bool>,
    /// Kills, restarts and failed checks, in order.
    pub events: Vec<String>,
}

impl HostResult {
    /// A host that has done nothing yet.
    pub fn new(h: &Host) -> HostResult {
        HostResult {
            name: h.name.clone(),
            zone: h.zone.clone(),
            rack: h.rack.clone(),
            corrupt: h.corrupt,
            asked_at: None,
            ready_at: None,
            error: None,
            bytes_from_hub: 0,
            bytes_from_peers: 0,
            bytes_served: 0,
            bad_chunks: 0,
            tree_ok: None,
            events: Vec::new(),
        }
    }
}

/// Counters at one instant.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Sample {
    /// Seconds from the phase's start.
    pub t: f64,
    /// Hub file bytes served so far (emulator counter).
    pub hub_bytes: u64,
    /// Hub requests so far.
    pub hub_requests: u64,
    /// Machine CPU busy fraction since the previous sample (all CPUs).
    pub cpu_busy: f64,
    /// Bytes written to block devices since the phase's start.
    pub disk_written: u64,
    /// Bytes served to peers so far, per host (mesh).
    pub served: Vec<u64>,
    /// File bytes taken from peers so far, per host (mesh).
    #[serde(default)]
    pub from_peers: Vec<u64>,
    /// File bytes taken from the Hub so far, per host (mesh: the agents' counters).
    #[serde(default)]
    pub from_hub: Vec<u64>,
    /// Hosts ready so far.
    pub ready: usize,
}

/// A zone partition as it happened in a phase.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Cut {
    /// The zones cut apart from each other.
    pub zones: Vec<String>,
    /// When it started (seconds from the phase's start).
    pub from_secs: f64,
    /// When it was healed (the end of the phase if the scenario gave no duration).
    pub until_secs: Option<f64>,
    /// Why it could not be applied or healed, if so.
    pub error: Option<String>,
}

/// One phase (mesh or baseline).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PhaseReport {
    /// `mesh` or `baseline`.
    pub mode: String,
    /// Per host.
    pub hosts: Vec<HostResult>,
    /// Hosts that asked and were not left killed.
    pub expected: usize,
    /// Of those, ready.
    pub ready: usize,
    /// Hub file bytes in the phase (emulator counter).
    pub hub_bytes: u64,
    /// Hub requests in the phase.
    pub hub_requests: u64,
    /// Seconds from the start until the last expected host was ready (`None`: not all were).
    pub all_ready_secs: Option<f64>,
    /// The longest wait of a ready host from its first ask to ready (staggered arrivals).
    #[serde(default)]
    pub max_wait_secs: Option<f64>,
    /// The phase hit `timeout_secs`.
    pub timed_out: bool,
    /// Seconds the phase ran.
    pub wall_secs: f64,
    /// Mean and peak machine CPU busy fraction over the samples.
    pub cpu_busy_mean: f64,
    /// Peak of the same.
    pub cpu_busy_peak: f64,
    /// Bytes written to block devices during the phase.
    pub disk_written: u64,
    /// Chunks from peers rejected by BLAKE3 checks, over all hosts.
    #[serde(default)]
    pub bad_chunks: u64,
    /// Ready hosts whose tree passed the huggingface_hub check, of those checked.
    pub trees_ok: Option<(usize, usize)>,
    /// Zone partitions, in order.
    #[serde(default)]
    pub partitions: Vec<Cut>,
    /// The time series.
    pub samples: Vec<Sample>,
}

impl PhaseReport {
    /// Sums up a phase.
    pub fn new(
        mode: Mode,
        hosts: Vec<HostResult>,
        samples: Vec<Sample>,
        hub_bytes: u64,
        hub_requests: u64,
        timed_out: bool,
        wall_secs: f64,
    ) -> PhaseReport {
        let left_killed = |h: &HostResult| h.events.last().is_some_and(|e| e.starts_with("killed"));
        let expected: Vec<&HostResult> = hosts
            .iter()
            .filter(|h| h.asked_at.is_some() && !left_killed(h))
            .collect();
        let ready = expected.iter().filter(|h| h.ready_at.is_some()).count();
        let all_ready_secs = (ready == expected.len()).then(|| {
            expected
                .iter()
                .filter_map(|h| h.ready_at)
                .fold(0.0, f64::max)
        });
        let cpu: Vec<f64> = samples.iter().map(|s| s.cpu_busy).collect();
        let checked: Vec<bool> = hosts.iter().filter_map(|h| h.tree_ok).collect();
        PhaseReport {
            mode: match mode {
                Mode::Mesh => "mesh",
                Mode::Baseline => "baseline",
            }
            .into(),
            expected: expected.len(),
            ready,
            hub_bytes,
            hub_requests,
            all_ready_secs,
            max_wait_secs: hosts
                .iter()
                .filter_map(|h| Some(h.ready_at? - h.asked_at?))
                .reduce(f64::max),
            timed_out,
            wall_secs,
            cpu_busy_mean: cpu.iter().sum::<f64>() / cpu.len().max(1) as f64,
            cpu_busy_peak: cpu.iter().copied().fold(0.0, f64::max),
            disk_written: samples.last().map_or(0, |s| s.disk_written),
            bad_chunks: hosts.iter().map(|h| h.bad_chunks).sum(),
            trees_ok: (!checked.is_empty())
                .then(|| (checked.iter().filter(|&&ok| ok).count(), checked.len())),
            partitions: Vec::new(),
            hosts,
            samples,
        }
    }

    /// The same with the partitions that happened.
    pub fn with_partitions(mut self, partitions: Vec<Cut>) -> PhaseReport {
        self.partitions = partitions;
        self
    }
}

/// A target and whether it was met.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Verdict {
    /// What is measured.
    pub what: String,
    /// The pass mark.
    pub target: f64,
    /// The measurement (`None`: could not be measured, which fails).
    pub measured: Option<f64>,
    /// `measured <= target`.
    pub met: bool,
}

/// The whole report.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    /// Scenario name.
    pub scenario: String,
    /// Its seed.
    pub seed: u64,
    /// Number of hosts.
    pub hosts: usize,
    /// `loopback` or `netns`.
    #[serde(default)]
    pub network: String,
    /// CPUs of the machine.
    pub cpus: usize,
    /// Bytes of the distinct models asked for.
    pub model_bytes: u64,
    /// The Hub's egress cap, bytes per second.
    pub hub_bandwidth: u64,
    /// Seconds one host alone took from the Hub (measured in this run).
    pub single_host_secs: f64,
    /// Hub bytes of that single pull.
    pub single_host_hub_bytes: u64,
    /// Mesh phase.
    pub mesh: PhaseReport,
    /// Baseline phase, when run.
    pub baseline: Option<PhaseReport>,
    /// Headline: mesh Hub bytes ÷ model bytes.
    pub hub_egress_ratio: f64,
    /// Headline: mesh time-to-all-ready ÷ single-host time (`None`: not all ready).
    pub all_ready_ratio: Option<f64>,
    /// The same two for the baseline.
    pub baseline_hub_egress_ratio: Option<f64>,
    /// The same for the baseline.
    pub baseline_all_ready_ratio: Option<f64>,
    /// The scenario's targets, judged.
    pub verdicts: Vec<Verdict>,
}

impl Report {
    /// Computes the headline figures and judges the targets.
    pub fn new(
        s: &Scenario,
        single: (f64, u64),
        mesh: PhaseReport,
        baseline: Option<PhaseReport>,
    ) -> Report {
        let mut ids: Vec<&str> = s.asks.iter().map(|a| a.model.as_str()).collect();
        ids.sort();
        ids.dedup();
        let model_bytes: u64 = s
            .models
            .iter()
            .filter(|m| ids.contains(&m.id.as_str()))
            .map(|m| m.size)
            .sum();
        let egress = |p: &PhaseReport| p.hub_bytes as f64 / model_bytes as f64;
        let ready = |p: &PhaseReport| p.all_ready_secs.map(|t| t / single.0);
        let mut verdicts = Vec::new();
        if let Some(Targets {
            hub_egress_ratio,
            all_ready_ratio,
        }) = &s.targets
        {
            if let Some(t) = hub_egress_ratio {
                let m = egress(&mesh);
                verdicts.push(Verdict {
                    what: "Hub egress ÷ model size".into(),
                    target: *t,
                    measured: Some(m),
                    met: m <= *t,
                });
            }
            if let Some(t) = all_ready_ratio {
                let m = ready(&mesh);
                verdicts.push(Verdict {
                    what: "all ready ÷ one host alone".into(),
                    target: *t,
                    measured: m,
                    met: m.is_some_and(|m| m <= *t),
                });
            }
            if let Some((ok, checked)) = mesh.trees_ok {
                verdicts.push(Verdict {
                    what: "trees failing the huggingface_hub check".into(),
                    target: 0.0,
                    measured: Some((checked - ok) as f64 + (mesh.ready - checked) as f64),
                    met: ok == checked && checked == mesh.ready,
                });
            }
        }
        Report {
            scenario: s.name.clone(),
            seed: s.seed,
            hosts: s.hosts.len(),
            network: s.network.as_str().into(),
            cpus: super::probe::cpus(),
            model_bytes,
            hub_bandwidth: s.hub_bandwidth,
            single_host_secs: single.0,
            single_host_hub_bytes: single.1,
            hub_egress_ratio: egress(&mesh),
            all_ready_ratio: ready(&mesh),
            baseline_hub_egress_ratio: baseline.as_ref().map(egress),
            baseline_all_ready_ratio: baseline.as_ref().and_then(ready),
            mesh,
            baseline,
            verdicts,
        }
    }

    /// The report as markdown: headline, targets, phases, hosts, plots.
    pub fn markdown(&self) -> String {
        let mut md = String::new();
        let mb = |b: u64| format!("{:.1} MB", b as f64 / 1e6);
        let secs = |t: Option<f64>| t.map_or("not all ready".into(), |t| format!("{t:.1} s"));
        let ratio = |r: Option<f64>| r.map_or("—".into(), |r| format!("{r:.2}"));
        md += &format!("# Simulation report: {}\n\n", self.scenario);
        md += &format!(
            "{} hosts, model {} in all, Hub capped at {}/s, seed {}, {} CPUs. One host alone from the Hub: **{:.1} s** ({} from the Hub).\n\n",
            self.hosts, mb(self.model_bytes), mb(self.hub_bandwidth), self.seed, self.cpus, self.single_host_secs, mb(self.single_host_hub_bytes)
        );
        md += match self.network.as_str() {
            "netns" => "Network: **netns**: each host and the Hub in its own network namespace, on one bridge; each link htb-shaped on both ends (host upload, host download, Hub egress).\n\n",
            _ => "Network: **loopback**: every process on the runner's loopback; per-host caps are the agents' token buckets, the Hub's the emulator's.\n\n",
        };
        md += "## Headline\n\n| | mesh | baseline (every host from the Hub) |\n|---|---|---|\n";
        let b = self.baseline.as_ref();
        md += &format!(
            "| Hub egress ÷ model size | **{:.3}** | {} |\n",
            self.hub_egress_ratio,
            ratio(self.baseline_hub_egress_ratio)
        );
        md += &format!(
            "| Hub requests | **{}** | {} |\n",
            self.mesh.hub_requests,
            b.map_or("—".into(), |b| b.hub_requests.to_string())
        );
        md += &format!(
            "| time to all ready | **{}** | {} |\n",
            secs(self.mesh.all_ready_secs),
            b.map_or("—".into(), |b| secs(b.all_ready_secs))
        );
        md += &format!(
            "| time to all ready ÷ one host alone | **{}** | {} |\n",
            ratio(self.all_ready_ratio),
            ratio(self.baseline_all_ready_ratio)
        );
        let phases: Vec<&PhaseReport> = std::iter::once(&self.mesh).chain(b).collect();
        for p in &phases {
            md += &format!(
                "| {}: ready / expected, timed out | {} / {}, {} | |\n| {}: CPU busy mean / peak, disk written | {:.0}% / {:.0}%, {} | |\n",
                p.mode, p.ready, p.expected, p.timed_out, p.mode, p.cpu_busy_mean * 100.0, p.cpu_busy_peak * 100.0, mb(p.disk_written)
            );
            md += &format!(
                "| {}: longest wait of a host, ask to ready | {} | |\n",
                p.mode,
                secs(p.max_wait_secs)
            );
            if p.mode == "mesh" {
                md += &format!(
                    "| mesh: chunks from peers rejected (BLAKE3) | {} | |\n",
                    p.bad_chunks
                );
            }
            if let Some((ok, n)) = p.trees_ok {
                md += &format!(
                    "| {}: trees passing the huggingface_hub check | {ok} / {n} | |\n",
                    p.mode
                );
            }
        }
        if !self.verdicts.is_empty() {
            md += "\n## Targets\n\n| target | pass mark | measured | met |\n|---|---|---|---|\n";
            for v in &self.verdicts {
                md += &format!(
                    "| {} | ≤ {} | {} | {} |\n",
                    v.what,
                    v.target,
                    ratio(v.measured),
                    if v.met { "yes" } else { "**no**" }
                );
            }
        }
        for p in phases.iter().filter(|p| !p.partitions.is_empty()) {
            md += &partitions_md(p);
        }
        for p in &phases {
            md += &format!("\n## Hosts ({})\n\n| host | zone | rack | asked | ready | from Hub | from peers | served | rejected chunks | tree | notes |\n|---|---|---|---|---|---|---|---|---|---|---|\n", p.mode);
            for h in &p.hosts {
                let t = |t: Option<f64>| t.map_or("—".into(), |t| format!("{t:.1} s"));
                let mut notes = h.events.join("; ");
                if h.corrupt {
                    notes = format!("corrupting peer; {notes}");
                }
                if let (None, Some(e)) = (h.ready_at, &h.error) {
                    notes = format!("{notes} error: {e}");
                }
                md += &format!(
                    "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
                    h.name,
                    h.zone,
                    h.rack,
                    t(h.asked_at),
                    t(h.ready_at),
                    mb(h.bytes_from_hub),
                    mb(h.bytes_from_peers),
                    mb(h.bytes_served),
                    h.bad_chunks,
                    h.tree_ok.map_or("—", |ok| if ok { "ok" } else { "FAIL" }),
                    notes.trim()
                );
            }
        }
        md += "\n## Plots\n\n![ready CDF](ready-cdf.svg)\n\n![Hub bytes](hub-bytes.svg)\n\n![served per host](served.svg)\n\n";
        md += "Hub bytes and requests are the emulator's own counters; per-host bytes are each agent's `/v1/status`; CPU from `/proc/stat`, disk from `/sys/block/*/stat` (page-cache writeback may land after a phase ends).\n";
        md
    }
}

/// The partitions of a phase, each with how the hosts of its zones fared: completion under the
/// cut is the figure of interest (a cut-off host takes the Hub, or waits for its peers).
fn partitions_md(p: &PhaseReport) -> String {
    let mb = |b: u64| format!("{:.1} MB", b as f64 / 1e6);
    let mut md = format!(
        "\n## Partitions ({})\n\n| zones cut apart | from | until | zone | hosts asked | ready during the cut | ready | from Hub | from peers |\n|---|---|---|---|---|---|---|---|---|\n",
        p.mode
    );
    for c in &p.partitions {
        let until = c.until_secs.map_or("—".into(), |t| format!("{t:.1} s"));
        for (i, zone) in c.zones.iter().enumerate() {
            let hosts: Vec<&HostResult> = p
                .hosts
                .iter()
                .filter(|h| &h.zone == zone && h.asked_at.is_some())
                .collect();
            let during = hosts
                .iter()
                .filter_map(|h| h.ready_at)
                .filter(|&t| t >= c.from_secs && c.until_secs.is_none_or(|u| t <= u))
                .count();
            let ready = hosts.iter().filter(|h| h.ready_at.is_some()).count();
            let (head, from, to) = if i == 0 {
                let mut head = c.zones.join(" / ");
                if let Some(e) = &c.error {
                    head = format!("{head} (**not applied**: {e})");
                }
                (head, format!("{:.1} s", c.from_secs), until.clone())
            } else {
                Default::default()
            };
            md += &format!(
                "| {head} | {from} | {to} | {zone} | {} | {during} | {ready} | {} | {} |\n",
                hosts.len(),
                mb(hosts.iter().map(|h| h.bytes_from_hub).sum()),
                mb(hosts.iter().map(|h| h.bytes_from_peers).sum()),
            );
        }
    }
    md
}
