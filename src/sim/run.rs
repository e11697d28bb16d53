//! The runner: plays a scenario against real processes on loopback or in network namespaces
//! (`netns.rs`), in three phases on one
//! emulator (its counters reset in between): one host alone from the Hub (the yardstick), the
//! mesh (every host an `hfmesh agent`, pulls through the control API), and optionally the
//! baseline (every host a `hfmesh pull --standalone` at the same download cap). Each phase is
//! bounded by the scenario's `timeout_secs` and kills its children on every exit path.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context as _};
use tokio::process::Child;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::netns::{Net, Site};
use super::probe;
use super::procs::{self, HostDirs, Hub};
use super::report::{Cut, HostResult, PhaseReport, Sample};
use super::scenario::{FaultKind, Scenario};

/// How often counters are sampled.
pub const SAMPLE_EVERY: Duration = Duration::from_millis(250);
/// Longest wait for every agent to see a peer before the clock starts.
pub const FORM_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest wait for one status or stats answer.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// How the runner is invoked.
#[derive(Debug, Clone)]
pub struct Options {
    /// The `hfmesh` binary the processes run.
    pub bin: PathBuf,
    /// Where the work tree (and, by the caller, the report) goes.
    pub out: PathBuf,
    /// Also run the baseline (every host straight from the Hub).
    pub baseline: bool,
    /// A Python with `huggingface_hub`, to check every ready host's tree.
    pub python: Option<PathBuf>,
    /// `tests/python/hf_check.py`.
    pub hf_check: PathBuf,
}

/// Which phase.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Mode {
    /// Agents pulling through the mesh.
    Mesh,
    /// Standalone pulls, no peers.
    Baseline,
}

/// One host alone from the Hub: the time of a standalone pull of the first model asked for, at the
/// first asking host's download cap, and the Hub bytes it took.
pub async fn single_host(
    s: &Scenario,
    o: &Options,
    hub: &Hub,
    work: &Path,
    net: Option<&Net>,
) -> anyhow::Result<(f64, u64)> {
    let ask = &s.asks[0];
    let host = &s.hosts[ask.host];
    let site = net.map_or_else(Site::loopback, |n| n.host_site(ask.host));
    let dirs = HostDirs::new(&work.join("single"), host);
    hub.reset().await?;
    let start = Instant::now();
    let mut child =
        procs::standalone_pull(&o.bin, &hub.url, (host, &site), &dirs, &ask.model)?.child;
    let limit = Duration::from_secs_f64(s.timeout_secs);
    let status = tokio::time::timeout(limit, child.wait())
        .await
        .context("the single-host pull did not finish within timeout_secs")??;
    let secs = start.elapsed().as_secs_f64();
    if !status.success() {
        bail!(
            "the single-host pull failed ({status}); see {}",
            dirs.root.display()
        );
    }
    let (bytes, _) = hub.stats().await?;
    let _ = std::fs::remove_dir_all(&dirs.root);
    Ok((secs, bytes))
}

#[derive(Debug)]
enum Event {
    Ask {
        host: usize,
        model: String,
    },
    Kill(usize),
    Restart(usize),
    HubErrors(Option<u16>),
    /// Partition number `n` (its index in the scenario's faults) starts.
    Cut(usize),
    /// It ends.
    Heal(usize),
}

fn timeline(s: &Scenario) -> VecDeque<(f64, Event)> {
    let mut events: Vec<(f64, Event)> = s
        .asks
        .iter()
        .map(|a| {
            (
                a.at_secs,
                Event::Ask {
                    host: a.host,
                    model: a.model.clone(),
                },
            )
        })
        .collect();
    for (n, f) in s.faults.iter().enumerate() {
        match &f.kind {
            FaultKind::Kill { host } => events.push((f.at_secs, Event::Kill(*host))),
            FaultKind::Restart { host } => events.push((f.at_secs, Event::Restart(*host))),
            FaultKind::HubOutage { duration_secs } | FaultKind::Hub429 { duration_secs } => {
                let status = if matches!(f.kind, FaultKind::Hub429 { .. }) {
                    429
                } else {
                    503
                };
                events.push((f.at_secs, Event::HubErrors(Some(status))));
                events.push((f.at_secs + duration_secs, Event::HubErrors(None)));
            }
            FaultKind::Partition { duration_secs, .. } => {
                events.push((f.at_secs, Event::Cut(n)));
                if let Some(d) = duration_secs {
                    events.push((f.at_secs + d, Event::Heal(n)));
                }
            }
        }
    }
    events.sort_by(|a, b| a.0.total_cmp(&b.0));
    events.into()
}

