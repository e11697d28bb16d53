//! Repository identifiers and references: `org/name[:revision]`, RunPod preload lists, repo
//! kinds, commit ids and in-repo file paths.
//!
//! Everything here is pure: parsing and validation only, no I/O. Every value that leaves this
//! module has been checked, so later code may turn it into a path without further care.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Longest repository id the Hub accepts (`huggingface_hub.utils.validate_repo_id`).
pub const MAX_REPO_ID_LEN: usize = 96;
/// Longest revision name we accept (git ref names are limited by the file system anyway).
pub const MAX_REVISION_LEN: usize = 255;
/// Longest in-repo file path we accept.
pub const MAX_REPO_PATH_LEN: usize = 4096;

/// Why a repository id, revision or path was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("repository id is empty: expected `org/name` or `name`")]
    EmptyId,
    #[error("repository id `{id}` is invalid: {why}")]
    BadId { id: String, why: &'static str },
    #[error("revision `{rev}` is invalid: {why}")]
    BadRevision { rev: String, why: &'static str },
    #[error("file path `{path}` is invalid: {why}")]
    BadPath { path: String, why: &'static str },
    #[error("`{0}` is not a 40-character lowercase hex commit id")]
    BadCommit(String),
}

/// The kind of a Hub repository. It decides the API prefix and the cache folder prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RepoKind {
    Model,
    Dataset,
}

impl RepoKind {
    /// Plural form used in API routes and cache folder names: `models`, `datasets`.
    pub fn plural(self) -> &'static str {
        match self {
            RepoKind::Model => "models",
            RepoKind::Dataset => "datasets",
        }
    }

    /// Prefix of `/resolve` URLs: empty for models, `datasets/` for datasets.
    pub fn url_prefix(self) -> &'static str {
        match self {
            RepoKind::Model => "",
            RepoKind::Dataset => "datasets/",
        }
    }
}

impl fmt::Display for RepoKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RepoKind::Model => "model",
            RepoKind::Dataset => "dataset",
        })
    }
}

/// A validated Hub repository id: `org/name` or a bare `name`.
///
/// Invariant: ASCII letters, digits, `_`, `-` and `.` only; each part starts and ends with a
/// letter, digit or `_`; no `--` and no `..`; at most [`MAX_REPO_ID_LEN`] bytes; at most one `/`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct RepoId(String);

impl RepoId {
    /// Parses and validates a repository id.
    pub fn parse(s: &str) -> Result<Self, ParseError> {
        if s.is_empty() {
            return Err(ParseError::EmptyId);
        }
        let bad = |why| ParseError::BadId {
            id: s.to_string(),
            why,
        };
        if s.len() > MAX_REPO_ID_LEN {
            return Err(bad("longer than 96 characters"));
        }
        if s.contains("--") {
            return Err(bad("`--` is not allowed"));
        }
        if s.contains("..") {
            return Err(bad("`..` is not allowed"));
        }
        if s.ends_with(".git") {
            return Err(bad("must not end with `.git`"));
        }
        let parts: Vec<&str> = s.split('/').collect();
        if parts.len() > 2 {
            return Err(bad("expected `org/name` or `name`, with at most one `/`"));
        }
        for part in &parts {
            if part.is_empty() {
                return Err(bad("the org and the name must not be empty"));
            }
            if !part
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
            {
                return Err(bad("only letters, digits, `_`, `-` and `.` are allowed"));
            }
            let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
            if !word(part.as_bytes()[0]) || !word(part.as_bytes()[part.len() - 1]) {
                return Err(bad(
                    "each part must start and end with a letter, digit or `_`",
                ));
            }
        }
        Ok(RepoId(s.to_string()))
    }

    /// The id as the Hub spells it.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The cache folder name: `models--org--name`, `datasets--name`.
    pub fn folder_name(&self, kind: RepoKind) -> String {
        format!("{}--{}", kind.plural(), self.0.replace('/', "--"))
    }
}

impl fmt::Display for RepoId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for RepoId {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        RepoId::parse(s)
    }
}

impl TryFrom<String> for RepoId {
    type Error = ParseError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        RepoId::parse(&s)
    }
}

impl From<RepoId> for String {
    fn from(id: RepoId) -> String {
        id.0
    }
}

/// A full git commit id: 40 lowercase hex characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct CommitId(String);

impl CommitId {
    /// Parses a commit id; only the full 40-hex lowercase form is accepted.
    pub fn parse(s: &str) -> Result<Self, ParseError> {
        if is_commit_hex(s) {
            Ok(CommitId(s.to_string()))
        } else {
            Err(ParseError::BadCommit(s.chars().take(80).collect()))
        }
    }

    /// The 40 hex characters.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for CommitId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for CommitId {
    type Error = ParseError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        CommitId::parse(&s)
    }
}

impl From<CommitId> for String {
    fn from(c: CommitId) -> String {
        c.0
    }
}

