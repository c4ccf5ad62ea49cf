//! The executor: validates a whole batch first (nothing runs when any action is invalid), then
//! runs it in order under the session's input lock against the desktop (XTEST, SHM
//! screenshots) and the browser (CDP), stopping at the first failure, with per-action timings
//! and an optional screenshot after the last action.

use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{Value, json};
use tokio::sync::Mutex;
use zigral_browser::{Browser, UrlPolicy};
use zigral_desktop as desk;
use zigral_desktop::Desktop;

use crate::ActionError;
use crate::schema::{
    Action, ActionResult, BatchRequest, BatchResponse, ImageFormat, ImageOut, MouseButton, Output,
    ScaleOut, ScaleSpec, ScreenshotSpec, ScrollDirection,
};

/// Longest wait / key hold (ms).
pub const MAX_WAIT_MS: u64 = 60_000;
/// Gap between the clicks of a double/triple click.
const MULTI_CLICK_GAP: Duration = Duration::from_millis(40);
/// Longest per-character typing delay (ms).
pub const MAX_TYPE_DELAY_MS: u64 = 1_000;

/// Runs actions for one session's desktop and browser. Cheap to clone (shared).
#[derive(Clone)]
pub struct Executor {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Executor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Executor")
            .field("desktop", &self.inner.desktop)
            .field("browser", &self.inner.browser)
            .finish()
    }
}

struct Inner {
    desktop: Desktop,
    browser: Option<Browser>,
    /// The session's input lock: one batch at a time drives the desktop.
    lock: Mutex<()>,
    policy: RwLock<UrlPolicy>,
}

/// One validated, ready-to-run step.
#[derive(Debug, Clone)]
enum Step {
    /// Desktop actions run as one desktop batch (e.g. modifiers down, click, modifiers up).
    Desk(Vec<desk::Action>),
    /// Desktop batches run [`MULTI_CLICK_GAP`] apart (the clicks of a double/triple click).
    DeskSpaced(Vec<Vec<desk::Action>>),
    HoldKey(String, Duration),
    Wait(Duration),
    Browser(Action),
}

impl Executor {
    /// An executor over `desktop` and (optionally) the desktop's Chrome.
    pub fn new(desktop: Desktop, browser: Option<Browser>) -> Executor {
        Executor {
            inner: Arc::new(Inner {
                desktop,
                browser,
                lock: Mutex::new(()),
                policy: RwLock::new(UrlPolicy::default()),
            }),
        }
    }

    /// The desktop handle.
    pub fn desktop(&self) -> &Desktop {
        &self.inner.desktop
    }

    /// The browser owner, if any.
    pub fn browser(&self) -> Option<&Browser> {
        self.inner.browser.as_ref()
    }

    /// Sets the session's navigation policy (scheme allowlist, optional domain allowlist).
    pub fn set_policy(&self, policy: UrlPolicy) {
        if let Ok(mut p) = self.inner.policy.write() {
            *p = policy;
        }
    }

    /// The session's navigation policy.
    pub fn policy(&self) -> UrlPolicy {
        self.inner
            .policy
            .read()
            .map(|p| p.clone())
            .unwrap_or_default()
    }

    /// The current screen size.
    pub async fn screen_size(&self) -> Result<desk::Size, ActionError> {
        Ok(self.inner.desktop.size().await?)
    }

    /// Checks every action of `req` without running anything.
    pub async fn validate(&self, req: &BatchRequest) -> Result<(), ActionError> {
        self.plan(req).await.map(|_| ())
    }

    async fn plan(&self, req: &BatchRequest) -> Result<(Vec<Step>, desk::Size), ActionError> {
        let mut screen = self.screen_size().await?;
        let policy = self.policy();
        let mut steps = Vec::with_capacity(req.actions.len());
        for (i, a) in req.actions.iter().enumerate() {
            steps.push(self.plan_one(i, a, &mut screen, &policy)?);
        }
        if let Some(spec) = &req.screenshot {
            screenshot_opts(spec, screen).map_err(|m| ActionError::Invalid {
                index: req.actions.len(),
                code: "invalid_argument",
                message: format!("screenshot: {m}"),
            })?;
        }
        Ok((steps, screen))
    }

