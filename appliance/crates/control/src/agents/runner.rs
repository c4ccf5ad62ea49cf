//! Runs one chat turn of a session's agent: loads and checks the profile, makes sure of the
//! desktop, arms the navigation guard for the profile's allowed domains, opens the start URL
//! on the first turn, keeps the provider conversation between turns, runs zigral-agent's loop
//! with this module's [`Env`] (pause/stop, control leases, approvals, logged actions, events),
//! and records the turn's usage.

use std::sync::Arc;

use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use serde_json::json;
use zigral_actions::{Action, BatchRequest, Executor};
use zigral_agent::{Acted, Answer, Approval, Env, Halt, Outcome, Report, Settings, run_turn};
use zigral_browser::UrlPolicy;
use zigral_llm::{ApiKey, Client, Family, ToolCall, Transcript};
use zigral_store::{AgentTurnRecord, NewMessage, SessionRecord, SummaryRecord, TokenUsage};

use super::hands::{StepCtx, act, declared_display};
use super::{AgentState, Ctl, PendingApproval, SessionAgent};
use crate::api::actions::run_logged;
use crate::error::ApiError;
use crate::events::Event;
use crate::state::AppState;
use crate::tokens_estimate::{MESSAGE_OVERHEAD, text_tokens};

/// The provider conversation kept between turns.
pub struct Convo {
    pub profile: String,
    pub profile_updated_at: u64,
    pub transcript: Transcript,
}

/// How a finished turn is reported to a waiting caller.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct TurnView {
    pub turn: Option<u64>,
    pub outcome: String,
    pub error: Option<String>,
    pub steps: u32,
    pub requests: u32,
    pub usage: TokenUsage,
    /// The model's last text.
    pub text: String,
}

/// A claimed turn: the profile and key are good and no other turn runs; [`Claim::spawn`]
/// starts it, dropping the claim gives it back.
pub struct Claim {
    st: AppState,
    session: SessionRecord,
    agent: Arc<SessionAgent>,
    settings: Option<Settings>,
    key: Option<ApiKey>,
}

impl Drop for Claim {
    fn drop(&mut self) {
        if self.settings.is_some() {
            self.agent.unclaim();
        }
    }
}

/// Checks that the session's agent can start a turn now (a profile, valid, with its API key;
/// no turn running) and claims it, before anything is stored.
pub fn claim(st: &AppState, session: &SessionRecord) -> Result<Claim, ApiError> {
    let Some(profile_id) = session.agent.clone() else {
        return Err(ApiError::conflict("this session has no agent"));
    };
    let profile = st.store().get_agent(&profile_id)?.ok_or_else(|| {
        ApiError::conflict(format!("agent profile {profile_id} no longer exists"))
    })?;
    let settings = Settings::check(&profile)
        .map_err(|e| ApiError::invalid(format!("the agent profile is not valid: {e}")))?;
    let key = api_key(st, &settings)?;
    let agent = st.agents().entry(&session.id);
    if !agent.try_begin() {
        return Err(ApiError::new(
            axum::http::StatusCode::CONFLICT,
            "agent_busy",
            "the agent is already working on a turn; stop it or wait for it to finish",
        ));
    }
    Ok(Claim {
        st: st.clone(),
        session: session.clone(),
        agent,
        settings: Some(settings),
        key,
    })
}

impl Claim {
    /// The session's agent.
    pub fn agent(&self) -> &Arc<SessionAgent> {
        &self.agent
    }