fn is_commit_hex(s: &str) -> bool {
    s.len() == 40 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// A validated revision: a branch, a tag, `refs/pr/N`, or a commit id.
///
/// Invariant: it can be used as a relative path under `refs/`: non-empty `/`-separated segments,
/// none of them `.` or `..`, no control characters, no `\`, at most [`MAX_REVISION_LEN`] bytes.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Revision(String);

impl Revision {
    /// The default branch, `main`.
    pub fn main() -> Self {
        Revision("main".to_string())
    }

    /// Parses and validates a revision.
    pub fn parse(s: &str) -> Result<Self, ParseError> {
        let bad = |why| ParseError::BadRevision {
            rev: s.chars().take(80).collect(),
            why,
        };
        if s.is_empty() {
            return Err(bad("it is empty"));
        }
        if s.len() > MAX_REVISION_LEN {
            return Err(bad("longer than 255 characters"));
        }
        if s.chars().any(|c| c.is_control() || c == '\\' || c == ':') {
            return Err(bad("control characters, `\\` and `:` are not allowed"));
        }
        if s.split('/')
            .any(|seg| seg.is_empty() || seg == "." || seg == "..")
        {
            return Err(bad("empty, `.` or `..` path segments are not allowed"));
        }
        Ok(Revision(s.to_string()))
    }

    /// The revision as given.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The revision as a commit id, when it is a full 40-hex commit.
    pub fn as_commit(&self) -> Option<CommitId> {
        is_commit_hex(&self.0).then(|| CommitId(self.0.clone()))
    }
}

impl fmt::Display for Revision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for Revision {
    type Error = ParseError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Revision::parse(&s)
    }
}

impl From<Revision> for String {
    fn from(r: Revision) -> String {
        r.0
    }
}

impl From<CommitId> for Revision {
    fn from(c: CommitId) -> Self {
        Revision(c.0)
    }
}

/// A reference to a snapshot to fetch: kind, repository and revision (default `main`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct RepoRef {
    pub kind: RepoKind,
    pub id: RepoId,
    pub revision: Revision,
}

impl RepoRef {
    /// Parses `org/name`, `name`, `org/name:revision` (surrounding spaces are ignored).
    pub fn parse(s: &str, kind: RepoKind) -> Result<Self, ParseError> {
        let s = s.trim();
        let (id, revision) = match s.split_once(':') {
            Some((id, rev)) => (id.trim(), Revision::parse(rev.trim())?),
            None => (s, Revision::main()),
        };
        Ok(RepoRef {
            kind,
            id: RepoId::parse(id)?,
            revision,
        })
    }

    /// Parses a RunPod-style list: `"facebook/opt-350m:main, google/flan-t5-base:experimental"`.
    ///
    /// Entries are separated by commas; spaces around entries and empty entries (a trailing
    /// comma) are ignored. The first malformed entry fails the whole list.
    pub fn parse_list(s: &str, kind: RepoKind) -> Result<Vec<Self>, ParseError> {
        s.split(',')
            .map(str::trim)
            .filter(|e| !e.is_empty())
            .map(|e| RepoRef::parse(e, kind))
            .collect()
    }
}

impl fmt::Display for RepoRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.kind == RepoKind::Dataset {
            f.write_str("dataset ")?;
        }
        write!(f, "{}:{}", self.id, self.revision)
    }
}

/// A validated file path inside a repository, as the Hub lists it (`data/train.csv`).
///
/// Invariant: relative, `/`-separated, no empty, `.` or `..` segments, no NUL or control
/// characters, no `\`, at most [`MAX_REPO_PATH_LEN`] bytes. Safe to join under a snapshot
/// directory.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct RepoPath(String);

impl RepoPath {
    /// Parses and validates an in-repo path.
    pub fn parse(s: &str) -> Result<Self, ParseError> {
        let bad = |why| ParseError::BadPath {
            path: s.chars().take(200).collect(),
            why,
        };
        if s.is_empty() {
            return Err(bad("it is empty"));
        }
        if s.len() > MAX_REPO_PATH_LEN {
            return Err(bad("longer than 4096 bytes"));
        }
        if s.starts_with('/') {
            return Err(bad("absolute paths are not allowed"));
        }
        if s.chars().any(|c| c.is_control() || c == '\\') {
            return Err(bad("control characters and `\\` are not allowed"));
        }
        if s.split('/')
            .any(|seg| seg.is_empty() || seg == "." || seg == ".." || seg.len() > 255)
        {
            return Err(bad(
                "empty, `.`, `..` or over-long path segments are not allowed",
            ));
        }
        Ok(RepoPath(s.to_string()))
    }

    /// The path as the Hub spells it.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Number of `/` separators: the depth of the file below the snapshot root.
    pub fn depth(&self) -> usize {
        self.0.bytes().filter(|&b| b == b'/').count()
    }
}

impl fmt::Display for RepoPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for RepoPath {
    type Error = ParseError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        RepoPath::parse(&s)
    }
}

