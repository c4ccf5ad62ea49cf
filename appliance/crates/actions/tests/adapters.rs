//! The current tool generations against a real desktop (Xvfb + Chromium): Anthropic's `zoom`
//! (computer_20251124) returns exactly the region's pixels at the declared size, a
//! `computer_toolset_20260801` member `tool_use` clicks where the single tool clicks, an
//! OpenAI GA `computer_call` batch (click with held keys + type + keypress) fills an input,
//! and the Chat Completions functions drive the same desktop with declared-display scaling.

mod common;

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use zigral_actions::{Action, BatchRequest, Output, anthropic, functions, openai};
use zigral_desktop::{ImageFormat, RawImage, Rect};

/// Two colour blocks (CSS px) on a white page.
const ZOOM_PAGE: &str = r#"<!doctype html><html><head><title>Zoom</title>
<style>body{margin:0;background:#fff}
#red{position:absolute;left:100px;top:100px;width:300px;height:200px;background:#f00}
#blue{position:absolute;left:500px;top:100px;width:300px;height:200px;background:#00f}
</style></head><body><div id="red"></div><div id="blue"></div></body></html>"#;

/// The declared display of these tests: 1024x640 on the 1280x800 screen (factor 0.8).
fn d(v: i32) -> i64 {
    (f64::from(v) * 0.8).round() as i64
}

/// A `width`x`height` image of one colour, PNG-encoded the way screenshots are.
fn solid_png(width: u32, height: u32, (r, g, b): (u8, u8, u8)) -> Vec<u8> {
    let px = [b, g, r, 0];
    let img = RawImage {
        width,
        height,
        bgrx: px.repeat((width * height) as usize),
    };
    zigral_desktop::encode(&img, ImageFormat::Png).expect("encode")
}

fn b64(data: &str) -> Vec<u8> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD
        .decode(data)
        .expect("base64")
}