    /// Starts the claimed turn on `text` (already stored as a message) in the background.
    pub fn spawn(mut self, text: String) -> Arc<SessionAgent> {
        let Some(settings) = self.settings.take() else {
            return self.agent.clone();
        };
        let (st, session, agent, key) = (
            self.st.clone(),
            self.session.clone(),
            self.agent.clone(),
            self.key.take(),
        );
        agent.update(|s| {
            s.state = AgentState::Running;
            s.profile = Some(settings.profile.id.clone());
            s.waiting_for = None;
            s.approval = None;
            s.steps = 0;
            s.requests = 0;
            s.usage = TokenUsage::default();
        });
        let handle = agent.clone();
        tokio::spawn(async move {
            let view = run(&st, &session, &agent, settings, key, text).await;
            let s = agent.update(|s| {
                s.state = AgentState::Idle;
                s.waiting_for = None;
                s.approval = None;
                s.last_outcome = Some(view.outcome.clone());
                s.last_error = view.error.clone();
                s.turns_finished += 1;
            });
            st.publish(Event::new(
                "agent.turn.ended",
                Some(&session.id),
                Some(&session.owner),
                json!({"turn": view.turn, "outcome": view.outcome, "error": view.error,
                       "steps": view.steps, "requests": view.requests, "usage": view.usage,
                       "state": s.state}),
            ));
            agent.end();
        });
        handle
    }
}

fn api_key(st: &AppState, s: &Settings) -> Result<Option<ApiKey>, ApiError> {
    let p = &s.profile;
    if let Some(var) = &p.provider.api_key_env {
        return match std::env::var(var) {
            Ok(v) if !v.is_empty() => Ok(Some(ApiKey::new(v))),
            _ => Err(ApiError::invalid(format!(
                "the profile takes its API key from ${var}, which is not set for the control plane"
            ))),
        };
    }
    let key = st.agents().keys().get(&p.id).map_err(ApiError::internal)?;
    if key.is_none() && s.generation.family() != Family::Chat {
        return Err(ApiError::invalid(
            "the agent profile has no API key: PUT /api/v1/agents/{id}/api-key",
        ));
    }
    Ok(key)
}

