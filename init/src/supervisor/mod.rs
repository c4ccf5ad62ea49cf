//! The supervisor: one poll()-driven event loop over a signalfd, the control socket, service
//! log pipes, probe results and timers. It starts services in dependency order, reaps every
//! child (one waitpid(-1) loop), restarts with backoff, and stops in reverse order.

mod control_server;
mod pause;
mod procfs;
mod service;

pub use procfs::children_of;
pub use service::State;

use std::collections::HashMap;
use std::io::{ErrorKind, PipeReader, PipeWriter, Read, Write};
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixListener;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::sync::mpsc::{Receiver, Sender};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::signal::{SigSet, Signal, kill};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;

use crate::cgroup::Cgroups;
use crate::config::{Config, GroupSpec, Policy, ServiceSpec};
use crate::control::Action;
use crate::logs::LogSink;
use crate::probe::{self, ProbeResult};
use crate::vars::expand;
use control_server::{Client, bind_socket, flush_client};
use procfs::all_pids;
use service::{Group, Svc};

/// Errors that stop the supervisor from starting.
#[derive(Debug, thiserror::Error)]
pub enum SupervisorError {
    #[error("{0}")]
    Sys(#[from] nix::Error),
    #[error("{what}: {err}")]
    Io { what: String, err: std::io::Error },
    #[error(
        "another zigral-init is already running with control socket {0} (stop it, or use another --state-dir)"
    )]
    AlreadyRunning(String),
    #[error("{0}")]
    Privilege(#[from] crate::privilege::PrivilegeError),
    #[error("{0}")]
    Guard(#[from] crate::guard::GuardError),
}

fn io_err(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> SupervisorError {
    let what = what.into();
    move |err| SupervisorError::Io { what, err }
}

/// A `destroy` waiting for the instance's processes to be gone.
#[derive(Debug)]
struct PendingDestroy {
    client: u64,
    group: String,
    purge: bool,
}

#[derive(Debug)]
struct LogPipe {
    reader: PipeReader,
    service: String,
}

/// Options that do not come from the config file.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Running as PID 1 (enables the power button and reboot(2) semantics).
    pub pid1: bool,
    /// Where the config came from, for `reload`: None refuses it.
    pub config: Option<ConfigSource>,
}

/// The config file and the overrides it was loaded with (`reload` reads it again with them).
#[derive(Debug, Clone)]
pub struct ConfigSource {
    pub path: std::path::PathBuf,
    pub overrides: crate::config::Overrides,
}

/// The supervisor and everything its event loop owns.
#[derive(Debug)]
pub struct Supervisor {
    cfg: Config,
    opts: Options,
    services: Vec<Svc>,
    sinks: HashMap<String, LogSink>,
    pipes: Vec<LogPipe>,
    listener: UnixListener,
    clients: Vec<Client>,
    next_client: u64,
    sigfd: SignalFd,
    wake_r: PipeReader,
    wake_w: PipeWriter,
    probe_tx: Sender<ProbeResult>,
    probe_rx: Receiver<ProbeResult>,
    cgroups: Option<Cgroups>,
    /// Live template instances, in creation order.
    groups: Vec<Group>,
    /// The "limits recorded but not enforced" line was logged.
    told_unenforced: bool,
    shutdown: Option<Action>,
    pending_destroy: Vec<PendingDestroy>,
    power_button: Option<std::fs::File>,
    started: Instant,
    /// The kernel's uptime when zigral-init started as PID 1 (`/proc/uptime`): the kernel's
    /// and initramfs' share of the boot. None otherwise (a host's uptime says nothing).
    kernel_ms: Option<u64>,
    /// When every service wanted at start was first ready (the boot timeline).
    all_ready: Option<Duration>,
    announced: bool,
    logs_dir: PathBuf,
    /// `[settings] state_user`'s uid (root only): it may use the control socket.
    state_uid: Option<u32>,
    /// The private-port table (root only); removed when the supervisor is dropped.
    _guard: Option<crate::guard::PortGuard>,
}

/// Signals the supervisor takes through its signalfd.
pub const SIGNALS: &[Signal] = &[
    Signal::SIGCHLD,
    Signal::SIGTERM,
    Signal::SIGINT,
    Signal::SIGHUP,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
];

extern "C" fn noop_handler(_: libc::c_int) {}

/// Blocks the supervisor's signals (so they queue for the signalfd) and installs no-op
/// handlers (a PID-namespace init only receives signals it handles). Call before any thread
/// is started.
pub fn block_signals() -> Result<SigSet, nix::Error> {
    let mut set = SigSet::empty();
    for s in SIGNALS {
        set.add(*s);
    }
    set.thread_block()?;
    for s in SIGNALS {
        let act = nix::sys::signal::SigAction::new(
            nix::sys::signal::SigHandler::Handler(noop_handler),
            nix::sys::signal::SaFlags::SA_RESTART,
            SigSet::empty(),
        );
        // SAFETY: the handler does nothing (the signals are blocked and read from a
        // signalfd); installing it cannot violate any invariant.
        unsafe { nix::sys::signal::sigaction(*s, &act) }?;
    }
    Ok(set)
}

/// As root with `[settings] state_user`: creates that user, hands it the state dir (mode 0711:
/// others may pass through to their own desktop directory but list nothing) with what an
/// earlier run left there, and keeps `logs/` (0700) and `desktops/` (0711) for root.
fn prepare_state_dir(cfg: &Config) -> Result<Option<crate::privilege::Owner>, SupervisorError> {
    use crate::privilege::{self, Owner};
    let dir = &cfg.state_dir;
    std::fs::create_dir_all(dir).map_err(io_err(format!("creating {}", dir.display())))?;
    let Some(name) = cfg
        .settings
        .state_user
        .as_deref()
        .filter(|_| privilege::is_root())
    else {
        return Ok(None);
    };
    privilege::check_reachable(dir)?;
    let u = privilege::ensure_user(name, dir)?;
    let owner = Owner {
        uid: u.uid,
        gid: u.gid,
    };
    let root = Owner {
        uid: nix::unistd::Uid::from_raw(0),
        gid: nix::unistd::Gid::from_raw(0),
    };
    // `profiles/` (root, 0711) holds persistent browser profiles of different desktop users:
    // it must never change hands with everything in it.
    let keep_root = ["logs", "desktops", "profiles"];
    let sock_name = cfg.socket.file_name().map(|n| n.to_os_string());
    for e in std::fs::read_dir(dir).map_err(io_err(format!("listing {}", dir.display())))? {
        let e = e.map_err(io_err(format!("listing {}", dir.display())))?;
        let n = e.file_name();
        if keep_root.iter().any(|k| n == *k) || Some(&n) == sock_name.as_ref() {
            continue;
        }
        let meta = e.metadata().map_err(io_err("stat"))?;
        if std::os::unix::fs::MetadataExt::uid(&meta) != u.uid.as_raw() {
            privilege::chown_tree(&e.path(), owner)?;
        }
    }
    privilege::chown(dir, owner)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o711))
        .map_err(io_err("chmod state dir"))?;
    privilege::make_dir(&dir.join("logs"), Some(0o700), Some(root), false)?;
    privilege::make_dir(&dir.join("desktops"), Some(0o711), Some(root), false)?;
    Ok(Some(owner))
}

