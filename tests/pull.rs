//! `hfmesh pull` against the hub emulator: the tree it writes, what it asks of the Hub, how it
//! survives faults, and the errors it gives.

mod common;

use std::fs;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use hfmesh::emulator::{ErrorRule, Faults, Truncate};
use hfmesh::hub::{HubClient, HubConfig};
use hfmesh::pull::{pull, PullError, PullOptions};
use hfmesh::repo::{RepoKind, RepoRef};

fn client(url: &str, token: Option<&str>) -> HubClient {
    let mut cfg = HubConfig::for_endpoint(url).unwrap();
    cfg.token = token.map(str::to_string);
    HubClient::new(cfg).unwrap()
}

async fn pull_model(
    url: &str,
    cache: &Path,
    repo: &str,
) -> Result<hfmesh::pull::PullReport, PullError> {
    let what = RepoRef::parse(repo, RepoKind::Model).unwrap();
    pull(
        &client(url, None),
        cache,
        &what,
        &PullOptions::default(),
        Arc::new(hfmesh::progress::Silent),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pull_writes_the_huggingface_tree_and_prints_the_snapshot_last() {
    let (_root, hub) = start_hub().await;
    let cache = tempfile::tempdir().unwrap();
    let out = pull_cli_async(&hub.url(), cache.path(), &["acme/example"]).await;
    assert!(
        out.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let repo = cache.path().join("models--acme--example");
    let commit = fs::read_to_string(repo.join("refs/main")).unwrap();
    assert_eq!(
        commit.len(),
        40,
        "refs/main holds 40 hex with no newline: {commit:?}"
    );
    let snap = repo.join("snapshots").join(&commit);
    assert_eq!(last_line(&out), snap.display().to_string());

    let link = |p: &str| fs::read_link(snap.join(p)).unwrap().display().to_string();
    assert_eq!(
        link("config.json"),
        "../../blobs/cb5b2f69babc53f9145b45ad20b9a075d48717ef"
    );
    assert_eq!(
        link("model.safetensors"),
        "../../blobs/30e14955ebf1352266dc2ff8067e68104607e750abb9d3b36582b8af909fcb58"
    );
    assert!(link("a/b/c.json").starts_with("../../../../blobs/"));
    assert!(link("dir with space/file#1.txt").starts_with("../../../blobs/"));
    assert_eq!(
        link("empty.txt"),
        "../../blobs/e69de29bb2d1d6434b8b29ae775ad8c2e48c5391"
    );
    assert_eq!(
        fs::read(snap.join("dir with space/file#1.txt")).unwrap(),
        b"hello\n"
    );
    assert_eq!(
        fs::read(snap.join("model.safetensors")).unwrap(),
        vec![0u8; 1 << 20]
    );
    assert!(repo.join("trees").join(format!("{commit}.json")).is_file());
    assert!(cache
        .path()
        .join(".locks/models--acme--example/cb5b2f69babc53f9145b45ad20b9a075d48717ef.lock")
        .is_file());
    assert!(cache.path().join("CACHEDIR.TAG").is_file());
    assert!(
        !repo.join(".hfmesh").exists(),
        "no work files are left in a finished tree"
    );
    let blobs = fs::read_dir(repo.join("blobs")).unwrap().count();
    assert_eq!(blobs, 5, "one blob per distinct content");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_complete_snapshot_is_not_downloaded_again_and_a_commit_needs_no_request() {
    let (_root, hub) = start_hub().await;
    let cache = tempfile::tempdir().unwrap();
    let first = pull_model(&hub.url(), cache.path(), "acme/example")
        .await
        .unwrap();
    assert!(!first.already_complete && first.bytes_fetched > 1 << 20);
    let before = hub.stats();

    let again = pull_model(&hub.url(), cache.path(), "acme/example")
        .await
        .unwrap();
    let after = hub.stats();
    assert!(again.already_complete);
    assert_eq!(again.snapshot_dir, first.snapshot_dir);
    assert_eq!(
        after.bytes_served, before.bytes_served,
        "no file bytes the second time"
    );
    assert_eq!(
        after.requests,
        before.requests + 1,
        "only the revision is resolved"
    );

    let by_commit = format!("acme/example:{}", first.commit);
    let pinned = pull_model(&hub.url(), cache.path(), &by_commit)
        .await
        .unwrap();
    assert!(pinned.already_complete);
    assert_eq!(
        hub.stats().requests,
        after.requests,
        "a pinned commit makes no request at all"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn branches_tags_pull_requests_and_datasets() {
    let (_root, hub) = start_hub().await;
    let cache = tempfile::tempdir().unwrap();
    let exp = pull_model(&hub.url(), cache.path(), "acme/example:experimental")
        .await
        .unwrap();
    let tag = pull_model(&hub.url(), cache.path(), "acme/example:v1.0")
        .await
        .unwrap();
    let pr = pull_model(&hub.url(), cache.path(), "acme/example:refs/pr/1")
        .await
        .unwrap();
    assert_eq!(
        exp.commit, tag.commit,
        "a tag resolves to its branch's commit"
    );
    assert_ne!(exp.commit, pr.commit);
    let repo = cache.path().join("models--acme--example");
    assert_eq!(
        fs::read_to_string(repo.join("refs/v1.0")).unwrap(),
        exp.commit.as_str()
    );
    assert_eq!(
        fs::read_to_string(repo.join("refs/refs/pr/1")).unwrap(),
        pr.commit.as_str()
    );
    assert_eq!(
        fs::read(pr.snapshot_dir.join("config.json")).unwrap(),
        b"{\"a\": 3}\n"
    );
    assert_eq!(
        fs::read(exp.snapshot_dir.join("config.json")).unwrap(),
        b"{\"a\": 2}\n"
    );

    let ds = RepoRef::parse("acme/ds", RepoKind::Dataset).unwrap();
    let r = pull(
        &client(&hub.url(), None),
        cache.path(),
        &ds,
        &PullOptions::default(),
        Arc::new(hfmesh::progress::Silent),
    )
    .await
    .unwrap();
    assert!(r
        .snapshot_dir
        .starts_with(cache.path().join("datasets--acme--ds")));
    assert_eq!(
        fs::read(r.snapshot_dir.join("data/train.csv")).unwrap(),
        b"x,y\n1,2\n"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_file_arrives_in_parallel_ranges_from_the_cdn() {
    let (_root, hub) = start_hub().await;
    let cache = tempfile::tempdir().unwrap();
    let r = pull_model(&hub.url(), cache.path(), "acme/medium")
        .await
        .unwrap();
    assert_eq!(r.bytes_fetched, MEDIUM_SIZE);
    let stats = hub.stats();
    let cdn_gets = stats.requests_by_route.get("cdn_get").copied().unwrap_or(0);
    assert!(
        cdn_gets >= 3,
        "160 MiB in 64 MiB ranges takes at least 3 requests, saw {cdn_gets}"
    );
    assert_eq!(stats.bytes_served, MEDIUM_SIZE, "each byte is fetched once");
    assert_medium_model(&r.snapshot_dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limits_and_server_errors_are_retried() {
    let (_root, hub) = start_hub().await;
    hub.set_faults(Faults {
        errors: vec![
            ErrorRule {
                status: 429,
                retry_after_secs: Some(1),
                count: Some(2),
                path_contains: Some("/api/".into()),
                ..Default::default()
            },
            ErrorRule {
                status: 503,
                count: Some(2),
                path_contains: Some("/resolve/".into()),
                ..Default::default()
            },
        ],
        ..Faults::default()
    });
    let cache = tempfile::tempdir().unwrap();
    let started = std::time::Instant::now();
    pull_model(&hub.url(), cache.path(), "acme/example")
        .await
        .unwrap();
    let stats = hub.stats();
    assert_eq!(stats.responses_by_status.get(&429), Some(&2));
    assert_eq!(stats.responses_by_status.get(&503), Some(&2));
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "Retry-After: 1 was honoured twice"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cut_connections_resume_from_the_last_byte() {
    let (_root, hub) = start_hub().await;
    hub.set_faults(Faults {
        truncate: Some(Truncate {
            count: 3,
            after_bytes: 5 << 20,
        }),
        ..Faults::default()
    });
    let cache = tempfile::tempdir().unwrap();
    let r = pull_model(&hub.url(), cache.path(), "acme/medium")
        .await
        .unwrap();
    let served = hub.stats().bytes_served;
    assert!(served >= MEDIUM_SIZE);
    assert!(
        served < MEDIUM_SIZE + (8 << 20),
        "resumed rather than restarted: {served} bytes served"
    );
    assert_medium_model(&r.snapshot_dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_pull_leaves_nothing_visible_and_the_next_one_resumes() {
    let (_root, hub) = start_hub().await;
    hub.set_faults(Faults {
        bandwidth_bps: Some(16 << 20),
        ..Faults::default()
    });
    let cache = tempfile::tempdir().unwrap();
    let mut child = hfmesh(&cache.path().join("home"))
        .args([
            "pull",
            "--quiet",
            "acme/medium",
            "--endpoint",
            &hub.url(),
            "--cache-dir",
        ])
        .arg(cache.path())
        .spawn()
        .unwrap();
    wait_until("48 MiB to be served", Duration::from_secs(60), || {
        hub.stats().bytes_served >= 48 << 20
    })
    .await;
    child.kill().unwrap();
    child.wait().unwrap();

    let repo = cache.path().join("models--acme--medium");
    let visible = |sub: &str| fs::read_dir(repo.join(sub)).map(|d| d.count()).unwrap_or(0);
    assert_eq!(visible("blobs"), 0, "no half-written blob");
    assert_eq!(visible("snapshots"), 0, "no half-built snapshot");
    assert_eq!(visible("refs"), 0, "no ref before the snapshot is whole");

    // The emulator may still be writing to the dead connection for a moment: count the second
    // pull's bytes only once it has stopped.
    let mut served = hub.stats().bytes_served;
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let now = hub.stats().bytes_served;
        if now == served {
            break;
        }
        served = now;
    }
    hub.set_faults(Faults::default());
    hub.reset_stats();
    let r = pull_model(&hub.url(), cache.path(), "acme/medium")
        .await
        .unwrap();
    let second = hub.stats().bytes_served;
    assert!(
        second <= MEDIUM_SIZE - (16 << 20),
        "the second pull resumed: it fetched {second} of {MEDIUM_SIZE} bytes"
    );
    assert_eq!(r.bytes_fetched, second);
    assert!(!repo.join(".hfmesh").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn content_that_does_not_match_its_etag_never_reaches_the_tree() {
    let (root, hub) = start_hub().await;
    let c = client(&hub.url(), None);
    let id = hfmesh::repo::RepoId::parse("acme/example").unwrap();
    let commit = c
        .resolve_revision(RepoKind::Model, &id, &hfmesh::repo::Revision::main())
        .await
        .unwrap();
    c.list_files(RepoKind::Model, &id, &commit).await.unwrap();
    // The Hub now serves other bytes (same size) than the etag it published.
    fs::write(
        root.path().join("models/acme/example/config.json"),
        b"{\"a\": 9}\n",
    )
    .unwrap();
    let cache = tempfile::tempdir().unwrap();
    let err = pull_model(&hub.url(), cache.path(), "acme/example")
        .await
        .unwrap_err();
    assert!(matches!(err, PullError::Corrupt { .. }), "{err}");
    assert!(err.to_string().contains("config.json"), "{err}");
    let repo = cache.path().join("models--acme--example");
    assert!(!repo
        .join("blobs/cb5b2f69babc53f9145b45ad20b9a075d48717ef")
        .exists());
    assert!(
        !repo.join("snapshots").exists()
            || fs::read_dir(repo.join("snapshots")).unwrap().count() == 0
    );
    assert!(!repo.join("refs/main").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_exit_non_zero_with_one_clear_line() {
    let (_root, hub) = start_hub().await;
    let url = hub.url();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["acme/gated"], "gated repository"),
        (vec!["acme/gated", "--token", "hf_wrong"], "no access"),
        (vec!["acme/private"], "not found"),
        (vec!["acme/nope"], "not found"),
        (vec!["acme/example:nope"], "revision `nope` does not exist"),
        (vec!["bad--id/x"], "`--` is not allowed"),
    ];
    for (args, expected) in cases {
        let cache = tempfile::tempdir().unwrap();
        let out = pull_cli_async(&url, cache.path(), &args).await;
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} should fail");
        assert_eq!(
            stderr.trim_end().lines().count(),
            1,
            "{args:?}: one line, got {stderr:?}"
        );
        assert!(
            stderr.contains(expected),
            "{args:?}: expected {expected:?} in {stderr:?}"
        );
        assert!(out.stdout.is_empty(), "nothing on stdout when failing");
    }
    let cache = tempfile::tempdir().unwrap();
    for repo in ["acme/gated", "acme/private"] {
        let out = pull_cli_async(&url, cache.path(), &[repo, "--token", GOOD_TOKEN]).await;
        assert!(
            out.status.success(),
            "{repo} with a good token: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_stop_within_their_bound() {
    let (_root, hub) = start_hub().await;
    let mut cfg = HubConfig::for_endpoint(&hub.url()).unwrap();
    cfg.retry = hfmesh::hub::retry::RetryPolicy {
        max_attempts: 3,
        base_delay: Duration::from_millis(10),
        max_delay: Duration::from_millis(50),
        max_server_wait: Duration::from_secs(5),
    };
    let c = HubClient::new(cfg).unwrap();
    let what = RepoRef::parse("acme/example", RepoKind::Model).unwrap();
    let cache = tempfile::tempdir().unwrap();
    let opts = PullOptions::default();
    let run = || {
        pull(
            &c,
            cache.path(),
            &what,
            &opts,
            Arc::new(hfmesh::progress::Silent),
        )
    };

    hub.set_faults(Faults {
        errors: vec![ErrorRule {
            status: 503,
            ..Default::default()
        }],
        ..Faults::default()
    });
    let err = run().await.unwrap_err().to_string();
    assert!(
        err.contains("HTTP 503") && err.contains("3 attempts"),
        "{err}"
    );
    assert_eq!(
        hub.stats().requests,
        3,
        "an outage costs exactly max_attempts requests"
    );

    // A server that asks for a longer wait than we accept: give up at once and say so.
    hub.reset_stats();
    hub.set_faults(Faults {
        errors: vec![ErrorRule {
            status: 429,
            retry_after_secs: Some(3600),
            ..Default::default()
        }],
        ..Faults::default()
    });
    let err = run().await.unwrap_err().to_string();
    assert!(err.contains("429") && err.contains("3600 s"), "{err}");
    assert_eq!(hub.stats().requests, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_come_from_the_environment_too() {
    let (_root, hub) = start_hub().await;
    for var in ["HF_TOKEN", "RUNPOD_HUGGINGFACE_TOKEN"] {
        let cache = tempfile::tempdir().unwrap();
        let out = hfmesh(&cache.path().join("home"))
            .args(["pull", "--quiet", "acme/gated", "--cache-dir"])
            .arg(cache.path())
            .env("HF_ENDPOINT", hub.url())
            .env(var, GOOD_TOKEN)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{var}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // The token file under HF_HOME.
    let cache = tempfile::tempdir().unwrap();
    let home = cache.path().join("home");
    fs::create_dir_all(&home).unwrap();
    fs::write(home.join("token"), format!("{GOOD_TOKEN}\n")).unwrap();
    let out = hfmesh(&home)
        .args(["pull", "--quiet", "acme/gated", "--cache-dir"])
        .arg(cache.path())
        .env("HF_ENDPOINT", hub.url())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "token file: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