async fn run(
    st: &AppState,
    session: &SessionRecord,
    agent: &Arc<SessionAgent>,
    settings: Settings,
    key: Option<ApiKey>,
    text: String,
) -> TurnView {
    let started_at = zigral_store::now_ms();
    let mut view = TurnView {
        turn: None,
        outcome: "error".into(),
        error: None,
        steps: 0,
        requests: 0,
        usage: TokenUsage::default(),
        text: String::new(),
    };
    st.publish(Event::new(
        "agent.turn.started",
        Some(&session.id),
        Some(&session.owner),
        json!({"profile": settings.profile.id}),
    ));
    let prepared = prepare(st, session).await;
    let (session, exec) = match prepared {
        Ok(v) => v,
        Err(e) => {
            view.error = Some(format!("The desktop is not available: {e}"));
            record(st, &session.id, &settings, started_at, &mut view, 0).await;
            return view;
        }
    };
    let policy = UrlPolicy {
        allowed_domains: (!settings.profile.allowed_domains.is_empty())
            .then(|| settings.profile.allowed_domains.clone()),
        allow_file: false,
    };
    exec.set_policy(policy.clone());
    let _guard = match exec.browser() {
        Some(b) => match b.guard_navigation(policy).await {
            Ok(g) => {
                // Refused navigations are events (the host only: a URL can carry tokens).
                let mut rx = g.subscribe();
                let (st2, sid, owner) = (st.clone(), session.id.clone(), session.owner.clone());
                tokio::spawn(async move {
                    while let Ok(b) = rx.recv().await {
                        let host = url::Url::parse(&b.url)
                            .ok()
                            .and_then(|u| u.host_str().map(str::to_owned))
                            .unwrap_or_else(|| b.url.split(':').next().unwrap_or("").to_owned());
                        st2.publish(Event::new(
                            "agent.navigation_blocked",
                            Some(&sid),
                            Some(&owner),
                            json!({"host": host, "how": b.how, "reason": b.reason}),
                        ));
                    }
                });
                Some(g)
            }
            Err(e) => {
                view.error = Some(format!("Cannot guard the browser's navigations: {e}"));
                record(st, &session.id, &settings, started_at, &mut view, 0).await;
                return view;
            }
        },
        None => None,
    };
    let screen = match exec.screen_size().await {
        Ok(s) => s,
        Err(e) => {
            view.error = Some(format!("The desktop is not available: {e}"));
            record(st, &session.id, &settings, started_at, &mut view, 0).await;
            return view;
        }
    };
    let declared = declared_display(screen);
    let spec = settings.provider_spec(key, (declared.width, declared.height));
    let redact_st = st.clone();
    let redact_owner = session.owner.clone();
    let client = match Client::new(spec)
        .and_then(|c| {
            if settings.generation.family() == Family::Chat {
                c.with_function_tools(zigral_actions::functions::tools())
            } else {
                Ok(c)
            }
        })
        .and_then(|c| c.with_extra_tools(super::hands::extra_tools()))
        .map(|c| {
            // Nothing that leaves for the provider carries a secret value.
            c.with_redactor(Arc::new(move |body: &str| {
                redact_st
                    .hitl()
                    .redactor(&redact_owner)
                    .redact(body)
                    .into_owned()
            }))
        }) {
        Ok(c) => c,
        Err(e) => {
            view.error = Some(e.plain());
            record(st, &session.id, &settings, started_at, &mut view, 0).await;
            return view;
        }
    };
    let mut convo = agent.convo.lock().await;
    let fresh = !matches!(&*convo, Some(c) if c.profile == settings.profile.id
        && c.profile_updated_at == settings.profile.updated_at);
    if fresh {
        let mut system = settings.profile.system_prompt.clone();
        if let Some(p) = &session.system_prompt {
            system.push_str("\n\n");
            system.push_str(p);
        }
        system.push_str(HITL_PROMPT);
        let corrections = crate::hitl::feedback::corrections(
            st,
            &settings.profile.id,
            settings.profile.hitl.corrections_in_context as usize,
        );
        if !corrections.is_empty() {
            system.push_str(
                "\n\nCorrections people gave on earlier runs of this agent (newest first):\n",
            );
            for c in &corrections {
                system.push_str("- ");
                system.push_str(c);
                system.push('\n');
            }
        }
        let mut t = Transcript::new(settings.generation, &system);
        if let Some(earlier) = earlier_conversation(st, &session) {
            t.push_user_text(&earlier);
        }
        *convo = Some(Convo {
            profile: settings.profile.id.clone(),
            profile_updated_at: settings.profile.updated_at,
            transcript: t,
        });
        if let Some(url) = &settings.profile.start_url {
            let req = BatchRequest {
                actions: vec![Action::Navigate { url: url.clone() }],
                screenshot: None,
            };
            let who = format!("agent:{}", settings.profile.id);
            let r = run_logged(
                st,
                &session,
                who,
                "agent",
                exec.clone(),
                |exec| async move {
                    let resp = exec.run(&req).await?;
                    Ok(((), req, resp))
                },
            )
            .await;
            if let Err(e) = r {
                tracing::warn!(session = %session.id, error = %e, "agent start URL did not open");
            }
        }
    }
    let Some(c) = convo.as_mut() else {
        view.error = Some("internal error: no conversation".into());
        return view;
    };
    let creds = st.hitl().vault().list(&session.owner);
    if !creds.is_empty() {
        let list: Vec<String> = creds
            .iter()
            .map(|c| format!("{} (for {})", c.name, c.domains.join(", ")))
            .collect();
        agent.note(format!(
            "Credentials you can type with type_secret (you never see their values): {}.",
            list.join("; ")
        ));
    }
    let env = TurnEnv {
        st,
        agent,
        session: &session,
        exec: &exec,
        profile: settings.profile.id.clone(),
        declared,
        screen,
        want_url: settings.generation.family() == Family::Responses,
        hitl: settings.profile.hitl.clone(),
        instruction: text.clone(),
        risky: std::sync::atomic::AtomicBool::new(false),
    };
    let out = run_turn(&client, &mut c.transcript, &settings, &env, Some(&text)).await;
    let context = out.context_tokens;
    view.steps = out.steps;
    view.requests = out.requests;
    view.usage = usage_of(&out.usage);
    view.text = out.text.clone();
    view.outcome = out.outcome.as_str().to_owned();
    view.error = match &out.outcome {
        Outcome::Error(e) => Some(e.clone()),
        Outcome::Declined(e) => Some(e.clone()),
        Outcome::Refusal => Some("The model refused to continue.".into()),
        Outcome::MaxTokens => Some("The model's reply hit its output-token limit.".into()),
        Outcome::MaxSteps => Some(format!(
            "Stopped after {} steps (the profile's limit).",
            settings.profile.max_steps
        )),
        _ => None,
    };
    if let Some(e) = &view.error {
        // Errors are shown in the chat, in plain words.
        store_message(
            st,
            &session,
            "assistant",
            &format!("⚠ {e}"),
            &settings.profile.id,
        )
        .await;
    }
    record(st, &session.id, &settings, started_at, &mut view, context).await;
    view
}

