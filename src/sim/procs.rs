//! The processes of a run: the hub emulator, `hfmesh agent`s and standalone `hfmesh pull`s, each a
//! child of the runner that dies with it (`kill_on_drop`), with a bounded wait for its first line.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{bail, Context as _};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use super::netns::Site;
use super::scenario::{Host, Model, Scenario};

/// Longest wait for a child's first line of stdout (the emulator hashes its synthetic files
/// before it prints).
pub const START_TIMEOUT: Duration = Duration::from_secs(120);
/// The cluster secret of simulated clusters.
pub const SIM_SECRET: &str = "hfmesh simulation cluster secret, not for production";

/// A command of the `hfmesh` binary at `bin` with no Hub, HF or hfmesh variable inherited, run in
/// `site`'s network namespace if it has one (`ip netns exec` execs it: same process).
pub fn hfmesh(bin: &Path, home: &Path, site: &Site) -> Command {
    let mut cmd = match &site.ns {
        Some(ns) => {
            let mut cmd = Command::new("ip");
            cmd.args(["netns", "exec", ns]).arg(bin);
            cmd
        }
        None => Command::new(bin),
    };
    for (k, _) in std::env::vars() {
        if k.starts_with("HF_") || k.starts_with("HFMESH_") || k.starts_with("RUNPOD_") {
            cmd.env_remove(k);
        }
    }
    cmd.env("HF_HOME", home)
        .stdin(Stdio::null())
        .kill_on_drop(true);
    cmd
}

/// The agents' log filter: `HFMESH_SIM_LOG` if set (e.g. `hfmesh::mesh=debug`), else `warn`.
fn agent_log_filter() -> String {
    std::env::var("HFMESH_SIM_LOG").unwrap_or_else(|_| "warn".to_owned())
}

