//! OpenAI Responses rendering: a [`Turn`] becomes a `response` object (reasoning, message,
//! `computer_call` and `function_call` output items) and its typed SSE events
//! (`response.created` ... `response.completed`). A call to an extra tool is a `function_call`
//! (`arguments` a JSON string); consecutive computer actions share one GA `computer_call`.

use serde_json::{Map, Value, json};

use super::{Ctx, End, RenderError, Turn, chunks, now_secs, output_tokens, rand_id};
use crate::script::Call;

/// Which computer tool the request declared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ToolKind {
    /// GA `{"type":"computer"}`: one `computer_call` with `actions[]`.
    Ga,
    /// `computer_use_preview`: one `computer_call` per action, with `action`.
    Preview,
}

/// The tool kind of a request body.
pub fn tool_kind(body: &Value) -> ToolKind {
    let preview = body["tools"].as_array().is_some_and(|tools| {
        tools
            .iter()
            .any(|t| t["type"].as_str() == Some("computer_use_preview"))
    });
    if preview {
        ToolKind::Preview
    } else {
        ToolKind::Ga
    }
}

fn point(x: i64, y: i64) -> Value {
    json!({"x": x, "y": y})
}

fn with_keys(mut action: Value, call: &Call) -> Value {
    if let Some(k) = call.str("key") {
        action["keys"] = json!(k.split('+').collect::<Vec<_>>());
    }
    action
}

/// Maps one Anthropic-shaped call to Responses actions (usually one; `triple_click` is two).
pub fn actions(call: &Call) -> Result<Vec<Value>, RenderError> {
    let (x, y) = call.point("coordinate").unwrap_or((0, 0));
    let click = |button: &str| {
        with_keys(
            json!({"type": "click", "button": button, "x": x, "y": y}),
            call,
        )
    };
    let none = || RenderError::NoEquivalent(call.action().to_string(), "Responses");
    Ok(match call.action() {
        "left_click" => vec![click("left")],
        "right_click" => vec![click("right")],
        "middle_click" => vec![click("wheel")],
        "double_click" => vec![with_keys(
            json!({"type": "double_click", "x": x, "y": y}),
            call,
        )],
        "triple_click" => vec![
            with_keys(json!({"type": "double_click", "x": x, "y": y}), call),
            click("left"),
        ],
        "type" => vec![json!({"type": "type", "text": call.str("text").unwrap_or("")})],
        "key" => vec![json!({
            "type": "keypress",
            "keys": call.str("text").unwrap_or("").split('+').collect::<Vec<_>>(),
        })],
        "mouse_move" => vec![with_keys(json!({"type": "move", "x": x, "y": y}), call)],
        "scroll" => {
            let amount = call
                .0
                .get("scroll_amount")
                .and_then(Value::as_i64)
                .unwrap_or(0)
                * 100;
            let (sx, sy) = match call.str("scroll_direction").unwrap_or("down") {
                "up" => (0, -amount),
                "left" => (-amount, 0),
                "right" => (amount, 0),
                _ => (0, amount),
            };
            let mut a = json!({"type": "scroll", "x": x, "y": y, "scroll_x": sx, "scroll_y": sy});
            if let Some(k) = call.str("text") {
                a["keys"] = json!(k.split('+').collect::<Vec<_>>());
            }
            vec![a]
        }
        "left_click_drag" => {
            let (sx, sy) = call.point("start_coordinate").ok_or_else(none)?;
            vec![with_keys(
                json!({"type": "drag", "path": [point(sx, sy), point(x, y)]}),
                call,
            )]
        }
        "screenshot" => vec![json!({"type": "screenshot"})],
        "wait" => vec![json!({"type": "wait"})],
        _ => return Err(none()),
    })
}

/// The `computer_call`s a turn emitted: `(call_id, pending_safety_checks)`.
pub type EmittedCalls = Vec<(String, Vec<Value>)>;

/// A `function_call` item for an extra tool call.
fn function_call(name: &str, input: Map<String, Value>) -> Value {
    json!({
        "type": "function_call", "id": rand_id("fc_", 24), "call_id": rand_id("call_", 24),
        "name": name, "arguments": Value::Object(input).to_string(), "status": "completed",
    })
}

