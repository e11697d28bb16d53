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
            if let Some(parent) = path.parent() {
                fs::create_dir_all(parent)?;
            }
            let file = fs::OpenOptions::new().read(true).write(true).create(true).truncate(false).mode(0o664).open(&path)?;
            // filelock sets the mode exactly, whatever the umask; do the same.
            let _ = file.set_permissions(fs::Permissions::from_mode(0o664));
            if file.try_lock().is_err() {
                tracing::info!(lock = %path.display(), "waiting for another process to finish this blob");
                file.lock()?;
            }
            Ok(BlobLock { _file: file, path })
        })
        .await
        .map_err(io::Error::other)?
    }

    /// Path of the lock file.
    pub fn path(&self) -> &std::path::Path {
        &self.path
    }
}
