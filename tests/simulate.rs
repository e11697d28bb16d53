//! The simulation harness end to end on a tiny scenario: real agents, the emulator, the
//! baseline, and a report whose figures come from the emulator's and agents' counters.

use std::time::Duration;

use hfmesh::sim::{self, run::Options, Scenario};

const TINY: &str = r#"
name = "ci-tiny"
seed = 1
timeout_secs = 40
[hub]
bandwidth = "8MB"
[[model]]
id = "sim/ci"
size = "6MiB"
files = 2
seed = 9
[[hosts]]
count = 3
zone = "z1"
racks = 2
upload = "30MB"
download = "30MB"
[[arrival]]
model = "sim/ci"
pattern = "staggered"
every_secs = 0.5
[targets]
hub_egress_ratio = 1.05
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tiny_scenario_runs_and_reports_from_real_counters() {
    let out = tempfile::tempdir().unwrap();
    let scenario = Scenario::parse(TINY).unwrap();
    let opts = Options {
        bin: env!("CARGO_BIN_EXE_hfmesh").into(),
        out: out.path().to_path_buf(),
        baseline: true,
        python: None,
        hf_check: "tests/python/hf_check.py".into(),
    };
    let report = tokio::time::timeout(
        Duration::from_secs(120),
        sim::simulate(&scenario, &opts, false),
    )
    .await
    .expect("the run is bounded")
    .expect("the run succeeds");
    sim::write(&report, out.path()).unwrap();

    let model = 6u64 << 20;
    assert_eq!(report.model_bytes, model);
    assert!(report.single_host_secs > 0.0);
    assert!(
        report.single_host_hub_bytes >= model,
        "one host took the model from the Hub"
    );

    let mesh = &report.mesh;
    assert_eq!((mesh.ready, mesh.expected), (3, 3), "{:#?}", mesh.hosts);
    assert!(!mesh.timed_out);
    assert!(mesh.all_ready_secs.is_some());
    assert_eq!(
        report.hub_egress_ratio,
        mesh.hub_bytes as f64 / model as f64,
        "the ratio is the emulator's counter over the model size"
    );
    assert!(
        mesh.hub_bytes >= model,
        "someone fetched the model from the Hub"
    );
    let from_peers: u64 = mesh.hosts.iter().map(|h| h.bytes_from_peers).sum();
    let served: u64 = mesh.hosts.iter().map(|h| h.bytes_served).sum();
    assert!(
        from_peers > 0 && served > 0,
        "peers moved bytes: {:#?}",
        mesh.hosts
    );
    assert!(!mesh.samples.is_empty());

    let baseline = report.baseline.as_ref().expect("the baseline ran");
    assert_eq!((baseline.ready, baseline.expected), (3, 3));
    assert!(
        baseline.hub_bytes >= 3 * model,
        "every baseline host took the whole model from the Hub: {}",
        baseline.hub_bytes
    );
    assert!(baseline.hub_bytes > mesh.hub_bytes);
    for h in &baseline.hosts {
        assert_eq!(
            (h.bytes_from_hub, h.bytes_from_peers),
            (model, 0),
            "{}: a baseline host's bytes come from its own pull's report",
            h.name
        );
    }
    assert_eq!(report.verdicts.len(), 1);
    assert_eq!(report.verdicts[0].met, report.hub_egress_ratio <= 1.05);

    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.path().join("report.json")).unwrap()).unwrap();
    assert_eq!(json["mesh"]["ready"], 3);
    assert!(json["baseline"]["hub_bytes"].as_u64().unwrap() >= 3 * model);
    let md = std::fs::read_to_string(out.path().join("report.md")).unwrap();
    assert!(md.contains("Hub egress ÷ model size"));
    for svg in ["ready-cdf.svg", "hub-bytes.svg", "served.svg"] {
        let s = std::fs::read_to_string(out.path().join(svg)).unwrap();
        assert!(s.starts_with("<svg"), "{svg}");
    }
    assert!(!out.path().join("work/mesh").exists(), "caches removed");
}
