//! The root directory and its optional `hub.toml`: parsed without I/O first ([`HubToml::parse`]),
//! then resolved against the file system into repository declarations ([`load_root`]).
//!
//! # Plain folders
//! `DIR/models/<org>/<name>/` and `DIR/datasets/<org>/<name>/` are served as the `main` branch
//! of that repo, with every file below them except a `.git` directory. Symbolic links to files
//! are followed when their target is inside `DIR` (so a snapshot folder of an HF cache under
//! `DIR` works); links that leave `DIR`, and links to directories, are refused at startup.
//!
//! # `DIR/hub.toml`
//! ```toml
//! page_size = 1000            # tree listing page size (default 1000)
//!
//! [[repo]]
//! id = "acme/big"             # `org/name` or an org-less `name`
//! kind = "model"              # "model" (default) or "dataset"
//! gated = "manual"            # false (default), "auto" or "manual"
//! private = false             # true: invisible (RepoNotFound) without a listed token
//! tokens = ["hf_alice"]       # tokens with access (gated downloads, private repos)
//!
//! [[repo.branch]]
//! name = "main"               # a branch name; `refs/pr/1` works too
//! dir = "models/acme/big"     # files from this folder, relative to DIR; for `main` the default
//!                             # is the plain folder DIR/<kind>s/<id> when it exists
//! tags = ["v1.0"]             # tags that resolve to this branch
//!
//! [[repo.branch.synthetic]]   # seeded content, generated on the fly (see `synthetic.rs`)
//! path = "model-00001-of-00002.safetensors"
//! size = 1073754112           # bytes
//! seed = 7
//! sha256 = "..."              # optional: pins the hash so it is never computed
//! ```
//! A repo entry with no `[[repo.branch]]` gets a `main` branch from its plain folder (empty if
//! there is none); an entry whose branches do not include `main` still gets `main` from the
//! plain folder when that folder exists. An entry and a plain folder of the same id are one
//! repo, with the entry's settings. A synthetic file replaces a folder file of the same path.

use std::collections::HashSet;
use std::path::{Component, Path, PathBuf};

use serde::Deserialize;

use super::store::{BranchSpec, FileSpec, Gated, RepoSpec, Source};
use crate::etag::Etag;
use crate::repo::{RepoId, RepoKind, RepoPath, Revision};

/// Name of the optional declaration file at the root.
pub const HUB_TOML: &str = "hub.toml";
/// Default number of entries per tree listing page (what the Hub uses).
pub const DEFAULT_PAGE_SIZE: usize = 1000;

/// `hub.toml`, as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HubToml {
    /// Tree listing page size.
    pub page_size: Option<usize>,
    /// Declared repositories.
    #[serde(default, rename = "repo")]
    pub repos: Vec<RepoDecl>,
}

/// One `[[repo]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RepoDecl {
    /// `org/name` or `name`.
    pub id: RepoId,
    /// Model (default) or dataset.
    pub kind: Option<RepoKind>,
    /// `false`, `"auto"` or `"manual"`.
    #[serde(default)]
    pub gated: GatedDecl,
    /// Hidden from anyone without a listed token.
    #[serde(default)]
    pub private: bool,
    /// Tokens that may read a private repo and download a gated one.
    #[serde(default)]
    pub tokens: Vec<String>,
    /// Branches; `main` from the plain folder if none is declared.
    #[serde(default, rename = "branch")]
    pub branches: Vec<BranchDecl>,
}

/// The `gated` setting: `false`, `"auto"` or `"manual"`.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "toml::Value")]
pub enum GatedDecl {
    /// Not gated.
    #[default]
    No,
    /// `"auto"`.
    Auto,
    /// `"manual"`.
    Manual,
}

impl TryFrom<toml::Value> for GatedDecl {
    type Error = String;
    fn try_from(v: toml::Value) -> Result<Self, Self::Error> {
        match v {
            toml::Value::Boolean(false) => Ok(GatedDecl::No),
            toml::Value::String(s) if s == "auto" => Ok(GatedDecl::Auto),
            toml::Value::String(s) if s == "manual" => Ok(GatedDecl::Manual),
            _ => Err("gated must be false, \"auto\" or \"manual\"".to_string()),
        }
    }
}

/// One `[[repo.branch]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BranchDecl {
    /// Branch name.
    pub name: Revision,
    /// Folder of files, relative to the root.
    pub dir: Option<PathBuf>,
    /// Tags resolving to this branch.
    #[serde(default)]
    pub tags: Vec<Revision>,
    /// Synthetic files.
    #[serde(default)]
    pub synthetic: Vec<SyntheticDecl>,
}

