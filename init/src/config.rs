//! Services as data: the TOML schema, variable overrides (config < `ZIGRAL_*` env < `--set`),
//! validation that reports every problem at once, and expansion of services and template
//! instances into concrete [`ServiceSpec`]s.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use nix::sys::signal::Signal;
use serde::{Deserialize, Deserializer};

use crate::vars::{Vars, expand};

/// Every problem found in a configuration file (never empty).
#[derive(Debug, thiserror::Error)]
pub struct ConfigErrors(pub Vec<String>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{} problem(s) in the configuration:", self.0.len())?;
        for e in &self.0 {
            writeln!(f, "  - {e}")?;
        }
        Ok(())
    }
}

/// A duration written as `"250ms"`, `"5s"`, `"2m"` or `"1h"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dur(pub Duration);

impl FromStr for Dur {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let t = s.trim();
        let split = t
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(t.len());
        let (num, unit) = t.split_at(split);
        let n: f64 = num
            .parse()
            .map_err(|_| format!("bad duration {s:?} (use e.g. \"500ms\", \"5s\", \"2m\")"))?;
        let secs = match unit.trim() {
            "ms" => n / 1000.0,
            "s" => n,
            "m" => n * 60.0,
            "h" => n * 3600.0,
            _ => {
                return Err(format!(
                    "bad duration {s:?}: unit must be ms, s, m or h (e.g. \"5s\")"
                ));
            }
        };
        if !secs.is_finite() || secs < 0.0 {
            return Err(format!("bad duration {s:?}"));
        }
        Ok(Dur(Duration::from_secs_f64(secs)))
    }
}

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// A byte size written as an integer or a string like `"10M"`, `"4G"`, `"512K"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Size(pub u64);

impl FromStr for Size {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let t = s.trim();
        let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
        let (num, unit) = t.split_at(split);
        let n: u64 = num
            .parse()
            .map_err(|_| format!("bad size {s:?} (use e.g. \"10M\", \"4G\")"))?;
        let mul: u64 = match unit.trim().trim_end_matches(['i', 'B']) {
            "" => 1,
            "K" | "k" => 1 << 10,
            "M" => 1 << 20,
            "G" => 1 << 30,
            "T" => 1 << 40,
            _ => return Err(format!("bad size {s:?}: unit must be K, M, G or T")),
        };
        n.checked_mul(mul)
            .map(Size)
            .ok_or_else(|| format!("size {s:?} too large"))
    }
}

impl<'de> Deserialize<'de> for Size {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            N(u64),
            S(String),
        }
        match Raw::deserialize(d)? {
            Raw::N(n) => Ok(Size(n)),
            Raw::S(s) => s.parse().map_err(serde::de::Error::custom),
        }
    }
}

/// Supervisor-wide settings (`[settings]`).
#[derive(Debug, Clone, Default, Deserialize)]
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
}

/// One readiness probe (`ready = { ... }`): exactly one of `path`, `tcp`, `http`, `x11`.
#[derive(Debug, Clone, Default, Deserialize)]
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
#[derive(Debug, Clone, Deserialize)]
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
#[derive(Debug, Clone, Default, Deserialize)]
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
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileDef {
    pub path: String,
    /// The file's text (exactly one of `content` and `xauthority`).
    pub content: Option<String>,
    /// Write a fresh Xauthority file with a random MIT-MAGIC-COOKIE-1 for this X display
    /// (`":5"`) before every start (implies `replace`).
    pub xauthority: Option<String>,
    /// Overwrite an existing file (default: only create when missing).
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
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum DirDef {
    Path(String),
    Full(DirFull),
}

/// The table form of a `mkdir` entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DirFull {
    pub path: String,
    /// Octal permission bits applied at every start (e.g. `"2750"`).
    pub mode: Option<String>,
    /// Owner when the supervisor is root (default: the service's `user`; `"root"` keeps root).
    pub owner: Option<String>,
    /// Group when the supervisor is root (default: the owner's primary group).
    pub group: Option<String>,
}

/// One service as written in the file (`[[service]]` or `[[template.service]]`).
#[derive(Debug, Clone, Deserialize)]
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
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TemplateDef {
    pub name: String,
    /// Instances started at boot (default `[0]`).
    #[serde(default = "d_instances")]
    pub instances: Vec<u32>,
    #[serde(default, rename = "service")]
    pub services: Vec<ServiceDef>,
}

fn d_instances() -> Vec<u32> {
    vec![0]
}

/// A readiness probe, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProbeKind {
    Path(PathBuf),
    Tcp {
        addr: String,
        expect: Option<Vec<u8>>,
    },
    Http {
        addr: String,
        host: String,
        path: String,
    },
    X11 {
        display: u32,
        /// Wait for the X11 setup reply, not just a successful connect().
        handshake: bool,
    },
}

/// A probe plus its timing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Probe {
    pub kind: ProbeKind,
    pub timeout: Duration,
    pub interval: Duration,
}