impl From<RepoPath> for String {
    fn from(p: RepoPath) -> String {
        p.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ids_with_and_without_org() {
        assert_eq!(
            RepoId::parse("facebook/opt-350m").unwrap().as_str(),
            "facebook/opt-350m"
        );
        assert_eq!(
            RepoId::parse("gpt2").unwrap().folder_name(RepoKind::Model),
            "models--gpt2"
        );
        let id = RepoId::parse("openai-community/gpt2").unwrap();
        assert_eq!(
            id.folder_name(RepoKind::Model),
            "models--openai-community--gpt2"
        );
        assert_eq!(
            id.folder_name(RepoKind::Dataset),
            "datasets--openai-community--gpt2"
        );
    }

    #[test]
    fn rejects_malformed_ids() {
        for bad in [
            "",
            "/",
            "org/",
            "/name",
            "a/b/c",
            "a--b/c",
            "a/b..c",
            "../x",
            "a b/c",
            "-ab/c",
            "ab/c.",
            "org/name.git",
            "org/na\0me",
            "org/näme",
        ] {
            assert!(RepoId::parse(bad).is_err(), "{bad:?} should be refused");
        }
        let long = format!("org/{}", "a".repeat(93));
        assert!(RepoId::parse(&long).is_err());
        assert!(RepoId::parse(&format!("org/{}", "a".repeat(92))).is_ok());
    }

    #[test]
    fn error_messages_say_what_is_wrong() {
        let e = RepoId::parse("a--b/c").unwrap_err().to_string();
        assert!(e.contains("`--` is not allowed"), "{e}");
        let e = RepoRef::parse("org/name:", RepoKind::Model)
            .unwrap_err()
            .to_string();
        assert!(e.contains("revision") && e.contains("empty"), "{e}");
    }

    #[test]
    fn parses_refs_with_revision() {
        let r = RepoRef::parse("google/flan-t5-base:experimental", RepoKind::Model).unwrap();
        assert_eq!(r.id.as_str(), "google/flan-t5-base");
        assert_eq!(r.revision.as_str(), "experimental");
        let r = RepoRef::parse("gpt2", RepoKind::Dataset).unwrap();
        assert_eq!(r.revision, Revision::main());
        assert_eq!(r.kind, RepoKind::Dataset);
        let r = RepoRef::parse("a/b:refs/pr/1", RepoKind::Model).unwrap();
        assert_eq!(r.revision.as_str(), "refs/pr/1");
        assert!(r.revision.as_commit().is_none());
        let c = "7c3a9f0e2b5d8c1a4f6e9b0d3c2a5f8e1b4d7c90";
        let r = RepoRef::parse(&format!("a/b:{c}"), RepoKind::Model).unwrap();
        assert_eq!(r.revision.as_commit().unwrap().as_str(), c);
    }

    #[test]
    fn parses_runpod_lists() {
        let list = RepoRef::parse_list(
            "facebook/opt-350m:main, google/flan-t5-base:experimental ,gpt2,",
            RepoKind::Model,
        )
        .unwrap();
        let got: Vec<String> = list
            .iter()
            .map(|r| format!("{}:{}", r.id, r.revision))
            .collect();
        assert_eq!(
            got,
            [
                "facebook/opt-350m:main",
                "google/flan-t5-base:experimental",
                "gpt2:main"
            ]
        );
        assert!(RepoRef::parse_list("", RepoKind::Model).unwrap().is_empty());
        assert!(RepoRef::parse_list("ok/one, bad--two/x", RepoKind::Dataset).is_err());
    }

    #[test]
    fn rejects_bad_revisions() {
        for bad in ["", "a/../b", "..", "/main", "main/", "a//b", "x\ny", "a\\b"] {
            assert!(Revision::parse(bad).is_err(), "{bad:?} should be refused");
        }
        assert!(Revision::parse(&"r".repeat(256)).is_err());
        assert!(Revision::parse("feat/x").is_ok());
    }

    #[test]
    fn repo_paths_never_escape() {
        for bad in [
            "",
            "/etc/passwd",
            "../x",
            "a/../../x",
            "a/./b",
            "a//b",
            "a\0b",
            "a\\b",
            "a/",
        ] {
            assert!(RepoPath::parse(bad).is_err(), "{bad:?} should be refused");
        }
        let p = RepoPath::parse("a/b/c.json").unwrap();
        assert_eq!(p.depth(), 2);
        assert!(RepoPath::parse("dir with space/fïle#1.txt").is_ok());
    }

    #[test]
    fn commit_ids_are_full_lowercase_hex() {
        assert!(CommitId::parse("7c3a9f0e2b5d8c1a4f6e9b0d3c2a5f8e1b4d7c90").is_ok());
        assert!(CommitId::parse("7C3A9F0E2B5D8C1A4F6E9B0D3C2A5F8E1B4D7C90").is_err());
        assert!(CommitId::parse("7c3a9f0").is_err());
    }
}
