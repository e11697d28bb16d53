//! The libp2p Kademlia discovery on loopback: provider records across a small cluster, withdraw
//! and expiry, re-provide, the cluster secret keeping outsiders out, and topology in `peers()`.
//! Every wait polls for the expected state with a deadline; nothing sleeps a fixed time.

use std::future::Future;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use hfmesh::discovery::{
    ContentKey, Discovery, DiscoveryError, Libp2pConfig, Libp2pDiscovery, NodeInfo,
};
use hfmesh::etag::git_blob_id;
use hfmesh::node::{ClusterSecret, NodeKey, Topology};
use hfmesh::repo::{CommitId, RepoId, RepoKind};

/// Upper bound of every wait for the cluster to converge.
const CONVERGE: Duration = Duration::from_secs(20);
/// How often a condition is polled while waiting.
const POLL: Duration = Duration::from_millis(100);

fn secret(material: &str) -> ClusterSecret {
    ClusterSecret::from_material(material.as_bytes()).unwrap()
}

fn topology(zone: &str, rack: &str) -> Topology {
    Topology {
        zone: Some(zone.to_string()),
        rack: Some(rack.to_string()),
    }
}

/// A config for a loopback node whose QUIC endpoint is `quic` (an unspecified IP lets peers
/// use the IP they see).
fn config(cluster: &ClusterSecret, quic: SocketAddr, topology: Topology) -> Libp2pConfig {
    let key = NodeKey::generate();
    let local = NodeInfo {
        id: key.id(),
        addr: quic,
        topology,
    };
    let mut cfg = Libp2pConfig::new(key, cluster.clone(), "127.0.0.1:0".parse().unwrap(), local);
    cfg.query_timeout = Duration::from_secs(5);
    cfg
}

/// What others should see of `node`: its QUIC address with the loopback IP filled in.
fn seen(node: &Libp2pDiscovery) -> NodeInfo {
    let mut info = node.local();
    if info.addr.ip().is_unspecified() {
        info.addr.set_ip([127, 0, 0, 1].into());
    }
    info
}

/// Polls `check` until it returns `Some`, for at most `within`.
async fn eventually<T, F, Fut>(what: &str, within: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(POLL).await;
    }
}

fn blob_key(content: &[u8]) -> ContentKey {
    ContentKey::Blob(git_blob_id(content))
}

fn snapshot_key() -> ContentKey {
    ContentKey::Snapshot {
        kind: RepoKind::Model,
        repo: RepoId::parse("acme/example").unwrap(),
        commit: CommitId::parse(&"ab".repeat(20)).unwrap(),
    }
}

/// Providers of `key` as seen by `node`, sorted by id.
async fn providers(node: &Libp2pDiscovery, key: &ContentKey) -> Vec<NodeInfo> {
    let mut found = node.providers(key.clone(), 10).await.unwrap();
    found.sort_by_key(|n| n.id);
    found
}

/// Starts `n` nodes of `cluster`, each bootstrapping from the first; `tweak` adjusts configs.
async fn cluster(
    cluster: &ClusterSecret,
    n: usize,
    tweak: impl Fn(&mut Libp2pConfig),
) -> Vec<Libp2pDiscovery> {
    let mut nodes: Vec<Libp2pDiscovery> = Vec::new();
    for i in 0..n {
        // Nodes 1, 3, 5 advertise an unspecified QUIC IP (peers fill in the connection's),
        // nodes 2 and 4 a specific one.
        let ip = if i % 2 == 0 { "0.0.0.0" } else { "127.0.0.1" };
        let quic: SocketAddr = format!("{ip}:{}", 7001 + i).parse().unwrap();
        let mut cfg = config(
            cluster,
            quic,
            topology(&format!("z{}", i % 2), &format!("r{i}")),
        );
        if let Some(first) = nodes.first() {
            cfg.bootstrap = vec![first.listen_addr()];
        }
        tweak(&mut cfg);
        nodes.push(Libp2pDiscovery::spawn(cfg).await.unwrap());
    }
    nodes
}

async fn shutdown(nodes: &[Libp2pDiscovery]) {
    for node in nodes {
        node.shutdown().await;
    }
}