/// Spawns `cmd` with stdout piped and stderr to `log`, and returns it with its first stdout line;
/// the rest of stdout is drained in the background.
pub async fn spawn_with_line(mut cmd: Command, log: &Path) -> anyhow::Result<(Child, String)> {
    let log_file =
        std::fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
    cmd.stdout(Stdio::piped()).stderr(log_file);
    let mut child = cmd.spawn().context("starting hfmesh")?;
    let stdout = child.stdout.take().context("no stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    let first = tokio::time::timeout(START_TIMEOUT, lines.next_line()).await;
    let line = match first {
        Ok(Ok(Some(line))) => line,
        _ => {
            let _ = child.kill().await;
            let tail = std::fs::read_to_string(log).unwrap_or_default();
            let tail: String = tail.lines().rev().take(3).collect::<Vec<_>>().join(" | ");
            bail!("a child did not start (see {}): {tail}", log.display());
        }
    };
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Ok((child, line))
}

/// Writes the emulator's root: one repo per model, `files` seeded synthetic files each.
pub fn write_hub_root(root: &Path, models: &[Model]) -> anyhow::Result<()> {
    std::fs::create_dir_all(root)?;
    let mut toml = String::new();
    for m in models {
        toml.push_str(&format!(
            "[[repo]]\nid = \"{}\"\n[[repo.branch]]\nname = \"main\"\n",
            m.id
        ));
        let per = m.size / u64::from(m.files);
        for i in 0..m.files {
            let size = if i + 1 == m.files {
                m.size - per * u64::from(m.files - 1)
            } else {
                per
            };
            toml.push_str(&format!(
                "[[repo.branch.synthetic]]\npath = \"model-{:05}-of-{:05}.safetensors\"\nsize = {size}\nseed = {}\n",
                i + 1,
                m.files,
                m.seed.wrapping_mul(1000).wrapping_add(u64::from(i)),
            ));
        }
    }
    std::fs::write(root.join("hub.toml"), toml)?;
    Ok(())
}

/// The running hub emulator.
pub struct Hub {
    /// Its base URL.
    pub url: String,
    _child: Child,
    http: reqwest::Client,
    base_faults: serde_json::Value,
}

impl Hub {
    /// Starts the emulator over `root` at `site` with the scenario's latency, and its bandwidth
    /// cap unless the site's link is shaped to it already.
    pub async fn start(bin: &Path, work: &Path, s: &Scenario, site: &Site) -> anyhow::Result<Hub> {
        let root = work.join("hub-root");
        write_hub_root(&root, &s.models)?;
        let mut cmd = hfmesh(bin, &work.join("hub-home"), site);
        cmd.arg("hub-emulator")
            .arg("--root")
            .arg(&root)
            .args(["--listen", &format!("{}:0", site.ip)]);
        let (child, url) = spawn_with_line(cmd, &work.join("hub.log")).await?;
        let throttle: Vec<serde_json::Value> = (s.hub_throttle_429 > 0.0)
            .then(|| serde_json::json!({ "status": 429, "retry_after_secs": 1, "probability": s.hub_throttle_429 }))
            .into_iter()
            .collect();
        let base_faults = serde_json::json!({
            "bandwidth_bps": (!site.shaped()).then_some(s.hub_bandwidth),
            "latency_ms": (s.hub_latency_ms > 0).then_some(s.hub_latency_ms),
            "errors": throttle,
            "seed": s.seed,
        });
        let hub = Hub {
            url: url.trim().to_string(),
            _child: child,
            http: reqwest::Client::new(),
            base_faults,
        };
        hub.set_errors(None).await?;
        Ok(hub)
    }

    /// Replaces the injected errors: every request answered with `status` (and `Retry-After: 1`
    /// for 429), or back to the scenario's own (its steady 429 share, if any). The bandwidth cap
    /// and latency stay.
    pub async fn set_errors(&self, status: Option<u16>) -> anyhow::Result<()> {
        let mut faults = self.base_faults.clone();
        if let Some(status) = status {
            let retry = (status == 429).then_some(1);
            faults["errors"] = serde_json::json!([{ "status": status, "retry_after_secs": retry }]);
        }
        let r = self
            .http
            .post(format!("{}/_emulator/faults", self.url))
            .header("content-type", "application/json")
            .body(faults.to_string())
            .send()
            .await?;
        if !r.status().is_success() {
            bail!("the emulator refused the faults: {}", r.status());
        }
        Ok(())
    }

    /// Zeroes the emulator's counters (between the phases of a run).
    pub async fn reset(&self) -> anyhow::Result<()> {
        self.http
            .post(format!("{}/_emulator/reset", self.url))
            .send()
            .await?
            .error_for_status()?;
        Ok(())
    }

    /// `(bytes_served, requests)` so far.
    pub async fn stats(&self) -> anyhow::Result<(u64, u64)> {
        let body = self
            .http
            .get(format!("{}/_emulator/stats", self.url))
            .timeout(Duration::from_secs(2))
            .send()
            .await?
            .bytes()
            .await?;
        let v: serde_json::Value = serde_json::from_slice(&body)?;
        let n = |k: &str| v[k].as_u64().unwrap_or(0);
        Ok((n("bytes_served"), n("requests")))
    }
}

/// Where a host keeps its files in one phase.
#[derive(Debug, Clone)]
pub struct HostDirs {
    /// The host's folder.
    pub root: PathBuf,
}

impl HostDirs {
    /// `work/<host>`.
    pub fn new(work: &Path, host: &Host) -> HostDirs {
        HostDirs {
            root: work.join(&host.name),
        }
    }
    /// The HF cache tree.
    pub fn cache(&self) -> PathBuf {
        self.root.join("hub")
    }
    /// The agent's control socket.
    pub fn socket(&self) -> PathBuf {
        self.root.join("agent.sock")
    }
}

/// Starts `host`'s agent at `site`, bootstrapping from `bootstrap`; returns it and its libp2p
/// address. On loopback its caps are its own token buckets; at a shaped site, the link's.
pub async fn start_agent(
    bin: &Path,
    hub: &str,
    (host, site): (&Host, &Site),
    dirs: &HostDirs,
    bootstrap: &[String],
) -> anyhow::Result<(Child, String)> {
    std::fs::create_dir_all(&dirs.root)?;
    let _ = std::fs::remove_file(dirs.socket());
    let mut cmd = hfmesh(bin, &dirs.root.join("home"), site);
    let listen = format!("{}:0", site.ip);
    cmd.arg("agent")
        .arg("--cache-dir")
        .arg(dirs.cache())
        .arg("--state-dir")
        .arg(dirs.root.join("state"))
        .arg("--control-socket")
        .arg(dirs.socket())
        .args(["--endpoint", hub, "--metrics-listen", "off"])
        .args(["--p2p-listen", &listen, "--quic-listen", &listen])
        .args(["--zone", &host.zone, "--rack", &host.rack])
        .env("HFMESH_CLUSTER_SECRET", SIM_SECRET)
        .env("HFMESH_LOG", agent_log_filter());
    if !site.shaped() {
        cmd.args(["--max-upload-rate", &host.upload.to_string()])
            .args(["--max-download-rate", &host.download.to_string()]);
    }
    if !bootstrap.is_empty() {
        cmd.arg("--bootstrap").arg(bootstrap.join(","));
    }
    if host.corrupt {
        cmd.env(crate::agent::fault::CORRUPT_CHUNKS_VAR, "1");
    }
    let log = dirs.root.join(format!("agent-{}.log", unique()));
    let (child, line) = spawn_with_line(cmd, &log).await?;
    let p2p = line
        .split_whitespace()
        .find_map(|w| w.strip_prefix("p2p="))
        .with_context(|| format!("unexpected first line of an agent: {line:?}"))?
        .to_string();
    Ok((child, p2p))
}

/// A standalone pull of `model` into the host's cache at the host's download rate (the baseline):
/// its token bucket on loopback, its link at a shaped site.
pub fn standalone_pull(
    bin: &Path,
    hub: &str,
    (host, site): (&Host, &Site),
    dirs: &HostDirs,
    model: &str,
) -> anyhow::Result<StandalonePull> {
    std::fs::create_dir_all(&dirs.root)?;
    let name = format!("pull-{}", unique());
    let log = std::fs::File::create(dirs.root.join(format!("{name}.log")))?;
    let report = dirs.root.join(format!("{name}.json"));
    let mut cmd = hfmesh(bin, &dirs.root.join("home"), site);
    cmd.args([
        "pull",
        model,
        "--standalone",
        "--quiet",
        "--json",
        "--endpoint",
        hub,
    ])
    .arg("--cache-dir")
    .arg(dirs.cache())
    .stdout(std::fs::File::create(&report)?)
    .stderr(log);
    if !site.shaped() {
        cmd.args(["--max-download-rate", &host.download.to_string()]);
    }
    Ok(StandalonePull {
        child: cmd.spawn()?,
        report,
    })
}

/// A running `hfmesh pull --standalone`, and where its JSON report goes.
pub struct StandalonePull {
    pub child: Child,
    report: PathBuf,
}

impl StandalonePull {
    /// The bytes the pull took from the Hub, from its report (once it has exited successfully).
    pub fn bytes_from_hub(&self) -> Option<u64> {
        let text = std::fs::read_to_string(&self.report).ok()?;
        let v: serde_json::Value = serde_json::from_str(text.lines().last()?).ok()?;
        v["bytes_fetched"].as_u64()
    }
}

fn unique() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}
