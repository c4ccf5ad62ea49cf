//! The zigral-init control-socket protocol (`init/PROTOCOL.md`), typed once: one JSON object
//! per line each way. zigral-init parses [`Request`]s and answers [`Reply`] lines; its clients
//! (`zigral-init ctl`, the control plane, tests) build requests and read typed results
//! ([`Status`], [`Spawned`], [`Destroyed`], [`PauseReply`]). std + serde only.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

/// Largest request line zigral-init accepts.
pub const MAX_LINE: usize = 64 * 1024;

/// What `shutdown` does once every service is stopped.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ShutdownAction {
    #[default]
    Poweroff,
    Reboot,
    Halt,
}

impl ShutdownAction {
    /// Name used in logs and on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            ShutdownAction::Poweroff => "poweroff",
            ShutdownAction::Reboot => "reboot",
            ShutdownAction::Halt => "halt",
        }
    }
}

/// One request line: `{"cmd": "...", ...}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "lowercase")]
pub enum Request {
    Status,
    Start {
        service: String,
    },
    Stop {
        service: String,
    },
    Restart {
        service: String,
    },
    /// Freezes a running service: SIGSTOP to its process group, answered ([`PauseReply`])
    /// once every process (every thread) of the group is stopped, or an error after
    /// [`PAUSE_TIMEOUT_MS`] (the service is then resumed). Idempotent. A paused service that
    /// is stopped (stop, restart, destroy, shutdown) gets SIGKILL, never SIGCONT.
    Pause {
        service: String,
    },
    /// Thaws a service: SIGCONT to its process group. Idempotent.
    Resume {
        service: String,
    },
    /// Starts instance `instance` of `template`. `params` set the template's declared
    /// `params` for this instance (anything else is refused; see [`check_param_value`]).
    Spawn {
        template: String,
        #[serde(with = "instance")]
        instance: u32,
        #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
        params: BTreeMap<String, String>,
    },
    /// Stops and removes an instance; with `purge`, also deletes the template's `purge` paths
    /// of that instance once its processes are gone.
    Destroy {
        template: String,
        #[serde(with = "instance")]
        instance: u32,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        purge: bool,
    },
    /// Changes the cgroup limits of a running instance (`desktop@3`); absent fields keep
    /// their value. Answers the group's [`GroupStatus`].
    Limits {
        group: String,
        limits: GroupLimits,
    },
    Shutdown {
        #[serde(default)]
        action: ShutdownAction,
    },
    /// Reads the config file again (an update switched the slot it lives in) and takes the
    /// new definitions of services that are not running and of templates (for instances
    /// spawned from now on). Running services keep theirs until they are started anew after
    /// the next boot; added or removed services and `[settings]` changes wait for the next
    /// boot too. Answers a [`ReloadReply`]; an invalid file changes nothing.
    Reload,
}

/// Names of the commands, for error messages.
pub const COMMANDS: &str =
    "status|start|stop|restart|pause|resume|spawn|destroy|limits|shutdown|reload";

/// How long `pause` waits for every process of the service to be stopped, milliseconds.
pub const PAUSE_TIMEOUT_MS: u64 = 2000;

/// Longest spawn parameter value, bytes.
pub const MAX_PARAM_LEN: usize = 128;

/// Checks one spawn parameter value: 1..=128 bytes of `A-Z a-z 0-9 . _ - /`, a relative path
/// at most (no leading `/`, no empty, `.` or `..` segment), so a value can name a directory
/// under the state dir but never leave it.
pub fn check_param_value(v: &str) -> Result<(), String> {
    if v.is_empty() || v.len() > MAX_PARAM_LEN {
        return Err(format!("must have 1 to {MAX_PARAM_LEN} bytes"));
    }
    if let Some(c) = v
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '/')))
    {
        return Err(format!("{c:?} is not allowed (letters, digits, . _ - /)"));
    }
    if v.split('/')
        .any(|seg| seg.is_empty() || seg == "." || seg == "..")
    {
        return Err("must be a relative path without empty, . or .. segments".into());
    }
    Ok(())
}

