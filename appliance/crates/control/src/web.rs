//! The web app (`ui/dist/app`, setting `web_dir`) served at `/`: static files from one
//! directory, never outside it (no `..` or dot segment, encoded or not; a symlink whose target
//! leaves the directory is refused), `index.html` for extension-less paths that have no file
//! (the app routes by hash, so this is only a courtesy), Vite's hashed `/assets/*` cached for
//! a year as immutable, everything else `no-cache` with ETag / Last-Modified revalidation
//! (304), and a Content-Security-Policy that lets the page load only its own scripts, styles
//! and images and connect only to this origin and the live view's WebSocket.
//!
//! Paths under `/api`, `/mcp`, `/healthz`, `/readyz` and `/metrics` are never served from the
//! directory: an unknown one keeps answering the API's JSON 404.

use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::extract::Request;
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::config::Config;
use crate::error::ApiError;

/// First path segments that belong to the API and are never files of the web app.
const RESERVED: [&str; 5] = ["api", "mcp", "healthz", "readyz", "metrics"];

/// Cache policy of Vite's content-hashed files (`/assets/*`).
const IMMUTABLE: &str = "public, max-age=31536000, immutable";

/// Cache policy of `index.html` and other unhashed files: revalidate every time.
const REVALIDATE: &str = "no-cache";

/// The web app's directory and what its pages need to know.
#[derive(Debug, Clone)]
pub struct WebApp {
    root: PathBuf,
    live_view_port: u16,
}

/// Why a request path has no file to serve.
#[derive(Debug, thiserror::Error)]
enum LookupError {
    /// No such file, or the path is refused (outside the directory, a dot segment).
    #[error("not found")]
    NotFound,
    /// The filesystem failed otherwise (permissions, I/O).
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

impl LookupError {
    fn io(path: &Path, source: io::Error) -> LookupError {
        match source.kind() {
            io::ErrorKind::NotFound | io::ErrorKind::NotADirectory => LookupError::NotFound,
            _ => LookupError::Io {
                path: path.to_owned(),
                source,
            },
        }
    }
}

/// A file found inside the directory.
struct Found {
    path: PathBuf,
    len: u64,
    modified: Option<SystemTime>,
}

impl WebApp {
    /// The app in `root`; pages open the live view on `live_view_port`.
    pub fn new(root: impl Into<PathBuf>, live_view_port: u16) -> WebApp {
        WebApp {
            root: root.into(),
            live_view_port,
        }
    }

    /// The app configured by `web_dir`, if any (a missing directory is reported, not fatal:
    /// `/` then answers 404 until it appears).
    pub fn from_config(cfg: &Config) -> Option<WebApp> {
        let root = cfg.web_dir.clone()?;
        if !root.join("index.html").is_file() {
            tracing::warn!(web_dir = %root.display(), "web_dir has no index.html: the web UI answers 404 until it is built there");
        }
        Some(WebApp::new(root, cfg.live_view_port()))
    }

    /// Whether a request with `method` for `path` is the web app's to answer (GET or HEAD, not
    /// under an API prefix).
    pub fn serves(method: &Method, path: &str) -> bool {
        if method != Method::GET && method != Method::HEAD {
            return false;
        }
        let first = path.trim_start_matches('/').split('/').next().unwrap_or("");
        !RESERVED.contains(&first)
    }

    /// Answers a GET or HEAD for the app's files.
    pub async fn respond(&self, req: Request) -> Response {
        let (req, _body) = req.into_parts();
        let host = req
            .headers
            .get(header::HOST)
            .and_then(|v| v.to_str().ok())
            .or_else(|| req.uri.authority().map(|a| a.as_str()));
        let mut resp = match self.file_response(&req).await {
            Ok(r) => r,
            Err(LookupError::NotFound) => ApiError::not_found("no such file").into_response(),
            Err(e) => ApiError::internal(e).into_response(),
        };
        let h = resp.headers_mut();
        if let Ok(v) = HeaderValue::from_str(&content_security_policy(host, self.live_view_port)) {
            h.insert(header::CONTENT_SECURITY_POLICY, v);
        }
        h.insert(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        );
        h.insert(
            header::REFERRER_POLICY,
            HeaderValue::from_static("same-origin"),
        );
        resp
    }

