//! Adapter for Anthropic's computer-use tool (`computer_20250124` / `computer_20241022` input):
//! the tool input the model emits (`{"action": "left_click", "coordinate": [x, y]}`) becomes
//! native actions, and the result comes back as `tool_result` content blocks.
//!
//! Coordinates are in the *declared* display size (the tool definition's
//! `display_width_px`/`display_height_px`, passed as query parameters); they are scaled to the
//! real screen, and screenshots are scaled to the declared size, so a model that was told
//! "1024×768" works on a 1280×800 screen. See `MAPPING.md` for the full table.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::ToSchema;
use zigral_desktop as desk;

use crate::schema::{
    Action, BatchRequest, BatchResponse, ImageFormat, Output, ScaleSpec, ScrollDirection,
};
use crate::{ActionError, Executor};

/// The computer tool's input, as the model produces it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ComputerInput {
    /// key, type, mouse_move, left_click, left_click_drag, right_click, middle_click,
    /// double_click, triple_click, scroll, hold_key, left_mouse_down, left_mouse_up, wait,
    /// screenshot, cursor_position.
    pub action: String,
    /// `[x, y]` in the declared display's pixels.
    #[serde(default)]
    pub coordinate: Option<[i64; 2]>,
    /// Drag start (`left_click_drag`); without it the drag starts at the pointer.
    #[serde(default)]
    pub start_coordinate: Option<[i64; 2]>,
    /// Text to type, key combo (`key`, `hold_key`), or modifiers held during a click/scroll.
    #[serde(default)]
    pub text: Option<String>,
    /// up, down, left, right.
    #[serde(default)]
    pub scroll_direction: Option<String>,
    /// Wheel notches (default 3).
    #[serde(default)]
    pub scroll_amount: Option<u32>,
    /// Seconds (`wait`, `hold_key`).
    #[serde(default)]
    pub duration: Option<f64>,
}

/// Adapter options (query parameters of `POST .../actions/anthropic`).
#[derive(Debug, Clone, Default, PartialEq, Deserialize, JsonSchema, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Options {
    /// Declared display width (the tool definition's `display_width_px`); default: the screen.
    #[serde(default)]
    pub display_width_px: Option<u32>,
    /// Declared display height (`display_height_px`); default: the screen.
    #[serde(default)]
    pub display_height_px: Option<u32>,
    /// Screenshot encoding (png default, jpeg, webp).
    #[serde(default)]
    pub format: Option<ImageFormat>,
    /// Attach a screenshot after actions that change the screen (default true, like the
    /// reference implementation). `screenshot` always returns one.
    #[serde(default)]
    pub screenshot: Option<bool>,
    /// Add the native per-action results (`zigral` field) to the reply.
    #[serde(default)]
    pub verbose: Option<bool>,
}

/// The reply: `content` and `is_error` are what goes into the `tool_result` block.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ToolResult {
    #[schema(value_type = Vec<Object>)]
    pub content: Vec<Value>,
    pub is_error: bool,
    /// Native results and timings (only with `verbose=true`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub zigral: Option<Value>,
}

/// Maps between the declared display and the screen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scaling {
    pub declared: desk::Size,
    pub screen: desk::Size,
}

impl Scaling {
    fn info(&self) -> desk::ScaleInfo {
        desk::ScaleInfo {
            source: desk::Rect {
                x: 0,
                y: 0,
                width: self.screen.width,
                height: self.screen.height,
            },
            image: self.declared,
        }
    }

    /// Declared → screen. Errors when outside the declared display.
    pub fn to_screen(&self, p: [i64; 2], what: &str) -> Result<(i32, i32), String> {
        let [x, y] = p;
        if x < 0
            || y < 0
            || x >= i64::from(self.declared.width)
            || y >= i64::from(self.declared.height)
        {
            return Err(format!(
                "{what} ({x}, {y}) is outside the {}x{} display",
                self.declared.width, self.declared.height
            ));
        }
        if self.declared == self.screen {
            return Ok((x as i32, y as i32));
        }
        let s = self.info().to_screen(desk::Point {
            x: x as i32,
            y: y as i32,
        });
        Ok((s.x, s.y))
    }

