//! The baselines of the agent-to-agent pull, measured in the same run: raw TCP on loopback (one
//! tokio stream), hfmesh's QUIC transport alone (chunk requests as the scheduler makes them, from
//! memory, nothing hashed or written) and a plain file copy with fsync on the same disk.

use std::io::{Read, Write};
use std::sync::Arc;
use std::time::Instant;

use futures_util::stream::{FuturesUnordered, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use hfmesh::discovery::NodeInfo;
use hfmesh::etag::Etag;
use hfmesh::manifest::SignedManifest;
use hfmesh::node::{ClusterSecret, NodeKey, Topology};
use hfmesh::repo::{CommitId, RepoId, RepoKind};
use hfmesh::scheduler::SchedConfig;
use hfmesh::store::{chunk_count, Bitmap, CHUNK_SIZE};
use hfmesh::transfer::{ChunkSource, Transfer, TransferConfig};

use crate::agents::Cluster;
use crate::report::{best, mbps, Report, Value};
use crate::Settings;

/// Best MB/s of each baseline.
pub struct Baselines {
    /// Raw TCP on loopback.
    pub tcp: f64,
    /// QUIC chunk requests, memory to memory.
    pub quic_transport: f64,
    /// Read + write + fsync of the model file.
    pub file_copy: f64,
}

/// Measures the baselines and reports QUIC transport against TCP.
pub fn run(
    settings: &Settings,
    rt: &tokio::runtime::Runtime,
    cluster: &Cluster,
    report: &mut Report,
) -> Baselines {
    let size = settings.size;
    let times =
        |f: &mut dyn FnMut() -> f64| best(&(0..settings.repeat).map(|_| f()).collect::<Vec<_>>());
    let tcp = times(&mut || rt.block_on(tcp_loopback(size)));
    let quic = times(&mut || rt.block_on(quic_transport(size)));
    let copy = times(&mut || file_copy(cluster, size));
    let mb = |what: &str, value: f64| Value {
        what: what.into(),
        value,
        unit: "MB/s",
    };
    let sched = SchedConfig::default();
    report.add(
        "Transfer",
        mb("QUIC transport alone (no disk, no hashing)", quic.0),
        Some(mb("raw TCP on loopback (1 stream)", tcp.0)),
        format!(
            "{} × {} chunks in flight; QUIC {}; TCP {}",
            sched.requests_per_peer, sched.chunks_per_request, quic.1, tcp.1
        ),
    );
    report.add(
        "Transfer",
        mb("file copy + fsync on the same disk", copy.0),
        None,
        copy.1,
    );
    Baselines {
        tcp: tcp.0,
        quic_transport: quic.0,
        file_copy: copy.0,
    }
}

/// Only raw TCP and the QUIC transport, logged (`HFMESH_BENCH_TRANSPORT_ONLY=1`: the tuning
/// loop, without agents or a table).
pub fn transport_only(settings: &Settings, rt: &tokio::runtime::Runtime) {
    for _ in 0..settings.repeat {
        let tcp = rt.block_on(tcp_loopback(settings.size));
        eprintln!("TCP: {tcp:.0} MB/s, load {}", crate::report::load1());
        rt.block_on(quic_transport(settings.size));
    }
}

/// MB/s of `total` bytes over one TCP connection on loopback, 4 MiB writes and reads.
async fn tcp_loopback(total: u64) -> f64 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let sender = tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        let buf = vec![7u8; CHUNK_SIZE as usize];
        let mut left = total;
        while left > 0 {
            let n = left.min(buf.len() as u64) as usize;
            s.write_all(&buf[..n]).await.unwrap();
            left -= n as u64;
        }
        s.shutdown().await.unwrap();
    });
    let t = Instant::now();
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut buf = vec![0u8; CHUNK_SIZE as usize];
    let mut got = 0u64;
    loop {
        let n = s.read(&mut buf).await.unwrap();
        if n == 0 {
            break;
        }
        got += n as u64;
    }
    let elapsed = t.elapsed();
    sender.await.unwrap();
    assert_eq!(got, total);
    mbps(total, elapsed)
}

/// A blob served from memory: 64 distinct chunks, repeated.
struct Memory(Arc<Vec<u8>>);

const DISTINCT: u64 = 64;