/// One `[[repo.branch.synthetic]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyntheticDecl {
    /// Path in the repo.
    pub path: RepoPath,
    /// Size in bytes.
    pub size: u64,
    /// Content seed.
    pub seed: u64,
    /// Pinned SHA-256 of the content (trusted, not checked).
    pub sha256: Option<Etag>,
}

/// Why the root or its `hub.toml` cannot be served. Messages name the file and, for TOML, the line.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The root is missing or unreadable.
    #[error("root directory {}: {error}", path.display())]
    Root {
        path: PathBuf,
        error: std::io::Error,
    },
    /// A file or folder under the root cannot be read.
    #[error("{}: {error}", path.display())]
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
    /// `hub.toml` is malformed (the message includes the line).
    #[error("{}: {message}", path.display())]
    Toml { path: PathBuf, message: String },
    /// A declaration is inconsistent with the files.
    #[error("{}: {message}", path.display())]
    Invalid { path: PathBuf, message: String },
}

impl HubToml {
    /// Parses the text of a `hub.toml`; `path` only names the file in errors.
    pub fn parse(text: &str, path: &Path) -> Result<HubToml, ConfigError> {
        toml::from_str(text).map_err(|e| {
            let line = e.span().map(|span| {
                text.as_bytes()[..span.start.min(text.len())]
                    .iter()
                    .filter(|&&b| b == b'\n')
                    .count()
                    + 1
            });
            let message = e.message().trim_end().replace('\n', " ");
            let message = match line {
                Some(line) => format!("line {line}: {message}"),
                None => message,
            };
            ConfigError::Toml {
                path: path.to_path_buf(),
                message,
            }
        })
    }
}

/// Reads `root` (plain folders and `hub.toml`) into repository declarations and the page size.
/// Blocking: call from `spawn_blocking`.
pub(crate) fn load_root(root: &Path) -> Result<(Vec<RepoSpec>, usize), ConfigError> {
    let root = root.canonicalize().map_err(|error| ConfigError::Root {
        path: root.to_path_buf(),
        error,
    })?;
    if !root.is_dir() {
        let error = std::io::Error::other("not a directory");
        return Err(ConfigError::Root { path: root, error });
    }
    let toml_path = root.join(HUB_TOML);
    let hub = match std::fs::read_to_string(&toml_path) {
        Ok(text) => HubToml::parse(&text, &toml_path)?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => HubToml::default(),
        Err(error) => {
            return Err(ConfigError::Io {
                path: toml_path,
                error,
            })
        }
    };
    let invalid = |message: String| ConfigError::Invalid {
        path: toml_path.clone(),
        message,
    };
    let page_size = hub.page_size.unwrap_or(DEFAULT_PAGE_SIZE);
    if page_size == 0 {
        return Err(invalid("page_size must be at least 1".into()));
    }
    let mut specs = Vec::new();
    let mut declared = HashSet::new();
    for decl in hub.repos {
        let kind = decl.kind.unwrap_or(RepoKind::Model);
        if !declared.insert((kind, decl.id.clone())) {
            return Err(invalid(format!("{kind} {} is declared twice", decl.id)));
        }
        specs.push(resolve_decl(&root, kind, decl).map_err(|e| match e {
            ConfigError::Invalid { message, .. } => invalid(message),
            other => other,
        })?);
    }
    for kind in [RepoKind::Model, RepoKind::Dataset] {
        for id in plain_folders(&root, kind, &declared)? {
            if declared.contains(&(kind, id.clone())) {
                continue;
            }
            let files = walk(&root, &root.join(kind.plural()).join(id.as_str()))?;
            let main = BranchSpec {
                name: Revision::main(),
                tags: vec![],
                files,
            };
            let spec = RepoSpec {
                kind,
                id,
                gated: Gated::No,
                private: false,
                tokens: vec![],
                branches: vec![main],
            };
            specs.push(spec);
        }
    }
    Ok((specs, page_size))
}

fn resolve_decl(root: &Path, kind: RepoKind, decl: RepoDecl) -> Result<RepoSpec, ConfigError> {
    let gated = match decl.gated {
        GatedDecl::No => Gated::No,
        GatedDecl::Auto => Gated::Auto,
        GatedDecl::Manual => Gated::Manual,
    };
    let plain = root.join(kind.plural()).join(decl.id.as_str());
    let mut branches = Vec::new();
    let mut has_main = false;
    for b in decl.branches {
        let dir = match &b.dir {
            Some(d) => Some(safe_join(root, d).ok_or_else(|| ConfigError::Invalid {
                path: PathBuf::new(),
                message: format!(
                    "{kind} {} branch `{}`: dir `{}` must be a relative path inside the root",
                    decl.id,
                    b.name,
                    d.display()
                ),
            })?),
            None if b.name == Revision::main() && plain.is_dir() => Some(plain.clone()),
            None => None,
        };
        has_main |= b.name == Revision::main();
        let mut files = match dir {
            Some(d) => walk(root, &d)?,
            None => Vec::new(),
        };
        for s in b.synthetic {
            files.retain(|f| f.path != s.path);
            let source = Source::Synthetic { seed: s.seed };
            files.push(FileSpec {
                path: s.path,
                size: s.size,
                source,
                sha256: s.sha256,
            });
        }
        branches.push(BranchSpec {
            name: b.name,
            tags: b.tags,
            files,
        });
    }
    if !has_main {
        let files = if plain.is_dir() {
            walk(root, &plain)?
        } else {
            Vec::new()
        };
        branches.push(BranchSpec {
            name: Revision::main(),
            tags: vec![],
            files,
        });
    }
    Ok(RepoSpec {
        kind,
        id: decl.id,
        gated,
        private: decl.private,
        tokens: decl.tokens,
        branches,
    })
}

