//! Which desktop each session gets: the control plane owns the desktops (`desktop@N` under
//! zigral-init), one per user or one per session, created on demand (from the warm pool when
//! one is ready), limited per user, leased to one owner at a time and destroyed when their
//! last session ends or they sit idle.
//!
//! Invariants:
//! - A desktop's record (redb `desktops`) is written before it is spawned or handed to a user
//!   and removed only after zigral-init destroyed it (its per-desktop files purged), so a
//!   restarted control plane never hands a used desktop to someone else: an instance without
//!   a record was never leased and may join the pool.
//! - Every use of a session's desktop goes through [`Vdi::ensure`], which checks the record's
//!   owner and sessions, never the session's remembered number alone.
//! - A desktop handed to a user gets a fresh lease (`<state>/leases/N`); view/control tokens
//!   carry it and the proxy refuses tokens of an earlier lease.
//!
//! `init.rs` speaks to zigral-init; `background.rs` keeps the pool full and reaps idle
//! desktops; `limits.rs` resolves a user's limits; `usage.rs` turns zigral-init's CPU time
//! into a current percentage.

mod background;
pub mod init;
mod limits;
mod usage;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use serde_json::json;
use tokio::sync::{Notify, watch};
use zigral_init_protocol::GroupLimits;
use zigral_store::{DesktopRecord, DesktopState, SessionRecord, Store, StoreError, UserRecord};

use crate::config::{DESKTOP_NUMBERS, DesktopMode, DesktopPolicy, DesktopSettings};
use crate::desktops::Desktops;
use crate::events::{ADMINS_ONLY, Event, EventBus};
use init::SpawnParams;
pub use limits::effective_limits;
pub use usage::Usage;

/// Why a desktop could not be had.
#[derive(Debug, thiserror::Error)]
pub enum VdiError {
    /// The user holds as many desktops as they may.
    #[error(
        "desktop quota reached: user {user} may hold {limit} desktop(s) at once (max_desktops_per_user); end a session or ask an administrator to raise it"
    )]
    UserQuota { user: String, limit: u32 },
    /// The appliance runs as many desktops as it may.
    #[error(
        "appliance desktop limit reached: {limit} desktops (max_desktops); try again when a desktop is freed"
    )]
    Capacity { limit: u32 },
    /// zigral-init could not start it, or it did not become ready.
    #[error("desktop unavailable: {0}")]
    Unavailable(String),
    #[error("desktop {0} not found")]
    NotFound(u32),
    #[error("user account is disabled")]
    Disabled,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A desktop's phase as waiters see it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Phase {
    Starting,
    Ready,
    Failed(String),
}

struct Entry {
    rec: DesktopRecord,
    last_active: Instant,
    phase: watch::Sender<Phase>,
    /// A destroy is running for it.
    destroying: bool,
}

impl Entry {
    fn new(rec: DesktopRecord, phase: Phase) -> Entry {
        Entry {
            rec,
            last_active: Instant::now(),
            phase: watch::channel(phase).0,
            destroying: false,
        }
    }
    fn live(&self) -> bool {
        self.rec.state != DesktopState::Destroying
    }
    fn pooled(&self) -> bool {
        self.rec.owner.is_none() && self.live()
    }
}

struct Inner {
    settings: DesktopSettings,
    socket: PathBuf,
    state_dir: PathBuf,
    store: Store,
    events: EventBus,
    executors: Desktops,
    table: Mutex<BTreeMap<u32, Entry>>,
    /// Wakes the pool filler.
    refill: Notify,
    /// Wakes everyone waiting for a destroy to finish.
    destroyed: Notify,
    /// True once the table reflects what zigral-init runs (after the start-up reconcile):
    /// until then no desktop is handed out, so none is spawned twice.
    reconciled: watch::Sender<bool>,
    /// Runs before a desktop's processes stop (its recording ends and leaves its directory).
    before_destroy: std::sync::OnceLock<BeforeDestroy>,
    /// The last CPU reading of each desktop (for `usage.cpu_percent`).
    cpu: usage::CpuSamples,
}

