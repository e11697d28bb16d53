//! HTTP handlers of both origins: the Hub API (`hf-hub.md` §3–§5, paths parsed by `parse.rs`),
//! the CDN, and the control routes.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};

use super::body::file_response;
use super::faults::Faults;
use super::parse::HubRoute;
use super::stats::Stats;
use super::store::{Branch, Entry, FileData, Hashes, Repo};
use super::Shared;
use crate::etag::Etag;
use crate::repo::{CommitId, RepoId, RepoKind, RepoPath, Revision};

/// The `lastModified` of every repo (the content has no history to date it).
const LAST_MODIFIED: &str = "2026-01-01T00:00:00.000Z";

/// The hub origin: control routes, then everything else through [`hub`].
pub(crate) fn hub_router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/_emulator/stats", get(control_stats))
        .route(
            "/_emulator/faults",
            post(control_faults).get(control_get_faults),
        )
        .route("/_emulator/reset", post(control_reset))
        .fallback(hub)
        .with_state(shared)
}

/// The CDN origin: `GET|HEAD /cdn/<sha256>`.
pub(crate) fn cdn_router(shared: Arc<Shared>) -> Router {
    Router::new().fallback(cdn).with_state(shared)
}

async fn control_stats(State(s): State<Arc<Shared>>) -> Json<Stats> {
    Json(s.stats.snapshot())
}

async fn control_get_faults(State(s): State<Arc<Shared>>) -> Json<Faults> {
    Json(s.faults.get())
}

async fn control_faults(State(s): State<Arc<Shared>>, Json(faults): Json<Faults>) -> StatusCode {
    s.faults.set(faults);
    StatusCode::NO_CONTENT
}

async fn control_reset(State(s): State<Arc<Shared>>) -> StatusCode {
    s.stats.reset();
    StatusCode::NO_CONTENT
}

/// An error answer with `X-Error-Code` and a JSON `{"error": ...}` body (`hf-hub.md` §3.5).
#[derive(Debug)]
pub(crate) struct ApiError {
    status: StatusCode,
    code: Option<&'static str>,
    message: String,
    commit: Option<CommitId>,
    retry_after: Option<u64>,
}

impl ApiError {
    fn new(status: StatusCode, code: Option<&'static str>, message: String) -> Self {
        ApiError {
            status,
            code,
            message,
            commit: None,
            retry_after: None,
        }
    }

    /// Missing or private: 401 anonymous, 404 with a token, like the Hub.
    fn repo_not_found(token: Option<&str>) -> Self {
        match token {
            None => ApiError::new(
                StatusCode::UNAUTHORIZED,
                Some("RepoNotFound"),
                "Invalid username or password.".into(),
            ),
            Some(_) => ApiError::new(
                StatusCode::NOT_FOUND,
                Some("RepoNotFound"),
                "Repository not found".into(),
            ),
        }
    }

    fn revision_not_found(rev: &str) -> Self {
        ApiError::new(
            StatusCode::NOT_FOUND,
            Some("RevisionNotFound"),
            format!("Invalid rev id: {rev}"),
        )
    }

    fn entry_not_found(commit: &CommitId) -> Self {
        let mut e = ApiError::new(
            StatusCode::NOT_FOUND,
            Some("EntryNotFound"),
            "Entry not found".into(),
        );
        e.commit = Some(commit.clone());
        e
    }

    fn gated(repo: &Repo, token: Option<&str>) -> Self {
        let what = format!("Access to {} {} is restricted", repo.kind, repo.id);
        match token {
            None => ApiError::new(
                StatusCode::UNAUTHORIZED,
                Some("GatedRepo"),
                format!("{what}. You must have access to it and be authenticated to access it. Please log in."),
            ),
            Some(_) => ApiError::new(
                StatusCode::FORBIDDEN,
                Some("GatedRepo"),
                format!("{what} and you are not in the authorized list. Ask the repo owner for access."),
            ),
        }
    }

    fn route_not_found() -> Self {
        ApiError::new(StatusCode::NOT_FOUND, None, "Not Found".into())
    }

