//! The agent action API of a session: native actions (one or a batch), the Anthropic
//! (single tool, zoom, toolset members) and OpenAI (preview and GA batches) computer-use
//! adapters, the action log and screenshots. A batch runs and is logged in
//! its own task ([`run_logged`]): a client that goes away mid-batch does not cancel it, every
//! executed action is in the log (one transaction per batch) before the reply, and a failed
//! log write makes the reply a 500 `action_log_failed`.

use std::future::Future;

use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};
use zigral_actions::{
    Action, ActionError, BatchRequest, BatchResponse, ErrorCode, Executor, ImageFormat, LogEntry,
    ScaleSpec, ScreenshotSpec, anthropic, openai,
};
use zigral_store::{ActionRecord, NewAction, SessionRecord, StoreError};

use crate::api::messages::Page;
use crate::auth::{Principal, Scope, authorize_session, session_with_desktop};
use crate::error::{ApiError, ApiResult, CommonErrors, ErrorBody, Json, Path, Query};
use crate::events::Event;
use crate::state::AppState;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(run_actions, list_actions))
        .routes(routes!(run_anthropic))
        .routes(routes!(run_openai))
        .routes(routes!(screenshot))
}

/// Errors specific to driving a desktop (for the OpenAPI document).
#[derive(utoipa::IntoResponses)]
#[allow(dead_code)]
pub enum DesktopErrors {
    /// `screenshot_withheld` where a capture would happen while a field holding a typed secret
    /// has keyboard focus (move the focus away first); `control_held` on routes that drive the
    /// desktop while a person holds control; or another conflict with the session's state.
    #[response(status = 409)]
    Conflict(ErrorBody),
    /// Chrome answered with a navigation failure.
    #[response(status = 502)]
    BadGateway(ErrorBody),
    /// The session's desktop (X display) or its Chrome is not reachable right now
    /// (`desktop_unavailable`, `browser_unavailable`); retry later.
    #[response(status = 503)]
    Unavailable(ErrorBody),
    /// Chrome did not answer or finish loading in time.
    #[response(status = 504)]
    Timeout(ErrorBody),
}

/// The body of `POST .../actions`: one action, or a batch.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(untagged)]
#[allow(dead_code)]
pub enum ActionsBody {
    /// One action, e.g. `{"action": "left_click", "x": 100, "y": 200}`.
    One(Action),
    /// Several actions run in order (stopping at the first failure), optionally with a
    /// screenshot after the last one.
    Batch(BatchRequest),
}

/// A rejected action request (nothing ran).
#[derive(Debug, Serialize, ToSchema)]
pub struct RejectedBody {
    /// Stable code: `bad_request`, `unknown_action`, `out_of_bounds`, `bad_key`,
    /// `url_not_allowed`, `desktop_unavailable`, `action_log_failed`, ...
    pub error: ErrorCode,
    pub message: String,
    /// Index of the offending action in the batch.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub index: Option<usize>,
}

fn reject(e: &ActionError) -> Response {
    let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    if status.is_server_error() && !matches!(status.as_u16(), 502..=504) {
        tracing::error!(error = %e, "action request failed");
    }
    (
        status,
        axum::Json(RejectedBody {
            error: e.code(),
            message: e.to_string(),
            index: e.index(),
        }),
    )
        .into_response()
}

pub(crate) fn body_of(body: Result<Bytes, BytesRejection>) -> Result<Bytes, ApiError> {
    body.map_err(|r| {
        let status = r.status();
        let code = if status == StatusCode::PAYLOAD_TOO_LARGE {
            "payload_too_large"
        } else {
            "bad_request"
        };
        ApiError::new(status, code, r.body_text())
    })
}

/// The status of an executed batch: 200 when every action succeeded, else the failing
/// action's error status.
fn batch_status(resp: &BatchResponse) -> StatusCode {
    let code = resp
        .results
        .iter()
        .find(|r| !r.ok)
        .and_then(|r| r.error.as_ref())
        .map(|e| e.error.status());
    match code {
        None => StatusCode::OK,
        Some(c) => StatusCode::from_u16(c).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
    }
}

