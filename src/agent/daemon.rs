//! The agent daemon: start the node, serve the control API (HTTP + JSON on a unix socket,
//! versioned under `/v1`) and the metrics endpoint (TCP: `/metrics`, `/healthz`, `/readyz`),
//! preload the configured snapshots (each retried with backoff, none blocking the others), and
//! shut down in order on SIGTERM.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::future::{BoxFuture, FutureExt, Shared};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::control;
use super::evict::Evictor;
use super::metrics::{Gauges, Metrics};
use super::pending::Pending;
use super::Node;
use crate::config::Config;
use crate::mesh::MeshReport;
use crate::progress::Watched;
use crate::repo::RepoRef;

/// Backoff of a failing preload: first wait, doubling up to [`PRELOAD_MAX_BACKOFF`].
const PRELOAD_BACKOFF: Duration = Duration::from_secs(2);
/// Longest wait between two tries of a failing preload.
const PRELOAD_MAX_BACKOFF: Duration = Duration::from_secs(300);
/// Longest wait at start for the first peers, so the preload finds their manifests.
const JOIN_WAIT: Duration = Duration::from_secs(10);

type SharedPull = Shared<BoxFuture<'static, Result<MeshReport, String>>>;

/// A pull running for one or more requests, and its progress (which every request sees).
#[derive(Clone)]
struct Inflight {
    id: u64,
    pull: SharedPull,
    progress: Arc<Watched>,
}

/// One request's share of a pull (see [`Daemon::join_pull`]).
pub struct JoinedPull {
    /// The pull's progress, the same for every request that joined it.
    pub progress: Arc<Watched>,
    /// The pull's result.
    pub result: BoxFuture<'static, Result<MeshReport, String>>,
}

/// Where each preloaded snapshot stands.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PreloadState {
    /// `org/name:rev` (datasets prefixed with `dataset `).
    pub what: String,
    /// `pending`, `ready` or `retrying`.
    pub state: &'static str,
    /// Tries so far.
    pub attempts: u32,
    /// The last error, if any.
    pub last_error: Option<String>,
}

/// A running agent.
pub struct Daemon {
    /// The node.
    pub node: Node,
    /// Metrics not kept by the node itself.
    pub metrics: Metrics,
    /// The configuration it runs with.
    pub config: Config,
    /// Quota, eviction and pins.
    pub eviction: Evictor,
    preload: Mutex<Vec<PreloadState>>,
    inflight: Mutex<HashMap<String, Inflight>>,
    next_pull: std::sync::atomic::AtomicU64,
    pending: Pending,
    started: Instant,
    metrics_addr: std::sync::OnceLock<std::net::SocketAddr>,
    stop: CancellationToken,
    tasks: TaskTracker,
}

impl Daemon {
    /// Starts the node, the control API, the metrics endpoint and the preload.
    pub async fn start(config: Config) -> anyhow::Result<Arc<Daemon>> {
        // Process-wide: every partial blob this agent opens from now on.
        crate::store::partial::set_direct_io(config.direct_io);
        let eviction = Evictor::open(&config.node.state_dir)?;
        let env = |k: &str| std::env::var(k).ok();
        let node = if super::fault::corrupt_chunks(&env) {
            tracing::warn!("simulation fault: every chunk served is corrupted");
            Node::start_with(config.node.clone(), |s| {
                Arc::new(super::fault::CorruptChunks(s))
            })
            .await?
        } else {
            Node::start(config.node.clone()).await?
        };
        let pending = Pending::new(&config.node.state_dir);
        let preload = config
            .preload
            .iter()
            .map(|r| PreloadState {
                what: r.to_string(),
                state: "pending",
                attempts: 0,
                last_error: None,
            })
            .collect();
        let daemon = Arc::new(Daemon {
            node,
            metrics: Metrics::default(),
            config,
            eviction,
            preload: Mutex::new(preload),
            inflight: Mutex::new(HashMap::new()),
            next_pull: std::sync::atomic::AtomicU64::new(0),
            pending,
            started: Instant::now(),
            metrics_addr: std::sync::OnceLock::new(),
            stop: CancellationToken::new(),
            tasks: TaskTracker::new(),
        });
        control::serve_control(daemon.clone()).await?;
        if let Some(addr) = daemon.config.metrics_listen {
            let bound = control::serve_metrics(daemon.clone(), addr).await?;
            let _ = daemon.metrics_addr.set(bound);
        }
        let d = daemon.clone();
        daemon.tasks.spawn(async move { d.run_preload().await });
        daemon.tasks.spawn(daemon.clone().run_gc_timer());
        for what in daemon.pending.list() {
            tracing::info!(%what, "resuming a pull interrupted by the last stop");
            let d = daemon.clone();
            daemon.tasks.spawn(async move {
                if let Err(e) = d.pull(what.clone()).await {
                    tracing::warn!(%what, error = %e, "the resumed pull failed");
                }
            });
        }
        Ok(daemon)
    }

