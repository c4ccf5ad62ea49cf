//! Stream health: per-connection counters (bytes, frames, RTT from pings, dropped input) and
//! proxy-wide totals, rendered as Prometheus text or returned as data for the dashboard.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use serde::Serialize;

/// Why a connection or WebSocket request was refused (label values of the refusal counter).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Refusal {
    NoToken,
    BadToken,
    ExpiredToken,
    WrongDesktop,
    /// The token's lease is not the desktop's current lease (a token of an earlier tenancy).
    LeaseMismatch,
    /// The desktop's lease file could not be read, so no token is accepted for it.
    LeaseUnreadable,
    /// The desktop's live view is turned off (or its live-view file cannot be read).
    LiveViewOff,
    Origin,
    ConnectionLimit,
    PerIpLimit,
    BadHandshake,
    TlsRequired,
}

impl Refusal {
    const ALL: [Refusal; 12] = [
        Refusal::NoToken,
        Refusal::BadToken,
        Refusal::ExpiredToken,
        Refusal::WrongDesktop,
        Refusal::LeaseMismatch,
        Refusal::LeaseUnreadable,
        Refusal::LiveViewOff,
        Refusal::Origin,
        Refusal::ConnectionLimit,
        Refusal::PerIpLimit,
        Refusal::BadHandshake,
        Refusal::TlsRequired,
    ];

    fn label(self) -> &'static str {
        match self {
            Refusal::NoToken => "no_token",
            Refusal::BadToken => "bad_token",
            Refusal::ExpiredToken => "expired_token",
            Refusal::WrongDesktop => "wrong_desktop",
            Refusal::LeaseMismatch => "lease_mismatch",
            Refusal::LeaseUnreadable => "lease_unreadable",
            Refusal::LiveViewOff => "live_view_off",
            Refusal::Origin => "origin",
            Refusal::ConnectionLimit => "connection_limit",
            Refusal::PerIpLimit => "per_ip_limit",
            Refusal::BadHandshake => "bad_handshake",
            Refusal::TlsRequired => "tls_required",
        }
    }
}

/// Live counters of one relayed WebSocket session.
#[derive(Debug)]
pub struct SessionStats {
    pub id: u64,
    pub peer: SocketAddr,
    pub desktop: Option<u32>,
    /// "view", "control" or "fixed" (no-auth mode).
    pub role: &'static str,
    pub target: String,
    started_unix: u64,
    started: Instant,
    pub bytes_to_client: AtomicU64,
    pub bytes_from_client: AtomicU64,
    pub frames_to_client: AtomicU64,
    pub frames_from_client: AtomicU64,
    pub dropped_input: AtomicU64,
    /// Last ping round trip, microseconds (0 = none measured yet).
    pub rtt_us: AtomicU64,
    pub rtt_min_us: AtomicU64,
    /// Milliseconds since start when the client last sent anything.
    pub last_rx_ms: AtomicU64,
}

impl SessionStats {
    /// Milliseconds since the session started.
    pub fn elapsed_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    pub(crate) fn touch_rx(&self) {
        self.last_rx_ms.store(self.elapsed_ms(), Relaxed);
    }

    pub(crate) fn record_rtt(&self, us: u64) {
        let us = us.max(1);
        self.rtt_us.store(us, Relaxed);
        let _ = self
            .rtt_min_us
            .fetch_update(Relaxed, Relaxed, |m| (m == 0 || us < m).then_some(us));
    }
}

/// A point-in-time copy of one session's counters.
#[derive(Debug, Clone, Serialize)]
pub struct SessionSnapshot {
    pub id: u64,
    pub peer: String,
    pub desktop: Option<u32>,
    pub role: &'static str,
    pub target: String,
    pub started_unix: u64,
    pub duration_ms: u64,
    pub bytes_to_client: u64,
    pub bytes_from_client: u64,
    pub frames_to_client: u64,
    pub frames_from_client: u64,
    pub dropped_input: u64,
    pub rtt_us: Option<u64>,
    pub rtt_min_us: Option<u64>,
    pub idle_ms: u64,
}

/// Proxy-wide totals (including finished sessions).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Totals {
    pub connections_open: usize,
    pub connections_total: u64,
    pub sessions_open: usize,
    pub sessions_total: u64,
    pub bytes_to_client: u64,
    pub bytes_from_client: u64,
    pub frames_to_client: u64,
    pub frames_from_client: u64,
    pub dropped_input: u64,
    pub target_connect_failures: u64,
    pub protocol_errors: u64,
    /// Live sessions closed because their desktop's live view was turned off.
    pub live_view_closed: u64,
    pub refused: HashMap<Refusal, u64>,
}

