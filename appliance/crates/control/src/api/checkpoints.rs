//! Browser checkpoints of a session: capture (cookies, storage of the open origins, tabs),
//! list (metadata only: the stored data holds live cookie values) and restore.

use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::json;
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};
use zigral_store::{CheckpointMeta, CheckpointRecord, now_ms};

use crate::api::actions::{DesktopErrors, body_of, browser_error, prepare};
use crate::auth::{Principal, authorize_session, new_id};
use crate::error::{ApiError, ApiResult, CommonErrors, Json, Path};
use crate::events::Event;
use crate::state::AppState;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_checkpoint, list_checkpoints))
        .routes(routes!(restore_checkpoint))
}

/// New checkpoint.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewCheckpoint {
    /// Free label (up to 200 characters).
    pub label: Option<String>,
}

/// Captures the session's browser state (cookies, localStorage/sessionStorage of the open
/// origins, open tabs and URLs) as a checkpoint. The stored data holds live cookie values: it
/// is sealed at rest (ChaCha20-Poly1305, bound to the session) and never returned by the API.
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
    let s = prepare(&st, &who, &id).await?;
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
    // Sealed at rest: the data holds live cookie values.
    let data = crate::hitl::undo::seal(&st, &id, &cp).map_err(ApiError::internal)?;
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
    let s = prepare(&st, &who, &id).await?;
    let rec = st
        .store()
        .get_checkpoint(&id, &cid)?
        .ok_or_else(|| ApiError::not_found("checkpoint not found"))?;
    let cp = crate::hitl::undo::open(&st, &id, rec.data)
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
