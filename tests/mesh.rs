//! The mesh pull with in-process nodes (memory directory and memory peers): what comes from peers
//! and what from the Hub, a lying peer, a silent provider, a busy holder, a node found only by peer exchange, a
//! holder that dies, and many nodes cold-starting at once.
//! The same scenarios over real QUIC and libp2p are in `tests/cluster.rs`.

mod common;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use hfmesh::discovery::{MemoryDirectory, NodeInfo};
use hfmesh::emulator::{Emulator, Faults};
use hfmesh::hub::{HubClient, HubConfig};
use hfmesh::mesh::{announce, LocalStore, MemoryPeers, Mesh, MeshConfig, MeshCounters};
use hfmesh::node::{NodeKey, Topology};
use hfmesh::repo::{RepoKind, RepoRef};
use tokio_util::sync::CancellationToken;

struct Net {
    directory: MemoryDirectory,
    peers: MemoryPeers,
    stop: CancellationToken,
    dir: tempfile::TempDir,
}

impl Net {
    fn new() -> Net {
        Net::with_directory(MemoryDirectory::new())
    }

    fn with_directory(directory: MemoryDirectory) -> Net {
        Net {
            directory,
            peers: MemoryPeers::new(),
            stop: CancellationToken::new(),
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn node(&self, hub: &Emulator, n: u8, rack: &str) -> Mesh {
        let key = NodeKey::from_secret([n; 32]);
        let me = NodeInfo {
            id: key.id(),
            addr: ([127, 0, 0, 1], 10_000 + u16::from(n)).into(),
            topology: Topology {
                zone: Some("z1".into()),
                rack: Some(rack.into()),
            },
        };
        let root = self.dir.path().join(format!("node{n}"));
        let store = Arc::new(LocalStore::open(&root.join("hub"), &root.join("state")).unwrap());
        let discovery = Arc::new(self.directory.join(me.clone()));
        self.peers.add(me.id, store.clone());
        tokio::spawn(announce::run(
            store.clone(),
            discovery.clone(),
            self.stop.clone(),
        ));
        Mesh {
            me,
            key,
            hub: HubClient::new(HubConfig::for_endpoint(&hub.url()).unwrap()).unwrap(),
            cache_root: root.join("hub"),
            discovery,
            peers: Arc::new(self.peers.clone()),
            store,
            // The directory of a test may keep fewer providers than a real DHT.
            cfg: MeshConfig {
                exchange_after: self.directory.providers_per_key().unwrap_or(usize::MAX),
                ..MeshConfig::default()
            },
            counters: Arc::new(MeshCounters::default()),
        }
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

fn medium() -> RepoRef {
    RepoRef::parse("acme/medium", RepoKind::Model).unwrap()
}

fn silent() -> Arc<dyn hfmesh::progress::Progress> {
    Arc::new(hfmesh::progress::Silent)
}

/// The model `r` pulled is byte for byte the one `holder` has.
fn same_model_as(holder: &Mesh, r: &hfmesh::mesh::MeshReport) {
    let theirs = holder
        .cache_root
        .join("models--acme--medium/snapshots")
        .join(r.commit.as_str());
    same_file(
        &theirs.join("model.safetensors"),
        &r.snapshot_dir.join("model.safetensors"),
    );
}

/// The pull `r` took every byte from peers, and the Hub (its counters reset before) served no
/// file bytes; the model is `holder`'s.
fn all_from_peers(hub: &Emulator, holder: &Mesh, r: &hfmesh::mesh::MeshReport) {
    assert_eq!(r.bytes_from_peers, MEDIUM_SIZE, "all of it from peers");
    assert_eq!(r.bytes_from_hub, 0);
    assert_eq!(
        hub.stats().bytes_served,
        0,
        "the Hub was asked for file bytes"
    );
    same_model_as(holder, r);
}

fn same_file(a: &std::path::Path, b: &std::path::Path) {
    let (x, y) = (std::fs::read(a).unwrap(), std::fs::read(b).unwrap());
    assert!(x == y, "{} and {} differ", a.display(), b.display());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_nodes_pull_from_one_holder_with_no_file_bytes_from_the_hub() {
    let (_root, hub) = start_hub().await;
    let net = Net::new();
    let holder = net.node(&hub, 1, "r1");
    let first = holder.pull(&medium(), silent()).await.unwrap();
    assert_eq!(first.bytes_from_hub, MEDIUM_SIZE);
    let served = hub.stats().bytes_served;
    for n in 2..=5 {
        let node = net.node(&hub, n, "r1");
        let r = node.pull(&medium(), silent()).await.unwrap();
        assert!(
            r.manifest_from_peer,
            "node {n} got the signed manifest from a peer"
        );
        assert_eq!(r.bytes_from_hub, 0, "node {n}");
        assert_eq!(r.bytes_from_peers, MEDIUM_SIZE, "node {n}");
        same_file(
            &first.snapshot_dir.join("model.safetensors"),
            &r.snapshot_dir.join("model.safetensors"),
        );
    }
    assert_eq!(
        hub.stats().bytes_served,
        served,
        "zero file bytes from the Hub after the first node"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_serving_corrupt_chunks_is_caught_and_avoided() {
    let (_root, hub) = start_hub().await;
    let net = Net::new();
    let honest = net.node(&hub, 1, "far");
    honest.pull(&medium(), silent()).await.unwrap();
    let liar = net.node(&hub, 2, "near");
    liar.pull(&medium(), silent()).await.unwrap();
    net.peers.corrupt(&liar.me.id);
    // The puller shares a rack with the liar, so the liar is asked first.
    let puller = net.node(&hub, 3, "near");
    let r = puller.pull(&medium(), silent()).await.unwrap();
    assert!(
        puller.counters.bad_chunks.load(Ordering::Relaxed) >= 1,
        "the corrupt chunk was detected"
    );
    assert_eq!(r.bytes_from_hub, 0);
    same_model_as(&honest, &r);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_that_never_answers_does_not_hold_up_the_manifest() {
    let (_root, hub) = start_hub().await;
    let net = Net::new();
    let holder = net.node(&hub, 1, "far");
    holder.pull(&medium(), silent()).await.unwrap();
    // A node in the puller's rack pulls the model too, then dies without a word: the directory
    // still lists it, and it is the nearest provider, so it is asked first.
    let dead = net.node(&hub, 2, "near");
    dead.pull(&medium(), silent()).await.unwrap();
    net.peers.silence(&dead.me.id);
    hub.reset_stats();
    let puller = net.node(&hub, 3, "near");
    // Asked one after the other, the silent node's request would never end.
    let r = tokio::time::timeout(Duration::from_secs(60), puller.pull(&medium(), silent()))
        .await
        .expect("the pull went on without the silent node")
        .unwrap();
    assert!(r.manifest_from_peer, "the holder's manifest was taken");
    all_from_peers(&hub, &holder, &r);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_holder_that_is_busy_is_asked_again_later_not_bypassed_or_banned() {
    let (_root, hub) = start_hub().await;
    let net = Net::new();
    let holder = net.node(&hub, 1, "r1");
    holder.pull(&medium(), silent()).await.unwrap();
    hub.reset_stats();
    // Far more refusals than the strikes that would ban a failing peer.
    net.peers.busy_for(&holder.me.id, 12);
    let puller = net.node(&hub, 2, "r1");
    let r = puller.pull(&medium(), silent()).await.unwrap();
    assert_eq!(
        net.peers.busy_left(&holder.me.id),
        0,
        "every refusal was met"
    );
    all_from_peers(&hub, &holder, &r);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_the_dht_does_not_list_serves_others_through_peer_exchange() {
    let (_root, hub) = start_hub().await;
    // The DHT keeps one provider per key: the holder. Node 2 pulls after it and is not listed.
    let net = Net::with_directory(MemoryDirectory::with_providers_per_key(1));
    let holder = net.node(&hub, 1, "r1");
    holder.pull(&medium(), silent()).await.unwrap();
    let second = net.node(&hub, 2, "r1");
    second.pull(&medium(), silent()).await.unwrap();
    hub.reset_stats();
    // From now on the holder refuses every chunk request: only node 2 can serve, and a third
    // node can learn of it only from the holder's answers.
    net.peers.busy_for(&holder.me.id, i64::MAX);
    let third = net.node(&hub, 3, "r1");
    let r = tokio::time::timeout(Duration::from_secs(60), third.pull(&medium(), silent()))
        .await
        .expect("the third node found a source")
        .unwrap();
    all_from_peers(&hub, &holder, &r);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_only_holder_dies_mid_transfer_and_the_hub_supplies_the_rest() {
    let (_root, hub) = start_hub().await;
    let net = Net::new();
    let holder = net.node(&hub, 1, "r1");
    holder.pull(&medium(), silent()).await.unwrap();
    hub.reset_stats();
    net.peers.die_after(&holder.me.id, 3);
    let puller = net.node(&hub, 2, "r1");
    let r = puller.pull(&medium(), silent()).await.unwrap();
    assert!(
        r.bytes_from_peers > 0,
        "some chunks came from the holder before it died"
    );
    assert!(
        r.bytes_from_hub > 0 && r.bytes_from_hub < MEDIUM_SIZE,
        "the Hub supplied only the rest: {}",
        r.bytes_from_hub
    );
    assert_eq!(r.bytes_from_peers + r.bytes_from_hub, MEDIUM_SIZE);
    assert_eq!(hub.stats().bytes_served, r.bytes_from_hub);
    same_model_as(&holder, &r);
}

/// Four nodes of one rack cold-start a pull of the medium model together, the Hub capped at
/// `hub_bps` (the bottleneck, as in a real cold start). Checks every tree and that the Hub sent
/// the model about once, and returns the nodes with their reports.
async fn four_cold_start(hub_bps: u64) -> (Vec<Mesh>, Vec<hfmesh::mesh::MeshReport>) {
    let (_root, hub) = start_hub().await;
    hub.set_faults(Faults {
        bandwidth_bps: Some(hub_bps),
        ..Faults::default()
    });
    let net = Net::new();
    let nodes: Vec<Mesh> = (1..=4).map(|n| net.node(&hub, n, "r1")).collect();
    let what = medium();
    let pulls = nodes.iter().map(|m| m.pull(&what, silent()));
    let reports: Vec<_> = futures_util::future::join_all(pulls)
        .await
        .into_iter()
        .map(|r| r.unwrap())
        .collect();
    let served = hub.stats().bytes_served;
    for r in &reports {
        assert_medium_model(&r.snapshot_dir);
    }
    let from_hub: u64 = reports.iter().map(|r| r.bytes_from_hub).sum();
    assert_eq!(from_hub, served);
    assert!(
        served as f64 <= 1.25 * MEDIUM_SIZE as f64,
        "4 nodes took {:.2} x the model from the Hub",
        served as f64 / MEDIUM_SIZE as f64
    );
    (nodes, reports)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_cold_starting_together_take_each_byte_from_the_hub_about_once() {
    let (_, reports) = four_cold_start(64 << 20).await;
    assert!(
        reports.iter().filter(|r| r.bytes_from_hub > 0).count() >= 2,
        "the Hub work was split"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_pull_asks_its_providers_every_refresh_but_looks_them_up_far_less() {
    // About 8 s of pulling: 30 refreshes of the blob's view per node.
    let (nodes, _) = four_cold_start(20 << 20).await;
    for (n, m) in nodes.iter().enumerate() {
        let refreshes = m.counters.view_refreshes.load(Ordering::Relaxed);
        let lookups = m.counters.provider_lookups.load(Ordering::Relaxed);
        // Every refresh looks up until the Hub opens (about a second), then the waits double
        // while the list holds: 0.5, 1, 2, 4 s.
        assert!(refreshes >= 15, "node {n}: {refreshes} refreshes");
        assert!(lookups >= 1, "node {n}: no lookup");
        assert!(
            lookups * 3 <= refreshes,
            "node {n}: {lookups} DHT lookups in {refreshes} refreshes"
        );
    }
}

/// Progress that remembers when the first bytes from the Hub arrived, counted from its making.
struct FirstFromHub {
    made: std::time::Instant,
    first: std::sync::Mutex<Option<Duration>>,
}

impl FirstFromHub {
    fn new() -> Arc<FirstFromHub> {
        Arc::new(FirstFromHub {
            made: std::time::Instant::now(),
            first: std::sync::Mutex::new(None),
        })
    }

    fn first(&self) -> Duration {
        self.first.lock().unwrap().expect("bytes came from the Hub")
    }
}

impl hfmesh::progress::Progress for FirstFromHub {
    fn begin(&self, _: &str, _: u64) {}
    fn advance(&self, _: u64) {}
    fn note(&self, _: &str) {}
    fn finish(&self) {}
    fn received(&self, bytes: u64, origin: hfmesh::progress::Origin) {
        let mut first = self.first.lock().unwrap();
        if origin == hfmesh::progress::Origin::Hub && bytes > 0 && first.is_none() {
            *first = Some(self.made.elapsed());
        }
    }
}

/// How long the slow announcements of the two tests below take: well past the gather window
/// and the refresh that settles the pullers (under a second), well short of the 8 s after which
/// a blob's first Hub request goes whatever the pullers do.
const SLOW_ANNOUNCE: Duration = Duration::from_secs(3);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_takes_nothing_from_the_hub_before_its_own_announcement_is_in() {
    // On a loaded host a DHT announcement takes seconds, and so do everyone else's: a node that
    // settled on the records stored before its own was in fetched stripes that the others,
    // seeing more of the pullers, gave to someone else (storm-16, 7 of 16 pullers seen).
    let (_root, hub) = start_hub().await;
    let net = Net::new();
    let node = net.node(&hub, 1, "r1");
    net.directory.slow_announcements(node.me.id, SLOW_ANNOUNCE);
    let progress = FirstFromHub::new();
    let r = node.pull(&medium(), progress.clone()).await.unwrap();
    assert_eq!(r.bytes_from_hub, MEDIUM_SIZE);
    let first = progress.first();
    assert!(
        first >= SLOW_ANNOUNCE,
        "first Hub bytes {first:?} in, before the node's announcement ended"
    );
    assert!(first < Duration::from_secs(8), "waited {first:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_does_not_settle_while_a_puller_that_found_it_is_missing_from_its_lookup() {
    // Node 2's record reaches the DHT late, but node 2 finds node 1 at once and asks it: node 1
    // must count on a puller it cannot list yet, not split the Hub's work without it.
    let (_root, hub) = start_hub().await;
    let net = Net::new();
    let (one, two) = (net.node(&hub, 1, "r1"), net.node(&hub, 2, "r1"));
    net.directory.slow_announcements(two.me.id, SLOW_ANNOUNCE);
    let progress = FirstFromHub::new();
    let what = medium();
    let (a, b) = tokio::join!(one.pull(&what, progress.clone()), two.pull(&what, silent()));
    let (a, b) = (a.unwrap(), b.unwrap());
    let first = progress.first();
    assert!(
        first >= SLOW_ANNOUNCE - Duration::from_millis(300),
        "node 1 took from the Hub {first:?} in, while node 2 asked it but was not listed"
    );
    assert!(first < Duration::from_secs(8), "waited {first:?}");
    assert_medium_model(&a.snapshot_dir);
    assert_medium_model(&b.snapshot_dir);
    assert_eq!(
        a.bytes_from_hub + b.bytes_from_hub,
        hub.stats().bytes_served
    );
}