    fn plan_one(
        &self,
        i: usize,
        a: &Action,
        screen: &mut desk::Size,
        policy: &UrlPolicy,
    ) -> Result<Step, ActionError> {
        let name = a.name();
        let inv = |code: &'static str, m: String| ActionError::Invalid {
            index: i,
            code,
            message: format!("action {i} ({name}): {m}"),
        };
        let size = *screen;
        let pt = |x: i32, y: i32| -> Result<desk::Point, ActionError> {
            if x < 0 || y < 0 || x as u32 >= size.width || y as u32 >= size.height {
                return Err(inv(
                    "out_of_bounds",
                    format!(
                        "point ({x}, {y}) is outside the {}x{} screen",
                        size.width, size.height
                    ),
                ));
            }
            Ok(desk::Point { x, y })
        };
        let opt_pt = |x: Option<i32>, y: Option<i32>| -> Result<Option<desk::Point>, ActionError> {
            match (x, y) {
                (Some(x), Some(y)) => pt(x, y).map(Some),
                (None, None) => Ok(None),
                _ => Err(inv(
                    "invalid_action",
                    "give both x and y, or neither (current pointer position)".into(),
                )),
            }
        };
        let combo = |c: &str| -> Result<String, ActionError> {
            desk::parse_combo(c).map_err(|e| inv("bad_key", e.to_string()))?;
            Ok(c.to_owned())
        };
        let dur = |ms: u64, what: &str| -> Result<Duration, ActionError> {
            if ms > MAX_WAIT_MS {
                return Err(inv(
                    "invalid_argument",
                    format!("{what} of {ms} ms exceeds {MAX_WAIT_MS} ms"),
                ));
            }
            Ok(Duration::from_millis(ms))
        };
        let click = |x: Option<i32>,
                     y: Option<i32>,
                     button: MouseButton,
                     count: u32,
                     modifiers: &Option<String>|
         -> Result<Step, ActionError> {
            let at = opt_pt(x, y)?;
            if !(1..=3).contains(&count) {
                return Err(inv(
                    "invalid_argument",
                    format!("count must be 1, 2 or 3 (got {count})"),
                ));
            }
            // Chrome counts a double/triple click only when the X timestamps of the clicks
            // differ; XTEST events flushed together share one server timestamp, so each click
            // is its own desktop batch, 40 ms apart (xdotool waits 12 ms between repeats).
            let click = |at| desk::Action::Click {
                at,
                button: button_of(button),
                count: 1,
            };
            let mods = modifiers.as_deref().map(combo).transpose()?;
            // A pointer query after each but the last click is a round trip: the server has
            // processed (and timestamped) that click before the gap starts.
            let mut segs: Vec<Vec<desk::Action>> = (0..count)
                .map(|i| {
                    let mut v = vec![click(if i == 0 { at } else { None })];
                    if i + 1 < count {
                        v.push(desk::Action::CursorPosition);
                    }
                    v
                })
                .collect();
            if let Some(c) = mods {
                segs[0].insert(0, desk::Action::KeyDown { combo: c.clone() });
                if let Some(last) = segs.last_mut() {
                    last.push(desk::Action::KeyUp { combo: c });
                }
            }
            if segs.len() == 1 {
                Ok(Step::Desk(segs.remove(0)))
            } else {
                Ok(Step::DeskSpaced(segs))
            }
        };
        let need_browser = || -> Result<(), ActionError> {
            if self.inner.browser.is_none() {
                return Err(ActionError::NoBrowser);
            }
            Ok(())
        };
        Ok(match a {
            Action::MouseMove { x, y } => {
                let p = pt(*x, *y)?;
                Step::Desk(vec![desk::Action::MoveTo { x: p.x, y: p.y }])
            }
            Action::LeftClick { x, y, modifiers } => {
                click(*x, *y, MouseButton::Left, 1, modifiers)?
            }
            Action::RightClick { x, y, modifiers } => {
                click(*x, *y, MouseButton::Right, 1, modifiers)?
            }
            Action::MiddleClick { x, y, modifiers } => {
                click(*x, *y, MouseButton::Middle, 1, modifiers)?
            }
            Action::DoubleClick { x, y, modifiers } => {
                click(*x, *y, MouseButton::Left, 2, modifiers)?
            }
            Action::TripleClick { x, y, modifiers } => {
                click(*x, *y, MouseButton::Left, 3, modifiers)?
            }
            Action::Click {
                x,
                y,
                button,
                count,
                modifiers,
            } => click(*x, *y, *button, count.unwrap_or(1), modifiers)?,
            Action::MouseDown { x, y, button } | Action::MouseUp { x, y, button } => {
                let mut v = Vec::new();
                if let Some(p) = opt_pt(*x, *y)? {
                    v.push(desk::Action::MoveTo { x: p.x, y: p.y });
                }
                let button = button_of(*button);
                v.push(if matches!(a, Action::MouseDown { .. }) {
                    desk::Action::ButtonDown { button }
                } else {
                    desk::Action::ButtonUp { button }
                });
                Step::Desk(v)
            }
            Action::Drag { path, button } => {
                if path.len() < 2 || path.len() > 1000 {
                    return Err(inv(
                        "invalid_argument",
                        format!("path needs 2 to 1000 points (got {})", path.len()),
                    ));
                }
                let pts = path
                    .iter()
                    .map(|p| pt(p.x, p.y))
                    .collect::<Result<Vec<_>, _>>()?;
                Step::Desk(vec![desk::Action::Drag {
                    button: button_of(*button),
                    from: pts[0],
                    to: pts[pts.len() - 1],
                    via: pts[1..pts.len() - 1].to_vec(),
                }])
            }
            Action::Scroll {
                x,
                y,
                direction,
                amount,
                modifiers,
            } => {
                let clicks = amount.unwrap_or(3);
                if !(1..=desk::MAX_CLICKS).contains(&clicks) {
                    return Err(inv(
                        "invalid_argument",
                        format!("amount must be 1..={} (got {clicks})", desk::MAX_CLICKS),
                    ));
                }
                let s = desk::Action::Scroll {
                    at: opt_pt(*x, *y)?,
                    direction: match direction {
                        ScrollDirection::Up => desk::ScrollDirection::Up,
                        ScrollDirection::Down => desk::ScrollDirection::Down,
                        ScrollDirection::Left => desk::ScrollDirection::Left,
                        ScrollDirection::Right => desk::ScrollDirection::Right,
                    },
                    clicks,
                };
                Step::Desk(with_modifiers(
                    modifiers.as_deref().map(combo).transpose()?,
                    vec![s],
                ))
            }
            Action::Key { keys } => {
                desk::parse_keys(keys).map_err(|e| inv("bad_key", e.to_string()))?;
                Step::Desk(vec![desk::Action::Key { keys: keys.clone() }])
            }
            Action::HoldKey { keys, duration_ms } => {
                Step::HoldKey(combo(keys)?, dur(*duration_ms, "duration")?)
            }
            Action::Type { text, delay_ms } => {
                if text.is_empty() {
                    return Err(inv("invalid_argument", "text is empty".into()));
                }
                let n = text.chars().count();
                if n > desk::MAX_TEXT_CHARS {
                    return Err(inv(
                        "invalid_argument",
                        format!("text has {n} characters (at most {})", desk::MAX_TEXT_CHARS),
                    ));
                }
                if let Some((idx, c)) = text
                    .chars()
                    .enumerate()
                    .find(|(_, c)| desk::char_to_keysym(*c).is_none())
                {
                    return Err(inv(
                        "bad_text",
                        format!(
                            "character U+{:04X} at index {idx} cannot be typed",
                            c as u32
                        ),
                    ));
                }
                let delay = match delay_ms {
                    Some(ms) if *ms > MAX_TYPE_DELAY_MS => {
                        return Err(inv(
                            "invalid_argument",
                            format!("delay_ms must be at most {MAX_TYPE_DELAY_MS}"),
                        ));
                    }
                    Some(ms) if *ms > 0 => Some(Duration::from_millis(*ms)),
                    _ => None,
                };
                Step::Desk(vec![desk::Action::TypeText {
                    text: text.clone(),
                    per_char_delay: delay,
                }])
            }
            Action::Wait { duration_ms } => Step::Wait(dur(*duration_ms, "wait")?),
            Action::CursorPosition {} => Step::Desk(vec![desk::Action::CursorPosition]),
            Action::Screenshot {
                format,
                quality,
                scale,
                cursor,
            } => {
                let spec = ScreenshotSpec {
                    format: *format,
                    quality: *quality,
                    scale: scale.clone(),
                    cursor: *cursor,
                };
                let opts = screenshot_opts(&spec, size).map_err(|m| inv("invalid_argument", m))?;
                Step::Desk(vec![desk::Action::Screenshot(opts)])
            }
            Action::ClipboardGet {} => Step::Desk(vec![desk::Action::ClipboardGet]),
            Action::ClipboardSet { text } => {
                if text.len() > 10 * 1024 * 1024 {
                    return Err(inv("invalid_argument", "text is larger than 10 MiB".into()));
                }
                Step::Desk(vec![desk::Action::ClipboardSet { text: text.clone() }])
            }
            Action::Resize { width, height } => {
                if !(64..=8192).contains(width) || !(64..=8192).contains(height) {
                    return Err(inv(
                        "invalid_argument",
                        format!("size {width}x{height} is outside 64..=8192"),
                    ));
                }
                // Later actions of the batch are checked against the new size.
                *screen = desk::Size {
                    width: *width,
                    height: *height,
                };
                Step::Desk(vec![desk::Action::Resize {
                    width: *width,
                    height: *height,
                }])
            }
            Action::Navigate { url } => {
                need_browser()?;
                policy
                    .check(url)
                    .map_err(|e| inv("url_not_allowed", e.to_string()))?;
                Step::Browser(a.clone())
            }
            Action::TabNew { url } => {
                need_browser()?;
                if let Some(url) = url {
                    policy
                        .check(url)
                        .map_err(|e| inv("url_not_allowed", e.to_string()))?;
                }
                Step::Browser(a.clone())
            }
            Action::TabSwitch { id } | Action::TabClose { id } => {
                need_browser()?;
                if id.is_empty() || id.len() > 128 {
                    return Err(inv("invalid_argument", "bad tab id".into()));
                }
                Step::Browser(a.clone())
            }
            Action::WaitForLoad { timeout_ms } => {
                need_browser()?;
                dur(timeout_ms.unwrap_or(30_000), "timeout")?;
                Step::Browser(a.clone())
            }
            Action::PageText { max_chars } => {
                need_browser()?;
                if max_chars.is_some_and(|m| m == 0 || m > 1_000_000) {
                    return Err(inv(
                        "invalid_argument",
                        "max_chars must be 1..=1000000".into(),
                    ));
                }
                Step::Browser(a.clone())
            }
            Action::A11ySnapshot { max_nodes } => {
                need_browser()?;
                if max_nodes.is_some_and(|m| m == 0 || m > 5000) {
                    return Err(inv("invalid_argument", "max_nodes must be 1..=5000".into()));
                }
                Step::Browser(a.clone())
            }
            Action::Back {} | Action::Forward {} | Action::Reload {} | Action::TabList {} => {
                need_browser()?;
                Step::Browser(a.clone())
            }
        })
    }

    /// Validates `req` (error: nothing ran), then runs it under the input lock. Execution
    /// failures do not make this an `Err`: the response says which action failed and why.
    pub async fn run(&self, req: &BatchRequest) -> Result<BatchResponse, ActionError> {
        let start = Instant::now();
        let (steps, _) = self.plan(req).await?;
        let _guard = self.inner.lock.lock().await;
        let mut results = Vec::with_capacity(steps.len());
        let mut failed_index = None;
        for (i, (step, action)) in steps.into_iter().zip(&req.actions).enumerate() {
            let t = Instant::now();
            let r = self.run_step(step).await;
            let duration_ms = t.elapsed().as_secs_f64() * 1000.0;
            match r {
                Ok(output) => results.push(ActionResult {
                    index: i,
                    action: action.name().to_owned(),
                    ok: true,
                    duration_ms,
                    output,
                    error: None,
                }),
                Err(e) => {
                    if !e.is_client_error() {
                        tracing::warn!(action = action.name(), error = %e, "action failed");
                    }
                    results.push(ActionResult {
                        index: i,
                        action: action.name().to_owned(),
                        ok: false,
                        duration_ms,
                        output: None,
                        error: Some(e.body()),
                    });
                    failed_index = Some(i);
                    break;
                }
            }
        }
        let screenshot = match &req.screenshot {
            Some(spec) => Some(self.screenshot(spec).await?),
            None => None,
        };
        Ok(BatchResponse {
            ok: failed_index.is_none(),
            results,
            failed_index,
            screenshot,
            duration_ms: start.elapsed().as_secs_f64() * 1000.0,
        })
    }

    /// Captures a screenshot (does not take the input lock: a quick look never waits for a
    /// long batch).
    pub async fn screenshot(&self, spec: &ScreenshotSpec) -> Result<ImageOut, ActionError> {
        let size = self.screen_size().await?;
        let opts = screenshot_opts(spec, size).map_err(|m| ActionError::Invalid {
            index: 0,
            code: "invalid_argument",
            message: format!("screenshot: {m}"),
        })?;
        let s = self.inner.desktop.screenshot(opts).await?;
        Ok(image_out(s))
    }

    /// Captures a screenshot as raw encoded bytes (for `GET .../screenshot`).
    pub async fn screenshot_bytes(
        &self,
        spec: &ScreenshotSpec,
    ) -> Result<desk::Screenshot, ActionError> {
        let size = self.screen_size().await?;
        let opts = screenshot_opts(spec, size).map_err(|m| ActionError::Invalid {
            index: 0,
            code: "invalid_argument",
            message: format!("screenshot: {m}"),
        })?;
        Ok(self.inner.desktop.screenshot(opts).await?)
    }

    async fn run_step(&self, step: Step) -> Result<Option<Output>, ActionError> {
        match step {
            Step::Desk(actions) => {
                let outs = self
                    .inner
                    .desktop
                    .batch(actions)
                    .await
                    .map_err(|e| ActionError::Desktop(e.error))?;
                Ok(outs.into_iter().rev().find_map(desk_output))
            }
            Step::DeskSpaced(segs) => {
                // Separate the first click from whatever input came just before, too.
                self.inner.desktop.cursor_position().await?;
                tokio::time::sleep(MULTI_CLICK_GAP).await;
                let mut last = None;
                let n = segs.len();
                for (i, seg) in segs.into_iter().enumerate() {
                    let outs = self
                        .inner
                        .desktop
                        .batch(seg)
                        .await
                        .map_err(|e| ActionError::Desktop(e.error))?;
                    last = outs.into_iter().rev().find_map(desk_output);
                    if i + 1 < n {
                        tokio::time::sleep(MULTI_CLICK_GAP).await;
                    }
                }
                Ok(last)
            }
            Step::HoldKey(combo, d) => {
                self.inner.desktop.hold_key(&combo, d).await?;
                Ok(None)
            }
            Step::Wait(d) => {
                tokio::time::sleep(d).await;
                Ok(None)
            }
            Step::Browser(a) => {
                let b = self.inner.browser.as_ref().ok_or(ActionError::NoBrowser)?;
                let policy = self.policy();
                let out = match a {
                    Action::Navigate { url } => Output::Tab {
                        tab: b.navigate(&url, &policy).await?,
                    },
                    Action::Back {} => Output::Tab {
                        tab: b.back().await?,
                    },
                    Action::Forward {} => Output::Tab {
                        tab: b.forward().await?,
                    },
                    Action::Reload {} => Output::Tab {
                        tab: b.reload().await?,
                    },
                    Action::WaitForLoad { timeout_ms } => Output::Tab {
                        tab: b
                            .wait_for_load(Duration::from_millis(timeout_ms.unwrap_or(30_000)))
                            .await?,
                    },
                    Action::TabList {} => Output::Tabs {
                        tabs: b.tabs().await?,
                    },
                    Action::TabNew { url } => Output::Tab {
                        tab: b.new_tab(url.as_deref(), &policy).await?,
                    },
                    Action::TabSwitch { id } => Output::Tab {
                        tab: b.switch_tab(&id).await?,
                    },
                    Action::TabClose { id } => Output::Tabs {
                        tabs: b.close_tab(&id).await?,
                    },
                    Action::PageText { max_chars } => Output::PageText {
                        page: b.page_text(max_chars.unwrap_or(20_000)).await?,
                    },
                    Action::A11ySnapshot { max_nodes } => Output::A11y {
                        snapshot: b.a11y_snapshot(max_nodes.unwrap_or(300)).await?,
                    },
                    other => {
                        return Err(ActionError::BadRequest(format!(
                            "{} is not a browser action",
                            other.name()
                        )));
                    }
                };
                Ok(Some(out))
            }
        }
    }
}

