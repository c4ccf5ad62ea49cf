//! Planning: validates a whole batch (screen bounds, key names, text, durations, URL policy,
//! browser presence) and turns it into ready-to-run steps. Nothing here touches the desktop
//! or the browser; the executor runs the steps.

use std::time::Duration;

use zigral_browser::UrlPolicy;
use zigral_desktop as desk;

use crate::ActionError;
use crate::schema::{
    Action, BatchRequest, ImageFormat, MouseButton, ScaleSpec, ScreenshotSpec, ScrollDirection,
};

/// Longest wait / key hold (ms).
pub const MAX_WAIT_MS: u64 = 60_000;
/// Gap between the clicks of a double/triple click.
pub(crate) const MULTI_CLICK_GAP: Duration = Duration::from_millis(40);
/// Longest per-character typing delay (ms).
pub const MAX_TYPE_DELAY_MS: u64 = 1_000;

/// One validated, ready-to-run step.
#[derive(Debug, Clone)]
pub(crate) enum Step {
    /// Desktop actions run as one desktop batch (e.g. modifiers down, click, modifiers up).
    Desk(Vec<desk::Action>),
    /// Desktop batches run [`MULTI_CLICK_GAP`] apart (the clicks of a double/triple click).
    DeskSpaced(Vec<Vec<desk::Action>>),
    HoldKey(String, Duration),
    Wait(Duration),
    Browser(Action),
}

/// Validates every action of `req` against the screen size `screen`, the URL policy and
/// whether a browser is attached, and turns the batch into steps. A resize in the batch
/// changes the size later actions are checked against.
pub(crate) fn plan(
    req: &BatchRequest,
    mut screen: desk::Size,
    policy: &UrlPolicy,
    has_browser: bool,
) -> Result<Vec<Step>, ActionError> {
    let mut steps = Vec::with_capacity(req.actions.len());
    for (i, a) in req.actions.iter().enumerate() {
        steps.push(plan_one(has_browser, i, a, &mut screen, policy)?);
    }
    if let Some(spec) = &req.screenshot {
        screenshot_opts(spec, screen).map_err(|m| ActionError::Invalid {
            index: req.actions.len(),
            code: crate::ErrorCode::InvalidArgument,
            message: format!("screenshot: {m}"),
        })?;
    }
    Ok(steps)
}

