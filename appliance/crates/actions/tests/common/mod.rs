//! Shared setup of the action tests: Xvfb + real Chromium + a test page served from 127.0.0.1,
//! the desktop and browser handles, and helpers that read the page's state over CDP.

#![allow(dead_code)]

use std::time::Duration;

use serde_json::Value;
use zigral_actions::Executor;
use zigral_browser::testkit::{Chrome, PageServer, Response};
use zigral_browser::{Browser, BrowserOptions, UrlPolicy};
use zigral_desktop::Desktop;
use zigral_tests::Xvfb;

/// The test page: buttons, a text input, a text area, a canvas that records drags, and a tall
/// body to scroll. Every event lands in `window.log`.
pub const UI_PAGE: &str = r#"<!doctype html><html><head><title>UI</title>
<style>body{margin:0;height:4000px;width:3000px;font:16px sans-serif}
#b1{position:absolute;left:50px;top:50px;width:150px;height:50px}
#b2{position:absolute;left:300px;top:50px;width:150px;height:50px}
#t{position:absolute;left:50px;top:150px;width:400px;height:30px}
#c{position:absolute;left:50px;top:250px;border:1px solid #000}
#p{position:absolute;left:500px;top:150px;width:300px}</style></head><body>
<button id="b1">One</button><button id="b2">Two</button>
<input id="t" aria-label="Name">
<canvas id="c" width="300" height="200"></canvas>
<p id="p">alpha beta gamma</p>
<script>
window.log = [];
const rec = (e) => window.log.push({type: e.type, id: e.target.id || e.target.tagName,
  x: e.offsetX, y: e.offsetY, button: e.button, detail: e.detail,
  shift: e.shiftKey, ctrl: e.ctrlKey});
for (const t of ['click', 'dblclick', 'contextmenu', 'mousedown', 'mouseup', 'auxclick'])
  document.addEventListener(t, rec, true);
document.addEventListener('contextmenu', e => e.preventDefault());
const c = document.getElementById('c');
c.addEventListener('mousemove', e => { if (e.buttons) rec(e); });
</script></body></html>"#;

pub struct Env {
    pub x: Xvfb,
    pub chrome: Chrome,
    pub dir: tempfile::TempDir,
    pub pages: PageServer,
    pub browser: Browser,
    pub desktop: Desktop,
    pub exec: Executor,
}

pub fn env() -> Env {
    let x = Xvfb::start(1280, 800);
    let dir = tempfile::tempdir().expect("tempdir");
    let chrome = Chrome::start(x.display, 1280, 800, &dir.path().join("chrome"));
    let pages = PageServer::start();
    pages.page("/ui", Response::html(UI_PAGE));
    pages.page(
        "/two",
        Response::html("<!doctype html><title>Two</title><p>second</p>"),
    );
    let mut opts = BrowserOptions::new(chrome.port);
    opts.downloads_dir = Some(dir.path().join("downloads"));
    opts.reconnect_timeout = Duration::from_secs(3);
    let browser = Browser::new(opts);
    let desktop = Desktop::connect(&format!(":{}", x.display)).expect("desktop");
    let exec = Executor::new(desktop.clone(), Some(browser.clone()));
    Env {
        x,
        chrome,
        dir,
        pages,
        browser,
        desktop,
        exec,
    }
}

impl Env {
    /// Opens the UI page and waits until it is focused and ready for input.
    pub async fn open_ui(&self) {
        self.browser
            .navigate(&self.pages.url("/ui"), &UrlPolicy::default())
            .await
            .expect("open /ui");
        self.browser
            .evaluate("window.focus(); true")
            .await
            .expect("focus");
    }

    /// Screen coordinates of the centre of element `id` (through the viewport offset).
    pub async fn center(&self, id: &str) -> (i32, i32) {
        let (vp, k) = self.browser.viewport().await.expect("viewport");
        let r = self
            .browser
            .evaluate(&format!(
                "(() => {{ const r = document.getElementById('{id}').getBoundingClientRect(); \
                 return [r.left + r.width / 2, r.top + r.height / 2]; }})()"
            ))
            .await
            .expect("rect");
        let cx = r[0].as_f64().expect("x");
        let cy = r[1].as_f64().expect("y");
        (
            vp.x + (cx * k).round() as i32,
            vp.y + (cy * k).round() as i32,
        )
    }

    /// The page's event log.
    pub async fn log(&self) -> Vec<Value> {
        match self.browser.evaluate("window.log").await.expect("log") {
            Value::Array(a) => a,
            other => panic!("log is {other}"),
        }
    }

    /// Events of `type` on element `id`.
    pub async fn events(&self, ty: &str, id: &str) -> Vec<Value> {
        self.log()
            .await
            .into_iter()
            .filter(|e| e["type"] == ty && e["id"] == id)
            .collect()
    }

    /// Polls `expr` until it equals `want` (input events reach the page asynchronously).
    pub async fn wait_eval(&self, expr: &str, want: Value) -> Value {
        let start = std::time::Instant::now();
        loop {
            let v = self.browser.evaluate(expr).await.expect("eval");
            if v == want || start.elapsed() > Duration::from_secs(10) {
                return v;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Scrolls back to the top-left and waits until wheel smooth-scrolling has settled there.
    pub async fn reset_scroll(&self) {
        for _ in 0..40 {
            self.browser
                .evaluate("window.scrollTo(0, 0); true")
                .await
                .expect("scrollTo");
            tokio::time::sleep(Duration::from_millis(250)).await;
            if self
                .browser
                .evaluate("window.scrollX === 0 && window.scrollY === 0")
                .await
                .expect("scroll pos")
                == Value::Bool(true)
            {
                return;
            }
        }
        panic!("page keeps scrolling");
    }

    /// Polls until at least `n` events of `ty` on `id` arrived.
    pub async fn wait_events(&self, ty: &str, id: &str, n: usize) -> Vec<Value> {
        let start = std::time::Instant::now();
        loop {
            let ev = self.events(ty, id).await;
            if ev.len() >= n || start.elapsed() > Duration::from_secs(10) {
                return ev;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Width and height of a base64 PNG or JPEG.
pub fn image_size(b64: &str) -> (u32, u32) {
    use base64::Engine;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .expect("base64");
    if bytes.starts_with(b"\x89PNG") {
        let w = u32::from_be_bytes(bytes[16..20].try_into().expect("w"));
        let h = u32::from_be_bytes(bytes[20..24].try_into().expect("h"));
        return (w, h);
    }
    assert!(bytes.starts_with(&[0xff, 0xd8]), "not PNG or JPEG");
    let mut i = 2;
    while i + 9 < bytes.len() {
        assert_eq!(bytes[i], 0xff);
        let marker = bytes[i + 1];
        let len = u16::from_be_bytes([bytes[i + 2], bytes[i + 3]]) as usize;
        if (0xc0..=0xc2).contains(&marker) {
            let h = u16::from_be_bytes([bytes[i + 5], bytes[i + 6]]) as u32;
            let w = u16::from_be_bytes([bytes[i + 7], bytes[i + 8]]) as u32;
            return (w, h);
        }
        i += 2 + len;
    }
    panic!("no SOF in JPEG");
}
