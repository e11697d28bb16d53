//! The per-blob lock `.locks/<repo folder>/<etag>.lock` that `huggingface_hub` takes (through
//! `filelock`, an exclusive `flock`) while it writes a blob. hfmesh takes the same lock, so the
//! two can download into one cache at the same time without writing the same blob twice.

use std::fs;
use std::io;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::PathBuf;

/// An exclusive lock on one blob; released when dropped. The lock file itself is never removed
/// (as in `huggingface_hub`, removing it would race with another locker).
#[derive(Debug)]
pub struct BlobLock {
    _file: fs::File,
    path: PathBuf,
}

impl BlobLock {
    /// Opens (creating with mode 0664) and exclusively locks `path`, waiting as long as another
    /// process holds it. The wait runs on the blocking pool.
    pub async fn acquire(path: PathBuf) -> io::Result<BlobLock> {
        tokio::task::spawn_blocking(move || {
            let file = open_lock_file(&path)?;
            if file.try_lock().is_err() {
                tracing::info!(lock = %path.display(), "waiting for another process to finish this blob");
                file.lock()?;
            }
            Ok(BlobLock { _file: file, path })
        })
        .await
        .map_err(io::Error::other)?
    }

    /// Opens (creating with mode 0664) and locks `path` only if no one holds it now: `None`
    /// when another process (or handle) has it. Blocking file I/O, but never waits for the lock.
    pub fn try_now(path: PathBuf) -> io::Result<Option<BlobLock>> {
        let file = open_lock_file(&path)?;
        match file.try_lock() {
            Ok(()) => Ok(Some(BlobLock { _file: file, path })),
            Err(fs::TryLockError::WouldBlock) => Ok(None),
            Err(fs::TryLockError::Error(e)) => Err(e),
        }
    }

    /// Path of the lock file.
    pub fn path(&self) -> &std::path::Path {
        &self.path
    }
}

/// Opens (creating with mode 0664, and its directory) the lock file at `path`.
fn open_lock_file(path: &std::path::Path) -> io::Result<fs::File> {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent)?;
    }
    let file = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o664)
        .open(path)?;
    // filelock sets the mode exactly, whatever the umask; do the same.
    let _ = file.set_permissions(fs::Permissions::from_mode(0o664));
    Ok(file)
}