/// A finished pull: host, outcome, pull generation (a restart starts a new one).
/// A host's pull ended: the host, the outcome (with the bytes it took from the Hub, when the
/// pull reports them itself: the baseline's standalone pulls), the generation of the ask.
type Done = (usize, Result<Option<u64>, String>, u32);

/// One phase's live state.
struct Phase<'a> {
    mode: Mode,
    s: &'a Scenario,
    o: &'a Options,
    hub: &'a Hub,
    net: Option<&'a Net>,
    sites: Vec<Site>,
    dirs: Vec<HostDirs>,
    agents: Vec<Option<Child>>,
    p2p: Vec<Option<String>>,
    pull_cancel: Vec<CancellationToken>,
    generation: Vec<u32>,
    results: Vec<HostResult>,
    asked: Vec<Option<String>>,
    down: Vec<bool>,
    /// Counters of earlier lives of a restarted agent: from_hub, from_peers, served, bad chunks.
    base: Vec<[u64; 4]>,
    last: Vec<[u64; 4]>,
    tx: mpsc::Sender<Done>,
    t0: Instant,
    cpu: (u64, u64),
    disk0: u64,
    /// Partitions so far, by fault index; `until_secs` is unset while one is in force.
    cuts: Vec<(usize, Cut)>,
}

/// Plays the scenario in `mode` and reports it.
pub async fn phase(
    mode: Mode,
    s: &Scenario,
    o: &Options,
    (hub, net): (&Hub, Option<&Net>),
    work: &Path,
) -> anyhow::Result<PhaseReport> {
    hub.reset().await?;
    hub.set_errors(None).await?;
    let (tx, mut rx) = mpsc::channel::<Done>(256);
    let n = s.hosts.len();
    let mut p = Phase {
        mode,
        s,
        o,
        hub,
        net,
        sites: (0..n)
            .map(|h| net.map_or_else(Site::loopback, |net| net.host_site(h)))
            .collect(),
        dirs: s.hosts.iter().map(|h| HostDirs::new(work, h)).collect(),
        agents: (0..n).map(|_| None).collect(),
        p2p: vec![None; n],
        pull_cancel: (0..n).map(|_| CancellationToken::new()).collect(),
        generation: vec![0; n],
        results: s.hosts.iter().map(HostResult::new).collect(),
        asked: vec![None; n],
        down: vec![false; n],
        base: vec![[0; 4]; n],
        last: vec![[0; 4]; n],
        tx,
        t0: Instant::now(),
        cpu: probe::cpu_jiffies(),
        disk0: probe::disk_written(),
        cuts: Vec::new(),
    };
    if mode == Mode::Mesh {
        p.start_cluster().await?;
    }
    p.t0 = Instant::now();
    p.cpu = probe::cpu_jiffies();
    p.disk0 = probe::disk_written();
    let deadline = p.t0 + Duration::from_secs_f64(s.timeout_secs);
    let mut events = timeline(s);
    let mut samples = Vec::new();
    let mut tick = tokio::time::interval(SAMPLE_EVERY);
    let mut timed_out = false;
    loop {
        if events.is_empty() && p.all_ready() {
            break;
        }
        let next = events
            .front()
            .map(|(at, _)| p.t0 + Duration::from_secs_f64(*at));
        tokio::select! {
            _ = tokio::time::sleep_until(next.unwrap_or(deadline)), if next.is_some() => {
                if let Some((_, e)) = events.pop_front() {
                    p.apply(e).await;
                }
            }
            Some((host, result, generation)) = rx.recv() => p.finished(host, result, generation),
            _ = tick.tick() => samples.push(p.sample().await),
            _ = tokio::time::sleep_until(deadline) => { timed_out = true; break }
            _ = tokio::signal::ctrl_c() => { p.stop().await; bail!("interrupted") }
        }
    }
    let wall = p.t0.elapsed().as_secs_f64();
    samples.push(p.sample().await);
    p.stop().await;
    p.check_trees().await;
    let (hub_bytes, hub_requests) = hub.stats().await?;
    let cuts = std::mem::take(&mut p.cuts)
        .into_iter()
        .map(|(_, c)| c)
        .collect();
    Ok(PhaseReport::new(
        mode,
        p.results,
        samples,
        hub_bytes,
        hub_requests,
        timed_out,
        wall,
    )
    .with_partitions(cuts))
}

