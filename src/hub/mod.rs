//! The Hub client: resolve a revision to its commit, list a snapshot's files, locate and fetch
//! byte ranges of files (following the Hub's redirects to its CDN), with authentication and
//! bounded retries. Correct for huggingface.co and for any other endpoint (the emulator).
//!
//! It knows nothing about peers or the cache tree: callers get typed answers and byte streams.

mod api;
/// Endpoint and token resolution.
pub mod config;
/// Typed errors, one clear sentence each.
pub mod error;
mod files;
/// Backoff policy honouring `Retry-After`.
pub mod retry;
/// Counts of requests by operation and outcome.
pub mod stats;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC};
use reqwest::{header, RequestBuilder, Response, StatusCode};
use url::Url;

pub use config::HubConfig;
pub use error::{HubError, RequestContext};
pub use files::FileLocation;
pub use stats::{HubOp, HubOutcome, HubRequestStats};

use crate::repo::{RepoId, RepoKind};

/// What `huggingface_hub` keeps unescaped in a revision (`quote(rev, safe="")`).
const REVISION_SET: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'_')
    .remove(b'.')
    .remove(b'-')
    .remove(b'~');
/// What it keeps unescaped in a file path (`quote(path)`: `/` is safe).
const PATH_SET: &AsciiSet = &REVISION_SET.remove(b'/');
/// Largest error body we read to quote its message.
const MAX_ERROR_BODY: usize = 64 << 10;
/// Largest JSON answer we accept from an API route (one tree page, repo info).
pub const MAX_JSON_BODY: usize = 64 << 20;

/// A client for one Hub endpoint. Cheap to clone; clones share one [`HubRequestStats`].
#[derive(Debug, Clone)]
pub struct HubClient {
    cfg: HubConfig,
    /// Every request sent, by operation and outcome.
    stats: Arc<HubRequestStats>,
    /// Follows redirects (API calls, file content); drops `Authorization` when leaving the host.
    follow: reqwest::Client,
    /// Never follows redirects (HEAD on `/resolve`, to see where the Hub sends us).
    manual: reqwest::Client,
}

impl HubClient {
    /// Builds a client for the configured endpoint.
    pub fn new(cfg: HubConfig) -> Result<HubClient, reqwest::Error> {
        let builder = || {
            reqwest::Client::builder()
                .user_agent(concat!("hfmesh/", env!("CARGO_PKG_VERSION")))
                .connect_timeout(cfg.connect_timeout)
                .read_timeout(cfg.read_timeout)
                .tcp_nodelay(true)
        };
        let follow = builder()
            .redirect(reqwest::redirect::Policy::limited(10))
            .build()?;
        let manual = builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        Ok(HubClient {
            cfg,
            stats: Arc::default(),
            follow,
            manual,
        })
    }

    /// The configuration in force.
    pub fn config(&self) -> &HubConfig {
        &self.cfg
    }

    /// The requests this client and its clones sent, by operation and outcome.
    pub fn request_stats(&self) -> &HubRequestStats {
        &self.stats
    }

    /// Web page of a repository on this Hub (where a gate's terms are accepted).
    pub fn repo_page(&self, kind: RepoKind, id: &RepoId) -> String {
        format!("{}{}{}", self.base(), kind.url_prefix(), id)
    }

    /// `<endpoint>/` as a string, always ending with `/`.
    fn base(&self) -> String {
        let s = self.cfg.endpoint.as_str();
        if s.ends_with('/') {
            s.to_string()
        } else {
            format!("{s}/")
        }
    }

    fn url(&self, rest: &str) -> Url {
        Url::parse(&format!("{}{}", self.base(), rest))
            .expect("endpoint joined with an encoded path is a URL")
    }

    /// Whether `url` is on the Hub's own origin (then it gets the token).
    fn same_origin(&self, url: &Url) -> bool {
        url.origin() == self.cfg.endpoint.origin()
    }

    /// Adds the bearer token when `url` is on the Hub's origin (never to a CDN).
    fn authorize(&self, rb: RequestBuilder, url: &Url) -> RequestBuilder {
        match &self.cfg.token {
            Some(t) if self.same_origin(url) => rb.bearer_auth(t),
            _ => rb,
        }
    }

    fn context(
        &self,
        kind: RepoKind,
        id: &RepoId,
        revision: &str,
        path: Option<&str>,
    ) -> RequestContext {
        RequestContext {
            repo: id.to_string(),
            revision: revision.to_string(),
            path: path.map(str::to_string),
            authenticated: self.cfg.token.is_some(),
            repo_url: self.repo_page(kind, id),
        }
    }

    /// Sends the request `make` builds, again after 429, 5xx and connection failures as the
    /// retry policy allows, and returns the first answer that is a success or a redirect.
    /// Other answers become a [`HubError`] classified with `ctx`. Every attempt is counted
    /// under `op`.
    async fn send(
        &self,
        op: HubOp,
        ctx: &RequestContext,
        url: &Url,
        make: impl Fn() -> RequestBuilder,
    ) -> Result<Response, HubError> {
        let mut failed = 0u32;
        loop {
            let sent = make().send().await;
            let outcome = match &sent {
                Ok(resp) => HubOutcome::from_status(resp.status().as_u16()),
                Err(_) => HubOutcome::Network,
            };
            self.stats.record(op, outcome);
            let (server_wait, failure) = match sent {
                Ok(resp) if resp.status().is_success() || resp.status().is_redirection() => {
                    return Ok(resp)
                }
                Ok(resp)
                    if resp.status() == StatusCode::TOO_MANY_REQUESTS
                        || resp.status().is_server_error() =>
                {
                    let wait = server_wait(resp.headers());
                    let status = resp.status().as_u16();
                    tracing::debug!(%url, status, ?wait, "Hub asked us to retry");
                    (wait, Failure::Status(status))
                }
                Ok(resp) => return Err(error_from_response(resp, url, ctx).await),
                Err(e) if e.is_connect() || e.is_timeout() || e.is_request() || e.is_body() => {
                    tracing::debug!(%url, error = %e, "request to the Hub failed");
                    (None, Failure::Network(e))
                }
                Err(e) => {
                    return Err(HubError::Network {
                        url: url.to_string(),
                        attempts: failed + 1,
                        source: e,
                    })
                }
            };
            failed += 1;
            match self
                .cfg
                .retry
                .next_delay(failed, server_wait, rand::random::<f64>())
            {
                Some(delay) => tokio::time::sleep(delay).await,
                None => return Err(failure.into_error(url, failed, server_wait)),
            }
        }
    }
}