fn plan_one(
    has_browser: bool,
    i: usize,
    a: &Action,
    screen: &mut desk::Size,
    policy: &UrlPolicy,
) -> Result<Step, ActionError> {
    let name = a.name();
    let inv = |code: crate::ErrorCode, m: String| ActionError::Invalid {
        index: i,
        code,
        message: format!("action {i} ({name}): {m}"),
    };
    let size = *screen;
    let pt = |x: i32, y: i32| -> Result<desk::Point, ActionError> {
        if x < 0 || y < 0 || x as u32 >= size.width || y as u32 >= size.height {
            return Err(inv(
                crate::ErrorCode::OutOfBounds,
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
                crate::ErrorCode::InvalidAction,
                "give both x and y, or neither (current pointer position)".into(),
            )),
        }
    };
    let combo = |c: &str| -> Result<String, ActionError> {
        desk::parse_combo(c).map_err(|e| inv(crate::ErrorCode::BadKey, e.to_string()))?;
        Ok(c.to_owned())
    };
    let dur = |ms: u64, what: &str| -> Result<Duration, ActionError> {
        if ms > MAX_WAIT_MS {
            return Err(inv(
                crate::ErrorCode::InvalidArgument,
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
                crate::ErrorCode::InvalidArgument,
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
        if !has_browser {
            return Err(ActionError::NoBrowser);
        }
        Ok(())
    };
    Ok(match a {
        Action::MouseMove { x, y, modifiers } => {
            let p = pt(*x, *y)?;
            Step::Desk(with_modifiers(
                modifiers.as_deref().map(combo).transpose()?,
                vec![desk::Action::MoveTo { x: p.x, y: p.y }],
            ))
        }
        Action::LeftClick { x, y, modifiers } => click(*x, *y, MouseButton::Left, 1, modifiers)?,
        Action::RightClick { x, y, modifiers } => click(*x, *y, MouseButton::Right, 1, modifiers)?,
        Action::MiddleClick { x, y, modifiers } => {
            click(*x, *y, MouseButton::Middle, 1, modifiers)?
        }
        Action::DoubleClick { x, y, modifiers } => click(*x, *y, MouseButton::Left, 2, modifiers)?,
        Action::TripleClick { x, y, modifiers } => click(*x, *y, MouseButton::Left, 3, modifiers)?,
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
        Action::Drag {
            path,
            button,
            modifiers,
        } => {
            if path.len() < 2 || path.len() > 1000 {
                return Err(inv(
                    crate::ErrorCode::InvalidArgument,
                    format!("path needs 2 to 1000 points (got {})", path.len()),
                ));
            }
            let pts = path
                .iter()
                .map(|p| pt(p.x, p.y))
                .collect::<Result<Vec<_>, _>>()?;
            Step::Desk(with_modifiers(
                modifiers.as_deref().map(combo).transpose()?,
                vec![desk::Action::Drag {
                    button: button_of(*button),
                    from: pts[0],
                    to: pts[pts.len() - 1],
                    via: pts[1..pts.len() - 1].to_vec(),
                }],
            ))
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
                    crate::ErrorCode::InvalidArgument,
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
            desk::parse_keys(keys).map_err(|e| inv(crate::ErrorCode::BadKey, e.to_string()))?;
            Step::Desk(vec![desk::Action::Key { keys: keys.clone() }])
        }
        Action::HoldKey { keys, duration_ms } => {
            Step::HoldKey(combo(keys)?, dur(*duration_ms, "duration")?)
        }
        Action::Type { text, delay_ms } => {
            if text.is_empty() {
                return Err(inv(
                    crate::ErrorCode::InvalidArgument,
                    "text is empty".into(),
                ));
            }
            let n = text.chars().count();
            if n > desk::MAX_TEXT_CHARS {
                return Err(inv(
                    crate::ErrorCode::InvalidArgument,
                    format!("text has {n} characters (at most {})", desk::MAX_TEXT_CHARS),
                ));
            }
            if let Some((idx, c)) = text
                .chars()
                .enumerate()
                .find(|(_, c)| desk::char_to_keysym(*c).is_none())
            {
                return Err(inv(
                    crate::ErrorCode::BadText,
                    format!(
                        "character U+{:04X} at index {idx} cannot be typed",
                        c as u32
                    ),
                ));
            }
            let delay = match delay_ms {
                Some(ms) if *ms > MAX_TYPE_DELAY_MS => {
                    return Err(inv(
                        crate::ErrorCode::InvalidArgument,
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
            let opts = screenshot_opts(&spec, size)
                .map_err(|m| inv(crate::ErrorCode::InvalidArgument, m))?;
            Step::Desk(vec![desk::Action::Screenshot(opts)])
        }
        Action::Zoom {
            region,
            width,
            height,
            format,
            quality,
        } => {
            let r = zoom_region(*region, size).map_err(|(code, m)| inv(code, m))?;
            let out = match (width, height) {
                (Some(w), Some(h)) => {
                    if !(1..=8192).contains(w) || !(1..=8192).contains(h) {
                        return Err(inv(
                            crate::ErrorCode::InvalidArgument,
                            format!("size {w}x{h} is outside 1..=8192"),
                        ));
                    }
                    desk::Size {
                        width: *w,
                        height: *h,
                    }
                }
                (None, None) => fit_within(r, size),
                _ => {
                    return Err(inv(
                        crate::ErrorCode::InvalidAction,
                        "give both width and height, or neither".into(),
                    ));
                }
            };
            let format = image_format(*format, *quality)
                .map_err(|m| inv(crate::ErrorCode::InvalidArgument, m))?;
            let same = out.width == r.width && out.height == r.height;
            Step::Desk(vec![desk::Action::Screenshot(desk::ScreenshotOpts {
                region: Some(r),
                format,
                scale: (!same).then_some(out),
                cursor: false,
            })])
        }
        Action::ClipboardGet {} => Step::Desk(vec![desk::Action::ClipboardGet]),
        Action::ClipboardSet { text } => {
            if text.len() > 10 * 1024 * 1024 {
                return Err(inv(
                    crate::ErrorCode::InvalidArgument,
                    "text is larger than 10 MiB".into(),
                ));
            }
            Step::Desk(vec![desk::Action::ClipboardSet { text: text.clone() }])
        }
        Action::Resize { width, height } => {
            if !(64..=8192).contains(width) || !(64..=8192).contains(height) {
                return Err(inv(
                    crate::ErrorCode::InvalidArgument,
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
                .map_err(|e| inv(crate::ErrorCode::UrlNotAllowed, e.to_string()))?;
            Step::Browser(a.clone())
        }
        Action::TabNew { url } => {
            need_browser()?;
            if let Some(url) = url {
                policy
                    .check(url)
                    .map_err(|e| inv(crate::ErrorCode::UrlNotAllowed, e.to_string()))?;
            }
            Step::Browser(a.clone())
        }
        Action::TabSwitch { id } | Action::TabClose { id } => {
            need_browser()?;
            if id.is_empty() || id.len() > 128 {
                return Err(inv(crate::ErrorCode::InvalidArgument, "bad tab id".into()));
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
                    crate::ErrorCode::InvalidArgument,
                    "max_chars must be 1..=1000000".into(),
                ));
            }
            Step::Browser(a.clone())
        }
        Action::A11ySnapshot { max_nodes } => {
            need_browser()?;
            if max_nodes.is_some_and(|m| m == 0 || m > 5000) {
                return Err(inv(
                    crate::ErrorCode::InvalidArgument,
                    "max_nodes must be 1..=5000".into(),
                ));
            }
            Step::Browser(a.clone())
        }
        Action::Back {} | Action::Forward {} | Action::Reload {} | Action::TabList {} => {
            need_browser()?;
            Step::Browser(a.clone())
        }
    })
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

/// Checks a zoom region `[x0, y0, x1, y1]` (x1/y1 exclusive) against the screen: an
/// empty or inverted region is `bad_request`, one reaching off the screen `out_of_bounds`.
pub(crate) fn zoom_region(
    [x0, y0, x1, y1]: [i32; 4],
    screen: desk::Size,
) -> Result<desk::Rect, (crate::ErrorCode, String)> {
    if x0 >= x1 || y0 >= y1 {
        return Err((
            crate::ErrorCode::BadRequest,
            format!("region [{x0}, {y0}, {x1}, {y1}] is empty: it needs x0 < x1 and y0 < y1"),
        ));
    }
    if x0 < 0
        || y0 < 0
        || i64::from(x1) > i64::from(screen.width)
        || i64::from(y1) > i64::from(screen.height)
    {
        return Err((
            crate::ErrorCode::OutOfBounds,
            format!(
                "region [{x0}, {y0}, {x1}, {y1}] is outside the {}x{} screen",
                screen.width, screen.height
            ),
        ));
    }
    Ok(desk::Rect {
        x: x0,
        y: y0,
        width: (x1 - x0) as u32,
        height: (y1 - y0) as u32,
    })
}

/// The largest size with `r`'s aspect ratio that fits within `bound`.
fn fit_within(r: desk::Rect, bound: desk::Size) -> desk::Size {
    let k = (f64::from(bound.width) / f64::from(r.width))
        .min(f64::from(bound.height) / f64::from(r.height));
    desk::Size {
        width: ((f64::from(r.width) * k).round() as u32).clamp(1, bound.width.max(1)),
        height: ((f64::from(r.height) * k).round() as u32).clamp(1, bound.height.max(1)),
    }
}

/// Turns a screenshot spec into desktop options.
pub fn screenshot_opts(
    spec: &ScreenshotSpec,
    screen: desk::Size,
) -> Result<desk::ScreenshotOpts, String> {
    Ok(desk::ScreenshotOpts {
        region: None,
        format: image_format(spec.format, spec.quality)?,
        scale: resolve_scale(&spec.scale, screen)?,
        cursor: spec.cursor.unwrap_or(false),
    })
}

/// The desktop encoding of a format and optional JPEG quality.
fn image_format(
    format: Option<ImageFormat>,
    quality: Option<u8>,
) -> Result<desk::ImageFormat, String> {
    let spec = ScreenshotSpec {
        format,
        quality,
        ..Default::default()
    };
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
    Ok(format)
}
