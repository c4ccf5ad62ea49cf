//! Chat Completions checks: Bearer auth, function tools (name pattern, unique names, JSON-schema
//! object parameters), every
//! assistant `tool_call` answered by the `tool` messages right after it, tool content as text,
//! and images only in user messages as data URLs.

use axum::http::HeaderMap;
use serde_json::Value;

use super::{Violation, array, check_data_url, duplicate, openai_basics, valid_tool_name};

/// Validates one request.
pub fn validate(headers: &HeaderMap, body: &Value, key: &str) -> Vec<Violation> {
    let mut v = match openai_basics(headers, body, key) {
        Ok(v) => v,
        Err(auth) => return vec![auth],
    };
    let mut bad = |m: String| v.push(Violation::bad(m));
    for (i, tool) in array(&body["tools"]).iter().enumerate() {
        if tool["type"] != "function" {
            bad(format!(
                "Invalid value for 'tools[{i}].type': expected 'function'."
            ));
        }
        match tool["function"]["name"].as_str() {
            None | Some("") => bad(format!(
                "Missing required parameter: 'tools[{i}].function.name'."
            )),
            Some(n) if !valid_tool_name(n) => bad(format!(
                "Invalid 'tools[{i}].function.name': string does not match pattern. Expected a string that matches the pattern '^[a-zA-Z0-9_-]+$'."
            )),
            Some(_) => {}
        }
        let params = &tool["function"]["parameters"];
        if !(params.is_object() && params["type"] == "object") {
            bad(format!(
                "Invalid schema for function at 'tools[{i}].function.parameters': expected a JSON schema of type 'object'."
            ));
        }
    }
    let names = array(&body["tools"])
        .iter()
        .filter_map(|t| t["function"]["name"].as_str());
    if let Some(name) = duplicate(names) {
        bad(format!("Duplicate function name in 'tools': '{name}'."));
    }
    let Some(messages) = body["messages"].as_array().filter(|m| !m.is_empty()) else {
        bad("Missing required parameter: 'messages'.".into());
        return v;
    };
    // Ids of the last assistant tool_calls still waiting for tool messages.
    let mut pending: Vec<String> = Vec::new();
    let mut after_calls = false;
    for (i, m) in messages.iter().enumerate() {
        let role = m["role"].as_str().unwrap_or("");
        if role != "tool" && !pending.is_empty() {
            bad(format!(
                "An assistant message with 'tool_calls' must be followed by tool messages responding to each 'tool_call_id'. The following tool_call_ids did not have response messages: {} (messages[{i}]).",
                pending.join(", ")
            ));
            pending.clear();
        }
        match role {
            "tool" => {
                let id = m["tool_call_id"].as_str().unwrap_or("");
                if !after_calls {
                    bad(format!(
                        "Invalid parameter: messages with role 'tool' must be a response to a preceeding message with 'tool_calls' (messages[{i}])."
                    ));
                } else if let Some(p) = pending.iter().position(|x| x == id) {
                    pending.remove(p);
                } else {
                    bad(format!(
                        "Invalid parameter: 'tool_call_id' of '{id}' not found in 'tool_calls' of previous message (messages[{i}])."
                    ));
                }
                let text_only = match &m["content"] {
                    Value::String(_) => true,
                    Value::Array(parts) => parts.iter().all(|p| p["type"] == "text"),
                    _ => false,
                };
                if !text_only {
                    bad(format!(
                        "Invalid 'messages[{i}].content': tool message content must be a string or an array of text parts."
                    ));
                }
                continue;
            }
            "assistant" => {
                pending = m["tool_calls"]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .filter_map(|c| c["id"].as_str().map(String::from))
                            .collect()
                    })
                    .unwrap_or_default();
                after_calls = !pending.is_empty();
            }
            "user" | "system" | "developer" => after_calls = false,
            other => bad(format!(
                "Invalid value for 'messages[{i}].role': {other:?}."
            )),
        }
        for (j, part) in array(&m["content"]).iter().enumerate() {
            if part["type"] != "image_url" {
                continue;
            }
            if role != "user" {
                bad(format!(
                    "Invalid 'messages[{i}].content[{j}]': image_url parts are only allowed in user messages."
                ));
            } else if let Err(e) = check_data_url(part["image_url"]["url"].as_str().unwrap_or("")) {
                bad(format!("messages[{i}].content[{j}].image_url.url: {e}"));
            }
        }
    }
    if !pending.is_empty() {
        bad(format!(
            "An assistant message with 'tool_calls' must be followed by tool messages responding to each 'tool_call_id'. The following tool_call_ids did not have response messages: {}.",
            pending.join(", ")
        ));
    }
    v
}
