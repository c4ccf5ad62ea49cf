//! Signed A/B updates, the control plane's side (issue 16).
//!
//! The control plane never touches a slot: it checks a bundle (`zigral_update::verify` against
//! the `update_key` setting, [`zigral_update::check_newer`] against the running slot's release
//! file), moves it into `<state>/updates/ready/<id>.tar.zst` (+ `.minisig`) and asks zigral-init
//! to spawn the `updater` template's instance 0 with `{id, force}`; the updater (root) checks
//! again, switches slots, runs the health gate and writes `<state>/updates/status.json`.
//!
//! Bundles arrive by upload ([`api`], `POST /api/v1/admin/update`) or by hand in
//! `<state>/updates/` ([`watch`]); both go through [`apply`], so they get the same checks and
//! the same refusals. While `<state>/updates/gate` exists, [`pause_writes`] refuses every
//! write request (503 + `Retry-After`), so a rollback that restores the pre-update database
//! loses no acknowledged write.

pub mod api;
pub mod watch;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;
use zigral_init_protocol::{Destroyed, Request as InitRequest, ServiceState, Spawned};
use zigral_update::{
    BUNDLE_EXT, GATE_FILE, READY_DIR, Release, SIG_EXT, STATUS_FILE, UPDATES_DIR, UpdateError,
    UpdateStatus,
};

use crate::config::Config;
use crate::error::{ApiError, ErrorBody};
use crate::events::{ADMINS_ONLY, Event};
use crate::state::AppState;
use crate::supervisor::SupervisorError;

/// zigral-init's template that applies a bundle (spawned as instance [`INSTANCE`]).
pub const TEMPLATE: &str = "updater";
/// The updater's instance number.
pub const INSTANCE: u32 = 0;
/// Store config key remembering the last update whose outcome was audited.
pub const LAST_AUDITED_KEY: &str = "update.last_audited";
/// `Retry-After` of a write refused during the health gate, seconds.
pub const GATE_RETRY_SECS: u64 = 5;
/// Longest accepted signature file, bytes (a minisig is about 300).
pub const MAX_SIG_BYTES: usize = 8 * 1024;

/// How long one exchange with zigral-init may take (a destroy waits for processes to end).
const EXCHANGE: Duration = Duration::from_secs(30);

/// One bundle at a time is checked and handed over (uploads and dropped bundles alike).
static APPLYING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// `<state>/updates`.
pub fn updates_dir(cfg: &Config) -> PathBuf {
    cfg.state_dir.join(UPDATES_DIR)
}

/// `<state>/updates/gate`.
pub fn gate_file(cfg: &Config) -> PathBuf {
    updates_dir(cfg).join(GATE_FILE)
}

/// What runs, as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ReleaseInfo {
    /// `MAJOR.MINOR.PATCH`.
    pub version: String,
    /// Build serial (orders builds of one version); 0 when no release file says.
    pub serial: u64,
    /// Store schema version.
    pub schema: u64,
    /// Source revision, or `unknown`.
    pub git: String,
}

impl From<Release> for ReleaseInfo {
    fn from(r: Release) -> Self {
        ReleaseInfo {
            version: r.version,
            serial: r.serial,
            schema: r.schema,
            git: r.git,
        }
    }
}

/// This build's release: what runs when no release file says otherwise.
pub fn build_release() -> Release {
    Release {
        version: env!("CARGO_PKG_VERSION").to_owned(),
        serial: 0,
        schema: zigral_store::SCHEMA_VERSION,
        git: "unknown".into(),
    }
}

