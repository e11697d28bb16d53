//! What can be wrong with the agent's configuration: one variant per mistake, each displayed as
//! one sentence that names the setting (file key, flag, env var) and says what to do.

use std::fmt;
use std::path::PathBuf;

use crate::repo::ParseError;

/// One setting, by all its names, for messages: `` `p2p_listen` (--p2p-listen, HFMESH_P2P_LISTEN) ``.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Key {
    /// The key in the config file (`cache.max_size` for a key in a table).
    pub file: &'static str,
    /// The flag, if there is one.
    pub flag: Option<&'static str>,
    /// The `HFMESH_*` variable, if there is one.
    pub env: Option<&'static str>,
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "`{}`", self.file)?;
        match (self.flag, self.env) {
            (Some(flag), Some(env)) => write!(f, " ({flag}, {env})"),
            (Some(one), None) | (None, Some(one)) => write!(f, " ({one})"),
            (None, None) => Ok(()),
        }
    }
}

/// A configuration mistake. Local and final: the agent does not start.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The config file named by `--config` / `HFMESH_CONFIG` could not be read.
    #[error("cannot read the config file {path}: {source} (fix the path given by --config or HFMESH_CONFIG)")]
    ReadConfig {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The config file is not valid TOML, has an unknown key, or a value of the wrong type.
    #[error("config file {path}, line {line}, column {column}: {message}")]
    Syntax {
        path: PathBuf,
        line: usize,
        column: usize,
        message: String,
    },
    /// No cluster secret anywhere.
    #[error("no cluster secret: set `cluster_secret_file` in the config file, --cluster-secret-file (HFMESH_CLUSTER_SECRET_FILE), or HFMESH_CLUSTER_SECRET")]
    MissingSecret,
    /// The cluster secret is shorter than 16 bytes.
    #[error("the cluster secret from {from} is too short: it must be at least 16 bytes (for example `openssl rand -hex 32`)")]
    WeakSecret { from: String },
    /// A file named by a setting could not be read.
    #[error("cannot read {key} {path}: {source}")]
    ReadFile {
        key: Key,
        path: PathBuf,
        source: std::io::Error,
    },
    /// The token file holds no token.
    #[error("{key} {path} is empty: write the Hugging Face token into it, or remove the setting")]
    EmptyToken { key: Key, path: PathBuf },
    /// The node key could not be loaded or created.
    #[error("cannot load or create the node key {path}: {source} (`state_dir` must be writable)")]
    NodeKey {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The Hub endpoint is not an http(s) URL.
    #[error("{key} = {value:?} is not an http(s) URL like https://huggingface.co")]
    BadEndpoint { key: Key, value: String },
    /// A listen or bootstrap address is not `IP:PORT`.
    #[error("{key} = {value:?} is not an address like 0.0.0.0:4001{hint}")]
    BadAddress {
        key: Key,
        value: String,
        hint: &'static str,
    },
    /// A size string could not be parsed.
    #[error("{key} = {value:?} is not a size: {why}")]
    BadSize {
        key: Key,
        value: String,
        why: &'static str,
    },
    /// A duration string could not be parsed.
    #[error("{key} = {value:?} is not a duration: {why}")]
    BadDuration {
        key: Key,
        value: String,
        why: &'static str,
    },
    /// A watermark is not a fraction in (0, 1].
    #[error("{key} = {value} must be a fraction above 0 and at most 1, like 0.9")]
    BadWatermark { key: Key, value: f64 },
    /// The low watermark is not below the high one.
    #[error("`cache.low_watermark` ({low}) must be below `cache.high_watermark` ({high})")]
    WatermarkOrder { low: f64, high: f64 },
    /// A preload entry is not `org/name[:revision]`.
    #[error("bad preload entry {entry:?} in {from}: {source} (expected `org/name` or `org/name:revision`)")]
    BadPreload {
        from: String,
        entry: String,
        source: ParseError,
    },
}
