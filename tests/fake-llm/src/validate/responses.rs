//! OpenAI Responses checks: Bearer auth, the computer tool generations (preview fields and
//! `truncation: "auto"`, GA exactly `{"type":"computer"}`), function tools (name pattern,
//! object schema, unique names), every emitted `computer_call` answered by a
//! `computer_call_output` carrying a screenshot data URL, every `function_call` by a
//! `function_call_output` with a string output, and pending safety checks acknowledged.

use std::collections::HashSet;

use axum::http::HeaderMap;
use serde_json::Value;

use super::{
    Memory, Violation, array, check_data_url, duplicate, object_schema, openai_basics,
    valid_tool_name,
};

const ENVIRONMENTS: [&str; 5] = ["windows", "mac", "linux", "ubuntu", "browser"];

/// Validates one request; `has_tools` is false for summarization requests, which need not
/// answer outstanding calls.
pub fn validate(
    headers: &HeaderMap,
    body: &Value,
    mem: &Memory,
    key: &str,
    has_tools: bool,
) -> Vec<Violation> {
    let mut v = match openai_basics(headers, body, key) {
        Ok(v) => v,
        Err(auth) => return vec![auth],
    };
    let mut bad = |m: String| v.push(Violation::bad(m));
    for (i, tool) in array(&body["tools"]).iter().enumerate() {
        match tool["type"].as_str().unwrap_or("") {
            "computer_use_preview" => {
                for f in ["display_width", "display_height"] {
                    if !tool[f].is_u64() {
                        bad(format!("Missing required parameter: 'tools[{i}].{f}'."));
                    }
                }
                if !tool["environment"]
                    .as_str()
                    .is_some_and(|e| ENVIRONMENTS.contains(&e))
                {
                    bad(format!(
                        "Invalid value for 'tools[{i}].environment': expected one of windows, mac, linux, ubuntu, browser."
                    ));
                }
                if body["truncation"] != "auto" {
                    bad(
                        "The computer_use_preview tool requires 'truncation' to be set to 'auto'."
                            .into(),
                    );
                }
            }
            "computer" if tool.as_object().is_some_and(|o| o.len() != 1) => {
                bad(format!(
                    "Unknown parameter in 'tools[{i}]': the computer tool takes no fields besides 'type'."
                ));
            }
            "function" => {
                match tool["name"].as_str() {
                    None => bad(format!("Missing required parameter: 'tools[{i}].name'.")),
                    Some(n) if !valid_tool_name(n) => bad(format!(
                        "Invalid 'tools[{i}].name': string does not match pattern. Expected a string that matches the pattern '^[a-zA-Z0-9_-]+$'."
                    )),
                    Some(_) => {}
                }
                if !object_schema(&tool["parameters"]) {
                    bad(format!(
                        "Invalid schema for function at 'tools[{i}].parameters': schema must be a JSON Schema of 'type: \"object\"'."
                    ));
                }
            }
            _ => {}
        }
    }
    let function_names = array(&body["tools"])
        .iter()
        .filter(|t| t["type"] == "function")
        .filter_map(|t| t["name"].as_str());
    if let Some(name) = duplicate(function_names) {
        bad(format!("Duplicate tool name: '{name}'."));
    }
    let items: Vec<Value> = match &body["input"] {
        Value::String(_) => Vec::new(),
        Value::Array(a) => a.clone(),
        _ => {
            bad("Missing required parameter: 'input'.".into());
            Vec::new()
        }
    };
    let mut calls_in_input: Vec<String> = Vec::new();
    let mut functions_in_input: Vec<String> = Vec::new();
    let mut answered: HashSet<String> = HashSet::new();
    for (i, item) in items.iter().enumerate() {
        match item["type"].as_str().unwrap_or("") {
            "computer_call" => {
                calls_in_input.push(item["call_id"].as_str().unwrap_or("").to_string())
            }
            "function_call" => {
                functions_in_input.push(item["call_id"].as_str().unwrap_or("").to_string())
            }
            "function_call_output" => {
                let id = item["call_id"].as_str().unwrap_or("").to_string();
                if !functions_in_input.contains(&id) && !mem.responses_functions.contains(&id) {
                    bad(format!(
                        "No tool call found for function call output with call_id {id}."
                    ));
                }
                let output_ok = match &item["output"] {
                    Value::String(_) => true,
                    Value::Array(parts) => parts.iter().all(|p| {
                        matches!(
                            p["type"].as_str(),
                            Some("input_text" | "input_image" | "input_file")
                        )
                    }),
                    _ => false,
                };
                if !output_ok {
                    bad(format!(
                        "Invalid type for 'input[{i}].output': expected a string or an array of input content parts."
                    ));
                }
                answered.insert(id);
            }
            "computer_call_output" => {
                let id = item["call_id"].as_str().unwrap_or("").to_string();
                if !calls_in_input.contains(&id) && !mem.responses_emitted.contains(&id) {
                    bad(format!(
                        "No tool call found for computer call output with call_id {id}."
                    ));
                }
                let out = &item["output"];
                match out["type"].as_str() {
                    Some("computer_screenshot" | "input_image") => {
                        if let Err(e) = check_data_url(out["image_url"].as_str().unwrap_or("")) {
                            bad(format!("input[{i}].output.image_url: {e}"));
                        }
                    }
                    other => bad(format!(
                        "Invalid value for 'input[{i}].output.type': expected 'computer_screenshot', got {other:?}."
                    )),
                }
                let acked: HashSet<&str> = item["acknowledged_safety_checks"]
                    .as_array()
                    .map(|a| a.iter().filter_map(|c| c["id"].as_str()).collect())
                    .unwrap_or_default();
                for check in mem.safety_checks.get(&id).map(Vec::as_slice).unwrap_or(&[]) {
                    let cid = check["id"].as_str().unwrap_or("");
                    if !acked.contains(cid) {
                        bad(format!(
                            "input[{i}]: pending safety check {cid} of call {id} was not acknowledged in acknowledged_safety_checks."
                        ));
                    }
                }
                answered.insert(id);
            }
            "message" => check_message_images(i, item, &mut bad),
            "" if item.get("role").is_some() => check_message_images(i, item, &mut bad),
            _ => {}
        }
    }
    for id in &calls_in_input {
        if !answered.contains(id) {
            bad(format!("No tool output found for computer call {id}."));
        }
    }
    for id in &functions_in_input {
        if !answered.contains(id) {
            bad(format!("No tool output found for function call {id}."));
        }
    }
    if has_tools {
        for id in &mem.responses_outstanding {
            let in_input = calls_in_input.contains(id) || functions_in_input.contains(id);
            if !answered.contains(id) && !in_input {
                let kind = if mem.responses_functions.contains(id) {
                    "function"
                } else {
                    "computer"
                };
                bad(format!("No tool output found for {kind} call {id}."));
            }
        }
    }
    v
}

fn check_message_images(i: usize, item: &Value, bad: &mut impl FnMut(String)) {
    for (j, part) in array(&item["content"]).iter().enumerate() {
        if part["type"] == "input_image" {
            let url = part["image_url"].as_str().unwrap_or("");
            if url.starts_with("data:")
                && let Err(e) = check_data_url(url)
            {
                bad(format!("input[{i}].content[{j}].image_url: {e}"));
            }
        }
    }
}
