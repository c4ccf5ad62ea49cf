//! zigral-actions: what agents call. The native action schema ([`Action`], a serde tagged
//! union with JSON Schema for MCP and utoipa schemas for OpenAPI), validation before anything
//! runs, the [`Executor`] over one session's desktop (XTEST input, SHM screenshots) and Chrome
//! (CDP), the Anthropic computer-use and OpenAI computer-use adapters ([`anthropic`],
//! [`openai`]; see `MAPPING.md`), and an MCP server ([`mcp`]) exposing the same actions as
//! tools over rmcp's streamable HTTP transport.
//!
//! Flow: request body → [`BatchRequest`] (or an adapter's input → native actions) →
//! [`Executor::run`] (validate all → take the session's input lock → run in order, stop at the
//! first failure, time each action, optional screenshot) → [`BatchResponse`] → the caller logs
//! [`BatchResponse::log_entries`] and replies.

pub mod anthropic;
mod error;
mod executor;
pub mod mcp;
pub mod openai;
mod schema;

pub use error::ActionError;
pub use executor::{
    Executor, LogEntry, MAX_TYPE_DELAY_MS, MAX_WAIT_MS, image_out, resolve_scale, screenshot_opts,
};
pub use schema::{
    Action, ActionResult, BatchRequest, BatchResponse, ErrorBody, ImageFormat, ImageOut, MAX_BATCH,
    MouseButton, Output, Point, ScaleOut, ScaleSpec, ScreenshotSpec, ScrollDirection, parse_action,
};

/// Who is calling, as the control plane's auth layer establishes it. Insert it into the HTTP
/// request's extensions before the MCP service; it ends up in the action log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller(pub String);

/// Where executed actions are recorded (the control plane's action log). Called after a batch
/// ran and before the reply is sent.
pub trait ActionLog: Send + Sync + 'static {
    /// Records the entries; must not fail the request (log internally on error).
    fn record(
        &self,
        entries: Vec<LogEntry>,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + '_>>;

    /// Records the entries of a request whose HTTP parts are known (MCP: headers such as the
    /// session id, extensions such as [`Caller`]). Defaults to [`ActionLog::record`].
    fn record_with<'a>(
        &'a self,
        parts: Option<&'a http::request::Parts>,
        entries: Vec<LogEntry>,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + 'a>> {
        let _ = parts;
        self.record(entries)
    }
}
