//! The human control lease: a person's login takes control of a session's desktop; while it
//! holds it, everyone else's actions on that desktop are refused (409 `control_held`, never
//! queued) and everyone else's live control connections through the proxy drop to view-only.
//!
//! # Who holds what
//!
//! A lease belongs to one login (a login token, sent as bearer or as the session cookie; API
//! tokens cannot take one) and is taken on a session ([`ControlLeases::take`]); it covers the
//! session's desktop, so sibling sessions on the same desktop are covered too and a desktop
//! has at most one holding login. Taking again with the same login refreshes the expiry;
//! another login gets 409 unless an admin forces it. A lease ends when released, when its
//! session is deleted, or by itself at its expiry, judged by the state's clock
//! ([`AppState::now_ms`], which tests move): a sweeper checks every [`SWEEP`] while leases
//! exist. Leases live in memory: a restarted control plane starts with none.
//!
//! # The signal to the proxy
//!
//! The proxy does not call back. Every proxy token minted for a login carries the login's
//! *control id* ([`control_id`], a hash of the login's public id) in its `control` claim. For
//! each held desktop N the control plane writes the holder's control id to
//! `<state_dir>/control/N` ([`zigral_token::ControlFiles`], atomically, 0600 like the lease
//! files: the proxy runs as the same `zigral` user) and removes the file when the desktop's
//! last lease ends. The proxy reads the file of every desktop with live control connections
//! every 250 ms and forwards input only from connections whose token's control id matches, or
//! from every control connection when there is no file. So a change (taken, taken over,
//! released, expired) reaches live connections within about half a second; a connection
//! demoted by a lease gets its input back when the lease ends, without reconnecting.
//!
//! # For the agent loop
//!
//! [`ControlLeases::check`] is the refusal every action door uses; [`ControlLeases::holder`]
//! says who holds a session's desktop; [`ControlLeases::subscribe`] is a counter bumped on
//! every change of any lease (await `changed()`, then ask `holder` again), and
//! [`ControlLeases::released`] waits until a session's desktop is free.
//!
//! [`AppState::now_ms`]: crate::state::AppState::now_ms

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use axum::http::{Method, StatusCode};
use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::{Digest, Sha256};
use tokio::sync::watch;
use utoipa::ToSchema;
use zigral_store::{SessionRecord, Store};
use zigral_token::{ControlFiles, Role, SigningKey};

use crate::auth::{CredentialKind, Principal};
use crate::error::ApiError;
use crate::events::{Event, EventBus};

/// Lifetime of a lease when the request names none, seconds.
pub const DEFAULT_TIMEOUT_SECS: u64 = 300;
/// Longest lease, seconds.
pub const MAX_TIMEOUT_SECS: u64 = 3600;
/// How often expiry is checked while leases exist.
pub const SWEEP: Duration = Duration::from_millis(250);
/// Error code of a refusal because someone else holds control.
pub const CONTROL_HELD: &str = "control_held";

/// Who holds control of a session's desktop.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct LeaseHolder {
    /// The session the lease was taken on.
    pub session_id: String,
    /// The desktop it covers.
    pub desktop: u32,
    pub user_id: String,
    pub user_name: String,
    /// Public id of the holding login (its token id).
    pub login_id: String,
    /// When it was taken, milliseconds since the epoch.
    pub since_ms: u64,
    /// When it ends by itself, milliseconds since the epoch.
    pub expires_ms: u64,
}

/// What a take did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Change {
    /// A new lease.
    Taken,
    /// The holder took it again: a new expiry.
    Refreshed,
    /// An admin took it from another login.
    Forced,
    Released,
    Expired,
}

impl Change {
    /// The change's name in events and audit actions.
    pub fn as_str(self) -> &'static str {
        match self {
            Change::Taken => "taken",
            Change::Refreshed => "refreshed",
            Change::Forced => "forced",
            Change::Released => "released",
            Change::Expired => "expired",
        }
    }
}

