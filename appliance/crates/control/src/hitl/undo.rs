//! Automatic browser checkpoints and undo.
//!
//! Before an agent step that is risky, that will get a feedback prompt, or that is the first
//! of every K (the profile's `hitl.checkpoint_every`), the session's browser state (cookies,
//! storage of the open origins, tabs and URLs) is captured, sealed (ChaCha20-Poly1305, key in
//! `<state>/secrets/checkpoint.key`, bound to the session id) and stored as checkpoint
//! `step-<n>`; only the newest `hitl.max_checkpoints` automatic checkpoints are kept.
//!
//! [`undo`] rolls a session back N agent steps: it restores the newest checkpoint taken at
//! or before the first undone step (so it may undo a few more steps than asked, and says
//! so), drops the checkpoints of the undone states, and queues a note telling the model what
//! was undone.

use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;
use zigral_actions::Executor;
use zigral_store::{CheckpointMeta, CheckpointRecord, SessionRecord};

use crate::agents::SessionAgent;
use crate::events::Event;
use crate::state::AppState;

/// Why an undo did not happen.
#[derive(Debug, thiserror::Error)]
pub enum UndoError {
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    NoCheckpoint(String),
    #[error("{0}")]
    Failed(String),
}

/// The id of the automatic checkpoint taken before step `n`.
pub fn auto_id(n: u64) -> String {
    format!("step-{n:010}")
}

fn before_step(m: &CheckpointMeta) -> Option<u64> {
    m.meta
        .get("auto")
        .and_then(|a| a.as_bool())
        .filter(|a| *a)
        .and_then(|_| m.meta.get("before_step"))
        .and_then(|v| v.as_u64())
}

/// Seals a browser checkpoint for `session` (the stored data).
pub fn seal(
    st: &AppState,
    session: &str,
    cp: &zigral_browser::Checkpoint,
) -> Result<serde_json::Value, String> {
    let plain = zeroize::Zeroizing::new(serde_json::to_vec(cp).map_err(|e| e.to_string())?);
    Ok(st.hitl().sealer()?.seal(&plain, session.as_bytes()))
}

/// Opens stored checkpoint data (sealed, or plain from before sealing existed).
pub fn open(
    st: &AppState,
    session: &str,
    data: serde_json::Value,
) -> Result<zigral_browser::Checkpoint, String> {
    if crate::sealed::Sealer::is_sealed(&data) {
        let plain = zeroize::Zeroizing::new(
            st.hitl()
                .sealer()?
                .open(&data, session.as_bytes())
                .map_err(|e| e.to_string())?,
        );
        serde_json::from_slice(&plain).map_err(|e| e.to_string())
    } else {
        serde_json::from_value(data).map_err(|e| e.to_string())
    }
}

/// Captures the checkpoint before step `n` (see the module doc) and prunes the oldest
/// automatic ones beyond `keep`.
pub async fn take(
    st: &AppState,
    s: &SessionRecord,
    exec: &Executor,
    n: u64,
    why: &str,
    keep: u32,
) -> Result<CheckpointMeta, String> {
    let browser = exec.browser().ok_or("no browser")?;
    let cp = browser.checkpoint().await.map_err(|e| e.to_string())?;
    let data = seal(st, &s.id, &cp)?;
    let meta = CheckpointMeta {
        id: auto_id(n),
        label: format!("before agent step {n} ({why})"),
        action_seq: st
            .store()
            .last_actions(&s.id, 1)
            .ok()
            .and_then(|a| a.first().map(|a| a.seq)),
        created_at: zigral_store::now_ms(),
        size_bytes: 0,
        meta: json!({
            "auto": true,
            "before_step": n,
            "why": why,
            "tabs": cp.tabs.iter().map(|t| json!({"url": t.url, "active": t.active})).collect::<Vec<_>>(),
            "cookies": cp.cookies.len(),
        }),
    };
    let stored = st
        .store()
        .put_checkpoint(&s.id, CheckpointRecord { meta, data })
        .await
        .map_err(|e| e.to_string())?;
    let mut autos: Vec<(u64, String)> = st
        .store()
        .list_checkpoints(&s.id)
        .map_err(|e| e.to_string())?
        .into_iter()
        .filter_map(|m| before_step(&m).map(|b| (b, m.id)))
        .collect();
    autos.sort();
    let excess = autos.len().saturating_sub(keep as usize);
    for (_, id) in autos.into_iter().take(excess) {
        let _ = st.store().delete_checkpoint(&s.id, &id).await;
    }
    Ok(stored)
}

