//! `/api/v1/sessions`: create, list, get, update and delete sessions, and mint the proxy's
//! view/control tokens for a session's desktop. In managed mode creating a session gives it
//! a desktop of its owner (ready before the reply) and deleting it releases that desktop.

use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};
use zigral_store::{SessionRecord, now_ms};
use zigral_token::Role;

use crate::auth::{Principal, Scope, authorize_session, new_id, session_with_desktop};
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
    /// Desktop to bind, in static mode only (default 0); in managed mode (the appliance) the
    /// session gets a desktop of its owner and this must be absent.
    #[schema(minimum = 0, maximum = 99)]
    pub desktop: Option<u32>,
}

/// A session as the API shows it: the stored record and the appliance it lives on.
#[derive(Debug, Serialize, ToSchema)]
pub struct SessionView {
    #[serde(flatten)]
    pub session: SessionRecord,
    /// The appliance (`appliance_name`) this session lives on: through a fleet, every later
    /// request for it goes to `/a/<appliance>/...`.
    pub appliance: String,
}

impl SessionView {
    pub fn new(st: &AppState, session: SessionRecord) -> SessionView {
        SessionView {
            session,
            appliance: st.config().appliance_name.clone(),
        }
    }
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

/// Creates a session owned by the caller. In managed mode it gets a desktop of its owner (the
/// owner's existing one under the per-user policy, a warm-pool one, or a new one) and the
/// reply comes once that desktop is ready; a quota refuses with 429 (the user's) or 409 (the
/// appliance's), naming the limit. While the appliance is draining (`PUT
/// /api/v1/admin/draining`) it answers 503 `appliance_draining`: create the session through
/// the fleet address instead.
#[utoipa::path(post, path = "/sessions", tag = "sessions", request_body = NewSession,
    responses((status = 201, body = SessionView),
        (status = 409, description = "the appliance runs as many desktops as it may (max_desktops)", body = crate::error::ErrorBody),
        (status = 429, description = "the user holds as many desktops as they may (max_desktops_per_user)", body = crate::error::ErrorBody),
        (status = 503, description = "the desktop could not be started (`desktop_unavailable`), or the appliance is draining (`appliance_draining`)", body = crate::error::ErrorBody),
        CommonErrors))]
async fn create_session(
    State(st): State<AppState>,
    who: Principal,
    Json(body): Json<NewSession>,
) -> ApiResult<(StatusCode, Json<SessionView>)> {
    crate::fleet::refuse_new_session(&st)?;
    let managed = st.vdi().managed();
    if managed && body.desktop.is_some() {
        return Err(ApiError::invalid(
            "desktop: the appliance assigns desktops (each session gets one of its owner's); leave it out",
        ));
    }
    let desktop = body.desktop.unwrap_or(0);
    if desktop >= crate::config::DESKTOP_NUMBERS {
        return Err(ApiError::invalid("desktop must be 0..=99"));
    }
    let title = body.title.unwrap_or_default();
    check_title(&title)?;
    if let Some(p) = &body.system_prompt {
        check_prompt(p)?;
    }
    let id = new_id();
    let desktop = if managed {
        let user = st
            .store()
            .get_user(&who.user_id)?
            .ok_or_else(|| ApiError::unauthorized("your account no longer exists"))?;
        st.vdi().acquire(&user, Some(&id)).await?
    } else {
        desktop
    };
    let now = now_ms();
    let created = st
        .store()
        .create_session(SessionRecord {
            id: id.clone(),
            owner: who.user_id.clone(),
            title,
            desktop,
            system_prompt: body.system_prompt.filter(|p| !p.is_empty()),
            state: "idle".into(),
            created_at: now,
            updated_at: now,
            message_count: 0,
            next_seq: 0,
            agent: None,
            hitl: None,
        })
        .await;
    let s = match created {
        Ok(s) => s,
        Err(e) => {
            st.vdi().release(&id).await;
            return Err(e.into());
        }
    };
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
    Ok((StatusCode::CREATED, Json(SessionView::new(&st, s))))
}

/// Lists sessions: your own; administrators see every session.
#[utoipa::path(get, path = "/sessions", tag = "sessions",
    responses((status = 200, body = Vec<SessionView>), CommonErrors))]
