//! Authentication and authorisation: who is calling ([`Principal`], an axum extractor), what
//! they may do ([`Scope`]), and the reusable checks (session ownership, admin, scopes).
//!
//! Credentials: a login token (from `POST /auth/login`, sent as `Authorization: Bearer` or as
//! the HttpOnly `zigral_session` cookie) or an API token. Only SHA-256 hashes of tokens and
//! argon2id hashes of passwords are stored. In a fleet, a fleet user's login token is a
//! `zgf_` token signed with the fleet key, checked here without a stored record (see
//! [`crate::fleet_auth`]). GET/HEAD requests need the `read` scope, every
//! other method `write`; handlers ask for `control` or `admin` explicitly.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use argon2::password_hash::{PasswordHasher, PasswordVerifier, phc::PasswordHash};
use axum::extract::{FromRequestParts, MatchedPath, RawPathParams};
use axum::http::request::Parts;
use axum::http::{Method, header};
use base64::Engine;
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use utoipa::ToSchema;
use zigral_store::{SessionRecord, TokenKind};

use crate::error::ApiError;
use crate::state::AppState;

/// Routes whose `{id}` is a session the caller must own (checked by the extractor).
pub const SESSION_ROUTES: &str = "/api/v1/sessions/{id}";
/// Name of the login session cookie.
pub const COOKIE: &str = "zigral_session";
/// Longest credential we look at (a fleet token carries its claims: up to ~300 bytes).
const MAX_TOKEN_LEN: usize = 512;

/// A permission carried by a credential.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    /// Read sessions, messages, context, events, metrics.
    Read,
    /// Create and change sessions and messages (every non-GET request).
    Write,
    /// Drive the desktop: control tokens and (later) actions.
    Control,
    /// Administration: users, configuration, audit, shutdown (admins only).
    Admin,
}

impl Scope {
    pub const ALL: [Scope; 4] = [Scope::Read, Scope::Write, Scope::Control, Scope::Admin];
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Read => "read",
            Scope::Write => "write",
            Scope::Control => "control",
            Scope::Admin => "admin",
        }
    }
    pub fn parse(s: &str) -> Option<Scope> {
        Scope::ALL.into_iter().find(|x| x.as_str() == s)
    }
}

/// How the caller presented its credential.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CredentialKind {
    /// A login token sent as `Authorization: Bearer`.
    User,
    /// An API token sent as `Authorization: Bearer`.
    ApiToken,
    /// A login token sent as the session cookie (the web UI).
    SessionCookie,
}

/// The authenticated caller. Extracting it from a request authenticates the request, checks
/// the method's base scope (`read` for GET/HEAD, `write` otherwise) and, on routes under
/// [`SESSION_ROUTES`], that the caller owns the session (403) and that it exists (404).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Principal {
    pub user_id: String,
    pub username: String,
    pub is_admin: bool,
    pub scopes: Vec<Scope>,
    pub kind: CredentialKind,
    /// Public id of the credential (token id), for audit and revocation.
    pub token_id: String,
}

impl Principal {
    /// Whether the credential carries `scope`.
    pub fn has(&self, scope: Scope) -> bool {
        self.scopes.contains(&scope)
    }

    /// `403` unless the credential carries `scope`.
    pub fn require(&self, scope: Scope) -> Result<(), ApiError> {
        if self.has(scope) {
            Ok(())
        } else {
            Err(ApiError::forbidden(format!(
                "this credential lacks the '{}' scope",
                scope.as_str()
            )))
        }
    }

    /// `403` unless an admin with the `admin` scope.
    pub fn require_admin(&self) -> Result<(), ApiError> {
        if !self.is_admin {
            return Err(ApiError::forbidden("administrators only"));
        }
        self.require(Scope::Admin)
    }

    /// Identity recorded in audit entries and action logs: `user:<id>` or `token:<id>`.
    pub fn actor(&self) -> String {
        match self.kind {
            CredentialKind::ApiToken => format!("token:{}", self.token_id),
            _ => format!("user:{}", self.user_id),
        }
    }
}

/// Scopes a user's login session gets.
pub fn login_scopes(is_admin: bool) -> Vec<Scope> {
    let mut s = vec![Scope::Read, Scope::Write, Scope::Control];
    if is_admin {
        s.push(Scope::Admin);
    }
    s
}

/// Loads a session the caller may use: `404` if it does not exist, `403` if it belongs to
/// someone else (admins may use every session).
pub fn authorize_session(
    state: &AppState,
    who: &Principal,
    session_id: &str,
) -> Result<SessionRecord, ApiError> {
    if session_id.len() > 128 {
        return Err(ApiError::not_found(format!(
            "session {session_id} not found"
        )));
    }
    let s = state
        .store()
        .get_session(session_id)?
        .ok_or_else(|| ApiError::not_found(format!("session {session_id} not found")))?;
    if s.owner != who.user_id && !who.is_admin {
        return Err(ApiError::forbidden("this session belongs to another user"));
    }
    Ok(s)
}

