//! The JSON API: resolve a revision to its commit, list every file of a commit.

use std::collections::HashSet;

use percent_encoding::utf8_percent_encode;
use serde::Deserialize;
use url::Url;

use super::{read_limited, HubClient, HubError, HubOp, MAX_JSON_BODY, REVISION_SET};
use crate::etag::Etag;
use crate::manifest::FileEntry;
use crate::repo::{CommitId, RepoId, RepoKind, RepoPath, Revision};

/// Most files we accept in one snapshot listing.
pub const MAX_FILES: usize = 1_000_000;
/// Most tree pages we follow.
const MAX_PAGES: usize = 10_000;

#[derive(Deserialize)]
struct RepoInfo {
    sha: Option<String>,
}

#[derive(Deserialize)]
struct TreeItem {
    #[serde(rename = "type")]
    kind: String,
    path: String,
    oid: Option<String>,
    size: Option<u64>,
    lfs: Option<LfsItem>,
}

#[derive(Deserialize)]
struct LfsItem {
    oid: String,
    size: u64,
}

impl HubClient {
    /// Resolves a branch, tag or commit to its full commit id
    /// (`GET /api/{kind}s/{id}/revision/{rev}`).
    pub async fn resolve_revision(
        &self,
        kind: RepoKind,
        id: &RepoId,
        rev: &Revision,
    ) -> Result<CommitId, HubError> {
        let rev_enc = utf8_percent_encode(rev.as_str(), REVISION_SET);
        let url = self.url(&format!("api/{}/{id}/revision/{rev_enc}", kind.plural()));
        let ctx = self.context(kind, id, rev.as_str(), None);
        let resp = self
            .send(HubOp::Resolve, &ctx, &url, || {
                self.authorize(self.follow.get(url.clone()), &url)
            })
            .await?;
        let info: RepoInfo = self.json(resp, &url).await?;
        let sha = info
            .sha
            .ok_or_else(|| protocol(&url, "repository info has no `sha`"))?;
        CommitId::parse(&sha).map_err(|e| protocol(&url, &e.to_string()))
    }

    /// Lists every file of `commit`, recursively, following the listing's pages
    /// (`GET /api/{kind}s/{id}/tree/{commit}?recursive=true&expand=false`).
    ///
    /// Every path and etag is validated; duplicate paths, a file that is also a directory, and
    /// LFS sizes that disagree are refused.
    pub async fn list_files(
        &self,
        kind: RepoKind,
        id: &RepoId,
        commit: &CommitId,
    ) -> Result<Vec<FileEntry>, HubError> {
        let mut next = Some(self.url(&format!(
            "api/{}/{id}/tree/{commit}?recursive=true&expand=false",
            kind.plural()
        )));
        let ctx = self.context(kind, id, commit.as_str(), None);
        let mut files = Vec::new();
        let mut pages = 0;
        while let Some(url) = next.take() {
            pages += 1;
            if pages > MAX_PAGES {
                return Err(protocol(&url, "the file listing has too many pages"));
            }
            let resp = self
                .send(HubOp::List, &ctx, &url, || {
                    self.authorize(self.follow.get(url.clone()), &url)
                })
                .await?;
            next = next_link(resp.headers(), &url)?;
            let items: Vec<TreeItem> = self.json(resp, &url).await?;
            for item in items.into_iter().filter(|i| i.kind == "file") {
                files.push(entry_from_item(item, &url)?);
                if files.len() > MAX_FILES {
                    return Err(protocol(
                        &url,
                        "the snapshot lists more than a million files",
                    ));
                }
            }
        }
        check_listing(&files).map_err(|what| protocol(&self.cfg.endpoint, &what))?;
        Ok(files)
    }

    async fn json<T: serde::de::DeserializeOwned>(
        &self,
        resp: reqwest::Response,
        url: &Url,
    ) -> Result<T, HubError> {
        let body = read_limited(resp, MAX_JSON_BODY)
            .await
            .map_err(|e| protocol(url, &e.to_string()))?;
        serde_json::from_slice(&body).map_err(|e| protocol(url, &format!("malformed JSON: {e}")))
    }
}

fn entry_from_item(item: TreeItem, url: &Url) -> Result<FileEntry, HubError> {
    let path = RepoPath::parse(&item.path).map_err(|e| protocol(url, &e.to_string()))?;
    let size = item
        .size
        .ok_or_else(|| protocol(url, &format!("file `{path}` has no size")))?;
    let oid = item
        .oid
        .ok_or_else(|| protocol(url, &format!("file `{path}` has no oid")))?;
    let blob_id = Etag::parse(&oid).map_err(|e| protocol(url, &e.to_string()))?;
    let (etag, lfs) = match item.lfs {
        Some(lfs) if lfs.size != size => {
            return Err(protocol(
                url,
                &format!(
                    "file `{path}`: LFS size {} differs from size {size}",
                    lfs.size
                ),
            ))
        }
        Some(lfs) => (
            Etag::parse(&lfs.oid).map_err(|e| protocol(url, &e.to_string()))?,
            true,
        ),
        None => (blob_id.clone(), false),
    };
    Ok(FileEntry {
        path,
        size,
        etag,
        blob_id: blob_id.to_string(),
        lfs,
    })
}

