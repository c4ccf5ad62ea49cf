//! The CLIPBOARD selection: owning it and serving other clients' requests (on the event thread,
//! so pasting works while the owner thread is busy), and reading another owner's text
//! (INCR transfers included).

use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use x11rb::connection::{Connection, RequestConnection};
use x11rb::protocol::Event;
use x11rb::protocol::xproto::{self, ConnectionExt as _};
use x11rb::rust_connection::RustConnection;
use x11rb::wrapper::ConnectionExt as _;
use x11rb::{CURRENT_TIME, NONE};

use super::{Atoms, Owner};
use crate::error::DesktopError;

/// How long to wait for another client's clipboard answer.
const CLIPBOARD_TIMEOUT: Duration = Duration::from_secs(3);
/// Largest clipboard text read (INCR transfers included).
const CLIPBOARD_MAX: usize = 64 << 20;

/// Clipboard contents we serve while we own CLIPBOARD.
#[derive(Default)]
pub(crate) struct ClipState {
    text: Option<String>,
    /// Server time at which we took ownership.
    since: u32,
}

impl Owner {
    /// A server timestamp, from the PropertyNotify of a zero-length append to our window.
    fn server_time(&mut self) -> Result<u32, DesktopError> {
        self.drain_events();
        self.conn.change_property8(
            xproto::PropMode::APPEND,
            self.win,
            self.atoms.ZIGRAL_TS,
            xproto::AtomEnum::STRING,
            &[],
        )?;
        self.conn.flush()?;
        let (win, atom) = (self.win, self.atoms.ZIGRAL_TS);
        match self.wait_event(
            CLIPBOARD_TIMEOUT,
            |e| matches!(e, Event::PropertyNotify(p) if p.window == win && p.atom == atom),
        ) {
            Some(Event::PropertyNotify(p)) => Ok(p.time),
            _ => Err(DesktopError::Clipboard(
                "no PropertyNotify from the server (timestamp)".into(),
            )),
        }
    }

    pub(super) fn clipboard_set(&mut self, text: &str) -> Result<(), DesktopError> {
        let max = self.conn.maximum_request_bytes().saturating_sub(1024);
        if text.len() > max {
            return Err(DesktopError::InvalidArgument(format!(
                "clipboard text of {} bytes exceeds the server's {max}-byte request limit",
                text.len()
            )));
        }
        let time = self.server_time()?;
        {
            let mut st = self
                .clip
                .lock()
                .map_err(|_| DesktopError::Clipboard("state lock poisoned".into()))?;
            st.text = Some(text.to_string());
            st.since = time;
        }
        self.conn
            .set_selection_owner(self.win, self.atoms.CLIPBOARD, time)?;
        let owner = self
            .conn
            .get_selection_owner(self.atoms.CLIPBOARD)?
            .reply()?
            .owner;
        if owner != self.win {
            return Err(DesktopError::Clipboard(
                "another client kept the CLIPBOARD selection".into(),
            ));
        }
        Ok(())
    }

    pub(super) fn clipboard_get(&mut self) -> Result<String, DesktopError> {
        let owner = self
            .conn
            .get_selection_owner(self.atoms.CLIPBOARD)?
            .reply()?
            .owner;
        if owner == NONE {
            return Ok(String::new());
        }
        if owner == self.win {
            let st = self
                .clip
                .lock()
                .map_err(|_| DesktopError::Clipboard("state lock poisoned".into()))?;
            if let Some(t) = &st.text {
                return Ok(t.clone());
            }
        }
        for target in [self.atoms.UTF8_STRING, xproto::AtomEnum::STRING.into()] {
            if let Some((ty, bytes)) = self.convert(target)? {
                return Ok(if ty == u32::from(xproto::AtomEnum::STRING) {
                    bytes.iter().map(|&b| char::from(b)).collect()
                } else {
                    String::from_utf8_lossy(&bytes).into_owned()
                });
            }
        }
        Err(DesktopError::Clipboard(
            "the clipboard owner offers no text (neither UTF8_STRING nor STRING)".into(),
        ))
    }

