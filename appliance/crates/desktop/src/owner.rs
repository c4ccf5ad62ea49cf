//! The owner thread: holds the one X connection and runs actions in order (pointer input here;
//! keyboard, capture, clipboard and RandR in the submodules).
//!
//! A second thread blocks on the connection's event queue: it answers `SelectionRequest`s
//! directly (so other clients can paste while the owner thread is busy) and forwards the other
//! events (SelectionNotify, PropertyNotify, ConfigureNotify, MappingNotify) to the owner.

mod capture;
mod clipboard;
mod keyboard;
mod randr;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;
use x11rb::CURRENT_TIME;
use x11rb::connection::{Connection, RequestConnection};
use x11rb::protocol::Event;
use x11rb::protocol::xproto::{self, ConnectionExt as _};
use x11rb::protocol::{randr as xrandr, shm, xfixes, xtest};
use x11rb::rust_connection::RustConnection;
use x11rb::wrapper::ConnectionExt as _;

use crate::encode::{self, RawImage};
use crate::error::DesktopError;
use crate::keys;
use crate::settle::Watcher;
use crate::{
    Action, ActionOutput, BatchError, DesktopInfo, MAX_CLICKS, MAX_DURATION, MAX_TEXT_CHARS, Point,
    Rect, ScaleInfo, Screenshot, ScreenshotOpts, Size,
};
use capture::{ShmSeg, pixel_format_ok};
use clipboard::{ClipState, event_loop};
use keyboard::Keyboard;

x11rb::atom_manager! {
    pub(crate) Atoms: AtomsCookie {
        CLIPBOARD,
        UTF8_STRING,
        TARGETS,
        TEXT,
        TIMESTAMP,
        INCR,
        TEXT_PLAIN_UTF8: b"text/plain;charset=utf-8",
        TEXT_PLAIN: b"text/plain",
        ZIGRAL_SEL,
        ZIGRAL_TS,
        ZIGRAL_QUIT,
    }
}

type RunReply = Result<Vec<Out>, (usize, Vec<Out>, DesktopError)>;

enum Cmd {
    Run(Vec<Action>, oneshot::Sender<RunReply>),
    Capture(
        Option<Rect>,
        bool,
        oneshot::Sender<Result<RawImage, DesktopError>>,
    ),
}

/// An action's result before encoding (screenshots are encoded off the owner thread).
enum Out {
    Plain(ActionOutput),
    Shot(RawImage, ScreenshotOpts, Rect),
}

/// The async side: sends commands to the owner thread.
pub(crate) struct Handle {
    pub(crate) info: DesktopInfo,
    tx: mpsc::Sender<Cmd>,
    /// The cookie file the connection authenticated with (the damage connection uses it too).
    xauthority: Option<std::path::PathBuf>,
    /// The damage connection of [`crate::Desktop::settle`], opened on first use.
    watcher: Arc<Mutex<Option<Watcher>>>,
}

fn closed(display: &str) -> DesktopError {
    DesktopError::Closed(display.to_string())
}

/// Accepts `:N`, `:N.S`, `unix:N`; the library only talks to local displays.
fn normalize_display(display: &str) -> Result<String, DesktopError> {
    let bad = |reason: &str| DesktopError::NoDisplay {
        display: display.to_string(),
        reason: reason.to_string(),
    };
    let rest = display
        .strip_prefix("unix:")
        .or_else(|| display.strip_prefix(':'))
        .ok_or_else(|| bad("expected a local display name such as \":1\""))?;
    let num = rest.split('.').next().unwrap_or_default();
    if num.is_empty() || !num.bytes().all(|b| b.is_ascii_digit()) || num.len() > 5 {
        return Err(bad("expected a local display name such as \":1\""));
    }
    Ok(format!(":{num}"))
}

