use std::collections::HashMap;
use std::path::Path;

use super::*;

const SECRET: &str = "0123456789abcdef0123456789abcdef";

/// A temp dir holding a cluster secret file, with flags pointing at it and a state dir in it.
struct Fixture {
    dir: tempfile::TempDir,
    flags: Flags,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("secret"), SECRET).unwrap();
    let flags = Flags {
        cluster_secret_file: Some(dir.path().join("secret")),
        state_dir: Some(dir.path().join("state")),
        ..Flags::default()
    };
    Fixture { dir, flags }
}

fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
    let map: HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    move |k| map.get(k).cloned()
}

fn no_env(_: &str) -> Option<String> {
    None
}

fn file(text: &str) -> Option<FileConfig> {
    Some(FileConfig::parse(text, Path::new("agent.toml")).unwrap())
}

fn err(flags: &Flags, f: Option<FileConfig>, env: &dyn Fn(&str) -> Option<String>) -> String {
    Config::resolve(flags, f, env).unwrap_err().to_string()
}

#[test]
fn defaults() {
    let fx = fixture();
    let env = env_of(&[("HOME", "/home/u")]);
    let flags = Flags {
        state_dir: None,
        ..fx.flags.clone()
    };
    let env_home = fx.dir.path().join("hf").to_string_lossy().to_string();
    let env_hf = env_of(&[("HF_HOME", &env_home)]);
    let c = Config::resolve(&flags, None, &env_hf).unwrap();
    assert_eq!(c.node.state_dir, fx.dir.path().join("hf/hfmesh"));
    assert_eq!(c.node.cache_dir, fx.dir.path().join("hf/hub"));
    assert_eq!(c.control_socket, fx.dir.path().join("hf/hfmesh/agent.sock"));
    let c = Config::resolve(&fx.flags, None, &env).unwrap();
    assert_eq!(
        c.node.cache_dir,
        Path::new("/home/u/.cache/huggingface/hub")
    );
    assert_eq!(c.node.p2p_listen.to_string(), DEFAULT_P2P_LISTEN);
    assert_eq!(c.node.quic_listen.to_string(), DEFAULT_QUIC_LISTEN);
    assert_eq!(
        c.metrics_listen.map(|a| a.to_string()).as_deref(),
        Some(DEFAULT_METRICS_LISTEN)
    );
    assert_eq!(c.node.hub.endpoint.as_str(), "https://huggingface.co/");
    assert_eq!(c.node.provider_ttl, DEFAULT_PROVIDER_TTL);
    assert!(!c.node.mdns);
    assert!(c.direct_io, "O_DIRECT writes by default");
    assert!(c.node.bootstrap.is_empty());
    assert_eq!(c.node.topology.zone, None);
    assert_eq!(c.quota, None);
    assert!(c.preload.is_empty());
    assert_eq!(c.hf_user, None);
}

