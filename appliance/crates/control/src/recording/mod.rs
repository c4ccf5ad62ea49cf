//! Desktop recordings: start, stop, pause around secrets, chapters, finalize, retention.
//!
//! A recording of desktop N is the zigral-init template instance `recording@N` (service
//! `recorder@N`: ffmpeg x11grab → H.264 fragmented MP4, as the desktop's user; see
//! `config/host.toml`). It belongs to zigral-init, not to this process: a control-plane
//! restart leaves it running and the next control plane adopts it ([`Recordings::adopt`]).
//!
//! - **Chapters.** Every event of a session on that desktop that [`chapters::title`] names
//!   (agent steps, control-lease changes, HITL prompts and answers, secrets typed, undos) is
//!   kept in the recording's redb record with its wall-clock time; at finalize they become the
//!   file's chapters and the sidecar JSON.
//! - **Privacy.** [`Recordings::hold`] freezes ffmpeg (zigral-init `pause`: SIGSTOP, answered
//!   once the process is stopped) before a secret is typed or while a 2FA prompt is open, and
//!   thaws it when the last hold is dropped (after the field lost focus and the page
//!   repainted). No frame exists for that interval; a chapter says it was paused. A recording
//!   that cannot be frozen is ended before the secret is typed. A stop while frozen kills
//!   ffmpeg (never thaws it) and the finalize cuts the file where the freeze began.
//! - **End.** A stop, the desktop's destroy, a cap (`-t`, `-fs`), a full disk (less than
//!   `recordings_min_free_mb` free: stopped cleanly) or ffmpeg's failure end it; the files are
//!   moved out of the desktop's directory, then remuxed ([`files::finalize`]), then the oldest
//!   finished recordings beyond `recordings_max_total_mb` are deleted.

pub mod chapters;
pub mod files;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use serde_json::json;
use zigral_init_protocol::{PauseReply, Request, ServiceState, Status};
use zigral_store::{
    RecordingChapter, RecordingPause, RecordingRecord, RecordingState, StoreError, now_ms,
};

use crate::events::Event;
use crate::state::AppState;
use crate::supervisor::{SupervisorError, request};
use crate::vdi::init::status;

/// The zigral-init template of recordings.
pub const TEMPLATE: &str = "recording";
/// Frames per second: bounds and default.
pub const FPS: (u32, u32, u32) = (1, 30, 10);
/// File size cap, MiB: bounds and default.
pub const MAX_MB: (u32, u32, u32) = (1, 10_000, 500);
/// Duration cap, seconds: bounds and default.
pub const MAX_SECS: (u32, u32, u32) = (1, 24 * 3600, 3600);

/// How often a live recording's ffmpeg and the free space are checked.
const WATCH: Duration = Duration::from_millis(500);
/// Longest wait for ffmpeg's first frame after the spawn.
const FIRST_FRAME: Duration = Duration::from_secs(20);

/// Why a recording request failed.
#[derive(Debug, thiserror::Error)]
pub enum RecordingError {
    #[error("{0}")]
    BadRequest(String),
    #[error("desktop {desktop} is already recording ({id})")]
    AlreadyRecording { desktop: u32, id: String },
    #[error("desktop {0} is not recording")]
    NotRecording(u32),
    #[error("recording {0} not found")]
    NotFound(String),
    #[error(
        "only {free_mb} MiB free in the state directory (recordings need {min_mb} MiB): nothing was recorded"
    )]
    DiskFull { free_mb: u64, min_mb: u64 },
    #[error("the recorder could not start: {0}")]
    Recorder(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What a start asks for (all optional; see [`FPS`], [`MAX_MB`], [`MAX_SECS`]).
#[derive(Debug, Clone, Default, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StartRecording {
    /// Frames per second, 1–30 (default 10).
    pub fps: Option<u32>,
    /// The file stops growing at this size, MiB, 1–10000 (default 500; at most the
    /// appliance's total `recordings_max_total_mb`).
    pub max_mb: Option<u32>,
    /// The recording stops by itself after this many seconds, 1–86400 (default 3600).
    pub max_secs: Option<u32>,
}

fn bounded(v: Option<u32>, (lo, hi, def): (u32, u32, u32), what: &str) -> Result<u32, String> {
    let v = v.unwrap_or(def);
    if (lo..=hi).contains(&v) {
        Ok(v)
    } else {
        Err(format!("{what} must be between {lo} and {hi}, got {v}"))
    }
}

