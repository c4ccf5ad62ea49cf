//! Control-plane configuration: defaults < TOML file < `ZIGRAL_*` environment < command-line
//! flags. Unknown keys in the file are rejected; bad values name the source they came from.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// Effective configuration of `zigral control`.
#[derive(Clone)]
pub struct Config {
    /// Listen address (default 127.0.0.1:8000: the SSH-tunnel dev mode).
    pub listen: SocketAddr,
    /// State directory (database, signing key, supervisor socket).
    pub state_dir: PathBuf,
    /// Supervisor control socket (default `<state_dir>/init.sock`).
    pub init_socket: PathBuf,
    /// Whether `/readyz` requires the supervisor to answer.
    pub require_supervisor: bool,
    /// TLS certificate chain (PEM); TLS is on when both cert and key are set.
    pub tls_cert: Option<PathBuf>,
    /// TLS private key (PEM).
    pub tls_key: Option<PathBuf>,
    /// Password for the first admin (`admin`) when the store has no users yet.
    pub admin_password: Option<String>,
    /// Lifetime of a login session (cookie and bearer), seconds.
    pub login_ttl_secs: u64,
    /// Largest accepted request body, bytes.
    pub max_body_bytes: usize,
    /// Events a websocket client may fall behind before it is dropped.
    pub events_queue: usize,
    /// Default lifetime of minted view/control tokens, seconds.
    pub view_token_ttl_secs: u64,
    /// Where the generated first-admin password is printed: `-` (stdout) or a device/file
    /// such as `/dev/console` (so it reaches the console but not the service log).
    pub admin_banner: PathBuf,
    /// Failed logins per user name (and 4x per client address) allowed per window.
    pub login_max_failures: u32,
    /// Length of the login rate-limit window, seconds.
    pub login_window_secs: u64,
    /// Desktop N is X display `:(display_base + N)`.
    pub display_base: u32,
    /// Desktop N's Chrome listens for CDP on 127.0.0.1:`(cdp_base + N)`.
    pub cdp_base: u16,
    /// Longest wait for an X display's connection handshake, milliseconds (a hung X server
    /// gives `desktop_unavailable` after this instead of stalling requests).
    pub x_connect_timeout_ms: u64,
    /// Write text typed or pasted by actions to the action log in clear. Off by default: the
    /// log then holds its length and an HMAC-SHA256 keyed with `<state_dir>/log-hash.key`.
    pub log_typed_text: bool,
    /// Who creates desktops and how sessions get them.
    pub desktops: DesktopSettings,
    /// Recordings (`<state>/recordings/`) together may take this many MiB; the oldest finished
    /// ones are deleted first.
    pub recordings_max_total_mb: u64,
    /// A recording stops (cleanly, keeping what it wrote) when the state dir's filesystem has
    /// less than this many MiB free, and none starts.
    pub recordings_min_free_mb: u64,
    /// The built web app (`ui/dist/app`) served at `/`; `None`: no web UI (`/` answers 404).
    pub web_dir: Option<PathBuf>,
    /// The port browsers open the live view's WebSocket on (the proxy's public port); `None`:
    /// the port of `desktops.proxy_url` (see [`Config::live_view_port`]).
    pub live_view_port: Option<u16>,
    /// The minisign public key update bundles must be signed with; `None`: updates are
    /// unavailable (see [`crate::update`]).
    pub update_key: Option<PathBuf>,
    /// The running slot's `release` file (`version=`, `serial=`, `schema=`, `git=` lines);
    /// `None` or absent: this build's version, serial 0.
    pub release_file: Option<PathBuf>,
    /// Largest accepted update bundle, bytes.
    pub update_max_bytes: u64,
    /// This appliance's name in a fleet (a DNS label; the fleet routes `/a/<name>/` here).
    /// Default: the host name (see [`crate::fleet::default_name`]).
    pub appliance_name: String,
    /// Where HAProxy's agent-check is answered (see [`crate::fleet`]); `None`: off.
    pub agent_listen: Option<SocketAddr>,
    /// Fleet keys, users and members (see [`crate::fleet_auth`]); empty: not in a fleet.
    pub fleet: crate::fleet_auth::FleetSettings,
}

/// Whether the control plane creates desktops through zigral-init.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DesktopMode {
    /// Each session gets a desktop of its owner, spawned and destroyed through zigral-init's
    /// control socket (the appliance).
    Managed,
    /// Desktops exist already (started by hand or by a test); a session uses the desktop it
    /// names (default 0) and nothing is spawned or destroyed.
    Static,
}

/// Which sessions share a desktop.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DesktopPolicy {
    /// A user's sessions share one desktop.
    PerUser,
    /// Every session gets its own desktop (users with a persistent profile still get one:
    /// Chrome locks its profile).
    PerSession,
}

impl std::str::FromStr for DesktopMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim() {
            "managed" => Ok(DesktopMode::Managed),
            "static" => Ok(DesktopMode::Static),
            o => Err(format!("'{o}': expected managed or static")),
        }
    }
}

