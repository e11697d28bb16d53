//! The agent daemon: preload and readiness, the control API through the ops CLI (`--json`),
//! shared concurrent pulls, live cluster holdings, and the metrics endpoint in Prometheus text
//! format.

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use hfmesh::agent::daemon::Daemon;
use hfmesh::emulator::Faults;
use hfmesh::repo::{RepoKind, RepoRef};

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
    let a = Daemon::start(agent_config(
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
    let b = Daemon::start(agent_config(
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
    // Hub requests, counted by operation and outcome: B resolved the revision but took every
    // byte from A; A downloaded from the Hub (through the mesh's ranged fetches).
    assert!(hub_requests(&text, "resolve", "2xx") >= 1, "{text}");
    assert_eq!(hub_requests(&text, "download", "2xx"), 0, "{text}");
    let text_a = reqwest::get(format!("http://{}/metrics", metrics_addr(&a)))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    check_prometheus(&text_a);
    assert!(hub_requests(&text_a, "download", "2xx") >= 1, "{text_a}");
    assert!(hub_requests(&text_a, "list", "2xx") >= 2, "{text_a}");
    assert!(
        hub_requests(&text_a, "head", "3xx") >= 1,
        "LFS files redirect to the CDN: {text_a}"
    );
    assert_eq!(hub_requests(&text_a, "download", "5xx"), 0, "{text_a}");
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
    let d = Daemon::start(agent_config(
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

/// The value of `hfmesh_hub_requests_total{op,outcome}` in a metrics text (the series must be
/// there).
fn hub_requests(text: &str, op: &str, outcome: &str) -> u64 {
    let series = format!("hfmesh_hub_requests_total{{op=\"{op}\",outcome=\"{outcome}\"}} ");
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix(&series))
        .unwrap_or_else(|| panic!("no {series} in {text}"));
    line.parse().unwrap()
}

fn metrics_addr(d: &Arc<Daemon>) -> std::net::SocketAddr {
    d.metrics_addr().expect("metrics are on")
}

/// Waits (bounded) until `a` knows `b` as a peer.
async fn wait_for_peer(a: &Daemon, b: &Daemon) {
    use hfmesh::discovery::Discovery;
    let deadline = Instant::now() + Duration::from_secs(30);
    while !a
        .node
        .discovery
        .peers()
        .await
        .iter()
        .any(|p| p.id == b.node.id())
    {
        assert!(Instant::now() < deadline, "the agents never met");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Runs `hfmesh <args> --socket <sock>` (a table, not JSON); returns whether it succeeded, its
/// stdout and its stderr.
async fn ops_table(sock: &Path, args: &[&str]) -> (bool, String, String) {
    let mut cmd = hfmesh(&sock.with_extension("home"));
    cmd.args(args).arg("--socket").arg(sock);
    let out = tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn holdings_asked_live_of_the_cluster_show_complete_snapshots_and_partial_blobs() {
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
        &[],
    ))
    .await
    .unwrap();
    wait_for_peer(&a, &b).await;
    // C stays in the DHT but stops serving: asked, it cannot answer.
    let c = Daemon::start(agent_config(
        dir.path(),
        &hub.url(),
        3,
        vec![a.node.p2p_addr()],
        &[],
    ))
    .await
    .unwrap();
    wait_for_peer(&a, &c).await;
    c.node.transfer.shutdown().await;
    let sock_a = a.config.control_socket.clone();

    // A slow Hub keeps B's pull of the medium model partial for a while (160 MiB at 8 MiB/s).
    hub.set_faults(Faults {
        bandwidth_bps: Some(8 << 20),
        ..Faults::default()
    });
    let pulling = tokio::spawn({
        let b = b.clone();
        async move {
            b.pull(RepoRef::parse("acme/medium", RepoKind::Model).unwrap())
                .await
        }
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    while !b
        .node
        .mesh
        .store
        .holdings()
        .blobs
        .iter()
        .any(|x| x.present >= 1 && !x.is_complete())
    {
        assert!(Instant::now() < deadline, "B never held part of the model");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let all = ops_async(&sock_a, &["holdings", "--all"]).await;
    let nodes = all.as_array().unwrap();
    assert_eq!(nodes.len(), 3, "{all}");
    let me = &nodes[0];
    let node = |d: &Daemon| {
        let id = d.node.id().to_string();
        nodes.iter().find(|n| n["id"] == id.as_str()).unwrap()
    };
    let (peer, silent) = (node(&b), node(&c));
    assert!(
        silent["error"].as_str().unwrap().contains("timed out"),
        "{silent}"
    );
    assert!(
        silent["snapshots"].as_array().unwrap().is_empty(),
        "{silent}"
    );
    assert_eq!(me["id"], a.node.id().to_string());
    assert_eq!(me["local"], true);
    assert_eq!(me["snapshots"][0]["repo"], "acme/example", "{me}");
    assert_eq!(me["snapshots"][0]["files"], 5);
    assert_eq!(me["snapshots"][0]["bytes"], (1 << 20) + 9 + 3 + 6);
    assert!(me["blobs"]
        .as_array()
        .unwrap()
        .iter()
        .all(|b| b["complete"] == true));
    assert_eq!(peer["id"], b.node.id().to_string());
    assert_eq!(peer["local"], false);
    assert!(peer["error"].is_null(), "{peer}");
    assert!(peer["snapshots"].as_array().unwrap().is_empty(), "{peer}");
    let blob = &peer["blobs"][0];
    let total = MEDIUM_SIZE.div_ceil(hfmesh::store::CHUNK_SIZE);
    assert_eq!(blob["size"], MEDIUM_SIZE);
    assert_eq!(blob["chunks_total"], total);
    let present = blob["chunks_present"].as_u64().unwrap();
    assert!(present >= 1 && present < total, "{blob}");
    assert_eq!(blob["complete"], false);

    // The Hub at full speed again: B completes, and says so when asked by its short id.
    hub.set_faults(Faults::default());
    pulling.await.unwrap().unwrap();
    let b_id = b.node.id().to_string();
    let one = ops_async(&sock_a, &["holdings", "--peer", &b.node.id().short()]).await;
    assert_eq!(one["id"], b_id.as_str());
    assert_eq!(one["snapshots"][0]["repo"], "acme/medium", "{one}");
    assert_eq!(one["snapshots"][0]["files"], 1);
    assert_eq!(one["snapshots"][0]["bytes"], MEDIUM_SIZE);
    assert_eq!(one["blobs"][0]["complete"], true);
    // The table of every node: A's and B's snapshots, and C's silence.
    let (ok, table, _) = ops_table(&sock_a, &["holdings", "--all"]).await;
    assert!(ok, "{table}");
    assert!(
        table.contains(&format!("NODE {b_id} "))
            && table.contains("acme/example")
            && table.contains("acme/medium")
            && table.contains("1 complete blob(s), 160.0 MiB")
            && table.contains("(this node)")
            && table.contains("no answer: the holdings answer timed out"),
        "{table}"
    );
    let (ok, _, err) = ops_table(&sock_a, &["holdings", "--peer", "no-such-node"]).await;
    assert!(
        !ok && err.contains("no known node has the id `no-such-node`"),
        "{err}"
    );

    c.shutdown().await;
    b.shutdown().await;
    a.shutdown().await;
}

/// The NDJSON lines of a streamed pull, parsed.
fn ndjson(body: &[u8]) -> Vec<serde_json::Value> {
    let text = std::str::from_utf8(body).unwrap();
    assert!(text.ends_with('\n'), "{text}");
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l:?}")))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pulls_through_the_agent_stream_progress_to_every_watcher_and_the_cli() {
    let (_root, hub) = start_hub().await;
    let dir = tempfile::tempdir().unwrap();
    let a = Daemon::start(agent_config(dir.path(), &hub.url(), 1, vec![], &[]))
        .await
        .unwrap();
    let sock = a.config.control_socket.clone();

    // The control API alone: progress lines, then the report, the totals adding up.
    let (code, body) = hfmesh::cli::ops::request(
        &sock,
        "POST",
        "/v1/pull?progress=true",
        Some(r#"{"repo": "acme/example"}"#.into()),
    )
    .await
    .unwrap();
    assert_eq!(code, 200, "{}", String::from_utf8_lossy(&body));
    let lines = ndjson(&body);
    let (last, progress) = lines.split_last().unwrap();
    assert!(last["report"]["snapshot_dir"].is_string(), "{last}");
    assert!(!progress.is_empty());
    assert!(
        progress.iter().all(|l| l["progress"].is_object()),
        "{lines:?}"
    );
    let end = &progress[progress.len() - 1]["progress"];
    let total = (1u64 << 20) + 9 + 3 + 6;
    assert_eq!(end["total"], total, "{end}");
    assert!(end["done"].as_u64().unwrap() >= total, "{end}");
    assert!(
        end["from_hub"].as_u64().unwrap() > 0 && end["from_peers"] == 0,
        "{end}"
    );

    // The CLI through the agent, and a second watcher joining the same pull: both see it end.
    hub.set_faults(Faults {
        bandwidth_bps: Some(32 << 20),
        ..Faults::default()
    });
    let home = dir.path().join("user");
    let mut cmd = hfmesh(&home);
    cmd.args(["pull", "acme/medium", "--socket"]).arg(&sock);
    let cli = tokio::task::spawn_blocking(move || cmd.output().unwrap());
    let deadline = Instant::now() + Duration::from_secs(30);
    while a
        .metrics
        .pulls_in_flight
        .load(std::sync::atomic::Ordering::Relaxed)
        == 0
    {
        assert!(Instant::now() < deadline, "the CLI's pull never started");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let (code, body) = hfmesh::cli::ops::request(
        &sock,
        "POST",
        "/v1/pull?progress=true",
        Some(r#"{"repo": "acme/medium"}"#.into()),
    )
    .await
    .unwrap();
    assert_eq!(code, 200);
    let watcher = ndjson(&body);
    let report = &watcher.last().unwrap()["report"];
    assert_eq!(
        report["bytes_from_hub"], MEDIUM_SIZE,
        "the second watcher joined the running pull: {report}"
    );
    let out = cli.await.unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(
        last_line(&out),
        report["snapshot_dir"].as_str().unwrap(),
        "stdout ends with the snapshot directory, as before"
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 1);
    assert!(
        stderr.contains("acme/medium:main: 160.0 MiB to fetch"),
        "{stderr}"
    );
    assert!(
        stderr
            .lines()
            .any(|l| l.starts_with("acme/medium:main: ") && l.contains(" / 160.0 MiB (")),
        "progress lines on stderr (not a terminal): {stderr}"
    );
    a.shutdown().await;
}
