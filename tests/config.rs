//! The agent's configuration end to end: a file, an environment (passed as a closure) and flags
//! resolved into one `Config`; and, through the binary, flags over `HFMESH_*` variables over the
//! file.

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;

use hfmesh::config::{Config, FileConfig, Flags};

fn env_of(pairs: &[(&str, String)]) -> impl Fn(&str) -> Option<String> {
    let map: HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect();
    move |k| map.get(k).cloned()
}

fn write_config(dir: &Path, extra: &str) -> std::path::PathBuf {
    std::fs::write(
        dir.join("cluster.secret"),
        "0123456789abcdef0123456789abcdef\n",
    )
    .unwrap();
    let text = format!(
        "cluster_secret_file = {secret:?}\n\
         state_dir = {state:?}\n\
         cache_dir = {cache:?}\n\
         zone = \"file-zone\"\n\
         rack = \"r12\"\n\
         bootstrap = [\"10.0.0.1:4001\"]\n\
         {extra}\n\
         [preload]\n\
         models = [\"facebook/opt-350m:main\", \"google/flan-t5-base:experimental\"]\n\
         [cache]\n\
         max_size = \"500GiB\"\n\
         high_watermark = 0.9\n\
         low_watermark = 0.8\n",
        secret = dir.join("cluster.secret"),
        state = dir.join("state"),
        cache = dir.join("hub"),
    );
    let path = dir.join("agent.toml");
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn file_env_and_flags_resolve_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(dir.path(), "");
    let env = env_of(&[
        (
            "RUNPOD_HUGGINGFACE_MODEL",
            "facebook/opt-350m:main, acme/extra:v2".to_string(),
        ),
        ("RUNPOD_HUGGINGFACE_DATASET", "acme/corpus".to_string()),
        ("RUNPOD_HUGGINGFACE_USER", "alice".to_string()),
        ("HF_TOKEN", "hf_from_env".to_string()),
        ("HF_HUB_CACHE", "/ignored/the/file/wins".to_string()),
    ]);
    let flags = Flags {
        config: Some(path.clone()),
        zone: Some("flag-zone".to_string()),
        models: vec!["acme/from-flag".to_string()],
        ..Flags::default()
    };

    let file = FileConfig::load(flags.config.as_deref()).unwrap();
    let first = Config::resolve(&flags, file.clone(), &env).unwrap();
    let key_path = dir.path().join("state/node.key");
    assert!(key_path.exists(), "the node key is created on first start");
    let second = Config::resolve(&flags, file, &env).unwrap();
    assert_eq!(
        first.node.key.id(),
        second.node.key.id(),
        "and reused after"
    );

    let c = second;
    assert_eq!(c.node.cache_dir, dir.path().join("hub"));
    assert_eq!(c.node.state_dir, dir.path().join("state"));
    assert_eq!(c.control_socket, dir.path().join("state/agent.sock"));
    assert_eq!(c.node.topology.zone.as_deref(), Some("flag-zone"));
    assert_eq!(c.node.topology.rack.as_deref(), Some("r12"));
    assert_eq!(c.node.bootstrap.len(), 1);
    assert_eq!(c.node.hub.token.as_deref(), Some("hf_from_env"));
    assert_eq!(c.hf_user.as_deref(), Some("alice"));
    let quota = c.quota.unwrap();
    assert_eq!(quota.max_bytes, 500 << 30);
    let preload: Vec<String> = c.preload.iter().map(|r| r.to_string()).collect();
    assert_eq!(
        preload,
        [
            "facebook/opt-350m:main",
            "google/flan-t5-base:experimental",
            "acme/from-flag:main",
            "acme/extra:v2",
            "dataset acme/corpus:main",
        ]
    );
}

#[test]
fn a_bad_file_is_one_line_naming_the_key_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(dir.path(), "metrics_port = 9464");
    let e = FileConfig::load(Some(&path)).unwrap_err().to_string();
    assert!(
        e.starts_with(&format!(
            "config file {}, line 7, column 1: ",
            path.display()
        )),
        "{e}"
    );
    assert!(e.contains("unknown field `metrics_port`"), "{e}");
    assert_eq!(e.lines().count(), 1, "{e}");
}

/// Runs `hfmesh agent` with `args` and `HFMESH_*` variables; returns stderr (it must fail:
/// these runs stop at resolution).
fn agent_fails(args: &[&str], vars: &[(&str, &str)]) -> String {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_hfmesh"));
    cmd.arg("agent").args(args);
    for (k, v) in vars {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    assert!(!out.status.success());
    String::from_utf8(out.stderr).unwrap()
}

#[test]
fn flag_beats_hfmesh_env_beats_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(dir.path(), "p2p_listen = \"file-bad\"");
    let path = path.to_str().unwrap();
    let e = agent_fails(&["--config", path], &[]);
    assert!(e.contains("\"file-bad\""), "{e}");
    let e = agent_fails(&["--config", path], &[("HFMESH_P2P_LISTEN", "env-bad")]);
    assert!(e.contains("\"env-bad\""), "{e}");
    let e = agent_fails(
        &["--config", path, "--p2p-listen", "flag-bad"],
        &[("HFMESH_P2P_LISTEN", "env-bad")],
    );
    assert!(e.contains("\"flag-bad\""), "{e}");
    assert_eq!(e.trim().lines().count(), 1, "{e}");
    // HFMESH_CONFIG names the file like --config does.
    let e = agent_fails(&[], &[("HFMESH_CONFIG", path)]);
    assert!(e.contains("\"file-bad\""), "{e}");
}