    /// Screen → declared.
    pub fn to_declared(&self, x: i32, y: i32) -> (i32, i32) {
        if self.declared == self.screen {
            return (x, y);
        }
        match self.info().to_image(desk::Point { x, y }) {
            Some(p) => (p.x, p.y),
            None => (x, y),
        }
    }

    /// The screenshot scale that produces the declared size.
    pub fn scale_spec(&self) -> Option<ScaleSpec> {
        (self.declared != self.screen)
            .then(|| ScaleSpec::Named(format!("{}x{}", self.declared.width, self.declared.height)))
    }

    /// Scaling for the given options and the current screen size.
    pub fn new(
        width: Option<u32>,
        height: Option<u32>,
        screen: desk::Size,
    ) -> Result<Scaling, ActionError> {
        let declared = match (width, height) {
            (None, None) => screen,
            (Some(w), Some(h)) if (1..=8192).contains(&w) && (1..=8192).contains(&h) => {
                desk::Size {
                    width: w,
                    height: h,
                }
            }
            _ => {
                return Err(ActionError::BadRequest(
                    "give both display width and height (1..=8192), or neither".into(),
                ));
            }
        };
        Ok(Scaling { declared, screen })
    }
}

fn invalid(code: crate::ErrorCode, action: &str, m: impl Into<String>) -> ActionError {
    ActionError::Invalid {
        index: 0,
        code,
        message: format!("{action}: {}", m.into()),
    }
}

