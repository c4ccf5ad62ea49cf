//! `/api/v1/auth/*`: login (cookie + bearer token), logout, who-am-I and password change.

use std::net::IpAddr;
use std::sync::OnceLock;

use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::IntoResponse;
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};
use zeroize::Zeroize;
use zigral_store::{TokenKind, TokenRecord, UserRecord};

use crate::auth::{
    COOKIE, CredentialKind, Principal, blocking_crypto, hash_password, new_id, new_token,
    token_hash, verify_password,
};
use crate::error::{ApiError, ApiResult, CommonErrors, ErrorBody, Json};
use crate::server::ClientAddr;
use crate::state::AppState;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(login))
        .routes(routes!(logout))
        .routes(routes!(me))
        .routes(routes!(change_password))
}

/// A user as shown by the API (no password hash).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct UserView {
    pub id: String,
    pub username: String,
    pub is_admin: bool,
    pub created_at: u64,
    /// A disabled user cannot log in or use any token.
    pub disabled: bool,
    /// Their Chrome profile survives session end and reboots.
    pub persistent_profile: bool,
    /// Their desktop limits and quota (absent: the appliance's defaults).
    pub limits: zigral_store::UserLimits,
}

impl From<UserRecord> for UserView {
    fn from(u: UserRecord) -> Self {
        UserView {
            id: u.id,
            username: u.username,
            is_admin: u.is_admin,
            created_at: u.created_at,
            disabled: u.disabled,
            persistent_profile: u.persistent_profile,
            limits: u.limits,
        }
    }
}

/// Login request.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    pub username: String,
    pub password: String,
}

/// Login result: the same token is also set as the HttpOnly session cookie.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct LoginResponse {
    /// Bearer token for agents and scripts (`Authorization: Bearer <token>`).
    pub token: String,
    pub token_type: String,
    /// Milliseconds since the epoch.
    pub expires_at: u64,
    pub user: UserView,
}

/// Password change request.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PasswordChange {
    pub current_password: String,
    pub new_password: String,
}

/// Validates a new password's length (8..=1024 characters).
pub fn check_password_rules(p: &str) -> Result<(), ApiError> {
    let n = p.chars().count();
    if !(8..=1024).contains(&n) {
        return Err(ApiError::invalid("password must have 8 to 1024 characters"));
    }
    Ok(())
}

/// The client's IP address when the server was started with connect info.
pub struct ClientIp(pub Option<IpAddr>);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for ClientIp {
    type Rejection = std::convert::Infallible;
    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _: &S,
    ) -> Result<Self, Self::Rejection> {
        Ok(ClientIp(
            parts
                .extensions
                .get::<ConnectInfo<ClientAddr>>()
                .map(|c| c.0.0.ip()),
        ))
    }
}

/// A hash to verify against when the user does not exist, so both cases take as long.
fn dummy_hash() -> &'static str {
    static H: OnceLock<String> = OnceLock::new();
    H.get_or_init(|| hash_password(&new_id()).unwrap_or_default())
}

/// The `Set-Cookie` value for a login token (`Secure` under TLS, ours or the fleet's:
/// `X-Forwarded-Proto: https`). `path`: `/`, or this appliance's `/a/<name>/` for a token
/// only it accepts, reached through the fleet.
fn session_cookie(
    st: &AppState,
    headers: &HeaderMap,
    token: &str,
    max_age: u64,
    path: &str,
) -> Option<HeaderValue> {
    let forwarded_tls = headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("https"));
    let secure = if st.config().tls() || forwarded_tls {
        "; Secure"
    } else {
        ""
    };
    HeaderValue::from_str(&format!(
        "{COOKIE}={token}; Path={path}; HttpOnly; SameSite=Strict; Max-Age={max_age}{secure}"
    ))
    .ok()
}

