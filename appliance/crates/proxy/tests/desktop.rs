//! End-to-end tests with the real parts: Xvfb, x11vnc, the proxy, and either real noVNC in
//! headless Chromium (driven over CDP) or an RFB client speaking through the proxy; effects
//! are observed on the X server with x11rb.

mod support;

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use support::*;
use tokio_tungstenite::tungstenite::Message;
use x11rb::connection::Connection;
use x11rb::protocol::Event;
use x11rb::protocol::xproto::{self, ConnectionExt as _};
use x11rb::wrapper::ConnectionExt as _;
use zigral_proxy::{Config, Routing};
use zigral_tests::{Proc, Xvfb, free_port, tcp_open, wait_for};
use zigral_token::{Role, SigningKey};

/// Xvfb + x11vnc serving it on 127.0.0.1:`port`.
struct Desktop {
    xvfb: Xvfb,
    port: u16,
    _vnc: Proc,
}

fn desktop() -> Desktop {
    let xvfb = Xvfb::start(1024, 768);
    let port = free_port();
    let mut cmd = Command::new("x11vnc");
    cmd.args([
        "-display",
        &format!(":{}", xvfb.display),
        "-rfbport",
        &port.to_string(),
        "-localhost",
        "-forever",
        "-shared",
        "-nopw",
        "-quiet",
        // No SysV shared memory: x11vnc is killed at the end of each test and would leave
        // its segments behind until the system runs out of them.
        "-noshm",
    ])
    .stdout(Stdio::null())
    .stderr(Stdio::null());
    let vnc = Proc::spawn(cmd);
    wait_for(Duration::from_secs(30), "x11vnc to listen", || {
        tcp_open(port).then_some(())
    });
    Desktop {
        xvfb,
        port,
        _vnc: vnc,
    }
}

fn x_connect(display: u32) -> (x11rb::rust_connection::RustConnection, xproto::Window) {
    let (c, screen) = x11rb::connect(Some(&format!(":{display}"))).expect("X connect");
    let root = c.setup().roots[screen].root;
    (c, root)
}

/// Paints the root window one solid colour (0xRRGGBB on the 24-bit TrueColor visual).
fn paint_root(display: u32, rgb: u32) {
    let (c, root) = x_connect(display);
    c.change_window_attributes(
        root,
        &xproto::ChangeWindowAttributesAux::new().background_pixel(rgb),
    )
    .expect("change attrs");
    c.clear_area(false, root, 0, 0, 0, 0).expect("clear");
    c.sync().expect("sync");
}

fn token_proxy_config(key: &SigningKey, vnc_base: u16) -> Config {
    Config::new(Routing::Token {
        key: Arc::new(key.clone()),
        vnc_host: "127.0.0.1".parse().expect("ip"),
        vnc_base,
        leases: None,
        control: None,
        live_view: None,
    })
}

/// A headless Chromium with DevTools on a port it picked itself.
struct Chromium {
    _proc: Proc,
    _profile: tempfile::TempDir,
    port: u16,
}

fn chromium() -> Chromium {
    let profile = tempfile::tempdir().expect("tempdir");
    let mut cmd = Command::new("chromium");
    cmd.args([
        "--headless=new",
        "--no-sandbox",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--remote-debugging-port=0",
        "--window-size=1024,800",
    ])
    .arg(format!("--user-data-dir={}", profile.path().display()))
    .arg("about:blank")
    .stdout(Stdio::null())
    .stderr(Stdio::null());
    let p = Proc::spawn(cmd);
    let file = profile.path().join("DevToolsActivePort");
    let port = wait_for(Duration::from_secs(60), "Chromium DevTools port", || {
        std::fs::read_to_string(&file)
            .ok()?
            .lines()
            .next()?
            .trim()
            .parse::<u16>()
            .ok()
    });
    Chromium {
        _proc: p,
        _profile: profile,
        port,
    }
}

/// A minimal CDP client: JSON commands over the page's DevTools WebSocket.
struct Cdp {
    ws: Ws,
    next: u64,
}