impl std::str::FromStr for DesktopPolicy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim() {
            "per-user" => Ok(DesktopPolicy::PerUser),
            "per-session" => Ok(DesktopPolicy::PerSession),
            o => Err(format!("'{o}': expected per-user or per-session")),
        }
    }
}

/// Desktop ownership, pool, idle timeout, quotas and default limits.
#[derive(Debug, Clone)]
pub struct DesktopSettings {
    pub mode: DesktopMode,
    pub policy: DesktopPolicy,
    /// A desktop with no action, viewer or agent turn for this long is destroyed; 0 = never.
    pub idle_secs: u64,
    /// Pre-started desktops kept ready for new sessions.
    pub warm_pool: u32,
    /// Desktops on this appliance, warm pool included.
    pub max_desktops: u32,
    /// Desktops one user may hold (a user's own limit overrides it).
    pub max_per_user: u32,
    /// Default cgroup limits per desktop: thousandths of a CPU, MiB, processes.
    pub millicpus: u64,
    pub memory_mib: u64,
    pub pids: u64,
    /// Longest wait for a new desktop's services to become ready.
    pub ready_timeout_secs: u64,
    /// The proxy's base URL, asked (loopback `/sessions`) how many viewers each desktop has;
    /// empty: viewers are not counted.
    pub proxy_url: String,
}

impl Default for DesktopSettings {
    fn default() -> Self {
        DesktopSettings {
            mode: DesktopMode::Managed,
            policy: DesktopPolicy::PerUser,
            idle_secs: 900,
            warm_pool: 1,
            max_desktops: 8,
            max_per_user: 2,
            millicpus: 2000,
            memory_mib: 4096,
            pids: 4096,
            ready_timeout_secs: 60,
            proxy_url: "http://127.0.0.1:6081".into(),
        }
    }
}

/// Highest desktop number + 1 (zigral-init's private port ranges span 100 ports).
pub const DESKTOP_NUMBERS: u32 = 100;

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("listen", &self.listen)
            .field("state_dir", &self.state_dir)
            .field("init_socket", &self.init_socket)
            .field("require_supervisor", &self.require_supervisor)
            .field("tls_cert", &self.tls_cert)
            .field("tls_key", &self.tls_key)
            .field(
                "admin_password",
                &self.admin_password.as_ref().map(|_| "<set>"),
            )
            .field("login_ttl_secs", &self.login_ttl_secs)
            .field("max_body_bytes", &self.max_body_bytes)
            .field("events_queue", &self.events_queue)
            .field("view_token_ttl_secs", &self.view_token_ttl_secs)
            .field("admin_banner", &self.admin_banner)
            .field("login_max_failures", &self.login_max_failures)
            .field("login_window_secs", &self.login_window_secs)
            .field("display_base", &self.display_base)
            .field("cdp_base", &self.cdp_base)
            .field("x_connect_timeout_ms", &self.x_connect_timeout_ms)
            .field("log_typed_text", &self.log_typed_text)
            .field("desktops", &self.desktops)
            .field("recordings_max_total_mb", &self.recordings_max_total_mb)
            .field("recordings_min_free_mb", &self.recordings_min_free_mb)
            .field("web_dir", &self.web_dir)
            .field("live_view_port", &self.live_view_port)
            .field("update_key", &self.update_key)
            .field("release_file", &self.release_file)
            .field("update_max_bytes", &self.update_max_bytes)
            .field("appliance_name", &self.appliance_name)
            .field("agent_listen", &self.agent_listen)
            .field("fleet", &self.fleet)
            .finish()
    }
}

impl Config {
    /// Defaults, with the state directory given.
    pub fn with_state_dir(state_dir: impl Into<PathBuf>) -> Config {
        let state_dir = state_dir.into();
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 8000)),
            init_socket: state_dir.join("init.sock"),
            state_dir,
            require_supervisor: true,
            tls_cert: None,
            tls_key: None,
            admin_password: None,
            login_ttl_secs: 12 * 3600,
            max_body_bytes: 1024 * 1024,
            events_queue: 256,
            view_token_ttl_secs: 300,
            admin_banner: PathBuf::from("-"),
            login_max_failures: 5,
            login_window_secs: 60,
            display_base: 0,
            cdp_base: 9222,
            x_connect_timeout_ms: 3000,
            log_typed_text: false,
            desktops: DesktopSettings::default(),
            recordings_max_total_mb: 4096,
            recordings_min_free_mb: 256,
            web_dir: None,
            live_view_port: None,
            update_key: None,
            release_file: None,
            update_max_bytes: DEFAULT_UPDATE_MAX_BYTES,
            appliance_name: crate::fleet::default_name(),
            agent_listen: None,
            fleet: Default::default(),
        }
    }

    /// The port browsers open the live view on: `live_view_port` if set, else the port of
    /// `proxy_url` (default 6081), else 6081 when `proxy_url` is empty.
    pub fn live_view_port(&self) -> u16 {
        if let Some(p) = self.live_view_port {
            return p;
        }
        url::Url::parse(&self.desktops.proxy_url)
            .ok()
            .and_then(|u| u.port_or_known_default())
            .unwrap_or(DEFAULT_LIVE_VIEW_PORT)
    }

    /// Whether TLS is configured.
    pub fn tls(&self) -> bool {
        self.tls_cert.is_some()
    }
}