/// The control id of a login: what its proxy tokens carry and `<state>/control/N` names
/// (32 hex digits; the login's id is not written anywhere the proxy reads).
pub fn control_id(login_id: &str) -> String {
    let d = Sha256::digest(format!("zigral-control\0{login_id}").as_bytes());
    hex::encode(&d[..16])
}

/// The login a caller acts through, if it is a person's login (not an API token).
fn login_of(who: &Principal) -> Option<&str> {
    (who.kind != CredentialKind::ApiToken).then_some(who.token_id.as_str())
}

/// Every control lease of the appliance. Cheap to clone.
#[derive(Clone)]
pub struct ControlLeases {
    inner: Arc<Inner>,
}

struct Inner {
    /// By session id; expired ones stay until swept but count as absent.
    leases: Mutex<HashMap<String, Lease>>,
    files: ControlFiles,
    store: Store,
    events: EventBus,
    key: SigningKey,
    changes: watch::Sender<u64>,
    sweeping: AtomicBool,
}

#[derive(Debug, Clone)]
struct Lease {
    holder: LeaseHolder,
    /// The session's owner (who receives the events).
    owner: String,
}

impl ControlLeases {
    /// No leases; clears the control files an earlier run left (leases live in memory).
    pub fn new(
        state_dir: &std::path::Path,
        store: Store,
        events: EventBus,
        key: SigningKey,
    ) -> Self {
        let files = ControlFiles::in_state_dir(state_dir);
        if let Err(e) = files.clear() {
            tracing::error!("cannot clear stale control files: {e}");
        }
        ControlLeases {
            inner: Arc::new(Inner {
                leases: Mutex::new(HashMap::new()),
                files,
                store,
                events,
                key,
                changes: watch::channel(0).0,
                sweeping: AtomicBool::new(false),
            }),
        }
    }

