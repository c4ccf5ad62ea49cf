//! Chat Completions rendering: a [`Turn`] becomes a `chat.completion` (tool calls are functions
//! named after the action, or the extra tool's name, with JSON-string arguments) and its
//! `chat.completion.chunk` stream.

use serde_json::{Map, Value, json};

use super::{Ctx, End, Turn, chunks, now_secs, output_tokens, rand_id};
use crate::script::Call;

/// Function arguments of a call: the input minus `action`, points split into `x`/`y`
/// (`start_coordinate` → `start_x`/`start_y`); an extra tool call's input as is.
pub fn arguments(call: &Call) -> Map<String, Value> {
    if call.tool().is_some() {
        return call.tool_input();
    }
    let mut out = Map::new();
    for (k, v) in call.member_input() {
        let pt = v
            .as_array()
            .filter(|a| a.len() == 2)
            .map(|a| (a[0].clone(), a[1].clone()));
        match (k.as_str(), pt) {
            ("coordinate", Some((x, y))) => {
                out.insert("x".into(), x);
                out.insert("y".into(), y);
            }
            ("start_coordinate", Some((x, y))) => {
                out.insert("start_x".into(), x);
                out.insert("start_y".into(), y);
            }
            _ => {
                out.insert(k, v);
            }
        }
    }
    out
}

/// The `tool_calls` of a turn (a malformed turn gets arguments that are not JSON).
pub fn tool_calls(turn: &Turn) -> Vec<Value> {
    turn.calls
        .iter()
        .map(|c| {
            let args = if turn.malformed {
                "{\"x\": 1, \"y\":".to_string()
            } else {
                Value::Object(arguments(c)).to_string()
            };
            json!({
                "id": rand_id("call_", 24), "type": "function",
                "function": {"name": c.tool().unwrap_or(c.action()), "arguments": args},
            })
        })
        .collect()
}

/// The `finish_reason` of a turn.
pub fn finish_reason(end: End) -> &'static str {
    match end {
        End::ToolUse => "tool_calls",
        End::MaxTokens => "length",
        End::EndTurn | End::PauseTurn | End::Refusal => "stop",
    }
}

/// The non-streaming `chat.completion` body.
pub fn completion(turn: &Turn, ctx: &Ctx) -> Value {
    let calls = tool_calls(turn);
    let mut message = json!({"role": "assistant", "content": null, "refusal": null});
    match (turn.end, &turn.text) {
        (End::Refusal, Some(t)) => message["refusal"] = json!(t),
        (_, Some(t)) => message["content"] = json!(t),
        _ => {}
    }
    if !calls.is_empty() {
        message["tool_calls"] = Value::Array(calls);
    }
    let out = output_tokens(&message);
    json!({
        "id": rand_id("chatcmpl-", 24),
        "object": "chat.completion",
        "created": now_secs(),
        "model": ctx.model,
        "choices": [{"index": 0, "message": message, "finish_reason": finish_reason(turn.end), "logprobs": null}],
        "usage": {"prompt_tokens": ctx.input_tokens, "completion_tokens": out, "total_tokens": ctx.input_tokens + out},
    })
}

/// The chunk payloads (each sent as `data: <json>`) that stream `completion`; the usage chunk
/// only when `include_usage`. The caller adds `data: [DONE]`.
pub fn chunks_of(completion: &Value, include_usage: bool) -> Vec<Value> {
    let chunk = |delta: Value, finish: Value| {
        json!({
            "id": completion["id"], "object": "chat.completion.chunk",
            "created": completion["created"], "model": completion["model"],
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": null}],
        })
    };
    let msg = &completion["choices"][0]["message"];
    let mut out = vec![chunk(
        json!({"role": "assistant", "content": ""}),
        Value::Null,
    )];
    if let Some(t) = msg["content"].as_str() {
        for piece in chunks(t, 16) {
            out.push(chunk(json!({"content": piece}), Value::Null));
        }
    }
    if let Some(r) = msg["refusal"].as_str() {
        for piece in chunks(r, 16) {
            out.push(chunk(json!({"refusal": piece}), Value::Null));
        }
    }
    for (index, call) in msg["tool_calls"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .enumerate()
    {
        out.push(chunk(
            json!({"tool_calls": [{
                "index": index, "id": call["id"], "type": "function",
                "function": {"name": call["function"]["name"], "arguments": ""},
            }]}),
            Value::Null,
        ));
        for piece in chunks(call["function"]["arguments"].as_str().unwrap_or(""), 10) {
            out.push(chunk(
                json!({"tool_calls": [{"index": index, "function": {"arguments": piece}}]}),
                Value::Null,
            ));
        }
    }
    out.push(chunk(
        json!({}),
        completion["choices"][0]["finish_reason"].clone(),
    ));
    if include_usage {
        out.push(json!({
            "id": completion["id"], "object": "chat.completion.chunk",
            "created": completion["created"], "model": completion["model"],
            "choices": [], "usage": completion["usage"],
        }));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coordinates_become_x_y_and_arguments_are_a_json_string() {
        let call: Call = serde_json::from_value(
            json!({"action": "left_click_drag", "start_coordinate": [1, 2], "coordinate": [3, 4]}),
        )
        .expect("call");
        let turn = Turn {
            calls: vec![call],
            end: End::ToolUse,
            text: None,
            ..Turn::text("")
        };
        let tc = tool_calls(&turn);
        assert_eq!(tc[0]["function"]["name"], "left_click_drag");
        let args: Value =
            serde_json::from_str(tc[0]["function"]["arguments"].as_str().expect("string"))
                .expect("json");
        assert_eq!(args, json!({"start_x": 1, "start_y": 2, "x": 3, "y": 4}));
    }

    #[test]
    fn extra_tool_calls_keep_their_name_and_input() {
        let call: Call = serde_json::from_value(
            json!({"tool": "type_secret", "input": {"name": "site", "coordinate": [1, 2]}}),
        )
        .expect("call");
        let turn = Turn {
            calls: vec![call],
            end: End::ToolUse,
            text: None,
            ..Turn::text("")
        };
        let tc = tool_calls(&turn);
        assert_eq!(tc[0]["function"]["name"], "type_secret");
        let args: Value =
            serde_json::from_str(tc[0]["function"]["arguments"].as_str().expect("string"))
                .expect("json");
        assert_eq!(args, json!({"name": "site", "coordinate": [1, 2]}));
    }
}
