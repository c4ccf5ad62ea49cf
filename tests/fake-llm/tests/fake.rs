//! End-to-end tests of the fake provider over real HTTP: per family a scripted tool call then a
//! text (JSON and SSE, parsed with the zigral-llm wire types), the validations, the faults, the
//! control endpoints, and the binary's startup line.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use reqwest::{Client, Response};
use serde_json::{Value, json};
use zigral_fake_llm::LocalFake;
use zigral_llm::{anthropic, chat, responses, sse};

/// A real 1×1 PNG.
const PNG: &str = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg==";
const KEY: &str = "test-key";

/// The in-process fake, with this file's request helpers.
struct Fake {
    local: LocalFake,
}

/// A reqwest client (zigral-llm builds reqwest with `rustls-no-provider`: install ring first).
fn client() -> Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    Client::new()
}

async fn start() -> Fake {
    let local = LocalFake::start(zigral_fake_llm::Config::default())
        .await
        .expect("start the fake");
    Fake { local }
}

impl Fake {
    async fn script(&self, steps: Value) {
        self.local.script(steps).await.expect("script");
    }

    async fn get(&self, path: &str) -> Value {
        self.local.get(path).await.expect("get")
    }

    async fn anthropic(&self, beta: Option<&str>, body: &Value) -> Response {
        let mut r = self
            .local
            .http()
            .post(format!("{}/v1/messages?beta=true", self.local.base_url()))
            .header("x-api-key", KEY)
            .header("anthropic-version", "2023-06-01")
            .json(body);
        if let Some(b) = beta {
            r = r.header("anthropic-beta", b);
        }
        r.send().await.expect("send")
    }

    async fn openai(&self, path: &str, body: &Value) -> Response {
        self.local
            .http()
            .post(format!("{}{path}", self.local.base_url()))
            .bearer_auth(KEY)
            .json(body)
            .send()
            .await
            .expect("send")
    }
}

/// Parses an SSE body into (event name, JSON data) pairs; `[DONE]` comes out as a string.
fn frames(body: &str) -> Vec<(Option<String>, Value)> {
    let mut p = sse::Parser::new();
    let mut out = p.feed(body.as_bytes());
    out.extend(p.finish());
    out.into_iter()
        .map(|f| {
            let data = serde_json::from_str(&f.data).unwrap_or(Value::String(f.data.clone()));
            (f.event, data)
        })
        .collect()
}

fn computer_tool_20251124() -> Value {
    json!({"type": "computer_20251124", "name": "computer", "display_width_px": 1024, "display_height_px": 768, "enable_zoom": true})
}

fn png_result(id: &str, toolset: bool) -> Value {
    let mut r = json!({"type": "tool_result", "tool_use_id": id, "content": [
        {"type": "text", "text": "ok"},
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}},
    ]});
    if toolset {
        r["toolset_name"] = json!("computer");
    }
    r
}

fn anthropic_body(tools: Value, messages: Value, stream: bool) -> Value {
    json!({"model": "claude-test", "max_tokens": 1024, "tools": tools, "messages": messages, "stream": stream})
}

