//! The agent's configuration: a TOML file, `HFMESH_*` environment variables and flags, plus the
//! Hugging Face (`HF_HOME`, `HF_HUB_CACHE`, `HF_ENDPOINT`, `HF_TOKEN`) and RunPod
//! (`RUNPOD_HUGGINGFACE_*`) conventions, resolved once into one validated [`Config`].

use std::net::SocketAddr;
use std::path::PathBuf;

use crate::agent::NodeConfig;
use crate::repo::RepoRef;

/// Disk quota of the cache tree and its eviction watermarks.
#[derive(Debug, Clone, PartialEq)]
pub struct Quota {
    /// Most bytes the cache tree may hold.
    pub max_bytes: u64,
    /// Eviction starts above this fraction of `max_bytes`.
    pub high_watermark: f64,
    /// Eviction stops below this fraction of `max_bytes`.
    pub low_watermark: f64,
}

/// Everything the agent reads, resolved and validated.
#[derive(Debug, Clone)]
pub struct Config {
    /// The node: cache, state, Hub, cluster secret, key, topology, listen addresses, bootstrap.
    pub node: NodeConfig,
    /// Unix socket of the local control API.
    pub control_socket: PathBuf,
    /// TCP address of the Prometheus metrics endpoint (`None`: off).
    pub metrics_listen: Option<SocketAddr>,
    /// Snapshots to make present at start (the file's lists, flags, and the RunPod variables).
    pub preload: Vec<RepoRef>,
    /// Disk quota (`None`: unlimited).
    pub quota: Option<Quota>,
    /// `RUNPOD_HUGGINGFACE_USER`, if set (reported, used in messages).
    pub hf_user: Option<String>,
}
