//! zigral-browser: the single owner of one desktop's Chrome, driven over the Chrome DevTools
//! Protocol (CDP) with chromiumoxide.
//!
//! One [`Browser`] per desktop attaches to the Chrome that zigral-init started with
//! `--remote-debugging-port` on 127.0.0.1. Every call first asks Chrome's DevTools HTTP
//! endpoint (`/json/version`) which browser is listening; when Chrome was restarted by the
//! supervisor the WebSocket URL changes and the owner reconnects (retrying with backoff while
//! the port is closed). While Chrome is down, calls fail with [`BrowserError::Unavailable`].
//!
//! What it offers: navigation with a URL policy ([`UrlPolicy`]: scheme allowlist and an
//! optional per-session domain allowlist), a navigation guard that holds every top-level
//! navigation of every tab to a policy ([`Browser::guard_navigation`]), history, reload, load waits, tabs, URL/title, the
//! readable page text and a compact accessibility snapshot whose boxes are in SCREEN pixels
//! (so an agent can click them through XTEST), downloads into a per-desktop directory, and
//! checkpoints of cookies, storage and tabs ([`Checkpoint`]).
//!
//! Chromium 156 sends one event per load that chromiumoxide 0.9.1 cannot parse
//! (`Network.requestWillBeSentExtraInfo`); the handler task logs and keeps polling on such
//! errors instead of stopping, and everything here is done with raw CDP commands
//! ([`raw::Raw`]) so no typed-response mismatch can break a call.

mod checkpoint;
mod conn;
mod downloads;
mod focus;
mod guard;
mod page;
pub mod raw;
#[cfg(feature = "testkit")]
pub mod testkit;
mod url_policy;

pub use checkpoint::{Checkpoint, OriginStorage, TabState};
pub use conn::{Browser, BrowserOptions};
pub use downloads::DownloadInfo;
pub use focus::{ElementInfo, FocusHandle, FocusedField};
pub use guard::{Blocked, NavGuard, Stopped};
pub use page::{A11yNode, A11ySnapshot, PageText, Rect, TabInfo};
pub use url_policy::{UrlPolicy, UrlRejection};

/// Errors of browser operations. Each variant's message is safe to show to an API client.
#[derive(Debug, thiserror::Error)]
pub enum BrowserError {
    /// Chrome is not reachable (not started yet, or restarting); retry later.
    #[error("browser unavailable: {0}")]
    Unavailable(String),
    /// The URL was refused by the navigation policy; nothing was done.
    #[error("URL not allowed: {0}")]
    UrlNotAllowed(#[from] UrlRejection),
    /// The request named something that does not exist (tab id, download name, ...).
    #[error("not found: {0}")]
    NotFound(String),
    /// The request was malformed (bad tab id, bad file name, ...); nothing was done.
    #[error("invalid request: {0}")]
    Invalid(String),
    /// Navigation reached Chrome but failed there (DNS, connection refused, ...).
    #[error("navigation failed: {0}")]
    Navigation(String),
    /// Chrome did not answer or finish loading in time.
    #[error("timed out: {0}")]
    Timeout(String),
    /// A JavaScript evaluation threw.
    #[error("page script error: {0}")]
    Script(String),
    /// Chrome rejected a CDP command.
    #[error("CDP error: {0}")]
    Cdp(String),
    /// Local file-system error (downloads directory).
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
}

impl BrowserError {
    /// True for errors caused by the client's input (map to HTTP 4xx).
    pub fn is_client_error(&self) -> bool {
        matches!(
            self,
            BrowserError::UrlNotAllowed(_) | BrowserError::NotFound(_) | BrowserError::Invalid(_)
        )
    }
}

/// Result alias of this crate.
pub type Result<T, E = BrowserError> = std::result::Result<T, E>;
