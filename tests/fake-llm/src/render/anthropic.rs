//! Anthropic Messages rendering: a [`Turn`] becomes a `message` object (non-streaming body) and
//! the SSE event sequence `message_start`, `ping`, `content_block_*`, `message_delta`,
//! `message_stop`. A call to an extra tool is a `tool_use` with its name and input (no
//! `toolset_name`) in every generation.

use serde_json::{Value, json};

use super::{Ctx, End, Turn, chunks, output_tokens, rand_id};

/// Which computer tool generation the request declared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ToolKind {
    /// `computer_20250124` / `computer_20251124`: one tool named `computer`, `input.action`.
    Single,
    /// `computer_toolset_20260801`: one tool_use per member, `toolset_name: "computer"`.
    Toolset,
}

/// The tool kind of a request body: toolset if any tool is `computer_toolset_*`.
pub fn tool_kind(body: &Value) -> ToolKind {
    let toolset = body["tools"].as_array().is_some_and(|tools| {
        tools.iter().any(|t| {
            t["type"]
                .as_str()
                .is_some_and(|s| s.starts_with("computer_toolset_"))
        })
    });
    if toolset {
        ToolKind::Toolset
    } else {
        ToolKind::Single
    }
}

/// The content blocks of a turn (thinking, text, tool_use...).
pub fn content(turn: &Turn, kind: ToolKind) -> Vec<Value> {
    let mut out = Vec::new();
    if let Some(t) = &turn.thinking {
        out.push(json!({"type": "thinking", "thinking": t, "signature": rand_id("", 48)}));
    }
    if let Some(t) = &turn.text {
        out.push(json!({"type": "text", "text": t}));
    }
    for call in &turn.calls {
        let id = rand_id("toolu_01", 22);
        out.push(match (call.tool(), kind) {
            (Some(name), _) => json!({
                "type": "tool_use", "id": id, "name": name,
                "input": Value::Object(call.tool_input()),
            }),
            (None, ToolKind::Single) => {
                json!({"type": "tool_use", "id": id, "name": "computer", "input": Value::Object(call.0.clone())})
            }
            (None, ToolKind::Toolset) => json!({
                "type": "tool_use", "id": id, "name": call.action(),
                "input": Value::Object(call.member_input()), "toolset_name": "computer",
            }),
        });
    }
    out
}

/// The `stop_reason` of a turn.
pub fn stop_reason(end: End) -> &'static str {
    match end {
        End::EndTurn => "end_turn",
        End::ToolUse => "tool_use",
        End::PauseTurn => "pause_turn",
        End::Refusal => "refusal",
        End::MaxTokens => "max_tokens",
    }
}

/// The non-streaming `message` body.
pub fn message(turn: &Turn, kind: ToolKind, ctx: &Ctx) -> Value {
    let content = Value::Array(content(turn, kind));
    json!({
        "id": rand_id("msg_01", 22),
        "type": "message",
        "role": "assistant",
        "model": ctx.model,
        "content": content,
        "stop_reason": stop_reason(turn.end),
        "stop_sequence": null,
        "usage": {
            "input_tokens": ctx.input_tokens,
            "output_tokens": output_tokens(&content),
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
            "service_tier": "standard",
        },
    })
}

/// The SSE events (name, data) that stream `message`.
pub fn events(message: &Value) -> Vec<(String, Value)> {
    let mut ev = Vec::new();
    let mut start = message.clone();
    start["content"] = json!([]);
    start["stop_reason"] = Value::Null;
    start["usage"]["output_tokens"] = json!(1);
    ev.push((
        "message_start".into(),
        json!({"type": "message_start", "message": start}),
    ));
    ev.push(("ping".into(), json!({"type": "ping"})));
    let blocks = message["content"].as_array().cloned().unwrap_or_default();
    for (index, block) in blocks.iter().enumerate() {
        let (first, deltas) = match block["type"].as_str().unwrap_or("") {
            "thinking" => (
                json!({"type": "thinking", "thinking": "", "signature": ""}),
                chunks(block["thinking"].as_str().unwrap_or(""), 24)
                    .into_iter()
                    .map(|t| json!({"type": "thinking_delta", "thinking": t}))
                    .chain(std::iter::once(
                        json!({"type": "signature_delta", "signature": block["signature"]}),
                    ))
                    .collect::<Vec<_>>(),
            ),
            "tool_use" => {
                let mut first = block.clone();
                first["input"] = json!({});
                let input = block["input"].to_string();
                (
                    first,
                    chunks(&input, 12)
                        .into_iter()
                        .map(|p| json!({"type": "input_json_delta", "partial_json": p}))
                        .collect(),
                )
            }
            _ => (
                json!({"type": "text", "text": ""}),
                chunks(block["text"].as_str().unwrap_or(""), 16)
                    .into_iter()
                    .map(|t| json!({"type": "text_delta", "text": t}))
                    .collect(),
            ),
        };
        ev.push((
            "content_block_start".into(),
            json!({"type": "content_block_start", "index": index, "content_block": first}),
        ));
        for d in deltas {
            ev.push((
                "content_block_delta".into(),
                json!({"type": "content_block_delta", "index": index, "delta": d}),
            ));
        }
        ev.push((
            "content_block_stop".into(),
            json!({"type": "content_block_stop", "index": index}),
        ));
    }
    ev.push((
        "message_delta".into(),
        json!({
            "type": "message_delta",
            "delta": {"stop_reason": message["stop_reason"], "stop_sequence": null},
            "usage": {"output_tokens": message["usage"]["output_tokens"]},
        }),
    ));
    ev.push(("message_stop".into(), json!({"type": "message_stop"})));
    ev
}

