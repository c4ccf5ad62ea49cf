//! zigral-fake-llm: binds `--listen`, prints `listening on ADDR` once it accepts connections,
//! and serves the fake provider until killed. See the library docs for the script format.

use std::io::Write;

use clap::Parser;

/// A fake LLM provider server for tests.
#[derive(Parser)]
#[command(version, about)]
struct Args {
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: std::net::SocketAddr,
    /// The API key requests must carry (x-api-key / Bearer).
    #[arg(
        long,
        env = "FAKE_LLM_API_KEY",
        default_value = "test-key",
        hide_env_values = true
    )]
    api_key: String,
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let args = Args::parse();
    let listener = tokio::net::TcpListener::bind(args.listen).await?;
    let addr = listener.local_addr()?;
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "listening on {addr}")?;
        out.flush()?;
    }
    zigral_fake_llm::serve(
        listener,
        zigral_fake_llm::Config {
            api_key: args.api_key,
        },
    )
    .await
}