#[test]
fn flag_beats_file_beats_hf_conventions() {
    let fx = fixture();
    let d = fx.dir.path();
    let hf = d.join("hf").to_string_lossy().to_string();
    let env = env_of(&[
        ("HF_HOME", &hf),
        ("HF_HUB_CACHE", "/hf/hub-cache"),
        ("HF_ENDPOINT", "http://hf-env.example"),
        ("HF_TOKEN", "hf_env"),
    ]);
    let text = r#"
        cache_dir = "/file/hub"
        endpoint = "http://file.example"
        zone = "file-zone"
        rack = "file-rack"
        p2p_listen = "127.0.0.1:5001"
        bootstrap = ["10.0.0.1:4001"]
        mdns = true
        direct_io = false
        metrics_listen = "off"
        provider_ttl = "10m"
    "#;
    // HF conventions over defaults.
    let c = Config::resolve(&fx.flags, None, &env).unwrap();
    assert_eq!(c.node.cache_dir, Path::new("/hf/hub-cache"));
    assert_eq!(c.node.hub.endpoint.host_str(), Some("hf-env.example"));
    assert_eq!(c.node.hub.token.as_deref(), Some("hf_env"));
    // The file over the conventions.
    let c = Config::resolve(&fx.flags, file(text), &env).unwrap();
    assert_eq!(c.node.cache_dir, Path::new("/file/hub"));
    assert_eq!(c.node.hub.endpoint.host_str(), Some("file.example"));
    assert_eq!(c.node.topology.zone.as_deref(), Some("file-zone"));
    assert_eq!(c.node.p2p_listen.to_string(), "127.0.0.1:5001");
    assert_eq!(c.node.bootstrap.len(), 1);
    assert!(c.node.mdns);
    assert!(!c.direct_io);
    assert_eq!(c.metrics_listen, None);
    assert_eq!(c.node.provider_ttl, Duration::from_secs(600));
    // Flags over the file.
    let flags = Flags {
        cache_dir: Some("/flag/hub".into()),
        endpoint: Some("http://flag.example".into()),
        zone: Some("flag-zone".into()),
        p2p_listen: Some("127.0.0.1:6001".into()),
        bootstrap: vec!["10.0.0.2:4001".into(), "10.0.0.3:4001".into()],
        mdns: Some(false),
        direct_io: Some(true),
        metrics_listen: Some("127.0.0.1:9999".into()),
        provider_ttl: Some("30s".into()),
        ..fx.flags.clone()
    };
    let c = Config::resolve(&flags, file(text), &env).unwrap();
    assert_eq!(c.node.cache_dir, Path::new("/flag/hub"));
    assert_eq!(c.node.hub.endpoint.host_str(), Some("flag.example"));
    assert_eq!(c.node.topology.zone.as_deref(), Some("flag-zone"));
    assert_eq!(c.node.topology.rack.as_deref(), Some("file-rack"));
    assert_eq!(c.node.p2p_listen.to_string(), "127.0.0.1:6001");
    assert_eq!(
        c.node.bootstrap.len(),
        2,
        "the flag's list replaces the file's"
    );
    assert!(!c.node.mdns);
    assert!(c.direct_io);
    assert_eq!(c.metrics_listen.unwrap().port(), 9999);
    assert_eq!(c.node.provider_ttl, Duration::from_secs(30));
}

#[test]
fn token_file_beats_hf_token() {
    let fx = fixture();
    let d = fx.dir.path();
    std::fs::write(d.join("file-token"), "hf_file\n").unwrap();
    std::fs::write(d.join("flag-token"), " hf_flag\r\n").unwrap();
    let env = env_of(&[
        ("HF_TOKEN", "hf_env"),
        ("RUNPOD_HUGGINGFACE_TOKEN", "hf_rp"),
    ]);
    let text = format!("token_file = {:?}", d.join("file-token"));
    let c = Config::resolve(&fx.flags, file(&text), &env).unwrap();
    assert_eq!(c.node.hub.token.as_deref(), Some("hf_file"));
    let flags = Flags {
        token_file: Some(d.join("flag-token")),
        ..fx.flags.clone()
    };
    let c = Config::resolve(&flags, file(&text), &env).unwrap();
    assert_eq!(c.node.hub.token.as_deref(), Some("hf_flag"));
    let runpod = env_of(&[("RUNPOD_HUGGINGFACE_TOKEN", "hf_rp")]);
    let c = Config::resolve(&fx.flags, None, &runpod).unwrap();
    assert_eq!(c.node.hub.token.as_deref(), Some("hf_rp"));
}

#[test]
fn cluster_secret_precedence() {
    let fx = fixture();
    let d = fx.dir.path();
    std::fs::write(d.join("short"), "short\n").unwrap();
    let short_file = format!("cluster_secret_file = {:?}", d.join("short"));
    let env = env_of(&[(CLUSTER_SECRET_VAR, "tiny")]);
    // Flag file beats HFMESH_CLUSTER_SECRET beats the file's key.
    assert!(Config::resolve(&fx.flags, file(&short_file), &env).is_ok());
    let no_flag = Flags {
        cluster_secret_file: None,
        ..fx.flags.clone()
    };
    let e = err(&no_flag, file(&short_file), &env);
    assert!(e.contains("from HFMESH_CLUSTER_SECRET is too short"), "{e}");
    let e = err(&no_flag, file(&short_file), &no_env);
    assert!(
        e.contains("short is too short") && e.contains("16 bytes"),
        "{e}"
    );
    let good = env_of(&[(CLUSTER_SECRET_VAR, SECRET)]);
    assert!(Config::resolve(&no_flag, None, &good).is_ok());
}

