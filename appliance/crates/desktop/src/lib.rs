//! zigral-desktop: drives one X display in-process: XTEST input, SHM screenshots, clipboard, RandR.
//!
//! [`Desktop::connect`] opens one X connection owned by a dedicated thread; a [`Desktop`] is a
//! cheap cloneable handle that sends commands to it and awaits replies (tokio). Every action an
//! agent takes (pointer, keyboard, typing any Unicode text, screenshots, clipboard, display
//! size) goes through here, one action or a [`Desktop::batch`] at a time, in order.
//! [`Desktop::settle`] waits (on a second connection, through X Damage) until the screen stops
//! changing, so a screenshot taken after input shows the result rather than a transition.
//!
//! ```no_run
//! # async fn demo() -> Result<(), zigral_desktop::DesktopError> {
//! use zigral_desktop::{Button, Desktop, ImageFormat, ScreenshotOpts, Size};
//! let d = Desktop::connect(":0")?;
//! d.click_at(640, 400, Button::Left, 2).await?;
//! d.key("ctrl+a").await?;
//! d.type_text("héllo ✓ 日本語", None).await?;
//! d.settle(zigral_desktop::SETTLE_QUIET, zigral_desktop::SETTLE_CAP).await?;
//! let shot = d
//!     .screenshot(ScreenshotOpts {
//!         format: ImageFormat::Jpeg { quality: 80 },
//!         scale: Some(Size { width: 1024, height: 768 }),
//!         ..Default::default()
//!     })
//!     .await?;
//! // The model answers in image coordinates; map back to the screen before clicking.
//! let p = shot.scale.to_screen(zigral_desktop::Point { x: 512, y: 384 });
//! d.click_at(p.x, p.y, Button::Left, 1).await?;
//! # Ok(()) }
//! ```

mod encode;
mod error;
mod keys;
mod keysym_table;
mod owner;
mod settle;
pub mod xauth;

use std::sync::Arc;
use std::time::Duration;

pub use encode::{RawImage, encode, scale_bgrx};
#[doc(hidden)]
pub use encode::{bgrx_to_rgb, encode_png, encode_png_with};
pub use error::DesktopError;
pub use keys::{
    Combo, Key, char_to_keysym, keysym_from_name, keysym_name, keysym_to_char, parse_combo,
    parse_keys,
};
pub use settle::{SMALL_DAMAGE_AREA, SMALL_DAMAGE_WIDTH};

/// Longest a single wait, key hold or per-character delay may last.
pub const MAX_DURATION: Duration = Duration::from_secs(60);
/// Most clicks one click or scroll action may send.
pub const MAX_CLICKS: u32 = 100;
/// Longest text one `type_text` may type (characters).
pub const MAX_TEXT_CHARS: usize = 100_000;

/// Default quiet window of [`Desktop::settle`]: 100 ms without screen changes. Six frames at
/// 60 Hz, so a running animation never looks quiet; far shorter than a caret's 500 ms blink
/// period (carets are ignored anyway, see [`SMALL_DAMAGE_WIDTH`]).
pub const SETTLE_QUIET: Duration = Duration::from_millis(100);
/// Default cap of [`Desktop::settle`]: a screen that keeps changing (video, endless animation)
/// is captured after 1.5 s anyway.
pub const SETTLE_CAP: Duration = Duration::from_millis(1500);

/// The parameters of [`Desktop::settle`], for callers that keep them as configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SettleOpts {
    /// How long the screen must stay unchanged.
    pub quiet: Duration,
    /// The longest settle waits.
    pub cap: Duration,
}

impl Default for SettleOpts {
    /// [`SETTLE_QUIET`] and [`SETTLE_CAP`].
    fn default() -> Self {
        SettleOpts {
            quiet: SETTLE_QUIET,
            cap: SETTLE_CAP,
        }
    }
}

/// What [`Desktop::settle`] observed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Settle {
    /// How long it waited.
    pub waited: Duration,
    /// Damage events (screen changes) that reset the quiet window.
    pub damage_events: u32,
    /// Damage events ignored as too small (a blinking caret).
    pub ignored_events: u32,
    /// True when the screen was still changing at the cap.
    pub capped: bool,
}

/// A point in screen pixels (origin top-left).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Point {
    pub x: i32,
    pub y: i32,
}

