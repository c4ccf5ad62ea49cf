//! The appliance's own cost per agent step: one Anthropic computer-use tool call
//! (`left_click`, declared display 1024x768 = XGA) posted to the real control plane on loopback
//! until its tool result (PNG screenshot at XGA, base64 in JSON) is back. That covers auth,
//! the action log, the XTEST click, the settle (X Damage: 100 ms quiet window, 1.5 s cap), the
//! SHM grab, scaling and encoding. Xvfb 1280x800 with a real Chromium, pages served from
//! 127.0.0.1: (a) a static page, (b) a page that animates a box for 300 ms after each click.
//!
//! Peer, in the same run: the reference computer-use loop's way (anthropics/claude-quickstarts
//! computer-use-demo): the same XTEST click, then its fixed 2.0 s sleep, then `scrot -p` and
//! `convert FILE -resize 1024x768! FILE` (ImageMagick) and base64 of the file. Each reference
//! step costs more than 2 s, so it runs fewer times than ours (the counts are printed).
//!
//! Check printed with the figures: after an animated step, a screenshot taken 0.5 s later
//! (same tool call `screenshot`, so the same scaling and encoding) is byte-identical to the
//! step's own: the step showed the final frame, not the animation. As a control, a click
//! without the settle (native batch) followed at once by a screenshot is compared the same way.

mod common;

use std::time::{Duration, Instant};

use base64::Engine;
use common::pct;
use serde_json::{Value, json};
use zigral_browser::testkit::Response;
use zigral_desktop::{Button, Desktop, Point, Rect, ScaleInfo, Size};

const OURS: usize = 20;
const REFERENCE: usize = 5;
const CHECKS: usize = 5;
/// Where the agent clicks, in the declared XGA display.
const CLICK: [i32; 2] = [512, 600];

/// Posts one tool call; its wall time in ms and the tool result's image (base64).
async fn step(c: &reqwest::Client, url: &str, token: &str, input: &Value) -> (f64, String) {
    let body = serde_json::to_vec(input).expect("json");
    let t = Instant::now();
    let r = c
        .post(url)
        .bearer_auth(token)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .expect("post");
    let st = r.status();
    let b = r.bytes().await.expect("body");
    let ms = t.elapsed().as_secs_f64() * 1000.0;
    assert!(st.is_success(), "{st}: {}", String::from_utf8_lossy(&b));
    let v: Value = serde_json::from_slice(&b).expect("tool result json");
    let img = v["content"]
        .as_array()
        .and_then(|c| c.iter().find(|b| b["type"] == "image"))
        .and_then(|b| b["source"]["data"].as_str())
        .expect("a screenshot in the tool result")
        .to_owned();
    (ms, img)
}

async fn steps(c: &reqwest::Client, url: &str, token: &str, n: usize) -> Vec<f64> {
    let click = json!({"action": "left_click", "coordinate": CLICK});
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let (ms, img) = step(c, url, token, &click).await;
        assert!(img.len() > 1000);
        out.push(ms);
    }
    out
}

