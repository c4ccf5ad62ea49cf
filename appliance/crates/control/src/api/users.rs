//! `/api/v1/users`: user management (administrators only): create, list, change (disable,
//! persistent profile, desktop limits and quota), reset a password, delete.

use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::json;
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};
use zigral_store::{UserRecord, now_ms};

use super::auth::{UserView, check_password_rules};
use crate::auth::{Principal, blocking_crypto, hash_password, new_id};
use crate::error::{ApiError, ApiResult, CommonErrors, ErrorBody, Json, Path};
use crate::state::AppState;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_user, list_users))
        .routes(routes!(update_user, delete_user))
        .routes(routes!(reset_password))
}

/// Desktop limits of a user; absent fields keep their value, `null` returns one to the
/// appliance default.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LimitsChange {
    /// CPUs per desktop (0.01–1024).
    #[serde(default, with = "patch")]
    #[schema(value_type = Option<f64>)]
    pub cpus: Option<Option<f64>>,
    /// Memory per desktop, MiB (at least 64).
    #[serde(default, with = "patch")]
    #[schema(value_type = Option<u64>)]
    pub memory_mib: Option<Option<u64>>,
    /// Processes per desktop (at least 16).
    #[serde(default, with = "patch")]
    #[schema(value_type = Option<u64>)]
    pub pids: Option<Option<u64>>,
    /// Desktops the user may hold at once (1–100).
    #[serde(default, with = "patch")]
    #[schema(value_type = Option<u32>)]
    pub max_desktops: Option<Option<u32>>,
}

/// `absent` → None, `null` → Some(None), value → Some(Some(v)).
mod patch {
    use serde::{Deserialize, Deserializer};
    pub fn deserialize<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
    where
        D: Deserializer<'de>,
        T: Deserialize<'de>,
    {
        Option::<T>::deserialize(d).map(Some)
    }
}

/// Changes to a user; absent fields stay as they are.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UserChange {
    /// Disable (no login, no token works, their desktops are destroyed) or enable again.
    pub disabled: Option<bool>,
    /// Keep their Chrome profile across sessions and reboots (applies to their next desktop).
    pub persistent_profile: Option<bool>,
    #[serde(default, deserialize_with = "object")]
    pub limits: Option<LimitsChange>,
}

/// An optional JSON object (serde would also take an array for a struct).
fn object<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::de::DeserializeOwned,
{
    match Option::<serde_json::Value>::deserialize(d)? {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(v @ serde_json::Value::Object(_)) => serde_json::from_value(v)
            .map(Some)
            .map_err(serde::de::Error::custom),
        Some(_) => Err(serde::de::Error::custom("limits must be an object")),
    }
}

fn apply_limits(l: &mut zigral_store::UserLimits, c: &LimitsChange) -> Result<(), ApiError> {
    if let Some(v) = c.cpus {
        l.millicpus = match v {
            Some(x) if x.is_finite() && (0.01..=1024.0).contains(&x) => {
                Some((x * 1000.0).round() as u64)
            }
            Some(_) => return Err(ApiError::invalid("limits.cpus must be 0.01..=1024")),
            None => None,
        };
    }
    if let Some(v) = c.memory_mib {
        if v.is_some_and(|m| m < 64) {
            return Err(ApiError::invalid("limits.memory_mib must be at least 64"));
        }
        l.memory_mib = v;
    }
    if let Some(v) = c.pids {
        if v.is_some_and(|p| p < 16) {
            return Err(ApiError::invalid("limits.pids must be at least 16"));
        }
        l.pids = v;
    }
    if let Some(v) = c.max_desktops {
        if v.is_some_and(|m| !(1..=crate::config::DESKTOP_NUMBERS).contains(&m)) {
            return Err(ApiError::invalid("limits.max_desktops must be 1..=100"));
        }
        l.max_desktops = v;
    }
    Ok(())
}

/// Changes a user: disable/enable, persistent profile, desktop limits and quota (admin only).
/// Disabling destroys their desktops; limits apply to desktops created afterwards.
#[utoipa::path(patch, path = "/users/{id}", tag = "users", request_body = UserChange,
    params(("id" = String, Path, description = "user id")),
    responses((status = 200, body = UserView), (status = 409, body = ErrorBody), CommonErrors))]
async fn update_user(
    State(st): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
    Json(body): Json<UserChange>,
) -> ApiResult<Json<UserView>> {
    who.require_admin()?;
    let cur = st
        .store()
        .get_user(&id)?
        .ok_or_else(|| ApiError::not_found(format!("user {id} not found")))?;
    if body.disabled == Some(true) && id == who.user_id {
        return Err(ApiError::conflict("you cannot disable yourself"));
    }
    if body.disabled.is_some_and(|d| d != cur.disabled) {
        crate::fleet::refuse_managed_user(&st, &cur.username)?;
    }
    let mut limits = cur.limits;
    if let Some(c) = &body.limits {
        apply_limits(&mut limits, c)?;
    }
    let (disabled, persistent) = (body.disabled, body.persistent_profile);
    let u = st
        .store()
        .update_user(&id, move |u| {
            if let Some(d) = disabled {
                u.disabled = d;
            }
            if let Some(p) = persistent {
                u.persistent_profile = p;
            }
            u.limits = limits;
        })
        .await?;
    if u.disabled {
        st.vdi().release_user(&u.id).await;
    }
    st.audit(
        &who.actor(),
        "user.update",
        &id,
        json!({"disabled": u.disabled, "persistent_profile": u.persistent_profile, "limits": u.limits}),
    )
    .await;
    Ok(Json(u.into()))
}