/// Translates one tool input into native actions (coordinates scaled to the screen).
pub fn translate(input: &ComputerInput, sc: &Scaling) -> Result<Vec<Action>, ActionError> {
    let a = input.action.as_str();
    let coord = |what: &str| -> Result<Option<(i32, i32)>, ActionError> {
        input
            .coordinate
            .map(|c| sc.to_screen(c, what))
            .transpose()
            .map_err(|m| invalid(crate::ErrorCode::OutOfBounds, a, m))
    };
    let need_coord = || -> Result<(i32, i32), ActionError> {
        coord("coordinate")?
            .ok_or_else(|| invalid(crate::ErrorCode::InvalidAction, a, "coordinate is required"))
    };
    let need_text = || -> Result<String, ActionError> {
        input
            .text
            .clone()
            .filter(|t| !t.is_empty())
            .ok_or_else(|| invalid(crate::ErrorCode::InvalidAction, a, "text is required"))
    };
    let no_text = || -> Result<(), ActionError> {
        if input.text.is_some() {
            return Err(invalid(
                crate::ErrorCode::InvalidAction,
                a,
                "text is not used by this action",
            ));
        }
        Ok(())
    };
    let secs = |d: Option<f64>, default: f64| -> Result<u64, ActionError> {
        let d = d.unwrap_or(default);
        if !(0.0..=60.0).contains(&d) {
            return Err(invalid(
                crate::ErrorCode::InvalidArgument,
                a,
                format!("duration must be 0..=60 seconds (got {d})"),
            ));
        }
        Ok((d * 1000.0).round() as u64)
    };
    let mods = || input.text.clone().filter(|t| !t.trim().is_empty());
    let xy = |c: Option<(i32, i32)>| (c.map(|p| p.0), c.map(|p| p.1));
    let acts = match a {
        "key" => vec![Action::Key { keys: need_text()? }],
        "type" => vec![Action::Type {
            text: need_text()?,
            delay_ms: None,
        }],
        "hold_key" => vec![Action::HoldKey {
            keys: need_text()?,
            duration_ms: secs(input.duration, 1.0)?,
        }],
        "cursor_position" => {
            no_text()?;
            vec![Action::CursorPosition {}]
        }
        "screenshot" => {
            no_text()?;
            vec![]
        }
        "mouse_move" => {
            no_text()?;
            let (x, y) = need_coord()?;
            vec![Action::MouseMove { x, y }]
        }
        "left_click" | "right_click" | "middle_click" | "double_click" | "triple_click" => {
            let (x, y) = xy(coord("coordinate")?);
            let modifiers = mods();
            vec![match a {
                "left_click" => Action::LeftClick { x, y, modifiers },
                "right_click" => Action::RightClick { x, y, modifiers },
                "middle_click" => Action::MiddleClick { x, y, modifiers },
                "double_click" => Action::DoubleClick { x, y, modifiers },
                _ => Action::TripleClick { x, y, modifiers },
            }]
        }
        "left_click_drag" => {
            no_text()?;
            let (ex, ey) = need_coord()?;
            match input.start_coordinate {
                Some(s) => {
                    let (sx, sy) = sc
                        .to_screen(s, "start_coordinate")
                        .map_err(|m| invalid(crate::ErrorCode::OutOfBounds, a, m))?;
                    vec![Action::Drag {
                        path: vec![crate::Point { x: sx, y: sy }, crate::Point { x: ex, y: ey }],
                        button: Default::default(),
                    }]
                }
                None => vec![
                    Action::MouseDown {
                        x: None,
                        y: None,
                        button: Default::default(),
                    },
                    Action::MouseMove { x: ex, y: ey },
                    Action::MouseUp {
                        x: None,
                        y: None,
                        button: Default::default(),
                    },
                ],
            }
        }
        "left_mouse_down" | "left_mouse_up" => {
            no_text()?;
            let (x, y) = xy(coord("coordinate")?);
            vec![if a == "left_mouse_down" {
                Action::MouseDown {
                    x,
                    y,
                    button: Default::default(),
                }
            } else {
                Action::MouseUp {
                    x,
                    y,
                    button: Default::default(),
                }
            }]
        }
        "scroll" => {
            let (x, y) = xy(coord("coordinate")?);
            let direction = match input.scroll_direction.as_deref() {
                Some("up") => ScrollDirection::Up,
                Some("down") => ScrollDirection::Down,
                Some("left") => ScrollDirection::Left,
                Some("right") => ScrollDirection::Right,
                Some(other) => {
                    return Err(invalid(
                        crate::ErrorCode::InvalidArgument,
                        a,
                        format!("scroll_direction {other:?} is not up, down, left or right"),
                    ));
                }
                None => {
                    return Err(invalid(
                        crate::ErrorCode::InvalidAction,
                        a,
                        "scroll_direction is required",
                    ));
                }
            };
            vec![Action::Scroll {
                x,
                y,
                direction,
                amount: Some(input.scroll_amount.unwrap_or(3)),
                modifiers: mods(),
            }]
        }
        "wait" => {
            no_text()?;
            vec![Action::Wait {
                duration_ms: secs(input.duration, 1.0)?,
            }]
        }
        other => {
            return Err(ActionError::Invalid {
                index: 0,
                code: crate::ErrorCode::UnknownAction,
                message: format!(
                    "unknown computer-use action {other:?} (expected key, type, mouse_move, \
                     left_click, left_click_drag, right_click, middle_click, double_click, \
                     triple_click, scroll, hold_key, left_mouse_down, left_mouse_up, wait, \
                     screenshot, cursor_position)"
                ),
            });
        }
    };
    // Fields that this action does not use are mistakes worth reporting.
    let uses_scroll = a == "scroll";
    if !uses_scroll && (input.scroll_direction.is_some() || input.scroll_amount.is_some()) {
        return Err(invalid(
            crate::ErrorCode::InvalidAction,
            a,
            "scroll_direction/scroll_amount are only used by scroll",
        ));
    }
    if a != "left_click_drag" && input.start_coordinate.is_some() {
        return Err(invalid(
            crate::ErrorCode::InvalidAction,
            a,
            "start_coordinate is only used by left_click_drag",
        ));
    }
    Ok(acts)
}

