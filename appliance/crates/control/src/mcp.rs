//! `/mcp`: the agent actions as MCP tools (rmcp streamable HTTP), behind the same bearer
//! authentication as the REST API (API token or login token, `control` scope). Tool calls act
//! on the session named by the `X-Zigral-Session` header (which the caller must own) and are
//! written to that session's action log. While someone else holds control of that session's
//! desktop, tool calls that drive it are refused with 409 `control_held`
//! ([`crate::control_lease::mcp_guard`]).

use std::sync::Arc;

use axum::Router;
use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use zigral_actions::mcp::{ExecutorFuture, ExecutorSource, McpOptions};
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
    let svc = zigral_actions::mcp::service_with(
        Arc::new(Source(state.clone())),
        Some(Arc::new(Log(state.clone()))),
        McpOptions::default(),
    );
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
