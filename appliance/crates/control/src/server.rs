//! Router assembly and serving: the documented API plus `/api/v1/openapi.json`, the web app
//! at `/` (when `web_dir` is set, see [`crate::web`]), JSON fallbacks, body limit, panic
//! catcher, and one middleware that assigns request ids, records metrics and logs internal
//! errors once. Plain TCP or TLS (rustls with ring).

use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::connect_info::Connected;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::serve::IncomingStream;
use rand::RngCore;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tower_http::catch_panic::CatchPanicLayer;

use crate::auth::Principal;
use crate::error::{ApiError, ErrorBody, InternalDetail};
use crate::state::AppState;
use crate::web::WebApp;

/// Header carrying the request id (accepted from the client if sane, else generated).
pub const REQUEST_ID: &str = "x-request-id";

/// Remote address of a connection (for login rate limiting and audit).
#[derive(Debug, Clone, Copy)]
pub struct ClientAddr(pub SocketAddr);

impl Connected<IncomingStream<'_, TcpListener>> for ClientAddr {
    fn connect_info(s: IncomingStream<'_, TcpListener>) -> Self {
        ClientAddr(*s.remote_addr())
    }
}

impl Connected<IncomingStream<'_, TlsListener>> for ClientAddr {
    fn connect_info(s: IncomingStream<'_, TlsListener>) -> Self {
        ClientAddr(*s.remote_addr())
    }
}

/// The OpenAPI document of every route [`router`] serves.
pub fn openapi() -> utoipa::openapi::OpenApi {
    crate::api::openapi_router().split_for_parts().1
}

/// The whole control-plane application.
pub fn router(state: AppState) -> Router {
    let (api, doc) = crate::api::openapi_router().split_for_parts();
    let doc = Arc::new(doc.to_pretty_json().unwrap_or_else(|_| "{}".into()));
    let max_body = state.config().max_body_bytes;
    // The web app at `/` (setting web_dir): what the API does not route and is not under an
    // API prefix.
    let web = WebApp::from_config(state.config()).map(Arc::new);
    api.route(
        "/api/v1/openapi.json",
        get(move |_who: Principal| {
            let doc = doc.clone();
            async move {
                (
                    [(header::CONTENT_TYPE, "application/json")],
                    doc.as_str().to_owned(),
                )
            }
        }),
    )
    .nest_service("/mcp", crate::mcp::router(state.clone()))
    .fallback(move |req: Request| {
        let web = web.clone();
        async move {
            match web {
                Some(w) if WebApp::serves(req.method(), req.uri().path()) => w.respond(req).await,
                _ => ApiError::not_found("no such endpoint").into_response(),
            }
        }
    })
    .method_not_allowed_fallback(|| async {
        ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "method not allowed on this endpoint",
        )
    })
    .layer(DefaultBodyLimit::max(max_body))
    // While an update's health gate runs, writes wait (503 + Retry-After).
    .layer(axum::middleware::from_fn_with_state(
        state.clone(),
        crate::update::pause_writes,
    ))
    .layer(axum::middleware::from_fn_with_state(
        state.clone(),
        redact_responses,
    ))
    .layer(axum::middleware::from_fn_with_state(state.clone(), observe))
    .layer(CatchPanicLayer::custom(
        |_panic: Box<dyn std::any::Any + Send>| {
            ApiError::internal("handler panicked").into_response()
        },
    ))
    .with_state(state)
}

fn request_id(req: &Request) -> String {
    if let Some(v) = req.headers().get(REQUEST_ID).and_then(|v| v.to_str().ok())
        && (1..=64).contains(&v.len())
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return v.to_owned();
    }
    let mut b = [0u8; 8];
    rand::rng().fill_bytes(&mut b);
    hex::encode(b)
}