/// Runs one computer-use tool input. `Err` = rejected before anything ran.
pub async fn run(
    exec: &Executor,
    input: &ComputerInput,
    opts: &Options,
) -> Result<(ToolResult, BatchRequest, BatchResponse), ActionError> {
    let screen = exec.screen_size().await?;
    let sc = Scaling::new(opts.display_width_px, opts.display_height_px, screen)?;
    let actions = translate(input, &sc)?;
    let want_shot = input.action == "screenshot"
        || (opts.screenshot.unwrap_or(true) && input.action != "cursor_position");
    let req = BatchRequest {
        actions,
        screenshot: want_shot.then(|| crate::ScreenshotSpec {
            format: opts.format,
            quality: None,
            scale: sc.scale_spec(),
            cursor: None,
        }),
    };
    let resp = exec.run(&req).await?;
    let mut content = Vec::new();
    if let Some(fail) = resp.results.iter().find(|r| !r.ok)
        && let Some(e) = &fail.error
    {
        content.push(json!({"type": "text", "text": format!("error: {}", e.message)}));
    }
    for r in &resp.results {
        if let Some(Output::Position { x, y }) = &r.output {
            let (dx, dy) = sc.to_declared(*x, *y);
            content.push(json!({"type": "text", "text": format!("X={dx},Y={dy}")}));
        }
    }
    if let Some(img) = &resp.screenshot {
        content.push(json!({"type": "image", "source": {
            "type": "base64", "media_type": img.mime, "data": img.data}}));
    }
    if content.is_empty() {
        content.push(json!({"type": "text", "text": "ok"}));
    }
    let zigral = opts.verbose.unwrap_or(false).then(|| {
        json!({"ok": resp.ok, "failed_index": resp.failed_index, "duration_ms": resp.duration_ms,
               "results": resp.results})
    });
    Ok((
        ToolResult {
            content,
            is_error: !resp.ok,
            zigral,
        },
        req,
        resp,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sc(dw: u32, dh: u32) -> Scaling {
        Scaling {
            declared: desk::Size {
                width: dw,
                height: dh,
            },
            screen: desk::Size {
                width: 1280,
                height: 800,
            },
        }
    }

    fn input(v: Value) -> ComputerInput {
        serde_json::from_value(v).expect("input")
    }

    #[test]
    fn scales_coordinates() {
        let s = sc(1024, 640);
        let a = translate(
            &input(json!({"action": "left_click", "coordinate": [512, 320]})),
            &s,
        )
        .expect("ok");
        assert_eq!(
            a,
            vec![Action::LeftClick {
                x: Some(640),
                y: Some(400),
                modifiers: None
            }]
        );
        assert_eq!(s.to_declared(640, 400), (512, 320));
        let err = translate(
            &input(json!({"action": "mouse_move", "coordinate": [1024, 10]})),
            &s,
        )
        .expect_err("off display");
        assert_eq!(err.status(), 422);
        assert!(
            err.to_string().contains("outside the 1024x640 display"),
            "{err}"
        );
    }

    #[test]
    fn maps_actions() {
        let s = sc(1280, 800);
        let t = |v: Value| translate(&input(v), &s);
        assert_eq!(
            t(
                json!({"action": "scroll", "coordinate": [10, 20], "scroll_direction": "down",
                     "scroll_amount": 5, "text": "shift"})
            )
            .expect("scroll"),
            vec![Action::Scroll {
                x: Some(10),
                y: Some(20),
                direction: ScrollDirection::Down,
                amount: Some(5),
                modifiers: Some("shift".into())
            }]
        );
        assert_eq!(
            t(json!({"action": "hold_key", "text": "shift", "duration": 0.5})).expect("hold"),
            vec![Action::HoldKey {
                keys: "shift".into(),
                duration_ms: 500
            }]
        );
        assert_eq!(
            t(json!({"action": "left_click_drag", "start_coordinate": [1, 2], "coordinate": [3, 4]}))
                .expect("drag")
                .len(),
            1
        );
        assert_eq!(
            t(json!({"action": "left_click_drag", "coordinate": [3, 4]}))
                .expect("drag")
                .len(),
            3
        );
        assert!(t(json!({"action": "screenshot"})).expect("shot").is_empty());
        assert_eq!(
            t(json!({"action": "zoom"})).expect_err("unknown").code(),
            "unknown_action"
        );
        assert_eq!(
            t(json!({"action": "type"})).expect_err("no text").status(),
            400
        );
        assert!(
            serde_json::from_value::<ComputerInput>(
                json!({"action": "key", "text": "a", "bogus": 1})
            )
            .is_err()
        );
    }
}