/// The output items of a turn, and the `computer_call`s it emitted (its `function_call`s are
/// the output items of that type).
pub fn output(turn: &Turn, kind: ToolKind) -> Result<(Vec<Value>, EmittedCalls), RenderError> {
    let mut out = Vec::new();
    let mut calls = Vec::new();
    if let Some(t) = &turn.thinking {
        out.push(json!({
            "type": "reasoning", "id": rand_id("rs_", 24),
            "summary": [{"type": "summary_text", "text": t}],
        }));
    }
    let part = match (turn.end, &turn.text) {
        (End::Refusal, Some(t)) => Some(json!({"type": "refusal", "refusal": t})),
        (_, Some(t)) => Some(json!({"type": "output_text", "text": t, "annotations": []})),
        _ => None,
    };
    if let Some(part) = part {
        out.push(json!({
            "type": "message", "id": rand_id("msg_", 24), "status": "completed",
            "role": "assistant", "content": [part],
        }));
    }
    let checks = |first: bool| -> Vec<Value> {
        match (&turn.safety_check, first) {
            (Some(c), true) => {
                vec![json!({"id": rand_id("cs_", 24), "code": c.code, "message": c.message})]
            }
            _ => Vec::new(),
        }
    };
    let mut push_call = |out: &mut Vec<Value>, field: &str, value: Value| {
        let call_id = rand_id("call_", 24);
        let pending = checks(calls.is_empty());
        let mut item = Map::new();
        item.insert("type".into(), "computer_call".into());
        item.insert("id".into(), rand_id("cu_", 24).into());
        item.insert("call_id".into(), call_id.clone().into());
        item.insert("status".into(), "completed".into());
        item.insert(
            "pending_safety_checks".into(),
            Value::Array(pending.clone()),
        );
        item.insert(field.into(), value);
        out.push(Value::Object(item));
        calls.push((call_id, pending));
    };
    if turn.malformed {
        let bad = json!({"type": turn.calls.first().map_or("", |c| c.action()), "x": 1, "y": 2});
        match kind {
            ToolKind::Ga => push_call(&mut out, "actions", json!([bad])),
            ToolKind::Preview => push_call(&mut out, "action", bad),
        }
    } else {
        // GA: consecutive computer actions go in one computer_call, flushed before a function
        // call and at the end; preview: one computer_call per action.
        let mut batch: Vec<Value> = Vec::new();
        for c in &turn.calls {
            if let Some(name) = c.tool() {
                if !batch.is_empty() {
                    push_call(
                        &mut out,
                        "actions",
                        Value::Array(std::mem::take(&mut batch)),
                    );
                }
                out.push(function_call(name, c.tool_input()));
                continue;
            }
            let acts = actions(c)?;
            match kind {
                ToolKind::Ga => batch.extend(acts),
                ToolKind::Preview => {
                    for a in acts {
                        push_call(&mut out, "action", a);
                    }
                }
            }
        }
        if !batch.is_empty() {
            push_call(&mut out, "actions", Value::Array(batch));
        }
    }
    Ok((out, calls))
}

/// The non-streaming `response` body; `request` supplies the echoed fields.
pub fn response(output: Vec<Value>, turn: &Turn, request: &Value, ctx: &Ctx) -> Value {
    let output = Value::Array(output);
    let out_tokens = output_tokens(&output);
    let reasoning = if turn.thinking.is_some() {
        out_tokens / 2
    } else {
        0
    };
    let (status, incomplete) = match turn.end {
        End::MaxTokens => ("incomplete", json!({"reason": "max_output_tokens"})),
        _ => ("completed", Value::Null),
    };
    json!({
        "id": rand_id("resp_", 24),
        "object": "response",
        "created_at": now_secs(),
        "status": status,
        "error": null,
        "incomplete_details": incomplete,
        "model": ctx.model,
        "output": output,
        "parallel_tool_calls": true,
        "previous_response_id": request.get("previous_response_id").cloned().unwrap_or(Value::Null),
        "tool_choice": request.get("tool_choice").cloned().unwrap_or_else(|| json!("auto")),
        "tools": request.get("tools").cloned().unwrap_or_else(|| json!([])),
        "truncation": request.get("truncation").cloned().unwrap_or_else(|| json!("disabled")),
        "usage": {
            "input_tokens": ctx.input_tokens,
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": out_tokens,
            "output_tokens_details": {"reasoning_tokens": reasoning},
            "total_tokens": ctx.input_tokens + out_tokens,
        },
    })
}

struct Seq(Vec<(String, Value)>);