    /// Runs until SIGINT/SIGTERM, then shuts down.
    pub async fn run(config: Config) -> anyhow::Result<()> {
        let daemon = Daemon::start(config).await?;
        // Listening before the ready line: a supervisor may signal as soon as it reads it.
        let stop = shutdown_signal();
        let n = &daemon.node;
        println!(
            "hfmesh agent {} p2p={} quic={} control={}",
            n.id(),
            n.p2p_addr(),
            n.transfer.local_addr(),
            daemon.config.control_socket.display()
        );
        stop.await;
        tracing::info!("shutting down");
        daemon.shutdown().await;
        Ok(())
    }

    /// Stops accepting control requests and preloads, then stops the node (draining uploads);
    /// interrupted pulls resume from their chunk records at the next start.
    pub async fn shutdown(&self) {
        self.stop.cancel();
        self.tasks.close();
        self.tasks.wait().await;
        self.node.shutdown().await;
        let _ = std::fs::remove_file(&self.config.control_socket);
    }

    /// Cancelled when the daemon stops.
    pub fn stopping(&self) -> CancellationToken {
        self.stop.clone()
    }

    /// Tracks a background task so shutdown waits for it.
    pub fn track<F: std::future::Future<Output = ()> + Send + 'static>(&self, fut: F) {
        self.tasks.spawn(fut);
    }

    /// The address the metrics endpoint listens on, when it is on.
    pub fn metrics_addr(&self) -> Option<std::net::SocketAddr> {
        self.metrics_addr.get().copied()
    }

    /// Whether every preloaded snapshot is present.
    pub fn ready(&self) -> bool {
        self.preload
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .all(|p| p.state == "ready")
    }

    /// The preload list and where each stands.
    pub fn preload_states(&self) -> Vec<PreloadState> {
        self.preload
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Seconds since start.
    pub fn uptime(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }

    /// Pulls through the mesh. Concurrent requests for the same snapshot share one pull. Each
    /// request counts as a use of the snapshot (for the eviction policy).
    pub async fn pull(self: &Arc<Self>, what: RepoRef) -> Result<MeshReport, String> {
        self.join_pull(what).result.await
    }

    /// Joins the pull of `what`, starting it when none runs: concurrent requests for the same
    /// snapshot share one pull and one progress.
    pub fn join_pull(self: &Arc<Self>, what: RepoRef) -> JoinedPull {
        let key = what.to_string();
        let used = (what.kind, what.id.clone());
        let entry = {
            let mut inflight = self.inflight.lock().unwrap_or_else(|e| e.into_inner());
            inflight
                .entry(key.clone())
                .or_insert_with(|| {
                    let progress = Arc::new(Watched::default());
                    let id = self.next_pull.fetch_add(1, Ordering::Relaxed);
                    let (me, p) = (self.clone(), progress.clone());
                    // Its own task: the pull goes on when every requester has gone away.
                    let task = self.tasks.spawn(async move {
                        let result = me.clone().pull_once(what, p).await;
                        me.forget_pull(&key, id);
                        result
                    });
                    let pull = async move {
                        task.await
                            .unwrap_or_else(|e| Err(format!("the pull task failed: {e}")))
                    }
                    .boxed()
                    .shared();
                    Inflight { id, pull, progress }
                })
                .clone()
        };
        let me = self.clone();
        let pull = entry.pull;
        let result = async move {
            let result = pull.await;
            if let Ok(r) = &result {
                me.record_use((used.0, used.1, r.commit.clone())).await;
            }
            result
        };
        JoinedPull {
            progress: entry.progress,
            result: result.boxed(),
        }
    }

    /// Removes a finished pull from the in-flight map (unless a newer one took its key).
    fn forget_pull(&self, key: &str, id: u64) {
        let mut inflight = self.inflight.lock().unwrap_or_else(|e| e.into_inner());
        if inflight.get(key).is_some_and(|e| e.id == id) {
            inflight.remove(key);
        }
    }

    /// One pull through the mesh, recorded as pending while it runs so that a stop (or a crash)
    /// leaves it to be resumed at the next start. No eviction touches its repository meanwhile,
    /// and a policy pass follows it.
    async fn pull_once(
        self: Arc<Self>,
        what: RepoRef,
        progress: Arc<Watched>,
    ) -> Result<MeshReport, String> {
        if let Err(e) = self.pending.add(&what) {
            tracing::warn!(%what, error = %e, "cannot record the pull; a restart will not resume it");
        }
        let pass = self.eviction.gate.pull(&(what.kind, what.id.clone())).await;
        self.metrics.pulls_in_flight.fetch_add(1, Ordering::Relaxed);
        let started = Instant::now();
        let result = tokio::select! {
            r = self.node.pull(&what, progress) => r,
            _ = self.stop.cancelled() => {
                self.metrics.pulls_in_flight.fetch_sub(1, Ordering::Relaxed);
                return Err(format!("{what}: the agent is stopping; the pull resumes when it starts again"));
            }
        };
        self.pending.remove(&what);
        self.metrics.pulls_in_flight.fetch_sub(1, Ordering::Relaxed);
        let (peers, hub) = result
            .as_ref()
            .map_or((0, 0), |r| (r.bytes_from_peers, r.bytes_from_hub));
        let secs = started.elapsed().as_secs_f64();
        self.metrics.pull_done(
            &what.kind.to_string(),
            what.id.as_str(),
            peers,
            hub,
            secs,
            result.is_ok(),
        );
        drop(pass);
        if let Ok(r) = &result {
            let fresh = (what.kind, what.id.clone(), r.commit.clone());
            let me = self.clone();
            self.track(async move { me.auto_gc(Some(fresh)).await });
        }
        result.map_err(|e| format!("{e:#}"))
    }

    async fn run_preload(self: Arc<Self>) {
        if self.config.preload.is_empty() {
            return;
        }
        if !self.config.node.bootstrap.is_empty() {
            self.wait_for_peers().await;
        }
        let jobs: Vec<_> = self
            .config
            .preload
            .iter()
            .cloned()
            .enumerate()
            .map(|(i, what)| self.clone().preload_one(i, what))
            .collect();
        futures_util::future::join_all(jobs).await;
    }

    async fn preload_one(self: Arc<Self>, index: usize, what: RepoRef) {
        let mut wait = PRELOAD_BACKOFF;
        loop {
            let result = tokio::select! {
                r = self.pull(what.clone()) => r,
                _ = self.stop.cancelled() => return,
            };
            let done = {
                let mut states = self.preload.lock().unwrap_or_else(|e| e.into_inner());
                let s = &mut states[index];
                s.attempts += 1;
                match result {
                    Ok(r) => {
                        let id = (what.kind, what.id.clone(), r.commit.clone());
                        self.eviction.preloaded(index, id);
                        s.state = "ready";
                        s.last_error = None;
                        println!("ready {what} {}", r.snapshot_dir.display());
                        true
                    }
                    Err(e) => {
                        tracing::warn!(%what, error = %e, retry_in = ?wait, "preload failed");
                        s.state = "retrying";
                        s.last_error = Some(e);
                        false
                    }
                }
            };
            if done {
                return;
            }
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = self.stop.cancelled() => return,
            }
            wait = (wait * 2).min(PRELOAD_MAX_BACKOFF);
        }
    }

    async fn wait_for_peers(&self) {
        use crate::discovery::Discovery;
        let deadline = Instant::now() + JOIN_WAIT;
        while self.node.discovery.peers().await.is_empty() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Reads the values of the gauges now.
    pub async fn gauges(&self) -> Gauges {
        use crate::discovery::Discovery;
        let counters = &self.node.mesh.counters;
        let stats = self.node.transfer.stats();
        let (questions_answered, question_blobs) = self.node.transfer.questions_answered();
        let cache_dir = self.config.node.cache_dir.clone();
        let cache_bytes =
            tokio::task::spawn_blocking(move || crate::cache::scan::usage(&cache_dir))
                .await
                .unwrap_or(0);
        Gauges {
            bytes_from_peers: counters.bytes_from_peers.load(Ordering::Relaxed),
            bytes_from_hub: counters.bytes_from_hub.load(Ordering::Relaxed),
            bytes_served: stats.iter().map(|s| s.bytes_sent).sum(),
            bytes_received: stats.iter().map(|s| s.bytes_received).sum(),
            uploads_refused_busy: self.node.transfer.uploads_refused_busy(),
            questions_answered,
            question_blobs,
            bad_chunks: counters.bad_chunks.load(Ordering::Relaxed),
            view_refreshes: counters.view_refreshes.load(Ordering::Relaxed),
            provider_lookups: counters.provider_lookups.load(Ordering::Relaxed),
            peers: self.node.discovery.peers().await.len() as u64,
            cache_bytes,
            snapshots: self.node.mesh.store.snapshots().len() as u64,
            ready: self.ready(),
            hub_requests: self.node.mesh.hub.request_stats().snapshot(),
        }
    }
}

/// Resolves at the first SIGINT or SIGTERM after this call (the handlers are installed now,
/// not when the future is first polled).
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    use tokio::signal::unix::{signal, SignalKind};
    let term = signal(SignalKind::terminate());
    let int = signal(SignalKind::interrupt());
    async move {
        match (term, int) {
            (Ok(mut term), Ok(mut int)) => {
                tokio::select! {
                    _ = int.recv() => {}
                    _ = term.recv() => {}
                }
            }
            _ => std::future::pending().await,
        }
    }
}

/// Runs the agent with `cfg` until SIGINT/SIGTERM (the `hfmesh agent` entry point).
pub async fn run(cfg: Config) -> anyhow::Result<()> {
    Daemon::run(cfg).await
}
