//! `hfmesh hub-emulator`: placeholder until the emulator lands.

/// Flags of `hfmesh hub-emulator`.
#[derive(Debug, clap::Args)]
pub struct HubEmulatorArgs {
    /// Directory of repositories to serve.
    #[arg(long)]
    pub root: Option<std::path::PathBuf>,
}

/// Runs the emulator until interrupted.
pub async fn run(_args: HubEmulatorArgs) -> anyhow::Result<()> {
    anyhow::bail!("the hub emulator is not built yet")
}