/// Opens a connection to local display `name` (`:N`), authenticating as x11rb does by default
/// (`$XAUTHORITY`) or with the MIT-MAGIC-COOKIE-1 for that display read from `xauthority`.
pub(crate) fn open_connection(
    name: &str,
    xauthority: Option<&std::path::Path>,
) -> Result<(RustConnection, usize), DesktopError> {
    let no_display = |reason: String| DesktopError::NoDisplay {
        display: name.to_string(),
        reason,
    };
    match xauthority {
        None => RustConnection::connect(Some(name)).map_err(|e| no_display(e.to_string())),
        Some(path) => {
            // A local display with its own cookie: the Unix socket, then the setup request
            // with that cookie (never $XAUTHORITY's).
            let num: u32 = name
                .trim_start_matches(':')
                .parse()
                .map_err(|_| no_display("bad display".into()))?;
            let cookie = crate::xauth::read_cookie(path, num)?;
            let sock = std::os::unix::net::UnixStream::connect(format!("/tmp/.X11-unix/X{num}"))
                .map_err(|e| no_display(e.to_string()))?;
            let (stream, _) = x11rb::rust_connection::DefaultStream::from_unix_stream(sock)
                .map_err(|e| no_display(e.to_string()))?;
            let conn = RustConnection::connect_to_stream_with_auth_info(
                stream,
                0,
                b"MIT-MAGIC-COOKIE-1".to_vec(),
                cookie,
            )
            .map_err(|e| no_display(e.to_string()))?;
            Ok((conn, 0))
        }
    }
}

impl Handle {
    pub(crate) fn connect(
        display: &str,
        xauthority: Option<&std::path::Path>,
    ) -> Result<Handle, DesktopError> {
        let name = normalize_display(display)?;
        let (conn, screen_num) = open_connection(&name, xauthority)?;
        let conn = Arc::new(conn);
        let (owner, info) = Owner::new(conn.clone(), screen_num, name.clone())?;
        let (tx, rx) = mpsc::channel();
        let (etx, erx) = mpsc::channel();
        let clip = owner.clip.clone();
        let (win, atoms) = (owner.win, owner.atoms);
        std::thread::Builder::new()
            .name(format!("x11-events{name}"))
            .spawn(move || event_loop(conn, win, atoms, clip, etx))
            .map_err(|e| DesktopError::Protocol(format!("spawn event thread: {e}")))?;
        std::thread::Builder::new()
            .name(format!("x11-owner{name}"))
            .spawn(move || owner.run(rx, erx))
            .map_err(|e| DesktopError::Protocol(format!("spawn owner thread: {e}")))?;
        Ok(Handle {
            info,
            tx,
            xauthority: xauthority.map(std::path::Path::to_path_buf),
            watcher: Arc::new(Mutex::new(None)),
        })
    }

    /// Waits for the screen to settle on the dedicated damage connection (opened on first
    /// use, reopened after it broke), on a blocking thread.
    pub(crate) async fn settle(
        &self,
        quiet: Duration,
        cap: Duration,
    ) -> Result<crate::Settle, DesktopError> {
        let watcher = self.watcher.clone();
        let display = self.info.display.clone();
        let xauthority = self.xauthority.clone();
        tokio::task::spawn_blocking(move || {
            let mut slot = watcher
                .lock()
                .map_err(|_| DesktopError::Protocol("settle state lock poisoned".into()))?;
            let w = match slot.as_mut() {
                Some(w) => w,
                None => slot.insert(Watcher::open(&display, xauthority.as_deref())?),
            };
            let r = w.settle(quiet, cap);
            if r.as_ref().is_err_and(DesktopError::is_connection_lost) {
                *slot = None;
            }
            r
        })
        .await
        .map_err(|e| DesktopError::Protocol(format!("settle task: {e}")))?
    }

    pub(crate) async fn run(&self, actions: Vec<Action>) -> Result<Vec<ActionOutput>, BatchError> {
        for (index, a) in actions.iter().enumerate() {
            validate(a).map_err(|error| BatchError {
                index,
                completed: Vec::new(),
                error,
            })?;
        }
        let (tx, rx) = oneshot::channel();
        let fail = |error| BatchError {
            index: 0,
            completed: Vec::new(),
            error,
        };
        self.tx
            .send(Cmd::Run(actions, tx))
            .map_err(|_| fail(closed(&self.info.display)))?;
        let reply = rx.await.map_err(|_| fail(closed(&self.info.display)))?;
        let (outs, failure) = match reply {
            Ok(outs) => (outs, None),
            Err((index, outs, error)) => (outs, Some((index, error))),
        };
        let mut done = Vec::with_capacity(outs.len());
        for (index, out) in outs.into_iter().enumerate() {
            match out {
                Out::Plain(o) => done.push(o),
                Out::Shot(raw, opts, src) => {
                    match tokio::task::spawn_blocking(move || finish_shot(raw, opts, src)).await {
                        Ok(Ok(shot)) => done.push(ActionOutput::Screenshot(shot)),
                        Ok(Err(error)) => {
                            return Err(BatchError {
                                index,
                                completed: done,
                                error,
                            });
                        }
                        Err(e) => {
                            return Err(BatchError {
                                index,
                                completed: done,
                                error: DesktopError::Encode(format!("encoder task: {e}")),
                            });
                        }
                    }
                }
            }
        }
        match failure {
            None => Ok(done),
            Some((index, error)) => Err(BatchError {
                index,
                completed: done,
                error,
            }),
        }
    }

