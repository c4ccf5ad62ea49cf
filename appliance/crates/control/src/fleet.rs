//! The appliance as one member of a fleet behind HAProxy (issue 17, `deploy/README.md`): its
//! name, its free desktop slots, the draining switch and the HAProxy agent-check listener.
//!
//! - **Name** (`appliance_name`): a DNS label; the fleet routes `/a/<name>/...` here. Default:
//!   this machine's host name (lower-cased, up to its first dot).
//! - **Capacity**: `max` = `max_desktops`; `free` = the desktop slots a new session could get
//!   now, counted the way the desktop manager refuses (409 `capacity`): `max_desktops` minus
//!   the live desktops leased to a user (warm-pool desktops are free slots). With
//!   `desktop_mode = "static"` nothing is leased, so `free` stays `max`.
//! - **Draining** (`PUT /api/v1/admin/draining`): persisted in the store's configuration table
//!   under [`DRAINING_KEY`] (read on every use, so a restart keeps it); while on, creating a
//!   session answers 503 `appliance_draining`, and everything else, existing sessions
//!   included, goes on.
//! - **Agent** (`agent_listen`, off by default): HAProxy's `agent-check` protocol (HAProxy 2.6
//!   configuration manual, `agent-check`). Per TCP connection it writes one line and closes:
//!   `drain` while draining; otherwise the weight as the share of free slots, `N%` (`0%` when
//!   full: no new work from the pool, while the appliance's pinned `/a/<name>/` traffic goes
//!   on). Once this process has answered `drain`, every later non-draining answer is
//!   `ready N%`, which takes the server out of DRAIN again; a process that never answered
//!   `drain` never sends `ready`, so it does not cancel a drain an operator set through
//!   HAProxy's runtime API. (Such an operator also runs `disable agent`, see
//!   `deploy/README.md`.) It never sends `up`/`down`: whether the appliance is up is HAProxy's
//!   `/readyz` check's business.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use utoipa::ToSchema;
use zigral_store::{DesktopState, StoreError};

use crate::error::{ApiError, ApiResult, CommonErrors, Json};
use crate::events::Event;
use crate::state::AppState;

/// Key of the draining switch in the store's configuration table (a JSON boolean). Managed by
/// `PUT /api/v1/admin/draining`.
pub const DRAINING_KEY: &str = "appliance.draining";

/// Kind of the event (and action of the audit entry) of a draining switch.
pub const EVENT: &str = "appliance.draining";

/// Error code of a session refused while draining.
pub const DRAINING_ERROR: &str = "appliance_draining";

/// Longest an agent connection is kept open after its line, waiting for HAProxy to close.
const LINGER: Duration = Duration::from_secs(5);

/// Whether `name` is a DNS label: `^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$`.
pub fn is_dns_label(name: &str) -> bool {
    let b = name.as_bytes();
    let inner = |c: &u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    (1..=63).contains(&b.len())
        && b.iter().all(|c| inner(c) || *c == b'-')
        && b.first().is_some_and(inner)
        && b.last().is_some_and(inner)
}

/// Checks a configured `appliance_name`.
pub fn check_name(name: &str) -> Result<(), String> {
    if is_dns_label(name) {
        Ok(())
    } else {
        Err(format!(
            "appliance_name '{}' is not a DNS label: 1-63 characters of a-z, 0-9 and '-', \
             starting and ending with a letter or digit (e.g. zigral-3); the fleet routes \
             /a/<name>/ by it",
            name.escape_debug()
        ))
    }
}

/// This machine's host name (the kernel's, as `gethostname` reads it).
pub fn hostname() -> Result<String, String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim_end().to_owned())
        .map_err(|e| format!("cannot read the host name: {e}"))
}

/// The default `appliance_name`: this machine's host name as a DNS label (see
/// [`name_from_host`]); `zigral` when the host name cannot be read.
pub fn default_name() -> String {
    hostname()
        .map(|h| name_from_host(&h))
        .unwrap_or_else(|_| "zigral".to_owned())
}

