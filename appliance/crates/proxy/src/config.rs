//! Proxy configuration: listen address, target or token routing, limits, timeouts, TLS.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use zigral_token::{ControlFiles, Leases, LiveViewFiles, SigningKey};

/// Where relayed connections go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A TCP `host:port` (resolved at connect time).
    Tcp(String),
    /// A Unix stream socket path (`unix:/path`).
    Unix(PathBuf),
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::Tcp(a) => f.write_str(a),
            Target::Unix(p) => write!(f, "unix:{}", p.display()),
        }
    }
}

/// Why a command-line value was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("invalid listen address '{0}': expected [host:]port")]
    Listen(String),
    #[error("invalid target '{0}': expected host:port or unix:/path")]
    Target(String),
    #[error("{0}")]
    Invalid(String),
}

/// Parses LISTEN: `port`, `host:port`, `[v6]:port`. A bare port binds 127.0.0.1 (unlike
/// websockify, which binds every interface: everything in Zigral listens on loopback).
pub fn parse_listen(s: &str) -> Result<SocketAddr, ConfigError> {
    let err = || ConfigError::Listen(s.to_owned());
    if let Ok(port) = s.parse::<u16>() {
        return Ok(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port));
    }
    if let Ok(a) = s.parse::<SocketAddr>() {
        return Ok(a);
    }
    let (host, port) = s.rsplit_once(':').ok_or_else(err)?;
    let port: u16 = port.parse().map_err(|_| err())?;
    let ip = match host {
        "" | "*" => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        "localhost" => IpAddr::V4(Ipv4Addr::LOCALHOST),
        h => h
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse()
            .map_err(|_| err())?,
    };
    Ok(SocketAddr::new(ip, port))
}

/// Parses TARGET: `host:port` or `unix:/path`.
pub fn parse_target(s: &str) -> Result<Target, ConfigError> {
    if let Some(p) = s.strip_prefix("unix:") {
        if p.is_empty() {
            return Err(ConfigError::Target(s.to_owned()));
        }
        return Ok(Target::Unix(PathBuf::from(p)));
    }
    let (host, port) = s
        .rsplit_once(':')
        .ok_or_else(|| ConfigError::Target(s.to_owned()))?;
    if host.is_empty() || port.parse::<u16>().map(|p| p == 0).unwrap_or(true) {
        return Err(ConfigError::Target(s.to_owned()));
    }
    Ok(Target::Tcp(s.to_owned()))
}

/// How a WebSocket connection chooses its target.
#[derive(Debug, Clone)]
pub enum Routing {
    /// `--no-auth`: every connection goes to one fixed target (websockify's behaviour).
    Fixed(Target),
    /// Signed tokens: desktop N of a valid token → `vnc_host:(vnc_base + N)`.
    Token {
        key: Arc<SigningKey>,
        vnc_host: IpAddr,
        vnc_base: u16,
        /// Desktop leases (`<state_dir>/leases/<N>`): with `Some`, a token is accepted only
        /// when its `lease` claim equals desktop N's lease file, read on every connection
        /// attempt (both absent counts as equal). `None` (no state directory): leases are not
        /// checked.
        leases: Option<Leases>,
        /// Desktop control files (`<state_dir>/control/<N>`, see [`crate::control`]): with
        /// `Some`, a `control` connection sends input only while nobody else holds its
        /// desktop. `None`: control tokens always send input.
        control: Option<ControlFiles>,
        /// Desktop live-view files (`<state_dir>/liveview/<N>`, see [`crate::live_view`]):
        /// with `Some`, connections to a desktop whose live view is off are refused and live
        /// ones are closed when it turns off. `None`: live view is always on.
        live_view: Option<LiveViewFiles>,
    },
}

/// Which browser origins may open WebSockets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OriginPolicy {
    /// Any origin (`--allow-origin '*'`).
    Any,
    /// No Origin header (non-browser clients), the proxy's own origin (`Origin` host equals
    /// `Host`), or one of these origins (`scheme://host[:port]`, lower-case). `scheme://*:port`
    /// is the proxy's own host name at another port (the control plane's web app reached by
    /// whatever name the browser used, e.g. a DHCP address).
    List(Vec<String>),
}

impl OriginPolicy {
    /// Whether a request with `origin` (if any) and `host` header may connect.
    pub fn allows(&self, origin: Option<&str>, host: Option<&str>) -> bool {
        let Some(origin) = origin else { return true };
        match self {
            OriginPolicy::Any => true,
            OriginPolicy::List(list) => {
                let o = origin.trim().to_ascii_lowercase();
                if list.contains(&o) || list.iter().any(|e| same_host_at_port(e, &o, host)) {
                    return true;
                }
                o.split_once("://")
                    .map(|(_, rest)| rest)
                    .zip(host)
                    .is_some_and(|(rest, h)| rest == h.trim().to_ascii_lowercase())
            }
        }
    }
}