#[tokio::test]
async fn anthropic_tool_call_then_text_json_and_sse() {
    let f = start().await;
    f.script(json!([
        {"calls": [{"action": "left_click", "coordinate": [512, 384]}, {"action": "type", "text": "hello"}], "thinking": true},
        {"text": "Done."},
    ]))
    .await;
    let tools = json!([computer_tool_20251124()]);
    let first = json!([{"role": "user", "content": "open the page"}]);
    let r = f
        .anthropic(
            Some("computer-use-2025-11-24"),
            &anthropic_body(tools.clone(), first.clone(), false),
        )
        .await;
    assert_eq!(r.status(), 200);
    assert!(r.headers().contains_key("request-id"));
    let raw: Value = r.json().await.expect("json");
    let msg: anthropic::MessagesResponse = serde_json::from_value(raw.clone()).expect("typed");
    assert_eq!(msg.stop_reason.as_deref(), Some("tool_use"));
    assert!(msg.usage.input_tokens > 0 && msg.usage.output_tokens > 0);
    let [
        anthropic::ContentBlock::Thinking(th),
        anthropic::ContentBlock::ToolUse(a),
        anthropic::ContentBlock::ToolUse(b),
    ] = msg.content.as_slice()
    else {
        panic!("want thinking + 2 tool_use: {raw}")
    };
    assert!(!th.signature.is_empty());
    assert_eq!(a.name, "computer");
    assert_eq!(
        a.input,
        json!({"action": "left_click", "coordinate": [512, 384]})
    );
    assert_eq!(b.input, json!({"action": "type", "text": "hello"}));
    assert_eq!(a.toolset_name, None);

    // The tool results (with a screenshot) go back; the reply streams.
    let mut convo = first.as_array().cloned().expect("array");
    convo.push(json!({"role": "assistant", "content": raw["content"]}));
    convo.push(
        json!({"role": "user", "content": [png_result(&a.id, false), png_result(&b.id, false)]}),
    );
    let r = f
        .anthropic(
            Some("prompt-caching-2024-07-31, computer-use-2025-11-24"),
            &anthropic_body(tools, json!(convo), true),
        )
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "text/event-stream");
    let events = frames(&r.text().await.expect("body"));
    let mut text = String::new();
    let mut stop = None;
    for (name, data) in &events {
        let ev: anthropic::StreamEvent = serde_json::from_value(data.clone()).expect("typed event");
        assert!(!matches!(ev, anthropic::StreamEvent::Other(_)), "{data}");
        assert_eq!(name.as_deref(), Some(ev.name()));
        match ev {
            anthropic::StreamEvent::ContentBlockDelta {
                delta: anthropic::Delta::TextDelta { text: t },
                ..
            } => text.push_str(&t),
            anthropic::StreamEvent::MessageDelta { delta, .. } => stop = delta.stop_reason,
            _ => {}
        }
    }
    assert_eq!(
        events.first().and_then(|e| e.0.as_deref()),
        Some("message_start")
    );
    assert!(events.iter().any(|e| e.0.as_deref() == Some("ping")));
    assert_eq!(
        events.last().and_then(|e| e.0.as_deref()),
        Some("message_stop")
    );
    assert_eq!(text, "Done.");
    assert_eq!(stop.as_deref(), Some("end_turn"));
    assert_eq!(f.get("/_violations").await, json!([]));
    // The screenshot counts 1600 tokens, its bytes do not.
    let reqs = f.get("/_requests").await;
    assert_eq!(reqs[1]["headers"]["x-api-key"], "***");
    assert_eq!(reqs[1]["query"], "beta=true");
    assert_eq!(reqs[1]["served"], "text");
}

#[tokio::test]
async fn anthropic_toolset_members_and_toolset_name_on_results() {
    let f = start().await;
    f.script(json!([
        {"calls": [{"action": "left_click", "coordinate": [3, 4]}, {"action": "key", "text": "ctrl+s"}]},
        {"text": "Saved."},
        {"text": "unused"},
    ]))
    .await;
    let tools =
        json!([{"type": "computer_toolset_20260801", "configs": {"zoom": {"enabled": false}}}]);
    let first = json!([{"role": "user", "content": "save it"}]);
    let r = f
        .anthropic(None, &anthropic_body(tools.clone(), first, false))
        .await;
    assert_eq!(r.status(), 200);
    let raw: Value = r.json().await.expect("json");
    let c = &raw["content"];
    assert_eq!(c[0]["name"], "left_click");
    assert_eq!(c[0]["input"], json!({"coordinate": [3, 4]}));
    assert_eq!(c[0]["toolset_name"], "computer");
    assert_eq!(c[1]["name"], "key");
    assert_eq!(c[1]["input"], json!({"text": "ctrl+s"}));
    let ids = [
        c[0]["id"].as_str().expect("id"),
        c[1]["id"].as_str().expect("id"),
    ];

    let convo = |toolset: bool| {
        json!([
            {"role": "user", "content": "save it"},
            {"role": "assistant", "content": raw["content"]},
            {"role": "user", "content": [png_result(ids[0], toolset), png_result(ids[1], toolset)]},
        ])
    };
    // Results without toolset_name are refused and pop nothing.
    let r = f
        .anthropic(None, &anthropic_body(tools.clone(), convo(false), false))
        .await;
    assert_eq!(r.status(), 400);
    let err: anthropic::ErrorResponse = r.json().await.expect("error body");
    assert_eq!(err.error.kind, "invalid_request_error");
    assert!(
        err.error.message.contains("toolset_name"),
        "{}",
        err.error.message
    );
    // A computer-use beta with the toolset is refused too.
    let r = f
        .anthropic(
            Some("computer-use-2025-01-24"),
            &anthropic_body(tools.clone(), convo(true), false),
        )
        .await;
    assert_eq!(r.status(), 400);
    // A toolset entry with a name/display fields is refused.
    let bad_tools = json!([{"type": "computer_toolset_20260801", "name": "computer", "display_width_px": 1024}]);
    let r = f
        .anthropic(None, &anthropic_body(bad_tools, convo(true), false))
        .await;
    assert_eq!(r.status(), 400);
    let r = f
        .anthropic(None, &anthropic_body(tools, convo(true), false))
        .await;
    assert_eq!(r.status(), 200);
    let ok: Value = r.json().await.expect("json");
    assert_eq!(ok["content"][0]["text"], "Saved.");
    assert_eq!(
        f.get("/_violations").await.as_array().map(Vec::len),
        Some(5)
    );
    assert_eq!(f.get("/_stats").await["script_remaining"], 1);
}