    /// Asks the owner to convert CLIPBOARD to `target`; `None` when it refuses.
    fn convert(&mut self, target: u32) -> Result<Option<(u32, Vec<u8>)>, DesktopError> {
        self.drain_events();
        let (win, prop, sel) = (self.win, self.atoms.ZIGRAL_SEL, self.atoms.CLIPBOARD);
        self.conn.delete_property(win, prop)?;
        self.conn
            .convert_selection(win, sel, target, prop, CURRENT_TIME)?;
        self.conn.flush()?;
        let notify = self.wait_event(
            CLIPBOARD_TIMEOUT,
            |e| matches!(e, Event::SelectionNotify(n) if n.requestor == win && n.selection == sel),
        );
        let Some(Event::SelectionNotify(n)) = notify else {
            return Err(DesktopError::Clipboard(
                "the clipboard owner did not answer within 3 s".into(),
            ));
        };
        if n.property == NONE {
            return Ok(None);
        }
        let r = self
            .conn
            .get_property(
                false,
                win,
                prop,
                xproto::AtomEnum::ANY,
                0,
                (CLIPBOARD_MAX / 4) as u32,
            )?
            .reply()?;
        if r.type_ != self.atoms.INCR {
            self.conn.delete_property(win, prop)?;
            self.conn.flush()?;
            return Ok(Some((r.type_, r.value)));
        }
        // INCR: deleting the property asks for the next chunk; a zero-length chunk ends it.
        let mut data = Vec::new();
        let mut ty = 0;
        self.conn.delete_property(win, prop)?;
        self.conn.flush()?;
        loop {
            let ev = self.wait_event(CLIPBOARD_TIMEOUT, |e| {
                matches!(e, Event::PropertyNotify(p) if p.window == win && p.atom == prop
                    && p.state == xproto::Property::NEW_VALUE)
            });
            if ev.is_none() {
                return Err(DesktopError::Clipboard("INCR transfer stalled".into()));
            }
            let r = self
                .conn
                .get_property(
                    true,
                    win,
                    prop,
                    xproto::AtomEnum::ANY,
                    0,
                    (CLIPBOARD_MAX / 4) as u32,
                )?
                .reply()?;
            self.conn.flush()?;
            if r.value.is_empty() {
                return Ok(Some((ty, data)));
            }
            ty = r.type_;
            data.extend_from_slice(&r.value);
            if data.len() > CLIPBOARD_MAX {
                return Err(DesktopError::Clipboard(format!(
                    "clipboard larger than {} MiB",
                    CLIPBOARD_MAX >> 20
                )));
            }
        }
    }
}

/// The event thread: serves SelectionRequests, forwards everything else to the owner.
pub(super) fn event_loop(
    conn: Arc<RustConnection>,
    win: u32,
    atoms: Atoms,
    clip: Arc<Mutex<ClipState>>,
    tx: mpsc::Sender<Event>,
) {
    loop {
        let ev = match conn.wait_for_event() {
            Ok(ev) => ev,
            Err(e) => {
                tracing::debug!(error = %e, "X event loop ends");
                break;
            }
        };
        match ev {
            Event::SelectionRequest(req) => {
                if let Err(e) = serve_selection(&conn, &atoms, &clip, &req) {
                    tracing::warn!(error = %e, "serving a clipboard request failed");
                }
            }
            Event::SelectionClear(e) if e.owner == win && e.selection == atoms.CLIPBOARD => {
                if let Ok(mut st) = clip.lock()
                    && e.time >= st.since
                {
                    st.text = None;
                }
            }
            Event::ClientMessage(m) if m.window == win && m.type_ == atoms.ZIGRAL_QUIT => break,
            other => {
                if tx.send(other).is_err() {
                    break;
                }
            }
        }
    }
}

fn serve_selection(
    conn: &RustConnection,
    atoms: &Atoms,
    clip: &Mutex<ClipState>,
    req: &xproto::SelectionRequestEvent,
) -> Result<(), DesktopError> {
    let property = if req.property == NONE {
        req.target
    } else {
        req.property
    };
    let string: u32 = xproto::AtomEnum::STRING.into();
    let ok = {
        let st = clip
            .lock()
            .map_err(|_| DesktopError::Clipboard("state lock poisoned".into()))?;
        match &st.text {
            Some(text)
                if req.selection == atoms.CLIPBOARD
                    && (req.time == CURRENT_TIME || req.time >= st.since) =>
            {
                let t = req.target;
                if t == atoms.TARGETS {
                    let list = [
                        atoms.TARGETS,
                        atoms.TIMESTAMP,
                        atoms.UTF8_STRING,
                        atoms.TEXT_PLAIN_UTF8,
                        atoms.TEXT,
                        string,
                        atoms.TEXT_PLAIN,
                    ];
                    conn.change_property32(
                        xproto::PropMode::REPLACE,
                        req.requestor,
                        property,
                        xproto::AtomEnum::ATOM,
                        &list,
                    )?;
                    true
                } else if t == atoms.TIMESTAMP {
                    conn.change_property32(
                        xproto::PropMode::REPLACE,
                        req.requestor,
                        property,
                        xproto::AtomEnum::INTEGER,
                        &[st.since],
                    )?;
                    true
                } else if t == atoms.UTF8_STRING || t == atoms.TEXT_PLAIN_UTF8 || t == atoms.TEXT {
                    conn.change_property8(
                        xproto::PropMode::REPLACE,
                        req.requestor,
                        property,
                        atoms.UTF8_STRING,
                        text.as_bytes(),
                    )?;
                    true
                } else if t == string || t == atoms.TEXT_PLAIN {
                    let latin1: Vec<u8> = text
                        .chars()
                        .map(|c| u8::try_from(u32::from(c)).unwrap_or(b'?'))
                        .collect();
                    conn.change_property8(
                        xproto::PropMode::REPLACE,
                        req.requestor,
                        property,
                        string,
                        &latin1,
                    )?;
                    true
                } else {
                    false
                }
            }
            _ => false,
        }
    };
    let ev = xproto::SelectionNotifyEvent {
        response_type: xproto::SELECTION_NOTIFY_EVENT,
        sequence: 0,
        time: req.time,
        requestor: req.requestor,
        selection: req.selection,
        target: req.target,
        property: if ok { property } else { NONE },
    };
    conn.send_event(false, req.requestor, xproto::EventMask::NO_EVENT, ev)?;
    conn.flush()?;
    Ok(())
}
