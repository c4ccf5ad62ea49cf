//! Anthropic Messages API wire types (`POST /v1/messages`), used in both directions: the client
//! serializes requests and parses responses/stream events, the fake provider server does the
//! opposite, so both speak the same bytes.
//!
//! Assistant turns must go back to the API verbatim (thinking signatures, `toolset_name`,
//! blocks this crate does not know), so every block keeps fields it does not model in `extra`,
//! and unknown block types round-trip as [`ContentBlock::Other`].

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};

/// `anthropic-version` header value the official SDKs send.
pub const API_VERSION: &str = "2023-06-01";
/// Beta flag for the `computer_20250124` tool.
pub const BETA_COMPUTER_20250124: &str = "computer-use-2025-01-24";
/// Beta flag for the `computer_20251124` tool.
pub const BETA_COMPUTER_20251124: &str = "computer-use-2025-11-24";
/// The 17 members of `computer_toolset_20260801`.
pub const TOOLSET_MEMBERS: [&str; 17] = [
    "cursor_position",
    "double_click",
    "hold_key",
    "key",
    "left_click",
    "left_click_drag",
    "left_mouse_down",
    "left_mouse_up",
    "middle_click",
    "mouse_move",
    "right_click",
    "screenshot",
    "scroll",
    "triple_click",
    "type",
    "wait",
    "zoom",
];
/// `toolset_name` of computer toolset members.
pub const COMPUTER_TOOLSET: &str = "computer";

/// A prompt-cache breakpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CacheControl {
    /// Always `"ephemeral"` today.
    #[serde(rename = "type")]
    pub kind: String,
    /// Optional TTL (`"5m"`, `"1h"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl: Option<String>,
}

impl CacheControl {
    /// `{"type":"ephemeral"}`.
    pub fn ephemeral() -> CacheControl {
        CacheControl {
            kind: "ephemeral".into(),
            ttl: None,
        }
    }
}

/// `POST /v1/messages` body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct MessagesRequest {
    pub model: String,
    pub max_tokens: u32,
    /// System prompt as text blocks (so it can carry `cache_control`).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "system_blocks"
    )]
    pub system: Option<Vec<TextBlock>>,
    pub messages: Vec<Message>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tools: Vec<Tool>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub stream: bool,
    /// `{"type":"adaptive"}` or `{"type":"enabled","budget_tokens":N}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thinking: Option<Value>,
    /// e.g. `{"effort":"high"}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_config: Option<Value>,
    /// Any other request field (temperature, metadata, context_management, ...).
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `"user"` or `"assistant"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    User,
    Assistant,
}

/// One conversation turn.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    pub role: Role,
    /// Content blocks; a plain string on the wire is read as one text block.
    #[serde(deserialize_with = "blocks_or_string")]
    pub content: Vec<ContentBlock>,
}

/// A content block. Unknown `type`s (and known ones that fail to parse) are kept verbatim.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ContentBlock {
    Text(TextBlock),
    Image(ImageBlock),
    ToolUse(ToolUseBlock),
    ToolResult(ToolResultBlock),
    Thinking(ThinkingBlock),
    RedactedThinking(RedactedThinkingBlock),
    #[serde(untagged)]
    Other(Value),
}

impl ContentBlock {
    /// A plain text block.
    pub fn text(text: impl Into<String>) -> ContentBlock {
        ContentBlock::Text(TextBlock::new(text))
    }

    /// A base64 image block.
    pub fn image(media_type: impl Into<String>, data: impl Into<String>) -> ContentBlock {
        ContentBlock::Image(ImageBlock {
            source: ImageSource::Base64 {
                media_type: media_type.into(),
                data: data.into(),
            },
            cache_control: None,
            extra: Map::new(),
        })
    }

    /// The block's cache breakpoint, if this block type can carry one.
    pub fn cache_control(&self) -> Option<&CacheControl> {
        match self {
            ContentBlock::Text(b) => b.cache_control.as_ref(),
            ContentBlock::Image(b) => b.cache_control.as_ref(),
            ContentBlock::ToolUse(b) => b.cache_control.as_ref(),
            ContentBlock::ToolResult(b) => b.cache_control.as_ref(),
            _ => None,
        }
    }

    /// Sets or clears the cache breakpoint; returns false if this block type cannot carry one.
    pub fn set_cache_control(&mut self, cc: Option<CacheControl>) -> bool {
        match self {
            ContentBlock::Text(b) => b.cache_control = cc,
            ContentBlock::Image(b) => b.cache_control = cc,
            ContentBlock::ToolUse(b) => b.cache_control = cc,
            ContentBlock::ToolResult(b) => b.cache_control = cc,
            ContentBlock::Other(Value::Object(m)) => match cc {
                Some(cc) => {
                    m.insert(
                        "cache_control".into(),
                        serde_json::to_value(cc).unwrap_or(Value::Null),
                    );
                }
                None => {
                    m.remove("cache_control");
                }
            },
            _ => return false,
        }
        true
    }
}

/// `{"type":"text","text":...}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct TextBlock {
    pub text: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_control: Option<CacheControl>,
    /// Fields this crate does not model (citations, ...), kept verbatim.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl TextBlock {
    /// A text block without cache control.
    pub fn new(text: impl Into<String>) -> TextBlock {
        TextBlock {
            text: text.into(),
            ..TextBlock::default()
        }
    }
}