fn with_modifiers(mods: Option<String>, actions: Vec<desk::Action>) -> Vec<desk::Action> {
    match mods {
        Some(combo) => {
            let mut v = vec![desk::Action::KeyDown {
                combo: combo.clone(),
            }];
            v.extend(actions);
            v.push(desk::Action::KeyUp { combo });
            v
        }
        None => actions,
    }
}

fn button_of(b: MouseButton) -> desk::Button {
    match b {
        MouseButton::Left => desk::Button::Left,
        MouseButton::Right => desk::Button::Right,
        MouseButton::Middle => desk::Button::Middle,
        MouseButton::Back => desk::Button::Back,
        MouseButton::Forward => desk::Button::Forward,
    }
}

fn desk_output(o: desk::ActionOutput) -> Option<Output> {
    match o {
        desk::ActionOutput::Done => None,
        desk::ActionOutput::Position(p) => Some(Output::Position { x: p.x, y: p.y }),
        desk::ActionOutput::Screenshot(s) => Some(Output::Image(image_out(s))),
        desk::ActionOutput::Text(text) => Some(Output::Text { text }),
        desk::ActionOutput::Size(s) => Some(Output::Size {
            width: s.width,
            height: s.height,
        }),
    }
}

/// Converts a desktop screenshot into the API's image object (base64).
pub fn image_out(s: desk::Screenshot) -> ImageOut {
    ImageOut {
        mime: s.mime.to_owned(),
        width: s.width,
        height: s.height,
        data: base64::engine::general_purpose::STANDARD.encode(&s.bytes),
        scale: ScaleOut {
            source_x: s.scale.source.x,
            source_y: s.scale.source.y,
            source_width: s.scale.source.width,
            source_height: s.scale.source.height,
            width: s.scale.image.width,
            height: s.scale.image.height,
        },
    }
}

