//! The provider adapters' current tool generations through the real HTTP API of a port-0
//! control plane on a real Xvfb + Chromium: Anthropic `zoom` and `computer_toolset_20260801`
//! `tool_use` bodies, OpenAI GA `computer_call` batches; and the OpenAPI document describes
//! every adapter body in full (no bare `object`), as client generators and the schemathesis
//! fuzzer need.

mod common;

use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{Value, json};
use zigral_browser::Browser;
use zigral_browser::testkit::{Chrome, PageServer, Response};
use zigral_tests::Xvfb;

const UI_PAGE: &str = r#"<!doctype html><html><head><title>UI</title>
<style>body{margin:0;font:16px sans-serif;background:#fff}
#b1{position:absolute;left:50px;top:50px;width:150px;height:50px}
#t{position:absolute;left:50px;top:150px;width:400px;height:30px}
#red{position:absolute;left:500px;top:50px;width:300px;height:200px;background:#f00}
</style></head><body><button id="b1">One</button><input id="t" aria-label="Name">
<div id="red"></div>
<script>
window.log = [];
document.addEventListener('click', e => window.log.push({type: e.type, id: e.target.id,
  x: e.offsetX, y: e.offsetY, shift: e.shiftKey}), true);
</script></body></html>"#;

/// Resolves a `$ref` of the OpenAPI document.
fn resolve<'a>(doc: &'a Value, v: &'a Value) -> &'a Value {
    match v.get("$ref").and_then(Value::as_str) {
        Some(r) => {
            let name = r.rsplit('/').next().unwrap_or_default();
            let s = &doc["components"]["schemas"][name];
            assert!(s.is_object(), "dangling {r}");
            resolve(doc, s)
        }
        None => v,
    }
}

/// Every `type` value of the variants of a (resolved) oneOf of actions.
fn variant_consts(doc: &Value, schema: &Value, tag: &str) -> Vec<String> {
    let s = resolve(doc, schema);
    s["oneOf"]
        .as_array()
        .unwrap_or_else(|| panic!("no oneOf in {s}"))
        .iter()
        .flat_map(|v| {
            let v = resolve(doc, v);
            let t = &v["properties"][tag];
            t["enum"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .chain(t.get("const").cloned())
                .filter_map(|x| x.as_str().map(str::to_owned))
                .collect::<Vec<_>>()
        })
        .collect()
}

/// The resolved request-body schema of `POST <path suffix>`.
fn body_schema<'a>(doc: &'a Value, suffix: &str) -> &'a Value {
    let (_, item) = doc["paths"]
        .as_object()
        .expect("paths")
        .iter()
        .find(|(p, _)| p.ends_with(suffix))
        .unwrap_or_else(|| panic!("no path ending in {suffix}"));
    let schema = &item["post"]["requestBody"]["content"]["application/json"]["schema"];
    assert!(schema.is_object(), "{suffix}: no JSON body schema");
    resolve(doc, schema)
}