/// The session's executor (connecting to its desktop if needed).
async fn executor(st: &AppState, s: &SessionRecord) -> Result<Executor, ActionError> {
    st.desktops().executor(s.desktop).await
}

/// Why a logged batch did not give a normal reply.
#[derive(Debug, thiserror::Error)]
pub(crate) enum BatchError {
    /// The batch was refused or could not start; nothing ran.
    #[error(transparent)]
    Rejected(#[from] ActionError),
    /// The actions ran but their log entries could not be written.
    #[error("the actions ran but could not be logged: {0}")]
    LogFailed(StoreError),
    /// The batch task panicked or was aborted.
    #[error("the batch task failed: {0}")]
    Task(String),
}

impl IntoResponse for BatchError {
    fn into_response(self) -> Response {
        match self {
            BatchError::Rejected(e) => reject(&e),
            BatchError::LogFailed(_) => {
                tracing::error!(error = %self, "action log write failed");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    axum::Json(RejectedBody {
                        error: ErrorCode::ActionLogFailed,
                        message: self.to_string(),
                        index: None,
                    }),
                )
                    .into_response()
            }
            BatchError::Task(_) => ApiError::internal(self).into_response(),
        }
    }
}

/// Runs `batch` (which executes actions on `exec` and yields its reply, the native request
/// and response) in a task of its own, then writes the executed actions to the session's log
/// in one transaction. The task outlives the request: a client that disconnects mid-batch
/// cancels nothing, and everything that ran is logged.
pub(crate) async fn run_logged<T, F>(
    st: &AppState,
    s: &SessionRecord,
    who: String,
    via: &'static str,
    exec: Executor,
    batch: impl FnOnce(Executor) -> F,
) -> Result<(T, BatchResponse), BatchError>
where
    T: Send + 'static,
    F: Future<Output = Result<(T, BatchRequest, BatchResponse), ActionError>> + Send + 'static,
{
    let fut = batch(exec.clone());
    let (st, s) = (st.clone(), s.clone());
    let task = tokio::spawn(async move {
        let (out, req, resp) = match fut.await {
            Ok(v) => v,
            Err(e) => {
                st.desktops().note_failure(s.desktop, &exec, e.code()).await;
                return Err(BatchError::Rejected(e));
            }
        };
        let entries = resp.log_entries(&req, &who, via, st.typed_text());
        record_batch(&st, &s, &exec, via, entries, &resp)
            .await
            .map_err(BatchError::LogFailed)?;
        Ok((out, resp))
    });
    task.await.map_err(|e| BatchError::Task(e.to_string()))?
}

/// Writes every entry to the session's action log in one transaction, publishes one
/// `actions.executed` event, and forgets the desktop connection if the batch lost it.
pub(crate) async fn record_batch(
    st: &AppState,
    s: &SessionRecord,
    exec: &Executor,
    via: &str,
    entries: Vec<LogEntry>,
    resp: &BatchResponse,
) -> Result<Vec<u64>, StoreError> {
    let count = entries.len();
    let recs = entries
        .into_iter()
        .map(|e| NewAction {
            who: e.who,
            what: json!({"action": e.action, "input": e.input, "via": e.via, "index": e.index}),
            result: e.result,
            ok: e.ok,
            duration_ms: e.duration_ms.round().max(0.0) as u64,
        })
        .collect();
    let logged = st.store().append_actions(&s.id, recs).await;
    if let Some(code) = resp
        .results
        .iter()
        .find_map(|r| r.error.as_ref().map(|e| e.error))
    {
        st.desktops().note_failure(s.desktop, exec, code).await;
    }
    let seqs: Vec<u64> = match &logged {
        Ok(r) => r.iter().map(|a| a.seq).collect(),
        Err(_) => Vec::new(),
    };
    st.publish(Event::new(
        "actions.executed",
        Some(&s.id),
        Some(&s.owner),
        json!({
            "via": via,
            "count": count,
            "ok": resp.ok,
            "failed_index": resp.failed_index,
            "actions": resp.results.iter().map(|r| r.action.as_str()).collect::<Vec<_>>(),
            "seqs": seqs,
            "logged": logged.is_ok(),
            "duration_ms": resp.duration_ms,
        }),
    ));
    logged.map(|_| seqs)
}