/// Resource limits, parsed.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Limits {
    pub rlimits: Vec<(nix::sys::resource::Resource, u64)>,
    pub cpus: Option<f64>,
    pub memory: Option<u64>,
}

/// Restart policy, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestartSpec {
    pub policy: Policy,
    pub backoff_initial: Duration,
    pub backoff_max: Duration,
    pub stable: Duration,
    pub limit: u32,
}

/// A concrete service, every variable expanded and every value parsed.
#[derive(Debug, Clone, PartialEq)]
pub struct ServiceSpec {
    pub name: String,
    /// Template instance this service belongs to (`desktop@0`), if any.
    pub group: Option<String>,
    pub command: String,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    pub cwd: Option<PathBuf>,
    pub user: Option<String>,
    pub group_name: Option<String>,
    pub create_user: bool,
    pub umask: Option<u32>,
    pub after: Vec<String>,
    pub ready: Option<Probe>,
    pub restart: RestartSpec,
    pub stop_signal: Signal,
    pub stop_timeout: Duration,
    pub limits: Limits,
    pub log: LogDef,
    pub autostart: bool,
    pub restart_with_deps: bool,
    pub mkdir: Vec<DirSpec>,
    pub files: Vec<FileSpec>,
}

/// A directory a service needs, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirSpec {
    pub path: PathBuf,
    pub mode: Option<u32>,
    /// `None`: the service's user.
    pub owner: Option<String>,
    pub group: Option<String>,
}

/// What a seeded file holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileContent {
    Text(String),
    /// A fresh cookie for this X display number at every start.
    Xauthority(u32),
}

/// A file seeded before a service starts, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileSpec {
    pub path: PathBuf,
    pub content: FileContent,
    pub replace: bool,
    pub mode: u32,
    /// `None`: the service's user.
    pub owner: Option<String>,
    pub group: Option<String>,
}

/// Parses octal permission bits (`"0750"`, `"2750"`, `"027"`).
pub fn parse_mode(s: &str, max: u32) -> Result<u32, String> {
    let t = s.trim();
    let v = u32::from_str_radix(t, 8)
        .map_err(|_| format!("bad mode {s:?}: octal digits like \"0750\""))?;
    if v > max {
        return Err(format!("bad mode {s:?}: above {max:o}"));
    }
    Ok(v)
}

/// A validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub settings: Settings,
    /// Global variables (built-ins, `[vars]`, env and `--set` overrides applied).
    pub vars: Vars,
    pub state_dir: PathBuf,
    pub socket: PathBuf,
    /// Global services plus the services of the instances listed in the file.
    pub services: Vec<ServiceSpec>,
    pub templates: Vec<TemplateDef>,
    /// `[settings] private_ports`, expanded: inclusive port ranges.
    pub private_ports: Vec<(u16, u16)>,
}

/// Ports per `private_ports` entry (desktop N of a template uses base + N).
pub const PRIVATE_SPAN: u16 = 100;

/// Inputs that do not come from the file.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub state_dir: Option<PathBuf>,
    /// `--set key=value` pairs, in order.
    pub set: Vec<(String, String)>,
    /// `ZIGRAL_*` environment variables (normally `std::env::vars()`).
    pub env: Vec<(String, String)>,
    /// Directory holding the zigral-init executable (`${bin_dir}`).
    pub bin_dir: PathBuf,
    /// State dir used when neither the flag nor the file names one.
    pub default_state_dir: PathBuf,
}

/// Default values of the built-in global variables.
pub const DEFAULT_VARS: &[(&str, &str)] = &[
    ("display_base", "0"),
    ("vnc_base", "5900"),
    ("cdp_base", "9222"),
];

const TOP_KEYS: &[&str] = &["settings", "vars", "service", "template"];
const RESERVED_VARS: &[&str] = &[
    "state_dir",
    "bin_dir",
    "N",
    "display",
    "vnc_port",
    "cdp_port",
];

/// A user name `useradd` accepts (and nothing that could look like an option).
pub fn valid_user_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 32
        && s.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
}

fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// Parses a signal name: `TERM`, `SIGTERM`, `term` or a number.
pub fn parse_signal(s: &str) -> Result<Signal, String> {
    if let Ok(n) = s.parse::<i32>() {
        return Signal::try_from(n).map_err(|_| format!("unknown signal {s:?}"));
    }
    let up = s.to_ascii_uppercase();
    let full = if up.starts_with("SIG") {
        up
    } else {
        format!("SIG{up}")
    };
    Signal::from_str(&full).map_err(|_| format!("unknown signal {s:?}"))
}

fn parse_x11_display(s: &str) -> Result<u32, String> {
    s.trim()
        .trim_start_matches(':')
        .split('.')
        .next()
        .unwrap_or("")
        .parse()
        .map_err(|_| format!("bad X display {s:?} (use e.g. \":5\" or \"5\")"))
}