/// A width and height in pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Size {
    pub width: u32,
    pub height: u32,
}

impl Size {
    /// XGA, 1024×768: the size Anthropic recommends for computer-use screenshots.
    pub const XGA: Size = Size {
        width: 1024,
        height: 768,
    };

    /// The largest size with this size's aspect ratio that fits within `max` (never larger
    /// than `self`; at least 1×1). Use it as [`ScreenshotOpts::scale`] to shrink screenshots
    /// without distorting them.
    pub fn fit_within(self, max: Size) -> Size {
        if self.width == 0 || self.height == 0 {
            return self;
        }
        if self.width <= max.width && self.height <= max.height {
            return self;
        }
        let (w, h) = (u64::from(self.width), u64::from(self.height));
        let (mw, mh) = (u64::from(max.width.max(1)), u64::from(max.height.max(1)));
        // Scale by min(mw/w, mh/h), rounding down so the result fits.
        let (nw, nh) = if mw * h <= mh * w {
            (mw, (h * mw / w).max(1))
        } else {
            ((w * mh / h).max(1), mh)
        };
        Size {
            width: nw as u32,
            height: nh as u32,
        }
    }
}

/// A rectangle in screen pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Rect {
    pub x: i32,
    pub y: i32,
    pub width: u32,
    pub height: u32,
}

/// A pointer button (X button numbers 1–3, 8–9).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Button {
    Left,
    Middle,
    Right,
    /// Browser "back" side button (X button 8).
    Back,
    /// Browser "forward" side button (X button 9).
    Forward,
}

impl Button {
    /// The X button number.
    pub fn number(self) -> u8 {
        match self {
            Button::Left => 1,
            Button::Middle => 2,
            Button::Right => 3,
            Button::Back => 8,
            Button::Forward => 9,
        }
    }
}

/// A scroll direction (X buttons 4–7).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ScrollDirection {
    Up,
    Down,
    Left,
    Right,
}

impl ScrollDirection {
    /// The X button number one scroll click presses.
    pub fn button(self) -> u8 {
        match self {
            ScrollDirection::Up => 4,
            ScrollDirection::Down => 5,
            ScrollDirection::Left => 6,
            ScrollDirection::Right => 7,
        }
    }
}

/// Screenshot encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum ImageFormat {
    /// Lossless PNG (fast deflate level; see the crate README for the size trade-off).
    #[default]
    Png,
    /// Baseline JPEG, quality 1–100 (80 is a good default for models).
    Jpeg { quality: u8 },
    /// Lossless WebP.
    Webp,
}

impl ImageFormat {
    /// The MIME type of this encoding.
    pub fn mime(self) -> &'static str {
        match self {
            ImageFormat::Png => "image/png",
            ImageFormat::Jpeg { .. } => "image/jpeg",
            ImageFormat::Webp => "image/webp",
        }
    }
}

/// What to capture and how to encode it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct ScreenshotOpts {
    /// Part of the screen to capture; `None` = the whole screen.
    pub region: Option<Rect>,
    /// Output encoding.
    pub format: ImageFormat,
    /// Resize the captured pixels to exactly this size (e.g. XGA 1024×768); `None` keeps them.
    pub scale: Option<Size>,
    /// Draw the pointer cursor into the image (XFixes; ignored with a warning when absent).
    pub cursor: bool,
}

/// How a screenshot's pixels relate to the screen: maps coordinates both ways.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct ScaleInfo {
    /// The screen rectangle that was captured.
    pub source: Rect,
    /// The size of the returned image.
    pub image: Size,
}

impl ScaleInfo {
    /// Horizontal and vertical factors, image pixels per screen pixel.
    pub fn factors(&self) -> (f64, f64) {
        (
            f64::from(self.image.width) / f64::from(self.source.width.max(1)),
            f64::from(self.image.height) / f64::from(self.source.height.max(1)),
        )
    }

    /// True when the image is a 1:1 copy of the screen region.
    pub fn is_identity(&self) -> bool {
        self.source.width == self.image.width && self.source.height == self.image.height
    }

