//! Feedback from people on the agent's steps.
//!
//! - Prompts: after agent steps 1–5, every 5th up to 25, then every 25th
//!   ([`zigral_agent::feedback::should_prompt_feedback`]), unless the profile or the session
//!   turned feedback off, a step gets a pending feedback record (kind `prompt`) with its
//!   before/after screenshots (small JPEGs in `<state>/feedback/<session>/`, withheld while a
//!   secret field has focus) and a `feedback.requested` event.
//! - Answers ([`answer`]): `approve`, `reject` or `correct`, with a comment and a 1–5 rating,
//!   for a prompt or for any step. A reject rolls the browser back to the checkpoint before
//!   the step ([`super::undo::rollback`]); a reject or a correction is told to the model.
//! - [`export_line`]: one JSONL line of preference data per answered record (context, action,
//!   verdict, correction), for an RL/DPO pipeline.
//! - [`corrections`]: the latest corrections of a profile, for its agent's context.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::ToSchema;
use zigral_store::{FeedbackRecord, SessionRecord};

use super::undo::Undone;
use crate::events::Event;
use crate::state::AppState;

/// Longest comment / correction.
pub const MAX_TEXT: usize = 2000;
/// Longest correction quoted into an agent's context.
const CORRECTION_IN_CONTEXT: usize = 300;

/// A person's verdict on a step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Approve,
    Reject,
    Correct,
}

/// The answer part of a feedback record.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct FeedbackAnswer {
    pub verdict: Verdict,
    #[serde(default)]
    pub comment: Option<String>,
    /// 1–5.
    #[serde(default)]
    pub rating: Option<u8>,
    /// What the agent should have done (required for `correct`).
    #[serde(default)]
    pub correction: Option<String>,
    /// User id of the person.
    pub by: String,
    pub at: u64,
    /// What a reject rolled back.
    #[serde(default)]
    pub rolled_back: Option<Undone>,
    /// Why a reject could not roll back.
    #[serde(default)]
    pub rollback_error: Option<String>,
}

/// The body of a feedback record (`FeedbackRecord::data`).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct FeedbackData {
    /// `prompt` (the agent asked) or `feedback` (a person gave it unasked).
    pub kind: String,
    /// `pending` or `answered`.
    pub status: String,
    /// The agent step (1-based over the session's life).
    pub step: u64,
    #[serde(default)]
    pub profile: Option<String>,
    /// The step's tool call, described without typed text.
    #[serde(default)]
    pub call: String,
    #[serde(default)]
    pub actions: Vec<String>,
    /// The person's request the agent was working on.
    #[serde(default)]
    pub instruction: Option<String>,
    /// Page URL after the step.
    #[serde(default)]
    pub url: Option<String>,
    /// Whether before/after screenshots exist.
    #[serde(default)]
    pub before: bool,
    #[serde(default)]
    pub after: bool,
    /// The checkpoint taken before the step.
    #[serde(default)]
    pub checkpoint: Option<String>,
    #[serde(default)]
    pub answer: Option<FeedbackAnswer>,
}

/// A person's feedback (`POST /sessions/{id}/feedback`).
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FeedbackBody {
    /// The prompt answered (its feedback seq); or give `step`.
    pub prompt: Option<u64>,
    /// The agent step the feedback is about (when not answering a prompt).
    pub step: Option<u64>,
    pub verdict: Verdict,
    pub comment: Option<String>,
    pub rating: Option<u8>,
    pub correction: Option<String>,
}

/// Why feedback was refused.
#[derive(Debug, thiserror::Error)]
pub enum FeedbackError {
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error(transparent)]
    Store(#[from] zigral_store::StoreError),
}

/// Where a session's feedback screenshots live.
pub fn shots_dir(st: &AppState, session: &str) -> PathBuf {
    st.config().state_dir.join("feedback").join(session)
}