/// The events of a stream that fails: the start of `message` up to its first delta, then an
/// `error` event with `overloaded_error`.
pub fn mid_stream_error_events(message: &Value) -> Vec<(String, Value)> {
    let all = events(message);
    let cut = all
        .iter()
        .position(|(name, _)| name == "content_block_delta")
        .map_or(all.len(), |i| i + 1);
    let mut ev: Vec<_> = all.into_iter().take(cut).collect();
    ev.push((
        "error".into(),
        json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}),
    ));
    ev
}

/// The error `type` Anthropic uses for a status.
pub fn error_type(status: u16) -> &'static str {
    zigral_llm::anthropic::ErrorResponse::kind_for_status(status)
}

/// The error body: `{"type":"error","error":{"type","message"},"request_id"}`.
pub fn error_body(status: u16, message: &str, request_id: &str) -> Value {
    json!({
        "type": "error",
        "error": {"type": error_type(status), "message": message},
        "request_id": request_id,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::script::Call;

    fn call(v: Value) -> Call {
        serde_json::from_value(v).expect("call")
    }

    #[test]
    fn toolset_calls_are_one_tool_use_per_member() {
        let turn = Turn {
            calls: vec![
                call(json!({"action": "left_click", "coordinate": [3, 4]})),
                call(json!({"action": "type", "text": "hi"})),
            ],
            end: End::ToolUse,
            text: None,
            ..Turn::text("")
        };
        let c = content(&turn, ToolKind::Toolset);
        assert_eq!(c.len(), 2);
        assert_eq!(c[0]["name"], "left_click");
        assert_eq!(c[0]["input"], json!({"coordinate": [3, 4]}));
        assert_eq!(c[0]["toolset_name"], "computer");
        assert_eq!(c[1]["input"], json!({"text": "hi"}));
        let s = content(&turn, ToolKind::Single);
        assert_eq!(s[0]["name"], "computer");
        assert_eq!(
            s[0]["input"],
            json!({"action": "left_click", "coordinate": [3, 4]})
        );
    }

    #[test]
    fn extra_tool_calls_are_plain_tool_uses() {
        let turn = Turn {
            calls: vec![call(
                json!({"tool": "type_secret", "input": {"name": "site", "field": "password"}}),
            )],
            end: End::ToolUse,
            text: None,
            ..Turn::text("")
        };
        for kind in [ToolKind::Single, ToolKind::Toolset] {
            let c = content(&turn, kind);
            assert_eq!(c[0]["type"], "tool_use");
            assert_eq!(c[0]["name"], "type_secret");
            assert_eq!(c[0]["input"], json!({"name": "site", "field": "password"}));
            assert!(c[0].get("toolset_name").is_none());
        }
    }

    #[test]
    fn stream_reassembles_to_the_message() {
        let turn = Turn {
            thinking: Some("hmm".into()),
            calls: vec![call(
                json!({"action": "scroll", "coordinate": [1, 2], "scroll_direction": "down", "scroll_amount": 3}),
            )],
            end: End::ToolUse,
            ..Turn::text("Scrolling now, a long enough text to split.")
        };
        let ctx = Ctx {
            model: "m".into(),
            input_tokens: 10,
        };
        let msg = message(&turn, ToolKind::Single, &ctx);
        let mut blocks: Vec<Value> = Vec::new();
        let mut partial = String::new();
        for (name, data) in events(&msg) {
            assert_eq!(data["type"], name.as_str());
            match name.as_str() {
                "content_block_start" => blocks.push(data["content_block"].clone()),
                "content_block_delta" => {
                    let b = blocks.last_mut().expect("block");
                    let d = &data["delta"];
                    match d["type"].as_str().expect("type") {
                        "text_delta" => {
                            b["text"] = json!(format!(
                                "{}{}",
                                b["text"].as_str().unwrap_or(""),
                                d["text"].as_str().unwrap_or("")
                            ))
                        }
                        "thinking_delta" => {
                            b["thinking"] = json!(format!(
                                "{}{}",
                                b["thinking"].as_str().unwrap_or(""),
                                d["thinking"].as_str().unwrap_or("")
                            ))
                        }
                        "signature_delta" => b["signature"] = d["signature"].clone(),
                        "input_json_delta" => {
                            partial.push_str(d["partial_json"].as_str().unwrap_or(""))
                        }
                        other => panic!("{other}"),
                    }
                }
                "content_block_stop" if !partial.is_empty() => {
                    let b = blocks.last_mut().expect("block");
                    b["input"] = serde_json::from_str(&partial).expect("json");
                    partial.clear();
                }
                "message_delta" => assert_eq!(data["delta"]["stop_reason"], "tool_use"),
                _ => {}
            }
        }
        assert_eq!(Value::Array(blocks), msg["content"]);
    }
}