/// The cookie path of a token: a fleet token is good fleet-wide (`/`); this appliance's own
/// token, handed out through the fleet's `/a/<name>/`, only under that prefix.
fn cookie_path(st: &AppState, headers: &HeaderMap, fleet_token: bool) -> String {
    match crate::fleet::forwarded_prefix(st, headers) {
        Some(prefix) if !fleet_token => format!("{prefix}/"),
        _ => "/".to_owned(),
    }
}

/// Logs in with user name and password. Sets the HttpOnly, SameSite=Strict session cookie and
/// returns a bearer token with the same lifetime. Repeated failures for one user name or client
/// address are refused with 429 for the rest of the window.
#[utoipa::path(post, path = "/auth/login", tag = "auth", security(()),
    request_body = LoginRequest,
    responses((status = 200, body = LoginResponse,
               headers(("set-cookie" = String, description = "zigral_session cookie"))),
              (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 413, body = ErrorBody), (status = 415, body = ErrorBody),
              (status = 422, body = ErrorBody), (status = 429, body = ErrorBody)))]
async fn login(
    State(st): State<AppState>,
    ClientIp(ip): ClientIp,
    req_headers: HeaderMap,
    Json(body): Json<LoginRequest>,
) -> ApiResult<impl IntoResponse> {
    let LoginRequest { username, password } = body;
    if username.len() > 64 || password.len() > 4096 {
        return Err(ApiError::unauthorized("invalid user name or password"));
    }
    if let Err(wait) = st.limiter().check(&username, ip) {
        st.metrics()
            .login_rate_limited
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        return Err(ApiError::too_many(
            format!("too many failed logins; retry in {wait} s"),
            wait,
        ));
    }
    let user = st.store().get_user_by_name(&username)?;
    let hash = user
        .as_ref()
        .map(|u| u.password_hash.clone())
        .unwrap_or_else(|| dummy_hash().to_owned());
    let ok = blocking_crypto(&st, move || {
        let mut password = password;
        let ok = verify_password(&password, &hash);
        password.zeroize();
        ok
    })
    .await?;
    let user = match (ok, user) {
        (true, Some(u)) => u,
        _ => {
            st.limiter().failed(&username, ip);
            st.metrics()
                .login_failures
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            st.audit(
                "anonymous",
                "auth.login_failed",
                &username,
                json!({"ip": ip.map(|i| i.to_string())}),
            )
            .await;
            return Err(ApiError::unauthorized("invalid user name or password"));
        }
    };
    st.limiter().succeeded(&username);
    if user.disabled {
        st.audit(
            &format!("user:{}", user.id),
            "auth.login_disabled",
            &user.username,
            json!({"ip": ip.map(|i| i.to_string())}),
        )
        .await;
        return Err(ApiError::forbidden(
            "this account is disabled; ask an administrator",
        ));
    }
    let ttl = st.config().login_ttl_secs;
    let now = st.now_ms();
    let expires_at = now + ttl * 1000;
    let fleet = &st.config().fleet;
    // A fleet user gets a token every appliance of the fleet accepts; anyone else one that
    // only this appliance knows.
    let fleet_token = if fleet.enabled() && fleet.user(&user.username).is_some() {
        crate::fleet_auth::mint(
            &fleet.keys,
            &crate::fleet_auth::Claims {
                u: user.username.clone(),
                iat: now,
                exp: expires_at,
                jti: new_id(),
            },
        )
    } else {
        None
    };
    let is_fleet = fleet_token.is_some();
    let token = match fleet_token {
        Some(t) => t,
        None => {
            let token = new_token(TokenKind::Login);
            let rec = TokenRecord {
                id: new_id(),
                user_id: user.id.clone(),
                kind: TokenKind::Login,
                name: "login".into(),
                scopes: Vec::new(),
                created_at: now,
                expires_at: Some(expires_at),
            };
            st.store().put_token(token_hash(&token), rec).await?;
            token
        }
    };
    st.audit(
        &format!("user:{}", user.id),
        "auth.login",
        &user.username,
        json!({"ip": ip.map(|i| i.to_string()), "fleet": is_fleet}),
    )
    .await;
    let mut headers = HeaderMap::new();
    let path = cookie_path(&st, &req_headers, is_fleet);
    if let Some(c) = session_cookie(&st, &req_headers, &token, ttl, &path) {
        headers.insert(header::SET_COOKIE, c);
    }
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok((
        headers,
        Json(LoginResponse {
            token,
            token_type: "Bearer".into(),
            expires_at,
            user: user.into(),
        }),
    ))
}

