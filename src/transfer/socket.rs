//! The endpoint's UDP socket: large kernel buffers, and sends that never exceed what one
//! `sendmsg` may carry.
//!
//! Quinn builds a segmentation-offload (GSO) batch of up to 10 datagrams of the path MTU and
//! hands it to the kernel in one `sendmsg`. Linux refuses a UDP send of more than 65 535 bytes
//! of IP datagram (65 507 bytes of UDP payload over IPv4) with `EMSGSIZE`, GSO or not, and
//! quinn-udp drops a transmit that fails with `EMSGSIZE` without a word (it expects that error
//! only from MTU probes). So once MTU discovery climbs above 6 550 bytes, every batch of ten is
//! lost: on loopback (MTU up to 65 000) and on jumbo-frame fabrics (10 × 8 952 bytes). The losses
//! look like an MTU black hole, quinn falls back to 1 200-byte packets for a minute, and the
//! direction that carries the chunks runs on the smallest packets there are.
//! [`SplitSends`] cuts such a batch into sends of at most [`MAX_SEND_BYTES`] each.

use std::fmt;
use std::io::{self, IoSliceMut};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use quinn::udp::{RecvMeta, Transmit};
use quinn::{AsyncUdpSocket, UdpPoller};

use super::config;

/// Most UDP payload bytes one `sendmsg` may carry, segmentation offload included: 65 535 bytes of
/// IPv4 datagram minus 20 bytes of IP and 8 of UDP header (IPv6 allows 20 more; the IPv4 limit
/// holds for both, and for IPv4-mapped addresses on a dual-stack socket).
pub const MAX_SEND_BYTES: usize = 65_535 - 20 - 8;

/// A UDP socket on `addr` with [`config::SOCKET_BUFFER`]-sized kernel buffers (the kernel caps
/// them at `net.core.rmem_max` / `wmem_max`; the sizes it granted are logged).
pub(crate) fn udp_socket(addr: SocketAddr) -> io::Result<std::net::UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if addr.is_ipv6() {
        socket.set_only_v6(false)?;
    }
    // Failing to enlarge a buffer costs speed, not correctness.
    let _ = socket.set_recv_buffer_size(config::SOCKET_BUFFER);
    let _ = socket.set_send_buffer_size(config::SOCKET_BUFFER);
    tracing::debug!(
        recv = socket.recv_buffer_size().unwrap_or(0),
        send = socket.send_buffer_size().unwrap_or(0),
        "transfer socket buffers"
    );
    socket.bind(&addr.into())?;
    Ok(socket.into())
}

/// Wraps a runtime's socket so that no send exceeds [`MAX_SEND_BYTES`] (see the module docs);
/// everything else is passed through.
pub(crate) struct SplitSends(pub(crate) Arc<dyn AsyncUdpSocket>);

impl fmt::Debug for SplitSends {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("SplitSends").field(&self.0).finish()
    }
}

/// The pieces `transmit` is sent in: consecutive runs of whole segments, each at most
/// [`MAX_SEND_BYTES`] long (one piece when it fits, or when it is a single datagram).
pub(crate) fn pieces(len: usize, segment_size: Option<usize>) -> Vec<std::ops::Range<usize>> {
    let segment = match segment_size {
        Some(s) if s > 0 && len > MAX_SEND_BYTES && len > s => s,
        _ => return std::iter::once(0..len).collect(),
    };
    let step = (MAX_SEND_BYTES / segment).max(1) * segment;
    (0..len)
        .step_by(step)
        .map(|start| start..(start + step).min(len))
        .collect()
}

impl AsyncUdpSocket for SplitSends {
    fn create_io_poller(self: Arc<Self>) -> Pin<Box<dyn UdpPoller>> {
        self.0.clone().create_io_poller()
    }

    fn try_send(&self, transmit: &Transmit) -> io::Result<()> {
        let pieces = pieces(transmit.contents.len(), transmit.segment_size);
        if pieces.len() == 1 {
            return self.0.try_send(transmit);
        }
        let segment = transmit.segment_size.unwrap_or(transmit.contents.len());
        for range in pieces {
            let len = range.len();
            let piece = Transmit {
                destination: transmit.destination,
                ecn: transmit.ecn,
                contents: &transmit.contents[range],
                segment_size: (len > segment).then_some(segment),
                src_ip: transmit.src_ip,
            };
            // A `WouldBlock` after some pieces went out makes quinn send the whole batch again
            // later; the receiver discards the duplicate packets. Dropping the rest instead would
            // look like congestion.
            self.0.try_send(&piece)?;
        }
        Ok(())
    }

    fn poll_recv(
        &self,
        cx: &mut Context,
        bufs: &mut [IoSliceMut<'_>],
        meta: &mut [RecvMeta],
    ) -> Poll<io::Result<usize>> {
        self.0.poll_recv(cx, bufs, meta)
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.0.local_addr()
    }

    fn max_transmit_segments(&self) -> usize {
        self.0.max_transmit_segments()
    }

    fn max_receive_segments(&self) -> usize {
        self.0.max_receive_segments()
    }

    fn may_fragment(&self) -> bool {
        self.0.may_fragment()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_are_cut_into_sends_the_kernel_accepts() {
        // Small batches, single datagrams and unsegmented sends pass as they are.
        assert_eq!(pieces(12_000, Some(1_200)), vec![0..12_000]);
        assert_eq!(pieces(65_000, None), vec![0..65_000]);
        assert_eq!(pieces(65_000, Some(65_000)), vec![0..65_000]);
        // Ten jumbo datagrams: 7 + 3.
        let jumbo = pieces(10 * 8_952 - 100, Some(8_952));
        assert_eq!(jumbo, vec![0..7 * 8_952, 7 * 8_952..10 * 8_952 - 100]);
        // Ten loopback-sized datagrams (the last one short): one per send.
        let big = pieces(9 * 65_000 + 10, Some(65_000));
        assert_eq!(big.len(), 10);
        assert_eq!(big[9], 9 * 65_000..9 * 65_000 + 10);
        for r in jumbo.iter().chain(&big) {
            assert!(r.len() <= MAX_SEND_BYTES);
        }
    }
}