/// [`MessagesRequest::system`] on the wire: text blocks with `"type":"text"`.
mod system_blocks {
    use super::TextBlock;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    #[derive(Serialize, Deserialize)]
    #[serde(tag = "type", rename_all = "snake_case")]
    enum Sys<T> {
        Text(T),
    }

    pub fn serialize<S: Serializer>(v: &Option<Vec<TextBlock>>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(v) => v.iter().map(Sys::Text).collect::<Vec<_>>().serialize(s),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Vec<TextBlock>>, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Either {
            S(String),
            B(Vec<Sys<TextBlock>>),
        }
        Ok(Option::<Either>::deserialize(d)?.map(|e| match e {
            Either::S(s) => vec![TextBlock::new(s)],
            Either::B(b) => b.into_iter().map(|Sys::Text(t)| t).collect(),
        }))
    }
}

/// `{"type":"image","source":{...}}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImageBlock {
    pub source: ImageSource,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_control: Option<CacheControl>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// Image source: base64 data, or anything else (url, file) verbatim.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ImageSource {
    Base64 {
        media_type: String,
        data: String,
    },
    #[serde(untagged)]
    Other(Value),
}

/// `{"type":"tool_use","id","name","input"}` (+ `toolset_name` for toolset members).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolUseBlock {
    pub id: String,
    pub name: String,
    pub input: Value,
    /// `"computer"` for a `computer_toolset_20260801` member call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub toolset_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_control: Option<CacheControl>,
    /// Fields this crate does not model (`caller`, ...), kept verbatim.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `{"type":"tool_result","tool_use_id","content":[...],"is_error"}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolResultBlock {
    pub tool_use_id: String,
    /// Result blocks (text, image); a plain string on the wire is read as one text block.
    #[serde(
        default,
        deserialize_with = "blocks_or_string",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub content: Vec<ContentBlock>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub is_error: bool,
    /// `"computer"` when answering a toolset member call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub toolset_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_control: Option<CacheControl>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `{"type":"thinking","thinking","signature"}`: must go back with its signature.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct ThinkingBlock {
    pub thinking: String,
    #[serde(default)]
    pub signature: String,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `{"type":"redacted_thinking","data"}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct RedactedThinkingBlock {
    pub data: String,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

fn blocks_or_string<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<ContentBlock>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Either {
        S(String),
        B(Vec<ContentBlock>),
    }
    Ok(match Either::deserialize(d)? {
        Either::S(s) => vec![ContentBlock::text(s)],
        Either::B(b) => b,
    })
}

/// A tool definition. Custom tools (`{name, description, input_schema}`) and others go in `Other`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum Tool {
    #[serde(rename = "computer_20250124")]
    Computer20250124(ComputerTool),
    #[serde(rename = "computer_20251124")]
    Computer20251124(ComputerTool),
    #[serde(rename = "computer_toolset_20260801")]
    ComputerToolset20260801(ComputerToolset),
    #[serde(untagged)]
    Other(Value),
}

impl Tool {
    /// The `anthropic-beta` flag this tool needs, if any.
    pub fn beta(&self) -> Option<&'static str> {
        match self {
            Tool::Computer20250124(_) => Some(BETA_COMPUTER_20250124),
            Tool::Computer20251124(_) => Some(BETA_COMPUTER_20251124),
            _ => None,
        }
    }

    /// A client (custom) tool `{"name", "description", "input_schema"}`; its calls come back as
    /// `tool_use` blocks with that name and no `toolset_name`.
    pub fn custom(name: &str, description: &str, input_schema: Value) -> Tool {
        let mut m = Map::new();
        m.insert("name".into(), Value::String(name.into()));
        m.insert("description".into(), Value::String(description.into()));
        m.insert("input_schema".into(), input_schema);
        Tool::Other(Value::Object(m))
    }

    /// `computer_20250124` for a display of `w`×`h` (scaled) pixels.
    pub fn computer_20250124(w: u32, h: u32) -> Tool {
        Tool::Computer20250124(ComputerTool::new(w, h, None))
    }

    /// `computer_20251124` for a display of `w`×`h` pixels, zoom enabled.
    pub fn computer_20251124(w: u32, h: u32) -> Tool {
        Tool::Computer20251124(ComputerTool::new(w, h, Some(true)))
    }

    /// `computer_toolset_20260801` with every member enabled (zoom included).
    pub fn computer_toolset_20260801() -> Tool {
        Tool::ComputerToolset20260801(ComputerToolset {
            configs: TOOLSET_MEMBERS
                .iter()
                .map(|m| {
                    (
                        m.to_string(),
                        ToolsetMemberConfig {
                            enabled: Some(true),
                            defer_loading: None,
                        },
                    )
                })
                .collect(),
            cache_control: None,
            extra: Map::new(),
        })
    }
}

/// Fields of `computer_20250124` / `computer_20251124`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ComputerTool {
    /// Always `"computer"`.
    pub name: String,
    pub display_width_px: u32,
    pub display_height_px: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_number: Option<u32>,
    /// `computer_20251124` only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enable_zoom: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_control: Option<CacheControl>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl ComputerTool {
    /// `name:"computer"` with the given display size.
    pub fn new(w: u32, h: u32, enable_zoom: Option<bool>) -> ComputerTool {
        ComputerTool {
            name: "computer".into(),
            display_width_px: w,
            display_height_px: h,
            display_number: None,
            enable_zoom,
            cache_control: None,
            extra: Map::new(),
        }
    }
}

/// Fields of `computer_toolset_20260801`: no name, no display size.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ComputerToolset {
    /// Member name → its config. The API rejects unknown member names.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub configs: BTreeMap<String, ToolsetMemberConfig>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_control: Option<CacheControl>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `{enabled?, defer_loading?}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct ToolsetMemberConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub defer_loading: Option<bool>,
}

