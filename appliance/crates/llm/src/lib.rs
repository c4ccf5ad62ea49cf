//! zigral-llm: LLM provider wire formats and the streaming client.
//!
//! - [`anthropic`], [`responses`], [`chat`]: serde types of the three wire formats (Anthropic
//!   Messages, OpenAI Responses, OpenAI-compatible Chat Completions), used both by the client
//!   and by the fake provider server in tests, so both speak the same bytes. [`sse`] parses and
//!   writes server-sent events.
//! - [`Transcript`]: a conversation kept in the provider's own wire format (so thinking
//!   signatures, toolset names and reasoning items go back verbatim), with image pruning and
//!   compaction for context budgets.
//! - [`Client`]: sends a transcript with the computer tool of its [`Generation`] (and any
//!   [`ExtraTool`]s after it), streams the reply, retries like the official SDKs ([`retry`]),
//!   appends the assistant turn to the transcript and returns it normalised as a [`Reply`]. An
//!   optional redactor rewrites every request body just before it is sent.
//!
//! API keys are [`ApiKey`]s: zeroized on drop, never printed, never serialized.

pub mod anthropic;
mod assemble;
pub mod chat;
mod client;
mod error;
mod extra;
pub mod functions;
pub mod responses;
pub mod retry;
pub mod sse;
pub mod tls;
mod transcript;
#[cfg(test)]
mod wire_test;

use std::fmt;
use std::ops::{Add, AddAssign};
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

pub use client::Client;
pub use error::LlmError;
pub use extra::{ExtraTool, valid_tool_name};
pub use responses::SafetyCheck;
pub use transcript::{SCREENSHOT_OMITTED, Transcript};

/// Which tool generation (and so which provider family and wire format) a model uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Generation {
    /// Anthropic, beta `computer-use-2025-01-24`.
    #[serde(rename = "computer_20250124")]
    Computer20250124,
    /// Anthropic, beta `computer-use-2025-11-24`, zoom enabled.
    #[serde(rename = "computer_20251124")]
    Computer20251124,
    /// Anthropic GA computer toolset, no beta header.
    #[serde(rename = "computer_toolset_20260801")]
    ComputerToolset20260801,
    /// OpenAI Responses preview tool (`truncation: "auto"`).
    #[serde(rename = "computer_use_preview")]
    ComputerUsePreview,
    /// OpenAI Responses GA tool (batched `actions[]`).
    #[serde(rename = "computer")]
    Computer,
    /// Chat Completions function calling (vLLM, Ollama, llama.cpp).
    #[serde(rename = "functions")]
    Functions,
}

const ALL_GENERATIONS: [Generation; 6] = [
    Generation::Computer20250124,
    Generation::Computer20251124,
    Generation::ComputerToolset20260801,
    Generation::ComputerUsePreview,
    Generation::Computer,
    Generation::Functions,
];

impl Generation {
    /// The provider family (wire format) of this generation.
    pub fn family(self) -> Family {
        match self {
            Generation::Computer20250124
            | Generation::Computer20251124
            | Generation::ComputerToolset20260801 => Family::Anthropic,
            Generation::ComputerUsePreview | Generation::Computer => Family::Responses,
            Generation::Functions => Family::Chat,
        }
    }

    /// The config/wire name (`"computer_20250124"`, ..., `"functions"`).
    pub fn as_str(self) -> &'static str {
        match self {
            Generation::Computer20250124 => "computer_20250124",
            Generation::Computer20251124 => "computer_20251124",
            Generation::ComputerToolset20260801 => "computer_toolset_20260801",
            Generation::ComputerUsePreview => "computer_use_preview",
            Generation::Computer => "computer",
            Generation::Functions => "functions",
        }
    }

    /// Every generation, oldest Anthropic first.
    pub fn all() -> &'static [Generation] {
        &ALL_GENERATIONS
    }

    /// The `anthropic-beta` flag this generation needs (`None` for GA and non-Anthropic).
    pub fn beta(self) -> Option<&'static str> {
        match self {
            Generation::Computer20250124 => Some(anthropic::BETA_COMPUTER_20250124),
            Generation::Computer20251124 => Some(anthropic::BETA_COMPUTER_20251124),
            _ => None,
        }
    }
}

impl fmt::Display for Generation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Generation {
    type Err = LlmError;
    fn from_str(s: &str) -> Result<Generation, LlmError> {
        ALL_GENERATIONS
            .iter()
            .copied()
            .find(|g| g.as_str() == s)
            .ok_or_else(|| LlmError::Build(format!("unknown tool generation {s:?}")))
    }
}