#[tokio::test]
async fn anthropic_validation_failures_are_400_and_recorded() {
    let f = start().await;
    f.script(json!([{"calls": [{"action": "screenshot"}]}, {"text": "Done."}]))
        .await;
    let tools = json!([computer_tool_20251124()]);
    let first = json!([{"role": "user", "content": "look"}]);
    // Missing beta header.
    let r = f
        .anthropic(None, &anthropic_body(tools.clone(), first.clone(), false))
        .await;
    assert_eq!(r.status(), 400);
    let err: anthropic::ErrorResponse = r.json().await.expect("error body");
    assert_eq!(err.error.kind, "invalid_request_error");
    assert!(
        err.error.message.contains("computer-use-2025-11-24"),
        "{}",
        err.error.message
    );
    let v = f.get("/_violations").await;
    assert_eq!(v[0]["status"], 400);
    assert_eq!(v[0]["family"], "anthropic");
    assert_eq!(
        f.get("/_stats").await["script_remaining"],
        2,
        "a refused request pops nothing"
    );
    // The wrong beta for the generation is refused too.
    let r = f
        .anthropic(
            Some("computer-use-2025-01-24"),
            &anthropic_body(tools.clone(), first.clone(), false),
        )
        .await;
    assert_eq!(r.status(), 400);

    let beta = Some("computer-use-2025-11-24");
    let r = f
        .anthropic(beta, &anthropic_body(tools.clone(), first, false))
        .await;
    let raw: Value = r.json().await.expect("json");
    let id = raw["content"][0]["id"].as_str().expect("id").to_string();
    // Unanswered tool_use.
    let unanswered = json!([
        {"role": "user", "content": "look"},
        {"role": "assistant", "content": raw["content"]},
        {"role": "user", "content": "what now?"},
    ]);
    let r = f
        .anthropic(beta, &anthropic_body(tools.clone(), unanswered, false))
        .await;
    assert_eq!(r.status(), 400);
    let err: anthropic::ErrorResponse = r.json().await.expect("error body");
    assert!(err.error.message.contains(&id), "{}", err.error.message);
    // A result for an id nobody asked for, an image that is not what it claims, roles out of order.
    let cases = [
        json!([
            {"role": "user", "content": "look"},
            {"role": "assistant", "content": raw["content"]},
            {"role": "user", "content": [png_result(&id, false), png_result("toolu_unknown", false)]},
        ]),
        json!([
            {"role": "user", "content": "look"},
            {"role": "assistant", "content": raw["content"]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": id, "content": [
                {"type": "image", "source": {"type": "base64", "media_type": "image/jpeg", "data": PNG}}]}]},
        ]),
        json!([{"role": "assistant", "content": "hi"}, {"role": "user", "content": "look"}]),
        json!([{"role": "user", "content": "a"}, {"role": "assistant", "content": []}, {"role": "user", "content": "b"}]),
        json!([{"role": "user", "content": "a"}, {"role": "assistant", "content": [
            {"type": "thinking", "thinking": "forged", "signature": "not-ours"}, {"type": "text", "text": "x"}]},
            {"role": "user", "content": "b"}]),
        json!([{"role": "user", "content": [
            {"type": "text", "text": "1", "cache_control": {"type": "ephemeral"}},
            {"type": "text", "text": "2", "cache_control": {"type": "ephemeral"}},
            {"type": "text", "text": "3", "cache_control": {"type": "ephemeral"}},
            {"type": "text", "text": "4", "cache_control": {"type": "ephemeral"}},
            {"type": "text", "text": "5", "cache_control": {"type": "ephemeral"}}]}]),
    ];
    for (i, messages) in cases.iter().enumerate() {
        let r = f
            .anthropic(
                beta,
                &anthropic_body(tools.clone(), messages.clone(), false),
            )
            .await;
        assert_eq!(r.status(), 400, "case {i}");
    }
    // Wrong key: 401, and the key never shows in the record.
    let r = f
        .local
        .http()
        .post(format!("{}/v1/messages", f.local.base_url()))
        .header("x-api-key", "sk-wrong-secret")
        .header("anthropic-version", "2023-06-01")
        .json(&anthropic_body(
            tools,
            json!([{"role": "user", "content": "x"}]),
            false,
        ))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 401);
    let err: anthropic::ErrorResponse = r.json().await.expect("error body");
    assert_eq!(err.error.kind, "authentication_error");
    let reqs = f.get("/_requests").await.to_string();
    assert!(!reqs.contains("sk-wrong-secret"));
    assert_eq!(f.get("/_stats").await["script_remaining"], 1);
}