/// Whether `origin` matches the pattern `scheme://*:port`: same scheme and port, and the host
/// name of the `Host` header (the name the browser used to reach the proxy).
fn same_host_at_port(pattern: &str, origin: &str, host: Option<&str>) -> bool {
    let Some((scheme, port)) = pattern
        .split_once("://*:")
        .filter(|(_, p)| p.parse::<u16>().is_ok())
    else {
        return false;
    };
    let Some(host) = host.map(|h| h.trim().to_ascii_lowercase()) else {
        return false;
    };
    // `name:port` or `[v6]:port`; a Host header without a port is the name itself.
    let name = match host.rsplit_once(':') {
        Some((n, p)) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) && !n.is_empty() => {
            n
        }
        _ => host.as_str(),
    };
    origin == format!("{scheme}://{name}:{port}")
}

/// Everything the proxy server needs; build with [`Config::new`] and adjust fields.
#[derive(Debug, Clone)]
pub struct Config {
    pub routing: Routing,
    /// Static files served on the same port (`--web`).
    pub web_dir: Option<PathBuf>,
    pub origins: OriginPolicy,
    /// Most simultaneous TCP connections (HTTP and WebSocket); 0 = unlimited.
    pub max_connections: usize,
    /// Most simultaneous connections from one client IP; 0 = unlimited.
    pub max_per_ip: usize,
    /// Interval between WebSocket pings (RTT measurement, dead-peer detection); None = off.
    pub heartbeat: Option<Duration>,
    /// A connection whose client sent nothing (not even a pong) for this long, or that did
    /// not accept our data for this long, is closed; None = never.
    pub idle_timeout: Option<Duration>,
    /// Time allowed for the TLS handshake and the HTTP request head.
    pub handshake_timeout: Duration,
    /// Time allowed to connect to the VNC target.
    pub connect_timeout: Duration,
    /// Largest client→server WebSocket frame payload accepted (close 1009 above).
    pub max_frame: u64,
    /// How long shutdown waits for connections to finish their close handshake.
    pub drain_timeout: Duration,
    /// TLS server configuration (`--cert/--key`).
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// With TLS: refuse plain connections instead of sniffing (`--ssl-only`).
    pub tls_only: bool,
}

impl Config {
    /// Defaults for `routing`: loopback-friendly limits, 20 s heartbeat, 60 s idle timeout.
    pub fn new(routing: Routing) -> Self {
        Config {
            routing,
            web_dir: None,
            origins: OriginPolicy::List(Vec::new()),
            max_connections: 4096,
            max_per_ip: 512,
            heartbeat: Some(Duration::from_secs(20)),
            idle_timeout: Some(Duration::from_secs(60)),
            handshake_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(5),
            max_frame: 4 << 20,
            drain_timeout: Duration::from_secs(5),
            tls: None,
            tls_only: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_forms() {
        assert_eq!(
            parse_listen("6081").unwrap(),
            "127.0.0.1:6081".parse().unwrap()
        );
        assert_eq!(
            parse_listen("0.0.0.0:80").unwrap(),
            "0.0.0.0:80".parse().unwrap()
        );
        assert_eq!(
            parse_listen("[::1]:81").unwrap(),
            "[::1]:81".parse().unwrap()
        );
        assert_eq!(
            parse_listen("localhost:82").unwrap(),
            "127.0.0.1:82".parse().unwrap()
        );
        assert_eq!(parse_listen(":83").unwrap(), "0.0.0.0:83".parse().unwrap());
        assert!(parse_listen("abc").is_err());
        assert!(parse_listen("host.example:99999").is_err());
    }

    #[test]
    fn target_forms() {
        assert_eq!(
            parse_target("localhost:5900").unwrap(),
            Target::Tcp("localhost:5900".into())
        );
        assert_eq!(
            parse_target("unix:/tmp/v.sock").unwrap(),
            Target::Unix("/tmp/v.sock".into())
        );
        for bad in ["5900", "unix:", ":5900", "h:0", "h:x"] {
            assert!(parse_target(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn origins() {
        let p = OriginPolicy::List(vec!["http://ui:8000".into()]);
        assert!(p.allows(None, Some("x:1")));
        assert!(p.allows(Some("http://ui:8000"), Some("proxy:6081")));
        assert!(p.allows(Some("http://proxy:6081"), Some("proxy:6081")));
        assert!(!p.allows(Some("http://evil.example"), Some("proxy:6081")));
        assert!(OriginPolicy::Any.allows(Some("http://evil.example"), None));

        // The web app on port 8000 of whatever name the browser used for the proxy.
        let p = OriginPolicy::List(vec!["http://*:8000".into()]);
        assert!(p.allows(Some("http://10.0.2.15:8000"), Some("10.0.2.15:6081")));
        assert!(p.allows(Some("http://vm.lan:8000"), Some("VM.lan:6081")));
        assert!(p.allows(Some("http://[fe80::1]:8000"), Some("[fe80::1]:6081")));
        assert!(!p.allows(Some("http://evil.example:8000"), Some("10.0.2.15:6081")));
        assert!(!p.allows(Some("https://10.0.2.15:8000"), Some("10.0.2.15:6081")));
        assert!(!p.allows(Some("http://10.0.2.15:8001"), Some("10.0.2.15:6081")));
        assert!(!p.allows(Some("http://10.0.2.15:8000"), None));
    }
}
