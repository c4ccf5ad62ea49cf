//! Anthropic Messages checks: auth and version headers, computer tool generations against the
//! `anthropic-beta` list, client (custom) tool definitions `{name, description, input_schema}`
//! and unique tool names, message alternation, tool_use/tool_result pairing (and
//! `toolset_name` only for toolset members), images, thinking signatures, cache breakpoints,
//! and the `pause_turn` echo.

use std::collections::HashSet;

use axum::http::HeaderMap;
use serde_json::Value;

use super::{
    Memory, Violation, array, check_image, duplicate, header, object_schema, valid_tool_name,
};
use crate::script::ACTIONS;

/// The required `anthropic-version`.
pub const VERSION: &str = zigral_llm::anthropic::API_VERSION;

/// Validates one request. Auth failures return alone (the real API stops there).
pub fn validate(headers: &HeaderMap, body: &Value, mem: &Memory, key: &str) -> Vec<Violation> {
    match header(headers, "x-api-key") {
        None => return vec![Violation::auth("x-api-key header is required")],
        Some(k) if k != key => return vec![Violation::auth("invalid x-api-key")],
        Some(_) => {}
    }
    let mut v = Vec::new();
    let mut bad = |m: String| v.push(Violation::bad(m));
    match header(headers, "anthropic-version") {
        Some(VERSION) => {}
        Some(other) => bad(format!("anthropic-version: unsupported value {other:?}")),
        None => bad("anthropic-version: header is required".into()),
    }
    if !header(headers, "content-type").is_some_and(|c| c.starts_with("application/json")) {
        bad("content-type: must be application/json".into());
    }
    let betas: Vec<&str> = header(headers, "anthropic-beta")
        .unwrap_or("")
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    if !body["model"].is_string() {
        bad("model: Field required".into());
    }
    if !body["max_tokens"].is_u64() {
        bad("max_tokens: Field required".into());
    }
    for (i, tool) in array(&body["tools"]).iter().enumerate() {
        check_tool(i, tool, &betas, &mut bad);
    }
    if let Some(name) = duplicate(
        array(&body["tools"])
            .iter()
            .filter_map(|t| t["name"].as_str()),
    ) {
        bad(format!(
            "tools: Tool names must be unique ({name:?} is given twice)."
        ));
    }
    let Some(messages) = body["messages"].as_array().filter(|m| !m.is_empty()) else {
        bad("messages: at least one message is required".into());
        return v;
    };
    check_messages(messages, mem, &mut bad);
    let breakpoints = count_key(&body["system"], "cache_control")
        + count_key(&body["tools"], "cache_control")
        + count_key(&body["messages"], "cache_control");
    if breakpoints > 4 {
        bad(format!(
            "A maximum of 4 blocks with cache_control may be provided. Found {breakpoints}."
        ));
    }
    let has_tools = body["tools"].as_array().is_some_and(|t| !t.is_empty());
    if let (Some(paused), true) = (&mem.paused, has_tools) {
        let want = strip_cache_control(paused);
        let echoed = messages.iter().any(|m| {
            m["role"] == "assistant" && strip_cache_control(&as_blocks(&m["content"])) == want
        });
        if !echoed {
            bad(
                "the assistant turn that ended with stop_reason pause_turn was not sent back as-is"
                    .into(),
            );
        }
    }
    v
}

fn check_tool(i: usize, tool: &Value, betas: &[&str], bad: &mut impl FnMut(String)) {
    let ty = tool["type"].as_str().unwrap_or("");
    let need_beta = match ty {
        "computer_20250124" => Some(zigral_llm::anthropic::BETA_COMPUTER_20250124),
        "computer_20251124" => Some(zigral_llm::anthropic::BETA_COMPUTER_20251124),
        _ => None,
    };
    if let Some(beta) = need_beta {
        if !betas.contains(&beta) {
            bad(format!(
                "tools.{i}: tool type {ty:?} requires the anthropic-beta header {beta:?}"
            ));
        }
        if tool["name"] != "computer" {
            bad(format!("tools.{i}.name: must be \"computer\" for {ty}"));
        }
        for f in ["display_width_px", "display_height_px"] {
            if !tool[f].is_u64() {
                bad(format!("tools.{i}.{f}: Field required"));
            }
        }
    } else if ty.starts_with("computer_toolset_") {
        if let Some(b) = betas.iter().find(|b| b.starts_with("computer-use-")) {
            bad(format!(
                "tools.{i}: {ty} is generally available and must not be sent with the beta {b:?}"
            ));
        }
        for f in [
            "name",
            "display_width_px",
            "display_height_px",
            "display_number",
            "enable_zoom",
        ] {
            if tool.get(f).is_some() {
                bad(format!("tools.{i}.{f}: Extra inputs are not permitted"));
            }
        }
        if let Some(configs) = tool["configs"].as_object() {
            for k in configs.keys().filter(|k| !ACTIONS.contains(&k.as_str())) {
                bad(format!("tools.{i}.configs.{k}: unknown toolset member"));
            }
        }
    } else if ty.starts_with("computer_") {
        bad(format!("tools.{i}.type: unknown tool type {ty:?}"));
    } else if tool.get("type").is_none() || ty == "custom" {
        check_custom_tool(i, tool, bad);
    } else if !tool["name"].is_string() {
        bad(format!("tools.{i}.name: Field required"));
    }
}

