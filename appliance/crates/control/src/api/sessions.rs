//! `/api/v1/sessions`: create, list, get, update and delete sessions (bound to desktop 0 for
//! now), and mint the proxy's view/control tokens for a session's desktop.

use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};
use zigral_store::{SessionRecord, now_ms};
use zigral_token::Role;

use crate::auth::{Principal, Scope, authorize_session, new_id};
use crate::error::{ApiError, ApiResult, CommonErrors, Json, Path};
use crate::events::Event;
use crate::state::AppState;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_session, list_sessions))
        .routes(routes!(get_session, update_session, delete_session))
        .routes(routes!(view_token))
}

/// Longest system prompt accepted, in bytes.
const MAX_PROMPT: usize = 256 * 1024;

/// New session.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewSession {
    /// Display title (up to 200 characters).
    pub title: Option<String>,
    /// System prompt placed first in every context window.
    pub system_prompt: Option<String>,
    /// Desktop to bind; only desktop 0 exists for now.
    #[schema(minimum = 0, maximum = 0)]
    pub desktop: Option<u32>,
}

/// Session changes; absent fields stay as they are.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SessionUpdate {
    pub title: Option<String>,
    /// A new system prompt; `""` removes it.
    pub system_prompt: Option<String>,
    /// Free-form state label (up to 64 characters).
    pub state: Option<String>,
}

fn check_title(t: &str) -> Result<(), ApiError> {
    if t.chars().count() > 200 {
        return Err(ApiError::invalid("title must have at most 200 characters"));
    }
    Ok(())
}

fn check_prompt(p: &str) -> Result<(), ApiError> {
    if p.len() > MAX_PROMPT {
        return Err(ApiError::invalid("system_prompt is longer than 256 KiB"));
    }
    Ok(())
}

/// Creates a session owned by the caller, bound to desktop 0.
#[utoipa::path(post, path = "/sessions", tag = "sessions", request_body = NewSession,
    responses((status = 201, body = SessionRecord), CommonErrors))]
async fn create_session(
    State(st): State<AppState>,
    who: Principal,
    Json(body): Json<NewSession>,
) -> ApiResult<(StatusCode, Json<SessionRecord>)> {
    let desktop = body.desktop.unwrap_or(0);
    if desktop != 0 {
        return Err(ApiError::invalid(
            "only desktop 0 exists (per-user desktops come with multi-user support)",
        ));
    }
    let title = body.title.unwrap_or_default();
    check_title(&title)?;
    if let Some(p) = &body.system_prompt {
        check_prompt(p)?;
    }
    let now = now_ms();
    let s = st
        .store()
        .create_session(SessionRecord {
            id: new_id(),
            owner: who.user_id.clone(),
            title,
            desktop,
            system_prompt: body.system_prompt.filter(|p| !p.is_empty()),
            state: "idle".into(),
            created_at: now,
            updated_at: now,
            message_count: 0,
            next_seq: 0,
        })
        .await?;
    st.audit(
        &who.actor(),
        "session.create",
        &s.id,
        json!({"desktop": desktop}),
    )
    .await;
    st.publish(Event::new(
        "session.created",
        Some(&s.id),
        Some(&s.owner),
        json!({"title": s.title, "desktop": s.desktop, "owner": s.owner}),
    ));
    Ok((StatusCode::CREATED, Json(s)))
}

/// Lists sessions: your own; administrators see every session.
#[utoipa::path(get, path = "/sessions", tag = "sessions",
    responses((status = 200, body = Vec<SessionRecord>), CommonErrors))]
async fn list_sessions(
    State(st): State<AppState>,
    who: Principal,
) -> ApiResult<Json<Vec<SessionRecord>>> {
    let owner = (!who.is_admin).then_some(who.user_id.as_str());
    Ok(Json(st.store().list_sessions(owner)?))
}

/// One session.
#[utoipa::path(get, path = "/sessions/{id}", tag = "sessions",
    params(("id" = String, Path, description = "session id")),
    responses((status = 200, body = SessionRecord), CommonErrors))]
async fn get_session(
    State(st): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
) -> ApiResult<Json<SessionRecord>> {
    Ok(Json(authorize_session(&st, &who, &id)?))
}

/// Changes a session's title, system prompt or state.
#[utoipa::path(patch, path = "/sessions/{id}", tag = "sessions", request_body = SessionUpdate,
    params(("id" = String, Path, description = "session id")),
    responses((status = 200, body = SessionRecord), CommonErrors))]
