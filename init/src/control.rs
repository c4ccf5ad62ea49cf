//! The control-socket protocol (see `init/PROTOCOL.md`): request parsing, replies, and the
//! blocking client used by `zigral-init ctl` and by tests.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use serde::Serialize;
use serde_json::Value;

pub use zigral_init_protocol::{
    BootTimeline, Destroyed, GroupLimits, GroupStatus, MAX_LINE, PauseReply, ReloadReply, Reply,
    Request, ServiceReply, ServiceState, ServiceStatus, ShutdownAction as Action, ShutdownReply,
    Spawned, Status,
};

/// Parses one request line.
pub fn parse_request(line: &str) -> Result<Request, String> {
    Request::parse(line)
}

/// `{"ok":true,"result":...}` as a line.
pub fn ok_line(result: &impl Serialize) -> String {
    Reply::ok(result).to_line()
}

/// `{"ok":false,"error":...}` as a line.
pub fn err_line(msg: &str) -> String {
    Reply::Err(msg.to_owned()).to_line()
}

/// Errors of the blocking client.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot connect to {path}: {err} (is zigral-init running?)")]
    Connect { path: String, err: std::io::Error },
    #[error("control socket I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("bad reply {0:?}")]
    BadReply(String),
    #[error("{0}")]
    Remote(String),
}

/// Sends `req` (a [`Request`], or any JSON object: tests send malformed ones) and returns the
/// `result` of an ok reply.
pub fn call(socket: &Path, req: &impl Serialize, timeout: Duration) -> Result<Value, ClientError> {
    let mut s = UnixStream::connect(socket).map_err(|err| ClientError::Connect {
        path: socket.display().to_string(),
        err,
    })?;
    s.set_read_timeout(Some(timeout))?;
    s.set_write_timeout(Some(timeout))?;
    let mut line = serde_json::to_string(req).map_err(|e| ClientError::BadReply(e.to_string()))?;
    line.push('\n');
    s.write_all(line.as_bytes())?;
    let mut r = BufReader::new(s);
    let mut reply = String::new();
    r.read_line(&mut reply)?;
    match Reply::parse(&reply).map_err(|_| ClientError::BadReply(reply.clone()))? {
        Reply::Ok(v) => Ok(v),
        Reply::Err(e) => Err(ClientError::Remote(e)),
    }
}

fn table(rows: &[Vec<String>]) -> String {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let mut widths = vec![0usize; cols];
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            widths[i] = widths[i].max(c.len());
        }
    }
    let mut out = String::new();
    for r in rows {
        let line: Vec<String> = r
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c:<w$}", w = widths[i]))
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out
}

/// `1.5G`, `300M`, `12K` or bytes.
fn human_bytes(b: u64) -> String {
    let units = [("G", 1u64 << 30), ("M", 1 << 20), ("K", 1 << 10)];
    for (u, n) in units {
        if b >= n {
            let v = b as f64 / n as f64;
            return if b.is_multiple_of(n) {
                format!("{}{u}", b / n)
            } else {
                format!("{v:.1}{u}")
            };
        }
    }
    b.to_string()
}

/// Renders a `status` result as tables: services, then template instances with their limits
/// and usage.
pub fn status_table(result: &Value) -> String {
    let mut rows = vec![vec![
        "SERVICE".to_string(),
        "STATE".into(),
        "PID".into(),
        "RESTARTS".into(),
        "LAST EXIT".into(),
        "NEXT RESTART".into(),
        "READY AT".into(),
    ]];
    let empty = vec![];
    let list = result
        .get("services")
        .and_then(Value::as_array)
        .unwrap_or(&empty);
    for s in list {
        let g = |k: &str| match s.get(k) {
            Some(Value::String(x)) => x.clone(),
            Some(Value::Null) | None => "-".into(),
            Some(v) => v.to_string(),
        };
        let next = match s.get("next_restart_ms").and_then(Value::as_u64) {
            Some(ms) => format!("in {ms} ms"),
            None => "-".into(),
        };
        let mut state = g("state");
        if s.get("paused").and_then(Value::as_bool) == Some(true) {
            state.push_str(" (paused)");
        }
        rows.push(vec![
            g("name"),
            state,
            g("pid"),
            g("restarts"),
            g("last_exit"),
            next,
            match s.get("ready_at_ms").and_then(Value::as_u64) {
                Some(ms) => format!("+{:.1} s", ms as f64 / 1000.0),
                None => "-".into(),
            },
        ]);
    }
    let mut out = table(&rows);
    if let Ok(st) = serde_json::from_value::<Status>(result.clone()) {
        out.push_str(&boot_timeline(&st));
        out.push('\n');
    }
    let groups = result
        .get("groups")
        .and_then(Value::as_array)
        .unwrap_or(&empty);
    if groups.is_empty() {
        return out;
    }
    let mut rows = vec![vec![
        "GROUP".to_string(),
        "CPUS".into(),
        "MEMORY".into(),
        "PIDS".into(),
        "CGROUP".into(),
        "MEM USED".into(),
        "CPU TIME".into(),
        "TASKS".into(),
        "PARAMS".into(),
    ]];
    for g in groups {
        let n = |obj: &Value, k: &str| obj.get(k).and_then(Value::as_u64);
        let limits = g.get("limits").cloned().unwrap_or(Value::Null);
        let params = g
            .get("params")
            .and_then(Value::as_object)
            .map(|m| {
                m.iter()
                    .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("?")))
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .unwrap_or_default();
        rows.push(vec![
            g.get("name").and_then(Value::as_str).unwrap_or("?").into(),
            n(&limits, "millicpus").map_or("max".into(), |m| format!("{}", m as f64 / 1000.0)),
            n(&limits, "memory").map_or("max".into(), human_bytes),
            n(&limits, "pids").map_or("max".into(), |p| p.to_string()),
            if g.get("cgroup").is_some_and(|c| !c.is_null()) {
                "yes".into()
            } else {
                "- (not enforced)".into()
            },
            n(g, "memory_bytes").map_or("-".into(), human_bytes),
            n(g, "cpu_usec").map_or("-".into(), |u| format!("{:.1}s", u as f64 / 1e6)),
            n(g, "tasks").map_or("-".into(), |t| t.to_string()),
            params,
        ]);
    }
    out.push('\n');
    out.push_str(&table(&rows));
    out
}

