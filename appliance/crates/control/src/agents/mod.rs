//! The built-in agent of each session: its state (idle, running, paused, waiting for a person),
//! its conversation with the provider (kept in the provider's wire format between chat turns),
//! stop/pause/resume/approve, and the thumbnails its steps reference. [`runner`] runs a chat
//! turn with zigral-agent's loop; [`hands`] turns the model's tool calls into logged actions on
//! the session's desktop; [`keys`] keeps the profiles' write-only API keys.

pub mod hands;
pub mod keys;
pub mod runner;

use std::collections::{HashMap, VecDeque};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use serde::Serialize;
use tokio::sync::{oneshot, watch};
use utoipa::ToSchema;
use zigral_store::TokenUsage;

use keys::KeyStore;

/// Where a person's answer to an approval goes: approved, and their comment.
type ApprovalTx = oneshot::Sender<(bool, Option<String>)>;
/// Where a person's answer to a request for input goes.
type InputTx = oneshot::Sender<crate::hitl::input::InputAnswer>;

/// Thumbnails kept per session (the newest steps).
pub const THUMBNAILS: usize = 64;

/// What a person asked the running agent to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ctl {
    Run,
    Pause,
    Stop,
}

/// The agent's state, as the API and the events show it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AgentState {
    /// No turn is running.
    Idle,
    /// A turn is running.
    Running,
    /// Paused by a person; resumes on `resume`.
    Paused,
    /// Waiting for a person: an approval, or a control lease to be released.
    Waiting,
}

/// A pending approval.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PendingApproval {
    pub id: u64,
    /// `safety_checks` or `risky`.
    pub kind: String,
    /// The call, described without typed text.
    pub call: String,
    /// Provider safety checks (code and message) or the matching risky pattern, and what it
    /// was matched with (the element under the pointer, the URL).
    pub details: Vec<String>,
    /// When the approval counts as declined if no one answers (ms since the epoch).
    pub expires_at: u64,
}

/// The agent's status (`GET /sessions/{id}/agent`).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct AgentStatus {
    pub state: AgentState,
    /// Profile of the running or last turn.
    pub profile: Option<String>,
    /// Why it waits, when `state` is `waiting` or `paused`.
    pub waiting_for: Option<String>,
    pub approval: Option<PendingApproval>,
    /// Steps and requests of the running (or last) turn.
    pub steps: u32,
    pub requests: u32,
    /// Token usage of the running (or last) turn.
    pub usage: TokenUsage,
    /// How the last turn ended (`end_turn`, `max_steps`, `stopped`, `declined`, `refusal`,
    /// `max_tokens`, `error`).
    pub last_outcome: Option<String>,
    /// The last turn's error, in plain words.
    pub last_error: Option<String>,
    /// Turns finished since the appliance started.
    pub turns_finished: u64,
}

