//! `/api/v1/sessions/{id}/chat` and `/agent`: talk to the session's built-in agent and steer
//! it. A chat message is stored and published like any message; when the session has an agent
//! profile (`PUT /sessions/{id}/agent`), a turn of the agent loop starts on it (202, progress
//! on the events websocket: `agent.turn.started`, `agent.request`, `agent.step` with a
//! thumbnail URL, `agent.text`, `agent.state`, `agent.approval`, `agent.turn.ended`), or the
//! call waits for the turn with `wait: true`. Without a profile the message is only stored
//! and published, for external agents that drive through REST or MCP.

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};
use zigral_store::{AgentTurnRecord, NewMessage, SessionRecord};

use crate::agents::runner::{self, TurnView};
use crate::agents::{AgentStatus, Ctl};
use crate::api::messages::Page;
use crate::auth::{Principal, Scope, authorize_session};
use crate::error::{ApiError, ApiResult, CommonErrors, ErrorBody, Json, Path, Query};
use crate::events::Event;
use crate::state::AppState;
use crate::tokens_estimate::{MESSAGE_OVERHEAD, text_tokens};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(chat))
        .routes(routes!(get_agent, set_agent))
        .routes(routes!(stop))
        .routes(routes!(pause))
        .routes(routes!(resume))
        .routes(routes!(approve))
        .routes(routes!(turns))
        .routes(routes!(thumbnail))
}

/// The agent's state does not allow the request (for the OpenAPI document).
#[derive(utoipa::IntoResponses)]
#[allow(dead_code)]
pub enum AgentConflict {
    /// `agent_busy` (a turn is running), `agent_idle` (none is), `nothing_to_approve`, or the
    /// session has no agent.
    #[response(status = 409)]
    Conflict(ErrorBody),
}

/// Most characters of one chat message.
pub const MAX_CHAT: usize = 32 * 1024;

/// A chat message.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChatBody {
    /// 1–32768 characters.
    pub text: String,
    /// Wait for the agent's turn to end and reply with it (default false: 202 at once).
    #[serde(default)]
    pub wait: bool,
}

/// The reply to a chat message.
#[derive(Debug, Serialize, ToSchema)]
pub struct ChatReply {
    /// Sequence number of the stored message.
    pub seq: u64,
    /// The agent profile working on it; `null` when the session has no agent (the message
    /// is stored and published for external agents).
    pub agent: Option<String>,
    /// The finished turn (only with `wait: true` and an agent).
    pub turn: Option<TurnView>,
    pub status: Option<AgentStatus>,
}

/// Which profile drives the session.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetAgentBody {
    /// Profile id, or `null` for no built-in agent.
    pub profile: Option<String>,
}

/// An answer to a pending approval.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ApproveBody {
    pub approve: bool,
    /// Why (told to the model with a rejection; up to 2000 characters).
    pub comment: Option<String>,
}

fn owned(st: &AppState, who: &Principal, id: &str) -> ApiResult<SessionRecord> {
    authorize_session(st, who, id)
}

fn status_of(st: &AppState, s: &SessionRecord) -> Option<AgentStatus> {
    st.agents().get(&s.id).map(|a| a.status())
}

/// Sends a chat message to the session: stored, published, and worked on by the session's
/// agent if it has one. 409 `agent_busy` while a turn runs (stop it first); 422 when the
/// profile cannot run (no API key, invalid profile).
#[utoipa::path(post, path = "/sessions/{id}/chat", tag = "agent",
    request_body = ChatBody,
    params(("id" = String, Path, description = "session id")),
    responses(
        (status = 200, description = "the turn ended (wait: true)", body = ChatReply),
        (status = 202, description = "stored; the agent works on it (or there is no agent)", body = ChatReply),
        CommonErrors, AgentConflict))]