/// Resolves a scale spec against the screen size: `None` = no scaling.
pub fn resolve_scale(
    scale: &Option<ScaleSpec>,
    screen: desk::Size,
) -> Result<Option<desk::Size>, String> {
    let Some(s) = scale else { return Ok(None) };
    let size = match s {
        ScaleSpec::Factor(f) => {
            if !(*f > 0.0 && *f <= 1.0) {
                return Err(format!("scale factor must be in (0, 1] (got {f})"));
            }
            if (*f - 1.0).abs() < f64::EPSILON {
                return Ok(None);
            }
            desk::Size {
                width: ((f64::from(screen.width) * f).round() as u32).max(1),
                height: ((f64::from(screen.height) * f).round() as u32).max(1),
            }
        }
        ScaleSpec::Named(n) => match n.to_ascii_lowercase().as_str() {
            "xga" => desk::Size {
                width: 1024,
                height: 768,
            },
            "wxga" => desk::Size {
                width: 1280,
                height: 800,
            },
            "fwxga" => desk::Size {
                width: 1366,
                height: 768,
            },
            "none" | "1" | "" => return Ok(None),
            other => {
                let parsed = other.split_once('x').and_then(|(w, h)| {
                    Some((w.trim().parse::<u32>().ok()?, h.trim().parse::<u32>().ok()?))
                });
                match parsed {
                    Some((w, h)) if (1..=8192).contains(&w) && (1..=8192).contains(&h) => {
                        desk::Size {
                            width: w,
                            height: h,
                        }
                    }
                    _ => {
                        if let Ok(f) = other.parse::<f64>() {
                            return resolve_scale(&Some(ScaleSpec::Factor(f)), screen);
                        }
                        return Err(format!(
                            "unknown scale {n:?} (use a factor like 0.5, xga, wxga, fwxga or WIDTHxHEIGHT)"
                        ));
                    }
                }
            }
        },
    };
    if size == screen {
        return Ok(None);
    }
    Ok(Some(size))
}

