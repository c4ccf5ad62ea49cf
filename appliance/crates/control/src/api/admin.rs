//! `/api/v1/admin/*`: audit log, runtime configuration values, the appliance's services as
//! zigral-init reports them, and clean power-off through the supervisor (administrators only).

use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};
use zigral_store::AuditRecord;

use crate::auth::Principal;
use crate::error::{ApiError, ApiResult, CommonErrors, ErrorBody, Json, Path, Query};
use crate::state::AppState;
use crate::supervisor::SupervisorError;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(shutdown))
        .routes(routes!(audit))
        .routes(routes!(list_config))
        .routes(routes!(put_config, delete_config))
        .routes(routes!(services))
}

/// Audit page query.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    /// Entries with `seq` greater than this.
    pub after: Option<u64>,
    /// Page size 1..=1000 (default 100).
    pub limit: Option<usize>,
}

/// Shutdown result.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ShutdownAccepted {
    pub accepted: bool,
    pub action: String,
}

/// A configuration entry.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ConfigEntry {
    pub key: String,
    pub value: Value,
}

/// One service of the appliance as zigral-init reports it.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ServiceInfo {
    pub name: String,
    /// The template instance it belongs to (`desktop@0`, `recording@3`); null for the
    /// appliance's own services (proxy, control, sshd, ...).
    pub group: Option<String>,
    /// `starting`, `ready`, `running`, `backoff`, `stopping`, `stopped` or `failed`.
    pub state: String,
    pub pid: Option<i32>,
    /// Restarts since zigral-init started it.
    pub restarts: u32,
    /// How it last ended (`exit status 1`, `signal 9`), if it did.
    pub last_exit: Option<String>,
    /// Time since its current process started, ms.
    pub uptime_ms: Option<u64>,
    /// When it last became ready, ms since zigral-init started (the boot timeline).
    pub ready_at_ms: Option<u64>,
    /// Frozen by zigral-init (a recording while a secret is on screen).
    pub paused: bool,
}

/// Versions of the appliance's parts.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Versions {
    /// The control plane's.
    pub control: String,
    /// zigral-init's, when its status reports one (today it does not: null).
    pub init: Option<String>,
}

/// The appliance's services and versions.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ServicesReport {
    pub versions: Versions,
    /// zigral-init is stopping everything (power-off or reboot under way).
    pub shutting_down: bool,
    pub services: Vec<ServiceInfo>,
    /// The boot timeline: the kernel's time before zigral-init, and when everything wanted at
    /// start was first ready (each service's moment is its `ready_at_ms`).
    pub boot: Option<BootInfo>,
}

/// Where the boot's time went.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct BootInfo {
    /// The kernel's uptime when zigral-init started as PID 1 (in the VM: kernel and
    /// initramfs), ms; null when it is not PID 1 (host mode).
    pub kernel_ms: Option<u64>,
    /// Since zigral-init started, ms.
    pub uptime_ms: u64,
    /// When every service wanted at start was first ready, ms since zigral-init started.
    pub all_ready_ms: Option<u64>,
}

fn check_key(k: &str) -> Result<(), ApiError> {
    let ok = (1..=128).contains(&k.len())
        && k.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if ok {
        Ok(())
    } else {
        Err(ApiError::invalid(
            "key must be 1-128 characters of A-Z a-z 0-9 . _ -",
        ))
    }
}

/// 409 for a key that has its own endpoint (which checks the value, audits and publishes the
/// change): the draining switch.
fn check_not_dedicated(k: &str) -> Result<(), ApiError> {
    if k == crate::fleet::DRAINING_KEY {
        return Err(ApiError::conflict(format!(
            "'{k}' is set with PUT /api/v1/admin/draining"
        )));
    }
    Ok(())
}

/// Asks the supervisor to power the appliance off cleanly (`{"cmd":"shutdown",
/// "action":"poweroff"}` on its control socket). 503 if the supervisor cannot be reached.
#[utoipa::path(post, path = "/admin/shutdown", tag = "admin",
    responses((status = 202, body = ShutdownAccepted), (status = 503, body = ErrorBody), CommonErrors))]
async fn shutdown(
    State(st): State<AppState>,
    who: Principal,
) -> ApiResult<(StatusCode, Json<ShutdownAccepted>)> {
    who.require_admin()?;
    st.audit(
        &who.actor(),
        "admin.shutdown",
        "appliance",
        json!({"action": "poweroff"}),
    )
    .await;
    match crate::supervisor::request::<crate::supervisor::ShutdownReply>(
        &st.config().init_socket,
        &crate::supervisor::Request::Shutdown {
            action: crate::supervisor::ShutdownAction::Poweroff,
        },
        Duration::from_secs(5),
    )
    .await
    {
        Ok(_) => Ok((
            StatusCode::ACCEPTED,
            Json(ShutdownAccepted {
                accepted: true,
                action: "poweroff".into(),
            }),
        )),
        Err(SupervisorError::Refused(m)) => Err(ApiError::conflict(format!(
            "the supervisor refused to shut down: {m}"
        ))),
        Err(e) => Err(ApiError::unavailable(e.to_string())),
    }
}

