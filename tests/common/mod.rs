//! Shared fixtures for the integration tests: a hub root with the repos every test uses, the
//! emulator started on it, and the `hfmesh` binary with a clean environment.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use hfmesh::config::Config;
use hfmesh::emulator::{Emulator, EmulatorConfig};
use hfmesh::repo::{RepoKind, RepoRef};

/// Size of the synthetic file in `acme/medium` (several segments and chunks, with a tail).
pub const MEDIUM_SIZE: u64 = 160 * 1024 * 1024 + 12345;
/// Size of the synthetic file in `acme/big`: over 1 GiB.
pub const BIG_SIZE: u64 = (1 << 30) + 4 * 1024 * 1024 + 7;
/// The token that may read `acme/private` and download `acme/gated`.
pub const GOOD_TOKEN: &str = "hf_allowed_token";

/// Writes the standard hub root into `root`:
/// - `acme/example` (main: nested paths, an empty file, a 1 MiB LFS file, a name with spaces;
///   branch `experimental` with tag `v1.0`; branch `refs/pr/1`);
/// - dataset `acme/ds`; gated `acme/gated`; private `acme/private`;
/// - synthetic `acme/medium` (160 MiB) and `acme/big` (> 1 GiB).
pub fn write_hub_root(root: &Path) {
    let put = |rel: &str, content: &[u8]| {
        let p = root.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, content).unwrap();
    };
    put("models/acme/example/config.json", b"{\"a\": 1}\n");
    put("models/acme/example/model.safetensors", &vec![0u8; 1 << 20]);
    put("models/acme/example/a/b/c.json", b"{}\n");
    put("models/acme/example/empty.txt", b"");
    put("models/acme/example/dir with space/file#1.txt", b"hello\n");
    put("branches/example-exp/config.json", b"{\"a\": 2}\n");
    put(
        "branches/example-exp/model.safetensors",
        &vec![0u8; 1 << 20],
    );
    put("branches/example-pr1/config.json", b"{\"a\": 3}\n");
    put("datasets/acme/ds/README.md", b"# ds\n");
    put("datasets/acme/ds/data/train.csv", b"x,y\n1,2\n");
    put("datasets/acme/ds/data/test.csv", b"x,y\n3,4\n");
    put("models/acme/gated/config.json", b"{\"gated\": true}\n");
    put("models/acme/private/config.json", b"{\"private\": true}\n");
    let toml = format!(
        r#"
[[repo]]
id = "acme/example"
[[repo.branch]]
name = "main"
[[repo.branch]]
name = "experimental"
dir = "branches/example-exp"
tags = ["v1.0"]
[[repo.branch]]
name = "refs/pr/1"
dir = "branches/example-pr1"

[[repo]]
id = "acme/gated"
gated = "manual"
tokens = ["{GOOD_TOKEN}"]

[[repo]]
id = "acme/private"
private = true
tokens = ["{GOOD_TOKEN}"]

[[repo]]
id = "acme/medium"
[[repo.branch]]
name = "main"
[[repo.branch.synthetic]]
path = "model.safetensors"
size = {MEDIUM_SIZE}
seed = 11

[[repo]]
id = "acme/big"
[[repo.branch]]
name = "main"
[[repo.branch.synthetic]]
path = "model-00001-of-00001.safetensors"
size = {BIG_SIZE}
seed = 7
"#
    );
    put("hub.toml", toml.as_bytes());
}

/// A hub root in a fresh temporary directory, and the emulator serving it.
pub async fn start_hub() -> (tempfile::TempDir, Emulator) {
    let dir = tempfile::tempdir().unwrap();
    write_hub_root(dir.path());
    let config = EmulatorConfig {
        root: Some(dir.path().to_path_buf()),
        ..EmulatorConfig::default()
    };
    let emulator = Emulator::start(config).await.expect("emulator starts");
    (dir, emulator)
}

/// The `hfmesh` binary with every Hub-related variable removed from its environment, and a
/// private `HF_HOME` so no token file of this machine is read.
pub fn hfmesh(hf_home: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_hfmesh"));
    for (k, _) in std::env::vars() {
        if k.starts_with("HF_")
            || k.starts_with("HFMESH_")
            || k.starts_with("RUNPOD_")
            || k.starts_with("HUGGING")
        {
            cmd.env_remove(k);
        }
    }
    cmd.env("HF_HOME", hf_home);
    cmd
}

/// Runs `hfmesh pull` against `endpoint` into `cache`, with extra arguments.
pub fn pull_cli(endpoint: &str, cache: &Path, args: &[&str]) -> Output {
    let home = cache.with_extension("home");
    hfmesh(&home)
        .args(["pull", "--quiet", "--endpoint", endpoint, "--cache-dir"])
        .arg(cache)
        .args(args)
        .output()
        .expect("hfmesh runs")
}

