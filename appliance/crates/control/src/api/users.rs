//! `/api/v1/users`: user management (administrators only).

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
        .routes(routes!(delete_user))
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
    let u = st.store().delete_user(&id).await?;
    st.audit(
        &who.actor(),
        "user.delete",
        &id,
        json!({"username": u.username}),
    )
    .await;
    Ok(StatusCode::NO_CONTENT)
}
