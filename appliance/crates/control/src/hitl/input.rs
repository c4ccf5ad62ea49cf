//! The agent asking a person: `request_human_input {kind, prompt}` with kind `2fa`,
//! `captcha`, `confirm` or `takeover`.
//!
//! The asking side ([`ask`]) registers the request on the session's agent, publishes
//! `agent.input_requested` and waits for an answer, a takeover (a person takes the control
//! lease and releases it: they did it themselves), a stop or the timeout; what happened comes
//! back as text for the model. The answering side ([`answer`]) checks the answer against the
//! kind; a 2FA code is typed at once into the focused field — only on the host the request
//! was made from — like a secret: never stored, redacted while it lives, screenshots withheld
//! while its field has focus.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;
use zeroize::{Zeroize, Zeroizing};
use zigral_actions::Executor;
use zigral_store::{NewAction, SessionRecord};

use crate::agents::{AgentState, Ctl, SessionAgent};
use crate::events::Event;
use crate::state::AppState;

/// How long a typed 2FA code stays in the redaction set.
const CODE_REDACTED_FOR: Duration = Duration::from_secs(15 * 60);
/// Longest prompt / answer text.
const MAX_TEXT: usize = 2000;

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// What the agent asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum InputKind {
    /// A one-time code (SMS, authenticator app, e-mail): the person gives it, the control plane
    /// types it into the focused field.
    #[serde(rename = "2fa")]
    TwoFa,
    /// A captcha: the person takes control and solves it (or answers `done`).
    Captcha,
    /// A yes/no question.
    Confirm,
    /// The person should take control and do something themselves.
    Takeover,
}

impl InputKind {
    pub fn as_str(self) -> &'static str {
        match self {
            InputKind::TwoFa => "2fa",
            InputKind::Captcha => "captcha",
            InputKind::Confirm => "confirm",
            InputKind::Takeover => "takeover",
        }
    }
}

/// The agent's request (the tool's input).
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InputRequest {
    pub kind: InputKind,
    /// What to tell the person (1–2000 characters).
    pub prompt: String,
}

/// A request waiting for a person.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PendingInput {
    pub id: u64,
    pub kind: InputKind,
    pub prompt: String,
    /// Who asked (`agent:<profile>` or an API caller).
    pub asked_by: String,
    pub asked_at: u64,
    /// When the request gives up (ms since the epoch).
    pub expires_at: u64,
    /// Host of the page when the request was made (a 2FA code is typed only there).
    pub host: Option<String>,
}

/// How a person answered.
#[derive(Debug, Clone)]
pub enum InputAnswer {
    /// A 2FA code was typed into the focused field on `host`.
    CodeTyped { host: String },
    /// A yes/no answer.
    Confirmed { approve: bool, text: Option<String> },
    /// The person did it.
    Done { text: Option<String> },
    /// The person will not do it.
    Declined { text: Option<String> },
}

/// A person's answer (`POST /sessions/{id}/input`).
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InputAnswerBody {
    /// The request's id.
    pub id: u64,
    /// For `2fa`: the code; typed into the focused field, never stored.
    pub code: Option<String>,
    /// For `confirm`.
    pub approve: Option<bool>,
    /// For `captcha` / `takeover`: the person did it.
    pub done: Option<bool>,
    /// The person will not do it.
    pub decline: Option<bool>,
    /// A note for the agent (up to 2000 characters).
    pub text: Option<String>,
}

impl std::fmt::Debug for InputAnswerBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InputAnswerBody")
            .field("id", &self.id)
            .field("code", &self.code.as_ref().map(|_| "***"))
            .field("approve", &self.approve)
            .field("done", &self.done)
            .field("decline", &self.decline)
            .finish()
    }
}

impl Drop for InputAnswerBody {
    fn drop(&mut self) {
        if let Some(c) = &mut self.code {
            c.zeroize();
        }
    }
}

/// Why a request or an answer was refused.
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    #[error("{0}")]
    Invalid(String),
    #[error("the agent already waits for a person's input")]
    Busy,
    #[error("no request for input {0} is waiting (it was answered, timed out or stopped)")]
    NotPending(u64),
    #[error("{0}")]
    Refused(String),
    #[error("the agent was stopped")]
    Stopped,
    #[error("{0}")]
    Desktop(String),
}

fn now_ms() -> u64 {
    zigral_store::now_ms()
}

fn check_text(what: &str, t: &str, required: bool) -> Result<(), InputError> {
    let n = t.trim().chars().count();
    if (required && n == 0) || t.chars().count() > MAX_TEXT {
        return Err(InputError::Invalid(format!(
            "{what} must be {}–{MAX_TEXT} characters",
            u8::from(required)
        )));
    }
    Ok(())
}