#[test]
fn missing_and_unreadable_secret() {
    let fx = fixture();
    let no_flag = Flags {
        cluster_secret_file: None,
        ..fx.flags.clone()
    };
    assert_eq!(
        err(&no_flag, None, &no_env),
        "no cluster secret: set `cluster_secret_file` in the config file, --cluster-secret-file \
         (HFMESH_CLUSTER_SECRET_FILE), or HFMESH_CLUSTER_SECRET"
    );
    let gone = Flags {
        cluster_secret_file: Some(fx.dir.path().join("gone")),
        ..fx.flags.clone()
    };
    let e = err(&gone, None, &no_env);
    assert!(
        e.starts_with("cannot read `cluster_secret_file` (--cluster-secret-file, HFMESH_CLUSTER_SECRET_FILE) "),
        "{e}"
    );
    assert!(e.contains("gone"), "{e}");
}

#[test]
fn unreadable_and_empty_token_file() {
    let fx = fixture();
    let flags = Flags {
        token_file: Some(fx.dir.path().join("nope")),
        ..fx.flags.clone()
    };
    let e = err(&flags, None, &no_env);
    assert!(
        e.starts_with("cannot read `token_file` (--token-file"),
        "{e}"
    );
    std::fs::write(fx.dir.path().join("empty"), "\n").unwrap();
    let flags = Flags {
        token_file: Some(fx.dir.path().join("empty")),
        ..fx.flags.clone()
    };
    assert!(err(&flags, None, &no_env).contains("is empty"));
}

#[test]
fn unusable_state_dir() {
    let fx = fixture();
    let flags = Flags {
        state_dir: Some(fx.dir.path().join("secret")), // a file, not a directory
        ..fx.flags.clone()
    };
    let e = err(&flags, None, &no_env);
    assert!(e.starts_with("cannot load or create the node key"), "{e}");
    assert!(e.contains("`state_dir` must be writable"), "{e}");
}

#[test]
fn bad_values_name_their_key() {
    let fx = fixture();
    let cases: &[(&str, &str)] = &[
        (
            "p2p_listen = \"0.0.0.0\"",
            "`p2p_listen` (--p2p-listen, HFMESH_P2P_LISTEN) = \"0.0.0.0\" is not an address like 0.0.0.0:4001 (IP:PORT: the port is missing)",
        ),
        (
            "quic_listen = \"node-1:4002\"",
            "`quic_listen` (--quic-listen, HFMESH_QUIC_LISTEN) = \"node-1:4002\" is not an address like 0.0.0.0:4001 (IP:PORT; host names are not resolved)",
        ),
        ("bootstrap = [\"10.0.0.1:4001\", \"x\"]", "`bootstrap` (--bootstrap, HFMESH_BOOTSTRAP) = \"x\""),
        ("metrics_listen = \"on\"", "`metrics_listen` (--metrics-listen, HFMESH_METRICS_LISTEN) = \"on\""),
        (
            "endpoint = \"ftp://x\"",
            "`endpoint` (--endpoint, HFMESH_ENDPOINT) = \"ftp://x\" is not an http(s) URL like https://huggingface.co",
        ),
        (
            "provider_ttl = \"1 hour\"",
            "`provider_ttl` (--provider-ttl, HFMESH_PROVIDER_TTL) = \"1 hour\" is not a duration: expected a whole number with s, m, h or d, like 30s, 10m or 1h",
        ),
        (
            "[cache]\nmax_size = \"500 gigs\"",
            "`cache.max_size` (--max-cache-size, HFMESH_MAX_CACHE_SIZE) = \"500 gigs\" is not a size: expected bytes or a number with KB/MB/GB/TB/KiB/MiB/GiB/TiB, like 500GiB",
        ),
        (
            "[cache]\nhigh_watermark = 1.5",
            "`cache.high_watermark` = 1.5 must be a fraction above 0 and at most 1, like 0.9",
        ),
        (
            "[cache]\nlow_watermark = 0",
            "`cache.low_watermark` = 0 must be a fraction above 0 and at most 1, like 0.9",
        ),
        (
            "[cache]\nhigh_watermark = 0.5\nlow_watermark = 0.7",
            "`cache.low_watermark` (0.7) must be below `cache.high_watermark` (0.5)",
        ),
        (
            "[cache]\nhigh_watermark = 0.8",
            "`cache.low_watermark` (0.8) must be below `cache.high_watermark` (0.8)",
        ),
        (
            "[preload]\nmodels = [\"ok/model\", \"acme/fine:main, bad id:main\"]",
            "bad preload entry \"bad id:main\" in `preload.models`: repository id `bad id` is invalid",
        ),
    ];
    for (text, want) in cases {
        let e = err(&fx.flags, file(text), &no_env);
        assert!(e.starts_with(want), "{text}:\n got {e}\nwant {want}");
    }
    let flags = Flags {
        max_cache_size: Some("0".into()),
        ..fx.flags.clone()
    };
    assert!(err(&flags, None, &no_env).contains("more than 0 bytes"));
    let env = env_of(&[("RUNPOD_HUGGINGFACE_DATASET", "acme/ok,,:main")]);
    let e = err(&fx.flags, None, &env);
    assert!(
        e.starts_with("bad preload entry \":main\" in RUNPOD_HUGGINGFACE_DATASET:"),
        "{e}"
    );
}

