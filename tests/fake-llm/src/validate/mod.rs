//! Request validation: each family module checks headers and body the way the real provider
//! does (plus the conversation rules the agent loop must keep), and returns the failures as
//! [`Violation`]s. The server answers the first failure with the provider's real error body.

pub mod anthropic;
pub mod chat;
pub mod responses;

use std::collections::{HashMap, HashSet};

use axum::http::HeaderMap;
use base64::Engine;
use serde_json::Value;

/// One failed check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// The status the real provider answers (401 for auth, else 400).
    pub status: u16,
    /// What is wrong, worded like the provider's message where known.
    pub message: String,
}

impl Violation {
    /// A 400 invalid request.
    pub fn bad(message: impl Into<String>) -> Violation {
        Violation {
            status: 400,
            message: message.into(),
        }
    }

    /// A 401 authentication failure.
    pub fn auth(message: impl Into<String>) -> Violation {
        Violation {
            status: 401,
            message: message.into(),
        }
    }
}

/// What the fake emitted earlier that later requests must echo or answer.
#[derive(Debug, Default)]
pub struct Memory {
    /// Anthropic thinking signatures the fake sent → their thinking text.
    pub signatures: HashMap<String, String>,
    /// Anthropic tool_use ids the fake sent as toolset members.
    pub toolset_ids: HashSet<String>,
    /// The content of the last Anthropic `pause_turn` reply, until a request sends it back.
    pub paused: Option<Value>,
    /// Every Responses `computer_call` `call_id` the fake emitted.
    pub responses_emitted: HashSet<String>,
    /// Every Responses `function_call` `call_id` the fake emitted (extra tool calls).
    pub responses_functions: HashSet<String>,
    /// Responses `call_id`s of the last reply that the next request must answer.
    pub responses_outstanding: Vec<String>,
    /// Pending safety checks per Responses `call_id`.
    pub safety_checks: HashMap<String, Vec<Value>>,
}

/// The header's value as a string ("" when absent or not ASCII).
pub fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// Checks an OpenAI-style `Authorization: Bearer <key>` header.
pub fn bearer(headers: &HeaderMap, key: &str) -> Option<Violation> {
    match header(headers, "authorization") {
        None => Some(Violation::auth(
            "You didn't provide an API key. You need to provide your API key in an Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
        )),
        Some(v) if v.strip_prefix("Bearer ") == Some(key) => None,
        Some(_) => Some(Violation::auth("Incorrect API key provided.")),
    }
}

/// The checks both OpenAI families start with: Bearer auth, then a string `model`. An auth
/// failure comes back alone as `Err` (the real API stops there); `Ok` holds the failures so far.
pub fn openai_basics(
    headers: &HeaderMap,
    body: &Value,
    key: &str,
) -> Result<Vec<Violation>, Violation> {
    if let Some(v) = bearer(headers, key) {
        return Err(v);
    }
    let mut v = Vec::new();
    if !body["model"].is_string() {
        v.push(Violation::bad("Missing required parameter: 'model'."));
    }
    Ok(v)
}

/// Whether `name` is a valid tool name: `^[a-zA-Z0-9_-]{1,64}$`.
pub fn valid_tool_name(name: &str) -> bool {
    zigral_llm::valid_tool_name(name)
}

/// The names of the tools a request declares besides the computer tool, which scripted
/// `{"tool": name}` calls may use: Anthropic client tools (no `type`, or `"custom"`), Responses
/// and Chat function tools.
pub fn declared_tools(family: crate::Family, body: &Value) -> HashSet<String> {
    array(&body["tools"])
        .iter()
        .filter_map(|t| {
            let name = match family {
                crate::Family::Anthropic => match t["type"].as_str() {
                    None | Some("custom") => t["name"].as_str(),
                    Some(_) => None,
                },
                crate::Family::Responses => (t["type"] == "function")
                    .then(|| t["name"].as_str())
                    .flatten(),
                crate::Family::Chat => (t["type"] == "function")
                    .then(|| t["function"]["name"].as_str())
                    .flatten(),
            };
            name.map(str::to_string)
        })
        .collect()
}

/// Whether `schema` is a JSON Schema of an object (`{"type": "object", ...}`).
pub fn object_schema(schema: &Value) -> bool {
    schema.is_object() && schema["type"] == "object"
}

