//! The per-service record (`Svc`) and its life-cycle `State`: what the event loop knows about
//! one service between its transitions; and the per-instance record (`Group`): a template
//! instance's params, limits, purge paths and cgroup.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use nix::unistd::Pid;

use crate::config::{GroupSpec, ServiceSpec};
use crate::control;

/// Life-cycle state of one service, with the data that only that state has.
#[derive(Debug, Clone)]
pub enum State {
    /// Not running and not wanted.
    Stopped,
    /// Wanted, waiting for its dependencies (reported as `starting`).
    Waiting,
    /// Process started, readiness probe pending.
    Starting {
        /// Stops the probe thread; `None` once the probe has reported.
        probe_cancel: Option<Arc<AtomicBool>>,
        /// Why the probe failed (the process has been killed; its exit reports this).
        probe_failed: Option<String>,
    },
    /// Readiness probe passed.
    Ready,
    /// Running; it has no readiness probe.
    Running,
    /// Exited; restart scheduled.
    Backoff {
        /// When the restart is due.
        next_start: Instant,
    },
    /// Stop signal sent.
    Stopping {
        /// When the process group gets SIGKILL.
        deadline: Instant,
        /// SIGKILL has been sent.
        killed: bool,
    },
    /// Gave up (crash-loop limit, or `never` policy and a failure).
    Failed,
}

impl State {
    /// The state as the control socket reports it.
    pub fn public(&self) -> control::ServiceState {
        use control::ServiceState as P;
        match self {
            State::Stopped => P::Stopped,
            State::Waiting | State::Starting { .. } => P::Starting,
            State::Ready => P::Ready,
            State::Running => P::Running,
            State::Backoff { .. } => P::Backoff,
            State::Stopping { .. } => P::Stopping,
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
    /// The delay chosen for the latest restart (reported as `backoff_ms`).
    pub(super) backoff: Option<Duration>,
    pub(super) generation: u64,
    /// Frozen by `pause` (SIGSTOP to its process group); it is never sent SIGCONT by a stop,
    /// only SIGKILL. Cleared when its process exits.
    pub(super) paused: bool,
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
            backoff: None,
            generation: 0,
            paused: false,
        }
    }

    pub(super) fn is_up(&self) -> bool {
        matches!(self.state, State::Ready | State::Running)
    }

    pub(super) fn cancel_probe(&mut self) {
        if let State::Starting { probe_cancel, .. } = &mut self.state
            && let Some(c) = probe_cancel.take()
        {
            c.store(true, Ordering::Relaxed);
        }
    }
}

/// A live template instance (`desktop@3`).
#[derive(Debug)]
pub(super) struct Group {
    /// Params, limits asked for (updated by `limits` requests) and purge paths.
    pub(super) spec: GroupSpec,
    /// Its cgroup directory when cgroup v2 limits are in force.
    pub(super) cgroup: Option<PathBuf>,
}
