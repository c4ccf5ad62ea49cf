//! The control-socket protocol (see `init/PROTOCOL.md`): request parsing, replies, and the
//! blocking client used by `zigral-init ctl` and by tests.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};

/// What `shutdown` does once every service is stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Poweroff,
    Reboot,
    Halt,
}

impl Action {
    /// Name used in logs and the protocol.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Poweroff => "poweroff",
            Action::Reboot => "reboot",
            Action::Halt => "halt",
        }
    }
}

/// One request line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    Status,
    Start(String),
    Stop(String),
    Restart(String),
    Spawn { template: String, instance: u32 },
    Destroy { template: String, instance: u32 },
    Shutdown(Action),
}

/// Largest request line accepted.
pub const MAX_LINE: usize = 64 * 1024;

fn field<'a>(v: &'a Value, k: &str) -> Result<&'a str, String> {
    v.get(k)
        .and_then(Value::as_str)
        .ok_or_else(|| format!("missing string field \"{k}\""))
}

/// Parses one request line.
pub fn parse_request(line: &str) -> Result<Request, String> {
    let v: Value = serde_json::from_str(line).map_err(|e| format!("bad JSON: {e}"))?;
    if !v.is_object() {
        return Err("request must be a JSON object".into());
    }
    let cmd = field(&v, "cmd")?;
    let instance = || -> Result<u32, String> {
        match v.get("instance") {
            Some(Value::String(s)) => s
                .parse()
                .map_err(|_| format!("instance must be a number, got {s:?}")),
            Some(Value::Number(n)) => n
                .as_u64()
                .and_then(|n| u32::try_from(n).ok())
                .ok_or_else(|| format!("bad instance {n}")),
            _ => Err("missing field \"instance\"".into()),
        }
    };
    Ok(match cmd {
        "status" => Request::Status,
        "start" => Request::Start(field(&v, "service")?.to_string()),
        "stop" => Request::Stop(field(&v, "service")?.to_string()),
        "restart" => Request::Restart(field(&v, "service")?.to_string()),
        "spawn" => Request::Spawn {
            template: field(&v, "template")?.to_string(),
            instance: instance()?,
        },
        "destroy" => Request::Destroy {
            template: field(&v, "template")?.to_string(),
            instance: instance()?,
        },
        "shutdown" => Request::Shutdown(match v.get("action").and_then(Value::as_str) {
            None | Some("poweroff") => Action::Poweroff,
            Some("reboot") => Action::Reboot,
            Some("halt") => Action::Halt,
            Some(o) => {
                return Err(format!(
                    "unknown shutdown action {o:?} (poweroff|reboot|halt)"
                ));
            }
        }),
        other => {
            return Err(format!(
                "unknown cmd {other:?} (status|start|stop|restart|spawn|destroy|shutdown)"
            ));
        }
    })
}

/// `{"ok":true,"result":...}` as a line.
pub fn ok_line(result: Value) -> String {
    let mut s = json!({"ok": true, "result": result}).to_string();
    s.push('\n');
    s
}

/// `{"ok":false,"error":...}` as a line.
pub fn err_line(msg: &str) -> String {
    let mut s = json!({"ok": false, "error": msg}).to_string();
    s.push('\n');
    s
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

/// Sends `req` and returns the `result` of an ok reply.
pub fn call(socket: &Path, req: &Value, timeout: Duration) -> Result<Value, ClientError> {
    let mut s = UnixStream::connect(socket).map_err(|err| ClientError::Connect {
        path: socket.display().to_string(),
        err,
    })?;
    s.set_read_timeout(Some(timeout))?;
    s.set_write_timeout(Some(timeout))?;
    let mut line = req.to_string();
    line.push('\n');
    s.write_all(line.as_bytes())?;
    let mut r = BufReader::new(s);
    let mut reply = String::new();
    r.read_line(&mut reply)?;
    let v: Value =
        serde_json::from_str(reply.trim()).map_err(|_| ClientError::BadReply(reply.clone()))?;
    if v.get("ok").and_then(Value::as_bool) == Some(true) {
        Ok(v.get("result").cloned().unwrap_or(Value::Null))
    } else {
        Err(ClientError::Remote(
            v.get("error")
                .and_then(Value::as_str)
                .unwrap_or("unknown error")
                .to_string(),
        ))
    }
}

/// Renders a `status` result as a table.
pub fn status_table(result: &Value) -> String {
    let mut rows = vec![[
        "SERVICE".to_string(),
        "STATE".into(),
        "PID".into(),
        "RESTARTS".into(),
        "LAST EXIT".into(),
        "NEXT RESTART".into(),
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
        rows.push([
            g("name"),
            g("state"),
            g("pid"),
            g("restarts"),
            g("last_exit"),
            next,
        ]);
    }
    let mut widths = [0usize; 6];
    for r in &rows {
        for (i, c) in r.iter().enumerate() {
            widths[i] = widths[i].max(c.len());
        }
    }
    let mut out = String::new();
    for r in &rows {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_requests() {
        assert_eq!(parse_request(r#"{"cmd":"status"}"#), Ok(Request::Status));
        assert_eq!(
            parse_request(r#"{"cmd":"spawn","template":"desktop","instance":"3"}"#),
            Ok(Request::Spawn {
                template: "desktop".into(),
                instance: 3
            })
        );
        assert_eq!(
            parse_request(r#"{"cmd":"destroy","template":"desktop","instance":2}"#),
            Ok(Request::Destroy {
                template: "desktop".into(),
                instance: 2
            })
        );
        assert_eq!(
            parse_request(r#"{"cmd":"shutdown","action":"reboot"}"#),
            Ok(Request::Shutdown(Action::Reboot))
        );
        assert!(parse_request(r#"{"cmd":"stop"}"#).is_err());
        assert!(parse_request(r#"{"cmd":"explode"}"#).is_err());
        assert!(parse_request("not json").is_err());
        assert!(parse_request(r#"{"cmd":"spawn","template":"d","instance":"x"}"#).is_err());
    }
}
