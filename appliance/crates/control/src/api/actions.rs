//! The agent action API of a session: native actions (one or a batch), the Anthropic and
//! OpenAI computer-use adapters, the action log, screenshots, browser checkpoints and
//! downloads. Every executed action is written to the session's action log before the reply.

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};
use zigral_actions::{
    Action, ActionError, BatchRequest, BatchResponse, Executor, ImageFormat, LogEntry, ScaleSpec,
    ScreenshotSpec, anthropic, openai,
};
use zigral_store::{
    ActionRecord, CheckpointMeta, CheckpointRecord, NewAction, SessionRecord, now_ms,
};

use crate::api::messages::Page;
use crate::auth::{Principal, Scope, authorize_session, new_id};
use crate::error::{ApiError, ApiResult, CommonErrors, ErrorBody, Json, Path, Query};
use crate::events::Event;
use crate::state::AppState;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(run_actions, list_actions))
        .routes(routes!(run_anthropic))
        .routes(routes!(run_openai))
        .routes(routes!(screenshot))
        .routes(routes!(create_checkpoint, list_checkpoints))
        .routes(routes!(restore_checkpoint))
        .routes(routes!(list_downloads))
        .routes(routes!(get_download))
}

/// Errors specific to driving a desktop (for the OpenAPI document).
#[derive(utoipa::IntoResponses)]
#[allow(dead_code)]
pub enum DesktopErrors {
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
    /// `url_not_allowed`, `desktop_unavailable`, ...
    pub error: String,
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
            error: e.code().to_owned(),
            message: e.to_string(),
            index: e.index(),
        }),
    )
        .into_response()
}

fn body_of(body: Result<Bytes, BytesRejection>) -> Result<Bytes, ApiError> {
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
        .map(|e| ActionError::status_for_code(&e.error));
    match code {
        None => StatusCode::OK,
        Some(c) => StatusCode::from_u16(c).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
    }
}

/// The session's executor (connecting to its desktop if needed).
async fn executor(st: &AppState, s: &SessionRecord) -> Result<Executor, ActionError> {
    st.desktops().executor(s.desktop).await
}

/// Writes every entry to the session's action log (before the reply), publishes one
/// `actions.executed` event, and forgets the desktop connection if it failed.
pub(crate) async fn record_batch(
    st: &AppState,
    s: &SessionRecord,
    via: &str,
    entries: Vec<LogEntry>,
    resp: &BatchResponse,
) {
    let count = entries.len();
    let mut seqs = Vec::with_capacity(count);
    for e in entries {
        let rec = NewAction {
            who: e.who,
            what: json!({"action": e.action, "input": e.input, "via": e.via, "index": e.index}),
            result: e.result,
            ok: e.ok,
            duration_ms: e.duration_ms.round().max(0.0) as u64,
        };
        match st.store().append_action(&s.id, rec).await {
            Ok(r) => seqs.push(r.seq),
            Err(e) => tracing::error!(session = %s.id, error = %e, "cannot write action log"),
        }
    }
    if let Some(code) = resp
        .results
        .iter()
        .find_map(|r| r.error.as_ref().map(|e| e.error.clone()))
    {
        st.desktops().note_failure(s.desktop, &code).await;
    }
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
            "duration_ms": resp.duration_ms,
        }),
    ));
}

