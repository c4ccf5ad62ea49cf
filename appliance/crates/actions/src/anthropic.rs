//! Adapter for Anthropic's computer-use tools: the single `computer` tool
//! (`computer_20251124` with `zoom`, `computer_20250124`, `computer_20241022`), whose input the
//! model emits as `{"action": "left_click", "coordinate": [x, y]}`, and the GA toolset
//! (`computer_toolset_20260801`), where every action is its own tool (`tool_use.name =
//! "left_click"`, input without `action`; [`member_input`] normalises it). Both become native
//! actions, and the result comes back as `tool_result` content blocks. [`Body`] parses a REST
//! request body of either shape (a bare input or a `tool_use` block).
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
    /// screenshot, cursor_position, zoom.
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
    /// `[x0, y0, x1, y1]` in the declared display's pixels (`zoom`; x1/y1 exclusive, at most
    /// the display size).
    #[serde(default)]
    pub region: Option<[i64; 4]>,
}

/// The input of a toolset member tool (`computer_toolset_20260801`): the single tool's input
/// without `action` (the tool's name says which action it is).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MemberInput {
    /// `[x, y]` in the declared display's pixels.
    #[serde(default)]
    pub coordinate: Option<[i64; 2]>,
    /// Drag start (`left_click_drag`).
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
    /// `[x0, y0, x1, y1]` (`zoom`).
    #[serde(default)]
    pub region: Option<[i64; 4]>,
}

impl MemberInput {
    /// The single-tool input of member `action`.
    pub fn into_input(self, action: Member) -> ComputerInput {
        ComputerInput {
            action: action.as_str().to_owned(),
            coordinate: self.coordinate,
            start_coordinate: self.start_coordinate,
            text: self.text,
            scroll_direction: self.scroll_direction,
            scroll_amount: self.scroll_amount,
            duration: self.duration,
            region: self.region,
        }
    }
}

/// The 17 members of the `computer_toolset_20260801` toolset (= the single tool's actions).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Member {
    CursorPosition,
    DoubleClick,
    HoldKey,
    Key,
    LeftClick,
    LeftClickDrag,
    LeftMouseDown,
    LeftMouseUp,
    MiddleClick,
    MouseMove,
    RightClick,
    Screenshot,
    Scroll,
    TripleClick,
    Type,
    Wait,
    Zoom,
}

impl Member {
    /// Every member, in the toolset's (alphabetical) order.
    pub const ALL: [Member; 17] = [
        Member::CursorPosition,
        Member::DoubleClick,
        Member::HoldKey,
        Member::Key,
        Member::LeftClick,
        Member::LeftClickDrag,
        Member::LeftMouseDown,
        Member::LeftMouseUp,
        Member::MiddleClick,
        Member::MouseMove,
        Member::RightClick,
        Member::Screenshot,
        Member::Scroll,
        Member::TripleClick,
        Member::Type,
        Member::Wait,
        Member::Zoom,
    ];

    /// The member's tool name (= the single tool's `action`).
    pub fn as_str(self) -> &'static str {
        match self {
            Member::CursorPosition => "cursor_position",
            Member::DoubleClick => "double_click",
            Member::HoldKey => "hold_key",
            Member::Key => "key",
            Member::LeftClick => "left_click",
            Member::LeftClickDrag => "left_click_drag",
            Member::LeftMouseDown => "left_mouse_down",
            Member::LeftMouseUp => "left_mouse_up",
            Member::MiddleClick => "middle_click",
            Member::MouseMove => "mouse_move",
            Member::RightClick => "right_click",
            Member::Screenshot => "screenshot",
            Member::Scroll => "scroll",
            Member::TripleClick => "triple_click",
            Member::Type => "type",
            Member::Wait => "wait",
            Member::Zoom => "zoom",
        }
    }

    /// The member called `name`, if any.
    pub fn from_name(name: &str) -> Option<Member> {
        Member::ALL.into_iter().find(|m| m.as_str() == name)
    }
}