/// `root/rel` when `rel` is relative and has no `..`; `None` otherwise.
fn safe_join(root: &Path, rel: &Path) -> Option<PathBuf> {
    let ok = rel
        .components()
        .all(|c| matches!(c, Component::Normal(_) | Component::CurDir));
    ok.then(|| root.join(rel))
}

/// The repo ids of the plain folders `root/<kind>s/<org>/<name>/`. The folder of a declared
/// org-less repo (`root/models/gpt2/`) is that repo's, not an org.
fn plain_folders(
    root: &Path,
    kind: RepoKind,
    declared: &HashSet<(RepoKind, RepoId)>,
) -> Result<Vec<RepoId>, ConfigError> {
    let base = root.join(kind.plural());
    let mut ids = Vec::new();
    for org in read_dir_sorted(&base)? {
        let name = org
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let orgless = RepoId::parse(&name).is_ok_and(|id| declared.contains(&(kind, id)));
        if !org.is_dir() || orgless {
            continue;
        }
        for repo in read_dir_sorted(&org)? {
            if !repo.is_dir() {
                continue;
            }
            let (Some(o), Some(n)) = (org.file_name(), repo.file_name()) else {
                continue;
            };
            let id = format!("{}/{}", o.to_string_lossy(), n.to_string_lossy());
            match RepoId::parse(&id) {
                Ok(id) => ids.push(id),
                Err(e) => tracing::warn!("skipping {}: {e}", repo.display()),
            }
        }
    }
    Ok(ids)
}

fn read_dir_sorted(dir: &Path) -> Result<Vec<PathBuf>, ConfigError> {
    let io = |error| ConfigError::Io {
        path: dir.to_path_buf(),
        error,
    };
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io(e)),
    };
    let mut paths = entries
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(io)?;
    paths.sort();
    Ok(paths)
}