fn parse_http(url: &str) -> Result<(String, String, String), String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("bad http probe {url:?}: must start with http://"))?;
    let (hostport, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    if hostport.is_empty() {
        return Err(format!("bad http probe {url:?}: no host"));
    }
    let addr = if hostport.contains(':') {
        hostport.to_string()
    } else {
        format!("{hostport}:80")
    };
    check_addr(&addr).map_err(|e| format!("bad http probe {url:?}: {e}"))?;
    Ok((addr, hostport.to_string(), path.to_string()))
}

fn check_addr(addr: &str) -> Result<(), String> {
    let (host, port) = addr
        .rsplit_once(':')
        .ok_or_else(|| format!("bad address {addr:?}: expected host:port"))?;
    if host.is_empty() {
        return Err(format!("bad address {addr:?}: no host"));
    }
    port.parse::<u16>()
        .map_err(|_| format!("bad address {addr:?}: port must be 1-65535"))?;
    Ok(())
}

/// Builds the variables for instance `n` of a template from the globals.
pub fn instance_vars(globals: &Vars, n: u32) -> Result<Vars, String> {
    let mut v = globals.clone();
    v.insert("N".into(), n.to_string());
    for (base, var) in [
        ("display_base", "display"),
        ("vnc_base", "vnc_port"),
        ("cdp_base", "cdp_port"),
    ] {
        let b: u64 = globals
            .get(base)
            .map(String::as_str)
            .unwrap_or("0")
            .parse()
            .map_err(|_| format!("variable {base} must be a number"))?;
        let val = b + u64::from(n);
        if var != "display" && val > 65535 {
            return Err(format!("{var} for instance {n} is {val}, above 65535"));
        }
        v.insert(var.into(), val.to_string());
    }
    Ok(v)
}

