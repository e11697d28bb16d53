//! Which blobs local processes hold open, best effort: every `/proc/<pid>/fd/*` and every
//! file-backed mapping in `/proc/<pid>/maps` (a model loaded with `mmap`, as safetensors are,
//! often keeps no descriptor) whose file is named `blobs/<etag>`.
//!
//! A blob is recognised by its inode and name, not its path: a consumer in another container
//! sees the cache under another mount point (`/runpod-volume/huggingface-cache/hub`), and
//! `/proc` shows paths as that process sees them. Only processes whose `/proc` entries the
//! agent may read are seen: its own PID namespace (in Kubernetes, `hostPID: true` shows the
//! host's), and other users' processes only when the agent runs as root. Linux only; elsewhere
//! nothing is found.

use std::collections::HashMap;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use crate::etag::Etag;

/// A blob file: its inode and its name (the etag).
pub type BlobFile = (u64, String);

/// A process holding a blob open.
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

/// Every blob file some process holds open or mapped, with one of its holders.
pub fn open_blobs() -> HashMap<BlobFile, Holder> {
    let mut found = HashMap::new();
    let Ok(procs) = fs::read_dir("/proc") else {
        return found;
    };
    for p in procs.flatten() {
        let Some(pid) = p.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        let dir = p.path();
        let mut files = descriptors(&dir);
        files.extend(mappings(&dir));
        if files.is_empty() {
            continue;
        }
        let name = fs::read_to_string(dir.join("comm")).unwrap_or_default();
        let holder = Holder {
            pid,
            name: name.trim().to_string(),
        };
        for file in files {
            found.entry(file).or_insert_with(|| holder.clone());
        }
    }
    found
}

/// The blob files a process's descriptors point at.
fn descriptors(proc_dir: &Path) -> Vec<BlobFile> {
    let Ok(fds) = fs::read_dir(proc_dir.join("fd")) else {
        return Vec::new();
    };
    fds.flatten()
        .filter_map(|fd| {
            let target = fs::read_link(fd.path()).ok()?;
            let name = blob_name(target.to_str()?)?;
            // The descriptor's own metadata: the file it holds, whatever the mount namespace.
            let ino = fs::metadata(fd.path()).ok()?.ino();
            Some((ino, name.to_string()))
        })
        .collect()
}

/// The blob files a process has mapped.
fn mappings(proc_dir: &Path) -> Vec<BlobFile> {
    let Ok(text) = fs::read_to_string(proc_dir.join("maps")) else {
        return Vec::new();
    };
    text.lines()
        .filter_map(maps_entry)
        .filter_map(|(ino, path)| Some((ino, blob_name(path)?.to_string())))
        .collect()
}

/// The etag of a path of the form `.../blobs/<etag>`.
fn blob_name(path: &str) -> Option<&str> {
    let (dir, name) = path.rsplit_once('/')?;
    let ok = dir.ends_with("/blobs") && Etag::parse(name).is_ok_and(|e| e.as_str() == name);
    ok.then_some(name)
}

/// The inode and file of one `/proc/<pid>/maps` line (`address perms offset dev inode path`),
/// if it is file-backed. The path may contain spaces; a trailing ` (deleted)` is dropped.
pub fn maps_entry(line: &str) -> Option<(u64, &str)> {
    let mut fields = Vec::with_capacity(5);
    let mut rest = line;
    for _ in 0..5 {
        rest = rest.trim_start();
        let end = rest.find(' ')?;
        fields.push(&rest[..end]);
        rest = &rest[end..];
    }
    let path = rest.trim_start();
    let ino = fields[4].parse().ok()?;
    (ino != 0 && path.starts_with('/'))
        .then(|| (ino, path.strip_suffix(" (deleted)").unwrap_or(path)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_inode_and_path_of_a_mapping() {
        let line = "7f1c2a000000-7f1c2a400000 r--s 00000000 fd:01 1234567                    \
                    /c/models--a--b/blobs/ab cd";
        assert_eq!(
            maps_entry(line),
            Some((1234567, "/c/models--a--b/blobs/ab cd"))
        );
        let deleted = "7f00-7f10 r--p 00000000 fd:01 99 /c/blobs/x (deleted)";
        assert_eq!(maps_entry(deleted), Some((99, "/c/blobs/x")));
        assert_eq!(maps_entry("7f00-7f10 rw-p 00000000 00:00 0 "), None);
        assert_eq!(
            maps_entry("7ffd-7ffe rw-p 00000000 00:00 0      [stack]"),
            None
        );
        assert_eq!(maps_entry("garbage"), None);
    }

    #[test]
    fn only_blob_files_count() {
        let etag = "a".repeat(64);
        assert_eq!(blob_name(&format!("/x/blobs/{etag}")), Some(etag.as_str()));
        assert_eq!(blob_name(&format!("/x/snapshots/{etag}")), None);
        assert_eq!(blob_name("/x/blobs/model.safetensors"), None);
        assert_eq!(blob_name(&format!("/x/blobs/{}", "A".repeat(40))), None);
    }

    #[test]
    fn finds_a_blob_this_process_holds_open_and_forgets_it_once_closed() {
        let dir = tempfile::tempdir().unwrap();
        let etag = crate::etag::git_blob_id(b"held");
        let blob = dir.path().join("blobs").join(etag.as_str());
        fs::create_dir_all(blob.parent().unwrap()).unwrap();
        fs::write(&blob, b"held").unwrap();
        let key = (fs::metadata(&blob).unwrap().ino(), etag.to_string());
        let file = fs::File::open(&blob).unwrap();
        let open = open_blobs();
        let holder = open.get(&key).expect("the open blob is found");
        assert_eq!(holder.pid, std::process::id());
        drop(file);
        assert!(!open_blobs().contains_key(&key));
    }
}
