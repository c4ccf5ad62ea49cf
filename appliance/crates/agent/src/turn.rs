//! One chat turn of the agent loop.
//!
//! ```text
//! user text ─► [gate] ─► keep under budget (summarize) ─► prune images ─► provider request
//!                ▲                                                          │
//!                │   results (screenshot, text) ◄── Env::act per call ◄─────┘ tool calls
//!                └───────────────────────────────────────────────────────────┘
//! ```
//! The turn ends when the model ends it (no tool call), at the step limit, on a stop, when a
//! person must decide (a safety check or risky action they declined or that is waiting), on a
//! refusal or output-token limit, or on an error the client's retries did not cure. Every tool
//! call the model made gets a result before the next request, so the conversation stays valid
//! even when the turn is interrupted.

use std::time::Instant;

use futures_util::future::BoxFuture;
use zigral_llm::{
    Call, Client, Family, Image, LlmError, Reply, Stop, ToolCall, ToolOutcome, Transcript, Usage,
};

use crate::describe::describe;
use crate::profile::Settings;

/// Why the loop cannot go on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Halt {
    /// Someone stopped the agent.
    #[error("stopped")]
    Stopped,
}

/// What a person is asked to approve.
#[derive(Debug, Clone)]
pub enum Approval {
    /// The provider flagged the call (OpenAI pending safety checks).
    SafetyChecks {
        call: String,
        checks: Vec<zigral_llm::SafetyCheck>,
    },
    /// The call matched one of the profile's risky patterns.
    Risky {
        call: String,
        pattern: String,
        /// The element under the pointer and the page URL the pattern was matched with.
        context: String,
    },
}

/// A person's answer to an approval.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub approved: bool,
    /// Why it was declined (a person's comment, or that no one answered in time).
    pub reason: Option<String>,
}

/// One tool call's result.
#[derive(Debug, Clone)]
pub struct Acted {
    pub outcome: ToolOutcome,
    /// Whether every action of the call succeeded.
    pub ok: bool,
}

/// Progress the loop reports (the control plane turns these into events and messages).
#[derive(Debug, Clone)]
pub enum Report {
    /// The model's text of one reply (empty replies are not reported).
    Text { text: String },
    /// A provider request finished.
    Request {
        n: u32,
        stop: String,
        usage: Usage,
        retries: u32,
        context_tokens: u32,
    },
    /// Older turns were replaced by a summary.
    Summarized {
        summary: String,
        dropped_messages: usize,
        tokens_before: u32,
        tokens_after: u32,
    },
    /// Old screenshots were dropped from the conversation.
    Pruned { images: usize },
    /// The loop waits for a person (approval or a released control lease).
    Waiting { reason: String },
}

/// What the loop needs from its surroundings: the desktop, the person, the record.
pub trait Env: Send + Sync {
    /// Resolves when the agent may act (not paused, no person holds control); `Err` once it is
    /// stopped. Called before every request and every tool call.
    fn gate(&self) -> BoxFuture<'_, Result<(), Halt>>;
    /// Resolves when a stop is requested (used to abandon a provider request mid-flight).
    fn stopped(&self) -> BoxFuture<'_, ()>;
    /// Runs one tool call on the desktop (logged and published by the implementation).
    fn act<'a>(&'a self, step: u32, call: &'a ToolCall) -> BoxFuture<'a, Acted>;
    /// The screen as the model sees it, without acting (for results of calls that did not
    /// run: OpenAI's `computer_call_output` always carries a screenshot).
    fn look(&self) -> BoxFuture<'_, Option<Image>>;
    /// Asks a person. Resolves when they answer (or the implementation's timeout declines).
    fn approve(&self, what: Approval) -> BoxFuture<'_, Result<Answer, Halt>>;
    /// What the risky patterns are matched on besides the call itself: the role and
    /// accessible name of the element under the pointer and the page URL, as
    /// `element: <role> "<name>" | url: <url>` (empty when unknown).
    fn risk_context<'a>(&'a self, call: &'a ToolCall) -> BoxFuture<'a, String>;
    /// What people did since the last request that the model must hear (undos, rejects,
    /// corrections); added to the conversation before the next request.
    fn notes(&self) -> Vec<String>;
    /// Progress (recorded before the loop goes on: a turn's text is stored when the turn
    /// ends); never fails.
    fn report(&self, r: Report) -> BoxFuture<'_, ()>;
}

/// How a turn ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    EndTurn,
    MaxSteps,
    Stopped,
    /// A person declined an approval; the reason.
    Declined(String),
    Refusal,
    MaxTokens,
    Error(String),
}

