//! Typed errors of the desktop-control library, with messages meant for agents and operators.

/// Everything that can go wrong while driving an X display.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DesktopError {
    /// The display name is malformed, or nothing accepts connections there.
    #[error("cannot connect to X display {display:?}: {reason}")]
    NoDisplay { display: String, reason: String },

    /// A required X extension is absent (or too old) on the server.
    #[error("X server on {display} lacks the {name} extension (needed for {needed_for})")]
    MissingExtension {
        display: String,
        name: &'static str,
        needed_for: &'static str,
    },

    /// A key name in a combo is not a known keysym name or alias.
    #[error("unknown key name {name:?}{}", match suggestion { Some(s) => format!(" (did you mean {s:?}?)"), None => String::new() })]
    BadKeyName {
        name: String,
        suggestion: Option<String>,
    },

    /// A combo is syntactically wrong (empty, empty part such as `ctrl++a` misuse).
    #[error("invalid key combo {combo:?}: {reason}")]
    BadCombo { combo: String, reason: String },

    /// Text to type contains a character that cannot be typed (a control character).
    #[error("cannot type character U+{codepoint:04X} at index {index}: {reason}")]
    BadText {
        index: usize,
        codepoint: u32,
        reason: &'static str,
    },

    /// A point or region lies outside the screen.
    #[error("{what} ({x},{y} {w}x{h}) is outside the {screen_w}x{screen_h} screen")]
    OutOfBounds {
        what: &'static str,
        x: i64,
        y: i64,
        w: u32,
        h: u32,
        screen_w: u32,
        screen_h: u32,
    },

    /// An argument is out of its allowed range (click count, durations, sizes, quality...).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),

    /// The display cannot be resized to the requested size.
    #[error("cannot resize the display to {width}x{height}: {reason}")]
    Resize {
        width: u32,
        height: u32,
        reason: String,
    },

    /// Reading or owning the CLIPBOARD selection failed.
    #[error("clipboard: {0}")]
    Clipboard(String),

    /// The server uses a pixel format this library does not decode.
    #[error("unsupported: {0}")]
    Unsupported(String),

    /// Encoding a screenshot failed.
    #[error("image encoding failed: {0}")]
    Encode(String),

    /// The server answered a request with an X protocol error (the connection is still up).
    #[error("X protocol error: {0}")]
    Protocol(String),

    /// The X connection broke (I/O error, server gone, malformed stream): the connection
    /// must be rebuilt.
    #[error("X connection lost: {0}")]
    ConnectionLost(String),

    /// The owner thread of the connection is gone (connection lost earlier).
    #[error("the desktop connection to {0} is closed")]
    Closed(String),
}

impl DesktopError {
    /// True when the X connection itself is gone (or never came up): only then does a
    /// caller need a new connection. Clipboard, encoding and protocol errors leave the
    /// connection usable.
    pub fn is_connection_lost(&self) -> bool {
        matches!(
            self,
            DesktopError::NoDisplay { .. }
                | DesktopError::Closed(_)
                | DesktopError::ConnectionLost(_)
        )
    }
}

impl From<x11rb::errors::ConnectionError> for DesktopError {
    fn from(e: x11rb::errors::ConnectionError) -> Self {
        DesktopError::ConnectionLost(e.to_string())
    }
}

impl From<x11rb::errors::ReplyError> for DesktopError {
    fn from(e: x11rb::errors::ReplyError) -> Self {
        match e {
            x11rb::errors::ReplyError::ConnectionError(c) => c.into(),
            x11rb::errors::ReplyError::X11Error(_) => DesktopError::Protocol(e.to_string()),
        }
    }
}

impl From<x11rb::errors::ReplyOrIdError> for DesktopError {
    fn from(e: x11rb::errors::ReplyOrIdError) -> Self {
        match e {
            x11rb::errors::ReplyOrIdError::ConnectionError(c) => c.into(),
            _ => DesktopError::Protocol(e.to_string()),
        }
    }
}
