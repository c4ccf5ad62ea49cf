//! The file as written: serde definitions of `[settings]`, `[[service]]` and `[[template]]`
//! with their defaults.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

use super::units::{Dur, Size};

/// Supervisor-wide settings (`[settings]`).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// State directory when `--state-dir` is not given.
    pub state_dir: Option<String>,
    /// Control socket path (default `<state>/init.sock`).
    pub socket: Option<String>,
    /// Hostname to set in PID 1 mode.
    pub hostname: Option<String>,
    /// Printed once when every autostarted service is first ready (variables expanded).
    pub ready_message: Option<String>,
    /// Most template instances alive at once (default 16).
    pub max_instances: Option<u32>,
    /// When the supervisor runs as root: the unprivileged user that owns the state dir (mode
    /// 0711) and may use the control socket (group access, 0660); created when missing.
    pub state_user: Option<String>,
    /// When the supervisor runs as root: private port ranges. Each entry is a first port (e.g.
    /// `"${vnc_base}"`); the range is [`PRIVATE_SPAN`] ports from there. Only root and
    /// `state_user` may open TCP connections to them (an nftables table owned by zigral-init,
    /// removed at exit), so no desktop user reaches another desktop's VNC or DevTools.
    #[serde(default)]
    pub private_ports: Vec<String>,
    /// The A/B slots directory of signed updates (the appliance image:
    /// `/usr/lib/zigral/slots`). At start, before any service, an update that a reboot or
    /// power cut interrupted is rolled back to the good slot.
    pub slots: Option<String>,
    /// A machine-local TOML file whose `[vars]` override this file's (declared variables
    /// only; applied before `ZIGRAL_*` env and `--set`). A missing file is no override. The
    /// appliance image keeps its profile there (`/etc/zigral/local.toml`: `bind`), since this
    /// file itself lives in the update slot and is replaced by an update.
    pub local_vars: Option<String>,
}

/// Ports per `private_ports` entry (desktop N of a template uses base + N).
pub const PRIVATE_SPAN: u16 = 100;

/// Default values of the built-in global variables.
pub const DEFAULT_VARS: &[(&str, &str)] = &[
    ("display_base", "0"),
    ("vnc_base", "5900"),
    ("cdp_base", "9222"),
];

/// One readiness probe (`ready = { ... }`): exactly one of `path`, `tcp`, `http`, `x11`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReadyDef {
    pub path: Option<String>,
    pub tcp: Option<String>,
    /// With `tcp`: bytes the server must send first (e.g. `"RFB "`).
    pub expect: Option<String>,
    pub http: Option<String>,
    pub x11: Option<String>,
    /// With `x11`: `false` is ready as soon as the server's socket accepts a connection
    /// (clients then block until it answers); default `true` waits for the setup reply.
    pub handshake: Option<bool>,
    pub timeout: Option<Dur>,
    pub interval: Option<Dur>,
}

/// When to restart a service that exited on its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Policy {
    #[default]
    Always,
    OnFailure,
    Never,
}

/// `restart = { ... }`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RestartDef {
    #[serde(default)]
    pub policy: Policy,
    /// Delay before the first restart; doubled for each further consecutive failure.
    #[serde(default = "d_backoff_initial")]
    pub backoff_initial: Dur,
    #[serde(default = "d_backoff_max")]
    pub backoff_max: Dur,
    /// A run at least this long resets the failure count and the backoff.
    #[serde(default = "d_stable")]
    pub stable: Dur,
    /// Consecutive failures (without a stable run) after which the service is `failed`.
    #[serde(default = "d_limit")]
    pub limit: u32,
}

fn d_backoff_initial() -> Dur {
    Dur(Duration::from_millis(100))
}
fn d_backoff_max() -> Dur {
    Dur(Duration::from_secs(30))
}
fn d_stable() -> Dur {
    Dur(Duration::from_secs(10))
}
fn d_limit() -> u32 {
    10
}

impl Default for RestartDef {
    fn default() -> Self {
        RestartDef {
            policy: Policy::Always,
            backoff_initial: d_backoff_initial(),
            backoff_max: d_backoff_max(),
            stable: d_stable(),
            limit: d_limit(),
        }
    }
}

/// `limits = { ... }`: rlimits and (when a writable cgroup v2 exists) cpu/memory caps.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsDef {
    pub nofile: Option<u64>,
    pub nproc: Option<u64>,
    pub core: Option<Size>,
    pub stack: Option<Size>,
    /// Address space (RLIMIT_AS).
    pub address_space: Option<Size>,
    /// cgroup v2 `cpu.max` as a number of CPUs (e.g. 2 or 0.5).
    pub cpus: Option<f64>,
    /// cgroup v2 `memory.max`.
    pub memory: Option<Size>,
}

/// `log = { ... }`: where a service's stdout/stderr go.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogDef {
    /// Write to `<state>/logs/<service>.log` (rotated).
    #[serde(default = "d_true")]
    pub file: bool,
    /// Mirror to the supervisor's console with a `[service]` prefix.
    #[serde(default = "d_true")]
    pub console: bool,
    #[serde(default = "d_log_max")]
    pub max_size: Size,
    /// Rotated files kept (`.1` .. `.keep`).
    #[serde(default = "d_log_keep")]
    pub keep: u32,
}

fn d_true() -> bool {
    true
}
fn d_log_max() -> Size {
    Size(10 << 20)
}
fn d_log_keep() -> u32 {
    3
}