impl ChunkSource for Memory {
    fn manifest(&self, _: RepoKind, _: &RepoId, _: &CommitId) -> Option<SignedManifest> {
        None
    }
    fn have(&self, _: &Etag) -> Option<Bitmap> {
        None
    }
    fn read_chunk(&self, _: &Etag, index: u64) -> std::io::Result<Option<bytes::Bytes>> {
        let at = ((index % DISTINCT) * CHUNK_SIZE) as usize;
        Ok(Some(self.0[at..at + CHUNK_SIZE as usize].to_vec().into()))
    }
}

/// MB/s of whole chunks covering `total` bytes, asked as the scheduler asks one peer
/// (`requests_per_peer` requests of `chunks_per_request` chunks in flight).
async fn quic_transport(total: u64) -> f64 {
    let data: Vec<u8> = (0..DISTINCT * CHUNK_SIZE)
        .map(|i| (i % 251) as u8)
        .collect();
    let secret = ClusterSecret::from_material(b"bench secret of enough length!!").unwrap();
    let cfg = |n: u8| TransferConfig {
        key: NodeKey::from_secret([n; 32]),
        cluster: secret.clone(),
        topology: Topology::default(),
        listen: "127.0.0.1:0".parse().unwrap(),
    };
    let server = Transfer::bind(cfg(1), Arc::new(Memory(Arc::new(data))))
        .await
        .unwrap();
    let client = Transfer::bind(cfg(2), Arc::new(Memory(Arc::new(Vec::new()))))
        .await
        .unwrap();
    let peer = NodeInfo {
        id: server.node(),
        addr: server.local_addr(),
        topology: Topology::default(),
    };
    let sched = SchedConfig::default();
    let etag = hfmesh::etag::sha256(b"bench");
    let chunks = chunk_count(total);
    let rcvbuf_errors = udp_rcvbuf_errors();
    let t = Instant::now();
    let conn = client.connect(&peer).await.unwrap();
    let (mut next, mut received) = (0u64, 0u64);
    let mut inflight = FuturesUnordered::new();
    loop {
        while inflight.len() < sched.requests_per_peer && next < chunks {
            let (conn, etag, first) = (conn.clone(), etag.clone(), next);
            let count = sched.chunks_per_request.min(chunks - next) as u32;
            next += u64::from(count);
            inflight.push(async move {
                let mut bytes = 0u64;
                conn.chunks(&etag, first, count, |_, b| bytes += b.len() as u64)
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
    let elapsed = t.elapsed();
    let stats = conn.transport_stats();
    let served = server.stats();
    let served = served.first();
    eprintln!(
        "QUIC transport: {:.0} MB/s, client path MTU {} B, server path MTU {} B, \
         {} server packets lost, {} datagrams received ({} bytes), {} UDP RcvbufErrors, load {}",
        mbps(received, elapsed),
        stats.path.current_mtu,
        served.and_then(|s| s.path_mtu).unwrap_or(0),
        served.map_or(0, |s| s.lost_packets),
        stats.udp_rx.datagrams,
        stats.udp_rx.bytes,
        udp_rcvbuf_errors().saturating_sub(rcvbuf_errors),
        crate::report::load1()
    );
    client.shutdown().await;
    server.shutdown().await;
    mbps(received, elapsed)
}

/// The kernel's count of UDP datagrams dropped for a full receive buffer (all sockets).
fn udp_rcvbuf_errors() -> u64 {
    let snmp = std::fs::read_to_string("/proc/net/snmp").unwrap_or_default();
    let mut udp = snmp.lines().filter(|l| l.starts_with("Udp:"));
    let (Some(names), Some(values)) = (udp.next(), udp.next()) else {
        return 0;
    };
    names
        .split_whitespace()
        .zip(values.split_whitespace())
        .find(|(n, _)| *n == "RcvbufErrors")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0)
}

/// MB/s of copying the model's blob (page-cached) to a new file with 4 MiB reads and writes,
/// then fsync, as a pull ends with.
fn file_copy(cluster: &Cluster, size: u64) -> f64 {
    let to = cluster.blob.with_file_name("bench-copy");
    let t = Instant::now();
    let mut from = std::fs::File::open(&cluster.blob).unwrap();
    let mut out = std::fs::File::create(&to).unwrap();
    let mut buf = vec![0u8; CHUNK_SIZE as usize];
    loop {
        let n = from.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        out.write_all(&buf[..n]).unwrap();
    }
    out.sync_all().unwrap();
    let elapsed = t.elapsed();
    let _ = std::fs::remove_file(&to);
    mbps(size, elapsed)
}