/// [`authorize_session`], then the session's desktop made sure of: in managed mode one of its
/// owner's is created when it has none (its earlier one went idle, or the appliance
/// rebooted), and the call waits until it is ready. The returned record's `desktop` is the
/// one to use; `ensure` counts the use as activity.
pub async fn session_with_desktop(
    state: &AppState,
    who: &Principal,
    session_id: &str,
) -> Result<SessionRecord, ApiError> {
    let mut s = authorize_session(state, who, session_id)?;
    s.desktop = state.vdi().ensure(&s).await?;
    Ok(s)
}

/// Hex SHA-256 of a token (the only form stored).
pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// A fresh random secret token with a prefix telling its kind (`zgl_` login, `zgt_` API).
pub fn new_token(kind: TokenKind) -> String {
    let mut b = [0u8; 32];
    rand::rng().fill_bytes(&mut b);
    let prefix = match kind {
        TokenKind::Login => "zgl_",
        TokenKind::Api => "zgt_",
    };
    format!(
        "{prefix}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
    )
}

/// A random public identifier (16 hex bytes).
pub fn new_id() -> String {
    let mut b = [0u8; 16];
    rand::rng().fill_bytes(&mut b);
    hex::encode(b)
}

/// argon2id hash (PHC string) of a password. CPU-heavy: call from a blocking thread.
pub fn hash_password(password: &str) -> Result<String, ApiError> {
    argon2::Argon2::default()
        .hash_password(password.as_bytes())
        .map(|h| h.to_string())
        .map_err(|e| ApiError::internal(format!("argon2 hash: {e}")))
}

/// Whether `password` matches the PHC `hash`. CPU-heavy: call from a blocking thread.
pub fn verify_password(password: &str, hash: &str) -> bool {
    match PasswordHash::new(hash) {
        Ok(h) => argon2::Argon2::default()
            .verify_password(password.as_bytes(), &h)
            .is_ok(),
        Err(_) => false,
    }
}

/// Runs password hashing/verification off the async threads, at most two at a time (each is
/// ~100 ms of CPU; this bounds what a flood of logins can take).
pub async fn blocking_crypto<T: Send + 'static>(
    state: &AppState,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, ApiError> {
    let _permit = state
        .crypto_permits()
        .acquire()
        .await
        .map_err(ApiError::internal)?;
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::internal(format!("crypto task: {e}")))
}

fn bearer(parts: &Parts) -> Option<&str> {
    let v = parts.headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, rest) = v.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
}

fn cookie(parts: &Parts) -> Option<&str> {
    for v in parts.headers.get_all(header::COOKIE) {
        let Ok(s) = v.to_str() else { continue };
        for kv in s.split(';') {
            if let Some((k, v)) = kv.trim().split_once('=')
                && k == COOKIE
            {
                return Some(v);
            }
        }
    }
    None
}

/// The caller of a token this appliance issued (stored by hash).
fn local_principal(state: &AppState, token: &str, via_cookie: bool) -> Result<Principal, ApiError> {
    let rec = state
        .store()
        .token_by_hash(&token_hash(token))?
        .ok_or_else(|| ApiError::unauthorized("invalid or revoked token"))?;
    if rec.expires_at.is_some_and(|e| e <= state.now_ms()) {
        return Err(ApiError::unauthorized("token expired"));
    }
    if via_cookie && rec.kind != TokenKind::Login {
        return Err(ApiError::unauthorized("invalid or revoked token"));
    }
    let user = state
        .store()
        .get_user(&rec.user_id)?
        .ok_or_else(|| ApiError::unauthorized("the token's user no longer exists"))?;
    if user.disabled {
        return Err(ApiError::forbidden(
            "this account is disabled; ask an administrator",
        ));
    }
    let allowed = login_scopes(user.is_admin);
    let scopes: Vec<Scope> = match rec.kind {
        TokenKind::Login => allowed,
        TokenKind::Api => rec
            .scopes
            .iter()
            .filter_map(|s| Scope::parse(s))
            .filter(|s| allowed.contains(s))
            .collect(),
    };
    Ok(Principal {
        user_id: user.id,
        username: user.username,
        is_admin: user.is_admin,
        scopes,
        kind: match (rec.kind, via_cookie) {
            (_, true) => CredentialKind::SessionCookie,
            (TokenKind::Login, false) => CredentialKind::User,
            (TokenKind::Api, false) => CredentialKind::ApiToken,
        },
        token_id: rec.id,
    })
}