/// The session (re-read) and its desktop's executor, in managed mode creating the desktop.
async fn prepare(
    st: &AppState,
    session: &SessionRecord,
) -> Result<(SessionRecord, Executor), String> {
    let mut s = st
        .store()
        .get_session(&session.id)
        .map_err(|e| e.to_string())?
        .ok_or("the session was deleted")?;
    s.desktop = st.vdi().ensure(&s).await.map_err(|e| e.to_string())?;
    let exec = st
        .desktops()
        .executor(s.desktop)
        .await
        .map_err(|e| e.to_string())?;
    Ok((s, exec))
}

/// The stored conversation before this turn's message, as one text (after a restart or a
/// profile change the provider conversation starts over from it).
fn earlier_conversation(st: &AppState, s: &SessionRecord) -> Option<String> {
    let w = crate::context::assemble(st.store(), s, 20_000).ok()?;
    let mut out = String::new();
    if let Some(sum) = &w.summary {
        out.push_str("Summary of the earlier conversation:\n");
        out.push_str(&sum.text);
        out.push('\n');
    }
    // The last message is this turn's own text.
    let n = w.messages.len().saturating_sub(1);
    for m in &w.messages[..n] {
        let text: Vec<&str> = m
            .content
            .as_array()
            .map(|parts| {
                parts
                    .iter()
                    .filter_map(|p| p.get("text").and_then(|t| t.as_str()))
                    .collect()
            })
            .unwrap_or_default();
        if !text.is_empty() {
            out.push_str(&format!("{}: {}\n", m.role, text.join(" ")));
        }
    }
    (!out.is_empty()).then(|| format!("Earlier in this conversation:\n{out}"))
}

fn usage_of(u: &zigral_llm::Usage) -> TokenUsage {
    TokenUsage {
        input_tokens: u.input_tokens,
        output_tokens: u.output_tokens,
        cache_creation_input_tokens: u.cache_creation_input_tokens,
        cache_read_input_tokens: u.cache_read_input_tokens,
    }
}

async fn record(
    st: &AppState,
    session: &str,
    settings: &Settings,
    started_at: u64,
    view: &mut TurnView,
    context_tokens: u32,
) {
    let rec = AgentTurnRecord {
        turn: 0,
        profile: settings.profile.id.clone(),
        started_at,
        ended_at: zigral_store::now_ms(),
        steps: view.steps,
        requests: view.requests,
        outcome: view.outcome.clone(),
        error: view.error.clone(),
        usage: view.usage,
        context_tokens,
    };
    match st.store().append_agent_turn(session, rec).await {
        Ok(r) => view.turn = Some(r.turn),
        Err(e) => tracing::error!(session, error = %e, "cannot record an agent turn"),
    }
}

