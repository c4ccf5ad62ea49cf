//! The executor against a real desktop: Xvfb + Chromium showing a page served from 127.0.0.1.
//! Clicks land on the right elements, Unicode text arrives, scrolling and key combos work,
//! drags draw on a canvas — checked by reading the page's state over CDP. The same through
//! the Anthropic and OpenAI adapters with scaling; batches stop at the first failure; bad
//! input is refused before anything runs; Chrome restarts are survived.

mod common;

use serde_json::{Value, json};
use zigral_actions::{BatchRequest, Output, anthropic, openai};

fn batch(v: Value) -> BatchRequest {
    BatchRequest::from_value(v).expect("valid request")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn native_clicks_typing_scroll_keys_and_drag() {
    let e = common::env();
    e.open_ui().await;
    let (x1, y1) = e.center("b1").await;
    let (x2, y2) = e.center("b2").await;

    // Click variants land on the element under the coordinates.
    let r = e
        .exec
        .run(&batch(json!({"actions": [
            {"action": "left_click", "x": x1, "y": y1},
            {"action": "double_click", "x": x2, "y": y2},
            {"action": "right_click", "x": x2, "y": y2},
            {"action": "click", "x": x1, "y": y1, "button": "middle"},
            {"action": "left_click", "x": x1, "y": y1, "modifiers": "shift"},
        ]})))
        .await
        .expect("run");
    assert!(r.ok, "{r:?}");
    assert_eq!(r.results.len(), 5);
    assert!(r.results.iter().all(|a| a.ok && a.duration_ms >= 0.0));
    let clicks = e.wait_events("click", "b1", 2).await;
    assert_eq!(clicks.len(), 2, "{:?}", e.log().await);
    assert_eq!(clicks[0]["shift"], false);
    assert_eq!(clicks[1]["shift"], true, "modifier held during the click");
    assert_eq!(
        e.wait_events("dblclick", "b2", 1).await.len(),
        1,
        "{:?}",
        e.log().await
    );
    let ctx = e.wait_events("contextmenu", "b2", 1).await;
    assert_eq!(ctx.len(), 1);
    let aux = e.wait_events("auxclick", "b1", 1).await;
    assert_eq!(aux[0]["button"], 1, "middle button");
    assert!(
        e.events("click", "b2").await.len() == 2,
        "double click = 2 clicks on b2"
    );

    // Typing Unicode into the input, then select-all + delete.
    let (tx, ty) = e.center("t").await;
    let text = "héllo wörld ✓ 日本語 €";
    let r = e
        .exec
        .run(&batch(json!({"actions": [
            {"action": "left_click", "x": tx, "y": ty},
            {"action": "type", "text": text},
        ]})))
        .await
        .expect("type");
    assert!(r.ok, "{r:?}");
    let v = e
        .wait_eval("document.getElementById('t').value", json!(text))
        .await;
    assert_eq!(v, json!(text));
    let r = e
        .exec
        .run(&batch(json!({"actions": [
            {"action": "key", "keys": "ctrl+a"},
            {"action": "key", "keys": "Delete"},
        ]})))
        .await
        .expect("keys");
    assert!(r.ok, "{r:?}");
    assert_eq!(
        e.wait_eval("document.getElementById('t').value", json!(""))
            .await,
        json!("")
    );
    // A key sequence in one action.
    e.exec
        .run(&batch(json!({"action": "type", "text": "abc"})))
        .await
        .expect("type");
    e.exec
        .run(&batch(
            json!({"action": "key", "keys": "BackSpace BackSpace"}),
        ))
        .await
        .expect("keys");
    assert_eq!(
        e.wait_eval("document.getElementById('t').value", json!("a"))
            .await,
        json!("a")
    );

    // Scrolling moves the page (both axes).
    let r = e
        .exec
        .run(&batch(json!({"actions": [
            {"action": "scroll", "x": 640, "y": 500, "direction": "down", "amount": 5},
            {"action": "scroll", "x": 640, "y": 500, "direction": "right", "amount": 3},
        ]})))
        .await
        .expect("scroll");
    assert!(r.ok, "{r:?}");
    let start = std::time::Instant::now();
    loop {
        let s = e
            .browser
            .evaluate("[window.scrollX, window.scrollY]")
            .await
            .expect("scroll pos");
        if s[0].as_f64().unwrap_or(0.0) > 0.0 && s[1].as_f64().unwrap_or(0.0) > 200.0 {
            break;
        }
        assert!(start.elapsed().as_secs() < 10, "page did not scroll: {s}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    e.reset_scroll().await;

    // Drag on the canvas: press at one point, move through another, release at a third.
    let (cx, cy) = e.center("c").await;
    let r = e
        .exec
        .run(&batch(json!({"action": "drag", "path": [
            {"x": cx - 100, "y": cy - 50}, {"x": cx, "y": cy}, {"x": cx + 100, "y": cy + 50}]})))
        .await
        .expect("drag");
    assert!(r.ok, "{r:?}");
    let down = e.wait_events("mousedown", "c", 1).await;
    let up = e.wait_events("mouseup", "c", 1).await;
    // The canvas is 300x200 with a 1px border: its centre is (151, 101) in offset coordinates.
    assert!(
        (down[0]["x"].as_i64().expect("x") - 51).abs() <= 2,
        "{down:?}"
    );
    assert!(
        (down[0]["y"].as_i64().expect("y") - 51).abs() <= 2,
        "{down:?}"
    );
    assert!((up[0]["x"].as_i64().expect("x") - 251).abs() <= 2, "{up:?}");
    assert!(
        !e.events("mousemove", "c").await.is_empty(),
        "moves while pressed"
    );

    // Pointer position, clipboard round trip, screenshot with scale.
    let r = e
        .exec
        .run(&batch(json!({"actions": [
            {"action": "mouse_move", "x": 123, "y": 456},
            {"action": "cursor_position"},
            {"action": "clipboard_set", "text": "clip ✓"},
            {"action": "clipboard_get"},
            {"action": "screenshot", "format": "jpeg", "scale": "xga"},
        ]})))
        .await
        .expect("misc");
    assert!(r.ok, "{r:?}");
    assert_eq!(
        r.results[1].output,
        Some(Output::Position { x: 123, y: 456 })
    );
    assert_eq!(
        r.results[3].output,
        Some(Output::Text {
            text: "clip ✓".into()
        })
    );
    match &r.results[4].output {
        Some(Output::Image(img)) => {
            assert_eq!(img.mime, "image/jpeg");
            assert_eq!((img.width, img.height), (1024, 768));
            assert_eq!(common::image_size(&img.data), (1024, 768));
            assert_eq!(
                (img.scale.source_width, img.scale.source_height),
                (1280, 800)
            );
        }
        other => panic!("no image: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a11y_snapshot_centres_are_clickable_through_xtest() {
    let e = common::env();
    e.open_ui().await;
    let r = e
        .exec
        .run(&batch(json!({"action": "a11y_snapshot"})))
        .await
        .expect("snapshot");
    let Some(Output::A11y { snapshot }) = &r.results[0].output else {
        panic!("no snapshot: {r:?}")
    };
    let two = snapshot
        .nodes
        .iter()
        .find(|n| n.role == "button" && n.name == "Two")
        .expect("button Two");
    let input = snapshot
        .nodes
        .iter()
        .find(|n| n.role == "textbox" && n.name == "Name")
        .expect("labelled input");
    let (x, y) = two.center;
    let (ix, iy) = input.center;
    let r = e
        .exec
        .run(&batch(json!({"actions": [
            {"action": "left_click", "x": x, "y": y},
            {"action": "left_click", "x": ix, "y": iy},
            {"action": "type", "text": "via a11y"},
        ]})))
        .await
        .expect("click");
    assert!(r.ok, "{r:?}");
    assert_eq!(e.wait_events("click", "b2", 1).await.len(), 1);
    assert_eq!(
        e.wait_eval("document.getElementById('t').value", json!("via a11y"))
            .await,
        json!("via a11y")
    );
    // Browser actions through the same schema.
    let r = e
        .exec
        .run(&batch(json!({"actions": [
            {"action": "navigate", "url": e.pages.url("/two")},
            {"action": "page_text"},
            {"action": "back"},
            {"action": "tab_list"},
        ]})))
        .await
        .expect("browser");
    assert!(r.ok, "{r:?}");
    match &r.results[1].output {
        Some(Output::PageText { page }) => assert_eq!(page.text.trim(), "second"),
        other => panic!("{other:?}"),
    }
    match &r.results[2].output {
        Some(Output::Tab { tab }) => assert_eq!(tab.title, "UI"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_stops_at_the_first_failure_and_bad_input_runs_nothing() {
    let e = common::env();
    e.open_ui().await;
    let (x1, y1) = e.center("b1").await;
    let (x2, y2) = e.center("b2").await;

    // Fails at run time in the middle (no such tab): the rest does not run.
    let r = e
        .exec
        .run(&batch(json!({"actions": [
            {"action": "left_click", "x": x1, "y": y1},
            {"action": "tab_switch", "id": "no-such-tab"},
            {"action": "left_click", "x": x2, "y": y2},
        ], "screenshot": {"format": "png", "scale": 0.5}})))
        .await
        .expect("ran");
    assert!(!r.ok);
    assert_eq!(r.failed_index, Some(1));
    assert_eq!(r.results.len(), 2);
    assert!(r.results[0].ok);
    let err = r.results[1].error.as_ref().expect("error");
    assert_eq!(err.error, "not_found");
    assert!(err.message.contains("no-such-tab"), "{err:?}");
    let shot = r.screenshot.as_ref().expect("screenshot after the stop");
    assert_eq!((shot.width, shot.height), (640, 400));
    assert_eq!(e.wait_events("click", "b1", 1).await.len(), 1);
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(
        e.events("click", "b2").await.is_empty(),
        "action 2 must not run"
    );

    // Invalid input: rejected with 4xx before anything runs (the first, valid click included).
    let cases = [
        (
            json!({"action": "teleport", "x": 1}),
            400,
            "unknown_action",
            "teleport",
        ),
        (
            json!({"action": "left_click", "x": 5000, "y": 10}),
            422,
            "out_of_bounds",
            "outside the 1280x800 screen",
        ),
        (
            json!({"action": "key", "keys": "ctrl+nosuchkey"}),
            422,
            "bad_key",
            "nosuchkey",
        ),
        (
            json!({"action": "navigate", "url": "file:///etc/passwd"}),
            422,
            "url_not_allowed",
            "scheme \"file\"",
        ),
        (
            json!({"action": "navigate", "url": "javascript:alert(1)"}),
            422,
            "url_not_allowed",
            "javascript",
        ),
        (
            json!({"action": "left_click", "x": 10}),
            400,
            "invalid_action",
            "both x and y",
        ),
        (
            json!({"action": "left_click", "x": 1, "y": 1, "bogus": true}),
            400,
            "invalid_action",
            "bogus",
        ),
        (
            json!({"action": "wait", "duration_ms": 600000}),
            422,
            "invalid_argument",
            "exceeds",
        ),
    ];
    for (bad, status, code, needle) in cases {
        let body = json!({"actions": [{"action": "left_click", "x": x2, "y": y2}, bad]});
        let err = match BatchRequest::from_value(body) {
            Err(e) => e,
            Ok(req) => e.exec.run(&req).await.expect_err("must be rejected"),
        };
        assert_eq!(err.status(), status, "{err}");
        assert_eq!(err.code(), code, "{err}");
        assert_eq!(err.index(), Some(1), "{err}");
        assert!(err.to_string().contains(needle), "{err} lacks {needle}");
    }
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(
        e.events("click", "b2").await.is_empty(),
        "nothing ran for rejected batches"
    );
    assert_eq!(
        e.browser.current().await.expect("cur").title,
        "UI",
        "no navigation happened"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anthropic_and_openai_adapters_with_scaling() {
    let e = common::env();
    e.open_ui().await;
    let (x1, y1) = e.center("b1").await;
    let (tx, ty) = e.center("t").await;
    // The model was told the display is 1024x640 (0.8 of 1280x800).
    let d = |v: i32| ((f64::from(v) * 0.8).round()) as i64;
    let aopts = anthropic::Options {
        display_width_px: Some(1024),
        display_height_px: Some(640),
        ..Default::default()
    };
    let run_a = |v: Value| {
        let input: anthropic::ComputerInput = serde_json::from_value(v).expect("input");
        let exec = e.exec.clone();
        let opts = aopts.clone();
        async move { anthropic::run(&exec, &input, &opts).await }
    };
    let (res, _, _) = run_a(json!({"action": "left_click", "coordinate": [d(x1), d(y1)]}))
        .await
        .expect("click");
    assert!(!res.is_error, "{res:?}");
    let img = res
        .content
        .iter()
        .find(|c| c["type"] == "image")
        .expect("screenshot after the click");
    assert_eq!(img["source"]["media_type"], "image/png");
    assert_eq!(
        common::image_size(img["source"]["data"].as_str().expect("data")),
        (1024, 640)
    );
    assert_eq!(e.wait_events("click", "b1", 1).await.len(), 1);
    run_a(json!({"action": "left_click", "coordinate": [d(tx), d(ty)]}))
        .await
        .expect("focus input");
    run_a(json!({"action": "type", "text": "Ånthropic ✓"}))
        .await
        .expect("type");
    assert_eq!(
        e.wait_eval("document.getElementById('t').value", json!("Ånthropic ✓"))
            .await,
        json!("Ånthropic ✓")
    );
    run_a(json!({"action": "key", "text": "ctrl+a"}))
        .await
        .expect("key");
    run_a(json!({"action": "key", "text": "Delete"}))
        .await
        .expect("key");
    assert_eq!(
        e.wait_eval("document.getElementById('t').value", json!(""))
            .await,
        json!("")
    );
    run_a(json!({"action": "mouse_move", "coordinate": [512, 320]}))
        .await
        .expect("move");
    let (res, _, _) = run_a(json!({"action": "cursor_position"}))
        .await
        .expect("pos");
    assert_eq!(res.content[0]["text"], "X=512,Y=320", "{res:?}");
    assert_eq!(
        e.desktop.cursor_position().await.expect("pos"),
        zigral_desktop::Point { x: 640, y: 400 },
        "declared 512,320 is screen 640,400"
    );
    run_a(
        json!({"action": "scroll", "coordinate": [500, 400], "scroll_direction": "down",
                 "scroll_amount": 5}),
    )
    .await
    .expect("scroll");
    let sy = e.wait_eval("window.scrollY > 0", json!(true)).await;
    assert_eq!(sy, json!(true));
    e.reset_scroll().await;
    let err = run_a(json!({"action": "left_click", "coordinate": [1100, 10]}))
        .await
        .expect_err("outside declared display");
    assert_eq!(err.status(), 422);
    let err = run_a(json!({"action": "key", "text": "ctrl+nosuch"}))
        .await
        .expect_err("bad key");
    assert_eq!(err.code(), "bad_key");

    // OpenAI computer-use actions, declared 1024x640 as well.
    let oopts = openai::Options {
        display_width: Some(1024),
        display_height: Some(640),
        ..Default::default()
    };
    let run_o = |v: Value| {
        let call = openai::Call::from_value(v).expect("call");
        let exec = e.exec.clone();
        let opts = oopts.clone();
        async move { openai::run(&exec, &call, &opts).await }
    };
    let (x2, y2) = e.center("b2").await;
    let (out, _, _) = run_o(json!({"type": "computer_call", "call_id": "call_1",
        "action": {"type": "double_click", "x": d(x2), "y": d(y2)}}))
    .await
    .expect("dbl");
    assert_eq!(out.call_id.as_deref(), Some("call_1"));
    assert_eq!(out.kind, "computer_call_output");
    let url = out.output["image_url"].as_str().expect("image_url");
    let b64 = url
        .strip_prefix("data:image/png;base64,")
        .expect("data url");
    assert_eq!(common::image_size(b64), (1024, 640));
    assert_eq!(
        e.wait_events("dblclick", "b2", 1).await.len(),
        1,
        "{:?} {:?}",
        (x2, y2),
        e.log().await.iter().rev().take(4).collect::<Vec<_>>()
    );
    run_o(json!({"type": "click", "button": "left", "x": d(tx), "y": d(ty)}))
        .await
        .expect("click input");
    run_o(json!({"type": "type", "text": "OpenAI ✓ 中文"}))
        .await
        .expect("type");
    assert_eq!(
        e.wait_eval("document.getElementById('t').value", json!("OpenAI ✓ 中文"))
            .await,
        json!("OpenAI ✓ 中文")
    );
    run_o(
        json!({"actions": [{"type": "keypress", "keys": ["CTRL", "A"]},
                             {"type": "keypress", "keys": ["BACKSPACE"]}]}),
    )
    .await
    .expect("keys");
    assert_eq!(
        e.wait_eval("document.getElementById('t').value", json!(""))
            .await,
        json!("")
    );
    run_o(json!({"type": "click", "button": "right", "x": d(x1), "y": d(y1)}))
        .await
        .expect("right");
    assert_eq!(e.wait_events("contextmenu", "b1", 1).await.len(), 1);
    run_o(json!({"type": "scroll", "x": 500, "y": 400, "scroll_x": 0, "scroll_y": 400}))
        .await
        .expect("scroll");
    assert_eq!(
        e.wait_eval("window.scrollY > 0", json!(true)).await,
        json!(true)
    );
    e.reset_scroll().await;
    let (cx, cy) = e.center("c").await;
    e.browser
        .evaluate("window.log = []; true")
        .await
        .expect("clear");
    run_o(json!({"type": "drag", "path": [{"x": d(cx - 50), "y": d(cy)}, {"x": d(cx + 50), "y": d(cy)}]}))
        .await
        .expect("drag");
    assert_eq!(e.wait_events("mouseup", "c", 1).await.len(), 1);
    let err = openai::Call::from_value(json!({"type": "fly"})).expect_err("unknown");
    assert_eq!(err.status(), 400);
    let err = run_o(json!({"type": "keypress", "keys": ["CTRL", "NOPE"]}))
        .await
        .expect_err("bad key");
    assert_eq!(err.code(), "bad_key");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn next_action_reconnects_after_chrome_restart() {
    let mut e = common::env();
    e.open_ui().await;
    // The test acts as the supervisor: kill Chromium, then start it again.
    e.chrome.kill();
    let r = e
        .exec
        .run(&batch(json!({"action": "tab_list"})))
        .await
        .expect("validated");
    assert!(!r.ok);
    assert_eq!(
        r.results[0].error.as_ref().expect("err").error,
        "browser_unavailable"
    );
    let chrome = &mut e.chrome;
    tokio::task::block_in_place(|| chrome.restart());
    let r = e
        .exec
        .run(&batch(
            json!({"action": "navigate", "url": e.pages.url("/two")}),
        ))
        .await
        .expect("ran");
    assert!(r.ok, "{r:?}");
    match &r.results[0].output {
        Some(Output::Tab { tab }) => assert_eq!(tab.title, "Two"),
        other => panic!("{other:?}"),
    }
}