/// The file of a step's `before`/`after` screenshot.
pub fn shot_path(st: &AppState, session: &str, step: u64, which: &str) -> PathBuf {
    shots_dir(st, session).join(format!("{step:010}-{which}.jpg"))
}

fn write_shot(st: &AppState, session: &str, step: u64, which: &str, jpeg: &[u8]) -> bool {
    let dir = shots_dir(st, session);
    let path = shot_path(st, session, step, which);
    let r = std::fs::create_dir_all(&dir).and_then(|()| std::fs::write(&path, jpeg));
    if let Err(e) = &r {
        tracing::warn!(session, error = %e, "cannot keep a feedback screenshot");
    }
    r.is_ok()
}

/// What a prompt records about its step.
pub struct StepFacts<'a> {
    pub step: u64,
    pub profile: &'a str,
    pub call: String,
    pub actions: Vec<String>,
    pub instruction: Option<String>,
    pub url: Option<String>,
    pub checkpoint: Option<String>,
    pub before: Option<Vec<u8>>,
    pub after: Option<Vec<u8>>,
}

/// Records a pending feedback prompt for a step and publishes `feedback.requested`.
pub async fn prompt(
    st: &AppState,
    s: &SessionRecord,
    f: StepFacts<'_>,
) -> Result<FeedbackRecord, FeedbackError> {
    let data = FeedbackData {
        kind: "prompt".into(),
        status: "pending".into(),
        step: f.step,
        profile: Some(f.profile.to_owned()),
        call: f.call,
        actions: f.actions,
        instruction: f.instruction,
        url: f.url,
        before: f
            .before
            .as_deref()
            .is_some_and(|b| write_shot(st, &s.id, f.step, "before", b)),
        after: f
            .after
            .as_deref()
            .is_some_and(|b| write_shot(st, &s.id, f.step, "after", b)),
        checkpoint: f.checkpoint,
        answer: None,
    };
    let action_seq = st
        .store()
        .last_actions(&s.id, 1)
        .ok()
        .and_then(|a| a.first().map(|a| a.seq));
    let rec = st
        .store()
        .append_feedback(
            &s.id,
            &format!("agent:{}", f.profile),
            action_seq,
            to_value(&data),
        )
        .await?;
    st.publish(Event::new(
        "feedback.requested",
        Some(&s.id),
        Some(&s.owner),
        json!({"feedback": rec.seq, "step": data.step, "call": data.call,
               "before": data.before.then(|| shot_url(&s.id, rec.seq, "before")),
               "after": data.after.then(|| shot_url(&s.id, rec.seq, "after"))}),
    ));
    Ok(rec)
}

fn to_value(d: &FeedbackData) -> Value {
    serde_json::to_value(d).unwrap_or(Value::Null)
}

/// The data of a record, if it is one of ours.
pub fn data_of(r: &FeedbackRecord) -> Option<FeedbackData> {
    serde_json::from_value(r.data.clone()).ok()
}

/// The API path of a record's screenshot.
pub fn shot_url(session: &str, seq: u64, which: &str) -> String {
    format!("/api/v1/sessions/{session}/feedback/{seq}/{which}")
}

fn check(b: &FeedbackBody) -> Result<(), FeedbackError> {
    let long = |t: &Option<String>| t.as_ref().is_some_and(|t| t.chars().count() > MAX_TEXT);
    if long(&b.comment) || long(&b.correction) {
        return Err(FeedbackError::Invalid(format!(
            "comment and correction take at most {MAX_TEXT} characters"
        )));
    }
    if let Some(r) = b.rating
        && !(1..=5).contains(&r)
    {
        return Err(FeedbackError::Invalid("rating must be 1–5".into()));
    }
    if b.verdict == Verdict::Correct && b.correction.as_ref().is_none_or(|c| c.trim().is_empty()) {
        return Err(FeedbackError::Invalid(
            "a correct verdict needs a \"correction\": what the agent should have done".into(),
        ));
    }
    if b.prompt.is_none() && b.step.is_none() {
        return Err(FeedbackError::Invalid(
            "give the \"prompt\" answered or the \"step\" the feedback is about".into(),
        ));
    }
    Ok(())
}