/// Waits until the screen rectangle `r` is one colour and returns it.
async fn settled_colour(e: &common::Env, r: Rect) -> (u8, u8, u8) {
    let start = Instant::now();
    loop {
        let img = e.desktop.capture(Some(r), false).await.expect("capture");
        let first = img.rgb_at(0, 0).expect("pixel");
        let uniform =
            (0..img.height).all(|y| (0..img.width).all(|x| img.rgb_at(x, y) == Some(first)));
        if uniform && first != (255, 255, 255) {
            return first;
        }
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "region {r:?} never became one colour"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn aopts() -> anthropic::Options {
    anthropic::Options {
        display_width_px: Some(1024),
        display_height_px: Some(640),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anthropic_zoom_returns_the_region_at_the_declared_size() {
    let e = common::env();
    e.pages
        .page("/zoom", zigral_browser::testkit::Response::html(ZOOM_PAGE));
    e.browser
        .navigate(&e.pages.url("/zoom"), &Default::default())
        .await
        .expect("open /zoom");
    for (id, want) in [("red", (255, 0, 0)), ("blue", (0, 0, 255))] {
        let (cx, cy) = e.center(id).await;
        // A 200x120 screen-pixel box inside the 300x200 block.
        let screen = Rect {
            x: cx - 100,
            y: cy - 60,
            width: 200,
            height: 120,
        };
        let colour = settled_colour(&e, screen).await;
        assert_eq!(colour, want, "{id} renders as {colour:?}");
        let region = [
            d(cx - 100) + 1,
            d(cy - 60) + 1,
            d(cx + 100) - 1,
            d(cy + 60) - 1,
        ];
        let input: anthropic::ComputerInput =
            serde_json::from_value(json!({"action": "zoom", "region": region})).expect("input");
        let (res, req, resp) = anthropic::run(&e.exec, &input, &aopts())
            .await
            .expect("zoom");
        assert!(!res.is_error, "{res:?}");
        assert!(req.screenshot.is_none(), "zoom returns only its image");
        assert_eq!(res.content.len(), 1, "only the image: {:?}", res.content);
        let img = &res.content[0];
        assert_eq!(img["type"], "image");
        assert_eq!(img["source"]["media_type"], "image/png");
        let data = img["source"]["data"].as_str().expect("data");
        assert_eq!(common::image_size(data), (1024, 640), "the declared size");
        // Every pixel is the block's colour: byte-identical to a solid image.
        assert!(
            b64(data) == solid_png(1024, 640, want),
            "the {id} close-up holds other pixels"
        );
        match &resp.results[0].output {
            Some(Output::Image(i)) => {
                let s = &i.scale;
                assert!(
                    (s.source_x - (cx - 100)).abs() <= 3 && (s.source_y - (cy - 60)).abs() <= 3,
                    "source {s:?} vs block centre {cx},{cy}"
                );
                assert_eq!((s.width, s.height), (1024, 640));
            }
            other => panic!("no image output: {other:?}"),
        }
    }
    // The same through the toolset member and the native action (screen pixels, fit).
    let body = anthropic::Body::from_value(json!({"type": "tool_use", "id": "toolu_z",
        "name": "zoom", "input": {"region": [0, 0, 512, 320]}, "toolset_name": "computer"}))
    .expect("member");
    let (res, _, _) = anthropic::run(&e.exec, &body.input, &aopts())
        .await
        .expect("member zoom");
    let data = res.content[0]["source"]["data"].as_str().expect("image");
    assert_eq!(common::image_size(data), (1024, 640));
    let r = e
        .exec
        .run(
            &BatchRequest::from_value(json!({"action": "zoom", "region": [0, 0, 640, 200]}))
                .expect("req"),
        )
        .await
        .expect("native zoom");
    match &r.results[0].output {
        Some(Output::Image(i)) => assert_eq!((i.width, i.height), (1280, 400), "aspect kept"),
        other => panic!("{other:?}"),
    }
    // Bad regions are refused before anything runs.
    for (region, status, code) in [
        (json!([0, 0, 1025, 10]), 422, "out_of_bounds"),
        (json!([-5, 0, 10, 10]), 422, "out_of_bounds"),
        (json!([10, 10, 10, 20]), 400, "bad_request"),
        (json!([10, 20, 30, 5]), 400, "bad_request"),
    ] {
        let input: anthropic::ComputerInput =
            serde_json::from_value(json!({"action": "zoom", "region": region})).expect("input");
        let err = anthropic::run(&e.exec, &input, &aopts())
            .await
            .expect_err("rejected");
        assert_eq!(
            (err.status(), err.code().as_str()),
            (status, code),
            "{region}: {err}"
        );
    }
    let err = e
        .exec
        .run(
            &BatchRequest::from_value(json!({"action": "zoom", "region": [0, 0, 1281, 5]}))
                .expect("req"),
        )
        .await
        .expect_err("native off screen");
    assert_eq!(err.code(), "out_of_bounds");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn toolset_member_clicks_where_the_single_tool_clicks_and_ga_batches_fill_an_input() {
    let e = common::env();
    e.open_ui().await;
    let (x1, y1) = e.center("b1").await;
    let single: anthropic::ComputerInput = serde_json::from_value(
        json!({"action": "left_click", "coordinate": [d(x1), d(y1)], "text": "shift"}),
    )
    .expect("single");
    let body = anthropic::Body::from_value(json!({"type": "tool_use", "id": "toolu_01",
        "name": "left_click", "input": {"coordinate": [d(x1), d(y1)], "text": "shift"},
        "toolset_name": "computer"}))
    .expect("toolset tool_use");
    assert_eq!(body.input, single);
    assert_eq!(body.tool_use_id.as_deref(), Some("toolu_01"));
    let member = anthropic::member_input(
        "left_click",
        json!({"coordinate": [d(x1), d(y1)],
        "text": "shift"}),
    )
    .expect("member_input");
    assert_eq!(member, single);
    for input in [&single, &body.input] {
        let (res, _, _) = anthropic::run(&e.exec, input, &aopts())
            .await
            .expect("click");
        assert!(!res.is_error, "{res:?}");
        assert_eq!(res.content.last().expect("image")["type"], "image");
    }
    let clicks = e.wait_events("click", "b1", 2).await;
    assert_eq!(clicks.len(), 2, "{:?}", e.log().await);
    assert_eq!(
        (&clicks[0]["x"], &clicks[0]["y"], &clicks[0]["shift"]),
        (&clicks[1]["x"], &clicks[1]["y"], &clicks[1]["shift"]),
        "both shapes click the same point with shift held"
    );
    assert_eq!(clicks[0]["shift"], true);

    // An OpenAI GA computer_call: batched actions, keys held on a click, `action: null`.
    let (x2, y2) = e.center("b2").await;
    let (tx, ty) = e.center("t").await;
    let oopts = openai::Options {
        display_width: Some(1024),
        display_height: Some(640),
        ..Default::default()
    };
    let call = openai::Call::from_value(json!({
    "type": "computer_call", "id": "cu_1", "call_id": "call_ga", "status": "completed",
    "pending_safety_checks": [], "action": null,
    "actions": [
        {"type": "click", "button": "left", "x": d(x2), "y": d(y2), "keys": ["CTRL"]},
        {"type": "click", "button": "left", "x": d(tx), "y": d(ty)},
        {"type": "type", "text": "GA batch ✓x"},
        {"type": "keypress", "keys": ["BACKSPACE"]},
        {"type": "screenshot"},
    ]}))
    .expect("GA item");
    let (out, req, resp) = openai::run(&e.exec, &call, &oopts).await.expect("GA batch");
    assert!(resp.ok, "{resp:?}");
    assert_eq!(req.actions.len(), 4, "screenshot is the reply's own");
    assert_eq!(out.call_id.as_deref(), Some("call_ga"));
    let url = out.output["image_url"].as_str().expect("image_url");
    let shot = url
        .strip_prefix("data:image/png;base64,")
        .expect("data url");
    assert_eq!(common::image_size(shot), (1024, 640));
    assert_eq!(
        e.wait_eval("document.getElementById('t').value", json!("GA batch ✓"))
            .await,
        json!("GA batch ✓")
    );
    let b2 = e.wait_events("click", "b2", 1).await;
    assert_eq!(b2[0]["ctrl"], true, "keys held during the click: {b2:?}");

    // The Chat Completions functions: same desktop, same scaling.
    let fopts = functions::Options {
        display_width: Some(1024),
        display_height: Some(640),
        ..Default::default()
    };
    let args = json!(format!("{{\"x\": {}, \"y\": {}}}", d(x1), d(y1)));
    let (fr, _, _) = functions::run(&e.exec, "left_click", &args, &fopts)
        .await
        .expect("function click");
    assert!(!fr.is_error, "{fr:?}");
    let img = fr.image.as_ref().expect("screenshot after the click");
    assert_eq!((img.width, img.height), (1024, 640));
    assert!(
        fr.image_url()
            .expect("url")
            .starts_with("data:image/png;base64,")
    );
    assert_eq!(e.wait_events("click", "b1", 3).await.len(), 3);
    functions::run(&e.exec, "mouse_move", &json!({"x": 512, "y": 320}), &fopts)
        .await
        .expect("move");
    let (fr, _, _) = functions::run(&e.exec, "cursor_position", &Value::Null, &fopts)
        .await
        .expect("position");
    let v: Value = serde_json::from_str(&fr.content).expect("json content");
    assert_eq!(
        v["output"],
        json!({"type": "position", "x": 512, "y": 320}),
        "{v}"
    );
    assert!(fr.image.is_none());
    let err = functions::run(&e.exec, "left_click", &json!({"x": 1024, "y": 0}), &fopts)
        .await
        .expect_err("outside the declared display");
    assert_eq!(err.code(), "out_of_bounds");
    // Nothing of the refused call ran.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(e.events("click", "b1").await.len(), 3);
    let acts = functions::to_actions("zoom", &json!({"region": [0, 0, 1024, 640]}), &{
        anthropic::Scaling::new(
            Some(1024),
            Some(640),
            zigral_desktop::Size {
                width: 1280,
                height: 800,
            },
        )
        .expect("scaling")
    })
    .expect("zoom");
    assert!(matches!(
        acts[0],
        Action::Zoom {
            region: [0, 0, 1280, 800],
            ..
        }
    ));
}
