//! Datacenter tuning of the QUIC transport, in one place.
//!
//! The mesh runs between hosts of one datacenter: 10–100 Gbit/s links, round trips of 50 µs to
//! 1 ms, jumbo frames (9000-byte MTU) on most fabrics, no middleboxes. Quinn's defaults are for
//! the internet (1200-byte packets, 1.25 MB windows, a 333 ms initial RTT guess), which would cap
//! one connection far below the link. The numbers:
//!
//! - **Flow-control windows.** The bandwidth-delay product of 100 Gbit/s × 1 ms is 12.5 MB; at
//!   10 Gbit/s × 1 ms it is 1.25 MB. A window must cover the BDP plus the receiver's scheduling
//!   jitter (a tokio task that is late by a few ms at 10 GB/s means tens of MB in flight), so:
//!   [`STREAM_RECEIVE_WINDOW`] = 16 MiB per stream (four [`CHUNK_SIZE`] chunks in flight on a
//!   single chunk stream), [`CONNECTION_RECEIVE_WINDOW`] = [`SEND_WINDOW`] = 64 MiB per
//!   connection (several chunk streams at once). Memory is bounded by these × connections.
//! - **MTU.** We start at [`INITIAL_MTU`] = 1200 bytes (always deliverable) and let MTU discovery
//!   climb to [`MTU_UPPER_BOUND`] = 8952 bytes (a 9000-byte IPv6 jumbo frame minus 40 + 8 bytes of
//!   IP and UDP headers; IPv4 paths get the same). On 1500-byte fabrics discovery settles at
//!   1452. Bigger packets mean ~6× fewer packets, ACKs and syscalls per byte. Loopback allows
//!   up to 64 KiB; [`LOOPBACK_MTU_UPPER_BOUND`] is used when the endpoint listens on loopback
//!   (tests, benchmarks). The initial MTU must stay below 16384 in any case (quinn writes
//!   handshake packet lengths in two bytes and panics beyond). Every endpoint accepts datagrams up
//!   to [`MAX_UDP_PAYLOAD`] so a peer's discovery is never capped by our receive side. Quinn
//!   sends up to 10 packets in one GSO `sendmsg`, which Linux refuses (`EMSGSIZE`, dropped
//!   silently by quinn-udp) once the batch exceeds 64 KiB: above 6550-byte packets every full
//!   batch was lost, black-hole detection sent the MTU back to 1200, and the serving direction
//!   ran on 1200-byte packets. The endpoint's socket (`socket.rs`) cuts such batches into sends
//!   that fit, so both directions now reach the bound (65 000 bytes on loopback).
//! - **Congestion control.** Cubic (quinn's default and its most exercised controller; quinn's
//!   BBR is marked experimental) with an initial window of [`INITIAL_WINDOW`] = 256 KiB instead of
//!   ~14 KB: below one BDP of a 10 Gbit/s × 250 µs path, so still polite under incast, but a
//!   4 MiB chunk no longer needs ten round trips of slow start.
//! - **Timers.** [`INITIAL_RTT`] = 10 ms (the first loss-detection timer before any sample;
//!   quinn's 333 ms would stall a lost handshake packet for a second on a 100 µs path).
//!   [`KEEP_ALIVE`] = 5 s and [`IDLE_TIMEOUT`] = 30 s: a cached connection survives between pulls,
//!   a dead host is noticed within half a minute (the scheduler's hedging reacts much sooner).
//! - **Socket buffers.** [`SOCKET_BUFFER`] = 16 MiB of kernel buffer each way. Linux defaults to
//!   ~208 KiB: at 1 GB/s that is 200 µs of packets, so a receiver that is scheduled late drops
//!   datagrams, Cubic backs off and black-hole detection even drops the MTU back to 1200. The
//!   kernel caps the request at `net.core.rmem_max`/`wmem_max`; operators should raise those
//!   (`deploy/systemd/99-hfmesh-sysctl.conf` sets 32 MiB; `scripts/bench.sh` raises them for its
//!   run when it is root). With 65000-byte packets on loopback some drops remain even then.
//! - **Streams.** [`MAX_CONCURRENT_BIDI_STREAMS`] = 256 requests in flight per connection
//!   (hundreds of chunk requests from a scheduler), no unidirectional streams, no datagrams.
//!   Send fairness is off so a stream's chunks finish in order instead of all interleaving.
//! - **Upload slots.** A node serves [`UPLOAD_SLOTS`] = 8 chunk requests at once (to all peers
//!   together, up to 8 × 16 MiB on the wire) and answers "busy" to more, at once, so the asker
//!   turns to another holder. Without a cap, a chunk that one node has first (it is the one
//!   fetching it from the Hub) goes out to every node that wants it at once, each at a
//!   hundredth of the uplink, and nobody can pass it on until all have it; with the cap, a few
//!   get it at full speed and serve the rest (the scale model showed one node's uplink carrying
//!   a fifth of all bytes at 200 hosts without it).