#[tokio::test]
async fn anthropic_faults() {
    let f = start().await;
    f.script(json!([
        {"fault": "status", "status": 429, "retry_after": 1},
        {"fault": "status", "status": 529, "retry_after_ms": 250},
        {"fault": "x_should_retry_false", "status": 500},
        {"fault": "mid_stream_error"},
        {"fault": "refusal"},
        {"fault": "max_tokens"},
        {"fault": "malformed"},
        {"fault": "pause_turn"},
        {"text": "Continued."},
    ]))
    .await;
    let tools = json!([computer_tool_20251124()]);
    let beta = Some("computer-use-2025-11-24");
    let msgs = json!([{"role": "user", "content": "go"}]);
    let body = anthropic_body(tools.clone(), msgs.clone(), false);
    let stream_body = anthropic_body(tools.clone(), msgs.clone(), true);

    let r = f.anthropic(beta, &body).await;
    assert_eq!(r.status(), 429);
    assert_eq!(r.headers()["retry-after"], "1");
    let err: anthropic::ErrorResponse = r.json().await.expect("body");
    assert_eq!(err.error.kind, "rate_limit_error");
    assert!(err.request_id.is_some());

    let r = f.anthropic(beta, &body).await;
    assert_eq!(r.status().as_u16(), 529);
    assert_eq!(r.headers()["retry-after-ms"], "250");
    let err: anthropic::ErrorResponse = r.json().await.expect("body");
    assert_eq!(err.error.kind, "overloaded_error");

    let r = f.anthropic(beta, &body).await;
    assert_eq!(r.status(), 500);
    assert_eq!(r.headers()["x-should-retry"], "false");
    let err: anthropic::ErrorResponse = r.json().await.expect("body");
    assert_eq!(err.error.kind, "api_error");

    let r = f.anthropic(beta, &stream_body).await;
    assert_eq!(r.status(), 200);
    let events = frames(&r.text().await.expect("body"));
    let (name, data) = events.last().expect("events");
    assert_eq!(name.as_deref(), Some("error"));
    assert_eq!(data["error"]["type"], "overloaded_error");
    assert!(
        events
            .iter()
            .any(|e| e.0.as_deref() == Some("content_block_delta"))
    );
    assert!(
        !events
            .iter()
            .any(|e| e.0.as_deref() == Some("message_stop"))
    );

    for want in ["refusal", "max_tokens"] {
        let raw: Value = f.anthropic(beta, &body).await.json().await.expect("json");
        assert_eq!(raw["stop_reason"], want);
    }
    let raw: Value = f.anthropic(beta, &body).await.json().await.expect("json");
    assert_eq!(raw["content"][0]["input"]["action"], "teleport");

    // pause_turn: the next request must send the paused turn back as-is.
    let paused: Value = f.anthropic(beta, &body).await.json().await.expect("json");
    assert_eq!(paused["stop_reason"], "pause_turn");
    let r = f.anthropic(beta, &body).await;
    assert_eq!(r.status(), 400, "paused turn not echoed");
    let echoed = json!([{"role": "user", "content": "go"}, {"role": "assistant", "content": paused["content"]}]);
    let r = f
        .anthropic(beta, &anthropic_body(tools, echoed, false))
        .await;
    assert_eq!(r.status(), 200);
    let raw: Value = r.json().await.expect("json");
    assert_eq!(raw["content"][0]["text"], "Continued.");

    let stats = f.get("/_stats").await;
    assert_eq!(stats["faults"]["status"], 2);
    assert_eq!(stats["faults"]["mid_stream_error"], 1);
    assert_eq!(stats["faults"]["pause_turn"], 1);
    assert_eq!(stats["script_remaining"], 0);
}