#[tokio::test]
async fn five_nodes_find_providers_with_their_node_info() {
    let started = Instant::now();
    let secret = secret("five nodes find providers secret");
    let nodes = cluster(&secret, 5, |_| {}).await;
    let (blob, snapshot) = (blob_key(b"weights"), snapshot_key());
    nodes[0].provide(blob.clone()).await.unwrap();
    nodes[0].provide(snapshot.clone()).await.unwrap();
    let want = vec![seen(&nodes[0])];
    assert_eq!(want[0].addr, "127.0.0.1:7001".parse().unwrap());
    for node in &nodes[1..] {
        for key in [&blob, &snapshot] {
            eventually("node 1 as provider", CONVERGE, || async {
                let found = providers(node, key).await;
                (found == want).then_some(())
            })
            .await;
        }
    }
    assert!(providers(&nodes[0], &blob).await.is_empty(), "never itself");

    // A second provider of the blob: both are found, each with its own info.
    nodes[3].provide(blob.clone()).await.unwrap();
    let mut both = vec![seen(&nodes[0]), seen(&nodes[3])];
    both.sort_by_key(|n| n.id);
    eventually("both providers", CONVERGE, || async {
        (providers(&nodes[4], &blob).await == both).then_some(())
    })
    .await;
    assert_eq!(providers(&nodes[0], &blob).await, vec![seen(&nodes[3])]);
    assert_eq!(nodes[4].providers(blob.clone(), 1).await.unwrap().len(), 1);
    assert!(providers(&nodes[2], &blob_key(b"nobody")).await.is_empty());
    shutdown(&nodes).await;
    assert!(matches!(
        nodes[1].providers(blob, 1).await,
        Err(DiscoveryError::Stopped)
    ));
    eprintln!("five nodes: {:?}", started.elapsed());
}

/// Provider record TTL of the expiry tests.
const SHORT_TTL: Duration = Duration::from_secs(3);
/// Reprovide interval of the expiry tests.
const SHORT_REPROVIDE: Duration = Duration::from_secs(1);

fn short_ttl(cfg: &mut Libp2pConfig) {
    cfg.provider_ttl = SHORT_TTL;
    cfg.reprovide_interval = SHORT_REPROVIDE;
}

#[tokio::test]
async fn withdrawn_records_expire_within_the_ttl() {
    let secret = secret("withdrawn records expire secret");
    let nodes = cluster(&secret, 3, short_ttl).await;
    let key = blob_key(b"withdrawn");
    // The first announcement (or a reprovide) puts the record in the others' stores.
    nodes[0].provide(key.clone()).await.unwrap();
    for node in &nodes[1..] {
        eventually("the provider", CONVERGE, || async {
            (!providers(node, &key).await.is_empty()).then_some(())
        })
        .await;
    }
    nodes[0].withdraw(key.clone()).await.unwrap();
    let withdrawn = Instant::now();
    // Kademlia has no delete: remote copies, refreshed at most SHORT_REPROVIDE ago, are
    // still there...
    for node in &nodes[1..] {
        assert_eq!(providers(node, &key).await, vec![seen(&nodes[0])]);
    }
    assert!(
        withdrawn.elapsed() < SHORT_TTL - SHORT_REPROVIDE,
        "too slow to tell"
    );
    // ...until they expire, one TTL after the last announcement.
    for node in &nodes[1..] {
        eventually("the record to expire", SHORT_TTL * 4, || async {
            providers(node, &key).await.is_empty().then_some(())
        })
        .await;
    }
    let gone = withdrawn.elapsed();
    eprintln!("withdrawn record gone after {gone:?}");
    assert!(gone <= SHORT_TTL + Duration::from_secs(2), "{gone:?}");
    shutdown(&nodes).await;
}

#[tokio::test]
async fn reprovided_records_outlive_the_ttl() {
    let secret = secret("reprovided records outlive secret");
    let nodes = cluster(&secret, 3, short_ttl).await;
    let key = blob_key(b"kept");
    nodes[0].provide(key.clone()).await.unwrap();
    eventually("the provider", CONVERGE, || async {
        (!providers(&nodes[2], &key).await.is_empty()).then_some(())
    })
    .await;
    // Sample for three TTLs: the record stays findable all along.
    let until = Instant::now() + SHORT_TTL * 3;
    let mut samples = 0;
    while Instant::now() < until {
        assert_eq!(providers(&nodes[2], &key).await, vec![seen(&nodes[0])]);
        samples += 1;
        tokio::time::sleep(POLL).await;
    }
    assert!(samples > 3);
    // The provider itself always answers for its own record, so the samples alone do not
    // prove re-announcement. After withdrawing, only the others' copies answer: they are
    // still there three TTLs after the first announcement, so they were refreshed.
    nodes[0].withdraw(key.clone()).await.unwrap();
    let withdrawn = Instant::now();
    assert_eq!(providers(&nodes[2], &key).await, vec![seen(&nodes[0])]);
    assert!(
        withdrawn.elapsed() < SHORT_TTL - SHORT_REPROVIDE,
        "too slow to tell"
    );
    shutdown(&nodes).await;
}