/// What runs before desktop N is destroyed.
pub type BeforeDestroy =
    Arc<dyn Fn(u32) -> futures_util::future::BoxFuture<'static, ()> + Send + Sync>;

/// The desktop manager (cheap to clone).
#[derive(Clone)]
pub struct Vdi {
    inner: Arc<Inner>,
}

/// What [`Vdi::acquire`] decided under the table lock.
enum Plan {
    /// The owner's existing desktop.
    Join(u32, watch::Receiver<Phase>),
    /// A warm-pool desktop, now the owner's.
    Take(u32, DesktopRecord, watch::Receiver<Phase>),
    /// A new desktop to spawn (after evicting a pool desktop to make room, if any).
    Cold(u32, DesktopRecord, Option<u32>),
}

/// One desktop as listed by the API (`memory_bytes`, `millicpus` and `pids` are its limits;
/// what it uses now is in `usage`).
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct DesktopView {
    #[serde(flatten)]
    pub record: DesktopRecord,
    /// Live viewers (WebSocket connections at the proxy); null when not counted.
    pub viewers: Option<u32>,
    /// CPU and memory in use now; absent when zigral-init does not report the desktop.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
    /// CPU time used since it started, microseconds.
    pub cpu_usec: Option<u64>,
    /// Processes.
    pub tasks: Option<u64>,
    /// Its cgroup directory when limits are enforced by cgroup v2, else null.
    pub cgroup: Option<String>,
    /// Seconds since its last action, viewer or agent turn.
    pub idle_secs: u64,
}

/// A starting desktop's record: unowned (pool) when `owner` is `None`, else leased to it.
fn starting_record(
    n: u32,
    owner: Option<&UserRecord>,
    sessions: Vec<String>,
    limits: GroupLimits,
) -> DesktopRecord {
    let now = zigral_store::now_ms();
    DesktopRecord {
        n,
        owner: owner.map(|u| u.id.clone()),
        sessions,
        state: DesktopState::Starting,
        persistent: owner.is_some_and(|u| u.persistent_profile),
        lease: owner.map(|_| new_lease()),
        millicpus: limits.millicpus,
        memory_bytes: limits.memory,
        pids: limits.pids,
        created_at: now,
        assigned_at: owner.map(|_| now),
    }
}

fn new_lease() -> String {
    let mut b = [0u8; 12];
    rand::fill(&mut b);
    hex::encode(b)
}

impl Vdi {
    /// The manager for `settings` (nothing runs until [`Vdi::start`]).
    pub fn new(
        settings: DesktopSettings,
        socket: PathBuf,
        state_dir: PathBuf,
        store: Store,
        events: EventBus,
        executors: Desktops,
    ) -> Vdi {
        Vdi {
            inner: Arc::new(Inner {
                settings,
                socket,
                state_dir,
                store,
                events,
                executors,
                table: Mutex::new(BTreeMap::new()),
                refill: Notify::new(),
                destroyed: Notify::new(),
                reconciled: watch::channel(false).0,
                before_destroy: std::sync::OnceLock::new(),
                cpu: usage::CpuSamples::default(),
            }),
        }
    }

    /// Whether desktops are created and destroyed here (else every session uses the desktop
    /// it names).
    pub fn managed(&self) -> bool {
        self.inner.settings.mode == DesktopMode::Managed
    }

    pub fn settings(&self) -> &DesktopSettings {
        &self.inner.settings
    }

    fn table(&self) -> std::sync::MutexGuard<'_, BTreeMap<u32, Entry>> {
        self.inner
            .table
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn publish(&self, kind: &str, rec: &DesktopRecord, extra: serde_json::Value) {
        let owner = rec.owner.as_deref().unwrap_or(ADMINS_ONLY);
        let mut data = json!({
            "desktop": rec.n,
            "state": rec.state,
            "owner": rec.owner,
            "sessions": rec.sessions,
            "pooled": rec.owner.is_none(),
        });
        if let (Some(d), Some(e)) = (data.as_object_mut(), extra.as_object()) {
            d.extend(e.clone());
        }
        self.inner
            .events
            .publish(Event::new(kind, None, Some(owner), data));
    }