    /// Maps a point in image pixels to screen pixels (centre of the covered area, clamped to
    /// the captured region).
    pub fn to_screen(&self, p: Point) -> Point {
        let map = |v: i32, img: u32, src: u32, off: i32| -> i32 {
            if img == 0 || src == 0 {
                return off;
            }
            let v = i64::from(v).clamp(0, i64::from(img) - 1);
            // centre of image pixel v, in source pixels: (v + 0.5) * src / img
            let s = ((2 * v + 1) * i64::from(src)) / (2 * i64::from(img));
            off + s.clamp(0, i64::from(src) - 1) as i32
        };
        Point {
            x: map(p.x, self.image.width, self.source.width, self.source.x),
            y: map(p.y, self.image.height, self.source.height, self.source.y),
        }
    }

    /// Maps a point in screen pixels to image pixels; `None` when it lies outside the captured
    /// region.
    pub fn to_image(&self, p: Point) -> Option<Point> {
        let map = |v: i32, img: u32, src: u32, off: i32| -> Option<i32> {
            let rel = i64::from(v) - i64::from(off);
            if rel < 0 || rel >= i64::from(src) || img == 0 {
                return None;
            }
            let s = ((2 * rel + 1) * i64::from(img)) / (2 * i64::from(src));
            Some(s.clamp(0, i64::from(img) - 1) as i32)
        };
        Some(Point {
            x: map(p.x, self.image.width, self.source.width, self.source.x)?,
            y: map(p.y, self.image.height, self.source.height, self.source.y)?,
        })
    }
}

/// An encoded screenshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Screenshot {
    /// The encoded image file (PNG, JPEG or WebP).
    pub bytes: Vec<u8>,
    /// Image width in pixels.
    pub width: u32,
    /// Image height in pixels.
    pub height: u32,
    /// MIME type of `bytes`.
    pub mime: &'static str,
    /// Coordinate mapping between the image and the screen.
    pub scale: ScaleInfo,
}

/// One step of a [`Desktop::batch`]; also the unit [`Desktop::execute`] runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Move the pointer to absolute screen coordinates.
    MoveTo { x: i32, y: i32 },
    /// Click `count` times (1 = click, 2 = double, 3 = triple), at `at` if given (moves first).
    Click {
        at: Option<Point>,
        button: Button,
        count: u32,
    },
    /// Press a button without releasing it.
    ButtonDown { button: Button },
    /// Release a button.
    ButtonUp { button: Button },
    /// Press at `from`, move through `via` to `to`, release.
    Drag {
        button: Button,
        from: Point,
        to: Point,
        via: Vec<Point>,
    },
    /// Scroll `clicks` notches, at `at` if given (moves first).
    Scroll {
        at: Option<Point>,
        direction: ScrollDirection,
        clicks: u32,
    },
    /// Press and release an xdotool-style key sequence (`ctrl+shift+t`, `ctrl+a Delete`).
    Key { keys: String },
    /// Press the keys of one combo and leave them down.
    KeyDown { combo: String },
    /// Release the keys of one combo (reverse order).
    KeyUp { combo: String },
    /// Hold one combo down for `duration` (blocks the connection for that time inside a batch).
    HoldKey { combo: String, duration: Duration },
    /// Type Unicode text, layout-independent, with an optional delay after each character.
    TypeText {
        text: String,
        per_char_delay: Option<Duration>,
    },
    /// Report the pointer position.
    CursorPosition,
    /// Capture (and encode) the screen.
    Screenshot(ScreenshotOpts),
    /// Read the CLIPBOARD selection as text.
    ClipboardGet,
    /// Own the CLIPBOARD selection with this text.
    ClipboardSet { text: String },
    /// Report the screen size.
    Size,
    /// Change the screen size through RandR.
    Resize { width: u32, height: u32 },
    /// Sleep (at most [`MAX_DURATION`]).
    Wait(Duration),
}

/// What one action returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ActionOutput {
    /// The action has no result value.
    Done,
    /// Pointer position ([`Action::CursorPosition`]).
    Position(Point),
    /// A screenshot ([`Action::Screenshot`]).
    Screenshot(Screenshot),
    /// Clipboard text ([`Action::ClipboardGet`]).
    Text(String),
    /// Screen size ([`Action::Size`], [`Action::Resize`]).
    Size(Size),
}

/// A batch stopped at a failing action.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("action {index} failed: {error}")]
pub struct BatchError {
    /// Index of the action that failed (or failed validation: then nothing ran).
    pub index: usize,
    /// Outputs of the actions before `index` that ran (empty when validation failed).
    pub completed: Vec<ActionOutput>,
    /// Why it failed.
    pub error: DesktopError,
}