impl Seq {
    fn push(&mut self, name: &str, mut data: Value) {
        data["type"] = json!(name);
        data["sequence_number"] = json!(self.0.len());
        self.0.push((name.to_string(), data));
    }
}

fn item_events(seq: &mut Seq, index: usize, item: &Value) {
    let id = item["id"].clone();
    let mut added = item.clone();
    match item["type"].as_str().unwrap_or("") {
        "message" => {
            added["status"] = json!("in_progress");
            added["content"] = json!([]);
            seq.push(
                "response.output_item.added",
                json!({"output_index": index, "item": added}),
            );
            for (ci, part) in item["content"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .iter()
                .enumerate()
            {
                let refusal = part["type"] == "refusal";
                let (field, delta_ev, done_ev) = if refusal {
                    ("refusal", "response.refusal.delta", "response.refusal.done")
                } else {
                    (
                        "text",
                        "response.output_text.delta",
                        "response.output_text.done",
                    )
                };
                let mut empty = part.clone();
                empty[field] = json!("");
                let ids = json!({"item_id": id, "output_index": index, "content_index": ci});
                let mut ev = ids.clone();
                ev["part"] = empty;
                seq.push("response.content_part.added", ev);
                let text = part[field].as_str().unwrap_or("");
                for piece in chunks(text, 16) {
                    let mut ev = ids.clone();
                    ev["delta"] = json!(piece);
                    seq.push(delta_ev, ev);
                }
                let mut ev = ids.clone();
                ev[field] = json!(text);
                seq.push(done_ev, ev);
                let mut ev = ids;
                ev["part"] = part.clone();
                seq.push("response.content_part.done", ev);
            }
        }
        "reasoning" => {
            added["summary"] = json!([]);
            seq.push(
                "response.output_item.added",
                json!({"output_index": index, "item": added}),
            );
            for (si, s) in item["summary"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .iter()
                .enumerate()
            {
                let text = s["text"].as_str().unwrap_or("");
                let ids = json!({"item_id": id, "output_index": index, "summary_index": si});
                for piece in chunks(text, 16) {
                    let mut ev = ids.clone();
                    ev["delta"] = json!(piece);
                    seq.push("response.reasoning_summary_text.delta", ev);
                }
                let mut ev = ids;
                ev["text"] = json!(text);
                seq.push("response.reasoning_summary_text.done", ev);
            }
        }
        _ => {
            added["status"] = json!("in_progress");
            seq.push(
                "response.output_item.added",
                json!({"output_index": index, "item": added}),
            );
        }
    }
    seq.push(
        "response.output_item.done",
        json!({"output_index": index, "item": item}),
    );
}

fn in_progress(response: &Value) -> Value {
    let mut r = response.clone();
    r["status"] = json!("in_progress");
    r["output"] = json!([]);
    r["usage"] = Value::Null;
    r["incomplete_details"] = Value::Null;
    r
}

/// The SSE events (name, data) that stream `response`.
pub fn events(response: &Value) -> Vec<(String, Value)> {
    let mut seq = Seq(Vec::new());
    seq.push(
        "response.created",
        json!({"response": in_progress(response)}),
    );
    seq.push(
        "response.in_progress",
        json!({"response": in_progress(response)}),
    );
    for (i, item) in response["output"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .enumerate()
    {
        item_events(&mut seq, i, item);
    }
    let terminal = match response["status"].as_str() {
        Some("incomplete") => "response.incomplete",
        Some("failed") => "response.failed",
        _ => "response.completed",
    };
    seq.push(terminal, json!({"response": response}));
    seq.0
}

/// A stream that fails: the first events up to one output delta, then `error` and
/// `response.failed`.
pub fn mid_stream_error_events(response: &Value) -> Vec<(String, Value)> {
    let all = events(response);
    let cut = all
        .iter()
        .position(|(n, _)| n.ends_with(".delta"))
        .map_or(2, |i| i + 1);
    let mut seq = Seq(all.into_iter().take(cut).collect());
    let message = "The server had an error while processing your request. Sorry about that!";
    seq.push(
        "error",
        json!({"code": "server_error", "message": message, "param": null}),
    );
    let mut failed = in_progress(response);
    failed["status"] = json!("failed");
    failed["error"] = json!({"code": "server_error", "message": message});
    seq.push("response.failed", json!({"response": failed}));
    seq.0
}

/// The OpenAI error body `{"error":{"message","type","param","code"}}` for a status.
pub fn error_body(status: u16, message: &str) -> Value {
    let (kind, code) = match status {
        400 => ("invalid_request_error", Value::Null),
        401 => ("invalid_request_error", json!("invalid_api_key")),
        429 => ("requests", json!("rate_limit_exceeded")),
        504 => ("timeout", Value::Null),
        s if s >= 500 => ("server_error", Value::Null),
        _ => ("invalid_request_error", Value::Null),
    };
    json!({"error": {"message": message, "type": kind, "param": null, "code": code}})
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(v: Value) -> Call {
        serde_json::from_value(v).expect("call")
    }

    #[test]
    fn anthropic_actions_map_to_responses_actions() {
        let cases = [
            (
                json!({"action": "left_click", "coordinate": [1, 2]}),
                json!([{"type": "click", "button": "left", "x": 1, "y": 2}]),
            ),
            (
                json!({"action": "right_click", "coordinate": [1, 2], "key": "shift"}),
                json!([{"type": "click", "button": "right", "x": 1, "y": 2, "keys": ["shift"]}]),
            ),
            (
                json!({"action": "key", "text": "ctrl+shift+t"}),
                json!([{"type": "keypress", "keys": ["ctrl", "shift", "t"]}]),
            ),
            (
                json!({"action": "type", "text": "hi"}),
                json!([{"type": "type", "text": "hi"}]),
            ),
            (
                json!({"action": "mouse_move", "coordinate": [5, 6]}),
                json!([{"type": "move", "x": 5, "y": 6}]),
            ),
            (
                json!({"action": "scroll", "coordinate": [5, 6], "scroll_direction": "up", "scroll_amount": 3}),
                json!([{"type": "scroll", "x": 5, "y": 6, "scroll_x": 0, "scroll_y": -300}]),
            ),
            (
                json!({"action": "left_click_drag", "start_coordinate": [1, 2], "coordinate": [3, 4]}),
                json!([{"type": "drag", "path": [{"x": 1, "y": 2}, {"x": 3, "y": 4}]}]),
            ),
            (
                json!({"action": "double_click", "coordinate": [7, 8]}),
                json!([{"type": "double_click", "x": 7, "y": 8}]),
            ),
            (
                json!({"action": "screenshot"}),
                json!([{"type": "screenshot"}]),
            ),
            (
                json!({"action": "wait", "duration": 1}),
                json!([{"type": "wait"}]),
            ),
        ];
        for (input, want) in cases {
            assert_eq!(
                Value::Array(actions(&call(input.clone())).expect("maps")),
                want,
                "{input}"
            );
        }
        assert!(actions(&call(json!({"action": "zoom", "region": [0, 0, 1, 1]}))).is_err());
    }

    #[test]
    fn extra_tool_calls_are_function_calls_between_batched_actions() {
        let turn = Turn {
            calls: vec![
                call(json!({"action": "left_click", "coordinate": [1, 2]})),
                call(json!({"action": "type", "text": "me"})),
                call(
                    json!({"tool": "type_secret", "input": {"name": "site", "field": "password"}}),
                ),
                call(json!({"action": "key", "text": "Return"})),
            ],
            end: End::ToolUse,
            text: None,
            ..Turn::text("")
        };
        let (out, emitted) = output(&turn, ToolKind::Ga).expect("output");
        let types: Vec<&str> = out.iter().filter_map(|i| i["type"].as_str()).collect();
        assert_eq!(types, ["computer_call", "function_call", "computer_call"]);
        assert_eq!(out[0]["actions"].as_array().map(Vec::len), Some(2));
        assert_eq!(out[1]["name"], "type_secret");
        let args: Value =
            serde_json::from_str(out[1]["arguments"].as_str().expect("string")).expect("json");
        assert_eq!(args, json!({"name": "site", "field": "password"}));
        assert!(
            out[1]["call_id"]
                .as_str()
                .is_some_and(|c| c.starts_with("call_"))
        );
        assert_eq!(emitted.len(), 2, "computer calls only");
        let (out, _) = output(&turn, ToolKind::Preview).expect("output");
        let types: Vec<&str> = out.iter().filter_map(|i| i["type"].as_str()).collect();
        assert_eq!(
            types,
            [
                "computer_call",
                "computer_call",
                "function_call",
                "computer_call"
            ]
        );
    }
}