/// Ends the current login session (revokes its token and clears the cookie). API tokens are
/// revoked with `DELETE /api/v1/tokens/{id}` instead. A fleet login token is not stored
/// anywhere: the cookie is cleared, and the token itself stays valid until it expires.
#[utoipa::path(post, path = "/auth/logout", tag = "auth",
    responses((status = 204, description = "logged out"), CommonErrors))]
async fn logout(
    State(st): State<AppState>,
    req_headers: HeaderMap,
    who: Principal,
) -> ApiResult<impl IntoResponse> {
    if who.kind == CredentialKind::ApiToken {
        return Err(ApiError::bad_request(
            "API tokens are revoked with DELETE /api/v1/tokens/{id}",
        ));
    }
    let fleet = st.config().fleet.enabled() && st.config().fleet.user(&who.username).is_some();
    let local = match st.store().revoke_token(&who.token_id).await {
        Ok(_) => true,
        // A fleet token has no record here.
        Err(zigral_store::StoreError::NotFound(_)) if fleet => false,
        Err(e) => return Err(e.into()),
    };
    st.audit(
        &who.actor(),
        "auth.logout",
        &who.username,
        json!({"fleet": !local}),
    )
    .await;
    let mut headers = HeaderMap::new();
    let path = cookie_path(&st, &req_headers, !local);
    if let Some(c) = session_cookie(&st, &req_headers, "", 0, &path) {
        headers.insert(header::SET_COOKIE, c);
    }
    Ok((StatusCode::NO_CONTENT, headers))
}

/// The authenticated principal: user, admin flag, scopes and credential kind.
#[utoipa::path(get, path = "/auth/me", tag = "auth",
    responses((status = 200, body = Principal), CommonErrors))]
async fn me(who: Principal) -> Json<Principal> {
    Json(who)
}

/// Changes the caller's password (needs the current one). Other login sessions stay valid
/// until they expire or log out.
#[utoipa::path(post, path = "/auth/password", tag = "auth", request_body = PasswordChange,
    responses((status = 204, description = "changed"), CommonErrors))]
async fn change_password(
    State(st): State<AppState>,
    who: Principal,
    Json(body): Json<PasswordChange>,
) -> ApiResult<StatusCode> {
    if who.kind == CredentialKind::ApiToken {
        return Err(ApiError::forbidden("log in with a password to change it"));
    }
    crate::fleet::refuse_managed_user(&st, &who.username)?;
    check_password_rules(&body.new_password)?;
    let user = st
        .store()
        .get_user(&who.user_id)?
        .ok_or_else(|| ApiError::unauthorized("user no longer exists"))?;
    let PasswordChange {
        current_password,
        new_password,
    } = body;
    let hash = user.password_hash.clone();
    let new_hash = blocking_crypto(&st, move || {
        let (mut cur, mut new) = (current_password, new_password);
        let r = if verify_password(&cur, &hash) {
            Some(hash_password(&new))
        } else {
            None
        };
        cur.zeroize();
        new.zeroize();
        r
    })
    .await?;
    let Some(new_hash) = new_hash else {
        return Err(ApiError::forbidden("current password is wrong"));
    };
    st.store()
        .set_password_hash(&who.user_id, new_hash?)
        .await?;
    st.audit(
        &who.actor(),
        "auth.password_changed",
        &who.username,
        json!({}),
    )
    .await;
    Ok(StatusCode::NO_CONTENT)
}