/// The caller of a fleet login token (any appliance of the fleet signed it; see
/// [`crate::fleet_auth`]): the listed user of that name, as this appliance's store has them.
fn fleet_principal(state: &AppState, token: &str, via_cookie: bool) -> Result<Principal, ApiError> {
    let fleet = &state.config().fleet;
    if !fleet.enabled() {
        return Err(ApiError::unauthorized(
            "invalid or revoked token (this appliance is not in a fleet)",
        ));
    }
    let claims =
        crate::fleet_auth::verify(&fleet.keys, token, state.now_ms()).map_err(|e| match e {
            crate::fleet_auth::TokenError::Expired => ApiError::unauthorized("token expired"),
            crate::fleet_auth::TokenError::UnknownKey(k) => ApiError::unauthorized(format!(
                "invalid fleet token: signed with key '{k}', which this appliance does not have"
            )),
            _ => ApiError::unauthorized("invalid or revoked token"),
        })?;
    if fleet.user(&claims.u).is_none() {
        return Err(ApiError::unauthorized(
            "this fleet token's user is not a fleet user on this appliance",
        ));
    }
    let user = state
        .store()
        .get_user_by_name(&claims.u)?
        .ok_or_else(|| ApiError::unauthorized("the token's user no longer exists"))?;
    if user.disabled {
        return Err(ApiError::forbidden(
            "this account is disabled; ask an administrator",
        ));
    }
    Ok(Principal {
        user_id: user.id,
        username: user.username,
        is_admin: user.is_admin,
        scopes: login_scopes(user.is_admin),
        kind: if via_cookie {
            CredentialKind::SessionCookie
        } else {
            CredentialKind::User
        },
        token_id: claims.jti,
    })
}

impl FromRequestParts<AppState> for Principal {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        if let Some(p) = parts.extensions.get::<Principal>() {
            return Ok(p.clone());
        }
        let (token, via_cookie) = match (bearer(parts), cookie(parts)) {
            (Some(t), _) => (t, false),
            (None, Some(c)) => (c, true),
            (None, None) => {
                return Err(ApiError::unauthorized(
                    "missing credentials: send 'Authorization: Bearer <token>' or log in",
                ));
            }
        };
        if token.is_empty() || token.len() > MAX_TOKEN_LEN {
            return Err(ApiError::unauthorized("invalid or revoked token"));
        }
        let p = if token.starts_with(crate::fleet_auth::PREFIX) {
            fleet_principal(state, token, via_cookie)?
        } else {
            local_principal(state, token, via_cookie)?
        };
        let base = if matches!(parts.method, Method::GET | Method::HEAD) {
            Scope::Read
        } else {
            Scope::Write
        };
        p.require(base)?;
        // Every route under /api/v1/sessions/{id} is checked for ownership here, before the
        // handler parses its path, query or body, so new session routes are covered as well;
        // so is the control lease for the routes that drive the desktop (every REST action
        // door passes here: 409 `control_held` while someone else holds control).
        let matched = parts.extensions.get::<MatchedPath>().cloned();
        let session_route = matched
            .as_ref()
            .is_some_and(|m| m.as_str().starts_with(SESSION_ROUTES));
        if session_route
            && let Ok(params) = RawPathParams::from_request_parts(parts, state).await
            && let Some((_, id)) = params.iter().find(|(k, _)| *k == "id")
        {
            let s = authorize_session(state, &p, id)?;
            if matched
                .is_some_and(|m| crate::control_lease::drives_desktop(&parts.method, m.as_str()))
            {
                state.control().check_record(&s, &p)?;
            }
        }
        parts.extensions.insert(p.clone());
        Ok(p)
    }
}

/// Failed-login accounting per user name and per client address (fixed windows).
#[derive(Debug)]
pub struct LoginLimiter {
    max_failures: u32,
    window: Duration,
    slots: Mutex<HashMap<String, (Instant, u32)>>,
}

impl LoginLimiter {
    pub fn new(max_failures: u32, window: Duration) -> Self {
        LoginLimiter {
            max_failures: max_failures.max(1),
            window,
            slots: Mutex::new(HashMap::new()),
        }
    }

    fn keys(username: &str, ip: Option<IpAddr>) -> [(String, u32); 2] {
        [
            (format!("u:{}", username.to_lowercase()), 1),
            (
                format!("a:{}", ip.map(|i| i.to_string()).unwrap_or_default()),
                4,
            ),
        ]
    }

    /// `Err(seconds to wait)` if this user name or address is locked out.
    pub fn check(&self, username: &str, ip: Option<IpAddr>) -> Result<(), u64> {
        let now = Instant::now();
        let slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        for (k, mult) in Self::keys(username, ip) {
            if let Some((start, n)) = slots.get(&k) {
                let age = now.duration_since(*start);
                if age < self.window && *n >= self.max_failures * mult {
                    return Err((self.window - age).as_secs() + 1);
                }
            }
        }
        Ok(())
    }

    /// Counts a failure.
    pub fn failed(&self, username: &str, ip: Option<IpAddr>) {
        let now = Instant::now();
        let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        if slots.len() > 100_000 {
            let w = self.window;
            slots.retain(|_, (s, _)| now.duration_since(*s) < w);
        }
        for (k, _) in Self::keys(username, ip) {
            let e = slots.entry(k).or_insert((now, 0));
            if now.duration_since(e.0) >= self.window {
                *e = (now, 0);
            }
            e.1 += 1;
        }
    }

    /// Clears the user name's failures after a successful login.
    pub fn succeeded(&self, username: &str) {
        let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        slots.remove(&format!("u:{}", username.to_lowercase()));
    }
}