async fn current_host(exec: &Executor) -> Option<String> {
    let tab = exec.browser()?.current().await.ok()?;
    url::Url::parse(&tab.url)
        .ok()?
        .host_str()
        .map(str::to_ascii_lowercase)
}

/// Asks a person and waits (see the module doc); the text the model gets back.
pub async fn ask(
    st: &AppState,
    s: &SessionRecord,
    agent: &SessionAgent,
    exec: &Executor,
    req: InputRequest,
    timeout: Duration,
    asked_by: &str,
) -> Result<String, InputError> {
    check_text("prompt", &req.prompt, true)?;
    let asked_at = now_ms();
    let pending = PendingInput {
        id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
        kind: req.kind,
        prompt: req.prompt.clone(),
        asked_by: asked_by.to_owned(),
        asked_at,
        expires_at: asked_at + timeout.as_millis() as u64,
        host: current_host(exec).await,
    };
    let id = pending.id;
    // A 2FA prompt is open: the desktop's recording is frozen until it closes (the typed code
    // then keeps it frozen until its field loses focus).
    let _frozen = if req.kind == InputKind::TwoFa {
        st.recordings()
            .hold(st, s.desktop, "a person is asked for a 2FA code")
            .await
    } else {
        None
    };
    let mut rx = agent.ask_input(pending.clone()).ok_or(InputError::Busy)?;
    let prior = agent.status();
    // Whatever happens, the agent's state is what it was before the question.
    let _restore = Restore {
        st,
        s,
        agent,
        state: prior.state,
        waiting_for: prior.waiting_for,
    };
    let before = agent.update(|a| {
        a.state = AgentState::Waiting;
        a.waiting_for = Some(format!("a person ({}): {}", req.kind.as_str(), req.prompt));
    });
    let publish = |kind: &str, data: serde_json::Value| {
        st.publish(Event::new(kind, Some(&s.id), Some(&s.owner), data));
    };
    publish("agent.input_requested", json!({"input": pending}));
    publish(
        "agent.state",
        json!({"state": before.state, "waiting_for": before.waiting_for}),
    );
    let deadline = tokio::time::Instant::now() + timeout;
    let mut ctl = agent.subscribe_ctl();
    let mut lease = st.control().subscribe();
    let mut taken = st.control().holder(&s.id).is_some();
    let outcome = loop {
        tokio::select! {
            a = &mut rx => break a.map_err(|_| InputError::Stopped),
            () = tokio::time::sleep_until(deadline) => {
                agent.clear_input(id);
                publish("agent.input_answered", json!({"id": id, "kind": req.kind, "how": "timeout"}));
                return Ok(format!(
                    "No one answered the request for {} within {} s.",
                    req.kind.as_str(),
                    timeout.as_secs()
                ));
            }
            r = ctl.changed() => {
                if r.is_err() || *ctl.borrow() == Ctl::Stop {
                    agent.clear_input(id);
                    return Err(InputError::Stopped);
                }
            }
            r = lease.changed() => {
                if r.is_err() {
                    continue;
                }
                let held = st.control().holder(&s.id).is_some();
                if held {
                    taken = true;
                } else if taken {
                    agent.clear_input(id);
                    break Ok(InputAnswer::Done {
                        text: Some("they took control of the desktop and released it".into()),
                    });
                }
            }
        }
    };
    let answer = outcome?;
    let how = match &answer {
        InputAnswer::CodeTyped { .. } => "code_typed",
        InputAnswer::Confirmed { .. } => "confirmed",
        InputAnswer::Done { .. } => "done",
        InputAnswer::Declined { .. } => "declined",
    };
    publish(
        "agent.input_answered",
        json!({"id": id, "kind": req.kind, "how": how}),
    );
    let note = |t: &Option<String>| t.as_ref().map(|t| format!(": {t}")).unwrap_or_default();
    Ok(match answer {
        InputAnswer::CodeTyped { host } => format!(
            "The person typed the code into the focused field on {host} (you never see it). \
             Continue, e.g. submit the form."
        ),
        InputAnswer::Confirmed { approve, text } => format!(
            "The person answered {}{}.",
            if approve { "yes" } else { "no" },
            note(&text)
        ),
        InputAnswer::Done { text } => format!(
            "The person did it{}. Look at the screen before you go on.",
            note(&text)
        ),
        InputAnswer::Declined { text } => format!("The person declined{}.", note(&text)),
    })
}