    pub(crate) async fn capture(
        &self,
        region: Option<Rect>,
        cursor: bool,
    ) -> Result<RawImage, DesktopError> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(Cmd::Capture(region, cursor, tx))
            .map_err(|_| closed(&self.info.display))?;
        rx.await.map_err(|_| closed(&self.info.display))?
    }

    /// Fire-and-forget (used from `Drop`).
    fn send_detached(&self, actions: Vec<Action>) {
        let (tx, _rx) = oneshot::channel();
        let _ = self.tx.send(Cmd::Run(actions, tx));
    }
}

/// Releases a held combo when dropped (so a cancelled `hold_key` never leaves keys down).
pub(crate) struct ReleaseGuard {
    handle: Arc<Handle>,
    combo: Option<String>,
}

impl ReleaseGuard {
    pub(crate) fn new(handle: Arc<Handle>, combo: String) -> Self {
        ReleaseGuard {
            handle,
            combo: Some(combo),
        }
    }

    /// Forgets the combo (its press failed, so there is nothing to release).
    pub(crate) fn disarm(mut self) {
        self.combo = None;
    }

    pub(crate) async fn release(mut self) -> Result<(), DesktopError> {
        let combo = self.combo.take().unwrap_or_default();
        self.handle
            .run(vec![Action::KeyUp { combo }])
            .await
            .map(|_| ())
            .map_err(|e| e.error)
    }
}

impl Drop for ReleaseGuard {
    fn drop(&mut self) {
        if let Some(combo) = self.combo.take() {
            self.handle.send_detached(vec![Action::KeyUp { combo }]);
        }
    }
}

fn finish_shot(raw: RawImage, opts: ScreenshotOpts, src: Rect) -> Result<Screenshot, DesktopError> {
    let img = match opts.scale {
        Some(size) => encode::scale_bgrx(&raw, size)?,
        None => raw,
    };
    let bytes = encode::encode(&img, opts.format)?;
    Ok(Screenshot {
        bytes,
        width: img.width,
        height: img.height,
        mime: opts.format.mime(),
        scale: ScaleInfo {
            source: src,
            image: Size {
                width: img.width,
                height: img.height,
            },
        },
    })
}

fn check_duration(what: &str, d: Duration) -> Result<(), DesktopError> {
    if d > MAX_DURATION {
        return Err(DesktopError::InvalidArgument(format!(
            "{what} of {} ms exceeds the {} s limit",
            d.as_millis(),
            MAX_DURATION.as_secs()
        )));
    }
    Ok(())
}

fn check_clicks(what: &str, n: u32) -> Result<(), DesktopError> {
    if n == 0 || n > MAX_CLICKS {
        return Err(DesktopError::InvalidArgument(format!(
            "{what} count {n} must be 1-{MAX_CLICKS}"
        )));
    }
    Ok(())
}

fn text_keysyms(text: &str) -> Result<Vec<u32>, DesktopError> {
    if text.chars().count() > MAX_TEXT_CHARS {
        return Err(DesktopError::InvalidArgument(format!(
            "text longer than {MAX_TEXT_CHARS} characters"
        )));
    }
    text.chars()
        .enumerate()
        .map(|(index, c)| {
            keys::char_to_keysym(c).ok_or(DesktopError::BadText {
                index,
                codepoint: c as u32,
                reason: "control characters other than \\n, \\r and \\t cannot be typed",
            })
        })
        .collect()
}