fn describe(status: WaitStatus) -> (String, bool) {
    match status {
        WaitStatus::Exited(_, code) => (format!("exit {code}"), code == 0),
        WaitStatus::Signaled(_, sig, core) => (
            format!(
                "signal {} ({}){}",
                sig as i32,
                sig.as_str(),
                if core { ", core dumped" } else { "" }
            ),
            false,
        ),
        other => (format!("{other:?}"), false),
    }
}

fn ms(d: Duration) -> u64 {
    d.as_millis().min(u128::from(u64::MAX)) as u64
}

impl Supervisor {
    /// Builds the supervisor: signals, control socket, log directory, cgroups. `sigset` is the
    /// set returned by [`block_signals`].
    pub fn new(cfg: Config, opts: Options, sigset: SigSet) -> Result<Supervisor, SupervisorError> {
        let sigfd = SignalFd::with_flags(&sigset, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)?;
        if !opts.pid1 {
            nix::sys::prctl::set_child_subreaper(true)?;
        }
        let logs_dir = cfg.state_dir.join("logs");
        std::fs::create_dir_all(&logs_dir)
            .map_err(io_err(format!("creating {}", logs_dir.display())))?;
        let state_owner = prepare_state_dir(&cfg)?;
        let listener = bind_socket(&cfg.socket)?;
        if let Some(o) = state_owner {
            // The state user (the control plane) may talk to zigral-init; nobody else.
            crate::privilege::chown(
                &cfg.socket,
                crate::privilege::Owner {
                    uid: nix::unistd::Uid::from_raw(0),
                    gid: o.gid,
                },
            )?;
            std::fs::set_permissions(&cfg.socket, std::fs::Permissions::from_mode(0o660))
                .map_err(io_err("chmod control socket"))?;
        }
        let guard = if cfg.private_ports.is_empty() {
            None
        } else if crate::privilege::is_root() {
            let mut allow = vec![0];
            allow.extend(state_owner.map(|o| o.uid.as_raw()));
            Some(crate::guard::PortGuard::install(
                &cfg.state_dir,
                &cfg.private_ports,
                &allow,
            )?)
        } else {
            tracing::info!(
                "not root: every service runs as this user and private ports are not guarded"
            );
            None
        };
        let (wake_r, wake_w) = std::io::pipe().map_err(io_err("pipe"))?;
        set_nonblocking(wake_r.as_raw_fd())?;
        let (probe_tx, probe_rx) = std::sync::mpsc::channel();
        // As PID 1 the machine's cgroup2 is ours: always enable the controllers (usage is then
        // read from each instance's cgroup). Otherwise only when something asks for limits.
        let cgroups = if opts.pid1
            || cfg
                .services
                .iter()
                .any(|s| s.limits.cpus.is_some() || s.limits.memory.is_some())
            || cfg.templates.iter().any(|t| {
                t.limits.cpus.is_some()
                    || t.limits.memory.is_some()
                    || t.limits.pids.is_some()
                    || t.services
                        .iter()
                        .any(|s| s.limits.cpus.is_some() || s.limits.memory.is_some())
            }) {
            Cgroups::detect()
        } else {
            None
        };
        let power_button = if opts.pid1 {
            crate::pid1::open_power_button()
        } else {
            None
        };
        let mut sup = Supervisor {
            services: Vec::new(),
            sinks: HashMap::new(),
            pipes: Vec::new(),
            listener,
            clients: Vec::new(),
            next_client: 1,
            sigfd,
            wake_r,
            wake_w,
            probe_tx,
            probe_rx,
            cgroups,
            groups: Vec::new(),
            told_unenforced: false,
            shutdown: None,
            pending_destroy: Vec::new(),
            power_button,
            started: Instant::now(),
            kernel_ms: (std::process::id() == 1).then(kernel_uptime_ms).flatten(),
            all_ready: None,
            announced: false,
            logs_dir,
            state_uid: state_owner.map(|o| o.uid.as_raw()),
            _guard: guard,
            opts,
            cfg,
        };
        let specs = sup.cfg.services.clone();
        for s in specs {
            sup.add_service(s);
        }
        for g in sup.cfg.groups.clone() {
            sup.add_group(g);
        }
        tracing::info!(
            "zigral-init {} supervising {} services; state {}; control socket {}",
            env!("CARGO_PKG_VERSION"),
            sup.services.len(),
            sup.cfg.state_dir.display(),
            sup.cfg.socket.display()
        );
        Ok(sup)
    }