/// Refuses listings that cannot become a tree: the same path twice, or a file that is also a
/// directory of another file.
fn check_listing(files: &[FileEntry]) -> Result<(), String> {
    let mut paths = HashSet::new();
    for f in files {
        if !paths.insert(f.path.as_str()) {
            return Err(format!("file `{}` is listed twice", f.path));
        }
    }
    for f in files {
        let p = f.path.as_str();
        for (i, _) in p.match_indices('/') {
            if paths.contains(&p[..i]) {
                return Err(format!("`{}` is both a file and a directory", &p[..i]));
            }
        }
    }
    Ok(())
}

/// The `rel="next"` URL of a `Link` header, resolved against the page's URL.
fn next_link(headers: &reqwest::header::HeaderMap, page: &Url) -> Result<Option<Url>, HubError> {
    for value in headers.get_all(reqwest::header::LINK) {
        let Ok(text) = value.to_str() else { continue };
        for link in text.split(',') {
            let mut parts = link.split(';');
            let target = parts.next().unwrap_or("").trim();
            let is_next = parts.any(|p| {
                let p = p.trim().replace(' ', "");
                p == "rel=\"next\"" || p == "rel=next"
            });
            if is_next {
                let raw = target.trim_start_matches('<').trim_end_matches('>');
                let url = page
                    .join(raw)
                    .map_err(|e| protocol(page, &format!("bad next-page link: {e}")))?;
                if !matches!(url.scheme(), "http" | "https") {
                    return Err(protocol(page, "next-page link is not http(s)"));
                }
                return Ok(Some(url));
            }
        }
    }
    Ok(None)
}

fn protocol(url: &Url, what: &str) -> HubError {
    HubError::Protocol {
        url: url.to_string(),
        what: what.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::{HeaderMap, HeaderValue, LINK};

    #[test]
    fn parses_next_links() {
        let page = Url::parse("http://h/api/models/a/b/tree/c?recursive=true").unwrap();
        let mut h = HeaderMap::new();
        assert_eq!(next_link(&h, &page).unwrap(), None);
        h.insert(
            LINK,
            HeaderValue::from_static(
                "<http://h/api/models/a/b/tree/c?recursive=true&cursor=x>; rel=\"next\"",
            ),
        );
        assert_eq!(
            next_link(&h, &page).unwrap().unwrap().as_str(),
            "http://h/api/models/a/b/tree/c?recursive=true&cursor=x"
        );
        h.insert(
            LINK,
            HeaderValue::from_static("<file:///etc/passwd>; rel=\"next\""),
        );
        assert!(next_link(&h, &page).is_err());
    }

    fn item(path: &str, lfs: Option<(&str, u64)>, size: u64) -> TreeItem {
        TreeItem {
            kind: "file".into(),
            path: path.into(),
            oid: Some("cb5b2f69babc53f9145b45ad20b9a075d48717ef".into()),
            size: Some(size),
            lfs: lfs.map(|(oid, size)| LfsItem {
                oid: oid.into(),
                size,
            }),
        }
    }

    #[test]
    fn validates_entries() {
        let url = Url::parse("http://h/").unwrap();
        let sha = "30e14955ebf1352266dc2ff8067e68104607e750abb9d3b36582b8af909fcb58";
        let e = entry_from_item(item("m.safetensors", Some((sha, 5)), 5), &url).unwrap();
        assert!(e.lfs && e.etag.as_str() == sha);
        assert!(
            entry_from_item(item("m", Some((sha, 6)), 5), &url).is_err(),
            "LFS size must agree"
        );
        assert!(entry_from_item(item("../evil", None, 1), &url).is_err());
        assert!(entry_from_item(item("x", Some(("../../etc", 5)), 5), &url).is_err());
    }

    #[test]
    fn refuses_conflicting_listings() {
        let url = Url::parse("http://h/").unwrap();
        let e = |p: &str| entry_from_item(item(p, None, 1), &url).unwrap();
        assert!(check_listing(&[e("a"), e("b/c")]).is_ok());
        assert!(check_listing(&[e("a"), e("a")]).is_err());
        assert!(check_listing(&[e("a"), e("a/b")]).is_err());
    }
}