/// Turns a screenshot spec into desktop options.
pub fn screenshot_opts(
    spec: &ScreenshotSpec,
    screen: desk::Size,
) -> Result<desk::ScreenshotOpts, String> {
    let format = match spec.format.unwrap_or_default() {
        ImageFormat::Png => {
            if spec.quality.is_some() {
                return Err("quality applies to jpeg only".into());
            }
            desk::ImageFormat::Png
        }
        ImageFormat::Webp => {
            if spec.quality.is_some() {
                return Err("quality applies to jpeg only (webp is lossless)".into());
            }
            desk::ImageFormat::Webp
        }
        ImageFormat::Jpeg => {
            let q = spec.quality.unwrap_or(80);
            if !(1..=100).contains(&q) {
                return Err(format!("quality must be 1..=100 (got {q})"));
            }
            desk::ImageFormat::Jpeg { quality: q }
        }
    };
    Ok(desk::ScreenshotOpts {
        region: None,
        format,
        scale: resolve_scale(&spec.scale, screen)?,
        cursor: spec.cursor.unwrap_or(false),
    })
}

/// One action-log record: who did what, with what result, how long it took.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LogEntry {
    /// Who drove: `agent:<id>`, `token:<name>`, `user:<name>`.
    pub who: String,
    /// Through which door: `rest`, `anthropic`, `openai`, `mcp`.
    pub via: String,
    /// Position in its batch.
    pub index: usize,
    /// Action name.
    pub action: String,
    /// The action's input (long texts shortened; never image data).
    pub input: Value,
    pub ok: bool,
    /// Short result summary (no image bytes).
    pub result: Value,
    pub duration_ms: f64,
}