#[tokio::test]
async fn records_provided_before_any_peer_reach_the_first_peers() {
    let secret = secret("provided before any peer secret");
    // Default TTL and reprovide interval: no reprovide round happens during this test.
    let lonely = cluster(&secret, 1, |_| {}).await.remove(0);
    let key = blob_key(b"early");
    lonely.provide(key.clone()).await.unwrap();
    let mut cfg = config(
        &secret,
        "127.0.0.1:7100".parse().unwrap(),
        Topology::default(),
    );
    cfg.bootstrap = vec![lonely.listen_addr()];
    let late = Libp2pDiscovery::spawn(cfg).await.unwrap();
    // Once each lists the other, the provider has the late node in its routing table, which
    // is when it repeats the announcement that reached nobody.
    for (node, other) in [(&lonely, &late), (&late, &lonely)] {
        eventually("the nodes to know each other", CONVERGE, || async {
            let peers = node.peers().await;
            peers.iter().any(|p| p.id == other.local().id).then_some(())
        })
        .await;
    }
    // Withdrawn, the provider no longer answers for itself: what the late node finds is its own
    // copy, which only that repeated announcement can have put there (no reprovide round runs
    // within the default interval).
    lonely.withdraw(key.clone()).await.unwrap();
    eventually("the late node's copy", CONVERGE, || async {
        (providers(&late, &key).await == vec![seen(&lonely)]).then_some(())
    })
    .await;
    late.shutdown().await;
    lonely.shutdown().await;
}

#[tokio::test]
async fn outsiders_without_the_secret_learn_nothing() {
    let members = secret("the members' cluster secret");
    let nodes = cluster(&members, 2, |_| {}).await;
    let key = blob_key(b"secret stuff");
    nodes[0].provide(key.clone()).await.unwrap();
    eventually("member sees provider", CONVERGE, || async {
        (!providers(&nodes[1], &key).await.is_empty()).then_some(())
    })
    .await;

    let mut cfg = config(
        &secret("an outsider's other secret!"),
        "127.0.0.1:7999".parse().unwrap(),
        topology("evil", "x"),
    );
    cfg.bootstrap = vec![nodes[0].listen_addr()];
    let outsider = Libp2pDiscovery::spawn(cfg).await.unwrap();
    let refused = Instant::now();
    let err = outsider.add_peer(nodes[0].listen_addr()).await;
    assert!(matches!(err, Err(DiscoveryError::Other(_))), "{err:?}");
    eprintln!("outsider refused after {:?}: {err:?}", refused.elapsed());
    assert!(outsider
        .providers(key.clone(), 10)
        .await
        .unwrap()
        .is_empty());
    assert!(outsider.peers().await.is_empty());
    // And a member cannot reach into the outsider's network either.
    let err = nodes[1].add_peer(outsider.listen_addr()).await;
    assert!(matches!(err, Err(DiscoveryError::Other(_))), "{err:?}");
    for node in &nodes {
        let peers = node.peers().await;
        assert!(
            peers.iter().all(|p| p.id != outsider.local().id),
            "{peers:?}"
        );
    }
    outsider.shutdown().await;
    shutdown(&nodes).await;
}

#[tokio::test]
async fn peers_report_topology() {
    let secret = secret("peers report topology secret");
    let nodes = cluster(&secret, 3, |_| {}).await;
    // The first node learns of the others when they bootstrap; seed the last two directly.
    nodes[2].add_peer(nodes[1].listen_addr()).await.unwrap();
    for (i, node) in nodes.iter().enumerate() {
        let mut want: Vec<NodeInfo> = (0..nodes.len())
            .filter(|j| *j != i)
            .map(|j| seen(&nodes[j]))
            .collect();
        want.sort_by_key(|n| n.id);
        eventually("every peer with its topology", CONVERGE, || async {
            let mut peers = node.peers().await;
            peers.sort_by_key(|n| n.id);
            (peers == want).then_some(())
        })
        .await;
    }
    assert_eq!(seen(&nodes[1]).topology, topology("z1", "r1"));
    shutdown(&nodes).await;
}

#[tokio::test]
async fn bad_configs_are_refused() {
    let secret = secret("bad configs are refused secret");
    let mut cfg = config(
        &secret,
        "127.0.0.1:7000".parse().unwrap(),
        Topology::default(),
    );
    cfg.reprovide_interval = cfg.provider_ttl;
    assert!(Libp2pDiscovery::spawn(cfg).await.is_err());
    let mut cfg = config(
        &secret,
        "127.0.0.1:7000".parse().unwrap(),
        Topology::default(),
    );
    cfg.local.id = NodeKey::generate().id();
    assert!(Libp2pDiscovery::spawn(cfg).await.is_err());
    let long = "z".repeat(200);
    let cfg = config(
        &secret,
        "127.0.0.1:7000".parse().unwrap(),
        topology(&long, "r"),
    );
    assert!(Libp2pDiscovery::spawn(cfg).await.is_err());
}
