//! Command-line entry point of `zigral proxy`: websockify-compatible positional arguments
//! (`LISTEN TARGET`) plus token routing, limits and TLS options.

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use tracing::info;

use crate::config::{Config, OriginPolicy, Routing, parse_listen, parse_target};
use crate::server::{Proxy, serve};

/// Arguments of `zigral proxy`.
///
/// Drop-in: `zigral proxy 6081 localhost:5900` relays to one fixed VNC server without
/// authentication (loopback listeners only, unless `--force`). Token mode:
/// `zigral proxy --state-dir DIR 6081` routes each connection to the desktop named by its
/// signed token (`?token=…`), desktop N → `--vnc-host`:(`--vnc-base` + N), accepted only
/// while the token's lease matches `<state-dir>/leases/N` (see [`crate::server`]); a control
/// token sends input only while `<state-dir>/control/N` allows it (see [`crate::control`]).
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Where to listen: `[host:]port`. A bare port binds 127.0.0.1.
    #[arg(value_name = "LISTEN")]
    pub listen: String,
    /// Fixed VNC target `host:port` or `unix:/path` (no-auth mode). Omit with --state-dir.
    #[arg(value_name = "TARGET")]
    pub target: Option<String>,
    /// Serve static files (noVNC, the UI) from this directory on the same port.
    #[arg(long, value_name = "DIR")]
    pub web: Option<PathBuf>,
    /// Token mode: state directory holding `proxy-signing.key` (created if missing) and the
    /// desktops' lease and control files (`leases/N`, `control/N`).
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// Token mode: VNC port of desktop 0; desktop N is at vnc-base + N.
    #[arg(long, default_value_t = 5900)]
    pub vnc_base: u16,
    /// Token mode: host of the desktops' VNC servers.
    #[arg(long, default_value = "127.0.0.1")]
    pub vnc_host: IpAddr,
    /// Fixed-target mode without authentication (implied by giving TARGET).
    #[arg(long)]
    pub no_auth: bool,
    /// Allow an unauthenticated proxy to listen on a non-loopback address.
    #[arg(long)]
    pub force: bool,
    /// TLS certificate chain (PEM). Plain and TLS are both accepted on the port.
    #[arg(long, value_name = "PEM")]
    pub cert: Option<PathBuf>,
    /// TLS private key (PEM); defaults to the --cert file.
    #[arg(long, value_name = "PEM", requires = "cert")]
    pub key: Option<PathBuf>,
    /// With --cert: refuse plain (non-TLS) connections.
    #[arg(long, requires = "cert")]
    pub ssl_only: bool,
    /// Browser origin allowed to open WebSockets (repeatable; `*` = any; `http://*:8000` = the
    /// proxy's own host name at port 8000). The proxy's own origin and clients without an
    /// Origin header are always allowed.
    #[arg(long = "allow-origin", value_name = "ORIGIN")]
    pub allow_origin: Vec<String>,
    /// Most simultaneous connections (0 = unlimited).
    #[arg(long, default_value_t = 4096)]
    pub max_connections: usize,
    /// Most simultaneous connections from one IP address (0 = unlimited).
    #[arg(long, default_value_t = 512)]
    pub max_per_ip: usize,
    /// Seconds between WebSocket pings (RTT, liveness); 0 = off.
    #[arg(long, default_value_t = 20.0)]
    pub heartbeat: f64,
    /// Close a connection whose client sent nothing (not even a pong) or accepted no data for
    /// this many seconds; 0 = never.
    #[arg(long, default_value_t = 60.0)]
    pub idle_timeout: f64,
    /// Largest client→server WebSocket frame in bytes (bigger → close 1009).
    #[arg(long, default_value_t = 4 << 20)]
    pub max_frame: u64,
    /// Seconds to wait for connections to close on SIGTERM/SIGINT.
    #[arg(long, default_value_t = 5.0)]
    pub drain_timeout: f64,
    /// Worker threads. 1 (default) runs the proxy on its own single-threaded runtime, which
    /// gives the lowest latency (no cross-thread wake-ups); more spreads many busy
    /// connections over cores.
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// Token mode: print a viewer URL (`http://LISTEN/?token=…&desktop=N`) with a fresh token
    /// for desktop N (bound to its current lease, if any) and exit, instead of serving. For
    /// `make run` and operators; the URL is a secret until it expires or the lease changes.
    #[arg(long, value_name = "DESKTOP", requires = "state_dir")]
    pub print_url: Option<u32>,
    /// Role of the --print-url token: control or view.
    #[arg(long, default_value = "control", requires = "print_url")]
    pub url_role: String,
    /// Lifetime of the --print-url token in seconds.
    #[arg(long, default_value_t = 8 * 3600, requires = "print_url")]
    pub url_ttl: u64,
}

