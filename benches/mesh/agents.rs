//! Real `hfmesh` processes: a hub emulator serving a synthetic model, agent A that holds it, and
//! fresh agents B that pull it from A over QUIC on loopback (timed from the start of
//! `hfmesh pull` to the snapshot being visible), with their peak RSS; then warm pulls.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::net::Baselines;
use crate::report::{best, mbps, Report, Value};
use crate::Settings;

const SECRET: &str = "benchmark cluster secret, 32 byte";
const MODEL: &str = "acme/big";
const FILE: &str = "model-00001-of-00001.safetensors";

/// A child process whose stdout lines arrive on a channel; killed on drop.
struct Proc {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Proc {
    fn spawn(mut cmd: Command) -> Proc {
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("hfmesh starts");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        Proc { child, lines }
    }

    /// The next stdout line that starts with `prefix` (bounded wait).
    fn line(&self, prefix: &str, within: Duration) -> String {
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) if l.starts_with(prefix) => return l,
                Ok(_) => {}
                Err(_) => panic!("no `{prefix}` line from hfmesh within {within:?}"),
            }
        }
    }

    /// Peak resident set (VmHWM) in MiB.
    fn peak_rss_mib(&self) -> f64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
            .map_or(f64::NAN, |kb| kb / 1024.0)
    }

    /// Resets the peak resident set to the current one (Linux `clear_refs` 5).
    /// Bytes this process has read from storage so far (`read_bytes` of `/proc/PID/io`).
    fn read_bytes(&self) -> u64 {
        std::fs::read_to_string(format!("/proc/{}/io", self.child.id()))
            .ok()
            .and_then(|io| {
                io.lines()
                    .find_map(|l| l.strip_prefix("read_bytes: ")?.trim().parse().ok())
            })
            .unwrap_or(0)
    }

    fn reset_peak(&self) {
        let _ = std::fs::write(format!("/proc/{}/clear_refs", self.child.id()), "5");
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `hfmesh` with no Hub or hfmesh variables from this environment and a private `HF_HOME`.
/// Reads `blob` into the page cache (`cached`), or drops it from there (after a sync, so that
/// nothing is left dirty).
fn set_cached(blob: &Path, cached: bool) {
    let f = std::fs::File::open(blob).expect("the seed's blob");
    if cached {
        std::io::copy(&mut &f, &mut std::io::sink()).expect("read the blob");
    } else {
        f.sync_all().expect("sync the blob");
        rustix::fs::fadvise(&f, 0, None, rustix::fs::Advice::DontNeed).expect("fadvise");
    }
}

fn hfmesh(home: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_hfmesh"));
    for (k, _) in std::env::vars() {
        if ["HF_", "HFMESH_", "RUNPOD_", "HUGGING"]
            .iter()
            .any(|p| k.starts_with(p))
        {
            cmd.env_remove(k);
        }
    }
    cmd.env("HF_HOME", home);
    // `HFMESH_BENCH_AGENT_LOG` becomes the processes' `HFMESH_LOG` (for example
    // `hfmesh::mesh::pull=debug` logs each blob's fetch and verify time).
    if let Ok(filter) = std::env::var("HFMESH_BENCH_AGENT_LOG") {
        cmd.env("HFMESH_LOG", filter);
    }
    cmd
}

/// An agent under `dir`.
struct Agent {
    proc: Proc,
    dir: PathBuf,
    p2p: String,
}

impl Agent {
    fn start(dir: PathBuf, hub: &str, extra: &[&str]) -> Agent {
        let mut cmd = hfmesh(&dir.join("home"));
        cmd.args(["agent", "--endpoint", hub])
            .args([
                "--p2p-listen",
                "127.0.0.1:0",
                "--quic-listen",
                "127.0.0.1:0",
            ])
            .args(["--metrics-listen", "off", "--zone", "z1", "--rack", "r1"])
            .arg("--cache-dir")
            .arg(dir.join("hub"))
            .arg("--state-dir")
            .arg(dir.join("state"))
            .arg("--control-socket")
            .arg(dir.join("agent.sock"))
            .args(extra)
            .env("HFMESH_CLUSTER_SECRET", SECRET);
        let proc = Proc::spawn(cmd);
        let first = proc.line("hfmesh agent", Duration::from_secs(60));
        let p2p = first
            .split_whitespace()
            .find_map(|w| w.strip_prefix("p2p="))
            .expect("p2p= in the agent's first line")
            .to_string();
        Agent { proc, dir, p2p }
    }

    fn socket(&self) -> PathBuf {
        self.dir.join("agent.sock")
    }

    /// `hfmesh <args> --socket <ours>`, its stdout if it succeeded.
    fn cli(&self, args: &[&str]) -> Option<String> {
        let out = hfmesh(&self.dir.join("cli-home"))
            .args(args)
            .arg("--socket")
            .arg(self.socket())
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Waits (bounded) until the DHT shows this agent a provider of the model.
    fn wait_for_provider(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let who = self.cli(&["who-has", MODEL, "--json"]).unwrap_or_default();
            let found = serde_json::from_str::<serde_json::Value>(&who)
                .ok()
                .and_then(|v| v["providers"].as_array().map(|p| !p.is_empty()))
                .unwrap_or(false);
            if found {
                return;
            }
            assert!(Instant::now() < deadline, "no provider of {MODEL} in time");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// The hub emulator and agent A holding the model.
pub struct Cluster {
    work: PathBuf,
    hub_url: String,
    seed: Agent,
    /// The model's blob in A's cache (complete, page-cached).
    pub blob: PathBuf,
    _hub: Proc,
}

fn write_hub_root(root: &Path, size: u64) {
    std::fs::create_dir_all(root).expect("hub root");
    let toml = format!(
        "[[repo]]\nid = \"{MODEL}\"\n[[repo.branch]]\nname = \"main\"\n\
         [[repo.branch.synthetic]]\npath = \"{FILE}\"\nsize = {size}\nseed = 7\n"
    );
    std::fs::write(root.join("hub.toml"), toml).expect("hub.toml");
}

impl Cluster {
    /// Starts the emulator and agent A, which pulls the model from the emulator (timed, for
    /// information: that path is HTTP from one local process).
    pub fn start(settings: &Settings, report: &mut Report) -> Cluster {
        let work = std::fs::canonicalize(&settings.work).expect("work dir");
        write_hub_root(&work.join("hub-root"), settings.size);
        let mut cmd = hfmesh(&work.join("hub-home"));
        cmd.args(["hub-emulator", "--listen", "127.0.0.1:0", "--root"])
            .arg(work.join("hub-root"));
        let hub = Proc::spawn(cmd);
        let hub_url = hub
            .line("http", Duration::from_secs(300))
            .trim()
            .to_string();
        let t = Instant::now();
        let seed = Agent::start(work.join("a"), &hub_url, &["--model", MODEL]);
        let ready = seed.proc.line("ready ", Duration::from_secs(1800));
        let elapsed = t.elapsed();
        let snapshot = PathBuf::from(ready.split_whitespace().nth(2).expect("ready path"));
        let blob = std::fs::canonicalize(snapshot.join(FILE)).expect("the blob is there");
        report.add(
            "Hub",
            Value {
                what: "agent preload from the hub emulator (HTTP)".into(),
                value: mbps(settings.size, elapsed),
                unit: "MB/s",
            },
            None,
            "once, includes agent start; for information",
        );
        Cluster {
            work,
            hub_url,
            seed,
            blob,
            _hub: hub,
        }
    }

    /// Fresh agents B pull the model from A, `settings.repeat` times with A's blob in the page
    /// cache and as many times with it on the disk only.
    ///
    /// Agent A wrote its blob with `O_DIRECT`, and this VM's page cache gives pages back to the
    /// host within seconds, so how much of the blob A serves from memory is otherwise left to
    /// chance. A seed that serves a model reads it once and then serves it from the cache (a
    /// storm asks for the same chunks many times); that is the first row. In the second, A
    /// reads every chunk from the disk that B writes to: on separate hosts those are two disks,
    /// here one (see the file-copy baseline), so that row says what this machine's disk allows.
    pub fn pull_from_peer(&self, settings: &Settings, base: &Baselines, report: &mut Report) {
        let mut rss = (Vec::new(), Vec::new());
        let mut rates = [Vec::new(), Vec::new()];
        let mut seed_reads = [Vec::new(), Vec::new()];
        for i in 0..settings.repeat {
            for (k, cached) in [(0, true), (1, false)] {
                let dir = self.work.join(format!("b{i}-{k}"));
                let b = Agent::start(dir.clone(), &self.hub_url, &["--bootstrap", &self.seed.p2p]);
                b.wait_for_provider();
                self.seed.proc.reset_peak();
                set_cached(&self.blob, cached);
                let read0 = self.seed.proc.read_bytes();
                let t = Instant::now();
                let out = b
                    .cli(&["pull", MODEL, "--quiet", "--json"])
                    .expect("the pull through agent B succeeds");
                let elapsed = t.elapsed();
                seed_reads[k].push((self.seed.proc.read_bytes() - read0) as f64 / 1e6);
                let json: serde_json::Value = out
                    .lines()
                    .last()
                    .and_then(|l| serde_json::from_str(l).ok())
                    .expect("a JSON report");
                let from_peers = json["bytes_from_peers"].as_u64().unwrap_or(0);
                assert_eq!(from_peers, settings.size, "every byte came from the peer");
                rates[k].push(mbps(settings.size, elapsed));
                rss.0.push(b.proc.peak_rss_mib());
                rss.1.push(self.seed.proc.peak_rss_mib());
                drop(b);
                let _ = std::fs::remove_dir_all(&dir);
            }
        }
        let mb = |what: &str, value: f64| Value {
            what: what.into(),
            value,
            unit: "MB/s",
        };
        let reads = |v: &[f64]| {
            v.iter()
                .map(|r| format!("{r:.0}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let (warm, note) = best(&rates[0]);
        let into_tree = mb(
            "agent → agent over QUIC into the verified tree, seed's blob in the page cache",
            warm,
        );
        for (what, baseline) in [
            ("raw TCP on loopback (1 stream)", base.tcp),
            (
                "QUIC transport alone (no disk, no hashing)",
                base.quic_transport,
            ),
        ] {
            report.add(
                "Transfer",
                into_tree.clone(),
                Some(mb(what, baseline)),
                format!(
                    "pull {note}; MB the seed read from disk: {}",
                    reads(&seed_reads[0])
                ),
            );
        }
        let (cold, note) = best(&rates[1]);
        report.add(
            "Transfer",
            mb(
                "agent → agent over QUIC into the verified tree, seed's blob on disk only",
                cold,
            ),
            Some(mb("file copy on the same disk", base.file_copy)),
            format!(
                "pull {note}; the seed reads the disk the puller writes to; MB it read: {}",
                reads(&seed_reads[1])
            ),
        );
        let size_mib = settings.size as f64 / (1 << 20) as f64;
        let model = Value {
            what: "model size".into(),
            value: size_mib,
            unit: "MiB",
        };
        for (who, samples) in [("puller B", &rss.0), ("server A", &rss.1)] {
            let (peak, all) = best(samples);
            report.add(
                "Memory",
                Value {
                    what: format!("peak RSS of {who} (VmHWM)"),
                    value: peak,
                    unit: "MiB",
                },
                Some(model.clone()),
                format!(
                    "largest of {} pulls: {}",
                    samples.len(),
                    all.replace("best of", "")
                ),
            );
        }
    }

    /// Warm pulls of the complete snapshot: through an agent, standalone by branch and by
    /// commit, against starting the binary at all (`hfmesh --version`).
    pub fn warm_pulls(&self, settings: &Settings, report: &mut Report) {
        let a = &self.seed;
        let commit = a
            .cli(&["pull", MODEL, "--quiet", "--json"])
            .and_then(|o| {
                let v: serde_json::Value = serde_json::from_str(o.lines().last()?).ok()?;
                v["commit"].as_str().map(str::to_string)
            })
            .expect("the warm pull reports its commit");
        let cache = a.dir.join("hub");
        let standalone = |rev: &str| {
            let mut cmd = hfmesh(&self.work.join("standalone-home"));
            cmd.args(["pull", rev, "--standalone", "--quiet", "--endpoint"])
                .arg(&self.hub_url)
                .arg("--cache-dir")
                .arg(&cache);
            cmd
        };
        let mut through_agent = hfmesh(&a.dir.join("cli-home"));
        through_agent
            .args(["pull", MODEL, "--quiet", "--socket"])
            .arg(a.socket());
        let mut version = hfmesh(&self.work.join("version-home"));
        version.arg("--version");
        let floor = timings(&mut version, settings.warm_runs);
        let by_commit = format!("{MODEL}:{commit}");
        for (what, mut cmd) in [
            ("hfmesh pull through the agent", through_agent),
            (
                "hfmesh pull --standalone (resolves main)",
                standalone(MODEL),
            ),
            (
                "hfmesh pull --standalone org/name:commit",
                standalone(&by_commit),
            ),
        ] {
            let t = timings(&mut cmd, settings.warm_runs);
            for (stat, i) in [("median", 0), ("p95", 1)] {
                report.add(
                    "Warm pull",
                    Value {
                        what: format!("{what}, {stat}"),
                        value: t[i],
                        unit: "ms",
                    },
                    Some(Value {
                        what: format!("hfmesh --version, {stat}"),
                        value: floor[i],
                        unit: "ms",
                    }),
                    format!("{} runs", settings.warm_runs),
                );
            }
        }
    }
}

/// Median and 95th percentile wall time (ms) of `runs` runs of `cmd`, which must succeed.
fn timings(cmd: &mut Command, runs: usize) -> [f64; 2] {
    let mut ms: Vec<f64> = (0..runs)
        .map(|_| {
            let t = Instant::now();
            let out = cmd.output().expect("hfmesh runs");
            assert!(
                out.status.success(),
                "{cmd:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            t.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    ms.sort_by(f64::total_cmp);
    let at = |q: f64| ms[((ms.len() as f64 * q).ceil() as usize).clamp(1, ms.len()) - 1];
    [at(0.5), at(0.95)]
}
