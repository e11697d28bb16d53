//! Hashing: hfmesh's own paths (BLAKE3 per 4 MiB chunk, the SHA-256 etag of a whole file) against
//! what this CPU does in the same run (the blake3 crate over one large buffer, `openssl speed`,
//! `sha256sum`).

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use hfmesh::store::CHUNK_SIZE;

use crate::report::{best, mbps, Report, Value};
use crate::Settings;

/// Bytes hashed in memory per measurement.
const BUFFER: usize = 512 << 20;

fn buffer() -> Vec<u8> {
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    (0..BUFFER / 8)
        .flat_map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x.to_le_bytes()
        })
        .collect()
}

/// Best of `repeat` timings of `f` over `bytes`, in MB/s.
fn measure(repeat: usize, bytes: u64, mut f: impl FnMut()) -> (f64, String) {
    let samples: Vec<f64> = (0..repeat)
        .map(|_| {
            let t = Instant::now();
            f();
            mbps(bytes, t.elapsed())
        })
        .collect();
    best(&samples)
}

/// BLAKE3 per chunk as the pull verifies (`blake3::hash` of each 4 MiB chunk), on `threads`
/// threads each taking every `threads`-th chunk.
fn chunk_verify(data: &[u8], threads: usize) {
    std::thread::scope(|s| {
        for t in 0..threads {
            s.spawn(move || {
                for c in data.chunks(CHUNK_SIZE as usize).skip(t).step_by(threads) {
                    std::hint::black_box(blake3::hash(c));
                }
            });
        }
    });
}

/// The blake3 crate's best case: one hasher over one contiguous buffer per thread.
fn blake3_reference(data: &[u8], threads: usize) {
    std::thread::scope(|s| {
        for part in data.chunks(data.len().div_ceil(threads)) {
            s.spawn(move || std::hint::black_box(blake3::Hasher::new().update(part).finalize()));
        }
    });
}

/// `openssl speed -evp sha256` on 4 MiB blocks, in MB/s.
fn openssl_sha256() -> Option<f64> {
    let out = Command::new("openssl")
        .args([
            "speed", "-evp", "sha256", "-bytes", "4194304", "-seconds", "2",
        ])
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().rev().find(|l| l.starts_with("sha256"))?;
    let k: f64 = line
        .split_whitespace()
        .last()?
        .trim_end_matches('k')
        .parse()
        .ok()?;
    Some(k * 1000.0 / 1e6)
}

/// `sha256sum` of `file`, in MB/s.
fn sha256sum(file: &Path, size: u64) -> Option<f64> {
    let t = Instant::now();
    let ok = Command::new("sha256sum")
        .arg(file)
        .output()
        .ok()?
        .status
        .success();
    ok.then(|| mbps(size, t.elapsed()))
}

/// Runs the hashing rows; `blob` is a complete model file of `settings.size` bytes (in the page
/// cache after its own pull).
pub fn run(settings: &Settings, blob: &Path, report: &mut Report) {
    let data = buffer();
    let n = settings.repeat;
    let bytes = BUFFER as u64;
    let v = |what: &str, (value, _): (f64, String)| Value {
        what: what.into(),
        value,
        unit: "MB/s",
    };
    for threads in [1, 2] {
        let reference = measure(n, bytes, || blake3_reference(&data, threads));
        let ours = measure(n, bytes, || chunk_verify(&data, threads));
        report.add(
            "BLAKE3",
            v(&format!("chunk verify, {threads} thread(s)"), ours.clone()),
            Some(v(&format!("blake3 crate, {threads} thread(s)"), reference)),
            format!("in memory, 512 MiB; hfmesh {}", ours.1),
        );
    }
    let size = settings.size;
    let reference = measure(n, bytes, || blake3_reference(&data, 1));
    let ours = measure(n, size, || {
        hfmesh::mesh::pull::hash_chunks(blob, size).expect("the blob reads");
    });
    report.add(
        "BLAKE3",
        v("hash_chunks of a blob file", ours.clone()),
        Some(v("blake3 crate, 1 thread, in memory", reference)),
        format!("page-cached file; hfmesh {}", ours.1),
    );

    let etag = hfmesh::etag::sha256(b"only its kind matters");
    let ours = measure(n, size, || {
        hfmesh::store::hash_file(blob, &etag, size).expect("the blob reads");
    });
    let crate_mem = measure(n, bytes, || {
        let mut h = etag.hasher(bytes);
        h.update(&data);
        std::hint::black_box(h.finish());
    });
    let openssl = openssl_sha256();
    let file_ref: Vec<f64> = (0..n).filter_map(|_| sha256sum(blob, size)).collect();
    let mem_ref = openssl.map(|o| Value {
        what: "openssl speed -evp sha256, 4 MiB blocks".into(),
        value: o,
        unit: "MB/s",
    });
    report.add(
        "SHA-256",
        v("etag check (store::hash_file)", ours.clone()),
        (!file_ref.is_empty()).then(|| v("sha256sum of the same file", best(&file_ref))),
        format!("page-cached file; hfmesh {}", ours.1),
    );
    report.add(
        "SHA-256",
        v("sha2 crate in memory (EtagHasher)", crate_mem.clone()),
        mem_ref,
        format!("512 MiB; hfmesh {}", crate_mem.1),
    );
}
