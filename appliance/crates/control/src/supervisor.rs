//! Client of the supervisor's control socket (`<state>/init.sock`): one typed request line,
//! one reply line, both from `zigral-init-protocol` (the types zigral-init itself uses).

use std::path::Path;
use std::time::Duration;

use serde::de::DeserializeOwned;
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

pub use zigral_init_protocol::{Request, ShutdownAction, ShutdownReply, Status};

/// Sends `request` and returns the `result` of an `ok` reply as `T`.
pub async fn request<T: DeserializeOwned>(
    socket: &Path,
    request: &Request,
    timeout: Duration,
) -> Result<T, SupervisorError> {
    tokio::time::timeout(timeout, exchange(socket, request))
        .await
        .map_err(|_| SupervisorError::Timeout(timeout))?
}

async fn exchange<T: DeserializeOwned>(
    socket: &Path,
    request: &Request,
) -> Result<T, SupervisorError> {
    let unreachable = |source| SupervisorError::Unreachable {
        path: socket.display().to_string(),
        source,
    };
    let mut stream = UnixStream::connect(socket).await.map_err(unreachable)?;
    let line = request.to_line();
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
    match zigral_init_protocol::Reply::parse(&reply).map_err(SupervisorError::BadReply)? {
        zigral_init_protocol::Reply::Ok(v) => {
            serde_json::from_value(v).map_err(|e| SupervisorError::BadReply(e.to_string()))
        }
        zigral_init_protocol::Reply::Err(e) => Err(SupervisorError::Refused(e)),
    }
}
