//! File content: find where the Hub serves a file (its `/resolve` URL, or the CDN it redirects
//! to) and open byte ranges of it.

use std::ops::Range;

use percent_encoding::utf8_percent_encode;
use reqwest::{header, Response, StatusCode};
use url::Url;

use super::{HubClient, HubError, HubOp, PATH_SET};
use crate::etag::Etag;
use crate::repo::{CommitId, RepoId, RepoKind, RepoPath};

/// Most redirects followed on the Hub's own origin (renamed repositories) before giving up.
const MAX_HUB_REDIRECTS: usize = 10;

/// Where a file's bytes are served, and what the Hub said about them.
#[derive(Debug, Clone)]
pub struct FileLocation {
    /// URL to GET the content from (the CDN for LFS files on the real Hub).
    pub url: Url,
    /// `X-Linked-Etag`, else `ETag`, normalized.
    pub etag: Option<Etag>,
    /// `X-Linked-Size`, else `Content-Length` of a non-redirect answer.
    pub size: Option<u64>,
}

impl HubClient {
    /// `<endpoint>/[datasets/]<id>/resolve/<commit>/<path>`.
    pub fn resolve_url(
        &self,
        kind: RepoKind,
        id: &RepoId,
        commit: &CommitId,
        path: &RepoPath,
    ) -> Url {
        let path_enc = utf8_percent_encode(path.as_str(), PATH_SET);
        self.url(&format!(
            "{}{id}/resolve/{commit}/{path_enc}",
            kind.url_prefix()
        ))
    }

    /// Asks the Hub where `path` at `commit` is served (`HEAD /resolve`, as `huggingface_hub`
    /// does): redirects on the Hub's origin are followed, a redirect to another origin (the CDN)
    /// is where the content is.
    pub async fn locate(
        &self,
        kind: RepoKind,
        id: &RepoId,
        commit: &CommitId,
        path: &RepoPath,
    ) -> Result<FileLocation, HubError> {
        let ctx = self.context(kind, id, commit.as_str(), Some(path.as_str()));
        let mut url = self.resolve_url(kind, id, commit, path);
        for _ in 0..=MAX_HUB_REDIRECTS {
            let resp = self
                .send(HubOp::Head, &ctx, &url, || {
                    self.authorize(self.manual.head(url.clone()), &url)
                        .header(header::ACCEPT_ENCODING, "identity")
                })
                .await?;
            let h = resp.headers();
            let text = |name: &str| h.get(name).and_then(|v| v.to_str().ok());
            let etag = text("x-linked-etag")
                .or_else(|| text("etag"))
                .and_then(|e| Etag::parse(e).ok());
            let linked_size = text("x-linked-size").and_then(|s| s.parse().ok());
            if !resp.status().is_redirection() {
                let size =
                    linked_size.or_else(|| text("content-length").and_then(|s| s.parse().ok()));
                return Ok(FileLocation { url, etag, size });
            }
            let location =
                text("location").ok_or_else(|| protocol(&url, "redirect without a Location"))?;
            let next = url
                .join(location)
                .map_err(|e| protocol(&url, &format!("bad redirect: {e}")))?;
            if !matches!(next.scheme(), "http" | "https") {
                return Err(protocol(&url, "redirect to a non-http(s) URL"));
            }
            if !self.same_origin(&next) {
                return Ok(FileLocation {
                    url: next,
                    etag,
                    size: linked_size,
                });
            }
            url = next;
        }
        Err(protocol(&url, "too many redirects"))
    }

    /// Opens bytes `range` of a file of `total` bytes served at `url` (a location from
    /// [`HubClient::locate`]); the answer's body is exactly those bytes. Retries like every
    /// request; checks that the server honoured the range.
    pub async fn open_range(
        &self,
        url: &Url,
        range: Range<u64>,
        total: u64,
    ) -> Result<Response, HubError> {
        assert!(
            range.start < range.end && range.end <= total,
            "a non-empty range inside the file"
        );
        let ctx = super::RequestContext {
            repo: url.path().to_string(),
            revision: String::new(),
            path: Some(url.path().to_string()),
            authenticated: self.cfg.token.is_some() && self.same_origin(url),
            repo_url: url.to_string(),
        };
        let whole = range.start == 0 && range.end == total;
        let resp = self
            .send(HubOp::Download, &ctx, url, || {
                let rb = self
                    .authorize(self.follow.get(url.clone()), url)
                    .header(header::ACCEPT_ENCODING, "identity");
                if whole {
                    rb
                } else {
                    rb.header(
                        header::RANGE,
                        format!("bytes={}-{}", range.start, range.end - 1),
                    )
                }
            })
            .await?;
        match resp.status() {
            StatusCode::OK if whole || range.start == 0 => Ok(resp),
            StatusCode::PARTIAL_CONTENT => {
                let cr = resp
                    .headers()
                    .get(header::CONTENT_RANGE)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("");
                let expected = format!("bytes {}-{}/{}", range.start, range.end - 1, total);
                if cr == expected {
                    Ok(resp)
                } else {
                    Err(protocol(
                        url,
                        &format!("asked for `{expected}`, got Content-Range `{cr}`"),
                    ))
                }
            }
            s => Err(protocol(
                url,
                &format!("answered HTTP {s} to a range request"),
            )),
        }
    }
}

fn protocol(url: &Url, what: &str) -> HubError {
    HubError::Protocol {
        url: url.to_string(),
        what: what.to_string(),
    }
}