    fn add_service(&mut self, spec: ServiceSpec) {
        self.sinks.insert(
            spec.name.clone(),
            LogSink::new(&spec.name, &self.logs_dir, &spec.log),
        );
        self.services.push(Svc::new(spec));
    }

    /// Records a template instance and, with cgroup v2, creates its cgroup with its limits.
    fn add_group(&mut self, spec: GroupSpec) {
        let cgroup = match &self.cgroups {
            Some(cg) => match cg.create_group(&spec.name, &spec.limits) {
                Ok(dir) => Some(dir),
                Err(e) => {
                    tracing::warn!("{}: no cgroup, limits not enforced: {e}", spec.name);
                    None
                }
            },
            None => {
                if spec.limits != Default::default() {
                    self.tell_unenforced(&spec.name);
                }
                None
            }
        };
        self.groups.push(Group { spec, cgroup });
    }

    /// Logs once that instance limits are only recorded (no usable cgroup v2).
    fn tell_unenforced(&mut self, group: &str) {
        if !self.told_unenforced {
            self.told_unenforced = true;
            tracing::info!(
                "{group}: instance limits are recorded but not enforced: no usable cgroup v2 \
                 (see the cgroup line above); rlimits still apply"
            );
        }
    }

    fn group_idx(&self, name: &str) -> Option<usize> {
        self.groups.iter().position(|g| g.spec.name == name)
    }

    fn idx(&self, name: &str) -> Option<usize> {
        self.services.iter().position(|s| s.spec.name == name)
    }

    /// Runs until a shutdown completes; returns the requested action.
    pub fn run(mut self) -> Result<Action, SupervisorError> {
        loop {
            for _ in 0..32 {
                if !self.reconcile() {
                    break;
                }
            }
            self.flush_destroys();
            if let Some(action) = self.shutdown
                && self.services.iter().all(|s| s.pid.is_none())
            {
                self.finish_shutdown();
                return Ok(action);
            }
            let timeout = self.next_timeout();
            self.poll_once(timeout)?;
        }
    }