    fn now_ms(&self) -> u64 {
        self.inner.key.now_ms()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Lease>> {
        self.inner.leases.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The live lease covering `session` (on it, or on another session of its desktop).
    fn covering(
        map: &HashMap<String, Lease>,
        session: &str,
        desktop: Option<u32>,
        now: u64,
    ) -> Option<LeaseHolder> {
        let live = |l: &&Lease| l.holder.expires_ms > now;
        map.get(session)
            .filter(live)
            .or_else(|| {
                let d = desktop?;
                map.values().filter(live).find(|l| l.holder.desktop == d)
            })
            .map(|l| l.holder.clone())
    }

    /// The desktop of a session, from the store (only asked while some lease exists).
    fn desktop_of(&self, session_id: &str) -> Option<u32> {
        self.inner
            .store
            .get_session(session_id)
            .ok()
            .flatten()
            .map(|s| s.desktop)
    }

    /// Who holds control of `session_id`'s desktop (a lease on this session or on another
    /// session of the same desktop), if anyone; `None` once it is released or expired.
    pub fn holder(&self, session_id: &str) -> Option<LeaseHolder> {
        let now = self.now_ms();
        {
            let map = self.lock();
            if map.is_empty() {
                return None;
            }
            if let Some(h) = Self::covering(&map, session_id, None, now) {
                return Some(h);
            }
        }
        let desktop = self.desktop_of(session_id)?;
        Self::covering(&self.lock(), session_id, Some(desktop), now)
    }

    /// A counter bumped on every change of any lease (taken, refreshed, forced, released,
    /// expired). The agent loop waits with `changed().await` and then asks [`Self::holder`].
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.inner.changes.subscribe()
    }

    /// Returns once nobody holds control of `session_id`'s desktop (at once if nobody does).
    pub async fn released(&self, session_id: &str) {
        let mut rx = self.subscribe();
        while self.holder(session_id).is_some() {
            if rx.changed().await.is_err() {
                return;
            }
        }
    }

    /// `Ok` unless someone other than `who` holds control of `session_id`'s desktop: then
    /// 409 `control_held` naming the holder. Only the holding login itself passes; API
    /// tokens (even the holder's own user's) never do while a lease is held.
    pub fn check(&self, session_id: &str, who: &Principal) -> Result<(), ApiError> {
        match self.holder(session_id) {
            Some(h) if login_of(who) != Some(h.login_id.as_str()) => Err(held(&h)),
            _ => Ok(()),
        }
    }

    /// [`Self::check`] for a session record already at hand.
    pub fn check_record(&self, s: &SessionRecord, who: &Principal) -> Result<(), ApiError> {
        let now = self.now_ms();
        let map = self.lock();
        match Self::covering(&map, &s.id, Some(s.desktop), now) {
            Some(h) if login_of(who) != Some(h.login_id.as_str()) => Err(held(&h)),
            _ => Ok(()),
        }
    }

    /// The role and control claim of a proxy token `who` asks for on `desktop`: a `control`
    /// token becomes `view` while another login holds the desktop; a login's tokens carry its
    /// control id.
    pub fn grant(&self, desktop: u32, who: &Principal, role: Role) -> (Role, Option<String>) {
        let me = login_of(who);
        let now = self.now_ms();
        let held_by_other = self.lock().values().any(|l| {
            l.holder.desktop == desktop
                && l.holder.expires_ms > now
                && Some(l.holder.login_id.as_str()) != me
        });
        let role = if held_by_other { Role::View } else { role };
        let control = (role == Role::Control)
            .then(|| me.map(control_id))
            .flatten();
        (role, control)
    }

    /// Takes (or refreshes) control of session `s` (its desktop as given) for `who`, a
    /// login, for `timeout_secs`. Another login's lease on the desktop is a 409 unless
    /// `force` (admins only, 403 otherwise). Publishes, audits and signals the proxy.
    pub async fn take(
        &self,
        s: &SessionRecord,
        who: &Principal,
        timeout_secs: u64,
        force: bool,
    ) -> Result<(LeaseHolder, Change), ApiError> {
        let Some(login) = login_of(who) else {
            return Err(ApiError::forbidden(
                "only a person's login can take control; API tokens (agents) cannot",
            ));
        };
        if force && !who.is_admin {
            return Err(ApiError::forbidden("only administrators may force=true"));
        }
        if !(1..=MAX_TIMEOUT_SECS).contains(&timeout_secs) {
            return Err(ApiError::invalid(format!(
                "timeout_secs must be 1..={MAX_TIMEOUT_SECS}"
            )));
        }
        self.sweep().await;
        let now = self.now_ms();
        let (holder, change, ousted) = {
            let mut map = self.lock();
            let others: Vec<String> = map
                .iter()
                .filter(|(id, l)| {
                    (id.as_str() == s.id || l.holder.desktop == s.desktop)
                        && l.holder.login_id != login
                })
                .map(|(id, _)| id.clone())
                .collect();
            if let Some(first) = others.first().and_then(|id| map.get(id))
                && !force
            {
                return Err(held(&first.holder));
            }
            let ousted: Vec<Lease> = others.iter().filter_map(|id| map.remove(id)).collect();
            let previous = map.get(&s.id).map(|l| l.holder.clone());
            let holder = LeaseHolder {
                session_id: s.id.clone(),
                desktop: s.desktop,
                user_id: who.user_id.clone(),
                user_name: who.username.clone(),
                login_id: login.to_owned(),
                since_ms: previous.as_ref().map_or(now, |p| p.since_ms),
                expires_ms: now.saturating_add(timeout_secs.saturating_mul(1000)),
            };
            map.insert(
                s.id.clone(),
                Lease {
                    holder: holder.clone(),
                    owner: s.owner.clone(),
                },
            );
            let mut desktops = vec![s.desktop];
            desktops.extend(previous.as_ref().map(|p| p.desktop));
            desktops.extend(ousted.iter().map(|l| l.holder.desktop));
            if let Err(e) = self.sync_files(&map, &desktops) {
                map.remove(&s.id);
                for l in ousted {
                    map.insert(l.holder.session_id.clone(), l);
                }
                let _ = self.sync_files(&map, &desktops);
                return Err(ApiError::internal(format!("control file: {e}")));
            }
            let change = if !ousted.is_empty() {
                Change::Forced
            } else if previous.is_some() {
                Change::Refreshed
            } else {
                Change::Taken
            };
            (holder, change, ousted)
        };
        self.ensure_sweeper();
        self.changed();
        let previous: Vec<&LeaseHolder> = ousted.iter().map(|l| &l.holder).collect();
        self.publish(&holder, &s.owner, change, &previous);
        for l in ousted.iter().filter(|l| l.holder.session_id != s.id) {
            // A sibling session on the same desktop: its lease went to the new holder.
            let mut moved = holder.clone();
            moved.session_id.clone_from(&l.holder.session_id);
            self.publish(&moved, &l.owner, Change::Forced, &[&l.holder]);
        }
        self.audit(
            &who.actor(),
            change,
            &holder,
            json!({"force": force, "ousted": previous}),
        )
        .await;
        Ok((holder, change))
    }

    /// Releases control of `session_id`'s desktop (the lease on this session, or the one on
    /// a sibling session of the same desktop): by its holding login, or by an admin with
    /// `force`. Nothing held: `Ok(None)`. Someone else's lease: 409 `control_held`.
    pub async fn release(
        &self,
        session_id: &str,
        who: &Principal,
        force: bool,
    ) -> Result<Option<LeaseHolder>, ApiError> {
        if force && !who.is_admin {
            return Err(ApiError::forbidden("only administrators may force=true"));
        }
        self.sweep().await;
        let Some(h) = self.holder(session_id) else {
            return Ok(None);
        };
        let ended = {
            let mut map = self.lock();
            let Some(l) = map.get(&h.session_id) else {
                return Ok(None);
            };
            if login_of(who) != Some(l.holder.login_id.as_str()) && !force {
                return Err(held(&l.holder));
            }
            let l = map.remove(&h.session_id);
            if let Some(l) = &l
                && let Err(e) = self.sync_files(&map, &[l.holder.desktop])
            {
                tracing::error!("control file: {e}");
            }
            l
        };
        let Some(l) = ended else { return Ok(None) };
        self.changed();
        self.publish(&l.holder, &l.owner, Change::Released, &[]);
        self.audit(
            &who.actor(),
            Change::Released,
            &l.holder,
            json!({"force": force}),
        )
        .await;
        Ok(Some(l.holder))
    }

    /// Ends the lease of a deleted session, if any.
    pub async fn end_session(&self, session_id: &str, actor: &str) {
        let ended = {
            let mut map = self.lock();
            let l = map.remove(session_id);
            if let Some(l) = &l
                && let Err(e) = self.sync_files(&map, &[l.holder.desktop])
            {
                tracing::error!("control file: {e}");
            }
            l
        };
        if let Some(l) = ended {
            self.changed();
            self.publish(&l.holder, &l.owner, Change::Released, &[]);
            self.audit(
                actor,
                Change::Released,
                &l.holder,
                json!({"reason": "session deleted"}),
            )
            .await;
        }
    }

    /// Ends every lease past its expiry (by the state's clock).
    pub async fn sweep(&self) {
        let now = self.now_ms();
        let expired: Vec<Lease> = {
            let mut map = self.lock();
            let ids: Vec<String> = map
                .iter()
                .filter(|(_, l)| l.holder.expires_ms <= now)
                .map(|(id, _)| id.clone())
                .collect();
            let gone: Vec<Lease> = ids.iter().filter_map(|id| map.remove(id)).collect();
            let desktops: Vec<u32> = gone.iter().map(|l| l.holder.desktop).collect();
            if let Err(e) = self.sync_files(&map, &desktops) {
                tracing::error!("control file: {e}");
            }
            gone
        };
        if expired.is_empty() {
            return;
        }
        self.changed();
        for l in expired {
            self.publish(&l.holder, &l.owner, Change::Expired, &[]);
            self.audit("system", Change::Expired, &l.holder, json!({}))
                .await;
        }
    }

    /// Writes (or removes) the control file of each of `desktops` from `map`.
    fn sync_files(
        &self,
        map: &HashMap<String, Lease>,
        desktops: &[u32],
    ) -> Result<(), zigral_token::TokenError> {
        for &d in desktops {
            let holder = map
                .values()
                .find(|l| l.holder.desktop == d)
                .map(|l| control_id(&l.holder.login_id));
            self.inner.files.write(d, holder.as_deref())?;
        }
        Ok(())
    }

    fn changed(&self) {
        self.inner.changes.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Starts the expiry sweeper unless it runs; it stops when no lease is left.
    fn ensure_sweeper(&self) {
        if self.inner.sweeping.swap(true, Ordering::SeqCst) {
            return;
        }
        let weak: Weak<Inner> = Arc::downgrade(&self.inner);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(SWEEP);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(inner) = weak.upgrade() else { return };
                let leases = ControlLeases { inner };
                leases.sweep().await;
                let map = leases.lock();
                if map.is_empty() {
                    leases.inner.sweeping.store(false, Ordering::SeqCst);
                    return;
                }
            }
        });
    }

    /// Publishes a `session.control` event: `holder` is the holder after the change (null
    /// once released or expired, when `previous` names who held it), `previous` the holders
    /// a forced take ousted.
    fn publish(&self, h: &LeaseHolder, owner: &str, change: Change, ousted: &[&LeaseHolder]) {
        let ended = matches!(change, Change::Released | Change::Expired);
        let holder = (!ended).then_some(h);
        let previous: Vec<&LeaseHolder> = if ended { vec![h] } else { ousted.to_vec() };
        self.inner.events.publish(Event::new(
            "session.control",
            Some(&h.session_id),
            Some(owner),
            json!({
                "change": change.as_str(),
                "desktop": h.desktop,
                "holder": holder,
                "previous": previous,
                "expires_ms": holder.map(|h| h.expires_ms),
            }),
        ));
    }

    async fn audit(&self, actor: &str, change: Change, h: &LeaseHolder, extra: serde_json::Value) {
        let detail = json!({
            "desktop": h.desktop,
            "holder": h.user_id,
            "holder_name": h.user_name,
            "since_ms": h.since_ms,
            "expires_ms": h.expires_ms,
            "extra": extra,
        });
        let action = format!("session.control.{}", change.as_str());
        if let Err(e) = self
            .inner
            .store
            .append_audit(actor, &action, &h.session_id, detail)
            .await
        {
            tracing::error!(error = %e, action, "cannot write audit entry");
        }
    }
}

