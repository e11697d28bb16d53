//! The agent's two HTTP faces: the local control API (JSON on a unix socket, versioned under
//! `/v1`) and the metrics endpoint (TCP: `/metrics`, `/healthz`, `/readyz`).
//!
//! Control routes:
//! - `GET /v1/health`: the agent answers.
//! - `GET /v1/ready`: 200 when every preloaded snapshot is present, else 503 with the list.
//! - `GET /v1/status`: node id, addresses, topology, uptime, preload, counters, snapshots held.
//! - `GET /v1/peers`: known peers with topology, RTT and bytes each way.
//! - `GET /v1/holdings`: snapshots held here, with size, pin and last use.
//! - `GET /v1/holdings?peer=ID`: what one node holds, asked live over the transfer protocol:
//!   complete snapshots (files, bytes) and blobs (chunks present of total), as a
//!   `NodeHoldingsReport`. `ID` is a node id or a unique suffix of one (this node's included);
//!   404 for an unknown node, 502 when it does not answer.
//! - `GET /v1/holdings?all=true`: the same for this node and every known peer, asked
//!   concurrently, each within `PEER_HOLDINGS_TIMEOUT`; a list of `NodeHoldingsReport`, this
//!   node first, peers that did not answer included with their `error`.
//! - `GET /v1/who-has?repo=ORG/NAME[:REV]&dataset=BOOL`: the DHT's providers of that snapshot.
//! - `POST /v1/pull` `{"repo": "ORG/NAME[:REV]", "dataset": false}`: pull through the mesh
//!   (concurrent requests for one snapshot share one pull); answers the pull report. With
//!   `?progress=true` or `Accept: application/x-ndjson` the answer streams NDJSON instead:
//!   `{"progress": {"done", "total", "from_peers", "from_hub"}}` lines every 250 ms, then
//!   `{"report": {...}}` or `{"error": "..."}` (see `pull_stream`).
//! - `POST /v1/verify` `{"repo": "ORG/NAME[:REV]" | null, "dataset": false, "repair": true}`:
//!   re-hash those snapshots (all when `repo` is null) and refetch damaged files through the
//!   mesh; answers the verify report.
//! - `POST /v1/pin`, `POST /v1/unpin` `{"repo": "ORG/NAME[:REV]", "dataset": false}`: keep a
//!   snapshot held here out of eviction, or let it go again (the revision is resolved through the
//!   local refs first, then the Hub); 404 when pinning a snapshot not held here.
//! - `POST /v1/evict` (same body): remove that snapshot now; 409 when it is pinned, preloaded
//!   or in use, 404 when it is not held here.
//! - `POST /v1/gc`: apply the eviction policy now (only above the high watermark of the
//!   quota; with no quota, nothing); answers what was evicted and the bytes freed.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use super::daemon::{Daemon, PreloadState};
use super::evict::{EvictError, HoldingReport};
use super::{holdings, pull_stream};
use crate::discovery::{ContentKey, Discovery};
use crate::repo::{RepoKind, RepoRef};

/// The API version prefix.
pub const API_PREFIX: &str = "/v1";

/// `GET /v1/status`.
#[derive(Debug, Serialize, Deserialize)]
pub struct StatusReport {
    /// The node id (a libp2p peer id).
    pub id: String,
    /// libp2p TCP address.
    pub p2p_addr: String,
    /// QUIC UDP address.
    pub quic_addr: String,
    /// Zone label.
    pub zone: Option<String>,
    /// Rack label.
    pub rack: Option<String>,
    /// The cache tree.
    pub cache_dir: String,
    /// Seconds since start.
    pub uptime_secs: f64,
    /// Whether the preload is complete.
    pub ready: bool,
    /// Each preloaded snapshot.
    pub preload: Vec<PreloadEntry>,
    /// Peers known.
    pub peers: u64,
    /// Snapshots held.
    pub snapshots: u64,
    /// Pulls running.
    pub pulls_in_flight: u64,
    /// File bytes from peers since start.
    pub bytes_from_peers: u64,
    /// File bytes from the Hub since start.
    pub bytes_from_hub: u64,
    /// Bytes served to peers since start.
    pub bytes_served: u64,
    /// Chunks from peers that failed BLAKE3 verification since start.
    #[serde(default)]
    pub bad_chunks: u64,
    /// Bytes of blobs in the cache tree.
    pub cache_bytes: u64,
}

