//! OpenAI Responses API wire types (`POST /v1/responses`) for computer use, used in both
//! directions (client and fake provider server).
//!
//! Output items the model produced are echoed back as input items verbatim, so one [`Item`]
//! type serves both lists; every item keeps fields it does not model in `extra`, and reasoning
//! items and unknown item types are kept as raw JSON.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// `POST /v1/responses` body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct ResponsesRequest {
    pub model: String,
    pub input: Vec<Item>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tools: Vec<Tool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instructions: Option<String>,
    /// `"auto"` (needed by `computer-use-preview`) or `"disabled"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub truncation: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_response_id: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub stream: bool,
    /// e.g. `{"effort":"medium","summary":"auto"}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasoning: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_output_tokens: Option<u32>,
    /// Other request fields (store, include, ...).
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// A tool definition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Tool {
    /// The preview tool (`computer-use-preview` model).
    ComputerUsePreview {
        display_width: u32,
        display_height: u32,
        /// `browser`, `windows`, `mac`, `linux`, `ubuntu`.
        environment: String,
    },
    /// The GA tool: `{"type":"computer"}`.
    Computer,
    /// A function tool: `{type:"function", name, description, parameters}`.
    Function {
        name: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        description: Option<String>,
        parameters: Value,
    },
    #[serde(untagged)]
    Other(Value),
}

/// A safety check the model raised on a `computer_call`; echoed in
/// `acknowledged_safety_checks` once a human approved it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SafetyCheck {
    pub id: String,
    /// `malicious_instructions`, `irrelevant_domain`, `sensitive_domain` (unverified list).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// An input or output item.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Item {
    /// A user (input_text/input_image) or assistant (output_text) message.
    Message(MessageItem),
    /// A reasoning item: goes back verbatim (encrypted content, summaries).
    Reasoning(Map<String, Value>),
    ComputerCall(ComputerCall),
    FunctionCall(FunctionCall),
    ComputerCallOutput(ComputerCallOutput),
    FunctionCallOutput(FunctionCallOutput),
    #[serde(untagged)]
    Other(Value),
}

impl Item {
    /// A user message with one `input_text` part.
    pub fn user_text(text: impl Into<String>) -> Item {
        Item::Message(MessageItem {
            role: "user".into(),
            content: vec![ContentPart::InputText { text: text.into() }],
            id: None,
            status: None,
            extra: Map::new(),
        })
    }
}

/// `{"type":"message","role","content":[...]}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MessageItem {
    /// `user`, `assistant`, `system`, `developer`.
    pub role: String,
    pub content: Vec<ContentPart>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// A message content part.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ContentPart {
    InputText {
        text: String,
    },
    /// `image_url` is a URL or a `data:image/png;base64,...` URL.
    InputImage {
        image_url: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        detail: Option<String>,
    },
    OutputText {
        text: String,
        #[serde(default)]
        annotations: Vec<Value>,
    },
    Refusal {
        refusal: String,
    },
    #[serde(untagged)]
    Other(Value),
}

/// `{"type":"computer_call", id, call_id, status, action?, actions?, pending_safety_checks}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ComputerCall {
    pub id: String,
    pub call_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// The preview's single action.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<Value>,
    /// The GA's batched actions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actions: Option<Vec<Value>>,
    #[serde(default)]
    pub pending_safety_checks: Vec<SafetyCheck>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `{"type":"function_call", id?, call_id, name, arguments (JSON string), status?}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FunctionCall {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    pub call_id: String,
    pub name: String,
    pub arguments: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// The screenshot answering a `computer_call`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ComputerCallOutput {
    pub call_id: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub acknowledged_safety_checks: Vec<SafetyCheck>,
    pub output: ComputerScreenshot,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_url: Option<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `{"type":"computer_screenshot","image_url":"data:image/png;base64,..."}` (the 2025 sample app
/// sent `input_image`; the type is kept as given).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ComputerScreenshot {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_id: Option<String>,
}

impl ComputerScreenshot {
    /// A `computer_screenshot` with a base64 data URL.
    pub fn data_url(media_type: &str, base64: &str) -> ComputerScreenshot {
        ComputerScreenshot {
            kind: "computer_screenshot".into(),
            image_url: Some(format!("data:{media_type};base64,{base64}")),
            file_id: None,
        }
    }
}

/// `{"type":"function_call_output","call_id","output"}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FunctionCallOutput {
    pub call_id: String,
    pub output: String,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// Token usage of a response.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct ResponseUsage {
    #[serde(default)]
    pub input_tokens: u64,
    #[serde(default)]
    pub output_tokens: u64,
    #[serde(default)]
    pub total_tokens: u64,
    /// `{"cached_tokens": n}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_tokens_details: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_tokens_details: Option<Value>,
}