/// The 409 refusal naming the holder.
pub fn held(h: &LeaseHolder) -> ApiError {
    ApiError::new(
        StatusCode::CONFLICT,
        CONTROL_HELD,
        format!(
            "{} has control of this session since {}; actions resume when they release it",
            h.user_name,
            utc(h.since_ms)
        ),
    )
}

/// Whether a request under `/api/v1/sessions/{id}` drives the desktop (refused while someone
/// else holds control): POST to the action routes (`/actions`, `/actions/anthropic`,
/// `/actions/openai`, and any later `/actions/...` adapter) and checkpoint restores (which
/// navigate the browser and replace its cookies).
pub fn drives_desktop(method: &Method, matched_path: &str) -> bool {
    let Some(rest) = matched_path.strip_prefix(crate::auth::SESSION_ROUTES) else {
        return false;
    };
    *method == Method::POST
        && (rest == "/actions"
            || rest.starts_with("/actions/")
            || (rest.starts_with("/checkpoints/") && rest.ends_with("/restore")))
}

/// MCP tools that only look at the desktop: allowed while someone else holds control.
pub const MCP_READ_TOOLS: &[&str] = &[
    "screenshot",
    "zoom",
    "cursor_position",
    "wait",
    "wait_for_load",
    "tab_list",
    "page_text",
    "a11y_snapshot",
];