/// A host name made a DNS label: up to its first dot, lower-cased, every other character than
/// `a-z 0-9 -` replaced by `-`, no `-` at either end, at most 63 characters; `zigral` if
/// nothing is left. (A configured `appliance_name` is checked strictly instead.)
pub fn name_from_host(host: &str) -> String {
    let first = host
        .split('.')
        .next()
        .unwrap_or_default()
        .to_ascii_lowercase();
    let mapped: String = first
        .chars()
        .map(|c| {
            if c.is_ascii_lowercase() || c.is_ascii_digit() {
                c
            } else {
                '-'
            }
        })
        .take(63)
        .collect();
    let name = mapped.trim_matches('-');
    if name.is_empty() {
        "zigral".to_owned()
    } else {
        name.to_owned()
    }
}

/// Desktop slots of this appliance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Capacity {
    /// Desktops this appliance runs at most (`max_desktops`).
    pub max: u32,
    /// Slots a new session could get now: `max` minus the desktops leased to users (warm-pool
    /// desktops count as free). With static desktops: always `max`.
    pub free: u32,
}

impl Capacity {
    /// The share of free slots, in percent (rounded down; at least 1 while any is free).
    pub fn percent(&self) -> u32 {
        if self.max == 0 || self.free == 0 {
            return 0;
        }
        (self.free.min(self.max) * 100 / self.max).max(1)
    }
}

/// The appliance in a fleet, as `GET /api/v1/info` shows it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ApplianceInfo {
    /// `appliance_name`: the fleet reaches this appliance at `/a/<name>/`.
    pub name: String,
    /// An administrator marked it draining: it takes no new session.
    pub draining: bool,
    pub desktops: Capacity,
    /// `/a/<name>` when this request came through the fleet's pinned route (HAProxy's
    /// `X-Forwarded-Prefix`): links to this appliance start with it, the live view included.
    pub prefix: Option<String>,
    /// The fleet this appliance belongs to (`fleet_keys` set), else `null`.
    pub fleet: Option<FleetInfo>,
}

/// The fleet as one appliance knows it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct FleetInfo {
    /// `fleet_members`: every appliance name of the fleet (some may not be running); just
    /// this appliance when the setting is empty.
    pub members: Vec<String>,
}

/// The header HAProxy sets on requests of the pinned route `/a/<name>/...`.
pub const PREFIX_HEADER: &str = "x-forwarded-prefix";

/// `/a/<name>` if the request came through the fleet's pinned route to this appliance (its
/// `X-Forwarded-Prefix` names exactly this appliance; anything else is ignored).
pub fn forwarded_prefix(st: &AppState, headers: &axum::http::HeaderMap) -> Option<String> {
    let want = format!("/a/{}", st.config().appliance_name);
    headers
        .get(PREFIX_HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|v| v.trim_end_matches('/') == want)
        .map(|_| want)
}

/// 409 `fleet_managed` for a user of the fleet's list: a change through one appliance would
/// hold there only (the list in `fleet_users` is the source, on every appliance).
pub fn refuse_managed_user(st: &AppState, username: &str) -> ApiResult<()> {
    if st.config().fleet.user(username).is_some() {
        return Err(ApiError::new(
            axum::http::StatusCode::CONFLICT,
            crate::fleet_auth::MANAGED_ERROR,
            format!(
                "user '{username}' is managed by the fleet (fleet_users): change them in the \
                 fleet's settings, which every appliance reads"
            ),
        ));
    }
    Ok(())
}

/// The free desktop slots now.
pub fn capacity(st: &AppState) -> Capacity {
    let max = st.vdi().settings().max_desktops;
    let leased = st
        .vdi()
        .records()
        .iter()
        .filter(|r| r.state != DesktopState::Destroying && r.owner.is_some())
        .count();
    let leased = u32::try_from(leased).unwrap_or(u32::MAX);
    Capacity {
        max,
        free: max.saturating_sub(leased),
    }
}

/// Whether the appliance is draining (the persisted switch; absent = no).
pub fn draining(st: &AppState) -> Result<bool, StoreError> {
    Ok(match st.store().get_config(DRAINING_KEY)? {
        None => false,
        Some(Value::Bool(b)) => b,
        Some(other) => {
            tracing::warn!(key = DRAINING_KEY, value = %other,
                "not a boolean: the appliance is taken as not draining; set it with PUT /api/v1/admin/draining");
            false
        }
    })
}

