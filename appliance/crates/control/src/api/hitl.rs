//! Human in the loop over REST: credentials the agent never sees (`/credentials`), typing
//! one (`/sessions/{id}/type-secret`, for external agents; the built-in agent has a tool),
//! requests for human input and their answers (`/sessions/{id}/input`), feedback with its
//! screenshots and JSONL export (`/sessions/{id}/feedback`, `/agents/{id}/feedback/export`),
//! undo (`/sessions/{id}/undo`) and the session's HITL switch (`/sessions/{id}/hitl`).

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};
use zigral_store::SessionRecord;

use crate::api::actions::{DesktopErrors, prepare};
use crate::auth::{Principal, Scope, authorize_session};
use crate::error::{ApiError, ApiResult, CommonErrors, Json, Path, Query};
use crate::events::Event;
use crate::hitl::feedback::{self, FeedbackBody, FeedbackData, FeedbackError};
use crate::hitl::input::{
    self, InputAnswerBody, InputError, InputKind, InputRequest, PendingInput,
};
use crate::hitl::secret::{self, SecretError, Typed};
use crate::hitl::undo::{self, UndoError, Undone};
use crate::state::AppState;
use crate::vault::{CredentialInfo, Field, NewCredential, VaultError};

/// The request conflicts with the session's state (for the OpenAPI document): no editable
/// field has focus, no request for input is pending or it was already answered, no
/// checkpoint is old enough, feedback already answered, too many credentials.
#[derive(utoipa::IntoResponses)]
#[allow(dead_code)]
pub enum HitlConflict {
    #[response(status = 409)]
    Conflict(crate::error::ErrorBody),
}

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_credentials, put_credential))
        .routes(routes!(delete_credential))
        .routes(routes!(type_secret))
        .routes(routes!(get_input, answer_input))
        .routes(routes!(request_input))
        .routes(routes!(list_feedback, give_feedback))
        .routes(routes!(export_feedback))
        .routes(routes!(feedback_shot))
        .routes(routes!(export_profile_feedback))
        .routes(routes!(undo_steps))
        .routes(routes!(set_hitl))
}

fn vault_error(e: VaultError) -> ApiError {
    match e {
        VaultError::Invalid(m) => ApiError::invalid(m),
        VaultError::NotFound(_) | VaultError::Expired(_) => ApiError::not_found(e.to_string()),
        VaultError::DomainRefused { .. } => {
            ApiError::new(StatusCode::FORBIDDEN, "domain_refused", e.to_string())
        }
        VaultError::Full => ApiError::conflict(e.to_string()),
    }
}

/// The caller's credentials: names, domains and expiry, never a value.
#[utoipa::path(get, path = "/credentials", tag = "hitl",
    responses((status = 200, body = Vec<CredentialInfo>), CommonErrors, HitlConflict))]
async fn list_credentials(
    State(st): State<AppState>,
    who: Principal,
) -> ApiResult<Json<Vec<CredentialInfo>>> {
    who.require(Scope::Read)?;
    Ok(Json(st.hitl().vault().list(&who.user_id)))
}

/// Stores a credential for the caller's sessions (replacing one of the same name). It is
/// held in memory only — zeroized when it expires or is deleted, gone on restart — and never
/// written to the database, logs, events, recordings, the action log or a provider request.
/// The agent sees its name only and types it with `type_secret` on its domains.
#[utoipa::path(post, path = "/credentials", tag = "hitl",
    request_body = NewCredential,
    responses((status = 201, body = CredentialInfo), CommonErrors, HitlConflict))]
async fn put_credential(
    State(st): State<AppState>,
    who: Principal,
    Json(body): Json<NewCredential>,
) -> ApiResult<(StatusCode, Json<CredentialInfo>)> {
    who.require(Scope::Write)?;
    let info = st
        .hitl()
        .vault()
        .put(&who.user_id, body)
        .map_err(vault_error)?;
    st.audit(
        &who.actor(),
        "credential.put",
        &info.name,
        json!({"domains": info.domains, "expires_at": info.expires_at}),
    )
    .await;
    st.publish(Event::new(
        "credential.stored",
        None,
        Some(&who.user_id),
        json!({"name": info.name, "domains": info.domains}),
    ));
    Ok((StatusCode::CREATED, Json(info)))
}

/// Forgets a credential (its value is zeroized).
#[utoipa::path(delete, path = "/credentials/{name}", tag = "hitl",
    params(("name" = String, Path, description = "credential name")),
    responses((status = 204), CommonErrors, HitlConflict))]