/// Puts the agent's state back when a wait for input ends.
struct Restore<'a> {
    st: &'a AppState,
    s: &'a SessionRecord,
    agent: &'a SessionAgent,
    state: AgentState,
    waiting_for: Option<String>,
}

impl Drop for Restore<'_> {
    fn drop(&mut self) {
        let now = self.agent.update(|a| {
            a.state = self.state;
            a.waiting_for = self.waiting_for.take();
        });
        self.st.publish(Event::new(
            "agent.state",
            Some(&self.s.id),
            Some(&self.s.owner),
            json!({"state": now.state, "waiting_for": now.waiting_for}),
        ));
    }
}

/// Answers request `body.id` of session `s` as user `who` (see the module doc).
pub async fn answer(
    st: &AppState,
    s: &SessionRecord,
    who: &str,
    body: &InputAnswerBody,
) -> Result<PendingInput, InputError> {
    let agent = st
        .agents()
        .get(&s.id)
        .ok_or(InputError::NotPending(body.id))?;
    let pending = agent
        .pending_input()
        .filter(|p| p.id == body.id)
        .ok_or(InputError::NotPending(body.id))?;
    if let Some(t) = &body.text {
        check_text("text", t, false)?;
    }
    let text = body.text.clone().filter(|t| !t.trim().is_empty());
    let decline = body.decline == Some(true);
    let answer = if decline {
        InputAnswer::Declined { text }
    } else {
        match pending.kind {
            InputKind::TwoFa => {
                let Some(code) = body.code.as_deref() else {
                    return Err(InputError::Invalid(
                        "a 2fa request needs \"code\" (or \"decline\": true)".into(),
                    ));
                };
                let code = Zeroizing::new(code.trim().to_owned());
                if code.is_empty()
                    || code.chars().count() > 64
                    || code.chars().any(char::is_control)
                {
                    return Err(InputError::Invalid(
                        "code must be 1–64 characters without control characters".into(),
                    ));
                }
                let host = type_code(st, s, who, &pending, &code).await?;
                InputAnswer::CodeTyped { host }
            }
            InputKind::Confirm => match body.approve {
                Some(approve) => InputAnswer::Confirmed { approve, text },
                None => {
                    return Err(InputError::Invalid(
                        "a confirm request needs \"approve\": true or false".into(),
                    ));
                }
            },
            InputKind::Captcha | InputKind::Takeover => {
                if body.done != Some(true) {
                    return Err(InputError::Invalid(format!(
                        "a {} request needs \"done\": true (or take control of the desktop, \
                         do it and release control)",
                        pending.kind.as_str()
                    )));
                }
                InputAnswer::Done { text }
            }
        }
    };
    let (_, tx) = agent
        .take_input(body.id)
        .ok_or(InputError::NotPending(body.id))?;
    let _ = tx.send(answer);
    st.audit(
        who,
        "agent.input_answered",
        &s.id,
        json!({"id": body.id, "kind": pending.kind, "declined": decline}),
    )
    .await;
    Ok(pending)
}

/// Types a person's 2FA code into the focused field, only on the host the code was asked
/// from; logged without the code.
async fn type_code(
    st: &AppState,
    s: &SessionRecord,
    who: &str,
    pending: &PendingInput,
    code: &Zeroizing<String>,
) -> Result<String, InputError> {
    let exec = super::executor(st, s.desktop)
        .await
        .map_err(InputError::Desktop)?;
    let (field, host) = super::secret::focused(&exec)
        .await
        .map_err(|e| InputError::Refused(e.to_string()))?;
    if let Some(asked) = &pending.host
        && *asked != host
    {
        return Err(InputError::Refused(format!(
            "the focused field is on {host}, not on {asked} where the code was asked for; \
             the code was not typed"
        )));
    }
    st.hitl()
        .vault()
        .add_transient(&s.owner, "2fa_code", code.clone(), CODE_REDACTED_FOR);
    let started = std::time::Instant::now();
    let typed = super::secret::type_value(st, s, &exec, &field, "2fa code", code).await;
    let entry = NewAction {
        who: who.to_owned(),
        what: json!({"action": "human_input", "input": {"kind": "2fa", "id": pending.id},
                     "via": "person", "index": 0}),
        result: json!({"host": host, "typed": typed.is_ok()}),
        ok: typed.is_ok(),
        duration_ms: started.elapsed().as_millis() as u64,
    };
    if let Err(e) = st.store().append_actions(&s.id, vec![entry]).await {
        tracing::error!(session = %s.id, error = %e, "cannot log a typed 2fa code");
    }
    typed.map_err(|e| InputError::Desktop(st.hitl().redact_all(&e.to_string()).into_owned()))?;
    Ok(host)
}