/// A new password set by an administrator.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PasswordReset {
    /// 8–1024 characters.
    pub password: String,
}

/// Sets a user's password (admin only) and ends their logins (API tokens stay).
#[utoipa::path(post, path = "/users/{id}/password", tag = "users", request_body = PasswordReset,
    params(("id" = String, Path, description = "user id")),
    responses((status = 204, description = "password set; their logins ended"), CommonErrors))]
async fn reset_password(
    State(st): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
    Json(body): Json<PasswordReset>,
) -> ApiResult<StatusCode> {
    who.require_admin()?;
    check_password_rules(&body.password)?;
    let Some(target) = st.store().get_user(&id)? else {
        return Err(ApiError::not_found(format!("user {id} not found")));
    };
    crate::fleet::refuse_managed_user(&st, &target.username)?;
    let hash = blocking_crypto(&st, move || {
        let mut p = body.password;
        let h = hash_password(&p);
        zeroize::Zeroize::zeroize(&mut p);
        h
    })
    .await??;
    st.store().set_password_hash(&id, hash).await?;
    let ended = st.store().revoke_logins(&id).await?;
    st.audit(
        &who.actor(),
        "user.password_reset",
        &id,
        json!({"logins_ended": ended}),
    )
    .await;
    Ok(StatusCode::NO_CONTENT)
}

/// New user.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewUser {
    /// 1–64 characters of `A-Z a-z 0-9 . _ -`.
    pub username: String,
    /// 8–1024 characters.
    pub password: String,
    #[serde(default)]
    pub is_admin: bool,
}

/// Validates a user name.
pub fn check_username(u: &str) -> Result<(), ApiError> {
    let ok = (1..=64).contains(&u.len())
        && u.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if ok {
        Ok(())
    } else {
        Err(ApiError::invalid(
            "username must be 1-64 characters of A-Z a-z 0-9 . _ -",
        ))
    }
}

/// Creates a user (admin only).
#[utoipa::path(post, path = "/users", tag = "users", request_body = NewUser,
    responses((status = 201, body = UserView), (status = 409, body = ErrorBody), CommonErrors))]
async fn create_user(
    State(st): State<AppState>,
    who: Principal,
    Json(body): Json<NewUser>,
) -> ApiResult<(StatusCode, Json<UserView>)> {
    who.require_admin()?;
    check_username(&body.username)?;
    check_password_rules(&body.password)?;
    if st.store().get_user_by_name(&body.username)?.is_some() {
        return Err(ApiError::conflict(format!(
            "user name '{}' is taken",
            body.username
        )));
    }
    let NewUser {
        username,
        password,
        is_admin,
    } = body;
    let hash = blocking_crypto(&st, move || {
        let mut p = password;
        let h = hash_password(&p);
        zeroize::Zeroize::zeroize(&mut p);
        h
    })
    .await??;
    let u = st
        .store()
        .create_user(UserRecord {
            id: new_id(),
            username,
            password_hash: hash,
            is_admin,
            created_at: now_ms(),
            disabled: false,
            persistent_profile: false,
            limits: Default::default(),
        })
        .await?;
    st.audit(
        &who.actor(),
        "user.create",
        &u.id,
        json!({"username": u.username, "is_admin": u.is_admin}),
    )
    .await;
    Ok((StatusCode::CREATED, Json(u.into())))
}

/// Lists users (admin only).
#[utoipa::path(get, path = "/users", tag = "users",
    responses((status = 200, body = Vec<UserView>), CommonErrors))]
async fn list_users(State(st): State<AppState>, who: Principal) -> ApiResult<Json<Vec<UserView>>> {
    who.require_admin()?;
    Ok(Json(
        st.store()
            .list_users()?
            .into_iter()
            .map(UserView::from)
            .collect(),
    ))
}

/// Deletes a user and revokes all their tokens (admin only; not yourself).
#[utoipa::path(delete, path = "/users/{id}", tag = "users",
    params(("id" = String, Path, description = "user id")),
    responses((status = 204, description = "deleted"), (status = 409, body = ErrorBody), CommonErrors))]
async fn delete_user(
    State(st): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    who.require_admin()?;
    if id == who.user_id {
        return Err(ApiError::conflict("you cannot delete yourself"));
    }
    if let Some(target) = st.store().get_user(&id)? {
        crate::fleet::refuse_managed_user(&st, &target.username)?;
    }
    let u = st.store().delete_user(&id).await?;
    st.vdi().release_user(&id).await;
    st.audit(
        &who.actor(),
        "user.delete",
        &id,
        json!({"username": u.username}),
    )
    .await;
    Ok(StatusCode::NO_CONTENT)
}
