//! Two `hfmesh agent` processes driven only through the command line: preload, `hfmesh pull`
//! through the local agent (from the peer, not the Hub, with the agent's progress on stderr),
//! `status`, `peers`, `who-has`, `holdings` with `--json`, and a clean SIGTERM shutdown.

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use common::*;

struct Agent {
    child: Child,
    lines: mpsc::Receiver<String>,
    socket: PathBuf,
    p2p: String,
}

impl Agent {
    fn start(dir: &Path, n: u8, hub: &str, extra: &[&str]) -> Agent {
        let root = dir.join(format!("agent{n}"));
        let socket = root.join("agent.sock");
        let mut child = hfmesh(&root.join("home"))
            .args([
                "agent",
                "--endpoint",
                hub,
                "--p2p-listen",
                "127.0.0.1:0",
                "--quic-listen",
                "127.0.0.1:0",
            ])
            .args(["--metrics-listen", "off", "--rack", "r1", "--zone", "z1"])
            .arg("--cache-dir")
            .arg(root.join("hub"))
            .arg("--state-dir")
            .arg(root.join("state"))
            .arg("--control-socket")
            .arg(&socket)
            .args(extra)
            .env(
                "HFMESH_CLUSTER_SECRET",
                std::str::from_utf8(SECRET).unwrap(),
            )
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let (tx, lines) = mpsc::channel();
        let stdout = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let first = lines
            .recv_timeout(Duration::from_secs(30))
            .expect("the agent prints its addresses");
        let p2p = first
            .split_whitespace()
            .find_map(|w| w.strip_prefix("p2p="))
            .expect("p2p= in the first line")
            .to_string();
        Agent {
            child,
            lines,
            socket,
            p2p,
        }
    }

    /// Waits for a stdout line that starts with `prefix`.
    fn wait_line(&self, prefix: &str) -> String {
        loop {
            let line = self
                .lines
                .recv_timeout(Duration::from_secs(60))
                .unwrap_or_else(|_| panic!("no `{prefix}` line"));
            if line.starts_with(prefix) {
                return line;
            }
        }
    }

    fn ops(&self, args: &[&str]) -> serde_json::Value {
        ops_json(&self.socket, args)
    }

    fn stop(&mut self) {
        let pid = self.child.id().to_string();
        assert!(std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success());
        let status = self.child.wait().unwrap();
        assert!(
            status.success(),
            "the agent exits cleanly on SIGTERM: {status}"
        );
        assert!(!self.socket.exists(), "the control socket is removed");
    }
}

impl Drop for Agent {
    /// A failing test never leaves an agent running.
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_agents_driven_only_through_the_cli() {
    let (_root, hub) = start_hub().await;
    let url = hub.url();
    let dir = tempfile::tempdir().unwrap();
    let (a, b, served, pulled) = tokio::task::spawn_blocking({
        let (url, dir) = (url.clone(), dir.path().to_path_buf());
        move || {
            let a = Agent::start(&dir, 1, &url, &["--model", "acme/example"]);
            a.wait_line("ready acme/example");
            let b = Agent::start(&dir, 2, &url, &["--bootstrap", &a.p2p.clone()]);
            // Wait (bounded) until the second agent sees the holder in the DHT.
            let deadline = std::time::Instant::now() + Duration::from_secs(30);
            loop {
                let who = b.ops(&["who-has", "acme/example"]);
                if !who["providers"].as_array().unwrap().is_empty() {
                    break;
                }
                assert!(
                    std::time::Instant::now() < deadline,
                    "who-has never found the holder"
                );
                std::thread::sleep(Duration::from_millis(100));
            }
            let served = emulator_bytes_served(&url);
            let out = hfmesh(&dir.join("user"))
                .args(["pull", "acme/example", "--socket"])
                .arg(&b.socket)
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
            assert!(
                stderr.contains("acme/example:main: ") && stderr.contains(" to fetch"),
                "the agent's progress is shown on stderr: {stderr}"
            );
            (a, b, served, last_line(&out))
        }
    })
    .await
    .unwrap();
    assert!(
        pulled.contains("agent2/hub/models--acme--example/snapshots/"),
        "{pulled}"
    );
    assert_eq!(
        hub.stats().bytes_served,
        served,
        "the pull through agent 2 took nothing from the emulator"
    );

    let status = b.ops(&["status"]);
    assert_eq!(status["snapshots"], 1);
    assert_eq!(status["bytes_from_hub"], 0);
    let a_status = a.ops(&["status"]);
    let peers = b.ops(&["peers"]);
    assert!(
        peers
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["id"] == a_status["id"] && p["zone"] == "z1"),
        "{peers}"
    );
    let who = b.ops(&["who-has", "acme/example"]);
    assert!(
        who["providers"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["id"] == a_status["id"]),
        "{who}"
    );
    let held = b.ops(&["holdings"]);
    assert_eq!(held[0]["repo"], "acme/example");
    let (mut a, mut b) = (a, b);
    tokio::task::spawn_blocking(move || {
        b.stop();
        a.stop();
    })
    .await
    .unwrap();
}

