//! Context-window assembly: the system prompt, the latest summary and the newest turns after
//! it that fit a token budget, with a token count for every part.

use serde::Serialize;
use utoipa::ToSchema;
use zigral_store::{MessageRecord, SessionRecord, Store, StoreError, SummaryRecord};

use crate::tokens_estimate::{ESTIMATOR, MESSAGE_OVERHEAD, text_tokens};

/// Most turns returned in one window, whatever the budget.
pub const MAX_TURNS: usize = 5000;

/// The system prompt part.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SystemPart {
    pub text: String,
    pub tokens: u32,
}

/// An assembled context window.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ContextWindow {
    pub session_id: String,
    pub budget_tokens: u32,
    /// Sum of the parts below.
    pub used_tokens: u32,
    /// Token estimator used (see the API docs).
    pub estimator: String,
    pub system: Option<SystemPart>,
    /// The latest summary, if it fit; turns it covers are not repeated.
    pub summary: Option<SummaryRecord>,
    /// Whether a summary exists but did not fit the budget.
    pub summary_omitted: bool,
    /// The newest turns that fit, oldest first.
    pub messages: Vec<MessageRecord>,
    /// Turns after the summary (or since the start) left out for lack of budget.
    pub omitted_messages: u64,
}

/// Why a window cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum ContextError {
    #[error("budget_tokens {budget} is smaller than the system prompt ({system} tokens)")]
    BudgetTooSmall { budget: u32, system: u32 },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Builds the window for `session` under `budget` tokens.
pub fn assemble(
    store: &Store,
    session: &SessionRecord,
    budget: u32,
) -> Result<ContextWindow, ContextError> {
    let system = session.system_prompt.as_ref().map(|t| SystemPart {
        tokens: text_tokens(t) + MESSAGE_OVERHEAD,
        text: t.clone(),
    });
    let mut used = system.as_ref().map_or(0, |s| s.tokens);
    if used > budget {
        return Err(ContextError::BudgetTooSmall {
            budget,
            system: used,
        });
    }
    let latest = store.latest_summary(&session.id)?;
    let mut summary_omitted = false;
    let covered_to = latest.as_ref().map(|s| s.to_seq);
    let summary = match latest {
        Some(s) if used + s.tokens <= budget => {
            used += s.tokens;
            Some(s)
        }
        Some(_) => {
            summary_omitted = true;
            None
        }
        None => None,
    };
    let mut turns = Vec::new();
    store.visit_messages_newest_first(&session.id, covered_to, |m| {
        if turns.len() >= MAX_TURNS || used + m.tokens > budget {
            return false;
        }
        used += m.tokens;
        turns.push(m);
        true
    })?;
    turns.reverse();
    let after_summary = match covered_to {
        Some(t) => session.next_seq.saturating_sub(t + 1),
        None => session.next_seq,
    };
    Ok(ContextWindow {
        session_id: session.id.clone(),
        budget_tokens: budget,
        used_tokens: used,
        estimator: ESTIMATOR.to_owned(),
        system,
        summary,
        summary_omitted,
        omitted_messages: after_summary.saturating_sub(turns.len() as u64),
        messages: turns,
    })
}
