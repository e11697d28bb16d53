//! Packet protection: every chunk byte is sealed by the serving agent and opened by the pulling
//! one (QUIC packet protection, AES-128-GCM). hfmesh's record layer uses aws-lc-rs's suite
//! (`src/transfer/tls.rs`); the baseline is ring's, which the handshake uses, on the same
//! packets in the same run.

use std::time::Instant;

use rustls::quic::{Keys, Version};
use rustls::{Side, SupportedCipherSuite};

use crate::report::{best, mbps, Report, Value};
use crate::Settings;

/// Bytes sealed per measurement.
const BYTES: usize = 512 << 20;
/// Payload per packet: the path MTU on loopback (on a jumbo-frame fabric, 8952).
const PACKET: usize = 65_000;

/// Best of `repeat` timings of sealing [`BYTES`] in [`PACKET`]-byte packets with `suite`'s QUIC
/// packet key, in MB/s.
fn seal(suite: SupportedCipherSuite, repeat: usize) -> (f64, String) {
    let SupportedCipherSuite::Tls13(tls13) = suite else {
        unreachable!("a TLS 1.3 suite")
    };
    let quic = tls13.quic.expect("the suite supports QUIC");
    let keys = Keys::initial(Version::V1, tls13, quic, b"hfmesh bench", Side::Client);
    let mut payload = vec![0x5au8; PACKET];
    let header = [0x40u8; 20];
    let samples: Vec<f64> = (0..repeat)
        .map(|_| {
            let t = Instant::now();
            for n in 0..(BYTES / PACKET) as u64 {
                let tag = keys
                    .local
                    .packet
                    .encrypt_in_place(n, &header, &mut payload)
                    .expect("the packet seals");
                std::hint::black_box(tag);
            }
            mbps((BYTES / PACKET * PACKET) as u64, t.elapsed())
        })
        .collect();
    best(&samples)
}

/// The packet-sealing row.
pub fn run(settings: &Settings, report: &mut Report) {
    let ours = seal(
        rustls::crypto::aws_lc_rs::cipher_suite::TLS13_AES_128_GCM_SHA256,
        settings.repeat,
    );
    let ring = seal(
        rustls::crypto::ring::cipher_suite::TLS13_AES_128_GCM_SHA256,
        settings.repeat,
    );
    let v = |what: &str, value: f64| Value {
        what: what.into(),
        value,
        unit: "MB/s",
    };
    report.add(
        "Packet sealing",
        v(
            "AES-128-GCM QUIC packet key, aws-lc-rs (hfmesh's record layer)",
            ours.0,
        ),
        Some(v("the same with ring", ring.0)),
        format!(
            "one core, {PACKET}-byte packets, 512 MiB; hfmesh {}; ring {}",
            ours.1, ring.1
        ),
    );
}