/// The newest automatic checkpoint taken at or before step `step`.
fn covering(
    st: &AppState,
    session: &str,
    step: u64,
) -> Result<Option<(u64, CheckpointMeta)>, String> {
    Ok(st
        .store()
        .list_checkpoints(session)
        .map_err(|e| e.to_string())?
        .into_iter()
        .filter_map(|m| before_step(&m).map(|b| (b, m)))
        .filter(|(b, _)| *b <= step)
        .max_by_key(|(b, _)| *b))
}

/// What an undo did.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Undone {
    /// The first and last agent step undone.
    pub from_step: u64,
    pub to_step: u64,
    /// Steps asked to undo.
    pub requested: u64,
    /// The checkpoint restored.
    pub checkpoint: String,
    /// Tabs open after the rollback.
    pub tabs: Vec<String>,
}

/// Restores the state before the first of `steps` (or the nearest earlier checkpoint) and
/// undoes every step from there to the last; `why` goes into the model's note and the event.
pub async fn rollback(
    st: &AppState,
    s: &SessionRecord,
    agent: &SessionAgent,
    exec: &Executor,
    steps: std::ops::RangeInclusive<u64>,
    why: &str,
    by: &str,
) -> Result<Undone, UndoError> {
    let (first, last) = (*steps.start(), *steps.end());
    let Some((from, meta)) = covering(st, &s.id, first).map_err(UndoError::Failed)? else {
        let oldest = st
            .store()
            .list_checkpoints(&s.id)
            .ok()
            .and_then(|l| l.iter().filter_map(before_step).min());
        return Err(UndoError::NoCheckpoint(match oldest {
            Some(o) => format!(
                "no checkpoint covers step {first}: the oldest kept is from before step {o}"
            ),
            None => format!("no checkpoint covers step {first}: none was taken"),
        }));
    };
    let rec = st
        .store()
        .get_checkpoint(&s.id, &meta.id)
        .map_err(|e| UndoError::Failed(e.to_string()))?
        .ok_or_else(|| UndoError::Failed("the checkpoint vanished".into()))?;
    let cp = open(st, &s.id, rec.data)
        .map_err(|e| UndoError::Failed(format!("checkpoint {} is unreadable: {e}", meta.id)))?;
    let browser = exec
        .browser()
        .ok_or_else(|| UndoError::Failed("this desktop has no browser".into()))?;
    browser
        .restore(&cp, &exec.policy())
        .await
        .map_err(|e| UndoError::Failed(format!("the browser could not be restored: {e}")))?;
    st.hitl().clear_focus(&s.id);
    // Checkpoints of the undone states describe states that no longer exist.
    if let Ok(all) = st.store().list_checkpoints(&s.id) {
        for m in all {
            if before_step(&m).is_some_and(|b| b > from) {
                let _ = st.store().delete_checkpoint(&s.id, &m.id).await;
            }
        }
    }
    let tabs: Vec<String> = cp.tabs.iter().map(|t| t.url.clone()).collect();
    agent.note(format!(
        "{why} Steps {from}–{last} were undone: the browser (cookies, storage, tabs and URLs) is \
         back to how it was before step {from}. Open tabs: {}. Take a screenshot before you go on.",
        tabs.join(", ")
    ));
    let undone = Undone {
        from_step: from,
        to_step: last,
        requested: last + 1 - first,
        checkpoint: meta.id.clone(),
        tabs,
    };
    st.publish(Event::new(
        "agent.undone",
        Some(&s.id),
        Some(&s.owner),
        json!({"undone": undone, "by": by}),
    ));
    st.audit(by, "agent.undo", &s.id, json!({"undone": undone}))
        .await;
    Ok(undone)
}

/// Undoes the last `steps` agent steps of session `s` (see the module doc).
pub async fn undo(
    st: &AppState,
    s: &SessionRecord,
    steps: u64,
    by: &str,
) -> Result<Undone, UndoError> {
    let agent = st.agents().entry(&s.id);
    let last = agent.steps_taken(st.store());
    if steps == 0 {
        return Err(UndoError::Invalid("steps must be at least 1".into()));
    }
    if steps > last {
        return Err(UndoError::Invalid(format!(
            "the agent has taken {last} step(s) in this session; cannot undo {steps}"
        )));
    }
    let _hands = agent.hands.lock().await;
    let exec = super::executor(st, s.desktop)
        .await
        .map_err(UndoError::Failed)?;
    let first = last + 1 - steps;
    let why = format!("A person undid your last {steps} step(s).");
    rollback(st, s, &agent, &exec, first..=last, &why, by).await
}