use std::sync::Arc;
use std::time::Duration;

use quinn::congestion::CubicConfig;
use quinn::{IdleTimeout, MtuDiscoveryConfig, TransportConfig, VarInt};

/// The chunk size the windows are sized against.
pub const CHUNK_SIZE: u64 = crate::store::CHUNK_SIZE;
/// Receive window of one stream (bytes).
pub const STREAM_RECEIVE_WINDOW: u32 = 16 << 20;
/// Receive window of one connection, all streams together (bytes).
pub const CONNECTION_RECEIVE_WINDOW: u32 = 64 << 20;
/// Unacknowledged bytes one connection may have in flight.
pub const SEND_WINDOW: u64 = 64 << 20;
/// UDP payload size of the first packets, before MTU discovery.
pub const INITIAL_MTU: u16 = 1200;
/// Largest UDP payload MTU discovery probes for: a 9000-byte jumbo frame minus IPv6 + UDP headers.
pub const MTU_UPPER_BOUND: u16 = 9000 - 48;
/// Largest UDP payload MTU discovery probes for on loopback (MTU 65536).
pub const LOOPBACK_MTU_UPPER_BOUND: u16 = 65_000;
/// Largest UDP payload the endpoint accepts (the UDP maximum).
pub const MAX_UDP_PAYLOAD: u16 = 65_527;
/// Kernel send and receive buffer requested for the UDP socket (bytes).
pub const SOCKET_BUFFER: usize = 16 << 20;
/// Initial congestion window (bytes).
pub const INITIAL_WINDOW: u64 = 256 << 10;
/// RTT assumed before the first sample.
pub const INITIAL_RTT: Duration = Duration::from_millis(10);
/// Interval of keep-alive packets on an otherwise idle connection.
pub const KEEP_ALIVE: Duration = Duration::from_secs(5);
/// A connection silent this long is closed.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// Chunk requests served at once to all peers together; more are refused as busy.
pub const UPLOAD_SLOTS: usize = 8;
/// Requests (bidirectional streams) one peer may have open at once.
pub const MAX_CONCURRENT_BIDI_STREAMS: u32 = 256;

/// How long the first question about a blob waits for others to the same peer, so that they
/// travel as one `Ask` (a node's pulls refresh on a shared clock, so their questions come within
/// about a millisecond of each other).
pub const ASK_GATHER: Duration = Duration::from_millis(2);
/// How long a handshake may take.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// After a failed dial, how long a peer is not dialled again (doubled for each further failure
/// in a row, up to [`MAX_DIAL_BACKOFF`]); requests to it fail at once meanwhile.
pub const DIAL_BACKOFF: Duration = Duration::from_secs(1);
/// Longest time a peer whose dials keep failing is left alone.
pub const MAX_DIAL_BACKOFF: Duration = Duration::from_secs(30);
/// How long the hello exchange may take after the handshake.
pub const HELLO_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a server waits for a request frame on a stream, and a client for each response frame.
pub const FRAME_TIMEOUT: Duration = Duration::from_secs(30);
/// How long `shutdown` waits for in-flight uploads to finish.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
/// How long `shutdown` waits for connections to close cleanly after draining.
pub const WAIT_IDLE_TIMEOUT: Duration = Duration::from_secs(3);

/// The transport configuration of every connection (client and server side alike).
pub(crate) fn transport(loopback: bool) -> Arc<TransportConfig> {
    let mut t = TransportConfig::default();
    t.stream_receive_window(VarInt::from_u32(STREAM_RECEIVE_WINDOW))
        .receive_window(VarInt::from_u32(CONNECTION_RECEIVE_WINDOW))
        .send_window(SEND_WINDOW)
        .initial_mtu(INITIAL_MTU)
        .initial_rtt(INITIAL_RTT)
        .keep_alive_interval(Some(KEEP_ALIVE))
        .max_concurrent_bidi_streams(VarInt::from_u32(MAX_CONCURRENT_BIDI_STREAMS))
        .max_concurrent_uni_streams(VarInt::from_u32(0))
        .datagram_receive_buffer_size(None)
        .send_fairness(false);
    let idle = IdleTimeout::try_from(IDLE_TIMEOUT).expect("30 s is a valid QUIC idle timeout");
    t.max_idle_timeout(Some(idle));
    let mut mtu = MtuDiscoveryConfig::default();
    mtu.upper_bound(if loopback {
        LOOPBACK_MTU_UPPER_BOUND
    } else {
        MTU_UPPER_BOUND
    });
    t.mtu_discovery_config(Some(mtu));
    let mut cubic = CubicConfig::default();
    cubic.initial_window(INITIAL_WINDOW);
    t.congestion_controller_factory(Arc::new(cubic));
    Arc::new(t)
}