    /// One pass over timers, stop requests and startable services. Returns true when
    /// something changed that may allow more progress.
    fn reconcile(&mut self) -> bool {
        let now = Instant::now();
        let mut changed = false;
        for s in &mut self.services {
            if let State::Stopping { deadline, killed } = &mut s.state
                && !*killed
                && *deadline <= now
                && let Some(pid) = s.pid
            {
                tracing::warn!(
                    "{} did not stop within {:?} of {}: SIGKILL to its process group",
                    s.spec.name,
                    s.spec.stop_timeout,
                    s.spec.stop_signal.as_str()
                );
                let _ = kill(Pid::from_raw(-pid.as_raw()), Signal::SIGKILL);
                let _ = kill(pid, Signal::SIGKILL);
                *killed = true;
            }
            // A due restart no longer wanted is left to the pass below, which stops it.
            if let State::Backoff { next_start } = s.state
                && next_start <= now
                && s.want_up
            {
                s.state = State::Waiting;
                changed = true;
            }
        }
        // Stops, in reverse dependency order: a service goes down only once no service that
        // depends on it and is also going down still has a process.
        let n = self.services.len();
        for i in 0..n {
            let s = &self.services[i];
            if s.want_up || s.pid.is_none() || matches!(s.state, State::Stopping { .. }) {
                continue;
            }
            let name = s.spec.name.clone();
            let blocked = self
                .services
                .iter()
                .any(|o| !o.want_up && o.pid.is_some() && o.spec.after.contains(&name));
            if !blocked {
                self.send_stop(i);
                changed = true;
            }
        }
        for s in &mut self.services {
            if !s.want_up
                && s.pid.is_none()
                && matches!(
                    s.state,
                    State::Waiting | State::Backoff { .. } | State::Starting { .. }
                )
            {
                s.state = State::Stopped;
                changed = true;
            }
            if s.restart_pending && s.pid.is_none() && self.shutdown.is_none() {
                s.restart_pending = false;
                s.want_up = true;
                s.consecutive = 0;
                s.state = State::Waiting;
                changed = true;
            }
        }
        if self.shutdown.is_none() {
            for i in 0..n {
                if self.services[i].want_up
                    && matches!(self.services[i].state, State::Waiting)
                    && self.deps_up(i)
                {
                    self.start(i);
                    changed = true;
                }
            }
            self.maybe_announce();
        }
        changed
    }

    fn deps_up(&self, i: usize) -> bool {
        self.services[i].spec.after.iter().all(|d| {
            self.idx(d)
                .map(|j| self.services[j].is_up())
                .unwrap_or(false)
        })
    }

    fn maybe_announce(&mut self) {
        if self.announced {
            return;
        }
        let wanted: Vec<&Svc> = self.services.iter().filter(|s| s.want_up).collect();
        if wanted.is_empty() || !wanted.iter().all(|s| s.is_up()) {
            return;
        }
        self.announced = true;
        let all = self.started.elapsed();
        self.all_ready = Some(all);
        tracing::info!("all {} services ready in {} ms", wanted.len(), ms(all));
        let timeline = crate::control::boot_timeline(&self.status());
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{timeline}");
        if let Some(m) = &self.cfg.settings.ready_message
            && let Ok(text) = expand(m, &self.cfg.vars)
        {
            let _ = writeln!(out, "{}", text.trim_end());
        }
        let _ = out.flush();
    }