/// The control lease at the MCP door: while someone other than `who` holds control of session
/// `s`'s desktop, a request carrying a `tools/call` (alone or in a JSON-RPC batch) of a tool
/// that drives the desktop is answered 409 `control_held`; everything else (initialize, tool
/// lists, the read-only tools of [`MCP_READ_TOOLS`]) passes. The body is only read while a
/// lease is held.
pub async fn mcp_guard(
    st: &crate::state::AppState,
    who: &Principal,
    s: &SessionRecord,
    req: axum::extract::Request,
) -> Result<axum::extract::Request, axum::response::Response> {
    use axum::response::IntoResponse;
    let Err(refusal) = st.control().check_record(s, who) else {
        return Ok(req);
    };
    let (parts, body) = req.into_parts();
    let bytes = match axum::body::to_bytes(body, st.config().max_body_bytes).await {
        Ok(b) => b,
        Err(_) => {
            return Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                "request body too large",
            )
            .into_response());
        }
    };
    if mcp_drives(&bytes) {
        return Err(refusal.into_response());
    }
    Ok(axum::extract::Request::from_parts(
        parts,
        axum::body::Body::from(bytes),
    ))
}

/// Whether a JSON-RPC body calls a tool that drives the desktop.
fn mcp_drives(body: &[u8]) -> bool {
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(body) else {
        // Not JSON: the MCP service refuses it anyway.
        return false;
    };
    let read = |name: &str| MCP_READ_TOOLS.contains(&name);
    let drives = |m: &serde_json::Value| {
        if m["method"] != "tools/call" {
            return false;
        }
        let p = &m["params"];
        match p["name"].as_str() {
            Some("batch") => !p["arguments"]["actions"]
                .as_array()
                .is_some_and(|a| a.iter().all(|x| x["action"].as_str().is_some_and(read))),
            Some(name) => !read(name),
            None => true,
        }
    };
    match &v {
        serde_json::Value::Array(msgs) => msgs.iter().any(drives),
        m => drives(m),
    }
}

