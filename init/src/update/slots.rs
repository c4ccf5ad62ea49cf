//! The A/B slots on disk: `<slots>/a` and `<slots>/b` hold our files (`bin/zigral`, `ui/`,
//! `release`), `<slots>/current` is a symlink to the active one (`/usr/bin/zigral` and
//! `/usr/share/zigral/ui` point through it), and `<slots>/state.json` says which slot is known
//! good and which one an update is trying. Every change is written to a temporary name,
//! fsynced and renamed, so a power cut leaves either the old or the new version of each file.
//! At boot, [`recover_at_boot`] puts an interrupted update back on the good slot.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use zigral_update::{Phase, UpdateStatus};

use super::UpdaterError;

/// An update in flight, recorded before the switch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Trying {
    pub slot: String,
    pub id: String,
    pub version: String,
    /// The pre-update copy of the database, restored on rollback when the new version's
    /// store schema differs from the old one's (the old build cannot open a newer schema).
    pub snapshot: Option<PathBuf>,
    pub db: Option<PathBuf>,
    pub restore_db: bool,
}

/// `<slots>/state.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlotState {
    pub good: String,
    #[serde(default)]
    pub trying: Option<Trying>,
}

/// The slots directory.
#[derive(Debug, Clone)]
pub struct Slots {
    pub root: PathBuf,
}

impl Slots {
    pub fn new(root: impl Into<PathBuf>) -> Slots {
        Slots { root: root.into() }
    }

    fn current_link(&self) -> PathBuf {
        self.root.join("current")
    }

    /// The slot `current` points to (`a` or `b`).
    pub fn active(&self) -> Result<String, UpdaterError> {
        let t = std::fs::read_link(self.current_link()).map_err(|e| {
            UpdaterError::io(format!("reading {}", self.current_link().display()), e)
        })?;
        let name = t
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_string();
        match name.as_str() {
            "a" | "b" => Ok(name),
            _ => Err(UpdaterError::Slots(format!(
                "{} points to {}, not to slot a or b",
                self.current_link().display(),
                t.display()
            ))),
        }
    }

    pub fn other(slot: &str) -> &'static str {
        if slot == "a" { "b" } else { "a" }
    }

    pub fn dir(&self, slot: &str) -> PathBuf {
        self.root.join(slot)
    }

    pub fn state(&self) -> Result<SlotState, UpdaterError> {
        let p = self.root.join("state.json");
        match std::fs::read(&p) {
            Ok(b) => serde_json::from_slice(&b)
                .map_err(|e| UpdaterError::Slots(format!("{}: {e}", p.display()))),
            // An image fresh from the build: the active slot is the good one.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(SlotState {
                good: self.active()?,
                trying: None,
            }),
            Err(e) => Err(UpdaterError::io(format!("reading {}", p.display()), e)),
        }
    }

    pub fn write_state(&self, st: &SlotState) -> Result<(), UpdaterError> {
        let body = serde_json::to_vec_pretty(st).expect("state serializes");
        write_atomic(&self.root.join("state.json"), &body, 0o644)
    }

    /// Points `current` at `slot` (a new symlink renamed over the old one, then the directory
    /// fsynced).
    pub fn switch(&self, slot: &str) -> Result<(), UpdaterError> {
        let tmp = self.root.join(".current.tmp");
        let _ = std::fs::remove_file(&tmp);
        std::os::unix::fs::symlink(slot, &tmp)
            .map_err(|e| UpdaterError::io(format!("creating {}", tmp.display()), e))?;
        std::fs::rename(&tmp, self.current_link())
            .map_err(|e| UpdaterError::io("switching the current slot".into(), e))?;
        sync_dir(&self.root)
    }
}

/// Writes `path` through a temporary file, fsync, rename, fsync of the directory.
pub fn write_atomic(path: &Path, body: &[u8], mode: u32) -> Result<(), UpdaterError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let dir = path.parent().unwrap_or(Path::new("/"));
    let tmp = dir.join(format!(
        ".{}.tmp",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("file")
    ));
    let err = |e| UpdaterError::io(format!("writing {}", path.display()), e);
    // create_new (O_EXCL) never follows a symlink someone planted at the temporary name: the
    // updates folder belongs to the unprivileged control plane.
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)
        .map_err(err)?;
    f.write_all(body).map_err(err)?;
    f.sync_all().map_err(err)?;
    std::fs::rename(&tmp, path).map_err(err)?;
    sync_dir(dir)
}