/// Runs one action or a batch on the session's desktop and browser. Everything is validated
/// first (400/422: nothing ran); then actions run in order under the desktop's input lock,
/// stopping at the first failure (`failed_index`; the reply's status is that action's error
/// status). Every executed action is in the action log before the reply.
#[utoipa::path(post, path = "/sessions/{id}/actions", tag = "actions",
    request_body(content = ActionsBody, content_type = "application/json"),
    params(("id" = String, Path, description = "session id")),
    responses(
        (status = 200, description = "every action succeeded", body = BatchResponse),
        (status = 400, description = "malformed request or unknown action; nothing ran", body = RejectedBody),
        (status = 422, description = "invalid action (off-screen point, bad key name, disallowed URL...); nothing ran", body = RejectedBody),
        CommonErrors, DesktopErrors))]
async fn run_actions(
    State(st): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let (s, body) = match prepare_with_body(&st, &who, &id, body).await {
        Ok(v) => v,
        Err(e) => return e.into_response(),
    };
    let req = match BatchRequest::from_json(&body) {
        Ok(r) => r,
        Err(e) => return reject(&e),
    };
    let exec = match executor(&st, &s).await {
        Ok(e) => e,
        Err(e) => return reject(&e),
    };
    let ran = run_logged(&st, &s, who.actor(), "rest", exec, |exec| async move {
        let resp = exec.run(&req).await?;
        Ok(((), req, resp))
    })
    .await;
    match ran {
        Ok(((), resp)) => (batch_status(&resp), axum::Json(resp)).into_response(),
        Err(e) => e.into_response(),
    }
}

/// The session to drive (the `control` scope, ownership, its desktop ready).
pub(crate) async fn prepare(st: &AppState, who: &Principal, id: &str) -> ApiResult<SessionRecord> {
    who.require(Scope::Control)?;
    session_with_desktop(st, who, id).await
}

/// [`prepare`], then the request body (size limit and extraction errors as JSON).
async fn prepare_with_body(
    st: &AppState,
    who: &Principal,
    id: &str,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<(SessionRecord, Bytes)> {
    let body = body_of(body)?;
    let s = prepare(st, who, id).await?;
    Ok((s, body))
}

/// Query of the Anthropic adapter.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct AnthropicQuery {
    /// Declared display width (the tool definition's `display_width_px`); default: the screen.
    pub display_width_px: Option<u32>,
    /// Declared display height (`display_height_px`); default: the screen.
    pub display_height_px: Option<u32>,
    /// Screenshot encoding (png default, jpeg, webp).
    pub format: Option<ImageFormat>,
    /// Attach a screenshot after actions that change the screen (default true).
    pub screenshot: Option<bool>,
    /// Add the native per-action results (`zigral` field).
    pub verbose: Option<bool>,
}

/// Runs one Anthropic computer-use call with coordinates in the declared display size: the
/// single `computer` tool's input (`{"action": "left_click", "coordinate": [x, y]}`; `zoom`
/// with `region` of `computer_20251124`), or a whole `tool_use` block — of that tool (`name`
/// `computer`) or of a `computer_toolset_20260801` member (`{"type": "tool_use", "id": ...,
/// "name": "left_click", "input": {"coordinate": [x, y]}, "toolset_name": "computer"}`). The
/// shape is told by its keys (`action` = an input, `name` = a block). Replies with the
/// `tool_result` content (text and a screenshot at the declared size; `zoom`: only the
/// close-up), plus the block's `tool_use_id`/`toolset_name` when one was sent. See
/// MAPPING.md of zigral-actions.
#[utoipa::path(post, path = "/sessions/{id}/actions/anthropic", tag = "actions",
    request_body(content = anthropic::AnthropicBody, content_type = "application/json"),
    params(("id" = String, Path, description = "session id"), AnthropicQuery),
    responses(
        (status = 200, description = "the tool_result content", body = anthropic::ToolResult),
        (status = 400, description = "malformed input or unknown action; nothing ran", body = RejectedBody),
        (status = 422, description = "invalid input; nothing ran", body = RejectedBody),
        CommonErrors, DesktopErrors))]
