//! Command line: `run` (default as PID 1), `check`, and `ctl` (the control-socket client).

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Parser, Subcommand};

use crate::config::{self, Config, Overrides};
use crate::control;
use crate::supervisor::{Options, Supervisor, block_signals};

/// Config used when started as PID 1 without arguments.
pub const PID1_CONFIG: &str = "/etc/zigral/init.toml";
/// State directory used as PID 1.
pub const PID1_STATE: &str = "/var/lib/zigral";

#[derive(Debug, Parser)]
#[command(
    name = "zigral-init",
    version,
    about = "Zigral's PID 1 and service supervisor"
)]
pub struct Cli {
    #[command(subcommand)]
    pub cmd: Option<Cmd>,
}

#[derive(Debug, Subcommand)]
pub enum Cmd {
    /// Start the services and supervise them until SIGTERM/SIGINT or `ctl shutdown`.
    Run(RunArgs),
    /// Validate a config file; report every problem; start nothing.
    Check(RunArgs),
    /// Talk to a running supervisor over its control socket.
    Ctl(CtlArgs),
    /// Signed A/B updates: `apply` (run as root by the `updater` template), `status`.
    Update(crate::update::UpdateArgs),
}

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// Services file (TOML).
    #[arg(long, short)]
    pub config: PathBuf,
    /// State directory (logs, control socket, desktops).
    #[arg(long)]
    pub state_dir: Option<PathBuf>,
    /// Override a variable: --set display_base=10 (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
}

#[derive(Debug, clap::Args)]
pub struct CtlArgs {
    /// Control socket (default: <state-dir>/init.sock).
    #[arg(long)]
    pub socket: Option<PathBuf>,
    /// State directory whose init.sock to use.
    #[arg(long)]
    pub state_dir: Option<PathBuf>,
    /// Print the raw JSON reply.
    #[arg(long)]
    pub json: bool,
    #[command(subcommand)]
    pub action: CtlCmd,
}

#[derive(Debug, Subcommand)]
pub enum CtlCmd {
    /// Table of services.
    Status,
    /// Start a service.
    Start { service: String },
    /// Stop a service (it stays stopped).
    Stop { service: String },
    /// Restart a service.
    Restart { service: String },
    /// Freeze a running service (SIGSTOP to its process group); returns once it is stopped.
    /// Stopping a paused service kills it (SIGKILL), never resumes it.
    Pause { service: String },
    /// Thaw a paused service (SIGCONT to its process group).
    Resume { service: String },
    /// Create a template instance, e.g. `spawn desktop 1 --param profile_dir=profiles/u1/chrome`.
    Spawn {
        template: String,
        instance: u32,
        /// Set one of the template's declared params (repeatable).
        #[arg(long = "param", value_name = "NAME=VALUE")]
        params: Vec<String>,
        /// Wait until every service of the instance is ready (seconds).
        #[arg(long)]
        wait: Option<u64>,
    },
    /// Stop and remove a template instance (replies once its processes are gone).
    Destroy {
        template: String,
        instance: u32,
        /// Also delete the template's `purge` paths of this instance.
        #[arg(long)]
        purge: bool,
    },
    /// Change the cgroup limits of a running instance, e.g. `limits desktop@1 --cpus 1
    /// --memory 1G --pids 512` (options not given stay as they are).
    Limits {
        group: String,
        /// CPUs (decimal, e.g. 0.5).
        #[arg(long)]
        cpus: Option<String>,
        /// Memory (e.g. 512M, 4G, or bytes).
        #[arg(long)]
        memory: Option<String>,
        /// Tasks (processes and threads).
        #[arg(long)]
        pids: Option<u64>,
    },
    /// Ordered stop of everything; then power off / reboot / halt (PID 1) or exit (host).
    Shutdown {
        #[arg(default_value = "poweroff", value_parser = ["poweroff", "reboot", "halt"])]
        action: String,
    },
    /// Reads the config file again: stopped services and templates take their new definitions.
    Reload,
}