impl ResponseUsage {
    /// `input_tokens_details.cached_tokens`, or 0.
    pub fn cached_tokens(&self) -> u64 {
        self.input_tokens_details
            .as_ref()
            .and_then(|d| d.get("cached_tokens"))
            .and_then(Value::as_u64)
            .unwrap_or(0)
    }
}

/// A response object (the body of a non-streamed reply, and inside lifecycle events).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Response {
    pub id: String,
    /// `completed`, `failed`, `in_progress`, `incomplete`, `cancelled`, `queued`.
    pub status: String,
    #[serde(default)]
    pub output: Vec<Item>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<ResponseUsage>,
    /// `{"reason":"max_output_tokens" | "content_filter"}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub incomplete_details: Option<Value>,
    /// `{"code","message"}` when failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<Value>,
    /// object, created_at, model, ...
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// A streamed event; the SSE `event:` name equals [`StreamEvent::name`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum StreamEvent {
    #[serde(rename = "response.created")]
    Created { response: Response },
    #[serde(rename = "response.in_progress")]
    InProgress { response: Response },
    #[serde(rename = "response.output_item.added")]
    OutputItemAdded { output_index: usize, item: Item },
    #[serde(rename = "response.output_item.done")]
    OutputItemDone { output_index: usize, item: Item },
    #[serde(rename = "response.output_text.delta")]
    OutputTextDelta {
        #[serde(default)]
        item_id: String,
        #[serde(default)]
        output_index: usize,
        #[serde(default)]
        content_index: usize,
        delta: String,
    },
    #[serde(rename = "response.completed")]
    Completed { response: Response },
    #[serde(rename = "response.failed")]
    Failed { response: Response },
    #[serde(rename = "response.incomplete")]
    Incomplete { response: Response },
    #[serde(rename = "error")]
    Error {
        #[serde(default)]
        code: Option<String>,
        message: String,
        #[serde(default)]
        param: Option<String>,
    },
    #[serde(untagged)]
    Other(Value),
}

impl StreamEvent {
    /// The SSE `event:` name (= the JSON `type`).
    pub fn name(&self) -> &str {
        match self {
            StreamEvent::Created { .. } => "response.created",
            StreamEvent::InProgress { .. } => "response.in_progress",
            StreamEvent::OutputItemAdded { .. } => "response.output_item.added",
            StreamEvent::OutputItemDone { .. } => "response.output_item.done",
            StreamEvent::OutputTextDelta { .. } => "response.output_text.delta",
            StreamEvent::Completed { .. } => "response.completed",
            StreamEvent::Failed { .. } => "response.failed",
            StreamEvent::Incomplete { .. } => "response.incomplete",
            StreamEvent::Error { .. } => "error",
            StreamEvent::Other(v) => v.get("type").and_then(Value::as_str).unwrap_or("unknown"),
        }
    }
}

/// An OpenAI error body: `{"error":{message,type,param,code}}` (Responses and Chat Completions).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorResponse {
    pub error: ErrorDetail,
}

/// The `error` object of an OpenAI error body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorDetail {
    pub message: String,
    /// `invalid_request_error`, `rate_limit_exceeded`, `server_error`, ...
    #[serde(rename = "type", default)]
    pub kind: Option<String>,
    #[serde(default)]
    pub param: Option<String>,
    #[serde(default)]
    pub code: Option<String>,
}

