//! Client of the supervisor's control socket (`<state>/init.sock`): one JSON request line,
//! one JSON reply line (`{"ok":true,"result":..}` or `{"ok":false,"error":".."}`).

use std::path::Path;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;

/// Why a supervisor request failed.
#[derive(Debug, thiserror::Error)]
pub enum SupervisorError {
    #[error("supervisor socket {path} unreachable: {source}")]
    Unreachable {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("supervisor did not answer within {0:?}")]
    Timeout(Duration),
    #[error("supervisor sent an invalid reply: {0}")]
    BadReply(String),
    #[error("supervisor refused: {0}")]
    Refused(String),
}

/// Longest reply line we read.
const MAX_REPLY: u64 = 1024 * 1024;

/// Sends `request` and returns the `result` of an `ok` reply.
pub async fn request(
    socket: &Path,
    request: &Value,
    timeout: Duration,
) -> Result<Value, SupervisorError> {
    tokio::time::timeout(timeout, exchange(socket, request))
        .await
        .map_err(|_| SupervisorError::Timeout(timeout))?
}

async fn exchange(socket: &Path, request: &Value) -> Result<Value, SupervisorError> {
    let unreachable = |source| SupervisorError::Unreachable {
        path: socket.display().to_string(),
        source,
    };
    let mut stream = UnixStream::connect(socket).await.map_err(unreachable)?;
    let mut line = request.to_string();
    line.push('\n');
    stream
        .write_all(line.as_bytes())
        .await
        .map_err(unreachable)?;
    let mut reader = BufReader::new(tokio::io::AsyncReadExt::take(stream, MAX_REPLY));
    let mut reply = String::new();
    reader.read_line(&mut reply).await.map_err(unreachable)?;
    if reply.is_empty() {
        return Err(SupervisorError::BadReply(
            "connection closed without a reply".into(),
        ));
    }
    let v: Value = serde_json::from_str(reply.trim_end())
        .map_err(|e| SupervisorError::BadReply(e.to_string()))?;
    match v.get("ok").and_then(Value::as_bool) {
        Some(true) => Ok(v.get("result").cloned().unwrap_or(Value::Null)),
        Some(false) => Err(SupervisorError::Refused(
            v.get("error")
                .and_then(Value::as_str)
                .unwrap_or("no reason given")
                .to_owned(),
        )),
        None => Err(SupervisorError::BadReply(
            "reply has no boolean 'ok'".into(),
        )),
    }
}