/// cgroup v2 limits of a template instance (all its services share one cgroup). `None`: no
/// limit (or, in a `limits` request, unchanged).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupLimits {
    /// `cpu.max` in thousandths of a CPU (2000 = 2 CPUs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub millicpus: Option<u64>,
    /// `memory.max`, bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<u64>,
    /// `pids.max`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pids: Option<u64>,
}

/// `instance` is a number, or a string holding one (both are accepted; numbers are sent).
mod instance {
    use super::*;

    pub fn serialize<S: Serializer>(n: &u32, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u32(*n)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            N(u64),
            S(String),
        }
        let bad = |what: String| serde::de::Error::custom(what);
        match Raw::deserialize(d)? {
            Raw::N(n) => u32::try_from(n).map_err(|_| bad(format!("bad instance {n}"))),
            Raw::S(s) => s
                .parse()
                .map_err(|_| bad(format!("instance must be a number, got {s:?}"))),
        }
    }
}

impl Request {
    /// Parses one request line, with messages meant for people typing them.
    pub fn parse(line: &str) -> Result<Request, String> {
        let v: Value = serde_json::from_str(line).map_err(|e| format!("bad JSON: {e}"))?;
        let Some(obj) = v.as_object() else {
            return Err("request must be a JSON object".into());
        };
        match obj.get("cmd").and_then(Value::as_str) {
            None => return Err("missing string field \"cmd\"".into()),
            Some(c) if !COMMANDS.split('|').any(|k| k == c) => {
                return Err(format!("unknown cmd {c:?} ({COMMANDS})"));
            }
            Some(_) => {}
        }
        serde_json::from_value(v).map_err(|e| e.to_string())
    }

    /// The request as one line (with its newline).
    pub fn to_line(&self) -> String {
        let mut s = serde_json::to_string(self).unwrap_or_default();
        s.push('\n');
        s
    }
}

/// One reply line: `{"ok":true,"result":...}` or `{"ok":false,"error":"..."}`.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    Ok(Value),
    Err(String),
}

#[derive(Serialize, Deserialize)]
struct WireReply {
    ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    result: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

impl Reply {
    /// An ok reply carrying `result` serialized.
    pub fn ok(result: &impl Serialize) -> Reply {
        match serde_json::to_value(result) {
            Ok(v) => Reply::Ok(v),
            Err(e) => Reply::Err(format!("cannot encode the result: {e}")),
        }
    }

    /// The reply as one line (with its newline).
    pub fn to_line(&self) -> String {
        let w = match self {
            Reply::Ok(v) => WireReply {
                ok: true,
                result: Some(v.clone()),
                error: None,
            },
            Reply::Err(e) => WireReply {
                ok: false,
                result: None,
                error: Some(e.clone()),
            },
        };
        let mut s = serde_json::to_string(&w).unwrap_or_default();
        s.push('\n');
        s
    }

    /// Parses a reply line.
    pub fn parse(line: &str) -> Result<Reply, String> {
        let w: WireReply =
            serde_json::from_str(line.trim_end()).map_err(|e| format!("bad reply: {e}"))?;
        Ok(if w.ok {
            Reply::Ok(w.result.unwrap_or(Value::Null))
        } else {
            Reply::Err(w.error.unwrap_or_else(|| "no reason given".into()))
        })
    }

    /// `result` of an ok reply as `T`, or the error message.
    pub fn into_result<T: for<'de> Deserialize<'de>>(self) -> Result<T, String> {
        match self {
            Reply::Ok(v) => serde_json::from_value(v).map_err(|e| format!("bad result: {e}")),
            Reply::Err(e) => Err(e),
        }
    }
}

/// Life-cycle state of a service as reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ServiceState {
    /// Waiting for dependencies, or started and probing.
    Starting,
    /// Readiness probe passed.
    Ready,
    /// Running without a probe (counts as ready for dependents).
    Running,
    /// Exited; restart scheduled.
    Backoff,
    Stopping,
    Stopped,
    /// Crash-loop limit reached, or `never` policy and a failure.
    Failed,
}

