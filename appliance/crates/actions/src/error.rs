//! Typed action errors and their HTTP mapping (status + stable code + message).

use zigral_browser::BrowserError;
use zigral_desktop::DesktopError;

use crate::schema::ErrorBody;

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
        code: &'static str,
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
}

impl ActionError {
    /// The HTTP status this error maps to.
    pub fn status(&self) -> u16 {
        match self {
            ActionError::BadRequest(_) => 400,
            ActionError::Invalid { code, .. } => match *code {
                "unknown_action" | "invalid_action" => 400,
                _ => 422,
            },
            ActionError::Desktop(e) => match e {
                DesktopError::BadKeyName { .. }
                | DesktopError::BadCombo { .. }
                | DesktopError::BadText { .. }
                | DesktopError::OutOfBounds { .. }
                | DesktopError::InvalidArgument(_)
                | DesktopError::Resize { .. } => 422,
                DesktopError::NoDisplay { .. } | DesktopError::Closed(_) => 503,
                _ => 500,
            },
            ActionError::Browser(e) => match e {
                BrowserError::UrlNotAllowed(_) | BrowserError::Invalid(_) => 422,
                BrowserError::NotFound(_) => 404,
                BrowserError::Unavailable(_) => 503,
                BrowserError::Navigation(_) => 502,
                BrowserError::Timeout(_) => 504,
                _ => 500,
            },
            ActionError::NoBrowser => 503,
        }
    }

    /// A stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            ActionError::BadRequest(_) => "bad_request",
            ActionError::Invalid { code, .. } => code,
            ActionError::Desktop(e) => match e {
                DesktopError::BadKeyName { .. } | DesktopError::BadCombo { .. } => "bad_key",
                DesktopError::BadText { .. } => "bad_text",
                DesktopError::OutOfBounds { .. } => "out_of_bounds",
                DesktopError::InvalidArgument(_) => "invalid_argument",
                DesktopError::Resize { .. } => "resize_failed",
                DesktopError::NoDisplay { .. } | DesktopError::Closed(_) => "desktop_unavailable",
                _ => "desktop_error",
            },
            ActionError::Browser(e) => match e {
                BrowserError::UrlNotAllowed(_) => "url_not_allowed",
                BrowserError::Invalid(_) => "invalid_argument",
                BrowserError::NotFound(_) => "not_found",
                BrowserError::Unavailable(_) => "browser_unavailable",
                BrowserError::Navigation(_) => "navigation_failed",
                BrowserError::Timeout(_) => "timeout",
                BrowserError::Script(_) => "script_error",
                _ => "browser_error",
            },
            ActionError::NoBrowser => "browser_unavailable",
        }
    }

    /// True when the failure is the client's (4xx).
    pub fn is_client_error(&self) -> bool {
        (400..500).contains(&self.status())
    }

    /// The error as a client-facing body. Internal errors keep a generic message (details
    /// are logged by the caller).
    pub fn body(&self) -> ErrorBody {
        ErrorBody {
            error: self.code().to_owned(),
            message: self.to_string(),
        }
    }

    /// The HTTP status of an error code as found in an executed action's [`ErrorBody`]
    /// (the status [`ActionError::status`] gives the error with that code).
    pub fn status_for_code(code: &str) -> u16 {
        match code {
            "bad_request" | "unknown_action" | "invalid_action" => 400,
            "not_found" => 404,
            "bad_key" | "bad_text" | "out_of_bounds" | "invalid_argument" | "resize_failed"
            | "url_not_allowed" => 422,
            "navigation_failed" => 502,
            "desktop_unavailable" | "browser_unavailable" => 503,
            "timeout" => 504,
            _ => 500,
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