    fn start(&mut self, i: usize) {
        let cg_fd = {
            let spec = &self.services[i].spec;
            let own = spec.limits.cpus.is_some() || spec.limits.memory.is_some();
            // A service of an instance with a cgroup gets a leaf in it; any other service
            // gets its own cgroup only for its own limits.
            let in_group = spec.group.as_deref().filter(|g| {
                self.groups
                    .iter()
                    .any(|x| x.spec.name == *g && x.cgroup.is_some())
            });
            match &self.cgroups {
                Some(cg) if in_group.is_some() || own => {
                    match cg.prepare(in_group, &spec.name, spec.limits.cpus, spec.limits.memory) {
                        Ok(fd) => Some(fd),
                        Err(e) => {
                            tracing::warn!("{}: cgroup limits not applied: {e}", spec.name);
                            None
                        }
                    }
                }
                _ => None,
            }
        };
        let res = crate::spawn::spawn(&self.services[i].spec, cg_fd.as_ref());
        drop(cg_fd);
        let now = Instant::now();
        match res {
            Ok(sp) => {
                let tx = self.probe_tx.clone();
                let wake = self.wake_w.try_clone();
                let s = &mut self.services[i];
                s.pid = Some(sp.pid);
                s.started_at = Some(now);
                s.ready_after = None;
                s.generation += 1;
                self.pipes.push(LogPipe {
                    reader: sp.output,
                    service: s.spec.name.clone(),
                });
                match (&s.spec.ready, wake) {
                    (Some(p), Ok(wake)) => {
                        tracing::info!("started {} (pid {})", s.spec.name, sp.pid);
                        let cancel = Arc::new(AtomicBool::new(false));
                        s.state = State::Starting {
                            probe_cancel: Some(cancel.clone()),
                            probe_failed: None,
                        };
                        probe::spawn(
                            s.spec.name.clone(),
                            s.generation,
                            p.clone(),
                            cancel,
                            tx,
                            wake,
                        );
                    }
                    (Some(_), Err(e)) => {
                        tracing::error!("{}: cannot start its probe: {e}", s.spec.name);
                        s.state = State::Running;
                    }
                    (None, _) => {
                        tracing::info!(
                            "started {} (pid {}), no readiness probe",
                            s.spec.name,
                            sp.pid
                        );
                        s.state = State::Running;
                    }
                }
            }
            Err(e) => {
                let s = &mut self.services[i];
                tracing::error!("{}: {e}", s.spec.name);
                s.last_exit = Some(format!("start failed: {e}"));
                s.started_at = None;
                self.after_failure(i);
            }
        }
    }

    fn after_failure(&mut self, i: usize) {
        let s = &mut self.services[i];
        s.consecutive += 1;
        let r = &s.spec.restart;
        if s.consecutive > r.limit {
            s.state = State::Failed;
            s.backoff = None;
            tracing::error!(
                "{} failed {} times in a row: giving up (crash-loop limit {}); `zigral-init ctl start {}` retries",
                s.spec.name,
                s.consecutive,
                r.limit,
                s.spec.name
            );
            return;
        }
        let factor = 1u32.checked_shl(s.consecutive - 1).unwrap_or(u32::MAX);
        let delay = r
            .backoff_initial
            .checked_mul(factor)
            .unwrap_or(r.backoff_max)
            .min(r.backoff_max);
        s.state = State::Backoff {
            next_start: Instant::now() + delay,
        };
        s.backoff = Some(delay);
        s.restarts += 1;
        tracing::info!(
            "restarting {} in {} ms (failure {} of at most {})",
            s.spec.name,
            ms(delay),
            s.consecutive,
            r.limit
        );
    }

    fn send_stop(&mut self, i: usize) {
        let s = &mut self.services[i];
        let Some(pid) = s.pid else {
            return;
        };
        s.cancel_probe();
        if s.paused {
            // A frozen service (a screen recorder paused for privacy) must never run again:
            // no stop signal and SIGCONT, SIGKILL at once.
            tracing::info!(
                "stopping {} (pid {}, paused): SIGKILL to its process group, never resumed",
                s.spec.name,
                pid
            );
            let _ = kill(Pid::from_raw(-pid.as_raw()), Signal::SIGKILL);
            let _ = kill(pid, Signal::SIGKILL);
            s.state = State::Stopping {
                deadline: Instant::now(),
                killed: true,
            };
            return;
        }
        tracing::info!(
            "stopping {} (pid {}, {}, timeout {:?})",
            s.spec.name,
            pid,
            s.spec.stop_signal.as_str(),
            s.spec.stop_timeout
        );
        let _ = kill(Pid::from_raw(-pid.as_raw()), s.spec.stop_signal);
        let _ = kill(pid, s.spec.stop_signal);
        s.state = State::Stopping {
            deadline: Instant::now() + s.spec.stop_timeout,
            killed: false,
        };
    }

