//! Command-line entry point of `zigral control`: layered configuration, store and key setup,
//! first-admin bootstrap, then serve until SIGTERM/SIGINT.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;

use crate::bootstrap::{AdminOutcome, ensure_admin, print_generated};
use crate::config::Layer;
use crate::state::AppState;

/// Arguments of `zigral control` (each overrides the TOML file and `ZIGRAL_*` variables).
#[derive(Debug, clap::Args)]
pub struct Args {
    /// TOML configuration file (unknown keys are rejected). Also `ZIGRAL_CONFIG`.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Listen address [default: 127.0.0.1:8000].
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<SocketAddr>,
    /// State directory (database, signing key, supervisor socket) [default: /var/lib/zigral].
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// Supervisor control socket [default: <state-dir>/init.sock].
    #[arg(long, value_name = "PATH")]
    pub init_socket: Option<PathBuf>,
    /// Whether /readyz requires the supervisor to answer [default: true].
    #[arg(long, value_name = "BOOL")]
    pub require_supervisor: Option<bool>,
    /// TLS certificate chain (PEM); serve HTTPS when given with --tls-key.
    #[arg(long, value_name = "FILE")]
    pub tls_cert: Option<PathBuf>,
    /// TLS private key (PEM).
    #[arg(long, value_name = "FILE")]
    pub tls_key: Option<PathBuf>,
    /// Desktop N is X display `:(display-base + N)` (default 0).
    #[arg(long, value_name = "N")]
    pub display_base: Option<u32>,
    /// Desktop N's Chrome DevTools port is `cdp-base + N` on 127.0.0.1 (default 9222).
    #[arg(long, value_name = "PORT")]
    pub cdp_base: Option<u16>,
    /// Longest wait for an X display's connection handshake, ms (default 3000).
    #[arg(long, value_name = "MS")]
    pub x_connect_timeout_ms: Option<u64>,
    /// Log text typed by actions in clear (default false: length and keyed hash only).
    #[arg(long, value_name = "BOOL")]
    pub log_typed_text: Option<bool>,
    /// `managed` (sessions get desktops spawned through zigral-init) or `static` (desktops
    /// exist already; a session uses the one it names) [default: managed].
    #[arg(long, value_name = "MODE")]
    pub desktop_mode: Option<crate::config::DesktopMode>,
    /// `per-user` (a user's sessions share a desktop) or `per-session` [default: per-user].
    #[arg(long, value_name = "POLICY")]
    pub desktop_policy: Option<crate::config::DesktopPolicy>,
    /// Destroy a desktop after this many seconds without actions, viewers or agent turns;
    /// 0 = never [default: 900].
    #[arg(long, value_name = "SECS")]
    pub desktop_idle_secs: Option<u64>,
    /// Desktops kept started for new sessions [default: 1].
    #[arg(long, value_name = "N")]
    pub warm_pool: Option<u32>,
    /// Desktops on this appliance, warm pool included [default: 8].
    #[arg(long, value_name = "N")]
    pub max_desktops: Option<u32>,
    /// Desktops one user may hold [default: 2].
    #[arg(long, value_name = "N")]
    pub max_desktops_per_user: Option<u32>,
    /// The proxy's URL, asked how many viewers each desktop has [default: http://127.0.0.1:6081].
    #[arg(long, value_name = "URL")]
    pub proxy_url: Option<String>,
    /// The built web app served at `/` (e.g. ui/dist/app); none: no web UI.
    #[arg(long, value_name = "DIR")]
    pub web_dir: Option<PathBuf>,
    /// The port browsers open the live view on (the proxy's public port) [default: the port
    /// of --proxy-url].
    #[arg(long, value_name = "PORT")]
    pub live_view_port: Option<u16>,
    /// The minisign public key update bundles must be signed with; none: updates are
    /// unavailable.
    #[arg(long, value_name = "FILE")]
    pub update_key: Option<PathBuf>,
    /// The running slot's `release` file (version, serial, schema, git) [default: none: this
    /// build's version, serial 0].
    #[arg(long, value_name = "FILE")]
    pub release_file: Option<PathBuf>,
    /// Largest accepted update bundle, bytes [default: 536870912 (512 MiB)].
    #[arg(long, value_name = "N")]
    pub update_max_bytes: Option<u64>,
    /// This appliance's name in a fleet: a DNS label such as zigral-3 [default: the host
    /// name].
    #[arg(long, value_name = "NAME")]
    pub appliance_name: Option<String>,
    /// Answer HAProxy's agent-check here, e.g. 0.0.0.0:8001 (empty: off) [default: off].
    #[arg(long, value_name = "ADDR")]
    pub agent_listen: Option<String>,
}

