//! The web app at `/` (setting `web_dir`): files with the right types, immutable caching for
//! hashed assets and revalidation (304) for the rest, the security headers, no way out of the
//! directory (dot segments, encoded or not, and symlinks), the API's JSON 404 kept for API
//! paths and when no web_dir is set; `/api/v1/info` (the live view's port); and the admin's
//! view of the appliance's services and of each desktop's current CPU and memory, from a
//! control socket that speaks zigral-init's protocol.

#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::*;
use reqwest::Method;
use reqwest::header::{
    CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, ETAG, IF_MODIFIED_SINCE, IF_NONE_MATCH,
    LAST_MODIFIED,
};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use zigral_init_protocol::{
    GroupLimits, GroupStatus, Reply, Request, ServiceState, ServiceStatus, Status,
};

const INDEX: &str = "<!doctype html><title>Zigral</title><script type=\"module\" src=\"/assets/app-abc123.js\"></script>";
const APP_JS: &str = "console.log('zigral app');";
const SECRET: &str = "TOP-SECRET-OUTSIDE-WEB-DIR";

/// `<tmp>/web` with index.html and assets/app-abc123.js, `<tmp>/secret.txt` outside it.
fn web_dir() -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let web = tmp.path().join("web");
    std::fs::create_dir_all(web.join("assets")).unwrap();
    std::fs::write(web.join("index.html"), INDEX).unwrap();
    std::fs::write(web.join("assets/app-abc123.js"), APP_JS).unwrap();
    std::fs::write(
        web.join("logo.svg"),
        "<svg xmlns=\"http://www.w3.org/2000/svg\"/>",
    )
    .unwrap();
    std::fs::write(tmp.path().join("secret.txt"), SECRET).unwrap();
    (tmp, web)
}

fn header(r: &reqwest::Response, name: impl reqwest::header::AsHeaderName) -> &str {
    r.headers()
        .get(name)
        .map(|v| v.to_str().unwrap())
        .unwrap_or("")
}