/// The reference loop's step: click, sleep 2.0 s, scrot, convert -resize to XGA, base64.
async fn reference_step(d: &Desktop, at: Point, display: &str, dir: &std::path::Path) -> f64 {
    let convert = if std::path::Path::new("/usr/bin/convert").exists() {
        "/usr/bin/convert" // ImageMagick itself, not a stand-in earlier on PATH
    } else {
        "convert"
    };
    let t = Instant::now();
    d.click_at(at.x, at.y, Button::Left, 1)
        .await
        .expect("click");
    tokio::time::sleep(Duration::from_secs_f64(2.0)).await;
    let path = dir.join("reference.png");
    let st = tokio::process::Command::new("scrot")
        .env("DISPLAY", display)
        .arg("-p")
        .arg("-o")
        .arg(&path)
        .status()
        .await
        .expect("scrot (install-deps.sh installs it)");
    assert!(st.success(), "scrot failed");
    let st = tokio::process::Command::new(convert)
        .arg(&path)
        .args(["-resize", "1024x768!"])
        .arg(&path)
        .status()
        .await
        .expect("convert (imagemagick; install-deps.sh installs it)");
    assert!(st.success(), "convert failed");
    let bytes = tokio::fs::read(&path).await.expect("read png");
    let b64 = base64::engine::general_purpose::STANDARD.encode(&bytes);
    let ms = t.elapsed().as_secs_f64() * 1000.0;
    assert!(b64.len() > 1000);
    ms
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    zigral_llm::tls::install_default_provider();
    // The tests' kit: Xvfb, Chromium, pages, and a logged-in control plane driving them.
    let common::Desktop {
        x,
        chrome,
        dir,
        pages,
        srv,
        token,
    } = common::desktop(1280, 800, |_| {}).await;
    pages.page(
        "/static",
        Response::html(
            "<!doctype html><title>static</title><body style='margin:0;font:16px sans-serif'>\
             <h1>A static page</h1><p>Lorem ipsum dolor sit amet, consectetur adipiscing.</p>\
             <script>let n=0;document.addEventListener('click',()=>n++)</script></body>",
        ),
    );
    // Each click moves the box to the other side over 300 ms (requestAnimationFrame), then
    // it stays still.
    pages.page(
        "/anim",
        Response::html(
            "<!doctype html><title>anim</title><body style='margin:0;font:16px sans-serif'>\
             <h1>An animated page</h1>\
             <div id=b style='position:absolute;left:50px;top:150px;width:200px;height:200px;\
             background:#c33'></div>\
             <script>let right=false;\
             document.addEventListener('click',()=>{right=!right;const b=document.getElementById('b');\
             const from=right?50:800,to=right?800:50,t0=performance.now();\
             function f(t){const k=Math.min(1,(t-t0)/300);b.style.left=(from+(to-from)*k)+'px';\
             b.style.background=k<1?'#3'+Math.floor(k*9)+'3':(right?'#33c':'#c33');\
             if(k<1)requestAnimationFrame(f)}requestAnimationFrame(f)})</script></body>",
        ),
    );

    let base = srv.base.clone();
    let c = reqwest::Client::new();
    let sid = srv.session(&token, None).await;
    let native = format!("{base}/api/v1/sessions/{sid}/actions");
    let url = format!(
        "{base}/api/v1/sessions/{sid}/actions/anthropic?display_width_px=1024&display_height_px=768"
    );
    let navigate = |path: &str| {
        json!({"actions": [{"action": "navigate", "url": pages.url(path)},
        {"action": "wait_for_load"}]})
    };
    let nav = |path: &'static str| {
        let (c, native, token, body) = (&c, &native, &token, navigate(path));
        async move {
            let r = c
                .post(native)
                .bearer_auth(token)
                .json(&body)
                .send()
                .await
                .expect("navigate");
            assert!(r.status().is_success(), "navigate {path}: {}", r.status());
        }
    };

    // (a) Static page.
    nav("/static").await;
    steps(&c, &url, &token, 3).await;
    let mut v = steps(&c, &url, &token, OURS).await;
    let static_p50 = pct(&mut v, 0.5);
    let static_p99 = pct(&mut v, 0.99);

    // The settle alone on the still page (no HTTP, no click, no screenshot).
    let d = Desktop::connect(&format!(":{}", x.display)).expect("connect");
    let mut settles = Vec::new();
    for _ in 0..OURS {
        let t = Instant::now();
        let s = d
            .settle(zigral_desktop::SETTLE_QUIET, zigral_desktop::SETTLE_CAP)
            .await
            .expect("settle");
        assert!(!s.capped, "{s:?}");
        settles.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    let settle_p50 = pct(&mut settles, 0.5);

    // Reference loop's step, on the same page, clicking the same screen point.
    let display = format!(":{}", x.display);
    let at = ScaleInfo {
        source: Rect {
            x: 0,
            y: 0,
            width: 1280,
            height: 800,
        },
        image: Size::XGA,
    }
    .to_screen(Point {
        x: CLICK[0],
        y: CLICK[1],
    });
    let mut r = Vec::new();
    for _ in 0..REFERENCE {
        r.push(reference_step(&d, at, &display, dir.path()).await);
    }
    let ref_p50 = pct(&mut r, 0.5);
    let ref_p99 = pct(&mut r, 0.99);

    // (b) A page that animates for 300 ms after each click.
    nav("/anim").await;
    steps(&c, &url, &token, 3).await;
    let mut v = steps(&c, &url, &token, OURS).await;
    let anim_p50 = pct(&mut v, 0.5);
    let anim_p99 = pct(&mut v, 0.99);
    let anim_min = v.iter().copied().fold(f64::INFINITY, f64::min);

    // Did the step's screenshot show the final frame? Compare it with one taken 0.5 s later.
    let click = json!({"action": "left_click", "coordinate": CLICK});
    let look = json!({"action": "screenshot"});
    let mut same = 0;
    for _ in 0..CHECKS {
        let (_, after_click) = step(&c, &url, &token, &click).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        let (_, later) = step(&c, &url, &token, &look).await;
        if after_click == later {
            same += 1;
        }
    }

    // Control: click without settling (native batch, no screenshot), screenshot at once.
    let raw_click = json!({"action": "left_click", "x": at.x, "y": at.y});
    let mut same_unsettled = 0;
    for _ in 0..CHECKS {
        let r = c
            .post(&native)
            .bearer_auth(&token)
            .json(&raw_click)
            .send()
            .await
            .expect("click");
        assert!(r.status().is_success(), "{}", r.status());
        let (_, at_once) = step(&c, &url, &token, &look).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        let (_, later) = step(&c, &url, &token, &look).await;
        if at_once == later {
            same_unsettled += 1;
        }
    }

    println!("agent_step_iterations_per_page: {OURS}");
    println!("reference_step_iterations: {REFERENCE}");
    println!("agent_step_static_p50_ms: {static_p50:.1}");
    println!("agent_step_static_p99_ms: {static_p99:.1}");
    println!("agent_step_anim_p50_ms: {anim_p50:.1}");
    println!("agent_step_anim_p99_ms: {anim_p99:.1}");
    println!("agent_step_anim_min_ms: {anim_min:.1}");
    println!("settle_still_screen_p50_ms: {settle_p50:.1}");
    println!("reference_step_p50_ms: {ref_p50:.1}");
    println!("reference_step_p99_ms: {ref_p99:.1}");
    println!(
        "agent_step_static_ratio_vs_reference: {:.3}",
        static_p50 / ref_p50
    );
    println!(
        "agent_step_anim_ratio_vs_reference: {:.3}",
        anim_p50 / ref_p50
    );
    println!("goal_static_p50_ms: 150");
    println!("agent_step_anim_shows_final_frame: {same}/{CHECKS}");
    println!("unsettled_click_then_screenshot_shows_final_frame: {same_unsettled}/{CHECKS}");
    drop(chrome);
    tokio::time::sleep(Duration::from_millis(100)).await;
}