/// One preloaded snapshot, as reported.
#[derive(Debug, Serialize, Deserialize)]
pub struct PreloadEntry {
    /// What.
    pub what: String,
    /// `pending`, `ready` or `retrying`.
    pub state: String,
    /// Tries so far.
    pub attempts: u32,
    /// The last error.
    pub last_error: Option<String>,
}

impl From<PreloadState> for PreloadEntry {
    fn from(p: PreloadState) -> Self {
        PreloadEntry {
            what: p.what,
            state: p.state.to_string(),
            attempts: p.attempts,
            last_error: p.last_error,
        }
    }
}

/// One peer in `GET /v1/peers`.
#[derive(Debug, Serialize, Deserialize)]
pub struct PeerReport {
    /// Its id.
    pub id: String,
    /// Its QUIC address.
    pub addr: String,
    /// Zone label.
    pub zone: Option<String>,
    /// Rack label.
    pub rack: Option<String>,
    /// Last RTT, in milliseconds, if a connection was made.
    pub rtt_ms: Option<f64>,
    /// Protocol bytes sent to it.
    pub bytes_sent: u64,
    /// Protocol bytes received from it.
    pub bytes_received: u64,
}

/// One snapshot in `GET /v1/holdings` and `GET /v1/who-has`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SnapshotReport {
    /// `model` or `dataset`.
    pub kind: String,
    /// Repository id.
    pub repo: String,
    /// Commit.
    pub commit: String,
}

/// `GET /v1/who-has` answer.
#[derive(Debug, Serialize, Deserialize)]
pub struct WhoHasReport {
    /// The snapshot asked about (revision resolved to its commit).
    pub snapshot: SnapshotReport,
    /// Nodes that advertise it.
    pub providers: Vec<PeerReport>,
}

/// `POST /v1/pull` body.
#[derive(Debug, Serialize, Deserialize)]
pub struct PullRequest {
    /// `org/name[:rev]`.
    pub repo: String,
    /// Whether it is a dataset.
    #[serde(default)]
    pub dataset: bool,
}

/// An error answer: `{"error": "..."}`.
#[derive(Debug, Serialize, Deserialize)]
pub struct ErrorReport {
    /// One sentence.
    pub error: String,
}

/// Parses `org/name[:rev]` of a model (or a dataset).
fn parse_ref(repo: &str, dataset: bool) -> Result<RepoRef, crate::repo::ParseError> {
    RepoRef::parse(
        repo,
        if dataset {
            RepoKind::Dataset
        } else {
            RepoKind::Model
        },
    )
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (
        status,
        Json(ErrorReport {
            error: message.into(),
        }),
    )
        .into_response()
}

/// Serves the control API on the configured unix socket until the daemon stops.
pub async fn serve_control(daemon: Arc<Daemon>) -> anyhow::Result<()> {
    let path = daemon.config.control_socket.clone();
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    // A socket left by a previous run that died: remove it (a live agent would still answer).
    if path.exists() && std::os::unix::net::UnixStream::connect(&path).is_err() {
        std::fs::remove_file(&path)?;
    }
    let listener = tokio::net::UnixListener::bind(&path).map_err(|e| {
        anyhow::anyhow!(
            "cannot listen on the control socket {}: {e}",
            path.display()
        )
    })?;
    let app = Router::new()
        .route(
            "/v1/health",
            get(|| async { Json(serde_json::json!({"status": "ok"})) }),
        )
        .route("/v1/ready", get(ready))
        .route("/v1/status", get(status))
        .route("/v1/peers", get(peers))
        .route("/v1/holdings", get(holdings))
        .route("/v1/who-has", get(who_has))
        .route("/v1/pull", post(pull))
        .route("/v1/verify", post(verify))
        .route("/v1/pin", post(pin))
        .route("/v1/unpin", post(unpin))
        .route("/v1/evict", post(evict))
        .route("/v1/gc", post(gc))
        .with_state(daemon.clone());
    let stop = daemon.stopping();
    daemon.track(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(stop.cancelled_owned())
            .await;
    });
    Ok(())
}

