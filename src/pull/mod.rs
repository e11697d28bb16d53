//! Pull a snapshot from the Hub into the cache tree (the standalone path, no peers):
//! resolve the revision, list the files, fetch each missing blob (parallel ranges, resumable,
//! verified against its etag, under the lock `huggingface_hub` also takes), then assemble the
//! snapshot and write the ref last.

mod fetch;

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures_util::stream::{self, StreamExt, TryStreamExt};
use tokio::sync::Semaphore;

use crate::cache::RepoCache;
use crate::etag::Etag;
use crate::hub::{HubClient, HubError};
use crate::manifest::FileEntry;
use crate::progress::Progress;
use crate::repo::{CommitId, RepoRef};
use crate::store::{PartialBlob, StoreError};

/// Tuning of a pull.
#[derive(Debug, Clone)]
pub struct PullOptions {
    /// Most HTTP transfers in flight at once, over all files.
    pub max_connections: usize,
    /// Most parallel ranges for one file.
    pub max_ranges_per_file: usize,
    /// Bytes per ranged request (rounded to whole chunks).
    pub segment_size: u64,
    /// Most bytes per second over all transfers (`None`: unlimited).
    pub download_limit: Option<std::sync::Arc<crate::transfer::ratelimit::RateLimit>>,
}

impl Default for PullOptions {
    /// 8 connections, up to 8 ranges per file, 64 MiB per range request, no rate limit.
    fn default() -> Self {
        PullOptions {
            max_connections: 8,
            max_ranges_per_file: 8,
            segment_size: 64 << 20,
            download_limit: None,
        }
    }
}

/// What a pull did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PullReport {
    /// The snapshot directory (`.../snapshots/<commit>`).
    pub snapshot_dir: PathBuf,
    /// The commit the revision resolved to.
    pub commit: CommitId,
    /// Files in the snapshot.
    pub files: usize,
    /// Blobs that had to be fetched.
    pub blobs_fetched: usize,
    /// Bytes received from the Hub.
    pub bytes_fetched: u64,
    /// Whether the snapshot was already complete on disk (nothing was fetched).
    pub already_complete: bool,
}

/// A failed pull.
#[derive(Debug, thiserror::Error)]
pub enum PullError {
    /// The Hub refused or failed.
    #[error(transparent)]
    Hub(#[from] HubError),
    /// The chunk store failed (disk, or bytes that do not match their etag).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Writing the cache tree failed.
    #[error("cannot write the cache at {path}: {source}")]
    Cache { path: PathBuf, source: io::Error },
    /// The Hub kept sending content that does not hash to the etag it published.
    #[error("the Hub sent content for `{path}` that does not match its etag {etag}, twice: the file on the Hub or on its CDN is damaged; try again later")]
    Corrupt { path: String, etag: String },
    /// The Hub's answers about one file disagree with each other.
    #[error("the Hub disagrees with itself about `{path}`: {what}")]
    Inconsistent { path: String, what: String },
    /// A background task died.
    #[error("internal task failed: {0}")]
    Task(String),
}

/// Pulls `what` from the Hub into the cache at `cache_root`, reporting bytes to `progress`.
///
/// A snapshot already complete on disk returns at once, and with no request at all when the
/// revision is a full commit id. The ref is written last, after every file is in place.
pub async fn pull(
    client: &HubClient,
    cache_root: &Path,
    what: &RepoRef,
    opts: &PullOptions,
    progress: Arc<dyn Progress>,
) -> Result<PullReport, PullError> {
    let cache = RepoCache::new(cache_root, what.kind, &what.id);
    let cache_err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| PullError::Cache { path, source }
    };
    if let Some(commit) = what.revision.as_commit() {
        if cache.snapshot_complete(&commit) {
            return Ok(complete_report(&cache, commit));
        }
    }
    let commit = client
        .resolve_revision(what.kind, &what.id, &what.revision)
        .await?;
    if cache.snapshot_complete(&commit) {
        cache
            .write_ref(&what.revision, &commit)
            .map_err(cache_err(&cache.layout().repo_dir()))?;
        return Ok(complete_report(&cache, commit));
    }
    let files = client.list_files(what.kind, &what.id, &commit).await?;
    cache.ensure_cachedir_tag().map_err(cache_err(cache_root))?;

    // One fetch per distinct blob: two paths with the same content share it.
    let mut blobs: HashMap<&Etag, &FileEntry> = HashMap::new();
    for f in &files {
        blobs.entry(&f.etag).or_insert(f);
    }
    let missing: Vec<&FileEntry> = blobs
        .into_values()
        .filter(|f| !cache.has_blob(&f.etag, f.size))
        .collect();
    let total: u64 = missing.iter().map(|f| f.size).sum();
    progress.begin(&what.to_string(), total);
    let connections = Semaphore::new(opts.max_connections.max(1));
    let fetched: Vec<Option<u64>> = stream::iter(missing.iter().map(|f| {
        ensure_blob(
            client,
            &cache,
            what,
            &commit,
            f,
            opts,
            &connections,
            &*progress,
        )
    }))
    .buffer_unordered(opts.max_connections.max(1))
    .try_collect()
    .await?;
    progress.finish();

