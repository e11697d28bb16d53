//! The flags of `hfmesh agent`, each with its `HFMESH_*` variable: a raw layer (strings, no
//! I/O), checked when resolved. A flag left out (and its variable unset) defers to the file.

use std::path::PathBuf;

/// Flags of `hfmesh agent`. Defaults are applied by [`super::Config::resolve`], after the file.
#[derive(Debug, Default, Clone, clap::Args)]
pub struct Flags {
    /// Config file [default: /etc/hfmesh/agent.toml, if it exists].
    #[arg(long, env = "HFMESH_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Cache directory [default: HF_HUB_CACHE, else HF_HOME/hub, else ~/.cache/huggingface/hub].
    #[arg(long, env = "HFMESH_CACHE_DIR", value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,
    /// State directory (node key, manifests) [default: HF_HOME/hfmesh].
    #[arg(long, env = "HFMESH_STATE_DIR", value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// Hub endpoint [default: HF_ENDPOINT, else https://huggingface.co].
    #[arg(long, env = "HFMESH_ENDPOINT", value_name = "URL")]
    pub endpoint: Option<String>,
    /// File holding the Hugging Face token [default: HF_TOKEN, RUNPOD_HUGGINGFACE_TOKEN, HF_HOME/token].
    #[arg(long, env = "HFMESH_TOKEN_FILE", value_name = "FILE")]
    pub token_file: Option<PathBuf>,
    /// File holding the cluster secret, at least 16 bytes [or HFMESH_CLUSTER_SECRET: the secret itself].
    #[arg(long, env = "HFMESH_CLUSTER_SECRET_FILE", value_name = "FILE")]
    pub cluster_secret_file: Option<PathBuf>,
    /// Zone label.
    #[arg(long, env = "HFMESH_ZONE")]
    pub zone: Option<String>,
    /// Rack label.
    #[arg(long, env = "HFMESH_RACK")]
    pub rack: Option<String>,
    /// libp2p (TCP) listen address [default: 0.0.0.0:4001].
    #[arg(long, env = "HFMESH_P2P_LISTEN", value_name = "ADDR")]
    pub p2p_listen: Option<String>,
    /// QUIC (UDP) listen address for chunk transfers [default: 0.0.0.0:4002].
    #[arg(long, env = "HFMESH_QUIC_LISTEN", value_name = "ADDR")]
    pub quic_listen: Option<String>,
    /// Other nodes' libp2p addresses (comma-separated; replaces the file's list).
    #[arg(
        long,
        env = "HFMESH_BOOTSTRAP",
        value_name = "ADDRS",
        value_delimiter = ','
    )]
    pub bootstrap: Vec<String>,
    /// Find peers on the local network by mDNS (`--mdns`, `--mdns=false`) [default: false].
    #[arg(long, env = "HFMESH_MDNS", value_name = "BOOL", num_args = 0..=1,
          require_equals = true, default_missing_value = "true",
          value_parser = clap::builder::BoolishValueParser::new())]
    pub mdns: Option<bool>,
    /// Write downloaded chunks with O_DIRECT where the file system allows it, bypassing the
    /// page cache (`--direct-io=false` writes through it) [default: true].
    #[arg(long, env = "HFMESH_DIRECT_IO", value_name = "BOOL", num_args = 0..=1,
          require_equals = true, default_missing_value = "true",
          value_parser = clap::builder::BoolishValueParser::new())]
    pub direct_io: Option<bool>,
    /// Unix socket of the control API [default: <state_dir>/agent.sock].
    #[arg(long, env = "HFMESH_CONTROL_SOCKET", value_name = "PATH")]
    pub control_socket: Option<PathBuf>,
    /// Prometheus metrics address, or `off` [default: 127.0.0.1:9464].
    #[arg(long, env = "HFMESH_METRICS_LISTEN", value_name = "ADDR")]
    pub metrics_listen: Option<String>,
    /// Lifetime of provider records in the DHT, like 30m or 1h [default: 1h].
    #[arg(long, env = "HFMESH_PROVIDER_TTL", value_name = "DURATION")]
    pub provider_ttl: Option<String>,
    /// Models to make present at start (RunPod list syntax, repeatable), besides the file's and
    /// RUNPOD_HUGGINGFACE_MODEL.
    #[arg(long = "model", env = "HFMESH_MODEL", value_name = "LIST")]
    pub models: Vec<String>,
    /// Datasets to make present at start (repeatable), besides the file's and
    /// RUNPOD_HUGGINGFACE_DATASET.
    #[arg(long = "dataset", env = "HFMESH_DATASET", value_name = "LIST")]
    pub datasets: Vec<String>,
    /// Most bytes per second served to peers, all together, like 100MB [default: unlimited].
    #[arg(long, env = "HFMESH_MAX_UPLOAD_RATE", value_name = "SIZE")]
    pub max_upload_rate: Option<String>,
    /// Most bytes per second received from peers and the Hub, all pulls together, like 100MB
    /// [default: unlimited].
    #[arg(long, env = "HFMESH_MAX_DOWNLOAD_RATE", value_name = "SIZE")]
    pub max_download_rate: Option<String>,
    /// Disk quota of the cache, like 500GiB [default: the file's `cache.max_size`, else none].
    #[arg(long, env = "HFMESH_MAX_CACHE_SIZE", value_name = "SIZE")]
    pub max_cache_size: Option<String>,
}