/// Keeps the resident set small: password hashing allocates ~19 MiB per argon2 call, which
/// glibc would otherwise keep in the heap after the first call (its mmap threshold adapts
/// upwards). A fixed threshold makes such blocks mmap'd and returned on free; two arenas are
/// plenty for two worker threads.
fn tune_allocator() {
    // SAFETY: mallopt only changes glibc allocator parameters; it is called once at startup
    // with valid parameter numbers and values, before the server allocates heavily.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 128 * 1024);
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

/// Runs the control plane until shutdown.
pub async fn run(args: Args) -> anyhow::Result<()> {
    tune_allocator();
    let file = match args
        .config
        .clone()
        .or_else(|| std::env::var_os("ZIGRAL_CONFIG").map(PathBuf::from))
    {
        Some(p) => Layer::from_file(&p)?,
        None => Layer::default(),
    };
    let env = Layer::from_env(std::env::vars())?;
    let flags = Layer {
        listen: args.listen,
        state_dir: args.state_dir,
        init_socket: args.init_socket,
        require_supervisor: args.require_supervisor,
        tls_cert: args.tls_cert,
        tls_key: args.tls_key,
        display_base: args.display_base,
        cdp_base: args.cdp_base,
        x_connect_timeout_ms: args.x_connect_timeout_ms,
        log_typed_text: args.log_typed_text,
        desktop_mode: args.desktop_mode,
        desktop_policy: args.desktop_policy,
        desktop_idle_secs: args.desktop_idle_secs,
        warm_pool: args.warm_pool,
        max_desktops: args.max_desktops,
        max_desktops_per_user: args.max_desktops_per_user,
        proxy_url: args.proxy_url,
        web_dir: args.web_dir,
        live_view_port: args.live_view_port,
        update_key: args.update_key,
        release_file: args.release_file,
        update_max_bytes: args.update_max_bytes,
        appliance_name: args.appliance_name,
        agent_listen: args.agent_listen,
        ..Layer::default()
    };
    let cfg = file.overlay(env).overlay(flags).resolve()?;
    tracing::debug!(config = ?cfg, "configuration");

    std::fs::create_dir_all(&cfg.state_dir)
        .with_context(|| format!("cannot create state dir {}", cfg.state_dir.display()))?;
    let store = zigral_store::Store::open_in(&cfg.state_dir)?;
    let key = zigral_token::SigningKey::load_or_create(&cfg.state_dir)?;
    let tls = match (&cfg.tls_cert, &cfg.tls_key) {
        (Some(c), Some(k)) => Some(crate::server::load_tls(c, k)?),
        _ => None,
    };
    let listener = tokio::net::TcpListener::bind(cfg.listen)
        .await
        .with_context(|| format!("cannot listen on {}", cfg.listen))?;
    let local = listener.local_addr()?;
    // The fleet's capacity agent: a port that cannot be had stops the start, like the API's.
    let agent_listener = crate::fleet::bind_agent(&cfg).await?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    let url = format!("{scheme}://{local}/");

    match ensure_admin(&store, cfg.admin_password.as_deref()).await? {
        AdminOutcome::Generated(p) => print_generated(&p, &url, &cfg.admin_banner),
        AdminOutcome::CreatedFromConfig => {
            tracing::info!("created administrator 'admin' with the configured password")
        }
        AdminOutcome::Exists => {}
    }
    if !cfg.fleet.users.is_empty() {
        let r =
            crate::fleet_auth::sync_users(&store, &cfg.fleet.users, zigral_store::now_ms()).await?;
        tracing::info!(
            created = r.created,
            updated = r.updated,
            unchanged = r.unchanged,
            "fleet users brought in line with fleet_users"
        );
    }

    let state = AppState::new(cfg, store.clone(), key);
    let _agent = match agent_listener {
        Some(l) => Some(crate::fleet::serve_agent(l, state.clone())?),
        None => None,
    };
    // Managed mode: reconcile with zigral-init, fill the warm pool, reap idle desktops.
    state.vdi().start();
    // Recordings whose ffmpeg kept running while this process was down are adopted.
    let adopt = state.clone();
    tokio::spawn(async move { adopt.recordings().adopt(&adopt).await });
    // Bundles dropped into <state>/updates/, and the outcome of the updater's runs.
    crate::update::start_watcher(state.clone());
    let purge = store.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(3600));
        loop {
            tick.tick().await;
            match purge.purge_expired_tokens(zigral_store::now_ms()).await {
                Ok(n) if n > 0 => tracing::info!(count = n, "purged expired tokens"),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "cannot purge expired tokens"),
            }
        }
    });
    tracing::info!(%url, appliance = %state.config().appliance_name, "zigral control listening");
    let shutdown = async {
        use tokio::signal::unix::{SignalKind, signal};
        let (Ok(mut term), Ok(mut int)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) else {
            return std::future::pending().await;
        };
        tokio::select! {
            _ = term.recv() => {},
            _ = int.recv() => {},
        }
        tracing::info!("shutting down");
    };
    match tls {
        Some(t) => crate::server::serve_tls(listener, t, state, shutdown).await?,
        None => crate::server::serve(listener, state, shutdown).await?,
    }
    Ok(())
}