/// Checks everything that can be checked without the server.
fn validate(a: &Action) -> Result<(), DesktopError> {
    match a {
        Action::Click { count, .. } => check_clicks("click", *count),
        Action::Scroll { clicks, .. } => check_clicks("scroll", *clicks),
        Action::Drag { via, .. } if via.len() > 1000 => Err(DesktopError::InvalidArgument(
            "drag with more than 1000 intermediate points".into(),
        )),
        Action::Key { keys } => keys::parse_keys(keys).map(|_| ()),
        Action::KeyDown { combo } | Action::KeyUp { combo } => keys::parse_combo(combo).map(|_| ()),
        Action::HoldKey { combo, duration } => {
            check_duration("hold", *duration)?;
            keys::parse_combo(combo).map(|_| ())
        }
        Action::TypeText {
            text,
            per_char_delay,
        } => {
            if let Some(d) = per_char_delay {
                check_duration("per-character delay", *d)?;
            }
            text_keysyms(text).map(|_| ())
        }
        Action::Screenshot(o) => {
            if let crate::ImageFormat::Jpeg { quality } = o.format
                && !(1..=100).contains(&quality)
            {
                return Err(DesktopError::InvalidArgument(format!(
                    "JPEG quality {quality} must be 1-100"
                )));
            }
            if let Some(r) = o.region
                && (r.width == 0 || r.height == 0)
            {
                return Err(DesktopError::InvalidArgument(
                    "screenshot region must not be empty".into(),
                ));
            }
            if let Some(s) = o.scale
                && (s.width == 0 || s.height == 0 || s.width > 16384 || s.height > 16384)
            {
                return Err(DesktopError::InvalidArgument(format!(
                    "scale target {}x{} must be between 1x1 and 16384x16384",
                    s.width, s.height
                )));
            }
            Ok(())
        }
        Action::ClipboardSet { text } if text.len() > 8 << 20 => Err(
            DesktopError::InvalidArgument("clipboard text larger than 8 MiB".into()),
        ),
        Action::Resize { width, height }
            if *width == 0 || *height == 0 || *width > 16384 || *height > 16384 =>
        {
            Err(DesktopError::InvalidArgument(format!(
                "display size {width}x{height} must be between 1x1 and 16384x16384"
            )))
        }
        Action::Wait(d) => check_duration("wait", *d),
        _ => Ok(()),
    }
}

struct Owner {
    conn: Arc<RustConnection>,
    display: String,
    root: u32,
    win: u32,
    atoms: Atoms,
    size: Size,
    randr: bool,
    xfixes: bool,
    shm_ok: bool,
    shm: Option<ShmSeg>,
    pixfmt: Result<(), String>,
    kb: Keyboard,
    clip: Arc<Mutex<ClipState>>,
    held_keys: Vec<u8>,
    held_buttons: Vec<u8>,
    /// The last keysym each spare keycode carried (kept across restores).
    key_history: HashMap<u8, u32>,
    events: Option<mpsc::Receiver<Event>>,
}

fn ext_present(conn: &RustConnection, name: &'static str) -> Result<bool, DesktopError> {
    Ok(conn.extension_information(name)?.is_some())
}