    async fn file_response(&self, req: &Parts) -> Result<Response, LookupError> {
        let segs = segments(req.uri.path()).ok_or(LookupError::NotFound)?;
        let assets = segs.first().is_some_and(|s| s == "assets");
        let found = match self.lookup(&segs).await {
            Err(LookupError::NotFound)
                if !assets && segs.last().is_none_or(|s| !s.contains('.')) =>
            {
                self.lookup(&["index.html".to_owned()]).await?
            }
            r => r?,
        };
        let cache = if assets { IMMUTABLE } else { REVALIDATE };
        let etag = found.modified.map(|m| etag(found.len, m));
        let last_modified = found.modified.map(httpdate::fmt_http_date);
        let mut head = Response::builder()
            .header(header::CACHE_CONTROL, cache)
            .header(header::CONTENT_TYPE, content_type(&found.path));
        if let Some(e) = &etag {
            head = head.header(header::ETAG, e);
        }
        if let Some(l) = &last_modified {
            head = head.header(header::LAST_MODIFIED, l);
        }
        if not_modified(&req.headers, etag.as_deref(), found.modified) {
            return head
                .status(StatusCode::NOT_MODIFIED)
                .body(Body::empty())
                .map_err(|e| io_other(&found.path, e));
        }
        let head = head.header(header::CONTENT_LENGTH, found.len);
        let body = if req.method == Method::HEAD {
            Body::empty()
        } else {
            let f = tokio::fs::File::open(&found.path)
                .await
                .map_err(|e| LookupError::io(&found.path, e))?;
            Body::from_stream(tokio_util::io::ReaderStream::new(f))
        };
        head.body(body).map_err(|e| io_other(&found.path, e))
    }

    /// The regular file at `segs` below the root (a directory gives its `index.html`), after
    /// resolving symlinks: anything whose real path is outside the root is not found.
    async fn lookup(&self, segs: &[String]) -> Result<Found, LookupError> {
        let root = tokio::fs::canonicalize(&self.root)
            .await
            .map_err(|e| LookupError::io(&self.root, e))?;
        let mut path = root.clone();
        path.extend(segs);
        let mut real = inside(&root, &path).await?;
        let mut meta = tokio::fs::metadata(&real)
            .await
            .map_err(|e| LookupError::io(&real, e))?;
        if meta.is_dir() {
            real = inside(&root, &real.join("index.html")).await?;
            meta = tokio::fs::metadata(&real)
                .await
                .map_err(|e| LookupError::io(&real, e))?;
        }
        if !meta.is_file() {
            return Err(LookupError::NotFound);
        }
        Ok(Found {
            len: meta.len(),
            modified: meta.modified().ok(),
            path: real,
        })
    }
}

fn io_other(path: &Path, e: impl std::fmt::Display) -> LookupError {
    LookupError::Io {
        path: path.to_owned(),
        source: io::Error::other(e.to_string()),
    }
}

/// `path` with symlinks resolved, if that stays below `root` (itself canonical).
async fn inside(root: &Path, path: &Path) -> Result<PathBuf, LookupError> {
    let real = tokio::fs::canonicalize(path)
        .await
        .map_err(|e| LookupError::io(path, e))?;
    if real.starts_with(root) {
        Ok(real)
    } else {
        tracing::warn!(path = %path.display(), "web: refused a file outside web_dir");
        Err(LookupError::NotFound)
    }
}

/// The decoded, non-empty segments of a request path; `None` when any is refused: a dot
/// segment or dot file (`.`, `..`, `.git`), a backslash or NUL, or bad percent-encoding. The
/// path is decoded before it is split, so `%2e%2e` and `..%2f` are caught too.
fn segments(path: &str) -> Option<Vec<String>> {
    let decoded = percent_encoding::percent_decode_str(path)
        .decode_utf8()
        .ok()?;
    let mut out = Vec::new();
    for seg in decoded.split('/').filter(|s| !s.is_empty()) {
        if seg.starts_with('.') || seg.contains(['\\', '\0']) {
            return None;
        }
        out.push(seg.to_owned());
    }
    Some(out)
}

/// `"<size hex>-<mtime ns hex>"`: changes whenever the file is replaced or rewritten.
fn etag(len: u64, modified: SystemTime) -> String {
    let ns = modified
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_nanos();
    format!("\"{len:x}-{ns:x}\"")
}

/// Whether the client's copy is current: `If-None-Match` (weak comparison, or `*`) when
/// present, else `If-Modified-Since` at or after the file's time (whole seconds).
fn not_modified(h: &HeaderMap, etag: Option<&str>, modified: Option<SystemTime>) -> bool {
    if let Some(inm) = h.get(header::IF_NONE_MATCH) {
        let (Ok(inm), Some(etag)) = (inm.to_str(), etag) else {
            return false;
        };
        return inm.split(',').map(str::trim).any(|t| {
            t == "*" || t.strip_prefix("W/").unwrap_or(t) == etag.trim_start_matches("W/")
        });
    }
    let since = h
        .get(header::IF_MODIFIED_SINCE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| httpdate::parse_http_date(v).ok());
    match (since, modified) {
        (Some(since), Some(m)) => {
            let secs = |t: SystemTime| {
                t.duration_since(UNIX_EPOCH)
                    .map(|d| d.as_secs())
                    .unwrap_or(0)
            };
            secs(m) <= secs(since)
        }
        _ => false,
    }
}

/// The media type of a file of the app, by extension.
fn content_type(path: &Path) -> &'static str {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    match ext.as_deref() {
        Some("html" | "htm") => "text/html; charset=utf-8",
        Some("js" | "mjs") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("json" | "map") => "application/json",
        Some("webmanifest") => "application/manifest+json",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("jpg" | "jpeg") => "image/jpeg",
        Some("gif") => "image/gif",
        Some("webp") => "image/webp",
        Some("ico") => "image/x-icon",
        Some("woff2") => "font/woff2",
        Some("woff") => "font/woff",
        Some("ttf") => "font/ttf",
        Some("otf") => "font/otf",
        Some("wasm") => "application/wasm",
        Some("txt") => "text/plain; charset=utf-8",
        Some("mp4") => "video/mp4",
        Some("webm") => "video/webm",
        _ => "application/octet-stream",
    }
}