impl Phase<'_> {
    fn now(&self) -> f64 {
        self.t0.elapsed().as_secs_f64()
    }

    fn all_ready(&self) -> bool {
        (0..self.s.hosts.len())
            .all(|h| self.asked[h].is_none() || self.down[h] || self.results[h].ready_at.is_some())
    }

    /// Starts every agent, each bootstrapping from the first host and the two before it, then
    /// waits until each sees at least one peer.
    async fn start_cluster(&mut self) -> anyhow::Result<()> {
        for h in 0..self.s.hosts.len() {
            let boot = self.bootstrap_for(h);
            let (child, addr) = procs::start_agent(
                &self.o.bin,
                &self.hub.url,
                (&self.s.hosts[h], &self.sites[h]),
                &self.dirs[h],
                &boot,
            )
            .await?;
            self.agents[h] = Some(child);
            self.p2p[h] = Some(addr);
        }
        if self.s.hosts.len() < 2 {
            return Ok(());
        }
        let deadline = Instant::now() + FORM_TIMEOUT;
        for h in 0..self.s.hosts.len() {
            loop {
                let peers = self
                    .status(h)
                    .await
                    .map(|v| v["peers"].as_u64().unwrap_or(0));
                if peers.is_some_and(|p| p > 0) {
                    break;
                }
                if Instant::now() > deadline {
                    bail!(
                        "host {} saw no peer within {FORM_TIMEOUT:?}",
                        self.s.hosts[h].name
                    );
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        Ok(())
    }

    fn bootstrap_for(&self, h: usize) -> Vec<String> {
        let mut picks: Vec<String> = [0, h.saturating_sub(1), h.saturating_sub(2)]
            .into_iter()
            .chain(0..self.s.hosts.len())
            .filter(|&i| i != h && !self.down[i])
            .filter_map(|i| self.p2p[i].clone())
            .collect();
        picks.dedup();
        picks.truncate(3);
        picks
    }

    async fn status(&self, h: usize) -> Option<serde_json::Value> {
        let socket = self.dirs[h].socket();
        let call = crate::cli::ops::call::<serde_json::Value>(&socket, "GET", "/v1/status", None);
        tokio::time::timeout(PROBE_TIMEOUT, call).await.ok()?.ok()
    }

    async fn apply(&mut self, e: Event) {
        let now = self.now();
        match e {
            Event::Ask { host, model } => {
                self.asked[host] = Some(model);
                self.results[host].asked_at.get_or_insert(now);
                if !self.down[host] {
                    self.ask(host);
                }
            }
            Event::Kill(h) => {
                self.down[h] = true;
                self.results[h].events.push(format!("killed at {now:.1}s"));
                self.pull_cancel[h].cancel();
                if let Some(mut child) = self.agents[h].take() {
                    let _ = child.kill().await;
                    self.base[h] = std::array::from_fn(|i| self.base[h][i] + self.last[h][i]);
                    self.last[h] = [0; 4];
                }
            }
            Event::Restart(h) => {
                self.results[h]
                    .events
                    .push(format!("restarted at {now:.1}s"));
                if self.mode == Mode::Mesh {
                    let boot = self.bootstrap_for(h);
                    match procs::start_agent(
                        &self.o.bin,
                        &self.hub.url,
                        (&self.s.hosts[h], &self.sites[h]),
                        &self.dirs[h],
                        &boot,
                    )
                    .await
                    {
                        Ok((child, addr)) => {
                            self.agents[h] = Some(child);
                            self.p2p[h] = Some(addr);
                        }
                        Err(e) => {
                            self.results[h].error = Some(format!("restart failed: {e:#}"));
                            return;
                        }
                    }
                }
                self.down[h] = false;
                if self.asked[h].is_some() && self.results[h].ready_at.is_none() {
                    self.ask(h);
                }
            }
            Event::HubErrors(status) => {
                if let Err(e) = self.hub.set_errors(status).await {
                    tracing::warn!("cannot set Hub faults: {e:#}");
                }
            }
            Event::Cut(n) => self.cut(n, now),
            Event::Heal(n) => self.heal(n, now),
        }
    }

    fn zones_of(&self, n: usize) -> Vec<String> {
        match &self.s.faults[n].kind {
            FaultKind::Partition { zones, .. } => zones.clone(),
            _ => Vec::new(),
        }
    }

    /// Starts partition `n` (the fault's index): the network drops packets between its zones.
    fn cut(&mut self, n: usize, now: f64) {
        let zones = self.zones_of(n);
        let error = match self.net {
            Some(net) => net.cut(n, &zones).err().map(|e| format!("{e:#}")),
            None => Some("partitions need network = \"netns\"".into()),
        };
        if let Some(e) = &error {
            tracing::warn!("cannot cut {zones:?} apart: {e}");
        }
        self.cuts.push((
            n,
            Cut {
                zones,
                from_secs: now,
                until_secs: None,
                error,
            },
        ));
    }

    /// Ends partition `n`.
    fn heal(&mut self, n: usize, now: f64) {
        let zones = self.zones_of(n);
        let Some((_, cut)) = self
            .cuts
            .iter_mut()
            .find(|(k, c)| *k == n && c.until_secs.is_none())
        else {
            return;
        };
        cut.until_secs = Some(now);
        if let (Some(net), None) = (self.net, &cut.error) {
            if let Err(e) = net.heal(n, &zones) {
                cut.error = Some(format!("cannot heal: {e:#}"));
            }
        }
    }

    /// Starts host `h`'s pull of its model: through its agent, or standalone in the baseline.
    fn ask(&mut self, h: usize) {
        let Some(model) = self.asked[h].clone() else {
            return;
        };
        self.generation[h] += 1;
        let generation = self.generation[h];
        let tx = self.tx.clone();
        let cancel = CancellationToken::new();
        self.pull_cancel[h] = cancel.clone();
        match self.mode {
            Mode::Mesh => {
                let socket = self.dirs[h].socket();
                let body = serde_json::json!({ "repo": model }).to_string();
                tokio::spawn(async move {
                    let call = crate::cli::ops::request(&socket, "POST", "/v1/pull", Some(body));
                    let result = tokio::select! {
                        r = call => match r {
                            Ok((status, _)) if (200..300).contains(&status) => Ok(None),
                            Ok((status, body)) => Err(format!("{status}: {}", crate::cli::ops::error_message(&body))),
                            Err(e) => Err(format!("{e:#}")),
                        },
                        _ = cancel.cancelled() => Err("cancelled".into()),
                    };
                    let _ = tx.send((h, result, generation)).await;
                });
            }
            Mode::Baseline => {
                let spawned = procs::standalone_pull(
                    &self.o.bin,
                    &self.hub.url,
                    (&self.s.hosts[h], &self.sites[h]),
                    &self.dirs[h],
                    &model,
                );
                tokio::spawn(async move {
                    let result = match spawned {
                        Err(e) => Err(format!("{e:#}")),
                        Ok(mut pull) => tokio::select! {
                            status = pull.child.wait() => match status {
                                Ok(s) if s.success() => Ok(pull.bytes_from_hub()),
                                Ok(s) => Err(format!("the pull exited with {s}")),
                                Err(e) => Err(e.to_string()),
                            },
                            _ = cancel.cancelled() => {
                                let _ = pull.child.kill().await;
                                Err("cancelled".into())
                            }
                        },
                    };
                    let _ = tx.send((h, result, generation)).await;
                });
            }
        }
    }

    fn finished(&mut self, h: usize, result: Result<Option<u64>, String>, generation: u32) {
        if generation != self.generation[h] || self.down[h] {
            return; // an earlier life's pull, or one cut by a kill
        }
        match result {
            Ok(from_hub) => {
                self.results[h].ready_at = Some(self.now());
                self.results[h].error = None;
                if let Some(bytes) = from_hub {
                    self.results[h].bytes_from_hub = bytes;
                }
            }
            Err(e) => self.results[h].error = Some(e),
        }
    }

    async fn sample(&mut self) -> Sample {
        let t = self.now();
        if self.mode == Mode::Mesh {
            let live: Vec<usize> = (0..self.s.hosts.len())
                .filter(|&h| self.agents[h].is_some())
                .collect();
            let answers =
                futures_util::future::join_all(live.iter().map(|&h| self.status(h))).await;
            for (h, v) in live.into_iter().zip(answers) {
                if let Some(v) = v {
                    let n = |k: &str| v[k].as_u64().unwrap_or(0);
                    self.last[h] = [
                        n("bytes_from_hub"),
                        n("bytes_from_peers"),
                        n("bytes_served"),
                        n("bad_chunks"),
                    ];
                }
            }
            for h in 0..self.s.hosts.len() {
                let [hub, peers, served, bad] =
                    std::array::from_fn(|i| self.base[h][i] + self.last[h][i]);
                let r = &mut self.results[h];
                (r.bytes_from_hub, r.bytes_from_peers, r.bytes_served) = (hub, peers, served);
                r.bad_chunks = bad;
            }
        }
        let (hub_bytes, hub_requests) = self.hub.stats().await.unwrap_or_default();
        let cpu = probe::cpu_jiffies();
        let (busy, total) = (
            cpu.0.saturating_sub(self.cpu.0),
            cpu.1.saturating_sub(self.cpu.1),
        );
        self.cpu = cpu;
        Sample {
            t,
            hub_bytes,
            hub_requests,
            cpu_busy: if total > 0 {
                busy as f64 / total as f64
            } else {
                0.0
            },
            disk_written: probe::disk_written().saturating_sub(self.disk0),
            served: self.results.iter().map(|r| r.bytes_served).collect(),
            from_peers: self.results.iter().map(|r| r.bytes_from_peers).collect(),
            from_hub: self.results.iter().map(|r| r.bytes_from_hub).collect(),
            ready: self.results.iter().filter(|r| r.ready_at.is_some()).count(),
        }
    }

    async fn stop(&mut self) {
        let now = self.now();
        let open: Vec<usize> = self
            .cuts
            .iter()
            .filter(|(_, c)| c.until_secs.is_none())
            .map(|(n, _)| *n)
            .collect();
        for n in open {
            self.heal(n, now);
        }
        for c in &self.pull_cancel {
            c.cancel();
        }
        for child in self.agents.iter_mut().filter_map(Option::take) {
            let mut child = child;
            let _ = child.kill().await;
        }
        // Let the baseline pulls see their cancellation and be killed.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    /// Runs `hf_check.py offline` on every ready host's tree, when a Python is given.
    async fn check_trees(&mut self) {
        let Some(python) = self.o.python.clone() else {
            return;
        };
        for h in 0..self.s.hosts.len() {
            let (Some(model), Some(_)) = (self.asked[h].clone(), self.results[h].ready_at) else {
                continue;
            };
            let out = tokio::process::Command::new(&python)
                .arg(&self.o.hf_check)
                .arg("offline")
                .arg(self.dirs[h].cache())
                .args([model.as_str(), "--type", "model", "--revision", "main"])
                .env("HF_HUB_OFFLINE", "1")
                .kill_on_drop(true)
                .output();
            let ok = match tokio::time::timeout(Duration::from_secs(120), out).await {
                Ok(Ok(o)) => {
                    if !o.status.success() {
                        let why = String::from_utf8_lossy(&o.stdout)
                            .lines()
                            .take(3)
                            .collect::<Vec<_>>()
                            .join(" | ");
                        self.results[h]
                            .events
                            .push(format!("tree check failed: {why}"));
                    }
                    o.status.success()
                }
                _ => false,
            };
            self.results[h].tree_ok = Some(ok);
        }
    }
}
