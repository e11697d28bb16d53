//! Optional mDNS discovery (`--mdns`) between two `hfmesh agent` processes that know nothing of
//! each other: no bootstrap address is given. Loopback has no multicast, so each agent runs in
//! its own network namespace, joined to the test's namespace by a veth pair on one bridge; the
//! hub emulator listens on the bridge. The test needs root and `ip` (iproute2); it creates and
//! removes everything it uses. Where neither is available, `HFMESH_SKIP_NETNS_TESTS=1` skips it
//! (CI never sets it).

mod common;

use std::io::{BufRead, BufReader};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::*;
use hfmesh::emulator::{Emulator, EmulatorConfig};

/// Runs `ip` with `args`, panicking with its stderr when it fails.
fn ip(args: &[&str]) {
    let out = Command::new("ip")
        .args(args)
        .output()
        .expect("the `ip` command (iproute2) is installed");
    assert!(
        out.status.success(),
        "ip {}: {} (this test needs root and network namespaces)",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr).trim()
    );
}

/// A bridge in the test's namespace and one namespace per agent, each joined to the bridge by a
/// veth pair; all removed on drop.
struct Lan {
    bridge: String,
    namespaces: Vec<String>,
    subnet: [u8; 3],
}

impl Lan {
    /// A /24 whose `.254` is the bridge and `.1`, `.2`, … the namespaces.
    fn new(hosts: u8) -> Lan {
        let tag = std::process::id() % 100_000;
        let subnet = [10, 213, (tag % 250) as u8];
        let bridge = format!("hfmbr{tag}");
        let mut lan = Lan {
            bridge: bridge.clone(),
            namespaces: Vec::new(),
            subnet,
        };
        ip(&["link", "add", &bridge, "type", "bridge"]);
        ip(&[
            "addr",
            "add",
            &format!("{}/24", lan.addr(254)),
            "dev",
            &bridge,
        ]);
        ip(&["link", "set", &bridge, "up"]);
        for host in 1..=hosts {
            let ns = format!("hfmesh-mdns-{tag}-{host}");
            ip(&["netns", "add", &ns]);
            lan.namespaces.push(ns.clone());
            let outer = format!("hfv{tag}h{host}");
            let inner = format!("hfi{tag}h{host}");
            ip(&[
                "link", "add", &outer, "type", "veth", "peer", "name", &inner, "netns", &ns,
            ]);
            ip(&["link", "set", &outer, "master", &bridge]);
            ip(&["link", "set", &outer, "up"]);
            let in_ns = |args: &[&str]| {
                let mut all = vec!["netns", "exec", &ns, "ip"];
                all.extend_from_slice(args);
                ip(&all);
            };
            in_ns(&["link", "set", "lo", "up"]);
            in_ns(&[
                "addr",
                "add",
                &format!("{}/24", lan.addr(host)),
                "dev",
                &inner,
            ]);
            in_ns(&["link", "set", &inner, "up"]);
            in_ns(&["route", "add", "default", "via", &lan.addr(254).to_string()]);
        }
        lan
    }

    fn addr(&self, host: u8) -> Ipv4Addr {
        let [a, b, c] = self.subnet;
        Ipv4Addr::new(a, b, c, host)
    }
}

impl Drop for Lan {
    fn drop(&mut self) {
        for ns in &self.namespaces {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
        let _ = Command::new("ip")
            .args(["link", "del", &self.bridge])
            .status();
    }
}

/// An agent process in a namespace, killed on drop.
struct Agent {
    child: Child,
    socket: PathBuf,
    lines: mpsc::Receiver<String>,
}

impl Agent {
    fn start(dir: &Path, lan: &Lan, host: u8, hub: &str, extra: &[&str]) -> Agent {
        let root = dir.join(format!("agent{host}"));
        let socket = root.join("agent.sock");
        let me = lan.addr(host);
        let cmd = hfmesh(&root.join("home"));
        let program = cmd.get_program().to_owned();
        let mut wrapped = Command::new("ip");
        wrapped
            .args(["netns", "exec", &lan.namespaces[usize::from(host) - 1]])
            .arg(program)
            .args(["agent", "--mdns", "--endpoint", hub])
            .args(["--p2p-listen", &format!("{me}:0")])
            .args(["--quic-listen", &format!("{me}:0")])
            .args(["--metrics-listen", "off", "--zone", "z1"])
            .args(["--rack", &format!("r{host}")])
            .arg("--cache-dir")
            .arg(root.join("hub"))
            .arg("--state-dir")
            .arg(root.join("state"))
            .arg("--control-socket")
            .arg(&socket)
            .args(extra);
        // The same clean environment `hfmesh()` gives, plus the cluster secret.
        wrapped.env_clear();
        for (k, v) in cmd.get_envs() {
            if let Some(v) = v {
                wrapped.env(k, v);
            }
        }
        for k in ["PATH", "HOME", "TMPDIR"] {
            if let Ok(v) = std::env::var(k) {
                wrapped.env(k, v);
            }
        }
        wrapped.env(
            "HFMESH_CLUSTER_SECRET",
            std::str::from_utf8(SECRET).unwrap(),
        );
        let mut child = wrapped
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
        let agent = Agent {
            child,
            socket,
            lines,
        };
        let first = agent.next_line();
        assert!(first.starts_with("hfmesh agent "), "{first}");
        agent
    }