/// The running slot's release: the `release_file` setting, else (unset, absent or unreadable:
/// logged) [`build_release`].
pub fn running_release(cfg: &Config) -> Release {
    let Some(p) = &cfg.release_file else {
        return build_release();
    };
    match std::fs::read_to_string(p) {
        Ok(text) => Release::parse(&text).unwrap_or_else(|e| {
            tracing::warn!(file = %p.display(), error = %e, "release file unreadable; using this build's version");
            build_release()
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => build_release(),
        Err(e) => {
            tracing::warn!(file = %p.display(), error = %e, "release file unreadable; using this build's version");
            build_release()
        }
    }
}

/// The updater's `status.json`; `None` when there is none (or it cannot be parsed: logged).
pub fn read_status(cfg: &Config) -> Option<UpdateStatus> {
    let p = updates_dir(cfg).join(STATUS_FILE);
    let text = match std::fs::read_to_string(&p) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => {
            tracing::warn!(file = %p.display(), error = %e, "cannot read the update status");
            return None;
        }
    };
    serde_json::from_str(&text)
        .inspect_err(|e| tracing::warn!(file = %p.display(), error = %e, "bad update status"))
        .ok()
}

/// The update key's text, or why updates are unavailable.
fn key_text(cfg: &Config) -> Result<String, Refusal> {
    let Some(p) = &cfg.update_key else {
        return Err(Refusal::Unavailable(
            "updates are unavailable: no update key is configured (setting update_key, \
             --update-key or ZIGRAL_UPDATE_KEY)"
                .into(),
        ));
    };
    let text = std::fs::read_to_string(p).map_err(|e| {
        Refusal::Unavailable(format!(
            "updates are unavailable: the update key {} cannot be read: {e}",
            p.display()
        ))
    })?;
    zigral_update::public_key_id(&text).map_err(|e| {
        Refusal::Unavailable(format!(
            "updates are unavailable: the update key {} is unusable: {e}",
            p.display()
        ))
    })?;
    Ok(text)
}

/// Whether an update key is configured and usable.
pub fn available(cfg: &Config) -> bool {
    key_text(cfg).is_ok()
}

/// Why a bundle was not handed to the updater. Nothing changed in every case.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    /// The signature file is not a minisign signature, or does not match the bundle.
    #[error("{0}")]
    BadSignature(String),
    /// Signed by a key this appliance does not trust.
    #[error("{0}")]
    WrongKey(String),
    /// The signature's trusted comment is not a bundle manifest.
    #[error("{0}")]
    BadManifest(String),
    /// Not newer than what runs (and not forced).
    #[error("{0}")]
    NotNewer(String),
    /// No key configured, or zigral-init cannot apply updates.
    #[error("{0}")]
    Unavailable(String),
    /// An update is being applied.
    #[error("{0}")]
    InProgress(String),
    /// A file could not be read or moved.
    #[error("{0}")]
    Internal(String),
}