/// Expands and parses one service definition. `qualify` maps a name in `after` to the
/// concrete service name(s). Problems are pushed to `errs` prefixed with `ctx`.
fn build_spec(
    def: &ServiceDef,
    name: String,
    group: Option<String>,
    vars: &Vars,
    state_dir: &Path,
    ctx: &str,
    errs: &mut Vec<String>,
) -> ServiceSpec {
    let mut x = |s: &str, what: &str| -> String {
        match expand(s, vars) {
            Ok(v) => v,
            Err(e) => {
                errs.push(format!("{ctx}: {what}: {e}"));
                s.to_string()
            }
        }
    };
    let command = x(&def.command, "command");
    let args: Vec<String> = def.args.iter().map(|a| x(a, "args")).collect();
    let env: Vec<(String, String)> = def
        .env
        .iter()
        .map(|(k, v)| (k.clone(), x(v, &format!("env.{k}"))))
        .collect();
    let cwd = def.cwd.as_ref().map(|c| PathBuf::from(x(c, "cwd")));
    let mut mode_errs: Vec<String> = Vec::new();
    fn mode_of(
        m: &Option<String>,
        what: &str,
        max: u32,
        default: u32,
        ctx: &str,
        errs: &mut Vec<String>,
    ) -> u32 {
        match m {
            None => default,
            Some(m) => parse_mode(m, max).unwrap_or_else(|e| {
                errs.push(format!("{ctx}: {what}: {e}"));
                default
            }),
        }
    }
    let mut mkdir: Vec<DirSpec> = Vec::new();
    for d in &def.mkdir {
        let spec = match d {
            DirDef::Path(p) => DirSpec {
                path: state_dir.join(x(p, "mkdir")),
                mode: None,
                owner: None,
                group: None,
            },
            DirDef::Full(f) => DirSpec {
                path: state_dir.join(x(&f.path, "mkdir.path")),
                mode: f.mode.as_ref().map(|m| {
                    mode_of(
                        &Some(m.clone()),
                        "mkdir.mode",
                        0o7777,
                        0o755,
                        ctx,
                        &mut mode_errs,
                    )
                }),
                owner: f.owner.as_ref().map(|o| x(o, "mkdir.owner")),
                group: f.group.as_ref().map(|g| x(g, "mkdir.group")),
            },
        };
        mkdir.push(spec);
    }
    let mut files: Vec<FileSpec> = Vec::new();
    for f in &def.files {
        let path = state_dir.join(x(&f.path, "files.path"));
        let content = match (&f.content, &f.xauthority) {
            (Some(c), None) => FileContent::Text(x(c, "files.content")),
            (None, Some(d)) => match parse_x11_display(&x(d, "files.xauthority")) {
                Ok(n) => FileContent::Xauthority(n),
                Err(e) => {
                    mode_errs.push(format!("{ctx}: files.xauthority: {e}"));
                    FileContent::Xauthority(0)
                }
            },
            _ => {
                mode_errs.push(format!(
                    "{ctx}: files {}: needs exactly one of content and xauthority",
                    f.path
                ));
                FileContent::Text(String::new())
            }
        };
        let xauth = matches!(content, FileContent::Xauthority(_));
        files.push(FileSpec {
            path,
            replace: f.replace || xauth,
            mode: mode_of(
                &f.mode,
                "files.mode",
                0o7777,
                if xauth { 0o640 } else { 0o644 },
                ctx,
                &mut mode_errs,
            ),
            owner: f.owner.as_ref().map(|o| x(o, "files.owner")),
            group: f.group.as_ref().map(|g| x(g, "files.group")),
            content,
        });
    }
    let umask = def
        .umask
        .as_ref()
        .map(|m| mode_of(&Some(m.clone()), "umask", 0o777, 0o022, ctx, &mut mode_errs));
    let user = def.user.as_ref().map(|u| x(u, "user"));
    let group_name = def.group.as_ref().map(|g| x(g, "group"));
    let ready_raw = def.ready.as_ref().map(|r| {
        (
            r.path.as_ref().map(|p| x(p, "ready.path")),
            r.tcp.as_ref().map(|p| x(p, "ready.tcp")),
            r.http.as_ref().map(|p| x(p, "ready.http")),
            r.x11.as_ref().map(|p| x(p, "ready.x11")),
        )
    });

    if command.trim().is_empty() {
        errs.push(format!("{ctx}: command is empty"));
    }
    for (k, _) in &env {
        if k.is_empty() || k.contains('=') || k.contains('\0') {
            errs.push(format!("{ctx}: bad environment variable name {k:?}"));
        }
    }
    let stop_signal = parse_signal(&def.stop_signal).unwrap_or_else(|e| {
        errs.push(format!("{ctx}: stop_signal: {e}"));
        Signal::SIGTERM
    });
    let ready = match (&def.ready, ready_raw) {
        (Some(r), Some((path, tcp, http, x11))) => {
            let n = [path.is_some(), tcp.is_some(), http.is_some(), x11.is_some()]
                .iter()
                .filter(|b| **b)
                .count();
            let kind = if n != 1 {
                errs.push(format!(
                    "{ctx}: ready needs exactly one of path, tcp, http, x11 (found {n})"
                ));
                None
            } else if let Some(p) = path {
                Some(ProbeKind::Path(state_dir.join(p)))
            } else if let Some(a) = tcp {
                if let Err(e) = check_addr(&a) {
                    errs.push(format!("{ctx}: ready.tcp: {e}"));
                }
                Some(ProbeKind::Tcp {
                    addr: a,
                    expect: r.expect.as_ref().map(|e| e.as_bytes().to_vec()),
                })
            } else if let Some(u) = http {
                match parse_http(&u) {
                    Ok((addr, host, path)) => Some(ProbeKind::Http { addr, host, path }),
                    Err(e) => {
                        errs.push(format!("{ctx}: ready.http: {e}"));
                        None
                    }
                }
            } else if let Some(d) = x11 {
                match parse_x11_display(&d) {
                    Ok(n) => Some(ProbeKind::X11 {
                        display: n,
                        handshake: r.handshake.unwrap_or(true),
                    }),
                    Err(e) => {
                        errs.push(format!("{ctx}: ready.x11: {e}"));
                        None
                    }
                }
            } else {
                None
            };
            if r.handshake.is_some() && r.x11.is_none() {
                errs.push(format!(
                    "{ctx}: ready.handshake only applies to an x11 probe"
                ));
            }
            if r.expect.is_some() && r.tcp.is_none() {
                errs.push(format!("{ctx}: ready.expect only applies to a tcp probe"));
            }
            let interval = r.interval.map(|d| d.0).unwrap_or(Duration::from_millis(50));
            if interval.is_zero() {
                errs.push(format!("{ctx}: ready.interval must be above zero"));
            }
            kind.map(|kind| Probe {
                kind,
                timeout: r.timeout.map(|d| d.0).unwrap_or(Duration::from_secs(30)),
                interval,
            })
        }
        _ => None,
    };
    let rs = &def.restart;
    if rs.backoff_initial.0 > rs.backoff_max.0 {
        errs.push(format!(
            "{ctx}: restart.backoff_initial ({:?}) is above restart.backoff_max ({:?})",
            rs.backoff_initial.0, rs.backoff_max.0
        ));
    }
    let l = &def.limits;
    let mut rlimits = Vec::new();
    use nix::sys::resource::Resource;
    if let Some(n) = l.nofile {
        rlimits.push((Resource::RLIMIT_NOFILE, n));
    }
    if let Some(n) = l.nproc {
        rlimits.push((Resource::RLIMIT_NPROC, n));
    }
    if let Some(n) = l.core {
        rlimits.push((Resource::RLIMIT_CORE, n.0));
    }
    if let Some(n) = l.stack {
        rlimits.push((Resource::RLIMIT_STACK, n.0));
    }
    if let Some(n) = l.address_space {
        rlimits.push((Resource::RLIMIT_AS, n.0));
    }
    if let Some(c) = l.cpus
        && !(c > 0.0 && c <= 1024.0)
    {
        errs.push(format!("{ctx}: limits.cpus must be above 0 (got {c})"));
    }
    if let Some(m) = l.memory
        && m.0 < (1 << 20)
    {
        errs.push(format!("{ctx}: limits.memory must be at least 1M"));
    }
    if def.log.max_size.0 < 4096 {
        errs.push(format!("{ctx}: log.max_size must be at least 4K"));
    }
    errs.append(&mut mode_errs);
    if let Some(u) = &user
        && u.is_empty()
    {
        errs.push(format!("{ctx}: user is empty"));
    }
    if def.create_user {
        match &user {
            None => errs.push(format!("{ctx}: create_user needs a user")),
            Some(u) if !valid_user_name(u) => {
                errs.push(format!("{ctx}: user {u:?} is not a valid name to create"))
            }
            _ => {}
        }
    }
    ServiceSpec {
        name,
        group,
        command,
        args,
        env,
        cwd,
        user,
        group_name,
        create_user: def.create_user,
        umask,
        after: Vec::new(),
        ready,
        restart: RestartSpec {
            policy: rs.policy,
            backoff_initial: rs.backoff_initial.0,
            backoff_max: rs.backoff_max.0,
            stable: rs.stable.0,
            limit: rs.limit,
        },
        stop_signal,
        stop_timeout: def.stop_timeout.0,
        limits: Limits {
            rlimits,
            cpus: l.cpus,
            memory: l.memory.map(|m| m.0),
        },
        log: def.log.clone(),
        autostart: def.autostart,
        restart_with_deps: def.restart_with_deps,
        mkdir,
        files,
    }
}