#[test]
fn openapi_describes_every_adapter_body() {
    let doc = serde_json::to_value(zigral_control::openapi()).expect("doc");
    for suffix in [
        "/sessions/{id}/actions",
        "/sessions/{id}/actions/anthropic",
        "/sessions/{id}/actions/openai",
    ] {
        let s = body_schema(&doc, suffix);
        let variants = s["oneOf"]
            .as_array()
            .unwrap_or_else(|| panic!("{suffix}: the body is not a oneOf of shapes but {s}"));
        assert!(variants.len() >= 2, "{suffix}: {s}");
        for v in variants {
            let v = resolve(&doc, v);
            assert!(
                v.get("properties").is_some() || v.get("oneOf").is_some(),
                "{suffix}: a bare object in the body: {v}"
            );
        }
    }
    // OpenAI: one action | computer_call item (action + GA actions) | {actions}; every action
    // type with its fields, keys included.
    let oa = body_schema(&doc, "/actions/openai");
    let shapes: Vec<&Value> = oa["oneOf"]
        .as_array()
        .expect("oneOf")
        .iter()
        .map(|v| resolve(&doc, v))
        .collect();
    let mut types = variant_consts(&doc, &oa["oneOf"][0], "type");
    types.sort();
    assert_eq!(
        types,
        [
            "click",
            "double_click",
            "drag",
            "keypress",
            "move",
            "screenshot",
            "scroll",
            "type",
            "wait"
        ],
        "{}",
        oa["oneOf"][0]
    );
    let item = shapes
        .iter()
        .find(|s| s["properties"]["type"].is_object() && s["properties"]["call_id"].is_object())
        .expect("computer_call item shape");
    assert!(item["properties"]["action"].is_object(), "{item}");
    assert!(item["properties"]["actions"].is_object(), "{item}");
    assert!(
        shapes
            .iter()
            .any(|s| s["required"] == json!(["actions"]) && s["properties"].get("type").is_none()),
        "{{actions}} shape"
    );
    let oa_action = resolve(&doc, &oa["oneOf"][0]);
    let click = oa_action["oneOf"]
        .as_array()
        .expect("actions")
        .iter()
        .map(|v| resolve(&doc, v))
        .find(|v| v["properties"]["type"]["enum"] == json!(["click"]))
        .expect("click");
    for f in ["button", "x", "y", "keys"] {
        assert!(click["properties"][f].is_object(), "click.{f}: {click}");
    }
    let buttons = &resolve(&doc, &click["properties"]["button"])["enum"];
    assert!(
        buttons.as_array().expect("enum").contains(&json!("back")),
        "{buttons}"
    );
    // Anthropic: a computer input (with zoom's region) | a tool_use block naming the member.
    let an = body_schema(&doc, "/actions/anthropic");
    let shapes: Vec<&Value> = an["oneOf"]
        .as_array()
        .expect("oneOf")
        .iter()
        .map(|v| resolve(&doc, v))
        .collect();
    let input = shapes
        .iter()
        .find(|s| s["properties"]["action"].is_object())
        .expect("ComputerInput");
    assert!(input["properties"]["region"].is_object(), "{input}");
    let block = shapes
        .iter()
        .find(|s| s["properties"]["name"].is_object())
        .expect("tool_use block");
    let names = &resolve(&doc, &block["properties"]["name"])["enum"];
    for n in [
        "computer",
        "left_click",
        "zoom",
        "left_click_drag",
        "cursor_position",
    ] {
        assert!(
            names.as_array().expect("names").contains(&json!(n)),
            "{n} in {names}"
        );
    }
    assert!(block["properties"]["toolset_name"].is_object(), "{block}");
    // The native body documents zoom too.
    let native = serde_json::to_string(&doc["components"]["schemas"]["Action"]).expect("Action");
    assert!(native.contains("\"zoom\""), "{native}");
}

struct Env {
    _x: Xvfb,
    _chrome: Chrome,
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
    let (s, v) = srv
        .call(
            Method::POST,
            "/api/v1/sessions",
            Some(&token),
            Some(json!({"title": "adapters"})),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    let sid = v["id"].as_str().expect("id").to_owned();
    Env {
        _x: x,
        _chrome: chrome,
        _dir: dir,
        pages,
        srv,
        token,
        sid,
    }
}

impl Env {
    async fn act(&self, suffix: &str, body: Value) -> (u16, Value) {
        self.srv
            .call(
                Method::POST,
                &format!("/api/v1/sessions/{}/actions{suffix}", self.sid),
                Some(&self.token),
                Some(body),
            )
            .await
    }

    async fn browser(&self) -> Browser {
        self.srv.browser().await
    }

    async fn eval(&self, expr: &str) -> Value {
        self.browser().await.evaluate(expr).await.expect("eval")
    }

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

    async fn clicks(&self) -> Vec<Value> {
        match self.eval("window.log.filter(e => e.id === 'b1')").await {
            Value::Array(a) => a,
            other => panic!("{other}"),
        }
    }