    /// Sets what runs before a desktop is destroyed (once).
    pub fn set_before_destroy(&self, f: BeforeDestroy) {
        let _ = self.inner.before_destroy.set(f);
    }

    /// Marks desktop `n` as used now (an action, a viewer, an agent turn).
    pub fn touch(&self, n: u32) {
        if let Some(e) = self.table().get_mut(&n) {
            e.last_active = Instant::now();
        }
    }

    /// Desktop `n`'s record, if the manager knows it.
    pub fn record(&self, n: u32) -> Option<DesktopRecord> {
        self.table().get(&n).map(|e| e.rec.clone())
    }

    /// Every known desktop's record.
    pub fn records(&self) -> Vec<DesktopRecord> {
        self.table().values().map(|e| e.rec.clone()).collect()
    }

    /// Waits until the start-up reconcile is done (bounded: it gives up on zigral-init after
    /// a while and marks itself done either way).
    async fn reconciled(&self) {
        let mut rx = self.inner.reconciled.subscribe();
        let _ = rx.wait_for(|done| *done).await;
    }

    /// The desktop session `s` may use, creating one for its owner when it has none (its
    /// earlier desktop was destroyed when idle, or the appliance rebooted). Waits until it is
    /// ready. The use counts as activity (idle timeout). In static mode: the session's own
    /// desktop number.
    pub async fn ensure(&self, s: &SessionRecord) -> Result<u32, VdiError> {
        if !self.managed() {
            return Ok(s.desktop);
        }
        self.reconciled().await;
        let rx = {
            let mut t = self.table();
            match t.get_mut(&s.desktop) {
                Some(e)
                    if e.live()
                        && e.rec.owner.as_deref() == Some(s.owner.as_str())
                        && e.rec.sessions.contains(&s.id) =>
                {
                    e.last_active = Instant::now();
                    Some(e.phase.subscribe())
                }
                _ => None,
            }
        };
        if let Some(rx) = rx {
            self.wait(s.desktop, rx).await?;
            return Ok(s.desktop);
        }
        let user = self
            .inner
            .store
            .get_user(&s.owner)?
            .ok_or(VdiError::Disabled)?;
        let n = self.acquire(&user, Some(&s.id)).await?;
        if n != s.desktop {
            self.inner.store.set_session_desktop(&s.id, n).await?;
        }
        Ok(n)
    }

    /// A desktop for `user`'s session `session` (none: an administrator's request): their
    /// existing one (per-user policy or a persistent profile), a warm-pool desktop, or a new
    /// one. Waits until it is ready.
    pub async fn acquire(&self, user: &UserRecord, session: Option<&str>) -> Result<u32, VdiError> {
        if user.disabled {
            return Err(VdiError::Disabled);
        }
        self.reconciled().await;
        if user.persistent_profile {
            self.wait_destroyed(&user.id).await?;
        }
        let cfg = &self.inner.settings;
        let share = cfg.policy == DesktopPolicy::PerUser || user.persistent_profile;
        let limits = effective_limits(cfg, user);
        let plan = {
            let mut t = self.table();
            self.plan(&mut t, user, session, share, limits)?
        };
        match plan {
            Plan::Join(n, rx) => {
                if let Some(rec) = self.record(n) {
                    self.inner.store.put_desktop(rec.clone()).await?;
                    self.publish("desktop.updated", &rec, json!({}));
                }
                self.wait(n, rx).await?;
                Ok(n)
            }
            Plan::Take(n, rec, rx) => {
                self.inner.store.put_desktop(rec.clone()).await?;
                self.write_lease(n, rec.lease.as_deref());
                let pool_limits = self.default_limits();
                if limits != pool_limits
                    && let Err(e) = init::set_limits(&self.inner.socket, n, limits).await
                {
                    tracing::warn!(desktop = n, error = %e, "cannot apply the user's limits");
                }
                tracing::info!(desktop = n, owner = ?rec.owner, "warm desktop handed out");
                self.publish("desktop.assigned", &rec, json!({"from_pool": true}));
                self.inner.refill.notify_one();
                self.wait(n, rx).await?;
                Ok(n)
            }
            Plan::Cold(n, rec, evict) => {
                if let Some(p) = evict {
                    self.destroy(p, "evicted from the warm pool to make room")
                        .await;
                }
                let rx = self.start_spawn(n, rec, limits);
                self.wait(n, rx).await?;
                Ok(n)
            }
        }
    }