/// Concrete services of instance `n` of `tpl`. `globals_names` are the global service names
/// a template service may depend on.
pub fn instantiate(
    tpl: &TemplateDef,
    n: u32,
    globals: &Vars,
    state_dir: &Path,
    global_names: &BTreeSet<String>,
) -> Result<Vec<ServiceSpec>, Vec<String>> {
    let mut errs = Vec::new();
    let vars = match instance_vars(globals, n) {
        Ok(v) => v,
        Err(e) => return Err(vec![format!("template {:?}: {e}", tpl.name)]),
    };
    let group = format!("{}@{n}", tpl.name);
    let inner: BTreeSet<&str> = tpl.services.iter().map(|s| s.name.as_str()).collect();
    let mut out = Vec::new();
    for def in &tpl.services {
        let name = format!("{}@{n}", def.name);
        let ctx = format!("template {:?} service {:?}", tpl.name, def.name);
        let mut spec = build_spec(
            def,
            name,
            Some(group.clone()),
            &vars,
            state_dir,
            &ctx,
            &mut errs,
        );
        for a in &def.after {
            if inner.contains(a.as_str()) {
                spec.after.push(format!("{a}@{n}"));
            } else if global_names.contains(a) {
                spec.after.push(a.clone());
            } else {
                errs.push(format!(
                    "{ctx}: after: unknown service {a:?} (siblings: {}; globals: {})",
                    inner.iter().copied().collect::<Vec<_>>().join(", "),
                    global_names.iter().cloned().collect::<Vec<_>>().join(", ")
                ));
            }
        }
        out.push(spec);
    }
    if errs.is_empty() { Ok(out) } else { Err(errs) }
}

/// Finds a dependency cycle among `services` and returns it as `a -> b -> a`.
fn find_cycles(services: &[(String, Vec<String>)]) -> Vec<String> {
    let idx: BTreeMap<&str, usize> = services
        .iter()
        .enumerate()
        .map(|(i, (n, _))| (n.as_str(), i))
        .collect();
    // 0 = unvisited, 1 = on stack, 2 = done
    let mut color = vec![0u8; services.len()];
    let mut found: Vec<String> = Vec::new();
    let mut seen_cycles: BTreeSet<BTreeSet<String>> = BTreeSet::new();
    fn dfs(
        i: usize,
        services: &[(String, Vec<String>)],
        idx: &BTreeMap<&str, usize>,
        color: &mut [u8],
        stack: &mut Vec<usize>,
        found: &mut Vec<String>,
        seen: &mut BTreeSet<BTreeSet<String>>,
    ) {
        color[i] = 1;
        stack.push(i);
        for d in &services[i].1 {
            let Some(&j) = idx.get(d.as_str()) else {
                continue;
            };
            if color[j] == 1 {
                let pos = stack.iter().position(|&k| k == j).unwrap_or(0);
                let names: Vec<String> = stack[pos..]
                    .iter()
                    .map(|&k| services[k].0.clone())
                    .collect();
                let key: BTreeSet<String> = names.iter().cloned().collect();
                if seen.insert(key) {
                    let mut path = names.join(" -> ");
                    path.push_str(" -> ");
                    path.push_str(&services[j].0);
                    found.push(path);
                }
            } else if color[j] == 0 {
                dfs(j, services, idx, color, stack, found, seen);
            }
        }
        stack.pop();
        color[i] = 2;
    }
    for i in 0..services.len() {
        if color[i] == 0 {
            let mut stack = Vec::new();
            dfs(
                i,
                services,
                &idx,
                &mut color,
                &mut stack,
                &mut found,
                &mut seen_cycles,
            );
        }
    }
    found
}

