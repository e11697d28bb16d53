//! The simulation harness with `network = "netns"` end to end: four hosts in two zones, each agent
//! and the hub emulator in a network namespace of their own on htb-shaped veth links, and a
//! partition that cuts zone z2 (one host) off from z1 for the first 10 s. The z2 host asks while
//! cut off: it must take nothing from its peers until the cut heals, and every tree must end
//! complete. The runner must remove every namespace and device it made. Needs root and iproute2;
//! `HFMESH_SKIP_NETNS_TESTS=1` skips it (CI never sets it).

use std::path::{Path, PathBuf};
use std::time::Duration;

use hfmesh::sim::{self, run::Options, Scenario};

const PARTITIONED: &str = r#"
name = "ci-partition"
seed = 2
timeout_secs = 40
network = "netns"
[hub]
bandwidth = "4MB"
[[model]]
id = "sim/cut"
size = "6MiB"
files = 2
seed = 9
[[hosts]]
count = 3
zone = "z1"
racks = 2
upload = "20MB"
download = "20MB"
[[hosts]]
count = 1
zone = "z2"
upload = "20MB"
download = "20MB"
[[arrival]]
model = "sim/cut"
hosts = [0, 1, 2]
pattern = "all-at-once"
[[arrival]]
model = "sim/cut"
hosts = [3]
pattern = "all-at-once"
at_secs = 2
[[fault]]
at_secs = 0
kind = "partition"
zones = ["z1", "z2"]
duration_secs = 10
"#;

fn python() -> Option<PathBuf> {
    std::env::var_os("HFMESH_TEST_PYTHON")
        .map(PathBuf::from)
        .or_else(|| Some(Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python")))
        .filter(|p| p.exists())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_zone_partition_in_network_namespaces_cuts_peers_and_heals() {
    if std::env::var_os("HFMESH_SKIP_NETNS_TESTS").is_some_and(|v| v == "1") {
        eprintln!("skipped: HFMESH_SKIP_NETNS_TESTS=1");
        return;
    }
    let out = tempfile::tempdir().unwrap();
    let scenario = Scenario::parse(PARTITIONED).unwrap();
    let python = python();
    let opts = Options {
        bin: env!("CARGO_BIN_EXE_hfmesh").into(),
        out: out.path().to_path_buf(),
        baseline: false,
        python: python.clone(),
        hf_check: Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/hf_check.py"),
    };
    let report = tokio::time::timeout(
        Duration::from_secs(90),
        sim::simulate(&scenario, &opts, false),
    )
    .await
    .expect("the run is bounded")
    .expect("the run succeeds (this test needs root and iproute2)");
    assert!(
        sim::netns::leftovers(std::process::id()).is_empty(),
        "the runner removed its namespaces and devices: {:?}",
        sim::netns::leftovers(std::process::id())
    );
    sim::write(&report, out.path()).unwrap();
    let md = std::fs::read_to_string(out.path().join("report.md")).unwrap();
    assert!(md.contains("Network: **netns**"), "{md}");
    assert!(md.contains("## Partitions (mesh)"), "{md}");

    let model = 6u64 << 20;
    let mesh = &report.mesh;
    assert_eq!(report.network, "netns");
    assert_eq!((mesh.ready, mesh.expected), (4, 4), "{:#?}", mesh.hosts);
    assert!(!mesh.timed_out);
    if python.is_some() {
        assert_eq!(mesh.trees_ok, Some((4, 4)), "{:#?}", mesh.hosts);
    }

    let [cut] = mesh.partitions.as_slice() else {
        panic!("one partition: {:?}", mesh.partitions)
    };
    assert_eq!(cut.zones, ["z1", "z2"]);
    assert_eq!(cut.error, None);
    let healed = cut.until_secs.expect("healed after its duration");
    assert!(
        (9.5..12.0).contains(&healed),
        "healed at {healed}, 10 s after it began at {}",
        cut.from_secs
    );

    // The cut-off host took no byte from a peer while the cut was in force…
    let h03 = &mesh.hosts[3];
    assert_eq!(h03.zone, "z2");
    for s in mesh.samples.iter().filter(|s| s.t < healed - 0.5) {
        assert_eq!(
            s.from_peers[3], 0,
            "h03 took bytes from peers at {:.1} s, inside the partition",
            s.t
        );
    }
    // …and still got the whole model, from the Hub or from z1 once healed.
    assert!(
        h03.bytes_from_peers + h03.bytes_from_hub >= model,
        "{h03:#?}"
    );
    // Someone took the model from the Hub, and no host more than its one copy.
    assert!(mesh.hub_bytes >= model && mesh.hub_bytes <= 4 * model + (1 << 20));
}