/// An extension version `(major, minor)`.
pub type Version = (u32, u32);

/// What the server offers, found at connect time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DesktopInfo {
    /// The display name connected to (`:N`).
    pub display: String,
    /// Screen size at connect time (see [`Desktop::size`] for the current one).
    pub size: Size,
    /// XTEST version (required).
    pub xtest: Version,
    /// MIT-SHM version, if present (screenshots fall back to GetImage without it).
    pub shm: Option<Version>,
    /// RandR version, if present (needed for [`Desktop::resize`]).
    pub randr: Option<Version>,
    /// XFixes version, if present (needed for the cursor overlay).
    pub xfixes: Option<Version>,
    /// Keycodes free for remapping when typing characters absent from the keymap.
    pub spare_keycodes: usize,
}

/// Handle to one X display; clone freely, all clones share the one connection.
#[derive(Clone)]
pub struct Desktop {
    inner: Arc<owner::Handle>,
}

impl std::fmt::Debug for Desktop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Desktop")
            .field("display", &self.inner.info.display)
            .finish()
    }
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

impl Desktop {
    /// Connects to display `":N"` (or `"unix:N"`, `":N.0"`), checks XTEST (required) and SHM,
    /// RandR and XFixes (optional: a warning is logged and features fall back or report errors),
    /// and starts the owner thread. Blocking but quick (a few round trips): fine to call from
    /// async code.
    pub fn connect(display: &str) -> Result<Desktop, DesktopError> {
        Desktop::connect_with_xauthority(display, None)
    }

    /// [`Desktop::connect`] authenticating with the MIT-MAGIC-COOKIE-1 for `display` found in
    /// the Xauthority file `xauthority` (each desktop has its own cookie file).
    pub fn connect_with_xauthority(
        display: &str,
        xauthority: Option<&std::path::Path>,
    ) -> Result<Desktop, DesktopError> {
        let inner = owner::Handle::connect(display, xauthority)?;
        Ok(Desktop {
            inner: Arc::new(inner),
        })
    }

    /// What the server offered at connect time.
    pub fn info(&self) -> &DesktopInfo {
        &self.inner.info
    }

    /// Runs one action.
    pub async fn execute(&self, action: Action) -> Result<ActionOutput, DesktopError> {
        match self.batch(vec![action]).await {
            Ok(mut v) => v
                .pop()
                .ok_or_else(|| DesktopError::Protocol("empty batch reply".into())),
            Err(e) => Err(e.error),
        }
    }

    /// Runs actions in order on the one connection, flushing once at the end (round trips only
    /// where an action needs a reply). All key names, texts and arguments are validated first:
    /// an invalid action fails the batch before anything runs. Execution stops at the first
    /// failing action; the error says which and carries the outputs of those that ran.
    pub async fn batch(&self, actions: Vec<Action>) -> Result<Vec<ActionOutput>, BatchError> {
        self.inner.run(actions).await
    }

    async fn done(&self, action: Action) -> Result<(), DesktopError> {
        self.execute(action).await.map(|_| ())
    }

    /// Moves the pointer to `(x, y)`; out-of-screen coordinates are an error.
    pub async fn move_to(&self, x: i32, y: i32) -> Result<(), DesktopError> {
        self.done(Action::MoveTo { x, y }).await
    }

    /// Clicks `count` times (1–[`MAX_CLICKS`]) at the current pointer position.
    pub async fn click(&self, button: Button, count: u32) -> Result<(), DesktopError> {
        self.done(Action::Click {
            at: None,
            button,
            count,
        })
        .await
    }

    /// Moves to `(x, y)` and clicks `count` times.
    pub async fn click_at(
        &self,
        x: i32,
        y: i32,
        button: Button,
        count: u32,
    ) -> Result<(), DesktopError> {
        self.done(Action::Click {
            at: Some(Point { x, y }),
            button,
            count,
        })
        .await
    }

    /// Presses a button and leaves it down.
    pub async fn button_down(&self, button: Button) -> Result<(), DesktopError> {
        self.done(Action::ButtonDown { button }).await
    }

    /// Releases a button.
    pub async fn button_up(&self, button: Button) -> Result<(), DesktopError> {
        self.done(Action::ButtonUp { button }).await
    }