fn overrides(a: &RunArgs, default_state: &Path) -> Result<Overrides, String> {
    let mut set = Vec::new();
    for kv in &a.set {
        let (k, v) = kv
            .split_once('=')
            .ok_or_else(|| format!("--set {kv:?}: expected KEY=VALUE"))?;
        set.push((k.trim().to_string(), v.to_string()));
    }
    let bin_dir = std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(Path::to_path_buf))
        .unwrap_or_else(|| PathBuf::from("."));
    Ok(Overrides {
        state_dir: a.state_dir.clone(),
        set,
        env: std::env::vars()
            .filter(|(k, _)| k.starts_with("ZIGRAL_"))
            .collect(),
        bin_dir,
        default_state_dir: default_state.to_path_buf(),
    })
}

/// Loads the config, making the state directory absolute (creating it for `run`).
fn load(a: &RunArgs, default_state: &Path, create: bool) -> Result<Config, String> {
    let mut ov = overrides(a, default_state)?;
    let cfg = config::load(&a.config, &ov).map_err(|e| e.to_string())?;
    if cfg.state_dir.is_absolute() && !create {
        return Ok(cfg);
    }
    if create {
        std::fs::create_dir_all(&cfg.state_dir)
            .map_err(|e| format!("creating state dir {}: {e}", cfg.state_dir.display()))?;
    }
    let abs = if create {
        cfg.state_dir
            .canonicalize()
            .map_err(|e| format!("state dir {}: {e}", cfg.state_dir.display()))?
    } else {
        std::path::absolute(&cfg.state_dir).unwrap_or(cfg.state_dir.clone())
    };
    if abs == cfg.state_dir {
        return Ok(cfg);
    }
    ov.state_dir = Some(abs);
    config::load(&a.config, &ov).map_err(|e| e.to_string())
}

fn init_tracing() {
    let level = std::env::var("ZIGRAL_INIT_LOG")
        .or_else(|_| std::env::var("ZIGRAL_LOG"))
        .ok()
        .and_then(|l| l.parse::<tracing::Level>().ok())
        .unwrap_or(tracing::Level::INFO);
    let _ = tracing_subscriber::fmt()
        .with_max_level(level)
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
        .with_writer(std::io::stdout)
        .try_init();
}

/// Entry point; returns the process exit code.
pub fn main() -> i32 {
    let pid1 = std::process::id() == 1;
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) if pid1 => {
            // The kernel may pass extra words; as PID 1 we must not exit.
            eprintln!("zigral-init: ignoring arguments: {e}");
            Cli { cmd: None }
        }
        Err(e) => e.exit(),
    };
    match cli.cmd {
        Some(Cmd::Check(a)) => check(&a),
        Some(Cmd::Ctl(a)) => ctl(&a),
        Some(Cmd::Update(a)) => crate::update::main(&a),
        Some(Cmd::Run(a)) => run(&a, pid1),
        None if pid1 => run(
            &RunArgs {
                config: PID1_CONFIG.into(),
                state_dir: Some(PID1_STATE.into()),
                set: Vec::new(),
            },
            true,
        ),
        None => {
            eprintln!("zigral-init: missing command (run, check or ctl); see --help");
            2
        }
    }
}