/// Finds the record a body answers: the prompt, or the prompt of that step, or a new
/// `feedback` record for the step.
async fn target(
    st: &AppState,
    s: &SessionRecord,
    who: &str,
    b: &FeedbackBody,
) -> Result<(FeedbackRecord, FeedbackData), FeedbackError> {
    if let Some(seq) = b.prompt {
        let rec = st
            .store()
            .get_feedback(&s.id, seq)?
            .ok_or_else(|| FeedbackError::NotFound(format!("feedback prompt {seq} not found")))?;
        let data = data_of(&rec)
            .ok_or_else(|| FeedbackError::NotFound(format!("feedback {seq} is not a prompt")))?;
        if b.step.is_some_and(|n| n != data.step) {
            return Err(FeedbackError::Invalid(format!(
                "prompt {seq} is about step {}, not {}",
                data.step,
                b.step.unwrap_or_default()
            )));
        }
        return Ok((rec, data));
    }
    let step = b.step.unwrap_or_default();
    let existing = st
        .store()
        .list_feedback(&s.id, None, usize::MAX)?
        .into_iter()
        .filter_map(|r| data_of(&r).map(|d| (r, d)))
        .find(|(_, d)| d.step == step && d.kind == "prompt");
    if let Some(found) = existing {
        return Ok(found);
    }
    let taken = st.agents().entry(&s.id).steps_taken(st.store());
    if step == 0 || step > taken {
        return Err(FeedbackError::NotFound(format!(
            "the agent has taken {taken} step(s) in this session; there is no step {step}"
        )));
    }
    let data = FeedbackData {
        kind: "feedback".into(),
        status: "pending".into(),
        step,
        profile: s.agent.clone(),
        call: String::new(),
        actions: Vec::new(),
        instruction: None,
        url: None,
        before: false,
        after: false,
        checkpoint: None,
        answer: None,
    };
    let rec = st
        .store()
        .append_feedback(&s.id, who, None, to_value(&data))
        .await?;
    Ok((rec, data))
}

/// Records a person's feedback (see the module doc); a reject rolls back.
pub async fn answer(
    st: &AppState,
    s: &SessionRecord,
    who: &str,
    b: FeedbackBody,
) -> Result<FeedbackRecord, FeedbackError> {
    check(&b)?;
    let (rec, mut data) = target(st, s, who, &b).await?;
    if data.answer.is_some() {
        return Err(FeedbackError::Conflict(format!(
            "feedback {} was already answered",
            rec.seq
        )));
    }
    let clean = |t: &Option<String>| {
        t.as_ref()
            .map(|t| st.hitl().redactor(&s.owner).redact(t.trim()).into_owned())
            .filter(|t| !t.is_empty())
    };
    let mut ans = FeedbackAnswer {
        verdict: b.verdict,
        comment: clean(&b.comment),
        rating: b.rating,
        correction: clean(&b.correction),
        by: who.to_owned(),
        at: zigral_store::now_ms(),
        rolled_back: None,
        rollback_error: None,
    };
    let agent = st.agents().entry(&s.id);
    let said = |a: &FeedbackAnswer| {
        let mut t = String::new();
        if let Some(c) = &a.comment {
            t.push_str(&format!(" Their comment: {c}"));
        }
        if let Some(c) = &a.correction {
            t.push_str(&format!(" What you should do instead: {c}"));
        }
        t
    };
    let call = if data.call.is_empty() {
        format!("step {}", data.step)
    } else {
        format!("step {} ({})", data.step, data.call)
    };
    match b.verdict {
        Verdict::Approve => {}
        Verdict::Correct => agent.note(format!("A person corrected your {call}.{}", said(&ans))),
        Verdict::Reject => {
            let last = agent.steps_taken(st.store()).max(data.step);
            let why = format!("A person rejected your {call}.{}", said(&ans));
            let _hands = agent.hands.lock().await;
            let rolled = match super::executor(st, s.desktop).await {
                Ok(exec) => {
                    super::undo::rollback(st, s, &agent, &exec, data.step..=last, &why, who)
                        .await
                        .map_err(|e| e.to_string())
                }
                Err(e) => Err(e),
            };
            match rolled {
                Ok(u) => ans.rolled_back = Some(u),
                Err(e) => {
                    agent.note(format!(
                        "{why} (The browser could not be rolled back: {e}.)"
                    ));
                    ans.rollback_error = Some(e);
                }
            }
        }
    }
    data.status = "answered".into();
    data.answer = Some(ans.clone());
    let rec = st
        .store()
        .update_feedback(&s.id, rec.seq, to_value(&data))
        .await?;
    agent.feedback_answered(rec.seq);
    st.publish(Event::new(
        "feedback.answered",
        Some(&s.id),
        Some(&s.owner),
        json!({"feedback": rec.seq, "step": data.step, "verdict": ans.verdict,
               "rating": ans.rating, "rolled_back": ans.rolled_back,
               "rollback_error": ans.rollback_error}),
    ));
    st.audit(
        who,
        "feedback.answer",
        &s.id,
        json!({"feedback": rec.seq, "step": data.step, "verdict": ans.verdict}),
    )
    .await;
    Ok(rec)
}