impl Outcome {
    /// The stored name (`AgentTurnRecord::outcome`).
    pub fn as_str(&self) -> &'static str {
        match self {
            Outcome::EndTurn => "end_turn",
            Outcome::MaxSteps => "max_steps",
            Outcome::Stopped => "stopped",
            Outcome::Declined(_) => "declined",
            Outcome::Refusal => "refusal",
            Outcome::MaxTokens => "max_tokens",
            Outcome::Error(_) => "error",
        }
    }
}

/// The result of [`run_turn`].
#[derive(Debug, Clone)]
pub struct TurnOutcome {
    pub outcome: Outcome,
    pub steps: u32,
    pub requests: u32,
    pub usage: Usage,
    /// The model's last text.
    pub text: String,
    /// Context estimate before the last request.
    pub context_tokens: u32,
    pub started: Instant,
}

/// User turns kept verbatim when older ones are summarized.
pub const KEEP_TURNS: usize = 4;

fn add(u: &mut Usage, v: &Usage) {
    u.input_tokens += v.input_tokens;
    u.output_tokens += v.output_tokens;
    u.cache_creation_input_tokens += v.cache_creation_input_tokens;
    u.cache_read_input_tokens += v.cache_read_input_tokens;
}

/// Runs one chat turn: `user_text` (if any; `None` continues after a pause) is added to `t`,
/// then the loop runs until the turn ends. `t` stays a valid conversation whatever happens.
pub async fn run_turn(
    client: &Client,
    t: &mut Transcript,
    settings: &Settings,
    env: &dyn Env,
    user_text: Option<&str>,
) -> TurnOutcome {
    let mut out = TurnOutcome {
        outcome: Outcome::EndTurn,
        steps: 0,
        requests: 0,
        usage: Usage::default(),
        text: String::new(),
        context_tokens: 0,
        started: Instant::now(),
    };
    if let Some(text) = user_text {
        t.push_user_text(text);
    }
    let budget = settings.profile.context_budget_tokens;
    let keep = settings.profile.keep_images as usize;
    loop {
        if env.gate().await.is_err() {
            out.outcome = Outcome::Stopped;
            return out;
        }
        for note in env.notes() {
            t.push_user_text(&note);
        }
        if t.estimate_tokens() > budget {
            let before = t.estimate_tokens();
            let older = t.text_before(KEEP_TURNS);
            if !older.is_empty() {
                match client.summarize(&older).await {
                    Ok((summary, usage)) => {
                        add(&mut out.usage, &usage);
                        let dropped = t.compact(&summary, KEEP_TURNS);
                        env.report(Report::Summarized {
                            summary,
                            dropped_messages: dropped,
                            tokens_before: before,
                            tokens_after: t.estimate_tokens(),
                        })
                        .await;
                    }
                    Err(e) => {
                        out.outcome = Outcome::Error(format!(
                            "The conversation is over its token budget and summarizing it failed: {}",
                            e.plain()
                        ));
                        return out;
                    }
                }
            }
        }
        if keep > 0 {
            let dropped = t.prune_images(keep, keep);
            if dropped > 0 {
                env.report(Report::Pruned { images: dropped }).await;
            }
        }
        out.context_tokens = t.estimate_tokens();
        let reply: Result<Reply, LlmError> = {
            let mut ignore = |_: &str| {};
            tokio::select! {
                r = client.next(t, &mut ignore) => r,
                () = env.stopped() => {
                    out.outcome = Outcome::Stopped;
                    return out;
                }
            }
        };
        let reply = match reply {
            Ok(r) => r,
            Err(e) => {
                out.outcome = Outcome::Error(e.plain());
                return out;
            }
        };
        out.requests += 1;
        add(&mut out.usage, &reply.usage);
        env.report(Report::Request {
            n: out.requests,
            stop: stop_name(&reply.stop),
            usage: reply.usage,
            retries: reply.retries,
            context_tokens: out.context_tokens,
        })
        .await;
        if !reply.text.trim().is_empty() {
            out.text = reply.text.clone();
            env.report(Report::Text {
                text: reply.text.clone(),
            })
            .await;
        }
        if reply.calls.is_empty() {
            out.outcome = match &reply.stop {
                // The model paused a long turn: send it back as-is to let it continue.
                Stop::PauseTurn => continue,
                Stop::Refusal(_) => Outcome::Refusal,
                Stop::MaxTokens => Outcome::MaxTokens,
                Stop::ContextExceeded => Outcome::Error(
                    "The conversation no longer fits the model's context window.".into(),
                ),
                _ => Outcome::EndTurn,
            };
            return out;
        }
        let mut results = Vec::with_capacity(reply.calls.len());
        let mut end: Option<Outcome> = None;
        for call in &reply.calls {
            if let Some(why) = &end {
                results.push(skipped(call, why));
                continue;
            }
            if out.steps >= settings.profile.max_steps {
                end = Some(Outcome::MaxSteps);
                results.push(skipped(call, &Outcome::MaxSteps));
                continue;
            }
            if env.gate().await.is_err() {
                end = Some(Outcome::Stopped);
                results.push(skipped(call, &Outcome::Stopped));
                continue;
            }
            let mut acknowledged = Vec::new();
            if let Some(approval) = needs_approval(settings, env, call).await {
                let what = match &approval {
                    Approval::SafetyChecks { checks, .. } => {
                        format!("{} safety check(s) to acknowledge", checks.len())
                    }
                    Approval::Risky { pattern, .. } => {
                        format!("a risky action (pattern {pattern})")
                    }
                };
                env.report(Report::Waiting {
                    reason: format!("approval needed: {what}"),
                })
                .await;
                let checks = match &approval {
                    Approval::SafetyChecks { checks, .. } => checks.clone(),
                    Approval::Risky { .. } => Vec::new(),
                };
                match env.approve(approval).await {
                    Ok(Answer { approved: true, .. }) => acknowledged = checks,
                    Ok(Answer { reason, .. }) => {
                        let why = Outcome::Declined(match reason {
                            Some(r) => format!("a person declined {what}: {r}"),
                            None => format!("a person declined {what}"),
                        });
                        results.push(skipped(call, &why));
                        end = Some(why);
                        continue;
                    }
                    Err(Halt::Stopped) => {
                        end = Some(Outcome::Stopped);
                        results.push(skipped(call, &Outcome::Stopped));
                        continue;
                    }
                }
            }
            out.steps += 1;
            let mut acted = env.act(out.steps, call).await;
            acted.outcome.acknowledged = acknowledged;
            results.push(acted.outcome);
        }
        if settings.generation.family() == Family::Responses
            && results.iter().any(|r| r.image.is_none())
        {
            let shot = env.look().await;
            for r in results.iter_mut().filter(|r| r.image.is_none()) {
                r.image = shot.clone();
            }
        }
        if let Err(e) = t.push_results(results) {
            out.outcome = Outcome::Error(format!("internal error: {e}"));
            return out;
        }
        if let Some(why) = end {
            out.outcome = why;
            return out;
        }
    }
}