async fn chat(
    State(st): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
    Json(body): Json<ChatBody>,
) -> ApiResult<(StatusCode, Json<ChatReply>)> {
    who.require(Scope::Write)?;
    let s = owned(&st, &who, &id)?;
    let text = body.text.trim().to_owned();
    if text.is_empty() || text.chars().count() > MAX_CHAT {
        return Err(ApiError::invalid("text must have 1 to 32768 characters"));
    }
    // A turn that cannot start is refused before the message is stored.
    let claim = match s.agent {
        Some(_) => Some(runner::claim(&st, &s)?),
        None => None,
    };
    // A secret pasted into the chat is neither stored nor shown to the model.
    let text = st.hitl().redactor(&s.owner).redact(&text).into_owned();
    let m = st
        .store()
        .append_message(
            &id,
            NewMessage {
                role: "user".into(),
                content: json!([{"type": "text", "text": text}]),
                tokens: text_tokens(&text) + MESSAGE_OVERHEAD,
                author: who.actor(),
            },
        )
        .await?;
    st.publish(Event::new(
        "message.appended",
        Some(&id),
        Some(&s.owner),
        json!({"seq": m.seq, "role": m.role, "chat": true}),
    ));
    let Some(claim) = claim else {
        return Ok((
            StatusCode::ACCEPTED,
            Json(ChatReply {
                seq: m.seq,
                agent: None,
                turn: None,
                status: None,
            }),
        ));
    };
    let seen = claim.agent().finished_count();
    let agent = claim.spawn(text);
    if !body.wait {
        return Ok((
            StatusCode::ACCEPTED,
            Json(ChatReply {
                seq: m.seq,
                agent: s.agent.clone(),
                turn: None,
                status: Some(agent.status()),
            }),
        ));
    }
    runner::wait_turn(&agent, seen).await;
    let last = st.store().list_agent_turns(&id, None, usize::MAX)?.pop();
    let status = agent.status();
    let turn = last.map(|t| TurnView {
        turn: Some(t.turn),
        outcome: t.outcome,
        error: t.error,
        steps: t.steps,
        requests: t.requests,
        usage: t.usage,
        text: String::new(),
    });
    Ok((
        StatusCode::OK,
        Json(ChatReply {
            seq: m.seq,
            agent: s.agent.clone(),
            turn,
            status: Some(status),
        }),
    ))
}

/// The session's agent: its profile and state (idle, running, paused, waiting), the running
/// turn's steps and token usage, a pending approval, how the last turn ended.
#[utoipa::path(get, path = "/sessions/{id}/agent", tag = "agent",
    params(("id" = String, Path, description = "session id")),
    responses((status = 200, body = AgentView), CommonErrors))]
async fn get_agent(
    State(st): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
) -> ApiResult<Json<AgentView>> {
    let s = owned(&st, &who, &id)?;
    Ok(Json(AgentView {
        profile: s.agent.clone(),
        status: status_of(&st, &s),
    }))
}

/// A session's agent.
#[derive(Debug, Serialize, ToSchema)]
pub struct AgentView {
    /// The profile driving the session, if any.
    pub profile: Option<String>,
    /// `null` until the agent first ran in this process.
    pub status: Option<AgentStatus>,
}

/// Chooses the profile driving the session (`null`: none). Refused while a turn runs.
#[utoipa::path(put, path = "/sessions/{id}/agent", tag = "agent",
    request_body = SetAgentBody,
    params(("id" = String, Path, description = "session id")),
    responses((status = 200, body = AgentView), CommonErrors, AgentConflict))]
async fn set_agent(
    State(st): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
    Json(body): Json<SetAgentBody>,
) -> ApiResult<Json<AgentView>> {
    who.require(Scope::Write)?;
    owned(&st, &who, &id)?;
    if let Some(p) = &body.profile {
        crate::api::agents::visible(&st, &who, p)
            .map_err(|_| ApiError::invalid(format!("agent profile {p} not found")))?;
    }
    if st.agents().get(&id).is_some_and(|a| a.busy()) {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "agent_busy",
            "stop the agent's running turn before changing its profile",
        ));
    }
    let s = st
        .store()
        .set_session_agent(&id, body.profile.clone())
        .await?;
    st.audit(
        &who.actor(),
        "session.agent",
        &id,
        json!({"profile": body.profile}),
    )
    .await;
    st.publish(Event::new(
        "session.agent",
        Some(&id),
        Some(&s.owner),
        json!({"profile": s.agent}),
    ));
    Ok(Json(AgentView {
        profile: s.agent.clone(),
        status: status_of(&st, &s),
    }))
}

fn steer(st: &AppState, who: &Principal, id: &str, c: Ctl) -> ApiResult<Json<AgentStatus>> {
    who.require(Scope::Write)?;
    let s = owned(st, who, id)?;
    let Some(agent) = st.agents().get(id).filter(|a| a.busy()) else {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "agent_idle",
            "the agent is not working on a turn",
        ));
    };
    agent.set_ctl(c);
    let name = match c {
        Ctl::Run => "resumed",
        Ctl::Pause => "paused",
        Ctl::Stop => "stopped",
    };
    st.publish(Event::new(
        &format!("agent.{name}"),
        Some(id),
        Some(&s.owner),
        json!({"by": who.actor()}),
    ));
    Ok(Json(agent.status()))
}

/// Stops the running turn: a request in flight is abandoned, calls not yet run are answered
/// "stopped by the user", a pending approval is declined. 409 `agent_idle` if none runs.
#[utoipa::path(post, path = "/sessions/{id}/agent/stop", tag = "agent",
    params(("id" = String, Path, description = "session id")),
    responses((status = 200, body = AgentStatus), CommonErrors, AgentConflict))]