async fn run_anthropic(
    State(st): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
    Query(q): Query<AnthropicQuery>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let (s, body) = match prepare_with_body(&st, &who, &id, body).await {
        Ok(v) => v,
        Err(e) => return e.into_response(),
    };
    let parsed = match serde_json::from_slice::<Value>(&body)
        .map_err(|e| ActionError::BadRequest(format!("not a computer tool input: {e}")))
        .and_then(anthropic::Body::from_value)
    {
        Ok(b) => b,
        Err(e) => return reject(&e),
    };
    let anthropic::Body {
        input,
        tool_use_id,
        toolset_name,
    } = parsed;
    let opts = anthropic::Options {
        display_width_px: q.display_width_px,
        display_height_px: q.display_height_px,
        format: q.format,
        screenshot: q.screenshot,
        verbose: q.verbose,
    };
    let exec = match executor(&st, &s).await {
        Ok(e) => e,
        Err(e) => return reject(&e),
    };
    let ran = run_logged(&st, &s, who.actor(), "anthropic", exec, |exec| async move {
        anthropic::run(&exec, &input, &opts).await
    })
    .await;
    match ran {
        Ok((mut out, resp)) => {
            out.tool_use_id = tool_use_id;
            out.toolset_name = toolset_name;
            (batch_status(&resp), axum::Json(out)).into_response()
        }
        Err(e) => e.into_response(),
    }
}

/// Query of the OpenAI adapter.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct OpenAiQuery {
    /// Declared display width (the tool definition's `display_width`); default: the screen.
    pub display_width: Option<u32>,
    /// Declared display height (`display_height`); default: the screen.
    pub display_height: Option<u32>,
    /// Screenshot encoding (png default, jpeg, webp).
    pub format: Option<ImageFormat>,
    /// Add native per-action results (`zigral` field).
    pub verbose: Option<bool>,
}

/// Runs OpenAI computer-use actions: one action `{"type": "click", ...}`, a `computer_call`
/// item (the preview tool's `action` or the GA tool's batched `actions`, which win when both
/// are set), or `{"actions": [...]}`, with coordinates in the declared display size; `keys` on
/// pointer actions are held meanwhile. Replies with a `computer_call_output` item carrying
/// the screenshot.
#[utoipa::path(post, path = "/sessions/{id}/actions/openai", tag = "actions",
    request_body(content = openai::OpenAiBody, content_type = "application/json",
        description = "an action {\"type\": ...}, a computer_call item, or {\"actions\": [...]}"),
    params(("id" = String, Path, description = "session id"), OpenAiQuery),
    responses(
        (status = 200, description = "the computer_call_output item", body = openai::CallOutput),
        (status = 400, description = "malformed input or unknown action; nothing ran", body = RejectedBody),
        (status = 422, description = "invalid input; nothing ran", body = RejectedBody),
        CommonErrors, DesktopErrors))]
async fn run_openai(
    State(st): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
    Query(q): Query<OpenAiQuery>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let (s, body) = match prepare_with_body(&st, &who, &id, body).await {
        Ok(v) => v,
        Err(e) => return e.into_response(),
    };
    let call = match serde_json::from_slice::<Value>(&body)
        .map_err(|e| ActionError::BadRequest(format!("body is not JSON: {e}")))
        .and_then(openai::Call::from_value)
    {
        Ok(c) => c,
        Err(e) => return reject(&e),
    };
    let opts = openai::Options {
        display_width: q.display_width,
        display_height: q.display_height,
        format: q.format,
        verbose: q.verbose,
    };
    let exec = match executor(&st, &s).await {
        Ok(e) => e,
        Err(e) => return reject(&e),
    };
    let ran = run_logged(&st, &s, who.actor(), "openai", exec, |exec| async move {
        openai::run(&exec, &call, &opts).await
    })
    .await;
    match ran {
        Ok((out, resp)) => (batch_status(&resp), axum::Json(out)).into_response(),
        Err(e) => e.into_response(),
    }
}

