//! zigral-actions: what agents call. The native action schema ([`Action`], a serde tagged
//! union with JSON Schema for MCP and utoipa schemas for OpenAPI), validation before anything
//! runs, the [`Executor`] over one session's desktop (XTEST input, SHM screenshots) and Chrome
//! (CDP), the Anthropic computer-use (single tool and GA toolset) and OpenAI computer-use
//! (preview and GA batches) adapters ([`anthropic`], [`openai`]), the native actions as
//! Chat Completions function tools ([`functions`]; see `MAPPING.md`), and an MCP server
//! ([`mcp`]) exposing the same actions as tools over rmcp's streamable HTTP transport.
//!
//! Flow: request body → [`BatchRequest`] (or an adapter's input → native actions) →
//! [`Executor::run`] (plan: validate all → take the session's input lock → run in order, stop
//! at the first failure, time each action, optional screenshot) → [`BatchResponse`] → the
//! caller logs [`BatchResponse::log_entries`] (typed text redacted by its [`TypedText`]
//! policy) and replies.

pub mod anthropic;
mod error;
mod executor;
pub mod functions;
mod log;
pub mod mcp;
pub mod openai;
mod plan;
mod schema;

pub use error::{ActionError, ErrorCode};
pub use executor::{Executor, GateFuture, ScreenGate, image_out};
pub use log::{FullText, LengthOnly, LogEntry, SECRET_MARKER, TypedText};
pub use plan::{MAX_TYPE_DELAY_MS, MAX_WAIT_MS, resolve_scale, screenshot_opts};
pub use schema::{
    Action, ActionResult, BatchRequest, BatchResponse, ErrorBody, ImageFormat, ImageOut, MAX_BATCH,
    MouseButton, Output, Point, ScaleOut, ScaleSpec, ScreenshotSpec, ScrollDirection, parse_action,
};

/// Who is calling, as the control plane's auth layer establishes it. Insert it into the HTTP
/// request's extensions before the MCP service; it ends up in the action log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller(pub String);

/// Why recording executed actions failed (the actions did run).
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct LogError(pub String);

/// A boxed future of [`ActionLog::record`].
pub type LogFuture<'a> =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), LogError>> + Send + 'a>>;

/// Where executed actions are recorded (the control plane's action log). Called after a batch
/// ran and before the reply is sent; an `Err` makes the reply an `action_log_failed` error.
pub trait ActionLog: Send + Sync + 'static {
    /// Records the entries of `batch`. `parts` are the HTTP request's parts when known (MCP:
    /// headers such as the session id, extensions such as [`Caller`]).
    fn record<'a>(
        &'a self,
        parts: Option<&'a http::request::Parts>,
        batch: &'a BatchResponse,
        entries: Vec<LogEntry>,
    ) -> LogFuture<'a>;

    /// How typed text appears in the entries (default: its length only).
    fn typed_text(&self) -> &dyn TypedText {
        &LengthOnly
    }
}