async fn stop(
    State(st): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
) -> ApiResult<Json<AgentStatus>> {
    steer(&st, &who, &id, Ctl::Stop)
}

/// Pauses the running turn before its next request or action.
#[utoipa::path(post, path = "/sessions/{id}/agent/pause", tag = "agent",
    params(("id" = String, Path, description = "session id")),
    responses((status = 200, body = AgentStatus), CommonErrors, AgentConflict))]
async fn pause(
    State(st): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
) -> ApiResult<Json<AgentStatus>> {
    steer(&st, &who, &id, Ctl::Pause)
}

/// Resumes a paused turn.
#[utoipa::path(post, path = "/sessions/{id}/agent/resume", tag = "agent",
    params(("id" = String, Path, description = "session id")),
    responses((status = 200, body = AgentStatus), CommonErrors, AgentConflict))]
async fn resume(
    State(st): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
) -> ApiResult<Json<AgentStatus>> {
    steer(&st, &who, &id, Ctl::Run)
}

/// Answers the agent's pending approval (a provider safety check or a risky action). 409
/// `nothing_to_approve` when none is pending.
#[utoipa::path(post, path = "/sessions/{id}/agent/approve", tag = "agent",
    request_body = ApproveBody,
    params(("id" = String, Path, description = "session id")),
    responses((status = 200, body = AgentStatus), CommonErrors, AgentConflict))]
async fn approve(
    State(st): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
    Json(body): Json<ApproveBody>,
) -> ApiResult<Json<AgentStatus>> {
    who.require(Scope::Write)?;
    let s = owned(&st, &who, &id)?;
    let Some(agent) = st.agents().get(&id) else {
        return Err(nothing());
    };
    if body
        .comment
        .as_ref()
        .is_some_and(|c| c.chars().count() > 2000)
    {
        return Err(ApiError::invalid("comment takes at most 2000 characters"));
    }
    let comment = body
        .comment
        .as_deref()
        .map(|c| st.hitl().redactor(&s.owner).redact(c.trim()).into_owned())
        .filter(|c| !c.is_empty());
    if !agent.answer(body.approve, comment) {
        return Err(nothing());
    }
    st.audit(
        &who.actor(),
        "agent.approval",
        &id,
        json!({"approved": body.approve}),
    )
    .await;
    Ok(Json(agent.status()))
}

fn nothing() -> ApiError {
    ApiError::new(
        StatusCode::CONFLICT,
        "nothing_to_approve",
        "the agent is not waiting for an approval",
    )
}

/// A page of agent turns.
#[derive(Debug, Serialize, ToSchema)]
pub struct TurnPage {
    /// Oldest first: profile, steps, requests, outcome, error and token usage of each turn.
    pub turns: Vec<AgentTurnRecord>,
    pub next_after: Option<u64>,
}

/// The agent's finished turns with their token usage, oldest first.
#[utoipa::path(get, path = "/sessions/{id}/agent/turns", tag = "agent",
    params(("id" = String, Path, description = "session id"), Page),
    responses((status = 200, body = TurnPage), CommonErrors))]
async fn turns(
    State(st): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
    Query(page): Query<Page>,
) -> ApiResult<Json<TurnPage>> {
    owned(&st, &who, &id)?;
    let limit = page.limit()?;
    let turns = st.store().list_agent_turns(&id, page.after, limit)?;
    let next_after = if turns.len() == limit {
        turns.last().map(|t| t.turn)
    } else {
        None
    };
    Ok(Json(TurnPage { turns, next_after }))
}

/// Path of a step thumbnail.
#[derive(Debug, Deserialize, IntoParams)]
#[allow(dead_code)]
pub struct StepPath {
    /// session id
    pub id: String,
    /// step number (the `n` of the `agent.step` event)
    pub n: u64,
}

/// A small JPEG of the screen after an agent step (the newest 64 steps are kept in memory).
#[utoipa::path(get, path = "/sessions/{id}/agent/steps/{n}/thumbnail", tag = "agent",
    params(StepPath),
    responses((status = 200, description = "JPEG", content_type = "image/jpeg", body = Vec<u8>), CommonErrors))]
async fn thumbnail(
    State(st): State<AppState>,
    who: Principal,
    Path((id, n)): Path<(String, u64)>,
) -> Response {
    if let Err(e) = owned(&st, &who, &id) {
        return e.into_response();
    }
    match st.agents().get(&id).and_then(|a| a.thumbnail(n)) {
        Some(b) => (
            [
                (header::CONTENT_TYPE, "image/jpeg"),
                (header::CACHE_CONTROL, "private, max-age=3600"),
            ],
            b,
        )
            .into_response(),
        None => ApiError::not_found(format!("thumbnail of step {n} not found")).into_response(),
    }
}