/// Normalises a toolset member call (`tool_use.name` = `name`, `tool_use.input` = `input`)
/// to the single-tool shape. An unknown member, an input that is not an object (`null` = no
/// fields), an `action` field or any field the members do not have is `bad_request`.
pub fn member_input(name: &str, input: Value) -> Result<ComputerInput, ActionError> {
    let member = Member::from_name(name).ok_or_else(|| {
        ActionError::BadRequest(format!(
            "unknown computer toolset member {name:?} (expected one of {})",
            Member::ALL.map(Member::as_str).join(", ")
        ))
    })?;
    let input = match input {
        Value::Null => Value::Object(Default::default()),
        Value::Object(o) if o.contains_key("action") => {
            return Err(ActionError::BadRequest(format!(
                "{name}: a toolset member's input has no \"action\" (the tool name is the action)"
            )));
        }
        v @ Value::Object(_) => v,
        _ => {
            return Err(ActionError::BadRequest(format!(
                "{name}: the input must be a JSON object"
            )));
        }
    };
    let m: MemberInput = serde_json::from_value(input)
        .map_err(|e| ActionError::BadRequest(format!("not a {name} input: {e}")))?;
    Ok(m.into_input(member))
}

/// The tool's name in a `tool_use` block: `computer` (the single tool) or a toolset member.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ToolName {
    Computer,
    CursorPosition,
    DoubleClick,
    HoldKey,
    Key,
    LeftClick,
    LeftClickDrag,
    LeftMouseDown,
    LeftMouseUp,
    MiddleClick,
    MouseMove,
    RightClick,
    Screenshot,
    Scroll,
    TripleClick,
    Type,
    Wait,
    Zoom,
}

/// The `type` of a content block that is a tool call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ToolUseType {
    ToolUse,
}

/// A `tool_use` input: the single tool's input (name `computer`) or a member's (any other
/// name).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum ToolUseInput {
    Computer(ComputerInput),
    Member(MemberInput),
}

/// A `tool_use` content block as the model emitted it (for the OpenAPI document; parsing is
/// [`Body::from_value`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ToolUseBlock {
    /// `tool_use` (optional).
    #[serde(rename = "type", default)]
    pub kind: Option<ToolUseType>,
    /// The block's id (`toolu_...`), echoed as `tool_use_id` in the reply.
    #[serde(default)]
    pub id: Option<String>,
    /// `computer` (the single tool; `input` has `action`) or a toolset member (`left_click`,
    /// `zoom`, ...; `input` has no `action`).
    pub name: ToolName,
    pub input: ToolUseInput,
    /// `computer` for a toolset member.
    #[serde(default)]
    pub toolset_name: Option<String>,
    /// Who called the tool (ignored).
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub caller: Option<Value>,
}

/// The body of `POST .../actions/anthropic`: the single tool's input, or a whole `tool_use`
/// block (single tool or toolset member). The shape is recognised by its keys: `action` =
/// an input, `name` = a `tool_use` block.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum AnthropicBody {
    /// `{"action": "zoom", "region": [0, 0, 512, 384]}`.
    Input(ComputerInput),
    /// `{"type": "tool_use", "id": "toolu_1", "name": "left_click", "input": {"coordinate":
    /// [10, 20]}, "toolset_name": "computer"}`.
    ToolUse(ToolUseBlock),
}

/// A parsed request body: the normalised input and, for a `tool_use` block, its id and
/// toolset name (echoed in the reply).
#[derive(Debug, Clone, PartialEq)]
pub struct Body {
    pub input: ComputerInput,
    pub tool_use_id: Option<String>,
    pub toolset_name: Option<String>,
}