/// One layer of settings; every key optional. Also the TOML file format.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Layer {
    pub listen: Option<SocketAddr>,
    pub state_dir: Option<PathBuf>,
    pub init_socket: Option<PathBuf>,
    pub require_supervisor: Option<bool>,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    pub admin_password: Option<String>,
    pub login_ttl_secs: Option<u64>,
    pub max_body_bytes: Option<usize>,
    pub events_queue: Option<usize>,
    pub view_token_ttl_secs: Option<u64>,
    pub admin_banner: Option<PathBuf>,
    pub login_max_failures: Option<u32>,
    pub login_window_secs: Option<u64>,
    pub display_base: Option<u32>,
    pub cdp_base: Option<u16>,
    pub x_connect_timeout_ms: Option<u64>,
    pub log_typed_text: Option<bool>,
    pub desktop_mode: Option<DesktopMode>,
    pub desktop_policy: Option<DesktopPolicy>,
    pub desktop_idle_secs: Option<u64>,
    pub warm_pool: Option<u32>,
    pub max_desktops: Option<u32>,
    pub max_desktops_per_user: Option<u32>,
    pub desktop_cpus: Option<f64>,
    pub desktop_memory_mib: Option<u64>,
    pub desktop_pids: Option<u64>,
    pub desktop_ready_timeout_secs: Option<u64>,
    pub proxy_url: Option<String>,
    pub recordings_max_total_mb: Option<u64>,
    pub recordings_min_free_mb: Option<u64>,
    pub web_dir: Option<PathBuf>,
    pub live_view_port: Option<u16>,
    pub update_key: Option<PathBuf>,
    pub release_file: Option<PathBuf>,
    pub update_max_bytes: Option<u64>,
    pub appliance_name: Option<String>,
    /// An address such as `127.0.0.1:8001`; empty: off.
    pub agent_listen: Option<String>,
    /// `KID:SECRET` entries (secret).
    pub fleet_keys: Option<String>,
    /// `NAME:ROLE:PHC` entries.
    pub fleet_users: Option<String>,
    /// A file of more `NAME:ROLE:PHC` entries (white-space separated): a list too long for
    /// an environment variable (128 KiB, ~1,300 users).
    pub fleet_users_file: Option<PathBuf>,
    /// Appliance names; `NAME-{A..B}` ranges.
    pub fleet_members: Option<String>,
}

/// Why the configuration could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config file {path}: {message}")]
    File { path: String, message: String },
    #[error("environment variable {var}: {message}")]
    Env { var: String, message: String },
    #[error("{0}")]
    Invalid(String),
}

const DEFAULT_STATE_DIR: &str = "/var/lib/zigral";

/// Default largest update bundle: 512 MiB.
pub const DEFAULT_UPDATE_MAX_BYTES: u64 = 512 << 20;

/// The proxy's default port.
const DEFAULT_LIVE_VIEW_PORT: u16 = 6081;

/// `agent_listen`: empty = off, else an address.
fn parse_agent_listen(v: &str) -> Result<Option<SocketAddr>, String> {
    let v = v.trim();
    if v.is_empty() {
        return Ok(None);
    }
    v.parse().map(Some).map_err(|e| {
        format!("'{v}': {e} (expected an address such as 127.0.0.1:8001, or empty for off)")
    })
}

impl Layer {
    /// Parses a TOML file.
    pub fn from_file(path: &Path) -> Result<Layer, ConfigError> {
        let err = |message: String| ConfigError::File {
            path: path.display().to_string(),
            message,
        };
        let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
        toml::from_str(&text).map_err(|e| err(e.to_string()))
    }

