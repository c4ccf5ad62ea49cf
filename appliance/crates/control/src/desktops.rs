//! The desktops the control plane drives: one action [`Executor`] per desktop (X display
//! `:(display_base + N)`, Chrome CDP on 127.0.0.1:`(cdp_base + N)`), built lazily on first use,
//! shared by every session bound to that desktop (the executor's input lock serialises them),
//! and rebuilt on the next request after the X connection failed (Xvfb restarted).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use tokio::sync::Mutex;
use zigral_actions::{ActionError, Executor};
use zigral_browser::{Browser, BrowserOptions};
use zigral_desktop::{Desktop, DesktopError};

use crate::config::Config;

/// Per-desktop executors, created on demand.
#[derive(Clone)]
pub struct Desktops {
    inner: Arc<Inner>,
}

struct Inner {
    display_base: u32,
    cdp_base: u16,
    state_dir: PathBuf,
    slots: Mutex<HashMap<u32, Slot>>,
}

struct Slot {
    /// The desktop's Chrome owner; it reconnects by itself when Chrome restarts.
    browser: Browser,
    /// The executor while its X connection is believed healthy.
    exec: Option<Executor>,
}

impl std::fmt::Debug for Desktops {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Desktops")
            .field("display_base", &self.inner.display_base)
            .field("cdp_base", &self.inner.cdp_base)
            .finish()
    }
}

/// True when an error code means the desktop's X connection should be rebuilt.
pub fn is_connection_failure(code: &str) -> bool {
    matches!(code, "desktop_unavailable" | "desktop_error")
}

impl Desktops {
    /// The desktops of `config` (nothing connects until first use).
    pub fn new(config: &Config) -> Desktops {
        Desktops {
            inner: Arc::new(Inner {
                display_base: config.display_base,
                cdp_base: config.cdp_base,
                state_dir: config.state_dir.clone(),
                slots: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// X display name of desktop `n`.
    pub fn display(&self, n: u32) -> String {
        format!(":{}", self.inner.display_base.saturating_add(n))
    }

    /// Downloads directory of desktop `n`.
    pub fn downloads_dir(&self, n: u32) -> PathBuf {
        self.inner
            .state_dir
            .join("desktops")
            .join(n.to_string())
            .join("downloads")
    }

    fn cdp_port(&self, n: u32) -> u16 {
        let n = u16::try_from(n).unwrap_or(u16::MAX);
        self.inner.cdp_base.saturating_add(n)
    }

    fn new_slot(&self, n: u32) -> Slot {
        let mut opts = BrowserOptions::new(self.cdp_port(n));
        opts.downloads_dir = Some(self.downloads_dir(n));
        Slot {
            browser: Browser::new(opts),
            exec: None,
        }
    }

    /// The browser owner of desktop `n` (no X connection needed).
    pub async fn browser(&self, n: u32) -> Browser {
        let mut slots = self.inner.slots.lock().await;
        slots
            .entry(n)
            .or_insert_with(|| self.new_slot(n))
            .browser
            .clone()
    }

    /// The executor of desktop `n`, connecting to its X display if needed. Fails with
    /// `desktop_unavailable` (503) while the display is not up; the next call tries again.
    pub async fn executor(&self, n: u32) -> Result<Executor, ActionError> {
        let mut slots = self.inner.slots.lock().await;
        let slot = slots.entry(n).or_insert_with(|| self.new_slot(n));
        if let Some(e) = &slot.exec {
            return Ok(e.clone());
        }
        let xname = self.display(n);
        let d = xname.clone();
        let desktop = tokio::task::spawn_blocking(move || Desktop::connect(&d))
            .await
            .map_err(|e| {
                ActionError::Desktop(DesktopError::NoDisplay {
                    display: xname.clone(),
                    reason: e.to_string(),
                })
            })?
            .map_err(|e| match e {
                // Whatever the reason, a display we cannot attach to is unavailable for now.
                DesktopError::NoDisplay { .. } | DesktopError::Closed(_) => ActionError::Desktop(e),
                other => ActionError::Desktop(DesktopError::NoDisplay {
                    display: xname.clone(),
                    reason: other.to_string(),
                }),
            })?;
        tracing::info!(display = %xname, "connected to the desktop");
        let exec = Executor::new(desktop, Some(slot.browser.clone()));
        slot.exec = Some(exec.clone());
        Ok(exec)
    }

    /// Forgets desktop `n`'s executor when `code` says its X connection failed, so the next
    /// request reconnects (e.g. after the supervisor restarted Xvfb).
    pub async fn note_failure(&self, n: u32, code: &str) {
        if is_connection_failure(code) {
            let mut slots = self.inner.slots.lock().await;
            if let Some(s) = slots.get_mut(&n)
                && s.exec.take().is_some()
            {
                tracing::warn!(
                    desktop = n,
                    code,
                    "desktop connection failed; will reconnect"
                );
            }
        }
    }
}
