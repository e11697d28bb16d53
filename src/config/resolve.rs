//! Resolution: flags (with their `HFMESH_*` variables) over the file over the Hugging Face and
//! RunPod conventions over defaults, into one validated [`Config`]. The only I/O: reading the
//! secret and token files and loading (or creating) the node key.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::error::Key;
use super::file::SizeValue;
use super::{units, Config, ConfigError, FileConfig, Flags, Quota};
use crate::agent::NodeConfig;
use crate::hub::HubConfig;
use crate::mesh::MeshConfig;
use crate::node::{ClusterSecret, NodeKey, Topology};
use crate::repo::{RepoKind, RepoRef};
use crate::transfer::ratelimit::Limits;

/// libp2p (TCP) listen address when none is set.
pub const DEFAULT_P2P_LISTEN: &str = "0.0.0.0:4001";
/// QUIC (UDP) listen address when none is set.
pub const DEFAULT_QUIC_LISTEN: &str = "0.0.0.0:4002";
/// Metrics address when none is set (loopback: expose it on purpose).
pub const DEFAULT_METRICS_LISTEN: &str = "127.0.0.1:9464";
/// Provider record lifetime when none is set.
pub const DEFAULT_PROVIDER_TTL: Duration = Duration::from_secs(3600);
/// Eviction starts above this fraction of the quota when none is set.
pub const DEFAULT_HIGH_WATERMARK: f64 = 0.90;
/// Eviction stops below this fraction of the quota when none is set.
pub const DEFAULT_LOW_WATERMARK: f64 = 0.80;
/// The control socket's name in the state directory when none is set.
pub const CONTROL_SOCKET_NAME: &str = "agent.sock";
/// The node key's name in the state directory.
pub const NODE_KEY_NAME: &str = "node.key";
/// The cluster secret itself (not a file), below the secret files given by flag.
pub const CLUSTER_SECRET_VAR: &str = "HFMESH_CLUSTER_SECRET";

const fn key(file: &'static str, flag: &'static str, env: &'static str) -> Key {
    Key {
        file,
        flag: Some(flag),
        env: Some(env),
    }
}

const ENDPOINT: Key = key("endpoint", "--endpoint", "HFMESH_ENDPOINT");
const TOKEN_FILE: Key = key("token_file", "--token-file", "HFMESH_TOKEN_FILE");
const SECRET_FILE: Key = key(
    "cluster_secret_file",
    "--cluster-secret-file",
    "HFMESH_CLUSTER_SECRET_FILE",
);
const P2P_LISTEN: Key = key("p2p_listen", "--p2p-listen", "HFMESH_P2P_LISTEN");
const QUIC_LISTEN: Key = key("quic_listen", "--quic-listen", "HFMESH_QUIC_LISTEN");
const BOOTSTRAP: Key = key("bootstrap", "--bootstrap", "HFMESH_BOOTSTRAP");
const METRICS_LISTEN: Key = key(
    "metrics_listen",
    "--metrics-listen",
    "HFMESH_METRICS_LISTEN",
);
const PROVIDER_TTL: Key = key("provider_ttl", "--provider-ttl", "HFMESH_PROVIDER_TTL");
const MAX_SIZE: Key = key(
    "cache.max_size",
    "--max-cache-size",
    "HFMESH_MAX_CACHE_SIZE",
);
const UPLOAD_RATE: Key = key(
    "max_upload_rate",
    "--max-upload-rate",
    "HFMESH_MAX_UPLOAD_RATE",
);
const DOWNLOAD_RATE: Key = key(
    "max_download_rate",
    "--max-download-rate",
    "HFMESH_MAX_DOWNLOAD_RATE",
);
const HIGH_WATERMARK: Key = Key {
    file: "cache.high_watermark",
    flag: None,
    env: None,
};
const LOW_WATERMARK: Key = Key {
    file: "cache.low_watermark",
    flag: None,
    env: None,
};