impl Cdp {
    async fn page(devtools_port: u16) -> Cdp {
        let list = wait_for(Duration::from_secs(30), "a page target", || {
            let (st, body) = zigral_tests::http_get(devtools_port, "/json/list").ok()?;
            (st == 200).then_some(())?;
            let v: Value = serde_json::from_str(&body).ok()?;
            v.as_array()?
                .iter()
                .find(|t| t["type"] == "page")?
                .get("webSocketDebuggerUrl")?
                .as_str()
                .map(str::to_owned)
        });
        let (ws, _) = tokio_tungstenite::connect_async(list.as_str())
            .await
            .expect("CDP connect");
        Cdp { ws, next: 0 }
    }

    async fn call(&mut self, method: &str, params: Value) -> Value {
        self.next += 1;
        let id = self.next;
        let msg = json!({"id": id, "method": method, "params": params}).to_string();
        self.ws
            .send(Message::Text(msg.into()))
            .await
            .expect("CDP send");
        loop {
            let m = tokio::time::timeout(Duration::from_secs(30), self.ws.next())
                .await
                .expect("CDP reply timed out")
                .expect("CDP closed")
                .expect("CDP read");
            if let Message::Text(t) = m {
                let v: Value = serde_json::from_str(&t).expect("CDP json");
                if v["id"] == id {
                    assert!(v.get("error").is_none(), "{method}: {v}");
                    return v["result"].clone();
                }
            }
        }
    }

    async fn eval(&mut self, expr: &str) -> Value {
        let r = self
            .call(
                "Runtime.evaluate",
                json!({"expression": expr, "returnByValue": true}),
            )
            .await;
        r["result"]["value"].clone()
    }

