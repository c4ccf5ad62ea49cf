//! `/api/v1/sessions/{id}/control`: a person takes, shows and releases control of a session's
//! desktop (the control lease, see [`crate::control_lease`]). While held, everyone else's
//! actions on it are refused with 409 `control_held` and their viewers drop to view-only.

use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::auth::{Principal, Scope, authorize_session, session_with_desktop};
use crate::control_lease::{Change, DEFAULT_TIMEOUT_SECS, LeaseHolder, MAX_TIMEOUT_SECS};
use crate::error::{ApiError, ApiResult, CommonErrors, ErrorBody, Json, Path, Query};
use crate::state::AppState;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(get_control, take_control, release_control))
}

/// A take-control request (the body is optional).
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TakeControl {
    /// Lease lifetime in seconds (default 300, at most 3600); the lease ends by itself then.
    /// Taking control again before that sets a new expiry.
    #[schema(minimum = 1, maximum = 3600)]
    pub timeout_secs: Option<u64>,
}

/// `?force=true`: an administrator takes or releases another login's lease (audited).
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ForceQuery {
    pub force: Option<bool>,
}

/// Who holds control of the session's desktop.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ControlStatus {
    /// Whether someone holds it.
    pub held: bool,
    /// The holder, while held.
    pub holder: Option<LeaseHolder>,
    /// Whether the caller's own login holds it.
    pub yours: bool,
    /// What this request did (take only): `taken`, `refreshed` or `forced`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub change: Option<String>,
}

fn status(holder: Option<LeaseHolder>, who: &Principal, change: Option<Change>) -> ControlStatus {
    let yours = holder.as_ref().is_some_and(|h| {
        who.kind != crate::auth::CredentialKind::ApiToken && h.login_id == who.token_id
    });
    ControlStatus {
        held: holder.is_some(),
        holder,
        yours,
        change: change.map(|c| c.as_str().to_owned()),
    }
}

/// Who holds control of the session's desktop (user, login, since, expiry).
#[utoipa::path(get, path = "/sessions/{id}/control", tag = "control",
    params(("id" = String, Path, description = "session id")),
    responses((status = 200, body = ControlStatus), CommonErrors))]
async fn get_control(
    State(st): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
) -> ApiResult<Json<ControlStatus>> {
    authorize_session(&st, &who, &id)?;
    Ok(Json(status(st.control().holder(&id), &who, None)))
}

/// Takes control of the session's desktop for the caller's login (a login token or the
/// session cookie; API tokens cannot). While held, every other caller's actions on it (API
/// tokens, MCP, other logins, the built-in agent) are refused with 409 `control_held`, and
/// their live control viewers drop to view-only within a second. Taking it again with the
/// same login refreshes the expiry.
#[utoipa::path(post, path = "/sessions/{id}/control", tag = "control",
    request_body(content = Option<TakeControl>, description = "optional; default timeout 300 s"),
    params(("id" = String, Path, description = "session id"), ForceQuery),
    responses((status = 200, body = ControlStatus),
        (status = 409, description = "`control_held`: another login holds control (an administrator may add ?force=true)", body = ErrorBody),
        CommonErrors))]
async fn take_control(
    State(st): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
    Query(q): Query<ForceQuery>,
    body: axum::body::Bytes,
) -> ApiResult<Json<ControlStatus>> {
    who.require(Scope::Control)?;
    let req: TakeControl = if body.iter().all(u8::is_ascii_whitespace) {
        TakeControl::default()
    } else {
        let v: serde_json::Value = serde_json::from_slice(&body)
            .map_err(|e| ApiError::bad_request(format!("invalid JSON: {e}")))?;
        if !v.is_object() {
            return Err(ApiError::invalid("the body must be a JSON object"));
        }
        serde_json::from_value(v)
            .map_err(|e| ApiError::invalid(format!("invalid request body: {e}")))?
    };
    let timeout = req.timeout_secs.unwrap_or(DEFAULT_TIMEOUT_SECS);
    if !(1..=MAX_TIMEOUT_SECS).contains(&timeout) {
        return Err(ApiError::invalid(format!(
            "timeout_secs must be 1..={MAX_TIMEOUT_SECS}"
        )));
    }
    let s = session_with_desktop(&st, &who, &id).await?;
    let force = q.force.unwrap_or(false);
    let (holder, change) = st.control().take(&s, &who, timeout, force).await?;
    Ok(Json(status(Some(holder), &who, Some(change))))
}

/// Releases control (the holding login; an administrator with ?force=true). Nothing held:
/// 204 as well.
#[utoipa::path(delete, path = "/sessions/{id}/control", tag = "control",
    params(("id" = String, Path, description = "session id"), ForceQuery),
    responses((status = 204, description = "released (or nothing was held)"),
        (status = 409, description = "`control_held`: another login holds control", body = ErrorBody),
        CommonErrors))]
async fn release_control(
    State(st): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
    Query(q): Query<ForceQuery>,
) -> ApiResult<StatusCode> {
    authorize_session(&st, &who, &id)?;
    st.control()
        .release(&id, &who, q.force.unwrap_or(false))
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