/// Token usage. Every field defaults to 0 (a `message_delta` usage carries only some).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Usage {
    #[serde(default)]
    pub input_tokens: u64,
    #[serde(default)]
    pub output_tokens: u64,
    #[serde(default)]
    pub cache_creation_input_tokens: u64,
    #[serde(default)]
    pub cache_read_input_tokens: u64,
}

/// A complete (non-streamed) reply, and the `message` of `message_start`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MessagesResponse {
    pub id: String,
    /// Always `"message"`.
    #[serde(rename = "type", default = "message_type")]
    pub kind: String,
    pub role: Role,
    #[serde(default)]
    pub content: Vec<ContentBlock>,
    pub model: String,
    /// `end_turn`, `max_tokens`, `stop_sequence`, `tool_use`, `pause_turn`, `refusal`,
    /// `model_context_window_exceeded`, ...; null in `message_start`.
    #[serde(default)]
    pub stop_reason: Option<String>,
    #[serde(default)]
    pub stop_sequence: Option<String>,
    #[serde(default)]
    pub usage: Usage,
    /// `stop_details`, `context_management`, ...
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

fn message_type() -> String {
    "message".into()
}

/// One streamed event; the SSE `event:` name equals [`StreamEvent::name`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum StreamEvent {
    MessageStart {
        message: MessagesResponse,
    },
    ContentBlockStart {
        index: usize,
        content_block: ContentBlock,
    },
    ContentBlockDelta {
        index: usize,
        delta: Delta,
    },
    ContentBlockStop {
        index: usize,
    },
    MessageDelta {
        delta: MessageDeltaBody,
        #[serde(default)]
        usage: Usage,
    },
    MessageStop,
    Ping,
    Error {
        error: ErrorBody,
    },
    #[serde(untagged)]
    Other(Value),
}