    /// Polls `expr` until `ok` accepts its value.
    async fn eval_until(
        &mut self,
        secs: u64,
        expr: &str,
        what: &str,
        ok: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
        loop {
            let v = self.eval(expr).await;
            if ok(&v) {
                return v;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out waiting for {what}; last value {v}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

fn ui_dist() -> PathBuf {
    let d = zigral_tests::repo_root().join("ui/dist");
    assert!(
        d.join("index.html").exists() && d.join("novnc/core/rfb.js").exists(),
        "{} is not built: run ui/build.sh first",
        d.display()
    );
    d
}

const CENTER_PIXEL: &str = "(() => { const c = document.querySelector('#screen canvas'); \
    if (!c || !c.width) return null; \
    const d = c.getContext('2d').getImageData(c.width >> 1, c.height >> 1, 1, 1).data; \
    return [d[0], d[1], d[2]]; })()";

fn near(v: &Value, rgb: [i64; 3]) -> bool {
    v.as_array().is_some_and(|a| {
        a.len() == 3
            && a.iter()
                .zip(rgb)
                .all(|(x, want)| x.as_i64().is_some_and(|x| (x - want).abs() <= 8))
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn novnc_in_chromium_shows_the_x_display_through_the_proxy() {
    let web = ui_dist();
    let d = desktop();
    paint_root(d.xvfb.display, 0x20c040);
    let key = SigningKey::generate();
    let mut cfg = token_proxy_config(&key, d.port);
    cfg.web_dir = Some(web);
    let p = start(cfg).await;
    let browser = chromium();
    let mut cdp = Cdp::page(browser.port).await;

    // A refused token: the viewer reports the failure and nothing is drawn.
    let (foreign, _) = SigningKey::generate().mint_for(0, Role::View, "eve", 60);
    let url = format!("http://{}/?token={foreign}&desktop=0", p.addr);
    cdp.call("Page.navigate", json!({"url": url})).await;
    cdp.eval_until(
        30,
        "window.zigralViewer && window.zigralViewer.state",
        "refusal",
        |v| v == "error" || v == "disconnected",
    )
    .await;

    let (token, _) = key.mint_for(0, Role::View, "alice", 300);
    let url = format!("http://{}/?token={token}&desktop=0", p.addr);
    cdp.call("Page.navigate", json!({"url": url})).await;
    cdp.eval_until(
        60,
        "window.zigralViewer && window.zigralViewer.state",
        "noVNC to connect",
        |v| v == "connected",
    )
    .await;
    cdp.eval_until(60, CENTER_PIXEL, "the green desktop on the canvas", |v| {
        near(v, [0x20, 0xc0, 0x40])
    })
    .await;
    // Live: a new colour on the X display reaches the canvas.
    paint_root(d.xvfb.display, 0xd02060);
    cdp.eval_until(60, CENTER_PIXEL, "the new colour on the canvas", |v| {
        near(v, [0xd0, 0x20, 0x60])
    })
    .await;
    let s = &p.proxy.metrics().sessions()[0];
    assert_eq!(s.role, "view");
    assert!(s.bytes_to_client > 1000, "{s:?}");
}

/// Reads exact byte counts from WebSocket messages (which may merge RFB messages).
struct Reader<'a> {
    ws: &'a mut Ws,
    buf: Vec<u8>,
}

impl Reader<'_> {
    async fn take(&mut self, n: usize) -> Vec<u8> {
        while self.buf.len() < n {
            let more = read_bytes(self.ws, 1).await;
            self.buf.extend(more);
        }
        self.buf.drain(..n).collect()
    }
}

/// Speaks RFB 3.8 (security None) through the proxy up to ServerInit.
async fn rfb_handshake(ws: &mut Ws) {
    let mut r = Reader {
        ws,
        buf: Vec::new(),
    };
    let version = r.take(12).await;
    assert!(version.starts_with(b"RFB 003."), "{version:?}");
    send(r.ws, b"RFB 003.008\n").await;
    let n = r.take(1).await[0] as usize;
    assert!(n > 0, "server refused: no security types");
    let types = r.take(n).await;
    assert!(types.contains(&1), "x11vnc -nopw offers None: {types:?}");
    send(r.ws, &[1]).await;
    assert_eq!(r.take(4).await, [0, 0, 0, 0], "security result");
    send(r.ws, &[1]).await; // ClientInit, shared
    let init = r.take(24).await;
    let name_len = u32::from_be_bytes([init[20], init[21], init[22], init[23]]) as usize;
    r.take(name_len).await;
}

/// Sends pointer + key input through the proxy with a token of `role`; returns whether the
/// pointer moved to (300, 200) and whether the focused window saw the key.
async fn drive(p: &Running, key: &SigningKey, role: Role, display: u32) -> (bool, bool) {
    let (c, root) = x_connect(display);
    let screen = &c.setup().roots[0];
    let win = c.generate_id().expect("id");
    c.create_window(
        screen.root_depth,
        win,
        root,
        0,
        0,
        1024,
        768,
        0,
        xproto::WindowClass::INPUT_OUTPUT,
        screen.root_visual,
        &xproto::CreateWindowAux::new()
            .event_mask(xproto::EventMask::KEY_PRESS | xproto::EventMask::KEY_RELEASE)
            .override_redirect(1),
    )
    .expect("create window");
    c.map_window(win).expect("map");
    c.sync().expect("sync");
    c.set_input_focus(xproto::InputFocus::POINTER_ROOT, win, x11rb::CURRENT_TIME)
        .expect("focus");
    c.warp_pointer(x11rb::NONE, root, 0, 0, 0, 0, 10, 10)
        .expect("warp");
    c.sync().expect("sync");
    while c.poll_for_event().expect("events").is_some() {}

    let (token, _) = key.mint_for(0, role, "tester", 60);
    let (mut ws, _) = connect(&p.url(&format!("/websockify?token={token}&desktop=0")))
        .await
        .expect("connect");
    rfb_handshake(&mut ws).await;
    let mut input = vec![5, 0, 0x01, 0x2c, 0x00, 0xc8]; // PointerEvent (300, 200), no buttons
    input.extend([4, 1, 0, 0, 0, 0, 0, 0x71]); // KeyEvent 'q' down
    input.extend([4, 0, 0, 0, 0, 0, 0, 0x71]); // KeyEvent 'q' up
    send(&mut ws, &input).await;

    let pointer_at = || {
        let r = c
            .query_pointer(root)
            .expect("query")
            .reply()
            .expect("reply");
        (r.root_x, r.root_y)
    };
    let mut key_seen = false;
    let mut moved = false;
    // Give x11vnc time to act: an effect shows up within milliseconds; wait generously for
    // the control case and a fixed 2 s for the view case (where nothing must happen).
    let deadline = std::time::Instant::now()
        + if role == Role::Control {
            Duration::from_secs(20)
        } else {
            Duration::from_secs(2)
        };
    while std::time::Instant::now() < deadline && !(moved && key_seen) {
        moved |= pointer_at() == (300, 200);
        while let Some(ev) = c.poll_for_event().expect("event") {
            if matches!(ev, Event::KeyPress(_)) {
                key_seen = true;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = ws.close(None).await;
    c.destroy_window(win).expect("destroy");
    c.sync().expect("sync");
    (moved, key_seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn view_tokens_cannot_move_the_pointer_or_type_control_tokens_can() {
    let d = desktop();
    let key = SigningKey::generate();
    let p = start(token_proxy_config(&key, d.port)).await;

    let (moved, typed) = drive(&p, &key, Role::View, d.xvfb.display).await;
    assert!(!moved, "view token moved the pointer");
    assert!(!typed, "view token typed a key");
    assert!(p.proxy.metrics().totals().dropped_input >= 3);

    let (moved, typed) = drive(&p, &key, Role::Control, d.xvfb.display).await;
    assert!(moved, "control token did not move the pointer");
    assert!(typed, "control token did not type");
}

/// The X pointer position on `display`.
fn pointer(c: &x11rb::rust_connection::RustConnection, root: xproto::Window) -> (i16, i16) {
    let r = c
        .query_pointer(root)
        .expect("query")
        .reply()
        .expect("reply");
    (r.root_x, r.root_y)
}

/// A PointerEvent (no buttons) to (x, y).
fn pointer_event(x: u16, y: u16) -> Vec<u8> {
    let mut m = vec![5, 0];
    m.extend(x.to_be_bytes());
    m.extend(y.to_be_bytes());
    m
}

/// Sends a pointer event on `ws` and waits until the X pointer is there; with `resend`, sends
/// it again every 100 ms meanwhile (for input that is expected to become allowed).
async fn move_and_see(
    ws: &mut Ws,
    c: &x11rb::rust_connection::RustConnection,
    root: xproto::Window,
    to: (u16, u16),
    who: &str,
    resend: bool,
) -> Duration {
    let t0 = std::time::Instant::now();
    send(ws, &pointer_event(to.0, to.1)).await;
    let mut last = t0;
    let want = (to.0 as i16, to.1 as i16);
    while pointer(c, root) != want {
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "{who}'s pointer event to {to:?} did not move the pointer"
        );
        if resend && last.elapsed() >= Duration::from_millis(100) {
            send(ws, &pointer_event(to.0, to.1)).await;
            last = std::time::Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    t0.elapsed()
}

/// The control lease at the proxy: once `<state>/control/0` names a holder, another person's
/// live control connection stops moving the X pointer within a second (its input is dropped,
/// the connection stays), the holder's connection keeps moving it, and when the file goes the
/// other connection moves it again without reconnecting.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_control_lease_demotes_other_control_connections_within_a_second() {
    let d = desktop();
    let key = SigningKey::generate();
    let state = tempfile::tempdir().expect("state dir");
    let files = zigral_token::ControlFiles::in_state_dir(state.path());
    let mut cfg = token_proxy_config(&key, d.port);
    if let Routing::Token { control, .. } = &mut cfg.routing {
        *control = Some(files.clone());
    }
    let p = start(cfg).await;
    let mint = |control: Option<&str>| {
        key.mint_grant(&zigral_token::Grant {
            desktop: 0,
            role: Role::Control,
            sub: "user",
            ttl_secs: 300,
            lease: None,
            control,
        })
        .expect("mint")
        .0
    };
    let (alice_token, bob_token) = (mint(Some("alice-login")), mint(Some("bob-login")));
    let url = |t: &str| p.url(&format!("/websockify?token={t}&desktop=0"));
    let (mut alice, _) = connect(&url(&alice_token)).await.expect("alice");
    let (mut bob, _) = connect(&url(&bob_token)).await.expect("bob");
    rfb_handshake(&mut alice).await;
    rfb_handshake(&mut bob).await;
    let (c, root) = x_connect(d.xvfb.display);

    // Nobody holds the desktop: both drive it.
    move_and_see(&mut bob, &c, root, (101, 77), "bob", false).await;
    move_and_see(&mut alice, &c, root, (102, 78), "alice", false).await;

    // Alice takes control. Bob keeps sending pointer events to distinct points for 2.5 s;
    // the pointer ends where the last event that got through put it, and that event must
    // have been sent within a second of the change.
    files.write(0, Some("alice-login")).expect("take");
    let t0 = std::time::Instant::now();
    let mut sent = Vec::new();
    for i in 0u16..50 {
        let to = (200 + 8 * i, 300);
        send(&mut bob, &pointer_event(to.0, to.1)).await;
        sent.push((to, t0.elapsed()));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Let x11vnc apply whatever reached it.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let at = pointer(&c, root);
    if let Some((_, when)) = sent.iter().find(|(to, _)| (to.0 as i16, to.1 as i16) == at) {
        assert!(
            *when < Duration::from_secs(1),
            "bob's input still moved the pointer {when:?} after alice took control"
        );
    } else {
        assert_eq!(at, (102, 78), "the pointer moved somewhere unexpected");
    }
    assert!(
        p.proxy.metrics().totals().dropped_input >= 40,
        "{:?}",
        p.proxy.metrics().totals()
    );
    // The holder still drives.
    move_and_see(&mut alice, &c, root, (640, 480), "alice", false).await;

    // Released: bob drives again on the same connection, within a second.
    files.write(0, None).expect("release");
    let took = move_and_see(
        &mut bob,
        &c,
        root,
        (333, 222),
        "bob after the release",
        true,
    )
    .await;
    assert!(
        took < Duration::from_secs(1),
        "bob regained input after {took:?}"
    );
    // A connection of bob's made while alice holds it starts view-only.
    files.write(0, Some("alice-login")).expect("take again");
    let (mut late, _) = connect(&url(&bob_token)).await.expect("late bob");
    rfb_handshake(&mut late).await;
    send(&mut late, &pointer_event(7, 9)).await;
    move_and_see(&mut alice, &c, root, (500, 100), "alice", false).await;
    assert_eq!(
        pointer(&c, root),
        (500, 100),
        "the late connection's event got through"
    );
}

/// Waits (at most 10 s, a failure bound) for the server's close frame; returns its code and
/// reason.
async fn close_frame(ws: &mut Ws) -> (u16, String) {
    loop {
        match tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("no close frame within 10 s")
        {
            Some(Ok(Message::Close(Some(f)))) => return (f.code.into(), f.reason.to_string()),
            Some(Ok(Message::Close(None))) => return (1005, String::new()),
            Some(Ok(_)) => continue,
            other => panic!("expected a close frame, got {other:?}"),
        }
    }
}

/// The live-view switch closes an open noVNC connection and refuses a new one: with
/// `<state>/liveview/0` written, a live noVNC viewer in Chromium and a live RFB client both
/// get a close frame (1008, "live view turned off") within a second and their VNC sessions
/// end; a new attempt is refused with 403 `live_view_off`; once the file goes, new
/// connections (noVNC's reconnect included) work again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_live_view_switch_closes_an_open_novnc_connection_and_refuses_a_new_one() {
    let web = ui_dist();
    let d = desktop();
    paint_root(d.xvfb.display, 0x3050e0);
    let key = SigningKey::generate();
    let state = tempfile::tempdir().expect("state dir");
    let files = zigral_token::LiveViewFiles::new(state.path());
    let mut cfg = token_proxy_config(&key, d.port);
    cfg.web_dir = Some(web);
    if let Routing::Token { live_view, .. } = &mut cfg.routing {
        *live_view = Some(files.clone());
    }
    let p = start(cfg).await;
    let (view, _) = key.mint_for(0, Role::View, "alice", 300);
    let (control, _) = key.mint_for(0, Role::Control, "alice", 300);
    let ws_path = |t: &str| format!("/websockify?token={t}&desktop=0");

    // A noVNC viewer in Chromium, showing the desktop.
    let browser = chromium();
    let mut cdp = Cdp::page(browser.port).await;
    let page = format!("http://{}/?token={view}&desktop=0", p.addr);
    cdp.call("Page.navigate", json!({"url": page})).await;
    let state_js = "window.zigralViewer && window.zigralViewer.state";
    cdp.eval_until(60, state_js, "noVNC to connect", |v| v == "connected")
        .await;
    cdp.eval_until(60, CENTER_PIXEL, "the blue desktop on the canvas", |v| {
        near(v, [0x30, 0x50, 0xe0])
    })
    .await;
    // And an RFB client of its own.
    let (mut client, _) = connect(&p.url(&ws_path(&control))).await.expect("client");
    rfb_handshake(&mut client).await;
    assert_eq!(p.sessions_open(), 2);

    // Off: both live connections are closed within a second, with the reason.
    files.set_off(0, true).expect("live view off");
    let t0 = std::time::Instant::now();
    let (code, reason) = close_frame(&mut client).await;
    let took = t0.elapsed();
    assert_eq!(
        (code, reason.as_str()),
        (1008, "live view turned off"),
        "close frame"
    );
    assert!(took < Duration::from_secs(1), "closed after {took:?}");
    cdp.eval_until(10, state_js, "noVNC to see the close", |v| {
        v == "disconnected"
    })
    .await;
    eventually(10, "both VNC sessions to end", || p.sessions_open() == 0).await;
    assert_eq!(p.proxy.metrics().totals().live_view_closed, 2);

    // A new attempt is refused, for view and control tokens alike, before the VNC server
    // hears of it.
    for t in [&view, &control] {
        let (status, body) = refusal(p.addr, &ws_path(t)).await;
        assert_eq!(status, 403, "{body}");
        assert!(body.starts_with("live_view_off"), "{body}");
        assert_eq!(body, zigral_proxy::server::LIVE_VIEW_OFF);
    }
    assert_eq!(
        p.proxy
            .metrics()
            .totals()
            .refused
            .get(&zigral_proxy::metrics::Refusal::LiveViewOff),
        Some(&2)
    );
    assert_eq!(p.proxy.metrics().totals().sessions_total, 2);

    // On again: new connections work, noVNC's reconnect button included.
    files.set_off(0, false).expect("live view on");
    let (mut again, _) = connect(&p.url(&ws_path(&control)))
        .await
        .expect("client again");
    rfb_handshake(&mut again).await;
    cdp.eval("document.getElementById('reconnect').click()")
        .await;
    cdp.eval_until(60, state_js, "noVNC to reconnect", |v| v == "connected")
        .await;
    cdp.eval_until(60, CENTER_PIXEL, "the desktop on the canvas again", |v| {
        near(v, [0x30, 0x50, 0xe0])
    })
    .await;
    assert_eq!(p.sessions_open(), 2);
    let body = zigral_tests::http_get(p.addr.port(), "/metrics")
        .expect("metrics")
        .1;
    assert!(
        body.contains("zigral_proxy_live_view_closed_total 2")
            && body.contains("zigral_proxy_refused_total{reason=\"live_view_off\"} 2"),
        "{body}"
    );
}