/// Splits a `Host` header into its host name and the whole value, if it is a plain host name,
/// IPv4 address or bracketed IPv6 address with an optional port (anything else could inject
/// into the policy).
fn host_parts(host: &str) -> Option<(&str, &str)> {
    let host = host.trim();
    let (name, port) = if host.starts_with('[') {
        let end = host.find(']')?;
        let name = &host[..=end];
        if !name[1..end]
            .chars()
            .all(|c| c.is_ascii_hexdigit() || c == ':' || c == '.')
        {
            return None;
        }
        (name, &host[end + 1..])
    } else {
        let split = host.find(':').unwrap_or(host.len());
        let name = &host[..split];
        if !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-' || c == '_')
        {
            return None;
        }
        (name, &host[split..])
    };
    let port_ok = port.is_empty()
        || port
            .strip_prefix(':')
            .is_some_and(|p| (1..=5).contains(&p.len()) && p.chars().all(|c| c.is_ascii_digit()));
    (!name.is_empty() && name != "[]" && port_ok).then_some((name, host))
}

/// The Content-Security-Policy of the app's responses. Scripts, styles, fonts and images come
/// only from this origin (images also from `data:` and `blob:`, media from `blob:` for
/// recordings); fetches and WebSockets go to this origin and to the live view's proxy on the
/// same host name at `live_view_port`. Without a usable `Host` header any `ws:`/`wss:` URL is
/// allowed for the live view instead. The page may not be framed.
pub fn content_security_policy(host: Option<&str>, live_view_port: u16) -> String {
    let connect = match host.and_then(host_parts) {
        Some((name, whole)) => format!(
            "'self' ws://{whole} wss://{whole} ws://{name}:{live_view_port} wss://{name}:{live_view_port}"
        ),
        None => "'self' ws: wss:".to_owned(),
    };
    format!(
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; \
         media-src 'self' blob:; font-src 'self'; connect-src {connect}; object-src 'none'; \
         base-uri 'self'; form-action 'self'; frame-ancestors 'none'"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csp_allows_this_origin_and_the_live_view_port_of_the_same_host() {
        let p = content_security_policy(Some("zigral.lan:8000"), 6081);
        assert!(
            p.contains(
                "connect-src 'self' ws://zigral.lan:8000 wss://zigral.lan:8000 ws://zigral.lan:6081 wss://zigral.lan:6081;"
            ),
            "{p}"
        );
        for d in [
            "script-src 'self';",
            "style-src 'self';",
            "img-src 'self' data: blob:;",
            "media-src 'self' blob:;",
            "frame-ancestors 'none'",
            "object-src 'none'",
        ] {
            assert!(p.contains(d), "{d} missing: {p}");
        }
        let p = content_security_policy(Some("[::1]:8000"), 16081);
        assert!(p.contains("ws://[::1]:16081 wss://[::1]:16081"), "{p}");
        let p = content_security_policy(Some("10.0.2.15"), 6081);
        assert!(p.contains("ws://10.0.2.15 "), "{p}");
        assert!(p.contains("wss://10.0.2.15:6081;"), "{p}");
    }

    #[test]
    fn csp_falls_back_to_any_websocket_for_an_unusable_host() {
        for h in [
            None,
            Some(""),
            Some("evil.com; script-src *"),
            Some("a b:1"),
            Some("host:80x"),
            Some("[::1"),
            Some("[zz]:1"),
        ] {
            let p = content_security_policy(h, 6081);
            assert!(p.contains("connect-src 'self' ws: wss:;"), "{h:?}: {p}");
            assert!(!p.contains("evil"), "{p}");
        }
    }

    #[test]
    fn path_segments_refuse_dot_segments_encoded_or_not() {
        assert_eq!(
            segments("/assets//app-1.js"),
            Some(vec!["assets".to_owned(), "app-1.js".to_owned()])
        );
        assert_eq!(segments("/"), Some(vec![]));
        assert_eq!(segments("/a%20b.txt"), Some(vec!["a b.txt".to_owned()]));
        for bad in [
            "/../Cargo.toml",
            "/%2e%2e/Cargo.toml",
            "/%2E%2E/Cargo.toml",
            "/assets/..%2f..%2fCargo.toml",
            "/./index.html",
            "/.git/config",
            "/a%5c..%5cb",
            "/a%00b",
            "/%ff",
        ] {
            assert_eq!(segments(bad), None, "{bad}");
        }
    }

    #[test]
    fn api_paths_are_not_the_web_apps() {
        for p in [
            "/api/v1/nope",
            "/api",
            "/mcp",
            "/mcp/x",
            "/healthz",
            "/readyz",
            "/metrics",
        ] {
            assert!(!WebApp::serves(&Method::GET, p), "{p}");
        }
        for p in ["/", "/index.html", "/assets/app.js", "/apix", "/sessions/1"] {
            assert!(WebApp::serves(&Method::GET, p), "{p}");
        }
        assert!(WebApp::serves(&Method::HEAD, "/"));
        assert!(!WebApp::serves(&Method::POST, "/"));
    }

    #[test]
    fn conditional_requests() {
        let t = UNIX_EPOCH + Duration::from_secs(1_700_000_000) + Duration::from_millis(300);
        let tag = etag(10, t);
        let mut h = HeaderMap::new();
        assert!(!not_modified(&h, Some(&tag), Some(t)));
        h.insert(
            header::IF_MODIFIED_SINCE,
            HeaderValue::from_str(&httpdate::fmt_http_date(t)).expect("date"),
        );
        assert!(not_modified(&h, Some(&tag), Some(t)));
        assert!(!not_modified(
            &h,
            Some(&tag),
            Some(t + Duration::from_secs(1))
        ));
        // If-None-Match wins over If-Modified-Since.
        h.insert(header::IF_NONE_MATCH, HeaderValue::from_static("\"other\""));
        assert!(!not_modified(&h, Some(&tag), Some(t)));
        h.insert(
            header::IF_NONE_MATCH,
            HeaderValue::from_str(&format!("\"x\", W/{tag}")).expect("etag"),
        );
        assert!(not_modified(&h, Some(&tag), Some(t)));
    }
}
