use super::params::RackFailure;
use super::*;

/// 16 hosts, 1 GB/s links, a 100 MB/s Hub, a 400 MiB model in 2 files of 4 MiB chunks.
fn small() -> ScaleParams {
    ScaleParams {
        hosts: 16,
        zones: 2,
        racks_per_zone: 2,
        link_bytes_per_sec: 1e9,
        hub_bytes_per_sec: 1e8,
        model_bytes: 400 << 20,
        files: 2,
        chunk_bytes: 4 << 20,
        time_limit_secs: 600.0,
        ..ScaleParams::default()
    }
}

/// 64 hosts in 8 racks, 800 MiB in 4 files, otherwise [`small`].
fn crowd() -> ScaleParams {
    ScaleParams {
        hosts: 64,
        racks_per_zone: 4,
        model_bytes: 800 << 20,
        files: 4,
        ..small()
    }
}

#[test]
fn one_host_takes_the_model_at_the_hub_rate() {
    let p = ScaleParams {
        hosts: 1,
        ..small()
    };
    let r = run(&p, true);
    assert_eq!((r.ready, r.alive), (1, 1));
    // Its first Hub request waits out the gather window and one more refresh, as in the mesh.
    let ideal = p.model_bytes as f64 / p.hub_bytes_per_sec;
    let wait = p.gather_secs + p.refresh_secs;
    let t = r.all_ready_secs().unwrap();
    assert!(
        t >= ideal + p.gather_secs && t < ideal * 1.05 + wait,
        "{t} s vs {ideal} s"
    );
    assert!((r.hub_egress_ratio() - 1.0).abs() < 1e-9);
}

#[test]
fn a_storm_through_the_mesh_takes_the_model_from_the_hub_about_once() {
    let c = ScaleComparison::run(&small());
    let single = c.single.all_ready_secs().unwrap();
    let mesh = c.mesh.all_ready_secs().expect("every host ready");
    assert!(
        c.mesh.hub_egress_ratio() <= 1.05,
        "{}",
        c.mesh.hub_egress_ratio()
    );
    assert!(mesh <= 1.3 * single, "{mesh} s vs one host {single} s");
    // Without the mesh every host takes the whole model from the Hub, sharing its bandwidth.
    let hub_only = c.hub_only.all_ready_secs().unwrap();
    assert!((c.hub_only.hub_egress_ratio() - 16.0).abs() < 1e-6);
    assert!(hub_only > 15.0 * single, "{hub_only} s");
    assert!(
        c.markdown().contains("| mesh | 16 / 16 |"),
        "{}",
        c.markdown()
    );
}

#[test]
fn the_survivors_of_a_dead_rack_all_finish() {
    let p = ScaleParams {
        failure: Some(RackFailure {
            at_secs: 2.0,
            rack: "z0-r0".into(),
        }),
        ..small()
    };
    let r = run(&p, true);
    assert_eq!(r.alive, 12, "a quarter of the hosts were in that rack");
    assert_eq!(r.ready, 12, "{r:?}");
    assert!(r.hub_egress_ratio() < 1.5, "{}", r.hub_egress_ratio());
}

#[test]
fn staggered_and_poisson_arrivals_are_seeded_and_spread() {
    let st = ScaleParams {
        arrival: Arrival::Staggered { over_secs: 10.0 },
        ..small()
    };
    let times = st.arrival_times();
    assert_eq!((times[0], times[15]), (0.0, 10.0));
    let po = ScaleParams {
        arrival: Arrival::Poisson { per_sec: 2.0 },
        ..small()
    };
    assert_eq!(po.arrival_times(), po.arrival_times());
    let last = *po.arrival_times().last().unwrap();
    assert!(last > 2.0 && last < 30.0, "{last}");
    let r = run(&po, true);
    assert_eq!(r.ready, 16);
}

