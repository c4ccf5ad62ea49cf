//! `/mcp`: the agent actions as MCP tools (rmcp streamable HTTP), behind the same bearer
//! authentication as the REST API (API token or login token, `control` scope). Tool calls act
//! on the session named by the `X-Zigral-Session` header (which the caller must own) and are
//! written to that session's action log. While someone else holds control of that session's
//! desktop, tool calls that drive it are refused with 409 `control_held`
//! ([`crate::control_lease::mcp_guard`]). Two tools are the control plane's own:
//! `type_secret` (a stored credential typed into the focused field without the caller seeing
//! it) and `request_human_input` (ask the session's owner and wait).

use std::sync::Arc;

use axum::Router;
use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use zigral_actions::mcp::{ExecutorFuture, ExecutorSource, HostFuture, HostTools, McpOptions};
use zigral_actions::{
    ActionError, ActionLog, BatchResponse, Caller, LogEntry, LogError, LogFuture, TypedText,
};
use zigral_store::SessionRecord;

use crate::auth::{Principal, Scope, authorize_session};
use crate::error::ApiError;
use crate::state::AppState;

/// Header naming the session an MCP client acts on.
pub const SESSION_HEADER: &str = "x-zigral-session";

/// The `/mcp` service: authentication middleware around the rmcp service.
pub fn router(state: AppState) -> Router {
    let server = zigral_actions::mcp::McpServer::with_source(
        Arc::new(Source(state.clone())),
        Some(Arc::new(Log(state.clone()))),
    )
    .with_host_tools(Arc::new(Hitl(state.clone())));
    let svc = zigral_actions::mcp::service_of(server, McpOptions::default());
    Router::new()
        .fallback_service(svc)
        .layer(axum::middleware::from_fn_with_state(state, authenticate))
}

async fn authenticate(State(st): State<AppState>, req: Request, next: Next) -> Response {
    let (mut parts, body) = req.into_parts();
    let who = match Principal::from_request_parts(&mut parts, &st).await {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    if let Err(e) = who.require(Scope::Control) {
        return e.into_response();
    }
    let mut session = None;
    if let Some(v) = parts.headers.get(SESSION_HEADER) {
        let Ok(id) = v.to_str() else {
            return ApiError::bad_request("X-Zigral-Session is not a valid session id")
                .into_response();
        };
        match authorize_session(&st, &who, id.trim()) {
            Ok(s) => session = Some(s),
            Err(e) => return e.into_response(),
        }
    }
    parts.extensions.insert(Caller(who.actor()));
    let mut req = Request::from_parts(parts, body);
    if let Some(s) = &session {
        // Tool calls that drive the desktop: 409 `control_held` while someone else holds it.
        req = match crate::control_lease::mcp_guard(&st, &who, s, req).await {
            Ok(r) => r,
            Err(refused) => return refused,
        };
    }
    next.run(req).await
}

/// The session of a tool call, checked against the authenticated caller.
async fn session_of(st: &AppState, parts: Option<&Parts>) -> Result<SessionRecord, ActionError> {
    let parts = parts.ok_or_else(|| ActionError::BadRequest("no HTTP request context".into()))?;
    let id = parts
        .headers
        .get(SESSION_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .ok_or_else(|| {
            ActionError::BadRequest(
                "tool calls need the X-Zigral-Session header: the id of a session you own \
                 (POST /api/v1/sessions creates one)"
                    .into(),
            )
        })?;
    let who = parts
        .extensions
        .get::<Principal>()
        .ok_or_else(|| ActionError::BadRequest("unauthenticated request".into()))?;
    let mut s = authorize_session(st, who, id).map_err(|e| ActionError::BadRequest(e.message))?;
    s.desktop = st.vdi().ensure(&s).await.map_err(|e| {
        ActionError::Desktop(zigral_desktop::DesktopError::NoDisplay {
            display: format!("desktop {}", s.desktop),
            reason: e.to_string(),
        })
    })?;
    Ok(s)
}

struct Source(AppState);

impl ExecutorSource for Source {
    fn executor<'a>(&'a self, parts: Option<&'a Parts>) -> ExecutorFuture<'a> {
        Box::pin(async move {
            let s = session_of(&self.0, parts).await?;
            self.0.desktops().executor(s.desktop).await
        })
    }
}

struct Log(AppState);

impl ActionLog for Log {
    fn record<'a>(
        &'a self,
        parts: Option<&'a Parts>,
        batch: &'a BatchResponse,
        entries: Vec<LogEntry>,
    ) -> LogFuture<'a> {
        Box::pin(async move {
            let s = session_of(&self.0, parts)
                .await
                .map_err(|e| LogError(e.to_string()))?;
            // The executor the batch ran on (already connected: the source made it).
            let exec = self
                .0
                .desktops()
                .executor(s.desktop)
                .await
                .map_err(|e| LogError(e.to_string()))?;
            crate::api::actions::record_batch(&self.0, &s, &exec, "mcp", entries, batch)
                .await
                .map(|_| ())
                .map_err(|e| LogError(e.to_string()))
        })
    }

    fn typed_text(&self) -> &dyn TypedText {
        self.0.typed_text()
    }
}