pub fn sync_dir(dir: &Path) -> Result<(), UpdaterError> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| UpdaterError::io(format!("syncing {}", dir.display()), e))
}

/// Copies `from` to `to` with `from`'s mode and owner, fsynced (database snapshots).
pub fn copy_synced(from: &Path, to: &Path) -> Result<(), UpdaterError> {
    use std::os::unix::fs::MetadataExt;
    let err = |e| UpdaterError::io(format!("copying {} to {}", from.display(), to.display()), e);
    use std::os::unix::fs::OpenOptionsExt;
    let mut src = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(from)
        .map_err(err)?;
    let meta = src.metadata().map_err(err)?;
    let tmp = to.with_extension("tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut dst = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(meta.mode() & 0o777)
        .open(&tmp)
        .map_err(err)?;
    std::io::copy(&mut src, &mut dst).map_err(err)?;
    drop(dst);
    nix::unistd::chown(
        &tmp,
        Some(nix::unistd::Uid::from_raw(meta.uid())),
        Some(nix::unistd::Gid::from_raw(meta.gid())),
    )
    .map_err(|e| err(std::io::Error::from(e)))?;
    std::fs::File::open(&tmp)
        .and_then(|f| f.sync_all())
        .map_err(err)?;
    std::fs::rename(&tmp, to).map_err(err)?;
    sync_dir(to.parent().unwrap_or(Path::new("/")))
}

/// An update whose status never finished although it had not switched yet (its updater was
/// killed, or the machine went down, before `trying` was recorded): marked failed, since
/// nothing changed. Returns the line to print.
fn interrupted_before_switch(status_file: &Path) -> Option<String> {
    let mut s: UpdateStatus = serde_json::from_slice(&std::fs::read(status_file).ok()?).ok()?;
    if s.phase.finished() {
        return None;
    }
    s.phase = Phase::Failed;
    s.message = format!(
        "interrupted while {} before switching slots; nothing changed",
        s.message.trim_end_matches('.')
    );
    s.finished_ms = Some(super::now_ms());
    let _ = write_atomic(
        status_file,
        &serde_json::to_vec_pretty(&s).expect("status serializes"),
        0o644,
    );
    Some(format!("zigral-update: update {}: {}", s.id, s.message))
}

/// At boot, before any service starts: an update that was still trying a slot when the
/// machine went down (power cut, reboot, crash) is rolled back — `current` back to the good
/// slot, the pre-update database restored when the schema changed — and its status says so.
/// Returns the line to print, if anything was done.
pub fn recover_at_boot(slots: &Slots, status_file: &Path) -> Result<Option<String>, UpdaterError> {
    if !slots.root.is_dir() {
        return Ok(None);
    }
    let mut st = slots.state()?;
    // No updater runs yet: a gate file left behind (an updater killed before it could remove
    // it) would keep the control plane refusing writes.
    if let Some(dir) = status_file.parent() {
        let _ = std::fs::remove_file(dir.join(zigral_update::GATE_FILE));
    }
    let Some(t) = st.trying.take() else {
        let stopped = interrupted_before_switch(status_file);
        // A switch is only ever made with `trying` recorded first, so `current` must be good.
        if slots.active()? != st.good {
            slots.switch(&st.good)?;
            return Ok(Some(format!(
                "zigral-update: current slot was not the good one; back on slot {}",
                st.good
            )));
        }
        return Ok(stopped);
    };
    slots.switch(&st.good)?;
    if t.restore_db
        && let (Some(snap), Some(db)) = (&t.snapshot, &t.db)
        && snap.exists()
    {
        copy_synced(snap, db)?;
    }
    slots.write_state(&st)?;
    let msg = format!(
        "a restart interrupted the update to {} (id {}); back on slot {}",
        t.version, t.id, st.good
    );
    if let Ok(b) = std::fs::read(status_file)
        && let Ok(mut s) = serde_json::from_slice::<UpdateStatus>(&b)
        && s.id == t.id
    {
        s.phase = Phase::RolledBack;
        s.message = msg.clone();
        s.active_slot = st.good.clone();
        s.finished_ms = Some(super::now_ms());
        let _ = write_atomic(
            status_file,
            &serde_json::to_vec_pretty(&s).expect("status serializes"),
            0o644,
        );
    }
    Ok(Some(format!("zigral-update: {msg}")))
}
