use super::*;

const BASE: &str = r#"
name = "t"
seed = 3
timeout_secs = 60
[hub]
bandwidth = "10MB"
[[model]]
id = "sim/m"
size = "8MiB"
files = 2
[[hosts]]
count = 4
zone = "z1"
racks = 2
upload = "50MB"
download = "50MB"
"#;

fn with(extra: &str) -> Result<Scenario, ScenarioError> {
    Scenario::parse(&format!("{BASE}{extra}"))
}

fn err(extra: &str) -> String {
    with(extra).unwrap_err().0
}

const ALL: &str = "[[arrival]]\nmodel = \"sim/m\"\npattern = \"all-at-once\"\n";

#[test]
fn a_storm_expands_hosts_and_asks() {
    let s = with(ALL).unwrap();
    assert_eq!(s.hosts.len(), 4);
    assert_eq!(s.hosts[3].name, "h03");
    assert_eq!(s.hosts[3].rack, "z1-r1");
    assert_eq!(s.hosts[0].upload, 50_000_000);
    assert_eq!(s.hub_bandwidth, 10_000_000);
    assert_eq!(s.models[0].size, 8 << 20);
    assert_eq!(s.asks.len(), 4);
    assert!(s.asks.iter().all(|a| a.at_secs == 0.0));
}

#[test]
fn staggered_and_poisson_arrivals() {
    let s = with("[[arrival]]\nmodel = \"sim/m\"\nhosts = [1, 2]\npattern = \"staggered\"\nat_secs = 1\nevery_secs = 2\n").unwrap();
    let times: Vec<_> = s.asks.iter().map(|a| (a.host, a.at_secs)).collect();
    assert_eq!(times, vec![(1, 1.0), (2, 3.0)]);
    let p = "[[arrival]]\nmodel = \"sim/m\"\npattern = \"poisson\"\nrate_per_sec = 2\n";
    let a = with(p).unwrap();
    let b = with(p).unwrap();
    assert_eq!(a.asks, b.asks, "the same seed gives the same arrivals");
    let t: Vec<f64> = a.asks.iter().map(|x| x.at_secs).collect();
    assert!(t.windows(2).all(|w| w[0] <= w[1]) && t[0] > 0.0);
    let other = Scenario::parse(&format!("{}{p}", BASE.replace("seed = 3", "seed = 4"))).unwrap();
    assert_ne!(a.asks, other.asks, "another seed gives other arrivals");
}

#[test]
fn poisson_gaps_average_the_rate() {
    let pattern = Pattern::Poisson {
        at_secs: 0.0,
        rate_per_sec: 4.0,
    };
    let t = arrival_times(&pattern, 4000, 9).unwrap();
    let mean_gap = t.last().unwrap() / 4000.0;
    assert!((mean_gap - 0.25).abs() < 0.02, "mean gap {mean_gap}");
}

#[test]
fn faults_parse_and_sort() {
    let s = with(&format!(
        "{ALL}[[fault]]\nat_secs = 5\nkind = \"restart\"\nhost = 2\n[[fault]]\nat_secs = 2\nkind = \"kill\"\nhost = 2\n[[fault]]\nat_secs = 1\nkind = \"hub-429\"\nduration_secs = 3\n"
    ))
    .unwrap();
    let kinds: Vec<_> = s.faults.iter().map(|f| f.kind.clone()).collect();
    assert_eq!(
        kinds,
        vec![
            FaultKind::Hub429 { duration_secs: 3.0 },
            FaultKind::Kill { host: 2 },
            FaultKind::Restart { host: 2 }
        ]
    );
}

#[test]
fn mistakes_are_one_clear_sentence() {
    let cases = [
        (
            "[[arrival]]\nmodel = \"sim/x\"\npattern = \"all-at-once\"\n",
            "no [[model]] declares",
        ),
        (
            "[[arrival]]\nmodel = \"sim/m\"\nhosts = [9]\npattern = \"all-at-once\"\n",
            "there are 4 hosts",
        ),
        (
            &format!("{ALL}[[fault]]\nat_secs = 1\nkind = \"kill\"\nhost = 7\n"),
            "there are 4 hosts",
        ),
        (
            &format!("{ALL}[[fault]]\nat_secs = -1\nkind = \"kill\"\nhost = 1\n"),
            "0 or more",
        ),
        (
            &format!("{ALL}[[fault]]\nat_secs = 1\nkind = \"partition\"\n"),
            "needs `zones`",
        ),
        (
            &format!("{ALL}[[fault]]\nat_secs = 1\nkind = \"explode\"\n"),
            "is unknown; use kill",
        ),
        (
            &format!("{ALL}[[fault]]\nat_secs = 1\nkind = \"kill\"\n"),
            "needs `host`",
        ),
        (
            "[[arrival]]\nmodel = \"sim/m\"\npattern = \"staggered\"\n",
            "needs `every_secs`",
        ),
        (
            "[[arrival]]\nmodel = \"sim/m\"\npattern = \"burst\"\n",
            "use all-at-once",
        ),
        (
            "[[arrival]]\nmodel = \"sim/m\"\npattern = \"poisson\"\nrate_per_sec = 0\n",
            "more than 0",
        ),
        ("", "at least one [[arrival]]"),
        (&format!("{ALL}colour = \"red\"\n"), "not valid"),
    ];
    for (extra, want) in cases {
        let e = err(extra);
        assert!(e.contains(want), "{extra:?}: {e}");
        assert!(!e.contains('\n'), "one line: {e:?}");
    }
    let e = Scenario::parse(&BASE.replace("\"10MB\"", "\"fast\""))
        .unwrap_err()
        .0;
    assert!(e.contains("hub.bandwidth"), "{e}");
    let e = Scenario::parse(&BASE.replace("[hub]", "[hub]\nthrottle_429 = 1.5"))
        .unwrap_err()
        .0;
    assert!(e.contains("throttle_429"), "{e}");
    let s = Scenario::parse(&format!(
        "{}{ALL}",
        BASE.replace("[hub]", "[hub]\nthrottle_429 = 0.1")
    ))
    .unwrap();
    assert_eq!(s.hub_throttle_429, 0.1);
    let e = Scenario::parse(&BASE.replace("count = 4", "count = 0"))
        .unwrap_err()
        .0;
    assert!(e.contains("at least 1"), "{e}");
    let e = Scenario::parse(&BASE.replace("files = 2", "files = 0"))
        .unwrap_err()
        .0;
    assert!(e.contains("1 to 256 files"), "{e}");
    let e = Scenario::parse(&BASE.replace("timeout_secs = 60", "timeout_secs = 0"))
        .unwrap_err()
        .0;
    assert!(e.contains("timeout_secs"), "{e}");
}