impl BatchResponse {
    /// The log records of this batch (one per action that ran).
    pub fn log_entries(&self, req: &BatchRequest, who: &str, via: &str) -> Vec<LogEntry> {
        self.results
            .iter()
            .map(|r| LogEntry {
                who: who.to_owned(),
                via: via.to_owned(),
                index: r.index,
                action: r.action.clone(),
                input: req
                    .actions
                    .get(r.index)
                    .map(Action::log_json)
                    .unwrap_or(Value::Null),
                ok: r.ok,
                result: match (&r.error, &r.output) {
                    (Some(e), _) => json!({"error": e.error, "message": e.message}),
                    (None, Some(o)) => summarize(o),
                    (None, None) => Value::Null,
                },
                duration_ms: r.duration_ms,
            })
            .collect()
    }
}

fn summarize(o: &Output) -> Value {
    match o {
        Output::Image(i) => json!({"image": i.mime, "width": i.width, "height": i.height}),
        Output::PageText { page } => {
            json!({"url": page.url, "title": page.title, "chars": page.text.chars().count()})
        }
        Output::A11y { snapshot } => {
            json!({"url": snapshot.url, "title": snapshot.title, "nodes": snapshot.nodes.len()})
        }
        Output::Text { text } => json!({"chars": text.chars().count()}),
        other => serde_json::to_value(other).unwrap_or(Value::Null),
    }
}