impl ServiceState {
    /// Name used on the wire (`ready`, `backoff`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            ServiceState::Starting => "starting",
            ServiceState::Ready => "ready",
            ServiceState::Running => "running",
            ServiceState::Backoff => "backoff",
            ServiceState::Stopping => "stopping",
            ServiceState::Stopped => "stopped",
            ServiceState::Failed => "failed",
        }
    }

    /// True when dependents may start.
    pub fn is_up(self) -> bool {
        matches!(self, ServiceState::Ready | ServiceState::Running)
    }
}

/// One service in a `status` result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceStatus {
    pub name: String,
    /// Template instance (`desktop@0`), if any.
    pub group: Option<String>,
    pub state: ServiceState,
    pub pid: Option<i32>,
    pub restarts: u32,
    pub last_exit: Option<String>,
    /// Time left until the restart while in `backoff`.
    pub next_restart_ms: Option<u64>,
    /// The delay chosen for the latest restart.
    pub backoff_ms: Option<u64>,
    pub uptime_ms: Option<u64>,
    /// Time from start to the readiness probe passing.
    pub ready_ms: Option<u64>,
    /// When it last became ready, in ms since zigral-init started (the boot timeline).
    #[serde(default)]
    pub ready_at_ms: Option<u64>,
    /// Frozen by a `pause` request (SIGSTOP) and not resumed yet; cleared when it exits.
    #[serde(default)]
    pub paused: bool,
}

/// One running template instance (`desktop@3`) in a `status` result, and the `limits` result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupStatus {
    /// `desktop@3`.
    pub name: String,
    pub template: String,
    pub instance: u32,
    /// The instance's effective params (declared defaults with the spawn's values).
    #[serde(default)]
    pub params: BTreeMap<String, String>,
    /// The limits asked for (the template's, the spawn's params, later `limits` requests).
    #[serde(default)]
    pub limits: GroupLimits,
    /// The instance's cgroup directory when cgroup v2 limits are in force, else null (limits
    /// are then not enforced: rlimits only).
    #[serde(default)]
    pub cgroup: Option<String>,
    /// Memory in use: the cgroup's `memory.current`, or the sum of the processes' RSS.
    #[serde(default)]
    pub memory_bytes: Option<u64>,
    /// CPU time used so far: the cgroup's `usage_usec`, or the processes' utime + stime.
    #[serde(default)]
    pub cpu_usec: Option<u64>,
    /// Processes (tasks) in the instance.
    #[serde(default)]
    pub tasks: Option<u64>,
}

/// The `status` result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    pub services: Vec<ServiceStatus>,
    /// Running template instances with their params, limits and usage.
    #[serde(default)]
    pub groups: Vec<GroupStatus>,
    pub shutting_down: bool,
    /// The boot timeline: where the time from kernel start to everything ready went.
    #[serde(default)]
    pub boot: Option<BootTimeline>,
}

/// When zigral-init started and when all wanted services were first ready (each service's own
/// moment is its `ready_at_ms`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BootTimeline {
    /// The kernel's uptime when zigral-init started as PID 1 (kernel and initramfs time);
    /// null when it is not PID 1.
    pub kernel_ms: Option<u64>,
    /// Since zigral-init started.
    pub uptime_ms: u64,
    /// When every service wanted at start was first ready, since zigral-init started.
    pub all_ready_ms: Option<u64>,
}

impl Status {
    /// The service named `name`.
    pub fn service(&self, name: &str) -> Option<&ServiceStatus> {
        self.services.iter().find(|s| s.name == name)
    }

    /// The template instance named `name` (`desktop@3`).
    pub fn group(&self, name: &str) -> Option<&GroupStatus> {
        self.groups.iter().find(|g| g.name == name)
    }

    /// The services of instance `group`.
    pub fn group_services<'a>(&'a self, group: &'a str) -> impl Iterator<Item = &'a ServiceStatus> {
        self.services
            .iter()
            .filter(move |s| s.group.as_deref() == Some(group))
    }
}

