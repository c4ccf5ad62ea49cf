//! OpenAI-compatible Chat Completions wire types (`POST /v1/chat/completions`) as vLLM, Ollama
//! and llama.cpp speak them, used in both directions (client and fake provider server).
//!
//! Computer actions are ordinary function tools here; tool messages carry text only, so
//! screenshots travel in a following user message as `image_url` data-URL parts.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

pub use crate::responses::{ErrorDetail, ErrorResponse};

/// `POST /v1/chat/completions` body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct ChatRequest {
    pub model: String,
    pub messages: Vec<ChatMessage>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tools: Vec<ToolDef>,
    /// `"auto"`, `"none"`, `"required"` or `{"type":"function","function":{"name"}}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_choice: Option<Value>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub stream: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream_options: Option<StreamOptions>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u32>,
    /// Other fields (temperature, ...).
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `{"include_usage": true}` makes the last stream chunk carry usage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct StreamOptions {
    pub include_usage: bool,
}

/// A message, tagged by `role`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "role", rename_all = "lowercase")]
pub enum ChatMessage {
    System {
        content: MessageContent,
    },
    User {
        content: MessageContent,
    },
    Assistant {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        content: Option<String>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        tool_calls: Vec<ToolCall>,
        /// `reasoning_content` and other server extras, kept verbatim.
        #[serde(flatten)]
        extra: Map<String, Value>,
    },
    Tool {
        tool_call_id: String,
        content: String,
    },
}

/// A string, or a list of parts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum MessageContent {
    Text(String),
    Parts(Vec<ContentPart>),
}

/// A content part.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ContentPart {
    Text { text: String },
    ImageUrl { image_url: ImageUrl },
}

/// `{"url": "data:image/png;base64,...", "detail"?}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageUrl {
    pub url: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// `{"type":"function","function":{name, description, parameters}}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolDef {
    /// Always `"function"`.
    #[serde(rename = "type")]
    pub kind: String,
    pub function: FunctionDef,
}

impl ToolDef {
    /// A function tool.
    pub fn function(name: &str, description: &str, parameters: Value) -> ToolDef {
        ToolDef {
            kind: "function".into(),
            function: FunctionDef {
                name: name.into(),
                description: Some(description.into()),
                parameters,
            },
        }
    }
}

/// A function's name, description and JSON-Schema parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FunctionDef {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub parameters: Value,
}

/// An assistant tool call; `arguments` is a JSON **string**.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ToolCall {
    pub id: String,
    /// Always `"function"`.
    #[serde(rename = "type", default = "function_type")]
    pub kind: String,
    pub function: FunctionCall,
}

fn function_type() -> String {
    "function".into()
}

/// `{name, arguments}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FunctionCall {
    pub name: String,
    pub arguments: String,
}

/// Token usage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct ChatUsage {
    #[serde(default)]
    pub prompt_tokens: u64,
    #[serde(default)]
    pub completion_tokens: u64,
    #[serde(default)]
    pub total_tokens: u64,
}

/// A non-streamed reply.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct ChatResponse {
    pub id: String,
    pub choices: Vec<Choice>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<ChatUsage>,
    /// object, created, model, ...
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// One choice of a reply.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Choice {
    #[serde(default)]
    pub index: u32,
    pub message: ResponseMessage,
    /// `stop`, `length`, `tool_calls`, `content_filter`, `function_call`.
    #[serde(default)]
    pub finish_reason: Option<String>,
}

/// The assistant message of a reply.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResponseMessage {
    pub role: String,
    #[serde(default)]
    pub content: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<ToolCall>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// One streamed chunk (`data: {...}`); the stream ends with `data: [DONE]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct ChatChunk {
    #[serde(default)]
    pub id: String,
    #[serde(default)]
    pub choices: Vec<ChunkChoice>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<ChatUsage>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// A choice of a chunk.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct ChunkChoice {
    #[serde(default)]
    pub index: u32,
    #[serde(default)]
    pub delta: ChunkDelta,
    #[serde(default)]
    pub finish_reason: Option<String>,
}

/// `choices[i].delta`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct ChunkDelta {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<ToolCallDelta>,
}

/// A tool call fragment: accumulate by `index`; `arguments` fragments concatenate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct ToolCallDelta {
    pub index: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub function: Option<FunctionDelta>,
}

/// `{name?, arguments?}` of a fragment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct FunctionDelta {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arguments: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire_test::round_trip;
    use serde_json::json;

    #[test]
    fn request_with_every_message_kind_round_trips() {
        let r: ChatRequest = round_trip(json!({"model":"qwen","messages":[
            {"role":"system","content":"sys"},
            {"role":"user","content":[{"type":"text","text":"look"},
                {"type":"image_url","image_url":{"url":"data:image/png;base64,AAAA"}}]},
            {"role":"assistant","tool_calls":[{"id":"call_x","type":"function",
                "function":{"name":"left_click","arguments":"{\"x\":1,\"y\":2}"}}]},
            {"role":"tool","tool_call_id":"call_x","content":"clicked"}],
            "tools":[{"type":"function","function":{"name":"left_click","description":"click",
                "parameters":{"type":"object","properties":{"x":{"type":"integer"}}}}}],
            "tool_choice":"auto","stream":true,"stream_options":{"include_usage":true},"max_tokens":1024}));
        let ChatMessage::Assistant { tool_calls, .. } = &r.messages[2] else {
            panic!()
        };
        let args: Value = serde_json::from_str(&tool_calls[0].function.arguments).expect("json");
        assert_eq!(args["y"], 2);
    }

    #[test]
    fn response_and_chunks_round_trip() {
        let r: ChatResponse = round_trip(json!({"id":"chatcmpl-1","object":"chat.completion",
            "choices":[{"index":0,"message":{"role":"assistant","content":null,"tool_calls":[
                {"id":"call_x","type":"function","function":{"name":"screenshot","arguments":"{}"}}]},
                "finish_reason":"tool_calls"}],"usage":{"prompt_tokens":9,"completion_tokens":3,"total_tokens":12}}));
        assert_eq!(r.choices[0].finish_reason.as_deref(), Some("tool_calls"));
        let c: ChatChunk = round_trip(
            json!({"id":"c","choices":[{"index":0,"delta":{"tool_calls":[
            {"index":0,"id":"call_x","type":"function","function":{"name":"left_click","arguments":"{\"x\""}}]},
            "finish_reason":null}]}),
        );
        assert_eq!(c.choices[0].delta.tool_calls[0].index, 0);
        let c: ChatChunk = round_trip(
            json!({"id":"c","choices":[],"usage":{"prompt_tokens":1,"completion_tokens":2,"total_tokens":3}}),
        );
        assert_eq!(c.usage.map(|u| u.completion_tokens), Some(2));
    }
}