    fn next_line(&self) -> String {
        self.lines
            .recv_timeout(Duration::from_secs(60))
            .expect("the agent keeps printing")
    }

    fn ops(&self, args: &[&str]) -> serde_json::Value {
        ops_json(&self.socket, args)
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits (bounded) until `agent` lists a peer with id `id`; answers that peer's entry.
fn wait_for_peer(agent: &Agent, id: &serde_json::Value) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let peers = agent.ops(&["peers"]);
        if let Some(p) = peers.as_array().unwrap().iter().find(|p| &p["id"] == id) {
            return p.clone();
        }
        assert!(
            Instant::now() < deadline,
            "mDNS never found peer {id}: {peers}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_without_bootstrap_find_each_other_by_mdns_and_share_a_model() {
    if std::env::var_os("HFMESH_SKIP_NETNS_TESTS").is_some_and(|v| v == "1") {
        eprintln!("skipped: HFMESH_SKIP_NETNS_TESTS=1");
        return;
    }
    let lan = std::sync::Arc::new(Lan::new(2));
    let hub_root = tempfile::tempdir().unwrap();
    write_hub_root(hub_root.path());
    let hub = Emulator::start(EmulatorConfig {
        root: Some(hub_root.path().to_path_buf()),
        listen: SocketAddr::new(IpAddr::V4(lan.addr(254)), 0),
        ..EmulatorConfig::default()
    })
    .await
    .expect("the emulator listens on the bridge");
    let url = hub.url();
    let dir = tempfile::tempdir().unwrap();

    let (a, b) = tokio::task::spawn_blocking({
        let (dir, lan) = (dir.path().to_path_buf(), lan.clone());
        move || {
            let a = Agent::start(&dir, &lan, 1, &url, &["--model", "acme/example"]);
            let ready = a.next_line();
            assert!(ready.starts_with("ready acme/example"), "{ready}");
            let b = Agent::start(&dir, &lan, 2, &url, &[]);
            let a_id = a.ops(&["status"])["id"].clone();
            let b_id = b.ops(&["status"])["id"].clone();

            // Neither was told of the other: only mDNS can introduce them.
            let seen_by_b = wait_for_peer(&b, &a_id);
            assert_eq!(seen_by_b["rack"], "r1", "{seen_by_b}");
            let a_addr = lan.addr(1).to_string();
            assert!(
                seen_by_b["addr"].as_str().unwrap().starts_with(&a_addr),
                "{seen_by_b}"
            );
            wait_for_peer(&a, &b_id);

            // Through the DHT they now share, B finds A's snapshot.
            let deadline = Instant::now() + Duration::from_secs(30);
            while b.ops(&["who-has", "acme/example"])["providers"]
                .as_array()
                .unwrap()
                .is_empty()
            {
                assert!(Instant::now() < deadline, "B never saw A's snapshot");
                std::thread::sleep(Duration::from_millis(200));
            }
            (a, b)
        }
    })
    .await
    .unwrap();

    // And what they found is usable: B pulls the model from A, not from the Hub.
    let served_before = hub.stats().bytes_served;
    let out = tokio::process::Command::from({
        let mut cmd = hfmesh(&dir.path().join("user"));
        cmd.args(["pull", "acme/example", "--quiet", "--socket"])
            .arg(&b.socket);
        cmd
    })
    .output()
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let pulled = last_line(&out);
    assert!(
        pulled.contains("agent2/hub/models--acme--example/snapshots/"),
        "{pulled}"
    );
    assert_eq!(
        hub.stats().bytes_served,
        served_before,
        "agent 2 took the model from agent 1, not from the emulator"
    );
    let status = tokio::task::spawn_blocking(move || {
        let status = b.ops(&["status"]);
        drop((a, b));
        status
    })
    .await
    .unwrap();
    assert_eq!(status["bytes_from_hub"], 0, "{status}");
    assert!(status["bytes_from_peers"].as_u64().unwrap() > 0, "{status}");
    drop(lan);
}