/// [`pull_cli`] on the blocking pool, for async tests.
pub async fn pull_cli_async(endpoint: &str, cache: &Path, args: &[&str]) -> Output {
    let (endpoint, cache) = (endpoint.to_string(), cache.to_path_buf());
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        pull_cli(&endpoint, &cache, &args)
    })
    .await
    .expect("the pull task ran")
}

/// The last line of a command's stdout.
pub fn last_line(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .last()
        .unwrap_or("")
        .to_string()
}

/// Waits until `cond` holds, polling every 20 ms, failing the test after `timeout`.
pub async fn wait_until(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Every path under `root`, relative, sorted (symlinks not followed).
pub fn tree(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let e = e.unwrap();
            out.push(e.path().strip_prefix(root).unwrap().to_path_buf());
            if e.file_type().unwrap().is_dir() {
                stack.push(e.path());
            }
        }
    }
    out.sort();
    out
}

/// The cluster secret of test clusters.
pub const SECRET: &[u8] = b"test cluster secret, 32 bytes ok";

/// A node config on loopback (ports picked by the OS) under `dir/node<n>`, key from `n`.
pub fn node_config(
    dir: &Path,
    hub: &str,
    n: u8,
    rack: &str,
    bootstrap: Vec<std::net::SocketAddr>,
) -> hfmesh::agent::NodeConfig {
    let root = dir.join(format!("node{n}"));
    hfmesh::agent::NodeConfig {
        cache_dir: root.join("hub"),
        state_dir: root.join("state"),
        hub: hfmesh::hub::HubConfig::for_endpoint(hub).unwrap(),
        cluster: hfmesh::node::ClusterSecret::from_material(SECRET).unwrap(),
        key: hfmesh::node::NodeKey::from_secret([n; 32]),
        topology: hfmesh::node::Topology {
            zone: Some("z1".into()),
            rack: Some(rack.into()),
        },
        p2p_listen: "127.0.0.1:0".parse().unwrap(),
        quic_listen: "127.0.0.1:0".parse().unwrap(),
        bootstrap,
        mdns: false,
        mesh: hfmesh::mesh::MeshConfig::default(),
        provider_ttl: Duration::from_secs(600),
    }
}

/// Waits until `node` sees a provider of `key`.
pub async fn wait_for_provider(node: &hfmesh::agent::Node, key: hfmesh::discovery::ContentKey) {
    use hfmesh::discovery::Discovery;
    let deadline = Instant::now() + Duration::from_secs(30);
    while node
        .discovery
        .providers(key.clone(), 8)
        .await
        .unwrap_or_default()
        .is_empty()
    {
        assert!(
            Instant::now() < deadline,
            "timed out waiting for a provider of {key:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Runs `hfmesh <args> --socket <sock> --json` against an agent and parses its stdout.
pub fn ops_json(sock: &Path, args: &[&str]) -> serde_json::Value {
    let out = hfmesh(&sock.with_extension("home"))
        .args(args)
        .arg("--socket")
        .arg(sock)
        .arg("--json")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "hfmesh {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "hfmesh {args:?} printed no JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

/// [`ops_json`] on the blocking pool, for async tests.
pub async fn ops_async(sock: &Path, args: &[&str]) -> serde_json::Value {
    let (sock, args): (PathBuf, Vec<String>) = (
        sock.to_path_buf(),
        args.iter().map(|s| s.to_string()).collect(),
    );
    tokio::task::spawn_blocking(move || {
        ops_json(&sock, &args.iter().map(String::as_str).collect::<Vec<_>>())
    })
    .await
    .unwrap()
}

/// Asserts that `snapshot` holds the whole `acme/medium` model file.
pub fn assert_medium_model(snapshot: &Path) {
    let len = std::fs::metadata(snapshot.join("model.safetensors"))
        .unwrap()
        .len();
    assert_eq!(
        len,
        MEDIUM_SIZE,
        "model.safetensors in {}",
        snapshot.display()
    );
}

/// An agent config on loopback under `dir/node<n>` (see [`node_config`]) with the control socket
/// there, metrics on an OS-picked port, and `preload` (models).
pub fn agent_config(
    dir: &Path,
    hub: &str,
    n: u8,
    bootstrap: Vec<std::net::SocketAddr>,
    preload: &[&str],
) -> Config {
    let node = node_config(dir, hub, n, "r1", bootstrap);
    Config {
        control_socket: dir.join(format!("node{n}/agent.sock")),
        metrics_listen: Some("127.0.0.1:0".parse().unwrap()),
        preload: preload
            .iter()
            .map(|r| RepoRef::parse(r, RepoKind::Model).unwrap())
            .collect(),
        quota: None,
        hf_user: None,
        direct_io: true,
        node,
    }
}

/// Waits (bounded) until the agent `d` has its whole preload.
pub async fn wait_ready(d: &hfmesh::agent::daemon::Daemon) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !d.ready() {
        assert!(
            Instant::now() < deadline,
            "preload did not finish: {:?}",
            d.preload_states()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