/// A provider family: one wire format and endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Family {
    /// `POST /v1/messages`.
    Anthropic,
    /// `POST /v1/responses`.
    Responses,
    /// `POST /v1/chat/completions`.
    Chat,
}

impl Family {
    /// The public endpoint of the family (Ollama's local port for Chat), without `/v1`.
    pub fn default_base_url(self) -> &'static str {
        match self {
            Family::Anthropic => "https://api.anthropic.com",
            Family::Responses => "https://api.openai.com",
            Family::Chat => "http://127.0.0.1:11434",
        }
    }

    /// The request path under the base URL.
    pub fn path(self) -> &'static str {
        match self {
            Family::Anthropic => "/v1/messages",
            Family::Responses => "/v1/responses",
            Family::Chat => "/v1/chat/completions",
        }
    }
}

/// An API key: zeroized on drop, `Debug` prints `ApiKey(***)`, never serialized.
#[derive(Clone)]
pub struct ApiKey(Zeroizing<String>);

impl ApiKey {
    /// Wraps a key.
    pub fn new(key: String) -> ApiKey {
        ApiKey(Zeroizing::new(key))
    }

    /// The key itself, for the request header only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKey(***)")
    }
}

/// Anthropic extended thinking.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Thinking {
    /// `thinking: {"type":"adaptive"}` (+ `output_config: {"effort": ...}`), Opus/Sonnet 4.6+.
    Adaptive { effort: Option<String> },
    /// `thinking: {"type":"enabled","budget_tokens":N}`, older models.
    Budget(u32),
}

/// Everything the client needs to talk to one model.
#[derive(Debug, Clone)]
pub struct ProviderSpec {
    pub generation: Generation,
    /// No trailing `/v1`: the client appends `/v1/messages`, `/v1/responses`, `/v1/chat/completions`.
    pub base_url: String,
    pub model: String,
    /// Anthropic: `x-api-key`; OpenAI/Chat: `Authorization: Bearer`.
    pub api_key: Option<ApiKey>,
    pub max_tokens: u32,
    /// Anthropic only.
    pub thinking: Option<Thinking>,
    /// Per request: connect + the whole stream. 600 s like the SDKs.
    pub timeout: Duration,
    /// Retries after the first attempt. 2 like the SDKs.
    pub max_retries: u32,
    /// Declared display size (the scaled screenshot size) for the tool definitions.
    pub display: (u32, u32),
    /// SSE streaming (true) or one JSON body (false).
    pub stream: bool,
}

impl ProviderSpec {
    /// A spec with the SDK defaults: the family's default base URL, no key, 4096 max tokens,
    /// no thinking, 600 s timeout, 2 retries, a 1024×768 display, streaming.
    pub fn new(generation: Generation, model: &str) -> ProviderSpec {
        ProviderSpec {
            generation,
            base_url: generation.family().default_base_url().to_string(),
            model: model.to_string(),
            api_key: None,
            max_tokens: 4096,
            thinking: None,
            timeout: Duration::from_secs(600),
            max_retries: 2,
            display: (1024, 768),
            stream: true,
        }
    }
}

/// One assistant reply, normalised across families.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    /// All text of the reply, concatenated.
    pub text: String,
    /// Tool calls in order; answer them all with [`Transcript::push_results`].
    pub calls: Vec<ToolCall>,
    pub stop: Stop,
    pub usage: Usage,
    /// The provider's request id (`request-id` / `x-request-id` header), for support.
    pub request_id: Option<String>,
    /// Retries it took (0 = the first attempt succeeded).
    pub retries: u32,
}

/// Why the model stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stop {
    EndTurn,
    ToolUse,
    /// Anthropic paused a long turn: call [`Client::next`] again without pushing anything.
    PauseTurn,
    MaxTokens,
    /// The model refused (with the provider's explanation, if any).
    Refusal(Option<String>),
    /// The context window is full: compact the transcript.
    ContextExceeded,
    Other(String),
}

/// Token usage. `input_tokens` excludes cached input (Anthropic's convention; OpenAI's cached
/// tokens are moved to `cache_read_input_tokens`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Usage {
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cache_creation_input_tokens: u64,
    pub cache_read_input_tokens: u64,
}

impl Add for Usage {
    type Output = Usage;
    fn add(self, o: Usage) -> Usage {
        Usage {
            input_tokens: self.input_tokens + o.input_tokens,
            output_tokens: self.output_tokens + o.output_tokens,
            cache_creation_input_tokens: self.cache_creation_input_tokens
                + o.cache_creation_input_tokens,
            cache_read_input_tokens: self.cache_read_input_tokens + o.cache_read_input_tokens,
        }
    }
}

impl AddAssign for Usage {
    fn add_assign(&mut self, o: Usage) {
        *self = *self + o;
    }
}

