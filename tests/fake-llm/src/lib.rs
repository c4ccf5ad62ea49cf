//! zigral-fake-llm: a fake LLM provider server for tests.
//!
//! It speaks three wire formats over real HTTP (axum), validates every request the way the
//! provider would (and records the failures), answers from a script of turns that tests queue,
//! and injects faults.
//!
//! | endpoint | family | auth |
//! |---|---|---|
//! | `POST /v1/messages` (also `?beta=true`) | Anthropic Messages, JSON or SSE (`"stream": true`) | `x-api-key` |
//! | `POST /v1/responses` | OpenAI Responses, JSON or SSE | `Authorization: Bearer` |
//! | `POST /v1/chat/completions` | Chat Completions, JSON or SSE (`data: [DONE]`; usage chunk with `stream_options.include_usage`) | `Authorization: Bearer` |
//!
//! # Running it
//!
//! `zigral-fake-llm --listen 127.0.0.1:0 [--api-key KEY]` (default key `test-key`) prints exactly
//! one line, `listening on 127.0.0.1:PORT`, once it accepts connections, and serves until
//! killed. In-process: [`serve`] on a bound listener, or mount [`router`]; tests in Rust take a
//! [`LocalFake`] (served on a free port, scripted and read through its methods).
//!
//! # Scripting
//!
//! `POST /_script` with `{"steps": [Step, ...]}` appends to one FIFO queue for the whole server
//! (`DELETE /_script` clears it). Every model request that declares tools and passes validation
//! pops one step. A step is a JSON object recognised by its key; unknown fields are rejected
//! (the `POST` answers 400 and queues nothing):
//!
//! - `{"text": "Done.", "thinking": false}`: a text reply that ends the turn.
//! - `{"calls": [Call, ...], "text": "optional text first", "thinking": false,
//!   "safety_check": {"code": "malicious_instructions", "message": "..."}}`: tool calls. A call
//!   is written once in the Anthropic single-tool input shape, e.g.
//!   `{"action": "left_click", "coordinate": [x, y]}`, `{"action": "type", "text": "hello"}`,
//!   `{"action": "scroll", "coordinate": [x, y], "scroll_direction": "down", "scroll_amount": 3}`,
//!   `{"action": "left_click_drag", "start_coordinate": [x0, y0], "coordinate": [x1, y1]}`
//!   (coordinates in the declared display space). The action must be one of the 17 computer
//!   actions ([`script::ACTIONS`]). It is rendered per family:
//!   - Anthropic `computer_20250124`/`computer_20251124`: `tool_use` named `computer` with that input;
//!   - Anthropic `computer_toolset_20260801`: one `tool_use` per call, `name` = the action, input
//!     without `action`, `toolset_name: "computer"`;
//!   - Responses GA (`{"type":"computer"}`): ONE `computer_call` with `actions[]`
//!     (left_click → `click` left, right_click → `click` right, middle_click → `click` wheel,
//!     double_click, triple_click → `double_click` + `click`, type, key → `keypress` with keys
//!     split on `+`, mouse_move → `move`, scroll → `scroll` with `scroll_x`/`scroll_y` =
//!     ±amount·100, left_click_drag → `drag` path, screenshot, wait; a click's `key` modifier
//!     becomes `keys`). Actions without an equivalent (zoom, hold_key, cursor_position,
//!     left_mouse_down/up) answer 500 and count as `script_errors`;
//!   - Responses preview (`computer_use_preview`): one `computer_call` per action, with `action`;
//!   - Chat: `tool_calls`, function name = action, `arguments` = the input minus `action` as a
//!     JSON string, `coordinate` → `x`,`y` and `start_coordinate` → `start_x`,`start_y`.
//!
//!   A call can also be a call to a tool the request declares besides the computer tool (the
//!   agent's `type_secret`, `request_human_input`): `{"tool": "type_secret", "input": {"name":
//!   "site", "field": "password"}}` (`input` an object, `{}` when left out; the name must match
//!   `^[a-zA-Z0-9_-]{1,64}$`). It is rendered per family:
//!   - Anthropic (every generation): a `tool_use` with that `name` and `input`, no `toolset_name`;
//!   - Responses: a `function_call` item (`name`, `arguments` = the input as a JSON string,
//!     `call_id`); GA computer actions before and after it go in separate `computer_call`s so
//!     the order is kept;
//!   - Chat: a `tool_calls` function with that name and the input as its `arguments` string.
//!
//!   If the request does not declare a tool of that name (Anthropic: a client tool without
//!   `type` or with `"type": "custom"`; Responses and Chat: a function tool), the request is
//!   rejected with a violation and the step stays queued.
//!
//!   `thinking: true` adds a thinking block with a random signature first (Anthropic) / a
//!   reasoning item (Responses); Chat ignores it. `safety_check` adds a pending safety check to
//!   the first Responses `computer_call`.
//! - Faults, `{"fault": KIND, ...}`:
//!   - `{"fault": "status", "status": 429, "retry_after": 1, "retry_after_ms": 500}`: that status
//!     with the provider's real error body (Anthropic: 429 `rate_limit_error`, 529
//!     `overloaded_error`, 500 `api_error`, ...; OpenAI: `{"error":{"message","type","param","code"}}`)
//!     and the `retry-after` / `retry-after-ms` headers when given;
//!   - `{"fault": "x_should_retry_false", "status": 500}`: that error with `x-should-retry: false`;
//!   - `{"fault": "mid_stream_error"}`: streaming: 200, the first events of a text reply, then
//!     `event: error` (`overloaded_error`; Responses: `error` then `response.failed`; Chat: a
//!     `data: {"error": ...}` chunk and no `[DONE]`). Non-streaming: half a JSON body, then the
//!     connection is cut;
//!   - `{"fault": "pause_turn"}`: Anthropic `stop_reason: "pause_turn"` with some text; the next
//!     request with tools must contain that assistant content unchanged (`cache_control` aside).
//!     Other families get a normal text reply;
//!   - `{"fault": "refusal"}`: Anthropic `stop_reason: "refusal"`; Responses a `refusal` content
//!     part; Chat `message.refusal`;
//!   - `{"fault": "max_tokens"}`: Anthropic `max_tokens`; Responses `status: "incomplete"`
//!     (`max_output_tokens`); Chat `finish_reason: "length"`;
//!   - `{"fault": "malformed"}`: one call with the unknown action `teleport` (Anthropic input /
//!     toolset member name / Responses action type); Chat arguments that are not JSON;
//!   - `{"fault": "timeout", "ms": 5000}`: accepts the request, sends nothing for `ms`, then
//!     answers 504 (Anthropic `timeout_error`).
//!
//! A request without tools (a summarization request) does not pop the queue: it is answered
//! `Summary: <n> earlier messages; last user request: <text>` where `n` counts the request's
//! messages (input items for Responses) other than system/developer ones, and `text` is the
//! first 80 chars of the last user message that has text. An empty queue answers the text
//! `(script exhausted)` and counts it in `/_stats`. Usage is an estimate: input tokens = request
//! chars / 4 (image payloads excluded) + 1600 per image; output tokens = reply size / 4.
//!
//! # Validation
//!
//! A request that fails a check is answered with the provider's real error (401 for a missing or
//! wrong key, else 400 `invalid_request_error`), pops nothing, and is recorded as a violation.
//! See [`validate`] for the checks per family. Tool definitions besides the computer tool are
//! checked too: Anthropic client tools `{"name", "description", "input_schema"}` (name pattern,
//! an object `input_schema`, no unknown fields), Responses `{"type": "function", "name",
//! "description", "parameters"}` and Chat `{"type": "function", "function": {...}}` (name
//! pattern, object `parameters`), and tool names are unique. Their calls must be answered:
//! Anthropic `tool_result` (with `toolset_name` only for toolset members), Responses
//! `function_call_output` (a string output), Chat `tool` messages. Images must be base64 png/jpeg/webp whose bytes
//! match the media type (send a real PNG, not placeholder bytes).
//!
//! # Control endpoints (no auth)
//!
//! - `POST /_script` → `{"queued": n, "remaining": m}`; `DELETE /_script` → `{"cleared": n}`.
//! - `GET /_requests` → `[{index, path, query, headers, body, family, violations, served}]`
//!   (API key headers read `***`; `served` is `text`, `calls`, `fault:<kind>`, `summary` or
//!   `rejected`); `DELETE /_requests` clears requests and violations.
//! - `GET /_violations` → `[{request, path, family, status, message}]`.
//! - `GET /_stats` → `{requests: {path: n}, faults: {kind: n}, script_remaining, exhausted,
//!   summaries, rejected, violations, script_errors}`.
//!
//! # Example
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! let base = format!("http://{}", listener.local_addr()?);
//! tokio::spawn(zigral_fake_llm::serve(listener, zigral_fake_llm::Config::default()));
//! // Then, with any HTTP client:
//! // POST {base}/_script
//! // {"steps": [
//! //   {"calls": [{"action": "screenshot"}], "thinking": true},
//! //   {"calls": [{"action": "left_click", "coordinate": [512, 384]},
//! //              {"action": "type", "text": "hello"}]},
//! //   {"fault": "status", "status": 429, "retry_after": 1},
//! //   {"text": "Done."}
//! // ]}
//! // POST {base}/v1/messages?beta=true   (x-api-key: test-key, anthropic-version: 2023-06-01,
//! //   anthropic-beta: computer-use-2025-11-24, a computer_20251124 tool) → tool_use screenshot
//! // ... send the tool_result (with a PNG) → tool_use left_click, tool_use type
//! // ... → 429 with retry-after: 1; retry → "Done."
//! // GET {base}/_violations → []
//! # let _ = base; Ok(()) }
//! ```

pub mod local;
pub mod render;
pub mod script;
pub mod server;
pub mod validate;

pub use local::{LocalError, LocalFake};
pub use server::{Family, router};

/// Server settings.
#[derive(Clone)]
pub struct Config {
    /// The API key every model request must carry.
    pub api_key: String,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            api_key: "test-key".into(),
        }
    }
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config").field("api_key", &"***").finish()
    }
}

/// Serves the fake on `listener` until the task is dropped or the listener fails.
pub async fn serve(listener: tokio::net::TcpListener, config: Config) -> std::io::Result<()> {
    axum::serve(listener, router(config)).await
}