impl Refusal {
    /// The stable code of the API error.
    pub fn code(&self) -> &'static str {
        match self {
            Refusal::BadSignature(_) => "bad_signature",
            Refusal::WrongKey(_) => "wrong_key",
            Refusal::BadManifest(_) => "bad_manifest",
            Refusal::NotNewer(_) => "not_newer",
            Refusal::Unavailable(_) => "updates_unavailable",
            Refusal::InProgress(_) => "update_in_progress",
            Refusal::Internal(_) => "internal",
        }
    }

    fn status(&self) -> StatusCode {
        match self {
            Refusal::BadSignature(_) | Refusal::WrongKey(_) | Refusal::BadManifest(_) => {
                StatusCode::BAD_REQUEST
            }
            Refusal::NotNewer(_) | Refusal::Unavailable(_) | Refusal::InProgress(_) => {
                StatusCode::CONFLICT
            }
            Refusal::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl From<UpdateError> for Refusal {
    fn from(e: UpdateError) -> Self {
        let m = format!("the bundle was refused: {e}");
        match e {
            UpdateError::BadSignatureFile(_) | UpdateError::SignatureMismatch => {
                Refusal::BadSignature(m)
            }
            UpdateError::WrongKey { .. } => Refusal::WrongKey(m),
            UpdateError::BadManifest(_) => Refusal::BadManifest(m),
            UpdateError::NotNewer { .. } => Refusal::NotNewer(m),
            UpdateError::BadKey(_) => Refusal::Unavailable(format!(
                "updates are unavailable: the update key is unusable: {e}"
            )),
            UpdateError::BadRelease(_) | UpdateError::Io(_) => {
                Refusal::Internal(format!("cannot check the bundle: {e}"))
            }
        }
    }
}

impl From<Refusal> for ApiError {
    fn from(r: Refusal) -> Self {
        match r {
            Refusal::Internal(m) => ApiError::internal(m),
            r => ApiError::new(r.status(), r.code(), r.to_string()),
        }
    }
}

/// A bundle to check and hand over.
#[derive(Debug)]
pub struct Offer {
    /// Where the bundle is now (moved into `ready/` when accepted, left there when refused).
    pub bundle: PathBuf,
    /// The signature file's text.
    pub sig_text: String,
    pub force: bool,
    /// The update's id (`u<unix secs>-<4 hex>`), its file name in `ready/`.
    pub id: String,
}

/// An accepted bundle.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Accepted {
    /// The update's id (`status.json`'s `id` once the updater runs).
    pub id: String,
    /// The bundle's version.
    pub version: String,
    /// The running version it replaces.
    pub from_version: String,
    /// Installed even if not newer.
    pub forced: bool,
}

/// A new update id: `u<unix secs>-<4 hex>`.
pub fn new_id() -> String {
    let mut b = [0u8; 2];
    rand::rng().fill_bytes(&mut b);
    format!("u{}-{}", zigral_store::now_ms() / 1000, hex::encode(b))
}

fn group() -> String {
    format!("{TEMPLATE}@{INSTANCE}")
}

/// Whether zigral-init runs an updater (a service of `updater@0` neither stopped nor failed).
pub(crate) fn updater_live(status: &zigral_init_protocol::Status) -> bool {
    status
        .group_services(&group())
        .any(|s| !matches!(s.state, ServiceState::Stopped | ServiceState::Failed))
}

fn unreachable(e: &SupervisorError) -> Refusal {
    Refusal::Unavailable(format!(
        "updates are unavailable: zigral-init, which applies them, does not answer ({e})"
    ))
}

/// Checks `offer` and hands it to zigral-init's updater: the signature against the update key,
/// the version against the running release (unless forced), no update under way; then the
/// bundle goes to `ready/<id>.tar.zst` with its signature, a leftover exited updater instance is
/// destroyed and `updater@0` is spawned with `{id, force}`. On a refusal nothing changed: the
/// bundle is where it was and `ready/` holds nothing of it.
pub async fn apply(st: &AppState, offer: &Offer) -> Result<Accepted, Refusal> {
    let _one = APPLYING.lock().await;
    let cfg = st.config();
    let key = key_text(cfg)?;
    let running = running_release(cfg);
    let status = crate::vdi::init::status(&cfg.init_socket)
        .await
        .map_err(|e| unreachable(&e))?;
    if updater_live(&status) {
        return Err(Refusal::InProgress(in_progress_message(cfg)));
    }
    if let Some(s) = read_status(cfg)
        && !s.phase.finished()
    {
        // The updater is gone yet its last status is unfinished: it was cut short (and says
        // so when it next runs). Not a reason to refuse a new bundle.
        tracing::warn!(id = %s.id, phase = ?s.phase, "the last update's status is unfinished but no updater runs");
    }
    let (k, sig, path) = (key, offer.sig_text.clone(), offer.bundle.clone());
    let manifest = tokio::task::spawn_blocking(move || {
        let f = std::fs::File::open(&path)?;
        zigral_update::verify(&k, &sig, std::io::BufReader::new(f))
    })
    .await
    .map_err(|e| Refusal::Internal(format!("the check did not finish: {e}")))??;
    zigral_update::check_newer(&manifest, &running, offer.force)?;

    let ready = updates_dir(cfg).join(READY_DIR);
    let rb = ready.join(format!("{}.{BUNDLE_EXT}", offer.id));
    let rs = ready.join(format!("{}.{SIG_EXT}", offer.id));
    let io = |what: &str, e: std::io::Error| Refusal::Internal(format!("{what}: {e}"));
    tokio::fs::create_dir_all(&ready)
        .await
        .map_err(|e| io("cannot create updates/ready", e))?;
    tokio::fs::write(&rs, offer.sig_text.as_bytes())
        .await
        .map_err(|e| io("cannot write the signature", e))?;
    if let Err(e) = tokio::fs::rename(&offer.bundle, &rb).await {
        let _ = tokio::fs::remove_file(&rs).await;
        return Err(io("cannot move the bundle into updates/ready", e));
    }
    match hand_over(cfg, &status, offer).await {
        Ok(()) => Ok(Accepted {
            id: offer.id.clone(),
            version: manifest.version,
            from_version: running.version,
            forced: offer.force,
        }),
        Err(r) => {
            // Nothing changed: the bundle goes back where it was.
            let _ = tokio::fs::rename(&rb, &offer.bundle).await;
            let _ = tokio::fs::remove_file(&rs).await;
            Err(r)
        }
    }
}

fn in_progress_message(cfg: &Config) -> String {
    match read_status(cfg) {
        Some(s) if !s.phase.finished() => format!(
            "an update is already being applied ({} to {}: {}); wait until it ends",
            s.from_version, s.version, s.message
        ),
        _ => {
            "an update is already being applied (the updater is running); wait until it ends".into()
        }
    }
}

/// Destroys a leftover (exited) updater instance and spawns a new one for `offer`.
async fn hand_over(
    cfg: &Config,
    status: &zigral_init_protocol::Status,
    offer: &Offer,
) -> Result<(), Refusal> {
    let group = group();
    if status.group(&group).is_some() || status.group_services(&group).next().is_some() {
        let req = InitRequest::Destroy {
            template: TEMPLATE.into(),
            instance: INSTANCE,
            purge: false,
        };
        match crate::supervisor::request::<Destroyed>(&cfg.init_socket, &req, EXCHANGE).await {
            Ok(_) | Err(SupervisorError::Refused(_)) => {}
            Err(e) => return Err(unreachable(&e)),
        }
    }
    let params = BTreeMap::from([
        ("id".to_owned(), offer.id.clone()),
        (
            "force".to_owned(),
            if offer.force { "1" } else { "0" }.to_owned(),
        ),
    ]);
    let req = InitRequest::Spawn {
        template: TEMPLATE.into(),
        instance: INSTANCE,
        params,
    };
    match crate::supervisor::request::<Spawned>(&cfg.init_socket, &req, EXCHANGE).await {
        Ok(_) => Ok(()),
        Err(SupervisorError::Refused(m)) if m.contains("unknown template") => {
            Err(Refusal::Unavailable(format!(
                "updates are unavailable: zigral-init has no '{TEMPLATE}' template (this image \
                 cannot apply updates): {m}"
            )))
        }
        Err(SupervisorError::Refused(m)) if m.contains("already exists") => {
            Err(Refusal::InProgress(in_progress_message(cfg)))
        }
        Err(SupervisorError::Refused(m)) => Err(Refusal::Unavailable(format!(
            "updates are unavailable: zigral-init refused to start the updater: {m}"
        ))),
        Err(e) => Err(unreachable(&e)),
    }
}

/// Starts the updates folder's background task ([`watch`]).
pub fn start_watcher(st: AppState) -> tokio::task::JoinHandle<()> {
    watch::start(st)
}

/// Audits `action` and publishes it (administrators only) on the events websocket.
pub async fn tell(st: &AppState, actor: &str, action: &str, target: &str, detail: Value) {
    st.audit(actor, action, target, detail.clone()).await;
    st.publish(Event::new(action, None, Some(ADMINS_ONLY), detail));
}

/// Whether the updater's health gate is on (`<state>/updates/gate` exists): one stat.
pub fn gate_active(cfg: &Config) -> bool {
    std::fs::symlink_metadata(gate_file(cfg)).is_ok()
}

fn is_write(m: &Method) -> bool {
    matches!(
        *m,
        Method::POST | Method::PUT | Method::PATCH | Method::DELETE
    )
}

/// Middleware: while the health gate is on, write requests under `/api/` and `/mcp` get 503
/// `update_in_progress` with `Retry-After`; reads and websockets pass.
pub async fn pause_writes(State(st): State<AppState>, req: Request, next: Next) -> Response {
    let path = req.uri().path();
    if is_write(req.method())
        && (path.starts_with("/api/") || path == "/mcp" || path.starts_with("/mcp/"))
        && gate_active(st.config())
    {
        return paused();
    }
    next.run(req).await
}

/// The 503 of a write during the health gate.
pub fn paused() -> Response {
    let mut r = (
        StatusCode::SERVICE_UNAVAILABLE,
        axum::Json(ErrorBody {
            error: "update_in_progress".into(),
            message: "An update is being applied; retry in a few seconds.".into(),
        }),
    )
        .into_response();
    r.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(GATE_RETRY_SECS));
    r
}

/// Removes a file when dropped unless disarmed (an upload's partial or refused bundle).
pub(crate) struct RemoveOnDrop(pub Option<PathBuf>);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            let _ = std::fs::remove_file(&p);
        }
    }
}

/// `path`'s file name as text.
pub(crate) fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}