/// The control plane's own MCP tools (human in the loop).
struct Hitl(AppState);

fn tool(
    name: &str,
    description: &str,
    schema: serde_json::Value,
) -> zigral_actions::mcp::model::Tool {
    let obj = match schema {
        serde_json::Value::Object(o) => o,
        _ => serde_json::Map::new(),
    };
    zigral_actions::mcp::model::Tool::new(name.to_owned(), description.to_owned(), Arc::new(obj))
}

fn text_result(ok: bool, text: String) -> zigral_actions::mcp::model::CallToolResult {
    let content = vec![zigral_actions::mcp::model::ContentBlock::text(text)];
    if ok {
        zigral_actions::mcp::model::CallToolResult::success(content)
    } else {
        zigral_actions::mcp::model::CallToolResult::error(content)
    }
}

impl HostTools for Hitl {
    fn tools(&self) -> Vec<zigral_actions::mcp::model::Tool> {
        crate::agents::hands::extra_tools()
            .into_iter()
            .map(|t| {
                let mut schema = t.parameters;
                if t.name == crate::agents::hands::REQUEST_HUMAN_INPUT
                    && let Some(p) = schema["properties"].as_object_mut()
                {
                    p.insert(
                        "timeout_secs".into(),
                        serde_json::json!({"type": "integer", "minimum": 10, "maximum": 600,
                                           "description": "how long to wait (default 300)"}),
                    );
                }
                tool(&t.name, &t.description, schema)
            })
            .collect()
    }

    fn call<'a>(
        &'a self,
        name: &'a str,
        args: zigral_actions::mcp::model::JsonObject,
        parts: Option<&'a Parts>,
    ) -> Option<HostFuture<'a>> {
        use crate::agents::hands::{REQUEST_HUMAN_INPUT, TYPE_SECRET};
        if name != TYPE_SECRET && name != REQUEST_HUMAN_INPUT {
            return None;
        }
        let st = &self.0;
        Some(Box::pin(async move {
            let s = match session_of(st, parts).await {
                Ok(s) => s,
                Err(e) => return text_result(false, e.to_string()),
            };
            let who = parts
                .and_then(|p| p.extensions.get::<Caller>())
                .map_or_else(|| "mcp".to_owned(), |c| c.0.clone());
            let exec = match crate::hitl::executor(st, s.desktop).await {
                Ok(e) => e,
                Err(e) => return text_result(false, e),
            };
            let mut args = serde_json::Value::Object(args);
            if name == TYPE_SECRET {
                #[derive(serde::Deserialize)]
                #[serde(deny_unknown_fields)]
                struct In {
                    name: String,
                    field: crate::vault::Field,
                }
                let input: In = match serde_json::from_value(args) {
                    Ok(i) => i,
                    Err(e) => return text_result(false, format!("invalid input: {e}")),
                };
                return match crate::hitl::secret::type_secret(
                    st,
                    &s,
                    &exec,
                    &who,
                    "mcp",
                    &input.name,
                    input.field,
                )
                .await
                {
                    Ok(t) => text_result(
                        true,
                        format!(
                            "Typed {:?} into the focused {} field on {}. Screenshots of this \
                             session are withheld until that field loses focus.",
                            t.name, t.kind, t.host
                        ),
                    ),
                    Err(e) => text_result(false, format!("type_secret refused: {e}")),
                };
            }
            let secs = args
                .as_object_mut()
                .and_then(|o| o.remove("timeout_secs"))
                .and_then(|v| v.as_u64())
                .unwrap_or(300)
                .clamp(10, 600);
            let req: crate::hitl::input::InputRequest = match serde_json::from_value(args) {
                Ok(r) => r,
                Err(e) => return text_result(false, format!("invalid input: {e}")),
            };
            let agent = st.agents().entry(&s.id);
            match crate::hitl::input::ask(
                st,
                &s,
                &agent,
                &exec,
                req,
                std::time::Duration::from_secs(secs),
                &who,
            )
            .await
            {
                Ok(text) => text_result(true, text),
                Err(e) => text_result(false, e.to_string()),
            }
        }))
    }
}
