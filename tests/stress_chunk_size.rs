//! The measurement behind `store::CHUNK_SIZE` (run by `scripts/bench.sh`, not by CI):
//! BLAKE3 throughput by chunk size, and QUIC peer-to-peer throughput on loopback by request size
//! (one request carries whole chunks, so the chunk is the smallest request).
//!
//! `cargo test --release --test stress_chunk_size -- --ignored --nocapture`

use std::sync::Arc;
use std::time::Instant;

use hfmesh::discovery::NodeInfo;
use hfmesh::etag::Etag;
use hfmesh::manifest::SignedManifest;
use hfmesh::node::{ClusterSecret, NodeKey, Topology};
use hfmesh::repo::{CommitId, RepoId, RepoKind};
use hfmesh::store::{chunk_count, chunk_range, Bitmap, CHUNK_SIZE};
use hfmesh::transfer::{ChunkSource, Transfer, TransferConfig};

const TOTAL: usize = 512 << 20;

fn data() -> Vec<u8> {
    (0..TOTAL)
        .map(|i| (i as u64).wrapping_mul(0x9e3779b97f4a7c15).to_le_bytes()[3])
        .collect()
}

#[test]
#[ignore]
fn stress_blake3_throughput_by_chunk_size() {
    let d = data();
    println!("| chunk size | BLAKE3 MB/s (one core) |");
    println!("|---|---|");
    for size in [64 << 10, 256 << 10, 1 << 20, 4 << 20, 16 << 20] {
        let start = Instant::now();
        let mut n = 0u8;
        for c in d.chunks(size) {
            n ^= blake3::hash(c).as_bytes()[0];
        }
        let mbps = TOTAL as f64 / start.elapsed().as_secs_f64() / 1e6;
        println!("| {} KiB | {mbps:.0} | {n}", size >> 10);
    }
}

struct Blob(Arc<Vec<u8>>);

impl ChunkSource for Blob {
    fn manifest(&self, _: RepoKind, _: &RepoId, _: &CommitId) -> Option<SignedManifest> {
        None
    }
    fn have(&self, _: &Etag) -> Option<Bitmap> {
        Some(Bitmap::full(chunk_count(self.0.len() as u64)))
    }
    fn read_chunk(&self, _: &Etag, index: u64) -> std::io::Result<Option<bytes::Bytes>> {
        let r = chunk_range(self.0.len() as u64, index);
        Ok(Some(
            self.0[r.start as usize..r.end as usize].to_vec().into(),
        ))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn stress_quic_throughput_by_request_size() {
    let blob = Arc::new(data());
    let secret = ClusterSecret::from_material(b"bench secret of enough length!!").unwrap();
    let cfg = |n: u8| TransferConfig {
        key: NodeKey::from_secret([n; 32]),
        cluster: secret.clone(),
        topology: Topology::default(),
        listen: "127.0.0.1:0".parse().unwrap(),
    };
    let server = Transfer::bind(cfg(1), Arc::new(Blob(blob.clone())))
        .await
        .unwrap();
    let client = Transfer::bind(cfg(2), Arc::new(Blob(Arc::new(vec![]))))
        .await
        .unwrap();
    let peer = NodeInfo {
        id: server.node(),
        addr: server.local_addr(),
        topology: Topology::default(),
    };
    let conn = client.connect(&peer).await.unwrap();
    let etag = hfmesh::etag::sha256(b"bench");
    let chunks = chunk_count(TOTAL as u64);
    println!("| chunks per request | request size | QUIC MB/s (4 requests in flight) |");
    println!("|---|---|---|");
    for per_request in [1u64, 2, 4, 8] {
        let start = Instant::now();
        let mut received = 0usize;
        let mut next = 0u64;
        let mut inflight = futures_util::stream::FuturesUnordered::new();
        use futures_util::StreamExt;
        loop {
            while inflight.len() < 4 && next < chunks {
                let (conn, etag, first) = (conn.clone(), etag.clone(), next);
                let count = per_request.min(chunks - next) as u32;
                next += u64::from(count);
                inflight.push(async move {
                    let mut bytes = 0usize;
                    conn.chunks(&etag, first, count, |_, b| bytes += b.len())
                        .await
                        .unwrap();
                    bytes
                });
            }
            match inflight.next().await {
                Some(b) => received += b,
                None => break,
            }
        }
        assert_eq!(received, TOTAL);
        let mbps = TOTAL as f64 / start.elapsed().as_secs_f64() / 1e6;
        println!(
            "| {per_request} | {} MiB | {mbps:.0} |",
            (per_request * CHUNK_SIZE) >> 20
        );
    }
    client.shutdown().await;
    server.shutdown().await;
}