    /// Waits until no desktop of `owner` is being destroyed: a persistent profile must not
    /// be opened by a new Chrome while the old one still runs on it.
    async fn wait_destroyed(&self, owner: &str) -> Result<(), VdiError> {
        let deadline = Duration::from_secs(self.inner.settings.ready_timeout_secs);
        loop {
            let notified = self.inner.destroyed.notified();
            let busy = self
                .table()
                .values()
                .any(|e| !e.live() && e.rec.owner.as_deref() == Some(owner));
            if !busy {
                return Ok(());
            }
            if tokio::time::timeout(deadline, notified).await.is_err() {
                return Err(VdiError::Unavailable(
                    "your previous desktop is still being destroyed; try again shortly".into(),
                ));
            }
        }
    }

    fn default_limits(&self) -> GroupLimits {
        let cfg = &self.inner.settings;
        GroupLimits {
            millicpus: Some(cfg.millicpus),
            memory: Some(cfg.memory_mib * 1024 * 1024),
            pids: Some(cfg.pids),
        }
    }

    fn plan(
        &self,
        t: &mut BTreeMap<u32, Entry>,
        user: &UserRecord,
        session: Option<&str>,
        share: bool,
        limits: GroupLimits,
    ) -> Result<Plan, VdiError> {
        let sessions: Vec<String> = session.map(str::to_owned).into_iter().collect();
        let cfg = &self.inner.settings;
        let owner = Some(user.id.as_str());
        if share
            && let Some(e) = t
                .values_mut()
                .find(|e| e.live() && e.rec.owner.as_deref() == owner)
        {
            for s in &sessions {
                if !e.rec.sessions.contains(s) {
                    e.rec.sessions.push(s.clone());
                }
            }
            e.last_active = Instant::now();
            return Ok(Plan::Join(e.rec.n, e.phase.subscribe()));
        }
        let mine = t
            .values()
            .filter(|e| e.live() && e.rec.owner.as_deref() == owner)
            .count();
        let per_user = user.limits.max_desktops.unwrap_or(cfg.max_per_user);
        if mine >= per_user as usize {
            return Err(VdiError::UserQuota {
                user: user.username.clone(),
                limit: per_user,
            });
        }
        let owned = t
            .values()
            .filter(|e| e.live() && e.rec.owner.is_some())
            .count();
        if owned >= cfg.max_desktops as usize {
            return Err(VdiError::Capacity {
                limit: cfg.max_desktops,
            });
        }
        let now = zigral_store::now_ms();
        if !user.persistent_profile {
            // Prefer a ready pool desktop, else one still starting (sooner than a new one).
            let pick = t
                .values()
                .filter(|e| e.pooled() && !e.destroying)
                .min_by_key(|e| (*e.phase.borrow() != Phase::Ready, e.rec.n))
                .map(|e| e.rec.n);
            if let Some(n) = pick
                && let Some(e) = t.get_mut(&n)
            {
                e.rec.owner = Some(user.id.clone());
                e.rec.sessions = sessions;
                e.rec.lease = Some(new_lease());
                e.rec.assigned_at = Some(now);
                e.rec.millicpus = limits.millicpus;
                e.rec.memory_bytes = limits.memory;
                e.rec.pids = limits.pids;
                e.last_active = Instant::now();
                return Ok(Plan::Take(n, e.rec.clone(), e.phase.subscribe()));
            }
        }
        let live = t.values().filter(|e| e.live()).count();
        let evict = if live >= cfg.max_desktops as usize {
            t.values()
                .filter(|e| e.pooled() && !e.destroying)
                .map(|e| e.rec.n)
                .next()
        } else {
            None
        };
        if live >= cfg.max_desktops as usize && evict.is_none() {
            return Err(VdiError::Capacity {
                limit: cfg.max_desktops,
            });
        }
        let n = (0..DESKTOP_NUMBERS)
            .find(|n| !t.contains_key(n))
            .ok_or(VdiError::Capacity {
                limit: cfg.max_desktops,
            })?;
        let rec = starting_record(n, Some(user), sessions, limits);
        t.insert(n, Entry::new(rec.clone(), Phase::Starting));
        Ok(Plan::Cold(n, rec, evict))
    }