async fn list_sessions(
    State(st): State<AppState>,
    who: Principal,
) -> ApiResult<Json<Vec<SessionView>>> {
    let owner = (!who.is_admin).then_some(who.user_id.as_str());
    Ok(Json(
        st.store()
            .list_sessions(owner)?
            .into_iter()
            .map(|s| SessionView::new(&st, s))
            .collect(),
    ))
}

/// One session.
#[utoipa::path(get, path = "/sessions/{id}", tag = "sessions",
    params(("id" = String, Path, description = "session id")),
    responses((status = 200, body = SessionView), CommonErrors))]
async fn get_session(
    State(st): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
) -> ApiResult<Json<SessionView>> {
    Ok(Json(SessionView::new(
        &st,
        authorize_session(&st, &who, &id)?,
    )))
}

/// Changes a session's title, system prompt or state.
#[utoipa::path(patch, path = "/sessions/{id}", tag = "sessions", request_body = SessionUpdate,
    params(("id" = String, Path, description = "session id")),
    responses((status = 200, body = SessionView), CommonErrors))]
async fn update_session(
    State(st): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
    Json(body): Json<SessionUpdate>,
) -> ApiResult<Json<SessionView>> {
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
    Ok(Json(SessionView::new(&st, s)))
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
    // Its agent stops (a running turn ends at its next step).
    st.agents().forget(&id);
    st.hitl().clear_focus(&id);
    let shots = crate::hitl::feedback::shots_dir(&st, &id);
    if shots.exists()
        && let Err(e) = std::fs::remove_dir_all(&shots)
    {
        tracing::warn!(session = %id, error = %e, "cannot remove the feedback screenshots");
    }
    st.control().end_session(&id, &who.actor()).await;
    // Its desktop goes when no other session uses it (the reply waits for that).
    st.vdi().release(&id).await;
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
    /// `view` (watch only) or `control` (needs the `control` scope). Default `view`. While
    /// another login holds control of the desktop, `control` gives a `view` token.
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
    authorize_session(&st, &who, &id)?;
    let (role, ttl) = token_request(&st, &who, &body)?;
    let s = session_with_desktop(&st, &who, &id).await?;
    let t = mint_token(&st, &who, s.desktop, role, ttl)?;
    st.audit(
        &who.actor(),
        "session.view_token",
        &id,
        json!({"role": t.role, "desktop": s.desktop, "ttl_secs": ttl}),
    )
    .await;
    Ok((StatusCode::CREATED, Json(t)))
}

/// Reads a view-token request body (empty: a view token of the default lifetime): the role
/// (`control` needs the `control` scope) and the lifetime.
pub(crate) fn token_request(st: &AppState, who: &Principal, body: &[u8]) -> ApiResult<(Role, u64)> {
    let req: ViewTokenRequest = if body.iter().all(u8::is_ascii_whitespace) {
        ViewTokenRequest {
            role: None,
            ttl_secs: None,
        }
    } else {
        let v: serde_json::Value = serde_json::from_slice(body)
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
    Ok((role, ttl))
}

/// Mints a token for desktop `n` under its current lease (the proxy refuses it once the
/// desktop is destroyed or handed to someone else). While another login holds control of the
/// desktop a `control` request gets a `view` token; a login's control tokens carry its control
/// id (see [`crate::control_lease`]).
pub(crate) fn mint_token(
    st: &AppState,
    who: &Principal,
    n: u32,
    role: Role,
    ttl: u64,
) -> ApiResult<ViewToken> {
    let lease = st.vdi().record(n).and_then(|r| r.lease);
    let (role, control) = st.control().grant(n, who, role);
    let (token, claims) = st
        .signing_key()
        .mint_grant(&zigral_token::Grant {
            desktop: n,
            role,
            sub: &who.user_id,
            ttl_secs: ttl,
            lease: lease.as_deref(),
            control: control.as_deref(),
        })
        .map_err(ApiError::internal)?;
    Ok(ViewToken {
        token,
        desktop: claims.desktop,
        role: role.to_string(),
        expires_at: claims.exp,
    })
}
