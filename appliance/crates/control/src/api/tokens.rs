//! `/api/v1/tokens`: API tokens for agents and scripts (create, list, revoke). The secret is
//! shown once at creation; only its SHA-256 is stored.

use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};
use zigral_store::{TokenKind, TokenRecord};

use crate::auth::{Principal, Scope, new_id, new_token, token_hash};
use crate::error::{ApiError, ApiResult, CommonErrors, Json, Path};
use crate::state::AppState;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_token, list_tokens))
        .routes(routes!(revoke_token))
}

/// Longest API token lifetime: ten years.
const MAX_TTL_SECS: u64 = 10 * 365 * 24 * 3600;

/// New API token.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewToken {
    /// Label, 1–64 characters.
    pub name: String,
    /// Scopes; must be a subset of the caller's.
    pub scopes: Vec<Scope>,
    /// Lifetime in seconds (1 .. ten years); none = no expiry.
    #[schema(minimum = 1, maximum = 315360000)]
    pub expires_in_secs: Option<u64>,
}

/// An API token as listed (no secret).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct TokenView {
    pub id: String,
    pub name: String,
    pub scopes: Vec<String>,
    pub created_at: u64,
    pub expires_at: Option<u64>,
    pub user_id: String,
}

/// A created token: `token` is the secret, shown only now.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct CreatedToken {
    pub token: String,
    #[serde(flatten)]
    pub info: TokenView,
}

impl From<TokenRecord> for TokenView {
    fn from(t: TokenRecord) -> Self {
        TokenView {
            id: t.id,
            name: t.name,
            scopes: t.scopes,
            created_at: t.created_at,
            expires_at: t.expires_at,
            user_id: t.user_id,
        }
    }
}

/// Creates an API token for the caller.
#[utoipa::path(post, path = "/tokens", tag = "tokens", request_body = NewToken,
    responses((status = 201, body = CreatedToken), CommonErrors))]
async fn create_token(
    State(st): State<AppState>,
    who: Principal,
    Json(body): Json<NewToken>,
) -> ApiResult<(StatusCode, Json<CreatedToken>)> {
    let name = body.name.trim();
    if name.is_empty() || name.chars().count() > 64 {
        return Err(ApiError::invalid("name must have 1 to 64 characters"));
    }
    if body.scopes.is_empty() {
        return Err(ApiError::invalid("give at least one scope"));
    }
    for s in &body.scopes {
        if !who.has(*s) {
            return Err(ApiError::forbidden(format!(
                "you cannot grant the '{}' scope",
                s.as_str()
            )));
        }
    }
    let now = st.now_ms();
    let expires_at = match body.expires_in_secs {
        Some(s) if s == 0 || s > MAX_TTL_SECS => {
            return Err(ApiError::invalid("expires_in_secs must be 1 .. 315360000"));
        }
        Some(s) => Some(now + s * 1000),
        None => None,
    };
    let mut scopes: Vec<Scope> = body.scopes.clone();
    scopes.sort();
    scopes.dedup();
    let rec = TokenRecord {
        id: new_id(),
        user_id: who.user_id.clone(),
        kind: TokenKind::Api,
        name: name.to_owned(),
        scopes: scopes.iter().map(|s| s.as_str().to_owned()).collect(),
        created_at: now,
        expires_at,
    };
    let token = new_token(TokenKind::Api);
    st.store()
        .put_token(token_hash(&token), rec.clone())
        .await?;
    st.audit(
        &who.actor(),
        "token.create",
        &rec.id,
        json!({"name": rec.name, "scopes": rec.scopes}),
    )
    .await;
    Ok((
        StatusCode::CREATED,
        Json(CreatedToken {
            token,
            info: rec.into(),
        }),
    ))
}

/// Lists the caller's API tokens (without secrets).
#[utoipa::path(get, path = "/tokens", tag = "tokens",
    responses((status = 200, body = Vec<TokenView>), CommonErrors))]
async fn list_tokens(
    State(st): State<AppState>,
    who: Principal,
) -> ApiResult<Json<Vec<TokenView>>> {
    Ok(Json(
        st.store()
            .list_tokens(Some(&who.user_id), TokenKind::Api)?
            .into_iter()
            .map(TokenView::from)
            .collect(),
    ))
}

/// Revokes an API token (your own; admins any).
#[utoipa::path(delete, path = "/tokens/{id}", tag = "tokens",
    params(("id" = String, Path, description = "token id")),
    responses((status = 204, description = "revoked"), CommonErrors))]
async fn revoke_token(
    State(st): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    let rec = st
        .store()
        .token_by_id(&id)?
        .filter(|t| t.kind == TokenKind::Api)
        .ok_or_else(|| ApiError::not_found(format!("token {id} not found")))?;
    if rec.user_id != who.user_id && !who.is_admin {
        return Err(ApiError::forbidden("this token belongs to another user"));
    }
    st.store().revoke_token(&id).await?;
    st.audit(&who.actor(), "token.revoke", &id, json!({"name": rec.name}))
        .await;
    Ok(StatusCode::NO_CONTENT)
}