fn secs(v: f64, what: &str) -> anyhow::Result<Option<Duration>> {
    if !v.is_finite() || v < 0.0 {
        bail!("--{what} must be a non-negative number of seconds");
    }
    Ok((v > 0.0).then(|| Duration::from_secs_f64(v)))
}

impl Args {
    /// Validates the arguments into a server configuration and listen address.
    pub fn to_config(&self) -> anyhow::Result<(std::net::SocketAddr, Config)> {
        let listen = parse_listen(&self.listen)?;
        let routing = match (&self.target, &self.state_dir) {
            (Some(_), Some(_)) => {
                bail!(
                    "give either TARGET (fixed target, no auth) or --state-dir (token routing), not both"
                )
            }
            (None, None) => {
                bail!(
                    "missing TARGET: give TARGET (e.g. localhost:5900) or --state-dir for token routing"
                )
            }
            (Some(t), None) => {
                let target = parse_target(t)?;
                if !listen.ip().is_loopback() && !self.force {
                    bail!(
                        "refusing to serve an unauthenticated proxy on {listen}: listen on 127.0.0.1, \
                         add --force, or use token routing (--state-dir)"
                    );
                }
                Routing::Fixed(target)
            }
            (None, Some(dir)) => {
                if self.no_auth {
                    bail!("--no-auth needs a TARGET and no --state-dir");
                }
                let key = zigral_token::SigningKey::load_or_create(dir)
                    .with_context(|| format!("loading the signing key from {}", dir.display()))?;
                Routing::Token {
                    key: Arc::new(key),
                    vnc_host: self.vnc_host,
                    vnc_base: self.vnc_base,
                    leases: Some(zigral_token::Leases::in_state_dir(dir)),
                    control: Some(zigral_token::ControlFiles::in_state_dir(dir)),
                    live_view: Some(zigral_token::LiveViewFiles::new(dir)),
                }
            }
        };
        let mut cfg = Config::new(routing);
        if let Some(w) = &self.web {
            if !w.is_dir() {
                bail!("--web {}: not a directory", w.display());
            }
            cfg.web_dir = Some(w.clone());
        }
        cfg.origins = if self.allow_origin.iter().any(|o| o == "*") {
            OriginPolicy::Any
        } else {
            let mut list = Vec::new();
            for o in &self.allow_origin {
                let o = o.trim().trim_end_matches('/').to_ascii_lowercase();
                if !(o.starts_with("http://") || o.starts_with("https://")) || o.len() < 10 {
                    bail!("--allow-origin '{o}': expected scheme://host[:port] or '*'");
                }
                list.push(o);
            }
            OriginPolicy::List(list)
        };
        cfg.max_connections = self.max_connections;
        cfg.max_per_ip = self.max_per_ip;
        cfg.heartbeat = secs(self.heartbeat, "heartbeat")?;
        cfg.idle_timeout = secs(self.idle_timeout, "idle-timeout")?;
        cfg.drain_timeout = secs(self.drain_timeout, "drain-timeout")?.unwrap_or_default();
        if self.max_frame < 1024 {
            bail!("--max-frame must be at least 1024 bytes");
        }
        cfg.max_frame = self.max_frame;
        if let Some(cert) = &self.cert {
            cfg.tls = Some(crate::tls::load(cert, self.key.as_deref())?);
            cfg.tls_only = self.ssl_only;
        }
        Ok((listen, cfg))
    }
}