fn check(a: &RunArgs) -> i32 {
    match load(a, Path::new(".state"), false) {
        Ok(cfg) => {
            println!(
                "{}: OK: {} service(s): {}",
                a.config.display(),
                cfg.services.len(),
                cfg.services
                    .iter()
                    .map(|s| s.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            for t in &cfg.templates {
                println!(
                    "  template {}@N: {} (instances at start: {:?})",
                    t.name,
                    t.services
                        .iter()
                        .map(|s| s.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", "),
                    t.instances
                );
                if !t.params.is_empty() {
                    println!(
                        "    params: {}",
                        t.params
                            .iter()
                            .map(|(k, v)| format!("{k} = {:?}", v.0))
                            .collect::<Vec<_>>()
                            .join(", ")
                    );
                }
            }
            0
        }
        Err(e) => {
            eprintln!("{}: {e}", a.config.display());
            1
        }
    }
}

fn run(a: &RunArgs, pid1: bool) -> i32 {
    init_tracing();
    if pid1 {
        crate::pid1::mount_early();
    }
    // Signals are blocked before any thread exists so every thread inherits the mask.
    let sigset = match block_signals() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("zigral-init: blocking signals: {e}");
            return 1;
        }
    };
    let default_state = if pid1 { PID1_STATE } else { ".state" };
    let cfg = match load(a, Path::new(default_state), true) {
        Ok(c) => Some(c),
        Err(e) => {
            eprintln!("zigral-init: {}: {e}", a.config.display());
            eprintln!("zigral-init: nothing started");
            None
        }
    };
    let cfg = match cfg {
        Some(c) => c,
        None if pid1 => {
            // PID 1 cannot exit: supervise nothing, still reap and honour shutdown.
            let mut ov = Overrides {
                state_dir: Some(PID1_STATE.into()),
                ..Default::default()
            };
            ov.default_state_dir = PID1_STATE.into();
            match config::parse("", &ov) {
                Ok(c) => c,
                Err(_) => crate::pid1::finish(control::Action::Halt),
            }
        }
        None => return 1,
    };
    if pid1 {
        if let Some(h) = &cfg.settings.hostname {
            crate::pid1::set_hostname(h);
        }
        crate::pid1::loopback_up();
        // Ctrl-Alt-Del becomes SIGINT (ordered reboot) instead of an immediate reboot.
        if let Err(e) = nix::sys::reboot::set_cad_enabled(false) {
            tracing::debug!("ctrl-alt-del: {e}");
        }
        if std::env::var_os("PATH").is_none() {
            // SAFETY: still single-threaded (no probe thread started yet).
            unsafe {
                std::env::set_var(
                    "PATH",
                    "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                )
            };
        }
        if std::env::var_os("HOME").is_none() {
            // SAFETY: still single-threaded (no probe thread started yet).
            unsafe { std::env::set_var("HOME", "/root") };
        }
    }
    let mut cfg = cfg;
    if let Some(dir) = cfg.settings.slots.clone() {
        // Before any service starts: an update cut short by a reboot goes back to the good slot.
        let status = cfg
            .state_dir
            .join(zigral_update::UPDATES_DIR)
            .join(zigral_update::STATUS_FILE);
        match crate::update::slots::recover_at_boot(
            &crate::update::slots::Slots::new(&dir),
            &status,
        ) {
            Ok(Some(line)) => {
                println!("{line}");
                // The config may live in the slot just switched back to: read it from there.
                match load(a, Path::new(default_state), true) {
                    Ok(c) => cfg = c,
                    Err(e) => eprintln!(
                        "zigral-init: {} after the rollback: {e}",
                        a.config.display()
                    ),
                }
            }
            Ok(None) => {}
            Err(e) => eprintln!("zigral-init: update slots {dir}: {e}"),
        }
    }
    let config = overrides(a, Path::new(default_state))
        .ok()
        .map(|mut overrides| {
            overrides.state_dir = Some(cfg.state_dir.clone());
            crate::supervisor::ConfigSource {
                path: a.config.clone(),
                overrides,
            }
        });
    let sup = match Supervisor::new(cfg, Options { pid1, config }, sigset) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!("{e}");
            if pid1 {
                crate::pid1::finish(control::Action::Halt);
            }
            return 1;
        }
    };
    match sup.run() {
        Ok(action) if pid1 => crate::pid1::finish(action),
        Ok(_) => 0,
        Err(e) => {
            tracing::error!("supervisor: {e}");
            if pid1 {
                crate::pid1::finish(control::Action::Halt);
            }
            1
        }
    }
}

fn default_socket(a: &CtlArgs) -> PathBuf {
    if let Some(s) = &a.socket {
        return s.clone();
    }
    if let Some(d) = &a.state_dir {
        return d.join("init.sock");
    }
    if let Ok(d) = std::env::var("ZIGRAL_STATE_DIR") {
        return Path::new(&d).join("init.sock");
    }
    let local = Path::new(".state/init.sock");
    if local.exists() {
        return local.to_path_buf();
    }
    Path::new(PID1_STATE).join("init.sock")
}