    /// Spawns desktop `rec.n` (already in the table as starting) in a task of its own, so a
    /// caller that goes away cancels nothing; the returned receiver sees it become ready.
    fn start_spawn(
        &self,
        n: u32,
        rec: DesktopRecord,
        limits: GroupLimits,
    ) -> watch::Receiver<Phase> {
        let rx = match self.table().get(&n) {
            Some(e) => e.phase.subscribe(),
            None => watch::channel(Phase::Failed("desktop vanished".into())).1,
        };
        let me = self.clone();
        tokio::spawn(async move {
            let t0 = Instant::now();
            let result = me.spawn_and_wait(n, &rec, limits).await;
            me.settle(n, result, t0).await;
        });
        rx
    }

    /// Records how a start ended: ready (record, event), or failed (waiters told, event,
    /// destroyed).
    async fn settle(&self, n: u32, result: Result<(), String>, t0: Instant) {
        let rec = {
            let mut t = self.table();
            t.get_mut(&n).map(|e| {
                match &result {
                    Ok(()) => {
                        e.rec.state = DesktopState::Ready;
                        e.phase.send_replace(Phase::Ready);
                    }
                    Err(why) => {
                        e.phase.send_replace(Phase::Failed(why.clone()));
                    }
                }
                e.rec.clone()
            })
        };
        // Destroyed meanwhile: nothing to record.
        let Some(rec) = rec else { return };
        match result {
            Ok(()) => {
                if let Err(e) = self.inner.store.put_desktop(rec.clone()).await {
                    tracing::error!(desktop = n, error = %e, "cannot record the desktop");
                }
                let ms = t0.elapsed().as_millis() as u64;
                tracing::info!(desktop = n, ready_ms = ms, "desktop ready");
                self.publish("desktop.ready", &rec, json!({"ready_ms": ms}));
            }
            Err(why) => {
                tracing::warn!(desktop = n, error = %why, "desktop failed to start");
                self.publish("desktop.failed", &rec, json!({"error": why}));
                self.destroy(n, "failed to start").await;
            }
        }
    }

    async fn spawn_and_wait(
        &self,
        n: u32,
        rec: &DesktopRecord,
        limits: GroupLimits,
    ) -> Result<(), String> {
        self.inner
            .store
            .put_desktop(rec.clone())
            .await
            .map_err(|e| e.to_string())?;
        self.write_lease(n, rec.lease.as_deref());
        self.publish("desktop.created", rec, json!({}));
        let params = SpawnParams {
            profile_dir: rec
                .persistent
                .then(|| rec.owner.as_deref().map(limits::profile_dir))
                .flatten(),
            limits,
        };
        init::spawn(&self.inner.socket, n, &params)
            .await
            .map_err(|e| e.to_string())?;
        init::wait_ready(
            &self.inner.socket,
            n,
            Duration::from_secs(self.inner.settings.ready_timeout_secs),
        )
        .await
    }