/// Parses, overrides, validates and expands `text`. Every problem is reported.
pub fn parse(text: &str, ov: &Overrides) -> Result<Config, ConfigErrors> {
    let mut errs: Vec<String> = Vec::new();
    let root: toml::Table = match text.parse::<toml::Table>() {
        Ok(t) => t,
        Err(e) => return Err(ConfigErrors(vec![format!("TOML syntax: {e}")])),
    };
    for k in root.keys() {
        if !TOP_KEYS.contains(&k.as_str()) {
            errs.push(format!(
                "unknown top-level key `{k}` (expected one of: {})",
                TOP_KEYS.join(", ")
            ));
        }
    }
    let settings: Settings = match root.get("settings") {
        None => Settings::default(),
        Some(v) => Settings::deserialize(v.clone()).unwrap_or_else(|e| {
            errs.push(format!("[settings]: {}", e.message()));
            Settings::default()
        }),
    };

    // Variables: built-in defaults < [vars] < ZIGRAL_* env < --set.
    let mut vars = Vars::new();
    for (k, v) in DEFAULT_VARS {
        vars.insert((*k).into(), (*v).into());
    }
    if let Some(v) = root.get("vars") {
        match v.as_table() {
            Some(t) => {
                for (k, v) in t {
                    if RESERVED_VARS.contains(&k.as_str()) {
                        errs.push(format!("[vars]: `{k}` is a built-in variable"));
                        continue;
                    }
                    if !valid_name(k) {
                        errs.push(format!("[vars]: bad variable name {k:?}"));
                        continue;
                    }
                    let s = match v {
                        toml::Value::String(s) => s.clone(),
                        toml::Value::Integer(i) => i.to_string(),
                        toml::Value::Float(f) => f.to_string(),
                        toml::Value::Boolean(b) => b.to_string(),
                        _ => {
                            errs.push(format!("[vars]: `{k}` must be a string, number or boolean"));
                            continue;
                        }
                    };
                    vars.insert(k.clone(), s);
                }
            }
            None => errs.push("[vars] must be a table".into()),
        }
    }
    let declared: BTreeSet<String> = vars.keys().cloned().collect();
    for (k, v) in &ov.env {
        let Some(rest) = k.strip_prefix("ZIGRAL_") else {
            continue;
        };
        let key = rest.to_ascii_lowercase();
        if declared.contains(&key) {
            vars.insert(key, v.clone());
        }
    }
    for (k, v) in &ov.set {
        if declared.contains(k) {
            vars.insert(k.clone(), v.clone());
        } else {
            errs.push(format!(
                "--set {k}: unknown variable (declared: {})",
                declared.iter().cloned().collect::<Vec<_>>().join(", ")
            ));
        }
    }
    for base in ["display_base", "vnc_base", "cdp_base"] {
        if let Some(v) = vars.get(base)
            && v.parse::<u16>().is_err()
        {
            errs.push(format!("variable {base} = {v:?} must be a number 0-65535"));
        }
    }
    let state_dir: PathBuf = if let Some(p) = &ov.state_dir {
        p.clone()
    } else if let Some(p) = &settings.state_dir {
        PathBuf::from(p)
    } else if let Some((_, p)) = ov.env.iter().find(|(k, _)| k == "ZIGRAL_STATE_DIR") {
        PathBuf::from(p)
    } else {
        ov.default_state_dir.clone()
    };
    vars.insert("state_dir".into(), state_dir.display().to_string());
    vars.insert("bin_dir".into(), ov.bin_dir.display().to_string());

    let socket = match &settings.socket {
        Some(s) => match expand(s, &vars) {
            Ok(s) => PathBuf::from(s),
            Err(e) => {
                errs.push(format!("[settings] socket: {e}"));
                state_dir.join("init.sock")
            }
        },
        None => state_dir.join("init.sock"),
    };
    if let Some(m) = &settings.ready_message
        && let Err(e) = expand(m, &vars)
    {
        errs.push(format!("[settings] ready_message: {e}"));
    }
    let mut private_ports = Vec::new();
    for p in &settings.private_ports {
        match expand(p, &vars).map(|v| v.trim().parse::<u16>()) {
            Ok(Ok(first)) if first > 0 && first <= u16::MAX - PRIVATE_SPAN => {
                private_ports.push((first, first + (PRIVATE_SPAN - 1)));
            }
            Ok(_) => errs.push(format!(
                "[settings] private_ports: {p:?} must be a port number 1-{}",
                u16::MAX - PRIVATE_SPAN
            )),
            Err(e) => errs.push(format!("[settings] private_ports: {e}")),
        }
    }
    if let Some(u) = &settings.state_user
        && !valid_user_name(u)
    {
        errs.push(format!("[settings] state_user: bad user name {u:?}"));
    }

    // Services.
    let mut defs: Vec<ServiceDef> = Vec::new();
    match root.get("service") {
        None => {}
        Some(toml::Value::Array(items)) => {
            for (i, item) in items.iter().enumerate() {
                let label = item
                    .get("name")
                    .and_then(|n| n.as_str())
                    .map(|n| format!("service {n:?}"))
                    .unwrap_or_else(|| format!("service #{}", i + 1));
                match ServiceDef::deserialize(item.clone()) {
                    Ok(d) => defs.push(d),
                    Err(e) => errs.push(format!("{label}: {}", e.message())),
                }
            }
        }
        Some(_) => errs.push("`service` must be an array of tables ([[service]])".into()),
    }
    let mut templates: Vec<TemplateDef> = Vec::new();
    match root.get("template") {
        None => {}
        Some(toml::Value::Array(items)) => {
            for (i, item) in items.iter().enumerate() {
                let label = item
                    .get("name")
                    .and_then(|n| n.as_str())
                    .map(|n| format!("template {n:?}"))
                    .unwrap_or_else(|| format!("template #{}", i + 1));
                // Deserialize services one by one so each bad one is reported.
                let mut item = item.clone();
                let svcs = item
                    .as_table_mut()
                    .and_then(|t| t.remove("service"))
                    .unwrap_or(toml::Value::Array(vec![]));
                let mut tpl = match TemplateDef::deserialize(item) {
                    Ok(t) => t,
                    Err(e) => {
                        errs.push(format!("{label}: {}", e.message()));
                        continue;
                    }
                };
                match svcs {
                    toml::Value::Array(list) => {
                        for (j, s) in list.iter().enumerate() {
                            let sl = s
                                .get("name")
                                .and_then(|n| n.as_str())
                                .map(|n| format!("service {n:?}"))
                                .unwrap_or_else(|| format!("service #{}", j + 1));
                            match ServiceDef::deserialize(s.clone()) {
                                Ok(d) => tpl.services.push(d),
                                Err(e) => errs.push(format!("{label} {sl}: {}", e.message())),
                            }
                        }
                    }
                    _ => errs.push(format!(
                        "{label}: `service` must be an array of tables ([[template.service]])"
                    )),
                }
                templates.push(tpl);
            }
        }
        Some(_) => errs.push("`template` must be an array of tables ([[template]])".into()),
    }

    // Names.
    let mut global_names: BTreeSet<String> = BTreeSet::new();
    for d in &defs {
        if !valid_name(&d.name) {
            errs.push(format!(
                "service {:?}: bad name (letters, digits, - and _ only)",
                d.name
            ));
        }
        if !global_names.insert(d.name.clone()) {
            errs.push(format!("duplicate service name {:?}", d.name));
        }
    }
    let mut tnames = BTreeSet::new();
    for t in &templates {
        if !valid_name(&t.name) {
            errs.push(format!("template {:?}: bad name", t.name));
        }
        if !tnames.insert(t.name.clone()) {
            errs.push(format!("duplicate template name {:?}", t.name));
        }
        let mut inner = BTreeSet::new();
        for s in &t.services {
            if !valid_name(&s.name) {
                errs.push(format!(
                    "template {:?} service {:?}: bad name (letters, digits, - and _ only)",
                    t.name, s.name
                ));
            }
            if !inner.insert(s.name.clone()) {
                errs.push(format!(
                    "template {:?}: duplicate service name {:?}",
                    t.name, s.name
                ));
            }
            if global_names.contains(&s.name) {
                errs.push(format!(
                    "template {:?} service {:?} has the same name as a global service",
                    t.name, s.name
                ));
            }
        }
        if t.services.is_empty() {
            errs.push(format!("template {:?} has no services", t.name));
        }
        let mut seen = BTreeSet::new();
        for n in &t.instances {
            if !seen.insert(n) {
                errs.push(format!("template {:?}: instance {n} listed twice", t.name));
            }
        }
    }

    // Expand template instances listed in the file.
    let mut services: Vec<ServiceSpec> = Vec::new();
    let mut inst_services: Vec<ServiceSpec> = Vec::new();
    let mut groups: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for t in &templates {
        // Validate with instance 0 even when none is listed.
        let list: Vec<u32> = if t.instances.is_empty() {
            vec![]
        } else {
            t.instances.clone()
        };
        if list.is_empty()
            && let Err(e) = instantiate(t, 0, &vars, &state_dir, &global_names)
        {
            errs.extend(e);
        }
        for (k, n) in list.iter().enumerate() {
            match instantiate(t, *n, &vars, &state_dir, &global_names) {
                Ok(specs) => {
                    groups.insert(
                        format!("{}@{n}", t.name),
                        specs.iter().map(|s| s.name.clone()).collect(),
                    );
                    inst_services.extend(specs);
                }
                Err(e) => {
                    // Report template problems once, not per instance.
                    if k == 0 {
                        errs.extend(e);
                    }
                }
            }
        }
    }
    let inst_names: BTreeSet<String> = inst_services.iter().map(|s| s.name.clone()).collect();
    for d in &defs {
        let ctx = format!("service {:?}", d.name);
        let mut spec = build_spec(d, d.name.clone(), None, &vars, &state_dir, &ctx, &mut errs);
        for a in &d.after {
            if global_names.contains(a) || inst_names.contains(a) {
                spec.after.push(a.clone());
            } else if let Some(members) = groups.get(a) {
                spec.after.extend(members.iter().cloned());
            } else {
                errs.push(format!("{ctx}: after: unknown service {a:?}"));
            }
        }
        services.push(spec);
    }
    services.extend(inst_services);

    let graph: Vec<(String, Vec<String>)> = services
        .iter()
        .map(|s| (s.name.clone(), s.after.clone()))
        .collect();
    for c in find_cycles(&graph) {
        errs.push(format!("dependency cycle: {c}"));
    }

    if errs.is_empty() {
        Ok(Config {
            settings,
            vars,
            state_dir,
            socket,
            services,
            templates,
            private_ports,
        })
    } else {
        Err(ConfigErrors(errs))
    }
}