#[test]
fn quota() {
    let fx = fixture();
    let text = "[cache]\nmax_size = \"500GiB\"\nhigh_watermark = 0.95\n";
    let c = Config::resolve(&fx.flags, file(text), &no_env).unwrap();
    assert_eq!(
        c.quota,
        Some(Quota {
            max_bytes: 500 << 30,
            high_watermark: 0.95,
            low_watermark: DEFAULT_LOW_WATERMARK,
        })
    );
    let flags = Flags {
        max_cache_size: Some("1TB".into()),
        ..fx.flags.clone()
    };
    let c = Config::resolve(&flags, file(text), &no_env).unwrap();
    assert_eq!(c.quota.unwrap().max_bytes, 1_000_000_000_000);
    let c = Config::resolve(&fx.flags, file("[cache]\nmax_size = 4096"), &no_env).unwrap();
    assert_eq!(c.quota.unwrap().max_bytes, 4096);
}

#[test]
fn preload_is_the_deduplicated_union() {
    let fx = fixture();
    let text = "[preload]\nmodels = [\"acme/a\", \"acme/b:dev\"]\ndatasets = [\"acme/d\"]";
    let flags = Flags {
        models: vec!["acme/b:dev, acme/c".into()],
        datasets: vec!["acme/a".into()],
        ..fx.flags.clone()
    };
    let env = env_of(&[
        ("RUNPOD_HUGGINGFACE_MODEL", "acme/a:main, acme/e:v1"),
        ("RUNPOD_HUGGINGFACE_DATASET", "acme/d"),
        ("RUNPOD_HUGGINGFACE_USER", "alice"),
    ]);
    let c = Config::resolve(&flags, file(text), &env).unwrap();
    let got: Vec<String> = c.preload.iter().map(|r| r.to_string()).collect();
    assert_eq!(
        got,
        [
            "acme/a:main",
            "acme/b:dev",
            "dataset acme/d:main",
            "acme/c:main",
            "dataset acme/a:main",
            "acme/e:v1",
        ]
    );
    assert_eq!(c.hf_user.as_deref(), Some("alice"));
}

#[test]
fn empty_labels_are_no_labels() {
    let fx = fixture();
    let c = Config::resolve(&fx.flags, file("zone = \"\"\nrack = \" \""), &no_env).unwrap();
    assert_eq!(c.node.topology.zone, None);
    assert_eq!(c.node.topology.rack, None);
}

#[test]
fn flags_parse_like_before() {
    use clap::Parser;
    #[derive(Parser)]
    struct T {
        #[command(flatten)]
        f: Flags,
    }
    let t = T::try_parse_from([
        "t",
        "--bootstrap",
        "10.0.0.1:4001,10.0.0.2:4001",
        "--model",
        "acme/a",
        "--model",
        "acme/b:dev",
        "--dataset",
        "acme/d",
        "--mdns",
        "--zone",
        "z",
    ])
    .unwrap();
    assert_eq!(t.f.bootstrap.len(), 2);
    assert_eq!(t.f.models, ["acme/a", "acme/b:dev"]);
    assert_eq!(t.f.mdns, Some(true));
    let t = T::try_parse_from(["t", "--mdns=false"]).unwrap();
    assert_eq!(t.f.mdns, Some(false));
    let t = T::try_parse_from(["t", "--direct-io=false"]).unwrap();
    assert_eq!(t.f.direct_io, Some(false));
}
