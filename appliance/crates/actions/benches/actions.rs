//! Action latency end to end over HTTP on loopback: a minimal axum server in front of the
//! executor (the same `BatchRequest` parsing, validation, input lock and desktop/browser calls
//! the control plane uses, without its auth and action-log write), driven by reqwest with
//! keep-alive, on Xvfb 1280x800 with a real Chromium showing a page.
//!
//! Peers measured in the same run: `xdotool mousemove X Y click 1` (a process per action, what
//! many agent stacks do) and Chrome's own CDP `Page.captureScreenshot` JPEG. Published: Kernel's
//! headful mouse-move median is 34 ms.

use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::StatusCode;
use axum::routing::post;
use serde_json::{Value, json};
use zigral_actions::{BatchRequest, Executor};
use zigral_browser::testkit::{Chrome, PageServer, Response};
use zigral_browser::{Browser, BrowserOptions, UrlPolicy};
use zigral_desktop::Desktop;
use zigral_tests::Xvfb;

fn pct(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v[i.min(v.len() - 1)]
}

async fn time_post(c: &reqwest::Client, url: &str, body: &Value, n: usize) -> Vec<f64> {
    let body = serde_json::to_vec(body).expect("json");
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        let r = c
            .post(url)
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

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let x = Xvfb::start(1280, 800);
    let dir = tempfile::tempdir().expect("tmp");
    let chrome = Chrome::start(x.display, 1280, 800, &dir.path().join("chrome"));
    let pages = PageServer::start();
    pages.page(
        "/",
        Response::html(
            "<!doctype html><title>bench</title><body style='margin:0;height:3000px'>\
             <h1>bench</h1><p>Lorem ipsum dolor sit amet.</p>\
             <script>let n=0;document.addEventListener('click',()=>n++)</script></body>",
        ),
    );
    let browser = Browser::new(BrowserOptions::new(chrome.port));
    browser
        .navigate(&pages.url("/"), &UrlPolicy::default())
        .await
        .expect("nav");
    let desktop = Desktop::connect(&format!(":{}", x.display)).expect("desktop");
    let exec = Executor::new(desktop, Some(browser.clone()));

    let app = axum::Router::new().route(
        "/actions",
        post(move |body: Bytes| {
            let exec = exec.clone();
            async move {
                let req = match BatchRequest::from_json(&body) {
                    Ok(r) => r,
                    Err(e) => return (StatusCode::BAD_REQUEST, e.to_string()).into_response(),
                };
                match exec.run(&req).await {
                    Ok(resp) => axum::Json(resp).into_response(),
                    Err(e) => (StatusCode::UNPROCESSABLE_ENTITY, e.to_string()).into_response(),
                }
            }
        }),
    );
    use axum::response::IntoResponse;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    let url = format!("http://127.0.0.1:{port}/actions");
    let c = reqwest::Client::new();

    // Click (move + press + release) on the page body.
    let click = json!({"action": "left_click", "x": 640, "y": 500});
    time_post(&c, &url, &click, 30).await;
    let mut v = time_post(&c, &url, &click, 300).await;
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

    // Screenshots.
    let full = json!({"action": "screenshot", "format": "jpeg", "quality": 80});
    time_post(&c, &url, &full, 5).await;
    let mut v = time_post(&c, &url, &full, 60).await;
    let shot_full_p50 = pct(&mut v, 0.5);
    let xga = json!({"action": "screenshot", "format": "jpeg", "quality": 80, "scale": "xga"});
    time_post(&c, &url, &xga, 5).await;
    let mut v = time_post(&c, &url, &xga, 60).await;
    let shot_xga_p50 = pct(&mut v, 0.5);
    let png = json!({"action": "screenshot", "format": "png"});
    let mut v = time_post(&c, &url, &png, 20).await;
    let shot_png_p50 = pct(&mut v, 0.5);

    // Peer: Chrome's CDP screenshot (viewport only, JPEG 80).
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
    time_post(&c, &url, &batch, 3).await;
    let mut v = time_post(&c, &url, &batch, 40).await;
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

    println!("click_http_p50_ms: {click_p50:.2}");
    println!("click_http_p99_ms: {click_p99:.2}");
    println!("click_xdotool_process_p50_ms: {xdotool_p50:.2}");
    println!("click_http_p50_vs_xdotool: {:.4}x", click_p50 / xdotool_p50);
    println!(
        "click_http_p50_vs_kernel_mouse_move_34ms: {:.2}x",
        click_p50 / 34.0
    );
    println!("screenshot_jpeg_1280x800_http_p50_ms: {shot_full_p50:.2}");
    println!("screenshot_jpeg_xga_http_p50_ms: {shot_xga_p50:.2}");
    println!("screenshot_png_1280x800_http_p50_ms: {shot_png_p50:.2}");
    println!("screenshot_cdp_jpeg_viewport_p50_ms: {cdp_p50:.2}");
    println!(
        "screenshot_jpeg_1280x800_vs_cdp: {:.2}x",
        shot_full_p50 / cdp_p50
    );
    println!("batch20_http_p50_ms: {batch_p50:.2}");
    println!("batch20_xdotool_processes_ms: {xd20_p50:.2}");
    println!("batch20_vs_xdotool: {:.4}x", batch_p50 / xd20_p50);
    drop(chrome);
    tokio::time::sleep(Duration::from_millis(100)).await;
}