async fn needs_approval(settings: &Settings, env: &dyn Env, tc: &ToolCall) -> Option<Approval> {
    let call = &tc.call;
    if let Call::OpenAi {
        pending_safety_checks,
        ..
    } = call
        && !pending_safety_checks.is_empty()
    {
        // Checks are never acknowledged without a person, whatever the profile says.
        return Some(Approval::SafetyChecks {
            call: describe(call, false),
            checks: pending_safety_checks.clone(),
        });
    }
    if !settings.profile.hitl.approve_risky || settings.risky.is_empty() {
        return None;
    }
    let mut subject = describe(call, true);
    let context = env.risk_context(tc).await;
    if !context.is_empty() {
        subject.push_str(" | ");
        subject.push_str(&context);
    }
    if let Some(p) = settings.risky_match(&subject) {
        return Some(Approval::Risky {
            call: describe(call, false),
            pattern: p.to_owned(),
            context,
        });
    }
    None
}

/// The result of a call that did not run.
fn skipped(call: &ToolCall, why: &Outcome) -> ToolOutcome {
    let text = match why {
        Outcome::MaxSteps => "Not run: the step limit of this turn was reached.".to_owned(),
        Outcome::Stopped => "Not run: the user stopped the agent.".to_owned(),
        Outcome::Declined(w) => format!("Not run: {w}."),
        other => format!("Not run ({}).", other.as_str()),
    };
    ToolOutcome::error(call.id.clone(), text)
}

fn stop_name(s: &Stop) -> String {
    match s {
        Stop::EndTurn => "end_turn".into(),
        Stop::ToolUse => "tool_use".into(),
        Stop::PauseTurn => "pause_turn".into(),
        Stop::MaxTokens => "max_tokens".into(),
        Stop::Refusal(_) => "refusal".into(),
        Stop::ContextExceeded => "model_context_window_exceeded".into(),
        Stop::Other(o) => o.clone(),
    }
}