#[tokio::test]
async fn mid_stream_error_without_stream_cuts_the_body() {
    let f = start().await;
    f.script(json!([{"fault": "mid_stream_error"}])).await;
    let body = anthropic_body(
        json!([computer_tool_20251124()]),
        json!([{"role": "user", "content": "go"}]),
        false,
    );
    let r = f.anthropic(Some("computer-use-2025-11-24"), &body).await;
    assert_eq!(r.status(), 200);
    assert!(r.text().await.is_err(), "the body must break off");
}

#[tokio::test]
async fn timeout_fault_keeps_silent_then_the_next_step_answers() {
    let f = start().await;
    f.script(json!([{"fault": "timeout", "ms": 5000}, {"text": "after"}]))
        .await;
    let body = anthropic_body(
        json!([computer_tool_20251124()]),
        json!([{"role": "user", "content": "go"}]),
        false,
    );
    let started = std::time::Instant::now();
    let r = f
        .local
        .http()
        .post(format!("{}/v1/messages", f.local.base_url()))
        .header("x-api-key", KEY)
        .header("anthropic-version", "2023-06-01")
        .header("anthropic-beta", "computer-use-2025-11-24")
        .timeout(Duration::from_millis(300))
        .json(&body)
        .send()
        .await;
    assert!(r.as_ref().is_err_and(reqwest::Error::is_timeout), "{r:?}");
    assert!(started.elapsed() < Duration::from_secs(3));
    let raw: Value = f
        .anthropic(Some("computer-use-2025-11-24"), &body)
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(raw["content"][0]["text"], "after");
}

#[tokio::test]
async fn summarization_requests_and_exhaustion_do_not_consume_the_script() {
    let f = start().await;
    f.script(json!([{"text": "scripted"}])).await;
    let summary = json!({"model": "claude-test", "max_tokens": 100, "messages": [
        {"role": "user", "content": "book a flight to Lisbon for Friday"},
        {"role": "assistant", "content": "ok"},
        {"role": "user", "content": [{"type": "text", "text": "Summarize the conversation so far."}]},
    ]});
    let raw: Value = f
        .anthropic(None, &summary)
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(
        raw["content"][0]["text"],
        "Summary: 3 earlier messages; last user request: Summarize the conversation so far."
    );
    let body = anthropic_body(
        json!([computer_tool_20251124()]),
        json!([{"role": "user", "content": "go"}]),
        false,
    );
    let beta = Some("computer-use-2025-11-24");
    let raw: Value = f.anthropic(beta, &body).await.json().await.expect("json");
    assert_eq!(raw["content"][0]["text"], "scripted");
    let raw: Value = f.anthropic(beta, &body).await.json().await.expect("json");
    assert_eq!(raw["content"][0]["text"], "(script exhausted)");
    let stats = f.get("/_stats").await;
    assert_eq!(stats["summaries"], 1);
    assert_eq!(stats["exhausted"], 1);
    assert_eq!(stats["requests"]["/v1/messages"], 3);
    // Bad steps are refused at queue time; DELETE clears the queue.
    let r = f
        .local
        .http()
        .post(format!("{}/_script", f.local.base_url()))
        .json(&json!({"steps": [{"calls": [{"action": "teleport"}]}]}))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 400);
    f.script(json!([{"text": "a"}, {"text": "b"}])).await;
    let cleared: Value = f
        .local
        .http()
        .delete(format!("{}/_script", f.local.base_url()))
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("json");
    assert_eq!(cleared["cleared"], 2);
}

fn screenshot_output(call_id: &str, acked: Value) -> Value {
    json!({"type": "computer_call_output", "call_id": call_id, "acknowledged_safety_checks": acked,
           "output": {"type": "computer_screenshot", "image_url": format!("data:image/png;base64,{PNG}")}})
}

