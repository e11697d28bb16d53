use super::*;
use crate::etag::git_blob_id;
use crate::manifest::FileEntry;

fn setup() -> (tempfile::TempDir, RepoCache) {
    let dir = tempfile::tempdir().unwrap();
    let cache = RepoCache::new(
        dir.path(),
        RepoKind::Model,
        &RepoId::parse("acme/example").unwrap(),
    );
    (dir, cache)
}

fn put_blob(cache: &RepoCache, content: &[u8], path: &str) -> FileEntry {
    let etag = git_blob_id(content);
    let tmp = cache.layout().tmp_dir();
    fs::create_dir_all(&tmp).unwrap();
    let staged = tmp.join("staged");
    fs::write(&staged, content).unwrap();
    cache.commit_blob(&staged, &etag).unwrap();
    FileEntry {
        path: RepoPath::parse(path).unwrap(),
        size: content.len() as u64,
        blob_id: etag.to_string(),
        etag,
        lfs: false,
    }
}

const COMMIT: &str = "7c3a9f0e2b5d8c1a4f6e9b0d3c2a5f8e1b4d7c90";

#[test]
fn assembles_a_snapshot_with_relative_links_and_tree_json() {
    let (_d, cache) = setup();
    let commit = CommitId::parse(COMMIT).unwrap();
    let files = vec![
        put_blob(&cache, b"{\"a\": 1}\n", "config.json"),
        put_blob(&cache, b"x,y\n", "data/train.csv"),
    ];
    assert!(!cache.snapshot_complete(&commit));
    let dir = cache.assemble_snapshot(&commit, &files).unwrap();
    assert_eq!(
        fs::read_link(dir.join("data/train.csv")).unwrap(),
        PathBuf::from(format!("../../../blobs/{}", files[1].etag))
    );
    assert_eq!(fs::read(dir.join("config.json")).unwrap(), b"{\"a\": 1}\n");
    assert!(cache.snapshot_complete(&commit));
    cache.tidy_work_dir();
    assert!(
        !cache.layout().work_dir().exists(),
        "the work area is removed when idle"
    );
}

#[test]
fn fills_in_an_existing_partial_snapshot() {
    let (_d, cache) = setup();
    let commit = CommitId::parse(COMMIT).unwrap();
    let a = put_blob(&cache, b"a", "a.txt");
    let b = put_blob(&cache, b"b", "sub/b.txt");
    cache
        .assemble_snapshot(&commit, std::slice::from_ref(&a))
        .unwrap();
    // A wrong link left by someone else is replaced.
    let b_link = cache.layout().snapshot_file(&commit, &b.path);
    fs::create_dir_all(b_link.parent().unwrap()).unwrap();
    std::os::unix::fs::symlink("../../../blobs/nonexistent", &b_link).unwrap();
    cache.assemble_snapshot(&commit, &[a, b.clone()]).unwrap();
    assert_eq!(fs::read(&b_link).unwrap(), b"b");
    assert!(cache.snapshot_complete(&commit));
}

#[test]
fn refuses_to_assemble_without_blobs() {
    let (_d, cache) = setup();
    let commit = CommitId::parse(COMMIT).unwrap();
    let mut f = put_blob(&cache, b"a", "a.txt");
    f.etag = git_blob_id(b"other");
    assert!(cache.assemble_snapshot(&commit, &[f]).is_err());
    assert!(
        !cache.layout().snapshot_dir(&commit).exists(),
        "nothing half-built becomes visible"
    );
}

#[test]
fn refs_have_no_newline_and_nest() {
    let (_d, cache) = setup();
    let commit = CommitId::parse(COMMIT).unwrap();
    let rev = Revision::parse("refs/pr/1").unwrap();
    cache.write_ref(&rev, &commit).unwrap();
    let path = cache.layout().repo_dir().join("refs/refs/pr/1");
    assert_eq!(fs::read(&path).unwrap(), COMMIT.as_bytes());
    assert_eq!(cache.read_ref(&rev), Some(commit.clone()));
    // A revision that is the commit itself writes no ref.
    cache
        .write_ref(&Revision::from(commit.clone()), &commit)
        .unwrap();
    assert!(!cache.layout().repo_dir().join("refs").join(COMMIT).exists());
}

#[test]
fn cachedir_tag_matches_huggingface_hub() {
    let (d, cache) = setup();
    cache.ensure_cachedir_tag().unwrap();
    let text = fs::read_to_string(d.path().join("CACHEDIR.TAG")).unwrap();
    assert!(text.starts_with("Signature: 8a477f597d28d172789f06886806bc55\n"));
    assert!(text.ends_with("#\thttps://bford.info/cachedir/\n"));
}

#[tokio::test]
async fn blob_lock_is_exclusive_and_shared_with_flock_users() {
    let (_d, cache) = setup();
    let etag = git_blob_id(b"x");
    let held = cache.lock_blob(&etag).await.unwrap();
    let other = fs::File::open(held.path()).unwrap();
    assert!(other.try_lock().is_err(), "a second locker must wait");
    drop(held);
    assert!(other.try_lock().is_ok());
}
