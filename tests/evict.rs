//! Disk quota and eviction in a running agent: pulls past the high watermark evict the least
//! recently used snapshots down to the low watermark while the pinned, the preloaded and an open
//! one stay; the evicted snapshot's DHT record is withdrawn (a second node stops finding it);
//! `hfmesh gc`, `pin`, `unpin`, `evict` and `holdings` through the command line.

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

use common::*;
use hfmesh::agent::daemon::Daemon;
use hfmesh::config::{Config, Quota};
use hfmesh::discovery::{ContentKey, Discovery};
use hfmesh::emulator::{Emulator, EmulatorConfig};
use hfmesh::repo::{CommitId, RepoKind, RepoRef};

/// Size of each synthetic model `acme/s1` .. `acme/s5`.
const S: u64 = 2 << 20;
/// The quota of the evicting agent: it starts above 11.4 MB (after the fifth model) and stops
/// at or below 10.7 MB (once both `acme/example` snapshots are gone).
const QUOTA: Quota = Quota {
    max_bytes: 16 << 20,
    high_watermark: 0.68,
    low_watermark: 0.64,
};
/// Bytes of `acme/example` main and experimental together (they share the 1 MiB weights).
const EXAMPLE_BYTES: u64 = (1 << 20) + 9 + 3 + 6 + 9;
/// Provider record lifetime, short so a withdrawn record expires within the test.
const TTL: Duration = Duration::from_secs(4);

/// The standard hub root plus five 2 MiB synthetic models, served.
async fn start_hub() -> (tempfile::TempDir, Emulator) {
    let dir = tempfile::tempdir().unwrap();
    write_hub_root(dir.path());
    let mut toml = std::fs::read_to_string(dir.path().join("hub.toml")).unwrap();
    for n in 1..=5 {
        toml.push_str(&format!(
            "\n[[repo]]\nid = \"acme/s{n}\"\n[[repo.branch]]\nname = \"main\"\n\
             [[repo.branch.synthetic]]\npath = \"w.bin\"\nsize = {S}\nseed = {n}\n"
        ));
    }
    std::fs::write(dir.path().join("hub.toml"), toml).unwrap();
    let config = EmulatorConfig {
        root: Some(dir.path().to_path_buf()),
        ..EmulatorConfig::default()
    };
    (dir, Emulator::start(config).await.expect("emulator starts"))
}

fn config(dir: &Path, hub: &str, n: u8, bootstrap: Vec<std::net::SocketAddr>) -> Config {
    let mut config = agent_config(dir, hub, n, bootstrap, &[]);
    config.node.provider_ttl = TTL;
    config
}

fn model(r: &str) -> RepoRef {
    RepoRef::parse(r, RepoKind::Model).unwrap()
}

/// Runs `hfmesh <args> --socket <sock>` on the blocking pool.
async fn ops_raw(sock: &Path, args: &[&str]) -> Output {
    let sock = sock.to_path_buf();
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        hfmesh(&sock.with_extension("home"))
            .args(&args)
            .arg("--socket")
            .arg(&sock)
            .output()
            .unwrap()
    })
    .await
    .unwrap()
}