    async fn wait(&self, n: u32, mut rx: watch::Receiver<Phase>) -> Result<(), VdiError> {
        let r = rx
            .wait_for(|p| !matches!(p, Phase::Starting))
            .await
            .map(|p| p.clone());
        match r {
            Ok(Phase::Ready) => Ok(()),
            Ok(Phase::Failed(why)) => Err(VdiError::Unavailable(why)),
            Ok(Phase::Starting) | Err(_) => Err(VdiError::Unavailable(format!(
                "desktop {n} was destroyed while starting"
            ))),
        }
    }

    fn write_lease(&self, n: u32, lease: Option<&str>) {
        if let Err(e) = zigral_token::write_lease(&self.inner.state_dir, n, lease) {
            tracing::error!(desktop = n, error = %e, "cannot write the desktop's lease");
        }
        // A new tenancy (or none) starts with its live view on (see api::live_view).
        if let Err(e) = zigral_token::LiveViewFiles::new(&self.inner.state_dir).set_off(n, false) {
            tracing::error!(desktop = n, error = %e, "cannot turn the desktop's live view on");
        }
    }

    /// Session `session` ended: it leaves its desktop, which is destroyed when no session
    /// uses it any more.
    pub async fn release(&self, session: &str) {
        if !self.managed() {
            return;
        }
        let (emptied, updated) = {
            let mut t = self.table();
            let mut emptied = None;
            let mut updated = None;
            for e in t.values_mut() {
                if let Some(i) = e.rec.sessions.iter().position(|s| s == session) {
                    e.rec.sessions.remove(i);
                    if e.rec.sessions.is_empty() && e.rec.owner.is_some() {
                        emptied = Some(e.rec.n);
                    } else {
                        updated = Some(e.rec.clone());
                    }
                }
            }
            (emptied, updated)
        };
        if let Some(rec) = updated
            && let Err(e) = self.inner.store.put_desktop(rec).await
        {
            tracing::error!(error = %e, "cannot record the desktop");
        }
        if let Some(n) = emptied {
            self.destroy(n, "its last session ended").await;
        }
    }

    /// Destroys every desktop of `user` (disabled or deleted).
    pub async fn release_user(&self, user: &str) {
        let ns: Vec<u32> = self
            .table()
            .values()
            .filter(|e| e.rec.owner.as_deref() == Some(user))
            .map(|e| e.rec.n)
            .collect();
        for n in ns {
            self.destroy(n, "its owner was disabled or deleted").await;
        }
    }

    /// Destroys desktop `n`: its lease ends (tokens stop working), its processes stop, its
    /// files are removed (a persistent profile lives elsewhere and stays), then its record.
    /// Idempotent; a failure leaves it `destroying` for the background task to retry.
    pub async fn destroy(&self, n: u32, reason: &str) -> bool {
        let rec = {
            let mut t = self.table();
            let Some(e) = t.get_mut(&n) else {
                return false;
            };
            if e.destroying {
                return false;
            }
            e.destroying = true;
            e.rec.state = DesktopState::Destroying;
            if *e.phase.borrow() == Phase::Starting {
                e.phase.send_replace(Phase::Failed(format!(
                    "desktop {n} was destroyed: {reason}"
                )));
            }
            e.rec.clone()
        };
        if let Err(e) = self.inner.store.put_desktop(rec.clone()).await {
            tracing::error!(desktop = n, error = %e, "cannot record the desktop");
        }
        self.write_lease(n, None);
        if let Some(f) = self.inner.before_destroy.get() {
            f(n).await;
        }
        self.inner.executors.forget(n);
        self.publish("desktop.destroying", &rec, json!({"reason": reason}));
        // A desktop that is not running (a reboot ended it) still gets its files purged.
        let done = match init::destroy(&self.inner.socket, n).await {
            Ok(_) => true,
            Err(e) => {
                tracing::warn!(desktop = n, error = %e, "destroy failed; will retry");
                false
            }
        };
        if !done {
            if let Some(e) = self.table().get_mut(&n) {
                e.destroying = false;
            }
            return false;
        }
        if let Err(e) = self.inner.store.delete_desktop(n).await {
            tracing::error!(desktop = n, error = %e, "cannot delete the desktop's record");
        }
        self.table().remove(&n);
        tracing::info!(desktop = n, reason, "desktop destroyed");
        self.publish("desktop.destroyed", &rec, json!({"reason": reason}));
        self.inner.refill.notify_one();
        self.inner.destroyed.notify_waiters();
        true
    }