/// The `spawn` result (sent at once; poll `status` for readiness).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Spawned {
    pub group: String,
    pub services: Vec<String>,
}

/// The `destroy` result (sent once every process of the instance is gone).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Destroyed {
    pub destroyed: String,
    pub services: Vec<String>,
}

/// The `start`/`stop`/`restart` result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceReply {
    pub service: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<ServiceState>,
}

/// The `pause`/`resume` result: whether the service is now paused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PauseReply {
    pub service: String,
    pub paused: bool,
}

/// The `reload` result: service names (and `@template` names) by what happened to them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReloadReply {
    /// New definitions taken (the next start uses them).
    pub updated: Vec<String>,
    /// Running with a changed definition: kept as they are until the next boot.
    pub deferred: Vec<String>,
    /// Added to or removed from the file: the next boot applies them.
    pub next_boot: Vec<String>,
    pub unchanged: usize,
}

/// The `shutdown` result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShutdownReply {
    pub action: ShutdownAction,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn requests_round_trip_and_read_leniently() {
        assert_eq!(Request::parse(r#"{"cmd":"status"}"#), Ok(Request::Status));
        let spawn = Request::Spawn {
            template: "desktop".into(),
            instance: 3,
            params: BTreeMap::new(),
        };
        assert_eq!(
            Request::parse(r#"{"cmd":"spawn","template":"desktop","instance":"3"}"#),
            Ok(spawn.clone())
        );
        assert_eq!(Request::parse(spawn.to_line().trim_end()), Ok(spawn));
        assert_eq!(
            Request::parse(r#"{"cmd":"destroy","template":"desktop","instance":2}"#),
            Ok(Request::Destroy {
                template: "desktop".into(),
                instance: 2,
                purge: false,
            })
        );
        let spawn = Request::Spawn {
            template: "desktop".into(),
            instance: 4,
            params: BTreeMap::from([("profile_dir".to_string(), "profiles/u1".to_string())]),
        };
        assert_eq!(Request::parse(spawn.to_line().trim_end()), Ok(spawn));
        let limits = Request::Limits {
            group: "desktop@4".into(),
            limits: GroupLimits {
                millicpus: Some(500),
                memory: None,
                pids: Some(64),
            },
        };
        assert_eq!(
            limits.to_line(),
            "{\"cmd\":\"limits\",\"group\":\"desktop@4\",\"limits\":{\"millicpus\":500,\"pids\":64}}\n"
        );
        assert_eq!(Request::parse(limits.to_line().trim_end()), Ok(limits));
        assert_eq!(
            Request::parse(r#"{"cmd":"destroy","template":"desktop","instance":2,"purge":true}"#),
            Ok(Request::Destroy {
                template: "desktop".into(),
                instance: 2,
                purge: true,
            })
        );
        assert_eq!(Request::parse(r#"{"cmd":"reload"}"#), Ok(Request::Reload));
        assert_eq!(
            Request::parse(r#"{"cmd":"shutdown"}"#),
            Ok(Request::Shutdown {
                action: ShutdownAction::Poweroff
            })
        );
        assert_eq!(
            Request::parse(r#"{"cmd":"shutdown","action":"reboot"}"#),
            Ok(Request::Shutdown {
                action: ShutdownAction::Reboot
            })
        );
        let e = Request::parse(r#"{"cmd":"fly"}"#).unwrap_err();
        assert!(e.contains("unknown cmd \"fly\""), "{e}");
        assert!(
            Request::parse(r#"{"cmd":"stop"}"#)
                .unwrap_err()
                .contains("service")
        );
        assert!(
            Request::parse("not json")
                .unwrap_err()
                .starts_with("bad JSON")
        );
        assert!(Request::parse("[1]").is_err());
        let e = Request::parse(r#"{"cmd":"spawn","template":"d","instance":"x"}"#).unwrap_err();
        assert!(e.contains("instance must be a number"), "{e}");
        assert!(Request::parse(r#"{"cmd":"shutdown","action":"explode"}"#).is_err());
    }

    #[test]
    fn pause_and_resume_on_the_wire() {
        let pause = Request::Pause {
            service: "recorder@1".into(),
        };
        assert_eq!(
            pause.to_line(),
            "{\"cmd\":\"pause\",\"service\":\"recorder@1\"}\n"
        );
        assert_eq!(Request::parse(pause.to_line().trim_end()), Ok(pause));
        assert_eq!(
            Request::parse(r#"{"cmd":"resume","service":"recorder@1"}"#),
            Ok(Request::Resume {
                service: "recorder@1".into()
            })
        );
        let e = Request::parse(r#"{"cmd":"pause"}"#).unwrap_err();
        assert!(e.contains("service"), "{e}");
        let line = Reply::ok(&PauseReply {
            service: "recorder@1".into(),
            paused: true,
        })
        .to_line();
        assert_eq!(
            serde_json::from_str::<Value>(&line).unwrap(),
            serde_json::json!({"ok": true, "result": {"service": "recorder@1", "paused": true}})
        );
        let back: PauseReply = Reply::parse(&line).unwrap().into_result().unwrap();
        assert!(back.paused);
        // A status from a zigral-init without pause still parses: not paused.
        let old = r#"{"ok":true,"result":{"services":[{"name":"x","group":null,
            "state":"running","pid":7,"restarts":0,"last_exit":null,"next_restart_ms":null,
            "backoff_ms":null,"uptime_ms":10,"ready_ms":null}],"shutting_down":false}}"#
            .replace('\n', "");
        let st: Status = Reply::parse(&old).unwrap().into_result().unwrap();
        assert!(!st.service("x").unwrap().paused);
    }

    #[test]
    fn param_values_stay_inside_the_state_dir() {
        for ok in ["profiles/u-1", "2", "4G", "a.b_c-d"] {
            assert_eq!(check_param_value(ok), Ok(()), "{ok}");
        }
        for bad in [
            "", "/etc", "../x", "a/../b", "a//b", "a/./b", "a b", "a;b", "x/",
        ] {
            assert!(check_param_value(bad).is_err(), "{bad:?} accepted");
        }
        assert!(check_param_value(&"a".repeat(MAX_PARAM_LEN + 1)).is_err());
    }

    #[test]
    fn replies_round_trip() {
        let st = Status {
            services: vec![ServiceStatus {
                name: "chromium@0".into(),
                group: Some("desktop@0".into()),
                state: ServiceState::Ready,
                pid: Some(42),
                restarts: 1,
                last_exit: Some("signal 9 (SIGKILL)".into()),
                next_restart_ms: None,
                backoff_ms: Some(100),
                uptime_ms: Some(5120),
                ready_ms: Some(930),
                ready_at_ms: Some(14_200),
                paused: true,
            }],
            groups: vec![],
            shutting_down: false,
            boot: Some(BootTimeline {
                kernel_ms: Some(11_700),
                uptime_ms: 20_000,
                all_ready_ms: Some(14_200),
            }),
        };
        let line = Reply::ok(&st).to_line();
        assert!(line.starts_with(r#"{"ok":true,"result":{"#), "{line}");
        let back: Status = Reply::parse(&line).unwrap().into_result().unwrap();
        assert_eq!(back, st);
        assert!(back.service("chromium@0").unwrap().state.is_up());
        for st in [
            ServiceState::Backoff,
            ServiceState::Stopping,
            ServiceState::Failed,
        ] {
            assert_eq!(serde_json::to_value(st).unwrap(), st.as_str());
        }
        let err = Reply::Err("unknown service \"x\"".into()).to_line();
        assert_eq!(
            err,
            "{\"ok\":false,\"error\":\"unknown service \\\"x\\\"\"}\n"
        );
        assert_eq!(
            Reply::parse(&err).unwrap().into_result::<Status>(),
            Err("unknown service \"x\"".into())
        );
    }
}