async fn store_message(st: &AppState, s: &SessionRecord, role: &str, text: &str, profile: &str) {
    let text = &*st.hitl().redactor(&s.owner).redact(text).into_owned();
    let msg = NewMessage {
        role: role.into(),
        content: json!([{"type": "text", "text": text}]),
        tokens: text_tokens(text) + MESSAGE_OVERHEAD,
        author: format!("agent:{profile}"),
    };
    match st.store().append_message(&s.id, msg).await {
        Ok(m) => st.publish(Event::new(
            "message.appended",
            Some(&s.id),
            Some(&s.owner),
            json!({"seq": m.seq, "role": m.role}),
        )),
        Err(e) => tracing::error!(session = %s.id, error = %e, "cannot store the agent's message"),
    }
}

/// The loop's surroundings for one turn.
struct TurnEnv<'a> {
    st: &'a AppState,
    agent: &'a Arc<SessionAgent>,
    session: &'a SessionRecord,
    exec: &'a Executor,
    profile: String,
    declared: zigral_desktop::Size,
    screen: zigral_desktop::Size,
    want_url: bool,
    hitl: zigral_store::HitlSettings,
    instruction: String,
    /// Set when the loop approved a risky call, consumed by the next `act`.
    risky: std::sync::atomic::AtomicBool,
}

/// What every agent is told about the human-in-the-loop tools.
const HITL_PROMPT: &str = "\n\nWhen a site needs a password or username, use the type_secret \
tool with a credential name you were given (click the field first): you never see the values, \
and screenshots are withheld while such a field has focus. When a site asks for a one-time \
code, focus the code field and call request_human_input with kind \"2fa\". For a captcha or \
anything only a person should do, call request_human_input (\"captcha\" or \"takeover\"); \
for a yes/no decision, kind \"confirm\".";

impl TurnEnv<'_> {
    fn step_ctx(&self, risky: bool) -> StepCtx<'_> {
        StepCtx {
            st: self.st,
            agent: self.agent,
            session: self.session,
            exec: self.exec,
            profile: &self.profile,
            declared: self.declared,
            want_url: self.want_url,
            hitl: &self.hitl,
            instruction: &self.instruction,
            risky,
        }
    }

    /// Where a call puts the pointer, in screen pixels.
    fn pointer_of(&self, call: &zigral_llm::Call) -> Option<(i32, i32)> {
        use serde_json::Value;
        let pair = |v: &Value| -> Option<(f64, f64)> {
            if let Some(a) = v.get("coordinate").and_then(Value::as_array) {
                return Some((a.first()?.as_f64()?, a.get(1)?.as_f64()?));
            }
            Some((v.get("x")?.as_f64()?, v.get("y")?.as_f64()?))
        };
        let (x, y) = match call {
            zigral_llm::Call::Anthropic { input } => pair(input)?,
            zigral_llm::Call::OpenAi { actions, .. } => actions.iter().find_map(pair)?,
            zigral_llm::Call::Function { arguments, .. } => pair(arguments)?,
            zigral_llm::Call::Malformed { .. } => return None,
        };
        let fx = f64::from(self.screen.width) / f64::from(self.declared.width.max(1));
        let fy = f64::from(self.screen.height) / f64::from(self.declared.height.max(1));
        Some(((x * fx).round() as i32, (y * fy).round() as i32))
    }
}

impl TurnEnv<'_> {
    fn event(&self, kind: &str, data: serde_json::Value) {
        self.st.publish(Event::new(
            kind,
            Some(&self.session.id),
            Some(&self.session.owner),
            data,
        ));
    }

    fn set_state(&self, state: AgentState, why: Option<String>) {
        let changed = {
            let before = self.agent.status();
            before.state != state || before.waiting_for != why
        };
        if changed {
            let s = self.agent.update(|s| {
                s.state = state;
                s.waiting_for = why.clone();
            });
            self.event(
                "agent.state",
                json!({"state": s.state, "waiting_for": s.waiting_for}),
            );
        }
    }
}