    fn internal(e: std::io::Error) -> Self {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            None,
            format!("emulator error: {e}"),
        )
    }

    /// An answer chosen by an error rule of the faults.
    fn injected(status: u16, retry_after: Option<u64>) -> Self {
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut e = ApiError::new(status, None, format!("injected fault: {status}"));
        e.retry_after = retry_after;
        e
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut headers = HeaderMap::new();
        if let Some(code) = self.code {
            headers.insert("x-error-code", HeaderValue::from_static(code));
        }
        if let Some(c) = &self.commit {
            headers.insert("x-repo-commit", hv(c.as_str()));
        }
        if let Some(secs) = self.retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        (self.status, headers, Json(json!({ "error": self.message }))).into_response()
    }
}

/// A header value from text that is known to be visible ASCII (hashes, numbers, our URLs).
fn hv(s: &str) -> HeaderValue {
    HeaderValue::from_str(s).unwrap_or_else(|_| HeaderValue::from_static("invalid"))
}

/// Common prologue of every counted request: the latency fault, then the error faults.
async fn before(s: &Shared, path: &str) -> Option<Response> {
    if let Some(latency) = s.faults.latency() {
        tokio::time::sleep(latency).await;
    }
    s.faults
        .pick_error(path)
        .map(|e| ApiError::injected(e.status, e.retry_after_secs).into_response())
}

async fn hub(
    State(s): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    if uri.path().starts_with("/_emulator/") {
        // An unknown control route: not counted, like the control routes themselves.
        return ApiError::route_not_found().into_response();
    }
    let route = HubRoute::parse(&method, uri.path(), |kind, id| s.store.has(kind, id));
    s.stats.request(route.label(&method));
    let response = match before(&s, uri.path()).await {
        Some(r) => r,
        None => serve_hub(&s, route, &method, &uri, &headers)
            .await
            .unwrap_or_else(IntoResponse::into_response),
    };
    s.stats.status(response.status().as_u16());
    response
}

async fn serve_hub(
    s: &Arc<Shared>,
    route: HubRoute,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
) -> Result<Response, ApiError> {
    let token = bearer(headers);
    let query = uri.query().unwrap_or("");
    match route {
        HubRoute::Info { kind, id, rev } => info(s, kind, &id, rev.as_deref(), token, query).await,
        HubRoute::Tree { kind, id, rev, dir } => {
            let repo = find_repo(s, kind, &id, token)?;
            let branch = find_branch(repo, &rev)?;
            tree(s, branch, dir.as_deref(), uri, headers).await
        }
        HubRoute::Resolve {
            kind,
            id,
            rev,
            path,
        } => {
            let repo = find_repo(s, kind, &id, token)?;
            if !repo.may_download(token) {
                return Err(ApiError::gated(repo, token));
            }
            let branch = find_branch(repo, &rev)?;
            resolve(s, branch, &path, method, headers).await
        }
        HubRoute::AgentHarnesses | HubRoute::Other => Err(ApiError::route_not_found()),
    }
}

/// The token of `Authorization: Bearer <token>`.
fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let token = value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("bearer "))?
        .trim();
    (!token.is_empty()).then_some(token)
}

fn find_repo<'a>(
    s: &'a Shared,
    kind: RepoKind,
    id: &str,
    token: Option<&str>,
) -> Result<&'a Arc<Repo>, ApiError> {
    let id = RepoId::parse(id).map_err(|_| ApiError::repo_not_found(token))?;
    match s.store.repo(kind, &id) {
        Some(repo) if repo.may_read(token) => Ok(repo),
        _ => Err(ApiError::repo_not_found(token)),
    }
}

fn find_branch<'a>(repo: &'a Repo, rev: &str) -> Result<&'a Arc<Branch>, ApiError> {
    Revision::parse(rev)
        .ok()
        .and_then(|r| repo.resolve(r.as_str()))
        .ok_or_else(|| ApiError::revision_not_found(rev))
}

/// Whether query parameter `name` is `true` or `1`.
fn query_flag(query: &str, name: &str) -> bool {
    url::form_urlencoded::parse(query.as_bytes())
        .any(|(k, v)| k == name && (v == "true" || v == "1"))
}