/// One line for the console: where the boot's time went, e.g.
/// `boot timeline: kernel 11.7 s | zigral-init +0.0 s | control ready +5.0 s | … | all ready +13.5 s`
/// (`+` = since zigral-init started; services in the order they became ready).
pub fn boot_timeline(st: &Status) -> String {
    let secs = |ms: u64| format!("{:.1} s", ms as f64 / 1000.0);
    let mut parts = Vec::new();
    if let Some(k) = st.boot.as_ref().and_then(|b| b.kernel_ms) {
        parts.push(format!("kernel {}", secs(k)));
    }
    parts.push("zigral-init +0.0 s".to_string());
    let mut ready: Vec<(u64, &str)> = st
        .services
        .iter()
        .filter_map(|s| s.ready_at_ms.map(|t| (t, s.name.as_str())))
        .collect();
    ready.sort();
    parts.extend(
        ready
            .iter()
            .map(|(t, n)| format!("{n} ready +{}", secs(*t))),
    );
    if let Some(all) = st.boot.as_ref().and_then(|b| b.all_ready_ms) {
        parts.push(format!("all ready +{}", secs(all)));
    }
    format!("boot timeline: {}", parts.join(" | "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boot_timeline_lists_services_in_the_order_they_became_ready() {
        let st: Status = serde_json::from_value(serde_json::json!({
            "services": [
                {"name": "chromium@0", "group": "desktop@0", "state": "ready", "pid": 3,
                 "restarts": 0, "last_exit": null, "next_restart_ms": null, "backoff_ms": null,
                 "uptime_ms": 1, "ready_ms": 900, "ready_at_ms": 13_400},
                {"name": "control", "group": null, "state": "ready", "pid": 2, "restarts": 0,
                 "last_exit": null, "next_restart_ms": null, "backoff_ms": null,
                 "uptime_ms": 1, "ready_ms": 4_000, "ready_at_ms": 5_000},
                {"name": "sshd", "group": null, "state": "running", "pid": 4, "restarts": 0,
                 "last_exit": null, "next_restart_ms": null, "backoff_ms": null,
                 "uptime_ms": 1, "ready_ms": null}
            ],
            "shutting_down": false,
            "boot": {"kernel_ms": 11_700, "uptime_ms": 20_000, "all_ready_ms": 13_500}
        }))
        .unwrap();
        assert_eq!(
            boot_timeline(&st),
            "boot timeline: kernel 11.7 s | zigral-init +0.0 s | control ready +5.0 s | \
             chromium@0 ready +13.4 s | all ready +13.5 s"
        );
        // An older zigral-init's status (no timeline) still reads, with nothing to show.
        let old: Status =
            serde_json::from_value(serde_json::json!({"services": [], "shutting_down": false}))
                .unwrap();
        assert_eq!(boot_timeline(&old), "boot timeline: zigral-init +0.0 s");
    }

    #[test]
    fn parses_requests() {
        assert_eq!(parse_request(r#"{"cmd":"status"}"#), Ok(Request::Status));
        assert_eq!(
            parse_request(r#"{"cmd":"shutdown","action":"reboot"}"#),
            Ok(Request::Shutdown {
                action: Action::Reboot
            })
        );
        assert!(parse_request(r#"{"cmd":"explode"}"#).is_err());
    }

    #[test]
    fn status_table_shows_groups() {
        let st = serde_json::json!({
            "services": [{"name":"xvfb@1","group":"desktop@1","state":"ready","pid":7,
                          "restarts":0,"last_exit":null,"next_restart_ms":null},
                         {"name":"recorder@1","group":"desktop@1","state":"running","pid":9,
                          "restarts":0,"last_exit":null,"next_restart_ms":null,"paused":true}],
            "groups": [{"name":"desktop@1","template":"desktop","instance":1,
                        "params":{"profile_dir":"profiles/u1/chrome"},
                        "limits":{"millicpus":1500,"memory":4294967296u64},
                        "cgroup":null,"memory_bytes":314572800,"cpu_usec":2500000,"tasks":12}],
            "shutting_down": false
        });
        let t = status_table(&st);
        assert!(t.contains("xvfb@1"), "{t}");
        let line = t.lines().find(|l| l.starts_with("recorder@1")).unwrap();
        assert!(line.contains("running (paused)"), "{line}");
        let line = t.lines().find(|l| l.starts_with("xvfb@1")).unwrap();
        assert!(!line.contains("paused"), "{line}");
        let line = t.lines().find(|l| l.starts_with("desktop@1")).unwrap();
        for part in [
            "1.5",
            "4G",
            "max",
            "not enforced",
            "300M",
            "2.5s",
            "12",
            "profile_dir=profiles/u1/chrome",
        ] {
            assert!(line.contains(part), "{part} missing in {line:?}");
        }
        assert_eq!(human_bytes(1536 << 20), "1.5G");
        assert_eq!(human_bytes(512), "512");
    }
}
