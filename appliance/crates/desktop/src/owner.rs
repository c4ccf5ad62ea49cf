//! The owner thread: holds the one X connection, runs actions in order, remaps keycodes for
//! typing, grabs pixels (MIT-SHM or GetImage), owns and serves the CLIPBOARD, resizes via RandR.
//!
//! A second thread blocks on the connection's event queue: it answers `SelectionRequest`s
//! directly (so other clients can paste while the owner thread is busy) and forwards the other
//! events (SelectionNotify, PropertyNotify, ConfigureNotify, MappingNotify) to the owner.

use std::collections::HashMap;
use std::num::NonZeroUsize;
use std::ptr::NonNull;
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;
use x11rb::connection::{Connection, RequestConnection};
use x11rb::protocol::Event;
use x11rb::protocol::xproto::{self, ConnectionExt as _};
use x11rb::protocol::{randr, shm, xfixes, xtest};
use x11rb::rust_connection::RustConnection;
use x11rb::wrapper::ConnectionExt as _;
use x11rb::{CURRENT_TIME, NONE};

use crate::encode::{self, RawImage};
use crate::error::DesktopError;
use crate::keys::{self, Combo};
use crate::{
    Action, ActionOutput, BatchError, DesktopInfo, MAX_CLICKS, MAX_DURATION, MAX_TEXT_CHARS, Point,
    Rect, ScaleInfo, Screenshot, ScreenshotOpts, Size,
};

/// How long a remapped spare keycode keeps its keysym after its last use, so clients that
/// translate key events late (Chromium does) still see the mapping that was current.
const RESTORE_DELAY: Duration = Duration::from_millis(300);
/// Minimum time between the last key event on a spare keycode and remapping it to another
/// keysym (only when more distinct characters are needed than there are spare keycodes).
const REMAP_GAP: Duration = Duration::from_millis(60);
/// Wait after giving a spare keycode a different keysym than it had before, before typing on
/// it: clients such as Chromium cache keycode translations and refresh them asynchronously.
const REMAP_SETTLE: Duration = Duration::from_millis(100);
/// How long to wait for another client's clipboard answer.
const CLIPBOARD_TIMEOUT: Duration = Duration::from_secs(3);
/// Largest clipboard text read (INCR transfers included).
const CLIPBOARD_MAX: usize = 64 << 20;

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

