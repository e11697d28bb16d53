//! The agent daemon: start the node, serve the control API and metrics, preload, and shut down
//! in order on SIGTERM.

use crate::config::Config;

/// Runs the agent until SIGINT/SIGTERM.
pub async fn run(cfg: Config) -> anyhow::Result<()> {
    let _ = cfg;
    anyhow::bail!("the daemon is being built")
}
