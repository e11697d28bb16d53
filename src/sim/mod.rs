//! The cluster simulation harness (`hfmesh simulate`): a scenario file (hosts, links, Hub,
//! models, arrivals, faults) played with real `hfmesh agent` processes and the hub emulator on
//! loopback with per-host token buckets, or each in its own network namespace with htb-shaped
//! veth links (where zones can be partitioned), then a report (JSON, markdown, SVG) that compares the
//! mesh with every host pulling straight from the Hub. See `simulations/README.md`.

/// The network namespaces, shaped links and partitions of `network = "netns"`.
pub mod netns;
/// CPU and disk probes.
pub mod probe;
/// The runner's processes: emulator, agents, standalone pulls.
pub mod procs;
/// The report and its headline figures.
pub mod report;
/// The phases of a run.
pub mod run;
/// The scenario format, parsed and validated.
pub mod scenario;
/// SVG plots.
pub mod svg;

use std::path::PathBuf;

use anyhow::Context as _;

pub use report::Report;
pub use scenario::Scenario;

/// Flags of `hfmesh simulate`.
#[derive(Debug, clap::Args)]
pub struct SimulateArgs {
    /// The scenario file (TOML).
    #[arg(value_name = "SCENARIO.toml")]
    pub scenario: PathBuf,
    /// Where the report goes (`report.json`, `report.md`, `*.svg`); the work tree is `OUT/work`.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Also run the baseline: every host straight from the Hub, no peers.
    #[arg(long)]
    pub baseline: bool,
    /// A Python with huggingface_hub: check every ready host's tree with `hf_check.py offline`.
    #[arg(long, value_name = "PATH")]
    pub python: Option<PathBuf>,
    /// The tree checker [default: tests/python/hf_check.py].
    #[arg(long, value_name = "PATH", default_value = "tests/python/hf_check.py")]
    pub hf_check: PathBuf,
    /// Keep the hosts' cache trees under `OUT/work` (they are deleted by default).
    #[arg(long)]
    pub keep_work: bool,
    /// Play the scenario on this network instead of its own `network` (loopback: every process
    /// on loopback; netns: each host in a network namespace with shaped links; needs root).
    #[arg(long, value_enum)]
    pub network: Option<scenario::Network>,
}

/// Runs `hfmesh simulate`: plays the scenario and writes the report.
pub async fn main(args: SimulateArgs) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(&args.scenario)
        .with_context(|| format!("cannot read {}", args.scenario.display()))?;
    let mut scenario = Scenario::parse(&text)
        .with_context(|| format!("{} is not a valid scenario", args.scenario.display()))?;
    if let Some(network) = args.network {
        scenario = scenario.with_network(network)?;
    }
    let opts = run::Options {
        bin: std::env::current_exe().context("cannot find the hfmesh binary")?,
        out: args.out.clone(),
        baseline: args.baseline,
        python: args.python.clone(),
        hf_check: args.hf_check.clone(),
    };
    let report = simulate(&scenario, &opts, args.keep_work).await?;
    write(&report, &args.out)?;
    println!("{}", args.out.join("report.md").display());
    Ok(())
}

/// Plays `s`: the single host, the mesh, and the baseline if asked.
pub async fn simulate(s: &Scenario, o: &run::Options, keep_work: bool) -> anyhow::Result<Report> {
    let work = o.out.join("work");
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).with_context(|| format!("cannot create {}", work.display()))?;
    // Declared before the Hub, so dropped after it: its processes die before their namespaces.
    let net = match s.network {
        scenario::Network::Loopback => None,
        scenario::Network::Netns => Some(netns::Net::build(s)?),
    };
    let net = net.as_ref();
    let hub_site = net.map_or_else(netns::Site::loopback, netns::Net::hub_site);
    let hub = procs::Hub::start(&o.bin, &work, s, &hub_site).await?;
    eprintln!("{}: one host alone from the Hub", s.name);
    let single = run::single_host(s, o, &hub, &work, net).await?;
    eprintln!(
        "{}: {:.1} s alone; mesh of {} hosts",
        s.name,
        single.0,
        s.hosts.len()
    );
    let mesh = run::phase(run::Mode::Mesh, s, o, (&hub, net), &work.join("mesh")).await?;
    if !keep_work {
        let _ = std::fs::remove_dir_all(work.join("mesh"));
    }
    let baseline = if o.baseline {
        eprintln!("{}: baseline, every host from the Hub", s.name);
        let b = run::phase(
            run::Mode::Baseline,
            s,
            o,
            (&hub, net),
            &work.join("baseline"),
        )
        .await?;
        if !keep_work {
            let _ = std::fs::remove_dir_all(work.join("baseline"));
        }
        Some(b)
    } else {
        None
    };
    Ok(Report::new(s, single, mesh, baseline))
}

/// Writes `report.json`, `report.md` and the plots into `out`.
pub fn write(report: &Report, out: &std::path::Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(out)?;
    std::fs::write(
        out.join("report.json"),
        serde_json::to_string_pretty(report)? + "\n",
    )?;
    std::fs::write(out.join("report.md"), report.markdown())?;
    for (name, svg) in svg::plots(report) {
        std::fs::write(out.join(name), svg)?;
    }
    Ok(())
}