/// The fields a client tool may carry.
const CUSTOM_TOOL_FIELDS: [&str; 10] = [
    "type",
    "name",
    "description",
    "input_schema",
    "cache_control",
    "strict",
    "input_examples",
    "defer_loading",
    "allowed_callers",
    "eager_input_streaming",
];

/// A client tool: `{"name", "description"?, "input_schema": {"type": "object", ...}}`.
fn check_custom_tool(i: usize, tool: &Value, bad: &mut impl FnMut(String)) {
    match tool["name"].as_str() {
        None => bad(format!("tools.{i}.custom.name: Field required")),
        Some(n) if !valid_tool_name(n) => bad(format!(
            "tools.{i}.custom.name: String should match pattern '^[a-zA-Z0-9_-]{{1,64}}$'"
        )),
        Some(_) => {}
    }
    if tool.get("description").is_some_and(|d| !d.is_string()) {
        bad(format!(
            "tools.{i}.custom.description: Input should be a valid string"
        ));
    }
    match tool.get("input_schema") {
        None => bad(format!("tools.{i}.custom.input_schema: Field required")),
        Some(s) if !object_schema(s) => bad(format!(
            "tools.{i}.custom.input_schema: JSON schema is invalid: the input schema must be of type 'object'"
        )),
        Some(_) => {}
    }
    if let Some(obj) = tool.as_object() {
        for k in obj
            .keys()
            .filter(|k| !CUSTOM_TOOL_FIELDS.contains(&k.as_str()))
        {
            bad(format!(
                "tools.{i}.custom.{k}: Extra inputs are not permitted"
            ));
        }
    }
}

/// A message's content as a block array (a string is one text block).
fn as_blocks(content: &Value) -> Value {
    match content {
        Value::String(s) => serde_json::json!([{"type": "text", "text": s}]),
        other => other.clone(),
    }
}

fn blocks(content: &Value) -> Vec<Value> {
    as_blocks(content).as_array().cloned().unwrap_or_default()
}

