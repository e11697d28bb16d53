//! Real nodes on loopback — libp2p Kademlia discovery and QUIC transfers — pulling through the
//! mesh from the hub emulator. Peers are seeded directly (bootstrap addresses); every wait is
//! for an event, with a timeout.

mod common;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use hfmesh::agent::Node;
use hfmesh::discovery::{ContentKey, Discovery};
use hfmesh::emulator::Faults;
use hfmesh::mesh::LocalStore;
use hfmesh::node::ClusterSecret;
use hfmesh::repo::{RepoKind, RepoRef};
use hfmesh::transfer::ChunkSource;

fn medium() -> RepoRef {
    RepoRef::parse("acme/medium", RepoKind::Model).unwrap()
}

fn silent() -> Arc<dyn hfmesh::progress::Progress> {
    Arc::new(hfmesh::progress::Silent)
}

/// Waits until `node` sees a provider of the snapshot `what` at `commit`.
async fn wait_for_snapshot(node: &Node, what: &RepoRef, commit: &hfmesh::repo::CommitId) {
    let key = ContentKey::Snapshot {
        kind: what.kind,
        repo: what.id.clone(),
        commit: commit.clone(),
    };
    wait_for_provider(node, key).await;
}

async fn wait_until_async<F: std::future::Future<Output = bool>>(
    what: &str,
    timeout: Duration,
    mut cond: impl FnMut() -> F,
) {
    let deadline = std::time::Instant::now() + timeout;
    while !cond().await {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn same_model(a: &std::path::Path, b: &std::path::Path) {
    assert!(
        std::fs::read(a.join("model.safetensors")).unwrap()
            == std::fs::read(b.join("model.safetensors")).unwrap()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_nodes_pull_from_the_one_holder_with_zero_bytes_from_the_hub() {
    let (_root, hub) = start_hub().await;
    let dir = tempfile::tempdir().unwrap();
    let holder = Node::start(node_config(dir.path(), &hub.url(), 1, "r1", vec![]))
        .await
        .unwrap();
    let first = holder.pull(&medium(), silent()).await.unwrap();
    let served = hub.stats().bytes_served;
    assert_eq!(served, MEDIUM_SIZE);
    let mut nodes = Vec::new();
    for n in 2..=5 {
        let node = Node::start(node_config(
            dir.path(),
            &hub.url(),
            n,
            "r1",
            vec![holder.p2p_addr()],
        ))
        .await
        .unwrap();
        wait_for_snapshot(&node, &medium(), &first.commit).await;
        let r = node.pull(&medium(), silent()).await.unwrap();
        assert!(
            r.manifest_from_peer && r.bytes_from_hub == 0,
            "node {n}: {r:?}"
        );
        assert_eq!(r.bytes_from_peers, MEDIUM_SIZE);
        same_model(&first.snapshot_dir, &r.snapshot_dir);
        nodes.push(node);
    }
    assert_eq!(
        hub.stats().bytes_served,
        served,
        "zero file bytes from the emulator for the four pullers"
    );
    let sent: u64 = holder.transfer.stats().iter().map(|s| s.bytes_sent).sum();
    assert!(sent > 0, "the holder served over QUIC");
    for n in nodes {
        n.shutdown().await;
    }
    holder.shutdown().await;
}

/// Serves through the store, but misbehaves as a test asks: flips a byte of every chunk, or
/// answers each chunk only after a delay (so a test can kill it mid-transfer).
struct Misbehaving {
    store: Arc<LocalStore>,
    corrupt: bool,
    delay: Duration,
}

impl Misbehaving {
    fn corrupt(store: Arc<LocalStore>) -> Arc<dyn ChunkSource> {
        Arc::new(Misbehaving {
            store,
            corrupt: true,
            delay: Duration::ZERO,
        })
    }

    fn slow(store: Arc<LocalStore>) -> Arc<dyn ChunkSource> {
        Arc::new(Misbehaving {
            store,
            corrupt: false,
            delay: Duration::from_millis(150),
        })
    }
}

impl ChunkSource for Misbehaving {
    fn manifest(
        &self,
        k: RepoKind,
        r: &hfmesh::repo::RepoId,
        c: &hfmesh::repo::CommitId,
    ) -> Option<hfmesh::manifest::SignedManifest> {
        self.store.manifest(k, r, c)
    }
    fn have(&self, etag: &hfmesh::etag::Etag) -> Option<hfmesh::store::Bitmap> {
        self.store.have(etag)
    }
    fn read_chunk(
        &self,
        etag: &hfmesh::etag::Etag,
        index: u64,
    ) -> std::io::Result<Option<bytes::Bytes>> {
        std::thread::sleep(self.delay);
        let corrupt = self.corrupt;
        Ok(self.store.read_chunk(etag, index)?.map(|chunk| {
            let mut d = chunk.to_vec();
            if corrupt {
                d[0] ^= 0xff;
            }
            d.into()
        }))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_serving_corrupt_chunks_is_detected_and_avoided() {
    let (_root, hub) = start_hub().await;
    let dir = tempfile::tempdir().unwrap();
    let honest = Node::start(node_config(dir.path(), &hub.url(), 1, "far", vec![]))
        .await
        .unwrap();
    let first = honest.pull(&medium(), silent()).await.unwrap();
    let liar = Node::start_with(
        node_config(dir.path(), &hub.url(), 2, "near", vec![honest.p2p_addr()]),
        Misbehaving::corrupt,
    )
    .await
    .unwrap();
    wait_for_snapshot(&liar, &medium(), &first.commit).await;
    liar.pull(&medium(), silent()).await.unwrap();
    let puller = Node::start(node_config(
        dir.path(),
        &hub.url(),
        3,
        "near",
        vec![honest.p2p_addr()],
    ))
    .await
    .unwrap();
    let key =
        ContentKey::Blob(hfmesh::etag::Etag::parse(&first_blob(&first.snapshot_dir)).unwrap());
    let d = puller.discovery.clone();
    wait_until_async(
        "both holders to be providers",
        Duration::from_secs(30),
        || {
            let (d, key) = (d.clone(), key.clone());
            async move { d.providers(key, 8).await.unwrap_or_default().len() >= 2 }
        },
    )
    .await;
    let served = hub.stats().bytes_served;
    let r = puller.pull(&medium(), silent()).await.unwrap();
    assert!(
        puller.mesh.counters.bad_chunks.load(Ordering::Relaxed) >= 1,
        "the corrupt chunk was caught"
    );
    assert_eq!(r.bytes_from_hub, 0);
    assert_eq!(hub.stats().bytes_served, served);
    same_model(&first.snapshot_dir, &r.snapshot_dir);
    for n in [puller, liar, honest] {
        n.shutdown().await;
    }
}

fn first_blob(snapshot: &std::path::Path) -> String {
    let target = std::fs::read_link(snapshot.join("model.safetensors")).unwrap();
    target.file_name().unwrap().to_string_lossy().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_only_holder_killed_mid_transfer_and_the_pull_completes_from_the_hub() {
    let (_root, hub) = start_hub().await;
    let dir = tempfile::tempdir().unwrap();
    let holder = Node::start_with(
        node_config(dir.path(), &hub.url(), 1, "r1", vec![]),
        Misbehaving::slow,
    )
    .await
    .unwrap();
    let first = holder.pull(&medium(), silent()).await.unwrap();
    hub.reset_stats();
    let puller = Arc::new(
        Node::start(node_config(
            dir.path(),
            &hub.url(),
            2,
            "r1",
            vec![holder.p2p_addr()],
        ))
        .await
        .unwrap(),
    );
    wait_for_snapshot(&puller, &medium(), &first.commit).await;
    let pulling = tokio::spawn({
        let puller = puller.clone();
        async move { puller.pull(&medium(), silent()).await }
    });
    let counters = puller.mesh.counters.clone();
    wait_until(
        "some chunks from the holder",
        Duration::from_secs(60),
        || counters.bytes_from_peers.load(Ordering::Relaxed) >= 16 << 20,
    )
    .await;
    holder.shutdown().await;
    let r = pulling.await.unwrap().unwrap();
    assert!(r.bytes_from_peers >= 16 << 20);
    assert!(
        r.bytes_from_hub > 0 && r.bytes_from_hub < MEDIUM_SIZE,
        "the Hub supplied the rest: {r:?}"
    );
    same_model(&first.snapshot_dir, &r.snapshot_dir);
    puller.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_cold_starting_together_take_it_from_the_hub_about_once() {
    let (_root, hub) = start_hub().await;
    hub.set_faults(Faults {
        bandwidth_bps: Some(64 << 20),
        ..Faults::default()
    });
    let dir = tempfile::tempdir().unwrap();
    let first = Node::start(node_config(dir.path(), &hub.url(), 1, "r1", vec![]))
        .await
        .unwrap();
    // Each node bootstraps from every node started before it, as operators list several
    // bootstrap addresses, so the cluster's connections do not hinge on DHT query timing.
    let mut bootstrap = vec![first.p2p_addr()];
    let mut nodes = vec![first];
    for n in 2..=4 {
        let node = Node::start(node_config(
            dir.path(),
            &hub.url(),
            n,
            "r1",
            bootstrap.clone(),
        ))
        .await
        .unwrap();
        bootstrap.push(node.p2p_addr());
        nodes.push(node);
    }
    // Every node must see the others before the storm, as in a running cluster.
    for node in &nodes {
        let d = node.discovery.clone();
        wait_until_async("the cluster to form", Duration::from_secs(30), || {
            let d = d.clone();
            async move { d.peers().await.len() >= 3 }
        })
        .await;
    }
    let what = medium();
    let reports =
        futures_util::future::join_all(nodes.iter().map(|n| n.pull(&what, silent()))).await;
    let served = hub.stats().bytes_served;
    for r in &reports {
        let r = r.as_ref().unwrap();
        assert_medium_model(&r.snapshot_dir);
    }
    let ratio = served as f64 / MEDIUM_SIZE as f64;
    println!("4 nodes cold-starting together took {ratio:.3} x the model from the emulator");
    assert!(
        ratio <= 1.25,
        "4 nodes took {ratio:.2} x the model from the emulator"
    );
    for n in nodes {
        n.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outsider_without_the_cluster_secret_gets_nothing() {
    let (_root, hub) = start_hub().await;
    let dir = tempfile::tempdir().unwrap();
    let member = Node::start(node_config(dir.path(), &hub.url(), 1, "r1", vec![]))
        .await
        .unwrap();
    let first = member.pull(&medium(), silent()).await.unwrap();
    // The outsider knows the member's address and the commit, but not the secret; the Hub is
    // out of its reach, so anything it gets would have to come from the member.
    let mut cfg = node_config(
        dir.path(),
        "http://127.0.0.1:9",
        9,
        "r1",
        vec![member.p2p_addr()],
    );
    cfg.cluster = ClusterSecret::from_material(b"another secret, also 32 bytes!!").unwrap();
    cfg.hub.retry.max_attempts = 1;
    let outsider = Node::start(cfg).await.unwrap();
    let pinned = RepoRef::parse(&format!("acme/medium:{}", first.commit), RepoKind::Model).unwrap();
    let key = ContentKey::Snapshot {
        kind: pinned.kind,
        repo: pinned.id.clone(),
        commit: first.commit.clone(),
    };
    assert!(
        outsider
            .discovery
            .providers(key, 8)
            .await
            .unwrap_or_default()
            .is_empty(),
        "it cannot join the DHT"
    );
    assert!(outsider.pull(&pinned, silent()).await.is_err());
    // Even dialing the member's QUIC endpoint directly gets nothing.
    let direct = outsider.transfer.connect(&member.mesh.me).await;
    assert!(
        direct.is_err(),
        "the member refused the outsider's connection"
    );
    assert!(member
        .discovery
        .peers()
        .await
        .iter()
        .all(|p| p.id != outsider.id()));
    let sent_to_outsider: u64 = member
        .transfer
        .stats()
        .iter()
        .filter(|s| s.id == outsider.id())
        .map(|s| s.bytes_sent)
        .sum();
    assert_eq!(sent_to_outsider, 0, "not one byte served to the outsider");
    let outsider_cache = dir.path().join("node9/hub/models--acme--medium/blobs");
    assert!(
        std::fs::read_dir(outsider_cache)
            .map(|d| d.count())
            .unwrap_or(0)
            == 0
    );
    outsider.shutdown().await;
    member.shutdown().await;
}
