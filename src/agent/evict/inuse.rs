//! Which files of the cache tree local processes hold open, best effort: every `/proc/<pid>/fd/*`
//! symlink and every file-backed mapping in `/proc/<pid>/maps` (a model loaded with `mmap`, as
//! safetensors are, often has no descriptor left open). Processes whose entries this agent may
//! not read (another user's, without privileges) are skipped silently, so running the agent as
//! the user of its consumers, or as root, makes the check complete. Linux only; elsewhere the
//! answer is empty.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};

/// A process holding a file open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    /// Its process id.
    pub pid: u32,
    /// Its command name (`/proc/<pid>/comm`).
    pub name: String,
}

impl std::fmt::Display for Holder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "process {} ({})", self.pid, self.name)
    }
}

/// Files under `root` that a process holds open or mapped, each with one of its holders.
pub fn open_files(root: &Path) -> HashMap<PathBuf, Holder> {
    let root = fs::canonicalize(root).unwrap_or_else(|_| root.to_path_buf());
    let mut found = HashMap::new();
    let Ok(procs) = fs::read_dir("/proc") else {
        return found;
    };
    for p in procs.flatten() {
        let Some(pid) = p.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        let dir = p.path();
        let mut paths = descriptors(&dir);
        paths.extend(mappings(&dir));
        let mut paths = paths
            .into_iter()
            .filter(|f| f.starts_with(&root))
            .peekable();
        if paths.peek().is_none() {
            continue;
        }
        let name = fs::read_to_string(dir.join("comm")).unwrap_or_default();
        let holder = Holder {
            pid,
            name: name.trim().to_string(),
        };
        for path in paths {
            found.entry(path).or_insert_with(|| holder.clone());
        }
    }
    found
}

/// The files a process's descriptors point at.
fn descriptors(proc_dir: &Path) -> Vec<PathBuf> {
    let Ok(fds) = fs::read_dir(proc_dir.join("fd")) else {
        return Vec::new();
    };
    fds.flatten()
        .filter_map(|fd| fs::read_link(fd.path()).ok())
        .filter(|p| p.is_absolute())
        .collect()
}

/// The files a process has mapped.
fn mappings(proc_dir: &Path) -> Vec<PathBuf> {
    let Ok(text) = fs::read_to_string(proc_dir.join("maps")) else {
        return Vec::new();
    };
    text.lines()
        .filter_map(maps_path)
        .map(PathBuf::from)
        .collect()
}

/// The file of one `/proc/<pid>/maps` line (`address perms offset dev inode path`), if it is
/// file-backed. The path may contain spaces; a trailing ` (deleted)` is dropped.
pub fn maps_path(line: &str) -> Option<&str> {
    let mut rest = line;
    for _ in 0..5 {
        rest = rest.trim_start();
        rest = &rest[rest.find(' ')?..];
    }
    let path = rest.trim_start();
    path.starts_with('/')
        .then(|| path.strip_suffix(" (deleted)").unwrap_or(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_path_of_a_mapping() {
        let line = "7f1c2a000000-7f1c2a400000 r--s 00000000 fd:01 1234567                    \
                    /c/models--a--b/blobs/ab cd";
        assert_eq!(maps_path(line), Some("/c/models--a--b/blobs/ab cd"));
        let deleted = "7f00-7f10 r--p 00000000 fd:01 99 /c/blobs/x (deleted)";
        assert_eq!(maps_path(deleted), Some("/c/blobs/x"));
        assert_eq!(maps_path("7f00-7f10 rw-p 00000000 00:00 0 "), None);
        assert_eq!(
            maps_path("7ffd-7ffe rw-p 00000000 00:00 0      [stack]"),
            None
        );
        assert_eq!(maps_path("garbage"), None);
    }

    #[test]
    fn finds_a_file_this_process_holds_open_and_forgets_it_once_closed() {
        let dir = tempfile::tempdir().unwrap();
        let blob = dir.path().join("blobs").join("held");
        fs::create_dir_all(blob.parent().unwrap()).unwrap();
        fs::write(&blob, b"x").unwrap();
        let canonical = fs::canonicalize(&blob).unwrap();
        let file = fs::File::open(&blob).unwrap();
        let open = open_files(dir.path());
        let holder = open.get(&canonical).expect("the open blob is found");
        assert_eq!(holder.pid, std::process::id());
        drop(file);
        assert!(!open_files(dir.path()).contains_key(&canonical));
    }
}
