//! The config file (`/etc/hfmesh/agent.toml`): a raw layer where every key is optional and
//! unknown keys are refused. Parsing does no I/O besides reading the file's text; values are
//! checked when they are resolved ([`super::Config::resolve`]).

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::ConfigError;

/// Read when neither `--config` nor `HFMESH_CONFIG` names a file, and only if it exists.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/hfmesh/agent.toml";

/// The config file, as written. See `docs/configuration.md` for every key.
#[derive(Debug, Default, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// The HF cache tree.
    pub cache_dir: Option<PathBuf>,
    /// hfmesh's own state (node key, manifests).
    pub state_dir: Option<PathBuf>,
    /// The Hub's base URL.
    pub endpoint: Option<String>,
    /// File holding the Hugging Face token.
    pub token_file: Option<PathBuf>,
    /// File holding the cluster secret.
    pub cluster_secret_file: Option<PathBuf>,
    /// Zone label.
    pub zone: Option<String>,
    /// Rack label.
    pub rack: Option<String>,
    /// libp2p (TCP) listen address.
    pub p2p_listen: Option<String>,
    /// QUIC (UDP) listen address.
    pub quic_listen: Option<String>,
    /// Other nodes' libp2p addresses.
    pub bootstrap: Option<Vec<String>>,
    /// Find peers by mDNS.
    pub mdns: Option<bool>,
    /// Write downloaded chunks with `O_DIRECT` where possible.
    pub direct_io: Option<bool>,
    /// Unix socket of the control API.
    pub control_socket: Option<PathBuf>,
    /// Metrics address, or `"off"`.
    pub metrics_listen: Option<String>,
    /// Provider record lifetime (`1h`).
    pub provider_ttl: Option<String>,
    /// Most bytes per second served to peers (`"100MB"` or bytes).
    pub max_upload_rate: Option<SizeValue>,
    /// Most bytes per second received from peers and the Hub (`"100MB"` or bytes).
    pub max_download_rate: Option<SizeValue>,
    /// `[preload]`.
    #[serde(default)]
    pub preload: PreloadSection,
    /// `[cache]`.
    #[serde(default)]
    pub cache: CacheSection,
}

/// `[preload]`: snapshots to make present at start.
#[derive(Debug, Default, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PreloadSection {
    /// Models, `org/name[:revision]` each.
    #[serde(default)]
    pub models: Vec<String>,
    /// Datasets, `org/name[:revision]` each.
    #[serde(default)]
    pub datasets: Vec<String>,
}

/// `[cache]`: the disk quota.
#[derive(Debug, Default, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CacheSection {
    /// Most bytes the cache may hold (`"500GiB"` or a number of bytes); absent: no quota.
    pub max_size: Option<SizeValue>,
    /// Eviction starts above this fraction of `max_size`.
    pub high_watermark: Option<f64>,
    /// Eviction stops below this fraction of `max_size`.
    pub low_watermark: Option<f64>,
}

/// A size as written: a TOML integer (bytes) or a string with a unit.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum SizeValue {
    /// A number of bytes.
    Bytes(u64),
    /// `"500GiB"` and the like.
    Text(String),
}

impl FileConfig {
    /// Parses the text of a config file; `path` is only for messages. Errors name the line and
    /// column, on one line.
    pub fn parse(text: &str, path: &Path) -> Result<FileConfig, ConfigError> {
        toml::from_str(text).map_err(|e| {
            let start = e.span().map_or(0, |s| s.start).min(text.len());
            let before = &text[..start];
            let line = before.matches('\n').count() + 1;
            let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
            ConfigError::Syntax {
                path: path.to_path_buf(),
                line,
                column,
                message: e.message().trim().replace('\n', " "),
            }
        })
    }

    /// Reads and parses the config file: `explicit` (from `--config` / `HFMESH_CONFIG`) must be
    /// readable; otherwise [`DEFAULT_CONFIG_PATH`] is read if it exists, and `None` if not.
    pub fn load(explicit: Option<&Path>) -> Result<Option<FileConfig>, ConfigError> {
        let (path, required) = match explicit {
            Some(p) => (p, true),
            None => (Path::new(DEFAULT_CONFIG_PATH), false),
        };
        match std::fs::read_to_string(path) {
            Ok(text) => FileConfig::parse(&text, path).map(Some),
            Err(e) if !required && e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(ConfigError::ReadConfig {
                path: path.to_path_buf(),
                source,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<FileConfig, String> {
        FileConfig::parse(text, Path::new("agent.toml")).map_err(|e| e.to_string())
    }

    #[test]
    fn empty_file_is_all_defaults() {
        assert_eq!(parse("").unwrap(), FileConfig::default());
    }

    #[test]
    fn full_example_parses() {
        let text = include_str!("../../deploy/agent.toml");
        let f = parse(text).unwrap();
        assert_eq!(f.zone.as_deref(), Some("us-east-1a"));
        assert_eq!(f.bootstrap.as_deref().map(|b| b.len()), Some(1));
        assert_eq!(f.preload.models.len(), 2);
        assert_eq!(
            f.cache.max_size,
            Some(SizeValue::Text("500GiB".to_string()))
        );
        assert_eq!(f.cache.low_watermark, Some(0.80));
    }

    #[test]
    fn sizes_may_be_integers() {
        let f = parse("[cache]\nmax_size = 1000000\nhigh_watermark = 1\n").unwrap();
        assert_eq!(f.cache.max_size, Some(SizeValue::Bytes(1_000_000)));
        assert_eq!(f.cache.high_watermark, Some(1.0));
    }

    #[test]
    fn unknown_key_names_the_key_and_line() {
        let e = parse("zone = \"a\"\n\ncache_size = \"1GB\"\n").unwrap_err();
        assert!(
            e.starts_with("config file agent.toml, line 3, column 1:"),
            "{e}"
        );
        assert!(e.contains("unknown field `cache_size`"), "{e}");
        assert!(!e.contains('\n'), "{e}");
        let e = parse("[cache]\nmax_size = \"1GB\"\nhigh = 0.9\n").unwrap_err();
        assert!(e.contains("line 3") && e.contains("`high`"), "{e}");
        let e = parse("[preload]\nmodel = []\n").unwrap_err();
        assert!(e.contains("line 2") && e.contains("`model`"), "{e}");
    }

    #[test]
    fn wrong_types_and_bad_toml_name_the_line() {
        let e = parse("mdns = \"yes\"\n").unwrap_err();
        assert!(e.contains("line 1"), "{e}");
        let e = parse("zone = \"a\"\nrack = \n").unwrap_err();
        assert!(e.contains("line 2"), "{e}");
    }

    #[test]
    fn missing_explicit_file_is_an_error_missing_default_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let e = FileConfig::load(Some(&dir.path().join("nope.toml"))).unwrap_err();
        assert!(e.to_string().contains("--config or HFMESH_CONFIG"), "{e}");
        let p = dir.path().join("agent.toml");
        std::fs::write(&p, "rack = \"r1\"\n").unwrap();
        let f = FileConfig::load(Some(&p)).unwrap().unwrap();
        assert_eq!(f.rack.as_deref(), Some("r1"));
    }
}