impl Handle {
    pub(crate) fn connect(
        display: &str,
        xauthority: Option<&std::path::Path>,
    ) -> Result<Handle, DesktopError> {
        let name = normalize_display(display)?;
        let no_display = |reason: String| DesktopError::NoDisplay {
            display: name.clone(),
            reason,
        };
        let (conn, screen_num) = match xauthority {
            None => RustConnection::connect(Some(&name)).map_err(|e| no_display(e.to_string()))?,
            Some(path) => {
                // A local display with its own cookie: the Unix socket, then the setup request
                // with that cookie (never $XAUTHORITY's).
                let num: u32 = name[1..]
                    .parse()
                    .map_err(|_| no_display("bad display".into()))?;
                let cookie = crate::xauth::read_cookie(path, num)?;
                let sock =
                    std::os::unix::net::UnixStream::connect(format!("/tmp/.X11-unix/X{num}"))
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
                (conn, 0)
            }
        };
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
        Ok(Handle { info, tx })
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

/// Clipboard contents we serve while we own CLIPBOARD.
#[derive(Default)]
pub(crate) struct ClipState {
    text: Option<String>,
    /// Server time at which we took ownership.
    since: u32,
}

/// A MIT-SHM segment backed by a memfd, mapped read-only here and attached to the server.
struct ShmSeg {
    seg: u32,
    map: NonNull<std::ffi::c_void>,
    len: usize,
}

impl ShmSeg {
    fn new(conn: &RustConnection, len: usize) -> Result<ShmSeg, DesktopError> {
        let err = |what: &str, e: &dyn std::fmt::Display| {
            DesktopError::Protocol(format!("shared memory {what}: {e}"))
        };
        let size = NonZeroUsize::new(len).ok_or_else(|| err("size", &"zero"))?;
        let fd =
            nix::sys::memfd::memfd_create(c"zigral-shm", nix::sys::memfd::MFdFlags::MFD_CLOEXEC)
                .map_err(|e| err("memfd_create", &e))?;
        nix::unistd::ftruncate(&fd, len as i64).map_err(|e| err("ftruncate", &e))?;
        // SAFETY: we map a fresh memfd of exactly `len` bytes that nobody else maps in this
        // process; the mapping is unmapped in Drop and only read through `pixels`.
        let map = unsafe {
            nix::sys::mman::mmap(
                None,
                size,
                nix::sys::mman::ProtFlags::PROT_READ,
                nix::sys::mman::MapFlags::MAP_SHARED,
                &fd,
                0,
            )
        }
        .map_err(|e| err("mmap", &e))?;
        let mut me = ShmSeg { seg: 0, map, len };
        let seg = conn.generate_id().map_err(|e| err("id", &e))?;
        shm::attach_fd(conn, seg, fd, false)
            .map_err(|e| err("attach", &e))?
            .check()
            .map_err(|e| err("attach", &e))?;
        me.seg = seg;
        Ok(me)
    }

    /// The first `n` bytes of the segment.
    fn pixels(&self, n: usize) -> &[u8] {
        let n = n.min(self.len);
        // SAFETY: `map` points to `len` readable bytes for the lifetime of self; the server
        // writes into it only during a ShmGetImage, which has completed (we waited for its
        // reply) before this is called, and no other request targets this segment meanwhile.
        unsafe { std::slice::from_raw_parts(self.map.as_ptr().cast::<u8>(), n) }
    }
}

impl Drop for ShmSeg {
    fn drop(&mut self) {
        // SAFETY: `map`/`len` come from the successful mmap in `new`; no slice from `pixels`
        // outlives `&self`.
        let _ = unsafe { nix::sys::mman::munmap(self.map, self.len) };
    }
}

// SAFETY: the mapping is plain memory owned by this struct; it is only accessed from the
// thread that owns the ShmSeg (moved into the owner thread once).
unsafe impl Send for ShmSeg {}

/// Core keyboard mapping plus our spare-keycode remaps.
struct Keyboard {
    min: u8,
    per: usize,
    syms: Vec<u32>,
    /// keysym -> (keycode, needs Shift)
    index: HashMap<u32, (u8, bool)>,
    /// Keycodes we may remap (no keysym of their own).
    spare: Vec<u8>,
    /// Our current remaps: keycode -> keysym.
    mapped: HashMap<u8, u32>,
    /// Last key event sent on each remapped keycode.
    last_used: HashMap<u8, Instant>,
    restore_at: Option<Instant>,
    dirty: bool,
}

impl Keyboard {
    fn load(conn: &RustConnection, mapped: HashMap<u8, u32>) -> Result<Keyboard, DesktopError> {
        let setup = conn.setup();
        let (min, max) = (setup.min_keycode, setup.max_keycode);
        let r = conn.get_keyboard_mapping(min, max - min + 1)?.reply()?;
        let per = usize::from(r.keysyms_per_keycode).max(1);
        let syms = r.keysyms;
        let mut index = HashMap::new();
        let mut spare = Vec::new();
        for level in 0..2.min(per) {
            for (i, chunk) in syms.chunks(per).enumerate() {
                let kc = min.wrapping_add(i as u8);
                let ks = chunk[level];
                if ks != 0 {
                    index.entry(ks).or_insert((kc, level == 1));
                }
            }
        }
        for (i, chunk) in syms.chunks(per).enumerate() {
            let kc = min.wrapping_add(i as u8);
            if chunk.iter().all(|&k| k == 0) || mapped.contains_key(&kc) {
                spare.push(kc);
            }
        }
        // Our own remaps resolve to level 0 of their keycode.
        for (&kc, &ks) in &mapped {
            index.insert(ks, (kc, false));
        }
        Ok(Keyboard {
            min,
            per,
            syms,
            index,
            spare,
            mapped,
            last_used: HashMap::new(),
            restore_at: None,
            dirty: false,
        })
    }

    fn keysym_at(&self, kc: u8, level: usize) -> u32 {
        let i = usize::from(kc.wrapping_sub(self.min)) * self.per + level;
        self.syms.get(i).copied().unwrap_or(0)
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
        let randr_v = if ext_present(&conn, randr::X11_EXTENSION_NAME)? {
            let r = randr::query_version(&*conn, 1, 5)?.reply()?;
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

    fn key_event(&mut self, kc: u8, down: bool) -> Result<(), DesktopError> {
        if down {
            self.fake(xproto::KEY_PRESS_EVENT, kc, 0, 0)?;
            if !self.held_keys.contains(&kc) {
                self.held_keys.push(kc);
            }
        } else {
            self.fake(xproto::KEY_RELEASE_EVENT, kc, 0, 0)?;
            self.held_keys.retain(|&x| x != kc);
        }
        if self.kb.mapped.contains_key(&kc) {
            self.kb.last_used.insert(kc, Instant::now());
        }
        Ok(())
    }

    fn refresh_keymap(&mut self) -> Result<(), DesktopError> {
        if self.kb.dirty {
            let mapped = std::mem::take(&mut self.kb.mapped);
            let last_used = std::mem::take(&mut self.kb.last_used);
            let restore_at = self.kb.restore_at;
            // Keep only remaps the server still has (someone else may have changed the map).
            let mut kb = Keyboard::load(&self.conn, HashMap::new())?;
            let still: HashMap<u8, u32> = mapped
                .into_iter()
                .filter(|(kc, ks)| kb.keysym_at(*kc, 0) == *ks)
                .collect();
            kb = Keyboard::load(&self.conn, still)?;
            kb.last_used = last_used;
            kb.restore_at = restore_at;
            self.kb = kb;
        }
        Ok(())
    }

    fn shift_keycode(&mut self) -> Result<u8, DesktopError> {
        match self.kb.index.get(&0xffe1) {
            Some(&(kc, _)) => Ok(kc),
            None => {
                self.ensure_keysyms(&[0xffe1])?;
                self.kb
                    .index
                    .get(&0xffe1)
                    .map(|&(kc, _)| kc)
                    .ok_or_else(|| DesktopError::Unsupported("no keycode for Shift".into()))
            }
        }
    }

    /// Makes every keysym in `needed` typeable: remaps spare keycodes for those missing from
    /// the keymap (all at once, then one sync, so no client sees a half-done map).
    fn ensure_keysyms(&mut self, needed: &[u32]) -> Result<(), DesktopError> {
        self.refresh_keymap()?;
        let mut missing: Vec<u32> = Vec::new();
        for &ks in needed {
            if !self.kb.index.contains_key(&ks) && !missing.contains(&ks) {
                missing.push(ks);
            }
        }
        if missing.is_empty() {
            return Ok(());
        }
        // Keycodes we can use: spare, not holding a keysym needed now, not held down.
        let mut free: Vec<u8> = self
            .kb
            .spare
            .iter()
            .copied()
            .filter(|kc| {
                self.kb.mapped.get(kc).is_none_or(|ks| !needed.contains(ks))
                    && !self.held_keys.contains(kc)
            })
            .collect();
        if free.len() < missing.len() {
            return Err(DesktopError::Unsupported(format!(
                "need {} spare keycodes to type these characters, only {} free",
                missing.len(),
                free.len()
            )));
        }
        // Clients cache keycode translations (Chromium does) and notice remaps late, so for
        // each keysym prefer a keycode that last carried that same keysym, then one never
        // used, then an idle one, and only then the least recently used mapped one.
        let mut plan: Vec<(u32, u8)> = Vec::with_capacity(missing.len());
        for &ks in &missing {
            let hist = &self.key_history;
            let mapped = &self.kb.mapped;
            let pick = free
                .iter()
                .position(|kc| hist.get(kc) == Some(&ks) && !mapped.contains_key(kc))
                .or_else(|| {
                    free.iter()
                        .position(|kc| !hist.contains_key(kc) && !mapped.contains_key(kc))
                })
                .or_else(|| free.iter().position(|kc| !mapped.contains_key(kc)))
                .or_else(|| {
                    free.iter()
                        .enumerate()
                        .min_by_key(|(_, kc)| self.kb.last_used.get(kc).copied())
                        .map(|(i, _)| i)
                });
            let Some(i) = pick else {
                return Err(DesktopError::Unsupported("no spare keycode left".into()));
            };
            plan.push((ks, free.swap_remove(i)));
        }
        let settle = plan
            .iter()
            .any(|(ks, kc)| self.key_history.get(kc).is_some_and(|h| h != ks));
        // Remapping a keycode that was just used could change what a slow client reads for
        // that earlier key event: give it time first.
        let latest = plan
            .iter()
            .filter_map(|(_, kc)| self.kb.last_used.get(kc))
            .max()
            .copied();
        if let Some(t) = latest {
            self.conn.flush()?;
            let wait = REMAP_GAP.saturating_sub(t.elapsed());
            if !wait.is_zero() {
                std::thread::sleep(wait);
            }
        }
        let per = self.kb.per;
        for &(ks, kc) in &plan {
            self.key_history.insert(kc, ks);
            let mut syms = vec![0u32; per];
            syms[0] = ks;
            if per > 1 {
                syms[1] = ks;
            }
            self.conn.change_keyboard_mapping(1, kc, per as u8, &syms)?;
            if let Some(old) = self.kb.mapped.insert(kc, ks) {
                self.kb.index.remove(&old);
            }
            self.kb.index.insert(ks, (kc, false));
            let base = usize::from(kc.wrapping_sub(self.kb.min)) * per;
            if let Some(slot) = self.kb.syms.get_mut(base..base + per) {
                slot.copy_from_slice(&syms);
            }
        }
        self.sync()?;
        if settle {
            // A keycode changes meaning: let clients drop their cached translation first.
            std::thread::sleep(REMAP_SETTLE);
        }
        // Our own change produces MappingNotify; the map we hold is already current.
        self.drain_events();
        self.kb.dirty = false;
        self.kb.restore_at = Some(Instant::now() + RESTORE_DELAY);
        Ok(())
    }

    /// Puts every remapped spare keycode back to NoSymbol.
    fn restore_keymap(&mut self) -> Result<(), DesktopError> {
        self.kb.restore_at = None;
        if self.kb.mapped.is_empty() {
            return Ok(());
        }
        let per = self.kb.per;
        let mapped = std::mem::take(&mut self.kb.mapped);
        for (kc, ks) in mapped {
            if self.held_keys.contains(&kc) {
                // Still held down by a key_down: keep it until released.
                self.kb.mapped.insert(kc, ks);
                continue;
            }
            self.conn
                .change_keyboard_mapping(1, kc, per as u8, &vec![0u32; per])?;
            self.kb.index.remove(&ks);
            self.kb.last_used.remove(&kc);
            let base = usize::from(kc.wrapping_sub(self.kb.min)) * per;
            if let Some(slot) = self.kb.syms.get_mut(base..base + per) {
                slot.fill(0);
            }
        }
        if !self.kb.mapped.is_empty() {
            self.kb.restore_at = Some(Instant::now() + RESTORE_DELAY);
        }
        self.sync()?;
        self.drain_events();
        self.kb.dirty = false;
        Ok(())
    }

    fn touch_restore(&mut self) {
        if !self.kb.mapped.is_empty() {
            self.kb.restore_at = Some(Instant::now() + RESTORE_DELAY);
        }
    }

    /// Presses (`down`) and/or releases (`up`) a combo's keys; keys that live on the shifted
    /// level get Shift added unless the combo already holds it.
    fn combo(&mut self, combo: &Combo, down: bool, up: bool) -> Result<(), DesktopError> {
        let syms: Vec<u32> = combo.keys.iter().map(|k| k.keysym).collect();
        self.ensure_keysyms(&syms)?;
        let mut plan: Vec<u8> = Vec::new();
        let has_shift = syms.iter().any(|&k| k == 0xffe1 || k == 0xffe2);
        for ks in &syms {
            let (kc, shift) = self.kb.index.get(ks).copied().ok_or_else(|| {
                DesktopError::Unsupported(format!("keysym 0x{ks:x} has no keycode"))
            })?;
            if shift && !has_shift {
                let skc = self.shift_keycode()?;
                if !plan.contains(&skc) {
                    plan.push(skc);
                }
            }
            if !plan.contains(&kc) {
                plan.push(kc);
            }
        }
        if down {
            for &kc in &plan {
                self.key_event(kc, true)?;
            }
        }
        if up {
            for &kc in plan.iter().rev() {
                self.key_event(kc, false)?;
            }
        }
        self.touch_restore();
        Ok(())
    }

    fn type_text(&mut self, text: &str, delay: Option<Duration>) -> Result<(), DesktopError> {
        let syms = text_keysyms(text)?;
        if syms.is_empty() {
            return Ok(());
        }
        self.refresh_keymap()?;
        let pool = self.kb.spare.len();
        let mut i = 0;
        while i < syms.len() {
            // The longest run whose characters missing from the keymap fit the spare pool.
            let mut need: Vec<u32> = Vec::new();
            let mut j = i;
            let mut wants_shift = false;
            while j < syms.len() {
                let ks = syms[j];
                match self.kb.index.get(&ks) {
                    Some(&(kc, shift))
                        if !self.kb.mapped.contains_key(&kc) || need.contains(&ks) =>
                    {
                        wants_shift |= shift;
                    }
                    _ => {
                        if !need.contains(&ks) {
                            if need.len() == pool {
                                break;
                            }
                            need.push(ks);
                        }
                    }
                }
                j += 1;
            }
            if j == i {
                return Err(DesktopError::Unsupported(
                    "no spare keycodes left to type this text".into(),
                ));
            }
            if wants_shift && !self.kb.index.contains_key(&0xffe1) {
                need.push(0xffe1);
            }
            self.ensure_keysyms(&need)?;
            for &ks in &syms[i..j] {
                let (kc, shift) = self.kb.index.get(&ks).copied().ok_or_else(|| {
                    DesktopError::Unsupported(format!("keysym 0x{ks:x} has no keycode"))
                })?;
                let skc = if shift {
                    Some(self.shift_keycode()?)
                } else {
                    None
                };
                if let Some(s) = skc {
                    self.key_event(s, true)?;
                }
                self.key_event(kc, true)?;
                self.key_event(kc, false)?;
                if let Some(s) = skc {
                    self.key_event(s, false)?;
                }
                if let Some(d) = delay
                    && !d.is_zero()
                {
                    self.conn.flush()?;
                    std::thread::sleep(d);
                }
            }
            i = j;
        }
        self.touch_restore();
        Ok(())
    }

    // ---- screenshots ---------------------------------------------------------------------

    fn capture(
        &mut self,
        region: Option<Rect>,
        cursor: bool,
    ) -> Result<(RawImage, Rect), DesktopError> {
        self.pixfmt.clone().map_err(DesktopError::Unsupported)?;
        let r = region.unwrap_or(Rect {
            x: 0,
            y: 0,
            width: self.size.width,
            height: self.size.height,
        });
        let inside = r.x >= 0
            && r.y >= 0
            && r.width > 0
            && r.height > 0
            && i64::from(r.x) + i64::from(r.width) <= i64::from(self.size.width)
            && i64::from(r.y) + i64::from(r.height) <= i64::from(self.size.height);
        if !inside {
            return Err(DesktopError::OutOfBounds {
                what: "screenshot region",
                x: i64::from(r.x),
                y: i64::from(r.y),
                w: r.width,
                h: r.height,
                screen_w: self.size.width,
                screen_h: self.size.height,
            });
        }
        let n = (r.width as usize) * (r.height as usize) * 4;
        let mut bgrx = None;
        if self.shm_ok {
            match self.grab_shm(r, n) {
                Ok(v) => bgrx = Some(v),
                Err(e) => {
                    tracing::warn!(error = %e, "MIT-SHM capture failed; using GetImage from now on");
                    self.shm_ok = false;
                    self.shm = None;
                }
            }
        }
        let mut bgrx = match bgrx {
            Some(v) => v,
            None => {
                let rep = self
                    .conn
                    .get_image(
                        xproto::ImageFormat::Z_PIXMAP,
                        self.root,
                        r.x as i16,
                        r.y as i16,
                        r.width as u16,
                        r.height as u16,
                        !0,
                    )?
                    .reply()?;
                if rep.data.len() < n {
                    return Err(DesktopError::Protocol(format!(
                        "GetImage returned {} bytes, expected {n}",
                        rep.data.len()
                    )));
                }
                let mut d = rep.data;
                d.truncate(n);
                d
            }
        };
        if cursor {
            if self.xfixes {
                match self.conn_cursor() {
                    Ok(c) => overlay_cursor(&mut bgrx, r, &c),
                    Err(e) => tracing::warn!(error = %e, "cursor image unavailable"),
                }
            } else {
                tracing::warn!("cursor overlay requested but XFixes is absent");
            }
        }
        Ok((
            RawImage {
                width: r.width,
                height: r.height,
                bgrx,
            },
            r,
        ))
    }

    fn conn_cursor(&self) -> Result<xfixes::GetCursorImageReply, DesktopError> {
        Ok(xfixes::get_cursor_image(&*self.conn)?.reply()?)
    }

    fn grab_shm(&mut self, r: Rect, n: usize) -> Result<Vec<u8>, DesktopError> {
        if self.shm.as_ref().is_none_or(|s| s.len < n) {
            if let Some(old) = self.shm.take() {
                shm::detach(&*self.conn, old.seg)?;
            }
            // Room for the current full screen at least, so region sizes don't thrash.
            let full = (self.size.width as usize) * (self.size.height as usize) * 4;
            self.shm = Some(ShmSeg::new(&self.conn, n.max(full))?);
        }
        let seg = self
            .shm
            .as_ref()
            .ok_or_else(|| DesktopError::Protocol("no shm segment".into()))?;
        shm::get_image(
            &*self.conn,
            self.root,
            r.x as i16,
            r.y as i16,
            r.width as u16,
            r.height as u16,
            !0,
            xproto::ImageFormat::Z_PIXMAP.into(),
            seg.seg,
            0,
        )?
        .reply()?;
        Ok(seg.pixels(n).to_vec())
    }

    // ---- clipboard -----------------------------------------------------------------------

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

    fn clipboard_set(&mut self, text: &str) -> Result<(), DesktopError> {
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

    fn clipboard_get(&mut self) -> Result<String, DesktopError> {
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

    // ---- RandR -----------------------------------------------------------------------------

    fn resize(&mut self, width: u32, height: u32) -> Result<Size, DesktopError> {
        let fail = |reason: String| DesktopError::Resize {
            width,
            height,
            reason,
        };
        if !self.randr {
            return Err(DesktopError::MissingExtension {
                display: self.display.clone(),
                name: "RANDR",
                needed_for: "changing the display size",
            });
        }
        if self.size == (Size { width, height }) {
            return Ok(self.size);
        }
        let range = randr::get_screen_size_range(&*self.conn, self.root)?.reply()?;
        if width < u32::from(range.min_width)
            || height < u32::from(range.min_height)
            || width > u32::from(range.max_width)
            || height > u32::from(range.max_height)
        {
            return Err(fail(format!(
                "the server allows {}x{} to {}x{} (Xvfb cannot grow beyond the size it was started with)",
                range.min_width, range.min_height, range.max_width, range.max_height
            )));
        }
        let res = randr::get_screen_resources(&*self.conn, self.root)?.reply()?;
        let (Some(&output), Some(&crtc)) = (res.outputs.first(), res.crtcs.first()) else {
            return Err(fail("the server has no RandR output or CRTC".into()));
        };
        let out_info =
            randr::get_output_info(&*self.conn, output, res.config_timestamp)?.reply()?;
        let existing = res
            .modes
            .iter()
            .find(|m| u32::from(m.width) == width && u32::from(m.height) == height)
            .map(|m| m.id);
        let mode = match existing {
            Some(m) => m,
            None => {
                let name = format!("{width}x{height}");
                let info = randr::ModeInfo {
                    id: 0,
                    width: width as u16,
                    height: height as u16,
                    dot_clock: width * height * 60,
                    hsync_start: width as u16,
                    hsync_end: width as u16,
                    htotal: width as u16,
                    hskew: 0,
                    vsync_start: height as u16,
                    vsync_end: height as u16,
                    vtotal: height as u16,
                    name_len: name.len() as u16,
                    mode_flags: randr::ModeFlag::default(),
                };
                randr::create_mode(&*self.conn, self.root, info, name.as_bytes())?
                    .reply()
                    .map_err(|e| fail(format!("CreateMode: {e}")))?
                    .mode
            }
        };
        if !out_info.modes.contains(&mode) {
            randr::add_output_mode(&*self.conn, output, mode)?
                .check()
                .map_err(|e| fail(format!("AddOutputMode: {e}")))?;
        }
        let mm = |px: u32| (f64::from(px) * 25.4 / 96.0).round() as u32;
        let grow = width > self.size.width || height > self.size.height;
        let set_size = |s: &Self| -> Result<(), DesktopError> {
            randr::set_screen_size(
                &*s.conn,
                s.root,
                width as u16,
                height as u16,
                mm(width),
                mm(height),
            )?
            .check()
            .map_err(|e| fail(format!("SetScreenSize: {e}")))
        };
        if grow {
            // The screen must hold the current CRTC while it changes: grow to the union first.
            let (uw, uh) = (width.max(self.size.width), height.max(self.size.height));
            randr::set_screen_size(&*self.conn, self.root, uw as u16, uh as u16, mm(uw), mm(uh))?
                .check()
                .map_err(|e| fail(format!("SetScreenSize: {e}")))?;
        }
        let r = randr::set_crtc_config(
            &*self.conn,
            crtc,
            CURRENT_TIME,
            res.config_timestamp,
            0,
            0,
            mode,
            randr::Rotation::ROTATE0,
            &[output],
        )?
        .reply()
        .map_err(|e| fail(format!("SetCrtcConfig: {e}")))?;
        if r.status != randr::SetConfig::SUCCESS {
            return Err(fail(format!("SetCrtcConfig status {:?}", r.status)));
        }
        set_size(self)?;
        self.sync()?;
        let geo = self.conn.get_geometry(self.root)?.reply()?;
        self.size = Size {
            width: u32::from(geo.width),
            height: u32::from(geo.height),
        };
        self.shm = None;
        if self.size != (Size { width, height }) {
            return Err(fail(format!(
                "the server reports {}x{} after the change",
                self.size.width, self.size.height
            )));
        }
        Ok(self.size)
    }
}

/// Screenshots decode 24/32-bit TrueColor, 32 bits per pixel, LSB-first (B, G, R, X).
fn pixel_format_ok(conn: &RustConnection, screen: &xproto::Screen) -> Result<(), String> {
    let setup = conn.setup();
    let depth = screen.root_depth;
    let fmt = setup.pixmap_formats.iter().find(|f| f.depth == depth);
    let visual = screen
        .allowed_depths
        .iter()
        .flat_map(|d| d.visuals.iter())
        .find(|v| v.visual_id == screen.root_visual);
    let ok = (depth == 24 || depth == 32)
        && fmt.is_some_and(|f| f.bits_per_pixel == 32)
        && setup.image_byte_order == xproto::ImageOrder::LSB_FIRST
        && visual.is_some_and(|v| {
            v.red_mask == 0x00ff_0000 && v.green_mask == 0x0000_ff00 && v.blue_mask == 0x0000_00ff
        });
    if ok {
        Ok(())
    } else {
        Err(format!(
            "screen depth {depth} pixel format (only 24-bit TrueColor, 32 bpp, LSB first is decoded)"
        ))
    }
}

/// Alpha-blends XFixes' premultiplied ARGB cursor onto BGRX pixels of region `r`.
fn overlay_cursor(bgrx: &mut [u8], r: Rect, c: &xfixes::GetCursorImageReply) {
    let ox = i32::from(c.x) - i32::from(c.xhot) - r.x;
    let oy = i32::from(c.y) - i32::from(c.yhot) - r.y;
    let (cw, ch) = (i32::from(c.width), i32::from(c.height));
    for cy in 0..ch {
        let y = oy + cy;
        if y < 0 || y >= r.height as i32 {
            continue;
        }
        for cx in 0..cw {
            let x = ox + cx;
            if x < 0 || x >= r.width as i32 {
                continue;
            }
            let Some(&argb) = c.cursor_image.get((cy * cw + cx) as usize) else {
                continue;
            };
            let a = argb >> 24;
            if a == 0 {
                continue;
            }
            let i = ((y as usize) * (r.width as usize) + x as usize) * 4;
            let inv = 255 - a;
            for (k, shift) in [(0usize, 0u32), (1, 8), (2, 16)] {
                let s = (argb >> shift) & 0xff;
                let d = u32::from(bgrx[i + k]);
                bgrx[i + k] = (s + (d * inv + 127) / 255).min(255) as u8;
            }
        }
    }
}

/// The event thread: serves SelectionRequests, forwards everything else to the owner.
fn event_loop(
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