async fn observe(State(st): State<AppState>, req: Request, next: Next) -> Response {
    let t0 = Instant::now();
    let id = request_id(&req);
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let mut resp = next.run(req).await;
    if let Some(InternalDetail(detail)) = resp.extensions_mut().remove::<InternalDetail>() {
        st.metrics().internal_errors.fetch_add(1, Ordering::Relaxed);
        tracing::error!(request_id = %id, %method, %path, error = %detail, "internal error");
        let status = resp.status();
        let mut fresh = (
            status,
            axum::Json(ErrorBody {
                error: "internal".into(),
                message: format!("internal error (request id {id})"),
            }),
        )
            .into_response();
        std::mem::swap(&mut resp, &mut fresh);
    }
    if let Ok(v) = HeaderValue::from_str(&id) {
        resp.headers_mut().insert(REQUEST_ID, v);
    }
    st.metrics().observe(resp.status().as_u16(), t0.elapsed());
    resp
}

/// Largest JSON response checked for secret values (bigger ones pass as they are).
const MAX_REDACTED_BODY: usize = 64 << 20;

/// While any credential or 2FA code is live, JSON responses have every live secret value
/// replaced by `<secret:name>` (page text or an accessibility snapshot can show a typed
/// username; a message can quote one).
async fn redact_responses(State(st): State<AppState>, req: Request, next: Next) -> Response {
    let resp = next.run(req).await;
    let json = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !json {
        return resp;
    }
    let r = st.hitl().vault().redactor_all();
    if r.is_empty() {
        return resp;
    }
    let (mut parts, body) = resp.into_parts();
    let bytes = match axum::body::to_bytes(body, MAX_REDACTED_BODY).await {
        Ok(b) => b,
        Err(_) => {
            return ApiError::internal("response too large to check for secrets").into_response();
        }
    };
    let out = match std::str::from_utf8(&bytes) {
        Ok(text) if r.contains_secret(text) => {
            parts.headers.remove(header::CONTENT_LENGTH);
            axum::body::Body::from(r.redact(text).into_owned())
        }
        _ => axum::body::Body::from(bytes),
    };
    Response::from_parts(parts, out)
}

/// Serves plain HTTP on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let _ = listener.set_ttl(64);
    let app = router(state).into_make_service_with_connect_info::<ClientAddr>();
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}

/// Serves HTTPS on `listener` with `tls` until `shutdown` resolves.
pub async fn serve_tls(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let listener = TlsListener::new(listener, tls)?;
    let app = router(state).into_make_service_with_connect_info::<ClientAddr>();
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}

/// Why TLS could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("TLS file {path}: {message}")]
    File { path: String, message: String },
    #[error("TLS configuration: {0}")]
    Config(String),
}

/// A rustls server configuration (ring provider) from PEM certificate chain and key files.
pub fn load_tls(cert: &Path, key: &Path) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let file_err = |p: &Path, m: String| TlsError::File {
        path: p.display().to_string(),
        message: m,
    };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| file_err(cert, e.to_string()))?
        .collect::<Result<_, _>>()
        .map_err(|e| file_err(cert, e.to_string()))?;
    if certs.is_empty() {
        return Err(file_err(cert, "no certificate found".into()));
    }
    let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| file_err(key, e.to_string()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key_der)
        .map_err(|e| TlsError::Config(e.to_string()))?;
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

/// A listener that completes TLS handshakes in the background (a slow or bad handshake never
/// blocks other clients) and hands finished streams to axum.
pub struct TlsListener {
    rx: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for TlsListener {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl TlsListener {
    pub fn new(tcp: TcpListener, cfg: Arc<rustls::ServerConfig>) -> std::io::Result<Self> {
        let local = tcp.local_addr()?;
        let acceptor = TlsAcceptor::from(cfg);
        let (tx, rx) = mpsc::channel(64);
        let task = tokio::spawn(async move {
            loop {
                let (sock, addr) = match tcp.accept().await {
                    Ok(x) => x,
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let acceptor = acceptor.clone();
                let tx = tx.clone();
                tokio::spawn(async move {
                    match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(sock)).await
                    {
                        Ok(Ok(s)) => {
                            let _ = tx.send((s, addr)).await;
                        }
                        Ok(Err(e)) => tracing::debug!(%addr, error = %e, "TLS handshake failed"),
                        Err(_) => tracing::debug!(%addr, "TLS handshake timed out"),
                    }
                });
            }
        });
        Ok(TlsListener { rx, local, task })
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.rx.recv().await {
            Some(x) => x,
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        Ok(self.local)
    }
}