impl Owner {
    fn new(
        conn: Arc<RustConnection>,
        screen_num: usize,
        display: String,
    ) -> Result<(Owner, DesktopInfo), DesktopError> {
        let dpy = display.clone();
        let screen = conn
            .setup()
            .roots
            .get(screen_num)
            .ok_or_else(|| DesktopError::Protocol(format!("screen {screen_num} missing")))?
            .clone();
        let root = screen.root;
        let missing = |name, needed_for| DesktopError::MissingExtension {
            display: display.clone(),
            name,
            needed_for,
        };
        if !ext_present(&conn, xtest::X11_EXTENSION_NAME)? {
            return Err(missing("XTEST", "pointer and keyboard input"));
        }
        let xt = xtest::get_version(&*conn, 2, 2)?.reply()?;
        let xtest_v = (u32::from(xt.major_version), u32::from(xt.minor_version));
        let shm_v = if ext_present(&conn, shm::X11_EXTENSION_NAME)? {
            let r = shm::query_version(&*conn)?.reply()?;
            Some((u32::from(r.major_version), u32::from(r.minor_version)))
        } else {
            tracing::warn!(
                display = dpy.as_str(),
                "MIT-SHM absent: screenshots use GetImage (slower)"
            );
            None
        };
        let randr_v = if ext_present(&conn, xrandr::X11_EXTENSION_NAME)? {
            let r = xrandr::query_version(&*conn, 1, 5)?.reply()?;
            Some((r.major_version, r.minor_version))
        } else {
            tracing::warn!(
                display = dpy.as_str(),
                "RandR absent: the display cannot be resized"
            );
            None
        };
        let xfixes_v = if ext_present(&conn, xfixes::X11_EXTENSION_NAME)? {
            let r = xfixes::query_version(&*conn, 5, 0)?.reply()?;
            Some((r.major_version, r.minor_version))
        } else {
            tracing::warn!(
                display = dpy.as_str(),
                "XFixes absent: screenshots cannot include the cursor"
            );
            None
        };
        let atoms = Atoms::new(&*conn)?.reply()?;
        let win = conn.generate_id()?;
        conn.create_window(
            x11rb::COPY_DEPTH_FROM_PARENT,
            win,
            root,
            -10,
            -10,
            1,
            1,
            0,
            xproto::WindowClass::INPUT_OUTPUT,
            x11rb::COPY_FROM_PARENT,
            &xproto::CreateWindowAux::new().event_mask(xproto::EventMask::PROPERTY_CHANGE),
        )?
        .check()?;
        conn.change_property8(
            xproto::PropMode::REPLACE,
            win,
            xproto::AtomEnum::WM_NAME,
            xproto::AtomEnum::STRING,
            b"zigral-desktop",
        )?;
        // Root resizes arrive as ConfigureNotify on the root window.
        conn.change_window_attributes(
            root,
            &xproto::ChangeWindowAttributesAux::new()
                .event_mask(xproto::EventMask::STRUCTURE_NOTIFY),
        )?
        .check()?;
        let kb = Keyboard::load(&conn, HashMap::new())?;
        let pixfmt = pixel_format_ok(&conn, &screen);
        let size = Size {
            width: u32::from(screen.width_in_pixels),
            height: u32::from(screen.height_in_pixels),
        };
        let info = DesktopInfo {
            display: display.clone(),
            size,
            xtest: xtest_v,
            shm: shm_v,
            randr: randr_v,
            xfixes: xfixes_v,
            spare_keycodes: kb.spare.len(),
        };
        tracing::info!(
            display = dpy.as_str(),
            ?xtest_v,
            ?shm_v,
            ?randr_v,
            ?xfixes_v,
            width = size.width,
            height = size.height,
            spare_keycodes = kb.spare.len(),
            "connected to X display"
        );
        let owner = Owner {
            conn,
            display,
            root,
            win,
            atoms,
            size,
            randr: randr_v.is_some(),
            xfixes: xfixes_v.is_some(),
            shm_ok: shm_v.is_some_and(|v| v >= (1, 2)),
            shm: None,
            pixfmt,
            kb,
            clip: Arc::new(Mutex::new(ClipState::default())),
            held_keys: Vec::new(),
            held_buttons: Vec::new(),
            key_history: HashMap::new(),
            events: None,
        };
        Ok((owner, info))
    }

    fn run(mut self, rx: mpsc::Receiver<Cmd>, events: mpsc::Receiver<Event>) {
        self.events = Some(events);
        loop {
            let cmd = match self.kb.restore_at {
                Some(at) => match rx.recv_timeout(at.saturating_duration_since(Instant::now())) {
                    Ok(c) => c,
                    Err(mpsc::RecvTimeoutError::Timeout) => {
                        if let Err(e) = self.restore_keymap() {
                            tracing::warn!(error = %e, "restoring the keymap failed");
                        }
                        continue;
                    }
                    Err(mpsc::RecvTimeoutError::Disconnected) => break,
                },
                None => match rx.recv() {
                    Ok(c) => c,
                    Err(_) => break,
                },
            };
            self.drain_events();
            match cmd {
                Cmd::Run(actions, reply) => {
                    let r = self.run_batch(actions);
                    let _ = reply.send(r);
                }
                Cmd::Capture(region, cursor, reply) => {
                    let _ = reply.send(self.capture(region, cursor).map(|(img, _)| img));
                }
            }
        }
        self.shutdown();
    }