/// One request sent as written (no client-side normalisation of `..` or `%2e`): status and
/// body.
async fn raw_get(port: u16, path: &str) -> (u16, String) {
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let req = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await.unwrap();
    let text = String::from_utf8_lossy(&buf).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (status, text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn web_app_is_served_with_caching_and_security_headers() {
    let (_tmp, web) = web_dir();
    let s = start(|c| {
        c.web_dir = Some(web.clone());
        c.desktops.proxy_url = "http://127.0.0.1:16081".into();
    })
    .await;

    let r = s.http.get(s.url("/")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, CONTENT_TYPE), "text/html; charset=utf-8");
    assert_eq!(header(&r, CACHE_CONTROL), "no-cache");
    assert_eq!(header(&r, "x-content-type-options"), "nosniff");
    assert_eq!(header(&r, "referrer-policy"), "same-origin");
    let csp = header(&r, CONTENT_SECURITY_POLICY).to_owned();
    for d in [
        "script-src 'self';",
        "style-src 'self';",
        "img-src 'self' data: blob:;",
        "frame-ancestors 'none'",
        // The live view: the proxy on the same host at the port of proxy_url.
        "ws://127.0.0.1:16081 wss://127.0.0.1:16081",
    ] {
        assert!(csp.contains(d), "{d} missing from {csp}");
    }
    let etag = header(&r, ETAG).to_owned();
    let modified = header(&r, LAST_MODIFIED).to_owned();
    assert!(!etag.is_empty() && !modified.is_empty(), "no validators");
    assert_eq!(r.text().await.unwrap(), INDEX);

    // Hashed assets: cached for a year, never revalidated; the JavaScript type.
    let r = s
        .http
        .get(s.url("/assets/app-abc123.js"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, CONTENT_TYPE), "text/javascript; charset=utf-8");
    assert_eq!(
        header(&r, CACHE_CONTROL),
        "public, max-age=31536000, immutable"
    );
    assert_eq!(header(&r, "x-content-type-options"), "nosniff");
    assert_eq!(r.text().await.unwrap(), APP_JS);
    let r = s.http.get(s.url("/logo.svg")).send().await.unwrap();
    assert_eq!(
        (r.status().as_u16(), header(&r, CONTENT_TYPE)),
        (200, "image/svg+xml")
    );
    assert_eq!(header(&r, CACHE_CONTROL), "no-cache");

    // Revalidation: the same ETag or date gets 304 without a body.
    let r = s
        .http
        .get(s.url("/"))
        .header(IF_NONE_MATCH, &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 304);
    assert_eq!(header(&r, ETAG), etag);
    assert!(!header(&r, CONTENT_SECURITY_POLICY).is_empty());
    assert_eq!(r.text().await.unwrap(), "");
    let r = s
        .http
        .get(s.url("/index.html"))
        .header(IF_MODIFIED_SINCE, &modified)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 304);
    // A new build: the old ETag no longer matches and the new page comes back.
    let newer = format!("{INDEX}<!-- rebuilt -->");
    std::fs::write(web.join("index.html"), &newer).unwrap();
    let r = s
        .http
        .get(s.url("/"))
        .header(IF_NONE_MATCH, &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_ne!(header(&r, ETAG), etag);
    assert_eq!(r.text().await.unwrap(), newer);

    // An extension-less path without a file is the app (client-side routes); a missing file
    // with an extension, or anything missing under /assets, is a 404.
    let r = s.http.get(s.url("/sessions/abc")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), newer);
    for missing in ["/assets/app-gone99.js", "/assets/gone", "/favicon.png"] {
        let (st, e) = s.call(Method::GET, missing, None, None).await;
        assert_eq!(
            (st, e["error"].as_str()),
            (404, Some("not_found")),
            "{missing}"
        );
    }
    // HEAD: the headers, no body.
    let r = s
        .http
        .head(s.url("/assets/app-abc123.js"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "content-length"), APP_JS.len().to_string());

    // API paths keep the API's answers.
    let (st, e) = s.call(Method::GET, "/api/v1/nope", None, None).await;
    assert_eq!((st, e["error"].as_str()), (404, Some("not_found")));
    let (st, e) = s.call(Method::GET, "/api/nope.js", None, None).await;
    assert_eq!((st, e["error"].as_str()), (404, Some("not_found")));
    let (st, e) = s.call(Method::POST, "/", None, None).await;
    assert_eq!((st, e["error"].as_str()), (404, Some("not_found")));
    let (st, v) = s.call(Method::GET, "/healthz", None, None).await;
    assert_eq!((st, v["status"].as_str()), (200, Some("ok")));
    let (st, _) = s.call(Method::GET, "/metrics", None, None).await;
    assert_eq!(st, 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_outside_the_web_dir_is_served() {
    let (tmp, web) = web_dir();
    // A symlink to a file outside, one to a directory outside, and one inside (allowed).
    std::os::unix::fs::symlink(tmp.path().join("secret.txt"), web.join("leak.txt")).unwrap();
    std::os::unix::fs::symlink(tmp.path(), web.join("out")).unwrap();
    std::os::unix::fs::symlink(web.join("index.html"), web.join("alias.html")).unwrap();
    std::fs::write(web.join(".hidden.txt"), SECRET).unwrap();
    let s = start(|c| c.web_dir = Some(web.clone())).await;

    for path in [
        "/../secret.txt",
        "/assets/../../secret.txt",
        "/%2e%2e/secret.txt",
        "/%2E%2E/secret.txt",
        "/assets/..%2f..%2fsecret.txt",
        "/..%5csecret.txt",
        "/leak.txt",
        "/out/secret.txt",
        "/out/web/../secret.txt",
        "/.hidden.txt",
        "/%2ehidden.txt",
    ] {
        let (st, body) = raw_get(s.port, path).await;
        assert!(!body.contains(SECRET), "{path} leaked the file: {body}");
        assert!(
            st == 404 || st == 400,
            "{path}: expected a refusal, got {st}: {body}"
        );
    }
    // Symlinks that stay inside the directory work.
    let (st, body) = raw_get(s.port, "/alias.html").await;
    assert_eq!(st, 200, "{body}");
    assert!(body.contains(INDEX), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_web_dir_the_root_is_the_json_404() {
    let s = start(|_| {}).await;
    let r = s.http.get(s.url("/")).send().await.unwrap();
    assert_eq!(r.status(), 404);
    assert!(header(&r, CONTENT_SECURITY_POLICY).is_empty());
    let e: Value = r.json().await.unwrap();
    assert_eq!(e["error"], "not_found", "{e}");
    let (st, e) = s.call(Method::GET, "/index.html", None, None).await;
    assert_eq!((st, e["error"].as_str()), (404, Some("not_found")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn info_gives_the_version_and_live_view_port_without_login() {
    let s = start(|c| c.desktops.proxy_url = "http://127.0.0.1:16081".into()).await;
    let (st, v) = s.call(Method::GET, "/api/v1/info", None, None).await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(v["live_view_port"], 16081);
    let s = start(|c| c.live_view_port = Some(443)).await;
    let (st, v) = s.call(Method::GET, "/api/v1/info", None, None).await;
    assert_eq!((st, v["live_view_port"].as_u64()), (200, Some(443)));
    // It is documented.
    let admin = s.admin().await;
    let (_, doc) = s
        .call(Method::GET, "/api/v1/openapi.json", Some(&admin), None)
        .await;
    assert!(doc["paths"]["/api/v1/info"]["get"].is_object());
    assert!(doc["paths"]["/api/v1/admin/services"]["get"].is_object());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn services_need_an_admin_and_zigral_init() {
    let s = start(|_| {}).await;
    let admin = s.admin().await;
    let alice = s.user(&admin, "alice").await;
    let (st, e) = s
        .call(Method::GET, "/api/v1/admin/services", Some(&alice), None)
        .await;
    assert_eq!((st, e["error"].as_str()), (403, Some("forbidden")), "{e}");
    // The test kit runs without zigral-init.
    let (st, e) = s
        .call(Method::GET, "/api/v1/admin/services", Some(&admin), None)
        .await;
    assert_eq!(st, 503, "{e}");
    let m = e["message"].as_str().unwrap();
    assert!(m.contains("zigral-init does not answer"), "{m}");
}

/// What the fake zigral-init reports as desktop 0's memory.
const DESKTOP_MEMORY: u64 = 123_456_789;

/// A control socket at `path` speaking zigral-init's protocol: `status` reports the proxy,
/// the control plane and desktop@0 (its CPU time grows at half a CPU); anything else is
/// refused.
fn fake_init(path: &Path) -> tokio::task::JoinHandle<()> {
    let listener = tokio::net::UnixListener::bind(path).unwrap();
    let t0 = Instant::now();
    tokio::spawn(async move {
        loop {
            let Ok((sock, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let (rd, mut wr) = sock.into_split();
                let mut line = String::new();
                if BufReader::new(rd).read_line(&mut line).await.is_err() {
                    return;
                }
                let reply = match Request::parse(&line) {
                    Ok(Request::Status) => Reply::ok(&fake_status(t0)),
                    Ok(_) => Reply::Err("the fake zigral-init only reports status".into()),
                    Err(e) => Reply::Err(e),
                };
                let _ = wr.write_all(reply.to_line().as_bytes()).await;
            });
        }
    })
}

fn fake_status(t0: Instant) -> Status {
    let svc = |name: &str, group: Option<&str>, state, pid| ServiceStatus {
        name: name.into(),
        group: group.map(Into::into),
        state,
        pid,
        restarts: 0,
        last_exit: None,
        next_restart_ms: None,
        backoff_ms: None,
        uptime_ms: Some(5000),
        ready_ms: Some(10),
        ready_at_ms: Some(900),
        paused: false,
    };
    let mut proxy = svc("proxy", None, ServiceState::Ready, Some(101));
    proxy.restarts = 2;
    proxy.last_exit = Some("exit status 1".into());
    Status {
        services: vec![
            proxy,
            svc("control", None, ServiceState::Ready, Some(102)),
            svc("xvfb@0", Some("desktop@0"), ServiceState::Ready, Some(201)),
            svc(
                "x11vnc@0",
                Some("desktop@0"),
                ServiceState::Ready,
                Some(202),
            ),
            svc(
                "chromium@0",
                Some("desktop@0"),
                ServiceState::Ready,
                Some(203),
            ),
        ],
        groups: vec![GroupStatus {
            name: "desktop@0".into(),
            template: "desktop".into(),
            instance: 0,
            params: Default::default(),
            limits: GroupLimits {
                millicpus: Some(2000),
                memory: Some(4 << 30),
                pids: Some(4096),
            },
            cgroup: None,
            memory_bytes: Some(DESKTOP_MEMORY),
            // Half a CPU busy since t0.
            cpu_usec: Some(t0.elapsed().as_micros() as u64 / 2),
            tasks: Some(12),
        }],
        shutting_down: false,
        boot: Some(zigral_init_protocol::BootTimeline {
            kernel_ms: Some(11_700),
            uptime_ms: 60_000,
            all_ready_ms: Some(13_400),
        }),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn services_and_desktop_usage_come_from_zigral_init() {
    let sock_dir = tempfile::tempdir().unwrap();
    let sock = sock_dir.path().join("init.sock");
    let _init = fake_init(&sock);
    let s = start(|c| {
        c.init_socket = sock.clone();
        c.desktops.mode = zigral_control::config::DesktopMode::Managed;
        c.desktops.proxy_url = String::new();
    })
    .await;
    let admin = s.admin().await;

    let (st, v) = s
        .call(Method::GET, "/api/v1/admin/services", Some(&admin), None)
        .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["versions"]["control"], env!("CARGO_PKG_VERSION"));
    assert!(v["versions"]["init"].is_null(), "{v}");
    assert_eq!(v["shutting_down"], false);
    // The boot timeline: the kernel's share, everything ready, each service's moment.
    assert_eq!(
        (
            v["boot"]["kernel_ms"].as_u64(),
            v["boot"]["all_ready_ms"].as_u64()
        ),
        (Some(11_700), Some(13_400)),
        "{v}"
    );
    let proxy = v["services"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["name"] == "proxy")
        .unwrap();
    assert_eq!(proxy["state"], "ready");
    assert_eq!(proxy["pid"], 101);
    assert_eq!(proxy["ready_at_ms"], 900);
    assert_eq!(proxy["restarts"], 2);
    assert_eq!(proxy["last_exit"], "exit status 1");
    assert_eq!(proxy["paused"], false);
    assert!(proxy["group"].is_null());
    assert_eq!(v["services"].as_array().unwrap().len(), 5, "{v}");

    // The manager adopts the running desktop@0 into its warm pool; its listing then carries
    // the current CPU (half a CPU, measured over the listing's two readings) and memory.
    s.state.vdi().start();
    let deadline = Instant::now() + Duration::from_secs(20);
    let text = loop {
        let r = s
            .req(Method::GET, "/api/v1/desktops", Some(&admin), None)
            .await;
        assert_eq!(r.status(), 200);
        let text = r.text().await.unwrap();
        let v: Value = serde_json::from_str(&text).unwrap();
        if v.as_array().is_some_and(|a| !a.is_empty()) {
            break text;
        }
        assert!(Instant::now() < deadline, "desktop 0 never listed: {text}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let v: Value = serde_json::from_str(&text).unwrap();
    let d = &v[0];
    assert_eq!(d["n"], 0, "{d}");
    assert_eq!(d["usage"]["memory_bytes"], DESKTOP_MEMORY, "{d}");
    let cpu = d["usage"]["cpu_percent"].as_f64().unwrap();
    assert!((30.0..=70.0).contains(&cpu), "cpu_percent {cpu}: {d}");
    // Top-level memory_bytes is the limit, once (no duplicate key with the usage).
    assert_eq!(d["memory_bytes"], 4u64 << 30, "{d}");
    assert_eq!(text.matches("\"memory_bytes\"").count(), 2, "{text}");
    assert_eq!(d["tasks"], 12, "{d}");
}
