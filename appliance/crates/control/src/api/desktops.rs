//! `/api/v1/desktops`: the desktops of this appliance with owner, state, viewers, memory and
//! CPU; create one for a user, destroy one, change its limits (administrators), and mint a
//! view/control token for one. Users see and use only their own desktops: another user's (or
//! a warm-pool one) answers 404, as if it did not exist.

use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::json;
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};
use zigral_init_protocol::GroupLimits;

use super::sessions::{ViewToken, mint_token, token_request};
use crate::auth::Principal;
use crate::error::{ApiError, ApiResult, CommonErrors, ErrorBody, Json, Path};
use crate::state::AppState;
use crate::vdi::DesktopView;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_desktops, create_desktop))
        .routes(routes!(get_desktop, delete_desktop))
        .routes(routes!(set_limits))
        .routes(routes!(desktop_token))
}

fn managed(st: &AppState) -> ApiResult<()> {
    if st.vdi().managed() {
        Ok(())
    } else {
        Err(ApiError::conflict(
            "desktops are static in this configuration (desktop_mode = \"static\")",
        ))
    }
}

/// Desktop `n` if the caller may see it (its owner or an admin), else 404.
pub(crate) fn visible(
    st: &AppState,
    who: &Principal,
    n: u32,
) -> ApiResult<zigral_store::DesktopRecord> {
    let not_found = || ApiError::not_found(format!("desktop {n} not found"));
    let rec = st.vdi().record(n).ok_or_else(not_found)?;
    if who.is_admin || rec.owner.as_deref() == Some(who.user_id.as_str()) {
        Ok(rec)
    } else {
        Err(not_found())
    }
}

/// Lists desktops with owner, sessions, state, viewers, memory and CPU: your own;
/// administrators see every desktop, the warm pool included.
#[utoipa::path(get, path = "/desktops", tag = "desktops",
    responses((status = 200, body = Vec<DesktopView>), CommonErrors))]
async fn list_desktops(
    State(st): State<AppState>,
    who: Principal,
) -> ApiResult<Json<Vec<DesktopView>>> {
    let mut all = st.vdi().list().await;
    if !who.is_admin {
        all.retain(|d| d.record.owner.as_deref() == Some(who.user_id.as_str()));
    }
    Ok(Json(all))
}

/// One desktop.
#[utoipa::path(get, path = "/desktops/{n}", tag = "desktops",
    params(("n" = u32, Path, description = "desktop number")),
    responses((status = 200, body = DesktopView), CommonErrors))]
async fn get_desktop(
    State(st): State<AppState>,
    who: Principal,
    Path(n): Path<u32>,
) -> ApiResult<Json<DesktopView>> {
    visible(&st, &who, n)?;
    st.vdi()
        .list()
        .await
        .into_iter()
        .find(|d| d.record.n == n)
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("desktop {n} not found")))
}

/// A desktop for a user, made by an administrator.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewDesktop {
    /// The user (id or user name) who will own it.
    pub owner: String,
}

/// Creates a desktop for a user (admin only), within their quota and the appliance's; the
/// reply comes once it is ready. Under the per-user policy a user who has one gets it back.
#[utoipa::path(post, path = "/desktops", tag = "desktops", request_body = NewDesktop,
    responses((status = 201, body = zigral_store::DesktopRecord),
        (status = 409, description = "appliance limit (max_desktops), or desktops are static in this configuration", body = ErrorBody),
        (status = 503, description = "the desktop could not be started", body = ErrorBody),
        (status = 429, description = "the user's quota (max_desktops_per_user)", body = ErrorBody),
        CommonErrors))]
async fn create_desktop(
    State(st): State<AppState>,
    who: Principal,
    Json(body): Json<NewDesktop>,
) -> ApiResult<(StatusCode, Json<zigral_store::DesktopRecord>)> {
    who.require_admin()?;
    managed(&st)?;
    let user = match st.store().get_user(&body.owner)? {
        Some(u) => u,
        None => st
            .store()
            .get_user_by_name(&body.owner)?
            .ok_or_else(|| ApiError::invalid(format!("owner: no user '{}'", body.owner)))?,
    };
    let n = st.vdi().acquire(&user, None).await?;
    let rec = st
        .vdi()
        .record(n)
        .ok_or_else(|| ApiError::unavailable(format!("desktop {n} went away")))?;
    st.audit(
        &who.actor(),
        "desktop.create",
        &n.to_string(),
        json!({"owner": user.id}),
    )
    .await;
    Ok((StatusCode::CREATED, Json(rec)))
}

