//! `zigral`: the appliance binary. Thin: parses the subcommand, sets up logging and hands over
//! to the library crate that owns that service. Each service runs on exactly one tokio runtime:
//! the proxy builds its own (current-thread by default, `--threads N`), the control plane runs
//! on the multi-thread runtime built here.

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "zigral", version, about = "Zigral appliance services")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// WebSocket→VNC proxy (replaces websockify): `zigral proxy [OPTIONS] LISTEN TARGET`.
    Proxy(zigral_proxy::cli::Args),
    /// The control plane: REST API, events, MCP, UI.
    Control(zigral_control::cli::Args),
    /// Makes fleet settings: a signing key (`key KID`), a user entry (`user NAME --role R`).
    #[command(subcommand)]
    Fleet(zigral_control::fleet_tool::FleetCmd),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("ZIGRAL_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        // Under zigral-init stderr is a pipe into the log files: no colour codes there.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    match cli.cmd {
        Cmd::Proxy(args) => zigral_proxy::cli::run(args),
        Cmd::Control(args) => tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?
            .block_on(zigral_control::cli::run(args)),
        Cmd::Fleet(cmd) => {
            zigral_control::fleet_tool::run(cmd, std::io::stdin().lock(), std::io::stdout().lock())
        }
    }
}
