//! `trees/<commit>.json`: the file listing `huggingface_hub` (≥ 1.22) caches per commit, and that
//! its offline `snapshot_download` uses to check that a snapshot is complete.
//!
//! hfmesh writes it only once a snapshot is complete, byte for byte as Python's
//! `json.dump(data, f, indent=1)` would (`format_version` first, files sorted by path, non-ASCII
//! escaped as `\uXXXX`), so that a tree written by hfmesh and one written by `huggingface_hub`
//! are identical.

use std::collections::BTreeMap;

use serde::Deserialize;

/// The only format version `huggingface_hub` reads.
pub const FORMAT_VERSION: u64 = 1;

/// One file of the listing.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct TreeEntry {
    /// Size of the file content in bytes.
    pub size: u64,
    /// Git object id of the file in the repo (for LFS files: of the pointer).
    pub blob_id: String,
    /// SHA-256 of the content, for LFS files.
    #[serde(default)]
    pub lfs_sha256: Option<String>,
    /// Size recorded in the LFS pointer, for LFS files.
    #[serde(default)]
    pub lfs_size: Option<u64>,
}

#[derive(Deserialize)]
struct TreeFile {
    format_version: u64,
    files: BTreeMap<String, TreeEntry>,
}

/// Renders the listing exactly as `huggingface_hub` writes it.
pub fn render(files: &BTreeMap<String, TreeEntry>) -> String {
    let mut out = String::from("{\n \"format_version\": 1,\n \"files\": {");
    for (i, (path, e)) in files.iter().enumerate() {
        out.push_str(if i == 0 { "\n  " } else { ",\n  " });
        push_json_string(&mut out, path);
        out.push_str(": {\n   \"size\": ");
        out.push_str(&e.size.to_string());
        out.push_str(",\n   \"blob_id\": ");
        push_json_string(&mut out, &e.blob_id);
        if let Some(sha) = &e.lfs_sha256 {
            out.push_str(",\n   \"lfs_sha256\": ");
            push_json_string(&mut out, sha);
            out.push_str(",\n   \"lfs_size\": ");
            out.push_str(&e.lfs_size.map_or_else(|| "null".into(), |s| s.to_string()));
        }
        out.push_str("\n  }");
    }
    out.push_str(if files.is_empty() { "}\n}" } else { "\n }\n}" });
    out
}

/// Parses a listing; `None` when it is not a version-1 listing `huggingface_hub` would use.
pub fn parse(text: &str) -> Option<BTreeMap<String, TreeEntry>> {
    let f: TreeFile = serde_json::from_str(text).ok()?;
    (f.format_version == FORMAT_VERSION).then_some(f.files)
}

/// Appends `s` as a JSON string the way Python's `json` module does with `ensure_ascii=True`.
fn push_json_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            ' '..='~' => out.push(c),
            _ => {
                let mut units = [0u16; 2];
                for u in c.encode_utf16(&mut units) {
                    out.push_str(&format!("\\u{u:04x}"));
                }
            }
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_like_python_json_dump_indent_1() {
        let mut files = BTreeMap::new();
        files.insert(
            "model.safetensors".to_string(),
            TreeEntry {
                size: 1048576,
                blob_id: "9bf2820abd0acc86f31fc02ce312debf25384d12".into(),
                lfs_sha256: Some("30e1".into()),
                lfs_size: Some(1048576),
            },
        );
        files.insert(
            "config.json".to_string(),
            TreeEntry {
                size: 9,
                blob_id: "cb5b".into(),
                lfs_sha256: None,
                lfs_size: None,
            },
        );
        let expected = "{\n \"format_version\": 1,\n \"files\": {\n  \"config.json\": {\n   \"size\": 9,\n   \"blob_id\": \"cb5b\"\n  },\n  \"model.safetensors\": {\n   \"size\": 1048576,\n   \"blob_id\": \"9bf2820abd0acc86f31fc02ce312debf25384d12\",\n   \"lfs_sha256\": \"30e1\",\n   \"lfs_size\": 1048576\n  }\n }\n}";
        assert_eq!(render(&files), expected);
        assert_eq!(parse(expected).unwrap(), files);
        assert_eq!(
            render(&BTreeMap::new()),
            "{\n \"format_version\": 1,\n \"files\": {}\n}"
        );
    }

    #[test]
    fn escapes_like_ensure_ascii() {
        let mut s = String::new();
        push_json_string(&mut s, "dïr/\"q\"\t😀\u{1}");
        assert_eq!(s, "\"d\\u00efr/\\\"q\\\"\\t\\ud83d\\ude00\\u0001\"");
    }

    #[test]
    fn ignores_other_versions() {
        assert!(parse("{\"format_version\": 2, \"files\": {}}").is_none());
        assert!(parse("not json").is_none());
    }
}
