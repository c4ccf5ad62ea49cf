//! The updates folder's background task (every [`EVERY`]): a bundle dropped by hand into
//! `<state>/updates/` (`NAME.tar.zst` with `NAME.tar.zst.minisig`) goes through the same
//! checks as an upload once both files stopped changing for one tick; a refused pair is
//! renamed `*.refused` with `NAME.refused.txt` saying why. The same task audits how each
//! update ended (from the updater's `status.json`), once per update id across restarts, and
//! lifts a health gate that a killed updater left behind.

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, SystemTime};

use serde_json::{Value, json};
use zigral_update::{BUNDLE_EXT, Phase, SIG_EXT};

use super::{LAST_AUDITED_KEY, Offer, Refusal};
use crate::state::AppState;

/// How often the folder and the status are looked at.
pub const EVERY: Duration = Duration::from_secs(2);

/// The actor of what the task does.
const ACTOR: &str = "system";

/// Starts the task (it runs as long as the process). Call it before serving: it first removes
/// partial uploads (`.incoming-*`) a previous process left behind.
pub fn start(st: AppState) -> tokio::task::JoinHandle<()> {
    let dir = super::updates_dir(st.config());
    for e in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
        if e.file_name().to_string_lossy().starts_with(".incoming-") {
            let _ = std::fs::remove_file(e.path());
        }
    }
    tokio::spawn(async move {
        let mut seen = HashMap::new();
        let mut tick = tokio::time::interval(EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            scan(&st, &mut seen).await;
            note_outcome(&st).await;
            lift_stale_gate(&st).await;
        }
    })
}

/// Size and modification time of a bundle and its signature.
type Stamp = (u64, Option<SystemTime>, u64, Option<SystemTime>);

fn stamp(bundle: &Path, sig: &Path) -> Option<Stamp> {
    let b = std::fs::metadata(bundle).ok().filter(|m| m.is_file())?;
    let s = std::fs::metadata(sig).ok().filter(|m| m.is_file())?;
    Some((b.len(), b.modified().ok(), s.len(), s.modified().ok()))
}

/// Looks for complete pairs; a pair is taken when it looked the same one tick ago.
async fn scan(st: &AppState, seen: &mut HashMap<String, Stamp>) {
    let dir = super::updates_dir(st.config());
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return;
    };
    let suffix = format!(".{BUNDLE_EXT}");
    let mut now = HashMap::new();
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(stem) = name.strip_suffix(&suffix) else {
            continue;
        };
        if stem.is_empty() || stem.starts_with('.') {
            continue;
        }
        let sig = dir.join(format!("{stem}.{SIG_EXT}"));
        let Some(s) = stamp(&dir.join(&name), &sig) else {
            continue;
        };
        if seen.get(stem) == Some(&s) {
            take(st, &dir, stem).await;
        } else {
            now.insert(stem.to_owned(), s);
        }
    }
    *seen = now;
}

async fn take(st: &AppState, dir: &Path, stem: &str) {
    let bundle = dir.join(format!("{stem}.{BUNDLE_EXT}"));
    let sig = dir.join(format!("{stem}.{SIG_EXT}"));
    let sig_text = match std::fs::metadata(&sig) {
        Ok(m) if m.len() > super::MAX_SIG_BYTES as u64 => Err(Refusal::BadSignature(format!(
            "the bundle was refused: the signature file is larger than {} bytes",
            super::MAX_SIG_BYTES
        ))),
        _ => std::fs::read_to_string(&sig).map_err(|e| {
            Refusal::BadSignature(format!(
                "the bundle was refused: the signature file cannot be read as text: {e}"
            ))
        }),
    };
    let id = super::new_id();
    let outcome = match sig_text {
        Ok(sig_text) => {
            let offer = Offer {
                bundle: bundle.clone(),
                sig_text,
                force: false,
                id,
            };
            super::apply(st, &offer).await
        }
        Err(r) => Err(r),
    };
    let file = super::file_name(&bundle);
    match outcome {
        Ok(a) => {
            let _ = std::fs::remove_file(&sig);
            tracing::info!(id = %a.id, version = %a.version, %file, "update requested from the updates folder");
            super::tell(
                st,
                ACTOR,
                "update.requested",
                &a.id,
                json!({"id": a.id, "version": a.version, "from_version": a.from_version,
                       "forced": a.forced, "source": "folder", "file": file}),
            )
            .await;
        }
        Err(r) => {
            let reason = r.to_string();
            let refused = |p: &Path| {
                let mut to = p.as_os_str().to_owned();
                to.push(".refused");
                std::fs::rename(p, &to)
            };
            let moved = refused(&bundle)
                .and_then(|()| refused(&sig))
                .and_then(|()| {
                    std::fs::write(
                        dir.join(format!("{stem}.refused.txt")),
                        format!("{reason}\n"),
                    )
                });
            if let Err(e) = moved {
                tracing::error!(%file, error = %e, "cannot mark a refused bundle");
            }
            tracing::warn!(%file, code = r.code(), %reason, "bundle in the updates folder refused");
            super::tell(
                st,
                ACTOR,
                "update.refused",
                &file,
                json!({"code": r.code(), "reason": reason, "source": "folder", "file": file}),
            )
            .await;
        }
    }
}

/// Removes the health gate's file when no updater runs any more: the updater removes it
/// itself before it exits, so one left behind belongs to an updater that was killed, and would
/// keep every write refused (503) until the appliance restarts.
async fn lift_stale_gate(st: &AppState) {
    if !super::gate_active(st.config()) {
        return;
    }
    let Ok(status) = crate::vdi::init::status(&st.config().init_socket).await else {
        return;
    };
    if super::updater_live(&status) {
        return;
    }
    // The updater may have removed it between the two looks: then there is nothing to do.
    if std::fs::remove_file(super::gate_file(st.config())).is_ok() {
        tracing::warn!("no updater runs but its health gate was still on: lifted, writes resume");
    }
}

/// Audits a finished update once (the last audited id is kept in the store).
async fn note_outcome(st: &AppState) {
    let cfg = st.config().clone();
    let Ok(Some(s)) = tokio::task::spawn_blocking(move || super::read_status(&cfg)).await else {
        return;
    };
    if !s.phase.finished() {
        return;
    }
    match st.store().get_config(LAST_AUDITED_KEY) {
        Ok(Some(Value::String(id))) if id == s.id => return,
        Ok(_) => {}
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the last audited update");
            return;
        }
    }
    if let Err(e) = st
        .store()
        .put_config(LAST_AUDITED_KEY, Value::String(s.id.clone()))
        .await
    {
        tracing::warn!(error = %e, "cannot remember the audited update");
        return;
    }
    let action = match s.phase {
        Phase::Committed => "update.committed",
        Phase::RolledBack => "update.rolled_back",
        _ => "update.failed",
    };
    tracing::info!(id = %s.id, %action, message = %s.message, "update ended");
    super::tell(
        st,
        ACTOR,
        action,
        &s.id,
        json!({"id": s.id, "version": s.version, "from_version": s.from_version,
               "message": s.message, "slot": s.slot, "active_slot": s.active_slot,
               "forced": s.forced}),
    )
    .await;
}
