//! The live-view switch, the proxy's side: whether anyone may watch a desktop right now.
//!
//! The control plane writes `<state_dir>/liveview/<N>` when desktop N's owner (or an
//! administrator) turns its live view off, and removes it when they turn it on again or the
//! desktop goes to a new owner (see [`zigral_token::LiveViewFiles`]). The proxy reads the
//! file on every WebSocket attempt for desktop N and refuses it while the view is off (403,
//! refusal `live_view_off`). [`LiveViewWatch`] also polls the file every [`POLL`] for each
//! desktop that has live connections and publishes changes on a `watch` channel per desktop;
//! each such connection holds a [`LiveViewSignal`] and the relay closes it (WebSocket close
//! 1008 "live view turned off", then the VNC side is dropped) once it says off. So a switch
//! reaches every live viewer within [`POLL`] plus a scheduling delay, well inside a second.
//!
//! A file that exists but cannot be read counts as off (fail closed): nobody may watch until
//! it can be read again. That is logged once per desktop, not on every poll.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use tokio::sync::watch;
use tracing::{info, warn};
use zigral_token::LiveViewFiles;

/// How often the live-view files of watched desktops are read.
pub const POLL: Duration = Duration::from_millis(250);

/// Watches the live-view files of desktops with live connections. Cheap to clone.
#[derive(Debug, Clone)]
pub struct LiveViewWatch {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    files: LiveViewFiles,
    /// Per watched desktop: whether its live view is off.
    desktops: Mutex<HashMap<u32, watch::Sender<bool>>>,
    /// Desktops whose file could not be read at the last read (warned about once).
    unreadable: Mutex<HashSet<u32>>,
    polling: AtomicBool,
}

impl Inner {
    /// Whether `desktop`'s live view is off now; an unreadable file counts as off.
    fn read(&self, desktop: u32) -> bool {
        let r = self.files.is_off(desktop);
        let mut bad = self.unreadable.lock().unwrap_or_else(|e| e.into_inner());
        match r {
            Ok(off) => {
                if bad.remove(&desktop) {
                    info!(desktop, off, "live-view file readable again");
                }
                off
            }
            Err(e) => {
                if bad.insert(desktop) {
                    warn!(
                        desktop,
                        "{e}; live view counts as off until the file can be read"
                    );
                }
                true
            }
        }
    }
}

impl LiveViewWatch {
    /// A watch over `files` (nothing is read until asked).
    pub fn new(files: LiveViewFiles) -> Self {
        LiveViewWatch {
            inner: Arc::new(Inner {
                files,
                desktops: Mutex::new(HashMap::new()),
                unreadable: Mutex::new(HashSet::new()),
                polling: AtomicBool::new(false),
            }),
        }
    }

    /// The files watched.
    pub fn files(&self) -> &LiveViewFiles {
        &self.inner.files
    }

    /// Whether `desktop`'s live view is off right now (read from its file; an unreadable
    /// file counts as off).
    pub fn is_off(&self, desktop: u32) -> bool {
        self.inner.read(desktop)
    }

    /// A signal for a live connection to `desktop`. The file is read now, so a view turned
    /// off since the connection was admitted is seen at once; the poll task (started on first
    /// use, inside the Tokio runtime) keeps it current while the signal lives.
    pub fn signal(&self, desktop: u32) -> LiveViewSignal {
        let now = self.inner.read(desktop);
        let rx = {
            let mut map = self
                .inner
                .desktops
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            match map.get(&desktop) {
                Some(tx) => {
                    tx.send_if_modified(|off| replace(off, now));
                    tx.subscribe()
                }
                None => {
                    let (tx, rx) = watch::channel(now);
                    map.insert(desktop, tx);
                    rx
                }
            }
        };
        if !self.inner.polling.swap(true, Ordering::SeqCst) {
            tokio::spawn(poll(Arc::downgrade(&self.inner)));
        }
        LiveViewSignal { rx }
    }
}

fn replace(off: &mut bool, now: bool) -> bool {
    let changed = *off != now;
    *off = now;
    changed
}

/// Reads the watched desktops' files every [`POLL`] until the watch is dropped; forgets
/// desktops whose connections all ended.
async fn poll(inner: Weak<Inner>) {
    let mut tick = tokio::time::interval(POLL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(inner) = inner.upgrade() else { return };
        let watched: Vec<(u32, watch::Sender<bool>)> = {
            let mut map = inner.desktops.lock().unwrap_or_else(|e| e.into_inner());
            map.retain(|_, tx| tx.receiver_count() > 0);
            map.iter().map(|(n, tx)| (*n, tx.clone())).collect()
        };
        for (desktop, tx) in watched {
            let now = inner.read(desktop);
            if tx.send_if_modified(|off| replace(off, now)) {
                info!(desktop, off = now, "desktop live view changed");
            }
        }
    }
}

/// Whether one live connection's desktop may still be watched.
#[derive(Debug, Clone)]
pub struct LiveViewSignal {
    rx: watch::Receiver<bool>,
}

impl LiveViewSignal {
    /// Whether the desktop's live view is off, as last read.
    pub fn is_off(&self) -> bool {
        *self.rx.borrow()
    }

    /// Resolves once the desktop's live view is off (at once if it is now); never while it
    /// stays on.
    pub async fn turned_off(&mut self) {
        if self.rx.wait_for(|off| *off).await.is_err() {
            // The watch is gone (the proxy is being dropped): nothing will turn it off.
            std::future::pending::<()>().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn signals_follow_the_file_within_a_poll_and_unreadable_is_off() {
        let dir = tempfile::tempdir().expect("tempdir");
        let files = LiveViewFiles::new(dir.path());
        let w = LiveViewWatch::new(files.clone());
        assert!(!w.is_off(1));
        let mut a = w.signal(1);
        let other = w.signal(2);
        assert!(!a.is_off() && !other.is_off());

        files.set_off(1, true).expect("off");
        assert!(w.is_off(1), "an attempt reads the file itself");
        tokio::time::timeout(POLL * 4, a.turned_off())
            .await
            .expect("noticed within a few polls");
        assert!(a.is_off());
        assert!(!other.is_off(), "another desktop is not affected");
        // A signal made now starts off.
        assert!(w.signal(1).is_off());

        files.set_off(1, false).expect("on");
        let mut rx = a.rx.clone();
        tokio::time::timeout(POLL * 4, rx.wait_for(|off| !*off))
            .await
            .expect("noticed within a few polls")
            .expect("watch alive");
        assert!(!w.is_off(1));

        // Unreadable: off, for attempts and live connections alike.
        std::fs::create_dir_all(files.path(1)).expect("a directory in its place");
        assert!(w.is_off(1));
        tokio::time::timeout(POLL * 4, a.turned_off())
            .await
            .expect("noticed within a few polls");
    }
}
