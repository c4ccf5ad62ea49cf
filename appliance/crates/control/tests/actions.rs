//! The agent action API end to end through the real HTTP API of a port-0 control plane: a real
//! Xvfb, a real Chromium (CDP on a free port, started by the test, which also plays the
//! supervisor), pages served from 127.0.0.1; native actions, the Anthropic and OpenAI
//! adapters, the action log, screenshots, checkpoints, Chrome restarts and MCP through the
//! official Python SDK.

mod common;

use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{Value, json};
use zigral_browser::Browser;
use zigral_browser::testkit::{Chrome, PageServer, Response};
use zigral_tests::Xvfb;

/// The test page: buttons, a text input, a tall and wide body to scroll. Events land in
/// `window.log`.
const UI_PAGE: &str = r#"<!doctype html><html><head><title>UI</title>
<style>body{margin:0;height:4000px;width:3000px;font:16px sans-serif}
#b1{position:absolute;left:50px;top:50px;width:150px;height:50px}
#b2{position:absolute;left:300px;top:50px;width:150px;height:50px}
#t{position:absolute;left:50px;top:150px;width:400px;height:30px}</style></head><body>
<button id="b1">One</button><button id="b2">Two</button>
<input id="t" aria-label="Name">
<script>
window.log = [];
document.addEventListener('click', e => window.log.push({type: e.type, id: e.target.id}), true);
</script></body></html>"#;

struct Env {
    _x: Xvfb,
    chrome: Chrome,
    _dir: tempfile::TempDir,
    pages: PageServer,
    srv: common::Server,
    token: String,
    sid: String,
}