/// Adds the `409 control_held` response to every operation of `doc` that drives the desktop
/// ([`drives_desktop`]), so the action routes document the refusal wherever they are defined.
pub fn document_refusals(doc: &mut utoipa::openapi::OpenApi) {
    use utoipa::openapi::{Content, Ref, RefOr, ResponseBuilder};
    for (path, item) in doc.paths.paths.iter_mut() {
        let Some(op) = item.post.as_mut() else {
            continue;
        };
        if !drives_desktop(&Method::POST, path) {
            continue;
        }
        let conflict = ResponseBuilder::new()
            .description(
                "`control_held`: a person holds control of this session's desktop; nothing \
                 ran (retry once they release it)",
            )
            .content(
                "application/json",
                Content::new(Some(Ref::from_schema_name("ErrorBody"))),
            )
            .build();
        op.responses
            .responses
            .entry("409".to_owned())
            .or_insert(RefOr::T(conflict));
    }
}

/// `ms` since the epoch as `YYYY-MM-DDTHH:MM:SSZ`.
pub(crate) fn utc(ms: u64) -> String {
    let secs = ms / 1000;
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (H. Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_formats_known_instants() {
        assert_eq!(utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(utc(951_782_400_000), "2000-02-29T00:00:00Z");
        assert_eq!(utc(1_700_000_000_123), "2023-11-14T22:13:20Z");
    }

    #[test]
    fn only_driving_routes_are_gated() {
        let p = |s: &str| format!("/api/v1/sessions/{{id}}{s}");
        assert!(drives_desktop(&Method::POST, &p("/actions")));
        assert!(drives_desktop(&Method::POST, &p("/actions/anthropic")));
        assert!(drives_desktop(&Method::POST, &p("/actions/openai")));
        assert!(drives_desktop(
            &Method::POST,
            &p("/checkpoints/{cid}/restore")
        ));
        assert!(!drives_desktop(&Method::GET, &p("/actions")));
        assert!(!drives_desktop(&Method::GET, &p("/screenshot")));
        assert!(!drives_desktop(&Method::POST, &p("/checkpoints")));
        assert!(!drives_desktop(&Method::POST, &p("/messages")));
        assert!(!drives_desktop(&Method::POST, &p("/control")));
        assert!(!drives_desktop(&Method::POST, "/api/v1/sessions"));
    }
}