const TWO_ZONES: &str =
    "[[hosts]]\ncount = 2\nzone = \"z2\"\nupload = \"5MB\"\ndownload = \"5MB\"\n";

fn netns(extra: &str) -> Result<Scenario, ScenarioError> {
    let base = BASE.replace(
        "timeout_secs = 60",
        "timeout_secs = 60\nnetwork = \"netns\"",
    );
    Scenario::parse(&format!("{base}{TWO_ZONES}{ALL}{extra}"))
}

#[test]
fn the_network_and_partitions_parse() {
    assert_eq!(with(ALL).unwrap().network, Network::Loopback, "the default");
    let s = netns("[[fault]]\nat_secs = 4\nkind = \"partition\"\nzones = [\"z2\", \"z1\"]\nduration_secs = 6\n").unwrap();
    assert_eq!(s.network, Network::Netns);
    assert_eq!(s.zones(), ["z1", "z2"]);
    assert_eq!(
        s.faults[0].kind,
        FaultKind::Partition {
            zones: vec!["z2".into(), "z1".into()],
            duration_secs: Some(6.0)
        }
    );
    let s =
        netns("[[fault]]\nat_secs = 0\nkind = \"partition\"\nzones = [\"z1\", \"z2\"]\n").unwrap();
    assert!(
        matches!(
            &s.faults[0].kind,
            FaultKind::Partition {
                duration_secs: None,
                ..
            }
        ),
        "no duration: until the phase ends"
    );
    let cut = "[[fault]]\nat_secs = 0\nkind = \"partition\"\nzones = [\"z1\", \"z2\"]\n";
    let e = Scenario::parse(&format!("{BASE}{TWO_ZONES}{ALL}{cut}"))
        .unwrap_err()
        .0;
    assert!(e.contains("need `network = \"netns\"`"), "on loopback: {e}");
    let e = s.clone().with_network(Network::Loopback).unwrap_err().0;
    assert!(e.contains("need `network = \"netns\"`"), "{e}");
    assert_eq!(
        s.with_network(Network::Netns).unwrap().network,
        Network::Netns
    );
}

#[test]
fn network_and_partition_mistakes_are_one_sentence() {
    let cases = [
        ("[[fault]]\nat_secs = 1\nkind = \"partition\"\nzones = [\"z1\", \"z9\"]\n", "zone \"z9\", which no [[hosts]] group has"),
        ("[[fault]]\nat_secs = 1\nkind = \"partition\"\nzones = [\"z1\"]\n", "two or more different zones"),
        ("[[fault]]\nat_secs = 1\nkind = \"partition\"\nzones = [\"z1\", \"z1\"]\n", "two or more different zones"),
        ("[[fault]]\nat_secs = 1\nkind = \"partition\"\nzones = [\"z1\", \"z2\"]\nduration_secs = -2\n", "0 or more"),
    ];
    for (extra, want) in cases {
        let e = netns(extra).unwrap_err().0;
        assert!(e.contains(want), "{extra:?}: {e}");
        assert!(!e.contains('\n'), "one line: {e:?}");
    }
    let e = Scenario::parse(&format!(
        "{}{ALL}",
        BASE.replace("timeout_secs = 60", "timeout_secs = 60\nnetwork = \"wifi\"")
    ))
    .unwrap_err()
    .0;
    assert!(e.contains("loopback") && e.contains("netns"), "{e}");
}

#[test]
fn the_shipped_scenarios_parse() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("simulations/scenarios");
    let mut n = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        Scenario::parse(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        n += 1;
    }
    assert!(n >= 3, "{n} scenarios");
}
