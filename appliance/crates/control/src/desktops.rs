//! The desktops the control plane drives: one action [`Executor`] per desktop (X display
//! `:(display_base + N)`, Chrome CDP on 127.0.0.1:`(cdp_base + N)`), built lazily on first use,
//! shared by every session bound to that desktop (the executor's input lock serialises them),
//! and rebuilt on the next request after its X connection was lost (Xvfb restarted).
//!
//! Each desktop has its own slot: the map lock is held only to find or insert a slot, and the
//! slot's own async lock covers connecting, which runs off the runtime and is bounded by
//! `x_connect_timeout_ms`. A hung X server on one desktop never delays another.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use zigral_actions::{ActionError, ErrorCode, Executor};
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
    connect_timeout: Duration,
    slots: Mutex<HashMap<u32, Arc<Slot>>>,
}

struct Slot {
    /// The desktop's Chrome owner; it reconnects by itself when Chrome restarts.
    browser: Browser,
    /// The executor while its X connection is believed healthy; the lock is held while
    /// connecting, so one desktop connects once at a time.
    exec: tokio::sync::Mutex<Option<Executor>>,
    /// X connections made so far (a new one after each loss).
    generation: AtomicU64,
}

impl std::fmt::Debug for Desktops {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Desktops")
            .field("display_base", &self.inner.display_base)
            .field("cdp_base", &self.inner.cdp_base)
            .field("connect_timeout", &self.inner.connect_timeout)
            .finish()
    }
}

impl Desktops {
    /// The desktops of `config` (nothing connects until first use).
    pub fn new(config: &Config) -> Desktops {
        Desktops {
            inner: Arc::new(Inner {
                display_base: config.display_base,
                cdp_base: config.cdp_base,
                state_dir: config.state_dir.clone(),
                connect_timeout: Duration::from_millis(config.x_connect_timeout_ms),
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

    /// Desktop `n`'s Xauthority file, when zigral-init wrote one.
    fn xauthority(&self, n: u32) -> Option<PathBuf> {
        let p = self
            .inner
            .state_dir
            .join("desktops")
            .join(n.to_string())
            .join("Xauthority");
        p.exists().then_some(p)
    }

    fn cdp_port(&self, n: u32) -> u16 {
        let n = u16::try_from(n).unwrap_or(u16::MAX);
        self.inner.cdp_base.saturating_add(n)
    }

    /// Desktop `n`'s slot (created on first use). The map lock is held only here.
    fn slot(&self, n: u32) -> Arc<Slot> {
        let mut slots = self
            .inner
            .slots
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        slots
            .entry(n)
            .or_insert_with(|| {
                let mut opts = BrowserOptions::new(self.cdp_port(n));
                opts.downloads_dir = Some(self.downloads_dir(n));
                Arc::new(Slot {
                    browser: Browser::new(opts),
                    exec: tokio::sync::Mutex::new(None),
                    generation: AtomicU64::new(0),
                })
            })
            .clone()
    }

    /// Drops desktop `n`'s executor and browser owner (the desktop was destroyed; a new
    /// desktop `n` gets fresh connections).
    pub fn forget(&self, n: u32) {
        self.inner
            .slots
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(&n);
    }

    /// The browser owner of desktop `n` (no X connection needed).
    pub async fn browser(&self, n: u32) -> Browser {
        self.slot(n).browser.clone()
    }

    /// How many X connections desktop `n` has made so far (0: never connected). It grows
    /// only when a lost connection is replaced.
    pub fn generation(&self, n: u32) -> u64 {
        self.slot(n).generation.load(Ordering::Relaxed)
    }

    /// The executor of desktop `n`, connecting to its X display if needed. Fails with
    /// `desktop_unavailable` (503) while the display is not up or does not answer the
    /// handshake within the connect timeout; the next call tries again.
    pub async fn executor(&self, n: u32) -> Result<Executor, ActionError> {
        let slot = self.slot(n);
        let mut exec = slot.exec.lock().await;
        if let Some(e) = &*exec {
            return Ok(e.clone());
        }
        let xname = self.display(n);
        let unavailable = |reason: String| {
            ActionError::Desktop(DesktopError::NoDisplay {
                display: xname.clone(),
                reason,
            })
        };
        let d = xname.clone();
        // Each desktop's X server takes only its own cookie (written by zigral-init before
        // Xvfb starts, group-readable by the control plane's user); without one (a display
        // started by hand) connect as X clients usually do.
        let xauth = self.xauthority(n);
        // The connect blocks (socket + handshake); a stopped X server would block it forever.
        // On timeout the blocking thread is left to finish or fail on its own.
        let connect = tokio::task::spawn_blocking(move || {
            Desktop::connect_with_xauthority(&d, xauth.as_deref())
        });
        let desktop = match tokio::time::timeout(self.inner.connect_timeout, connect).await {
            Err(_) => {
                return Err(unavailable(format!(
                    "the X server did not complete the connection within {} ms",
                    self.inner.connect_timeout.as_millis()
                )));
            }
            Ok(Err(join)) => return Err(unavailable(join.to_string())),
            // Whatever the reason, a display we cannot attach to is unavailable for now.
            Ok(Ok(Err(e))) if e.is_connection_lost() => return Err(ActionError::Desktop(e)),
            Ok(Ok(Err(e))) => return Err(unavailable(e.to_string())),
            Ok(Ok(Ok(d))) => d,
        };
        let g = slot.generation.fetch_add(1, Ordering::Relaxed) + 1;
        tracing::info!(display = %xname, generation = g, "connected to the desktop");
        let e = Executor::new(desktop, Some(slot.browser.clone()));
        *exec = Some(e.clone());
        Ok(e)
    }

    /// Forgets desktop `n`'s executor `used` when `code` says its X connection is lost, so
    /// the next request reconnects (e.g. after the supervisor restarted Xvfb). Other
    /// failures (clipboard timeouts, encoding errors, browser errors) keep the connection.
    pub async fn note_failure(&self, n: u32, used: &Executor, code: ErrorCode) {
        if !code.connection_lost() {
            return;
        }
        let slot = self.slot(n);
        let mut exec = slot.exec.lock().await;
        if exec.as_ref().is_some_and(|e| e.same(used)) {
            *exec = None;
            tracing::warn!(
                desktop = n,
                %code,
                "desktop connection lost; will reconnect"
            );
        }
    }
}