#[tokio::test]
async fn responses_ga_batched_actions_safety_checks_and_stream() {
    let f = start().await;
    f.script(json!([
        {"calls": [
            {"action": "left_click", "coordinate": [10, 20]},
            {"action": "key", "text": "ctrl+s"},
            {"action": "scroll", "coordinate": [5, 6], "scroll_direction": "down", "scroll_amount": 2},
        ], "thinking": true, "safety_check": {"code": "malicious_instructions", "message": "check this"}},
        {"text": "All done."},
    ]))
    .await;
    let tools = json!([{"type": "computer"}]);
    let first = json!([{"role": "user", "content": "save"}]);
    let r = f
        .openai(
            "/v1/responses",
            &json!({"model": "gpt-test", "tools": tools, "input": first}),
        )
        .await;
    assert_eq!(r.status(), 200);
    let raw: Value = r.json().await.expect("json");
    let resp: responses::Response = serde_json::from_value(raw.clone()).expect("typed");
    assert_eq!(resp.status, "completed");
    let [
        responses::Item::Reasoning(_),
        responses::Item::ComputerCall(call),
    ] = resp.output.as_slice()
    else {
        panic!("want reasoning + one computer_call: {raw}")
    };
    assert_eq!(
        call.actions.clone().expect("actions"),
        vec![
            json!({"type": "click", "button": "left", "x": 10, "y": 20}),
            json!({"type": "keypress", "keys": ["ctrl", "s"]}),
            json!({"type": "scroll", "x": 5, "y": 6, "scroll_x": 0, "scroll_y": 200}),
        ]
    );
    assert!(call.action.is_none());
    assert_eq!(call.pending_safety_checks.len(), 1);
    let check = serde_json::to_value(&call.pending_safety_checks[0]).expect("check");
    assert_eq!(check["code"], "malicious_instructions");

    let mut input = first.as_array().cloned().expect("array");
    input.extend(raw["output"].as_array().cloned().expect("output"));
    // Not acknowledging the safety check is refused.
    let mut no_ack = input.clone();
    no_ack.push(screenshot_output(&call.call_id, json!([])));
    let r = f
        .openai(
            "/v1/responses",
            &json!({"model": "gpt-test", "tools": tools, "input": no_ack}),
        )
        .await;
    assert_eq!(r.status(), 400);
    let err: responses::ErrorResponse = r.json().await.expect("error body");
    assert!(
        err.error.message.contains("safety check"),
        "{}",
        err.error.message
    );
    // Not answering the call at all is refused.
    let mut unanswered = input.clone();
    unanswered.push(json!({"role": "user", "content": "and?"}));
    let r = f
        .openai(
            "/v1/responses",
            &json!({"model": "gpt-test", "tools": tools, "input": unanswered}),
        )
        .await;
    assert_eq!(r.status(), 400);

    input.push(screenshot_output(&call.call_id, json!([check])));
    let r = f
        .openai(
            "/v1/responses",
            &json!({"model": "gpt-test", "tools": tools, "input": input, "stream": true}),
        )
        .await;
    assert_eq!(r.status(), 200);
    let events = frames(&r.text().await.expect("body"));
    let mut text = String::new();
    for (name, data) in &events {
        assert_eq!(name.as_deref(), data["type"].as_str());
        let ev: responses::StreamEvent = serde_json::from_value(data.clone()).expect("typed");
        if let responses::StreamEvent::OutputTextDelta { delta, .. } = ev {
            text.push_str(&delta);
        }
    }
    assert_eq!(text, "All done.");
    assert_eq!(events[0].0.as_deref(), Some("response.created"));
    let (last, data) = events.last().expect("events");
    assert_eq!(last.as_deref(), Some("response.completed"));
    let done: responses::StreamEvent = serde_json::from_value(data.clone()).expect("typed");
    let responses::StreamEvent::Completed { response } = done else {
        panic!("not completed")
    };
    assert!(
        response.usage.expect("usage").input_tokens >= 1600,
        "the screenshot counts"
    );
    assert_eq!(
        f.get("/_violations").await.as_array().map(Vec::len),
        Some(2)
    );
}