/// Serves `/metrics`, `/healthz` and `/readyz` on `addr` until the daemon stops.
pub async fn serve_metrics(daemon: Arc<Daemon>, addr: SocketAddr) -> anyhow::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen for metrics on {addr}: {e}"))?;
    let bound = listener.local_addr()?;
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(ready))
        .with_state(daemon.clone());
    let stop = daemon.stopping();
    daemon.track(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(stop.cancelled_owned())
            .await;
    });
    Ok(bound)
}

async fn metrics(State(d): State<Arc<Daemon>>) -> Response {
    let text = d.metrics.render(&d.gauges().await);
    ([("content-type", "text/plain; version=0.0.4")], text).into_response()
}

async fn ready(State(d): State<Arc<Daemon>>) -> Response {
    let preload: Vec<PreloadEntry> = d.preload_states().into_iter().map(Into::into).collect();
    let status = if d.ready() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        Json(serde_json::json!({"ready": d.ready(), "preload": preload})),
    )
        .into_response()
}

async fn status(State(d): State<Arc<Daemon>>) -> Json<StatusReport> {
    let g = d.gauges().await;
    let me = &d.node.mesh.me;
    Json(StatusReport {
        id: me.id.to_string(),
        p2p_addr: d.node.p2p_addr().to_string(),
        quic_addr: me.addr.to_string(),
        zone: me.topology.zone.clone(),
        rack: me.topology.rack.clone(),
        cache_dir: d.config.node.cache_dir.display().to_string(),
        uptime_secs: d.uptime(),
        ready: g.ready,
        preload: d.preload_states().into_iter().map(Into::into).collect(),
        peers: g.peers,
        snapshots: g.snapshots,
        pulls_in_flight: d
            .metrics
            .pulls_in_flight
            .load(std::sync::atomic::Ordering::Relaxed),
        bytes_from_peers: g.bytes_from_peers,
        bytes_from_hub: g.bytes_from_hub,
        bytes_served: g.bytes_served,
        bad_chunks: g.bad_chunks,
        cache_bytes: g.cache_bytes,
    })
}

fn peer_report(d: &Daemon, p: &crate::discovery::NodeInfo) -> PeerReport {
    let stats = d.node.transfer.stats().into_iter().find(|s| s.id == p.id);
    PeerReport {
        id: p.id.to_string(),
        addr: p.addr.to_string(),
        zone: p.topology.zone.clone(),
        rack: p.topology.rack.clone(),
        rtt_ms: stats
            .as_ref()
            .and_then(|s| s.rtt)
            .map(|r| r.as_secs_f64() * 1e3),
        bytes_sent: stats.as_ref().map_or(0, |s| s.bytes_sent),
        bytes_received: stats.as_ref().map_or(0, |s| s.bytes_received),
    }
}

async fn peers(State(d): State<Arc<Daemon>>) -> Json<Vec<PeerReport>> {
    let mut known = d.node.discovery.peers().await;
    known.sort_by_key(|p| p.id);
    Json(known.iter().map(|p| peer_report(&d, p)).collect())
}

/// `GET /v1/holdings` parameters: none for this node's snapshots, `peer` or `all` for the live
/// per-node answer.
#[derive(Deserialize)]
struct HoldingsQuery {
    peer: Option<String>,
    #[serde(default)]
    all: bool,
}

async fn holdings(State(d): State<Arc<Daemon>>, Query(q): Query<HoldingsQuery>) -> Response {
    match (q.peer, q.all) {
        (Some(_), true) => error(
            StatusCode::BAD_REQUEST,
            "ask for one peer or for all, not both",
        ),
        (None, true) => Json(holdings::cluster(&d).await).into_response(),
        (Some(peer), false) => match holdings::lookup(&d, &peer).await {
            Err(e) => error(StatusCode::NOT_FOUND, e.to_string()),
            Ok(node) => {
                let r = holdings::node_report(&d, &node).await;
                match &r.error {
                    Some(e) => error(
                        StatusCode::BAD_GATEWAY,
                        format!("node {} did not answer: {e}", r.id),
                    ),
                    None => Json(r).into_response(),
                }
            }
        },
        (None, false) => Json(local_snapshots(&d)).into_response(),
    }
}