impl Env for TurnEnv<'_> {
    fn gate(&self) -> BoxFuture<'_, Result<(), Halt>> {
        async move {
            let mut ctl = self.agent.subscribe_ctl();
            let mut lease = self.st.control().subscribe();
            loop {
                let now = *ctl.borrow_and_update();
                match now {
                    Ctl::Stop => return Err(Halt::Stopped),
                    Ctl::Pause => {
                        self.set_state(AgentState::Paused, Some("paused by a person".into()));
                        if ctl.changed().await.is_err() {
                            return Err(Halt::Stopped);
                        }
                        continue;
                    }
                    Ctl::Run => {}
                }
                let _ = *lease.borrow_and_update();
                if let Some(h) = self.st.control().holder(&self.session.id) {
                    self.set_state(
                        AgentState::Waiting,
                        Some(format!("{} has control of the desktop", h.user_name)),
                    );
                    // A lease also ends by expiring: look again at least every second.
                    tokio::select! {
                        r = ctl.changed() => if r.is_err() { return Err(Halt::Stopped) },
                        r = lease.changed() => if r.is_err() { return Err(Halt::Stopped) },
                        () = tokio::time::sleep(std::time::Duration::from_secs(1)) => {}
                    }
                    continue;
                }
                self.set_state(AgentState::Running, None);
                return Ok(());
            }
        }
        .boxed()
    }

    fn stopped(&self) -> BoxFuture<'_, ()> {
        async move {
            let mut ctl = self.agent.subscribe_ctl();
            let _ = ctl.wait_for(|c| *c == Ctl::Stop).await;
        }
        .boxed()
    }

    fn act<'a>(&'a self, step: u32, call: &'a ToolCall) -> BoxFuture<'a, Acted> {
        async move {
            let risky = self.risky.swap(false, std::sync::atomic::Ordering::AcqRel);
            let cx = self.step_ctx(risky);
            let (outcome, ok) = act(&cx, step, call).await;
            self.agent.update(|s| s.steps = step);
            Acted { outcome, ok }
        }
        .boxed()
    }

    fn look(&self) -> BoxFuture<'_, Option<zigral_llm::Image>> {
        async move { super::hands::look_gated(&self.step_ctx(false)).await }.boxed()
    }

    fn notes(&self) -> Vec<String> {
        self.agent.take_notes()
    }

    fn risk_context<'a>(&'a self, call: &'a ToolCall) -> BoxFuture<'a, String> {
        async move {
            let Some(b) = self.exec.browser() else {
                return String::new();
            };
            let mut parts = Vec::new();
            let point = match self.pointer_of(&call.call) {
                Some(p) => Some(p),
                None => self
                    .exec
                    .desktop()
                    .cursor_position()
                    .await
                    .ok()
                    .map(|p| (p.x, p.y)),
            };
            if let Some((x, y)) = point
                && let Ok(Some(e)) = b.element_at(x, y).await
            {
                parts.push(format!("element: {} {:?}", e.role, e.name));
            }
            if let Ok(tab) = b.current().await {
                // Without query and fragment: they can carry tokens, and approvals are events.
                let url = match url::Url::parse(&tab.url) {
                    Ok(mut u) => {
                        u.set_query(None);
                        u.set_fragment(None);
                        u.to_string()
                    }
                    Err(_) => tab.url.clone(),
                };
                parts.push(format!("url: {url}"));
            }
            parts.join(" | ")
        }
        .boxed()
    }

    fn approve(&self, what: Approval) -> BoxFuture<'_, Result<Answer, Halt>> {
        async move {
            let limit = std::time::Duration::from_secs(u64::from(self.hitl.approval_timeout_secs));
            let expires_at = zigral_store::now_ms() + limit.as_millis() as u64;
            let pending = match &what {
                Approval::SafetyChecks { call, checks } => PendingApproval {
                    id: 0,
                    kind: "safety_checks".into(),
                    call: call.clone(),
                    details: checks
                        .iter()
                        .map(|c| {
                            format!(
                                "{}: {}",
                                c.code.as_deref().unwrap_or("check"),
                                c.message.as_deref().unwrap_or("")
                            )
                        })
                        .collect(),
                    expires_at,
                },
                Approval::Risky {
                    call,
                    pattern,
                    context,
                } => PendingApproval {
                    id: 0,
                    kind: "risky".into(),
                    call: call.clone(),
                    details: vec![format!("matches {pattern}"), context.clone()],
                    expires_at,
                },
            };
            let risky = pending.kind == "risky";
            let rx = self.agent.ask(pending);
            let s = self.agent.status();
            let id = s.approval.as_ref().map_or(0, |a| a.id);
            self.event("agent.approval", json!({"approval": s.approval}));
            let (approved, reason) = match tokio::time::timeout(limit, rx).await {
                Ok(Ok((a, comment))) => (a, comment),
                Ok(Err(_)) => (false, None),
                Err(_) => {
                    self.agent.withdraw(id);
                    (
                        false,
                        Some(format!("no one answered within {} s", limit.as_secs())),
                    )
                }
            };
            if self.agent.ctl() == Ctl::Stop {
                return Err(Halt::Stopped);
            }
            if approved && risky {
                self.risky.store(true, std::sync::atomic::Ordering::Release);
            }
            self.event(
                "agent.approval.answered",
                json!({"approval": id, "approved": approved, "reason": reason}),
            );
            Ok(Answer { approved, reason })
        }
        .boxed()
    }

    fn report(&self, r: Report) -> BoxFuture<'_, ()> {
        async move {
            match r {
                Report::Text { text } => {
                    self.event("agent.text", json!({"chars": text.chars().count()}));
                    store_message(self.st, self.session, "assistant", &text, &self.profile).await;
                }
                Report::Request {
                    n,
                    stop,
                    usage,
                    retries,
                    context_tokens,
                } => {
                    let u = usage_of(&usage);
                    self.agent.update(|s| {
                        s.requests = n;
                        s.usage.input_tokens += u.input_tokens;
                        s.usage.output_tokens += u.output_tokens;
                        s.usage.cache_creation_input_tokens += u.cache_creation_input_tokens;
                        s.usage.cache_read_input_tokens += u.cache_read_input_tokens;
                    });
                    self.event(
                        "agent.request",
                        json!({"n": n, "stop": stop, "usage": u, "retries": retries,
                               "context_tokens": context_tokens}),
                    );
                }
                Report::Summarized {
                    summary,
                    dropped_messages,
                    tokens_before,
                    tokens_after,
                } => {
                    self.event(
                        "agent.summarized",
                        json!({"dropped_messages": dropped_messages, "tokens_before": tokens_before,
                               "tokens_after": tokens_after}),
                    );
                    self.store_summary(summary).await;
                }
                Report::Pruned { images } => {
                    self.event("agent.pruned", json!({"images": images}));
                }
                Report::Waiting { reason } => {
                    self.event("agent.waiting", json!({"reason": reason}));
                }
            }
        }
        .boxed()
    }
}

impl TurnEnv<'_> {
    /// Stores a summary covering every message so far (context windows start from it).
    async fn store_summary(&self, summary: String) {
        let st = self.st;
        let sid = &self.session.id;
        let next = st
            .store()
            .get_session(sid)
            .ok()
            .flatten()
            .map_or(0, |x| x.next_seq);
        if next == 0 {
            return;
        }
        let rec = SummaryRecord {
            from_seq: 0,
            to_seq: next - 1,
            tokens: text_tokens(&summary) + MESSAGE_OVERHEAD,
            text: summary,
            author: format!("agent:{}", self.profile),
            created_at: 0,
        };
        match st.store().put_summary(sid, rec).await {
            Ok(r) => self.event(
                "summary.stored",
                json!({"from_seq": r.from_seq, "to_seq": r.to_seq}),
            ),
            Err(e) => {
                tracing::error!(session = %sid, error = %e, "cannot store the agent's summary")
            }
        }
    }
}

/// Waits for the agent's turn count to pass `seen`, for `?wait=true` callers.
pub async fn wait_turn(agent: &SessionAgent, seen: u64) {
    agent.wait_finished(seen).await;
}