async fn update_session(
    State(st): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
    Json(body): Json<SessionUpdate>,
) -> ApiResult<Json<SessionRecord>> {
    authorize_session(&st, &who, &id)?;
    if let Some(t) = &body.title {
        check_title(t)?;
    }
    if let Some(p) = &body.system_prompt {
        check_prompt(p)?;
    }
    if let Some(s) = &body.state
        && s.chars().count() > 64
    {
        return Err(ApiError::invalid("state must have at most 64 characters"));
    }
    let prompt = body
        .system_prompt
        .map(|p| if p.is_empty() { None } else { Some(p) });
    let s = st
        .store()
        .update_session(&id, body.title, prompt, body.state)
        .await?;
    st.publish(Event::new(
        "session.updated",
        Some(&s.id),
        Some(&s.owner),
        json!({"title": s.title, "state": s.state}),
    ));
    Ok(Json(s))
}

/// Deletes a session with its messages, actions, feedback, checkpoints and summaries.
#[utoipa::path(delete, path = "/sessions/{id}", tag = "sessions",
    params(("id" = String, Path, description = "session id")),
    responses((status = 204, description = "deleted"), CommonErrors))]
async fn delete_session(
    State(st): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    authorize_session(&st, &who, &id)?;
    let s = st.store().delete_session(&id).await?;
    st.audit(&who.actor(), "session.delete", &id, json!({}))
        .await;
    st.publish(Event::new(
        "session.deleted",
        Some(&id),
        Some(&s.owner),
        json!({}),
    ));
    Ok(StatusCode::NO_CONTENT)
}

/// View-token request.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ViewTokenRequest {
    /// `view` (watch only) or `control` (needs the `control` scope). Default `view`.
    #[schema(value_type = Option<String>, example = "view")]
    pub role: Option<String>,
    /// Lifetime in seconds (1..=3600); default from the configuration.
    #[schema(minimum = 1, maximum = 3600)]
    pub ttl_secs: Option<u64>,
}

/// A signed token for the WebSocket→VNC proxy.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ViewToken {
    pub token: String,
    pub desktop: u32,
    pub role: String,
    /// Seconds since the epoch.
    pub expires_at: u64,
}

/// Mints a signed, expiring view or control token for the session's desktop, checked by the
/// proxy (`zigral proxy`) without calling back.
#[utoipa::path(post, path = "/sessions/{id}/view-token", tag = "sessions",
    request_body(content = Option<ViewTokenRequest>, description = "optional; no body gives a view token"),
    params(("id" = String, Path, description = "session id")),
    responses((status = 201, body = ViewToken), CommonErrors))]
async fn view_token(
    State(st): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> ApiResult<(StatusCode, Json<ViewToken>)> {
    let s = authorize_session(&st, &who, &id)?;
    let req: ViewTokenRequest = if body.iter().all(u8::is_ascii_whitespace) {
        ViewTokenRequest {
            role: None,
            ttl_secs: None,
        }
    } else {
        let v: serde_json::Value = serde_json::from_slice(&body)
            .map_err(|e| ApiError::bad_request(format!("invalid JSON: {e}")))?;
        if !v.is_object() {
            return Err(ApiError::invalid("the body must be a JSON object"));
        }
        serde_json::from_value(v)
            .map_err(|e| ApiError::invalid(format!("invalid request body: {e}")))?
    };
    let role: Role = req
        .role
        .as_deref()
        .unwrap_or("view")
        .parse()
        .map_err(|e: zigral_token::TokenError| ApiError::invalid(e.to_string()))?;
    if role == Role::Control {
        who.require(Scope::Control)?;
    }
    let ttl = req.ttl_secs.unwrap_or(st.config().view_token_ttl_secs);
    if !(1..=3600).contains(&ttl) {
        return Err(ApiError::invalid("ttl_secs must be 1..=3600"));
    }
    let (token, claims) = st
        .signing_key()
        .mint_for(s.desktop, role, &who.user_id, ttl);
    st.audit(
        &who.actor(),
        "session.view_token",
        &id,
        json!({"role": role.to_string(), "desktop": s.desktop, "ttl_secs": ttl}),
    )
    .await;
    Ok((
        StatusCode::CREATED,
        Json(ViewToken {
            token,
            desktop: claims.desktop,
            role: role.to_string(),
            expires_at: claims.exp,
        }),
    ))
}
