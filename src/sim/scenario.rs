//! A simulation scenario as written in TOML (`simulations/scenarios/*.toml`), parsed without I/O
//! and validated into a [`Scenario`] with every host expanded and every time in seconds. Each
//! mistake is one sentence that names the key. The format is documented in
//! `simulations/README.md`.

use serde::Deserialize;

use crate::config::units::parse_size;

/// Most hosts a scenario may start (this runner puts them all on one machine).
pub const MAX_HOSTS: usize = 64;
/// Most files a model may have.
pub const MAX_FILES: u32 = 256;
/// Longest run a scenario may ask for, in seconds.
pub const MAX_TIMEOUT_SECS: f64 = 3600.0;

/// A scenario mistake: one sentence.
#[derive(Debug, thiserror::Error, PartialEq)]
#[error("{0}")]
pub struct ScenarioError(pub String);

fn bad<T>(message: impl Into<String>) -> Result<T, ScenarioError> {
    Err(ScenarioError(message.into()))
}

/// A size as written: bytes or `"512MiB"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum Size {
    Bytes(u64),
    Text(String),
}

fn size(key: &str, value: &Size) -> Result<u64, ScenarioError> {
    match value {
        Size::Bytes(0) => bad(format!("`{key}` must be more than 0 bytes")),
        Size::Bytes(b) => Ok(*b),
        Size::Text(t) => {
            parse_size(t).map_err(|why| ScenarioError(format!("`{key}` = {t:?}: {why}")))
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawScenario {
    name: String,
    #[serde(default)]
    seed: u64,
    timeout_secs: f64,
    #[serde(default)]
    network: Network,
    hub: RawHub,
    model: Vec<RawModel>,
    hosts: Vec<RawHosts>,
    #[serde(default)]
    arrival: Vec<RawArrival>,
    #[serde(default)]
    fault: Vec<RawFault>,
    targets: Option<Targets>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHub {
    bandwidth: Size,
    #[serde(default)]
    latency_ms: u64,
    #[serde(default)]
    throttle_429: f64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawModel {
    id: String,
    size: Size,
    #[serde(default = "one")]
    files: u32,
    #[serde(default)]
    seed: u64,
}

fn one() -> u32 {
    1
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHosts {
    count: usize,
    zone: String,
    #[serde(default = "one_rack")]
    racks: usize,
    upload: Size,
    download: Size,
    #[serde(default)]
    corrupt: bool,
}

fn one_rack() -> usize {
    1
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawArrival {
    model: String,
    /// Host indices (0-based); absent: every host.
    hosts: Option<Vec<usize>>,
    pattern: String,
    #[serde(default)]
    at_secs: f64,
    every_secs: Option<f64>,
    rate_per_sec: Option<f64>,
}

impl RawArrival {
    fn pattern(&self, n: usize) -> Result<Pattern, ScenarioError> {
        let at_secs = self.at_secs;
        let need = |v: Option<f64>, key: &str| {
            v.ok_or_else(|| ScenarioError(format!("arrival {n} ({}) needs `{key}`", self.pattern)))
        };
        Ok(match self.pattern.as_str() {
            "all-at-once" => Pattern::AllAtOnce { at_secs },
            "staggered" => Pattern::Staggered {
                at_secs,
                every_secs: need(self.every_secs, "every_secs")?,
            },
            "poisson" => Pattern::Poisson {
                at_secs,
                rate_per_sec: need(self.rate_per_sec, "rate_per_sec")?,
            },
            other => {
                return bad(format!(
                    "arrival {n} has pattern {other:?}; use all-at-once, staggered or poisson"
                ))
            }
        })
    }
}

/// When the hosts of an arrival ask for their model.
#[derive(Debug, Clone, PartialEq)]
pub enum Pattern {
    /// Every host at `at_secs`.
    AllAtOnce {
        /// When.
        at_secs: f64,
    },
    /// Host `i` of the list at `at_secs + i * every_secs`.
    Staggered {
        /// When the first asks.
        at_secs: f64,
        /// Gap between two hosts.
        every_secs: f64,
    },
    /// A Poisson process of `rate_per_sec` from `at_secs`, drawn from the scenario's seed.
    Poisson {
        /// When the process starts.
        at_secs: f64,
        /// Mean arrivals per second.
        rate_per_sec: f64,
    },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFault {
    at_secs: f64,
    kind: String,
    host: Option<usize>,
    duration_secs: Option<f64>,
    zones: Option<Vec<String>>,
}

impl RawFault {
    fn kind(&self) -> Result<FaultKind, ScenarioError> {
        let k = &self.kind;
        let need = |present: bool, key: &str| {
            if present {
                Ok(())
            } else {
                bad(format!("a {k} fault needs `{key}`"))
            }
        };
        let host = || {
            need(self.host.is_some(), "host")?;
            Ok::<_, ScenarioError>(self.host.unwrap_or(0))
        };
        let duration_secs = || {
            need(self.duration_secs.is_some(), "duration_secs")?;
            Ok::<_, ScenarioError>(self.duration_secs.unwrap_or(0.0))
        };
        Ok(match k.as_str() {
            "kill" => FaultKind::Kill { host: host()? },
            "restart" => FaultKind::Restart { host: host()? },
            "hub-outage" => FaultKind::HubOutage {
                duration_secs: duration_secs()?,
            },
            "hub-429" => FaultKind::Hub429 {
                duration_secs: duration_secs()?,
            },
            "partition" => {
                need(self.zones.is_some(), "zones")?;
                FaultKind::Partition {
                    zones: self.zones.clone().unwrap_or_default(),
                    duration_secs: self.duration_secs,
                }
            }
            other => {
                return bad(format!(
                    "fault kind {other:?} is unknown; use kill, restart, hub-outage, hub-429 or partition"
                ))
            }
        })
    }
}

/// What happens at a fault's time.
#[derive(Debug, Clone, PartialEq)]
pub enum FaultKind {
    /// SIGKILL the host's agent (or its standalone pull in the baseline).
    Kill {
        /// Host index.
        host: usize,
    },
    /// Start the host's agent again on the same cache and state, and ask for its model again.
    Restart {
        /// Host index.
        host: usize,
    },
    /// The Hub answers every request with 503 for `duration_secs`.
    HubOutage {
        /// How long.
        duration_secs: f64,
    },
    /// The Hub answers every request with 429 (`Retry-After: 1`) for `duration_secs`.
    Hub429 {
        /// How long.
        duration_secs: f64,
    },
    /// A partition between zones: no packet passes between hosts of two different zones of the
    /// list (hosts within a zone, and every host with the Hub, still talk). Needs
    /// `network = "netns"`.
    Partition {
        /// Two or more zones, each cut off from the others of the list.
        zones: Vec<String>,
        /// How long (`None`: until the phase ends).
        duration_secs: Option<f64>,
    },
}

/// Where the hosts' processes run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Network {
    /// Every process on the runner's loopback; per-host caps are the agents' token buckets.
    #[default]
    Loopback,
    /// Each host (and the Hub) in its own network namespace, joined to a bridge by a veth pair
    /// whose two ends are htb-shaped at the host's upload and download caps.
    Netns,
}

impl Network {
    /// `loopback` or `netns`.
    pub fn as_str(self) -> &'static str {
        match self {
            Network::Loopback => "loopback",
            Network::Netns => "netns",
        }
    }
}

/// Pass marks of the headline figures, checked in the report.
#[derive(Debug, Clone, PartialEq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct Targets {
    /// Most Hub bytes ÷ model bytes (mesh run).
    pub hub_egress_ratio: Option<f64>,
    /// Most time-to-all-ready ÷ one host alone from the Hub (mesh run).
    pub all_ready_ratio: Option<f64>,
}

/// A validated scenario.
#[derive(Debug, Clone, PartialEq)]
pub struct Scenario {
    /// Name, for the report.
    pub name: String,
    /// Seed of every random draw (Poisson arrivals).
    pub seed: u64,
    /// The run stops by itself after this many seconds of cluster time.
    pub timeout_secs: f64,
    /// Loopback or one network namespace per host.
    pub network: Network,
    /// The Hub's shared egress cap, bytes per second.
    pub hub_bandwidth: u64,
    /// Added latency of every Hub answer.
    pub hub_latency_ms: u64,
    /// Fraction of Hub requests answered 429 (`Retry-After: 1`) all along: a steady rate limit.
    pub hub_throttle_429: f64,
    /// The models the Hub serves.
    pub models: Vec<Model>,
    /// Every host, expanded from the groups, in index order.
    pub hosts: Vec<Host>,
    /// Who asks for what, when; sorted by time.
    pub asks: Vec<Ask>,
    /// Faults, sorted by time.
    pub faults: Vec<Fault>,
    /// Pass marks.
    pub targets: Option<Targets>,
}

/// A synthetic model: `files` files of (about) `size / files` bytes each.
#[derive(Debug, Clone, PartialEq)]
pub struct Model {
    /// `org/name`.
    pub id: String,
    /// Total bytes.
    pub size: u64,
    /// Number of files.
    pub files: u32,
    /// Seed of the content.
    pub seed: u64,
}

/// One host.
#[derive(Debug, Clone, PartialEq)]
pub struct Host {
    /// `h00`, `h01`, …
    pub name: String,
    /// Zone label.
    pub zone: String,
    /// Rack label.
    pub rack: String,
    /// Upload cap, bytes per second.
    pub upload: u64,
    /// Download cap, bytes per second.
    pub download: u64,
    /// Serves corrupted chunks (the corrupting-peer fault).
    pub corrupt: bool,
}

/// Host `host` asks for `model` at `at_secs`.
#[derive(Debug, Clone, PartialEq)]
pub struct Ask {
    /// When.
    pub at_secs: f64,
    /// Host index.
    pub host: usize,
    /// Model id.
    pub model: String,
}

/// A fault at a time.
#[derive(Debug, Clone, PartialEq)]
pub struct Fault {
    /// When.
    pub at_secs: f64,
    /// What.
    pub kind: FaultKind,
}

impl Scenario {
    /// Parses and validates a scenario's text.
    pub fn parse(text: &str) -> Result<Scenario, ScenarioError> {
        let raw: RawScenario = toml::from_str(text).map_err(|e| {
            ScenarioError(format!("the scenario is not valid: {}", e.message().trim()))
        })?;
        raw.validate()
    }
}

fn time(key: &str, v: f64) -> Result<f64, ScenarioError> {
    if v.is_finite() && v >= 0.0 {
        Ok(v)
    } else {
        bad(format!(
            "`{key}` must be a number of seconds of 0 or more, not {v}"
        ))
    }
}

impl RawScenario {
    fn validate(self) -> Result<Scenario, ScenarioError> {
        if !(self.timeout_secs > 0.0 && self.timeout_secs <= MAX_TIMEOUT_SECS) {
            return bad(format!(
                "`timeout_secs` must be more than 0 and at most {MAX_TIMEOUT_SECS}"
            ));
        }
        let hub_bandwidth = size("hub.bandwidth", &self.hub.bandwidth)?;
        if !(0.0..1.0).contains(&self.hub.throttle_429) {
            return bad("`hub.throttle_429` must be a fraction from 0 up to (not including) 1");
        }
        let mut models = Vec::new();
        for m in &self.model {
            if crate::repo::RepoId::parse(&m.id).is_err() || !m.id.contains('/') {
                return bad(format!("model id {:?} must be `org/name`", m.id));
            }
            if models.iter().any(|x: &Model| x.id == m.id) {
                return bad(format!("model {:?} is declared twice", m.id));
            }
            if m.files == 0 || m.files > MAX_FILES {
                return bad(format!("model {:?} must have 1 to {MAX_FILES} files", m.id));
            }
            let total = size("model.size", &m.size)?;
            if total < u64::from(m.files) {
                return bad(format!(
                    "model {:?} is smaller than one byte per file",
                    m.id
                ));
            }
            models.push(Model {
                id: m.id.clone(),
                size: total,
                files: m.files,
                seed: m.seed,
            });
        }
        if models.is_empty() {
            return bad("a scenario needs at least one [[model]]");
        }
        let hosts = expand_hosts(&self.hosts)?;
        let mut asks = Vec::new();
        for (n, a) in self.arrival.iter().enumerate() {
            if !models.iter().any(|m| m.id == a.model) {
                return bad(format!(
                    "arrival {n} asks for {:?}, which no [[model]] declares",
                    a.model
                ));
            }
            let who: Vec<usize> = a
                .hosts
                .clone()
                .unwrap_or_else(|| (0..hosts.len()).collect());
            if let Some(h) = who.iter().find(|&&h| h >= hosts.len()) {
                return bad(format!(
                    "arrival {n} names host {h}, but there are {} hosts",
                    hosts.len()
                ));
            }
            let times = arrival_times(&a.pattern(n)?, who.len(), self.seed.wrapping_add(n as u64))?;
            asks.extend(who.iter().zip(times).map(|(&host, at_secs)| Ask {
                at_secs,
                host,
                model: a.model.clone(),
            }));
        }
        if asks.is_empty() {
            return bad("a scenario needs at least one [[arrival]]");
        }
        asks.sort_by(|a, b| a.at_secs.total_cmp(&b.at_secs));
        let mut faults = Vec::new();
        for f in self.fault {
            time("fault.at_secs", f.at_secs)?;
            let kind = f.kind()?;
            check_fault(&kind, &hosts)?;
            faults.push(Fault {
                at_secs: f.at_secs,
                kind,
            });
        }
        faults.sort_by(|a, b| a.at_secs.total_cmp(&b.at_secs));
        let s = Scenario {
            name: self.name,
            seed: self.seed,
            timeout_secs: self.timeout_secs,
            network: self.network,
            hub_bandwidth,
            hub_latency_ms: self.hub.latency_ms,
            hub_throttle_429: self.hub.throttle_429,
            models,
            hosts,
            asks,
            faults,
            targets: self.targets,
        };
        s.check_network()?;
        Ok(s)
    }
}

fn expand_hosts(groups: &[RawHosts]) -> Result<Vec<Host>, ScenarioError> {
    let mut hosts = Vec::new();
    for g in groups {
        if g.count == 0 || g.racks == 0 {
            return bad(format!(
                "hosts of zone {:?} need `count` and `racks` of at least 1",
                g.zone
            ));
        }
        if g.zone.trim().is_empty() {
            return bad("every [[hosts]] group needs a non-empty `zone`");
        }
        let (upload, download) = (
            size("hosts.upload", &g.upload)?,
            size("hosts.download", &g.download)?,
        );
        for i in 0..g.count {
            hosts.push(Host {
                name: format!("h{:02}", hosts.len()),
                zone: g.zone.clone(),
                rack: format!("{}-r{}", g.zone, i % g.racks),
                upload,
                download,
                corrupt: g.corrupt,
            });
        }
    }
    if hosts.is_empty() || hosts.len() > MAX_HOSTS {
        return bad(format!(
            "a scenario needs 1 to {MAX_HOSTS} hosts, not {}",
            hosts.len()
        ));
    }
    Ok(hosts)
}

fn check_fault(kind: &FaultKind, hosts: &[Host]) -> Result<(), ScenarioError> {
    let n = hosts.len();
    match kind {
        FaultKind::Kill { host } | FaultKind::Restart { host } if *host >= n => bad(format!(
            "a fault names host {host}, but there are {n} hosts"
        )),
        FaultKind::HubOutage { duration_secs } | FaultKind::Hub429 { duration_secs } => {
            time("fault.duration_secs", *duration_secs).map(drop)
        }
        FaultKind::Partition {
            zones,
            duration_secs,
        } => {
            if let Some(d) = duration_secs {
                time("fault.duration_secs", *d)?;
            }
            if let Some(z) = zones.iter().find(|z| !hosts.iter().any(|h| &h.zone == *z)) {
                return bad(format!(
                    "a partition names zone {z:?}, which no [[hosts]] group has"
                ));
            }
            let mut distinct = zones.clone();
            distinct.sort();
            distinct.dedup();
            if distinct.len() < 2 || distinct.len() != zones.len() {
                return bad("a partition's `zones` must list two or more different zones");
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

impl Scenario {
    /// The zones of the hosts, in order of first appearance.
    pub fn zones(&self) -> Vec<String> {
        let mut zones: Vec<String> = Vec::new();
        for h in &self.hosts {
            if !zones.contains(&h.zone) {
                zones.push(h.zone.clone());
            }
        }
        zones
    }

    /// The scenario played on `network` instead of its own (`hfmesh simulate --network`).
    pub fn with_network(mut self, network: Network) -> Result<Scenario, ScenarioError> {
        self.network = network;
        self.check_network()?;
        Ok(self)
    }

    fn check_network(&self) -> Result<(), ScenarioError> {
        let partition = self
            .faults
            .iter()
            .any(|f| matches!(f.kind, FaultKind::Partition { .. }));
        if partition && self.network == Network::Loopback {
            return bad(
                "partition faults need `network = \"netns\"`: on loopback every host shares one network and cannot be cut off",
            );
        }
        Ok(())
    }
}

/// The times of `n` arrivals of `pattern`; Poisson gaps are drawn from `seed`.
pub fn arrival_times(pattern: &Pattern, n: usize, seed: u64) -> Result<Vec<f64>, ScenarioError> {
    use rand::{Rng, SeedableRng};
    Ok(match *pattern {
        Pattern::AllAtOnce { at_secs } => vec![time("arrival.at_secs", at_secs)?; n],
        Pattern::Staggered {
            at_secs,
            every_secs,
        } => {
            let (at, every) = (
                time("arrival.at_secs", at_secs)?,
                time("arrival.every_secs", every_secs)?,
            );
            (0..n).map(|i| at + i as f64 * every).collect()
        }
        Pattern::Poisson {
            at_secs,
            rate_per_sec,
        } => {
            let at = time("arrival.at_secs", at_secs)?;
            if !(rate_per_sec.is_finite() && rate_per_sec > 0.0) {
                return bad("`arrival.rate_per_sec` must be more than 0");
            }
            let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
            let mut t = at;
            (0..n)
                .map(|_| {
                    let u: f64 = rng.random_range(f64::EPSILON..1.0);
                    t += -u.ln() / rate_per_sec;
                    t
                })
                .collect()
        }
    })
}

#[cfg(test)]
#[path = "scenario_tests.rs"]
mod tests;