async fn env() -> Env {
    let common::Desktop {
        x,
        chrome,
        dir,
        pages,
        srv,
        token,
    } = common::desktop(1280, 800, |_| {}).await;
    pages.page("/ui", Response::html(UI_PAGE));
    pages.page(
        "/two",
        Response::html("<!doctype html><title>Two</title><p>second</p>"),
    );
    let (s, v) = srv
        .call(
            Method::POST,
            "/api/v1/sessions",
            Some(&token),
            Some(json!({"title": "actions"})),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    let sid = v["id"].as_str().expect("id").to_owned();
    Env {
        _x: x,
        chrome,
        _dir: dir,
        pages,
        srv,
        token,
        sid,
    }
}

impl Env {
    fn path(&self, rest: &str) -> String {
        format!("/api/v1/sessions/{}{rest}", self.sid)
    }

    /// POSTs to `.../actions{suffix}` and returns (status, body).
    async fn act(&self, suffix: &str, body: Value) -> (u16, Value) {
        self.srv
            .call(
                Method::POST,
                &self.path(&format!("/actions{suffix}")),
                Some(&self.token),
                Some(body),
            )
            .await
    }

    async fn ok(&self, body: Value) -> Value {
        let (s, v) = self.act("", body.clone()).await;
        assert_eq!(s, 200, "{body} -> {v}");
        assert_eq!(v["ok"], true, "{v}");
        v
    }

    /// The control plane's own browser owner of desktop 0 (to read page state over CDP).
    async fn browser(&self) -> Browser {
        self.srv.browser().await
    }

    async fn eval(&self, expr: &str) -> Value {
        self.browser().await.evaluate(expr).await.expect("eval")
    }

    /// Polls `expr` until it equals `want`.
    async fn wait_eval(&self, expr: &str, want: Value) -> Value {
        let start = Instant::now();
        loop {
            let v = self.eval(expr).await;
            if v == want || start.elapsed() > Duration::from_secs(15) {
                return v;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn clicks(&self, id: &str) -> usize {
        let v = self
            .eval(&format!(
                "window.log.filter(e => e.type === 'click' && e.id === '{id}').length"
            ))
            .await;
        v.as_u64().unwrap_or(0) as usize
    }

    async fn wait_clicks(&self, id: &str, n: usize) -> usize {
        let start = Instant::now();
        loop {
            let c = self.clicks(id).await;
            if c >= n || start.elapsed() > Duration::from_secs(15) {
                return c;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Opens the UI page through the API and focuses it.
    async fn open_ui(&self) {
        self.ok(json!({"action": "navigate", "url": self.pages.url("/ui")}))
            .await;
        self.eval("window.focus(); true").await;
    }

    /// Screen coordinates of the centre of element `id`.
    async fn center(&self, id: &str) -> (i32, i32) {
        common::screen_center(&self.browser().await, id).await
    }

    async fn log(&self) -> Vec<Value> {
        let (s, v) = self
            .srv
            .call(
                Method::GET,
                &self.path("/actions?limit=1000"),
                Some(&self.token),
                None,
            )
            .await;
        assert_eq!(s, 200, "{v}");
        v["actions"].as_array().expect("actions").clone()
    }

    async fn reset_scroll(&self) {
        for _ in 0..40 {
            self.eval("window.scrollTo(0, 0); true").await;
            tokio::time::sleep(Duration::from_millis(250)).await;
            if self
                .eval("window.scrollX === 0 && window.scrollY === 0")
                .await
                == json!(true)
            {
                return;
            }
        }
        panic!("page did not scroll back to the top");
    }
}

fn png_size(b: &[u8]) -> (u32, u32) {
    assert_eq!(&b[..8], b"\x89PNG\r\n\x1a\n", "not a PNG");
    (
        u32::from_be_bytes([b[16], b[17], b[18], b[19]]),
        u32::from_be_bytes([b[20], b[21], b[22], b[23]]),
    )
}

fn b64(s: &str) -> Vec<u8> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD
        .decode(s)
        .expect("base64")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn native_actions_log_and_screenshot_over_http() {
    let e = env().await;
    e.open_ui().await;
    let admin_id = e.srv.state.store().get_user_by_name("admin").expect("db");
    let admin_id = admin_id.expect("admin").id;

    // Click at coordinates lands on the button.
    let (x1, y1) = e.center("b1").await;
    let v = e
        .ok(json!({"action": "left_click", "x": x1, "y": y1}))
        .await;
    assert_eq!(v["results"][0]["action"], "left_click");
    assert!(v["results"][0]["duration_ms"].as_f64().expect("ms") >= 0.0);
    assert_eq!(e.wait_clicks("b1", 1).await, 1);

    // Unicode typing into an input, then select-all + delete.
    let (tx, ty) = e.center("t").await;
    let text = "héllo wörld ✓ 日本 🙂";
    e.ok(json!({"actions": [
        {"action": "left_click", "x": tx, "y": ty},
        {"action": "type", "text": text},
    ]}))
    .await;
    let val = "document.getElementById('t').value";
    assert_eq!(e.wait_eval(val, json!(text)).await, json!(text));
    e.ok(json!({"action": "key", "keys": "ctrl+a Delete"}))
        .await;
    assert_eq!(e.wait_eval(val, json!("")).await, json!(""));

    // Scroll moves the page.
    e.ok(json!({"action": "scroll", "x": 640, "y": 400, "direction": "down", "amount": 5}))
        .await;
    assert_eq!(
        e.wait_eval("window.scrollY > 100", json!(true)).await,
        json!(true)
    );
    e.reset_scroll().await;

    // page_text comes back through the API.
    let v = e.ok(json!({"action": "page_text"})).await;
    assert_eq!(v["results"][0]["output"]["type"], "page_text", "{v}");

    // A batch failing midway stops there and says which action failed; status of the error.
    let (x2, y2) = e.center("b2").await;
    let before = e.log().await.len();
    let (s, v) = e
        .act(
            "",
            json!({"actions": [
                {"action": "left_click", "x": x1, "y": y1},
                {"action": "tab_switch", "id": "no-such-tab"},
                {"action": "left_click", "x": x2, "y": y2},
            ], "screenshot": {"format": "png", "scale": 0.5}}),
        )
        .await;
    assert_eq!(s, 404, "{v}");
    assert_eq!(v["ok"], false);
    assert_eq!(v["failed_index"], 1);
    assert_eq!(v["results"].as_array().expect("results").len(), 2);
    assert_eq!(v["results"][1]["error"]["error"], "not_found");
    let shot = b64(v["screenshot"]["data"].as_str().expect("shot"));
    assert_eq!(png_size(&shot), (640, 400));
    assert_eq!(e.wait_clicks("b1", 2).await, 2);
    let log = e.log().await;
    assert_eq!(log.len(), before + 2, "the two actions that ran are logged");
    assert_eq!(log[before + 1]["ok"], false);
    assert_eq!(log[before + 1]["what"]["action"], "tab_switch");

    // Bad input: 4xx JSON, nothing executed, nothing logged.
    let before = e.log().await.len();
    let cases = [
        (json!({"action": "teleport", "x": 1}), 400, "unknown_action"),
        (
            json!({"action": "left_click", "x": 5000, "y": 10}),
            422,
            "out_of_bounds",
        ),
        (
            json!({"action": "key", "keys": "ctrl+nosuchkey"}),
            422,
            "bad_key",
        ),
        (
            json!({"action": "navigate", "url": "file:///etc/passwd"}),
            422,
            "url_not_allowed",
        ),
        (
            json!({"action": "navigate", "url": "javascript:alert(1)"}),
            422,
            "url_not_allowed",
        ),
    ];
    for (bad, status, code) in cases {
        let body = json!({"actions": [{"action": "left_click", "x": x2, "y": y2}, bad]});
        let (s, v) = e.act("", body).await;
        assert_eq!(s, status, "{bad} -> {v}");
        assert_eq!(v["error"], code, "{v}");
        assert_eq!(v["index"], 1, "{v}");
        assert!(!v["message"].as_str().unwrap_or("").is_empty());
    }
    let r = e
        .srv
        .http
        .post(e.srv.url(&e.path("/actions")))
        .bearer_auth(&e.token)
        .body("not json")
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 400);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(e.clicks("b2").await, 0, "nothing ran for rejected requests");
    assert_eq!(
        e.log().await.len(),
        before,
        "nothing logged for rejected requests"
    );

    // The action log: who, what, duration, paging.
    let log = e.log().await;
    let names: Vec<&str> = log
        .iter()
        .filter_map(|a| a["what"]["action"].as_str())
        .collect();
    assert_eq!(
        &names[..6],
        &[
            "navigate",
            "left_click",
            "left_click",
            "type",
            "key",
            "scroll"
        ],
        "{names:?}"
    );
    for a in &log {
        assert_eq!(a["who"], format!("user:{admin_id}"));
        assert_eq!(a["what"]["via"], "rest");
        assert!(a["duration_ms"].is_u64());
        assert!(a["timestamp"].as_u64().expect("ts") > 0);
    }
    assert_eq!(log[3]["what"]["input"]["action"], "type");
    let (s, p1) = e
        .srv
        .call(
            Method::GET,
            &e.path("/actions?limit=2"),
            Some(&e.token),
            None,
        )
        .await;
    assert_eq!(s, 200);
    assert_eq!(p1["actions"].as_array().expect("a").len(), 2);
    let next = p1["next_after"].as_u64().expect("next");
    let (_, p2) = e
        .srv
        .call(
            Method::GET,
            &e.path(&format!("/actions?limit=2&after={next}")),
            Some(&e.token),
            None,
        )
        .await;
    assert_eq!(p2["actions"][0]["seq"], log[2]["seq"]);

    // Screenshot endpoint: a decodable JPEG of the screen size, and scaled to XGA.
    for (q, w, h) in [("", 1280, 800), ("&scale=xga", 1024, 768)] {
        let r = e
            .srv
            .req(
                Method::GET,
                &e.path(&format!("/screenshot?format=jpeg&quality=70{q}")),
                Some(&e.token),
                None,
            )
            .await;
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["content-type"], "image/jpeg");
        let bytes = r.bytes().await.expect("bytes");
        let mut d = jpeg_decoder::Decoder::new(&bytes[..]);
        let pixels = d.decode().expect("decodable JPEG");
        let info = d.info().expect("info");
        assert_eq!((info.width as u32, info.height as u32), (w, h));
        assert_eq!(pixels.len(), (w * h * 3) as usize);
    }
    let r = e
        .srv
        .req(Method::GET, &e.path("/screenshot"), Some(&e.token), None)
        .await;
    assert_eq!(r.headers()["content-type"], "image/png");
    assert_eq!(png_size(&r.bytes().await.expect("png")), (1280, 800));
    let (s, v) = e
        .srv
        .call(
            Method::GET,
            &e.path("/screenshot?scale=huge"),
            Some(&e.token),
            None,
        )
        .await;
    assert_eq!(s, 422, "{v}");

    // Without credentials: 401, and nothing ran.
    let (s, _) = e
        .srv
        .call(
            Method::POST,
            &e.path("/actions"),
            None,
            Some(json!({"action": "left_click", "x": x2, "y": y2})),
        )
        .await;
    assert_eq!(s, 401);
    // A read-only API token cannot drive the desktop.
    let (s, v) = e
        .srv
        .call(
            Method::POST,
            "/api/v1/tokens",
            Some(&e.token),
            Some(json!({"name": "ro", "scopes": ["read", "write"]})),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    let ro = v["token"].as_str().expect("token").to_owned();
    let (s, v) = e
        .srv
        .call(
            Method::POST,
            &e.path("/actions"),
            Some(&ro),
            Some(json!({"action": "left_click", "x": x2, "y": y2})),
        )
        .await;
    assert_eq!(s, 403, "{v}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(e.clicks("b2").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anthropic_and_openai_adapters_with_scaling() {
    let e = env().await;
    e.open_ui().await;
    let (x1, y1) = e.center("b1").await;
    let (x2, y2) = e.center("b2").await;
    let (tx, ty) = e.center("t").await;

    // Anthropic: declared 1024x640 (0.8 of the screen).
    let q = "/anthropic?display_width_px=1024&display_height_px=640";
    let d = |v: i32| (f64::from(v) * 0.8).round() as i64;
    let (s, v) = e
        .act(
            q,
            json!({"action": "left_click", "coordinate": [d(x1), d(y1)]}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["is_error"], false);
    let img = v["content"]
        .as_array()
        .expect("content")
        .iter()
        .find(|c| c["type"] == "image")
        .expect("image")
        .clone();
    assert_eq!(img["source"]["media_type"], "image/png");
    assert_eq!(
        png_size(&b64(img["source"]["data"].as_str().expect("data"))),
        (1024, 640)
    );
    assert_eq!(e.wait_clicks("b1", 1).await, 1);
    let (s, v) = e
        .act(
            q,
            json!({"action": "left_click", "coordinate": [d(tx), d(ty)]}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let (s, v) = e.act(q, json!({"action": "type", "text": "Grüße ✓"})).await;
    assert_eq!(s, 200, "{v}");
    let val = "document.getElementById('t').value";
    assert_eq!(e.wait_eval(val, json!("Grüße ✓")).await, json!("Grüße ✓"));
    let (s, v) = e
        .act(
            &format!("{q}&screenshot=false"),
            json!({"action": "key", "text": "ctrl+a"}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert!(
        v["content"][0]["type"] == "text",
        "no screenshot asked: {v}"
    );
    let (s, _) = e
        .act(q, json!({"action": "key", "text": "BackSpace"}))
        .await;
    assert_eq!(s, 200);
    assert_eq!(e.wait_eval(val, json!("")).await, json!(""));
    let (s, v) = e.act(q, json!({"action": "cursor_position"})).await;
    assert_eq!(s, 200);
    assert_eq!(
        v["content"][0]["text"],
        format!("X={},Y={}", d(tx), d(ty)),
        "{v}"
    );
    // Bad input through the adapter: 4xx, nothing ran.
    let (s, v) = e.act(q, json!({"action": "zoom"})).await;
    assert_eq!(s, 400, "{v}");
    let (s, v) = e
        .act(q, json!({"action": "left_click", "coordinate": [2000, 10]}))
        .await;
    assert_eq!(s, 422, "{v}");
    let (s, v) = e
        .act("/anthropic?bogus=1", json!({"action": "screenshot"}))
        .await;
    assert_eq!(s, 400, "{v}");

    // OpenAI: declared 640x400 (0.5).
    let q = "/openai?display_width=640&display_height=400";
    let (s, v) = e
        .act(
            q,
            json!({"type": "click", "button": "left", "x": x2 / 2, "y": y2 / 2}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["type"], "computer_call_output");
    let url = v["output"]["image_url"].as_str().expect("url");
    let data = url.strip_prefix("data:image/png;base64,").expect("png url");
    assert_eq!(png_size(&b64(data)), (640, 400));
    assert_eq!(e.wait_clicks("b2", 1).await, 1);
    let (s, v) = e
        .act(
            q,
            json!({"type": "computer_call", "call_id": "c1", "actions": [
                {"type": "click", "button": "left", "x": tx / 2, "y": ty / 2},
                {"type": "type", "text": "ok ✓"},
                {"type": "keypress", "keys": ["CTRL", "A"]},
                {"type": "keypress", "keys": ["DELETE"]},
                {"type": "type", "text": "done"},
            ]}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["call_id"], "c1");
    assert_eq!(e.wait_eval(val, json!("done")).await, json!("done"));
    let (s, _) = e
        .act(
            q,
            json!({"type": "scroll", "x": 320, "y": 200, "scroll_x": 0, "scroll_y": 400}),
        )
        .await;
    assert_eq!(s, 200);
    assert_eq!(
        e.wait_eval("window.scrollY > 100", json!(true)).await,
        json!(true)
    );
    let (s, v) = e.act(q, json!({"type": "teleport"})).await;
    assert_eq!(s, 400, "{v}");

    // The log says which door each action came through.
    let log = e.log().await;
    let vias: Vec<&str> = log
        .iter()
        .filter_map(|a| a["what"]["via"].as_str())
        .collect();
    assert!(
        vias.contains(&"anthropic") && vias.contains(&"openai"),
        "{vias:?}"
    );
    // Rejected adapter calls logged nothing: every entry is an action that ran.
    assert!(log.iter().all(|a| a["what"]["action"] != "zoom"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkpoint_restore_and_chrome_restart() {
    let mut e = env().await;
    e.open_ui().await;
    e.eval("document.cookie = 'k=v1; path=/'; localStorage.setItem('k', 'v1'); true")
        .await;
    let (s, cp) = e
        .srv
        .call(
            Method::POST,
            &e.path("/checkpoints"),
            Some(&e.token),
            Some(json!({"label": "before"})),
        )
        .await;
    assert_eq!(s, 201, "{cp}");
    let cid = cp["id"].as_str().expect("cid").to_owned();
    assert!(
        !cp.to_string().contains("v1"),
        "cookie values never returned: {cp}"
    );
    let (s, list) = e
        .srv
        .call(Method::GET, &e.path("/checkpoints"), Some(&e.token), None)
        .await;
    assert_eq!(s, 200);
    assert_eq!(list[0]["id"], cid.as_str());
    assert_eq!(list[0]["label"], "before");

    // Change cookie and storage, navigate away.
    e.eval("document.cookie = 'k=v2; path=/'; localStorage.setItem('k', 'v2'); true")
        .await;
    e.ok(json!({"action": "navigate", "url": e.pages.url("/two")}))
        .await;
    assert_eq!(e.eval("document.title").await, json!("Two"));

    let (s, v) = e
        .srv
        .call(
            Method::POST,
            &e.path(&format!("/checkpoints/{cid}/restore")),
            Some(&e.token),
            None,
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        e.wait_eval("document.title", json!("UI")).await,
        json!("UI")
    );
    assert_eq!(e.eval("document.cookie").await, json!("k=v1"));
    assert_eq!(e.eval("localStorage.getItem('k')").await, json!("v1"));
    let (s, _) = e
        .srv
        .call(
            Method::POST,
            &e.path("/checkpoints/nope/restore"),
            Some(&e.token),
            None,
        )
        .await;
    assert_eq!(s, 404);

    // Kill Chrome; while it is down browser actions fail cleanly (503); the test restarts
    // it on the same port like the supervisor would; the next action succeeds.
    e.chrome.kill();
    let (s, v) = e.act("", json!({"action": "page_text"})).await;
    assert_eq!(s, 503, "{v}");
    assert_eq!(
        v["results"][0]["error"]["error"], "browser_unavailable",
        "{v}"
    );
    e.chrome.restart();
    e.ok(json!({"action": "navigate", "url": e.pages.url("/ui")}))
        .await;
    e.eval("window.focus(); true").await;
    let (x1, y1) = e.center("b1").await;
    e.ok(json!({"action": "left_click", "x": x1, "y": y1}))
        .await;
    assert_eq!(e.wait_clicks("b1", 1).await, 1);

    // Downloads: listed and fetched (files land in <state>/desktops/0/downloads).
    let dl = e.srv.state.desktops().downloads_dir(0);
    std::fs::create_dir_all(&dl).expect("mkdir");
    std::fs::write(dl.join("report.txt"), b"hello").expect("write");
    let (s, v) = e
        .srv
        .call(Method::GET, &e.path("/downloads"), Some(&e.token), None)
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v[0]["name"], "report.txt");
    let r = e
        .srv
        .req(
            Method::GET,
            &e.path("/downloads/report.txt"),
            Some(&e.token),
            None,
        )
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().await.expect("b").as_ref(), b"hello");
    let (s, _) = e
        .srv
        .call(
            Method::GET,
            &e.path("/downloads/..%2Fzigral.redb"),
            Some(&e.token),
            None,
        )
        .await;
    assert!(s == 400 || s == 404 || s == 422, "traversal refused: {s}");
}

/// The python interpreter with the `mcp` SDK.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mcp_with_api_token_and_session_header() {
    let e = env().await;
    e.open_ui().await;
    let (x1, y1) = e.center("b1").await;

    // MCP without a token: 401 JSON.
    let r = e
        .srv
        .http
        .post(e.srv.url("/mcp"))
        .header("accept", "application/json, text/event-stream")
        .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 401);
    let v: Value = r.json().await.expect("json");
    assert_eq!(v["error"], "unauthorized");
    // A token without the control scope: 403.
    let (_, v) = e
        .srv
        .call(
            Method::POST,
            "/api/v1/tokens",
            Some(&e.token),
            Some(json!({"name": "ro", "scopes": ["read", "write"]})),
        )
        .await;
    let r = e
        .srv
        .http
        .post(e.srv.url("/mcp"))
        .bearer_auth(v["token"].as_str().expect("t"))
        .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 403);

    let (s, v) = e
        .srv
        .call(
            Method::POST,
            "/api/v1/tokens",
            Some(&e.token),
            Some(json!({"name": "agent", "scopes": ["read", "write", "control"]})),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    let api = v["token"].as_str().expect("token").to_owned();
    let token_id = v["id"].as_str().expect("id").to_owned();

    // Someone else's session: refused before MCP sees the request.
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/mcp_client.py");
    let url = e.srv.url("/mcp");
    let sid = e.sid.clone();
    let v = tokio::task::spawn_blocking(move || {
        zigral_tests::run_mcp_client(&script, &[url, api, sid, x1.to_string(), y1.to_string()])
    })
    .await
    .expect("join");
    let tools: Vec<&str> = v["tools"]
        .as_array()
        .expect("tools")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    for t in [
        "screenshot",
        "left_click",
        "navigate",
        "type",
        "key",
        "batch",
        "type_secret",
        "request_human_input",
    ] {
        assert!(tools.contains(&t), "{t} not in {tools:?}");
    }
    // A credential that does not exist is refused, as a tool error.
    assert_eq!(v["type_secret_is_error"], true, "{v}");
    assert!(
        v["type_secret_text"][0]
            .as_str()
            .unwrap_or("")
            .contains("type_secret refused"),
        "{v}"
    );
    assert_eq!(v["screenshot_is_error"], false, "{v}");
    assert_eq!(v["screenshot_images"], 1, "{v}");
    assert_eq!(v["screenshot_mime"], "image/jpeg");
    assert_eq!(v["click_is_error"], false, "{v}");
    assert_eq!(v["no_session_is_error"], true, "{v}");
    assert!(
        v["no_session_text"][0]
            .as_str()
            .unwrap_or("")
            .contains("X-Zigral-Session"),
        "{v}"
    );
    assert_eq!(e.wait_clicks("b1", 1).await, 1);

    // The MCP calls are in the session's action log, attributed to the API token.
    let log = e.log().await;
    let mcp: Vec<&Value> = log.iter().filter(|a| a["what"]["via"] == "mcp").collect();
    let names: Vec<&str> = mcp
        .iter()
        .filter_map(|a| a["what"]["action"].as_str())
        .collect();
    assert_eq!(
        names,
        vec!["screenshot", "left_click", "type_secret"],
        "{log:?}"
    );
    for a in mcp {
        assert_eq!(a["who"], format!("token:{token_id}"));
        assert_eq!(a["ok"], a["what"]["action"] != "type_secret", "{a}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_desktop_is_a_clean_503_and_nothing_is_logged() {
    // No X server and no Chrome there.
    let srv = common::start(|c| {
        c.display_base = 60999;
        c.cdp_base = zigral_tests::free_port();
    })
    .await;
    let token = srv.admin().await;
    let (_, v) = srv
        .call(
            Method::POST,
            "/api/v1/sessions",
            Some(&token),
            Some(json!({})),
        )
        .await;
    let sid = v["id"].as_str().expect("id").to_owned();
    let p = |r: &str| format!("/api/v1/sessions/{sid}{r}");
    for (path, body) in [
        ("/actions", json!({"action": "left_click", "x": 1, "y": 1})),
        ("/actions/anthropic", json!({"action": "screenshot"})),
        ("/actions/openai", json!({"type": "screenshot"})),
    ] {
        let (s, v) = srv
            .call(Method::POST, &p(path), Some(&token), Some(body))
            .await;
        assert_eq!(s, 503, "{path}: {v}");
        assert_eq!(v["error"], "desktop_unavailable", "{v}");
    }
    let (s, v) = srv
        .call(Method::GET, &p("/screenshot"), Some(&token), None)
        .await;
    assert_eq!(s, 503, "{v}");
    let (s, v) = srv
        .call(Method::POST, &p("/checkpoints"), Some(&token), None)
        .await;
    assert_eq!(s, 503, "{v}");
    assert_eq!(v["error"], "browser_unavailable", "{v}");
    // Bad input is still a 400 before the desktop is looked at.
    let (s, _) = srv
        .call(
            Method::POST,
            &p("/actions"),
            Some(&token),
            Some(json!({"action": "nope"})),
        )
        .await;
    assert_eq!(s, 400);
    let (s, v) = srv
        .call(Method::GET, &p("/actions"), Some(&token), None)
        .await;
    assert_eq!(s, 200);
    assert_eq!(v["actions"], json!([]));
}
