//! Signed A/B updates, zigral-init's side: `zigral-init update apply` (run as root by the
//! `updater` template, which the control plane spawns for an accepted bundle) verifies the
//! bundle again, unpacks it into the inactive slot, snapshots the database, switches slots,
//! restarts our services through the control socket and holds a health gate; a failed gate
//! switches back. [`slots::recover_at_boot`] (called by `run` before any service starts) ends
//! an update that a reboot or power cut interrupted on the good slot.

pub mod apply;
pub mod slots;
pub mod unpack;

use std::path::PathBuf;
use std::time::Duration;

/// Why an update could not be applied.
#[derive(Debug, thiserror::Error)]
pub enum UpdaterError {
    #[error(transparent)]
    Bundle(#[from] zigral_update::UpdateError),
    #[error("the bundle is corrupt: {0}")]
    Corrupt(String),
    #[error("slots: {0}")]
    Slots(String),
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("zigral-init: {0}")]
    Supervisor(String),
}

impl UpdaterError {
    pub fn io(what: String, source: std::io::Error) -> UpdaterError {
        UpdaterError::Io { what, source }
    }
}

/// Milliseconds since the epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

#[derive(Debug, clap::Args)]
pub struct UpdateArgs {
    #[command(subcommand)]
    pub action: UpdateCmd,
}

#[derive(Debug, clap::Subcommand)]
pub enum UpdateCmd {
    /// Apply the accepted bundle `<state>/updates/ready/<id>.tar.zst` (run by the `updater`
    /// template; progress in `<state>/updates/status.json` and on stdout).
    Apply(apply::ApplyArgs),
    /// Print the slots' state and the last update's status.
    Status {
        #[arg(long)]
        state_dir: PathBuf,
        #[arg(long)]
        slots: PathBuf,
    },
}

pub fn main(a: &UpdateArgs) -> i32 {
    match &a.action {
        UpdateCmd::Apply(args) => apply::main(args),
        UpdateCmd::Status { state_dir, slots } => {
            let s = slots::Slots::new(slots);
            match (s.active(), s.state()) {
                (Ok(active), Ok(st)) => {
                    println!("active slot: {active}  good slot: {}", st.good);
                    if let Some(t) = st.trying {
                        println!("trying: slot {} ({}, id {})", t.slot, t.version, t.id);
                    }
                }
                (Err(e), _) | (_, Err(e)) => {
                    eprintln!("zigral-init update status: {e}");
                    return 1;
                }
            }
            let f = state_dir
                .join(zigral_update::UPDATES_DIR)
                .join(zigral_update::STATUS_FILE);
            match std::fs::read_to_string(&f) {
                Ok(t) => println!("{t}"),
                Err(_) => println!("no update has run"),
            }
            0
        }
    }
}

/// Parses `90s`, `2m`, `500ms`.
pub fn parse_deadline(s: &str) -> Result<Duration, String> {
    s.parse::<crate::config::units::Dur>()
        .map(|d| d.0)
        .map_err(|e| format!("--deadline {s:?}: {e}"))
}