impl StreamEvent {
    /// The SSE `event:` name (= the JSON `type`).
    pub fn name(&self) -> &str {
        match self {
            StreamEvent::MessageStart { .. } => "message_start",
            StreamEvent::ContentBlockStart { .. } => "content_block_start",
            StreamEvent::ContentBlockDelta { .. } => "content_block_delta",
            StreamEvent::ContentBlockStop { .. } => "content_block_stop",
            StreamEvent::MessageDelta { .. } => "message_delta",
            StreamEvent::MessageStop => "message_stop",
            StreamEvent::Ping => "ping",
            StreamEvent::Error { .. } => "error",
            StreamEvent::Other(v) => v.get("type").and_then(Value::as_str).unwrap_or("unknown"),
        }
    }
}

/// `content_block_delta.delta`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Delta {
    TextDelta {
        text: String,
    },
    InputJsonDelta {
        partial_json: String,
    },
    ThinkingDelta {
        thinking: String,
    },
    SignatureDelta {
        signature: String,
    },
    #[serde(untagged)]
    Other(Value),
}

/// `message_delta.delta`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct MessageDeltaBody {
    #[serde(default)]
    pub stop_reason: Option<String>,
    #[serde(default)]
    pub stop_sequence: Option<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `error` of an error body or stream event: `{type, message}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// `invalid_request_error`, `authentication_error`, `rate_limit_error`, `overloaded_error`, ...
    #[serde(rename = "type")]
    pub kind: String,
    pub message: String,
}

/// An HTTP error body: `{"type":"error","error":{...},"request_id":...}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorResponse {
    /// Always `"error"`.
    #[serde(rename = "type", default = "error_type")]
    pub kind: String,
    pub error: ErrorBody,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
}

fn error_type() -> String {
    "error".into()
}

impl ErrorResponse {
    /// An error body of `kind` with `message`.
    pub fn new(kind: &str, message: &str) -> ErrorResponse {
        ErrorResponse {
            kind: "error".into(),
            error: ErrorBody {
                kind: kind.into(),
                message: message.into(),
            },
            request_id: None,
        }
    }

