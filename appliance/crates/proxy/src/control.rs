//! Who may send input to a desktop right now: the proxy's side of the control lease.
//!
//! The control plane writes `<state_dir>/control/<N>` (the control id of the login holding
//! desktop N; no file when nobody does, see [`zigral_token::ControlFiles`]). [`ControlWatch`]
//! polls that file every [`POLL`] for each desktop that has live `control` connections and
//! publishes changes on a `watch` channel per desktop; each such connection holds an
//! [`InputGate`] that the relay asks before forwarding client data. A `control` token may send
//! input while nobody holds the desktop, or while the holder's control id equals the token's
//! `control` claim (the holder's own connections). Everyone else's input is dropped by the
//! relay's view-only filter while the frames keep flowing; when the holder releases it (the
//! file goes), those connections may send input again, without reconnecting. A file that
//! cannot be read counts as held by nobody's id: input stops (fail closed) and a warning is
//! logged.
//!
//! The poll is a read of a few bytes per watched desktop, so a change reaches every
//! connection within [`POLL`] plus a scheduling delay, well inside a second.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use tokio::sync::watch;
use tracing::{info, warn};
use zigral_token::ControlFiles;

/// How often the control files of watched desktops are read.
pub const POLL: Duration = Duration::from_millis(250);

/// Who holds a desktop, as the proxy last read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Holder {
    /// Nobody: every `control` token may send input.
    Nobody,
    /// The login with this control id.
    Login(String),
    /// The file could not be read: nobody may send input until it can.
    Unreadable,
}

impl Holder {
    fn read(files: &ControlFiles, desktop: u32) -> Holder {
        match files.read(desktop) {
            Ok(None) => Holder::Nobody,
            Ok(Some(h)) => Holder::Login(h),
            Err(e) => {
                warn!(
                    desktop,
                    "control file: {e}; input stops until it can be read"
                );
                Holder::Unreadable
            }
        }
    }
}

/// Watches the control files of desktops with live `control` connections. Cheap to clone.
#[derive(Debug, Clone)]
pub struct ControlWatch {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    files: ControlFiles,
    desktops: Mutex<HashMap<u32, watch::Sender<Holder>>>,
    polling: std::sync::atomic::AtomicBool,
}

impl ControlWatch {
    /// A watch over `files` (nothing is read until a connection subscribes).
    pub fn new(files: ControlFiles) -> Self {
        ControlWatch {
            inner: Arc::new(Inner {
                files,
                desktops: Mutex::new(HashMap::new()),
                polling: Default::default(),
            }),
        }
    }

    /// The files watched.
    pub fn files(&self) -> &ControlFiles {
        &self.inner.files
    }

    /// A gate for a `control` connection to `desktop` whose token carries `control` (the
    /// claim). The file is read now, so the gate is right from the first byte; the poll task
    /// (started on first use, inside the Tokio runtime) keeps it current.
    pub fn gate(&self, desktop: u32, control: Option<String>) -> InputGate {
        let now = Holder::read(&self.inner.files, desktop);
        let rx = {
            let mut map = self
                .inner
                .desktops
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            match map.get(&desktop) {
                Some(tx) => {
                    tx.send_if_modified(|h| replace(h, now));
                    tx.subscribe()
                }
                None => {
                    let (tx, rx) = watch::channel(now);
                    map.insert(desktop, tx);
                    rx
                }
            }
        };
        if !self
            .inner
            .polling
            .swap(true, std::sync::atomic::Ordering::SeqCst)
        {
            tokio::spawn(poll(Arc::downgrade(&self.inner)));
        }
        InputGate { rx, control }
    }
}

fn replace(h: &mut Holder, new: Holder) -> bool {
    if *h == new {
        false
    } else {
        *h = new;
        true
    }
}

/// Reads the watched desktops' files every [`POLL`] until the watch is dropped; forgets
/// desktops whose connections all ended.
async fn poll(inner: Weak<Inner>) {
    let mut tick = tokio::time::interval(POLL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(inner) = inner.upgrade() else { return };
        let watched: Vec<(u32, watch::Sender<Holder>)> = {
            let mut map = inner.desktops.lock().unwrap_or_else(|e| e.into_inner());
            map.retain(|_, tx| tx.receiver_count() > 0);
            map.iter().map(|(n, tx)| (*n, tx.clone())).collect()
        };
        for (desktop, tx) in watched {
            let now = Holder::read(&inner.files, desktop);
            let changed = tx.send_if_modified(|h| replace(h, now.clone()));
            if changed {
                info!(desktop, holder = ?now, "desktop control changed");
            }
        }
    }
}

/// Whether one `control` connection may send input now.
#[derive(Debug, Clone)]
pub struct InputGate {
    rx: watch::Receiver<Holder>,
    control: Option<String>,
}

impl InputGate {
    /// True while nobody holds the desktop or the holder is this connection's login.
    pub fn allowed(&self) -> bool {
        match &*self.rx.borrow() {
            Holder::Nobody => true,
            Holder::Login(h) => self.control.as_deref() == Some(h.as_str()),
            Holder::Unreadable => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn gates_follow_the_file_within_a_poll() {
        let dir = tempfile::tempdir().expect("tempdir");
        let files = ControlFiles::in_state_dir(dir.path());
        let w = ControlWatch::new(files.clone());
        let holder = w.gate(3, Some("alice-login".into()));
        let other = w.gate(3, Some("bob-login".into()));
        let api = w.gate(3, None);
        assert!(holder.allowed() && other.allowed() && api.allowed());

        files.write(3, Some("alice-login")).expect("write");
        let mut rx = holder.rx.clone();
        tokio::time::timeout(POLL * 4, rx.changed())
            .await
            .expect("noticed within a few polls")
            .expect("watch alive");
        assert!(holder.allowed());
        assert!(!other.allowed() && !api.allowed());
        // A connection made now is right from the start.
        assert!(!w.gate(3, Some("bob-login".into())).allowed());

        files.write(3, None).expect("release");
        tokio::time::timeout(POLL * 4, rx.changed())
            .await
            .expect("noticed within a few polls")
            .expect("watch alive");
        assert!(other.allowed() && api.allowed());

        // Unreadable: nobody.
        std::fs::create_dir_all(files.path(3)).expect("a directory in its place");
        tokio::time::timeout(POLL * 4, rx.changed())
            .await
            .expect("noticed")
            .expect("watch alive");
        assert!(!holder.allowed() && !other.allowed());
    }
}