    /// Left-button drag from `from` through `via` to `to`.
    pub async fn drag(&self, from: Point, to: Point, via: &[Point]) -> Result<(), DesktopError> {
        self.done(Action::Drag {
            button: Button::Left,
            from,
            to,
            via: via.to_vec(),
        })
        .await
    }

    /// Scrolls `clicks` notches (buttons 4–7), first moving to `at` if given.
    pub async fn scroll(
        &self,
        direction: ScrollDirection,
        clicks: u32,
        at: Option<Point>,
    ) -> Result<(), DesktopError> {
        self.done(Action::Scroll {
            at,
            direction,
            clicks,
        })
        .await
    }

    /// The pointer position.
    pub async fn cursor_position(&self) -> Result<Point, DesktopError> {
        match self.execute(Action::CursorPosition).await? {
            ActionOutput::Position(p) => Ok(p),
            other => Err(DesktopError::Protocol(format!(
                "unexpected reply {other:?}"
            ))),
        }
    }

    /// Presses and releases an xdotool-style key sequence: `ctrl+shift+t`, `Return`,
    /// `ctrl+a Delete` (see [`parse_keys`]).
    pub async fn key(&self, keys: &str) -> Result<(), DesktopError> {
        self.done(Action::Key {
            keys: keys.to_string(),
        })
        .await
    }

    /// Presses one combo and leaves it down (pair with [`Desktop::key_up`]).
    pub async fn key_down(&self, combo: &str) -> Result<(), DesktopError> {
        self.done(Action::KeyDown {
            combo: combo.to_string(),
        })
        .await
    }

    /// Releases one combo's keys in reverse order.
    pub async fn key_up(&self, combo: &str) -> Result<(), DesktopError> {
        self.done(Action::KeyUp {
            combo: combo.to_string(),
        })
        .await
    }

    /// Holds one combo for `duration` (at most [`MAX_DURATION`]). Other actions may run on the
    /// connection meanwhile; the keys are released even if this future is dropped. As with a
    /// physical keyboard, the X server autorepeats a held non-modifier key after its delay.
    pub async fn hold_key(&self, combo: &str, duration: Duration) -> Result<(), DesktopError> {
        check_duration("hold", duration)?;
        parse_combo(combo)?;
        // Armed before the press: once `key_down` has queued the press, a cancellation at
        // any later await (even before its reply) queues the release right behind it.
        let guard = owner::ReleaseGuard::new(self.inner.clone(), combo.to_string());
        if let Err(e) = self.key_down(combo).await {
            guard.disarm();
            return Err(e);
        }
        tokio::time::sleep(duration).await;
        guard.release().await
    }

    /// Types `text` (any Unicode; `\n` = Return, `\t` = Tab) independently of the keyboard
    /// layout, with an optional delay after each character. Characters absent from the keymap
    /// are typed through spare keycodes remapped for the purpose and restored shortly after.
    pub async fn type_text(
        &self,
        text: &str,
        per_char_delay: Option<Duration>,
    ) -> Result<(), DesktopError> {
        self.done(Action::TypeText {
            text: text.to_string(),
            per_char_delay,
        })
        .await
    }

    /// Waits until the screen has been quiet — no X Damage on the root window, apart from
    /// tiny rectangles such as a blinking caret — for `quiet`, but at most `cap` (then
    /// [`Settle::capped`] is true). Call it after input and before a screenshot so the image
    /// shows the page after it reacted, not mid-animation; [`SETTLE_QUIET`] and
    /// [`SETTLE_CAP`] are sensible defaults. Runs on a dedicated X connection (opened on first
    /// use), so other actions and screenshots are not held up meanwhile.
    ///
    /// Errors: [`DesktopError::InvalidArgument`] when `quiet` exceeds `cap` or `cap` exceeds
    /// [`MAX_DURATION`]; [`DesktopError::MissingExtension`] without the DAMAGE extension;
    /// connection errors as for other actions.
    pub async fn settle(&self, quiet: Duration, cap: Duration) -> Result<Settle, DesktopError> {
        check_duration("settle cap", cap)?;
        if quiet > cap {
            return Err(DesktopError::InvalidArgument(format!(
                "settle quiet window of {} ms exceeds the cap of {} ms",
                quiet.as_millis(),
                cap.as_millis()
            )));
        }
        self.inner.settle(quiet, cap).await
    }

