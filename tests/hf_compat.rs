//! Proof against the real client: with `HF_ENDPOINT` at the emulator, an unmodified
//! `huggingface_hub` `snapshot_download` writes a tree identical to hfmesh's (names, symlink
//! targets, blob bytes, refs), and `huggingface_hub` offline loads every file of hfmesh's tree
//! while `scan_cache_dir()` reports it without warnings.
//!
//! Needs `HFMESH_TEST_PYTHON` (set by `scripts/test.sh`) or `.venv/bin/python` with
//! `huggingface_hub` installed; fails (never skips) without it.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;

fn python() -> PathBuf {
    let p = std::env::var_os("HFMESH_TEST_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python"));
    assert!(
        p.exists(),
        "no Python with huggingface_hub at {}: run `bash scripts/test.sh`, which sets it up",
        p.display()
    );
    p
}

fn hf_check(hf_home: &Path, endpoint: &str, args: &[&str]) -> String {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/hf_check.py");
    let mut cmd = Command::new(python());
    for (k, _) in std::env::vars() {
        if k.starts_with("HF_") || k.starts_with("HUGGING") {
            cmd.env_remove(k);
        }
    }
    let out = cmd
        .arg(script)
        .args(args)
        .env("HF_ENDPOINT", endpoint)
        .env("HF_HOME", hf_home)
        .env("HF_HUB_DISABLE_TELEMETRY", "1")
        .env("HF_HUB_DISABLE_PROGRESS_BARS", "1")
        .output()
        .expect("python runs");
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "hf_check {args:?} failed:\n{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

struct Case {
    repo: &'static str,
    kind: &'static str,
    revision: &'static str,
    token: Option<&'static str>,
}

/// Pulls every case with hfmesh into one cache and with `huggingface_hub` into another, then
/// checks both ways.
async fn check_cases(cases: &[Case]) {
    let (_root, hub) = start_hub().await;
    let url = hub.url();
    let work = tempfile::tempdir().unwrap();
    let (ours, theirs, home) = (
        work.path().join("hfmesh"),
        work.path().join("hf"),
        work.path().join("home"),
    );
    for c in cases {
        let spec = format!("{}:{}", c.repo, c.revision);
        let mut args = vec![spec.as_str()];
        if c.kind == "dataset" {
            args.push("--dataset");
        }
        if let Some(t) = c.token {
            args.extend(["--token", t]);
        }
        let out = pull_cli_async(&url, &ours, &args).await;
        assert!(
            out.status.success(),
            "hfmesh pull {spec}: {}",
            String::from_utf8_lossy(&out.stderr)
        );

        let mut py = vec![
            "download",
            c.repo,
            "--type",
            c.kind,
            "--revision",
            c.revision,
            "--cache-dir",
        ];
        let theirs_s = theirs.to_string_lossy().to_string();
        py.push(&theirs_s);
        if let Some(t) = c.token {
            py.extend(["--token", t]);
        }
        let printed = run_python(&home, &url, &py).await;
        assert_eq!(
            printed.lines().last().unwrap(),
            last_line(&out).replace(&ours.to_string_lossy().to_string(), &theirs_s)
        );
    }
    let report = run_python(
        &home,
        &url,
        &[
            "compare",
            &ours.to_string_lossy(),
            &theirs.to_string_lossy(),
        ],
    )
    .await;
    assert!(report.contains(": 0 differences"), "{report}");

    // Offline, against hfmesh's tree only: the emulator is gone.
    hub.shutdown().await;
    for c in cases {
        let ours_s = ours.to_string_lossy().to_string();
        let report = run_python(
            &home,
            "http://127.0.0.1:9",
            &[
                "offline",
                &ours_s,
                c.repo,
                "--type",
                c.kind,
                "--revision",
                c.revision,
            ],
        )
        .await;
        assert!(report.contains(", 0 problems"), "{report}");
    }
}

async fn run_python(home: &Path, url: &str, args: &[&str]) -> String {
    let (home, url, args) = (
        home.to_path_buf(),
        url.to_string(),
        args.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
    );
    tokio::task::spawn_blocking(move || {
        hf_check(
            &home,
            &url,
            &args.iter().map(String::as_str).collect::<Vec<_>>(),
        )
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trees_match_huggingface_hub_for_models_datasets_branches_and_gated_repos() {
    check_cases(&[
        Case {
            repo: "acme/example",
            kind: "model",
            revision: "main",
            token: None,
        },
        Case {
            repo: "acme/example",
            kind: "model",
            revision: "experimental",
            token: None,
        },
        Case {
            repo: "acme/ds",
            kind: "dataset",
            revision: "main",
            token: None,
        },
        Case {
            repo: "acme/gated",
            kind: "model",
            revision: "main",
            token: Some(GOOD_TOKEN),
        },
    ])
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tree_matches_huggingface_hub_for_a_file_over_1_gib() {
    check_cases(&[Case {
        repo: "acme/big",
        kind: "model",
        revision: "main",
        token: None,
    }])
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huggingface_hub_and_hfmesh_fill_one_cache_at_the_same_time() {
    let (_root, hub) = start_hub().await;
    // Slow enough (about 2.5 s for the file) that the two overlap and meet at the blob lock.
    hub.set_faults(hfmesh::emulator::Faults {
        bandwidth_bps: Some(64 << 20),
        ..Default::default()
    });
    let url = hub.url();
    let work = tempfile::tempdir().unwrap();
    let (cache, home) = (work.path().join("hub"), work.path().join("home"));
    let cache_s = cache.to_string_lossy().to_string();
    let ours = pull_cli_async(&url, &cache, &["acme/medium"]);
    let py_args = ["download", "acme/medium", "--cache-dir", &cache_s];
    let theirs = run_python(&home, &url, &py_args);
    let (ours, theirs) = tokio::join!(ours, theirs);
    assert!(
        ours.status.success(),
        "{}",
        String::from_utf8_lossy(&ours.stderr)
    );
    assert_eq!(theirs.lines().last().unwrap(), last_line(&ours));
    let served = hub.stats().bytes_served;
    assert!(
        served < MEDIUM_SIZE + MEDIUM_SIZE / 2,
        "the blob lock kept the two from both downloading it: {served}"
    );
    hub.shutdown().await;
    let report = run_python(
        &home,
        "http://127.0.0.1:9",
        &["offline", &cache_s, "acme/medium"],
    )
    .await;
    assert!(report.contains(", 0 problems"), "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tree_pulled_from_peers_passes_the_same_checks_as_a_hub_pull() {
    let (_root, hub) = start_hub().await;
    let url = hub.url();
    let dir = tempfile::tempdir().unwrap();
    let silent = || -> std::sync::Arc<dyn hfmesh::progress::Progress> {
        std::sync::Arc::new(hfmesh::progress::Silent)
    };
    let what = hfmesh::repo::RepoRef::parse("acme/example", hfmesh::repo::RepoKind::Model).unwrap();
    let holder = hfmesh::agent::Node::start(node_config(dir.path(), &url, 1, "r1", vec![]))
        .await
        .unwrap();
    let first = holder.pull(&what, silent()).await.unwrap();
    let puller = hfmesh::agent::Node::start(node_config(
        dir.path(),
        &url,
        2,
        "r1",
        vec![holder.p2p_addr()],
    ))
    .await
    .unwrap();
    let key = hfmesh::discovery::ContentKey::Snapshot {
        kind: what.kind,
        repo: what.id.clone(),
        commit: first.commit.clone(),
    };
    wait_for_provider(&puller, key).await;
    let r = puller.pull(&what, silent()).await.unwrap();
    assert!(r.manifest_from_peer && r.bytes_from_hub == 0, "{r:?}");

    // The same repo with the real client, then both checks against the peer-pulled tree.
    let theirs = dir.path().join("hf");
    let home = dir.path().join("home");
    let theirs_s = theirs.to_string_lossy().to_string();
    run_python(
        &home,
        &url,
        &["download", "acme/example", "--cache-dir", &theirs_s],
    )
    .await;
    let ours = dir.path().join("node2/hub");
    let report = run_python(
        &home,
        &url,
        &["compare", &ours.to_string_lossy(), &theirs_s],
    )
    .await;
    assert!(report.contains(": 0 differences"), "{report}");
    hub.shutdown().await;
    let report = run_python(
        &home,
        "http://127.0.0.1:9",
        &["offline", &ours.to_string_lossy(), "acme/example"],
    )
    .await;
    assert!(report.contains(", 0 problems"), "{report}");
    puller.shutdown().await;
    holder.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huggingface_hub_reads_a_tree_after_an_eviction() {
    use hfmesh::cache::RepoCache;
    use hfmesh::repo::{RepoId, RepoKind, Revision};

    let (_root, hub) = start_hub().await;
    let work = tempfile::tempdir().unwrap();
    let (cache, home) = (work.path().join("hub"), work.path().join("home"));
    // main and experimental share their weights; the tag v1.0 is experimental's commit.
    for spec in [
        "acme/example",
        "acme/example:experimental",
        "acme/example:v1.0",
    ] {
        let out = pull_cli_async(&hub.url(), &cache, &[spec]).await;
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let repo = RepoCache::new(
        &cache,
        RepoKind::Model,
        &RepoId::parse("acme/example").unwrap(),
    );
    let rev = |r: &str| Revision::parse(r).unwrap();
    let exp = repo.read_ref(&rev("experimental")).unwrap();
    let removed = repo.remove_snapshot(&exp).unwrap();
    assert_eq!(
        removed.freed_bytes, 9,
        "only its config.json: main keeps the weights"
    );
    assert_eq!(repo.read_ref(&rev("v1.0")), None);
    assert!(repo.read_ref(&rev("main")).is_some());

    // Offline: the rest loads, and scan_cache_dir() has no complaint (a ref to the removed
    // snapshot would be one).
    hub.shutdown().await;
    let report = run_python(
        &home,
        "http://127.0.0.1:9",
        &[
            "offline",
            &cache.to_string_lossy(),
            "acme/example",
            "--type",
            "model",
            "--revision",
            "main",
        ],
    )
    .await;
    assert!(report.contains(", 0 problems"), "{report}");
}
