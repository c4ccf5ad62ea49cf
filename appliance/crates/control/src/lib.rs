//! The control plane (`zigral control`): REST API, events, auth over the redb store.
//! Filled in by the control-plane issue.

pub mod cli {
    //! Command-line entry point of `zigral control`.

    /// Arguments of `zigral control`.
    #[derive(Debug, clap::Args)]
    pub struct Args {}

    /// Runs the control plane until shutdown.
    pub async fn run(_args: Args) -> anyhow::Result<()> {
        anyhow::bail!("zigral control is not built yet")
    }
}