/// The audit log (who did what, when), oldest first.
#[utoipa::path(get, path = "/admin/audit", tag = "admin", params(AuditQuery),
    responses((status = 200, body = Vec<AuditRecord>), CommonErrors))]
async fn audit(
    State(st): State<AppState>,
    who: Principal,
    Query(q): Query<AuditQuery>,
) -> ApiResult<Json<Vec<AuditRecord>>> {
    who.require_admin()?;
    if q.after.is_some_and(|a| a > i64::MAX as u64) {
        return Err(ApiError::invalid("after is out of range"));
    }
    let limit = match q.limit {
        None => 100,
        Some(n) if (1..=1000).contains(&n) => n,
        Some(_) => return Err(ApiError::invalid("limit must be 1..=1000")),
    };
    Ok(Json(st.store().list_audit(q.after, limit)?))
}

/// Runtime configuration values stored in the appliance.
#[utoipa::path(get, path = "/admin/config", tag = "admin",
    responses((status = 200, body = Vec<ConfigEntry>), CommonErrors))]
async fn list_config(
    State(st): State<AppState>,
    who: Principal,
) -> ApiResult<Json<Vec<ConfigEntry>>> {
    who.require_admin()?;
    Ok(Json(
        st.store()
            .list_config()?
            .into_iter()
            .map(|(key, value)| ConfigEntry { key, value })
            .collect(),
    ))
}

/// Sets a runtime configuration value (any JSON).
#[utoipa::path(put, path = "/admin/config/{key}", tag = "admin",
    params(("key" = String, Path, description = "configuration key")),
    request_body(content = serde_json::Value, description = "any JSON value"),
    responses((status = 200, body = ConfigEntry), CommonErrors))]
async fn put_config(
    State(st): State<AppState>,
    who: Principal,
    Path(key): Path<String>,
    Json(value): Json<Value>,
) -> ApiResult<Json<ConfigEntry>> {
    who.require_admin()?;
    check_key(&key)?;
    check_not_dedicated(&key)?;
    st.store().put_config(&key, value.clone()).await?;
    st.audit(&who.actor(), "config.set", &key, json!({})).await;
    Ok(Json(ConfigEntry { key, value }))
}

/// Removes a runtime configuration value.
#[utoipa::path(delete, path = "/admin/config/{key}", tag = "admin",
    params(("key" = String, Path, description = "configuration key")),
    responses((status = 204, description = "removed"), CommonErrors))]
async fn delete_config(
    State(st): State<AppState>,
    who: Principal,
    Path(key): Path<String>,
) -> ApiResult<StatusCode> {
    who.require_admin()?;
    check_key(&key)?;
    check_not_dedicated(&key)?;
    st.store().delete_config(&key).await?;
    st.audit(&who.actor(), "config.delete", &key, json!({}))
        .await;
    Ok(StatusCode::NO_CONTENT)
}

/// The appliance's services (zigral-init's `status`: state, pid, restarts, last exit, paused)
/// and versions. 503 when zigral-init cannot be reached (e.g. a control plane run without it,
/// as with `desktop_mode = "static"`).
#[utoipa::path(get, path = "/admin/services", tag = "admin",
    responses((status = 200, body = ServicesReport),
        (status = 503, description = "zigral-init cannot be reached", body = ErrorBody),
        CommonErrors))]
async fn services(State(st): State<AppState>, who: Principal) -> ApiResult<Json<ServicesReport>> {
    who.require_admin()?;
    let status = crate::vdi::init::status(&st.config().init_socket)
        .await
        .map_err(|e| {
            let hint = if st.vdi().managed() {
                ""
            } else {
                " (desktop_mode is \"static\": the control plane may be running without zigral-init)"
            };
            ApiError::unavailable(format!(
                "the appliance's services are unknown: zigral-init does not answer: {e}{hint}"
            ))
        })?;
    Ok(Json(ServicesReport {
        versions: Versions {
            control: super::info::VERSION.to_owned(),
            init: None,
        },
        shutting_down: status.shutting_down,
        boot: status.boot.map(|b| BootInfo {
            kernel_ms: b.kernel_ms,
            uptime_ms: b.uptime_ms,
            all_ready_ms: b.all_ready_ms,
        }),
        services: status
            .services
            .into_iter()
            .map(|s| ServiceInfo {
                name: s.name,
                group: s.group,
                state: s.state.as_str().to_owned(),
                pid: s.pid,
                restarts: s.restarts,
                last_exit: s.last_exit,
                uptime_ms: s.uptime_ms,
                ready_at_ms: s.ready_at_ms,
                paused: s.paused,
            })
            .collect(),
    }))
}