    /// Reads `ZIGRAL_<KEY>` variables (e.g. `ZIGRAL_LISTEN`, `ZIGRAL_ADMIN_PASSWORD`).
    pub fn from_env(
        vars: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Layer, ConfigError> {
        let mut l = Layer::default();
        for (k, v) in vars {
            let Some(key) = k.strip_prefix("ZIGRAL_") else {
                continue;
            };
            let bad = |m: String| ConfigError::Env {
                var: k.clone(),
                message: m,
            };
            fn num<T: std::str::FromStr>(v: &str) -> Result<T, String>
            where
                T::Err: std::fmt::Display,
            {
                v.trim().parse::<T>().map_err(|e| format!("'{v}': {e}"))
            }
            match key {
                "LISTEN" => l.listen = Some(num(&v).map_err(bad)?),
                "STATE_DIR" => l.state_dir = Some(v.into()),
                "INIT_SOCKET" => l.init_socket = Some(v.into()),
                "REQUIRE_SUPERVISOR" => l.require_supervisor = Some(num(&v).map_err(bad)?),
                "TLS_CERT" => l.tls_cert = Some(v.into()),
                "TLS_KEY" => l.tls_key = Some(v.into()),
                "ADMIN_PASSWORD" => l.admin_password = Some(v),
                "LOGIN_TTL_SECS" => l.login_ttl_secs = Some(num(&v).map_err(bad)?),
                "MAX_BODY_BYTES" => l.max_body_bytes = Some(num(&v).map_err(bad)?),
                "EVENTS_QUEUE" => l.events_queue = Some(num(&v).map_err(bad)?),
                "VIEW_TOKEN_TTL_SECS" => l.view_token_ttl_secs = Some(num(&v).map_err(bad)?),
                "ADMIN_BANNER" => l.admin_banner = Some(v.into()),
                "LOGIN_MAX_FAILURES" => l.login_max_failures = Some(num(&v).map_err(bad)?),
                "LOGIN_WINDOW_SECS" => l.login_window_secs = Some(num(&v).map_err(bad)?),
                "DISPLAY_BASE" => l.display_base = Some(num(&v).map_err(bad)?),
                "CDP_BASE" => l.cdp_base = Some(num(&v).map_err(bad)?),
                "X_CONNECT_TIMEOUT_MS" => l.x_connect_timeout_ms = Some(num(&v).map_err(bad)?),
                "LOG_TYPED_TEXT" => l.log_typed_text = Some(num(&v).map_err(bad)?),
                "DESKTOP_MODE" => l.desktop_mode = Some(num(&v).map_err(bad)?),
                "DESKTOP_POLICY" => l.desktop_policy = Some(num(&v).map_err(bad)?),
                "DESKTOP_IDLE_SECS" => l.desktop_idle_secs = Some(num(&v).map_err(bad)?),
                "WARM_POOL" => l.warm_pool = Some(num(&v).map_err(bad)?),
                "MAX_DESKTOPS" => l.max_desktops = Some(num(&v).map_err(bad)?),
                "MAX_DESKTOPS_PER_USER" => l.max_desktops_per_user = Some(num(&v).map_err(bad)?),
                "DESKTOP_CPUS" => l.desktop_cpus = Some(num(&v).map_err(bad)?),
                "DESKTOP_MEMORY_MIB" => l.desktop_memory_mib = Some(num(&v).map_err(bad)?),
                "DESKTOP_PIDS" => l.desktop_pids = Some(num(&v).map_err(bad)?),
                "DESKTOP_READY_TIMEOUT_SECS" => {
                    l.desktop_ready_timeout_secs = Some(num(&v).map_err(bad)?)
                }
                "PROXY_URL" => l.proxy_url = Some(v),
                "RECORDINGS_MAX_TOTAL_MB" => {
                    l.recordings_max_total_mb = Some(num(&v).map_err(bad)?)
                }
                "RECORDINGS_MIN_FREE_MB" => l.recordings_min_free_mb = Some(num(&v).map_err(bad)?),
                "WEB_DIR" => l.web_dir = Some(v.into()),
                "LIVE_VIEW_PORT" => l.live_view_port = Some(num(&v).map_err(bad)?),
                "UPDATE_KEY" => l.update_key = Some(v.into()),
                "RELEASE_FILE" => l.release_file = Some(v.into()),
                "UPDATE_MAX_BYTES" => l.update_max_bytes = Some(num(&v).map_err(bad)?),
                "APPLIANCE_NAME" => l.appliance_name = Some(v),
                "FLEET_KEYS" => l.fleet_keys = Some(v),
                "FLEET_USERS" => l.fleet_users = Some(v),
                "FLEET_USERS_FILE" => l.fleet_users_file = Some(v.into()),
                "FLEET_MEMBERS" => l.fleet_members = Some(v),
                "AGENT_LISTEN" => {
                    parse_agent_listen(&v).map_err(bad)?;
                    l.agent_listen = Some(v);
                }
                // Other ZIGRAL_* variables belong to other tools (ZIGRAL_LOG, ...).
                _ => {}
            }
        }
        Ok(l)
    }

    /// Overlays `top` on `self` (keys set in `top` win).
    pub fn overlay(mut self, top: Layer) -> Layer {
        macro_rules! take {
            ($($f:ident),*) => {$( if top.$f.is_some() { self.$f = top.$f; } )*};
        }
        take!(
            listen,
            state_dir,
            init_socket,
            require_supervisor,
            tls_cert,
            tls_key,
            admin_password,
            login_ttl_secs,
            max_body_bytes,
            events_queue,
            view_token_ttl_secs,
            admin_banner,
            login_max_failures,
            login_window_secs,
            display_base,
            cdp_base,
            x_connect_timeout_ms,
            log_typed_text,
            desktop_mode,
            desktop_policy,
            desktop_idle_secs,
            warm_pool,
            max_desktops,
            max_desktops_per_user,
            desktop_cpus,
            desktop_memory_mib,
            desktop_pids,
            desktop_ready_timeout_secs,
            proxy_url,
            recordings_max_total_mb,
            recordings_min_free_mb,
            web_dir,
            live_view_port,
            update_key,
            release_file,
            update_max_bytes,
            appliance_name,
            agent_listen,
            fleet_keys,
            fleet_users,
            fleet_users_file,
            fleet_members
        );
        self
    }

    /// Resolves the layered settings over the defaults and validates them.
    pub fn resolve(self) -> Result<Config, ConfigError> {
        let desktops = self.desktop_settings()?;
        let state_dir = self
            .state_dir
            .unwrap_or_else(|| PathBuf::from(DEFAULT_STATE_DIR));
        let mut c = Config::with_state_dir(state_dir);
        c.desktops = desktops;
        if let Some(x) = self.listen {
            c.listen = x;
        }
        if let Some(x) = self.init_socket {
            c.init_socket = x;
        }
        if let Some(x) = self.require_supervisor {
            c.require_supervisor = x;
        }
        c.tls_cert = self.tls_cert;
        c.tls_key = self.tls_key;
        c.admin_password = self.admin_password.filter(|p| !p.is_empty());
        if let Some(x) = self.login_ttl_secs {
            c.login_ttl_secs = x;
        }
        if let Some(x) = self.max_body_bytes {
            c.max_body_bytes = x;
        }
        if let Some(x) = self.events_queue {
            c.events_queue = x;
        }
        if let Some(x) = self.view_token_ttl_secs {
            c.view_token_ttl_secs = x;
        }
        if let Some(x) = self.admin_banner {
            c.admin_banner = x;
        }
        if let Some(x) = self.login_max_failures {
            c.login_max_failures = x;
        }
        if let Some(x) = self.login_window_secs {
            c.login_window_secs = x;
        }
        if let Some(x) = self.display_base {
            c.display_base = x;
        }
        if let Some(x) = self.cdp_base {
            c.cdp_base = x;
        }
        if let Some(x) = self.x_connect_timeout_ms {
            c.x_connect_timeout_ms = x;
        }
        if let Some(x) = self.log_typed_text {
            c.log_typed_text = x;
        }
        if let Some(x) = self.recordings_max_total_mb {
            c.recordings_max_total_mb = x;
        }
        if let Some(x) = self.recordings_min_free_mb {
            c.recordings_min_free_mb = x;
        }
        // An empty path (`ZIGRAL_WEB_DIR=`) switches the web UI off.
        c.web_dir = self.web_dir.filter(|d| !d.as_os_str().is_empty());
        if self.live_view_port == Some(0) {
            return Err(ConfigError::Invalid(
                "live_view_port must be 1..=65535".into(),
            ));
        }
        c.live_view_port = self.live_view_port;
        // Empty paths (`ZIGRAL_UPDATE_KEY=`) mean unset.
        c.update_key = self.update_key.filter(|d| !d.as_os_str().is_empty());
        c.release_file = self.release_file.filter(|d| !d.as_os_str().is_empty());
        if let Some(x) = self.update_max_bytes {
            if x == 0 {
                return Err(ConfigError::Invalid("update_max_bytes must be > 0".into()));
            }
            c.update_max_bytes = x;
        }
        // An empty name (`ZIGRAL_APPLIANCE_NAME=`) means unset: the host name.
        c.appliance_name = match self.appliance_name.filter(|n| !n.is_empty()) {
            Some(n) => {
                crate::fleet::check_name(&n).map_err(ConfigError::Invalid)?;
                n
            }
            None => crate::fleet::default_name(),
        };
        if let Some(a) = &self.agent_listen {
            c.agent_listen = parse_agent_listen(a)
                .map_err(|m| ConfigError::Invalid(format!("agent_listen {m}")))?;
        }
        let fleet_err =
            |e: crate::fleet_auth::FleetConfigError| ConfigError::Invalid(e.to_string());
        let mut users = self.fleet_users.clone().unwrap_or_default();
        if let Some(f) = self
            .fleet_users_file
            .as_ref()
            .filter(|f| !f.as_os_str().is_empty())
        {
            let more = std::fs::read_to_string(f).map_err(|e| {
                ConfigError::Invalid(format!("fleet_users_file {}: {e}", f.display()))
            })?;
            users.push('\n');
            users.push_str(&more);
        }
        c.fleet = crate::fleet_auth::FleetSettings {
            keys: crate::fleet_auth::parse_keys(self.fleet_keys.as_deref().unwrap_or(""))
                .map_err(fleet_err)?,
            users: crate::fleet_auth::parse_users(&users).map_err(fleet_err)?,
            members: crate::fleet_auth::parse_members(self.fleet_members.as_deref().unwrap_or(""))
                .map_err(fleet_err)?,
        };
        if !c.fleet.users.is_empty() && !c.fleet.enabled() {
            return Err(fleet_err(
                crate::fleet_auth::FleetConfigError::UsersWithoutKeys,
            ));
        }
        if c.tls_cert.is_some() != c.tls_key.is_some() {
            return Err(ConfigError::Invalid(
                "tls_cert and tls_key must be given together".into(),
            ));
        }
        if let Some(p) = &c.admin_password
            && p.chars().count() < 8
        {
            return Err(ConfigError::Invalid(
                "admin_password must have at least 8 characters".into(),
            ));
        }
        if c.login_ttl_secs == 0 || c.login_window_secs == 0 || c.view_token_ttl_secs == 0 {
            return Err(ConfigError::Invalid(
                "login_ttl_secs, login_window_secs and view_token_ttl_secs must be > 0".into(),
            ));
        }
        if c.max_body_bytes < 1024 {
            return Err(ConfigError::Invalid(
                "max_body_bytes must be at least 1024".into(),
            ));
        }
        if c.x_connect_timeout_ms == 0 {
            return Err(ConfigError::Invalid(
                "x_connect_timeout_ms must be > 0".into(),
            ));
        }
        if c.recordings_max_total_mb == 0 {
            return Err(ConfigError::Invalid(
                "recordings_max_total_mb must be > 0".into(),
            ));
        }
        if c.events_queue == 0 {
            return Err(ConfigError::Invalid("events_queue must be > 0".into()));
        }
        Ok(c)
    }
}

impl Layer {
    fn desktop_settings(&self) -> Result<DesktopSettings, ConfigError> {
        let mut d = DesktopSettings::default();
        let bad = |m: &str| Err(ConfigError::Invalid(m.into()));
        if let Some(x) = self.desktop_mode {
            d.mode = x;
        }
        if let Some(x) = self.desktop_policy {
            d.policy = x;
        }
        if let Some(x) = self.desktop_idle_secs {
            d.idle_secs = x;
        }
        if let Some(x) = self.warm_pool {
            d.warm_pool = x;
        }
        if let Some(x) = self.max_desktops {
            d.max_desktops = x;
        }
        if let Some(x) = self.max_desktops_per_user {
            d.max_per_user = x;
        }
        if let Some(x) = self.desktop_cpus {
            if !(x.is_finite() && (0.01..=1024.0).contains(&x)) {
                return bad("desktop_cpus must be between 0.01 and 1024");
            }
            d.millicpus = (x * 1000.0).round() as u64;
        }
        if let Some(x) = self.desktop_memory_mib {
            d.memory_mib = x;
        }
        if let Some(x) = self.desktop_pids {
            d.pids = x;
        }
        if let Some(x) = self.desktop_ready_timeout_secs {
            d.ready_timeout_secs = x;
        }
        if let Some(x) = &self.proxy_url {
            d.proxy_url = x.trim_end_matches('/').to_owned();
        }
        if d.max_desktops == 0 || d.max_desktops > DESKTOP_NUMBERS {
            return bad("max_desktops must be 1..=100");
        }
        if d.max_per_user == 0 {
            return bad("max_desktops_per_user must be > 0");
        }
        if d.warm_pool > d.max_desktops {
            return bad("warm_pool must not exceed max_desktops");
        }
        if d.memory_mib < 64 {
            return bad("desktop_memory_mib must be at least 64");
        }
        if d.pids < 16 {
            return bad("desktop_pids must be at least 16");
        }
        if d.ready_timeout_secs == 0 {
            return bad("desktop_ready_timeout_secs must be > 0");
        }
        if !(d.proxy_url.is_empty() || d.proxy_url.starts_with("http://")) {
            return bad("proxy_url must be empty or an http:// URL (the proxy's loopback port)");
        }
        Ok(d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layers_apply_in_order_and_unknown_keys_fail() {
        let dir = tempfile::tempdir().expect("tempdir");
        let f = dir.path().join("c.toml");
        std::fs::write(
            &f,
            "listen = \"127.0.0.1:9000\"\nevents_queue = 7\nstate_dir = \"/s\"\n",
        )
        .expect("write");
        let file = Layer::from_file(&f).expect("file");
        let env = Layer::from_env([
            ("ZIGRAL_LISTEN".to_string(), "127.0.0.1:9001".to_string()),
            ("ZIGRAL_LOG".to_string(), "debug".to_string()),
        ])
        .expect("env");
        let flags = Layer {
            listen: Some("127.0.0.1:9002".parse().expect("addr")),
            ..Layer::default()
        };
        let c = Layer::default()
            .overlay(file.clone())
            .overlay(env.clone())
            .resolve()
            .expect("cfg");
        assert_eq!(c.listen.port(), 9001);
        assert_eq!(c.events_queue, 7);
        assert_eq!(c.init_socket, PathBuf::from("/s/init.sock"));
        let c = file.overlay(env).overlay(flags).resolve().expect("cfg");
        assert_eq!(c.listen.port(), 9002);

        std::fs::write(&f, "lisen = \"x\"\n").expect("write");
        let e = Layer::from_file(&f).expect_err("unknown key");
        assert!(e.to_string().contains("lisen"), "{e}");
        let e = Layer::from_env([("ZIGRAL_EVENTS_QUEUE".into(), "many".into())])
            .expect_err("bad number");
        assert!(e.to_string().contains("ZIGRAL_EVENTS_QUEUE"), "{e}");
        let e = Layer {
            tls_cert: Some("/c".into()),
            ..Layer::default()
        }
        .resolve()
        .expect_err("cert without key");
        assert!(e.to_string().contains("together"));
    }

    #[test]
    fn desktop_settings_parse_and_bad_ones_say_which() {
        let dir = tempfile::tempdir().expect("tempdir");
        let f = dir.path().join("c.toml");
        std::fs::write(
            &f,
            "desktop_policy = \"per-session\"\nwarm_pool = 2\ndesktop_cpus = 0.5\n",
        )
        .expect("write");
        let c = Layer::from_file(&f)
            .expect("file")
            .overlay(
                Layer::from_env([("ZIGRAL_DESKTOP_MODE".to_string(), "static".to_string())])
                    .expect("env"),
            )
            .resolve()
            .expect("cfg");
        assert_eq!(c.desktops.policy, DesktopPolicy::PerSession);
        assert_eq!(c.desktops.mode, DesktopMode::Static);
        assert_eq!((c.desktops.warm_pool, c.desktops.millicpus), (2, 500));
        let e = Layer::from_env([("ZIGRAL_DESKTOP_POLICY".into(), "shared".into())])
            .expect_err("bad policy");
        assert!(e.to_string().contains("per-user or per-session"), "{e}");
        for (layer, want) in [
            (
                Layer {
                    warm_pool: Some(9),
                    ..Layer::default()
                },
                "warm_pool",
            ),
            (
                Layer {
                    max_desktops: Some(101),
                    ..Layer::default()
                },
                "max_desktops",
            ),
            (
                Layer {
                    desktop_cpus: Some(0.0),
                    ..Layer::default()
                },
                "desktop_cpus",
            ),
            (
                Layer {
                    proxy_url: Some("ftp://x".into()),
                    ..Layer::default()
                },
                "proxy_url",
            ),
        ] {
            let e = layer.resolve().expect_err(want);
            assert!(e.to_string().contains(want), "{e}");
        }
    }

    #[test]
    fn web_dir_and_live_view_port_layer_and_default_from_proxy_url() {
        let dir = tempfile::tempdir().expect("tempdir");
        let f = dir.path().join("c.toml");
        std::fs::write(&f, "web_dir = \"/usr/share/zigral/ui/app\"\n").expect("write");
        let c = Layer::from_file(&f).expect("file").resolve().expect("cfg");
        assert_eq!(c.web_dir, Some(PathBuf::from("/usr/share/zigral/ui/app")));
        // No live_view_port: the proxy_url's port (default http://127.0.0.1:6081).
        assert_eq!(c.live_view_port(), 6081);
        let c = Layer {
            proxy_url: Some("http://127.0.0.1:16081/".into()),
            ..Layer::default()
        }
        .resolve()
        .expect("cfg");
        assert_eq!((c.web_dir.as_ref(), c.live_view_port()), (None, 16081));
        let env = Layer::from_env([
            ("ZIGRAL_WEB_DIR".to_string(), String::new()),
            ("ZIGRAL_LIVE_VIEW_PORT".to_string(), "443".to_string()),
        ])
        .expect("env");
        let c = Layer::from_file(&f)
            .expect("file")
            .overlay(env)
            .resolve()
            .expect("cfg");
        assert_eq!((c.web_dir.as_ref(), c.live_view_port()), (None, 443));
        let e = Layer::from_env([("ZIGRAL_LIVE_VIEW_PORT".into(), "70000".into())])
            .expect_err("port out of range");
        assert!(e.to_string().contains("ZIGRAL_LIVE_VIEW_PORT"), "{e}");
        let e = Layer {
            live_view_port: Some(0),
            ..Layer::default()
        }
        .resolve()
        .expect_err("port 0");
        assert!(e.to_string().contains("live_view_port"), "{e}");
    }

    #[test]
    fn fleet_settings_layer_validate_and_default_to_the_host_name() {
        let c = Layer::default().resolve().expect("cfg");
        let host = crate::fleet::hostname().expect("hostname");
        assert_eq!(
            c.appliance_name,
            crate::fleet::name_from_host(&host),
            "default: the host name"
        );
        for (h, want) in [
            ("Zigral-3.example.com", "zigral-3"),
            ("build_host", "build-host"),
            ("-edge-", "edge"),
            ("", "zigral"),
            ("___", "zigral"),
        ] {
            assert_eq!(crate::fleet::name_from_host(h), want, "{h:?}");
        }
        assert_eq!(c.agent_listen, None, "the agent is off by default");
        let dir = tempfile::tempdir().expect("tempdir");
        let f = dir.path().join("c.toml");
        std::fs::write(
            &f,
            "appliance_name = \"zigral-3\"\nagent_listen = \"0.0.0.0:8001\"\n",
        )
        .expect("write");
        let file = Layer::from_file(&f).expect("file");
        let c = file.clone().resolve().expect("cfg");
        assert_eq!(c.appliance_name, "zigral-3");
        assert_eq!(c.agent_listen, Some("0.0.0.0:8001".parse().expect("addr")));
        // The environment wins; an empty agent_listen switches it off again.
        let env = Layer::from_env([
            ("ZIGRAL_APPLIANCE_NAME".to_string(), "zigral-4".to_string()),
            ("ZIGRAL_AGENT_LISTEN".to_string(), String::new()),
        ])
        .expect("env");
        let c = file.overlay(env).resolve().expect("cfg");
        assert_eq!(
            (c.appliance_name.as_str(), c.agent_listen),
            ("zigral-4", None)
        );
        for bad in ["Zigral-3", "zigral_3", "-z", "z-", "a.b"] {
            let e = Layer::from_env([("ZIGRAL_APPLIANCE_NAME".into(), bad.into())])
                .expect("env")
                .resolve()
                .expect_err(bad);
            let m = e.to_string();
            assert!(m.contains(bad) && m.contains("DNS label"), "{m}");
        }
        let e =
            Layer::from_env([("ZIGRAL_AGENT_LISTEN".into(), "8001".into())]).expect_err("no host");
        assert!(e.to_string().contains("ZIGRAL_AGENT_LISTEN"), "{e}");
        let e = Layer {
            agent_listen: Some("localhost".into()),
            ..Layer::default()
        }
        .resolve()
        .expect_err("not an address");
        assert!(e.to_string().contains("agent_listen"), "{e}");
    }

    #[test]
    fn update_settings_layer_and_default() {
        let c = Layer::default().resolve().expect("cfg");
        assert_eq!(
            (c.update_key.as_ref(), c.release_file.as_ref()),
            (None, None)
        );
        assert_eq!(c.update_max_bytes, 512 << 20);
        let env = Layer::from_env([
            (
                "ZIGRAL_UPDATE_KEY".to_string(),
                "/etc/zigral/update.pub".to_string(),
            ),
            ("ZIGRAL_RELEASE_FILE".to_string(), String::new()),
            ("ZIGRAL_UPDATE_MAX_BYTES".to_string(), "1048576".to_string()),
        ])
        .expect("env");
        let c = env.resolve().expect("cfg");
        assert_eq!(c.update_key, Some(PathBuf::from("/etc/zigral/update.pub")));
        assert_eq!((c.release_file, c.update_max_bytes), (None, 1 << 20));
        let e = Layer {
            update_max_bytes: Some(0),
            ..Layer::default()
        }
        .resolve()
        .expect_err("0 bytes");
        assert!(e.to_string().contains("update_max_bytes"), "{e}");
        let e = Layer::from_env([("ZIGRAL_UPDATE_MAX_BYTES".into(), "lots".into())])
            .expect_err("bad number");
        assert!(e.to_string().contains("ZIGRAL_UPDATE_MAX_BYTES"), "{e}");
    }

    #[test]
    fn fleet_keys_users_and_members_from_env_and_file() {
        use base64::Engine;
        let secret = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode([7u8; 32]);
        let h = crate::auth::hash_password("fleet-password").expect("hash");
        let dir = tempfile::tempdir().expect("tempdir");
        let f = dir.path().join("users");
        std::fs::write(&f, format!("bob:user:{h}\ncarol:disabled:{h}\n")).expect("write");
        let env = |extra: &[(&str, String)]| {
            let mut v = vec![
                ("ZIGRAL_FLEET_KEYS".to_string(), format!("k1:{secret}")),
                ("ZIGRAL_FLEET_USERS".to_string(), format!("alice:admin:{h}")),
                (
                    "ZIGRAL_FLEET_MEMBERS".to_string(),
                    "zigral-{0..3}".to_string(),
                ),
            ];
            v.extend(extra.iter().map(|(k, x)| (k.to_string(), x.clone())));
            Layer::from_env(v).expect("env").resolve()
        };
        let c = env(&[("ZIGRAL_FLEET_USERS_FILE", f.display().to_string())]).expect("cfg");
        assert!(c.fleet.enabled());
        let names: Vec<&str> = c.fleet.users.iter().map(|u| u.name.as_str()).collect();
        assert_eq!(names, ["alice", "bob", "carol"]);
        assert_eq!(c.fleet.members.len(), 4);
        // The secrets never show in the configuration's debug form (logged at start).
        let dbg = format!("{c:?}");
        assert!(!dbg.contains(&secret) && !dbg.contains("argon2id"), "{dbg}");
        // Bad input stops the start with a sentence, naming no secret.
        let e = env(&[("ZIGRAL_FLEET_KEYS", "k1:dG9vLXNob3J0".into())]).expect_err("short");
        assert!(e.to_string().contains("at least 32"), "{e}");
        let e = env(&[("ZIGRAL_FLEET_USERS_FILE", "/nonexistent/users".into())])
            .expect_err("missing file");
        assert!(e.to_string().contains("/nonexistent/users"), "{e}");
        let e = env(&[("ZIGRAL_FLEET_KEYS", String::new())]).expect_err("users, no keys");
        assert!(e.to_string().contains("fleet_keys is not"), "{e}");
        let e = env(&[("ZIGRAL_FLEET_MEMBERS", "Zigral-0".into())]).expect_err("member");
        assert!(e.to_string().contains("Zigral-0"), "{e}");
    }
}