/// The snapshots held here, with size, pin and last use.
fn local_snapshots(d: &Daemon) -> Vec<HoldingReport> {
    d.node
        .mesh
        .store
        .snapshots()
        .iter()
        .map(|id| d.holding(id))
        .collect()
}

#[derive(Deserialize)]
struct WhoHasQuery {
    repo: String,
    #[serde(default)]
    dataset: bool,
}

async fn who_has(State(d): State<Arc<Daemon>>, Query(q): Query<WhoHasQuery>) -> Response {
    let what = match parse_ref(&q.repo, q.dataset) {
        Ok(w) => w,
        Err(e) => return error(StatusCode::BAD_REQUEST, e.to_string()),
    };
    let kind = what.kind;
    let commit = match what.revision.as_commit() {
        Some(c) => c,
        None => match d
            .node
            .mesh
            .hub
            .resolve_revision(what.kind, &what.id, &what.revision)
            .await
        {
            Ok(c) => c,
            Err(e) => return error(StatusCode::BAD_GATEWAY, e.to_string()),
        },
    };
    let key = ContentKey::Snapshot {
        kind,
        repo: what.id.clone(),
        commit: commit.clone(),
    };
    let mut found = match d.node.discovery.providers(key, 256).await {
        Ok(p) => p,
        Err(e) => return error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    };
    found.sort_by_key(|p| p.id);
    let snapshot = SnapshotReport {
        kind: kind.to_string(),
        repo: what.id.to_string(),
        commit: commit.to_string(),
    };
    Json(WhoHasReport {
        snapshot,
        providers: found.iter().map(|p| peer_report(&d, p)).collect(),
    })
    .into_response()
}

/// `POST /v1/pull` parameters.
#[derive(Deserialize)]
struct PullQuery {
    /// Stream progress as NDJSON.
    #[serde(default)]
    progress: bool,
}

async fn pull(
    State(d): State<Arc<Daemon>>,
    Query(q): Query<PullQuery>,
    headers: axum::http::HeaderMap,
    Json(req): Json<PullRequest>,
) -> Response {
    let what = match parse_ref(&req.repo, req.dataset) {
        Ok(w) => w,
        Err(e) => return error(StatusCode::BAD_REQUEST, e.to_string()),
    };
    if q.progress || pull_stream::wants_stream(&headers) {
        return pull_stream::respond(&d, what);
    }
    match d.pull(what).await {
        Ok(report) => Json(report).into_response(),
        Err(e) => error(StatusCode::BAD_GATEWAY, e),
    }
}

async fn verify(
    State(d): State<Arc<Daemon>>,
    Json(req): Json<super::verify::VerifyRequest>,
) -> Response {
    match d.verify(&req).await {
        Ok(report) => Json(report).into_response(),
        Err(e) => error(StatusCode::NOT_FOUND, e),
    }
}

fn evict_error(e: EvictError) -> Response {
    let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    error(status, e.to_string())
}

async fn pin(State(d): State<Arc<Daemon>>, Json(req): Json<PullRequest>) -> Response {
    set_pinned(d, req, true).await
}

async fn unpin(State(d): State<Arc<Daemon>>, Json(req): Json<PullRequest>) -> Response {
    set_pinned(d, req, false).await
}

async fn set_pinned(d: Arc<Daemon>, req: PullRequest, pinned: bool) -> Response {
    let what = match parse_ref(&req.repo, req.dataset) {
        Ok(w) => w,
        Err(e) => return error(StatusCode::BAD_REQUEST, e.to_string()),
    };
    match d.set_pinned(&what, pinned).await {
        Ok(report) => Json(report).into_response(),
        Err(e) => evict_error(e),
    }
}

async fn evict(State(d): State<Arc<Daemon>>, Json(req): Json<PullRequest>) -> Response {
    let what = match parse_ref(&req.repo, req.dataset) {
        Ok(w) => w,
        Err(e) => return error(StatusCode::BAD_REQUEST, e.to_string()),
    };
    match d.evict(&what).await {
        Ok(report) => Json(report).into_response(),
        Err(e) => evict_error(e),
    }
}

async fn gc(State(d): State<Arc<Daemon>>) -> Response {
    match d.gc().await {
        Ok(report) => Json(report).into_response(),
        Err(e) => evict_error(e),
    }
}