impl Body {
    /// Parses a body of either shape (see [`AnthropicBody`]); errors are `bad_request`.
    pub fn from_value(v: Value) -> Result<Body, ActionError> {
        let Value::Object(mut obj) = v else {
            return Err(ActionError::BadRequest("expected a JSON object".into()));
        };
        if obj.contains_key("action") || !obj.contains_key("name") {
            let input = serde_json::from_value(Value::Object(obj))
                .map_err(|e| ActionError::BadRequest(format!("not a computer tool input: {e}")))?;
            return Ok(Body {
                input,
                tool_use_id: None,
                toolset_name: None,
            });
        }
        let string = |obj: &mut serde_json::Map<String, Value>, k: &str| match obj.remove(k) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(ActionError::BadRequest(format!("{k} must be a string"))),
        };
        let kind = string(&mut obj, "type")?;
        if kind.as_deref().is_some_and(|k| k != "tool_use") {
            return Err(ActionError::BadRequest(format!(
                "type {:?} is not tool_use",
                kind.unwrap_or_default()
            )));
        }
        let tool_use_id = string(&mut obj, "id")?;
        let toolset_name = string(&mut obj, "toolset_name")?;
        let name = string(&mut obj, "name")?.unwrap_or_default();
        let input = obj.remove("input").unwrap_or(Value::Null);
        obj.remove("caller");
        if let Some(k) = obj.keys().next() {
            return Err(ActionError::BadRequest(format!(
                "unknown field {k:?} of a tool_use block (expected type, id, name, input, \
                 toolset_name, caller)"
            )));
        }
        let input = if name == "computer" {
            if toolset_name.is_some() {
                return Err(ActionError::BadRequest(
                    "the single computer tool has no toolset_name".into(),
                ));
            }
            serde_json::from_value(input)
                .map_err(|e| ActionError::BadRequest(format!("not a computer tool input: {e}")))?
        } else {
            if toolset_name.as_deref().is_some_and(|t| t != "computer") {
                return Err(ActionError::BadRequest(format!(
                    "toolset {:?} is not computer",
                    toolset_name.unwrap_or_default()
                )));
            }
            member_input(&name, input)?
        };
        Ok(Body {
            input,
            tool_use_id,
            toolset_name,
        })
    }
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
    /// The `tool_use` block's id, when the request was one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_use_id: Option<String>,
    /// The `tool_use` block's `toolset_name` (`computer` for a toolset member), when given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub toolset_name: Option<String>,
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

