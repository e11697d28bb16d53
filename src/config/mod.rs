//! The agent's configuration: a TOML file, `HFMESH_*` environment variables and flags, plus the
//! Hugging Face (`HF_HOME`, `HF_HUB_CACHE`, `HF_ENDPOINT`, `HF_TOKEN`) and RunPod
//! (`RUNPOD_HUGGINGFACE_*`) conventions, resolved once into one validated [`Config`].
//!
//! Two stages: the raw layers ([`Flags`], [`FileConfig`]) are parsed without I/O, then
//! [`Config::resolve`] applies precedence (flag or `HFMESH_*` variable > file > `HF_*` /
//! `RUNPOD_*` conventions > defaults), validates, and does the little I/O needed (secret and
//! token files, the node key). Every key is documented in `docs/configuration.md`.

use std::net::SocketAddr;
use std::path::PathBuf;

use crate::agent::NodeConfig;
use crate::repo::RepoRef;

/// [`ConfigError`]: one variant per mistake, one sentence each.
pub mod error;
/// The config file's raw layer.
pub mod file;
/// The flags' raw layer.
pub mod flags;
/// Precedence, validation and defaults.
pub mod resolve;
/// Sizes and durations.
pub mod units;

pub use error::ConfigError;
pub use file::{FileConfig, DEFAULT_CONFIG_PATH};
pub use flags::Flags;

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
    /// Whether downloaded chunks are written with `O_DIRECT` where the file system allows it
    /// (see `store::partial`).
    pub direct_io: bool,
}