impl Config {
    /// Resolves flags, the config file (if any) and the environment (`env` looks a variable up)
    /// into one validated configuration. Precedence: flag or `HFMESH_*` variable, then the file,
    /// then the `HF_*` / `RUNPOD_*` conventions, then defaults. Preload lists are merged instead.
    ///
    /// Reads the secret and token files and loads the node key from `<state_dir>/node.key`,
    /// creating it on first start.
    pub fn resolve(
        flags: &Flags,
        file: Option<FileConfig>,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        let file = file.unwrap_or_default();
        // Checks that need no I/O first, so a typo is reported before any file is touched.
        let p2p_listen = address(P2P_LISTEN, pick(&flags.p2p_listen, &file.p2p_listen))?
            .unwrap_or_else(|| DEFAULT_P2P_LISTEN.parse().expect("valid default"));
        let quic_listen = address(QUIC_LISTEN, pick(&flags.quic_listen, &file.quic_listen))?
            .unwrap_or_else(|| DEFAULT_QUIC_LISTEN.parse().expect("valid default"));
        let bootstrap = bootstrap(flags, &file)?;
        let metrics_listen = metrics(pick(&flags.metrics_listen, &file.metrics_listen))?;
        let provider_ttl = match pick(&flags.provider_ttl, &file.provider_ttl) {
            None => DEFAULT_PROVIDER_TTL,
            Some(v) => units::parse_duration(&v).map_err(|why| ConfigError::BadDuration {
                key: PROVIDER_TTL,
                value: v,
                why,
            })?,
        };
        let quota = quota(flags, &file)?;
        let upload = rate(UPLOAD_RATE, &flags.max_upload_rate, &file.max_upload_rate)?;
        let download = rate(
            DOWNLOAD_RATE,
            &flags.max_download_rate,
            &file.max_download_rate,
        )?;
        let preload = preload(flags, &file, env)?;
        let endpoint = pick(&flags.endpoint, &file.endpoint);
        let token_file = pick(&flags.token_file, &file.token_file);

        let token = token_file.as_deref().map(read_token).transpose()?;
        let hub = HubConfig::resolve(endpoint.as_deref(), token.as_deref(), env).map_err(|e| {
            ConfigError::BadEndpoint {
                key: ENDPOINT,
                value: e.value,
            }
        })?;
        let cluster = cluster_secret(flags, &file, env)?;
        let cache_dir = crate::cache::resolve_cache_dir(
            pick(&flags.cache_dir, &file.cache_dir).as_deref(),
            env,
        );
        let state_dir = pick(&flags.state_dir, &file.state_dir)
            .unwrap_or_else(|| crate::cache::layout::hf_home(env).join("hfmesh"));
        let key_path = state_dir.join(NODE_KEY_NAME);
        let key = NodeKey::load_or_create(&key_path).map_err(|source| ConfigError::NodeKey {
            path: key_path,
            source,
        })?;
        let control_socket = pick(&flags.control_socket, &file.control_socket)
            .unwrap_or_else(|| state_dir.join(CONTROL_SOCKET_NAME));
        let label = |s: Option<String>| s.filter(|s| !s.trim().is_empty());
        Ok(Config {
            node: NodeConfig {
                cache_dir,
                state_dir,
                hub,
                cluster,
                key,
                topology: Topology {
                    zone: label(pick(&flags.zone, &file.zone)),
                    rack: label(pick(&flags.rack, &file.rack)),
                },
                p2p_listen,
                quic_listen,
                bootstrap,
                mdns: flags.mdns.or(file.mdns).unwrap_or(false),
                mesh: MeshConfig {
                    limits: Limits::new(upload, download),
                    ..MeshConfig::default()
                },
                provider_ttl,
            },
            control_socket,
            metrics_listen,
            preload,
            quota,
            hf_user: env("RUNPOD_HUGGINGFACE_USER").filter(|u| !u.trim().is_empty()),
            direct_io: flags.direct_io.or(file.direct_io).unwrap_or(true),
        })
    }
}

/// The flag's value if given, else the file's.
fn pick<T: Clone>(flag: &Option<T>, file: &Option<T>) -> Option<T> {
    flag.clone().or_else(|| file.clone())
}

fn address(key: Key, value: Option<String>) -> Result<Option<SocketAddr>, ConfigError> {
    value.map(|v| parse_addr(key, &v)).transpose()
}

fn parse_addr(key: Key, value: &str) -> Result<SocketAddr, ConfigError> {
    value.trim().parse().map_err(|_| ConfigError::BadAddress {
        key,
        value: value.to_string(),
        hint: if value.contains(':') {
            " (IP:PORT; host names are not resolved)"
        } else {
            " (IP:PORT: the port is missing)"
        },
    })
}

/// The flag's list replaces the file's.
fn bootstrap(flags: &Flags, file: &FileConfig) -> Result<Vec<SocketAddr>, ConfigError> {
    let list = if flags.bootstrap.is_empty() {
        file.bootstrap.clone().unwrap_or_default()
    } else {
        flags.bootstrap.clone()
    };
    list.iter()
        .filter(|a| !a.trim().is_empty())
        .map(|a| parse_addr(BOOTSTRAP, a))
        .collect()
}

fn metrics(value: Option<String>) -> Result<Option<SocketAddr>, ConfigError> {
    match value {
        Some(v) if v.trim().eq_ignore_ascii_case("off") => Ok(None),
        Some(v) => parse_addr(METRICS_LISTEN, &v).map(Some),
        None => Ok(Some(DEFAULT_METRICS_LISTEN.parse().expect("valid default"))),
    }
}

/// A rate in bytes per second: the flag's text, else the file's text or number.
fn rate(
    key: Key,
    flag: &Option<String>,
    file: &Option<SizeValue>,
) -> Result<Option<u64>, ConfigError> {
    let text = match (flag, file) {
        (Some(text), _) | (None, Some(SizeValue::Text(text))) => text.clone(),
        (None, Some(SizeValue::Bytes(b))) => b.to_string(),
        (None, None) => return Ok(None),
    };
    units::parse_size(&text)
        .map(Some)
        .map_err(|why| ConfigError::BadSize {
            key,
            value: text,
            why,
        })
}