/// One JSONL line of preference data for an answered record (`None` for pending ones).
pub fn export_line(session: &str, r: &FeedbackRecord) -> Option<String> {
    let d = data_of(r)?;
    let a = d.answer.as_ref()?;
    let line = json!({
        "session": session,
        "feedback": r.seq,
        "profile": d.profile,
        "step": d.step,
        "context": {
            "instruction": d.instruction,
            "url": d.url,
            "before_screenshot": d.before.then(|| shot_url(session, r.seq, "before")),
            "after_screenshot": d.after.then(|| shot_url(session, r.seq, "after")),
        },
        "action": {"call": d.call, "actions": d.actions},
        "verdict": a.verdict,
        "rating": a.rating,
        "comment": a.comment,
        "correction": a.correction,
        // Preference pairs: an approved call is chosen; a rejected or corrected one is
        // rejected, with the person's correction as the chosen alternative.
        "chosen": match a.verdict {
            Verdict::Approve => Some(d.call.clone()),
            Verdict::Correct => a.correction.clone(),
            Verdict::Reject => None,
        },
        "rejected": (a.verdict != Verdict::Approve).then(|| d.call.clone()),
        "by": a.by,
        "at": a.at,
    });
    serde_json::to_string(&line).ok()
}

/// The latest `max` corrections (and commented rejects) people gave `profile`, newest first,
/// each cut to a few hundred characters.
pub fn corrections(st: &AppState, profile: &str, max: usize) -> Vec<String> {
    if max == 0 {
        return Vec::new();
    }
    let Ok(all) = st.store().all_feedback() else {
        return Vec::new();
    };
    let mut found: Vec<(u64, String)> = all
        .iter()
        .filter_map(|(_, r)| {
            let d = data_of(r)?;
            if d.profile.as_deref() != Some(profile) {
                return None;
            }
            let a = d.answer?;
            let text = match a.verdict {
                Verdict::Correct => a.correction?,
                Verdict::Reject => format!("do not: {} ({})", d.call, a.comment?),
                Verdict::Approve => return None,
            };
            let text: String = text.chars().take(CORRECTION_IN_CONTEXT).collect();
            let on = if d.call.is_empty() {
                String::new()
            } else {
                format!("on \"{}\": ", d.call)
            };
            Some((a.at, format!("{on}{text}")))
        })
        .collect();
    found.sort_by_key(|f| std::cmp::Reverse(f.0));
    found.into_iter().take(max).map(|(_, t)| t).collect()
}