/// All counters of one proxy instance.
#[derive(Debug, Default)]
pub struct Metrics {
    next_id: AtomicU64,
    pub(crate) connections_open: AtomicUsize,
    pub(crate) connections_total: AtomicU64,
    sessions_total: AtomicU64,
    pub(crate) bytes_to_client: AtomicU64,
    pub(crate) bytes_from_client: AtomicU64,
    pub(crate) frames_to_client: AtomicU64,
    pub(crate) frames_from_client: AtomicU64,
    pub(crate) dropped_input: AtomicU64,
    pub(crate) target_connect_failures: AtomicU64,
    pub(crate) protocol_errors: AtomicU64,
    pub(crate) live_view_closed: AtomicU64,
    refused: [AtomicU64; Refusal::ALL.len()],
    sessions: Mutex<HashMap<u64, Arc<SessionStats>>>,
}

/// Removes a session from the live table when the relay ends.
#[derive(Debug)]
pub(crate) struct SessionGuard {
    metrics: Arc<Metrics>,
    pub stats: Arc<SessionStats>,
}

impl Drop for SessionGuard {
    fn drop(&mut self) {
        if let Ok(mut m) = self.metrics.sessions.lock() {
            m.remove(&self.stats.id);
        }
    }
}

impl Metrics {
    pub fn new() -> Arc<Self> {
        Arc::new(Metrics::default())
    }

    pub(crate) fn refuse(&self, r: Refusal) {
        if let Some(i) = Refusal::ALL.iter().position(|x| *x == r) {
            self.refused[i].fetch_add(1, Relaxed);
        }
    }

    pub(crate) fn start_session(
        self: &Arc<Self>,
        peer: SocketAddr,
        desktop: Option<u32>,
        role: &'static str,
        target: String,
    ) -> SessionGuard {
        let id = self.next_id.fetch_add(1, Relaxed) + 1;
        self.sessions_total.fetch_add(1, Relaxed);
        let stats = Arc::new(SessionStats {
            id,
            peer,
            desktop,
            role,
            target,
            started_unix: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
            started: Instant::now(),
            bytes_to_client: AtomicU64::new(0),
            bytes_from_client: AtomicU64::new(0),
            frames_to_client: AtomicU64::new(0),
            frames_from_client: AtomicU64::new(0),
            dropped_input: AtomicU64::new(0),
            rtt_us: AtomicU64::new(0),
            rtt_min_us: AtomicU64::new(0),
            last_rx_ms: AtomicU64::new(0),
        });
        if let Ok(mut m) = self.sessions.lock() {
            m.insert(id, stats.clone());
        }
        SessionGuard {
            metrics: self.clone(),
            stats,
        }
    }

    /// Live sessions, oldest first.
    pub fn sessions(&self) -> Vec<SessionSnapshot> {
        let list: Vec<Arc<SessionStats>> = match self.sessions.lock() {
            Ok(m) => m.values().cloned().collect(),
            Err(_) => Vec::new(),
        };
        let mut out: Vec<SessionSnapshot> = list
            .iter()
            .map(|s| {
                let el = s.elapsed_ms();
                let nz = |v: u64| (v > 0).then_some(v);
                SessionSnapshot {
                    id: s.id,
                    peer: s.peer.to_string(),
                    desktop: s.desktop,
                    role: s.role,
                    target: s.target.clone(),
                    started_unix: s.started_unix,
                    duration_ms: el,
                    bytes_to_client: s.bytes_to_client.load(Relaxed),
                    bytes_from_client: s.bytes_from_client.load(Relaxed),
                    frames_to_client: s.frames_to_client.load(Relaxed),
                    frames_from_client: s.frames_from_client.load(Relaxed),
                    dropped_input: s.dropped_input.load(Relaxed),
                    rtt_us: nz(s.rtt_us.load(Relaxed)),
                    rtt_min_us: nz(s.rtt_min_us.load(Relaxed)),
                    idle_ms: el.saturating_sub(s.last_rx_ms.load(Relaxed)),
                }
            })
            .collect();
        out.sort_by_key(|s| s.id);
        out
    }

    /// Proxy-wide totals.
    pub fn totals(&self) -> Totals {
        Totals {
            connections_open: self.connections_open.load(Relaxed),
            connections_total: self.connections_total.load(Relaxed),
            sessions_open: self.sessions.lock().map(|m| m.len()).unwrap_or(0),
            sessions_total: self.sessions_total.load(Relaxed),
            bytes_to_client: self.bytes_to_client.load(Relaxed),
            bytes_from_client: self.bytes_from_client.load(Relaxed),
            frames_to_client: self.frames_to_client.load(Relaxed),
            frames_from_client: self.frames_from_client.load(Relaxed),
            dropped_input: self.dropped_input.load(Relaxed),
            target_connect_failures: self.target_connect_failures.load(Relaxed),
            protocol_errors: self.protocol_errors.load(Relaxed),
            live_view_closed: self.live_view_closed.load(Relaxed),
            refused: Refusal::ALL
                .iter()
                .enumerate()
                .map(|(i, r)| (*r, self.refused[i].load(Relaxed)))
                .collect(),
        }
    }