fn check_messages(messages: &[Value], mem: &Memory, bad: &mut impl FnMut(String)) {
    if messages[0]["role"] != "user" {
        bad("messages: first message must use the \"user\" role".into());
    }
    let mut prev_uses: Vec<(String, bool)> = Vec::new();
    for (i, m) in messages.iter().enumerate() {
        let role = m["role"].as_str().unwrap_or("");
        if !matches!(role, "user" | "assistant") {
            bad(format!(
                "messages.{i}.role: must be \"user\" or \"assistant\""
            ));
        }
        if i > 0 && messages[i - 1]["role"] == m["role"] {
            bad(format!(
                "messages: roles must alternate between \"user\" and \"assistant\" (messages.{i})"
            ));
        }
        if !(m["content"].is_string() || m["content"].is_array()) {
            bad(format!("messages.{i}.content: Field required"));
        }
        let content = blocks(&m["content"]);
        let last = i + 1 == messages.len();
        let empty = content.is_empty() || m["content"].as_str() == Some("");
        if role == "assistant" && empty && !last {
            bad(format!(
                "messages.{i}: all messages must have non-empty content except for the optional final assistant message"
            ));
        }
        for (j, b) in content.iter().enumerate() {
            check_images(b, &format!("messages.{i}.content.{j}"), bad);
        }
        if role == "user" {
            let mut answered = HashSet::new();
            for (j, b) in content
                .iter()
                .enumerate()
                .filter(|(_, b)| b["type"] == "tool_result")
            {
                let id = b["tool_use_id"].as_str().unwrap_or("");
                match prev_uses.iter().find(|(u, _)| u == id) {
                    None => bad(format!(
                        "messages.{i}.content.{j}: unexpected `tool_use_id` found in `tool_result` blocks: {id}. Each `tool_result` block must have a corresponding `tool_use` block in the previous message."
                    )),
                    Some((_, toolset)) => {
                        let member = *toolset || mem.toolset_ids.contains(id);
                        if member && b["toolset_name"] != "computer" {
                            bad(format!(
                                "messages.{i}.content.{j}: tool_result for toolset tool_use {id} must carry toolset_name \"computer\""
                            ));
                        } else if !member && b.get("toolset_name").is_some() {
                            bad(format!(
                                "messages.{i}.content.{j}: tool_result for tool_use {id} carries a toolset_name, but that tool_use is not a toolset member"
                            ));
                        }
                    }
                }
                answered.insert(id.to_string());
            }
            let missing: Vec<&str> = prev_uses
                .iter()
                .filter(|(u, _)| !answered.contains(u))
                .map(|(u, _)| u.as_str())
                .collect();
            if !missing.is_empty() {
                bad(format!(
                    "messages.{i}: `tool_use` ids were found without `tool_result` blocks immediately after: {}. Each `tool_use` block must have a corresponding `tool_result` block in the next message.",
                    missing.join(", ")
                ));
            }
            prev_uses.clear();
        } else {
            if !prev_uses.is_empty() {
                // Two assistant turns in a row: the alternation check already reported it.
                prev_uses.clear();
            }
            for (j, b) in content.iter().enumerate() {
                match b["type"].as_str().unwrap_or("") {
                    "tool_use" => prev_uses.push((
                        b["id"].as_str().unwrap_or("").to_string(),
                        b["toolset_name"] == "computer",
                    )),
                    "thinking" => {
                        let sig = b["signature"].as_str().unwrap_or("");
                        match mem.signatures.get(sig) {
                            Some(text) if b["thinking"].as_str() == Some(text.as_str()) => {}
                            Some(_) => bad(format!(
                                "messages.{i}.content.{j}: thinking block was modified"
                            )),
                            None => bad(format!(
                                "messages.{i}.content.{j}: Invalid `signature` in `thinking` block"
                            )),
                        }
                    }
                    _ => {}
                }
            }
            if last && !prev_uses.is_empty() {
                let ids: Vec<&str> = prev_uses.iter().map(|(u, _)| u.as_str()).collect();
                bad(format!(
                    "messages.{i}: `tool_use` ids were found without `tool_result` blocks immediately after: {}. Each `tool_use` block must have a corresponding `tool_result` block in the next message.",
                    ids.join(", ")
                ));
            }
        }
    }
}

fn check_images(block: &Value, at: &str, bad: &mut impl FnMut(String)) {
    match block["type"].as_str() {
        Some("image") => {
            let src = &block["source"];
            if src["type"] != "base64" {
                bad(format!("{at}.source.type: must be \"base64\""));
                return;
            }
            let mt = src["media_type"].as_str().unwrap_or("");
            if let Err(e) = check_image(mt, src["data"].as_str().unwrap_or("")) {
                bad(format!("{at}.source: {e}"));
            }
        }
        Some("tool_result") => {
            for (k, b) in blocks(&block["content"]).iter().enumerate() {
                check_images(b, &format!("{at}.content.{k}"), bad);
            }
        }
        _ => {}
    }
}

/// How many objects below `v` have the key `key`.
pub fn count_key(v: &Value, key: &str) -> usize {
    match v {
        Value::Object(o) => {
            usize::from(o.contains_key(key)) + o.values().map(|v| count_key(v, key)).sum::<usize>()
        }
        Value::Array(a) => a.iter().map(|v| count_key(v, key)).sum(),
        _ => 0,
    }
}

fn strip_cache_control(v: &Value) -> Value {
    match v {
        Value::Object(o) => Value::Object(
            o.iter()
                .filter(|(k, _)| k.as_str() != "cache_control")
                .map(|(k, v)| (k.clone(), strip_cache_control(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(strip_cache_control).collect()),
        other => other.clone(),
    }
}