async fn delete_credential(
    State(st): State<AppState>,
    who: Principal,
    Path(name): Path<String>,
) -> ApiResult<StatusCode> {
    who.require(Scope::Write)?;
    if !st.hitl().vault().remove(&who.user_id, &name) {
        return Err(ApiError::not_found(format!(
            "credential {name:?} not found"
        )));
    }
    st.audit(&who.actor(), "credential.delete", &name, json!({}))
        .await;
    st.publish(Event::new(
        "credential.deleted",
        None,
        Some(&who.user_id),
        json!({"name": name}),
    ));
    Ok(StatusCode::NO_CONTENT)
}

/// Which credential to type.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TypeSecretBody {
    pub name: String,
    pub field: Field,
}

/// Types a credential of the session owner into the focused field of the session's browser
/// (only on the credential's domains; 403 `domain_refused` otherwise, 409 when no editable
/// field has focus). The reply and the action log never carry the value.
#[utoipa::path(post, path = "/sessions/{id}/type-secret", tag = "hitl",
    request_body = TypeSecretBody,
    params(("id" = String, Path, description = "session id")),
    responses((status = 200, body = Typed), CommonErrors, DesktopErrors))]
async fn type_secret(
    State(st): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
    Json(body): Json<TypeSecretBody>,
) -> ApiResult<Json<Typed>> {
    let s = prepare(&st, &who, &id).await?;
    let exec = crate::hitl::executor(&st, s.desktop)
        .await
        .map_err(ApiError::unavailable)?;
    secret::type_secret(&st, &s, &exec, &who.actor(), "rest", &body.name, body.field)
        .await
        .map(Json)
        .map_err(secret_error)
}

pub(crate) fn secret_error(e: SecretError) -> ApiError {
    match e {
        SecretError::Vault(v) => vault_error(v),
        SecretError::Desktop(m) => ApiError::unavailable(m),
        other => ApiError::conflict(other.to_string()),
    }
}

fn input_error(e: InputError) -> ApiError {
    match e {
        InputError::Invalid(m) => ApiError::invalid(m),
        InputError::Busy | InputError::NotPending(_) | InputError::Refused(_) => {
            ApiError::conflict(e.to_string())
        }
        InputError::Stopped => ApiError::conflict(e.to_string()),
        InputError::Desktop(m) => ApiError::unavailable(m),
    }
}

/// The request for human input the session waits on, if any.
#[utoipa::path(get, path = "/sessions/{id}/input", tag = "hitl",
    params(("id" = String, Path, description = "session id")),
    responses((status = 200, body = Option<PendingInput>), CommonErrors, HitlConflict))]
async fn get_input(
    State(st): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
) -> ApiResult<Json<Option<PendingInput>>> {
    authorize_session(&st, &who, &id)?;
    Ok(Json(st.agents().get(&id).and_then(|a| a.pending_input())))
}

/// Answers the agent's request for input: `code` for `2fa` (typed at once into the focused
/// field, on the host the request was made from, never stored), `approve` for `confirm`,
/// `done` for `captcha`/`takeover` (or take control of the desktop, do it and release), or
/// `decline`.
#[utoipa::path(post, path = "/sessions/{id}/input", tag = "hitl",
    request_body = InputAnswerBody,
    params(("id" = String, Path, description = "session id")),
    responses((status = 200, body = PendingInput), CommonErrors, DesktopErrors))]
async fn answer_input(
    State(st): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
    Json(body): Json<InputAnswerBody>,
) -> ApiResult<Json<PendingInput>> {
    who.require(Scope::Write)?;
    let s = authorize_session(&st, &who, &id)?;
    input::answer(&st, &s, &who.actor(), &body)
        .await
        .map(Json)
        .map_err(input_error)
}

/// An external agent's request for human input.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InputRequestBody {
    pub kind: InputKind,
    /// What to tell the person (1–2000 characters).
    pub prompt: String,
    /// How long to wait (10–600 s, default 300).
    pub timeout_secs: Option<u64>,
}

/// The answer as text for the agent.
#[derive(Debug, Serialize, ToSchema)]
pub struct InputReply {
    pub text: String,
}

/// Asks a person (for external agents; the built-in agent has a tool) and waits for the
/// answer (long poll, up to `timeout_secs`): the reply says what the person did.
#[utoipa::path(post, path = "/sessions/{id}/input/request", tag = "hitl",
    request_body = InputRequestBody,
    params(("id" = String, Path, description = "session id")),
    responses((status = 200, body = InputReply), CommonErrors, DesktopErrors))]