#[tokio::test]
async fn responses_preview_needs_truncation_and_gets_one_call_per_action() {
    let f = start().await;
    f.script(json!([{"calls": [{"action": "double_click", "coordinate": [1, 2]}, {"action": "type", "text": "x"}]}])).await;
    let tools = json!([{"type": "computer_use_preview", "display_width": 1024, "display_height": 768, "environment": "browser"}]);
    let input = json!([{"role": "user", "content": [{"type": "input_text", "text": "go"}]}]);
    let r = f
        .openai(
            "/v1/responses",
            &json!({"model": "computer-use-preview", "tools": tools, "input": input}),
        )
        .await;
    assert_eq!(r.status(), 400, "truncation auto is required");
    let r = f
        .openai("/v1/responses", &json!({"model": "computer-use-preview", "tools": [{"type": "computer", "display_width": 1}], "input": input}))
        .await;
    assert_eq!(r.status(), 400, "the GA tool takes no fields");
    let r = f
        .openai(
            "/v1/responses",
            &json!({"model": "computer-use-preview", "tools": tools, "input": input, "truncation": "auto"}),
        )
        .await;
    assert_eq!(r.status(), 200);
    let raw: Value = r.json().await.expect("json");
    let out = raw["output"].as_array().expect("output");
    assert_eq!(out.len(), 2);
    assert_eq!(
        out[0]["action"],
        json!({"type": "double_click", "x": 1, "y": 2})
    );
    assert_eq!(out[1]["action"], json!({"type": "type", "text": "x"}));
    assert!(out[0].get("actions").is_none());
    // Legacy input_image outputs are accepted.
    let mut next = input.as_array().cloned().expect("array");
    next.extend(out.iter().cloned());
    for item in out {
        next.push(json!({"type": "computer_call_output", "call_id": item["call_id"],
            "output": {"type": "input_image", "image_url": format!("data:image/png;base64,{PNG}")}}));
    }
    let r = f
        .openai(
            "/v1/responses",
            &json!({"model": "computer-use-preview", "tools": tools, "input": next, "truncation": "auto"}),
        )
        .await;
    assert_eq!(r.status(), 200);
    let r = f
        .local
        .http()
        .post(format!("{}/v1/responses", f.local.base_url()))
        .json(&json!({}))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 401);
}

#[tokio::test]
async fn responses_mid_stream_error_fails_the_response() {
    let f = start().await;
    f.script(json!([{"fault": "mid_stream_error"}, {"fault": "status", "status": 429, "retry_after": 2}])).await;
    let body = json!({"model": "gpt-test", "tools": [{"type": "computer"}], "input": "go", "stream": true});
    let events = frames(
        &f.openai("/v1/responses", &body)
            .await
            .text()
            .await
            .expect("body"),
    );
    let names: Vec<&str> = events.iter().filter_map(|e| e.0.as_deref()).collect();
    assert_eq!(names[names.len() - 2..], ["error", "response.failed"]);
    let r = f.openai("/v1/responses", &body).await;
    assert_eq!(r.status(), 429);
    assert_eq!(r.headers()["retry-after"], "2");
    let err: responses::ErrorResponse = r.json().await.expect("error body");
    assert_eq!(err.error.code.as_deref(), Some("rate_limit_exceeded"));
}

fn chat_tools() -> Value {
    json!([{"type": "function", "function": {"name": "left_click", "description": "click",
        "parameters": {"type": "object", "properties": {"x": {"type": "integer"}, "y": {"type": "integer"}}}}}])
}

