//! The per-service record (`Svc`) and its life-cycle `State`: what the event loop knows about
//! one service between its transitions.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use nix::unistd::Pid;

use crate::config::ServiceSpec;
use crate::control;

/// Life-cycle state of one service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Not running and not wanted.
    Stopped,
    /// Wanted, waiting for its dependencies (reported as `starting`).
    Waiting,
    /// Process started, readiness probe pending.
    Starting,
    /// Readiness probe passed.
    Ready,
    /// Running; it has no readiness probe.
    Running,
    /// Exited; restart scheduled.
    Backoff,
    /// Stop signal sent.
    Stopping,
    /// Gave up (crash-loop limit, or `never` policy and a failure).
    Failed,
}

impl State {
    /// The state as the control socket reports it.
    pub fn public(self) -> control::ServiceState {
        use control::ServiceState as P;
        match self {
            State::Stopped => P::Stopped,
            State::Waiting | State::Starting => P::Starting,
            State::Ready => P::Ready,
            State::Running => P::Running,
            State::Backoff => P::Backoff,
            State::Stopping => P::Stopping,
            State::Failed => P::Failed,
        }
    }
}

#[derive(Debug)]
pub(super) struct Svc {
    pub(super) spec: ServiceSpec,
    pub(super) state: State,
    pub(super) want_up: bool,
    pub(super) restart_pending: bool,
    pub(super) pid: Option<Pid>,
    pub(super) started_at: Option<Instant>,
    pub(super) ready_after: Option<Duration>,
    pub(super) restarts: u32,
    pub(super) consecutive: u32,
    pub(super) last_exit: Option<String>,
    pub(super) next_start: Option<Instant>,
    pub(super) backoff: Option<Duration>,
    pub(super) stop_deadline: Option<Instant>,
    pub(super) killed: bool,
    pub(super) probe_cancel: Option<Arc<AtomicBool>>,
    pub(super) generation: u64,
    pub(super) probe_failed: Option<String>,
}

impl Svc {
    pub(super) fn new(spec: ServiceSpec) -> Svc {
        let want = spec.autostart;
        Svc {
            spec,
            state: if want { State::Waiting } else { State::Stopped },
            want_up: want,
            restart_pending: false,
            pid: None,
            started_at: None,
            ready_after: None,
            restarts: 0,
            consecutive: 0,
            last_exit: None,
            next_start: None,
            backoff: None,
            stop_deadline: None,
            killed: false,
            probe_cancel: None,
            generation: 0,
            probe_failed: None,
        }
    }

    pub(super) fn is_up(&self) -> bool {
        matches!(self.state, State::Ready | State::Running)
    }

    pub(super) fn cancel_probe(&mut self) {
        if let Some(c) = self.probe_cancel.take() {
            c.store(true, Ordering::Relaxed);
        }
    }
}