enum Failure {
    Status(u16),
    Network(reqwest::Error),
}

impl Failure {
    fn into_error(self, url: &Url, attempts: u32, wait: Option<Duration>) -> HubError {
        match self {
            Failure::Status(429) => HubError::RateLimited {
                attempts,
                retry_after_secs: wait.map(|w| w.as_secs()),
            },
            Failure::Status(status) => HubError::Server {
                status,
                attempts,
                url: url.to_string(),
            },
            Failure::Network(source) => HubError::Network {
                url: url.to_string(),
                attempts,
                source,
            },
        }
    }
}

/// The wait a 429/503 answer asks for: `Retry-After`, else the `ratelimit` header's `t=`.
fn server_wait(headers: &header::HeaderMap) -> Option<Duration> {
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    text("retry-after")
        .and_then(|v| retry::parse_retry_after(v, SystemTime::now()))
        .or_else(|| text("ratelimit").and_then(retry::parse_ratelimit_reset))
}

async fn error_from_response(resp: Response, url: &Url, ctx: &RequestContext) -> HubError {
    let status = resp.status();
    let header = |name: &str| {
        resp.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let code = header("x-error-code");
    let message = header("x-error-message");
    let body = read_limited(resp, MAX_ERROR_BODY).await.unwrap_or_default();
    let body_message = json_error_message(&body);
    error::classify(
        status,
        code.as_deref(),
        message.as_deref(),
        &body_message,
        url.as_str(),
        ctx,
    )
}

/// The message of a Hub error body: `{"error": "..."}`, `{"error": [...]}` or
/// `{"errors": [{"message": ...}]}`; else the raw text, shortened.
fn json_error_message(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let Ok(v) = serde_json::from_str::<serde_json::Value>(&text) else {
        return text.chars().take(300).collect();
    };
    let msg = match (&v["error"], &v["errors"]) {
        (serde_json::Value::String(s), _) => s.clone(),
        (serde_json::Value::Array(a), _) => a
            .iter()
            .filter_map(|e| e.as_str())
            .collect::<Vec<_>>()
            .join("; "),
        (_, serde_json::Value::Array(a)) => a
            .iter()
            .filter_map(|e| e["message"].as_str())
            .collect::<Vec<_>>()
            .join("; "),
        _ => String::new(),
    };
    msg.chars().take(300).collect()
}

/// Reads a whole body, refusing bodies over `limit` bytes.
async fn read_limited(mut resp: Response, limit: usize) -> Result<Bytes, ReadError> {
    if resp.content_length().is_some_and(|n| n > limit as u64) {
        return Err(ReadError::TooLarge(limit));
    }
    let mut buf = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(ReadError::Http)? {
        if buf.len() + chunk.len() > limit {
            return Err(ReadError::TooLarge(limit));
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(Bytes::from(buf))
}

#[derive(Debug, thiserror::Error)]
enum ReadError {
    #[error("answer is larger than {0} bytes")]
    TooLarge(usize),
    #[error("{0}")]
    Http(reqwest::Error),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_like_huggingface_hub() {
        let enc = |s: &str, set| percent_encoding::utf8_percent_encode(s, set).to_string();
        assert_eq!(enc("refs/pr/1", REVISION_SET), "refs%2Fpr%2F1");
        assert_eq!(
            enc("dir with space/a#b.txt", PATH_SET),
            "dir%20with%20space/a%23b.txt"
        );
        assert_eq!(enc("v1.0-rc_2~x", REVISION_SET), "v1.0-rc_2~x");
    }

    #[test]
    fn error_bodies_in_every_shape() {
        assert_eq!(
            json_error_message(br#"{"error": "Invalid rev id: x"}"#),
            "Invalid rev id: x"
        );
        assert_eq!(json_error_message(br#"{"error": ["a", "b"]}"#), "a; b");
        assert_eq!(
            json_error_message(br#"{"errors": [{"message": "m"}]}"#),
            "m"
        );
        assert_eq!(json_error_message(b"plain"), "plain");
    }

    #[test]
    fn token_only_goes_to_the_hub_origin() {
        let mut cfg = HubConfig::for_endpoint("http://127.0.0.1:8080").unwrap();
        cfg.token = Some("hf_x".into());
        let c = HubClient::new(cfg).unwrap();
        assert!(c.same_origin(&Url::parse("http://127.0.0.1:8080/api/models/x").unwrap()));
        assert!(!c.same_origin(&Url::parse("http://127.0.0.1:8081/cdn/abc").unwrap()));
        assert_eq!(
            c.repo_page(RepoKind::Dataset, &RepoId::parse("a/b").unwrap()),
            "http://127.0.0.1:8080/datasets/a/b"
        );
    }
}
