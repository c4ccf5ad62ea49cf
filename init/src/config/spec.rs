//! The parsed configuration: concrete services with every variable expanded and every value
//! parsed, and the inputs that do not come from the file.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use nix::sys::signal::Signal;
use zigral_init_protocol::GroupLimits;

use super::schema::{LogDef, Policy, Settings, TemplateDef};
use crate::vars::Vars;

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
    /// Hand the directory's existing contents to the owner too (root only).
    pub recursive: bool,
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

/// What belongs to a template instance (`desktop@3`) as a whole, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupSpec {
    /// `desktop@3`.
    pub name: String,
    pub template: String,
    pub instance: u32,
    /// Effective params: the template's defaults (expanded) with the spawn's values.
    pub params: BTreeMap<String, String>,
    /// The template's `limits` for this instance.
    pub limits: GroupLimits,
    /// `purge` paths, relative to the state dir (no `..`, never empty).
    pub purge: Vec<PathBuf>,
}

/// One template instance: the group and its concrete services.
#[derive(Debug, Clone, PartialEq)]
pub struct Instance {
    pub group: GroupSpec,
    pub services: Vec<ServiceSpec>,
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
    /// The template instances listed in the file (their services are in `services`).
    pub groups: Vec<GroupSpec>,
    pub templates: Vec<TemplateDef>,
    /// `[settings] private_ports`, expanded: inclusive port ranges.
    pub private_ports: Vec<(u16, u16)>,
}

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

#[cfg(test)]
impl Overrides {
    /// State dir `/st`, binaries in `/bin`, nothing else (unit tests).
    pub(crate) fn for_tests() -> Overrides {
        Overrides {
            state_dir: Some("/st".into()),
            bin_dir: "/bin".into(),
            ..Default::default()
        }
    }
}