async fn request_input(
    State(st): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
    Json(body): Json<InputRequestBody>,
) -> ApiResult<Json<InputReply>> {
    let s = prepare(&st, &who, &id).await?;
    let secs = body.timeout_secs.unwrap_or(300);
    if !(10..=600).contains(&secs) {
        return Err(ApiError::invalid("timeout_secs must be 10–600"));
    }
    let exec = crate::hitl::executor(&st, s.desktop)
        .await
        .map_err(ApiError::unavailable)?;
    let agent = st.agents().entry(&s.id);
    let text = input::ask(
        &st,
        &s,
        &agent,
        &exec,
        InputRequest {
            kind: body.kind,
            prompt: body.prompt,
        },
        std::time::Duration::from_secs(secs),
        &who.actor(),
    )
    .await
    .map_err(input_error)?;
    Ok(Json(InputReply { text }))
}

/// A feedback record as the API shows it.
#[derive(Debug, Serialize, ToSchema)]
pub struct FeedbackView {
    pub seq: u64,
    pub by: String,
    pub created_at: u64,
    pub action_seq: Option<u64>,
    pub feedback: FeedbackData,
    /// Where the before/after screenshots are (JPEG), when kept.
    pub before_url: Option<String>,
    pub after_url: Option<String>,
}

fn view(session: &str, r: zigral_store::FeedbackRecord) -> Option<FeedbackView> {
    let d = feedback::data_of(&r)?;
    Some(FeedbackView {
        before_url: d
            .before
            .then(|| feedback::shot_url(session, r.seq, "before")),
        after_url: d.after.then(|| feedback::shot_url(session, r.seq, "after")),
        seq: r.seq,
        by: r.by,
        created_at: r.created_at,
        action_seq: r.action_seq,
        feedback: d,
    })
}

/// Feedback list filter.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct FeedbackQuery {
    /// Only prompts still waiting for an answer.
    pub pending: Option<bool>,
}

/// The session's feedback prompts and answers, oldest first.
#[utoipa::path(get, path = "/sessions/{id}/feedback", tag = "hitl",
    params(("id" = String, Path, description = "session id"), FeedbackQuery),
    responses((status = 200, body = Vec<FeedbackView>), CommonErrors, HitlConflict))]
async fn list_feedback(
    State(st): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
    Query(q): Query<FeedbackQuery>,
) -> ApiResult<Json<Vec<FeedbackView>>> {
    authorize_session(&st, &who, &id)?;
    let all = st.store().list_feedback(&id, None, usize::MAX)?;
    Ok(Json(
        all.into_iter()
            .filter_map(|r| view(&id, r))
            .filter(|v| q.pending != Some(true) || v.feedback.status == "pending")
            .collect(),
    ))
}

fn feedback_error(e: FeedbackError) -> ApiError {
    match e {
        FeedbackError::Invalid(m) => ApiError::invalid(m),
        FeedbackError::NotFound(m) => ApiError::not_found(m),
        FeedbackError::Conflict(m) => ApiError::conflict(m),
        FeedbackError::Store(s) => s.into(),
    }
}

/// Gives feedback on an agent step — answering a prompt (`prompt`) or unasked (`step`):
/// `approve`, `reject` (rolls the browser back to the checkpoint before the step and tells
/// the model) or `correct` (with a `correction` the model hears now and the profile's future
/// runs see), with an optional comment and 1–5 rating.
#[utoipa::path(post, path = "/sessions/{id}/feedback", tag = "hitl",
    request_body = FeedbackBody,
    params(("id" = String, Path, description = "session id")),
    responses((status = 200, body = FeedbackView), CommonErrors, HitlConflict))]
async fn give_feedback(
    State(st): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
    Json(body): Json<FeedbackBody>,
) -> ApiResult<Json<FeedbackView>> {
    who.require(Scope::Write)?;
    let s = authorize_session(&st, &who, &id)?;
    let rec = feedback::answer(&st, &s, &who.actor(), body)
        .await
        .map_err(feedback_error)?;
    view(&id, rec)
        .map(Json)
        .ok_or_else(|| ApiError::internal("the stored feedback is unreadable"))
}

fn jsonl(body: String) -> Response {
    (
        [(header::CONTENT_TYPE, "application/x-ndjson; charset=utf-8")],
        body,
    )
        .into_response()
}

fn export_session(st: &AppState, s: &SessionRecord, out: &mut String) -> ApiResult<()> {
    for r in st.store().list_feedback(&s.id, None, usize::MAX)? {
        if let Some(line) = feedback::export_line(&s.id, &r) {
            out.push_str(&line);
            out.push('\n');
        }
    }
    Ok(())
}

/// The session's answered feedback as JSONL preference data, one line per answer: context
/// (instruction, URL, before/after screenshot paths), action, verdict, rating, comment,
/// correction.
#[utoipa::path(get, path = "/sessions/{id}/feedback/export", tag = "hitl",
    params(("id" = String, Path, description = "session id")),
    responses((status = 200, content_type = "application/x-ndjson", body = String), CommonErrors, HitlConflict))]
