//! Typed action errors: [`ErrorCode`] (the one table of stable wire codes, each with its HTTP
//! status and whether it means "the desktop connection is lost") and [`ActionError`].

use serde::{Deserialize, Serialize};
use zigral_browser::BrowserError;
use zigral_desktop::DesktopError;

use crate::schema::ErrorBody;

/// A stable machine-readable error code. The serde names are the wire strings of the API
/// (`"out_of_bounds"`, `"desktop_unavailable"`, ...); each code carries its HTTP status
/// ([`ErrorCode::status`]) and whether it means the X connection is gone
/// ([`ErrorCode::connection_lost`]).
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    Serialize,
    Deserialize,
    schemars::JsonSchema,
    utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// Malformed request (not JSON, wrong shape).
    BadRequest,
    /// No such action.
    UnknownAction,
    /// An action with missing or conflicting fields.
    InvalidAction,
    /// A browser object (tab) does not exist.
    NotFound,
    /// A key name or combo is unknown or malformed.
    BadKey,
    /// Text holds a character that cannot be typed.
    BadText,
    /// A point lies off the screen.
    OutOfBounds,
    /// An argument is out of its range.
    InvalidArgument,
    /// The display could not be resized.
    ResizeFailed,
    /// The URL policy refuses the URL.
    UrlNotAllowed,
    /// Chrome answered with a navigation failure.
    NavigationFailed,
    /// The X display is not reachable (not up, connection lost, connect timed out).
    DesktopUnavailable,
    /// Chrome is not reachable.
    BrowserUnavailable,
    /// Chrome did not answer or finish in time.
    Timeout,
    /// A page script failed.
    ScriptError,
    /// Any other desktop failure (clipboard, encoding, X protocol error); the connection
    /// stays up.
    DesktopError,
    /// Any other browser failure.
    BrowserError,
    /// The actions ran but the action log could not be written.
    ActionLogFailed,
    /// No screenshot now: a field holding a secret has keyboard focus (move the focus away).
    ScreenshotWithheld,
}

impl ErrorCode {
    /// Every code (for documentation and tests).
    pub const ALL: [ErrorCode; 19] = [
        ErrorCode::BadRequest,
        ErrorCode::UnknownAction,
        ErrorCode::InvalidAction,
        ErrorCode::NotFound,
        ErrorCode::BadKey,
        ErrorCode::BadText,
        ErrorCode::OutOfBounds,
        ErrorCode::InvalidArgument,
        ErrorCode::ResizeFailed,
        ErrorCode::UrlNotAllowed,
        ErrorCode::NavigationFailed,
        ErrorCode::DesktopUnavailable,
        ErrorCode::BrowserUnavailable,
        ErrorCode::Timeout,
        ErrorCode::ScriptError,
        ErrorCode::DesktopError,
        ErrorCode::BrowserError,
        ErrorCode::ActionLogFailed,
        ErrorCode::ScreenshotWithheld,
    ];

    /// The HTTP status of this code.
    pub fn status(self) -> u16 {
        use ErrorCode::*;
        match self {
            BadRequest | UnknownAction | InvalidAction => 400,
            NotFound => 404,
            ScreenshotWithheld => 409,
            BadKey | BadText | OutOfBounds | InvalidArgument | ResizeFailed | UrlNotAllowed => 422,
            NavigationFailed => 502,
            DesktopUnavailable | BrowserUnavailable => 503,
            Timeout => 504,
            ScriptError | DesktopError | BrowserError | ActionLogFailed => 500,
        }
    }

    /// True when this code means the desktop's X connection is gone, so it must be rebuilt
    /// before the next action. Nothing else (clipboard timeouts, encoding errors, browser
    /// errors) tears the connection down.
    pub fn connection_lost(self) -> bool {
        matches!(self, ErrorCode::DesktopUnavailable)
    }

    /// True for the client's own mistakes (4xx).
    pub fn is_client_error(self) -> bool {
        (400..500).contains(&self.status())
    }

