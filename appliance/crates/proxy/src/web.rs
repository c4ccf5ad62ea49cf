//! Static files for `--web DIR`: no directory listing, no path traversal (also not through
//! symlinks), content types from the extension, `ETag`/`Last-Modified` revalidation and
//! cache headers (`no-cache` for HTML so a new UI is picked up at once).

use std::path::{Component, Path, PathBuf};
use std::time::UNIX_EPOCH;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Response, StatusCode, header};
use http_body_util::Full;

pub type Body = Full<Bytes>;

/// A plain-text response.
pub fn text(status: StatusCode, msg: &str) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::from(format!("{msg}\n"))));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r.headers_mut().insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    r
}

/// Maps a request path to a file under `root` (already canonical), or `None` if it must not
/// be served. Segments `..`, hidden names, backslashes and NULs are refused.
fn resolve(root: &Path, raw_path: &str) -> Option<PathBuf> {
    let decoded = percent_encoding::percent_decode_str(raw_path)
        .decode_utf8()
        .ok()?;
    if decoded.contains('\0') || decoded.contains('\\') {
        return None;
    }
    let mut p = root.to_path_buf();
    for seg in decoded.split('/') {
        if seg.is_empty() || seg == "." {
            continue;
        }
        if seg.starts_with('.') {
            return None;
        }
        let mut comps = Path::new(seg).components();
        match (comps.next(), comps.next()) {
            (Some(Component::Normal(c)), None) => p.push(c),
            _ => return None,
        }
    }
    Some(p)
}

fn content_type(path: &Path) -> HeaderValue {
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
    let ty = match ext {
        "js" | "mjs" => "text/javascript; charset=utf-8".to_owned(),
        "html" | "htm" => "text/html; charset=utf-8".to_owned(),
        "css" => "text/css; charset=utf-8".to_owned(),
        "json" | "map" => "application/json".to_owned(),
        "svg" => "image/svg+xml".to_owned(),
        "wasm" => "application/wasm".to_owned(),
        _ => {
            let m = mime_guess::from_ext(ext).first_or_octet_stream();
            if m.type_() == "text" {
                format!("{m}; charset=utf-8")
            } else {
                m.to_string()
            }
        }
    };
    HeaderValue::from_str(&ty).unwrap_or(HeaderValue::from_static("application/octet-stream"))
}

/// Serves `path` (the URL path, without query) from `root` (canonical).
pub async fn serve(
    root: &Path,
    method: &Method,
    path: &str,
    headers: &HeaderMap,
) -> Response<Body> {
    if method != Method::GET && method != Method::HEAD {
        let mut r = text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed");
        r.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        return r;
    }
    let Some(mut file) = resolve(root, path) else {
        return text(StatusCode::NOT_FOUND, "not found");
    };
    let Ok(mut meta) = tokio::fs::metadata(&file).await else {
        return text(StatusCode::NOT_FOUND, "not found");
    };
    if meta.is_dir() {
        if !path.ends_with('/') {
            // So that relative links inside the directory's index page resolve.
            let mut r = text(StatusCode::MOVED_PERMANENTLY, "moved");
            if let Ok(v) = HeaderValue::from_str(&format!("{path}/")) {
                r.headers_mut().insert(header::LOCATION, v);
            }
            return r;
        }
        file.push("index.html");
        match tokio::fs::metadata(&file).await {
            Ok(m) if m.is_file() => meta = m,
            // No listing.
            _ => return text(StatusCode::NOT_FOUND, "not found"),
        }
    }
    // Symlinks must not lead out of the root.
    match tokio::fs::canonicalize(&file).await {
        Ok(real) if real.starts_with(root) => {}
        _ => return text(StatusCode::NOT_FOUND, "not found"),
    }
    if !meta.is_file() {
        return text(StatusCode::NOT_FOUND, "not found");
    }
    let mtime = meta.modified().ok();
    let mtime_ns = mtime
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let etag = format!("\"{:x}-{:x}\"", mtime_ns, meta.len());
    let is_html = matches!(
        file.extension().and_then(|e| e.to_str()),
        Some("html" | "htm")
    );
    let mut r = Response::new(Full::new(Bytes::new()));
    {
        let h = r.headers_mut();
        h.insert(header::CONTENT_TYPE, content_type(&file));
        if let Ok(v) = HeaderValue::from_str(&etag) {
            h.insert(header::ETAG, v);
        }
        if let Some(t) = mtime
            && let Ok(v) = HeaderValue::from_str(&httpdate::fmt_http_date(t))
        {
            h.insert(header::LAST_MODIFIED, v);
        }
        h.insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static(if is_html {
                "no-cache"
            } else {
                "public, max-age=600"
            }),
        );
        h.insert(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        );
    }
    let not_modified = match headers.get(header::IF_NONE_MATCH) {
        Some(v) => v
            .to_str()
            .map(|s| s.split(',').any(|t| t.trim() == etag || t.trim() == "*"))
            .unwrap_or(false),
        None => match (headers.get(header::IF_MODIFIED_SINCE), mtime) {
            (Some(v), Some(t)) => v
                .to_str()
                .ok()
                .and_then(|s| httpdate::parse_http_date(s).ok())
                .is_some_and(|since| {
                    t.duration_since(UNIX_EPOCH)
                        .map(|d| d.as_secs())
                        .unwrap_or(0)
                        <= since
                            .duration_since(UNIX_EPOCH)
                            .map(|d| d.as_secs())
                            .unwrap_or(0)
                }),
            _ => false,
        },
    };
    if not_modified {
        *r.status_mut() = StatusCode::NOT_MODIFIED;
        return r;
    }
    if method == Method::HEAD {
        if let Ok(v) = HeaderValue::from_str(&meta.len().to_string()) {
            r.headers_mut().insert(header::CONTENT_LENGTH, v);
        }
        return r;
    }
    match tokio::fs::read(&file).await {
        Ok(bytes) => {
            *r.body_mut() = Full::new(Bytes::from(bytes));
            r
        }
        Err(_) => text(StatusCode::NOT_FOUND, "not found"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolve_refuses_escapes() {
        let root = Path::new("/srv/web");
        assert_eq!(
            resolve(root, "/a/b.js"),
            Some(PathBuf::from("/srv/web/a/b.js"))
        );
        assert_eq!(resolve(root, "/"), Some(PathBuf::from("/srv/web")));
        for bad in [
            "/../etc/passwd",
            "/a/../../x",
            "/%2e%2e/x",
            "/a%2f..%2f..%2fx",
            "/.git/config",
            "/a\\..\\b",
            "/a%00b",
        ] {
            assert_eq!(resolve(root, bad), None, "{bad}");
        }
    }
}
