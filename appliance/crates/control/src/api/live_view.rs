//! `/api/v1/desktops/{n}/live-view`: the live-view switch of a desktop. Its owner (the user it
//! is leased to) or an administrator turns it off and on; while it is off the proxy refuses
//! every viewer of the desktop (403 `live_view_off`) and closes the live ones within about a
//! quarter of a second.
//!
//! The proxy runs as another process and does not call back: the switch is the file
//! `<state_dir>/liveview/N` ([`zigral_token::LiveViewFiles`], present = off), which the proxy
//! reads on every connection attempt and polls for desktops with live connections. A desktop
//! handed to a new owner, or destroyed, starts with its live view on again (the desktop
//! manager removes the file where it writes the desktop's lease). Without managed desktops
//! (`desktop_mode = "static"`) nobody is leased a desktop, so only administrators may switch.
//!
//! Others get the answer of every owner-scoped desktop route: 404, as if the desktop did not
//! exist. Every switch is audited (`desktop.live_view`) and a change is published on the
//! events websocket as `desktop.live_view` (`{desktop, enabled, by, by_name}`, to the owner and
//! administrators).

use axum::extract::State;
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};
use zigral_store::DesktopRecord;
use zigral_token::LiveViewFiles;

use crate::auth::Principal;
use crate::error::{ApiError, ApiResult, CommonErrors, Json, Path};
use crate::events::{ADMINS_ONLY, Event};
use crate::state::AppState;

/// Kind of the event (and action of the audit entry) of a switch.
pub const EVENT: &str = "desktop.live_view";

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(get_live_view, set_live_view))
}

/// Turns a desktop's live view on or off.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LiveViewRequest {
    /// `false`: the proxy refuses new viewers and closes the live ones; `true`: viewers may
    /// connect again.
    pub enabled: bool,
}

/// Whether a desktop's live view is on.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct LiveView {
    pub desktop: u32,
    /// `false` while the live view is off (viewers are refused).
    pub enabled: bool,
}

/// Desktop `n` if the caller may switch its live view: its owner or an administrator (with
/// managed desktops), administrators only (static desktops, `None`); else 404 like every
/// owner-scoped desktop route.
fn switchable(st: &AppState, who: &Principal, n: u32) -> ApiResult<Option<DesktopRecord>> {
    let not_found = || ApiError::not_found(format!("desktop {n} not found"));
    if !st.vdi().managed() {
        return if who.is_admin && n < crate::config::DESKTOP_NUMBERS {
            Ok(None)
        } else {
            Err(not_found())
        };
    }
    let rec = st.vdi().record(n).ok_or_else(not_found)?;
    if who.is_admin || rec.owner.as_deref() == Some(who.user_id.as_str()) {
        Ok(Some(rec))
    } else {
        Err(not_found())
    }
}

fn files(st: &AppState) -> LiveViewFiles {
    LiveViewFiles::new(&st.config().state_dir)
}

fn is_on(files: &LiveViewFiles, n: u32) -> ApiResult<bool> {
    files
        .is_off(n)
        .map(|off| !off)
        .map_err(|e| ApiError::internal(format!("desktop {n}'s live view: {e}")))
}

/// Whether a desktop's live view is on (its owner or an admin).
#[utoipa::path(get, path = "/desktops/{n}/live-view", tag = "desktops",
    params(("n" = u32, Path, description = "desktop number")),
    responses((status = 200, body = LiveView), CommonErrors))]
async fn get_live_view(
    State(st): State<AppState>,
    who: Principal,
    Path(n): Path<u32>,
) -> ApiResult<Json<LiveView>> {
    switchable(&st, &who, n)?;
    Ok(Json(LiveView {
        desktop: n,
        enabled: is_on(&files(&st), n)?,
    }))
}

/// Turns a desktop's live view off or on (its owner or an admin; with static desktops, admins
/// only). Off: the proxy refuses every new viewer of the desktop with 403 `live_view_off` and
/// closes the live ones (WebSocket close 1008 "live view turned off") within about a quarter
/// of a second; the desktop keeps running and the agent keeps working. On: viewers may
/// connect again. The switch lasts until turned back or until the desktop is handed to a new
/// owner or destroyed (a new tenancy starts with it on). Audited; a change is published as
/// the `desktop.live_view` event.
#[utoipa::path(put, path = "/desktops/{n}/live-view", tag = "desktops",
    request_body = LiveViewRequest,
    params(("n" = u32, Path, description = "desktop number")),
    responses((status = 200, body = LiveView), CommonErrors))]
async fn set_live_view(
    State(st): State<AppState>,
    who: Principal,
    Path(n): Path<u32>,
    Json(body): Json<LiveViewRequest>,
) -> ApiResult<Json<LiveView>> {
    let rec = switchable(&st, &who, n)?;
    let files = files(&st);
    let was_on = is_on(&files, n).unwrap_or(false);
    files
        .set_off(n, !body.enabled)
        .map_err(|e| ApiError::internal(format!("desktop {n}'s live view: {e}")))?;
    // The desktop may have been handed to someone else meanwhile (its new tenancy starts with
    // the view on): then this switch was for a tenancy that no longer exists.
    if let Some(before) = &rec
        && st.vdi().record(n).map(|r| r.lease) != Some(before.lease.clone())
    {
        if let Err(e) = files.set_off(n, false) {
            tracing::error!(desktop = n, error = %e, "cannot turn the live view back on");
        }
        return Err(ApiError::not_found(format!("desktop {n} not found")));
    }
    let changed = was_on != body.enabled;
    st.audit(
        &who.actor(),
        EVENT,
        &n.to_string(),
        json!({"enabled": body.enabled, "changed": changed}),
    )
    .await;
    if changed {
        tracing::info!(desktop = n, enabled = body.enabled, by = %who.user_id, "live view switched");
        let owner = rec
            .as_ref()
            .and_then(|r| r.owner.as_deref())
            .unwrap_or(ADMINS_ONLY);
        st.publish(Event::new(
            EVENT,
            None,
            Some(owner),
            json!({
                "desktop": n,
                "enabled": body.enabled,
                "by": who.user_id,
                "by_name": who.username,
            }),
        ));
    }
    Ok(Json(LiveView {
        desktop: n,
        enabled: body.enabled,
    }))
}
