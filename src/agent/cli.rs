//! `hfmesh agent`: run a node until SIGINT/SIGTERM, pulling the preload list first.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;

use super::{Node, NodeConfig};
use crate::hub::HubConfig;
use crate::mesh::MeshConfig;
use crate::node::{ClusterSecret, NodeKey, Topology};
use crate::repo::{RepoKind, RepoRef};

/// Flags of `hfmesh agent`.
#[derive(Debug, clap::Args)]
pub struct AgentArgs {
    /// Cache directory [default: HF_HUB_CACHE, else HF_HOME/hub, else ~/.cache/huggingface/hub].
    #[arg(long, env = "HFMESH_CACHE_DIR", value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,
    /// State directory (node key, manifests) [default: HF_HOME/hfmesh].
    #[arg(long, env = "HFMESH_STATE_DIR", value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// Hub endpoint [default: HF_ENDPOINT, else https://huggingface.co].
    #[arg(long, env = "HFMESH_ENDPOINT", value_name = "URL")]
    pub endpoint: Option<String>,
    /// File holding the cluster secret (at least 16 bytes).
    #[arg(long, env = "HFMESH_CLUSTER_SECRET_FILE", value_name = "FILE")]
    pub cluster_secret_file: Option<PathBuf>,
    /// libp2p (TCP) listen address.
    #[arg(long, env = "HFMESH_P2P_LISTEN", default_value = "0.0.0.0:4001")]
    pub p2p_listen: SocketAddr,
    /// QUIC (UDP) listen address for chunk transfers.
    #[arg(long, env = "HFMESH_QUIC_LISTEN", default_value = "0.0.0.0:4002")]
    pub quic_listen: SocketAddr,
    /// Other nodes' libp2p addresses (comma-separated).
    #[arg(long, env = "HFMESH_BOOTSTRAP", value_delimiter = ',')]
    pub bootstrap: Vec<SocketAddr>,
    /// Find peers on the local network by mDNS.
    #[arg(long, env = "HFMESH_MDNS")]
    pub mdns: bool,
    /// Zone label.
    #[arg(long, env = "HFMESH_ZONE")]
    pub zone: Option<String>,
    /// Rack label.
    #[arg(long, env = "HFMESH_RACK")]
    pub rack: Option<String>,
    /// Models to make present at start (RunPod list syntax), besides RUNPOD_HUGGINGFACE_MODEL.
    #[arg(long = "model", value_name = "LIST")]
    pub models: Vec<String>,
    /// Datasets to make present at start, besides RUNPOD_HUGGINGFACE_DATASET.
    #[arg(long = "dataset", value_name = "LIST")]
    pub datasets: Vec<String>,
}

/// Runs the agent.
pub async fn run(args: AgentArgs) -> anyhow::Result<()> {
    let env = |k: &str| std::env::var(k).ok();
    let hub = HubConfig::resolve(args.endpoint.as_deref(), None, &env)?;
    let cache_dir = crate::cache::resolve_cache_dir(args.cache_dir.as_deref(), &env);
    let state_dir = args
        .state_dir
        .clone()
        .unwrap_or_else(|| crate::cache::layout::hf_home(&env).join("hfmesh"));
    let secret = match (&args.cluster_secret_file, env("HFMESH_CLUSTER_SECRET")) {
        (Some(path), _) => std::fs::read(path)
            .with_context(|| format!("cannot read the cluster secret {}", path.display()))?,
        (None, Some(s)) => s.into_bytes(),
        (None, None) => {
            anyhow::bail!("no cluster secret: set --cluster-secret-file or HFMESH_CLUSTER_SECRET")
        }
    };
    let cluster = ClusterSecret::from_material(&secret)?;
    let key = NodeKey::load_or_create(&state_dir.join("node.key"))
        .with_context(|| format!("cannot load the node key in {}", state_dir.display()))?;
    let mut preload = Vec::new();
    for (lists, var, kind) in [
        (&args.models, "RUNPOD_HUGGINGFACE_MODEL", RepoKind::Model),
        (
            &args.datasets,
            "RUNPOD_HUGGINGFACE_DATASET",
            RepoKind::Dataset,
        ),
    ] {
        for list in lists.iter().cloned().chain(env(var)) {
            preload.extend(
                RepoRef::parse_list(&list, kind)
                    .with_context(|| format!("in the preload list {list:?}"))?,
            );
        }
    }
    let cfg_bootstrap = args.bootstrap.clone();
    let cfg = NodeConfig {
        cache_dir,
        state_dir,
        hub,
        cluster,
        key,
        topology: Topology {
            zone: args.zone,
            rack: args.rack,
        },
        p2p_listen: args.p2p_listen,
        quic_listen: args.quic_listen,
        bootstrap: args.bootstrap,
        mdns: args.mdns,
        mesh: MeshConfig::default(),
        provider_ttl: Duration::from_secs(3600),
    };
    let node = Node::start(cfg).await?;
    tracing::info!(id = %node.id(), p2p = %node.p2p_addr(), quic = %node.transfer.local_addr(), "agent started");
    println!(
        "hfmesh agent {} p2p={} quic={}",
        node.id(),
        node.p2p_addr(),
        node.transfer.local_addr()
    );
    if !cfg_bootstrap.is_empty() {
        wait_for_peers(&node, JOIN_WAIT).await;
    }
    for what in &preload {
        match node.pull(what, Arc::new(crate::progress::Silent)).await {
            Ok(r) => println!("ready {what} {}", r.snapshot_dir.display()),
            Err(e) => eprintln!("hfmesh: preload of {what} failed: {e:#}"),
        }
    }
    println!("ready");
    shutdown_signal().await;
    node.shutdown().await;
    Ok(())
}

/// Longest wait at start for the first peers, so the preload finds their manifests.
const JOIN_WAIT: Duration = Duration::from_secs(10);

/// Waits until discovery knows at least one peer, or `limit` passes (then pulls go on alone:
/// the Hub is always a fallback).
async fn wait_for_peers(node: &Node, limit: Duration) {
    use crate::discovery::Discovery;
    let deadline = tokio::time::Instant::now() + limit;
    while node.discovery.peers().await.is_empty() {
        if tokio::time::Instant::now() >= deadline {
            tracing::warn!("no peer found within {limit:?}; pulling without them for now");
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn shutdown_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