    /// The documented error type for an HTTP status.
    pub fn kind_for_status(status: u16) -> &'static str {
        match status {
            400 => "invalid_request_error",
            401 => "authentication_error",
            402 => "billing_error",
            403 => "permission_error",
            404 => "not_found_error",
            409 => "conflict_error",
            413 => "request_too_large",
            429 => "rate_limit_error",
            504 => "timeout_error",
            529 => "overloaded_error",
            _ => "api_error",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire_test::round_trip;
    use serde_json::json;

    #[test]
    fn tool_use_with_toolset_name_round_trips() {
        let b: ContentBlock = round_trip(
            json!({"type":"tool_use","id":"toolu_01","name":"left_click",
            "input":{"coordinate":[512,384]},"toolset_name":"computer","caller":{"type":"direct"}}),
        );
        let ContentBlock::ToolUse(t) = b else {
            panic!("not tool_use")
        };
        assert_eq!(t.toolset_name.as_deref(), Some("computer"));
        assert_eq!(t.input["coordinate"][0], 512);
        assert_eq!(t.extra["caller"]["type"], "direct");
    }

    #[test]
    fn thinking_and_unknown_blocks_round_trip() {
        let b: ContentBlock =
            round_trip(json!({"type":"thinking","thinking":"hmm","signature":"EqQBCkgI"}));
        assert!(matches!(b, ContentBlock::Thinking(ref t) if t.signature == "EqQBCkgI"));
        let b: ContentBlock = round_trip(json!({"type":"redacted_thinking","data":"abc"}));
        assert!(matches!(b, ContentBlock::RedactedThinking(_)));
        let b: ContentBlock =
            round_trip(json!({"type":"compaction","content":"summary","x":[1,2]}));
        assert!(matches!(b, ContentBlock::Other(_)));
    }

    #[test]
    fn user_tool_result_message_round_trips() {
        let m: Message = round_trip(json!({"role":"user","content":[{"type":"tool_result",
            "tool_use_id":"toolu_01","is_error":true,"toolset_name":"computer",
            "cache_control":{"type":"ephemeral"},
            "content":[{"type":"text","text":"..."},
              {"type":"image","source":{"type":"base64","media_type":"image/png","data":"iVBO"}}]}]}));
        let ContentBlock::ToolResult(r) = &m.content[0] else {
            panic!()
        };
        assert!(r.is_error);
        assert_eq!(r.content.len(), 2);
        assert!(m.content[0].cache_control().is_some());
        // a string content is read as one text block
        let m: Message = serde_json::from_value(json!({"role":"user","content":"hi"})).expect("p");
        assert_eq!(m.content, vec![ContentBlock::text("hi")]);
    }

    #[test]
    fn tools_of_three_generations_round_trip() {
        let t: Tool = round_trip(json!({"type":"computer_20250124","name":"computer",
            "display_width_px":1024,"display_height_px":768,"display_number":1}));
        assert_eq!(t.beta(), Some("computer-use-2025-01-24"));
        let t: Tool = round_trip(json!({"type":"computer_20251124","name":"computer",
            "display_width_px":1280,"display_height_px":800,"enable_zoom":true}));
        assert_eq!(t.beta(), Some("computer-use-2025-11-24"));
        let t: Tool = round_trip(
            json!({"type":"computer_toolset_20260801","configs":{"zoom":{"enabled":false}}}),
        );
        assert_eq!(t.beta(), None);
        let t: Tool = round_trip(json!({"name":"type_secret","description":"Types a secret.",
            "input_schema":{"type":"object","properties":{}}}));
        assert_eq!(
            t,
            Tool::custom(
                "type_secret",
                "Types a secret.",
                json!({"type":"object","properties":{}})
            )
        );
        assert_eq!(t.beta(), None);
        let v = serde_json::to_value(Tool::computer_toolset_20260801()).expect("ser");
        assert!(v.get("name").is_none() && v.get("display_width_px").is_none());
        assert_eq!(v["configs"].as_object().map(|m| m.len()), Some(17));
        assert_eq!(
            serde_json::to_value(Tool::computer_20251124(1024, 768)).expect("ser"),
            json!({"type":"computer_20251124","name":"computer","display_width_px":1024,
                   "display_height_px":768,"enable_zoom":true})
        );
    }

    #[test]
    fn request_response_and_errors_round_trip() {
        let r: MessagesRequest = round_trip(json!({"model":"claude-x","max_tokens":4096,
            "system":[{"type":"text","text":"sys","cache_control":{"type":"ephemeral"}}],
            "messages":[{"role":"user","content":[{"type":"text","text":"hi"}]}],
            "tools":[{"type":"computer_20250124","name":"computer","display_width_px":1024,"display_height_px":768}],
            "stream":true,"thinking":{"type":"adaptive"},"output_config":{"effort":"high"},"temperature":0.5}));
        assert_eq!(r.extra["temperature"], 0.5);
        let resp: MessagesResponse =
            round_trip(json!({"id":"msg_1","type":"message","role":"assistant",
            "content":[{"type":"text","text":"ok"}],"model":"claude-x","stop_reason":"pause_turn",
            "stop_sequence":null,"usage":{"input_tokens":10,"output_tokens":2,
            "cache_creation_input_tokens":0,"cache_read_input_tokens":7}}));
        assert_eq!(resp.usage.cache_read_input_tokens, 7);
        let u: Usage = serde_json::from_value(json!({"output_tokens":3})).expect("usage");
        assert_eq!((u.input_tokens, u.output_tokens), (0, 3));
        let e: ErrorResponse =
            round_trip(json!({"type":"error","error":{"type":"overloaded_error",
            "message":"Overloaded"},"request_id":"req_1"}));
        assert_eq!(e.error.kind, "overloaded_error");
        assert_eq!(ErrorResponse::kind_for_status(529), "overloaded_error");
    }

    #[test]
    fn stream_events_round_trip() {
        for v in [
            json!({"type":"content_block_start","index":1,"content_block":{"type":"tool_use","id":"t","name":"computer","input":{}}}),
            json!({"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"{\"act"}}),
            json!({"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hi"}}),
            json!({"type":"content_block_delta","index":0,"delta":{"type":"thinking_delta","thinking":"h"}}),
            json!({"type":"content_block_delta","index":0,"delta":{"type":"signature_delta","signature":"s"}}),
            json!({"type":"content_block_stop","index":1}),
            json!({"type":"message_delta","delta":{"stop_reason":"tool_use","stop_sequence":null},"usage":{"input_tokens":0,"output_tokens":15,"cache_creation_input_tokens":0,"cache_read_input_tokens":0}}),
            json!({"type":"message_stop"}),
            json!({"type":"ping"}),
            json!({"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}),
        ] {
            let e: StreamEvent = round_trip(v.clone());
            assert_eq!(e.name(), v["type"]);
            assert!(!matches!(e, StreamEvent::Other(_)), "{v}");
        }
    }
}
