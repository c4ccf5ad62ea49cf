//! The proxy server: accept loop with connection limits, TLS sniffing, HTTP/1.1 (hyper) for
//! the WebSocket handshake, static files and the loopback-only `/metrics`, token checks before
//! any byte reaches the VNC server, and a draining shutdown.
//!
//! Token checks, in order: signature, expiry, the `desktop` query parameter if given, the
//! desktop's port range, then — when the routing has [`Leases`](zigral_token::Leases) — the
//! lease. The proxy reads desktop N's lease file on every WebSocket attempt (a read of a
//! few bytes, done inline: cheaper than a hop to a blocking thread, and never stale) and accepts
//! only a token whose `lease` claim equals it, both absent included. A mismatch is a 403
//! ([`LEASE_MISMATCH`], refusal `lease_mismatch`): the token was minted for an earlier
//! tenancy of a desktop that has since been handed to someone else or destroyed. A lease
//! file that cannot be read refuses every token for that desktop (503, `lease_unreadable`)
//! and logs why. Sessions already relaying are not re-checked; destroying a desktop ends
//! them with its VNC server.
//!
//! A `control` connection additionally gets an [`InputGate`](crate::control::InputGate) when
//! the routing has control files: while someone else holds the desktop's control lease its
//! input is dropped (see [`crate::control`]).
//!
//! Last, when the routing has live-view files, a desktop whose live view is off refuses the
//! attempt with 403 ([`LIVE_VIEW_OFF`], refusal `live_view_off`; an unreadable file counts as
//! off), and every accepted connection gets a [`LiveViewSignal`](crate::live_view::LiveViewSignal):
//! the relay closes it (1008, "live view turned off") within a poll of the view turning off
//! (see [`crate::live_view`]).

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};
use zigral_token::{Role, TokenError};

use crate::config::{Config, Routing, Target};
use crate::control::ControlWatch;
use crate::live_view::LiveViewWatch;
use crate::metrics::{Metrics, Refusal};
use crate::relay::{self, Dest, End, Params};
use crate::web::{self, Body};
use crate::ws;

/// Body of the 403 answering a token whose lease is not the desktop's current lease.
pub const LEASE_MISMATCH: &str = "token is for an earlier lease of this desktop";
/// Body of the 403 answering an attempt to watch a desktop whose live view is turned off.
pub const LIVE_VIEW_OFF: &str = "live_view_off: the live view of this desktop is turned off";

/// A running proxy's shared state. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Proxy {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    config: Config,
    web_root: Option<PathBuf>,
    metrics: Arc<Metrics>,
    per_ip: Mutex<HashMap<IpAddr, usize>>,
    open: std::sync::atomic::AtomicUsize,
    lingering: std::sync::atomic::AtomicUsize,
    shutdown: CancellationToken,
    tracker: TaskTracker,
    /// Watches the control files (token routing with a state directory).
    control: Option<ControlWatch>,
    /// Watches the live-view files (token routing with a state directory).
    live_view: Option<LiveViewWatch>,
}