/// Reads and parses the file at `path`.
pub fn load(path: &Path, ov: &Overrides) -> Result<Config, ConfigErrors> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigErrors(vec![format!("cannot read {}: {e}", path.display())]))?;
    parse(&text, ov)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ov() -> Overrides {
        Overrides {
            state_dir: Some("/st".into()),
            bin_dir: "/bin".into(),
            ..Default::default()
        }
    }

    #[test]
    fn durations_and_sizes() {
        assert_eq!(
            "250ms".parse::<Dur>().unwrap().0,
            Duration::from_millis(250)
        );
        assert_eq!(
            "1.5s".parse::<Dur>().unwrap().0,
            Duration::from_millis(1500)
        );
        assert!("5".parse::<Dur>().is_err());
        assert!("5 parsecs".parse::<Dur>().is_err());
        assert_eq!("4G".parse::<Size>().unwrap().0, 4 << 30);
        assert_eq!("10MiB".parse::<Size>().unwrap().0, 10 << 20);
        assert!("ten".parse::<Size>().is_err());
    }

    #[test]
    fn template_expands_with_overrides() {
        let text = r#"
[vars]
res = "1280x800x24"
[[template]]
name = "desktop"
instances = [0, 2]
[[template.service]]
name = "xvfb"
command = "Xvfb"
args = [":${display}", "-screen", "0", "${res}"]
ready = { x11 = ":${display}" }
[[template.service]]
name = "vnc"
command = "x11vnc"
args = ["-rfbport", "${vnc_port}"]
after = ["xvfb"]
[[service]]
name = "proxy"
command = "${bin_dir}/zigral"
after = ["desktop@0"]
"#;
        let mut o = ov();
        o.set.push(("display_base".into(), "40".into()));
        o.env.push(("ZIGRAL_VNC_BASE".into(), "7000".into()));
        let c = parse(text, &o).unwrap();
        let x2 = c.services.iter().find(|s| s.name == "xvfb@2").unwrap();
        assert_eq!(x2.args, vec![":42", "-screen", "0", "1280x800x24"]);
        assert_eq!(
            x2.ready.as_ref().unwrap().kind,
            ProbeKind::X11 {
                display: 42,
                handshake: true
            }
        );
        let v2 = c.services.iter().find(|s| s.name == "vnc@2").unwrap();
        assert_eq!(v2.args, vec!["-rfbport", "7002"]);
        assert_eq!(v2.after, vec!["xvfb@2"]);
        let p = c.services.iter().find(|s| s.name == "proxy").unwrap();
        assert_eq!(p.command, "/bin/zigral");
        assert_eq!(p.after, vec!["xvfb@0", "vnc@0"]);
    }

    #[test]
    fn reports_every_problem() {
        let text = r#"
bogus = 1
[[service]]
name = "a"
command = "true"
restrat = { policy = "always" }
[[service]]
name = "b"
command = "true"
stop_timeout = "ten seconds"
[[service]]
name = "c"
command = "true"
after = ["d", "ghost"]
[[service]]
name = "d"
command = "${nope}"
after = ["c"]
[[service]]
name = "d"
command = "true"
stop_signal = "SIGWHAT"
[[service]]
name = "e"
command = "true"
after = ["f"]
[[service]]
name = "f"
command = "true"
after = ["e"]
"#;
        let e = parse(text, &ov()).unwrap_err().0;
        let all = e.join("\n");
        for needle in [
            "bogus",
            "restrat",
            "ten seconds",
            "ghost",
            "${nope}",
            "duplicate service name \"d\"",
            "SIGWHAT",
            "dependency cycle: e -> f -> e",
        ] {
            assert!(all.contains(needle), "missing {needle:?} in:\n{all}");
        }
    }
}