/// A page of the action log.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ActionPage {
    /// Oldest first. `who` is `user:<id>` or `token:<id>`; `what` holds the action name, its
    /// input, the door it came through (`via`: rest, anthropic, openai, mcp) and its index in
    /// its batch; `duration_ms` is its wall time.
    pub actions: Vec<ActionRecord>,
    /// Pass as `after` to get the next page; absent at the end.
    pub next_after: Option<u64>,
}

/// Pages through the session's action log, oldest first.
#[utoipa::path(get, path = "/sessions/{id}/actions", tag = "actions",
    params(("id" = String, Path, description = "session id"), Page),
    responses((status = 200, body = ActionPage), CommonErrors))]
async fn list_actions(
    State(st): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
    Query(page): Query<Page>,
) -> ApiResult<Json<ActionPage>> {
    authorize_session(&st, &who, &id)?;
    let limit = page.limit()?;
    let actions = st.store().list_actions(&id, page.after, limit)?;
    let next_after = if actions.len() == limit {
        actions.last().map(|a| a.seq)
    } else {
        None
    };
    Ok(Json(ActionPage {
        actions,
        next_after,
    }))
}

/// Screenshot query.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ShotQuery {
    /// png (default), jpeg or webp (lossless).
    pub format: Option<ImageFormat>,
    /// JPEG quality 1–100 (default 80).
    #[param(minimum = 1, maximum = 100)]
    pub quality: Option<u8>,
    /// Downscale: a factor in (0, 1] (`0.5`), `xga` (1024×768), `wxga` (1280×800), `fwxga`
    /// (1366×768) or `WIDTHxHEIGHT`.
    pub scale: Option<String>,
    /// Draw the pointer.
    pub cursor: Option<bool>,
}

/// The session's screen as an image (`image/png`, `image/jpeg` or `image/webp`). The
/// `X-Zigral-Scale` header says how image pixels map to the screen.
#[utoipa::path(get, path = "/sessions/{id}/screenshot", tag = "actions",
    params(("id" = String, Path, description = "session id"), ShotQuery),
    responses(
        (status = 200, description = "the encoded image", content(
            (Vec<u8> = "image/png"), (Vec<u8> = "image/jpeg"), (Vec<u8> = "image/webp"))),
        CommonErrors, DesktopErrors))]
async fn screenshot(
    State(st): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
    Query(q): Query<ShotQuery>,
) -> Response {
    let s = match session_with_desktop(&st, &who, &id).await {
        Ok(s) => s,
        Err(e) => return e.into_response(),
    };
    let scale = q.scale.map(|v| match v.trim().parse::<f64>() {
        Ok(f) => ScaleSpec::Factor(f),
        Err(_) => ScaleSpec::Named(v),
    });
    let spec = ScreenshotSpec {
        format: q.format,
        quality: q.quality,
        scale,
        cursor: q.cursor,
    };
    let exec = match executor(&st, &s).await {
        Ok(e) => e,
        Err(e) => return reject(&e),
    };
    match exec.screenshot_bytes(&spec).await {
        Ok(shot) => {
            let sc = &shot.scale;
            let scale = json!({
                "source_x": sc.source.x, "source_y": sc.source.y,
                "source_width": sc.source.width, "source_height": sc.source.height,
                "width": sc.image.width, "height": sc.image.height,
            })
            .to_string();
            (
                [
                    (header::CONTENT_TYPE, shot.mime.to_owned()),
                    (header::CACHE_CONTROL, "no-store".to_owned()),
                    (header::HeaderName::from_static("x-zigral-scale"), scale),
                ],
                shot.bytes,
            )
                .into_response()
        }
        Err(e) => {
            st.desktops().note_failure(s.desktop, &exec, e.code()).await;
            reject(&e)
        }
    }
}

pub(crate) fn browser_error(e: zigral_browser::BrowserError) -> ApiError {
    let e = ActionError::Browser(e);
    let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    if status == StatusCode::INTERNAL_SERVER_ERROR {
        return ApiError::internal(e);
    }
    ApiError::new(status, e.code().as_str(), e.to_string())
}
