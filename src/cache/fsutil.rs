//! Small file-system primitives that make every visible change atomic: write to a temporary name
//! in a staging directory on the same file system, then rename into place.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// A fresh name in `dir` that no other writer will pick: `<stem>.<16 hex>.tmp`.
pub fn temp_name(dir: &Path, stem: &str) -> PathBuf {
    let stem: String = stem
        .chars()
        .map(|c| if c == '/' { '_' } else { c })
        .collect();
    dir.join(format!("{stem}.{:016x}.tmp", rand::random::<u64>()))
}

/// Writes `bytes` to `dest` atomically: the file appears complete or not at all. The temporary
/// file is created in `tmp_dir` (which must be on the same file system) and synced first.
pub fn write_atomic(tmp_dir: &Path, dest: &Path, bytes: &[u8]) -> io::Result<()> {
    fs::create_dir_all(tmp_dir)?;
    if let Some(parent) = dest.parent() {
        fs::create_dir_all(parent)?;
    }
    let tmp = temp_name(tmp_dir, &file_stem(dest));
    let result = (|| {
        let mut f = fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        fs::rename(&tmp, dest)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Creates (or replaces) the symlink `link -> target` atomically, staging it in `tmp_dir`.
pub fn symlink_atomic(tmp_dir: &Path, target: &Path, link: &Path) -> io::Result<()> {
    fs::create_dir_all(tmp_dir)?;
    if let Some(parent) = link.parent() {
        fs::create_dir_all(parent)?;
    }
    let tmp = temp_name(tmp_dir, &file_stem(link));
    std::os::unix::fs::symlink(target, &tmp)?;
    fs::rename(&tmp, link).inspect_err(|_| {
        let _ = fs::remove_file(&tmp);
    })
}

/// Syncs a directory so that renames into it survive a power loss (best effort).
pub fn sync_dir(dir: &Path) {
    if let Ok(d) = fs::File::open(dir) {
        let _ = d.sync_all();
    }
}

/// Removes `dir` if it is empty; any error (not empty, missing) is ignored.
pub fn remove_dir_if_empty(dir: &Path) {
    let _ = fs::remove_dir(dir);
}

fn file_stem(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "file".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_and_symlink_replace() {
        let dir = tempfile::tempdir().unwrap();
        let tmp = dir.path().join("tmp");
        let dest = dir.path().join("a/b/ref");
        write_atomic(&tmp, &dest, b"one").unwrap();
        write_atomic(&tmp, &dest, b"two").unwrap();
        assert_eq!(fs::read(&dest).unwrap(), b"two");
        let link = dir.path().join("s/link");
        symlink_atomic(&tmp, Path::new("../x"), &link).unwrap();
        symlink_atomic(&tmp, Path::new("../y"), &link).unwrap();
        assert_eq!(fs::read_link(&link).unwrap(), PathBuf::from("../y"));
        assert_eq!(
            fs::read_dir(&tmp).unwrap().count(),
            0,
            "no temporary file is left behind"
        );
    }
}