async fn rejected(st: &AppState, s: &SessionRecord, e: &ActionError) -> Response {
    st.desktops().note_failure(s.desktop, e.code()).await;
    reject(e)
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
    let (s, body) = match prepare_with_body(&st, &who, &id, body) {
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
    match exec.run(&req).await {
        Ok(resp) => {
            record_batch(
                &st,
                &s,
                "rest",
                resp.log_entries(&req, &who.actor(), "rest"),
                &resp,
            )
            .await;
            (batch_status(&resp), axum::Json(resp)).into_response()
        }
        Err(e) => rejected(&st, &s, &e).await,
    }
}

fn prepare(st: &AppState, who: &Principal, id: &str) -> ApiResult<SessionRecord> {
    who.require(Scope::Control)?;
    authorize_session(st, who, id)
}

/// [`prepare`], then the request body (size limit and extraction errors as JSON).
fn prepare_with_body(
    st: &AppState,
    who: &Principal,
    id: &str,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<(SessionRecord, Bytes)> {
    let s = prepare(st, who, id)?;
    Ok((s, body_of(body)?))
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

/// Runs one Anthropic computer-use tool input (`{"action": "left_click", "coordinate": [x, y]}`)
/// with coordinates in the declared display size; replies with the `tool_result` content
/// (text and a screenshot at the declared size). See MAPPING.md of zigral-actions.
#[utoipa::path(post, path = "/sessions/{id}/actions/anthropic", tag = "actions",
    request_body(content = anthropic::ComputerInput, content_type = "application/json"),
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
    let (s, body) = match prepare_with_body(&st, &who, &id, body) {
        Ok(v) => v,
        Err(e) => return e.into_response(),
    };
    let input: anthropic::ComputerInput = match serde_json::from_slice(&body) {
        Ok(i) => i,
        Err(e) => {
            return reject(&ActionError::BadRequest(format!(
                "not a computer tool input: {e}"
            )));
        }
    };
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
    match anthropic::run(&exec, &input, &opts).await {
        Ok((out, req, resp)) => {
            let entries = resp.log_entries(&req, &who.actor(), "anthropic");
            record_batch(&st, &s, "anthropic", entries, &resp).await;
            (batch_status(&resp), axum::Json(out)).into_response()
        }
        Err(e) => rejected(&st, &s, &e).await,
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
/// item, or `{"actions": [...]}`, with coordinates in the declared display size; replies with
/// a `computer_call_output` item carrying the screenshot.
#[utoipa::path(post, path = "/sessions/{id}/actions/openai", tag = "actions",
    request_body(content = Object, content_type = "application/json",
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
    let (s, body) = match prepare_with_body(&st, &who, &id, body) {
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
    match openai::run(&exec, &call, &opts).await {
        Ok((out, req, resp)) => {
            let entries = resp.log_entries(&req, &who.actor(), "openai");
            record_batch(&st, &s, "openai", entries, &resp).await;
            (batch_status(&resp), axum::Json(out)).into_response()
        }
        Err(e) => rejected(&st, &s, &e).await,
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
    let s = match authorize_session(&st, &who, &id) {
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
        Err(e) => rejected(&st, &s, &e).await,
    }
}

/// New checkpoint.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewCheckpoint {
    /// Free label (up to 200 characters).
    pub label: Option<String>,
}

/// Captures the session's browser state (cookies, localStorage/sessionStorage of the open
/// origins, open tabs and URLs) as a checkpoint. The stored data holds live cookie values; it
/// is never returned by the API.
#[utoipa::path(post, path = "/sessions/{id}/checkpoints", tag = "actions",
    request_body(content = Option<NewCheckpoint>, content_type = "application/json"),
    params(("id" = String, Path, description = "session id")),
    responses((status = 201, body = CheckpointMeta), CommonErrors, DesktopErrors))]
async fn create_checkpoint(
    State(st): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<(StatusCode, Json<CheckpointMeta>)> {
    let s = prepare(&st, &who, &id)?;
    let body = body_of(body)?;
    let req: NewCheckpoint = if body.iter().all(u8::is_ascii_whitespace) {
        NewCheckpoint::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| ApiError::bad_request(e.to_string()))?
    };
    let label = req.label.unwrap_or_default();
    if label.chars().count() > 200 {
        return Err(ApiError::invalid("label must have at most 200 characters"));
    }
    let browser = st.desktops().browser(s.desktop).await;
    let cp = browser.checkpoint().await.map_err(browser_error)?;
    let action_seq = st.store().last_actions(&id, 1)?.first().map(|a| a.seq);
    let meta = CheckpointMeta {
        id: new_id(),
        label,
        action_seq,
        created_at: now_ms(),
        size_bytes: 0,
        meta: json!({
            "tabs": cp.tabs.iter().map(|t| json!({"url": t.url, "title": t.title, "active": t.active})).collect::<Vec<_>>(),
            "cookies": cp.cookies.len(),
            "origins": cp.origins.iter().map(|o| o.origin.clone()).collect::<Vec<_>>(),
        }),
    };
    let data = serde_json::to_value(&cp).map_err(ApiError::internal)?;
    let stored = st
        .store()
        .put_checkpoint(&id, CheckpointRecord { meta, data })
        .await?;
    st.audit(
        &who.actor(),
        "checkpoint.create",
        &id,
        json!({"checkpoint": stored.id}),
    )
    .await;
    st.publish(Event::new(
        "checkpoint.created",
        Some(&id),
        Some(&s.owner),
        json!({"checkpoint": stored.id, "label": stored.label}),
    ));
    Ok((StatusCode::CREATED, Json(stored)))
}

fn browser_error(e: zigral_browser::BrowserError) -> ApiError {
    let e = ActionError::Browser(e);
    let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    if status == StatusCode::INTERNAL_SERVER_ERROR {
        return ApiError::internal(e);
    }
    ApiError::new(status, e.code(), e.to_string())
}

/// The session's checkpoints (metadata only).
#[utoipa::path(get, path = "/sessions/{id}/checkpoints", tag = "actions",
    params(("id" = String, Path, description = "session id")),
    responses((status = 200, body = Vec<CheckpointMeta>), CommonErrors))]
async fn list_checkpoints(
    State(st): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
) -> ApiResult<Json<Vec<CheckpointMeta>>> {
    authorize_session(&st, &who, &id)?;
    Ok(Json(st.store().list_checkpoints(&id)?))
}

/// Restores a checkpoint: cookies replaced, tabs reopened at their URLs with their storage.
#[utoipa::path(post, path = "/sessions/{id}/checkpoints/{cid}/restore", tag = "actions",
    params(("id" = String, Path, description = "session id"),
        ("cid" = String, Path, description = "checkpoint id")),
    responses((status = 200, body = CheckpointMeta), CommonErrors, DesktopErrors))]