/// Every file below `dir` (skipping `.git`), as repo files named by their path below `dir`.
fn walk(root: &Path, dir: &Path) -> Result<Vec<FileSpec>, ConfigError> {
    let meta = std::fs::metadata(dir).map_err(|error| ConfigError::Io {
        path: dir.to_path_buf(),
        error,
    })?;
    if !meta.is_dir() {
        let error = std::io::Error::other("not a directory");
        return Err(ConfigError::Io {
            path: dir.to_path_buf(),
            error,
        });
    }
    let mut files = Vec::new();
    let mut stack = vec![(dir.to_path_buf(), String::new())];
    while let Some((path, prefix)) = stack.pop() {
        for child in read_dir_sorted(&path)? {
            let Some(name) = child.file_name().map(|n| n.to_string_lossy().into_owned()) else {
                continue;
            };
            let rel = if prefix.is_empty() {
                name.clone()
            } else {
                format!("{prefix}/{name}")
            };
            let io = |error| ConfigError::Io {
                path: child.clone(),
                error,
            };
            let lmeta = std::fs::symlink_metadata(&child).map_err(io)?;
            if lmeta.is_dir() {
                if name != ".git" {
                    stack.push((child, rel));
                }
                continue;
            }
            let meta = if lmeta.file_type().is_symlink() {
                let target = child.canonicalize().map_err(io)?;
                let message = if !target.starts_with(root) {
                    Some("symbolic link leads outside the root directory")
                } else if target.is_dir() {
                    Some("symbolic links to directories are not supported")
                } else {
                    None
                };
                if let Some(m) = message {
                    return Err(io(std::io::Error::other(m)));
                }
                std::fs::metadata(&target).map_err(io)?
            } else {
                lmeta
            };
            if !meta.is_file() {
                continue;
            }
            let path = RepoPath::parse(&rel).map_err(|e| io(std::io::Error::other(e)))?;
            files.push(FileSpec {
                path,
                size: meta.len(),
                source: Source::Disk(child.clone()),
                sha256: None,
            });
        }
    }
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_documented_example() {
        let text = r#"
page_size = 2
[[repo]]
id = "acme/big"
gated = "manual"
tokens = ["hf_alice"]
[[repo.branch]]
name = "main"
dir = "models/acme/big"
tags = ["v1.0"]
[[repo.branch.synthetic]]
path = "model-00001-of-00002.safetensors"
size = 1073754112
seed = 7
[[repo]]
id = "gpt2"
kind = "dataset"
private = true
"#;
        let hub = HubToml::parse(text, Path::new("hub.toml")).unwrap();
        assert_eq!(hub.page_size, Some(2));
        assert_eq!(hub.repos[0].gated, GatedDecl::Manual);
        assert_eq!(hub.repos[0].branches[0].synthetic[0].size, 1073754112);
        assert_eq!(hub.repos[1].kind, Some(RepoKind::Dataset));
        assert!(hub.repos[1].private);
    }

    #[test]
    fn errors_name_the_line() {
        let e = HubToml::parse(
            "[[repo]]\nid = \"a/b\"\ngated = true\n",
            Path::new("/r/hub.toml"),
        )
        .unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains("/r/hub.toml") && msg.contains("line 3") && msg.contains("gated must be"),
            "{msg}"
        );
        let e = HubToml::parse("[[repo]]\nid = \"a--b\"\n", Path::new("hub.toml")).unwrap_err();
        assert!(e.to_string().contains("line 2"), "{e}");
        let e = HubToml::parse("[[repo]]\nid = \"a/b\"\nbogus = 1\n", Path::new("hub.toml"))
            .unwrap_err();
        assert!(e.to_string().contains("bogus"), "{e}");
    }

    #[test]
    fn dirs_stay_inside_the_root() {
        assert!(safe_join(Path::new("/r"), Path::new("models/a/b")).is_some());
        assert!(safe_join(Path::new("/r"), Path::new("../x")).is_none());
        assert!(safe_join(Path::new("/r"), Path::new("/etc")).is_none());
    }

    #[test]
    fn walks_folders_and_merges_declarations() {
        let dir = tempfile::tempdir().unwrap();
        let repo = dir.path().join("models/acme/x");
        std::fs::create_dir_all(repo.join("sub/.git")).unwrap();
        std::fs::create_dir_all(repo.join(".git")).unwrap();
        std::fs::write(repo.join("config.json"), "{}").unwrap();
        std::fs::write(repo.join("sub/a.txt"), "a").unwrap();
        std::fs::write(repo.join(".git/HEAD"), "x").unwrap();
        std::fs::create_dir_all(dir.path().join("datasets/o/d")).unwrap();
        std::fs::write(
            dir.path().join("hub.toml"),
            "[[repo]]\nid = \"acme/x\"\nprivate = true\n",
        )
        .unwrap();
        let (specs, page) = load_root(dir.path()).unwrap();
        assert_eq!(page, DEFAULT_PAGE_SIZE);
        assert_eq!(specs.len(), 2);
        let x = &specs[0];
        assert!(x.private);
        let mut paths: Vec<&str> = x.branches[0]
            .files
            .iter()
            .map(|f| f.path.as_str())
            .collect();
        paths.sort();
        assert_eq!(paths, ["config.json", "sub/a.txt"]);
        assert_eq!(specs[1].kind, RepoKind::Dataset);
        assert!(specs[1].branches[0].files.is_empty());
    }

    #[test]
    fn refuses_links_out_of_the_root() {
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("secret"), "s").unwrap();
        let repo = dir.path().join("models/acme/x");
        std::fs::create_dir_all(&repo).unwrap();
        std::os::unix::fs::symlink(outside.path().join("secret"), repo.join("leak")).unwrap();
        let e = load_root(dir.path()).unwrap_err().to_string();
        assert!(e.contains("outside the root"), "{e}");
        std::fs::remove_file(repo.join("leak")).unwrap();
        std::fs::write(dir.path().join("real.txt"), "r").unwrap();
        std::os::unix::fs::symlink(dir.path().join("real.txt"), repo.join("inside")).unwrap();
        let (specs, _) = load_root(dir.path()).unwrap();
        assert_eq!(specs[0].branches[0].files[0].path.as_str(), "inside");
        assert_eq!(specs[0].branches[0].files[0].size, 1);
        std::fs::create_dir(dir.path().join("d")).unwrap();
        std::os::unix::fs::symlink(dir.path().join("d"), repo.join("dirlink")).unwrap();
        let e = load_root(dir.path()).unwrap_err().to_string();
        assert!(e.contains("directories are not supported"), "{e}");
        let bad = load_root(&dir.path().join("missing"))
            .unwrap_err()
            .to_string();
        assert!(bad.contains("root directory"), "{bad}");
    }
}
