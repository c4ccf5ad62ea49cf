//! `pause` and `resume` of a service: SIGSTOP to its process group, answered once /proc shows
//! every thread of every member stopped, or unable to run user code again before it stops (in
//! an uninterruptible wait with SIGSTOP pending: see `procfs::still_running`), or SIGCONT back
//! and an error after
//! [`PAUSE_TIMEOUT_MS`]); SIGCONT to thaw it. A paused service is never thawed by a stop:
//! [`Supervisor::send_stop`](super::Supervisor) sends it SIGKILL instead.

use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use super::procfs::{group_running, still_running};
use super::{State, Supervisor};
use crate::control::{self, PauseReply};
use zigral_init_protocol::PAUSE_TIMEOUT_MS;

/// How often `pause` looks at /proc while waiting for the group to stop.
const POLL: Duration = Duration::from_millis(1);

/// Sends `sig` to process group `pid` and to `pid` itself (as a stop does).
fn signal_group(pid: Pid, sig: Signal) {
    let _ = kill(Pid::from_raw(-pid.as_raw()), sig);
    let _ = kill(pid, sig);
}

/// SIGSTOP to the group of `pid`; waits until none of its processes runs. `Err` names one
/// that still ran at `timeout`.
fn freeze(pid: Pid, timeout: Duration) -> Result<Duration, i32> {
    let t0 = Instant::now();
    signal_group(pid, Signal::SIGSTOP);
    let mut pending = group_running(pid.as_raw());
    loop {
        pending.retain(|p| still_running(*p));
        if pending.is_empty() {
            // One more full pass: a member /proc did not list on the first one.
            pending = group_running(pid.as_raw());
            if pending.is_empty() {
                return Ok(t0.elapsed());
            }
        }
        if t0.elapsed() >= timeout {
            return Err(pending[0]);
        }
        std::thread::sleep(POLL);
    }
}

impl Supervisor {
    /// A `pause` request: the reply line.
    pub(super) fn pause(&mut self, name: &str) -> String {
        let Some(i) = self.idx(name) else {
            return control::err_line(&format!("unknown service {name:?}"));
        };
        let s = &mut self.services[i];
        let pid = match (s.pid, &s.state) {
            (Some(pid), State::Starting { .. } | State::Ready | State::Running) => pid,
            _ => {
                return control::err_line(&format!(
                    "{name} is not running ({})",
                    s.state.public().as_str()
                ));
            }
        };
        let timeout = Duration::from_millis(PAUSE_TIMEOUT_MS);
        match freeze(pid, timeout) {
            Ok(took) => {
                if !s.paused {
                    tracing::info!(
                        "control: pause {name}: stopped (SIGSTOP) in {} us",
                        took.as_micros()
                    );
                }
                s.paused = true;
                control::ok_line(&PauseReply {
                    service: name.to_owned(),
                    paused: true,
                })
            }
            Err(running) => {
                signal_group(pid, Signal::SIGCONT);
                s.paused = false;
                let msg =
                    format!("{name} did not stop within {timeout:?} (pid {running} still runs)");
                tracing::warn!("control: pause {name}: {msg}; resumed it");
                control::err_line(&format!("{msg}; it was resumed"))
            }
        }
    }

    /// A `resume` request: the reply line.
    pub(super) fn resume(&mut self, name: &str) -> String {
        let Some(i) = self.idx(name) else {
            return control::err_line(&format!("unknown service {name:?}"));
        };
        let s = &mut self.services[i];
        if s.paused && matches!(s.state, State::Stopping { .. }) {
            // It got SIGKILL while frozen: it must not run again.
            return control::err_line(&format!(
                "{name} is being killed while paused; it is not resumed"
            ));
        }
        if let Some(pid) = s.pid {
            signal_group(pid, Signal::SIGCONT);
        }
        if s.paused {
            tracing::info!("control: resume {name} (SIGCONT)");
        }
        s.paused = false;
        control::ok_line(&PauseReply {
            service: name.to_owned(),
            paused: false,
        })
    }
}
