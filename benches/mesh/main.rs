//! hfmesh's benchmarks, in one run (not part of CI): each hfmesh number is printed next to a
//! baseline measured in the same run on the same machine, as a ratio, with the load average at
//! the time (the machine may be shared).
//!
//! 1. Hashing: BLAKE3 chunk verification and the SHA-256 etag check against what this CPU does.
//! 2. Packet sealing: AES-128-GCM QUIC packet protection as hfmesh's record layer does it,
//!    against ring's on the same packets.
//! 3. Transfer: one agent pulling a large model from another over QUIC on loopback, into the
//!    verified tree, against raw TCP on loopback and a plain file copy.
//! 4. Memory: the agents' peak RSS while moving that model.
//! 5. Warm pulls: `hfmesh pull` of a complete snapshot, through the agent and standalone.
//!
//! `bash scripts/bench.sh` runs it (`cargo bench --bench mesh`); settings are environment
//! variables, see [`Settings`].

mod agents;
mod crypto;
mod hashing;
mod net;
mod report;

use std::path::PathBuf;

use report::Report;

/// What a run measures, from the environment.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Size of the synthetic model moved between agents (`HFMESH_BENCH_SIZE`, bytes, default
    /// 2 GiB + 4 MiB + 7, so not a whole number of chunks).
    pub size: u64,
    /// Repetitions of each throughput measurement (`HFMESH_BENCH_REPEAT`, default 3).
    pub repeat: usize,
    /// Warm pulls timed (`HFMESH_BENCH_WARM_RUNS`, default 20).
    pub warm_runs: usize,
    /// Working directory for the hub root, the agents' caches and test files
    /// (`HFMESH_BENCH_WORK`, default `target/bench/work`); emptied first.
    pub work: PathBuf,
    /// Where `bench.json` and `bench.md` go (`HFMESH_BENCH_OUT`, default `target/bench`).
    pub out: PathBuf,
}

impl Settings {
    fn from_env() -> Settings {
        let num = |k: &str, d: u64| {
            std::env::var(k)
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(d)
        };
        let path = |k: &str, d: &str| {
            std::env::var_os(k)
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from(d))
        };
        Settings {
            size: num("HFMESH_BENCH_SIZE", (2 << 30) + (4 << 20) + 7),
            repeat: num("HFMESH_BENCH_REPEAT", 3).max(1) as usize,
            warm_runs: num("HFMESH_BENCH_WARM_RUNS", 20).max(1) as usize,
            work: path("HFMESH_BENCH_WORK", "target/bench/work"),
            out: path("HFMESH_BENCH_OUT", "target/bench"),
        }
    }
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` passes nothing and must not run it.
    if !std::env::args().any(|a| a == "--bench") {
        println!("hfmesh benchmarks: run with `cargo bench --bench mesh` (or scripts/bench.sh)");
        return;
    }
    let settings = Settings::from_env();
    let _ = std::fs::remove_dir_all(&settings.work);
    std::fs::create_dir_all(&settings.work).expect("the work directory can be made");
    let mut report = Report::new(&settings);
    eprintln!("{}", report.machine_line());

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime");

    if std::env::var_os("HFMESH_BENCH_TRANSPORT_ONLY").is_some() {
        // Tuning loop: only the transport baselines, logged to stderr.
        net::transport_only(&settings, &rt);
        return;
    }
    // A/B loop for the pull: only the transfer baselines and the agent-to-agent pulls.
    let pulls_only = std::env::var_os("HFMESH_BENCH_PULLS_ONLY").is_some();
    let agents = agents::Cluster::start(&settings, &mut report);
    if !pulls_only {
        hashing::run(&settings, &agents.blob, &mut report);
        crypto::run(&settings, &mut report);
    }
    let baselines = net::run(&settings, &rt, &agents, &mut report);
    agents.pull_from_peer(&settings, &baselines, &mut report);
    if !pulls_only {
        agents.warm_pulls(&settings, &mut report);
    }
    drop(agents);

    report.finish(&settings.out);
    let _ = std::fs::remove_dir_all(&settings.work);
}
