//! The hub emulator over loopback: a folder repo with the reference hashes, `hub.toml` features
//! (branches, tags, PR refs, gated, private, synthetic), pagination, ranges, errors, faults,
//! counters and the CLI.

use std::path::Path;
use std::time::{Duration, Instant};

use hfmesh::emulator::{Emulator, EmulatorConfig, ErrorRule, Faults, Stats, Truncate};
use reqwest::header::HeaderMap;
use reqwest::{Client, StatusCode};
use serde_json::Value;

const CONFIG: &[u8] = b"{\"a\": 1}\n";
const CONFIG_OID: &str = "cb5b2f69babc53f9145b45ad20b9a075d48717ef";
const ZEROS_SHA: &str = "30e14955ebf1352266dc2ff8067e68104607e750abb9d3b36582b8af909fcb58";
const ZEROS_POINTER_OID: &str = "9bf2820abd0acc86f31fc02ce312debf25384d12";

const HUB_TOML: &str = r#"
page_size = 2

[[repo]]
id = "acme/gated"
gated = "manual"
tokens = ["hf_alice"]
[[repo.branch]]
name = "main"
dir = "models/acme/example"

[[repo]]
id = "acme/private"
private = true
tokens = ["hf_bob"]

[[repo]]
id = "gpt2"
[[repo.branch]]
name = "main"
tags = ["v1.0"]
[[repo.branch]]
name = "refs/pr/1"
dir = "models/gpt2"
[[repo.branch.synthetic]]
path = "pr-only.bin"
size = 100
seed = 5

[[repo]]
id = "acme/huge"
[[repo.branch]]
name = "main"
[[repo.branch.synthetic]]
path = "huge.safetensors"
size = 300000000000
seed = 99
sha256 = "abababababababababababababababababababababababababababababababab"

[[repo]]
id = "acme/synth"
kind = "dataset"
[[repo.branch]]
name = "main"
[[repo.branch.synthetic]]
path = "big.bin"
size = 3145733
seed = 11
[[repo.branch.synthetic]]
path = "notes.txt"
size = 100
seed = 1
[[repo.branch.synthetic]]
path = "four.safetensors"
size = 4194304
seed = 4
"#;

/// A root with the reference repo `acme/example`, an org-less `gpt2` and `hub.toml`.
fn fixture() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let ex = dir.path().join("models/acme/example");
    std::fs::create_dir_all(ex.join("a/b")).unwrap();
    std::fs::write(ex.join("config.json"), CONFIG).unwrap();
    std::fs::write(ex.join("model.safetensors"), vec![0u8; 1 << 20]).unwrap();
    std::fs::write(ex.join("a/b/c.json"), "{}\n").unwrap();
    std::fs::write(ex.join("a/d.txt"), "d\n").unwrap();
    std::fs::write(ex.join("a/b/with space#1.txt"), "odd name\n").unwrap();
    let gpt2 = dir.path().join("models/gpt2");
    std::fs::create_dir_all(&gpt2).unwrap();
    std::fs::write(gpt2.join("config.json"), "{\"n_layer\": 12}\n").unwrap();
    std::fs::write(dir.path().join("hub.toml"), HUB_TOML).unwrap();
    dir
}

async fn start(root: &Path) -> Emulator {
    let config = EmulatorConfig {
        root: Some(root.to_path_buf()),
        ..Default::default()
    };
    Emulator::start(config).await.unwrap()
}

fn client() -> Client {
    Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

async fn get(
    url: &str,
    token: Option<&str>,
    range: Option<&str>,
) -> (StatusCode, HeaderMap, Vec<u8>) {
    let mut req = client().get(url);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(r) = range {
        req = req.header("range", r);
    }
    let resp = req.send().await.unwrap();
    let (status, headers) = (resp.status(), resp.headers().clone());
    (status, headers, resp.bytes().await.unwrap().to_vec())
}

async fn head(url: &str, token: Option<&str>) -> (StatusCode, HeaderMap) {
    let mut req = client().head(url);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await.unwrap();
    (resp.status(), resp.headers().clone())
}

async fn json(url: &str, token: Option<&str>) -> (StatusCode, HeaderMap, Value) {
    let (status, headers, body) = get(url, token, None).await;
    (status, headers, serde_json::from_slice(&body).unwrap())
}

fn h<'a>(headers: &'a HeaderMap, name: &str) -> &'a str {
    headers.get(name).map(|v| v.to_str().unwrap()).unwrap_or("")
}

