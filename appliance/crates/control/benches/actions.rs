//! Agent actions end to end through the real control plane: `POST /api/v1/sessions/{id}/actions`
//! and `GET .../screenshot` over HTTP on loopback (bearer auth, ownership check, validation,
//! the desktop's input lock, XTEST/SHM on Xvfb 1280x800 with a real Chromium, and the
//! action-log write to redb before the reply), driven by reqwest with keep-alive.
//!
//! Peers measured in the same run: `xdotool mousemove X Y click 1` (a process per action, what
//! many agent stacks do) and Chrome's own CDP `Page.captureScreenshot` JPEG. Quoted, not
//! measured here: Kernel's published headful mouse-move median (34 ms), printed with
//! "(quoted)" in its name. This is the workspace's one actions bench (it replaced the
//! executor-only bench of zigral-actions, whose figures it keeps).

mod common;

use std::time::{Duration, Instant};

use common::pct;
use serde_json::{Value, json};
use zigral_browser::testkit::Response;
use zigral_browser::{Browser, BrowserOptions};

async fn time_post(
    c: &reqwest::Client,
    url: &str,
    token: &str,
    body: &Value,
    n: usize,
) -> Vec<f64> {
    let body = serde_json::to_vec(body).expect("json");
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        let r = c
            .post(url)
            .bearer_auth(token)
            .header("content-type", "application/json")
            .body(body.clone())
            .send()
            .await
            .expect("post");
        let st = r.status();
        let b = r.bytes().await.expect("body");
        assert!(st.is_success(), "{st}: {}", String::from_utf8_lossy(&b));
        out.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    out
}

async fn time_get(c: &reqwest::Client, url: &str, token: &str, n: usize) -> Vec<f64> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        let r = c.get(url).bearer_auth(token).send().await.expect("get");
        let st = r.status();
        let b = r.bytes().await.expect("body");
        assert!(st.is_success() && b.len() > 1000, "{st}");
        out.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    out
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    zigral_llm::tls::install_default_provider();
    // The tests' kit: Xvfb, Chromium, pages, and a logged-in control plane driving them.
    let common::Desktop {
        x,
        chrome,
        dir: _dir,
        pages,
        srv,
        token,
    } = common::desktop(1280, 800, |_| {}).await;
    pages.page(
        "/",
        Response::html(
            "<!doctype html><title>bench</title><body style='margin:0;height:3000px'>\
             <h1>bench</h1><p>Lorem ipsum dolor sit amet.</p>\
             <script>let n=0;document.addEventListener('click',()=>n++)</script></body>",
        ),
    );

    let base = srv.base.clone();
    let c = reqwest::Client::new();
    let sid = srv.session(&token, None).await;
    let url = format!("{base}/api/v1/sessions/{sid}/actions");
    let nav = json!({"action": "navigate", "url": pages.url("/")});
    time_post(&c, &url, &token, &nav, 1).await;

    // Click (move + press + release) on the page body.
    let click = json!({"action": "left_click", "x": 640, "y": 500});
    time_post(&c, &url, &token, &click, 30).await;
    let mut v = time_post(&c, &url, &token, &click, 300).await;
    let click_p50 = pct(&mut v, 0.5);
    let click_p99 = pct(&mut v, 0.99);

    // Peer: xdotool, one process per click.
    let display = format!(":{}", x.display);
    let mut xd = Vec::new();
    for i in 0..40 {
        let t = Instant::now();
        let st = std::process::Command::new("xdotool")
            .env("DISPLAY", &display)
            .args(["mousemove", "640", &(500 + i % 2).to_string(), "click", "1"])
            .status()
            .expect("xdotool");
        assert!(st.success());
        xd.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    let xdotool_p50 = pct(&mut xd, 0.5);

    // Screenshot actions (JPEG 80, base64 in JSON) and the raw GET .../screenshot.
    let full = json!({"action": "screenshot", "format": "jpeg", "quality": 80});
    time_post(&c, &url, &token, &full, 5).await;
    let mut v = time_post(&c, &url, &token, &full, 60).await;
    let shot_full_p50 = pct(&mut v, 0.5);
    let xga = json!({"action": "screenshot", "format": "jpeg", "quality": 80, "scale": "xga"});
    time_post(&c, &url, &token, &xga, 5).await;
    let mut v = time_post(&c, &url, &token, &xga, 60).await;
    let shot_xga_p50 = pct(&mut v, 0.5);
    let get_url = format!("{base}/api/v1/sessions/{sid}/screenshot?format=jpeg&quality=80");
    time_get(&c, &get_url, &token, 5).await;
    let mut v = time_get(&c, &get_url, &token, 60).await;
    let get_full_p50 = pct(&mut v, 0.5);
    let png = json!({"action": "screenshot", "format": "png"});
    let mut v = time_post(&c, &url, &token, &png, 20).await;
    let shot_png_p50 = pct(&mut v, 0.5);

    // Peer: Chrome's CDP screenshot (viewport only, JPEG 80), over its own CDP connection.
    let browser = Browser::new(BrowserOptions::new(chrome.port));
    let mut cdp = Vec::new();
    for _ in 0..25 {
        let t = Instant::now();
        let b = browser.cdp_screenshot_jpeg(80).await.expect("cdp shot");
        assert!(b.len() > 1000);
        cdp.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    let cdp_p50 = pct(&mut cdp, 0.5);

    // A 20-action batch: 10 x (move, click).
    let actions: Vec<Value> = (0..10)
        .flat_map(|i| {
            [
                json!({"action": "mouse_move", "x": 600 + i * 5, "y": 450}),
                json!({"action": "left_click"}),
            ]
        })
        .collect();
    let batch = json!({"actions": actions});
    time_post(&c, &url, &token, &batch, 3).await;
    let mut v = time_post(&c, &url, &token, &batch, 40).await;
    let batch_p50 = pct(&mut v, 0.5);
    let mut xd20 = Vec::new();
    for _ in 0..3 {
        let t = Instant::now();
        for i in 0..10 {
            std::process::Command::new("xdotool")
                .env("DISPLAY", &display)
                .args(["mousemove", &(600 + i * 5).to_string(), "450", "click", "1"])
                .status()
                .expect("xdotool");
        }
        xd20.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    let xd20_p50 = pct(&mut xd20, 0.5);

    println!("control_click_p50_ms: {click_p50:.2}");
    println!("control_click_p99_ms: {click_p99:.2}");
    println!("click_xdotool_process_p50_ms: {xdotool_p50:.2}");
    println!(
        "control_click_p50_vs_xdotool: {:.4}x",
        click_p50 / xdotool_p50
    );
    println!("kernel_headful_mouse_move_p50_ms (quoted): 34");
    println!("control_screenshot_jpeg_1280x800_p50_ms: {shot_full_p50:.2}");
    println!("control_screenshot_jpeg_xga_p50_ms: {shot_xga_p50:.2}");
    println!("control_screenshot_png_1280x800_p50_ms: {shot_png_p50:.2}");
    println!("control_get_screenshot_jpeg_1280x800_p50_ms: {get_full_p50:.2}");
    println!("screenshot_cdp_jpeg_viewport_p50_ms: {cdp_p50:.2}");
    println!(
        "control_get_screenshot_vs_cdp: {:.4}x",
        get_full_p50 / cdp_p50
    );
    println!("control_batch20_p50_ms: {batch_p50:.2}");
    println!("batch20_xdotool_processes_ms: {xd20_p50:.2}");
    println!("control_batch20_vs_xdotool: {:.4}x", batch_p50 / xd20_p50);
    drop(chrome);
    tokio::time::sleep(Duration::from_millis(100)).await;
}
