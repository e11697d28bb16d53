use super::*;
use crate::etag::git_blob_id;
use crate::manifest::FileEntry;
use crate::repo::{RepoId, RepoKind, RepoPath, Revision};

fn repo(root: &Path) -> RepoCache {
    RepoCache::new(root, RepoKind::Model, &RepoId::parse("acme/x").unwrap())
}

fn commit(c: char) -> CommitId {
    CommitId::parse(&c.to_string().repeat(40)).unwrap()
}

/// A verified blob in `blobs/` and the file entry that names it.
fn blob(cache: &RepoCache, content: &[u8], path: &str) -> FileEntry {
    let etag = git_blob_id(content);
    let staged = cache.layout().cache_root().join("staged");
    fs::create_dir_all(cache.layout().cache_root()).unwrap();
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

fn rev(r: &str) -> Revision {
    Revision::parse(r).unwrap()
}

/// Every ref file of the repository names a snapshot that exists (what `scan_cache_dir` checks).
fn assert_no_dangling_refs(cache: &RepoCache) {
    let refs = cache.layout().repo_dir().join("refs");
    let mut stack = vec![refs];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).into_iter().flatten().flatten() {
            if e.file_type().unwrap().is_dir() {
                stack.push(e.path());
                continue;
            }
            let c = CommitId::parse(&fs::read_to_string(e.path()).unwrap()).unwrap();
            assert!(
                cache.layout().snapshot_dir(&c).is_dir(),
                "{} points at a removed snapshot",
                e.path().display()
            );
        }
    }
}

#[test]
fn removes_one_snapshot_with_its_refs_and_listing_and_keeps_shared_blobs() {
    let dir = tempfile::tempdir().unwrap();
    let cache = repo(dir.path());
    let (c1, c2) = (commit('1'), commit('2'));
    let only1 = blob(&cache, b"only in the first", "a.txt");
    let shared = blob(&cache, b"in both", "w/shared.bin");
    let only2 = blob(&cache, b"second only", "b.txt");
    cache
        .assemble_snapshot(&c1, &[only1.clone(), shared.clone()])
        .unwrap();
    cache
        .assemble_snapshot(&c2, &[shared.clone(), only2.clone()])
        .unwrap();
    cache.write_ref(&rev("main"), &c1).unwrap();
    cache.write_ref(&rev("refs/pr/1"), &c1).unwrap();
    cache.write_ref(&rev("v2"), &c2).unwrap();
    let no_exist = cache
        .layout()
        .repo_dir()
        .join(".no_exist")
        .join(c1.as_str());
    fs::create_dir_all(&no_exist).unwrap();
    fs::write(no_exist.join("missing.json"), b"").unwrap();

    let removed = cache.remove_snapshot(&c1).unwrap();
    assert_eq!(
        removed,
        Removed {
            freed_bytes: only1.size,
            blobs_removed: vec![only1.etag.clone()],
            blobs_busy: vec![],
            repo_removed: false,
        }
    );
    let l = cache.layout();
    assert!(!l.snapshot_dir(&c1).exists());
    assert!(!l.tree_file(&c1).exists());
    assert!(!no_exist.exists());
    assert_eq!(cache.read_ref(&rev("main")), None);
    assert!(
        !l.repo_dir().join("refs/refs").exists(),
        "no empty folder is left where a nested ref was"
    );
    assert_eq!(cache.read_ref(&rev("v2")), Some(c2.clone()));
    assert!(!l.blob(&only1.etag).exists());
    assert!(l.blob(&shared.etag).exists(), "the other snapshot names it");
    assert!(cache.snapshot_complete(&c2), "the other snapshot is intact");
    assert!(!l.work_dir().exists(), "the work area is gone when idle");
    assert_no_dangling_refs(&cache);

    let last = cache.remove_snapshot(&c2).unwrap();
    assert_eq!(last.freed_bytes, shared.size + only2.size);
    assert!(last.repo_removed);
    assert!(!l.repo_dir().exists(), "nothing is left of the repository");
    assert!(
        dir.path().join(".locks").exists(),
        "lock files stay, as huggingface_hub's do"
    );
}

#[test]
fn a_blob_someone_writes_and_work_in_progress_are_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let cache = repo(dir.path());
    let c = commit('a');
    let f = blob(&cache, b"held", "f.bin");
    let g = blob(&cache, b"free", "g.bin");
    cache
        .assemble_snapshot(&c, &[f.clone(), g.clone()])
        .unwrap();
    let held = BlobLock::try_now(cache.layout().blob_lock(&f.etag))
        .unwrap()
        .expect("nobody holds it yet");
    fs::create_dir_all(cache.layout().partial_dir()).unwrap();
    fs::write(cache.layout().partial_dir().join("x.part"), b"..").unwrap();

    let removed = cache.remove_snapshot(&c).unwrap();
    assert_eq!(removed.blobs_removed, vec![g.etag.clone()]);
    assert_eq!(removed.blobs_busy, vec![f.etag.clone()]);
    assert_eq!(removed.freed_bytes, g.size);
    assert!(!removed.repo_removed);
    assert!(cache.layout().blob(&f.etag).exists());
    assert!(!cache.layout().snapshot_dir(&c).exists());
    drop(held);
}

#[test]
fn a_removal_interrupted_after_the_rename_is_finished_later() {
    let dir = tempfile::tempdir().unwrap();
    let cache = repo(dir.path());
    let (c1, c2) = (commit('c'), commit('d'));
    let f = blob(&cache, b"gone with c1", "f.bin");
    let k = blob(&cache, b"kept by c2", "k.bin");
    cache
        .assemble_snapshot(&c1, &[f.clone(), k.clone()])
        .unwrap();
    cache
        .assemble_snapshot(&c2, std::slice::from_ref(&k))
        .unwrap();
    // A crash right after step 3: the snapshot left `snapshots/`, its blobs are still there.
    let tmp = cache.layout().tmp_dir();
    fs::create_dir_all(&tmp).unwrap();
    fs::remove_file(cache.layout().tree_file(&c1)).unwrap();
    fs::rename(
        cache.layout().snapshot_dir(&c1),
        fsutil::temp_name(&tmp, &format!("{EVICTING}{c1}")),
    )
    .unwrap();
    assert!(cache.layout().blob(&f.etag).exists());

    assert_eq!(finish_interrupted(dir.path()).unwrap(), f.size);
    assert!(!cache.layout().blob(&f.etag).exists());
    assert!(cache.layout().blob(&k.etag).exists());
    assert!(!tmp.exists());
    assert!(cache.snapshot_complete(&c2));
    assert_eq!(
        finish_interrupted(dir.path()).unwrap(),
        0,
        "nothing left to do"
    );
}

#[test]
fn removing_a_snapshot_that_is_not_there_fails() {
    let dir = tempfile::tempdir().unwrap();
    let err = repo(dir.path()).remove_snapshot(&commit('e')).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::NotFound);
}
