//! `hfmesh scale-model [--scenario FILE] [overrides]`: runs the scale model three ways (mesh, Hub
//! only, one host) and prints a markdown table, or JSON.

use std::path::PathBuf;

use anyhow::Context as _;

use super::{ScaleComparison, ScaleParams};

/// Flags of `hfmesh scale-model`.
#[derive(Debug, clap::Args)]
pub struct ScaleArgs {
    /// A TOML scenario (keys of `ScaleParams`; missing ones take the defaults).
    #[arg(long, value_name = "FILE")]
    pub scenario: Option<PathBuf>,
    /// A real-run scenario (`hfmesh simulate`'s TOML) to model, for comparing the two.
    #[arg(long, value_name = "FILE", conflicts_with = "scenario")]
    pub from_sim: Option<PathBuf>,
    /// Hosts (overrides the scenario).
    #[arg(long)]
    pub hosts: Option<usize>,
    /// Model size in GB (10^9 bytes; overrides the scenario).
    #[arg(long)]
    pub model_gb: Option<f64>,
    /// Provider records the DHT keeps per key (overrides the scenario).
    #[arg(long)]
    pub providers_per_key: Option<usize>,
    /// Chunk requests a host serves at once, 0 for no limit (overrides the scenario).
    #[arg(long)]
    pub upload_slots: Option<usize>,
    /// Peer exchange: peers named per answer (the mesh's: 8; 0 turns it off).
    #[arg(long)]
    pub peer_exchange: Option<usize>,
    /// Print the three reports as JSON instead of the table.
    #[arg(long)]
    pub json: bool,
}

/// Runs `hfmesh scale-model`.
pub async fn run(args: ScaleArgs) -> anyhow::Result<()> {
    let read = |path: &PathBuf| {
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))
    };
    let mut p = match (&args.scenario, &args.from_sim) {
        (Some(path), _) => ScaleParams::from_toml(&read(path)?).map_err(anyhow::Error::msg)?,
        (None, Some(path)) => {
            let scenario = crate::sim::scenario::Scenario::parse(&read(path)?)?;
            ScaleParams::from_scenario(&scenario).map_err(anyhow::Error::msg)?
        }
        (None, None) => ScaleParams::default(),
    };
    if let Some(h) = args.hosts {
        p.hosts = h;
    }
    if let Some(gb) = args.model_gb {
        p.model_bytes = (gb * 1e9) as u64;
    }
    if let Some(k) = args.providers_per_key {
        p.providers_per_key = k;
    }
    if let Some(n) = args.upload_slots {
        p.upload_slots = n;
    }
    if let Some(n) = args.peer_exchange {
        p.peer_exchange = n;
    }
    p.validate().map_err(anyhow::Error::msg)?;
    let started = std::time::Instant::now();
    let c = tokio::task::spawn_blocking(move || ScaleComparison::run(&p)).await?;
    if args.json {
        println!("{}", serde_json::to_string(&c)?);
    } else {
        print!("{}", c.markdown());
        eprintln!("(simulated in {:.1} s)", started.elapsed().as_secs_f64());
    }
    Ok(())
}