async fn export_feedback(
    State(st): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let s = authorize_session(&st, &who, &id)?;
    let mut out = String::new();
    export_session(&st, &s, &mut out)?;
    Ok(jsonl(out))
}

/// The answered feedback on a profile's agent across the sessions the caller may see (all for
/// administrators), as JSONL like the session export.
#[utoipa::path(get, path = "/agents/{id}/feedback/export", tag = "hitl",
    params(("id" = String, Path, description = "profile id")),
    responses((status = 200, content_type = "application/x-ndjson", body = String), CommonErrors, HitlConflict))]
async fn export_profile_feedback(
    State(st): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    crate::api::agents::visible(&st, &who, &id)?;
    let mut out = String::new();
    for (sid, r) in st.store().all_feedback()? {
        let Some(d) = feedback::data_of(&r) else {
            continue;
        };
        if d.profile.as_deref() != Some(id.as_str()) {
            continue;
        }
        let Some(s) = st.store().get_session(&sid)? else {
            continue;
        };
        if !who.is_admin && s.owner != who.user_id {
            continue;
        }
        if let Some(line) = feedback::export_line(&sid, &r) {
            out.push_str(&line);
            out.push('\n');
        }
    }
    Ok(jsonl(out))
}

/// Path of a feedback screenshot.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct ShotPath {
    pub id: String,
    pub seq: u64,
    /// `before` or `after`.
    pub which: String,
}

/// A feedback record's before/after screenshot (JPEG).
#[utoipa::path(get, path = "/sessions/{id}/feedback/{seq}/{which}", tag = "hitl",
    params(ShotPath),
    responses((status = 200, content_type = "image/jpeg", body = Vec<u8>), CommonErrors, HitlConflict))]
async fn feedback_shot(
    State(st): State<AppState>,
    who: Principal,
    Path(p): Path<ShotPath>,
) -> ApiResult<Response> {
    authorize_session(&st, &who, &p.id)?;
    if p.which != "before" && p.which != "after" {
        return Err(ApiError::not_found("which must be before or after"));
    }
    let rec = st
        .store()
        .get_feedback(&p.id, p.seq)?
        .and_then(|r| feedback::data_of(&r))
        .ok_or_else(|| ApiError::not_found("feedback not found"))?;
    let bytes = std::fs::read(feedback::shot_path(&st, &p.id, rec.step, &p.which))
        .map_err(|_| ApiError::not_found("no such screenshot"))?;
    Ok(([(header::CONTENT_TYPE, "image/jpeg")], bytes).into_response())
}

/// How many agent steps to undo.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UndoBody {
    pub steps: u64,
}

/// Undoes the last N agent steps: the browser (cookies, storage, tabs and URLs) goes back to
/// the newest checkpoint taken at or before the first of them (so a few more steps may be
/// undone; the reply says which), and the model is told. 409 when no checkpoint is old enough.
#[utoipa::path(post, path = "/sessions/{id}/undo", tag = "hitl",
    request_body = UndoBody,
    params(("id" = String, Path, description = "session id")),
    responses((status = 200, body = Undone), CommonErrors, DesktopErrors))]
async fn undo_steps(
    State(st): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
    Json(body): Json<UndoBody>,
) -> ApiResult<Json<Undone>> {
    let s = prepare(&st, &who, &id).await?;
    undo::undo(&st, &s, body.steps, &who.actor())
        .await
        .map(Json)
        .map_err(|e| match e {
            UndoError::Invalid(m) => ApiError::invalid(m),
            UndoError::NoCheckpoint(m) => ApiError::conflict(m),
            UndoError::Failed(m) => ApiError::unavailable(m),
        })
}

/// The session's HITL switch.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HitlBody {
    /// `false` turns feedback prompts off for this session, `true` on (when the profile
    /// allows them), `null` follows the profile.
    pub enabled: Option<bool>,
}

/// Turns the session's feedback prompts off or on.
#[utoipa::path(put, path = "/sessions/{id}/hitl", tag = "hitl",
    request_body = HitlBody,
    params(("id" = String, Path, description = "session id")),
    responses((status = 200, body = SessionRecord), CommonErrors, HitlConflict))]
async fn set_hitl(
    State(st): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
    Json(body): Json<HitlBody>,
) -> ApiResult<Json<SessionRecord>> {
    who.require(Scope::Write)?;
    authorize_session(&st, &who, &id)?;
    let s = st.store().set_session_hitl(&id, body.enabled).await?;
    st.audit(
        &who.actor(),
        "session.hitl",
        &id,
        json!({"enabled": body.enabled}),
    )
    .await;
    Ok(Json(s))
}