    /// Captures and encodes the screen (or a region), optionally scaled and with the cursor.
    pub async fn screenshot(&self, opts: ScreenshotOpts) -> Result<Screenshot, DesktopError> {
        match self.execute(Action::Screenshot(opts)).await? {
            ActionOutput::Screenshot(s) => Ok(s),
            other => Err(DesktopError::Protocol(format!(
                "unexpected reply {other:?}"
            ))),
        }
    }

    /// Captures raw pixels (BGRX, 4 bytes per pixel) of the screen or a region, unencoded.
    pub async fn capture(
        &self,
        region: Option<Rect>,
        cursor: bool,
    ) -> Result<RawImage, DesktopError> {
        self.inner.capture(region, cursor).await
    }

    /// Reads the CLIPBOARD selection as UTF-8 text (empty when nobody owns it).
    pub async fn clipboard_get(&self) -> Result<String, DesktopError> {
        match self.execute(Action::ClipboardGet).await? {
            ActionOutput::Text(t) => Ok(t),
            other => Err(DesktopError::Protocol(format!(
                "unexpected reply {other:?}"
            ))),
        }
    }

    /// Takes ownership of CLIPBOARD with `text` and serves it to other clients (TARGETS,
    /// UTF8_STRING, STRING, TEXT, text/plain) until another client takes the selection.
    pub async fn clipboard_set(&self, text: &str) -> Result<(), DesktopError> {
        self.done(Action::ClipboardSet {
            text: text.to_string(),
        })
        .await
    }

    /// The current screen size.
    pub async fn size(&self) -> Result<Size, DesktopError> {
        match self.execute(Action::Size).await? {
            ActionOutput::Size(s) => Ok(s),
            other => Err(DesktopError::Protocol(format!(
                "unexpected reply {other:?}"
            ))),
        }
    }

    /// Changes the screen size through RandR (creating the mode if needed). Xvfb can only go
    /// up to the size it was started with; beyond that this returns [`DesktopError::Resize`].
    pub async fn resize(&self, width: u32, height: u32) -> Result<Size, DesktopError> {
        match self.execute(Action::Resize { width, height }).await? {
            ActionOutput::Size(s) => Ok(s),
            other => Err(DesktopError::Protocol(format!(
                "unexpected reply {other:?}"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fit_within_keeps_aspect() {
        let s = Size {
            width: 1280,
            height: 800,
        };
        assert_eq!(
            s.fit_within(Size::XGA),
            Size {
                width: 1024,
                height: 640
            }
        );
        assert_eq!(
            s.fit_within(Size {
                width: 2000,
                height: 2000
            }),
            s
        );
        let tall = Size {
            width: 800,
            height: 1600,
        };
        assert_eq!(
            tall.fit_within(Size::XGA),
            Size {
                width: 384,
                height: 768
            }
        );
    }

    #[test]
    fn mapping_round_trips() {
        let info = ScaleInfo {
            source: Rect {
                x: 0,
                y: 0,
                width: 1280,
                height: 800,
            },
            image: Size::XGA,
        };
        for x in (0..1024).step_by(7) {
            for y in (0..768).step_by(11) {
                let p = Point { x, y };
                assert_eq!(info.to_image(info.to_screen(p)), Some(p));
            }
        }
        // Screen -> image -> screen lands within one source pixel span.
        for x in (0..1280).step_by(13) {
            let p = Point { x, y: 400 };
            let q = info.to_screen(info.to_image(p).expect("inside"));
            assert!((q.x - p.x).abs() <= 1, "{p:?} {q:?}");
        }
        assert_eq!(info.to_image(Point { x: -1, y: 0 }), None);
        assert_eq!(info.factors(), (0.8, 0.96));
        // Offsets of a region are honoured.
        let r = ScaleInfo {
            source: Rect {
                x: 100,
                y: 50,
                width: 200,
                height: 100,
            },
            image: Size {
                width: 100,
                height: 50,
            },
        };
        assert_eq!(r.to_screen(Point { x: 0, y: 0 }), Point { x: 101, y: 51 });
        assert_eq!(
            r.to_image(Point { x: 101, y: 51 }),
            Some(Point { x: 0, y: 0 })
        );
        assert_eq!(r.to_image(Point { x: 99, y: 51 }), None);
    }
}