    async fn center(&self, id: &str) -> (i32, i32) {
        common::screen_center(&self.browser().await, id).await
    }
}

fn jpeg_pixels(b64: &str) -> (u16, u16, Vec<u8>) {
    use base64::Engine;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .expect("base64");
    let mut dec = jpeg_decoder::Decoder::new(std::io::Cursor::new(bytes));
    let px = dec.decode().expect("jpeg");
    let info = dec.info().expect("info");
    assert_eq!(info.pixel_format, jpeg_decoder::PixelFormat::RGB24);
    (info.width, info.height, px)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn toolset_tool_use_zoom_and_ga_batches_over_http() {
    let e = env().await;
    let (s, v) = e
        .act("", json!({"action": "navigate", "url": e.pages.url("/ui")}))
        .await;
    assert_eq!(s, 200, "{v}");
    e.eval("window.focus(); true").await;
    let d = |v: i32| (f64::from(v) * 0.8).round() as i64;
    let q = "/anthropic?display_width_px=1024&display_height_px=640";

    // A toolset member's tool_use block clicks where the single tool clicks.
    let (x1, y1) = e.center("b1").await;
    let (s, v) = e
        .act(
            q,
            json!({"action": "left_click", "coordinate": [d(x1), d(y1)], "text": "shift"}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert!(v.get("tool_use_id").is_none(), "{v}");
    let (s, v) = e
        .act(
            q,
            json!({"type": "tool_use", "id": "toolu_42", "name": "left_click",
                   "input": {"coordinate": [d(x1), d(y1)], "text": "shift"},
                   "toolset_name": "computer"}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["tool_use_id"], "toolu_42");
    assert_eq!(v["toolset_name"], "computer");
    assert_eq!(v["is_error"], false);
    assert_eq!(
        v["content"]
            .as_array()
            .expect("content")
            .last()
            .expect("img")["type"],
        "image"
    );
    let start = Instant::now();
    let clicks = loop {
        let c = e.clicks().await;
        if c.len() >= 2 || start.elapsed() > Duration::from_secs(15) {
            break c;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(clicks.len(), 2, "{clicks:?}");
    assert_eq!(clicks[0], clicks[1], "same point, shift held both times");
    assert_eq!(clicks[0]["shift"], true);
    // A single-tool tool_use block works too; bad blocks run nothing.
    let (s, v) = e
        .act(
            &format!("{q}&screenshot=false"),
            json!({"name": "computer", "input": {"action": "cursor_position"}}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["content"][0]["text"], format!("X={},Y={}", d(x1), d(y1)));
    for bad in [
        json!({"name": "teleport", "input": {}}),
        json!({"name": "left_click", "input": {"action": "left_click", "coordinate": [1, 1]}}),
        json!({"name": "left_click", "input": {"coordinate": [1, 1]}, "bogus": 1}),
        json!({"name": "left_click", "input": {"coordinate": [1, 1]}, "toolset_name": "browser"}),
    ] {
        let (s, v) = e.act(q, bad.clone()).await;
        assert_eq!(
            (s, v["error"].as_str()),
            (400, Some("bad_request")),
            "{bad} -> {v}"
        );
    }
    let (s, v) = e
        .act(
            q,
            json!({"name": "left_click", "input": {"coordinate": [1100, 1]}}),
        )
        .await;
    assert_eq!(
        (s, v["error"].as_str()),
        (422, Some("out_of_bounds")),
        "{v}"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(e.clicks().await.len(), 2, "nothing ran for refused calls");

    // zoom: only the close-up, at the declared size, holding the region's pixels.
    let (rx, ry) = e.center("red").await;
    let region = [d(rx - 100), d(ry - 60), d(rx + 100), d(ry + 60)];
    let (s, v) = e
        .act(
            &format!("{q}&format=jpeg"),
            json!({"type": "tool_use", "id": "toolu_z", "name": "zoom",
                   "input": {"region": region}, "toolset_name": "computer"}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let content = v["content"].as_array().expect("content");
    assert_eq!(content.len(), 1, "only the image: {v}");
    assert_eq!(content[0]["source"]["media_type"], "image/jpeg");
    let (w, h, px) = jpeg_pixels(content[0]["source"]["data"].as_str().expect("data"));
    assert_eq!((w, h), (1024, 640));
    let off = px
        .chunks(3)
        .filter(|p| p[0] < 200 || p[1] > 60 || p[2] > 60)
        .count();
    assert_eq!(off, 0, "{off} pixels of the close-up are not red");
    for (region, status, code) in [
        (json!([0, 0, 1025, 10]), 422, "out_of_bounds"),
        (json!([50, 10, 20, 30]), 400, "bad_request"),
    ] {
        let (s, v) = e.act(q, json!({"action": "zoom", "region": region})).await;
        assert_eq!(
            (s, v["error"].as_str()),
            (status, Some(code)),
            "{region} -> {v}"
        );
    }

    // OpenAI GA: one computer_call with batched click + type + keypress fills the input.
    let (tx, ty) = e.center("t").await;
    let (s, v) = e
        .act(
            "/openai?display_width=640&display_height=400",
            json!({"type": "computer_call", "id": "cu_1", "call_id": "call_ga",
                   "status": "completed", "pending_safety_checks": [], "action": null,
                   "actions": [
                       {"type": "click", "button": "left", "x": tx / 2, "y": ty / 2},
                       {"type": "type", "text": "batched ✓!"},
                       {"type": "keypress", "keys": ["BACKSPACE"]},
                       {"type": "screenshot"}]}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["type"], "computer_call_output");
    assert_eq!(v["call_id"], "call_ga");
    assert!(v.get("error").is_none(), "{v}");
    let val = "document.getElementById('t').value";
    assert_eq!(
        e.wait_eval(val, json!("batched ✓")).await,
        json!("batched ✓")
    );
    // An invalid action anywhere in the batch: 4xx, nothing of it ran.
    let (s, v) = e
        .act(
            "/openai",
            json!({"type": "computer_call", "call_id": "c", "actions": [
                {"type": "type", "text": "never"},
                {"type": "keypress", "keys": ["CTRL", "NOPE"]}]}),
        )
        .await;
    assert_eq!((s, v["error"].as_str()), (422, Some("bad_key")), "{v}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(e.eval(val).await, json!("batched ✓"));
}