fn quota(flags: &Flags, file: &FileConfig) -> Result<Option<Quota>, ConfigError> {
    let fraction = |key: Key, value: Option<f64>, default: f64| {
        let v = value.unwrap_or(default);
        if v > 0.0 && v <= 1.0 {
            Ok(v)
        } else {
            Err(ConfigError::BadWatermark { key, value: v })
        }
    };
    let high = fraction(
        HIGH_WATERMARK,
        file.cache.high_watermark,
        DEFAULT_HIGH_WATERMARK,
    )?;
    let low = fraction(
        LOW_WATERMARK,
        file.cache.low_watermark,
        DEFAULT_LOW_WATERMARK,
    )?;
    if low >= high {
        return Err(ConfigError::WatermarkOrder { low, high });
    }
    let size = match (&flags.max_cache_size, &file.cache.max_size) {
        (Some(text), _) | (None, Some(SizeValue::Text(text))) => text.clone(),
        (None, Some(SizeValue::Bytes(b))) => b.to_string(),
        (None, None) => return Ok(None),
    };
    let max_bytes = units::parse_size(&size).map_err(|why| ConfigError::BadSize {
        key: MAX_SIZE,
        value: size,
        why,
    })?;
    Ok(Some(Quota {
        max_bytes,
        high_watermark: high,
        low_watermark: low,
    }))
}

/// The union of the file's lists, the flags' and the RunPod variables', in that order, without
/// duplicates.
fn preload(
    flags: &Flags,
    file: &FileConfig,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Vec<RepoRef>, ConfigError> {
    use RepoKind::{Dataset, Model};
    let runpod = |var: &str| env(var).map(|v| (var.to_string(), v));
    let sources = [
        (Model, with_origin("`preload.models`", &file.preload.models)),
        (
            Dataset,
            with_origin("`preload.datasets`", &file.preload.datasets),
        ),
        (Model, with_origin("--model (HFMESH_MODEL)", &flags.models)),
        (
            Dataset,
            with_origin("--dataset (HFMESH_DATASET)", &flags.datasets),
        ),
        (
            Model,
            runpod("RUNPOD_HUGGINGFACE_MODEL").into_iter().collect(),
        ),
        (
            Dataset,
            runpod("RUNPOD_HUGGINGFACE_DATASET").into_iter().collect(),
        ),
    ];
    let mut out: Vec<RepoRef> = Vec::new();
    for (kind, lists) in sources {
        for (from, list) in lists {
            let refs = RepoRef::parse_list(&list, kind).map_err(|source| {
                // Name the entry at fault, not only the whole list.
                let entry = list
                    .split(',')
                    .map(str::trim)
                    .find(|e| !e.is_empty() && RepoRef::parse(e, kind).is_err())
                    .unwrap_or(&list)
                    .to_string();
                ConfigError::BadPreload {
                    from: from.clone(),
                    entry,
                    source,
                }
            })?;
            for r in refs {
                if !out.contains(&r) {
                    out.push(r);
                }
            }
        }
    }
    Ok(out)
}

fn with_origin(from: &str, lists: &[String]) -> Vec<(String, String)> {
    lists
        .iter()
        .map(|l| (from.to_string(), l.clone()))
        .collect()
}

/// `--cluster-secret-file`, else `HFMESH_CLUSTER_SECRET`, else the file's `cluster_secret_file`.
fn cluster_secret(
    flags: &Flags,
    file: &FileConfig,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<ClusterSecret, ConfigError> {
    let from_file = |path: &Path| {
        let material = std::fs::read(path).map_err(|source| ConfigError::ReadFile {
            key: SECRET_FILE,
            path: path.to_path_buf(),
            source,
        })?;
        Ok::<_, ConfigError>((material, path.display().to_string()))
    };
    let (material, from) = match (
        &flags.cluster_secret_file,
        env(CLUSTER_SECRET_VAR).filter(|s| !s.is_empty()),
        &file.cluster_secret_file,
    ) {
        (Some(path), _, _) => from_file(path)?,
        (None, Some(secret), _) => (secret.into_bytes(), CLUSTER_SECRET_VAR.to_string()),
        (None, None, Some(path)) => from_file(path)?,
        (None, None, None) => return Err(ConfigError::MissingSecret),
    };
    ClusterSecret::from_material(&material).map_err(|_| ConfigError::WeakSecret { from })
}

fn read_token(path: &Path) -> Result<String, ConfigError> {
    let path: PathBuf = path.to_path_buf();
    let text = std::fs::read_to_string(&path).map_err(|source| ConfigError::ReadFile {
        key: TOKEN_FILE,
        path: path.clone(),
        source,
    })?;
    let token = text.replace(['\r', '\n'], "").trim().to_string();
    if token.is_empty() {
        return Err(ConfigError::EmptyToken {
            key: TOKEN_FILE,
            path,
        });
    }
    Ok(token)
}

#[cfg(test)]
#[path = "resolve_tests.rs"]
mod tests;