    /// Changes desktop `n`'s limits (cgroup v2 where the kernel has it).
    pub async fn set_limits(&self, n: u32, limits: GroupLimits) -> Result<DesktopRecord, VdiError> {
        if self.record(n).is_none() {
            return Err(VdiError::NotFound(n));
        }
        init::set_limits(&self.inner.socket, n, limits)
            .await
            .map_err(|e| VdiError::Unavailable(e.to_string()))?;
        let rec = {
            let mut t = self.table();
            let e = t.get_mut(&n).ok_or(VdiError::NotFound(n))?;
            if limits.millicpus.is_some() {
                e.rec.millicpus = limits.millicpus;
            }
            if limits.memory.is_some() {
                e.rec.memory_bytes = limits.memory;
            }
            if limits.pids.is_some() {
                e.rec.pids = limits.pids;
            }
            e.rec.clone()
        };
        self.inner.store.put_desktop(rec.clone()).await?;
        self.publish("desktop.limits", &rec, json!({}));
        Ok(rec)
    }

    /// Every desktop with its usage and viewers.
    pub async fn list(&self) -> Vec<DesktopView> {
        let socket = &self.inner.socket;
        let (status, viewers) = tokio::join!(
            init::status(socket),
            background::viewers(&self.inner.settings.proxy_url)
        );
        let mut status = status.ok();
        // A desktop without a recent CPU reading gets one now and another a moment later, so
        // even the first listing shows a current percentage.
        if let Some(s) = &status {
            let readings = self.cpu_readings(s);
            if self.inner.cpu.stale(&readings, Instant::now()) {
                self.inner.cpu.record(&readings, Instant::now());
                tokio::time::sleep(usage::BASELINE_WAIT).await;
                if let Ok(again) = init::status(socket).await {
                    status = Some(again);
                }
            }
        }
        let cpu = status
            .as_ref()
            .map(|s| self.inner.cpu.record(&self.cpu_readings(s), Instant::now()))
            .unwrap_or_default();
        let t = self.table();
        t.values()
            .map(|e| {
                let g = status
                    .as_ref()
                    .and_then(|s| s.group(&init::group_name(e.rec.n)));
                DesktopView {
                    record: e.rec.clone(),
                    viewers: viewers
                        .as_ref()
                        .map(|v| v.get(&e.rec.n).copied().unwrap_or(0)),
                    usage: g.map(|g| Usage {
                        cpu_percent: cpu.get(&e.rec.n).copied(),
                        memory_bytes: g.memory_bytes,
                    }),
                    cpu_usec: g.and_then(|g| g.cpu_usec),
                    tasks: g.and_then(|g| g.tasks),
                    cgroup: g.and_then(|g| g.cgroup.clone()),
                    idle_secs: e.last_active.elapsed().as_secs(),
                }
            })
            .collect()
    }

    /// (desktop, CPU µs used) of the desktops in the table that zigral-init reports.
    fn cpu_readings(&self, status: &zigral_init_protocol::Status) -> Vec<(u32, u64)> {
        self.table()
            .keys()
            .filter_map(|&n| {
                let g = status.group(&init::group_name(n))?;
                Some((n, g.cpu_usec?))
            })
            .collect()
    }
}