/// Name, draining, capacity and fleet (a store error reads as not draining, logged);
/// `headers`: the request's, for its prefix.
pub fn info(st: &AppState, headers: &axum::http::HeaderMap) -> ApplianceInfo {
    ApplianceInfo {
        name: st.config().appliance_name.clone(),
        draining: draining(st).unwrap_or_else(|e| {
            tracing::error!(error = %e, "cannot read the draining switch");
            false
        }),
        desktops: capacity(st),
        prefix: forwarded_prefix(st, headers),
        fleet: st.config().fleet.enabled().then(|| FleetInfo {
            members: if st.config().fleet.members.is_empty() {
                vec![st.config().appliance_name.clone()]
            } else {
                st.config().fleet.members.clone()
            },
        }),
    }
}

/// 503 `appliance_draining` while the appliance is draining (creating a session).
pub fn refuse_new_session(st: &AppState) -> ApiResult<()> {
    if draining(st)? {
        return Err(ApiError::new(
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            DRAINING_ERROR,
            format!(
                "appliance {} is draining and takes no new sessions; create the session \
                 through the fleet address, which sends it to another appliance (existing \
                 sessions here keep working)",
                st.config().appliance_name
            ),
        ));
    }
    Ok(())
}

/// Turns draining on or off: persisted, audited (`appliance.draining`, always) and published
/// as the `appliance.draining` event to everyone (on a change). Returns whether it changed.
pub async fn set_draining(
    st: &AppState,
    who: &crate::auth::Principal,
    on: bool,
) -> ApiResult<bool> {
    let was = draining(st)?;
    st.store().put_config(DRAINING_KEY, Value::Bool(on)).await?;
    let changed = was != on;
    let name = &st.config().appliance_name;
    st.audit(
        &who.actor(),
        EVENT,
        name,
        json!({"draining": on, "changed": changed}),
    )
    .await;
    if changed {
        tracing::info!(appliance = %name, draining = on, by = %who.user_id, "draining switched");
        st.publish(Event::new(
            EVENT,
            None,
            None,
            json!({
                "appliance": name,
                "draining": on,
                "by": who.user_id,
                "by_name": who.username,
            }),
        ));
    }
    Ok(changed)
}

/// What the agent answers: `drain`, `N%`, or `ready N%` once `answered_drain` (this process
/// answered `drain` before). Marks `answered_drain` when it answers `drain`.
pub fn agent_line(draining: bool, cap: Capacity, answered_drain: &AtomicBool) -> String {
    if draining {
        answered_drain.store(true, Ordering::SeqCst);
        return "drain\n".into();
    }
    let p = cap.percent();
    if answered_drain.load(Ordering::SeqCst) {
        format!("ready {p}%\n")
    } else {
        format!("{p}%\n")
    }
}

/// Binds `agent_listen` when it is set (a clear error when it cannot).
pub async fn bind_agent(cfg: &crate::Config) -> anyhow::Result<Option<TcpListener>> {
    let Some(addr) = cfg.agent_listen else {
        return Ok(None);
    };
    let l = TcpListener::bind(addr).await.with_context(|| {
        format!("agent_listen: cannot listen for HAProxy's agent-check on {addr}")
    })?;
    Ok(Some(l))
}

/// The running agent; it stops when dropped (or, waiting until it is gone, with
/// [`Agent::stop`]).
pub struct Agent {
    addr: SocketAddr,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Agent {
    /// Where it listens.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops it and waits until its task (and its hold on the state) is gone.
    pub async fn stop(mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
            let _ = t.await;
        }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        if let Some(t) = &self.task {
            t.abort();
        }
    }
}