impl Default for LogDef {
    fn default() -> Self {
        LogDef {
            file: true,
            console: true,
            max_size: d_log_max(),
            keep: d_log_keep(),
        }
    }
}

/// `[[service.files]]`: a file seeded before the service starts.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileDef {
    pub path: String,
    /// The file's text (exactly one of `content` and `xauthority`).
    pub content: Option<String>,
    /// Write a fresh Xauthority file with a random MIT-MAGIC-COOKIE-1 for this X display
    /// (`":5"`) before every start (implies `replace`).
    pub xauthority: Option<String>,
    /// Overwrite an existing file at every start (default `false`: only create it when
    /// missing, so a persistent profile keeps the browser's own changes).
    #[serde(default)]
    pub replace: bool,
    /// Octal permission bits (default `"0644"`, `"0640"` for Xauthority files).
    pub mode: Option<String>,
    /// Owner when the supervisor is root (default: the service's `user`).
    pub owner: Option<String>,
    /// Group when the supervisor is root (default: the owner's primary group).
    pub group: Option<String>,
}

/// A `mkdir` entry: a path, or `{ path, mode, owner, group }`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum DirDef {
    Path(String),
    Full(DirFull),
}

/// The table form of a `mkdir` entry.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DirFull {
    pub path: String,
    /// Octal permission bits applied at every start (e.g. `"2750"`).
    pub mode: Option<String>,
    /// Owner when the supervisor is root (default: the service's `user`; `"root"` keeps root).
    pub owner: Option<String>,
    /// Group when the supervisor is root (default: the owner's primary group).
    pub group: Option<String>,
    /// As root: also hand everything already inside the directory to its owner and group at
    /// every start (symlinks are never followed, multiply-linked files are skipped), for a
    /// directory such as a persistent browser profile that changes hands between users.
    #[serde(default)]
    pub recursive: bool,
}

/// One service as written in the file (`[[service]]` or `[[template.service]]`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceDef {
    pub name: String,
    pub command: String,
    #[serde(default)]
    pub args: Vec<String>,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    pub cwd: Option<String>,
    /// Run as this user when the supervisor is root (as an ordinary user, every service runs
    /// as that user).
    pub user: Option<String>,
    pub group: Option<String>,
    /// Create `user` (a system user with its own group, no login) when it does not exist.
    #[serde(default)]
    pub create_user: bool,
    /// File creation mask of the service's processes, octal (e.g. `"027"`).
    pub umask: Option<String>,
    #[serde(default)]
    pub after: Vec<String>,
    pub ready: Option<ReadyDef>,
    #[serde(default)]
    pub restart: RestartDef,
    #[serde(default = "d_stop_signal")]
    pub stop_signal: String,
    #[serde(default = "d_stop_timeout")]
    pub stop_timeout: Dur,
    #[serde(default)]
    pub limits: LimitsDef,
    #[serde(default)]
    pub log: LogDef,
    #[serde(default = "d_true")]
    pub autostart: bool,
    /// Restart this service when one of its `after` dependencies exits unexpectedly (an X
    /// client whose display went away). Default false: a dependency's crash leaves it alone.
    #[serde(default)]
    pub restart_with_deps: bool,
    /// Directories created (with parents) before each start.
    #[serde(default)]
    pub mkdir: Vec<DirDef>,
    #[serde(default)]
    pub files: Vec<FileDef>,
}

fn d_stop_signal() -> String {
    "TERM".into()
}
fn d_stop_timeout() -> Dur {
    Dur(Duration::from_secs(10))
}

/// `[[template]]`: a group of services instantiated per number N (`desktop@N`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TemplateDef {
    pub name: String,
    /// Instances started at boot (default `[0]`).
    #[serde(default = "d_instances")]
    pub instances: Vec<u32>,
    #[serde(default, rename = "service")]
    pub services: Vec<ServiceDef>,
    /// Declared instance parameters with their defaults (which may use `${N}` and the other
    /// variables). Each is a variable of the instance's services; a `spawn` may set them.
    #[serde(default)]
    pub params: BTreeMap<String, Scalar>,
    /// cgroup v2 limits of each instance as a whole (one cgroup per instance).
    #[serde(default)]
    pub limits: GroupLimitsDef,
    /// Paths (relative to the state dir) deleted by `destroy` with `purge`.
    #[serde(default)]
    pub purge: Vec<String>,
}

/// A string value that may also be written as a TOML number (`cpus = 2`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scalar(pub String);

impl<'de> Deserialize<'de> for Scalar {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            S(String),
            I(i64),
            F(f64),
        }
        Ok(Scalar(match Raw::deserialize(d)? {
            Raw::S(s) => s,
            Raw::I(i) => i.to_string(),
            Raw::F(f) => f.to_string(),
        }))
    }
}

/// `[[template]] limits = { ... }`: strings after variable substitution (`"${cpus}"`).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupLimitsDef {
    /// `cpu.max` as a number of CPUs (`"2"`, `"0.5"`) or `"max"`.
    pub cpus: Option<Scalar>,
    /// `memory.max` as a size (`"4G"`, `"512M"`, bytes) or `"max"`; at least 16M.
    pub memory: Option<Scalar>,
    /// `pids.max`: a number of tasks or `"max"`.
    pub pids: Option<Scalar>,
}

fn d_instances() -> Vec<u32> {
    vec![0]
}
