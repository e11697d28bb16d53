//! `hfmesh verify`: damage in the local tree (a flipped byte, a truncated blob, a deleted blob) is
//! found and repaired, from a peer when an agent runs, from the Hub without one; `--no-repair`
//! reports and fails without changing anything.

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;

use common::*;
use hfmesh::agent::daemon::Daemon;

/// Runs `hfmesh verify <args> --json`; answers the exit status and the parsed report.
async fn verify(home: &Path, args: &[&str]) -> (bool, serde_json::Value) {
    let mut cmd = hfmesh(home);
    cmd.arg("verify").args(args).arg("--json");
    let out: Output = tokio::process::Command::from(cmd).output().await.unwrap();
    let report = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "hfmesh verify {args:?} printed no JSON ({e}): {} / {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.success(), report)
}

/// The blob behind `snapshot/<file>`.
fn blob_of(snapshot: &Path, file: &str) -> PathBuf {
    std::fs::canonicalize(snapshot.join(file)).unwrap()
}

/// Damages `acme/example` in `snapshot`: a flipped byte in the LFS file, a truncated
/// `config.json`, a deleted `a/b/c.json`. Answers the original bytes of the three files.
fn damage(snapshot: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let files = ["model.safetensors", "config.json", "a/b/c.json"];
    let originals: Vec<(PathBuf, Vec<u8>)> = files
        .iter()
        .map(|f| {
            let blob = blob_of(snapshot, f);
            let data = std::fs::read(&blob).unwrap();
            (snapshot.join(f), data)
        })
        .collect();
    let lfs = blob_of(snapshot, files[0]);
    let mut data = originals[0].1.clone();
    data[777] ^= 0x40;
    std::fs::write(&lfs, &data).unwrap();
    std::fs::write(blob_of(snapshot, files[1]), b"{").unwrap();
    std::fs::remove_file(blob_of(snapshot, files[2])).unwrap();
    originals
}

fn assert_restored(originals: &[(PathBuf, Vec<u8>)]) {
    for (path, data) in originals {
        assert_eq!(
            &std::fs::read(path).unwrap(),
            data,
            "{} is whole again",
            path.display()
        );
    }
}

fn damaged_paths(report: &serde_json::Value) -> Vec<String> {
    let mut found: Vec<String> = report["snapshots"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|s| s["damage"].as_array().unwrap().iter())
        .map(|d| {
            format!(
                "{}:{}",
                d["path"].as_str().unwrap(),
                d["problem"].as_str().unwrap()
            )
        })
        .collect();
    found.sort();
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_repairs_a_damaged_tree_from_a_peer() {
    let (_root, hub) = start_hub().await;
    let dir = tempfile::tempdir().unwrap();
    let a = Daemon::start(agent_config(
        dir.path(),
        &hub.url(),
        1,
        vec![],
        &["acme/example"],
    ))
    .await
    .unwrap();
    wait_ready(&a).await;
    let b = Daemon::start(agent_config(
        dir.path(),
        &hub.url(),
        2,
        vec![a.node.p2p_addr()],
        &["acme/example"],
    ))
    .await
    .unwrap();
    wait_ready(&b).await;
    let sock = b.config.control_socket.clone();
    let home = dir.path().join("user");
    let sock_arg = sock.to_str().unwrap();

    let (ok, clean) = verify(&home, &["--socket", sock_arg]).await;
    assert!(ok, "{clean}");
    assert_eq!(clean["files"], 5);
    assert_eq!(clean["damaged"], 0);
    assert_eq!(clean["bytes"], (1 << 20) + 9 + 3 + 6);

    let held = ops_async(&sock, &["holdings"]).await;
    let commit = held[0]["commit"].as_str().unwrap();
    let snapshot = b
        .config
        .node
        .cache_dir
        .join("models--acme--example/snapshots")
        .join(commit);
    let originals = damage(&snapshot);

    // Report only: the damage is listed, the command fails, nothing changes.
    let (ok, report) = verify(
        &home,
        &["acme/example", "--no-repair", "--socket", sock_arg],
    )
    .await;
    assert!(!ok, "damage left in place is a failure");
    assert_eq!(
        damaged_paths(&report),
        vec![
            "a/b/c.json:missing",
            "config.json:wrong_size",
            "model.safetensors:wrong_hash"
        ]
    );
    assert!(!snapshot.join("a/b/c.json").exists());

    // Repair: from agent 1, not from the Hub.
    let served = hub.stats().bytes_served;
    let (ok, report) = verify(&home, &["acme/example:main", "--socket", sock_arg]).await;
    assert!(ok, "{report}");
    assert_eq!(report["damaged"], 3);
    assert_eq!(report["repaired"], 1);
    assert_eq!(report["snapshots"][0]["repaired"], true);
    assert_restored(&originals);
    assert_eq!(
        hub.stats().bytes_served,
        served,
        "the repair took nothing from the Hub"
    );
    let status = ops_async(&sock, &["status"]).await;
    assert!(
        status["bytes_from_peers"].as_u64().unwrap() >= (1 << 20),
        "{status}"
    );
    let (ok, again) = verify(&home, &["--socket", sock_arg]).await;
    assert!(ok && again["damaged"] == 0, "{again}");

    // The damage found is counted in the metrics.
    let metrics = reqwest::get(format!("http://{}/metrics", b.metrics_addr().unwrap()))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("hfmesh_verify_damaged_files_total 6\n"),
        "3 found by the report-only run, 3 by the repairing run"
    );
    b.shutdown().await;
    a.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_an_agent_verify_repairs_from_the_hub() {
    let (_root, hub) = start_hub().await;
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("hub");
    let out = pull_cli_async(&hub.url(), &cache, &["acme/example"]).await;
    assert!(out.status.success());
    let snapshot = PathBuf::from(last_line(&out));
    let originals = damage(&snapshot);
    let home = dir.path().join("home");
    let cache_arg = cache.to_str().unwrap();
    let (ok, report) = verify(
        &home,
        &["--standalone", "--no-repair", "--cache-dir", cache_arg],
    )
    .await;
    assert!(!ok);
    assert_eq!(report["damaged"], 3);

    let (ok, report) = verify(
        &home,
        &[
            "--standalone",
            "--cache-dir",
            cache_arg,
            "--endpoint",
            &hub.url(),
        ],
    )
    .await;
    assert!(ok, "{report}");
    assert_eq!(report["repaired"], 1);
    assert_restored(&originals);

    // An unknown repository is a clear error.
    let mut cmd = hfmesh(&home);
    cmd.args([
        "verify",
        "acme/nothing",
        "--standalone",
        "--cache-dir",
        cache_arg,
    ]);
    let out = tokio::process::Command::from(cmd).output().await.unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("holds no snapshot of model acme/nothing"),
        "{err}"
    );
}