async fn restore_checkpoint(
    State(st): State<AppState>,
    who: Principal,
    Path((id, cid)): Path<(String, String)>,
) -> ApiResult<Json<CheckpointMeta>> {
    let s = prepare(&st, &who, &id)?;
    let rec = st
        .store()
        .get_checkpoint(&id, &cid)?
        .ok_or_else(|| ApiError::not_found("checkpoint not found"))?;
    let cp: zigral_browser::Checkpoint = serde_json::from_value(rec.data)
        .map_err(|e| ApiError::internal(format!("checkpoint {cid} is unreadable: {e}")))?;
    let browser = st.desktops().browser(s.desktop).await;
    let policy = zigral_browser::UrlPolicy::default();
    browser.restore(&cp, &policy).await.map_err(browser_error)?;
    st.audit(
        &who.actor(),
        "checkpoint.restore",
        &id,
        json!({"checkpoint": cid}),
    )
    .await;
    st.publish(Event::new(
        "checkpoint.restored",
        Some(&id),
        Some(&s.owner),
        json!({"checkpoint": cid}),
    ));
    Ok(Json(rec.meta))
}

/// A file in the desktop's downloads directory.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct DownloadEntry {
    pub name: String,
    pub size: u64,
    /// Last modification, Unix milliseconds.
    pub modified_ms: u64,
    /// False while Chrome is still writing it.
    pub complete: bool,
}

/// Files Chrome downloaded on the session's desktop, newest first.
#[utoipa::path(get, path = "/sessions/{id}/downloads", tag = "actions",
    params(("id" = String, Path, description = "session id")),
    responses((status = 200, body = Vec<DownloadEntry>), CommonErrors))]
async fn list_downloads(
    State(st): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
) -> ApiResult<Json<Vec<DownloadEntry>>> {
    let s = authorize_session(&st, &who, &id)?;
    let browser = st.desktops().browser(s.desktop).await;
    let list = browser.downloads().map_err(browser_error)?;
    Ok(Json(
        list.into_iter()
            .map(|d| DownloadEntry {
                name: d.name,
                size: d.size,
                modified_ms: d.modified_ms,
                complete: d.complete,
            })
            .collect(),
    ))
}

/// One downloaded file's bytes (`Content-Disposition: attachment`).
#[utoipa::path(get, path = "/sessions/{id}/downloads/{name}", tag = "actions",
    params(("id" = String, Path, description = "session id"),
        ("name" = String, Path, description = "file name (no directories)")),
    responses((status = 200, description = "the file", content_type = "application/octet-stream", body = Vec<u8>),
        CommonErrors))]
async fn get_download(
    State(st): State<AppState>,
    who: Principal,
    Path((id, name)): Path<(String, String)>,
) -> ApiResult<Response> {
    let s = authorize_session(&st, &who, &id)?;
    let browser = st.desktops().browser(s.desktop).await;
    let path = browser.download_path(&name).map_err(browser_error)?;
    let data = match tokio::fs::read(&path).await {
        Ok(d) => d,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(ApiError::not_found("no such download"));
        }
        Err(e) => return Err(ApiError::internal(e)),
    };
    let safe: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() && c != '"' && c != '\\' {
                c
            } else {
                '_'
            }
        })
        .collect();
    Ok((
        [
            (header::CONTENT_TYPE, "application/octet-stream".to_owned()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{safe}\""),
            ),
        ],
        Body::from(data),
    )
        .into_response())
}