/// Why the proxy could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("web directory {path}: {source}")]
    WebDir {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

impl Proxy {
    /// Prepares a proxy for `config` (checks the web directory).
    pub fn new(config: Config) -> Result<Self, ServeError> {
        let web_root = match &config.web_dir {
            Some(d) => {
                let c = std::fs::canonicalize(d).map_err(|source| ServeError::WebDir {
                    path: d.clone(),
                    source,
                })?;
                if !c.is_dir() {
                    return Err(ServeError::WebDir {
                        path: d.clone(),
                        source: io::Error::new(io::ErrorKind::NotADirectory, "not a directory"),
                    });
                }
                Some(c)
            }
            None => None,
        };
        let control = match &config.routing {
            Routing::Token {
                control: Some(files),
                ..
            } => Some(ControlWatch::new(files.clone())),
            _ => None,
        };
        let live_view = match &config.routing {
            Routing::Token {
                live_view: Some(files),
                ..
            } => Some(LiveViewWatch::new(files.clone())),
            _ => None,
        };
        Ok(Proxy {
            inner: Arc::new(Inner {
                control,
                live_view,
                config,
                web_root,
                metrics: Metrics::new(),
                per_ip: Mutex::new(HashMap::new()),
                open: Default::default(),
                lingering: Default::default(),
                shutdown: CancellationToken::new(),
                tracker: TaskTracker::new(),
            }),
        })
    }

    /// The proxy's counters (stream health), for `/metrics` or the dashboard.
    pub fn metrics(&self) -> Arc<Metrics> {
        self.inner.metrics.clone()
    }

    pub fn config(&self) -> &Config {
        &self.inner.config
    }
}

/// Holds one admitted TCP connection's place in the limits until dropped.
#[derive(Debug)]
struct Permit {
    proxy: Proxy,
    ip: IpAddr,
}

impl Drop for Permit {
    fn drop(&mut self) {
        use std::sync::atomic::Ordering::Relaxed;
        let inner = &self.proxy.inner;
        inner.open.fetch_sub(1, Relaxed);
        inner.metrics.connections_open.fetch_sub(1, Relaxed);
        if let Ok(mut m) = inner.per_ip.lock()
            && let Some(n) = m.get_mut(&self.ip)
        {
            *n -= 1;
            if *n == 0 {
                m.remove(&self.ip);
            }
        }
    }
}

fn admit(proxy: &Proxy, ip: IpAddr) -> Result<Permit, Refusal> {
    use std::sync::atomic::Ordering::Relaxed;
    let inner = &proxy.inner;
    let cfg = &inner.config;
    let mut m = inner.per_ip.lock().map_err(|_| Refusal::ConnectionLimit)?;
    let open = inner.open.load(Relaxed);
    if cfg.max_connections > 0 && open >= cfg.max_connections {
        return Err(Refusal::ConnectionLimit);
    }
    let n = m.entry(ip).or_insert(0);
    if cfg.max_per_ip > 0 && *n >= cfg.max_per_ip {
        return Err(Refusal::PerIpLimit);
    }
    *n += 1;
    inner.open.fetch_add(1, Relaxed);
    inner.metrics.connections_open.fetch_add(1, Relaxed);
    inner.metrics.connections_total.fetch_add(1, Relaxed);
    Ok(Permit {
        proxy: proxy.clone(),
        ip,
    })
}

/// Serves connections from `listener` until `shutdown` resolves, then stops accepting, closes
/// every WebSocket with 1001 (after the frame in flight), finishes HTTP requests in progress
/// and waits up to the drain timeout for all connections to end.
pub async fn serve(
    listener: TcpListener,
    proxy: Proxy,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            r = listener.accept() => match r {
                Ok((sock, peer)) => match admit(&proxy, peer.ip()) {
                    Ok(permit) => {
                        let p = proxy.clone();
                        proxy.inner.tracker.spawn(handle_conn(p, sock, peer, permit));
                    }
                    Err(why) => {
                        proxy.inner.metrics.refuse(why);
                        debug!(%peer, ?why, "connection refused");
                        refuse_conn(
                            &proxy,
                            sock,
                            b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 20\r\nConnection: close\r\n\r\ntoo many connections\n",
                        );
                    }
                },
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    warn!("accept: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }
    drop(listener);
    let inner = &proxy.inner;
    info!(
        open = inner.open.load(std::sync::atomic::Ordering::Relaxed),
        "shutting down: draining connections"
    );
    inner.shutdown.cancel();
    inner.tracker.close();
    if tokio::time::timeout(inner.config.drain_timeout, inner.tracker.wait())
        .await
        .is_err()
    {
        warn!("drain timeout: closing remaining connections");
    }
    Ok(())
}

/// Answers a refused connection and closes it without resetting it (a close with unread
/// request bytes would send RST and the client might never see the answer). At most
/// `MAX_LINGER` refusals linger at once; beyond that they are just dropped.
fn refuse_conn(proxy: &Proxy, sock: TcpStream, msg: &'static [u8]) {
    const MAX_LINGER: usize = 64;
    use std::sync::atomic::Ordering::Relaxed;
    let lingering = &proxy.inner.lingering;
    if lingering.fetch_add(1, Relaxed) >= MAX_LINGER {
        lingering.fetch_sub(1, Relaxed);
        let _ = sock.try_write(msg);
        return;
    }
    let p = proxy.clone();
    tokio::spawn(async move {
        linger_close(sock, msg).await;
        p.inner.lingering.fetch_sub(1, Relaxed);
    });
}

async fn linger_close(mut sock: TcpStream, msg: &[u8]) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        sock.write_all(msg).await?;
        sock.shutdown().await?;
        let mut trash = [0u8; 1024];
        while sock.read(&mut trash).await? > 0 {}
        Ok::<(), io::Error>(())
    })
    .await;
}