#[tokio::test]
async fn chat_tool_calls_then_streamed_text_with_usage() {
    let f = start().await;
    f.script(json!([
        {"calls": [{"action": "left_click", "coordinate": [7, 8]}, {"action": "type", "text": "hi"}]},
        {"text": "Finished typing."},
        {"fault": "malformed"},
    ]))
    .await;
    let first = json!([{"role": "system", "content": "you drive a desktop"}, {"role": "user", "content": "type hi"}]);
    let r = f
        .openai(
            "/v1/chat/completions",
            &json!({"model": "qwen", "tools": chat_tools(), "messages": first}),
        )
        .await;
    assert_eq!(r.status(), 200);
    let raw: Value = r.json().await.expect("json");
    let resp: chat::ChatResponse = serde_json::from_value(raw.clone()).expect("typed");
    assert_eq!(resp.choices[0].finish_reason.as_deref(), Some("tool_calls"));
    let calls = &raw["choices"][0]["message"]["tool_calls"];
    assert_eq!(calls[0]["function"]["name"], "left_click");
    let args: Value =
        serde_json::from_str(calls[0]["function"]["arguments"].as_str().expect("string"))
            .expect("json");
    assert_eq!(args, json!({"x": 7, "y": 8}));
    assert_eq!(calls[1]["function"]["arguments"], "{\"text\":\"hi\"}");

    let mut msgs = first.as_array().cloned().expect("array");
    msgs.push(raw["choices"][0]["message"].clone());
    // Only one of two calls answered: refused.
    let mut partial = msgs.clone();
    partial.push(json!({"role": "tool", "tool_call_id": calls[0]["id"], "content": "ok"}));
    let r = f
        .openai(
            "/v1/chat/completions",
            &json!({"model": "qwen", "tools": chat_tools(), "messages": partial}),
        )
        .await;
    assert_eq!(r.status(), 400);
    // An image in a tool message: refused.
    let mut img_in_tool = msgs.clone();
    for c in calls.as_array().expect("calls") {
        img_in_tool.push(json!({"role": "tool", "tool_call_id": c["id"], "content": [
            {"type": "image_url", "image_url": {"url": format!("data:image/png;base64,{PNG}")}}]}));
    }
    let r = f
        .openai(
            "/v1/chat/completions",
            &json!({"model": "qwen", "tools": chat_tools(), "messages": img_in_tool}),
        )
        .await;
    assert_eq!(r.status(), 400);

    for c in calls.as_array().expect("calls") {
        msgs.push(json!({"role": "tool", "tool_call_id": c["id"], "content": "done"}));
    }
    msgs.push(
        json!({"role": "user", "content": [{"type": "text", "text": "screenshot:"},
        {"type": "image_url", "image_url": {"url": format!("data:image/png;base64,{PNG}")}}]}),
    );
    let body = json!({"model": "qwen", "tools": chat_tools(), "messages": msgs, "stream": true,
                      "stream_options": {"include_usage": true}});
    let r = f.openai("/v1/chat/completions", &body).await;
    assert_eq!(r.status(), 200);
    let events = frames(&r.text().await.expect("body"));
    assert_eq!(events.last().map(|e| e.1.clone()), Some(json!("[DONE]")));
    let mut text = String::new();
    let mut finish = None;
    let mut usage = None;
    for (_, data) in &events[..events.len() - 1] {
        let c: chat::ChatChunk = serde_json::from_value(data.clone()).expect("typed chunk");
        for ch in &c.choices {
            text.push_str(ch.delta.content.as_deref().unwrap_or(""));
            finish = finish.or(ch.finish_reason.clone());
        }
        usage = usage.or(c.usage);
    }
    assert_eq!(text, "Finished typing.");
    assert_eq!(finish.as_deref(), Some("stop"));
    assert!(usage.expect("usage chunk").prompt_tokens >= 1600);

    // malformed: arguments that are not JSON.
    let r = f
        .openai("/v1/chat/completions", &json!({"model": "qwen", "tools": chat_tools(), "messages": [{"role": "user", "content": "x"}]}))
        .await;
    let raw: Value = r.json().await.expect("json");
    let args = raw["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"]
        .as_str()
        .expect("string");
    assert!(serde_json::from_str::<Value>(args).is_err());
    // Tools that are not functions with an object schema are refused.
    let r = f
        .openai("/v1/chat/completions", &json!({"model": "qwen", "tools": [{"type": "computer"}], "messages": [{"role": "user", "content": "x"}]}))
        .await;
    assert_eq!(r.status(), 400);
    assert_eq!(
        f.get("/_violations")
            .await
            .as_array()
            .map(Vec::len)
            .map(|n| n >= 3),
        Some(true)
    );
}

#[tokio::test]
async fn the_binary_prints_its_address_and_serves() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_zigral-fake-llm"))
        .args(["--listen", "127.0.0.1:0", "--api-key", "k2"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn");
    let stdout = child.stdout.take().expect("stdout");
    let line = tokio::task::spawn_blocking(move || {
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).map(|_| line)
    })
    .await
    .expect("join")
    .expect("read");
    let addr = line
        .trim()
        .strip_prefix("listening on 127.0.0.1:")
        .map(str::to_string);
    let port: u16 = addr
        .as_deref()
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("bad line {line:?}"));
    let http = client();
    let r = http
        .post(format!("http://127.0.0.1:{port}/v1/chat/completions"))
        .bearer_auth("k2")
        .json(&json!({"model": "m", "messages": [{"role": "user", "content": "hello"}]}))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 200);
    let raw: Value = r.json().await.expect("json");
    assert!(
        raw["choices"][0]["message"]["content"]
            .as_str()
            .is_some_and(|s| s.starts_with("Summary: 1 earlier"))
    );
    let _ = child.kill();
    let _ = child.wait();
}