    let dir = cache
        .assemble_snapshot(&commit, &files)
        .map_err(cache_err(&cache.layout().snapshot_dir(&commit)))?;
    cache
        .write_ref(&what.revision, &commit)
        .map_err(cache_err(&cache.layout().repo_dir()))?;
    cache.tidy_work_dir();
    Ok(PullReport {
        snapshot_dir: dir,
        commit,
        files: files.len(),
        blobs_fetched: fetched.iter().flatten().count(),
        bytes_fetched: fetched.iter().flatten().sum(),
        already_complete: false,
    })
}

fn complete_report(cache: &RepoCache, commit: CommitId) -> PullReport {
    PullReport {
        snapshot_dir: cache.layout().snapshot_dir(&commit),
        commit,
        files: 0,
        blobs_fetched: 0,
        bytes_fetched: 0,
        already_complete: true,
    }
}

/// Makes `blobs/<etag>` of `file` present and verified; returns the bytes fetched for it, or
/// `None` when another process put it there while we waited for its lock.
#[allow(clippy::too_many_arguments)]
async fn ensure_blob(
    client: &HubClient,
    cache: &RepoCache,
    what: &RepoRef,
    commit: &CommitId,
    file: &FileEntry,
    opts: &PullOptions,
    connections: &Semaphore,
    progress: &dyn Progress,
) -> Result<Option<u64>, PullError> {
    let layout = cache.layout();
    let _lock = cache
        .lock_blob(&file.etag)
        .await
        .map_err(|source| PullError::Cache {
            path: layout.blob_lock(&file.etag),
            source,
        })?;
    if cache.has_blob(&file.etag, file.size) {
        return Ok(None);
    }
    let partial_dir = layout.partial_dir();
    if file.size == 0 {
        let (dir, etag) = (partial_dir.clone(), file.etag.clone());
        let partial = Arc::new(blocking(move || Ok(PartialBlob::open(&dir, &etag, 0)?)).await?);
        return commit_verified(cache, file, partial).await.map(|_| Some(0));
    }
    let location = client
        .locate(what.kind, &what.id, commit, &file.path)
        .await?;
    if location.etag.as_ref().is_some_and(|e| *e != file.etag)
        || location.size.is_some_and(|s| s != file.size)
    {
        return Err(PullError::Inconsistent {
            path: file.path.to_string(),
            what: format!(
                "the listing says etag {} and {} bytes, the file answers etag {:?} and {:?} bytes",
                file.etag,
                file.size,
                location.etag.map(|e| e.to_string()),
                location.size
            ),
        });
    }
    let mut fetched = 0;
    let mut attempt = 0;
    loop {
        attempt += 1;
        let (dir, etag, size) = (partial_dir.clone(), file.etag.clone(), file.size);
        let partial = Arc::new(blocking(move || Ok(PartialBlob::open(&dir, &etag, size)?)).await?);
        let resumed = partial.bytes_done();
        if resumed > 0 {
            progress.note(&format!(
                "{}: resuming, {} already here",
                file.path,
                crate::progress::human_bytes(resumed)
            ));
            progress.advance(resumed);
        }
        fetch::fetch_missing(
            client,
            &location.url,
            partial.clone(),
            opts,
            connections,
            progress,
        )
        .await?;
        fetched += file.size - resumed;
        match commit_verified(cache, file, partial).await {
            Err(PullError::Store(StoreError::EtagMismatch { .. })) if attempt == 1 => {
                progress.note(&format!(
                    "{}: content did not match its etag, fetching it again",
                    file.path
                ));
            }
            Err(PullError::Store(StoreError::EtagMismatch { .. })) => {
                return Err(PullError::Corrupt {
                    path: file.path.to_string(),
                    etag: file.etag.to_string(),
                })
            }
            other => return other.map(|_| Some(fetched)),
        }
    }
}

/// Verifies a complete partial blob against its etag and renames it into `blobs/`.
pub(crate) async fn commit_verified(
    cache: &RepoCache,
    file: &FileEntry,
    partial: Arc<PartialBlob>,
) -> Result<PathBuf, PullError> {
    let verified = blocking(move || Ok(partial.verify()?)).await?;
    cache
        .commit_blob(&verified, &file.etag)
        .map_err(|source| PullError::Cache {
            path: cache.layout().blob(&file.etag),
            source,
        })
}

pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, PullError> + Send + 'static,
) -> Result<T, PullError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| PullError::Task(e.to_string()))?
}
