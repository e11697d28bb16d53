//! `hfmesh agent`: parse the flags, resolve the configuration, run the daemon.

use crate::config::{Config, FileConfig, Flags};

/// Flags of `hfmesh agent` (each also an `HFMESH_*` variable; see `docs/configuration.md`).
#[derive(Debug, clap::Args)]
pub struct AgentArgs {
    /// Boxed: the flags are large and `AgentArgs` sits in the `Command` enum.
    #[command(flatten)]
    pub flags: Box<Flags>,
}

/// Runs the agent until SIGINT/SIGTERM.
pub async fn run(args: AgentArgs) -> anyhow::Result<()> {
    let env = |k: &str| std::env::var(k).ok();
    let file = FileConfig::load(args.flags.config.as_deref())?;
    let config = Config::resolve(&args.flags, file, &env)?;
    crate::agent::daemon::run(config).await
}