async fn info(
    s: &Shared,
    kind: RepoKind,
    id: &str,
    rev: Option<&str>,
    token: Option<&str>,
    query: &str,
) -> Result<Response, ApiError> {
    let repo = find_repo(s, kind, id, token)?;
    let branch = find_branch(repo, rev.unwrap_or("main"))?;
    let files: Vec<&Arc<FileData>> = branch.files().collect();
    let siblings: Vec<Value> = if query_flag(query, "blobs") {
        let hashes = s
            .store
            .hashes_many(&files)
            .await
            .map_err(ApiError::internal)?;
        files
            .iter()
            .zip(hashes)
            .map(|(f, h)| sibling(f, h))
            .collect()
    } else {
        files
            .iter()
            .map(|f| json!({ "rfilename": f.path }))
            .collect()
    };
    let id = repo.id.as_str();
    let mut body = json!({
        "_id": object_id(kind, id),
        "id": id,
        "author": id.split_once('/').map_or(id, |(org, _)| org),
        "sha": branch.commit,
        "private": repo.private,
        "gated": repo.gated.json(),
        "disabled": false,
        "lastModified": LAST_MODIFIED,
        "downloads": 0,
        "likes": 0,
        "tags": [],
        "siblings": siblings,
    });
    if kind == RepoKind::Model {
        body["modelId"] = id.into();
    }
    Ok(Json(body).into_response())
}

/// A deterministic 24-hex `_id` (the Hub's are Mongo object ids).
fn object_id(kind: RepoKind, id: &str) -> String {
    crate::etag::git_blob_id(format!("{kind}/{id}").as_bytes()).as_str()[..24].to_string()
}

fn sibling(f: &FileData, h: &Hashes) -> Value {
    let mut v = json!({ "rfilename": f.path, "size": f.size, "blobId": h.oid });
    if let Some(sha) = &h.sha256 {
        v["lfs"] = json!({ "sha256": sha, "size": f.size, "pointerSize": f.pointer_size(sha) });
    }
    v
}

async fn tree(
    s: &Shared,
    branch: &Branch,
    dir: Option<&str>,
    uri: &Uri,
    headers: &HeaderMap,
) -> Result<Response, ApiError> {
    let query = uri.query().unwrap_or("");
    let dir = match dir {
        Some(d) => Some(RepoPath::parse(d).map_err(|_| ApiError::entry_not_found(&branch.commit))?),
        None => None,
    };
    let entries = branch
        .list(dir.as_ref(), query_flag(query, "recursive"))
        .ok_or_else(|| ApiError::entry_not_found(&branch.commit))?;
    let cursor = url::form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == "cursor")
        .and_then(|(_, v)| v.parse::<usize>().ok())
        .unwrap_or(0);
    let page: Vec<&(&str, &Entry)> = entries.iter().skip(cursor).take(s.page_size).collect();
    let files: Vec<&Arc<FileData>> = page
        .iter()
        .filter_map(|(_, e)| match e {
            Entry::File(f) => Some(f),
            Entry::Dir { .. } => None,
        })
        .collect();
    let mut hashes = s
        .store
        .hashes_many(&files)
        .await
        .map_err(ApiError::internal)?
        .into_iter();
    let expand = query_flag(query, "expand");
    let mut body = Vec::with_capacity(page.len());
    for (path, entry) in &page {
        let mut v = match entry {
            Entry::Dir { oid } => json!({ "type": "directory", "oid": oid, "path": path }),
            Entry::File(f) => {
                let h = hashes
                    .next()
                    .ok_or_else(|| ApiError::internal(std::io::Error::other("hash missing")))?;
                let mut v = json!({ "type": "file", "oid": h.oid, "size": f.size, "path": path });
                if let Some(sha) = &h.sha256 {
                    v["lfs"] =
                        json!({ "oid": sha, "size": f.size, "pointerSize": f.pointer_size(sha) });
                }
                v
            }
        };
        if expand {
            v["lastCommit"] =
                json!({ "id": branch.commit, "title": "Emulated commit", "date": LAST_MODIFIED });
        }
        body.push(v);
    }
    let mut out = HeaderMap::new();
    let next = cursor + page.len();
    if next < entries.len() {
        let mut params: Vec<&str> = query
            .split('&')
            .filter(|p| !p.is_empty() && !p.starts_with("cursor="))
            .collect();
        let cursor_param = format!("cursor={next}");
        params.push(&cursor_param);
        let link = format!(
            "<{}{}?{}>; rel=\"next\"",
            hub_base(s, headers),
            uri.path(),
            params.join("&")
        );
        out.insert(header::LINK, hv(&link));
    }
    Ok((out, Json(Value::Array(body))).into_response())
}

