//! `hfmesh hub-emulator`: serve the emulator until SIGINT or SIGTERM. The hub base URL is the
//! first line of stdout once both origins accept connections.

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context as _;

use super::{Emulator, EmulatorConfig, Faults};

/// Flags of `hfmesh hub-emulator`.
#[derive(Debug, clap::Args)]
pub struct HubEmulatorArgs {
    /// Directory of repositories to serve (`models/<org>/<name>/`, `datasets/...`, optional
    /// `hub.toml`); without it, the embedded demo repos.
    #[arg(long, env = "HFMESH_EMULATOR_ROOT")]
    pub root: Option<PathBuf>,
    /// Address of the hub origin; the CDN origin takes another port on the same IP.
    #[arg(long, env = "HFMESH_EMULATOR_LISTEN", default_value = "127.0.0.1:0")]
    pub listen: SocketAddr,
    /// Latency added before every response, in milliseconds (overrides the faults file).
    #[arg(long, env = "HFMESH_EMULATOR_LATENCY_MS")]
    pub latency_ms: Option<u64>,
    /// Cap on file-content bytes per second, shared by all clients (overrides the faults file).
    #[arg(long, env = "HFMESH_EMULATOR_BANDWIDTH")]
    pub bandwidth: Option<u64>,
    /// Initial fault settings, as the JSON accepted by `POST /_emulator/faults`.
    #[arg(long, env = "HFMESH_EMULATOR_FAULTS")]
    pub faults: Option<PathBuf>,
}

impl HubEmulatorArgs {
    /// Resolves the flags into a configuration (reads the faults file).
    fn config(self) -> anyhow::Result<EmulatorConfig> {
        let mut faults = match &self.faults {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("reading faults file {}", path.display()))?;
                serde_json::from_str::<Faults>(&text)
                    .with_context(|| format!("faults file {}", path.display()))?
            }
            None => Faults::default(),
        };
        if self.latency_ms.is_some() {
            faults.latency_ms = self.latency_ms;
        }
        if self.bandwidth.is_some() {
            faults.bandwidth_bps = self.bandwidth;
        }
        Ok(EmulatorConfig {
            root: self.root,
            listen: self.listen,
            faults,
        })
    }
}

/// Runs the emulator until interrupted.
pub async fn run(args: HubEmulatorArgs) -> anyhow::Result<()> {
    let emulator = Emulator::start(args.config()?).await?;
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "{}", emulator.url()).context("writing the URL to stdout")?;
        out.flush().context("writing the URL to stdout")?;
    }
    eprintln!(
        "hub emulator: hub {} cdn {} (Ctrl-C to stop)",
        emulator.url(),
        emulator.cdn_url()
    );
    wait_for_signal().await?;
    emulator.shutdown().await;
    Ok(())
}

async fn wait_for_signal() -> anyhow::Result<()> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("installing the SIGTERM handler")?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r.context("waiting for Ctrl-C"),
        _ = term.recv() => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(
        faults: Option<PathBuf>,
        latency_ms: Option<u64>,
        bandwidth: Option<u64>,
    ) -> HubEmulatorArgs {
        HubEmulatorArgs {
            root: None,
            listen: "127.0.0.1:0".parse().unwrap(),
            latency_ms,
            bandwidth,
            faults,
        }
    }

    #[test]
    fn flags_override_the_faults_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("faults.json");
        std::fs::write(
            &file,
            r#"{"latency_ms": 5, "errors": [{"status": 503, "count": 2}]}"#,
        )
        .unwrap();
        let config = args(Some(file.clone()), None, Some(1000)).config().unwrap();
        assert_eq!(config.faults.latency_ms, Some(5));
        assert_eq!(config.faults.bandwidth_bps, Some(1000));
        assert_eq!(config.faults.errors[0].count, Some(2));
        let config = args(Some(file), Some(9), None).config().unwrap();
        assert_eq!(config.faults.latency_ms, Some(9));
        std::fs::write(dir.path().join("bad.json"), r#"{"latency": 5}"#).unwrap();
        let e = args(Some(dir.path().join("bad.json")), None, None)
            .config()
            .unwrap_err();
        assert!(format!("{e:#}").contains("unknown field"), "{e:#}");
    }
}
