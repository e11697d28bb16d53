//! Hub emulator: an HF-compatible Hub over a directory of repos or seeded synthetic repos, with
//! fault injection and byte counters. Used by tests and simulations, never in production.
//!
//! Two origins: the **hub** ([`Emulator::url`]) answers the API, tree and `/resolve` routes of
//! `hf-hub.md` §3–§5 plus the control routes `GET /_emulator/stats`, `POST /_emulator/faults`
//! and `POST /_emulator/reset`; the **CDN** ([`Emulator::cdn_url`], another port on the same
//! address) serves LFS content at `/cdn/<sha256>`, where the hub's `302`s point. See
//! `docs/hub-emulator.md` for the root directory layout and `hub.toml`.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// The `hfmesh hub-emulator` command line.
pub mod cli;
/// The root directory and `hub.toml`.
pub mod config;
/// The embedded demo repositories.
pub mod demo;
/// Fault settings and the shared bandwidth cap.
pub mod faults;
/// Counters.
pub mod stats;

mod body;
mod parse;
mod routes;
mod store;
mod synthetic;

pub use config::ConfigError;
pub use faults::{ErrorRule, Faults, Truncate};
pub use stats::Stats;

/// How long [`Emulator::shutdown`] lets open connections finish before cutting them.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// What to serve, where, and with which faults.
#[derive(Debug, Clone)]
pub struct EmulatorConfig {
    /// Root directory of repos (plain folders and an optional `hub.toml`); `None` serves the
    /// embedded demo repos ([`demo`]).
    pub root: Option<PathBuf>,
    /// Address of the hub origin; the CDN origin takes another port on the same IP.
    pub listen: SocketAddr,
    /// Initial fault settings.
    pub faults: Faults,
}

impl Default for EmulatorConfig {
    /// The demo repos on `127.0.0.1:0` without faults.
    fn default() -> Self {
        EmulatorConfig {
            root: None,
            listen: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0),
            faults: Faults::default(),
        }
    }
}

/// Why the emulator could not start.
#[derive(Debug, thiserror::Error)]
pub enum EmulatorError {
    /// The root directory or `hub.toml` is unusable.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The declared repos are inconsistent or a file could not be hashed.
    #[error("{0}")]
    Repos(String),
    /// A listener could not be bound (e.g. the port is in use).
    #[error("cannot listen on {addr}: {error}")]
    Bind {
        addr: SocketAddr,
        error: std::io::Error,
    },
}

/// State shared by every handler of both origins.
#[derive(Debug)]
pub(crate) struct Shared {
    store: store::Store,
    stats: stats::Counters,
    faults: faults::FaultState,
    throttle: faults::Throttle,
    hub_url: String,
    cdn_url: String,
    cdn_port: u16,
    page_size: usize,
}

/// A running emulator. Dropping it without [`Emulator::shutdown`] leaves the servers running
/// until the runtime stops.
#[derive(Debug)]
pub struct Emulator {
    shared: Arc<Shared>,
    stop: watch::Sender<bool>,
    servers: Vec<JoinHandle<()>>,
}

impl Emulator {
    /// Loads the repos, binds the hub and CDN listeners and starts serving; returns once both
    /// accept connections.
    pub async fn start(config: EmulatorConfig) -> Result<Emulator, EmulatorError> {
        let (specs, page_size) = match config.root.clone() {
            Some(root) => tokio::task::spawn_blocking(move || config::load_root(&root))
                .await
                .map_err(|e| EmulatorError::Repos(e.to_string()))??,
            None => (demo::demo_repos(), config::DEFAULT_PAGE_SIZE),
        };
        let store = store::Store::build(specs)
            .await
            .map_err(|e| EmulatorError::Repos(e.to_string()))?;
        let bind = |addr: SocketAddr| async move {
            TcpListener::bind(addr)
                .await
                .map_err(|error| EmulatorError::Bind { addr, error })
        };
        let hub = bind(config.listen).await?;
        let cdn = bind(SocketAddr::new(config.listen.ip(), 0)).await?;
        let local = |l: &TcpListener, addr| {
            l.local_addr()
                .map_err(|error| EmulatorError::Bind { addr, error })
        };
        let (hub_addr, cdn_addr) = (local(&hub, config.listen)?, local(&cdn, config.listen)?);
        let shared = Arc::new(Shared {
            store,
            stats: stats::Counters::default(),
            faults: faults::FaultState::new(config.faults),
            throttle: faults::Throttle::new(),
            hub_url: base_url(hub_addr),
            cdn_url: base_url(cdn_addr),
            cdn_port: cdn_addr.port(),
            page_size,
        });
        tracing::info!(hub = %shared.hub_url, cdn = %shared.cdn_url, repos = ?shared.store.summary(), "hub emulator ready");
        let (stop, stopped) = watch::channel(false);
        let servers = vec![
            serve(hub, routes::hub_router(shared.clone()), stopped.clone()),
            serve(cdn, routes::cdn_router(shared.clone()), stopped),
        ];
        Ok(Emulator {
            shared,
            stop,
            servers,
        })
    }

    /// Base URL of the hub origin, e.g. `http://127.0.0.1:41234` (no trailing slash); use it as
    /// `HF_ENDPOINT`.
    pub fn url(&self) -> String {
        self.shared.hub_url.clone()
    }

    /// Base URL of the CDN origin that LFS redirects point to.
    pub fn cdn_url(&self) -> String {
        self.shared.cdn_url.clone()
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> Stats {
        self.shared.stats.snapshot()
    }

    /// Zeroes the counters.
    pub fn reset_stats(&self) {
        self.shared.stats.reset()
    }

    /// Replaces the fault settings (and restarts their counts).
    pub fn set_faults(&self, faults: Faults) {
        self.shared.faults.set(faults)
    }

    /// Stops accepting, lets open requests finish for a short grace period, then cuts them.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        for mut server in self.servers {
            if tokio::time::timeout(SHUTDOWN_GRACE, &mut server)
                .await
                .is_err()
            {
                server.abort();
            }
        }
    }
}

/// `http://addr`, with an unspecified address (`0.0.0.0`, `::`) replaced by loopback.
fn base_url(addr: SocketAddr) -> String {
    let ip = match addr.ip() {
        IpAddr::V4(v4) if v4.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(v6) if v6.is_unspecified() => IpAddr::V6(std::net::Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    format!("http://{}", SocketAddr::new(ip, addr.port()))
}

fn serve(
    listener: TcpListener,
    router: axum::Router,
    mut stopped: watch::Receiver<bool>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let signal = async move {
            let _ = stopped.wait_for(|&s| s).await;
        };
        if let Err(e) = axum::serve(listener, router)
            .with_graceful_shutdown(signal)
            .await
        {
            tracing::error!("hub emulator server failed: {e}");
        }
    })
}