async fn resolve(
    s: &Arc<Shared>,
    branch: &Branch,
    path: &str,
    method: &Method,
    headers: &HeaderMap,
) -> Result<Response, ApiError> {
    let commit = &branch.commit;
    let file = RepoPath::parse(path)
        .ok()
        .and_then(|p| branch.file(&p))
        .ok_or_else(|| ApiError::entry_not_found(commit))?;
    let h = s.store.hashes(file).await.map_err(ApiError::internal)?;
    let mut out = HeaderMap::new();
    out.insert("x-repo-commit", hv(commit.as_str()));
    out.insert(header::ETAG, hv(&format!("\"{}\"", h.oid)));
    if let Some(sha) = &h.sha256 {
        out.insert(
            header::LOCATION,
            hv(&format!("{}/cdn/{sha}", cdn_base(s, headers))),
        );
        out.insert("x-linked-etag", hv(&format!("\"{sha}\"")));
        out.insert("x-linked-size", HeaderValue::from(file.size));
        return Ok((StatusCode::FOUND, out).into_response());
    }
    Ok(file_response(s, file, headers, method == Method::HEAD, out))
}

async fn cdn(
    State(s): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let label = match method {
        Method::GET => "cdn_get",
        Method::HEAD => "cdn_head",
        _ => "other",
    };
    s.stats.request(label);
    let response = match before(&s, uri.path()).await {
        Some(r) => r,
        None => serve_cdn(&s, &method, &uri, &headers)
            .await
            .unwrap_or_else(IntoResponse::into_response),
    };
    s.stats.status(response.status().as_u16());
    response
}

async fn serve_cdn(
    s: &Arc<Shared>,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
) -> Result<Response, ApiError> {
    if method != Method::GET && method != Method::HEAD {
        return Err(ApiError::route_not_found());
    }
    let sha = uri
        .path()
        .strip_prefix("/cdn/")
        .and_then(|h| {
            Etag::parse(h)
                .ok()
                .filter(|e| e.as_str() == h && h.len() == 64)
        })
        .ok_or_else(ApiError::route_not_found)?;
    let file = s
        .store
        .by_sha256(sha.as_str())
        .await
        .ok_or_else(ApiError::route_not_found)?;
    let mut out = HeaderMap::new();
    out.insert(header::ETAG, hv(&format!("\"{sha}\"")));
    Ok(file_response(
        s,
        &file,
        headers,
        method == Method::HEAD,
        out,
    ))
}

/// The `Host` the client used, if it is a plain `host[:port]`.
fn request_host(headers: &HeaderMap) -> Option<&str> {
    let host = headers.get(header::HOST)?.to_str().ok()?;
    let plain = host
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b));
    (plain && !host.is_empty()).then_some(host)
}

/// Base URL of the hub origin as the client reached it.
fn hub_base(s: &Shared, headers: &HeaderMap) -> String {
    request_host(headers).map_or_else(|| s.hub_url.clone(), |h| format!("http://{h}"))
}

/// Base URL of the CDN origin on the host name the client used (so it works behind any address).
fn cdn_base(s: &Shared, headers: &HeaderMap) -> String {
    let name = request_host(headers).map(|h| match h.strip_prefix('[') {
        Some(v6) => format!("[{}]", v6.split(']').next().unwrap_or(v6)),
        None => h.split(':').next().unwrap_or(h).to_string(),
    });
    name.map_or_else(
        || s.cdn_url.clone(),
        |n| format!("http://{n}:{}", s.cdn_port),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_tokens() {
        let mut h = HeaderMap::new();
        assert_eq!(bearer(&h), None);
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer hf_x"),
        );
        assert_eq!(bearer(&h), Some("hf_x"));
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Basic abc"));
        assert_eq!(bearer(&h), None);
    }
}
