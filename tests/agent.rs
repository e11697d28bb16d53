//! The agent daemon: preload and readiness, the control API through the ops CLI (`--json`),
//! shared concurrent pulls, and the metrics endpoint in Prometheus text format.

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use hfmesh::agent::daemon::Daemon;
use hfmesh::config::Config;
use hfmesh::repo::{RepoKind, RepoRef};

fn config(
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
        node,
    }
}

async fn wait_ready(d: &Daemon) {
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

/// Checks the Prometheus text exposition format line by line: HELP/TYPE comments, then samples
/// `name{label="value",...} number` whose names were declared.
fn check_prometheus(text: &str) -> usize {
    let valid_name = |n: &str| {
        !n.is_empty()
            && n.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
            && !n.starts_with(|c: char| c.is_ascii_digit())
    };
    let mut declared = std::collections::HashSet::new();
    let mut samples = 0;
    for line in text.lines().filter(|l| !l.is_empty()) {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("TYPE has a name and a type");
            assert!(valid_name(name), "bad metric name {name:?}");
            assert!(
                ["counter", "gauge", "summary", "histogram", "untyped"].contains(&kind),
                "bad type in {line:?}"
            );
            declared.insert(name.to_string());
        } else if let Some(rest) = line.strip_prefix("# HELP ") {
            assert!(
                valid_name(rest.split(' ').next().unwrap()),
                "bad HELP line {line:?}"
            );
        } else {
            assert!(!line.starts_with('#'), "unknown comment {line:?}");
            let (series, value) = line.rsplit_once(' ').expect("a sample has a value");
            value
                .parse::<f64>()
                .unwrap_or_else(|_| panic!("bad value in {line:?}"));
            let name = series.split('{').next().unwrap();
            assert!(
                declared.contains(name),
                "sample of undeclared metric {line:?}"
            );
            if let Some(labels) = series.strip_prefix(name) {
                if !labels.is_empty() {
                    assert!(
                        labels.starts_with('{') && labels.ends_with('}'),
                        "bad labels in {line:?}"
                    );
                    for pair in labels[1..labels.len() - 1]
                        .split("\",")
                        .filter(|p| !p.is_empty())
                    {
                        let (k, v) = pair
                            .split_once("=\"")
                            .unwrap_or_else(|| panic!("bad label in {line:?}"));
                        assert!(
                            valid_name(k) && !v.trim_end_matches('"').contains('\n'),
                            "bad label {pair:?}"
                        );
                    }
                }
            }
            samples += 1;
        }
    }
    samples
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_agents_through_the_control_api_the_ops_cli_and_metrics() {
    let (_root, hub) = start_hub().await;
    let dir = tempfile::tempdir().unwrap();
    let a = Daemon::start(config(
        dir.path(),
        &hub.url(),
        1,
        vec![],
        &["acme/example", "acme/medium"],
    ))
    .await
    .unwrap();
    wait_ready(&a).await;
    let sock_a = a.config.control_socket.clone();

    let status = ops_async(&sock_a, &["status"]).await;
    assert_eq!(status["ready"], true);
    assert_eq!(status["snapshots"], 2);
    assert_eq!(
        status["bytes_from_hub"].as_u64().unwrap(),
        MEDIUM_SIZE + (1 << 20) + 9 + 3 + 6
    );
    assert_eq!(status["preload"].as_array().unwrap().len(), 2);
    let held = ops_async(&sock_a, &["holdings"]).await;
    assert_eq!(held.as_array().unwrap().len(), 2);

    // A second agent with nothing preloaded; two concurrent pulls of one snapshot share one pull.
    let b = Daemon::start(config(
        dir.path(),
        &hub.url(),
        2,
        vec![a.node.p2p_addr()],
        &[],
    ))
    .await
    .unwrap();
    let sock_b = b.config.control_socket.clone();
    let who = async {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let w = ops_async(&sock_b, &["who-has", "acme/medium"]).await;
            if !w["providers"].as_array().unwrap().is_empty() {
                return w;
            }
            assert!(Instant::now() < deadline, "who-has never found the holder");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    .await;
    assert_eq!(who["providers"][0]["id"], status["id"]);
    assert_eq!(who["providers"][0]["rack"], "r1");
    let served = hub.stats().bytes_served;
    let (r1, r2) = tokio::join!(
        b.pull(RepoRef::parse("acme/medium", RepoKind::Model).unwrap()),
        b.pull(RepoRef::parse("acme/medium", RepoKind::Model).unwrap())
    );
    let (r1, r2) = (r1.unwrap(), r2.unwrap());
    assert_eq!(r1.snapshot_dir, r2.snapshot_dir);
    assert_eq!(
        r1.bytes_from_peers, MEDIUM_SIZE,
        "one shared pull moved the model once"
    );
    assert_eq!(
        r2.bytes_from_peers, MEDIUM_SIZE,
        "the second request got the same (shared) report"
    );
    assert_eq!(
        hub.stats().bytes_served,
        served,
        "from the peer, not the emulator"
    );
    let peers = ops_async(&sock_b, &["peers"]).await;
    let peer = &peers.as_array().unwrap()[0];
    assert_eq!(peer["id"], status["id"]);
    assert!(peer["bytes_received"].as_u64().unwrap() >= MEDIUM_SIZE);

    // Metrics parse as Prometheus text and carry the numbers.
    let addr = metrics_addr(&b);
    let text = reqwest::get(format!("http://{addr}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(check_prometheus(&text) >= 12, "{text}");
    assert!(
        text.contains(&format!("hfmesh_bytes_from_peers_total {MEDIUM_SIZE}\n")),
        "{text}"
    );
    assert!(text.contains(&format!("hfmesh_snapshot_bytes_total{{kind=\"model\",repo=\"acme/medium\",source=\"peers\"}} {MEDIUM_SIZE}\n")), "{text}");
    assert!(
        text.contains("hfmesh_pull_duration_seconds_count{outcome=\"ok\"} 1\n"),
        "one pull, shared: {text}"
    );
    assert_eq!(
        reqwest::get(format!("http://{addr}/readyz"))
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        reqwest::get(format!("http://{addr}/healthz"))
            .await
            .unwrap()
            .status(),
        200
    );

    b.shutdown().await;
    a.shutdown().await;
    assert!(
        !sock_a.exists(),
        "the control socket is removed at shutdown"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_preload_is_retried_and_reported_without_blocking_the_others() {
    let (_root, hub) = start_hub().await;
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(config(
        dir.path(),
        &hub.url(),
        1,
        vec![],
        &["acme/nope", "acme/example"],
    ))
    .await
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let states = d.preload_states();
        if states[1].state == "ready" && states[0].attempts >= 2 {
            assert_eq!(states[0].state, "retrying");
            assert!(
                states[0]
                    .last_error
                    .as_deref()
                    .unwrap()
                    .contains("not found"),
                "{states:?}"
            );
            break;
        }
        assert!(Instant::now() < deadline, "{states:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(!d.ready(), "not ready while one preload fails");
    let (code, body) =
        hfmesh::cli::ops::request(&d.config.control_socket, "GET", "/v1/ready", None)
            .await
            .unwrap();
    assert_eq!(code, 503, "{}", String::from_utf8_lossy(&body));
    d.shutdown().await;
}

fn metrics_addr(d: &Arc<Daemon>) -> std::net::SocketAddr {
    d.metrics_addr().expect("metrics are on")
}