#[tokio::test]
async fn folder_repo_info_with_blobs_has_reference_hashes() {
    let root = fixture();
    let emu = start(root.path()).await;
    let (status, _, info) = json(
        &format!(
            "{}/api/models/acme/example/revision/main?blobs=true",
            emu.url()
        ),
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(info["id"], "acme/example");
    assert_eq!(info["modelId"], "acme/example");
    assert_eq!(info["author"], "acme");
    assert_eq!(info["gated"], false);
    let sha = info["sha"].as_str().unwrap();
    assert!(
        sha.len() == 40
            && sha
                .bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    );
    let siblings = info["siblings"].as_array().unwrap();
    let names: Vec<&str> = siblings
        .iter()
        .map(|s| s["rfilename"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "a/b/c.json",
            "a/b/with space#1.txt",
            "a/d.txt",
            "config.json",
            "model.safetensors"
        ]
    );
    let config = &siblings[3];
    assert_eq!(config["blobId"], CONFIG_OID);
    assert_eq!(config["size"], 9);
    assert!(config.get("lfs").is_none());
    let model = &siblings[4];
    assert_eq!(model["blobId"], ZEROS_POINTER_OID);
    assert_eq!(model["size"], 1 << 20);
    assert_eq!(model["lfs"]["sha256"], ZEROS_SHA);
    assert_eq!(model["lfs"]["pointerSize"], 132);
    // Without a revision, and without blobs.
    let (_, _, plain) = json(&format!("{}/api/models/acme/example", emu.url()), None).await;
    assert_eq!(plain["sha"], sha);
    assert!(plain["siblings"][3].get("blobId").is_none());
    // The commit id is stable across restarts.
    let again = start(root.path()).await;
    let (_, _, info2) = json(
        &format!("{}/api/models/acme/example/revision/main", again.url()),
        None,
    )
    .await;
    assert_eq!(info2["sha"], sha);
    emu.shutdown().await;
    again.shutdown().await;
}

#[tokio::test]
async fn resolve_serves_regular_files_and_redirects_lfs_to_the_cdn() {
    let root = fixture();
    let emu = start(root.path()).await;
    let (_, _, info) = json(
        &format!("{}/api/models/acme/example/revision/main", emu.url()),
        None,
    )
    .await;
    let sha = info["sha"].as_str().unwrap().to_string();
    let url = format!("{}/acme/example/resolve/main/config.json", emu.url());
    let (status, headers) = head(&url, None).await;
    assert_eq!(status, 200);
    assert_eq!(h(&headers, "x-repo-commit"), sha);
    assert_eq!(h(&headers, "etag"), format!("\"{CONFIG_OID}\""));
    assert_eq!(h(&headers, "content-length"), "9");
    assert_eq!(h(&headers, "accept-ranges"), "bytes");
    let (status, _, body) = get(&url, None, None).await;
    assert_eq!((status, body.as_slice()), (StatusCode::OK, CONFIG));
    // By commit id too, and a path that needs percent-encoding.
    let odd = format!(
        "{}/acme/example/resolve/{sha}/a/b/with%20space%231.txt",
        emu.url()
    );
    assert_eq!(get(&odd, None, None).await.2, b"odd name\n");

    let (status, headers) = head(
        &format!("{}/acme/example/resolve/main/model.safetensors", emu.url()),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::FOUND);
    assert_eq!(h(&headers, "x-repo-commit"), sha);
    assert_eq!(h(&headers, "x-linked-etag"), format!("\"{ZEROS_SHA}\""));
    assert_eq!(h(&headers, "x-linked-size"), "1048576");
    assert_eq!(h(&headers, "etag"), format!("\"{ZEROS_POINTER_OID}\""));
    let location = h(&headers, "location").to_string();
    assert_eq!(location, format!("{}/cdn/{ZEROS_SHA}", emu.cdn_url()));
    assert_ne!(emu.cdn_url(), emu.url(), "the CDN must be another origin");
    let (status, headers, body) = get(&location, None, None).await;
    assert_eq!(status, 200);
    assert_eq!(h(&headers, "etag"), format!("\"{ZEROS_SHA}\""));
    assert_eq!(body, vec![0u8; 1 << 20]);
    let (status, headers) = head(&location, None).await;
    assert_eq!(
        (status, h(&headers, "content-length")),
        (StatusCode::OK, "1048576")
    );
    let (status, _, _) = get(
        &format!("{}/cdn/{}", emu.cdn_url(), "0".repeat(64)),
        None,
        None,
    )
    .await;
    assert_eq!(status, 404);
    emu.shutdown().await;
}

#[tokio::test]
async fn tree_pages_follow_link_headers_to_the_end() {
    let root = fixture();
    let emu = start(root.path()).await;
    let mut url = format!(
        "{}/api/models/acme/example/tree/main?recursive=true&expand=false",
        emu.url()
    );
    let mut paths = Vec::new();
    let mut pages = 0;
    loop {
        let (status, headers, page) = json(&url, None).await;
        assert_eq!(status, 200);
        pages += 1;
        for e in page.as_array().unwrap() {
            assert!(e["oid"].is_string(), "{e}");
            assert!(e.get("xetHash").is_none());
            if e["path"] == "model.safetensors" {
                assert_eq!(e["oid"], ZEROS_POINTER_OID);
                assert_eq!(e["lfs"]["oid"], ZEROS_SHA);
                assert_eq!(e["lfs"]["pointerSize"], 132);
                assert_eq!(e["size"], 1 << 20);
            }
            paths.push(format!(
                "{}:{}",
                e["type"].as_str().unwrap(),
                e["path"].as_str().unwrap()
            ));
        }
        let link = h(&headers, "link");
        if link.is_empty() {
            break;
        }
        assert!(link.ends_with("; rel=\"next\""), "{link}");
        url = link
            .trim_start_matches('<')
            .split('>')
            .next()
            .unwrap()
            .to_string();
        assert!(
            url.starts_with("http://")
                && url.contains("recursive=true")
                && url.contains("expand=false"),
            "{url}"
        );
        assert!(pages < 10);
    }
    assert_eq!(pages, 4);
    assert_eq!(
        paths,
        [
            "directory:a",
            "directory:a/b",
            "file:a/b/c.json",
            "file:a/b/with space#1.txt",
            "file:a/d.txt",
            "file:config.json",
            "file:model.safetensors"
        ]
    );
    emu.shutdown().await;
}

#[tokio::test]
async fn tree_lists_a_nested_dir_without_recursion_and_404s_a_missing_one() {
    let root = fixture();
    let emu = start(root.path()).await;
    let (status, _, page) = json(
        &format!(
            "{}/api/models/acme/example/tree/main/a?recursive=false",
            emu.url()
        ),
        None,
    )
    .await;
    assert_eq!(status, 200);
    let page = page.as_array().unwrap();
    assert_eq!(page.len(), 2);
    assert_eq!(
        (page[0]["type"].as_str(), page[0]["path"].as_str()),
        (Some("directory"), Some("a/b"))
    );
    assert_eq!(page[0]["oid"].as_str().unwrap().len(), 40);
    assert_eq!(
        (page[1]["type"].as_str(), page[1]["path"].as_str()),
        (Some("file"), Some("a/d.txt"))
    );
    let (_, _, deeper) = json(
        &format!("{}/api/models/acme/example/tree/main/a%2Fb", emu.url()),
        None,
    )
    .await;
    assert_eq!(deeper.as_array().unwrap().len(), 2);
    let (status, headers, body) = json(
        &format!("{}/api/models/acme/example/tree/main/nope", emu.url()),
        None,
    )
    .await;
    assert_eq!(status, 404);
    assert_eq!(h(&headers, "x-error-code"), "EntryNotFound");
    assert_eq!(h(&headers, "x-repo-commit").len(), 40);
    assert!(body["error"].is_string());
    emu.shutdown().await;
}

#[tokio::test]
async fn ranges_on_the_hub_and_the_cdn() {
    let root = fixture();
    let emu = start(root.path()).await;
    let url = format!("{}/acme/example/resolve/main/config.json", emu.url());
    for (range, want, content_range) in [
        ("bytes=0-3", &CONFIG[0..4], "bytes 0-3/9"),
        ("bytes=5-", &CONFIG[5..], "bytes 5-8/9"),
        ("bytes=-2", &CONFIG[7..], "bytes 7-8/9"),
        ("bytes=8-100", &CONFIG[8..], "bytes 8-8/9"),
    ] {
        let (status, headers, body) = get(&url, None, Some(range)).await;
        assert_eq!(status, StatusCode::PARTIAL_CONTENT, "{range}");
        assert_eq!(h(&headers, "content-range"), content_range);
        assert_eq!(body, want, "{range}");
    }
    let (status, headers, _) = get(&url, None, Some("bytes=9-")).await;
    assert_eq!(status, StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(h(&headers, "content-range"), "bytes */9");
    let cdn = format!("{}/cdn/{ZEROS_SHA}", emu.cdn_url());
    let (status, headers, body) = get(&cdn, None, Some("bytes=1048570-")).await;
    assert_eq!(
        (status, h(&headers, "content-range")),
        (StatusCode::PARTIAL_CONTENT, "bytes 1048570-1048575/1048576")
    );
    assert_eq!(body, [0u8; 6]);
    assert_eq!(
        get(&cdn, None, Some("bytes=1048576-")).await.0,
        StatusCode::RANGE_NOT_SATISFIABLE
    );
    emu.shutdown().await;
}

#[tokio::test]
async fn error_codes_for_missing_repos_revisions_and_entries() {
    let root = fixture();
    let emu = start(root.path()).await;
    let u = emu.url();
    let (status, headers, body) =
        json(&format!("{u}/api/models/acme/missing/revision/main"), None).await;
    assert_eq!(
        (status, h(&headers, "x-error-code")),
        (StatusCode::UNAUTHORIZED, "RepoNotFound")
    );
    assert!(body["error"].is_string());
    let (status, headers, _) = json(&format!("{u}/api/models/acme/missing"), Some("hf_x")).await;
    assert_eq!(
        (status, h(&headers, "x-error-code")),
        (StatusCode::NOT_FOUND, "RepoNotFound")
    );
    let (status, headers) = head(&format!("{u}/acme/missing/resolve/main/config.json"), None).await;
    assert_eq!(
        (status, h(&headers, "x-error-code")),
        (StatusCode::UNAUTHORIZED, "RepoNotFound")
    );
    // A model id asked as a dataset does not exist.
    let (status, _, _) = json(&format!("{u}/api/datasets/acme/example"), Some("hf_x")).await;
    assert_eq!(status, 404);
    let (status, headers, body) =
        json(&format!("{u}/api/models/acme/example/revision/nope"), None).await;
    assert_eq!(
        (status, h(&headers, "x-error-code")),
        (StatusCode::NOT_FOUND, "RevisionNotFound")
    );
    assert_eq!(body["error"], "Invalid rev id: nope");
    let (status, headers) = head(&format!("{u}/acme/example/resolve/nope/config.json"), None).await;
    assert_eq!(
        (status, h(&headers, "x-error-code")),
        (StatusCode::NOT_FOUND, "RevisionNotFound")
    );
    let (_, _, info) = json(&format!("{u}/api/models/acme/example"), None).await;
    let (status, headers) =
        head(&format!("{u}/acme/example/resolve/main/missing.json"), None).await;
    assert_eq!(
        (status, h(&headers, "x-error-code")),
        (StatusCode::NOT_FOUND, "EntryNotFound")
    );
    assert_eq!(h(&headers, "x-repo-commit"), info["sha"].as_str().unwrap());
    // Traversal attempts are just missing entries.
    let (status, _) = head(
        &format!("{u}/acme/example/resolve/main/..%2F..%2Fhub.toml"),
        None,
    )
    .await;
    assert_eq!(status, 404);
    let (status, _, _) = get(&format!("{u}/api/agent-harnesses"), None, None).await;
    assert_eq!(status, 404);
    let (status, _, _) = get(&format!("{u}/no/such/route"), None, None).await;
    assert_eq!(status, 404);
    emu.shutdown().await;
}

#[tokio::test]
async fn gated_repos_show_metadata_but_guard_downloads() {
    let root = fixture();
    let emu = start(root.path()).await;
    let u = emu.url();
    let (status, _, info) = json(&format!("{u}/api/models/acme/gated/revision/main"), None).await;
    assert_eq!(
        (status, info["gated"].as_str()),
        (StatusCode::OK, Some("manual"))
    );
    let (status, _, _) = json(
        &format!("{u}/api/models/acme/gated/tree/main?recursive=true"),
        None,
    )
    .await;
    assert_eq!(status, 200);
    let file = format!("{u}/acme/gated/resolve/main/config.json");
    let (status, headers) = head(&file, None).await;
    assert_eq!(
        (status, h(&headers, "x-error-code")),
        (StatusCode::UNAUTHORIZED, "GatedRepo")
    );
    let (status, headers) = head(&file, Some("hf_mallory")).await;
    assert_eq!(
        (status, h(&headers, "x-error-code")),
        (StatusCode::FORBIDDEN, "GatedRepo")
    );
    let (status, _, body) = get(&file, Some("hf_alice"), None).await;
    assert_eq!((status, body.as_slice()), (StatusCode::OK, CONFIG));
    let (status, _) = head(
        &format!("{u}/acme/gated/resolve/main/model.safetensors"),
        Some("hf_alice"),
    )
    .await;
    assert_eq!(status, StatusCode::FOUND);
    emu.shutdown().await;
}

#[tokio::test]
async fn private_repos_are_invisible_without_a_listed_token() {
    let root = fixture();
    let emu = start(root.path()).await;
    let info = format!("{}/api/models/acme/private", emu.url());
    let (status, headers, _) = json(&info, None).await;
    assert_eq!(
        (status, h(&headers, "x-error-code")),
        (StatusCode::UNAUTHORIZED, "RepoNotFound")
    );
    let (status, headers, _) = json(&info, Some("hf_alice")).await;
    assert_eq!(
        (status, h(&headers, "x-error-code")),
        (StatusCode::NOT_FOUND, "RepoNotFound")
    );
    let (status, _, body) = json(&info, Some("hf_bob")).await;
    assert_eq!(
        (status, body["private"].as_bool()),
        (StatusCode::OK, Some(true))
    );
    emu.shutdown().await;
}

#[tokio::test]
async fn branches_tags_and_pr_refs_of_an_org_less_repo() {
    let root = fixture();
    let emu = start(root.path()).await;
    let u = emu.url();
    let (_, _, main) = json(&format!("{u}/api/models/gpt2/revision/main"), None).await;
    let (_, _, tag) = json(&format!("{u}/api/models/gpt2/revision/v1.0"), None).await;
    let (status, _, pr) = json(&format!("{u}/api/models/gpt2/revision/refs%2Fpr%2F1"), None).await;
    assert_eq!(status, 200);
    assert_eq!(main["id"], "gpt2");
    assert_eq!(main["sha"], tag["sha"]);
    assert_ne!(main["sha"], pr["sha"]);
    let names = |v: &Value| {
        v["siblings"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["rfilename"].to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        names(&main),
        ["\"config.json\""],
        "main comes from the plain folder models/gpt2"
    );
    assert_eq!(names(&pr), ["\"config.json\"", "\"pr-only.bin\""]);
    let (status, headers) =
        head(&format!("{u}/gpt2/resolve/refs%2Fpr%2F1/pr-only.bin"), None).await;
    assert_eq!(status, StatusCode::FOUND, "a .bin file is LFS");
    assert_eq!(h(&headers, "x-repo-commit"), pr["sha"].as_str().unwrap());
    let (status, _) = head(&format!("{u}/gpt2/resolve/main/pr-only.bin"), None).await;
    assert_eq!(status, 404);
    let pr_sha = pr["sha"].as_str().unwrap();
    let (status, _, tree) = json(
        &format!("{u}/api/models/gpt2/tree/{pr_sha}?recursive=true"),
        None,
    )
    .await;
    assert_eq!(
        (status, tree.as_array().unwrap().len()),
        (StatusCode::OK, 2)
    );
    emu.shutdown().await;
}

#[tokio::test]
async fn synthetic_content_is_stable_and_random_access() {
    let root = fixture();
    let (a, b) = (start(root.path()).await, start(root.path()).await);
    let info_url = |e: &Emulator| {
        format!(
            "{}/api/datasets/acme/synth/revision/main?blobs=true",
            e.url()
        )
    };
    let (_, _, ia) = json(&info_url(&a), None).await;
    let (_, _, ib) = json(&info_url(&b), None).await;
    assert_eq!(ia, ib);
    assert!(ia.get("modelId").is_none());
    let big = &ia["siblings"][0];
    assert_eq!(
        (big["rfilename"].as_str(), big["size"].as_u64()),
        (Some("big.bin"), Some(3145733))
    );
    let sha = big["lfs"]["sha256"].as_str().unwrap();
    let notes = &ia["siblings"][2];
    assert_eq!(notes["rfilename"], "notes.txt");
    assert!(notes.get("lfs").is_none(), "small text files are not LFS");
    // Full content from one emulator, slices from the other.
    let (_, headers) = head(
        &format!("{}/datasets/acme/synth/resolve/main/big.bin", a.url()),
        None,
    )
    .await;
    let (status, _, full) = get(h(&headers, "location"), None, None).await;
    assert_eq!((status, full.len()), (StatusCode::OK, 3145733));
    assert_eq!(hfmesh::etag::sha256(&full).as_str(), sha);
    for (start, end) in [
        (0usize, 0usize),
        (1, 8),
        (12345, 200_000),
        (3145700, 3145732),
    ] {
        let range = format!("bytes={start}-{end}");
        let (status, _, part) =
            get(&format!("{}/cdn/{sha}", b.cdn_url()), None, Some(&range)).await;
        assert_eq!(status, StatusCode::PARTIAL_CONTENT);
        assert_eq!(part, full[start..=end], "{range}");
    }
    let (_, headers, notes_body) = get(
        &format!("{}/datasets/acme/synth/resolve/main/notes.txt", b.url()),
        None,
        None,
    )
    .await;
    assert_eq!(notes_body.len(), 100);
    assert_eq!(
        h(&headers, "etag"),
        format!("\"{}\"", hfmesh::etag::git_blob_id(&notes_body))
    );
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test]
async fn huge_pinned_synthetic_files_cost_nothing_up_front() {
    let root = fixture();
    let emu = start(root.path()).await;
    let pinned = "ab".repeat(32);
    let (status, _, info) = json(
        &format!(
            "{}/api/models/acme/huge/revision/main?blobs=true",
            emu.url()
        ),
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(info["siblings"][0]["lfs"]["sha256"], pinned);
    assert_eq!(info["siblings"][0]["size"], 300_000_000_000u64);
    let (status, headers) = head(
        &format!("{}/acme/huge/resolve/main/huge.safetensors", emu.url()),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::FOUND);
    assert_eq!(h(&headers, "x-linked-size"), "300000000000");
    let cdn = h(&headers, "location").to_string();
    let (status, headers, tail) = get(&cdn, None, Some("bytes=-16")).await;
    assert_eq!(status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(
        h(&headers, "content-range"),
        "bytes 299999999984-299999999999/300000000000"
    );
    let (_, _, overlap) = get(&cdn, None, Some("bytes=299999999980-299999999991")).await;
    assert_eq!(overlap[4..], tail[..8]);
    let (status, headers) = head(&cdn, None).await;
    assert_eq!(
        (status, h(&headers, "content-length")),
        (StatusCode::OK, "300000000000")
    );
    emu.shutdown().await;
}

async fn stats_over_http(emu: &Emulator) -> Stats {
    let (_, _, body) = get(&format!("{}/_emulator/stats", emu.url()), None, None).await;
    serde_json::from_slice(&body).unwrap()
}

#[tokio::test]
async fn stats_count_requests_and_bytes() {
    let root = fixture();
    let emu = start(root.path()).await;
    let u = emu.url();
    json(&format!("{u}/api/models/acme/example/revision/main"), None).await;
    json(&format!("{u}/api/models/acme/example/tree/main"), None).await;
    head(&format!("{u}/acme/example/resolve/main/config.json"), None).await;
    get(
        &format!("{u}/acme/example/resolve/main/config.json"),
        None,
        None,
    )
    .await;
    get(
        &format!("{u}/acme/example/resolve/main/config.json"),
        None,
        Some("bytes=0-1"),
    )
    .await;
    get(&format!("{}/cdn/{ZEROS_SHA}", emu.cdn_url()), None, None).await;
    head(&format!("{}/cdn/{ZEROS_SHA}", emu.cdn_url()), None).await;
    get(&format!("{u}/nope"), None, None).await;
    get(&format!("{u}/_emulator/nope"), None, None).await;
    let s = stats_over_http(&emu).await;
    assert_eq!(s, emu.stats(), "control routes are not counted");
    assert_eq!(s.requests, 8);
    assert_eq!(s.bytes_served, 9 + 2 + (1 << 20));
    assert_eq!(s.files_served, 2);
    for (route, n) in [
        ("api_info", 1),
        ("api_tree", 1),
        ("resolve_head", 1),
        ("resolve_get", 2),
        ("cdn_get", 1),
        ("cdn_head", 1),
        ("other", 1),
    ] {
        assert_eq!(s.requests_by_route.get(route), Some(&n), "{route}");
    }
    assert_eq!(s.responses_by_status.get(&200), Some(&6));
    assert_eq!(s.responses_by_status.get(&206), Some(&1));
    assert_eq!(s.responses_by_status.get(&404), Some(&1));
    let resp = client()
        .post(format!("{u}/_emulator/reset"))
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success());
    assert_eq!(emu.stats(), Stats::default());
    emu.shutdown().await;
}

#[tokio::test]
async fn rate_limit_fault_answers_429_with_retry_after_then_recovers() {
    let root = fixture();
    let emu = start(root.path()).await;
    let faults = Faults {
        errors: vec![ErrorRule {
            status: 429,
            retry_after_secs: Some(7),
            count: Some(2),
            path_contains: Some("/resolve/".into()),
            ..Default::default()
        }],
        ..Default::default()
    };
    // Set over HTTP, as a harness in another process would.
    let resp = client()
        .post(format!("{}/_emulator/faults", emu.url()))
        .json_body(&faults)
        .await;
    assert!(resp.status().is_success());
    let url = format!("{}/acme/example/resolve/main/config.json", emu.url());
    let (status, _, _) = json(&format!("{}/api/models/acme/example", emu.url()), None).await;
    assert_eq!(status, 200, "the rule only matches /resolve/");
    for _ in 0..2 {
        let (status, headers, _) = get(&url, None, None).await;
        assert_eq!(
            (status, h(&headers, "retry-after")),
            (StatusCode::TOO_MANY_REQUESTS, "7")
        );
    }
    assert_eq!(get(&url, None, None).await.0, StatusCode::OK);
    // An outage: every request fails until the faults are cleared.
    emu.set_faults(Faults {
        errors: vec![ErrorRule {
            status: 503,
            ..Default::default()
        }],
        ..Default::default()
    });
    for _ in 0..3 {
        assert_eq!(
            get(&url, None, None).await.0,
            StatusCode::SERVICE_UNAVAILABLE
        );
    }
    emu.set_faults(Faults::default());
    assert_eq!(get(&url, None, None).await.0, StatusCode::OK);
    assert_eq!(emu.stats().responses_by_status.get(&429), Some(&2));
    emu.shutdown().await;
}

/// `RequestBuilder::json` needs reqwest's `json` feature; send the body by hand instead.
trait JsonBody {
    async fn json_body<T: serde::Serialize>(self, value: &T) -> reqwest::Response;
}

impl JsonBody for reqwest::RequestBuilder {
    async fn json_body<T: serde::Serialize>(self, value: &T) -> reqwest::Response {
        self.header("content-type", "application/json")
            .body(serde_json::to_vec(value).unwrap())
            .send()
            .await
            .unwrap()
    }
}

#[tokio::test]
async fn truncate_fault_cuts_the_body() {
    let root = fixture();
    let emu = start(root.path()).await;
    emu.set_faults(Faults {
        truncate: Some(Truncate {
            count: 1,
            after_bytes: 100_000,
        }),
        ..Default::default()
    });
    let url = format!("{}/cdn/{ZEROS_SHA}", emu.cdn_url());
    let resp = client().get(&url).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.content_length(), Some(1 << 20));
    let mut resp = resp;
    let mut received = 0;
    let end = loop {
        match resp.chunk().await {
            Ok(Some(chunk)) => received += chunk.len(),
            Ok(None) => break Ok(()),
            Err(e) => break Err(e),
        }
    };
    assert!(
        end.is_err(),
        "a cut body must end in an error, not a clean end"
    );
    assert_eq!(received, 100_000);
    assert_eq!(emu.stats().bytes_served, 100_000);
    assert_eq!(emu.stats().files_served, 0);
    // Only `count` bodies are cut.
    let (status, _, body) = get(&url, None, None).await;
    assert_eq!((status, body.len()), (StatusCode::OK, 1 << 20));
    emu.shutdown().await;
}

#[tokio::test]
async fn bandwidth_cap_slows_downloads() {
    let root = fixture();
    let emu = start(root.path()).await;
    let (_, _, info) = json(
        &format!(
            "{}/api/datasets/acme/synth/revision/main?blobs=true",
            emu.url()
        ),
        None,
    )
    .await;
    let four = info["siblings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["rfilename"] == "four.safetensors")
        .unwrap();
    let url = format!(
        "{}/cdn/{}",
        emu.cdn_url(),
        four["lfs"]["sha256"].as_str().unwrap()
    );
    let begin = Instant::now();
    assert_eq!(get(&url, None, None).await.2.len(), 4 << 20);
    let uncapped = begin.elapsed();
    emu.set_faults(Faults {
        bandwidth_bps: Some(8 << 20),
        ..Default::default()
    });
    let begin = Instant::now();
    assert_eq!(get(&url, None, None).await.2.len(), 4 << 20);
    let capped = begin.elapsed();
    // 4 MiB at 8 MiB/s is 0.5 s; allow for the last slice and timer slack.
    assert!(
        capped >= Duration::from_millis(400),
        "capped download took {capped:?}"
    );
    assert!(capped > uncapped, "{capped:?} vs {uncapped:?}");
    // The cap is shared: two clients together get 8 MiB/s, not 8 MiB/s each.
    let begin = Instant::now();
    let (x, y) = tokio::join!(get(&url, None, None), get(&url, None, None));
    assert_eq!(x.2.len() + y.2.len(), 8 << 20);
    let both = begin.elapsed();
    assert!(
        both >= Duration::from_millis(900),
        "two capped downloads took {both:?}"
    );
    emu.shutdown().await;
}

#[tokio::test]
async fn latency_fault_delays_responses() {
    let root = fixture();
    let emu = start(root.path()).await;
    emu.set_faults(Faults {
        latency_ms: Some(300),
        ..Default::default()
    });
    let begin = Instant::now();
    head(
        &format!("{}/acme/example/resolve/main/config.json", emu.url()),
        None,
    )
    .await;
    assert!(begin.elapsed() >= Duration::from_millis(300));
    emu.shutdown().await;
}

#[tokio::test]
async fn demo_repos_are_served_without_a_root() {
    let emu = Emulator::start(EmulatorConfig::default()).await.unwrap();
    let u = emu.url();
    let (status, _, main) = json(
        &format!("{u}/api/models/hfmesh-demo/tiny-model/revision/main?blobs=true"),
        None,
    )
    .await;
    assert_eq!(status, 200);
    let names: Vec<&str> = main["siblings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["rfilename"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "config.json",
            "generation_config.json",
            "model.safetensors",
            "onnx/model.onnx",
            "tokenizer.json"
        ]
    );
    assert_eq!(main["siblings"][2]["size"], 24 << 20);
    let (_, _, exp) = json(
        &format!("{u}/api/models/hfmesh-demo/tiny-model/revision/experimental"),
        None,
    )
    .await;
    assert_ne!(exp["sha"], main["sha"]);
    let cfg_main = get(
        &format!("{u}/hfmesh-demo/tiny-model/resolve/main/config.json"),
        None,
        None,
    )
    .await
    .2;
    let cfg_exp = get(
        &format!("{u}/hfmesh-demo/tiny-model/resolve/experimental/config.json"),
        None,
        None,
    )
    .await
    .2;
    assert_ne!(cfg_main, cfg_exp);
    let (status, _, csv) = get(
        &format!("{u}/datasets/hfmesh-demo/tiny-dataset/resolve/main/data/train.csv"),
        None,
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert!(csv.starts_with(b"text,label\n"));
    emu.shutdown().await;
}

#[tokio::test]
async fn bad_roots_give_one_clear_error() {
    let missing = EmulatorConfig {
        root: Some("/nonexistent/hfmesh-root".into()),
        ..Default::default()
    };
    let e = Emulator::start(missing).await.unwrap_err().to_string();
    assert!(e.contains("/nonexistent/hfmesh-root"), "{e}");
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("hub.toml"),
        "page_size = 2\n[[repo]]\nid = \"bad--id\"\n",
    )
    .unwrap();
    let e = Emulator::start(EmulatorConfig {
        root: Some(dir.path().into()),
        ..Default::default()
    })
    .await
    .unwrap_err()
    .to_string();
    assert!(e.contains("hub.toml") && e.contains("line 3"), "{e}");
    let emu = Emulator::start(EmulatorConfig::default()).await.unwrap();
    let taken: std::net::SocketAddr = emu.url().trim_start_matches("http://").parse().unwrap();
    let e = Emulator::start(EmulatorConfig {
        listen: taken,
        ..Default::default()
    })
    .await
    .unwrap_err()
    .to_string();
    assert!(e.contains("cannot listen on"), "{e}");
    emu.shutdown().await;
}

#[tokio::test]
async fn cli_prints_the_url_first() {
    use tokio::io::AsyncBufReadExt as _;
    let root = fixture();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_hfmesh"))
        .args(["hub-emulator", "--root"])
        .arg(root.path())
        .args(["--latency-ms", "1"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = tokio::io::BufReader::new(stdout).lines();
    let first = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(first.starts_with("http://127.0.0.1:"), "{first}");
    let (status, _, body) = get(&format!("{first}/_emulator/stats"), None, None).await;
    assert_eq!(status, 200);
    let stats: Stats = serde_json::from_slice(&body).unwrap();
    assert_eq!(stats.requests, 0);
    let (status, _, _) = json(&format!("{first}/api/models/gpt2"), None).await;
    assert_eq!(status, 200);
    child.kill().await.unwrap();
}