/// Test fixture of the adapters' tests: a `dw`x`dh` declared display on a 1280x800 screen.
#[cfg(test)]
pub(crate) fn test_scaling(dw: u32, dh: u32) -> Scaling {
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

    /// A declared-display region `[x0, y0, x1, y1]` (x1/y1 exclusive) → the screen region
    /// it covers. Errors: empty/inverted (`bad_request`), off the display (`out_of_bounds`).
    pub fn region_to_screen(
        &self,
        [x0, y0, x1, y1]: [i64; 4],
    ) -> Result<[i32; 4], (crate::ErrorCode, String)> {
        let (dw, dh) = (
            i64::from(self.declared.width),
            i64::from(self.declared.height),
        );
        if x0 >= x1 || y0 >= y1 {
            return Err((
                crate::ErrorCode::BadRequest,
                format!("region [{x0}, {y0}, {x1}, {y1}] is empty: it needs x0 < x1 and y0 < y1"),
            ));
        }
        if x0 < 0 || y0 < 0 || x1 > dw || y1 > dh {
            return Err((
                crate::ErrorCode::OutOfBounds,
                format!("region [{x0}, {y0}, {x1}, {y1}] is outside the {dw}x{dh} display"),
            ));
        }
        let map = |v: i64, d: i64, s: u32| -> i32 {
            ((v as f64) * f64::from(s) / (d as f64)).round() as i32
        };
        let (sw, sh) = (self.screen.width, self.screen.height);
        // At least one screen pixel, within the screen.
        let sx0 = map(x0, dw, sw).min(sw as i32 - 1);
        let sy0 = map(y0, dh, sh).min(sh as i32 - 1);
        let sx1 = map(x1, dw, sw).max(sx0 + 1).min(sw as i32);
        let sy1 = map(y1, dh, sh).max(sy0 + 1).min(sh as i32);
        Ok([sx0, sy0, sx1, sy1])
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
            vec![Action::MouseMove {
                x,
                y,
                modifiers: None,
            }]
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
                        modifiers: None,
                    }]
                }
                None => vec![
                    Action::MouseDown {
                        x: None,
                        y: None,
                        button: Default::default(),
                    },
                    Action::MouseMove {
                        x: ex,
                        y: ey,
                        modifiers: None,
                    },
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
        "zoom" => {
            no_text()?;
            if input.coordinate.is_some() {
                return Err(invalid(
                    crate::ErrorCode::InvalidAction,
                    a,
                    "coordinate is not used by zoom (give region)",
                ));
            }
            let region = input.region.ok_or_else(|| {
                invalid(
                    crate::ErrorCode::InvalidAction,
                    a,
                    "region [x0, y0, x1, y1] is required",
                )
            })?;
            let region = sc
                .region_to_screen(region)
                .map_err(|(code, m)| invalid(code, a, m))?;
            vec![Action::Zoom {
                region,
                width: Some(sc.declared.width),
                height: Some(sc.declared.height),
                format: None,
                quality: None,
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
                     screenshot, cursor_position, zoom)"
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
    if a != "zoom" && input.region.is_some() {
        return Err(invalid(
            crate::ErrorCode::InvalidAction,
            a,
            "region is only used by zoom",
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
    let mut actions = translate(input, &sc)?;
    for a in &mut actions {
        if let Action::Zoom { format, .. } = a {
            *format = opts.format;
        }
    }
    // `zoom` returns only its image, `cursor_position` only its text.
    let want_shot = input.action == "screenshot"
        || (opts.screenshot.unwrap_or(true)
            && input.action != "cursor_position"
            && input.action != "zoom");
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
        match &r.output {
            Some(Output::Position { x, y }) => {
                let (dx, dy) = sc.to_declared(*x, *y);
                content.push(json!({"type": "text", "text": format!("X={dx},Y={dy}")}));
            }
            Some(Output::Image(img)) => {
                content.push(json!({"type": "image", "source": {
                    "type": "base64", "media_type": img.mime, "data": img.data}}));
            }
            _ => {}
        }
    }
    if let Some(img) = &resp.screenshot {
        content.push(json!({"type": "image", "source": {
            "type": "base64", "media_type": img.mime, "data": img.data}}));
    }
    if let Some(note) = &resp.withheld {
        content.push(json!({"type": "text", "text": note}));
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
            tool_use_id: None,
            toolset_name: None,
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
    use crate::anthropic::test_scaling as sc;

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
            t(json!({"action": "teleport"}))
                .expect_err("unknown")
                .code(),
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
    #[test]
    fn toolset_members_and_tool_use_blocks_normalise_to_the_single_tool() {
        let single = input(json!({"action": "left_click", "coordinate": [5, 6], "text": "shift"}));
        let member = member_input("left_click", json!({"coordinate": [5, 6], "text": "shift"}))
            .expect("member");
        assert_eq!(member, single);
        assert_eq!(
            member_input("screenshot", Value::Null).expect("null = no fields"),
            input(json!({"action": "screenshot"}))
        );
        for (name, inp) in [
            ("teleport", json!({})),
            ("computer", json!({"action": "screenshot"})),
            ("left_click", json!({"action": "left_click"})),
            ("left_click", json!({"coordinate": [1, 2], "bogus": 1})),
            ("left_click", json!([1, 2])),
        ] {
            let e = member_input(name, inp.clone()).expect_err("rejected");
            assert_eq!(e.code(), "bad_request", "{name} {inp}: {e}");
        }
        let b = Body::from_value(json!({"type": "tool_use", "id": "toolu_1", "name": "zoom",
            "input": {"region": [0, 0, 10, 10]}, "toolset_name": "computer", "caller": {}}))
        .expect("toolset block");
        assert_eq!(b.input.action, "zoom");
        assert_eq!(b.tool_use_id.as_deref(), Some("toolu_1"));
        assert_eq!(b.toolset_name.as_deref(), Some("computer"));
        let b = Body::from_value(json!({"name": "computer", "input": {"action": "key",
            "text": "a"}}))
        .expect("single-tool block");
        assert_eq!(b.input.action, "key");
        assert_eq!(
            Body::from_value(json!({"action": "wait"}))
                .expect("bare")
                .input,
            input(json!({"action": "wait"}))
        );
        for bad in [
            json!({"name": "left_click", "input": {}, "extra": 1}),
            json!({"type": "text", "name": "left_click", "input": {}}),
            json!({"name": "left_click", "input": {}, "toolset_name": "browser"}),
            json!({"name": "nope", "input": {}}),
            json!({"coordinate": [1, 2]}),
            json!([1]),
        ] {
            let e = Body::from_value(bad.clone()).expect_err("rejected");
            assert_eq!(e.status(), 400, "{bad}: {e}");
        }
        // The member list and the schema enum agree.
        for m in Member::ALL {
            let v = serde_json::to_value(m).expect("ser");
            assert_eq!(v, json!(m.as_str()));
            let t: ToolName = serde_json::from_value(v).expect("tool name");
            assert_ne!(t, ToolName::Computer);
        }
    }

    #[test]
    fn member_input_has_the_single_tool_fields_but_action() {
        let props = |s: schemars::Schema| -> Vec<String> {
            let mut v: Vec<String> = s
                .get("properties")
                .and_then(Value::as_object)
                .map(|o| o.keys().cloned().collect())
                .unwrap_or_default();
            v.sort();
            v
        };
        let mut single = props(schemars::schema_for!(ComputerInput));
        single.retain(|k| k != "action");
        assert_eq!(single, props(schemars::schema_for!(MemberInput)));
    }

    #[test]
    fn zoom_regions_scale_and_validate() {
        let s = sc(1024, 640);
        let z = translate(
            &input(json!({"action": "zoom", "region": [0, 0, 512, 320]})),
            &s,
        )
        .expect("zoom");
        assert_eq!(
            z,
            vec![Action::Zoom {
                region: [0, 0, 640, 400],
                width: Some(1024),
                height: Some(640),
                format: None,
                quality: None
            }]
        );
        let t = |v: Value| translate(&input(v), &s).expect_err("rejected");
        let e = t(json!({"action": "zoom", "region": [0, 0, 1025, 10]}));
        assert_eq!(
            (e.status(), e.code().as_str()),
            (422, "out_of_bounds"),
            "{e}"
        );
        let e = t(json!({"action": "zoom", "region": [-1, 0, 10, 10]}));
        assert_eq!(e.code(), "out_of_bounds");
        let e = t(json!({"action": "zoom", "region": [10, 0, 10, 10]}));
        assert_eq!((e.status(), e.code().as_str()), (400, "bad_request"), "{e}");
        let e = t(json!({"action": "zoom", "region": [0, 9, 10, 3]}));
        assert_eq!(e.code(), "bad_request");
        assert_eq!(t(json!({"action": "zoom"})).code(), "invalid_action");
        assert_eq!(
            t(json!({"action": "left_click", "region": [0, 0, 1, 1]})).code(),
            "invalid_action"
        );
        // A declared display larger than the screen never yields an empty screen region.
        let up = Scaling {
            declared: desk::Size {
                width: 4000,
                height: 4000,
            },
            screen: desk::Size {
                width: 10,
                height: 10,
            },
        };
        assert_eq!(
            up.region_to_screen([3999, 3999, 4000, 4000]),
            Ok([9, 9, 10, 10])
        );
    }
}