    fn shutdown(&mut self) {
        for b in std::mem::take(&mut self.held_buttons) {
            let _ = self.fake(xproto::BUTTON_RELEASE_EVENT, b, 0, 0);
        }
        for k in std::mem::take(&mut self.held_keys).into_iter().rev() {
            let _ = self.fake(xproto::KEY_RELEASE_EVENT, k, 0, 0);
        }
        if let Err(e) = self.restore_keymap() {
            tracing::warn!(error = %e, "restoring the keymap at shutdown failed");
        }
        if let Some(seg) = self.shm.take() {
            let _ = shm::detach(&*self.conn, seg.seg);
        }
        // Wake the event thread so it exits and drops its connection handle.
        let ev = xproto::ClientMessageEvent::new(32, self.win, self.atoms.ZIGRAL_QUIT, [0u32; 5]);
        let _ = self
            .conn
            .send_event(false, self.win, xproto::EventMask::NO_EVENT, ev);
        let _ = self.conn.destroy_window(self.win);
        let _ = self.conn.flush();
    }

    fn handle_event(&mut self, ev: &Event) {
        match ev {
            Event::ConfigureNotify(e) if e.window == self.root => {
                self.size = Size {
                    width: u32::from(e.width),
                    height: u32::from(e.height),
                };
            }
            Event::MappingNotify(e) if e.request != xproto::Mapping::POINTER => {
                self.kb.dirty = true;
            }
            _ => {}
        }
    }

    fn drain_events(&mut self) {
        let evs: Vec<Event> = match &self.events {
            Some(rx) => rx.try_iter().collect(),
            None => Vec::new(),
        };
        for ev in &evs {
            self.handle_event(ev);
        }
    }