/// The request for a `ctl` command line.
fn ctl_request(action: &CtlCmd) -> Result<control::Request, String> {
    use control::Request as R;
    Ok(match action {
        CtlCmd::Status => R::Status,
        CtlCmd::Start { service } => R::Start {
            service: service.clone(),
        },
        CtlCmd::Stop { service } => R::Stop {
            service: service.clone(),
        },
        CtlCmd::Restart { service } => R::Restart {
            service: service.clone(),
        },
        CtlCmd::Pause { service } => R::Pause {
            service: service.clone(),
        },
        CtlCmd::Resume { service } => R::Resume {
            service: service.clone(),
        },
        CtlCmd::Spawn {
            template,
            instance,
            params,
            ..
        } => {
            let mut map = std::collections::BTreeMap::new();
            for kv in params {
                let (k, v) = kv
                    .split_once('=')
                    .ok_or_else(|| format!("--param {kv:?}: expected NAME=VALUE"))?;
                map.insert(k.trim().to_string(), v.to_string());
            }
            R::Spawn {
                template: template.clone(),
                instance: *instance,
                params: map,
            }
        }
        CtlCmd::Destroy {
            template,
            instance,
            purge,
        } => R::Destroy {
            template: template.clone(),
            instance: *instance,
            purge: *purge,
        },
        CtlCmd::Limits {
            group,
            cpus,
            memory,
            pids,
        } => {
            let millicpus = match cpus {
                Some(c) => Some(
                    config::parse_cpus(c)?
                        .ok_or("--cpus: a number of CPUs (\"max\" is not a change)")?,
                ),
                None => None,
            };
            let memory = match memory {
                Some(m) => Some(
                    config::parse_group_memory(m)?
                        .ok_or("--memory: a size (\"max\" is not a change)")?,
                ),
                None => None,
            };
            R::Limits {
                group: group.clone(),
                limits: control::GroupLimits {
                    millicpus,
                    memory,
                    pids: *pids,
                },
            }
        }
        CtlCmd::Reload => R::Reload,
        CtlCmd::Shutdown { action } => R::Shutdown {
            action: match action.as_str() {
                "reboot" => control::Action::Reboot,
                "halt" => control::Action::Halt,
                _ => control::Action::Poweroff,
            },
        },
    })
}

fn ctl(a: &CtlArgs) -> i32 {
    let sock = default_socket(a);
    let req = match ctl_request(&a.action) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("zigral-init ctl: {e}");
            return 2;
        }
    };
    let timeout = Duration::from_secs(120);
    let result = match control::call(&sock, &req, timeout) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("zigral-init ctl: {e}");
            return 1;
        }
    };
    if let CtlCmd::Spawn {
        template,
        instance,
        wait: Some(secs),
        ..
    } = &a.action
    {
        let group = format!("{template}@{instance}");
        let deadline = std::time::Instant::now() + Duration::from_secs(*secs);
        loop {
            let st = match control::call(&sock, &control::Request::Status, timeout) {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("zigral-init ctl: {e}");
                    return 1;
                }
            };
            let members: Vec<&serde_json::Value> = st["services"]
                .as_array()
                .map(|l| l.iter().filter(|s| s["group"] == group.as_str()).collect())
                .unwrap_or_default();
            if !members.is_empty()
                && members
                    .iter()
                    .all(|s| s["state"] == "ready" || s["state"] == "running")
            {
                break;
            }
            if std::time::Instant::now() > deadline {
                eprintln!("zigral-init ctl: {group} not ready within {secs}s");
                eprint!("{}", control::status_table(&st));
                return 1;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    if a.json {
        println!("{result}");
    } else if matches!(a.action, CtlCmd::Status) {
        print!("{}", control::status_table(&result));
    } else {
        println!("ok: {result}");
    }
    0
}