/// Serves HAProxy's agent-check on `listener` until the returned [`Agent`] is dropped.
pub fn serve_agent(listener: TcpListener, st: AppState) -> std::io::Result<Agent> {
    let addr = listener.local_addr()?;
    // Per process: whether `drain` was ever answered (then `ready` rides on later answers).
    let answered_drain = Arc::new(AtomicBool::new(false));
    let task = tokio::spawn(async move {
        loop {
            let (sock, peer) = match listener.accept().await {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!(error = %e, "agent: accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let line = match draining(&st) {
                Ok(d) => agent_line(d, capacity(&st), &answered_drain),
                Err(e) => {
                    // No answer changes nothing at HAProxy.
                    tracing::error!(error = %e, "agent: cannot read the draining switch");
                    continue;
                }
            };
            tracing::debug!(%peer, line = line.trim_end(), "agent answer");
            tokio::spawn(answer(sock, line));
        }
    });
    tracing::info!(%addr, "HAProxy agent-check listening");
    Ok(Agent {
        addr,
        task: Some(task),
    })
}

/// Writes `line`, half-closes, and waits (bounded) for the peer to close, reading what it
/// sent (an `agent-send` string) so that closing never resets the connection under it.
async fn answer(mut sock: TcpStream, line: String) {
    let _ = tokio::time::timeout(LINGER, async {
        sock.write_all(line.as_bytes()).await?;
        sock.shutdown().await?;
        let mut sink = [0u8; 512];
        while sock.read(&mut sink).await? > 0 {}
        Ok::<(), std::io::Error>(())
    })
    .await;
}

/// The draining switch's routes (merged in [`crate::api::openapi_router`]).
pub fn routes() -> utoipa_axum::router::OpenApiRouter<AppState> {
    utoipa_axum::router::OpenApiRouter::new()
        .routes(utoipa_axum::routes!(get_draining, put_draining))
}

/// Turns draining on or off.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DrainingRequest {
    /// `true`: take no new session (HAProxy's agent hears `drain`); `false`: take new work
    /// again.
    pub draining: bool,
}

/// The draining switch and what is left on the appliance.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Draining {
    /// `appliance_name`.
    pub appliance: String,
    pub draining: bool,
    /// Sessions stored here (they live on this appliance only: scale in once it is 0).
    pub sessions: u64,
    pub desktops: Capacity,
}

fn report(st: &AppState, draining: bool) -> ApiResult<Draining> {
    Ok(Draining {
        appliance: st.config().appliance_name.clone(),
        draining,
        sessions: st.store().list_sessions(None)?.len() as u64,
        desktops: capacity(st),
    })
}

/// Whether the appliance is draining, and the sessions and desktops it still holds
/// (administrators).
#[utoipa::path(get, path = "/admin/draining", tag = "admin",
    responses((status = 200, body = Draining), CommonErrors))]
async fn get_draining(
    State(st): State<AppState>,
    who: crate::auth::Principal,
) -> ApiResult<Json<Draining>> {
    who.require_admin()?;
    Ok(Json(report(&st, draining(&st)?)?))
}

/// Marks the appliance draining, or takes it back (administrators). Draining: creating a
/// session answers 503 `appliance_draining`, and the HAProxy agent (`agent_listen`) answers
/// `drain`, so the fleet sends new work elsewhere; existing sessions keep working. Kept across
/// restarts; audited; a change is published as the `appliance.draining` event.
#[utoipa::path(put, path = "/admin/draining", tag = "admin", request_body = DrainingRequest,
    responses((status = 200, body = Draining), CommonErrors))]
async fn put_draining(
    State(st): State<AppState>,
    who: crate::auth::Principal,
    Json(body): Json<DrainingRequest>,
) -> ApiResult<Json<Draining>> {
    who.require_admin()?;
    set_draining(&st, &who, body.draining).await?;
    Ok(Json(report(&st, body.draining)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns_labels() {
        for ok in ["a", "zigral-0", "0", "a1-b2", &"x".repeat(63)] {
            assert!(is_dns_label(ok), "{ok}");
        }
        for bad in ["", "-a", "a-", "A", "zigral_0", "a.b", "é", &"x".repeat(64)] {
            assert!(!is_dns_label(bad), "{bad}");
            assert!(check_name(bad).unwrap_err().contains("DNS label"));
        }
    }

    #[test]
    fn agent_lines_follow_haproxy_semantics() {
        let cap = |free, max| Capacity { max, free };
        let d = AtomicBool::new(false);
        assert_eq!(agent_line(false, cap(8, 8), &d), "100%\n");
        assert_eq!(agent_line(false, cap(3, 8), &d), "37%\n");
        assert_eq!(agent_line(false, cap(1, 100), &d), "1%\n");
        assert_eq!(agent_line(false, cap(0, 8), &d), "0%\n");
        assert_eq!(agent_line(true, cap(8, 8), &d), "drain\n");
        assert_eq!(agent_line(false, cap(4, 8), &d), "ready 50%\n");
        assert_eq!(agent_line(false, cap(0, 8), &d), "ready 0%\n");
    }
}