/// Destroys a desktop (its owner or an admin): its viewers are cut, its tokens stop working,
/// its files go (a persistent profile stays). Its sessions get a new desktop when next used.
#[utoipa::path(delete, path = "/desktops/{n}", tag = "desktops",
    params(("n" = u32, Path, description = "desktop number")),
    responses((status = 204, description = "destroyed"),
        (status = 409, description = "desktops are static in this configuration", body = ErrorBody),
        (status = 503, description = "it could not be destroyed now; it will be retried", body = ErrorBody),
        CommonErrors))]
async fn delete_desktop(
    State(st): State<AppState>,
    who: Principal,
    Path(n): Path<u32>,
) -> ApiResult<StatusCode> {
    managed(&st)?;
    visible(&st, &who, n)?;
    if !st.vdi().destroy(n, "destroyed through the API").await {
        return Err(ApiError::unavailable(format!(
            "desktop {n} could not be destroyed now (already being destroyed, or zigral-init did not answer); it will be retried"
        )));
    }
    st.audit(&who.actor(), "desktop.destroy", &n.to_string(), json!({}))
        .await;
    Ok(StatusCode::NO_CONTENT)
}

/// New limits of a running desktop; absent fields keep their value.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LimitsRequest {
    /// CPUs (0.01–1024).
    pub cpus: Option<f64>,
    /// Memory, MiB (at least 64).
    pub memory_mib: Option<u64>,
    /// Processes (at least 16).
    pub pids: Option<u64>,
}

/// Changes a running desktop's cgroup limits (admin only). Where the kernel offers no
/// cgroup v2 (`cgroup` is null in the listing) they are recorded but not enforced.
#[utoipa::path(put, path = "/desktops/{n}/limits", tag = "desktops", request_body = LimitsRequest,
    params(("n" = u32, Path, description = "desktop number")),
    responses((status = 200, body = zigral_store::DesktopRecord),
        (status = 409, description = "desktops are static in this configuration", body = ErrorBody),
        (status = 503, description = "zigral-init could not apply them", body = ErrorBody),
        CommonErrors))]
async fn set_limits(
    State(st): State<AppState>,
    who: Principal,
    Path(n): Path<u32>,
    Json(body): Json<LimitsRequest>,
) -> ApiResult<Json<zigral_store::DesktopRecord>> {
    who.require_admin()?;
    managed(&st)?;
    visible(&st, &who, n)?;
    let millicpus = match body.cpus {
        Some(c) if c.is_finite() && (0.01..=1024.0).contains(&c) => {
            Some((c * 1000.0).round() as u64)
        }
        Some(_) => return Err(ApiError::invalid("cpus must be 0.01..=1024")),
        None => None,
    };
    if body.memory_mib.is_some_and(|m| m < 64) {
        return Err(ApiError::invalid("memory_mib must be at least 64"));
    }
    if body.pids.is_some_and(|p| p < 16) {
        return Err(ApiError::invalid("pids must be at least 16"));
    }
    if millicpus.is_none() && body.memory_mib.is_none() && body.pids.is_none() {
        return Err(ApiError::invalid(
            "give at least one of cpus, memory_mib, pids",
        ));
    }
    let limits = GroupLimits {
        millicpus,
        memory: body.memory_mib.map(|m| m * 1024 * 1024),
        pids: body.pids,
    };
    let rec = st.vdi().set_limits(n, limits).await?;
    st.audit(
        &who.actor(),
        "desktop.limits",
        &n.to_string(),
        json!({"cpus": body.cpus, "memory_mib": body.memory_mib, "pids": body.pids}),
    )
    .await;
    Ok(Json(rec))
}

/// Mints a view or control token for a desktop (its owner or an admin), checked by the proxy
/// against the desktop's current lease.
#[utoipa::path(post, path = "/desktops/{n}/view-token", tag = "desktops",
    request_body(content = Option<super::sessions::ViewTokenRequest>, description = "optional; no body gives a view token"),
    params(("n" = u32, Path, description = "desktop number")),
    responses((status = 201, body = ViewToken),
        (status = 409, description = "desktops are static in this configuration", body = ErrorBody),
        CommonErrors))]
async fn desktop_token(
    State(st): State<AppState>,
    who: Principal,
    Path(n): Path<u32>,
    body: axum::body::Bytes,
) -> ApiResult<(StatusCode, Json<ViewToken>)> {
    managed(&st)?;
    visible(&st, &who, n)?;
    let (role, ttl) = token_request(&st, &who, &body)?;
    let t = mint_token(&st, &who, n, role, ttl)?;
    st.audit(
        &who.actor(),
        "desktop.view_token",
        &n.to_string(),
        json!({"role": t.role, "ttl_secs": ttl}),
    )
    .await;
    Ok((StatusCode::CREATED, Json(t)))
}
