//! Raw CDP commands: a method name plus JSON params, answered with raw JSON. Used instead of
//! chromiumoxide's generated types so that protocol drift between the crate's CDP revision and
//! the installed Chromium cannot break a call.

use std::borrow::Cow;

use chromiumoxide::error::CdpError;
use chromiumoxide::types::{Command, Method, MethodId};
use serde::Serialize;
use serde_json::Value;

use crate::BrowserError;

/// One CDP command with untyped params and result.
#[derive(Debug, Clone)]
pub struct Raw {
    method: &'static str,
    params: Value,
}

impl Raw {
    /// A command `method` (e.g. `"Target.getTargets"`) with JSON `params` (an object).
    pub fn new(method: &'static str, params: Value) -> Raw {
        Raw { method, params }
    }
}

impl Serialize for Raw {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.params.serialize(s)
    }
}

impl Method for Raw {
    fn identifier(&self) -> MethodId {
        Cow::Borrowed(self.method)
    }
}

impl Command for Raw {
    type Response = Value;
}

/// Maps a chromiumoxide error to ours; connection-level failures become `Unavailable`.
pub(crate) fn map_err(e: CdpError) -> BrowserError {
    match e {
        CdpError::Ws(_)
        | CdpError::Io(_)
        | CdpError::NoResponse
        | CdpError::ChannelSendError(_)
        | CdpError::UnexpectedWsMessage(_) => {
            BrowserError::Unavailable(format!("connection to Chrome lost: {e}"))
        }
        CdpError::Timeout => BrowserError::Timeout("Chrome did not answer in time".into()),
        CdpError::Chrome(err) => BrowserError::Cdp(err.to_string()),
        CdpError::NotFound => BrowserError::NotFound("target".into()),
        CdpError::JavascriptException(d) => BrowserError::Script(d.text.clone()),
        other => BrowserError::Cdp(other.to_string()),
    }
}

/// True when an error means the CDP connection itself is gone (worth one reconnect + retry).
pub(crate) fn is_connection_error(e: &BrowserError) -> bool {
    matches!(e, BrowserError::Unavailable(_))
}
