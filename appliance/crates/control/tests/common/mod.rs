//! Shared helpers of the control-plane tests (and benches, which include this file by path): a
//! real server on a port-0 listener over a temp redb store, a thin HTTP client, the events
//! WebSocket, and a real desktop (Xvfb + Chromium + pages on 127.0.0.1) that a server drives.

#![allow(dead_code)]

use reqwest::{Client, Method, Response};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use zigral_browser::Browser;
use zigral_browser::testkit::{Chrome, PageServer};
use zigral_control::{AppState, Config};
use zigral_tests::Xvfb;

/// A client end of `GET /api/v1/events`.
pub type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

pub const ADMIN_PASSWORD: &str = "admin-password-for-tests";

/// A running control plane (in this process) and its temp state dir.
pub struct Server {
    pub base: String,
    pub port: u16,
    pub state: AppState,
    pub dir: tempfile::TempDir,
    pub http: Client,
    /// The control plane's clock (starts at the wall clock's time; moves only when told to).
    pub clock: zigral_token::ManualClock,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

/// Starts a server; `tweak` adjusts the configuration first.
pub async fn start(tweak: impl FnOnce(&mut Config)) -> Server {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = Config::with_state_dir(dir.path());
    cfg.admin_password = Some(ADMIN_PASSWORD.into());
    cfg.require_supervisor = false;
    // Desktops exist already (or not at all): nothing is spawned through zigral-init.
    cfg.desktops.mode = zigral_control::config::DesktopMode::Static;
    // No desktop unless a test provides one: a display and a CDP port nothing serves, so the
    // action routes answer 503 instead of driving whatever runs on :0 / 9222 on this host.
    cfg.display_base = 60999;
    cfg.cdp_base = zigral_tests::free_port();
    tweak(&mut cfg);
    let store = zigral_store::Store::open_in(dir.path()).expect("store");
    // Token and login expiry follow this clock: tests move it instead of sleeping.
    let clock = zigral_token::ManualClock::new(zigral_token::now_secs());
    let key = zigral_token::SigningKey::load_or_create(dir.path())
        .expect("key")
        .with_clock(clock.clone());
    zigral_control::bootstrap::ensure_admin(&store, cfg.admin_password.as_deref())
        .await
        .expect("admin");
    let state = AppState::new(cfg, store, key);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let (stop, rx) = tokio::sync::oneshot::channel::<()>();
    let st = state.clone();
    tokio::spawn(async move {
        zigral_control::serve(listener, st, async {
            let _ = rx.await;
        })
        .await
        .expect("serve");
    });
    Server {
        base: format!("http://127.0.0.1:{port}"),
        port,
        state,
        dir,
        http: Client::new(),
        clock,
        stop: Some(stop),
    }
}

impl Server {
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// Sends a request with an optional bearer token and JSON body.
    pub async fn req(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Response {
        let mut r = self.http.request(method, self.url(path));
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        if let Some(b) = body {
            r = r.json(&b);
        }
        r.send().await.expect("request")
    }

    /// Sends a request and returns (status, JSON body or Null).
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (u16, Value) {
        let r = self.req(method, path, token, body).await;
        let status = r.status().as_u16();
        let text = r.text().await.expect("body");
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// Logs in and returns the bearer token.
    pub async fn login(&self, user: &str, password: &str) -> String {
        let (s, v) = self
            .call(
                Method::POST,
                "/api/v1/auth/login",
                None,
                Some(json!({"username": user, "password": password})),
            )
            .await;
        assert_eq!(s, 200, "login {user}: {v}");
        v["token"].as_str().expect("token").to_owned()
    }

    pub async fn admin(&self) -> String {
        self.login("admin", ADMIN_PASSWORD).await
    }

    /// Creates a (non-admin) user and logs in as them.
    pub async fn user(&self, admin: &str, name: &str) -> String {
        let pw = format!("{name}-password");
        let (s, v) = self
            .call(
                Method::POST,
                "/api/v1/users",
                Some(admin),
                Some(json!({"username": name, "password": pw})),
            )
            .await;
        assert_eq!(s, 201, "create user: {v}");
        self.login(name, &pw).await
    }

    /// Opens the events WebSocket with `token` as bearer.
    pub async fn events(&self, token: &str) -> Ws {
        let mut req = format!("ws://127.0.0.1:{}/api/v1/events", self.port)
            .into_client_request()
            .expect("request");
        req.headers_mut().insert(
            "authorization",
            format!("Bearer {token}").parse().expect("header"),
        );
        let (ws, _) = tokio_tungstenite::connect_async(req)
            .await
            .expect("ws connect");
        ws
    }

    /// The control plane's own browser owner of desktop 0 (to read page state over CDP).
    pub async fn browser(&self) -> Browser {
        self.state.desktops().browser(0).await
    }

    /// Creates a session and returns its id.
    pub async fn session(&self, token: &str, prompt: Option<&str>) -> String {
        let (s, v) = self
            .call(
                Method::POST,
                "/api/v1/sessions",
                Some(token),
                Some(json!({"title": "t", "system_prompt": prompt})),
            )
            .await;
        assert_eq!(s, 201, "create session: {v}");
        v["id"].as_str().expect("id").to_owned()
    }
}

/// A real desktop the server drives: Xvfb, Chromium on it (CDP on a free port, started here,
/// which also plays the supervisor), pages on 127.0.0.1, and an admin login. Fields drop in
/// order: the display first, the server last.
pub struct Desktop {
    pub x: Xvfb,
    pub chrome: Chrome,
    /// Chromium's profile lives below it.
    pub dir: tempfile::TempDir,
    pub pages: PageServer,
    pub srv: Server,
    /// The admin's bearer token.
    pub token: String,
}

/// Starts a `width`x`height` desktop and a server driving it as desktop 0 (`tweak` adjusts
/// the server's configuration after the display and CDP port are set).
pub async fn desktop(width: u32, height: u32, tweak: impl FnOnce(&mut Config)) -> Desktop {
    let x = Xvfb::start(width, height);
    let dir = tempfile::tempdir().expect("tempdir");
    let chrome = Chrome::start(x.display, width, height, &dir.path().join("chrome"));
    let pages = PageServer::start();
    let (display, port) = (x.display, chrome.port);
    let srv = start(move |c| {
        c.display_base = display;
        c.cdp_base = port;
        tweak(c);
    })
    .await;
    let token = srv.admin().await;
    Desktop {
        x,
        chrome,
        dir,
        pages,
        srv,
        token,
    }
}

/// The screen position of viewport (0, 0) and the offset of element `id`'s centre from it in
/// screen pixels (CSS pixels times the page's scale), not rounded.
async fn center_offset(b: &Browser, id: &str) -> ((i32, i32), (f64, f64)) {
    let (vp, k) = b.viewport().await.expect("viewport");
    let r = b
        .evaluate(&format!(
            "(() => {{ const r = document.getElementById('{id}').getBoundingClientRect(); \
             return [r.left + r.width / 2, r.top + r.height / 2]; }})()"
        ))
        .await
        .expect("rect");
    let cx = r[0].as_f64().expect("x");
    let cy = r[1].as_f64().expect("y");
    ((vp.x, vp.y), (cx * k, cy * k))
}

/// Screen coordinates (whole pixels) of the centre of element `id` of the active tab.
pub async fn screen_center(b: &Browser, id: &str) -> (i32, i32) {
    let ((x, y), (dx, dy)) = center_offset(b, id).await;
    (x + dx.round() as i32, y + dy.round() as i32)
}

/// Screen coordinates of the centre of element `id` of the active tab, not rounded (for
/// scaling into a declared display first).
pub async fn screen_center_f64(b: &Browser, id: &str) -> (f64, f64) {
    let ((x, y), (dx, dy)) = center_offset(b, id).await;
    (f64::from(x) + dx, f64::from(y) + dy)
}