impl Args {
    /// With `--print-url N`: a viewer URL carrying a fresh token for desktop N, bound to the
    /// desktop's current lease (`<state-dir>/leases/N`) when it has one.
    pub fn viewer_url(&self) -> anyhow::Result<Option<String>> {
        let Some(desktop) = self.print_url else {
            return Ok(None);
        };
        let Some(dir) = &self.state_dir else {
            bail!("--print-url needs --state-dir");
        };
        let role: zigral_token::Role = self.url_role.parse()?;
        if self.url_ttl == 0 {
            bail!("--url-ttl must be positive");
        }
        let listen = parse_listen(&self.listen)?;
        let key = zigral_token::SigningKey::load_or_create(dir)
            .with_context(|| format!("loading the signing key from {}", dir.display()))?;
        let lease = zigral_token::read_lease(dir, desktop)
            .with_context(|| format!("reading desktop {desktop}'s lease"))?;
        let (token, _) =
            key.mint_for_lease(desktop, role, "cli", self.url_ttl, lease.as_deref())?;
        let host = if listen.ip().is_unspecified() {
            "127.0.0.1".to_owned()
        } else if listen.is_ipv6() {
            format!("[{}]", listen.ip())
        } else {
            listen.ip().to_string()
        };
        let scheme = if self.cert.is_some() { "https" } else { "http" };
        Ok(Some(format!(
            "{scheme}://{host}:{}/?token={token}&desktop={desktop}",
            listen.port()
        )))
    }
}

/// Raises the soft open-file limit to the hard limit: every connection needs two fds.
fn raise_nofile() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    if let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE)
        && soft < hard
    {
        let _ = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
    }
}

/// Runs the proxy until SIGTERM or SIGINT, then drains, on the one tokio runtime of the
/// process, built here: a current-thread runtime with `--threads 1` (the default: lowest
/// latency), else a multi-thread runtime with that many workers. Call it outside any runtime.
pub fn run(args: Args) -> anyhow::Result<()> {
    if let Some(url) = args.viewer_url()? {
        println!("{url}");
        return Ok(());
    }
    let rt = match args.threads {
        0 => bail!("--threads must be at least 1"),
        1 => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build(),
        n => tokio::runtime::Builder::new_multi_thread()
            .worker_threads(n)
            .enable_all()
            .build(),
    }
    .context("building the proxy runtime")?;
    let r = rt.block_on(run_here(args));
    // Connections still draining after the timeout are dropped, not awaited.
    rt.shutdown_background();
    r
}

async fn run_here(args: Args) -> anyhow::Result<()> {
    let (listen, cfg) = args.to_config()?;
    raise_nofile();
    let mode = match &cfg.routing {
        Routing::Fixed(t) => format!("fixed target {t} (no auth)"),
        Routing::Token {
            vnc_host,
            vnc_base,
            leases,
            ..
        } => match leases {
            Some(l) => format!(
                "token routing to {vnc_host}:{vnc_base}+N, leases in {}",
                l.dir().display()
            ),
            None => format!("token routing to {vnc_host}:{vnc_base}+N"),
        },
    };
    let tls = cfg.tls.is_some();
    let proxy = Proxy::new(cfg)?;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    info!(
        listen = %listener.local_addr()?,
        tls,
        web = ?args.web,
        "zigral proxy ready: {mode}"
    );
    let shutdown = async {
        use tokio::signal::unix::{SignalKind, signal};
        match (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) {
            (Ok(mut t), Ok(mut i)) => {
                tokio::select! {
                    _ = t.recv() => info!("SIGTERM"),
                    _ = i.recv() => info!("SIGINT"),
                }
            }
            _ => std::future::pending().await,
        }
    };
    serve(listener, proxy, shutdown).await?;
    info!("zigral proxy stopped");
    Ok(())
}