/// A live recording of one desktop.
struct Live {
    id: String,
    owner: String,
    /// Open holds (privacy) by number, with their reasons.
    holds: BTreeMap<u64, String>,
    next_hold: u64,
    /// Frozen since (wall clock, ms).
    paused_since: Option<u64>,
    /// Serialises freeze and thaw requests.
    ops: Arc<tokio::sync::Mutex<()>>,
}

struct Inner {
    state_dir: PathBuf,
    dir: PathBuf,
    socket: PathBuf,
    max_total_bytes: u64,
    min_free_mb: u64,
    live: Mutex<HashMap<u32, Live>>,
    listening: OnceLock<()>,
    /// Session id → desktop, for placing events.
    sessions: Mutex<HashMap<String, u32>>,
}

/// The control plane's recordings. Cheap to clone.
#[derive(Clone)]
pub struct Recordings {
    inner: Arc<Inner>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// `recorder@N`, the ffmpeg service of desktop N's recording.
pub fn service_name(n: u32) -> String {
    format!("recorder@{n}")
}

impl Recordings {
    pub fn new(config: &crate::config::Config) -> Recordings {
        Recordings {
            inner: Arc::new(Inner {
                state_dir: config.state_dir.clone(),
                dir: config.state_dir.join("recordings"),
                socket: config.init_socket.clone(),
                max_total_bytes: config.recordings_max_total_mb.saturating_mul(1024 * 1024),
                min_free_mb: config.recordings_min_free_mb,
                live: Mutex::new(HashMap::new()),
                listening: OnceLock::new(),
                sessions: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// The directory of finished recordings.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// The id of desktop `n`'s live recording.
    pub fn current(&self, n: u32) -> Option<String> {
        lock(&self.inner.live).get(&n).map(|l| l.id.clone())
    }

    /// Whether desktop `n`'s recording is frozen now.
    pub fn paused(&self, n: u32) -> bool {
        lock(&self.inner.live)
            .get(&n)
            .is_some_and(|l| l.paused_since.is_some())
    }

    /// Starts recording desktop `n` for `owner`; answers once the first frame was captured.
    pub async fn start(
        &self,
        st: &AppState,
        n: u32,
        owner: &str,
        req: &StartRecording,
    ) -> Result<RecordingRecord, RecordingError> {
        let fps = bounded(req.fps, FPS, "fps").map_err(RecordingError::BadRequest)?;
        let cap_mb = u32::try_from(self.inner.max_total_bytes / (1024 * 1024)).unwrap_or(u32::MAX);
        let max_mb = bounded(
            req.max_mb,
            (MAX_MB.0, MAX_MB.1.min(cap_mb), MAX_MB.2.min(cap_mb)),
            "max_mb",
        )
        .map_err(RecordingError::BadRequest)?;
        let max_secs =
            bounded(req.max_secs, MAX_SECS, "max_secs").map_err(RecordingError::BadRequest)?;
        self.listen(st);
        let free = files::free_mb(&self.inner.state_dir).unwrap_or(u64::MAX);
        if free < self.inner.min_free_mb {
            return Err(RecordingError::DiskFull {
                free_mb: free,
                min_mb: self.inner.min_free_mb,
            });
        }
        let started_at = now_ms();
        let id = format!("rec-{n}-{started_at}-{:04x}", rand::random::<u16>());
        {
            let mut live = lock(&self.inner.live);
            if let Some(l) = live.get(&n) {
                return Err(RecordingError::AlreadyRecording {
                    desktop: n,
                    id: l.id.clone(),
                });
            }
            live.insert(
                n,
                Live {
                    id: id.clone(),
                    owner: owner.to_owned(),
                    holds: BTreeMap::new(),
                    next_hold: 0,
                    paused_since: None,
                    ops: Arc::new(tokio::sync::Mutex::new(())),
                },
            );
        }
        let rec = RecordingRecord {
            id: id.clone(),
            desktop: n,
            owner: owner.to_owned(),
            state: RecordingState::Recording,
            fps,
            max_mb,
            max_secs,
            started_at,
            first_frame_ms: None,
            stopped_at: None,
            finished_at: None,
            stop_reason: None,
            size_bytes: None,
            duration_ms: None,
            chapters: Vec::new(),
            pauses: Vec::new(),
            error: None,
        };
        let fail_id = id.clone();
        let fail = |why: String| async move {
            lock(&self.inner.live).remove(&n);
            let _ = destroy(&self.inner.socket, n).await;
            files::remove_all(&self.inner.state_dir, &self.inner.dir, n, &fail_id);
            let _ = st.store().delete_recording(&fail_id).await;
            RecordingError::Recorder(why)
        };
        if let Err(e) = st.store().put_recording(rec.clone()).await {
            lock(&self.inner.live).remove(&n);
            return Err(e.into());
        }
        let params: BTreeMap<String, String> = [
            ("id", id.clone()),
            ("fps", fps.to_string()),
            ("max_mb", max_mb.to_string()),
            ("max_secs", max_secs.to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        let spawn = Request::Spawn {
            template: TEMPLATE.into(),
            instance: n,
            params,
        };
        if let Err(e) =
            request::<serde_json::Value>(&self.inner.socket, &spawn, Duration::from_secs(30)).await
        {
            return Err(fail(e.to_string()).await);
        }
        let first = match self.first_frame(n, &id).await {
            Ok(t) => t,
            Err(why) => return Err(fail(why).await),
        };
        let rec = st
            .store()
            .update_recording(&id, move |r| r.first_frame_ms = Some(first))
            .await?;
        self.spawn_watch(st, n, &id);
        st.publish(Event::new(
            "recording.started",
            None,
            Some(owner),
            json!({"desktop": n, "id": id, "fps": fps, "max_mb": max_mb, "max_secs": max_secs}),
        ));
        Ok(rec)
    }

    /// Waits for ffmpeg's report to name the first frame's time (or for ffmpeg to fail).
    async fn first_frame(&self, n: u32, id: &str) -> Result<u64, String> {
        let report = files::raw_path(&self.inner.state_dir, n, id, "log");
        let deadline = tokio::time::Instant::now() + FIRST_FRAME;
        let mut checked = tokio::time::Instant::now();
        loop {
            if let Some(t) = files::first_frame(&report) {
                return Ok(t);
            }
            if checked.elapsed() >= Duration::from_millis(500) {
                checked = tokio::time::Instant::now();
                if let Ok(s) = status(&self.inner.socket).await
                    && let Some(Ended(why)) = ended(&s, n)
                {
                    return Err(format!("ffmpeg ended before its first frame: {why}"));
                }
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(format!("no frame within {FIRST_FRAME:?}"));
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Stops desktop `n`'s recording: ffmpeg ends (killed if frozen), its files leave the
    /// desktop's directory, and the finalize runs in the background (the record says
    /// `finalizing`, then `ready`).
    pub async fn stop(
        &self,
        st: &AppState,
        n: u32,
        reason: &str,
    ) -> Result<RecordingRecord, RecordingError> {
        let (id, ops) = lock(&self.inner.live)
            .get(&n)
            .map(|l| (l.id.clone(), l.ops.clone()))
            .ok_or(RecordingError::NotRecording(n))?;
        // A freeze or thaw in flight finishes first (a thaw whose end is already recorded
        // must not meet a stop that kills the still-frozen ffmpeg).
        let _ops = ops.lock().await;
        self.end(st, n, &id, reason, None)
            .await
            .ok_or(RecordingError::NotRecording(n))
    }

    /// Ends recording `id` of desktop `n` (whoever removes it from the live table does the
    /// rest; `None` if someone else did). The remux runs in a spawned task.
    async fn end(
        &self,
        st: &AppState,
        n: u32,
        id: &str,
        reason: &str,
        error: Option<String>,
    ) -> Option<RecordingRecord> {
        {
            let mut live = lock(&self.inner.live);
            match live.get(&n) {
                Some(l) if l.id == id => {
                    live.remove(&n);
                }
                _ => return None,
            }
        }
        if let Err(e) = destroy(&self.inner.socket, n).await {
            tracing::warn!(desktop = n, error = %e, "cannot stop the recorder");
        }
        let stopped = now_ms();
        let collected = files::collect(&self.inner.state_dir, &self.inner.dir, n, id);
        let (reason_s, error_c) = (reason.to_owned(), error.clone());
        let rec = st
            .store()
            .update_recording(id, move |r| {
                r.state = RecordingState::Finalizing;
                r.stopped_at = Some(stopped);
                r.stop_reason = Some(reason_s.clone());
                if error_c.is_some() {
                    r.error = error_c.clone();
                }
            })
            .await;
        let rec = match rec {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(recording = id, error = %e, "cannot record the stop");
                return None;
            }
        };
        if let Err(e) = collected {
            tracing::error!(recording = id, error = %e, "cannot collect the recording");
        }
        st.publish(Event::new(
            "recording.stopped",
            None,
            Some(&rec.owner),
            json!({"desktop": n, "id": id, "reason": reason, "error": error}),
        ));
        let (me, st2, id2) = (self.clone(), st.clone(), id.to_owned());
        tokio::spawn(async move { me.finish(&st2, &id2).await });
        Some(rec)
    }

    /// The finalize of a collected recording, then retention.
    async fn finish(&self, st: &AppState, id: &str) {
        let Ok(Some(rec)) = st.store().get_recording(id) else {
            return;
        };
        let report = files::own_path(&self.inner.dir, id, "log");
        let first = rec.first_frame_ms.or_else(|| files::first_frame(&report));
        let end = rec.stopped_at.unwrap_or_else(now_ms);
        let result = match first {
            Some(first) => files::finalize(&self.inner.dir, &rec, first, end).await,
            None => Err("no frame was captured".to_owned()),
        };
        // ffmpeg's report stays beside the file (`<id>.log`): why a recording ended or failed.
        let done = now_ms();
        let updated = match result {
            Ok(f) => {
                let note = f.note.clone();
                st.store()
                    .update_recording(id, move |r| {
                        r.state = RecordingState::Ready;
                        r.finished_at = Some(done);
                        r.size_bytes = Some(f.size_bytes);
                        r.duration_ms = Some(f.duration_ms);
                        if let Some(n) = &note {
                            r.error = Some(n.clone());
                        }
                    })
                    .await
            }
            Err(why) => {
                files::remove_all(&self.inner.state_dir, &self.inner.dir, rec.desktop, id);
                st.store()
                    .update_recording(id, move |r| {
                        r.state = RecordingState::Failed;
                        r.finished_at = Some(done);
                        r.error = Some(why.clone());
                    })
                    .await
            }
        };
        match updated {
            Ok(r) => st.publish(Event::new(
                "recording.ready",
                None,
                Some(&r.owner),
                json!({"desktop": r.desktop, "id": r.id, "state": r.state,
                       "size_bytes": r.size_bytes, "duration_ms": r.duration_ms,
                       "error": r.error}),
            )),
            Err(e) => tracing::error!(recording = id, error = %e, "cannot record the finalize"),
        }
        self.enforce_retention(st).await;
    }

    /// Deletes the oldest finished recordings beyond the total size cap.
    async fn enforce_retention(&self, st: &AppState) {
        let Ok(all) = st.store().list_recordings() else {
            return;
        };
        let finished: Vec<RecordingRecord> = all
            .into_iter()
            .filter(|r| r.state == RecordingState::Ready)
            .collect();
        for id in files::over_cap(&finished, self.inner.max_total_bytes) {
            if let Some(r) = finished.iter().find(|r| r.id == id) {
                tracing::info!(recording = %id, "deleting the oldest recording (size cap)");
                let _ = self.delete(st, r, "retention").await;
            }
        }
    }

    /// Deletes a finished recording's files and record.
    pub async fn delete(
        &self,
        st: &AppState,
        rec: &RecordingRecord,
        by: &str,
    ) -> Result<(), RecordingError> {
        if matches!(
            rec.state,
            RecordingState::Recording | RecordingState::Finalizing
        ) {
            return Err(RecordingError::AlreadyRecording {
                desktop: rec.desktop,
                id: rec.id.clone(),
            });
        }
        files::remove_all(&self.inner.state_dir, &self.inner.dir, rec.desktop, &rec.id);
        st.store().delete_recording(&rec.id).await?;
        st.publish(Event::new(
            "recording.deleted",
            None,
            Some(&rec.owner),
            json!({"desktop": rec.desktop, "id": rec.id, "by": by}),
        ));
        Ok(())
    }

    /// Freezes desktop `n`'s recording until the returned hold (and every other) is dropped;
    /// answers once ffmpeg is stopped. `None` when nothing records `n`. A recording that cannot
    /// be frozen is ended first.
    pub async fn hold(&self, st: &AppState, n: u32, reason: &str) -> Option<Hold> {
        let (ops, id) = {
            let live = lock(&self.inner.live);
            let l = live.get(&n)?;
            (l.ops.clone(), l.id.clone())
        };
        let guard = ops.lock().await;
        let (hold, freeze) = {
            let mut live = lock(&self.inner.live);
            let l = live.get_mut(&n).filter(|l| l.id == id)?;
            let h = l.next_hold;
            l.next_hold += 1;
            l.holds.insert(h, reason.to_owned());
            (h, l.paused_since.is_none())
        };
        if freeze {
            let req = Request::Pause {
                service: service_name(n),
            };
            match request::<PauseReply>(&self.inner.socket, &req, Duration::from_secs(5)).await {
                Ok(_) => {
                    let at = now_ms();
                    if let Some(l) = lock(&self.inner.live).get_mut(&n) {
                        l.paused_since = Some(at);
                    }
                    let why = reason.to_owned();
                    let _ = st
                        .store()
                        .update_recording(&id, move |r| {
                            r.pauses.push(RecordingPause {
                                from_ms: at,
                                to_ms: None,
                                reason: why.clone(),
                            })
                        })
                        .await;
                    self.event(st, n, &id, "recording.paused", json!({"reason": reason}));
                }
                Err(e) => {
                    drop(guard);
                    tracing::error!(desktop = n, error = %e, "cannot freeze the recorder: ending the recording");
                    self.end(
                        st,
                        n,
                        &id,
                        "pause_failed",
                        Some(format!(
                            "the recorder could not be paused for a secret: {e}"
                        )),
                    )
                    .await;
                    return None;
                }
            }
        }
        drop(guard);
        Some(Hold {
            rec: self.clone(),
            st: st.clone(),
            n,
            id,
            hold,
        })
    }

    async fn release(&self, st: &AppState, n: u32, id: &str, hold: u64) {
        let Some(ops) = lock(&self.inner.live)
            .get(&n)
            .filter(|l| l.id == id)
            .map(|l| l.ops.clone())
        else {
            return;
        };
        let _guard = ops.lock().await;
        let thaw = {
            let mut live = lock(&self.inner.live);
            let Some(l) = live.get_mut(&n).filter(|l| l.id == id) else {
                return;
            };
            l.holds.remove(&hold);
            l.holds.is_empty() && l.paused_since.is_some()
        };
        if !thaw {
            return;
        }
        self.thaw(st, n, id).await;
    }

    /// Thaws a frozen recording: the pause's end is written before ffmpeg runs again.
    async fn thaw(&self, st: &AppState, n: u32, id: &str) {
        let at = now_ms();
        let _ = st
            .store()
            .update_recording(id, move |r| {
                if let Some(p) = r.pauses.iter_mut().rev().find(|p| p.to_ms.is_none()) {
                    p.to_ms = Some(at);
                }
            })
            .await;
        let req = Request::Resume {
            service: service_name(n),
        };
        match request::<PauseReply>(&self.inner.socket, &req, Duration::from_secs(5)).await {
            Ok(_) => {
                if let Some(l) = lock(&self.inner.live).get_mut(&n) {
                    l.paused_since = None;
                }
                self.event(st, n, id, "recording.resumed", json!({}));
            }
            Err(e) => {
                tracing::error!(desktop = n, error = %e, "cannot resume the recorder");
                self.end(
                    st,
                    n,
                    id,
                    "resume_failed",
                    Some(format!("the recorder could not be resumed: {e}")),
                )
                .await;
            }
        }
    }

    fn event(&self, st: &AppState, n: u32, id: &str, kind: &str, mut data: serde_json::Value) {
        let owner = lock(&self.inner.live).get(&n).map(|l| l.owner.clone());
        if let Some(o) = data.as_object_mut() {
            o.insert("desktop".into(), n.into());
            o.insert("id".into(), id.into());
        }
        st.publish(Event::new(kind, None, owner.as_deref(), data));
    }

    /// Watches a live recording: ends it when ffmpeg ends by itself, or before the disk fills.
    fn spawn_watch(&self, st: &AppState, n: u32, id: &str) {
        let (me, st, id) = (self.clone(), st.clone(), id.to_owned());
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(WATCH).await;
                if me.current(n).as_deref() != Some(id.as_str()) {
                    return;
                }
                if let Some(free) = me.free_mb(n, &id)
                    && free < me.inner.min_free_mb
                {
                    me.end(
                        &st,
                        n,
                        &id,
                        "disk_full",
                        Some(format!(
                            "the disk is nearly full ({free} MiB free, {} MiB needed): the \
                             recording stopped and keeps what was written",
                            me.inner.min_free_mb
                        )),
                    )
                    .await;
                    return;
                }
                let Ok(s) = status(&me.inner.socket).await else {
                    continue;
                };
                if let Some(Ended(why)) = ended(&s, n) {
                    let (reason, error) = me.classify(&st, n, &id, &why);
                    me.end(&st, n, &id, &reason, error).await;
                    return;
                }
            }
        });
    }

    /// Free space where the recording is written and where it will be kept, MiB (the
    /// smaller; they are one filesystem unless the desktops' directories are mounted apart).
    fn free_mb(&self, n: u32, id: &str) -> Option<u64> {
        let raw = files::raw_path(&self.inner.state_dir, n, id, "mp4");
        let here = raw.parent().and_then(files::free_mb);
        let kept = files::free_mb(&self.inner.state_dir);
        match (here, kept) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Why ffmpeg ended by itself: a cap, a full disk, the desktop's end, or a failure.
    fn classify(
        &self,
        st: &AppState,
        n: u32,
        id: &str,
        last_exit: &str,
    ) -> (String, Option<String>) {
        let rec = st.store().get_recording(id).ok().flatten();
        let report = files::raw_path(&self.inner.state_dir, n, id, "log");
        let log = std::fs::read_to_string(&report).unwrap_or_default();
        if log.contains("No space left on device") || self.free_mb(n, id).is_some_and(|f| f < 2) {
            return (
                "disk_full".into(),
                Some("the disk filled up: the recording keeps what was written".into()),
            );
        }
        if last_exit == "exit 0" {
            if let Some(r) = rec {
                let size = std::fs::metadata(files::raw_path(&self.inner.state_dir, n, id, "mp4"))
                    .map(|m| m.len())
                    .unwrap_or(0);
                if size >= u64::from(r.max_mb) * 1024 * 1024 * 9 / 10 {
                    return ("size_cap".into(), None);
                }
                return ("duration_cap".into(), None);
            }
            return ("ended".into(), None);
        }
        let desktop_dir = self.inner.state_dir.join("desktops").join(n.to_string());
        if !desktop_dir.exists() || log.contains("Can't open display") {
            return ("desktop_gone".into(), Some("the desktop went away".into()));
        }
        (
            "recorder_failed".into(),
            Some(format!("ffmpeg ended: {last_exit}")),
        )
    }

    /// Appends a chapter to desktop `n`'s live recording.
    async fn chapter(&self, st: &AppState, n: u32, kind: &str, title: String, at: u64) {
        let Some(id) = self.current(n) else {
            return;
        };
        let kind = kind.to_owned();
        let _ = st
            .store()
            .update_recording(&id, move |r| {
                if r.chapters.len() < chapters::MAX_CHAPTERS {
                    r.chapters.push(RecordingChapter {
                        unix_ms: at,
                        kind: kind.clone(),
                        title: title.clone(),
                    });
                }
            })
            .await;
    }

    /// Starts (once) the task that turns events into chapters of live recordings.
    fn listen(&self, st: &AppState) {
        if self.inner.listening.set(()).is_err() {
            return;
        }
        let mut rx = st.events().subscribe();
        let (me, st) = (self.clone(), st.clone());
        tokio::spawn(async move {
            loop {
                let ev = match rx.recv().await {
                    Ok(ev) => ev,
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(k)) => {
                        let live: Vec<u32> = lock(&me.inner.live).keys().copied().collect();
                        for n in live {
                            me.chapter(&st, n, "lagged", format!("{k} events missed"), now_ms())
                                .await;
                        }
                        continue;
                    }
                    Err(_) => return,
                };
                if lock(&me.inner.live).is_empty() {
                    continue;
                }
                let Some(title) = chapters::title(&ev) else {
                    continue;
                };
                if let Some(n) = me.desktop_of(&st, &ev) {
                    me.chapter(&st, n, &ev.kind, title, ev.timestamp).await;
                }
            }
        });
    }

    fn desktop_of(&self, st: &AppState, ev: &Event) -> Option<u32> {
        if let Some(d) = ev.data.get("desktop").and_then(serde_json::Value::as_u64) {
            return u32::try_from(d).ok();
        }
        let sid = ev.session_id.as_deref()?;
        if let Some(n) = lock(&self.inner.sessions).get(sid) {
            return Some(*n);
        }
        let s = st.store().get_session(sid).ok().flatten()?;
        let mut m = lock(&self.inner.sessions);
        if m.len() > 10_000 {
            m.clear();
        }
        m.insert(sid.to_owned(), s.desktop);
        Some(s.desktop)
    }

    /// At start: adopts recordings whose ffmpeg still runs (a frozen one is thawed once no
    /// editable field has focus), ends the others, redoes unfinished finalizes.
    pub async fn adopt(&self, st: &AppState) {
        let Ok(all) = st.store().list_recordings() else {
            return;
        };
        let status = status(&self.inner.socket).await.ok();
        for rec in all {
            match rec.state {
                RecordingState::Recording => {
                    let running = status
                        .as_ref()
                        .is_some_and(|s| ended(s, rec.desktop).is_none() && has(s, rec.desktop));
                    let open = rec.pauses.iter().rev().find(|p| p.to_ms.is_none());
                    lock(&self.inner.live).insert(
                        rec.desktop,
                        Live {
                            id: rec.id.clone(),
                            owner: rec.owner.clone(),
                            holds: BTreeMap::new(),
                            next_hold: 0,
                            paused_since: open.map(|p| p.from_ms),
                            ops: Arc::new(tokio::sync::Mutex::new(())),
                        },
                    );
                    if running {
                        tracing::info!(recording = %rec.id, desktop = rec.desktop, "adopted a running recording");
                        self.listen(st);
                        self.spawn_watch(st, rec.desktop, &rec.id);
                        if open.is_some() {
                            self.thaw_when_safe(st, rec.desktop, &rec.id);
                        }
                    } else {
                        self.end(
                            st,
                            rec.desktop,
                            &rec.id,
                            "ended",
                            Some("the recorder ended while the control plane was down".into()),
                        )
                        .await;
                    }
                }
                RecordingState::Finalizing => {
                    let (me, st2, id) = (self.clone(), st.clone(), rec.id.clone());
                    tokio::spawn(async move { me.finish(&st2, &id).await });
                }
                _ => {}
            }
        }
    }

    /// A recording adopted while frozen: the secret's state was this process's memory, so it
    /// thaws only once the desktop's browser has no editable field focused.
    fn thaw_when_safe(&self, st: &AppState, n: u32, id: &str) {
        let (me, st, id) = (self.clone(), st.clone(), id.to_owned());
        tokio::spawn(async move {
            loop {
                if me.current(n).as_deref() != Some(id.as_str()) {
                    return;
                }
                if let Ok(exec) = st.desktops().executor(n).await
                    && let Some(b) = exec.browser()
                    && let Ok(None) = b.focused_field().await
                {
                    me.thaw(&st, n, &id).await;
                    return;
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        });
    }
}

/// A reason desktop N's recording stays frozen; dropping it may thaw the recording.
pub struct Hold {
    rec: Recordings,
    st: AppState,
    n: u32,
    id: String,
    hold: u64,
}

impl Drop for Hold {
    fn drop(&mut self) {
        let (rec, st, n, id, hold) = (
            self.rec.clone(),
            self.st.clone(),
            self.n,
            std::mem::take(&mut self.id),
            self.hold,
        );
        tokio::spawn(async move { rec.release(&st, n, &id, hold).await });
    }
}

/// ffmpeg of desktop `n` has ended: its last exit.
struct Ended(String);

fn has(s: &Status, n: u32) -> bool {
    let name = service_name(n);
    s.services.iter().any(|x| x.name == name)
}

fn ended(s: &Status, n: u32) -> Option<Ended> {
    let name = service_name(n);
    let Some(x) = s.services.iter().find(|x| x.name == name) else {
        return Some(Ended("the recorder is gone".into()));
    };
    matches!(x.state, ServiceState::Stopped | ServiceState::Failed).then(|| {
        Ended(
            x.last_exit
                .clone()
                .unwrap_or_else(|| x.state.as_str().to_owned()),
        )
    })
}

async fn destroy(socket: &Path, n: u32) -> Result<serde_json::Value, SupervisorError> {
    let req = Request::Destroy {
        template: TEMPLATE.into(),
        instance: n,
        purge: false,
    };
    request(socket, &req, Duration::from_secs(30)).await
}