    fn on_exit(&mut self, pid: Pid, status: WaitStatus) {
        let Some(i) = self.services.iter().position(|s| s.pid == Some(pid)) else {
            tracing::debug!("reaped orphan {pid}: {status:?}");
            return;
        };
        let (desc, success) = describe(status);
        // Whatever the service left in its process group goes with it.
        let _ = kill(Pid::from_raw(-pid.as_raw()), Signal::SIGKILL);
        let s = &mut self.services[i];
        s.pid = None;
        s.paused = false;
        s.cancel_probe();
        let uptime = s.started_at.map(|t| t.elapsed()).unwrap_or_default();
        if matches!(s.state, State::Stopping { .. }) || !s.want_up {
            tracing::info!("{} stopped ({desc})", s.spec.name);
            s.state = State::Stopped;
            s.last_exit = Some(desc);
            return;
        }
        let probe_failed = match &mut s.state {
            State::Starting { probe_failed, .. } => probe_failed.take(),
            _ => None,
        };
        let reason = probe_failed.unwrap_or_else(|| desc.clone());
        // A one-shot (never / on-failure) that succeeds has simply finished its job.
        if success && s.spec.restart.policy != Policy::Always {
            tracing::info!("{} finished: {reason} after {} ms", s.spec.name, ms(uptime));
        } else {
            tracing::warn!("{} exited: {reason} after {} ms", s.spec.name, ms(uptime));
            // A service kept off the console (Chromium) says why it failed only in its log
            // file ("No usable sandbox!"): show its last lines where the operator looks.
            if let Some(sink) = self.sinks.get_mut(&s.spec.name) {
                for line in sink.recent_lines(4) {
                    tracing::warn!("{} last output: {line}", s.spec.name);
                }
                sink.clear_recent();
            }
        }
        s.last_exit = Some(reason);
        let name = s.spec.name.clone();
        if uptime >= s.spec.restart.stable {
            s.consecutive = 0;
        }
        match (s.spec.restart.policy, success) {
            (Policy::Never, true) | (Policy::OnFailure, true) => {
                s.state = State::Stopped;
                s.want_up = false;
            }
            (Policy::Never, false) => {
                s.state = State::Failed;
                s.want_up = false;
            }
            _ => {
                if self.shutdown.is_some() {
                    self.services[i].state = State::Stopped;
                } else {
                    self.after_failure(i);
                }
            }
        }
        if self.shutdown.is_none() {
            for o in &mut self.services {
                if o.spec.restart_with_deps
                    && o.want_up
                    && o.pid.is_some()
                    && o.spec.after.contains(&name)
                {
                    tracing::info!("restarting {} because {name} exited", o.spec.name);
                    o.want_up = false;
                    o.restart_pending = true;
                }
            }
        }
    }