/// One session's agent.
pub struct SessionAgent {
    pub session: String,
    ctl: watch::Sender<Ctl>,
    status: Mutex<AgentStatus>,
    busy: AtomicBool,
    /// The conversation with the provider between turns.
    pub(crate) convo: tokio::sync::Mutex<Option<runner::Convo>>,
    approval: Mutex<Option<(u64, ApprovalTx)>>,
    next_approval: AtomicU64,
    thumbs: Mutex<VecDeque<(u64, Vec<u8>)>>,
    /// Steps taken over the session's life (thumbnail numbers); loaded from the stored turns
    /// on first use.
    pub(crate) step_counter: AtomicU64,
    steps_loaded: AtomicBool,
    finished: watch::Sender<u64>,
    /// Held while a step acts on the desktop (an undo waits for it).
    pub(crate) hands: tokio::sync::Mutex<()>,
    /// What people did that the model must hear before its next request (undos, rejects,
    /// corrections), oldest first.
    notes: Mutex<Vec<String>>,
    /// A pending `request_human_input`.
    input: Mutex<Option<(crate::hitl::input::PendingInput, InputTx)>>,
    /// A feedback prompt the loop waits for (its record seq).
    feedback_wait: Mutex<Option<(u64, oneshot::Sender<()>)>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl SessionAgent {
    fn new(session: &str) -> SessionAgent {
        SessionAgent {
            session: session.to_owned(),
            ctl: watch::channel(Ctl::Run).0,
            status: Mutex::new(AgentStatus {
                state: AgentState::Idle,
                profile: None,
                waiting_for: None,
                approval: None,
                steps: 0,
                requests: 0,
                usage: TokenUsage::default(),
                last_outcome: None,
                last_error: None,
                turns_finished: 0,
            }),
            busy: AtomicBool::new(false),
            convo: tokio::sync::Mutex::new(None),
            approval: Mutex::new(None),
            next_approval: AtomicU64::new(1),
            thumbs: Mutex::new(VecDeque::new()),
            step_counter: AtomicU64::new(0),
            steps_loaded: AtomicBool::new(false),
            finished: watch::channel(0).0,
            hands: tokio::sync::Mutex::new(()),
            notes: Mutex::new(Vec::new()),
            input: Mutex::new(None),
            feedback_wait: Mutex::new(None),
        }
    }

    pub fn status(&self) -> AgentStatus {
        lock(&self.status).clone()
    }

    pub(crate) fn update(&self, f: impl FnOnce(&mut AgentStatus)) -> AgentStatus {
        let mut s = lock(&self.status);
        f(&mut s);
        s.clone()
    }

    /// Claims the session for a new turn; false if one is running.
    pub(crate) fn try_begin(&self) -> bool {
        if self.busy.swap(true, Ordering::AcqRel) {
            return false;
        }
        self.ctl.send_replace(Ctl::Run);
        true
    }

    /// Gives back a claim that never started a turn.
    pub(crate) fn unclaim(&self) {
        self.busy.store(false, Ordering::Release);
    }

    pub(crate) fn end(&self) {
        self.busy.store(false, Ordering::Release);
        self.finished.send_modify(|n| *n += 1);
    }

    pub fn busy(&self) -> bool {
        self.busy.load(Ordering::Acquire)
    }

    /// Resolves when the number of finished turns exceeds `seen`.
    pub async fn wait_finished(&self, seen: u64) {
        let mut rx = self.finished.subscribe();
        let _ = rx.wait_for(|n| *n > seen).await;
    }

    pub fn finished_count(&self) -> u64 {
        *self.finished.borrow()
    }

    pub fn ctl(&self) -> Ctl {
        *self.ctl.borrow()
    }

    pub fn subscribe_ctl(&self) -> watch::Receiver<Ctl> {
        self.ctl.subscribe()
    }

    /// Pause, resume or stop the running turn. A stop also declines a pending approval.
    pub fn set_ctl(&self, c: Ctl) {
        self.ctl.send_replace(c);
        if c == Ctl::Stop {
            if let Some((_, tx)) = lock(&self.approval).take() {
                let _ = tx.send((false, None));
            }
            // Dropping the senders ends the waits.
            lock(&self.input).take();
            lock(&self.feedback_wait).take();
        }
    }

    /// Registers a pending approval; the receiver resolves with the person's answer.
    pub(crate) fn ask(&self, mut p: PendingApproval) -> oneshot::Receiver<(bool, Option<String>)> {
        let (tx, rx) = oneshot::channel();
        p.id = self.next_approval.fetch_add(1, Ordering::Relaxed);
        *lock(&self.approval) = Some((p.id, tx));
        self.update(|s| {
            s.state = AgentState::Waiting;
            s.waiting_for = Some(format!("approval of {}", p.call));
            s.approval = Some(p);
        });
        rx
    }

    /// Withdraws the pending approval `id` (it timed out).
    pub(crate) fn withdraw(&self, id: u64) {
        let mut slot = lock(&self.approval);
        if slot.as_ref().is_some_and(|(i, _)| *i == id) {
            *slot = None;
            drop(slot);
            self.update(|s| {
                s.approval = None;
                s.waiting_for = None;
            });
        }
    }

    /// Answers the pending approval (with a person's comment); false if there is none.
    pub fn answer(&self, approve: bool, comment: Option<String>) -> bool {
        let Some((_, tx)) = lock(&self.approval).take() else {
            return false;
        };
        self.update(|s| {
            s.approval = None;
            s.waiting_for = None;
            s.state = AgentState::Running;
        });
        tx.send((approve, comment)).is_ok()
    }

    /// Agent steps taken in this session so far (across turns and restarts).
    pub fn steps_taken(&self, store: &zigral_store::Store) -> u64 {
        if !self.steps_loaded.swap(true, Ordering::AcqRel) {
            let stored: u64 = store
                .list_agent_turns(&self.session, None, usize::MAX)
                .map(|t| t.iter().map(|t| u64::from(t.steps)).sum())
                .unwrap_or(0);
            self.step_counter.fetch_max(stored, Ordering::AcqRel);
        }
        self.step_counter.load(Ordering::Acquire)
    }

    /// Numbers the next step (1-based over the session's life).
    pub(crate) fn next_step(&self, store: &zigral_store::Store) -> u64 {
        self.steps_taken(store);
        self.step_counter.fetch_add(1, Ordering::AcqRel) + 1
    }

    /// Queues a note for the model's next request.
    pub fn note(&self, text: String) {
        lock(&self.notes).push(text);
    }

    /// Takes the queued notes.
    pub fn take_notes(&self) -> Vec<String> {
        std::mem::take(&mut *lock(&self.notes))
    }

    /// Registers a pending request for human input (replacing none: the caller checks).
    pub(crate) fn ask_input(
        &self,
        p: crate::hitl::input::PendingInput,
    ) -> Option<oneshot::Receiver<crate::hitl::input::InputAnswer>> {
        let mut slot = lock(&self.input);
        if slot.as_ref().is_some_and(|(_, tx)| !tx.is_closed()) {
            return None;
        }
        let (tx, rx) = oneshot::channel();
        *slot = Some((p, tx));
        Some(rx)
    }

    /// The pending request for human input, if any.
    pub fn pending_input(&self) -> Option<crate::hitl::input::PendingInput> {
        lock(&self.input)
            .as_ref()
            .filter(|(_, tx)| !tx.is_closed())
            .map(|(p, _)| p.clone())
    }

    /// Takes the pending request `id` to answer it.
    pub(crate) fn take_input(
        &self,
        id: u64,
    ) -> Option<(crate::hitl::input::PendingInput, InputTx)> {
        let mut slot = lock(&self.input);
        match &*slot {
            Some((p, tx)) if p.id == id && !tx.is_closed() => slot.take(),
            _ => None,
        }
    }

    /// Clears a pending request (answered elsewhere, timed out).
    pub(crate) fn clear_input(&self, id: u64) {
        let mut slot = lock(&self.input);
        if slot.as_ref().is_some_and(|(p, _)| p.id == id) {
            *slot = None;
        }
    }

    /// The loop waits for the answer to feedback prompt `seq`.
    pub(crate) fn wait_feedback(&self, seq: u64) -> oneshot::Receiver<()> {
        let (tx, rx) = oneshot::channel();
        *lock(&self.feedback_wait) = Some((seq, tx));
        rx
    }

    /// Wakes the loop if it waits for prompt `seq`.
    pub(crate) fn feedback_answered(&self, seq: u64) {
        let mut slot = lock(&self.feedback_wait);
        if slot.as_ref().is_some_and(|(s, _)| *s == seq)
            && let Some((_, tx)) = slot.take()
        {
            let _ = tx.send(());
        }
    }

    pub(crate) fn put_thumbnail(&self, step: u64, jpeg: Vec<u8>) {
        let mut t = lock(&self.thumbs);
        t.push_back((step, jpeg));
        while t.len() > THUMBNAILS {
            t.pop_front();
        }
    }

    pub fn thumbnail(&self, step: u64) -> Option<Vec<u8>> {
        lock(&self.thumbs)
            .iter()
            .find(|(n, _)| *n == step)
            .map(|(_, b)| b.clone())
    }
}

/// Every session's agent, created on first use.
pub struct Agents {
    keys: KeyStore,
    sessions: Mutex<HashMap<String, Arc<SessionAgent>>>,
}

impl Agents {
    pub fn new(state_dir: &Path) -> Agents {
        Agents {
            keys: KeyStore::new(state_dir),
            sessions: Mutex::new(HashMap::new()),
        }
    }

    pub fn keys(&self) -> &KeyStore {
        &self.keys
    }

    /// The session's agent, if it ever ran.
    pub fn get(&self, session: &str) -> Option<Arc<SessionAgent>> {
        lock(&self.sessions).get(session).cloned()
    }

    /// The session's agent, created if needed.
    pub fn entry(&self, session: &str) -> Arc<SessionAgent> {
        lock(&self.sessions)
            .entry(session.to_owned())
            .or_insert_with(|| Arc::new(SessionAgent::new(session)))
            .clone()
    }

    /// Stops and forgets a session's agent (the session was deleted or its agent changed).
    pub fn forget(&self, session: &str) {
        if let Some(a) = lock(&self.sessions).remove(session) {
            a.set_ctl(Ctl::Stop);
        }
    }
}