/// A WebSocket client after the handshake: the connection itself with the bytes hyper had
/// already read past the request, or (should hyper's type ever differ) hyper's wrapper.
enum Upgraded {
    Direct(ClientIo, Bytes),
    Hyper(TokioIo<hyper::upgrade::Upgraded>),
}

/// The client side of a connection: plain TCP or TLS.
enum ClientIo {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::server::TlsStream<TcpStream>>),
}

impl AsyncRead for ClientIo {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        match self.get_mut() {
            ClientIo::Plain(s) => std::pin::Pin::new(s).poll_read(cx, buf),
            ClientIo::Tls(s) => std::pin::Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for ClientIo {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<io::Result<usize>> {
        match self.get_mut() {
            ClientIo::Plain(s) => std::pin::Pin::new(s).poll_write(cx, buf),
            ClientIo::Tls(s) => std::pin::Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> std::task::Poll<io::Result<usize>> {
        match self.get_mut() {
            ClientIo::Plain(s) => std::pin::Pin::new(s).poll_write_vectored(cx, bufs),
            ClientIo::Tls(s) => std::pin::Pin::new(s).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            ClientIo::Plain(s) => s.is_write_vectored(),
            ClientIo::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        match self.get_mut() {
            ClientIo::Plain(s) => std::pin::Pin::new(s).poll_flush(cx),
            ClientIo::Tls(s) => std::pin::Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        match self.get_mut() {
            ClientIo::Plain(s) => std::pin::Pin::new(s).poll_shutdown(cx),
            ClientIo::Tls(s) => std::pin::Pin::new(s).poll_shutdown(cx),
        }
    }
}

async fn handle_conn(proxy: Proxy, sock: TcpStream, peer: SocketAddr, permit: Permit) {
    let _ = sock.set_nodelay(true);
    let cfg = &proxy.inner.config;
    let shutdown = proxy.inner.shutdown.clone();
    let io = match &cfg.tls {
        None => ClientIo::Plain(sock),
        Some(tls) => {
            // websockify-style: a TLS ClientHello starts with 0x16 (handshake record).
            let mut first = [0u8; 1];
            let peeked = tokio::select! {
                r = tokio::time::timeout(cfg.handshake_timeout, sock.peek(&mut first)) => r,
                _ = shutdown.cancelled() => return,
            };
            match peeked {
                Ok(Ok(1)) => {}
                _ => return,
            }
            if first[0] == 0x16 {
                let acceptor = tokio_rustls::TlsAcceptor::from(tls.clone());
                match tokio::time::timeout(cfg.handshake_timeout, acceptor.accept(sock)).await {
                    Ok(Ok(s)) => ClientIo::Tls(Box::new(s)),
                    Ok(Err(e)) => {
                        debug!(%peer, "TLS handshake failed: {e}");
                        return;
                    }
                    Err(_) => return,
                }
            } else if cfg.tls_only {
                proxy.inner.metrics.refuse(Refusal::TlsRequired);
                linger_close(
                    sock,
                    b"HTTP/1.1 403 Forbidden\r\nContent-Length: 13\r\nConnection: close\r\n\r\nTLS required\n",
                )
                .await;
                return;
            } else {
                ClientIo::Plain(sock)
            }
        }
    };
    let permit = Arc::new(permit);
    let p = proxy.clone();
    let svc = hyper::service::service_fn(move |req| {
        let p = p.clone();
        let permit = permit.clone();
        async move { Ok::<_, Infallible>(handle_request(p, peer, permit, req).await) }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(cfg.handshake_timeout)
        .max_buf_size(64 * 1024)
        .serve_connection(TokioIo::new(io), svc)
        .with_upgrades();
    let mut conn = std::pin::pin!(conn);
    tokio::select! {
        r = conn.as_mut() => {
            if let Err(e) = r {
                debug!(%peer, "http: {e}");
            }
        }
        _ = shutdown.cancelled() => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
}

fn is_upgrade(headers: &HeaderMap) -> bool {
    headers
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"))
}

fn header_has_token(headers: &HeaderMap, name: header::HeaderName, token: &str) -> bool {
    headers.get_all(name).iter().any(|v| {
        v.to_str()
            .map(|s| s.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
            .unwrap_or(false)
    })
}

/// The value of `key` in a URL query string (percent-decoded).
pub fn query_param(query: Option<&str>, key: &str) -> Option<String> {
    query?.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        (k == key).then(|| {
            percent_encoding::percent_decode_str(v)
                .decode_utf8_lossy()
                .into_owned()
        })
    })
}

async fn handle_request(
    proxy: Proxy,
    peer: SocketAddr,
    permit: Arc<Permit>,
    req: Request<Incoming>,
) -> Response<Body> {
    if is_upgrade(req.headers()) {
        return websocket(proxy, peer, permit, req);
    }
    let path = req.uri().path().to_owned();
    let loopback = peer.ip().is_loopback()
        || matches!(peer.ip(), IpAddr::V6(v6) if v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback()));
    match path.as_str() {
        "/healthz" => return web::text(StatusCode::OK, "ok"),
        "/metrics" if loopback => {
            let mut r = Response::new(Full::new(Bytes::from(
                proxy.inner.metrics.render_prometheus(),
            )));
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            );
            return r;
        }
        "/sessions" if loopback => {
            let body = serde_json::json!({
                "totals": proxy.inner.metrics.totals(),
                "sessions": proxy.inner.metrics.sessions(),
            });
            let mut r = Response::new(Full::new(Bytes::from(body.to_string())));
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            return r;
        }
        "/metrics" | "/sessions" => return web::text(StatusCode::FORBIDDEN, "loopback only"),
        _ => {}
    }
    match &proxy.inner.web_root {
        Some(root) => web::serve(root, req.method(), &path, req.headers()).await,
        None => web::text(
            StatusCode::NOT_FOUND,
            "not found (this is a WebSocket proxy; no --web directory is served)",
        ),
    }
}

fn refuse(
    proxy: &Proxy,
    peer: SocketAddr,
    why: Refusal,
    status: StatusCode,
    msg: &str,
) -> Response<Body> {
    proxy.inner.metrics.refuse(why);
    info!(%peer, reason = ?why, "websocket refused: {msg}");
    web::text(status, msg)
}

/// Checks the WebSocket handshake, origin and token; on success answers 101 and spawns the
/// session, which connects to the VNC server only now.
fn websocket(
    proxy: Proxy,
    peer: SocketAddr,
    permit: Arc<Permit>,
    mut req: Request<Incoming>,
) -> Response<Body> {
    let cfg = &proxy.inner.config;
    let h = req.headers();
    if req.method() != Method::GET {
        return refuse(
            &proxy,
            peer,
            Refusal::BadHandshake,
            StatusCode::METHOD_NOT_ALLOWED,
            "WebSocket upgrade needs GET",
        );
    }
    if !header_has_token(h, header::CONNECTION, "upgrade") {
        return refuse(
            &proxy,
            peer,
            Refusal::BadHandshake,
            StatusCode::BAD_REQUEST,
            "Connection: upgrade missing",
        );
    }
    if h.get(header::SEC_WEBSOCKET_VERSION).map(|v| v.as_bytes()) != Some(b"13") {
        let mut r = refuse(
            &proxy,
            peer,
            Refusal::BadHandshake,
            StatusCode::UPGRADE_REQUIRED,
            "WebSocket version 13 required",
        );
        r.headers_mut().insert(
            header::SEC_WEBSOCKET_VERSION,
            HeaderValue::from_static("13"),
        );
        return r;
    }
    let key = match h.get(header::SEC_WEBSOCKET_KEY) {
        Some(k) => {
            use base64::Engine;
            let ok = base64::engine::general_purpose::STANDARD
                .decode(k.as_bytes())
                .is_ok_and(|d| d.len() == 16);
            if !ok {
                return refuse(
                    &proxy,
                    peer,
                    Refusal::BadHandshake,
                    StatusCode::BAD_REQUEST,
                    "bad Sec-WebSocket-Key",
                );
            }
            k.as_bytes().to_vec()
        }
        None => {
            return refuse(
                &proxy,
                peer,
                Refusal::BadHandshake,
                StatusCode::BAD_REQUEST,
                "Sec-WebSocket-Key missing",
            );
        }
    };
    let origin = h.get(header::ORIGIN).and_then(|v| v.to_str().ok());
    let host = h.get(header::HOST).and_then(|v| v.to_str().ok());
    if !cfg.origins.allows(origin, host) {
        return refuse(
            &proxy,
            peer,
            Refusal::Origin,
            StatusCode::FORBIDDEN,
            "origin not allowed",
        );
    }
    let binary = header_has_token(h, header::SEC_WEBSOCKET_PROTOCOL, "binary");

    // Route: fixed target, or the desktop named by a valid token.
    let query = req.uri().query();
    let mut gate = None;
    let mut live_view = None;
    let (dest, desktop, role, target_label) = match &cfg.routing {
        Routing::Fixed(t) => {
            let d = match t {
                Target::Tcp(a) => Dest::Tcp(a.clone()),
                Target::Unix(p) => Dest::Unix(p.clone()),
            };
            (d, None, "fixed", t.to_string())
        }
        Routing::Token {
            key,
            vnc_host,
            vnc_base,
            leases,
            ..
        } => {
            let Some(token) = query_param(query, "token").filter(|t| !t.is_empty()) else {
                return refuse(
                    &proxy,
                    peer,
                    Refusal::NoToken,
                    StatusCode::UNAUTHORIZED,
                    "token required",
                );
            };
            let claims = match key.verify(&token) {
                Ok(c) => c,
                Err(TokenError::Expired) => {
                    return refuse(
                        &proxy,
                        peer,
                        Refusal::ExpiredToken,
                        StatusCode::FORBIDDEN,
                        "token expired",
                    );
                }
                Err(_) => {
                    return refuse(
                        &proxy,
                        peer,
                        Refusal::BadToken,
                        StatusCode::FORBIDDEN,
                        "invalid token",
                    );
                }
            };
            if let Some(want) = query_param(query, "desktop").filter(|d| !d.is_empty())
                && want.parse::<u32>().ok() != Some(claims.desktop)
            {
                return refuse(
                    &proxy,
                    peer,
                    Refusal::WrongDesktop,
                    StatusCode::FORBIDDEN,
                    "token is for another desktop",
                );
            }
            let Some(port) = u16::try_from(u32::from(*vnc_base) + claims.desktop)
                .ok()
                .filter(|p| *p != 0)
            else {
                return refuse(
                    &proxy,
                    peer,
                    Refusal::BadToken,
                    StatusCode::FORBIDDEN,
                    "desktop out of range",
                );
            };
            if let Some(leases) = leases {
                match leases.read(claims.desktop) {
                    Ok(current) if current == claims.lease => {}
                    Ok(current) => {
                        info!(
                            %peer,
                            desktop = claims.desktop,
                            sub = %claims.sub,
                            token_lease = ?claims.lease,
                            current_lease = ?current,
                            "stale lease"
                        );
                        return refuse(
                            &proxy,
                            peer,
                            Refusal::LeaseMismatch,
                            StatusCode::FORBIDDEN,
                            LEASE_MISMATCH,
                        );
                    }
                    Err(e) => {
                        warn!(%peer, desktop = claims.desktop, "refusing: {e}");
                        return refuse(
                            &proxy,
                            peer,
                            Refusal::LeaseUnreadable,
                            StatusCode::SERVICE_UNAVAILABLE,
                            "this desktop's lease cannot be read",
                        );
                    }
                }
            }
            if let Some(w) = &proxy.inner.live_view {
                if w.is_off(claims.desktop) {
                    info!(
                        %peer,
                        desktop = claims.desktop,
                        sub = %claims.sub,
                        "live view is off"
                    );
                    return refuse(
                        &proxy,
                        peer,
                        Refusal::LiveViewOff,
                        StatusCode::FORBIDDEN,
                        LIVE_VIEW_OFF,
                    );
                }
                live_view = Some(w.signal(claims.desktop));
            }
            let addr = SocketAddr::new(*vnc_host, port);
            let role = match claims.role {
                Role::View => "view",
                Role::Control => "control",
            };
            if let (Role::Control, Some(w)) = (claims.role, &proxy.inner.control) {
                gate = Some(w.gate(claims.desktop, claims.control.clone()));
            }
            info!(
                %peer,
                desktop = claims.desktop,
                role,
                sub = %claims.sub,
                lease = ?claims.lease,
                input = gate.as_ref().is_none_or(|g| g.allowed()),
                "websocket accepted"
            );
            (
                Dest::TcpAddr(addr),
                Some(claims.desktop),
                role,
                addr.to_string(),
            )
        }
    };

    let on_upgrade = hyper::upgrade::on(&mut req);
    let params = Params {
        view_only: role == "view",
        gate,
        live_view,
        heartbeat: cfg.heartbeat,
        idle_timeout: cfg.idle_timeout,
        max_frame: cfg.max_frame,
    };
    let connect_timeout = cfg.connect_timeout;
    let p = proxy.clone();
    proxy.inner.tracker.spawn(async move {
        let _permit = permit;
        let upgraded = match on_upgrade.await {
            Ok(u) => u,
            Err(e) => {
                debug!(%peer, "upgrade failed: {e}");
                return;
            }
        };
        // Unwrap hyper's upgrade to reach the socket (a plain one is spliced into).
        let mut client = match upgraded.downcast::<TokioIo<ClientIo>>() {
            Ok(parts) => Upgraded::Direct(parts.io.into_inner(), parts.read_buf),
            Err(u) => Upgraded::Hyper(TokioIo::new(u)),
        };
        let metrics = p.inner.metrics.clone();
        let target = match dest.connect(connect_timeout).await {
            Ok(t) => t,
            Err(e) => {
                metrics
                    .target_connect_failures
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                warn!(%peer, target = %target_label, "target unreachable: {e}");
                let (code, reason) = (ws::close::INTERNAL, "target unreachable");
                match &mut client {
                    Upgraded::Direct(io, _) => relay::refuse(io, code, reason).await,
                    Upgraded::Hyper(io) => relay::refuse(io, code, reason).await,
                }
                return;
            }
        };
        let guard = metrics.start_session(peer, desktop, role, target_label.clone());
        let stats = guard.stats.clone();
        let (m, shut) = (metrics.clone(), p.inner.shutdown.clone());
        let end = match client {
            Upgraded::Direct(ClientIo::Plain(s), pending) => {
                let c = relay::Client::<ClientIo>::Tcp(s);
                relay::run(c, pending, target, stats.clone(), m, params, shut).await
            }
            Upgraded::Direct(io, pending) => {
                let c = relay::Client::Other(io);
                relay::run(c, pending, target, stats.clone(), m, params, shut).await
            }
            Upgraded::Hyper(io) => {
                let c = relay::Client::Other(io);
                relay::run(c, Bytes::new(), target, stats.clone(), m, params, shut).await
            }
        };
        if matches!(end, End::Protocol(_) | End::Rfb(_)) {
            metrics
                .protocol_errors
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        if matches!(end, End::LiveViewOff) {
            metrics
                .live_view_closed
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        info!(
            %peer,
            session = stats.id,
            to_client = stats.bytes_to_client.load(std::sync::atomic::Ordering::Relaxed),
            from_client = stats.bytes_from_client.load(std::sync::atomic::Ordering::Relaxed),
            "session ended: {end:?}"
        );
        drop(guard);
    });

    let mut r = Response::new(Full::new(Bytes::new()));
    *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let hm = r.headers_mut();
    hm.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    hm.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    if let Ok(v) = HeaderValue::from_str(&ws::accept_key(&key)) {
        hm.insert(header::SEC_WEBSOCKET_ACCEPT, v);
    }
    if binary {
        hm.insert(
            header::SEC_WEBSOCKET_PROTOCOL,
            HeaderValue::from_static("binary"),
        );
    }
    r
}