/// One tool call of a reply.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolCall {
    /// The id to answer in [`ToolOutcome::call_id`] (Anthropic `tool_use.id`, OpenAI `call_id`,
    /// Chat `tool_calls[].id`).
    pub id: String,
    pub call: Call,
}

/// What a tool call asks for.
#[derive(Debug, Clone, PartialEq)]
pub enum Call {
    /// Anthropic computer tool input, always in the single-tool shape `{"action": ..., ...}`: a
    /// toolset member call (name `"left_click"`, input `{"coordinate": [..]}`) is normalised to
    /// `{"action": "left_click", "coordinate": [..]}`.
    Anthropic { input: serde_json::Value },
    /// OpenAI `computer_call`: the GA `actions[]`, or the preview's single `action` as a
    /// one-element list.
    OpenAi {
        actions: Vec<serde_json::Value>,
        pending_safety_checks: Vec<SafetyCheck>,
    },
    /// A function call with its arguments parsed: a Chat Completions or Responses function
    /// call, or an Anthropic `tool_use` of one of the client's [`ExtraTool`]s (its input).
    Function {
        name: String,
        arguments: serde_json::Value,
    },
    /// The model produced input that cannot be parsed (bad JSON arguments, a non-object input,
    /// an unknown tool): answer with an error result.
    Malformed {
        name: String,
        raw: String,
        error: String,
    },
}

/// The result of one tool call.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ToolOutcome {
    pub call_id: String,
    pub text: Option<String>,
    /// The screenshot after the call. Required for an OpenAI `computer_call`.
    pub image: Option<Image>,
    pub is_error: bool,
    /// OpenAI safety checks a human acknowledged.
    pub acknowledged: Vec<SafetyCheck>,
    /// OpenAI: the page URL, for the domain safety checks.
    pub current_url: Option<String>,
}

impl ToolOutcome {
    /// A failed call answered with `text` only (`is_error` set, no image): a call that did not
    /// run or could not be carried out.
    pub fn error(call_id: impl Into<String>, text: impl Into<String>) -> ToolOutcome {
        ToolOutcome {
            call_id: call_id.into(),
            text: Some(text.into()),
            is_error: true,
            ..ToolOutcome::default()
        }
    }
}

/// A base64 image.
#[derive(Clone, PartialEq, Eq)]
pub struct Image {
    /// `image/png`, `image/jpeg`, `image/webp`.
    pub media_type: String,
    pub base64: String,
}

impl fmt::Debug for Image {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Image({}, {} base64 chars)",
            self.media_type,
            self.base64.len()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generation_names_families_and_betas() {
        for g in Generation::all() {
            let json = serde_json::to_value(g).expect("ser");
            assert_eq!(json, g.as_str());
            assert_eq!(g.as_str().parse::<Generation>().ok(), Some(*g));
        }
        assert_eq!(Generation::Computer.family(), Family::Responses);
        assert_eq!(Generation::Functions.family(), Family::Chat);
        assert_eq!(
            Generation::ComputerToolset20260801.family(),
            Family::Anthropic
        );
        assert_eq!(Generation::ComputerToolset20260801.beta(), None);
        assert_eq!(
            Generation::Computer20251124.beta(),
            Some("computer-use-2025-11-24")
        );
        assert!("computer_2099".parse::<Generation>().is_err());
    }

    #[test]
    fn api_key_never_prints() {
        let k = ApiKey::new("sk-secret".into());
        assert_eq!(format!("{k:?}"), "ApiKey(***)");
        let mut spec = ProviderSpec::new(Generation::Computer, "m");
        spec.api_key = Some(k);
        assert!(!format!("{spec:?}").contains("sk-secret"));
        assert_eq!(spec.api_key.as_ref().map(ApiKey::expose), Some("sk-secret"));
    }

    #[test]
    fn error_outcome_is_text_only_and_marked() {
        let o = ToolOutcome::error("toolu_1", "Not run: the user stopped the agent.");
        assert_eq!(o.call_id, "toolu_1");
        assert_eq!(
            o.text.as_deref(),
            Some("Not run: the user stopped the agent.")
        );
        assert!(o.is_error);
        assert_eq!(o.image, None);
        assert!(o.acknowledged.is_empty() && o.current_url.is_none());
    }

    #[test]
    fn usage_adds() {
        let a = Usage {
            input_tokens: 1,
            output_tokens: 2,
            cache_creation_input_tokens: 3,
            cache_read_input_tokens: 4,
        };
        let mut b = a + a;
        b += a;
        assert_eq!(b.cache_read_input_tokens, 12);
        assert_eq!(b.input_tokens, 3);
    }
}