impl ErrorResponse {
    /// An error body with the given type and message.
    pub fn new(kind: &str, message: &str) -> ErrorResponse {
        ErrorResponse {
            error: ErrorDetail {
                message: message.into(),
                kind: Some(kind.into()),
                param: None,
                code: None,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire_test::round_trip;
    use serde_json::json;

    #[test]
    fn computer_calls_with_actions_and_with_action_round_trip() {
        let i: Item = round_trip(
            json!({"type":"computer_call","id":"cu_1","call_id":"call_1",
            "status":"completed","pending_safety_checks":[{"id":"cs_1","code":"malicious_instructions","message":"m"}],
            "actions":[{"type":"click","button":"left","x":100,"y":200},{"type":"type","text":"hi"}]}),
        );
        let Item::ComputerCall(c) = i else { panic!() };
        assert_eq!(c.actions.as_ref().map(Vec::len), Some(2));
        assert_eq!(c.pending_safety_checks[0].id, "cs_1");
        let i: Item = round_trip(
            json!({"type":"computer_call","id":"cu_2","call_id":"call_2",
            "status":"completed","pending_safety_checks":[],
            "action":{"type":"keypress","keys":["CTRL","L"]}}),
        );
        assert!(
            matches!(i, Item::ComputerCall(ref c) if c.action.is_some() && c.actions.is_none())
        );
    }

    #[test]
    fn input_and_output_items_round_trip() {
        for v in [
            json!({"type":"message","role":"user","content":[{"type":"input_text","text":"go"},
                {"type":"input_image","image_url":"data:image/png;base64,AAAA"}]}),
            json!({"type":"message","id":"msg_1","role":"assistant","status":"completed",
                "content":[{"type":"output_text","text":"done","annotations":[]}]}),
            json!({"type":"reasoning","id":"rs_1","summary":[{"type":"summary_text","text":"s"}],"encrypted_content":"xyz"}),
            json!({"type":"function_call","id":"fc_1","call_id":"call_3","name":"f","arguments":"{\"a\":1}","status":"completed"}),
            json!({"type":"computer_call_output","call_id":"call_1",
                "acknowledged_safety_checks":[{"id":"cs_1","code":"malicious_instructions","message":"m"}],
                "output":{"type":"computer_screenshot","image_url":"data:image/png;base64,AAAA"},
                "current_url":"https://example.com/"}),
            json!({"type":"function_call_output","call_id":"call_3","output":"ok"}),
            json!({"type":"web_search_call","id":"ws_1","status":"completed"}),
        ] {
            let i: Item = round_trip(v.clone());
            assert_eq!(
                matches!(i, Item::Other(_)),
                v["type"] == "web_search_call",
                "{v}"
            );
        }
    }

    #[test]
    fn request_tools_response_and_errors_round_trip() {
        let r: ResponsesRequest = round_trip(json!({"model":"computer-use-preview",
            "input":[{"type":"message","role":"user","content":[{"type":"input_text","text":"go"}]}],
            "tools":[{"type":"computer_use_preview","display_width":1024,"display_height":768,"environment":"browser"},
                     {"type":"computer"}],
            "instructions":"be careful","truncation":"auto","stream":true,"reasoning":{"summary":"auto"}}));
        assert_eq!(r.tools[1], Tool::Computer);
        let resp: Response = round_trip(
            json!({"id":"resp_1","object":"response","status":"incomplete",
            "output":[],"usage":{"input_tokens":5,"output_tokens":1,"total_tokens":6,
            "input_tokens_details":{"cached_tokens":3}},"incomplete_details":{"reason":"max_output_tokens"}}),
        );
        assert_eq!(
            resp.usage.as_ref().map(ResponseUsage::cached_tokens),
            Some(3)
        );
        let e: ErrorResponse = round_trip(json!({"error":{"message":"slow down",
            "type":"rate_limit_exceeded","param":null,"code":"rate_limit_exceeded"}}));
        assert_eq!(e.error.kind.as_deref(), Some("rate_limit_exceeded"));
    }

    #[test]
    fn stream_events_parse_by_name() {
        for v in [
            json!({"type":"response.created","response":{"id":"r","status":"in_progress","output":[]}}),
            json!({"type":"response.in_progress","response":{"id":"r","status":"in_progress","output":[]}}),
            json!({"type":"response.output_item.added","output_index":0,"item":{"type":"computer_call","id":"cu","call_id":"c","status":"in_progress","pending_safety_checks":[]}}),
            json!({"type":"response.output_item.done","output_index":0,"item":{"type":"computer_call","id":"cu","call_id":"c","status":"completed","pending_safety_checks":[],"action":{"type":"screenshot"}}}),
            json!({"type":"response.output_text.delta","item_id":"m","output_index":1,"content_index":0,"delta":"Hi"}),
            json!({"type":"response.completed","response":{"id":"r","status":"completed","output":[]}}),
            json!({"type":"response.failed","response":{"id":"r","status":"failed","output":[],"error":{"code":"server_error","message":"x"}}}),
            json!({"type":"response.incomplete","response":{"id":"r","status":"incomplete","output":[]}}),
            json!({"type":"error","code":"server_error","message":"boom","param":null}),
        ] {
            let e: StreamEvent = round_trip(v.clone());
            assert_eq!(e.name(), v["type"]);
            assert!(!matches!(e, StreamEvent::Other(_)), "{v}");
        }
    }
}