#[test]
fn scenarios_parse_with_defaults_and_clear_errors() {
    let p = ScaleParams::from_toml(
        "hosts = 5000\nmodel_bytes = 1_000_000_000\n[arrival]\nkind = \"poisson\"\nper_sec = 100.0\n",
    )
    .unwrap();
    assert_eq!(p.hosts, 5000);
    assert_eq!(p.providers_per_key, 20);
    assert_eq!(p.arrival, Arrival::Poisson { per_sec: 100.0 });
    let e = ScaleParams::from_toml("hosts = 0\n").unwrap_err();
    assert_eq!(e, "`hosts` must be a positive number");
    let e = ScaleParams::from_toml("hostz = 3\n").unwrap_err();
    assert!(e.contains("unknown field `hostz`"), "{e}");
}

#[test]
fn a_real_run_scenario_becomes_the_same_model() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/simulations/scenarios/storm-16.toml"
    ))
    .unwrap();
    let s = crate::sim::scenario::Scenario::parse(&text).unwrap();
    let p = ScaleParams::from_scenario(&s).unwrap();
    assert_eq!((p.hosts, p.zones, p.racks_per_zone, p.files), (16, 1, 4, 4));
    assert_eq!(p.model_bytes, 128 << 20);
    assert_eq!(p.hub_bytes_per_sec, s.hub_bandwidth as f64);
    assert_eq!(p.link_bytes_per_sec, 40e6);
    assert_eq!(
        p.arrival,
        Arrival::Times {
            at_secs: vec![0.0; 16]
        }
    );
    let faults = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/simulations/scenarios/faults-8.toml"
    ))
    .unwrap();
    let err = ScaleParams::from_scenario(&crate::sim::scenario::Scenario::parse(&faults).unwrap())
        .unwrap_err();
    assert!(err.contains("faults"), "{err}");
    let bad = ScaleParams {
        hosts: 2,
        arrival: Arrival::Times { at_secs: vec![0.0] },
        ..ScaleParams::default()
    };
    assert!(bad.validate().unwrap_err().contains("1 times for 2 hosts"));
}

#[test]
fn upload_slots_spread_the_serving_over_many_hosts() {
    // 64 hosts on links ten times the Hub: without a cap, the host that takes a chunk from the
    // Hub first serves it to everyone at once and carries a large share of all bytes.
    let p = crowd();
    let capped = run(&p, true);
    let unlimited = run(
        &ScaleParams {
            upload_slots: 0,
            ..p.clone()
        },
        true,
    );
    for r in [&capped, &unlimited] {
        assert_eq!(r.ready, 64, "{r:?}");
        assert!(r.hub_egress_ratio() <= 1.05, "{}", r.hub_egress_ratio());
    }
    assert!(
        capped.served_max * 2.0 < unlimited.served_max,
        "most served by one host: {} with slots, {} without",
        capped.served_max,
        unlimited.served_max
    );
    let (with, without) = (
        capped.all_ready_secs().unwrap(),
        unlimited.all_ready_secs().unwrap(),
    );
    assert!(
        with < without,
        "all ready after {with} s with slots, {without} s without"
    );
}

#[test]
fn peer_exchange_lets_hosts_the_dht_does_not_list_serve_each_other() {
    // The DHT lists 4 providers per file: without peer exchange only those 4 serve the other 60.
    let p = ScaleParams {
        providers_per_key: 4,
        ..crowd()
    };
    let exchanged = run(&p, true);
    let listed_only = run(
        &ScaleParams {
            peer_exchange: 0,
            ..p.clone()
        },
        true,
    );
    for r in [&listed_only, &exchanged] {
        assert_eq!(r.ready, 64, "{r:?}");
        assert!(r.hub_egress_ratio() <= 1.05, "{}", r.hub_egress_ratio());
    }
    let (with, without) = (
        exchanged.all_ready_secs().unwrap(),
        listed_only.all_ready_secs().unwrap(),
    );
    assert!(
        with * 1.5 < without,
        "all ready after {with} s with peer exchange, {without} s without"
    );
    assert!(
        exchanged.served_max * 2.0 < listed_only.served_max,
        "most served by one host: {} with peer exchange, {} without",
        exchanged.served_max,
        listed_only.served_max
    );
}
