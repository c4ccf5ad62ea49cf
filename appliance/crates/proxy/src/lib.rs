//! The WebSocket→VNC proxy (`zigral proxy`): relays noVNC connections to a desktop's x11vnc.
//! Filled in by the proxy issue.

pub mod cli {
    //! Command-line entry point of `zigral proxy`.

    /// Arguments of `zigral proxy`.
    #[derive(Debug, clap::Args)]
    pub struct Args {}

    /// Runs the proxy until shutdown.
    pub async fn run(_args: Args) -> anyhow::Result<()> {
        anyhow::bail!("zigral proxy is not built yet")
    }
}