    /// Prometheus text exposition (format 0.0.4) of totals and live sessions (at most
    /// `MAX_SESSION_SERIES` sessions get their own series, to bound the output).
    pub fn render_prometheus(&self) -> String {
        const MAX_SESSION_SERIES: usize = 200;
        let t = self.totals();
        let mut s = String::with_capacity(4096);
        let mut metric = |name: &str, kind: &str, help: &str, lines: &[(String, f64)]| {
            let _ = writeln!(s, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for (labels, v) in lines {
                let _ = writeln!(s, "{name}{labels} {v}");
            }
        };
        let one = |v: f64| vec![(String::new(), v)];
        let dir = |to: u64, from: u64| {
            vec![
                ("{direction=\"to_client\"}".to_owned(), to as f64),
                ("{direction=\"from_client\"}".to_owned(), from as f64),
            ]
        };
        metric(
            "zigral_proxy_connections_open",
            "gauge",
            "Open TCP connections (HTTP and WebSocket).",
            &one(t.connections_open as f64),
        );
        metric(
            "zigral_proxy_connections_total",
            "counter",
            "Accepted TCP connections.",
            &one(t.connections_total as f64),
        );
        metric(
            "zigral_proxy_sessions_open",
            "gauge",
            "WebSocket sessions relaying to a VNC server.",
            &one(t.sessions_open as f64),
        );
        metric(
            "zigral_proxy_sessions_total",
            "counter",
            "WebSocket sessions started.",
            &one(t.sessions_total as f64),
        );
        metric(
            "zigral_proxy_bytes_total",
            "counter",
            "Payload bytes relayed.",
            &dir(t.bytes_to_client, t.bytes_from_client),
        );
        metric(
            "zigral_proxy_frames_total",
            "counter",
            "WebSocket data frames relayed.",
            &dir(t.frames_to_client, t.frames_from_client),
        );
        metric(
            "zigral_proxy_dropped_input_total",
            "counter",
            "RFB input messages dropped on view-only sessions.",
            &one(t.dropped_input as f64),
        );
        metric(
            "zigral_proxy_target_connect_failures_total",
            "counter",
            "Failed connections to the VNC target.",
            &one(t.target_connect_failures as f64),
        );
        metric(
            "zigral_proxy_protocol_errors_total",
            "counter",
            "Sessions closed for a WebSocket or RFB protocol violation.",
            &one(t.protocol_errors as f64),
        );
        metric(
            "zigral_proxy_live_view_closed_total",
            "counter",
            "Live sessions closed because their desktop's live view was turned off.",
            &one(t.live_view_closed as f64),
        );
        let refused: Vec<(String, f64)> = Refusal::ALL
            .iter()
            .map(|r| {
                (
                    format!("{{reason=\"{}\"}}", r.label()),
                    t.refused.get(r).copied().unwrap_or(0) as f64,
                )
            })
            .collect();
        metric(
            "zigral_proxy_refused_total",
            "counter",
            "Connections or WebSocket requests refused, by reason.",
            &refused,
        );
        let sessions = self.sessions();
        let shown = &sessions[..sessions.len().min(MAX_SESSION_SERIES)];
        let labels = |x: &SessionSnapshot| {
            format!(
                "session=\"{}\",desktop=\"{}\",role=\"{}\"",
                x.id,
                x.desktop.map(|d| d.to_string()).unwrap_or_default(),
                x.role
            )
        };
        let per = |f: &dyn Fn(&SessionSnapshot) -> Vec<(String, f64)>| -> Vec<(String, f64)> {
            shown.iter().flat_map(f).collect()
        };
        metric(
            "zigral_proxy_session_bytes",
            "gauge",
            "Payload bytes relayed by a live session.",
            &per(&|x| {
                vec![
                    (
                        format!("{{{},direction=\"to_client\"}}", labels(x)),
                        x.bytes_to_client as f64,
                    ),
                    (
                        format!("{{{},direction=\"from_client\"}}", labels(x)),
                        x.bytes_from_client as f64,
                    ),
                ]
            }),
        );
        metric(
            "zigral_proxy_session_frames",
            "gauge",
            "WebSocket data frames relayed by a live session.",
            &per(&|x| {
                vec![
                    (
                        format!("{{{},direction=\"to_client\"}}", labels(x)),
                        x.frames_to_client as f64,
                    ),
                    (
                        format!("{{{},direction=\"from_client\"}}", labels(x)),
                        x.frames_from_client as f64,
                    ),
                ]
            }),
        );
        metric(
            "zigral_proxy_session_rtt_seconds",
            "gauge",
            "Last WebSocket ping round trip of a live session.",
            &per(&|x| {
                x.rtt_us
                    .map(|r| (format!("{{{}}}", labels(x)), r as f64 / 1e6))
                    .into_iter()
                    .collect()
            }),
        );
        metric(
            "zigral_proxy_session_idle_seconds",
            "gauge",
            "Time since a live session's client last sent anything.",
            &per(&|x| vec![(format!("{{{}}}", labels(x)), x.idle_ms as f64 / 1e3)]),
        );
        s
    }
}