/// Runs an ops command that must fail; returns its error message.
async fn ops_refused(sock: &Path, args: &[&str]) -> String {
    let out = ops_raw(sock, args).await;
    assert!(!out.status.success(), "hfmesh {args:?} succeeded");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn snapshot_dir(d: &Daemon, repo: &str, commit: &CommitId) -> PathBuf {
    d.config
        .node
        .cache_dir
        .join(format!("models--{}", repo.replace('/', "--")))
        .join("snapshots")
        .join(commit.as_str())
}

/// Every ref file in the cache names a snapshot that exists.
fn assert_no_dangling_refs(cache: &Path) {
    for repo in std::fs::read_dir(cache).unwrap().flatten() {
        let refs = repo.path().join("refs");
        if !refs.is_dir() {
            continue;
        }
        for rel in tree(&refs).into_iter().filter(|r| refs.join(r).is_file()) {
            let commit = std::fs::read_to_string(refs.join(&rel)).unwrap();
            assert!(
                repo.path().join("snapshots").join(&commit).is_dir(),
                "{} points at a missing snapshot",
                refs.join(rel).display()
            );
        }
    }
}

async fn metrics_text(d: &Daemon) -> String {
    let addr = d.metrics_addr().expect("metrics are on");
    reqwest::get(format!("http://{addr}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// Waits until `node` finds no provider of `key` (a withdrawn record expired everywhere).
async fn wait_for_no_provider(node: &hfmesh::agent::Node, key: ContentKey) {
    let deadline = Instant::now() + TTL * 6;
    while !node
        .discovery
        .providers(key.clone(), 8)
        .await
        .unwrap()
        .is_empty()
    {
        assert!(Instant::now() < deadline, "{key:?} is still provided");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_over_its_quota_evicts_the_least_recently_used_and_keeps_the_protected() {
    let (_root, hub) = start_hub().await;
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path(), &hub.url(), 1, vec![]);
    cfg.quota = Some(QUOTA);
    cfg.preload = vec![model("acme/s1")];
    let a = Daemon::start(cfg).await.unwrap();
    let sock = a.config.control_socket.clone();
    wait_until("the preload", Duration::from_secs(60), || a.ready()).await;

    // Oldest first: the preloaded s1, a pinned s2, an s3 whose blob a process holds open, then
    // two snapshots of acme/example that share their weights, a dataset, and s4.
    a.pull(model("acme/s2")).await.unwrap();
    let pinned = ops_async(&sock, &["pin", "acme/s2"]).await;
    assert_eq!(
        (pinned["pinned"].as_bool(), pinned["changed"].as_bool()),
        (Some(true), Some(true))
    );
    let s3 = a.pull(model("acme/s3")).await.unwrap();
    let held = std::fs::File::open(s3.snapshot_dir.join("w.bin")).unwrap();
    let exp = a.pull(model("acme/example:experimental")).await.unwrap();
    let main = a.pull(model("acme/example")).await.unwrap();
    let ds = RepoRef::parse("acme/ds", RepoKind::Dataset).unwrap();
    a.pull(ds.clone()).await.unwrap();
    let s4 = a.pull(model("acme/s4")).await.unwrap();
    let usage = ops_async(&sock, &["gc"]).await;
    assert_eq!(
        usage["evicted"].as_array().unwrap().len(),
        0,
        "below the high watermark: {usage}"
    );
    assert_eq!(
        usage["quota"]["high_bytes"],
        (QUOTA.max_bytes as f64 * 0.68).floor() as u64
    );

    // A second node sees this one as a provider of acme/example.
    let b = Daemon::start(config(dir.path(), &hub.url(), 2, vec![a.node.p2p_addr()]))
        .await
        .unwrap();
    let key = |repo: &str, commit: &CommitId| ContentKey::Snapshot {
        kind: RepoKind::Model,
        repo: hfmesh::repo::RepoId::parse(repo).unwrap(),
        commit: commit.clone(),
    };
    wait_for_provider(&b.node, key("acme/example", &main.commit)).await;

    // The fifth model takes usage past the high watermark: the pass that follows its pull
    // evicts both acme/example snapshots (least recently used of the unprotected ones) and
    // stops at the low watermark.
    let s5 = a.pull(model("acme/s5")).await.unwrap();
    let example = a.config.node.cache_dir.join("models--acme--example");
    wait_until(
        "acme/example to be evicted",
        Duration::from_secs(30),
        || !example.exists(),
    )
    .await;
    for (repo, commit) in [
        ("acme/s3", &s3.commit),
        ("acme/s4", &s4.commit),
        ("acme/s5", &s5.commit),
    ] {
        assert!(snapshot_dir(&a, repo, commit).is_dir(), "{repo} stays");
    }
    let held_here = ops_async(&sock, &["holdings"]).await;
    let names: Vec<&str> = held_here
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["repo"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["acme/s1", "acme/s2", "acme/s3", "acme/s4", "acme/s5", "acme/ds"]
    );
    assert_no_dangling_refs(&a.config.node.cache_dir);
    assert!(!exp.snapshot_dir.exists() && !main.snapshot_dir.exists());
    // The pass counts its evictions after the files are gone: wait (bounded) for it to finish.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let text = loop {
        let text = metrics_text(&a).await;
        if text.contains("hfmesh_evictions_total 2\n") || std::time::Instant::now() > deadline {
            break text;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(text.contains("hfmesh_evictions_total 2\n"), "{text}");
    assert!(
        text.contains(&format!("hfmesh_evicted_bytes_total {EXAMPLE_BYTES}\n")),
        "{text}"
    );
    let after = ops_async(&sock, &["status"]).await;
    assert_eq!(
        after["cache_bytes"].as_u64().unwrap(),
        5 * S + 5 + 8 + 8,
        "five models and ds"
    );

    // Its DHT record is withdrawn: the second node stops finding it, but still finds s4 here.
    wait_for_no_provider(&b.node, key("acme/example", &main.commit)).await;
    wait_for_provider(&b.node, key("acme/s4", &s4.commit)).await;

    // Refusals, each one clear sentence.
    let err = ops_refused(&sock, &["evict", "acme/s2"]).await;
    assert!(err.contains("is pinned: unpin it first"), "{err}");
    let err = ops_refused(&sock, &["evict", "acme/s1"]).await;
    assert!(err.contains("is preloaded"), "{err}");
    let err = ops_refused(&sock, &["evict", "acme/s3"]).await;
    assert!(
        err.contains("is in use") && err.contains(&format!("process {}", std::process::id())),
        "{err}"
    );
    let err = ops_refused(&sock, &["pin", "acme/example"]).await;
    assert!(err.contains("is not in this host's cache"), "{err}");

    // Unpinned, s2 can go; closed, s3 too.
    let unpinned = ops_async(&sock, &["unpin", "acme/s2"]).await;
    assert_eq!(unpinned["pinned"], false);
    let gone = ops_async(&sock, &["evict", "acme/s2"]).await;
    assert_eq!(gone["evicted"]["freed_bytes"], S);
    assert_eq!(
        gone["usage_before"].as_u64().unwrap() - gone["usage_after"].as_u64().unwrap(),
        S
    );
    drop(held);
    let gone = ops_async(&sock, &["evict", &format!("acme/s3:{}", s3.commit)]).await;
    assert_eq!(gone["evicted"]["snapshot"]["commit"], s3.commit.as_str());
    assert!(!s3.snapshot_dir.exists());

    // Holdings report size, pin and last use; the human forms print.
    ops_async(&sock, &["pin", "acme/s4"]).await;
    let holdings = ops_async(&sock, &["holdings"]).await;
    let s4_entry = holdings
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["repo"] == "acme/s4")
        .unwrap();
    assert_eq!(
        (
            s4_entry["size_bytes"].as_u64(),
            s4_entry["pinned"].as_bool()
        ),
        (Some(S), Some(true))
    );
    assert!(s4_entry["last_used_ms"].as_u64().unwrap() > 0);
    let human = ops_raw(&sock, &["gc"]).await;
    let line = String::from_utf8_lossy(&human.stdout).into_owned();
    assert!(
        line.starts_with("cache ") && line.contains("evicted 0 snapshot(s)"),
        "{line}"
    );
    let line = String::from_utf8_lossy(&ops_raw(&sock, &["holdings"]).await.stdout).into_owned();
    assert!(
        line.contains("acme/s4") && line.contains("2.0 MiB") && line.contains("yes"),
        "{line}"
    );

    // Without a quota, gc does nothing and says so.
    let none = ops_async(&b.config.control_socket, &["gc"]).await;
    assert!(
        none["quota"].is_null() && none["evicted"].as_array().unwrap().is_empty(),
        "{none}"
    );

    b.shutdown().await;
    a.shutdown().await;
}