/// `bytes_served` of the emulator, read over HTTP (`/_emulator/stats`) from a blocking context.
fn emulator_bytes_served(url: &str) -> u64 {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let text = reqwest::get(format!("{url}/_emulator/stats"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        v["bytes_served"].as_u64().unwrap()
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_stopped_mid_pull_resumes_it_when_it_starts_again() {
    let (_root, hub) = start_hub().await;
    // 32 MiB/s: the 160 MiB model takes about five seconds, so the stop lands mid-pull.
    hub.set_faults(hfmesh::emulator::Faults {
        bandwidth_bps: Some(32 << 20),
        ..Default::default()
    });
    let url = hub.url();
    let dir = tempfile::tempdir().unwrap();
    let mut agent = {
        let (dir, url) = (dir.path().to_path_buf(), url.clone());
        tokio::task::spawn_blocking(move || Agent::start(&dir, 1, &url, &[]))
            .await
            .unwrap()
    };
    let mut cmd = hfmesh(&dir.path().join("user"));
    cmd.args(["pull", "acme/medium", "--quiet", "--socket"])
        .arg(&agent.socket);
    let pull = tokio::process::Command::from(cmd).output();
    let pull = tokio::spawn(pull);
    wait_until(
        "a third of the model is in",
        Duration::from_secs(30),
        || hub.stats().bytes_served > MEDIUM_SIZE / 3,
    )
    .await;
    agent = tokio::task::spawn_blocking(move || {
        agent.stop();
        agent
    })
    .await
    .unwrap();
    drop(agent);
    let out = pull.await.unwrap().unwrap();
    assert!(
        !out.status.success(),
        "the caller learns the pull did not finish"
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("resumes when it starts again"), "{err}");
    let repo = dir.path().join("agent1/hub/models--acme--medium");
    let half = hub.stats().bytes_served;
    assert!(half < MEDIUM_SIZE, "stopped before the end ({half} bytes)");
    assert!(
        !repo.join("snapshots").exists() && !repo.join("refs").exists(),
        "nothing half-done is visible in the tree"
    );
    let blobs: Vec<_> = std::fs::read_dir(repo.join("blobs"))
        .map(|d| d.flatten().collect())
        .unwrap_or_default();
    assert!(blobs.is_empty(), "no unverified blob: {blobs:?}");
    // The stop saved the record of every chunk that had arrived whole: at most the chunks in
    // flight (2 Hub requests, one partial 4 MiB chunk each) and socket buffers are lost.
    let kept = chunks_recorded(&repo.join(".hfmesh/partial"));
    assert!(
        kept + (16 << 20) >= half,
        "the stop saved the chunks that had arrived: {kept} of {half} bytes"
    );

    // Started again with nothing asked of it, the agent finishes the pull, keeping what it had.
    hub.set_faults(hfmesh::emulator::Faults::default());
    let agent = {
        let (dir, url) = (dir.path().to_path_buf(), url.clone());
        tokio::task::spawn_blocking(move || Agent::start(&dir, 1, &url, &[]))
            .await
            .unwrap()
    };
    let socket = agent.socket.clone();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let held = loop {
        let held = ops_async(&socket, &["holdings"]).await;
        if !held.as_array().unwrap().is_empty() {
            break held;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the interrupted pull was not resumed"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(held[0]["repo"], "acme/medium");
    let snapshot = repo
        .join("snapshots")
        .join(held[0]["commit"].as_str().unwrap());
    assert_medium_model(&snapshot);
    let total = hub.stats().bytes_served;
    assert_eq!(
        total - half,
        MEDIUM_SIZE - kept,
        "the second run fetched exactly what was missing"
    );
    assert!(
        !dir.path()
            .join("agent1/state/pending")
            .read_dir()
            .unwrap()
            .flatten()
            .any(|e| e.path().extension().is_some_and(|x| x == "json")),
        "nothing is left pending"
    );
    tokio::task::spawn_blocking(move || {
        let mut agent = agent;
        agent.stop();
    })
    .await
    .unwrap();
}

/// Bytes in the complete chunks recorded by the partial blobs in `dir`, opened as a restarted
/// agent opens them.
fn chunks_recorded(dir: &Path) -> u64 {
    let mut total = 0;
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.extension().is_none_or(|x| x != "part") {
            continue;
        }
        let etag = path.file_stem().unwrap().to_str().unwrap();
        let etag = hfmesh::etag::Etag::parse(etag).unwrap();
        let size = entry.metadata().unwrap().len();
        let partial = hfmesh::store::PartialBlob::open(dir, &etag, size).unwrap();
        total += partial.bytes_done();
    }
    total
}

/// Runs an agent with `HFMESH_LOG=info` and `HFMESH_LOG_FORMAT=format` until SIGTERM; answers
/// its stderr lines.
fn agent_log_lines(dir: &Path, format: &str) -> Vec<String> {
    let root = dir.join(format!("log-{format}"));
    let mut child = hfmesh(&root.join("home"))
        .args(["agent", "--endpoint", "http://127.0.0.1:9"])
        .args([
            "--p2p-listen",
            "127.0.0.1:0",
            "--quic-listen",
            "127.0.0.1:0",
        ])
        .args(["--metrics-listen", "off"])
        .arg("--cache-dir")
        .arg(root.join("hub"))
        .arg("--state-dir")
        .arg(root.join("state"))
        .arg("--control-socket")
        .arg(root.join("agent.sock"))
        .env(
            "HFMESH_CLUSTER_SECRET",
            std::str::from_utf8(SECRET).unwrap(),
        )
        .env("HFMESH_LOG", "info")
        .env("HFMESH_LOG_FORMAT", format)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    assert!(first.starts_with("hfmesh agent "), "{first}");
    let pid = child.id().to_string();
    assert!(std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "clean exit on SIGTERM");
    String::from_utf8(out.stderr)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn logs_are_structured_json_or_human_lines() {
    let dir = tempfile::tempdir().unwrap();
    let json = agent_log_lines(dir.path(), "json");
    assert!(!json.is_empty());
    for line in &json {
        let v: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("not a JSON log line ({e}): {line}"));
        assert!(
            v["timestamp"].is_string() && v["level"].is_string(),
            "{line}"
        );
    }
    assert!(
        json.iter().any(
            |l| l.contains("\"level\":\"INFO\"") && l.contains("\"message\":\"shutting down\"")
        ),
        "{json:?}"
    );
    let human = agent_log_lines(dir.path(), "text");
    let stop = human
        .iter()
        .find(|l| l.contains("shutting down"))
        .unwrap_or_else(|| panic!("{human:?}"));
    assert!(stop.contains("INFO"), "{stop}");
    assert!(serde_json::from_str::<serde_json::Value>(stop).is_err());
}