/// The first name given twice, if any.
pub fn duplicate<'a>(names: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let mut seen = HashSet::new();
    names.into_iter().find(|n| !seen.insert(*n))
}

/// The elements of a JSON array; none for anything else (absent fields included).
pub fn array(v: &Value) -> &[Value] {
    v.as_array().map(Vec::as_slice).unwrap_or(&[])
}

/// The accepted image media types.
pub const MEDIA_TYPES: [&str; 3] = ["image/png", "image/jpeg", "image/webp"];

/// Checks base64 image data: the media type is accepted, the data decodes, and its magic bytes
/// match the media type (the real APIs reject a mismatch).
pub fn check_image(media_type: &str, data: &str) -> Result<(), String> {
    if !MEDIA_TYPES.contains(&media_type) {
        return Err(format!(
            "image media_type {media_type:?} is not one of image/png, image/jpeg, image/webp"
        ));
    }
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(data)
        .map_err(|e| format!("image data is not valid base64: {e}"))?;
    let ok = match media_type {
        "image/png" => bytes.starts_with(b"\x89PNG\r\n\x1a\n"),
        "image/jpeg" => bytes.starts_with(b"\xff\xd8\xff"),
        _ => bytes.len() >= 12 && &bytes[0..4] == b"RIFF" && &bytes[8..12] == b"WEBP",
    };
    if ok {
        Ok(())
    } else {
        Err(format!(
            "Image does not match the provided media type {media_type}"
        ))
    }
}

/// Checks a `data:image/...;base64,...` URL.
pub fn check_data_url(url: &str) -> Result<(), String> {
    let rest = url
        .strip_prefix("data:")
        .ok_or_else(|| format!("image URL must be a data: URL, got {:.40}", url))?;
    let (mime, data) = rest
        .split_once(";base64,")
        .ok_or("image data URL must be data:<media type>;base64,<data>")?;
    check_image(mime, data)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn images_must_decode_and_match_their_type() {
        let png = base64::engine::general_purpose::STANDARD.encode(b"\x89PNG\r\n\x1a\nrest");
        assert!(check_image("image/png", &png).is_ok());
        assert!(check_image("image/jpeg", &png).is_err());
        assert!(check_image("image/gif", &png).is_err());
        assert!(check_image("image/png", "not base64!").is_err());
        assert!(check_data_url(&format!("data:image/png;base64,{png}")).is_ok());
        assert!(check_data_url("https://example.com/a.png").is_err());
    }

    #[test]
    fn declared_tools_per_family() {
        let a = serde_json::json!({"tools": [
            {"type": "computer_20251124", "name": "computer"},
            {"name": "type_secret", "input_schema": {"type": "object"}},
            {"type": "custom", "name": "ask", "input_schema": {"type": "object"}},
        ]});
        let names = declared_tools(crate::Family::Anthropic, &a);
        assert_eq!(names.len(), 2);
        assert!(names.contains("type_secret") && names.contains("ask"));
        let r = serde_json::json!({"tools": [{"type": "computer"},
            {"type": "function", "name": "type_secret", "parameters": {"type": "object"}}]});
        assert_eq!(
            declared_tools(crate::Family::Responses, &r),
            HashSet::from(["type_secret".to_string()])
        );
        let c = serde_json::json!({"tools": [{"type": "function",
            "function": {"name": "type_secret", "parameters": {"type": "object"}}}]});
        assert_eq!(
            declared_tools(crate::Family::Chat, &c),
            HashSet::from(["type_secret".to_string()])
        );
        assert_eq!(duplicate(["a", "b", "a"]), Some("a"));
        assert_eq!(duplicate(["a", "b"]), None);
    }

    #[test]
    fn openai_auth_failure_stands_alone_then_model_is_required() {
        let no_model = serde_json::json!({"messages": []});
        let auth = openai_basics(&HeaderMap::new(), &no_model, "k").expect_err("no key");
        assert_eq!(auth.status, 401);
        let mut headers = HeaderMap::new();
        headers.insert(
            "authorization",
            axum::http::HeaderValue::from_static("Bearer k"),
        );
        let v = openai_basics(&headers, &no_model, "k").expect("authorized");
        assert_eq!(
            v,
            vec![Violation::bad("Missing required parameter: 'model'.")]
        );
        let ok = serde_json::json!({"model": "m"});
        assert_eq!(openai_basics(&headers, &ok, "k"), Ok(vec![]));
    }
}