    /// Waits for an event matching `pred` (other events are handled and dropped).
    fn wait_event(
        &mut self,
        timeout: Duration,
        mut pred: impl FnMut(&Event) -> bool,
    ) -> Option<Event> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let ev = self.events.as_ref()?.recv_timeout(left).ok()?;
            self.handle_event(&ev);
            if pred(&ev) {
                return Some(ev);
            }
        }
    }

    fn sync(&self) -> Result<(), DesktopError> {
        self.conn.get_input_focus()?.reply()?;
        Ok(())
    }

    fn run_batch(&mut self, actions: Vec<Action>) -> RunReply {
        let mut outs = Vec::with_capacity(actions.len());
        for (i, a) in actions.iter().enumerate() {
            match self.exec(a) {
                Ok(o) => outs.push(o),
                Err(e) => {
                    let _ = self.conn.flush();
                    return Err((i, outs, e));
                }
            }
        }
        if let Err(e) = self.sync() {
            return Err((actions.len().saturating_sub(1), outs, e));
        }
        Ok(outs)
    }

    fn exec(&mut self, a: &Action) -> Result<Out, DesktopError> {
        let done = Ok(Out::Plain(ActionOutput::Done));
        match a {
            Action::MoveTo { x, y } => {
                self.motion(Point { x: *x, y: *y })?;
                done
            }
            Action::Click { at, button, count } => {
                if let Some(p) = at {
                    self.motion(*p)?;
                }
                for _ in 0..*count {
                    self.button(button.number(), true)?;
                    self.button(button.number(), false)?;
                }
                done
            }
            Action::ButtonDown { button } => {
                self.button(button.number(), true)?;
                done
            }
            Action::ButtonUp { button } => {
                self.button(button.number(), false)?;
                done
            }
            Action::Drag {
                button,
                from,
                to,
                via,
            } => {
                self.check_point(*from)?;
                self.check_point(*to)?;
                for p in via {
                    self.check_point(*p)?;
                }
                self.motion(*from)?;
                self.button(button.number(), true)?;
                let mut prev = *from;
                for p in via.iter().chain(std::iter::once(to)) {
                    // A few intermediate motions so toolkits see a real drag past their
                    // threshold.
                    let dist = (p.x - prev.x).abs().max((p.y - prev.y).abs());
                    let steps = (dist / 16).clamp(1, 16);
                    for s in 1..=steps {
                        let q = Point {
                            x: prev.x + (p.x - prev.x) * s / steps,
                            y: prev.y + (p.y - prev.y) * s / steps,
                        };
                        self.motion(q)?;
                    }
                    prev = *p;
                }
                self.button(button.number(), false)?;
                done
            }
            Action::Scroll {
                at,
                direction,
                clicks,
            } => {
                if let Some(p) = at {
                    self.motion(*p)?;
                }
                for _ in 0..*clicks {
                    self.button(direction.button(), true)?;
                    self.button(direction.button(), false)?;
                }
                done
            }
            Action::Key { keys } => {
                for combo in keys::parse_keys(keys)? {
                    self.combo(&combo, true, true)?;
                }
                done
            }
            Action::KeyDown { combo } => {
                self.combo(&keys::parse_combo(combo)?, true, false)?;
                done
            }
            Action::KeyUp { combo } => {
                self.combo(&keys::parse_combo(combo)?, false, true)?;
                done
            }
            Action::HoldKey { combo, duration } => {
                let c = keys::parse_combo(combo)?;
                self.combo(&c, true, false)?;
                self.conn.flush()?;
                std::thread::sleep(*duration);
                self.combo(&c, false, true)?;
                done
            }
            Action::TypeText {
                text,
                per_char_delay,
            } => {
                self.type_text(text, *per_char_delay)?;
                done
            }
            Action::CursorPosition => {
                let r = self.conn.query_pointer(self.root)?.reply()?;
                Ok(Out::Plain(ActionOutput::Position(Point {
                    x: i32::from(r.root_x),
                    y: i32::from(r.root_y),
                })))
            }
            Action::Screenshot(opts) => {
                let (img, src) = self.capture(opts.region, opts.cursor)?;
                Ok(Out::Shot(img, *opts, src))
            }
            Action::ClipboardGet => Ok(Out::Plain(ActionOutput::Text(self.clipboard_get()?))),
            Action::ClipboardSet { text } => {
                self.clipboard_set(text)?;
                done
            }
            Action::Size => Ok(Out::Plain(ActionOutput::Size(self.size))),
            Action::Resize { width, height } => Ok(Out::Plain(ActionOutput::Size(
                self.resize(*width, *height)?,
            ))),
            Action::Wait(d) => {
                self.conn.flush()?;
                std::thread::sleep(*d);
                done
            }
        }
    }

    // ---- input -------------------------------------------------------------------------

    fn fake(&self, type_: u8, detail: u8, x: i16, y: i16) -> Result<(), DesktopError> {
        xtest::fake_input(&*self.conn, type_, detail, CURRENT_TIME, self.root, x, y, 0)?;
        Ok(())
    }

    fn check_point(&self, p: Point) -> Result<(), DesktopError> {
        if p.x < 0 || p.y < 0 || p.x as u32 >= self.size.width || p.y as u32 >= self.size.height {
            return Err(DesktopError::OutOfBounds {
                what: "point",
                x: i64::from(p.x),
                y: i64::from(p.y),
                w: 0,
                h: 0,
                screen_w: self.size.width,
                screen_h: self.size.height,
            });
        }
        Ok(())
    }

    fn motion(&self, p: Point) -> Result<(), DesktopError> {
        self.check_point(p)?;
        self.fake(xproto::MOTION_NOTIFY_EVENT, 0, p.x as i16, p.y as i16)
    }

    fn button(&mut self, b: u8, down: bool) -> Result<(), DesktopError> {
        if down {
            self.fake(xproto::BUTTON_PRESS_EVENT, b, 0, 0)?;
            if !self.held_buttons.contains(&b) {
                self.held_buttons.push(b);
            }
        } else {
            self.fake(xproto::BUTTON_RELEASE_EVENT, b, 0, 0)?;
            self.held_buttons.retain(|&x| x != b);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Button;

    #[test]
    fn display_names() {
        assert_eq!(normalize_display(":3").ok().as_deref(), Some(":3"));
        assert_eq!(normalize_display("unix:12").ok().as_deref(), Some(":12"));
        assert_eq!(normalize_display(":7.0").ok().as_deref(), Some(":7"));
        for bad in ["", "3", "host:1", ":", ":x", ":1;rm"] {
            assert!(
                matches!(normalize_display(bad), Err(DesktopError::NoDisplay { .. })),
                "{bad}"
            );
        }
    }

    #[test]
    fn validation_rejects_before_running() {
        assert!(
            validate(&Action::Click {
                at: None,
                button: Button::Left,
                count: 0
            })
            .is_err()
        );
        assert!(
            validate(&Action::Key {
                keys: "ctrl+nope".into()
            })
            .is_err()
        );
        assert!(
            validate(&Action::TypeText {
                text: "a\u{1}".into(),
                per_char_delay: None
            })
            .is_err()
        );
        assert!(validate(&Action::Wait(Duration::from_secs(61))).is_err());
        assert!(
            validate(&Action::Key {
                keys: "ctrl+shift+t".into()
            })
            .is_ok()
        );
    }
}