    /// The wire string.
    pub fn as_str(self) -> &'static str {
        use ErrorCode::*;
        match self {
            BadRequest => "bad_request",
            UnknownAction => "unknown_action",
            InvalidAction => "invalid_action",
            NotFound => "not_found",
            BadKey => "bad_key",
            BadText => "bad_text",
            OutOfBounds => "out_of_bounds",
            InvalidArgument => "invalid_argument",
            ResizeFailed => "resize_failed",
            UrlNotAllowed => "url_not_allowed",
            NavigationFailed => "navigation_failed",
            DesktopUnavailable => "desktop_unavailable",
            BrowserUnavailable => "browser_unavailable",
            Timeout => "timeout",
            ScriptError => "script_error",
            DesktopError => "desktop_error",
            BrowserError => "browser_error",
            ActionLogFailed => "action_log_failed",
            ScreenshotWithheld => "screenshot_withheld",
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl PartialEq<&str> for ErrorCode {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl PartialEq<str> for ErrorCode {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

/// Why an action request failed.
#[derive(Debug, thiserror::Error)]
pub enum ActionError {
    /// The request body is malformed (not JSON, wrong shape): 400, nothing ran.
    #[error("{0}")]
    BadRequest(String),
    /// Action `index` failed validation (unknown action, bad field, off-screen coordinates,
    /// bad key name, disallowed URL...): 400/422, nothing ran.
    #[error("{message}")]
    Invalid {
        index: usize,
        code: ErrorCode,
        message: String,
    },
    /// The X display refused or failed an action.
    #[error("{0}")]
    Desktop(#[from] DesktopError),
    /// Chrome refused or failed an action.
    #[error("{0}")]
    Browser(#[from] BrowserError),
    /// This session has no browser attached.
    #[error("no browser is attached to this desktop")]
    NoBrowser,
    /// The screen gate refused a screenshot (a secret field has focus); the note says why.
    #[error("{0}")]
    ScreenshotWithheld(String),
}

impl ActionError {
    /// The HTTP status this error maps to.
    pub fn status(&self) -> u16 {
        self.code().status()
    }

    /// The stable machine-readable code.
    pub fn code(&self) -> ErrorCode {
        match self {
            ActionError::BadRequest(_) => ErrorCode::BadRequest,
            ActionError::Invalid { code, .. } => *code,
            ActionError::Desktop(e) => match e {
                DesktopError::BadKeyName { .. } | DesktopError::BadCombo { .. } => {
                    ErrorCode::BadKey
                }
                DesktopError::BadText { .. } => ErrorCode::BadText,
                DesktopError::OutOfBounds { .. } => ErrorCode::OutOfBounds,
                DesktopError::InvalidArgument(_) => ErrorCode::InvalidArgument,
                DesktopError::Resize { .. } => ErrorCode::ResizeFailed,
                e if e.is_connection_lost() => ErrorCode::DesktopUnavailable,
                _ => ErrorCode::DesktopError,
            },
            ActionError::Browser(e) => match e {
                BrowserError::UrlNotAllowed(_) => ErrorCode::UrlNotAllowed,
                BrowserError::Invalid(_) => ErrorCode::InvalidArgument,
                BrowserError::NotFound(_) => ErrorCode::NotFound,
                BrowserError::Unavailable(_) => ErrorCode::BrowserUnavailable,
                BrowserError::Navigation(_) => ErrorCode::NavigationFailed,
                BrowserError::Timeout(_) => ErrorCode::Timeout,
                BrowserError::Script(_) => ErrorCode::ScriptError,
                _ => ErrorCode::BrowserError,
            },
            ActionError::NoBrowser => ErrorCode::BrowserUnavailable,
            ActionError::ScreenshotWithheld(_) => ErrorCode::ScreenshotWithheld,
        }
    }

    /// True when the failure is the client's (4xx).
    pub fn is_client_error(&self) -> bool {
        self.code().is_client_error()
    }

    /// True when the desktop's X connection is gone and must be rebuilt.
    pub fn connection_lost(&self) -> bool {
        self.code().connection_lost()
    }

    /// The error as a client-facing body.
    pub fn body(&self) -> ErrorBody {
        ErrorBody {
            error: self.code(),
            message: self.to_string(),
        }
    }

    /// Index of the action that failed validation, if that is what happened.
    pub fn index(&self) -> Option<usize> {
        match self {
            ActionError::Invalid { index, .. } => Some(*index),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_names_match_as_str_and_only_unavailable_means_reconnect() {
        for c in ErrorCode::ALL {
            let wire = serde_json::to_value(c).expect("ser");
            assert_eq!(wire, serde_json::Value::String(c.as_str().into()));
            let back: ErrorCode = serde_json::from_value(wire).expect("de");
            assert_eq!(back, c);
        }
        let clip = ActionError::Desktop(zigral_desktop::DesktopError::Clipboard("slow".into()));
        assert_eq!(clip.code(), "desktop_error");
        assert!(!clip.connection_lost());
        let enc = ActionError::Desktop(zigral_desktop::DesktopError::Encode("x".into()));
        assert!(!enc.connection_lost());
        let lost = ActionError::Desktop(zigral_desktop::DesktopError::ConnectionLost("eof".into()));
        assert_eq!(lost.code(), "desktop_unavailable");
        assert_eq!(lost.status(), 503);
        assert!(lost.connection_lost());
    }
}