    fn reap(&mut self) {
        loop {
            match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) => break,
                Ok(st) => {
                    if let Some(pid) = st.pid() {
                        self.on_exit(pid, st);
                    }
                }
                Err(Errno::EINTR) => continue,
                Err(_) => break, // ECHILD: no children left
            }
        }
    }

    fn begin_shutdown(&mut self, action: Action, why: &str) {
        if self.shutdown.is_some() {
            tracing::info!("{why}: already shutting down");
            return;
        }
        let then = if self.opts.pid1 {
            action.as_str()
        } else {
            "then exit"
        };
        tracing::info!(
            "{why}: shutting down ({then}), stopping services in reverse dependency order"
        );
        self.shutdown = Some(action);
        for s in &mut self.services {
            s.want_up = false;
            s.restart_pending = false;
        }
    }

    fn finish_shutdown(&mut self) {
        // Orphans adopted from the services (double-forked daemons) go too.
        let me = std::process::id() as i32;
        let deadline = Instant::now() + Duration::from_secs(3);
        let mut round = 0;
        loop {
            let kids = if self.opts.pid1 {
                all_pids()
            } else {
                children_of(me)
            };
            if kids.is_empty() {
                break;
            }
            if round == 0 {
                tracing::info!("killing {} leftover process(es)", kids.len());
            }
            for p in &kids {
                let _ = kill(Pid::from_raw(*p), Signal::SIGKILL);
            }
            std::thread::sleep(Duration::from_millis(20));
            self.reap();
            round += 1;
            if Instant::now() > deadline {
                tracing::warn!("{} process(es) survived SIGKILL", kids.len());
                break;
            }
        }
        self.reap();
        self.flush_destroys();
        for c in &mut self.clients {
            flush_client(c);
        }
        if let Some(cg) = &self.cgroups {
            for s in &self.services {
                cg.remove(s.spec.group.as_deref(), &s.spec.name);
            }
            for g in &self.groups {
                if g.cgroup.is_some()
                    && let Err(e) = cg.remove_group(&g.spec.name)
                {
                    tracing::warn!("{}: removing its cgroup: {e}", g.spec.name);
                }
            }
        }
        let _ = std::fs::remove_file(&self.cfg.socket);
        tracing::info!("all services stopped");
    }

    fn next_timeout(&self) -> i32 {
        let now = Instant::now();
        let mut t: Option<Duration> = None;
        for s in &self.services {
            let due = match s.state {
                State::Stopping {
                    deadline,
                    killed: false,
                } => Some(deadline),
                State::Backoff { next_start } => Some(next_start),
                _ => None,
            };
            if let Some(d) = due {
                let left = d.saturating_duration_since(now);
                t = Some(t.map_or(left, |x| x.min(left)));
            }
        }
        // A destroy waiting for an instance's cgroup to empty (processes that left their
        // service's process group get cgroup.kill): look again soon.
        if !self.pending_destroy.is_empty() && self.cgroups.is_some() {
            let tick = Duration::from_millis(50);
            t = Some(t.map_or(tick, |x| x.min(tick)));
        }
        match t {
            // Round up so the timer has passed when poll returns.
            Some(d) => (d.as_millis() as i64 + 1).min(60_000) as i32,
            None => -1,
        }
    }

    fn poll_once(&mut self, timeout_ms: i32) -> Result<(), SupervisorError> {
        #[derive(Clone, Copy)]
        enum Tag {
            Sig,
            Wake,
            Listen,
            Power,
            Pipe(usize),
            Client(usize),
        }
        let mut fds: Vec<libc::pollfd> = Vec::with_capacity(8 + self.pipes.len());
        let mut tags: Vec<Tag> = Vec::with_capacity(fds.capacity());
        let mut add = |fd: RawFd, events: i16, tag: Tag| {
            fds.push(libc::pollfd {
                fd,
                events,
                revents: 0,
            });
            tags.push(tag);
        };
        add(self.sigfd.as_fd().as_raw_fd(), libc::POLLIN, Tag::Sig);
        add(self.wake_r.as_raw_fd(), libc::POLLIN, Tag::Wake);
        if self.shutdown.is_none() {
            add(self.listener.as_raw_fd(), libc::POLLIN, Tag::Listen);
        }
        if let Some(p) = &self.power_button {
            add(p.as_raw_fd(), libc::POLLIN, Tag::Power);
        }
        for (k, p) in self.pipes.iter().enumerate() {
            add(p.reader.as_raw_fd(), libc::POLLIN, Tag::Pipe(k));
        }
        for (k, c) in self.clients.iter().enumerate() {
            let mut ev = libc::POLLIN;
            if !c.outbuf.is_empty() {
                ev |= libc::POLLOUT;
            }
            add(c.stream.as_raw_fd(), ev, Tag::Client(k));
        }
        // SAFETY: `fds` is a valid, initialised array of `fds.len()` pollfd structs that
        // outlives the call; every fd in it is owned by `self` and open.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout_ms) };
        if n < 0 {
            let e = Errno::last();
            if e == Errno::EINTR {
                return Ok(());
            }
            return Err(e.into());
        }
        let mut dead_pipes = Vec::new();
        for (pfd, tag) in fds.iter().zip(tags.iter()) {
            if pfd.revents == 0 {
                continue;
            }
            match *tag {
                Tag::Sig => self.read_signals(),
                Tag::Wake => self.read_probes(),
                Tag::Listen => self.accept_clients(),
                Tag::Power => self.read_power_button(),
                Tag::Pipe(k) => {
                    if self.read_pipe(k) {
                        dead_pipes.push(k);
                    }
                }
                Tag::Client(k) => self.service_client(k),
            }
        }
        for k in dead_pipes.into_iter().rev() {
            let p = self.pipes.remove(k);
            if let Some(sink) = self.sinks.get_mut(&p.service) {
                sink.flush_partial();
            }
        }
        self.clients.retain(|c| !c.closed);
        Ok(())
    }

    fn read_signals(&mut self) {
        loop {
            match self.sigfd.read_signal() {
                Ok(Some(info)) => {
                    let Ok(sig) = Signal::try_from(info.ssi_signo as i32) else {
                        continue;
                    };
                    match sig {
                        Signal::SIGCHLD => self.reap(),
                        Signal::SIGTERM => self.begin_shutdown(Action::Poweroff, "SIGTERM"),
                        Signal::SIGINT if self.opts.pid1 => {
                            self.begin_shutdown(Action::Reboot, "SIGINT (ctrl-alt-del)")
                        }
                        Signal::SIGINT => self.begin_shutdown(Action::Poweroff, "SIGINT"),
                        Signal::SIGUSR2 => self.begin_shutdown(Action::Poweroff, "SIGUSR2"),
                        Signal::SIGUSR1 if self.opts.pid1 => {
                            self.begin_shutdown(Action::Halt, "SIGUSR1")
                        }
                        Signal::SIGHUP if !self.opts.pid1 => {
                            self.begin_shutdown(Action::Poweroff, "SIGHUP")
                        }
                        other => tracing::info!("ignoring {}", other.as_str()),
                    }
                }
                Ok(None) => break,
                Err(Errno::EINTR) => continue,
                Err(e) => {
                    tracing::error!("signalfd: {e}");
                    break;
                }
            }
        }
        // SIGCHLD coalesces; reaping after any signal batch is cheap and safe.
        self.reap();
    }

    fn read_probes(&mut self) {
        let mut b = [0u8; 256];
        while let Ok(n) = self.wake_r.read(&mut b) {
            if n == 0 {
                break;
            }
        }
        while let Ok(r) = self.probe_rx.try_recv() {
            let Some(i) = self.idx(&r.service) else {
                continue;
            };
            let s = &mut self.services[i];
            if s.generation != r.generation || s.pid.is_none() {
                continue;
            }
            let State::Starting {
                probe_cancel,
                probe_failed,
            } = &mut s.state
            else {
                continue;
            };
            *probe_cancel = None;
            if !r.ready
                && s.paused
                && let (Some(p), Ok(wake)) = (s.spec.ready.clone(), self.wake_w.try_clone())
            {
                // Frozen on request, not broken: probe again rather than kill it.
                tracing::info!(
                    "{}: not ready within {:?} while paused: probing again",
                    s.spec.name,
                    r.elapsed
                );
                let cancel = Arc::new(AtomicBool::new(false));
                *probe_cancel = Some(cancel.clone());
                probe::spawn(
                    s.spec.name.clone(),
                    s.generation,
                    p,
                    cancel,
                    self.probe_tx.clone(),
                    wake,
                );
                continue;
            }
            if r.ready {
                s.state = State::Ready;
                s.ready_after = s.started_at.map(|t| t.elapsed());
                tracing::info!(
                    "{} ready in {} ms",
                    s.spec.name,
                    ms(s.ready_after.unwrap_or_default())
                );
            } else {
                let msg = format!("not ready within {:?} ({})", r.elapsed, r.last_error);
                tracing::warn!("{}: {msg}: killing it", s.spec.name);
                *probe_failed = Some(msg);
                if let Some(pid) = s.pid {
                    let _ = kill(Pid::from_raw(-pid.as_raw()), Signal::SIGKILL);
                    let _ = kill(pid, Signal::SIGKILL);
                }
            }
        }
    }

    fn read_power_button(&mut self) {
        let Some(f) = self.power_button.as_mut() else {
            return;
        };
        let mut buf = [0u8; 24 * 16];
        let n = match f.read(&mut buf) {
            Ok(n) => n,
            Err(_) => return,
        };
        let pressed = buf[..n]
            .chunks_exact(24)
            .any(crate::pid1::is_power_key_press);
        if pressed {
            self.begin_shutdown(Action::Poweroff, "power button");
        }
    }

    /// Reads what a service wrote. Returns true at EOF.
    fn read_pipe(&mut self, k: usize) -> bool {
        let mut buf = [0u8; 16384];
        let mut total = 0;
        loop {
            let p = &mut self.pipes[k];
            match p.reader.read(&mut buf) {
                Ok(0) => return true,
                Ok(n) => {
                    let name = p.service.clone();
                    match self.sinks.get_mut(&name) {
                        Some(sink) => sink.write(&buf[..n]),
                        None => {
                            // The service was destroyed; a leftover process still writes.
                            let mut out = format!("[{name}] ").into_bytes();
                            out.extend_from_slice(&buf[..n]);
                            if !out.ends_with(b"\n") {
                                out.push(b'\n');
                            }
                            let _ = std::io::stdout().write_all(&out);
                        }
                    }
                    total += n;
                    if total >= 256 * 1024 {
                        return false;
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return false,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(_) => return true,
            }
        }
    }
}

fn set_nonblocking(fd: RawFd) -> Result<(), nix::Error> {
    // SAFETY: fd is an open descriptor owned by the caller for the duration of the call.
    let b = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
    let flags = nix::fcntl::fcntl(b, nix::fcntl::FcntlArg::F_GETFL)?;
    nix::fcntl::fcntl(
        b,
        nix::fcntl::FcntlArg::F_SETFL(
            nix::fcntl::OFlag::from_bits_truncate(flags) | nix::fcntl::OFlag::O_NONBLOCK,
        ),
    )?;
    Ok(())
}

/// The kernel's uptime now, from `/proc/uptime` (as PID 1 at start: the kernel's and the
/// initramfs' share of the boot).
fn kernel_uptime_ms() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/uptime").ok()?;
    let secs: f64 = text.split_whitespace().next()?.parse().ok()?;
    Some((secs * 1000.0) as u64)
}
