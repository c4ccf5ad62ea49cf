//! The control-socket protocol (see `init/PROTOCOL.md`): request parsing, replies, and the
//! blocking client used by `zigral-init ctl` and by tests.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use serde::Serialize;
use serde_json::Value;

pub use zigral_init_protocol::{
    Destroyed, MAX_LINE, Reply, Request, ServiceReply, ServiceState, ServiceStatus,
    ShutdownAction as Action, ShutdownReply, Spawned, Status,
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
            parse_request(r#"{"cmd":"shutdown","action":"reboot"}"#),
            Ok(Request::Shutdown {
                action: Action::Reboot
            })
        );
        assert!(parse_request(r#"{"cmd":"explode"}"#).is_err());
    }
}
